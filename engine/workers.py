"""Which GPU worker holds a live annotation session, and whether it is still alive.

A live segmenter session (SAM 2 memory of a video) lives in one worker process, so every
message of that session must reach that process. Each Celery worker that consumes the shared
``gpu`` queue therefore also consumes a queue of its own, ``gpu.<nodename>`` (added by the
``celeryd_after_setup`` signal below, so ``celery -A config worker -Q gpu`` is all it takes).
The first message of a session goes to ``gpu``; the worker that takes it names its own queue
in its reply, and the consumer sends the rest there.

Liveness: a worker writes a heartbeat key into the shared cache every third of
``settings.WORKER_HEARTBEAT_SECONDS`` with that TTL. The key holds the process's *incarnation*
(a random id drawn once per process, ``incarnation()``), and every reply names it too: a worker
killed and restarted at once under the same node name (compose's ``restart: unless-stopped``)
renews the key before it expires, but with another incarnation, so whoever waits on the old
process sees it gone (``incarnations``). When the key is gone or names another incarnation, the
worker is taken for dead and its sessions move. The owner of (video, user) is also kept in the
cache, so a reloaded page goes back to the worker that still holds the session warm.

Embedded mode has a single in-process pool: everything is queue ``gpu``, always alive.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from celery.signals import celeryd_after_setup, task_postrun, task_prerun, worker_ready, worker_shutdown
from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections

logger = logging.getLogger(__name__)

SHARED_QUEUE = "gpu"
OWN_QUEUE_PREFIX = "gpu."

_own_queue: str | None = None
_incarnation: tuple[int, str] | None = None  # (pid, id): a forked child draws its own
_heartbeat_stop = threading.Event()
_heartbeat_thread: threading.Thread | None = None
#: Called on the heartbeat thread after every beat (e.g. the idle-session sweep of ``annotator.sessions``).
_heartbeat_hooks: list[Callable[[], Any]] = []


def add_heartbeat_hook(hook: Callable[[], Any]) -> None:
    """Run ``hook()`` after every heartbeat of this worker (it must be thread-safe and quick)."""
    if hook not in _heartbeat_hooks:
        _heartbeat_hooks.append(hook)


#: Called with the node name when a worker consuming ``gpu`` is ready (e.g. failing the runs its
#: previous process under that name left running: ``annotator.automasks.runs.recover_lost_runs``).
_ready_hooks: list[Callable[[str], Any]] = []


def add_ready_hook(hook: Callable[[str], Any]) -> None:
    """Run ``hook(nodename)`` when this ``gpu`` worker is ready: any earlier process of that name is gone."""
    if hook not in _ready_hooks:
        _ready_hooks.append(hook)


def queue_for_node(nodename: str) -> str:
    """The private queue of the worker called ``nodename`` (e.g. ``gpu.gpu0@host``)."""
    return OWN_QUEUE_PREFIX + nodename


def own_queue() -> str:
    """Where messages for sessions held by this process should go."""
    if settings.EMBEDDED or _own_queue is None:
        return SHARED_QUEUE
    return _own_queue


def incarnation() -> str:
    """This process's id for its life: a restarted worker (same node name, same queue) gets another."""
    global _incarnation
    if _incarnation is None or _incarnation[0] != os.getpid():
        _incarnation = (os.getpid(), uuid.uuid4().hex[:12])
    return _incarnation[1]


def heartbeat_key(queue: str) -> str:
    return f"masklet:worker:{queue}"


def owner_key(video_id: int, user_id: int) -> str:
    return f"masklet:session-owner:{video_id}:{user_id}"


def incarnations(queues: list[str]) -> dict[str, str | None]:
    """The incarnation beating for each worker queue now (None: no heartbeat), in one cache read."""
    found = cache.get_many([heartbeat_key(queue) for queue in queues])
    return {queue: (found.get(heartbeat_key(queue)) or {}).get("incarnation") for queue in queues}


