"""The one job lifecycle: claim, heartbeat, progress, end, and the recovery of jobs whose worker died.

Every background job row is an ``engine.models.Job`` (video ingests, auto-masklet runs, dataset
jobs, training runs, model downloads, verifier trainings): ``status`` (``JobStatus``: queued ->
running -> done | failed | cancelled), ``progress``, ``worker``, ``started_at``, ``heartbeat_at``,
``finished_at``. Its worker takes it with ``claim`` (queued -> running under its own name, a
compare-and-set), stamps ``heartbeat_at`` from a thread while it works
(``engine.heartbeat.JobHeartbeat``) and ends it with ``finish`` (only an active job ends, once). A
dead worker cannot end its job, so others fail it:

- a worker starting under the same node name: its earlier process is gone, and so are the runs
  it held (``lost_runs(running, worker=nodename)``, from ``worker_ready``);
- the periodic jobs: a run without a heartbeat for ``stale_after`` seconds (``lost_runs(running)``);
- a message redelivered after its worker died (``acks_late``): ``claim`` finds the run running
  and says ``LOST`` (fail it) or, when another worker still beats for it, ``DUPLICATE`` (drop it);
- the embedded server starting (``orphans_at_start``): its jobs ran in its own child processes and
  its queues in its memory, so a running run whose process is gone and a run queued before this
  server started will never end by themselves: they are failed at once.

Cancel is part of it: ``request_cancel`` ends a queued job at once and flags a running one; the
running job sees the flag (``cancel_requested``, read at its own safe points) and ends itself
``cancelled`` through ``finish``.

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
from celery.signals import celeryd_after_setup
from django.db.models import Model, Q, QuerySet
from django.utils import timezone

from engine.heartbeat import job_shows_life
from engine.models import JobStatus

logger = logging.getLogger(__name__)

QUEUED, RUNNING = JobStatus.QUEUED, JobStatus.RUNNING
#: A job still queued this long after it was asked for is taken for lost (``lost_queued``).
QUEUED_LOST_S = 6 * 3600.0
#: How a job may end; ``finish`` moves only an active (queued or running) job there, once.
ENDED = frozenset({JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED})


#: This worker's Celery node name (set when a worker starts; None in web processes and embedded mode).
nodename: str | None = None


@celeryd_after_setup.connect
def _remember_node(sender: str, **kwargs: Any) -> None:
    global nodename
    nodename = sender


def worker_name() -> str:
    """This process's name on a run: the Celery node name when there is one."""
    return nodename or f"{socket.gethostname()}:{os.getpid()}"


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


def lost_queued(queued: QuerySet, queue: str, queued_after: float = QUEUED_LOST_S) -> list[tuple[Any, str]]:
    """The jobs of ``queued`` asked for more than ``queued_after`` s ago: their message went with a dead
    worker or broker (or the embedded server's in-process queue); should it still arrive, ``claim``
    finds the job ended and drops it."""
    cutoff = timezone.now() - timedelta(seconds=queued_after)
    return [(job, f"no {queue} worker started it within {queued_after:.0f} s")
            for job in queued.filter(status=QUEUED, created_at__lt=cutoff)]


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


def finish(model: type[Model], job_id: int, status: str, **fields: Any) -> bool:
    """End job ``job_id`` as ``status`` (done, failed, cancelled) with ``fields``, if it is still active.

    A compare-and-set: a job that already ended (another worker failed it as lost, a cancel won) is
    left as it is and False returned, so an end is never overwritten.
    """
    if status not in ENDED:
        raise ValueError(f"a job ends done, failed or cancelled, not {status!r}")
    return bool(model.objects.filter(pk=job_id, status__in=model.ACTIVE).update(
        status=status, finished_at=timezone.now(), **fields))


def request_cancel(model: type[Model], job_id: int) -> bool:
    """Ask job ``job_id`` to stop: a queued one ends ``cancelled`` at once, a running one is flagged
    (it ends itself at its next check of ``cancel_requested``). False when it had ended already."""
    queued = model.objects.filter(pk=job_id, status=QUEUED).update(
        status=JobStatus.CANCELLED, finished_at=timezone.now(), cancel_requested=True)
    running = model.objects.filter(pk=job_id, status=RUNNING).update(cancel_requested=True)
    return bool(queued or running)


def cancel_requested(model: type[Model], job_id: int) -> bool:
    """Whether someone asked job ``job_id`` to stop: what a running job checks at its safe points."""
    return model.objects.filter(pk=job_id, cancel_requested=True).exists()
