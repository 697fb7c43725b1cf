"""Routing one annotation socket's model messages to the worker that holds its live session.

A live segmenter session lives in one worker process (``engine.workers``), so every model message
of a socket must reach that process. A ``SessionRouter`` is the socket's half of that: it sends
each envelope to the owner's own queue, or to the shared ``gpu`` queue while no worker has named
itself (later messages wait, so they reach the same worker), and follows the replies.

Fail-over (services mode): a watchdog checks the heartbeats of the workers holding this socket's
messages. A worker whose heartbeat is gone, or that beats as another incarnation (restarted under
the same name: the work the killed process held is lost all the same), is given up on: a running
``track`` is sent again to the shared queue (frames already stored are simply written again), other
edits in flight get error ``worker_lost``. While a track runs, the watchdog also tells the workers
that this socket is alive (``heartbeat.keep_socket_alive``): when the server dies with it, the track
stops on its own. Embedded mode has one in-process pool: everything goes to ``gpu``, always alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from engine import heartbeat, protocol, workers
from engine.dispatch import submit
from engine.envelope import SessionEnvelope, SessionReply
from engine.session_flags import abandon_op, abandon_session, request_cancel
from engine.session_replies import track_stopped

logger = logging.getLogger(__name__)

#: The task that serves a session message on a worker (``annotator.tasks.session_message``).
SESSION_TASK = "annotator.session_message"
#: Tries of a Redis call on connect, and the wait after the first failure (doubling).
CONNECT_ATTEMPTS, CONNECT_RETRY_SECONDS = 5, 0.1


def off_loop(function: Any) -> Any:
    """Run a blocking call (cache, broker) off the event loop, not on the database thread."""
    return sync_to_async(function, thread_sensitive=False)


async def retrying(call: Callable[[], Awaitable[Any]], what: str) -> Any:
    """``await call()``, tried again a few times when it fails: right after a Redis restart the
    first commands on pooled connections fail, the next ones work."""
    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        try:
            return await call()
        except Exception as error:
            if attempt == CONNECT_ATTEMPTS:
                raise
            logger.warning("%s failed (%s); trying again (%d of %d)", what, error, attempt + 1, CONNECT_ATTEMPTS)
            await asyncio.sleep(CONNECT_RETRY_SECONDS * 2 ** (attempt - 1))


class SessionRouter:
    """The model messages of one socket (``session_id``) in flight, and the worker that serves them.

    ``send_to_page`` sends a protocol message to the socket's page.
    """

    def __init__(self, session_id: str, send_to_page: Callable[[dict[str, Any]], Awaitable[None]]):
        self.session_id = session_id
        self.send_to_page = send_to_page
        #: op -> {"envelope", "type", "queue", "worker", "incarnation"} of model messages not finally
        #: answered: "incarnation" is the process expected to serve it (None until known).
        self.in_flight: dict[str, dict[str, Any]] = {}
        self.waiting: list[SessionEnvelope] = []  # model messages held until a worker names itself
        self.assigning = False
        self.owner: str | None = workers.SHARED_QUEUE
        self.owner_incarnation: str | None = None
        self._watchdog: asyncio.Future | None = None

    async def start(self, video_id: int, user_id: int) -> None:
        """Find the worker still holding this person's session on the video (a reloaded page goes back
        to it), and watch the workers (services mode)."""
        if settings.EMBEDDED:
            return
        self.owner, self.owner_incarnation = await retrying(
            off_loop(lambda: workers.session_owner(video_id, user_id)), "reading the session owner")
        self._watchdog = asyncio.ensure_future(self._watch())

    async def close(self) -> None:
        """The socket is gone: its queued messages are skipped, a running track stops (what it stored stays)."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        await off_loop(abandon_session)(self.session_id)

    def tracking(self) -> bool:
        return any(entry["type"] == "track" for entry in self.in_flight.values())

    async def cancel(self, op: str) -> None:
        """Ask the worker running ``op`` (one of this socket's) to stop."""
        if op not in self.in_flight:
            raise protocol.ProtocolError("not_found", "No running operation of yours has that op.")
        await off_loop(request_cancel)(op)

    async def send(self, envelope: SessionEnvelope) -> None:
        """Send a new model message: to the worker holding the session, or held until one has named itself."""
        if envelope.watched:
            await off_loop(heartbeat.keep_socket_alive)(self.session_id)
        self.in_flight[envelope.op] = {"envelope": envelope, "type": envelope.message["type"], "queue": None,
                                       "worker": None, "incarnation": None}
        if self.owner is None and self.assigning:
            self.waiting.append(envelope)
            return
        try:
            await self._submit(envelope)
        except Exception:
            self.in_flight.pop(envelope.op, None)  # never sent: a track must not stay "running"
            raise

    async def _submit(self, envelope: SessionEnvelope) -> None:
        queue = self.owner or workers.SHARED_QUEUE
        entry = self.in_flight[envelope.op]
        if self.owner is None:
            self.assigning = True
            entry["envelope"] = envelope = envelope.again(assign=True)
            await self.send_to_page(protocol.message("worker", state="assigning"))
        entry["queue"] = queue
        entry["incarnation"] = self.owner_incarnation if self.owner is not None else None
        if settings.EMBEDDED:
            submit(SESSION_TASK, envelope.wire(), queue=queue)
        else:
            await off_loop(submit)(SESSION_TASK, envelope.wire(), queue=queue)

    async def take_reply(self, reply: SessionReply) -> bool:
        """A worker's reply: learn the owner (sending what waited for it); False when it is for a
        message answered already, or from a delivery given up on (the page must not see it)."""
        entry = self.in_flight.get(reply.op)
        if entry is None or entry["envelope"].attempt != reply.attempt:
            return False
        if reply.worker:
            entry["worker"], entry["incarnation"] = reply.worker, reply.incarnation
            if self.owner == reply.worker:
                self.owner_incarnation = reply.incarnation or self.owner_incarnation
            else:
                self.owner, self.owner_incarnation = reply.worker, reply.incarnation
                self.assigning = False
                waiting, self.waiting = self.waiting, []
                for envelope in waiting:
                    await self._submit(envelope)
        if reply.final:
            self.in_flight.pop(reply.op, None)
        elif reply.message.get("type") == "track_progress":  # what it stored so far, should it stop
            entry["done"], entry["total"] = reply.message["done"], reply.message["total"]
        return True

    async def interrupted(self) -> None:
        """The channel layer (Redis) went away: replies to messages in flight may be lost with it. Say
        so, so the page does them again (what the worker did commit is stored, and shown on reload)."""
        if not settings.EMBEDDED:
            self.owner, self.owner_incarnation = None, None
        self.assigning = False
        self.waiting = []
        for op, entry in list(self.in_flight.items()):
            self.in_flight.pop(op)
            await off_loop(abandon_op)(op, entry["envelope"].attempt)
            if entry["type"] == "track":  # it stops; what it stored stays
                text = track_stopped("The connection to the model workers was interrupted while tracking",
                                     entry.get("done", 0), entry.get("total", 0), reported=True)
            else:
                text = ("The connection to the model workers was interrupted before this was confirmed; "
                        "please do it again.")
            await self.send_to_page(protocol.error("worker_lost", text, re=entry["envelope"].message.get("id")))

    async def _watch(self) -> None:
        """Keep this socket's track alive on its worker and move in-flight work off a worker that is
        gone. A failing check (Redis away) is tried again at the next tick: the watchdog outlives any
        outage."""
        interval = heartbeat.watchdog_seconds()
        while True:
            await asyncio.sleep(interval)
            if not self.in_flight:
                continue
            try:
                # Bounded: a call stuck on a connection Redis dropped must not stop the watchdog for good.
                await asyncio.wait_for(self._check_workers(), timeout=30)
            except Exception as error:
                logger.warning("watchdog of session %s: %s; checking again in %.1f s", self.session_id, error, interval)

    async def _check_workers(self) -> None:
        if self.tracking():
            await off_loop(heartbeat.keep_socket_alive)(self.session_id)
        held: dict[str, list[str]] = {}  # worker queue -> ops it holds (or was sent)
        for op, entry in self.in_flight.items():
            queue = entry["worker"] or entry["queue"]
            if queue and queue != workers.SHARED_QUEUE:
                held.setdefault(queue, []).append(op)
        if not held:
            return
        beating = await off_loop(heartbeat.worker_incarnations)(list(held))
        for queue, ops in held.items():
            now = beating[queue]
            lost = []
            for op in ops:
                entry = self.in_flight.get(op)
                if entry is None:
                    continue
                if now is not None and entry["incarnation"] is None:
                    entry["incarnation"] = now  # sent before the worker named itself: it is this one
                if now is None or entry["incarnation"] != now:
                    lost.append(op)
            if lost:
                await self._worker_lost(queue, lost, restarted=now is not None)

    async def _worker_lost(self, lost: str, ops: list[str], *, restarted: bool = False) -> None:
        """``lost``'s process is gone (``restarted``: another process beats under its name): its
        ``ops`` are given up on; a track is sent again to the shared queue, other edits fail in words."""
        logger.warning("worker %s %s: moving session %s", lost, "restarted" if restarted else "lost", self.session_id)
        if self.owner == lost:
            self.owner, self.owner_incarnation = None, None
            self.assigning = False
        await self.send_to_page(protocol.message("worker", state="lost"))
        for op in ops:
            entry = self.in_flight.get(op)
            if entry is None:
                continue
            envelope = entry["envelope"]
            await off_loop(abandon_op)(op, envelope.attempt)
            if entry["type"] == "track":
                entry["envelope"] = envelope = envelope.again(attempt=envelope.attempt + 1)
                entry["worker"], entry["incarnation"] = None, None
                if self.owner is None and self.assigning:
                    self.waiting.append(envelope)
                else:
                    await self._submit(envelope)
            else:
                self.in_flight.pop(op)
                await self.send_to_page(protocol.error(
                    "worker_lost", "The model worker stopped before finishing this; it was not saved. "
                                   "Please do it again.", re=envelope.message.get("id")))
