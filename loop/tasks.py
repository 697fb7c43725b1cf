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

logger = logging.getLogger(__name__)

_consumes_train = False


@shared_task(name="loop.tasks.train_model", acks_late=True, child_lost="loop.training.lost_in_child")
def train_model(run_id: int) -> str:
    """Run one queued ``TrainingRun`` to its end (see ``loop.training.execute_run``)."""
    from loop.training import execute_run

    return execute_run(run_id)


@shared_task(name="loop.tasks.train_verifier", acks_late=True, child_lost="loop.verifier.lost_in_child")
def train_verifier(version_id: int) -> str:
    """Train one queued ``VerifierVersion`` (see ``loop.verifier.execute``)."""
    from loop.verifier import execute

    return execute(version_id)


@shared_task(name="loop.tasks.loop_tick")
def loop_tick() -> dict[str, Any]:
    """Recover lost runs and start the runs that are due (``loop.training.periodic_tick``)."""
    from loop.training import periodic_tick

    return periodic_tick()


@shared_task(name="loop.tasks.fetch_checkpoint")
def fetch_checkpoint(download_id: int) -> str:
    """Download, check and register one dashboard ``ModelDownload`` (see ``loop.downloads``)."""
    from loop.downloads import execute_download

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
    from loop.training import recover_orphaned_runs

    try:
        failed = recover_orphaned_runs(worker=nodename)
    except Exception:
        logger.exception("could not recover the training runs of %s", nodename)
        return
    if failed:
        logger.warning("runs %s were left running by an earlier %s: marked failed", failed, nodename)
