"""Heavy jobs (training, auto masklets, loading a checkpoint): their memory budget, their estimates,
and, in embedded mode, the child processes that run them so the web server never holds a model.

Budget: ``MASKLET_JOB_MEMORY_MB`` (default half of this machine's memory). Every heavy job
estimates its peak from its settings before it starts (``estimate_training_mb``,
``estimate_inference_mb``) and is refused in words when the estimate exceeds the budget
(``check_budget``). The estimates are fitted to peaks measured by ``bench/bench_job_memory.py``
(``ru_maxrss`` of a real run per setting); the child's real memory is watched as well, so a wrong
estimate still cannot take the machine down.

Embedded mode (``engine.dispatch.submit``): a task whose Celery options name a ``child_lost``
handler runs in a fresh ``spawn`` child process, supervised by a thread of its queue's pool
(``run_in_child``). The supervisor relays the child's channel-layer sends to the server's in-memory
layer, kills the child when its RSS (with its own children) passes the budget, and when the child
ends without finishing its task (killed, out of memory, crashed) calls ``child_lost(*args, reason)``
so the job ends with the reason in words. ``stop(task, *args)`` kills a job's child (cancel).
Children watch their parent and exit when it is gone, so a killed server leaves no orphan training;
a server that stops (Ctrl-C, SIGTERM) kills them itself rather than wait for their jobs to end.
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import thread as _pool_threads  # noqa: F401  (its exit hook must be registered before ours)
from pathlib import Path
from typing import Any

import psutil
from django.conf import settings

from engine import channel_bridge

logger = logging.getLogger(__name__)

#: How often the supervisor reads its child's memory (s): at the 250 MB/s a runaway run grew, the
#: child can overshoot its budget by ~60 MB before it is killed.
WATCH_INTERVAL = 0.25
#: RSS of a process with torch and SAM 2 imported, before any model (MB; ``ru_maxrss`` after import).
PROCESS_FLOOR_MB = 620
#: Model sizes relative to sam2.1_hiera_t (parameter counts: 38.9 M, 46 M, 80.8 M, 224.4 M): what
#: the model, its gradients, AdamW's state and the activations scale with.
MODEL_SCALE = {"sam2.1_hiera_t": 1.0, "sam2.1_hiera_s": 1.18, "sam2.1_hiera_b+": 2.08, "sam2.1_hiera_l": 5.77}
#: Fine-tuning on CPU, float32, fitted to the peaks ``bench/bench_job_memory.py`` measured for
#: sam2.1_hiera_t at 128-384 px on 2- and 4-frame windows (table in bench/README.md), as an upper
#: bound: peak = floor + model + frames x (per frame + per pixel x objects). The model part
#: (weights, gradients, AdamW state, the build's transients) is 690 MB; each frame of the window
#: adds 60 MB (prompt simulation, memory attention) and 5,800 bytes per pixel of the model's input
#: (encoder activations kept for the backward pass), each object past the first 35 % of that more
#: (measured: +30 %). It overestimates by up to 1.2x in the measured range.
TRAIN_MODEL_MB = 690.0
TRAIN_FRAME_MB = 60.0
TRAIN_BYTES_PER_PIXEL_FRAME = 5800.0
TRAIN_EXTRA_OBJECT_SHARE = 0.35
#: Inference (auto masklets, evaluation, loading a checkpoint), fitted the same way: the model
#: (235 MB) plus one frame's encoder activations (460 bytes per pixel) and the tracked frames'
#: memories (~80 KB per frame and object at 256 px, bench/README.md's session benchmark).
INFER_MODEL_MB = 235.0
INFER_BYTES_PER_PIXEL = 460.0
MEMORY_BYTES_PER_PIXEL_FRAME_OBJECT = 80_000 / 256**2


class OverBudget(Exception):
    """A job whose estimated peak exceeds the budget; the message says by how much and what to change."""


def _config_key(model_config: str) -> str:
    name = str(model_config).rsplit("/", 1)[-1].removesuffix(".yaml")
    return name if name.startswith("sam2.1") else name.replace("sam2_", "sam2.1_")


def budget_mb() -> int:
    """``MASKLET_JOB_MEMORY_MB``, or half of this machine's memory."""
    configured = int(getattr(settings, "JOB_MEMORY_MB", 0) or 0)
    return configured if configured > 0 else psutil.virtual_memory().total // 2**21


