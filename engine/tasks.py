"""Celery tasks of the model loop: the training run (``train`` queue) and the periodic job (beat).

``celery -A engine worker -Q train`` runs ``train_model``; ``celery -A engine beat`` sends
``loop_tick`` every ``MASKLET_LOOP_TICK_S`` seconds (``CELERY_BEAT_SCHEDULE``). When a worker
that consumes ``train`` starts, it fails the runs its previous incarnation (same node name) left
``running``: a SIGKILLed or crashed worker never leaves a run hanging.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import shared_task
from celery.signals import celeryd_after_setup, worker_ready

logger = logging.getLogger(__name__)

#: This worker's Celery node name (set when a worker starts; None in web processes and embedded mode).
nodename: str | None = None
_consumes_train = False


@shared_task(name="engine.tasks.train_model", acks_late=True)
def train_model(run_id: int) -> str:
    """Run one queued ``TrainingRun`` to its end (see ``engine.training.execute_run``)."""
    from engine.training import execute_run

    return execute_run(run_id)


@shared_task(name="engine.tasks.loop_tick")
def loop_tick() -> dict[str, Any]:
    """Recover lost runs and start the runs that are due (``engine.training.periodic_tick``)."""
    from engine.training import periodic_tick

    return periodic_tick()


_embedded_beat: threading.Thread | None = None


def start_embedded_beat(interval: float) -> None:
    """Embedded mode has no ``celery beat``: a daemon thread sends ``loop_tick`` to the cpu pool every ``interval`` s.

    Started by the ASGI server (``engine.asgi``), once per process; the first tick comes one
    interval after start, so short-lived servers (tests) never tick. ``interval <= 0`` disables it.
    """
    global _embedded_beat
    if interval <= 0 or (_embedded_beat is not None and _embedded_beat.is_alive()):
        return
    from engine.dispatch import submit

    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            try:
                submit(loop_tick, queue="cpu")
            except Exception:
                logger.exception("embedded beat could not send loop_tick")

    _embedded_beat = threading.Thread(target=beat, name="masklet-embedded-beat", daemon=True)
    _embedded_beat.start()


@celeryd_after_setup.connect
def _remember_node(sender: str, instance: Any, **kwargs: Any) -> None:
    global nodename, _consumes_train
    nodename = sender
    _consumes_train = "train" in (instance.app.amqp.queues.consume_from or {})


@worker_ready.connect
def _recover_runs_of_this_node(**kwargs: Any) -> None:
    """The same node name starting again means its earlier process is gone, and so are its runs."""
    if not (_consumes_train and nodename):
        return
    from engine.training import recover_orphaned_runs

    try:
        failed = recover_orphaned_runs(worker=nodename)
    except Exception:
        logger.exception("could not recover the training runs of %s", nodename)
        return
    if failed:
        logger.warning("runs %s were left running by an earlier %s: marked failed", failed, nodename)
