"""Celery entry points for auto masklets: a run (queue ``gpu``: it runs the segmenter) and the periodic
job that fails lost runs and starts runs for newly ready videos of opted-in projects
(``CELERY_BEAT_SCHEDULE``, queue ``cpu``). A ``gpu`` worker starting fails the runs its previous
process under the same node name left running (``engine.workers`` ready hook)."""

from __future__ import annotations

import logging

from celery import shared_task

from annotator.automasks.runs import execute, recover_lost_runs, scheduled_tick
from engine import workers

logger = logging.getLogger(__name__)


@shared_task(name="annotator.auto_masklets", child_lost="annotator.automasks.runs.lost_in_child")
def run_auto_masklets(run_id: int) -> str:
    """Run one ``AutoMaskletRun`` (see ``annotator.automasks.runs.execute``); returns its status."""
    run = execute(run_id)
    return run.status if run is not None else "missing"


@shared_task(name="annotator.auto_masklets_tick")
def auto_masklets_tick() -> dict[str, list[int]]:
    """Fail lost runs and start the runs that are due (``annotator.automasks.runs.scheduled_tick``)."""
    return scheduled_tick()


def recover_runs_of_node(nodename: str) -> list[int]:
    """The same node name starting again means its earlier process is gone, and so are its runs."""
    failed = recover_lost_runs(worker=nodename)
    if failed:
        logger.warning("auto masklets runs %s were left running by an earlier %s: marked failed", failed, nodename)
    return failed


workers.add_ready_hook(recover_runs_of_node)