def estimate_training_mb(model_config: str, image_size: int, clip_length: int, max_objects: int = 1, *,
                         device: str = "cpu") -> float:
    """Peak RSS (MB) of fine-tuning ``model_config`` at ``image_size`` on windows of ``clip_length`` frames.

    On CUDA the activations and optimiser state live on the GPU: this process holds the model's
    CPU copy while it loads.
    """
    scale = MODEL_SCALE.get(_config_key(model_config), max(MODEL_SCALE.values()))
    if device == "cuda":
        return PROCESS_FLOOR_MB + TRAIN_MODEL_MB * scale
    objects = 1 + TRAIN_EXTRA_OBJECT_SHARE * max(0, max_objects - 1)
    per_frame = TRAIN_FRAME_MB + TRAIN_BYTES_PER_PIXEL_FRAME * image_size**2 * objects / 2**20
    return PROCESS_FLOOR_MB + scale * (TRAIN_MODEL_MB + per_frame * clip_length)


def estimate_inference_mb(model_config: str, image_size: int, frames: int = 1, objects: int = 1) -> float:
    """Peak RSS (MB) of running ``model_config`` at ``image_size`` over ``frames`` frames with ``objects`` objects."""
    scale = MODEL_SCALE.get(_config_key(model_config), max(MODEL_SCALE.values()))
    encoder = INFER_BYTES_PER_PIXEL * image_size**2 / 2**20
    memories = MEMORY_BYTES_PER_PIXEL_FRAME_OBJECT * image_size**2 * frames * objects / 2**20
    return PROCESS_FLOOR_MB + scale * (INFER_MODEL_MB + encoder) + memories


def training_device() -> str:
    """``cuda`` when jobs train on a CUDA GPU (``settings.TRAIN_ON_GPU``), otherwise ``cpu``."""
    return "cuda" if settings.TRAIN_ON_GPU else "cpu"


def check_budget(what: str, estimate_mb: float, advice: str) -> None:
    """Refuse (``OverBudget``) a job whose estimate exceeds the budget, saying what it would need."""
    budget = budget_mb()
    if estimate_mb > budget:
        raise OverBudget(f"{what} would need about {estimate_mb:,.0f} MB of memory, more than the job budget of "
                         f"{budget:,} MB (MASKLET_JOB_MEMORY_MB); {advice}")


# -- child processes (embedded mode) ----------------------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parent.parent
_children: dict[tuple[str, tuple], subprocess.Popen] = {}
_stopped: set[tuple[str, tuple]] = set()
_live: set[subprocess.Popen] = set()  # every child this process supervises (jobs and calls)
_exiting = False
_lock = threading.Lock()


def _stop_children_at_exit() -> None:
    """The server is stopping (its main thread has ended: Ctrl-C, SIGTERM): kill its children. Python
    waits for the pool threads that supervise them before it exits, and a child (a training run)
    outlives its supervisor's wait by hours; killed, each job ends lost, saying the server stopped."""
    global _exiting
    with _lock:
        _exiting = True
        children = list(_live)
    for child in children:
        child.kill()


# Python runs these hooks, last registered first, before it joins the threads of every thread pool
# (concurrent.futures registers that join on import, above this one).
threading._register_atexit(_stop_children_at_exit)  # type: ignore[attr-defined]


def runs_in_child(task: Any) -> bool:
    """Whether embedded mode runs ``task`` in a child process (its Celery options name ``child_lost``)."""
    return bool(getattr(task, "child_lost", None))


def _key(task_name: str, args: tuple) -> tuple[str, tuple]:
    return task_name, tuple(args)


def stop(task: Any, *args: Any) -> bool:
    """Kill the child running ``task(*args)`` in this process, if there is one (cancel). True when killed."""
    key = _key(task.name, args)
    with _lock:
        child = _children.get(key)
        if child is None or child.poll() is not None:
            return False
        _stopped.add(key)
    child.kill()
    return True


