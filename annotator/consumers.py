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
from typing import Any

from asgiref.sync import async_to_sync
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
from engine import channel_bridge, protocol
from engine.envelope import SessionEnvelope, SessionReply
from engine.segmenters import ServingModel, serving_model
from engine.session_replies import annotation_group
from engine.session_routing import SessionRouter, retrying

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
            await retrying(lambda: self.channel_layer.group_add(group, self.channel_name), f"joining {group}")

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
    session (``annotator.sessions``) through the socket's ``engine.session_routing.SessionRouter``,
    which also moves them off a worker that is lost.
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
        self._push_checked_at = 0.0
        self._push_allowed = True
        if settings.EMBEDDED:
            channel_bridge.register_server_loop(asyncio.get_running_loop())
        self.router = SessionRouter(self.session_id, self.send_json)
        await self.router.start(self.video.pk, self.user_id)
        self.group = annotation_group(self.video.pk)
        await self.join(self.group)
        hello, notice = await database_sync_to_async(self._hello)()
        await self.send_json(hello)
        if notice is not None:
            await self.send_json(notice)

    def layer_groups(self) -> list[str]:
        return [self.group] if getattr(self, "group", None) else []

    def denial(self, text: str) -> dict[str, Any]:
        return protocol.error("forbidden", text)

    async def on_layer_recovered(self) -> None:
        await self.router.interrupted()

    async def disconnect(self, code: int) -> None:
        if not hasattr(self, "router"):
            return  # refused at the handshake
        await self.router.close()
        await self.channel_layer.group_discard(self.group, self.channel_name)

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
            await self.router.cancel(msg["op"])
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
        """Model messages: through the router, to the worker holding the session."""
        if msg["type"] == "track" and self.router.tracking():
            raise protocol.ProtocolError("busy", "A track is already running: wait for it or cancel it.")
        # A track in services mode is watched: it stops on its own if this socket's server dies
        # (nobody would hear it any more).
        watched = msg["type"] == "track" and not settings.EMBEDDED
        await self.router.send(SessionEnvelope(
            session=self.session_id, reply_channel=self.channel_name, user_id=self.user_id, username=self.username,
            video_id=self.video.pk, op=uuid.uuid4().hex, attempt=0, model_version=self.model_version, message=msg,
            watched=watched))

    # -- from workers and other sockets ---------------------------------------------------------

    async def session_reply(self, event: dict[str, Any]) -> None:
        """A worker's reply (``engine.channel_bridge``): the router learns the owner; forwarded to the page."""
        reply = SessionReply.model_validate(event)
        if not await self.router.take_reply(reply):
            return  # answered already, or from a delivery given up on
        if reply.repins:  # the page's version is gone: the worker fell back to this one
            self.model_version = reply.model_version
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
