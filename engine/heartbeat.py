"""Signs of life: the one module for every heartbeat, one name per meaning.

- **A worker process** (``worker_*``): each GPU worker writes a cache key with a TTL
  (``settings.WORKER_HEARTBEAT_SECONDS``) every third of it, holding the process's *incarnation*
  (a random id drawn once per process). Key gone, or another incarnation under the same queue (a
  worker killed and restarted at once under the same node name): that process is gone, and the live
  sessions it held move (``engine.workers``, the annotation consumer's watchdog).
- **A job** (``job_*``): while a job runs, ``JobHeartbeat`` stamps ``heartbeat_at`` on its row; a
  job silent for ``stale_after`` seconds has lost its worker and is failed (``engine.liveness``).
- **A socket** (``socket_*``): while an annotation socket watches a track (services mode), it renews
  a cache key every watchdog tick; a track whose socket stopped renewing it stops, since nobody
  would hear it any more (the server died without a chance to abandon it).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections
from django.db.models import QuerySet
from django.utils import timezone

logger = logging.getLogger(__name__)

# -- a worker process ---------------------------------------------------------------------------

_incarnation: tuple[int, str] | None = None  # (pid, id): a forked child draws its own
_worker_stop = threading.Event()
_worker_thread: threading.Thread | None = None
#: Called on the heartbeat thread after every beat (e.g. the idle-session sweep of ``annotator.sessions``).
_worker_hooks: list[Callable[[], Any]] = []


def add_worker_heartbeat_hook(hook: Callable[[], Any]) -> None:
    """Run ``hook()`` after every heartbeat of this worker (it must be thread-safe and quick)."""
    if hook not in _worker_hooks:
        _worker_hooks.append(hook)


def worker_incarnation() -> str:
    """This process's id for its life: a restarted worker (same node name, same queue) gets another."""
    global _incarnation
    if _incarnation is None or _incarnation[0] != os.getpid():
        _incarnation = (os.getpid(), uuid.uuid4().hex[:12])
    return _incarnation[1]


def worker_heartbeat_key(queue: str) -> str:
    return f"masklet:worker:{queue}"


def worker_incarnations(queues: list[str]) -> dict[str, str | None]:
    """The incarnation beating for each worker queue now (None: no heartbeat), in one cache read."""
    found = cache.get_many([worker_heartbeat_key(queue) for queue in queues])
    return {queue: (found.get(worker_heartbeat_key(queue)) or {}).get("incarnation") for queue in queues}


def beat_worker(queue: str, info: dict[str, Any] | None = None) -> None:
    """Write one heartbeat for ``queue`` (the thread below calls this; tests may too)."""
    cache.set(worker_heartbeat_key(queue), {"pid": os.getpid(), "at": time.time(),
                                            "incarnation": worker_incarnation(), **(info or {})},
              timeout=settings.WORKER_HEARTBEAT_SECONDS)


def start_worker_heartbeat(queue: str) -> None:
    """Beat for ``queue`` on a daemon thread until ``stop_worker_heartbeat`` (or the process ends)."""
    global _worker_thread
    if _worker_thread is not None and _worker_thread.is_alive():
        return
    _worker_stop.clear()
    interval = max(0.1, settings.WORKER_HEARTBEAT_SECONDS / 3)

    def run() -> None:
        while not _worker_stop.is_set():
            try:
                beat_worker(queue)
            except Exception:  # Redis away for a moment: keep trying, the TTL says the rest
                logger.warning("heartbeat for %s not written", queue, exc_info=True)
            for hook in _worker_hooks:
                try:
                    hook()
                except Exception:
                    logger.warning("heartbeat hook %r failed", hook, exc_info=True)
            _worker_stop.wait(interval)

    _worker_thread = threading.Thread(target=run, name="masklet-heartbeat", daemon=True)
    _worker_thread.start()


def stop_worker_heartbeat(queue: str | None = None) -> None:
    """Stop beating and drop the key, so sessions move at once after a clean shutdown."""
    _worker_stop.set()
    if queue:
        try:
            cache.delete(worker_heartbeat_key(queue))
        except Exception:
            logger.warning("heartbeat key of %s not removed", queue, exc_info=True)


# -- a job --------------------------------------------------------------------------------------


def job_shows_life(job: Any, stale_after: float) -> bool:
    """Whether the job's worker showed a sign of life (heartbeat, else start) within ``stale_after`` s."""
    last = job.heartbeat_at or job.started_at
    return last is not None and (timezone.now() - last).total_seconds() < stale_after


class JobHeartbeat:
    """Stamps ``heartbeat_at`` on ``rows`` (the job, while running) every ``interval`` s from a thread."""

    def __init__(self, rows: QuerySet, interval: float, name: str):
        self.rows, self.interval, self.name = rows, interval, name
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"masklet-{name}-heartbeat", daemon=True)

    def _beat(self) -> None:
        try:
            while not self.stop.wait(self.interval):
                try:
                    self.rows.update(heartbeat_at=timezone.now())
                except Exception:  # a busy database: the next beat (or a progress write) stamps it
                    logger.warning("heartbeat of %s not written", self.name, exc_info=True)
        finally:
            close_old_connections()

    def __enter__(self) -> JobHeartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


# -- a socket -----------------------------------------------------------------------------------


def socket_alive_key(session_id: str) -> str:
    return f"masklet:socket-alive:{session_id}"


def watchdog_seconds() -> float:
    """How often an annotation socket checks its workers' heartbeats (and says it is alive)."""
    return max(0.2, min(1.0, settings.WORKER_HEARTBEAT_SECONDS / 3))


def socket_alive_seconds() -> float:
    """A watched track (services mode) stops when its socket has not said it is alive for this
    long: its server died (``kill -9``, a lost machine) without a chance to abandon it."""
    return 5 * watchdog_seconds()


def keep_socket_alive(session_id: str) -> None:
    """The socket of ``session_id`` is open: its watched tracks go on (renewed every watchdog tick)."""
    cache.set(socket_alive_key(session_id), True, timeout=socket_alive_seconds())
