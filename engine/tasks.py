"""Celery tasks of the model loop: the training run (``train`` queue), the periodic job (beat),
checkpoint downloads from the dashboard and the quality verifier's trainings (``cpu`` queue).

``celery -A config worker -Q train`` runs ``train_model``; ``celery -A config beat`` sends
``loop_tick`` every ``MASKLET_LOOP_TICK_S`` seconds (``CELERY_BEAT_SCHEDULE``; in embedded mode
``start_embedded_beat`` sends that schedule). When a worker
that consumes ``train`` starts, it fails the runs its previous incarnation (same node name) left
``running``: a SIGKILLed or crashed worker never leaves a run hanging.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from celery import shared_task
from celery.signals import celeryd_after_setup, worker_ready

logger = logging.getLogger(__name__)

#: This worker's Celery node name (set when a worker starts; None in web processes and embedded mode).
nodename: str | None = None
_consumes_train = False


@shared_task(name="engine.tasks.train_model", acks_late=True, child_lost="engine.training.lost_in_child")
def train_model(run_id: int) -> str:
    """Run one queued ``TrainingRun`` to its end (see ``engine.training.execute_run``)."""
    from engine.training import execute_run

    return execute_run(run_id)


@shared_task(name="engine.tasks.train_verifier", acks_late=True, child_lost="engine.verifier.lost_in_child")
def train_verifier(version_id: int) -> str:
    """Train one queued ``VerifierVersion`` (see ``engine.verifier.execute``)."""
    from engine.verifier import execute

    return execute(version_id)


@shared_task(name="engine.tasks.loop_tick")
def loop_tick() -> dict[str, Any]:
    """Recover lost runs and start the runs that are due (``engine.training.periodic_tick``)."""
    from engine.training import periodic_tick

    return periodic_tick()


@shared_task(name="engine.tasks.fetch_checkpoint")
def fetch_checkpoint(download_id: int) -> str:
    """Download, check and register one dashboard ``ModelDownload`` (see ``engine.downloads``)."""
    from engine.downloads import execute_download

    return execute_download(download_id)


_embedded_beat: threading.Thread | None = None


def _period(schedule: Any) -> float:
    """A beat entry's period in seconds (numbers and timedeltas; anything else is not run in embedded mode)."""
    if isinstance(schedule, timedelta):
        return schedule.total_seconds()
    return float(schedule) if isinstance(schedule, int | float) else 0.0


def start_embedded_beat(schedule: Mapping[str, Mapping[str, Any]] | None = None) -> threading.Event | None:
    """Embedded mode has no ``celery beat``: a daemon thread sends each entry of ``CELERY_BEAT_SCHEDULE``
    (or ``schedule``) to its queue's in-process pool at the entry's period, as beat would.

    Started by the ASGI server (``config.asgi``), once per process; each entry first runs one period
    after start, so short-lived servers (tests) never tick. A period <= 0 turns an entry off
    (``MASKLET_LOOP_TICK_S=0``). Returns the event that stops the thread (None: nothing started).
    """
    global _embedded_beat
    if _embedded_beat is not None and _embedded_beat.is_alive():
        return None
    from django.conf import settings

    from config.celery import app
    from engine.dispatch import submit

    app.loader.import_default_modules()  # what a worker does first: autodiscovery registers every task
    entries = [(app.tasks[entry["task"]], _period(entry["schedule"]), entry.get("options", {}).get("queue", "cpu"))
               for entry in (settings.CELERY_BEAT_SCHEDULE if schedule is None else schedule).values()]
    entries = [entry for entry in entries if entry[1] > 0]
    if not entries:
        return None
    stop = threading.Event()

    def beat() -> None:
        due = [time.monotonic() + period for _, period, _ in entries]
        while not stop.wait(max(0.0, min(due) - time.monotonic())):
            now = time.monotonic()
            for number, (task, period, queue) in enumerate(entries):
                if due[number] > now:
                    continue
                due[number] = now + period
                try:
                    submit(task, queue=queue)
                except Exception:
                    logger.exception("embedded beat could not send %s", task.name)

    _embedded_beat = threading.Thread(target=beat, name="masklet-embedded-beat", daemon=True)
    _embedded_beat.start()
    return stop


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
