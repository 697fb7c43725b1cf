"""Celery entry point for auto-masklet generation (queue ``gpu``: it runs the segmenter)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="annotator.auto_masklets")
def run_auto_masklets(run_id: int) -> str:
    """Run one ``AutoMaskletRun`` (see ``annotator.automasks.runs.execute``); returns its status."""
    from annotator.automasks.runs import execute

    return execute(run_id).status
