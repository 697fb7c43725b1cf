"""WebSocket consumers. Each one is a ``ProjectConsumer``: it checks the user's role in the
project (``annotator.permissions.has_permission``) when the socket opens and again before
every message it handles or pushes, so a member who is removed stops receiving at once.

``VideoStatusConsumer`` (``/ws/projects/<slug>/videos/``) pushes video status and ingest
progress. It reads the database at a modest interval (fast while something is ingesting, slow
otherwise), so it is correct whoever changes a video; ``notify_video_changed(video)`` wakes it
at once and can be called from ingest (sync code, any process: it goes through the channel
layer, so it works in embedded and services mode alike).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model

from annotator import selectors
from annotator.models import Project, Video
from annotator.permissions import Action, has_permission

logger = logging.getLogger(__name__)

#: Close code sent when the user may not (or may no longer) use the socket.
CLOSE_FORBIDDEN = 4403


class ProjectConsumer(AsyncJsonWebsocketConsumer):
    """Base for per-project sockets: the URL has a ``slug``; ``required_action`` guards it."""

    required_action: Action = Action.VIEW_PROJECT
    project: Project | None = None

    async def connect(self) -> None:
        slug = self.scope["url_route"]["kwargs"]["slug"]
        self.project = await database_sync_to_async(Project.objects.filter(slug=slug).first)()
        if self.project is None or not await self.is_allowed():
            # Closing before accepting refuses the handshake (HTTP 403): nothing about the project leaks.
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.accept()
        await self.on_authorized()

    async def is_allowed(self) -> bool:
        """Re-read the user and the membership now: roles can change while a socket is open."""
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or self.project is None:
            return False
        return await database_sync_to_async(_still_has_permission)(user.pk, self.project, self.required_action)

    async def deny(self) -> None:
        await self.send_json({"type": "error", "error": "You no longer have access to this project."})
        await self.close(code=CLOSE_FORBIDDEN)

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
        if self.channel_layer is not None:
            await self.channel_layer.group_add(self._group, self.channel_name)
        videos = await self._read()
        self._known = {video["id"]: video for video in videos}
        await self.send_json({"type": "snapshot", "videos": videos})
        self._poller = asyncio.ensure_future(self._poll())

    async def disconnect(self, code: int) -> None:
        poller = getattr(self, "_poller", None)
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        if getattr(self, "_group", None) and self.channel_layer is not None:
            await self.channel_layer.group_discard(self._group, self.channel_name)

    async def handle(self, content: dict[str, Any]) -> None:
        if content["type"] == "refresh":
            videos = await self._read()
            self._known = {video["id"]: video for video in videos}
            await self.send_json({"type": "snapshot", "videos": videos})
            self._wake.set()  # re-pick the poll interval: the client usually asks after an upload
        else:
            await super().handle(content)

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
