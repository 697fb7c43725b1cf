"""Send to Channels sockets from synchronous code running on any thread, in both modes.

Workers (Celery tasks, or the embedded thread pool) answer WebSocket messages through the
channel layer. ``async_to_sync(layer.send)`` is not good enough for that:

- Embedded mode: ``InMemoryChannelLayer`` keeps ``asyncio`` queues bound to the server's event
  loop and is not thread-safe. A send from a worker thread must run ON that loop, so the
  consumer registers the loop (``register_server_loop``) and sends are scheduled there with
  ``asyncio.run_coroutine_threadsafe``.
- Services mode: ``channels_redis`` keeps its connection pool per event loop; a fresh loop per
  send (what ``async_to_sync`` does from a plain thread) would reconnect to Redis every time.
  One long-lived event-loop thread per process carries every send, so connections are reused.

Both calls block until the layer accepted the message (or ``timeout`` passed), so a caller that
sends after a commit knows the message is on its way. Failures are logged and reported as
``False``: a reply that cannot be delivered must not crash the worker that computed it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings

logger = logging.getLogger(__name__)

SEND_TIMEOUT = 10.0
#: A send that fails (Redis restarting, a dead pooled connection) is tried again this many times in all.
SEND_ATTEMPTS = 3
RETRY_SECONDS = 0.2

_lock = threading.Lock()
_server_loop: asyncio.AbstractEventLoop | None = None
_bridge_loop: asyncio.AbstractEventLoop | None = None
_bridge_pid: int | None = None
#: Services mode: broadcasts waiting to be sent, in order, by one task on the bridge loop.
_outbox: asyncio.Queue | None = None
_outbox_loop: asyncio.AbstractEventLoop | None = None
#: Embedded mode, in a job's child process (``engine.jobs``): sends go to the server through this.
_relay: Any = None


def relay_to(put: Any) -> None:
    """In a child process of the embedded server: hand every send to ``put((kind, target, event))``,
    which the supervising server thread delivers to its in-memory layer."""
    global _relay
    _relay = put


def register_server_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Embedded mode: the event loop the ASGI server (and its in-memory layer) runs on."""
    global _server_loop
    with _lock:
        _server_loop = loop


def _bridge() -> asyncio.AbstractEventLoop:
    """Services mode: this process's long-lived sending loop (a new one after a fork)."""
    global _bridge_loop, _bridge_pid
    with _lock:
        if _bridge_loop is None or _bridge_pid != os.getpid() or _bridge_loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="masklet-channel-bridge", daemon=True)
            thread.start()
            _bridge_loop, _bridge_pid = loop, os.getpid()
        return _bridge_loop


def _target_loop() -> asyncio.AbstractEventLoop | None:
    if settings.EMBEDDED:
        loop = _server_loop
        return loop if loop is not None and not loop.is_closed() and loop.is_running() else None
    return _bridge()


def _run(make: Any, what: str, timeout: float) -> bool:
    layer = get_channel_layer()
    if layer is None:
        return False
    loop = _target_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if loop is None:
        # Embedded mode without a registered server (a management command): nothing listens
        # on another loop, so a private one is fine.
        try:
            if running is not None:
                running.create_task(make(layer))
            else:
                asyncio.run(make(layer))
            return True
        except Exception:
            logger.warning("could not deliver %s", what, exc_info=True)
            return False
    if running is loop:
        # Called from the loop itself: waiting here would deadlock, so just schedule.
        loop.create_task(make(layer))
        return True
    for attempt in range(1, SEND_ATTEMPTS + 1):
        try:
            asyncio.run_coroutine_threadsafe(make(layer), loop).result(timeout)
            return True
        except Exception:
            # After a Redis restart the pool's first connections are dead: the next ones work.
            logger.warning("could not deliver %s (attempt %d of %d)", what, attempt, SEND_ATTEMPTS,
                           exc_info=attempt == SEND_ATTEMPTS)
            if attempt < SEND_ATTEMPTS:
                time.sleep(RETRY_SECONDS * attempt)
    return False


def send(channel: str, event: dict[str, Any], timeout: float = SEND_TIMEOUT) -> bool:
    """Send ``event`` to one consumer's channel; True once the layer accepted it."""
    if _relay is not None:
        _relay(("send", channel, event))
        return True
    return _run(lambda layer: layer.send(channel, event), f"message to {channel}", timeout)


def group_send(group: str, event: dict[str, Any], timeout: float = SEND_TIMEOUT) -> bool:
    """Send ``event`` to every consumer in ``group``; True once the layer accepted it."""
    if _relay is not None:
        _relay(("group_send", group, event))
        return True
    return _run(lambda layer: layer.group_send(group, event), f"message to group {group}", timeout)


async def _drain(outbox: asyncio.Queue) -> None:
    layer = get_channel_layer()
    while True:
        group, event = await outbox.get()
        try:
            await layer.group_send(group, event)
        except Exception:
            logger.warning("could not deliver a message to group %s", group, exc_info=True)


async def _open_outbox() -> asyncio.Queue:
    outbox: asyncio.Queue = asyncio.Queue()
    asyncio.get_running_loop().create_task(_drain(outbox))
    return outbox


def group_send_soon(group: str, event: dict[str, Any]) -> None:
    """Send ``event`` to ``group`` without waiting, in call order (services mode).

    For broadcasts to the other sockets on a video: they must not hold the worker (the next click
    waits behind them) and nobody acknowledges them; one sender task keeps them in order, so a
    viewer never sees an older revision after a newer one. Embedded mode sends as ``group_send``.
    """
    global _outbox, _outbox_loop
    if settings.EMBEDDED or get_channel_layer() is None:
        group_send(group, event)
        return
    loop = _bridge()
    try:
        with _lock:
            if _outbox is None or _outbox_loop is not loop:
                _outbox = asyncio.run_coroutine_threadsafe(_open_outbox(), loop).result(SEND_TIMEOUT)
                _outbox_loop = loop
            outbox = _outbox
        loop.call_soon_threadsafe(outbox.put_nowait, (group, event))
    except Exception:
        logger.warning("could not queue a message to group %s", group, exc_info=True)
