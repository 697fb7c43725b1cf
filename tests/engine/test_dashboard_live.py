"""The dashboard socket follows a real run as the embedded server does: from its train child process.

A run queued by ``training.start_run`` is executed in a child process supervised by the embedded
``train`` pool (``engine.dispatch``, ``engine.jobs``), and its broadcasts travel from the child to
that pool's thread and on to the in-memory channel layer of the socket's event loop. The
dashboard socket alone must be enough for that (no annotation socket registered the loop first),
and every log line must reach it as it is stored, so the page's log grows while the run trains.
"""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings

from annotator.models import Membership, Role
from engine import channel_bridge
from engine.models import TrainingRun
from engine.protocol import DASHBOARD_MESSAGE
from loop import training
from loop.routing import websocket_urlpatterns

# What this checks is the embedded server's path (train thread pool -> in-memory layer on the
# socket's loop); in services mode nothing in the test process consumes the train queue.
pytestmark = pytest.mark.skipif(not settings.EMBEDDED,
                                reason="embedded mode only: the run executes on the in-process train pool")


@pytest.mark.django_db(transaction=True)
def test_a_runs_progress_and_log_lines_reach_the_dashboard_socket_as_they_happen(loop_project, monkeypatch):
    monkeypatch.setattr(channel_bridge, "_server_loop", None)  # no annotation socket has connected yet
    project = loop_project(train=1, val=0, slug="live")
    admin = Membership.objects.get(project=project, role=Role.ADMIN).user

    async def scenario() -> tuple[int, list[dict]]:
        socket = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/projects/{project.slug}/models/")
        socket.scope["user"] = admin
        connected, _ = await socket.connect(timeout=5)
        assert connected
        assert await socket.receive_json_from(timeout=5) == {"type": "hello", "run": None}
        run = await database_sync_to_async(training.start_run)(project, admin)  # runs on the train pool
        events: list[dict] = []
        while not events or events[-1].get("status") not in ("done", "failed", "cancelled"):
            # The run starts in a child process (Django, torch, SAM 2 imported afresh): room on a loaded machine.
            events.append(await socket.receive_json_from(timeout=120))
        await socket.disconnect()
        return run.pk, events

    run_id, events = async_to_sync(scenario)()
    run = TrainingRun.objects.get(pk=run_id)
    assert run.status == "done", run.log
    assert all(DASHBOARD_MESSAGE.validate_python(e).type == "run" and e["run"] == run_id for e in events)
    assert [e["step"] for e in events if "step" in e] == [1, 2]
    lines = [e["log"] for e in events if "log" in e]
    stored = run.log.splitlines(keepends=True)
    # Every line the run appended while it ran, in order, as stored: after the queued line, before the
    # lines that the run's final transaction writes together with its status (the page re-reads those).
    assert lines == stored[1:1 + len(lines)]
    assert [text for text in ("started on", "clips loaded", "fine-tuning", "step 1/2 loss", "step 2/2 loss",
                              "checkpoint written", "registered without an evaluation")
            if not any(text in line for line in lines)] == []
    assert "registered candidate" in stored[-1]
