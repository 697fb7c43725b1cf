"""Long runs whose worker can die without a word (SIGKILL, OOM, a lost machine), and who notices.

Used by training runs (``engine.training``) and auto-masklet runs (``annotator.automasks.runs``).
A run row has ``status`` (``queued`` -> ``running`` -> an end), ``worker``, ``started_at`` and
``heartbeat_at``. Its worker takes it with ``claim`` (queued -> running under its own name, a
compare-and-set) and stamps ``heartbeat_at`` from a thread while it works
(``engine.heartbeat.JobHeartbeat``). A dead
worker cannot end its run, so others fail it:

- a worker starting under the same node name: its earlier process is gone, and so are the runs
  it held (``lost_runs(running, worker=nodename)``, from ``worker_ready``);
- the periodic jobs: a run without a heartbeat for ``stale_after`` seconds (``lost_runs(running)``);
- a message redelivered after its worker died (``acks_late``): ``claim`` finds the run running
  and says ``LOST`` (fail it) or, when another worker still beats for it, ``DUPLICATE`` (drop it);
- the embedded server starting (``orphans_at_start``): its jobs ran in its own child processes and
  its queues in its memory, so a running run whose process is gone and a run queued before this
  server started will never end by themselves: they are failed at once.

What failing a run means (its log, files, broadcasts) is each kind of run's own business.
"""

from __future__ import annotations

import enum
import logging
import os
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil
from django.db.models import Model, Q, QuerySet
from django.utils import timezone

from engine.heartbeat import job_shows_life

logger = logging.getLogger(__name__)

QUEUED, RUNNING = "queued", "running"


def worker_name() -> str:
    """This process's name on a run: the Celery node name when there is one."""
    from engine import tasks

    return tasks.nodename or f"{socket.gethostname()}:{os.getpid()}"


def lost_runs(running: QuerySet, *, worker: str | None = None, stale_after: float) -> list[tuple[Any, str]]:
    """The runs of ``running`` whose worker is gone, each with why (for the run's error).

    With ``worker``: the runs that node holds (call it when that node starts again). Without:
    the runs with no heartbeat (nor start) within ``stale_after`` seconds.
    """
    if worker is not None:
        return [(run, f"worker {run.worker} restarted while the run was running")
                for run in running.filter(worker=worker)]
    cutoff = timezone.now() - timedelta(seconds=stale_after)
    silent = running.filter(Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff))
    return [(run, f"no sign of life from worker {run.worker or '?'} for {stale_after:.0f} s") for run in silent]


def process_gone(worker: str | None) -> bool:
    """Whether ``worker`` names a process of this machine (``host:pid``, embedded mode) that no longer runs."""
    host, _, pid = (worker or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        return psutil.Process(int(pid)).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def orphans_at_start(active: QuerySet) -> list[tuple[Any, str]]:
    """Embedded mode, when the server starts: the runs of ``active`` (queued or running) that nothing
    will ever end, each with why: running in a process that is gone, or queued in the memory of an
    earlier server process."""
    started = datetime.fromtimestamp(psutil.Process().create_time(), tz=UTC)
    lost = [(run, f"worker restarted: its process ({run.worker}) is gone")
            for run in active.filter(status=RUNNING) if process_gone(run.worker)]
    lost += [(run, "worker restarted: the server stopped before the run started")
             for run in active.filter(status=QUEUED, created_at__lt=started)]
    return lost


class Claim(enum.Enum):
    CLAIMED = "claimed"  #: queued -> running for this worker: run it
    DUPLICATE = "duplicate"  #: another worker is running it and alive: drop this delivery
    LOST = "lost"  #: running, but its worker is gone (this is a redelivery): fail it
    ENDED = "ended"  #: not queued nor running (ended, cancelled, deleted): nothing to do


def claim(model: type[Model], run_id: int, *, stale_after: float, **conditions: Any) -> tuple[Claim, Any]:
    """Take run ``run_id`` of ``model`` for this worker (``conditions``: more filters, e.g. not cancelled).

    Returns the outcome and the run as it now stands (None when it does not exist).
    """
    now = timezone.now()
    if model.objects.filter(pk=run_id, status=QUEUED, **conditions).update(
            status=RUNNING, started_at=now, heartbeat_at=now, worker=worker_name()):
        return Claim.CLAIMED, model.objects.get(pk=run_id)
    run = model.objects.filter(pk=run_id).first()
    if run is None or run.status != RUNNING:
        return Claim.ENDED, run
    if run.worker != worker_name() and job_shows_life(run, stale_after):
        return Claim.DUPLICATE, run
    return Claim.LOST, run
