"""WebSocket consumers. Each one is a ``ProjectConsumer``: it checks the user's role in the
project (``annotator.permissions.has_permission``) when the socket opens and again before
every message it handles or pushes, so a member who is removed stops receiving at once.

``VideoStatusConsumer`` (``/ws/projects/<slug>/videos/``) pushes video status and ingest
progress. It reads the database at a modest interval (fast while something is ingesting, slow
otherwise), so it is correct whoever changes a video; ``notify_video_changed(video)`` wakes it
at once and can be called from ingest (sync code, any process: it goes through the channel
layer, so it works in embedded and services mode alike).

``AnnotationConsumer`` (``/ws/projects/<slug>/videos/<video_id>/annotate/``) is one annotation
session: protocol v1 (``engine.protocol``), object/lock messages served here, model messages
routed to the GPU worker holding the live session (``annotator.sessions``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user_model
from pydantic import ValidationError

from annotator import selectors, sessions
from annotator.models import Masklet, Project, Video
from annotator.permissions import Action, has_permission, role_allows, role_of
from annotator.services import annotation, queues
from annotator.services.annotation import EditRefused
from annotator.tasks import session_message
from engine import channel_bridge, heartbeat, protocol, workers
from engine.dispatch import submit
from engine.envelope import SessionEnvelope, SessionReply
from engine.segmenters import ServingModel, serving_model

logger = logging.getLogger(__name__)

#: Close code sent when the user may not (or may no longer) use the socket.
CLOSE_FORBIDDEN = 4403
#: Close code for a socket opened by someone not signed in.
CLOSE_SIGNED_OUT = 4401


class ProjectConsumer(AsyncJsonWebsocketConsumer):
    """Base for per-project sockets: the URL has a ``slug``; ``required_action`` guards it.

    The channel layer's receive survives a Redis outage (``channel_receive``): instead of the
    socket dying with a 1011, it waits for Redis, joins its groups again (a restarted Redis has
    none) and calls ``on_layer_recovered``. Joining a group on connect (``join``) is tried again
    too: right after a Redis restart the pool's first connections are dead.
    """

    required_action: Action = Action.VIEW_PROJECT
    project: Project | None = None
    #: Seconds between attempts to reach the channel layer again, doubling up to the second value.
    layer_retry = (0.2, 5.0)

    @property
    def channel_receive(self) -> Any:
        return self._resilient_receive

    @channel_receive.setter
    def channel_receive(self, receive: Any) -> None:
        """Channels sets this to ``layer.receive(channel)`` when the consumer starts: wrap it."""
        self._layer_receive = receive

    async def _resilient_receive(self) -> dict[str, Any]:
        delay = self.layer_retry[0]
        failed = False
        while True:
            try:
                if failed:
                    for group in self.layer_groups():
                        await self.channel_layer.group_add(group, self.channel_name)
                    await self.on_layer_recovered()
                    failed = False
                return await self._layer_receive()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # Redis restarting or unreachable: wait, it comes back
                logger.warning("channel layer unavailable (%s); retrying in %.1f s", error, delay)
                failed = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.layer_retry[1])

    def layer_groups(self) -> list[str]:
        """The groups this socket belongs to (joined again after a channel layer outage)."""
        return []

    async def join(self, group: str) -> None:
        """Join ``group``, trying again while the channel layer does not answer (it raises after that)."""
        if self.channel_layer is not None:
            await _retrying(lambda: self.channel_layer.group_add(group, self.channel_name), f"joining {group}")

    async def on_layer_recovered(self) -> None:
        """Called once the channel layer answers again after an outage."""

    async def connect(self) -> None:
        slug = self.scope["url_route"]["kwargs"]["slug"]
        self.project = await database_sync_to_async(Project.objects.filter(slug=slug).first)()
        if self.project is None or not await self.is_allowed():
            await self.refuse(CLOSE_FORBIDDEN)
            return
        await self.accept()
        await self.on_authorized()

    async def refuse(self, code: int) -> None:
        """Accept, then close with ``code`` (4401 instead of 4403 for someone signed out): a browser is
        told a close code only on an accepted socket (a refused handshake reads as 1006, "connection
        lost"), and the code is what makes a page stop reconnecting and say why. An unknown project
        and one the user may not see get the same code: nothing about it leaks."""
        user = self.scope.get("user")
        await self.accept()
        signed_out = code == CLOSE_FORBIDDEN and (user is None or not user.is_authenticated)
        await self.close(code=CLOSE_SIGNED_OUT if signed_out else code)

    async def is_allowed(self) -> bool:
        """Re-read the user and the membership now: roles can change while a socket is open."""
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or self.project is None:
            return False
        return await database_sync_to_async(_still_has_permission)(user.pk, self.project, self.required_action)

    async def deny(self) -> None:
        await self.send_json(self.denial("You no longer have access to this project."))
        await self.close(code=CLOSE_FORBIDDEN)

    def denial(self, text: str) -> dict[str, Any]:
        """The message saying why the socket closes (in the socket's own protocol)."""
        return {"type": "error", "error": text}

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not await self.is_allowed():
            await self.deny()
            return
        if not isinstance(content, dict) or not isinstance(content.get("type"), str):
            await self.send_json({"type": "error", "error": 'Messages are JSON objects with a "type".'})
            return
        await self.handle(content)

    async def on_authorized(self) -> None:
        """Called once the socket is accepted."""

    async def handle(self, content: dict[str, Any]) -> None:
        """Called for every message from an authorised user."""
        await self.send_json({"type": "error", "error": f"Unknown message type {content['type']!r}."})


def _still_has_permission(user_id: int, project: Project, action: Action) -> bool:
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    return user is not None and has_permission(user, project, action)


def video_group(project_id: int) -> str:
    return f"project-{project_id}-videos"


def notify_video_changed(video: Video) -> None:
    """Tell open video-status sockets of the video's project to re-read now (sync, never raises)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(video_group(video.project_id), {"type": "video.changed", "video_id": video.id})
    except Exception:  # a missed nudge only delays the update until the next poll
        logger.warning("could not notify video %s status watchers", video.id, exc_info=True)


class VideoStatusConsumer(ProjectConsumer):
    """Pushes ``{"type": "snapshot", "videos": [...]}`` once, then ``{"type": "video", "video": {...}}``
    for each video whose status, progress or metadata changed, and ``{"type": "removed", "id": n}``.
    The client may send ``{"type": "refresh"}`` to get a new snapshot."""

    required_action = Action.VIEW_PROJECT
    #: Seconds between database reads while a video is uploaded/ingesting, and otherwise.
    busy_interval = 1.0
    idle_interval = 5.0

    async def on_authorized(self) -> None:
        self._known: dict[int, dict[str, Any]] = {}
        self._wake = asyncio.Event()
        self._group = video_group(self.project.id)
        await self.join(self._group)
        videos = await self._read()
        self._known = {video["id"]: video for video in videos}
        await self.send_json({"type": "snapshot", "videos": videos})
        self._poller = asyncio.ensure_future(self._poll())

    def layer_groups(self) -> list[str]:
        return [self._group] if getattr(self, "_group", None) else []

    async def disconnect(self, code: int) -> None:
        poller = getattr(self, "_poller", None)
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        if getattr(self, "_group", None) and self.channel_layer is not None:
            await self.channel_layer.group_discard(self._group, self.channel_name)

    async def handle(self, content: dict[str, Any]) -> None:
        """The one message this socket takes: ``protocol.Refresh``."""
        try:
            protocol.Refresh.model_validate(content)
        except ValidationError:
            await self.send_json({"type": "error", "error": 'This socket takes only {"type": "refresh"}.'})
            return
        videos = await self._read()
        self._known = {video["id"]: video for video in videos}
        await self.send_json({"type": "snapshot", "videos": videos})
        self._wake.set()  # re-pick the poll interval: the client usually asks after an upload

    async def video_changed(self, event: dict[str, Any]) -> None:
        """Group message from ``notify_video_changed``: read now instead of at the next tick."""
        self._wake.set()

    async def _read(self) -> list[dict[str, Any]]:
        return await database_sync_to_async(selectors.video_snapshot)(self.project)

    async def _poll(self) -> None:
        while True:
            busy = any(v["status"] in (Video.Status.UPLOADED, Video.Status.INGESTING) for v in self._known.values())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.busy_interval if busy else self.idle_interval)
            self._wake.clear()
            if not await self.is_allowed():
                await self.deny()
                return
            await self._push_changes(await self._read())

    async def _push_changes(self, videos: list[dict[str, Any]]) -> None:
        current = {video["id"]: video for video in videos}
        for video_id, video in current.items():
            if self._known.get(video_id) != video:
                await self.send_json({"type": "video", "video": video})
        for video_id in self._known.keys() - current.keys():
            await self.send_json({"type": "removed", "id": video_id})
        self._known = current


# -- the annotation socket ----------------------------------------------------------------------

#: Close code for an unknown video, or one not ready for annotation.
CLOSE_NOT_FOUND = 4404


class AnnotationConsumer(ProjectConsumer):
    """One annotation session: ``/ws/projects/<slug>/videos/<video_id>/annotate/``.

    Speaks ``engine.protocol`` v1. Object and lock messages are served here with the
    services (database only); model messages go to the GPU worker holding this user's live
    session (``annotator.sessions``) through ``engine.dispatch``. Until a worker has named
    itself, later model messages wait here so they reach the same worker. In services mode a
    watchdog notices when that worker's heartbeat is gone: a running ``track`` is re-sent to
    the shared queue (frames already stored are simply written again), other edits in flight
    get error ``worker_lost``. A worker restarted under the same name beats again at once, but
    as another incarnation (``engine.heartbeat``): the work the killed process held is lost all
    the same. While a track runs, the watchdog also tells the workers that this socket is alive
    (``heartbeat.keep_socket_alive``): when the server dies with it, the track stops on its own.
    """

    required_action = Action.VIEW_PROJECT
    #: Seconds between permission re-checks before pushing other people's changes.
    push_check_interval = 2.0

    async def connect(self) -> None:
        kwargs = self.scope["url_route"]["kwargs"]
        self.project = await database_sync_to_async(Project.objects.filter(slug=kwargs["slug"]).first)()
        if self.project is None or not await self.is_allowed():
            await self.refuse(CLOSE_FORBIDDEN)
            return
        self.video = await database_sync_to_async(_ready_video)(self.project, int(kwargs["video_id"]))
        if self.video is None:
            await self.refuse(CLOSE_NOT_FOUND)
            return
        await self.accept()
        await self.on_authorized()

    async def on_authorized(self) -> None:
        user = self.scope["user"]
        self.user_id, self.username = user.pk, user.get_username()
        self.session_id = uuid.uuid4().hex
        self.frames = set(self.video.annotated_frame_indices())
        #: op -> {"envelope", "type", "queue", "worker", "incarnation"} of model messages not finally
        #: answered: "incarnation" is the process expected to serve it (None until known).
        self.in_flight: dict[str, dict[str, Any]] = {}
        self.waiting: list[dict[str, Any]] = []  # model messages held until a worker names itself
        self.assigning = False
        self._push_checked_at = 0.0
        self._push_allowed = True
        if settings.EMBEDDED:
            channel_bridge.register_server_loop(asyncio.get_running_loop())
            self.owner: str | None = workers.SHARED_QUEUE
            self.owner_incarnation: str | None = None
        else:
            self.owner, self.owner_incarnation = await _retrying(
                _blocking(lambda: workers.session_owner(self.video.pk, self.user_id)), "reading the session owner")
        self.group = sessions.annotation_group(self.video.pk)
        await self.join(self.group)
        hello, notice = await database_sync_to_async(self._hello)()
        await self.send_json(hello)
        if notice is not None:
            await self.send_json(notice)
        self._watchdog = None if settings.EMBEDDED else asyncio.ensure_future(self._watch())

    def layer_groups(self) -> list[str]:
        return [self.group] if getattr(self, "group", None) else []

    def denial(self, text: str) -> dict[str, Any]:
        return protocol.error("forbidden", text)

    async def on_layer_recovered(self) -> None:
        """Redis went away: replies to model messages in flight may be lost with it. Say so, so the
        page does them again (what the worker did commit is stored, and shown on reload)."""
        if not settings.EMBEDDED:
            self.owner, self.owner_incarnation = None, None
        self.assigning = False
        self.waiting = []
        for op, entry in list(self.in_flight.items()):
            self.in_flight.pop(op)
            await _blocking(sessions.abandon_op)(op, entry["envelope"].attempt)
            if entry["type"] == "track":  # it stops; what it stored stays
                text = sessions.track_stopped("The connection to the model workers was interrupted while tracking",
                                              entry.get("done", 0), entry.get("total", 0), reported=True)
            else:
                text = ("The connection to the model workers was interrupted before this was confirmed; "
                        "please do it again.")
            await self.send_json(protocol.error("worker_lost", text, re=entry["envelope"].message.get("id")))

    async def disconnect(self, code: int) -> None:
        if not hasattr(self, "session_id"):
            return  # refused at the handshake
        watchdog = getattr(self, "_watchdog", None)
        if watchdog is not None:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
        await self.channel_layer.group_discard(self.group, self.channel_name)
        # Queued model messages of this socket are skipped; a running track stops (what it stored stays).
        await _blocking(sessions.abandon_session)(self.session_id)

    def _hello(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The hello, and the error to send after it when the page cannot keep the model it asked for."""
        user = get_user_model().objects.get(pk=self.user_id)
        video, project = self.video, self.project
        serving, notice = self._page_model()
        #: The page keeps this version (None: the settings' model): every envelope carries it, so a
        #: rebuilt live session serves it too (``annotator.sessions.page_model``).
        self.model_version = serving.model_version_id
        hello = protocol.message(
            "hello", session=self.session_id, protocol=protocol.PROTOCOL_VERSION,
            user={"id": user.pk, "username": user.get_username()},
            can_edit=has_permission(user, project, Action.ANNOTATE),
            video={"id": video.pk, "name": video.name, "width": video.width, "height": video.height,
                   "frames": video.annotated_frame_indices()},
            labels=list(project.labels or []), model=serving.name,
            lock_seconds=settings.LOCK_SECONDS,
            masklets=[selectors.masklet_to_dict(m, user) for m in selectors.masklets_for_video(video)],
        ) | {"model_version": serving.model_version_id,  # null included: the page asks for it on reconnect
             "model_fallback": serving.fallback}
        return hello, notice

    def _page_model(self) -> tuple[ServingModel, dict[str, Any] | None]:
        """The project's serving model, or the version a reconnecting page asks to keep
        (``?model_version=``) when it may (``sessions.model_for_page``); and the error telling the
        page why not, when it may not."""
        try:
            asked, version_id = protocol.requested_model_version(self.scope.get("query_string", b""))
        except protocol.ProtocolError as refused:
            serving = serving_model(self.project)
            return serving, protocol.error(refused.code, f"{refused.message} This page uses {serving.name}.")
        if not asked:
            return serving_model(self.project), None
        serving, why = sessions.model_for_page(self.project, version_id)
        return serving, None if why is None else protocol.error("model_changed", why)

    # -- from the browser ---------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """Every frame gets an answer; nothing the browser sends can crash the socket."""
        msg: dict[str, Any] = {}
        try:
            if text_data is None:
                raise protocol.ProtocolError("bad_message", "Send JSON text frames; binary frames are not used.")
            msg = protocol.parse_client_message(text_data)
            can_view, can_edit = await database_sync_to_async(_permissions)(self.user_id, self.project)
            if not can_view:
                await self.deny()
                return
            if msg["type"] in protocol.EDIT_TYPES and not can_edit:
                raise protocol.ProtocolError("read_only", "Your role in this project can view but not edit.")
            protocol.check_against_video(msg, self.video.width, self.video.height, self.frames)
            if msg["type"] in protocol.WORKER_TYPES:
                await self._to_worker(msg)
            else:
                await self._serve(msg)
        except protocol.ProtocolError as refused:
            re = msg.get("id") if msg else (protocol.message_id(text_data) if refused.code != "too_large" else None)
            await self.send_json(protocol.error(refused.code, refused.message, re=re))
        except EditRefused as refused:
            await self.send_json(protocol.error(refused.code, refused.message, re=msg.get("id")))
        except Exception:
            logger.exception("annotation message %s failed", msg.get("type"))
            await self.send_json(protocol.error("bad_message", "The server could not handle this message; "
                                                               "nothing was changed.", re=msg.get("id")))

    async def _serve(self, msg: dict[str, Any]) -> None:
        """Object, lock and ping messages: the services do the work, here and now."""
        if msg["type"] == "cancel":
            if msg["op"] not in self.in_flight:
                raise protocol.ProtocolError("not_found", "No running operation of yours has that op.")
            await _blocking(sessions.request_cancel)(msg["op"])
            return
        reply, shared = await database_sync_to_async(self._serve_sync)(msg)
        await self.send_json(protocol.message(reply.pop("type"), re=msg.get("id"), **reply))
        if shared is not None:
            await self.channel_layer.group_send(self.group, {
                "type": "annotate.broadcast", "exclude": self.channel_name,
                "message": protocol.message(shared.pop("type"), by=self.username, **shared)})

    def _serve_sync(self, msg: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Returns (the reply's fields, the broadcast's fields or None)."""
        user = get_user_model().objects.get(pk=self.user_id)
        kind = msg["type"]
        if kind == "ping":
            return {"type": "pong", "renewed": queues.renew_locks(self.video, user)}, None
        if kind == "add_object":
            masklet = annotation.create_masklet(self.video, user, label=msg["label"])
        else:
            masklet = self._masklet(msg["object_id"])
            if kind == "delete_object":
                annotation.delete_masklet(masklet, user)
                return {"type": "object_deleted", "object_id": msg["object_id"]}, {
                    "type": "object_deleted", "object_id": msg["object_id"]}
            act = {"update_object": lambda m: annotation.update_masklet(m, user, label=msg["label"]),
                   "lock": lambda m: annotation.acquire_lock(m, user),
                   "unlock": lambda m: annotation.release_lock(m, user),
                   "submit": lambda m: annotation.submit_masklet(m, user),
                   "reopen": lambda m: annotation.reopen_masklet(m, user)}[kind]
            masklet = act(masklet)
        masklet = selectors.masklets_for_video(self.video).get(pk=masklet.pk)
        return ({"type": "object", "masklet": selectors.masklet_to_dict(masklet, user)},
                {"type": "object", "masklet": selectors.masklet_to_dict(masklet, None)})

    def _masklet(self, object_id: int) -> Masklet:
        masklet = Masklet.objects.filter(video=self.video, object_id=object_id).select_related("video__project").first()
        if masklet is None:
            raise EditRefused("not_found", f"Object {object_id} does not exist on this video.")
        return masklet

    async def _to_worker(self, msg: dict[str, Any]) -> None:
        """Model messages: to the worker holding the session, or held until one has named itself."""
        if msg["type"] == "track" and any(entry["type"] == "track" for entry in self.in_flight.values()):
            raise protocol.ProtocolError("busy", "A track is already running: wait for it or cancel it.")
        op = uuid.uuid4().hex
        # A track in services mode is watched: it stops on its own if this socket's server dies
        # (nobody would hear it any more).
        watched = msg["type"] == "track" and not settings.EMBEDDED
        envelope = SessionEnvelope(session=self.session_id, reply_channel=self.channel_name, user_id=self.user_id,
                                   username=self.username, video_id=self.video.pk, op=op, attempt=0,
                                   model_version=self.model_version, message=msg, watched=watched)
        if watched:
            await _blocking(heartbeat.keep_socket_alive)(self.session_id)
        self.in_flight[op] = {"envelope": envelope, "type": msg["type"], "queue": None, "worker": None,
                              "incarnation": None}
        if self.owner is None and self.assigning:
            self.waiting.append(envelope)
            return
        try:
            await self._submit(envelope)
        except Exception:
            self.in_flight.pop(op, None)  # never sent: a track must not stay "running"
            raise

    async def _submit(self, envelope: SessionEnvelope) -> None:
        queue = self.owner or workers.SHARED_QUEUE
        entry = self.in_flight[envelope.op]
        if self.owner is None:
            self.assigning = True
            entry["envelope"] = envelope = envelope.again(assign=True)
            await self.send_json(protocol.message("worker", state="assigning"))
        entry["queue"] = queue
        entry["incarnation"] = self.owner_incarnation if self.owner is not None else None
        if settings.EMBEDDED:
            submit(session_message, envelope.wire(), queue=queue)
        else:
            await _blocking(submit)(session_message, envelope.wire(), queue=queue)

    # -- from workers and other sockets ---------------------------------------------------------

    async def session_reply(self, event: dict[str, Any]) -> None:
        """A worker's reply (``engine.channel_bridge``): learn the owner, forward the message."""
        reply = SessionReply.model_validate(event)
        entry = self.in_flight.get(reply.op)
        if entry is None or entry["envelope"].attempt != reply.attempt:
            return  # answered already, or from a delivery given up on
        if reply.repins:  # the page's version is gone: the worker fell back to this one
            self.model_version = reply.model_version
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
        await self.send_json(reply.message)

    async def annotate_broadcast(self, event: dict[str, Any]) -> None:
        """Someone else's change on this video (``by``): follow it live, if still allowed to see it."""
        if event.get("exclude") == self.channel_name:
            return
        now = time.monotonic()
        if now - self._push_checked_at > self.push_check_interval:
            self._push_allowed = await self.is_allowed()
            self._push_checked_at = now
        if not self._push_allowed:
            await self.deny()
            return
        msg = dict(event["message"])
        if msg.get("type") == "object":
            masklet = dict(msg["masklet"])
            masklet["locked_by_me"] = masklet.get("lock_holder") == self.username
            msg["masklet"] = masklet
        await self.send_json(msg)

    async def _watch(self) -> None:
        """Services mode: keep this socket's track alive on its worker and move in-flight work off a
        worker that is gone. A failing check (Redis away) is tried again at the next tick: the
        watchdog outlives any outage."""
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
        if any(entry["type"] == "track" for entry in self.in_flight.values()):
            await _blocking(heartbeat.keep_socket_alive)(self.session_id)
        held: dict[str, list[str]] = {}  # worker queue -> ops it holds (or was sent)
        for op, entry in self.in_flight.items():
            queue = entry["worker"] or entry["queue"]
            if queue and queue != workers.SHARED_QUEUE:
                held.setdefault(queue, []).append(op)
        if not held:
            return
        beating = await _blocking(heartbeat.worker_incarnations)(list(held))
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
        await self.send_json(protocol.message("worker", state="lost"))
        for op in ops:
            entry = self.in_flight.get(op)
            if entry is None:
                continue
            envelope = entry["envelope"]
            await _blocking(sessions.abandon_op)(op, envelope.attempt)
            if entry["type"] == "track":
                entry["envelope"] = envelope = envelope.again(attempt=envelope.attempt + 1)
                entry["worker"], entry["incarnation"] = None, None
                if self.owner is None and self.assigning:
                    self.waiting.append(envelope)
                else:
                    await self._submit(envelope)
            else:
                self.in_flight.pop(op)
                await self.send_json(protocol.error(
                    "worker_lost", "The model worker stopped before finishing this; it was not saved. "
                                   "Please do it again.", re=envelope.message.get("id")))


def _ready_video(project: Project, video_id: int) -> Video | None:
    video = selectors.video_in_project(project, video_id)
    return video if video is not None and video.status == Video.Status.READY else None


def _permissions(user_id: int, project: Project) -> tuple[bool, bool]:
    """(may view, may edit) for the user now, read again for every message: roles can change any time."""
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        return False, False
    role_now = role_of(user, project)
    return role_allows(user, role_now, Action.VIEW_PROJECT), role_allows(user, role_now, Action.ANNOTATE)


def _blocking(function: Any) -> Any:
    """Run a blocking call (cache, broker) off the event loop, not on the database thread."""
    return sync_to_async(function, thread_sensitive=False)


#: Tries of a Redis call on connect, and the wait after the first failure (doubling).
CONNECT_ATTEMPTS, CONNECT_RETRY_SECONDS = 5, 0.1


async def _retrying(call: Callable[[], Awaitable[Any]], what: str) -> Any:
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