def set_session_owner(video_id: int, user_id: int, queue: str) -> None:
    """Record that ``queue``'s worker holds the live session (kept while the session may live)."""
    cache.set(owner_key(video_id, user_id), queue, timeout=settings.SESSION_IDLE_SECONDS)


def session_owner(video_id: int, user_id: int) -> tuple[str | None, str | None]:
    """(the queue of the live worker holding the session, its incarnation), or (None, None)."""
    queue = cache.get(owner_key(video_id, user_id))
    if not queue:
        return None, None
    alive = incarnations([queue])[queue]
    return (queue, alive) if alive else (None, None)


def beat(queue: str, info: dict[str, Any] | None = None) -> None:
    """Write one heartbeat for ``queue`` (the thread below calls this; tests may too)."""
    cache.set(heartbeat_key(queue), {"pid": os.getpid(), "at": time.time(), "incarnation": incarnation(),
                                     **(info or {})},
              timeout=settings.WORKER_HEARTBEAT_SECONDS)


def start_heartbeat(queue: str) -> None:
    """Beat for ``queue`` on a daemon thread until ``stop_heartbeat`` (or the process ends)."""
    global _heartbeat_thread
    if _heartbeat_thread is not None and _heartbeat_thread.is_alive():
        return
    _heartbeat_stop.clear()
    interval = max(0.1, settings.WORKER_HEARTBEAT_SECONDS / 3)

    def run() -> None:
        while not _heartbeat_stop.is_set():
            try:
                beat(queue)
            except Exception:  # Redis away for a moment: keep trying, the TTL says the rest
                logger.warning("heartbeat for %s not written", queue, exc_info=True)
            for hook in _heartbeat_hooks:
                try:
                    hook()
                except Exception:
                    logger.warning("heartbeat hook %r failed", hook, exc_info=True)
            _heartbeat_stop.wait(interval)

    _heartbeat_thread = threading.Thread(target=run, name="masklet-heartbeat", daemon=True)
    _heartbeat_thread.start()


def stop_heartbeat(queue: str | None = None) -> None:
    """Stop beating and drop the key, so sessions move at once after a clean shutdown."""
    _heartbeat_stop.set()
    if queue:
        try:
            cache.delete(heartbeat_key(queue))
        except Exception:
            logger.warning("heartbeat key of %s not removed", queue, exc_info=True)


# -- Celery signals ---------------------------------------------------------------------------


@celeryd_after_setup.connect
def _add_own_queue(sender: str, instance: Any, **kwargs: Any) -> None:
    """A worker consuming ``gpu`` also consumes ``gpu.<nodename>`` (``sender`` is the nodename)."""
    global _own_queue
    queues = instance.app.amqp.queues
    if SHARED_QUEUE not in (queues.consume_from or {}):
        return
    _own_queue = queue_for_node(sender)
    queues.select_add(_own_queue)
    logger.info("worker %s also consumes its own queue %s", sender, _own_queue)


@task_prerun.connect
@task_postrun.connect
def _database_lifecycle(task: Any = None, **kwargs: Any) -> None:
    """Each task in a worker is handled like a request: an unusable or too old connection is closed,
    a good one kept (``CELERY_DB_REUSE_MAX`` stops Celery closing it after every task). Eager runs
    (embedded mode, tests) are left alone, as Celery's own fixup leaves them."""
    if task is not None and not getattr(task.request, "is_eager", False):
        close_old_connections()


@worker_ready.connect
def _start_heartbeat(**kwargs: Any) -> None:
    if _own_queue is not None:
        start_heartbeat(_own_queue)
        for hook in _ready_hooks:
            try:
                hook(_own_queue[len(OWN_QUEUE_PREFIX):])
            except Exception:
                logger.exception("worker-ready hook %r failed", hook)


@worker_shutdown.connect
def _stop_heartbeat(**kwargs: Any) -> None:
    if _own_queue is not None:
        stop_heartbeat(_own_queue)
