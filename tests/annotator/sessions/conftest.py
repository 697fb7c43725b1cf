"""Fixtures for live annotation sessions: READY videos, logged-in sockets on the real ASGI app,
and (services mode) a real GPU Celery worker subprocess.

``socket(user, video)`` opens ``/ws/projects/<slug>/videos/<id>/annotate/`` through
``config.routing.build_application()`` (session cookie, origin check, routing: all real) and returns an
``AnnotationSocket`` with small helpers; scenarios are ``async def`` run with ``run(...)``.

``gpu_worker`` (services mode) starts ``celery -A config worker -Q gpu -P solo -n <name>@%h``
against this run's test database, Redis and data dir, and waits for its heartbeat. It is a
factory: ``gpu_worker()`` starts one more worker (kill it with ``worker.kill()``, or
``worker.process.send_signal(...)``); every worker is stopped at the end of the test. Fault tests
build on it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import connection
from django.test import Client

from annotator import sessions
from annotator.models import Video
from annotator.services.videos import create_video_from_path, ingest_video
from engine import heartbeat, protocol, workers
from fixtures.synthetic import PRESETS, write_video

from .live_stack import Service, worker_command

REPO_ROOT = Path(__file__).resolve().parents[3]

embedded_only = pytest.mark.skipif(not django_settings.EMBEDDED, reason="embedded mode only (REDIS_URL is set)")
services_only = pytest.mark.skipif(django_settings.EMBEDDED,
                                   reason="needs REDIS_URL (services mode): starts a real Celery worker")


def run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    """Run an async scenario from a sync test (the project does not use pytest-asyncio)."""
    return async_to_sync(scenario)()


@pytest.fixture(autouse=True)
def fresh_session_state(settings, tmp_path: Path) -> Iterator[None]:
    """Each test: its own data dir, an empty channel layer, cache and worker session registry."""
    settings.DATA_DIR = tmp_path / "data"
    settings.MEDIA_ROOT = tmp_path / "data" / "media"
    settings.FRAMES_ROOT = tmp_path / "data" / "frames"
    settings.DATA_DIR.mkdir()
    channel_layers.backends.clear()
    sessions.registry.clear()
    if django_settings.EMBEDDED:
        cache.clear()
    yield
    sessions.registry.clear()


@pytest.fixture(scope="session")
def tiny_mp4(tmp_path_factory) -> Path:
    """160x96, 24 frames at 24 fps: 6 annotated frames (0, 4, ..., 20) at the default 6 fps."""
    return write_video(PRESETS["tiny"], tmp_path_factory.mktemp("video") / "tiny.mp4")


@pytest.fixture
def make_ready_video(tiny_mp4) -> Callable[..., Video]:
    """``make_ready_video(project) -> Video`` ingested synchronously (frames on disk, READY)."""

    def make(project) -> Video:
        video = create_video_from_path(project, tiny_mp4, schedule_ingest=False)
        ingest_video(video.id)
        video.refresh_from_db()
        assert video.status == Video.Status.READY, video.failure_reason
        return video

    return make


class AnnotationSocket:
    """A logged-in annotation socket with helpers to send protocol messages and wait for replies."""

    def __init__(self, communicator: WebsocketCommunicator):
        self.communicator = communicator
        self.received: list[dict[str, Any]] = []
        self._ids = iter(range(1, 10**6))

    async def send(self, type_: str, **fields: Any) -> int:
        """Send a v1 message with a fresh id; returns the id."""
        msg_id = next(self._ids)
        await self.communicator.send_json_to({"v": 1, "type": type_, "id": msg_id, **fields})
        return msg_id

    async def send_raw(self, text: str) -> None:
        await self.communicator.send_to(text_data=text)

    async def receive(self, timeout: float = 30) -> dict[str, Any]:
        """The next message, checked against the protocol's server messages (every socket test checks them)."""
        msg = json.loads(await self.communicator.receive_from(timeout=timeout))
        protocol.SERVER_MESSAGE.validate_python(msg)
        self.received.append(msg)
        return msg

    async def until(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict[str, Any]:
        """Receive until a message matches; the ones before it stay in ``received``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching message in {timeout} s; got {self.received[-5:]}")
            msg = await self.receive(timeout=left)
            if predicate(msg):
                return msg

    async def reply_to(self, msg_id: int, timeout: float = 60) -> dict[str, Any]:
        """The final reply to a message (``re`` = its id; not ``track_started``)."""
        return await self.until(lambda m: m.get("re") == msg_id and m["type"] != "track_started", timeout)

    async def request(self, type_: str, timeout: float = 60, **fields: Any) -> dict[str, Any]:
        return await self.reply_to(await self.send(type_, **fields), timeout)

    async def nothing_within(self, seconds: float) -> bool:
        return await self.communicator.receive_nothing(timeout=seconds)

    async def close(self) -> None:
        await self.communicator.disconnect()


@pytest.fixture
def open_socket(transactional_db) -> Callable[..., Awaitable[tuple[bool, Any, AnnotationSocket | None]]]:
    """``await open_socket(user, video) -> (connected, close_code, socket)``; hello is in ``received``."""
    from config.routing import build_application

    application = build_application()

    async def open_(user, video, path: str | None = None) -> tuple[bool, Any, AnnotationSocket | None]:
        cookie, default_path = await database_sync_to_async(_login)(user, video)
        path = path or default_path
        communicator = WebsocketCommunicator(application, path, headers=[
            (b"cookie", cookie.encode()), (b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")])
        connected, code = await communicator.connect(timeout=10)
        if not connected:
            return False, code, None
        first = await communicator.receive_output(timeout=30)
        if first["type"] == "websocket.close":  # refused: accepted, then closed with the reason's code
            return False, first.get("code"), None
        socket = AnnotationSocket(communicator)
        hello = json.loads(first["text"])
        protocol.SERVER_MESSAGE.validate_python(hello)
        socket.received.append(hello)
        assert hello["type"] == "hello", hello
        return True, None, socket

    return open_


def _login(user, video) -> tuple[str, str]:
    """A session cookie for ``user`` and the video's annotation socket path."""
    client = Client()
    client.force_login(user)
    name = django_settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}", f"/ws/projects/{video.project.slug}/videos/{video.id}/annotate/"


