"""The retraining dashboard's socket: live progress of a project's training runs (admins only)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from annotator.consumers import ProjectConsumer
from annotator.permissions import Action
from engine import channel_bridge, protocol
from engine.models import TrainingRun
from loop.dashboard import _run
from loop.training import training_group


class TrainingConsumer(ProjectConsumer):
    """Sends ``protocol.DashboardMessage``: ``hello`` (the active run), then ``run`` for every progress step,
    log line, status change and promotion that ``loop.training`` broadcasts, ``verifier`` when a verifier
    training changes status and ``download`` for each step of a checkpoint download (``loop.downloads``)."""

    required_action = Action.MANAGE_MODELS

    async def on_authorized(self) -> None:
        if settings.EMBEDDED:
            # Runs broadcast from worker threads; the in-memory layer must be reached on this loop
            # (``engine.channel_bridge``), also when no annotation socket has registered it yet.
            channel_bridge.register_server_loop(asyncio.get_running_loop())
        self._group = training_group(self.project.id)
        await self.join(self._group)
        run = await database_sync_to_async(self._active_run)()
        await self.send_json(protocol.dashboard_message(protocol.DashboardHello(type="hello", run=run)))

    def _active_run(self) -> dict[str, Any] | None:
        run = TrainingRun.objects.filter(project=self.project, status__in=TrainingRun.ACTIVE).first()
        return _run(run) if run is not None else None

    def layer_groups(self) -> list[str]:
        return [self._group] if getattr(self, "_group", None) else []

    async def disconnect(self, code: int) -> None:
        if getattr(self, "_group", None) and self.channel_layer is not None:
            with contextlib.suppress(Exception):
                await self.channel_layer.group_discard(self._group, self.channel_name)

    async def dashboard_message(self, message: dict[str, Any]) -> None:
        """Group message from ``loop.training.notify_dashboards``, relayed as built; the role is checked again
        first."""
        if not await self.is_allowed():
            await self.deny()
            return
        await self.send_json(message["message"])
