"""Celery tasks of the model loop: the training run (``train`` queue), the periodic job (beat),
checkpoint downloads from the dashboard and the quality verifier's trainings (``cpu`` queue).

``celery -A config worker -Q train`` runs ``train_model``; ``celery -A config beat`` sends
``loop_tick`` every ``MASKLET_LOOP_TICK_S`` seconds (``CELERY_BEAT_SCHEDULE``; in embedded mode
``config.startup.start_embedded_beat`` sends that schedule). When a worker
that consumes ``train`` starts, it fails the runs its previous incarnation (same node name) left
``running``: a SIGKILLed or crashed worker never leaves a run hanging.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.signals import celeryd_after_setup, worker_ready

from engine import liveness
from loop import verifier
from loop.downloads import execute_download
from loop.training import execute_run, periodic_tick, recover_orphaned_runs, scheduled_projects

logger = logging.getLogger(__name__)

_consumes_train = False


@shared_task(name="loop.train_model", acks_late=True, child_lost="loop.training.lost_in_child")
def train_model(run_id: int) -> str:
    """Run one queued ``TrainingRun`` to its end (see ``loop.training.execute_run``)."""
    return execute_run(run_id)


@shared_task(name="loop.train_verifier", acks_late=True, child_lost="loop.verifier.lost_in_child")
def train_verifier(version_id: int) -> str:
    """Train one queued ``VerifierVersion`` (see ``loop.verifier.execute``)."""
    return verifier.execute(version_id)


@shared_task(name="loop.tick")
def loop_tick() -> dict[str, Any]:
    """Recover lost runs and start the runs that are due (``loop.training.periodic_tick``), then the quality
    verifier's trainings of the projects the schedule is on for (``loop.verifier.start_due``)."""
    result = periodic_tick()
    verifier.recover_stale()
    return {**result, "verifiers_started": verifier.start_due(scheduled_projects())}


@shared_task(name="loop.fetch_checkpoint")
def fetch_checkpoint(download_id: int) -> str:
    """Download, check and register one dashboard ``ModelDownload`` (see ``loop.downloads``)."""
    return execute_download(download_id)


@celeryd_after_setup.connect
def _remember_queues(sender: str, instance: Any, **kwargs: Any) -> None:
    global _consumes_train
    _consumes_train = "train" in (instance.app.amqp.queues.consume_from or {})


@worker_ready.connect
def _recover_runs_of_this_node(**kwargs: Any) -> None:
    """The same node name starting again means its earlier process is gone, and so are its runs."""
    nodename = liveness.nodename
    if not (_consumes_train and nodename):
        return

    try:
        failed = recover_orphaned_runs(worker=nodename)
    except Exception:
        logger.exception("could not recover the training runs of %s", nodename)
        return
    if failed:
        logger.warning("runs %s were left running by an earlier %s: marked failed", failed, nodename)
