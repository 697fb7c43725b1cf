"""Fault tests on a real stack in subprocesses (``live_stack``, ``fault_kit``): daphne, a Celery GPU
worker and a PRIVATE ``redis-server``; the client signs in over HTTP and speaks to the real socket
over TCP, recording every acknowledged ``mask`` and ``track_progress``. One ``kill -9`` of each
kind (``bench/bench_faults.py`` runs many): the page must be told why it paused, work again within
5 s of the killed process being back, and every mask it was told about must be in the database
with the revision it was told.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from annotator.models import Role, Video
from annotator.services.videos import create_video_from_path, ingest_video
from engine.protocol import MAX_MESSAGE_BYTES
from fixtures.synthetic import preset, write_video

from . import fault_kit
from .conftest import _wait_for_other_db_sessions_to_close, run, services_only, worker_database_url
from .live_stack import RedisServer, sign_in, stack_env

pytestmark = [services_only, pytest.mark.services, pytest.mark.django_db(transaction=True)]

PASSWORD = "fault-password-0123"
#: Long enough (1,800 frames) that a track still runs when a killed server's socket stops being
#: renewed (5 s), also on a quiet machine.
SPEC = preset("tiny", width=320, height=180, num_frames=1800, num_objects=2, fps=24.0)
RECOVERY_S = 5.0


@pytest.fixture(scope="module")
def long_mp4(tmp_path_factory) -> Path:
    return write_video(SPEC, tmp_path_factory.mktemp("faults") / "long.mp4")


@pytest.fixture
def page(tmp_path: Path, settings, make_user, make_project, long_mp4) -> Any:
    """A page (``fault_kit.Page``) on a running stack with its own Redis; everything stops at the end."""
    redis = RedisServer(tmp_path / "redis.log").start()
    user = make_user("ann")
    # The server hashes with its default hasher, not this run's fast test hasher (few iterations: quick).
    user.password = PBKDF2PasswordHasher().encode(PASSWORD, "faultsalt0123456", iterations=1000)
    user.save(update_fields=["password"])
    project = make_project(members={user: Role.ANNOTATOR}, annotation_fps=24)
    video = create_video_from_path(project, long_mp4, schedule_ingest=False)
    ingest_video(video.id)
    video.refresh_from_db()
    assert video.status == Video.Status.READY and video.stride == 1
    env = stack_env(database_url=worker_database_url(), redis_url=redis.url(0), data_dir=settings.DATA_DIR,
                    MASKLET_SEGMENTER="classical", MASKLET_WORKER_HEARTBEAT_S=str(fault_kit.HEARTBEAT_SECONDS))
    stack = None
    try:
        stack = fault_kit.Stack.start(env, tmp_path, redis)
        path = f"/ws/projects/{project.slug}/videos/{video.id}/annotate/"
        points = fault_kit.click_points(SPEC, video.annotated_frame_indices())
        the_page = fault_kit.Page(stack, path, sign_in(stack.url, user.username, PASSWORD), points)
        the_page.video = video
        yield the_page
    finally:
        if stack is not None:
            stack.stop()
        redis.stop()
        _wait_for_other_db_sessions_to_close()


def check(page: Any, outcomes: list[fault_kit.Outcome]) -> None:
    """Nothing acknowledged lost, every process alive, each recovery within ``RECOVERY_S``."""
    page.close_record()
    assert all(p.alive() for p in page.stack.processes()), [p.log()[-2000:] for p in page.stack.processes()]
    assert len(page.acked.masks) >= 4  # the clicks, at least
    assert not page.acked.lost(page.video), "acknowledged but not stored"
    for outcome in outcomes:
        assert outcome.recovery_s < RECOVERY_S, outcome
    assert django_settings.REDIS_URL != page.stack.redis.url(0)  # the run's own Redis was never touched


def scenario(page: Any, *kinds: str) -> list[fault_kit.Outcome]:
    async def go() -> list[fault_kit.Outcome]:
        await page.start()
        for _ in range(3):
            await page.click()
        outcomes = [await fault_kit.run_kill(kind, page) for kind in kinds]
        await page.ws.close()
        return outcomes

    return run(go)


def test_kill_9_of_each_kind_loses_nothing_and_the_page_is_told_and_works_within_5_s(page):
    """One stack, one page, one kill of each kind in turn (each in the middle of a track):

    - the GPU worker restarted at once: it beats under the same name before the old key expires,
      so only its incarnation tells the page that the track it held is gone (it used to hang);
    - the GPU worker restarted late;
    - the server: the page reconnects, and the orphaned track stops on the worker by itself;
    - Redis: the same socket goes on, a new socket opens at once (no 1011), and the socket's
      watchdog still sees the worker restarted after it (it used to die with Redis).
    """
    kinds = ("worker-fast", "worker-slow", "server", "redis", "worker-fast")
    outcomes = scenario(page, *kinds)
    check(page, outcomes)
    assert [o.kind for o in outcomes] == list(kinds)
    assert [o.told for o in outcomes if o.kind.startswith("worker")] == ["worker lost"] * 3
    assert "socket closed" in outcomes[2].told
    assert "its socket is gone" in page.stack.worker.log(), "the orphaned track did not stop"
    assert "interrupted" in outcomes[3].told


def test_frames_over_the_protocol_limit_get_too_large_and_over_the_transport_limit_a_close_frame(page):
    import websockets

    transport_limit = django_settings.DAPHNE_WEBSOCKET_MAX_FRAME_SIZE
    assert transport_limit > MAX_MESSAGE_BYTES

    async def go() -> None:
        await page.start()
        for size in (MAX_MESSAGE_BYTES + 1, transport_limit - 1024):
            msg_id = await page.ws.send("ping", pad="x" * size)
            reply = await page.ws.until(lambda m: m["type"] in ("error", "pong"), 30)
            assert reply["type"] == "error" and reply["code"] == "too_large", (msg_id, reply)
        assert (await page.ws.request("ping"))["type"] == "pong"  # still open
        await page.ws.connection.send(json.dumps({"v": 1, "type": "ping", "pad": "x" * transport_limit}))
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            await asyncio.wait_for(page.ws.connection.recv(), 30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009, closed.value

    run(go)
