"""Celery entry points for auto masklets: a run (queue ``gpu``: it runs the segmenter) and the periodic
job that starts runs for newly ready videos of opted-in projects (``CELERY_BEAT_SCHEDULE``, queue ``cpu``)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="annotator.auto_masklets")
def run_auto_masklets(run_id: int) -> str:
    """Run one ``AutoMaskletRun`` (see ``annotator.automasks.runs.execute``); returns its status."""
    from annotator.automasks.runs import execute

    return execute(run_id).status


@shared_task(name="annotator.auto_masklets_tick")
def auto_masklets_tick() -> dict[str, list[int]]:
    """Start the runs that are due (``annotator.automasks.runs.scheduled_tick``)."""
    from annotator.automasks.runs import scheduled_tick

    return scheduled_tick()
