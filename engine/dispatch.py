"""Send a Celery task to its queue, the same call in both modes.

Services mode: ``apply_async`` to the named queue; separate worker processes pick it up.
Embedded mode: each queue has its own pool (one worker for ``gpu`` and ``train``), so the web
request returns at once either way and the task code is the same. Heavy tasks, those whose Celery
options name a ``child_lost`` handler (training, auto masklets), run in a child process that the
pool's thread supervises (``engine.jobs.run_in_child``): the server never loads their model, a
cancel kills the child, and a child that dies ends its job with the reason. Light tasks (live
annotation messages, ingest, exports) run on the pool's thread in this process.

Always call ``submit`` after the rows the task reads are committed: use
``transaction.on_commit(lambda: submit(...))`` inside a transaction.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from celery import Task, current_app
from django.conf import settings
from django.db import close_old_connections

from engine.jobs import run_in_child, runs_in_child
from engine.jobs import stop as stop_child

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


def _run_in_child(task: Task, args: tuple, kwargs: dict, queue: str) -> str:
    try:
        return run_in_child(task, args, kwargs, queue)
    except Exception:
        logger.exception("embedded job %s%r could not be run in a child process", task.name, args)
        raise
    finally:
        close_old_connections()


def task_named(task: Task | str) -> Task:
    """A task, given as itself or by its registered name. Services name the tasks that run them, so a task
    module can import its service at the top without a cycle."""
    if not isinstance(task, str):
        return task
    if task not in current_app.tasks:
        current_app.loader.import_default_modules()  # what a worker does first: autodiscovery registers every task
    return current_app.tasks[task]


def submit(task: Task | str, *args: Any, queue: str = "cpu", **kwargs: Any) -> Future | Any:
    """Run ``task(*args, **kwargs)`` on ``queue`` (the task or its name); returns a Future (embedded) or an
    AsyncResult.

    ``queue`` is one of ``QUEUES`` or a GPU worker's own queue ``gpu.<nodename>``; embedded mode
    has one in-process GPU pool, so there every ``gpu.*`` queue is ``gpu``.
    """
    task = task_named(task)
    own_gpu_queue = queue.startswith(OWN_GPU_QUEUE_PREFIX) and len(queue) > len(OWN_GPU_QUEUE_PREFIX)
    if queue not in QUEUES and not own_gpu_queue:
        raise ValueError(f"unknown queue {queue!r}: choose one of {', '.join(QUEUES)} or gpu.<worker>")
    if settings.EMBEDDED:
        pool = _executor("gpu" if own_gpu_queue else queue)
        if runs_in_child(task):
            return pool.submit(_run_in_child, task, args, kwargs, queue)
        return pool.submit(_run_embedded, task, args, kwargs)
    return task.apply_async(args=args, kwargs=kwargs, queue=queue)


def stop(task: Task | str, *args: Any) -> bool:
    """Embedded mode: kill the child process running ``task(*args)`` (a cancel); True when one was killed.
    Services mode: False, the worker honours the job's cancel flag itself."""
    if not settings.EMBEDDED:
        return False
    return stop_child(task_named(task), *args)
