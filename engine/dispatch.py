"""Send a Celery task to its queue, the same call in both modes.

Services mode: ``apply_async`` to the named queue; separate worker processes pick it up.
Embedded mode: the task runs on a thread pool inside this process (the "in-process worker"),
with the same task code, so the web request returns at once either way.

Always call ``submit`` after the rows the task reads are committed: use
``transaction.on_commit(lambda: submit(...))`` inside a transaction.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from celery import Task
from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger(__name__)

QUEUES = ("gpu", "cpu", "train")
#: A GPU worker's own queue (``engine.workers``) starts with this; embedded mode maps it to ``gpu``.
OWN_GPU_QUEUE_PREFIX = "gpu."

_executors: dict[str, ThreadPoolExecutor] = {}
_lock = threading.Lock()


def _executor(queue: str) -> ThreadPoolExecutor:
    with _lock:
        if queue not in _executors:
            workers = 1 if queue in ("gpu", "train") else settings.EMBEDDED_WORKERS
            _executors[queue] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"masklet-{queue}")
        return _executors[queue]


def _run_embedded(task: Task, args: tuple, kwargs: dict) -> Any:
    close_old_connections()
    try:
        result = task.apply(args=args, kwargs=kwargs)
        if result.failed():
            logger.error("embedded task %s failed: %s", task.name, result.result)
        return result.result
    finally:
        close_old_connections()


def submit(task: Task, *args: Any, queue: str = "cpu", **kwargs: Any) -> Future | Any:
    """Run ``task(*args, **kwargs)`` on ``queue``; returns a Future (embedded) or an AsyncResult.

    ``queue`` is one of ``QUEUES`` or a GPU worker's own queue ``gpu.<nodename>``; embedded mode
    has one in-process GPU pool, so there every ``gpu.*`` queue is ``gpu``.
    """
    own_gpu_queue = queue.startswith(OWN_GPU_QUEUE_PREFIX) and len(queue) > len(OWN_GPU_QUEUE_PREFIX)
    if queue not in QUEUES and not own_gpu_queue:
        raise ValueError(f"unknown queue {queue!r}: choose one of {', '.join(QUEUES)} or gpu.<worker>")
    if settings.EMBEDDED:
        return _executor("gpu" if own_gpu_queue else queue).submit(_run_embedded, task, args, kwargs)
    return task.apply_async(args=args, kwargs=kwargs, queue=queue)