def _settings_for_child() -> dict[str, Any]:
    """The settings this process runs with that a fresh import would not give (test overrides, the
    test database's name), so the child works on the same database and folders."""
    from django.db import connections

    module = importlib.import_module(_settings_module())
    overrides: dict[str, Any] = {}
    for name in dir(settings):
        if not name.isupper() or name == "DATABASES":
            continue
        value = getattr(settings, name)
        try:
            if getattr(module, name, object()) == value:
                continue
            pickle.dumps(value)
        except Exception:
            continue
        overrides[name] = value
    overrides["DATABASES"] = {alias: dict(connections[alias].settings_dict) for alias in connections}
    return overrides


def _settings_module() -> str:
    """This process's settings module (``settings.SETTINGS_MODULE`` reads None under test overrides)."""
    return os.environ.get("DJANGO_SETTINGS_MODULE") or "config.settings"


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(70)  # the server is gone: its job ends with it (start-up recovery fails the run)


def child_main() -> None:
    """Entry point of a job's child process (``python -c``): reads its orders from stdin, reports on the
    pipe whose descriptor is its first argument."""
    from multiprocessing.connection import Connection

    orders = pickle.load(sys.stdin.buffer)
    events = Connection(int(sys.argv[1]), readable=False)
    threading.Thread(target=_watch_parent, args=(orders["parent"],), name="masklet-parent-watch",
                     daemon=True).start()
    os.environ["DJANGO_SETTINGS_MODULE"] = orders["settings_module"]
    for name, value in orders["settings"].items():
        setattr(settings, name, value)
    if orders.get("apps", True):
        import django

        django.setup()
    else:  # settings only (``call_in_child(apps=False)``): logging as django.setup() configures it, no app
        from django.utils.log import configure_logging

        configure_logging(settings.LOGGING_CONFIG, settings.LOGGING)
    if "task" in orders:
        from celery import current_app as app  # the project's app: django.setup() imported its settings' package

        channel_bridge.relay_to(events.send)
        app.loader.import_default_modules()
        result = app.tasks[orders["task"]].apply(args=orders["args"], kwargs=orders["kwargs"])
        if result.failed():
            logger.error("job %s%r failed: %s", orders["task"], orders["args"], result.result)
        events.send(("done", None, None))
    else:
        try:
            events.send(("returned", None, _import(orders["call"])(*orders["args"])))
        except Exception as error:
            events.send(("raised", None, error))
    events.close()


def _start(orders: dict[str, Any]) -> tuple[subprocess.Popen, Any]:
    from multiprocessing import Pipe

    orders = {**orders, "settings_module": _settings_module(), "settings": _settings_for_child(),
              "parent": os.getpid()}
    payload = pickle.dumps(orders)
    receiver, sender = Pipe(duplex=False)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    child = subprocess.Popen([sys.executable, "-c", "from engine.jobs import child_main; child_main()",
                              str(sender.fileno())], stdin=subprocess.PIPE, pass_fds=[sender.fileno()],
                             cwd=REPO_ROOT, env=env)
    sender.close()
    with _lock:
        _live.add(child)
        if _exiting:  # started while the server stops: it would only hold the exit up
            child.kill()
    try:
        child.stdin.write(payload)
        child.stdin.close()
    except BrokenPipeError:  # it died at once; its exit status says so
        pass
    return child, receiver


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    for each in [process, *process.children(recursive=True)]:
        try:
            total += each.memory_info().rss
        except psutil.Error:
            pass
    return total


