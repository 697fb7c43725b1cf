"""What a server process starts with in embedded mode (``config.asgi``): there it is the whole deployment.

Its jobs ran in its own child processes and its queues lived in its memory, so the runs a previous
process left queued or running are failed at once (``recover_after_restart``); and there is no
``celery beat`` process, so the server sends ``CELERY_BEAT_SCHEDULE`` itself (``start_embedded_beat``).
Both live here, at the top, because they join every layer's runs and tasks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError

from annotator.automasks.runs import recover_after_restart as recover_auto_masklets
from annotator.datasets.jobs import recover_after_restart as recover_dataset_jobs
from annotator.services.videos import recover_ingests_after_restart as recover_ingests
from config.celery import app
from engine.dispatch import submit
from loop.training import recover_after_restart as recover_training
from loop.verifier import recover_stale as recover_verifiers

logger = logging.getLogger(__name__)


def recover_after_restart() -> dict[str, list[int]]:
    """Embedded mode, when the server starts: fail at once the training, auto-masklet, verifier, dataset
    and ingest jobs its previous process left queued or running (their child processes died with it), so Start is not
    blocked."""
    try:
        failed = {"training": recover_training(), "auto_masklets": recover_auto_masklets(),
                  "verifiers": recover_verifiers(older_than_s=0),
                  "dataset_jobs": recover_dataset_jobs(), "ingests": recover_ingests()}
    except DatabaseError:  # no tables yet (before the first migrate): nothing was left behind
        logger.warning("could not look for runs left by a previous server", exc_info=True)
        return {}
    if any(failed.values()):
        logger.warning("runs left by the previous server process, marked failed: %s", failed)
    return failed


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
