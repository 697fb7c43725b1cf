"""Which GPU worker holds a live annotation session, and whether it is still alive.

A live segmenter session (SAM 2 memory of a video) lives in one worker process, so every
message of that session must reach that process. Each Celery worker that consumes the shared
``gpu`` queue therefore also consumes a queue of its own, ``gpu.<nodename>`` (added by the
``celeryd_after_setup`` signal below, so ``celery -A config worker -Q gpu`` is all it takes).
The first message of a session goes to ``gpu``; the worker that takes it names its own queue
in its reply, and the consumer sends the rest there.

Liveness: each worker beats for its own queue (``engine.heartbeat``, the worker heartbeat);
a worker whose key is gone or names another incarnation is taken for dead and its sessions move.
The owner of (video, user) is also kept in the cache, so a reloaded page goes back to the worker
that still holds the session warm.

Embedded mode has a single in-process pool: everything is queue ``gpu``, always alive.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery.signals import celeryd_after_setup, task_postrun, task_prerun, worker_ready, worker_shutdown
from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections

from engine import heartbeat

logger = logging.getLogger(__name__)

SHARED_QUEUE = "gpu"
OWN_QUEUE_PREFIX = "gpu."

_own_queue: str | None = None
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


def owner_key(video_id: int, user_id: int) -> str:
    return f"masklet:session-owner:{video_id}:{user_id}"


def set_session_owner(video_id: int, user_id: int, queue: str) -> None:
    """Record that ``queue``'s worker holds the live session (kept while the session may live)."""
    cache.set(owner_key(video_id, user_id), queue, timeout=settings.SESSION_IDLE_SECONDS)


def session_owner(video_id: int, user_id: int) -> tuple[str | None, str | None]:
    """(the queue of the live worker holding the session, its incarnation), or (None, None)."""
    queue = cache.get(owner_key(video_id, user_id))
    if not queue:
        return None, None
    alive = heartbeat.worker_incarnations([queue])[queue]
    return (queue, alive) if alive else (None, None)


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
        heartbeat.start_worker_heartbeat(_own_queue)
        for hook in _ready_hooks:
            try:
                hook(_own_queue[len(OWN_QUEUE_PREFIX):])
            except Exception:
                logger.exception("worker-ready hook %r failed", hook)


@worker_shutdown.connect
def _stop_heartbeat(**kwargs: Any) -> None:
    if _own_queue is not None:
        heartbeat.stop_worker_heartbeat(_own_queue)
