"""Fault tests on a real stack in subprocesses (``live_stack``): Daphne, a Celery GPU worker and a
PRIVATE ``redis-server`` that the test restarts; the client signs in over HTTP and speaks to the
real socket over TCP, recording every acknowledged ``mask`` and ``track_progress``.

A Redis restart loses everything in Redis (queues, channel layer, cache: owners, heartbeats,
flags). What must hold: the page can reconnect once Redis is back (a new socket works, and the
server and worker carry on without a restart), and every mask the client was told about is in the
database with the revision it was told.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from annotator.models import MaskFrameRevision, Role

from .conftest import run, services_only, worker_database_url
from .live_stack import LiveSocket, RedisServer, sign_in, stack_env, start_server, start_worker

pytestmark = [services_only, pytest.mark.services, pytest.mark.django_db(transaction=True)]

PASSWORD = "fault-password-0123"
POINT = {"x": 80.0, "y": 48.0}


@pytest.fixture
def stack(tmp_path: Path, settings, make_user, make_project, make_ready_video) -> Any:
    """(redis, base url, user, video, processes) on a private Redis; everything stops at the end."""
    redis = RedisServer(tmp_path / "redis.log").start()
    user = make_user("ann")
    # The server hashes with its default hasher, not this run's fast test hasher (few iterations: quick).
    user.password = PBKDF2PasswordHasher().encode(PASSWORD, "faultsalt0123456", iterations=1000)
    user.save(update_fields=["password"])
    video = make_ready_video(make_project(members={user: Role.ANNOTATOR}))
    env = stack_env(database_url=worker_database_url(), redis_url=redis.url(0), data_dir=settings.DATA_DIR,
                    MASKLET_SEGMENTER="classical", MASKLET_WORKER_HEARTBEAT_S="3")
    processes = []
    try:
        server, url = start_server(env, tmp_path / "daphne.log")
        processes.append(server)
        processes.append(start_worker(env, "faults", tmp_path / "worker.log"))
        yield redis, url, user, video, processes
    finally:
        for process in reversed(processes):
            process.stop()
        redis.stop()
        from .conftest import _wait_for_other_db_sessions_to_close

        _wait_for_other_db_sessions_to_close()


class Acknowledged:
    """Every mask the client was told is stored: (object, frame, revision) -> counts."""

    def __init__(self) -> None:
        self.masks: dict[tuple[int, int, int], str] = {}

    def record(self, messages: list[dict[str, Any]]) -> None:
        for msg in messages:
            if msg.get("type") == "mask" and "re" in msg:
                self.masks[(msg["object_id"], msg["frame"], msg["revision"])] = msg["counts"]
            elif msg.get("type") == "track_progress":
                for mask in msg["masks"]:
                    self.masks[(mask["object_id"], mask["frame"], mask["revision"])] = mask["counts"]


async def connect_when_possible(url: str, path: str, cookie: str, timeout: float = 60) -> LiveSocket:
    """What the page does: retry the socket until the server takes it again."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await LiveSocket.connect(url, path, cookie, timeout=10)
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def request_when_possible(ws: LiveSocket, type_: str, timeout: float = 60, **fields: Any) -> dict[str, Any]:
    """Around the restart a model message may be lost with the old queues, or answered ``worker_lost``
    (its reply could not be confirmed): the page sends it again."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            reply = await ws.request(type_, timeout=10, **fields)
            if reply["type"] != "error" or reply["code"] != "worker_lost":
                return reply
        except TimeoutError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{type_} not answered in {timeout} s: {ws.received[-5:]}")


def test_redis_restart_mid_session_reconnects_and_loses_nothing_acknowledged(stack):
    redis, url, user, video, processes = stack
    cookie = sign_in(url, user.username, PASSWORD)
    path = f"/ws/projects/{video.project.slug}/videos/{video.id}/annotate/"
    acked = Acknowledged()
    frames = video.annotated_frame_indices()

    async def scenario() -> None:
        ws = await LiveSocket.connect(url, path, cookie)
        object_id = (await ws.request("add_object"))["masklet"]["object_id"]
        for frame in frames[:3]:
            mask = await ws.request("click", object_id=object_id, frame=frame, positive=True, **POINT)
            assert mask["type"] == "mask", mask
        done = await ws.request("track", frame=0, direction="forward", timeout=120)
        assert done["type"] == "track_done" and done["written"] == len(frames) - 3, done
        acked.record(ws.received)

        redis.restart(down_seconds=1.0)

        # The old socket may or may not survive; the page opens a new one and goes on editing.
        try:
            await ws.close()
        except Exception:
            pass
        again = await connect_when_possible(url, path, cookie)
        hello = again.received[0]
        assert [m["object_id"] for m in hello["masklets"]] == [object_id]
        lock = await again.request("lock", object_id=object_id)
        assert lock["type"] == "object", lock
        for frame in frames[3:]:
            mask = await request_when_possible(again, "click", object_id=object_id, frame=frame, positive=True,
                                               x=70.0, y=40.0)
            assert mask["type"] == "mask", mask
        done = await request_when_possible(again, "track", frame=frames[-1], direction="backward",
                                           overwrite_human=False, timeout=120)
        assert done["type"] == "track_done" and not done["cancelled"], done
        acked.record(again.received)
        await again.close()

    run(scenario)
    assert all(process.alive() for process in processes), [p.log()[-2000:] for p in processes]
    stored = {(r.masklet.object_id, r.frame_index, r.revision): r.rle_counts
              for r in MaskFrameRevision.objects.filter(masklet__video=video).select_related("masklet")}
    assert len(acked.masks) >= len(frames) + 3
    missing = {key: counts for key, counts in acked.masks.items() if stored.get(key) != counts}
    assert not missing, f"acknowledged but not stored: {sorted(missing)}"
    assert django_settings.REDIS_URL != redis.url(0)  # the run's own Redis was never touched
