"""The retraining dashboard's socket: live progress of a project's training runs (admins only)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from annotator.consumers import ProjectConsumer
from annotator.permissions import Action
from engine import channel_bridge
from engine.models import TrainingRun
from loop.dashboard import _run
from loop.training import training_group


class TrainingConsumer(ProjectConsumer):
    """Sends ``{"type": "hello", "run": {...} | null}`` (the active run), then ``{"type": "run", ...}``
    for every progress step, log line, status change and promotion that ``loop.training`` broadcasts,
    and ``{"type": "download", ...}`` for each step of a checkpoint download (``loop.downloads``)."""

    required_action = Action.MANAGE_MODELS

    async def on_authorized(self) -> None:
        if settings.EMBEDDED:
            # Runs broadcast from worker threads; the in-memory layer must be reached on this loop
            # (``engine.channel_bridge``), also when no annotation socket has registered it yet.
            channel_bridge.register_server_loop(asyncio.get_running_loop())
        self._group = training_group(self.project.id)
        await self.join(self._group)
        await self.send_json({"type": "hello", "run": await database_sync_to_async(self._active_run)()})

    def _active_run(self) -> dict[str, Any] | None:
        run = TrainingRun.objects.filter(project=self.project, status__in=TrainingRun.ACTIVE).first()
        return _run(run) if run is not None else None

    def layer_groups(self) -> list[str]:
        return [self._group] if getattr(self, "_group", None) else []

    async def disconnect(self, code: int) -> None:
        if getattr(self, "_group", None) and self.channel_layer is not None:
            with contextlib.suppress(Exception):
                await self.channel_layer.group_discard(self._group, self.channel_name)

    async def training_event(self, message: dict[str, Any]) -> None:
        """Group message from ``loop.training.broadcast``; the role is checked again before relaying."""
        if not await self.is_allowed():
            await self.deny()
            return
        await self.send_json({"type": "run", **message["event"]})

    async def download_event(self, message: dict[str, Any]) -> None:
        """Group message from ``loop.downloads.broadcast``: a checkpoint download's progress."""
        if not await self.is_allowed():
            await self.deny()
            return
        await self.send_json({"type": "download", **message["event"]})