# -- services mode: a real GPU worker ------------------------------------------------------------


def worker_database_url() -> str:
    """This run's test database as a URL, for worker subprocesses."""
    db = connection.settings_dict
    auth = quote(db["USER"] or "postgres", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@dataclass
class WorkerProcess(Service):
    """A running ``celery worker -Q gpu`` subprocess; ``queue`` is its own ``gpu.<nodename>``.
    ``kill()`` is SIGKILL: no clean shutdown, the heartbeat key just expires."""

    nodename: str = ""
    queue: str = field(init=False)

    def __post_init__(self) -> None:
        self.queue = workers.queue_for_node(self.nodename)


@pytest.fixture
def gpu_worker(settings, tmp_path: Path, transactional_db) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory: ``gpu_worker(name=None, env=None, timeout=90) -> WorkerProcess`` once its heartbeat is seen."""
    started: list[WorkerProcess] = []

    def start(name: str | None = None, env: dict[str, str] | None = None, timeout: float = 90) -> WorkerProcess:
        name = name or f"w{len(started) + 1}-{uuid.uuid4().hex[:6]}"
        nodename = f"{name}@{os.uname().nodename}"
        full_env = {**os.environ, "DATABASE_URL": worker_database_url(), "REDIS_URL": django_settings.REDIS_URL,
                    "MASKLET_DATA_DIR": str(settings.DATA_DIR), "DJANGO_SETTINGS_MODULE": "config.settings",
                    "MASKLET_WORKER_HEARTBEAT_S": str(settings.WORKER_HEARTBEAT_SECONDS),
                    "MASKLET_SEGMENTER": settings.SEGMENTER, "MASKLET_SAM2_IMAGE_SIZE": str(settings.SAM2_IMAGE_SIZE),
                    **(env or {})}
        log_path = tmp_path / f"{name}.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(worker_command(nodename), cwd=REPO_ROOT, env=full_env, stdout=log,
                                       stderr=subprocess.STDOUT)
        worker = WorkerProcess(process, log_path, name, nodename)
        started.append(worker)
        deadline = time.monotonic() + timeout
        while not heartbeat.worker_incarnations([worker.queue])[worker.queue]:
            if not worker.alive():
                pytest.fail(f"worker {nodename} exited with {process.returncode}:\n{worker.log()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no heartbeat from {nodename} in {timeout} s:\n{worker.log()[-3000:]}")
            time.sleep(0.1)
        return worker

    yield start
    for worker in started:
        worker.stop()
    _wait_for_other_db_sessions_to_close()


def _wait_for_other_db_sessions_to_close(timeout: float = 10.0) -> None:
    """Worker connections end a moment after the process: let them, so the test DB can be dropped."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND pid <> pg_backend_pid()")
            if cursor.fetchone()[0] == 0:
                return
            time.sleep(0.1)