def _supervise(child: subprocess.Popen, events: Any, budget: int,
               on_event: Callable[[str, Any, Any], None]) -> tuple[int, bool]:
    """Wait for ``child`` to end, handing its events to ``on_event`` and killing it above ``budget`` MB.
    Returns its peak RSS (bytes, with its own children) and whether it was killed for memory."""
    try:
        process: psutil.Process | None = psutil.Process(child.pid)
    except psutil.NoSuchProcess:  # it died at once: its exit status says why
        process = None
    peak, over, open_ = 0, False, True
    while open_ or child.poll() is None:
        if open_:
            try:
                while events.poll(WATCH_INTERVAL if child.poll() is None else 0):
                    on_event(*events.recv())
            except (EOFError, OSError):  # the child closed its end (or died): nothing more will come
                open_ = False
            except Exception:  # a message cut off by a kill: the rest is lost with the child
                logger.warning("a message from job process %s could not be read", child.pid, exc_info=True)
                open_ = False
            if child.poll() is not None:
                open_ = False
        else:
            try:
                child.wait(WATCH_INTERVAL)
            except subprocess.TimeoutExpired:
                pass
        if child.poll() is None and process is not None:
            try:
                rss = _tree_rss(process)
            except psutil.Error:
                rss = 0
            peak = max(peak, rss)
            if rss > budget * 2**20:
                over = True
                child.kill()
    events.close()
    with _lock:
        _live.discard(child)
    return peak, over


def _over_budget(peak: int, budget: int) -> str:
    return (f"its process used {peak / 2**20:,.0f} MB, more than the job memory budget of {budget:,} MB "
            "(MASKLET_JOB_MEMORY_MB), and was stopped")


def _death(exitcode: int | None) -> str:
    if _exiting:
        return "its process was stopped with the server"
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        if -exitcode == signal.SIGKILL:
            return f"its process was killed ({name}: out of memory, or stopped by hand)"
        return f"its process was stopped by {name}"
    return f"its process exited with status {exitcode} before finishing"


def run_in_child(task: Any, args: tuple, kwargs: dict, queue: str) -> str:
    """Run ``task(*args, **kwargs)`` in a child process and supervise it (called on the queue's pool thread).

    Returns how it ended: ``done``, ``stopped`` (``stop``), ``over budget`` or ``lost``.
    """
    key = _key(task.name, args)
    budget = budget_mb()
    child, events = _start({"task": task.name, "args": tuple(args), "kwargs": dict(kwargs)})
    with _lock:
        _children[key] = child
        _stopped.discard(key)
    done = False

    def on_event(kind: str, target: Any, event: Any) -> None:
        nonlocal done
        if kind == "done":
            done = True
        elif kind == "send":
            channel_bridge.send(target, event)
        elif kind == "group_send":
            channel_bridge.group_send(target, event)

    try:
        peak, over = _supervise(child, events, budget, on_event)
    finally:
        with _lock:
            _children.pop(key, None)
            stopped = key in _stopped
            _stopped.discard(key)
    logger.info("job %s%r ended in child %s on %s (exit %s, peak %.0f MB)", task.name, args, child.pid, queue,
                child.returncode, peak / 2**20)
    if done and child.returncode == 0:
        return "done"
    reason = _over_budget(peak, budget) if over else "cancelled: its process was stopped" if stopped else \
        _death(child.returncode)
    try:
        _import(task.child_lost)(*args, reason)
    except Exception:
        logger.exception("could not end job %s%r after its process ended (%s)", task.name, args, reason)
    return "over budget" if over else "stopped" if stopped else "lost"


class ChildFailed(Exception):
    """A function run by ``call_in_child`` did not return: its process died or outgrew the budget."""


def call_in_child(function: str, *args: Any, apps: bool = True) -> Any:
    """Call ``function`` (a dotted path) with ``args`` in a fresh child process, under the memory budget,
    and return its result or raise its exception. For model loading asked for by a web request.

    ``apps=False``: the child reads settings but loads none of the project's Django apps (no models,
    admin, channels or Celery tasks), a third of its start-up: for a function whose module needs
    nothing else."""
    budget = budget_mb()
    child, events = _start({"call": function, "args": tuple(args), "apps": apps})
    outcome: list[tuple[str, Any]] = []
    peak, over = _supervise(child, events, budget, lambda kind, _, value: outcome.append((kind, value)))
    if outcome and outcome[0][0] == "raised":
        raise outcome[0][1]
    if outcome:
        return outcome[0][1]
    raise ChildFailed(_over_budget(peak, budget) if over else _death(child.returncode))


def _import(dotted: str) -> Callable[..., Any]:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)
