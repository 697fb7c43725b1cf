"""A real services-mode Masklet in subprocesses: private Redis, Daphne, Celery GPU workers, and a
WebSocket client that signs in over HTTP like the browser does.

Used by the fault tests (``test_faults.py``) and by ``bench/bench_session_overhead.py`` (which loads
this file by path), so both drive exactly the processes a deployment runs: nothing is in-process.

- ``RedisServer``: ``redis-server`` on a free port, no persistence, that can be ``restart``-ed on
  the same port (the Redis-restart fault).
- ``start_server(env)``: ``python -m engine.serve config.asgi:application`` (daphne) on a free
  port, up once ``/api/session/`` answers. ``start_worker(env, name)``: ``celery -A config worker
  -Q gpu -P solo``, up once its own heartbeat (its pid) is in Redis.
- ``sign_in(url, username, password)`` -> the session cookie; ``LiveSocket.connect(...)`` opens
  ``/ws/projects/<slug>/videos/<id>/annotate/`` with it and speaks protocol v1.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import protocol

REPO_ROOT = Path(__file__).resolve().parents[3]
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker_command(nodename: str) -> list[str]:
    """The GPU worker as deployed (solo pool: one model, one message at a time, no prefetch surprises)."""
    return [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "gpu", "-P", "solo", "-n", nodename,
            "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"]


@dataclass
class Service:
    """A subprocess with its log file."""

    process: subprocess.Popen
    log_path: Path
    name: str = ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def _spawn(command: list[str], env: dict[str, str], log_path: Path, name: str) -> Service:
    with log_path.open("a") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    return Service(process, log_path, name)


def _wait(what: str, ready: Callable[[], bool], service: Service | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():
                return
        except Exception:  # not up yet
            pass
        if service is not None and not service.alive():
            raise RuntimeError(f"{what} exited with {service.process.returncode}:\n{service.log()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not up in {timeout} s:\n{service.log()[-3000:] if service else ''}")
        time.sleep(0.1)


class RedisServer:
    """A private ``redis-server`` (no RDB, no AOF) on a fixed port, so it can be restarted in place."""

    def __init__(self, log_path: Path, port: int | None = None):
        self.port = port or free_port()
        self.log_path = log_path
        self.service: Service | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, db=db, socket_timeout=2)

    def start(self) -> RedisServer:
        self.service = _spawn([REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--daemonize", "no"], dict(os.environ), self.log_path, "redis")
        _wait("redis-server", lambda: bool(self.client().ping()), self.service, 30)
        return self

    def stop(self, kill: bool = False) -> None:
        if self.service is not None:
            self.service.kill() if kill else self.service.stop()

    def restart(self, down_seconds: float = 0.0) -> None:
        """SIGKILL and start again on the same port: everything in it (queues, keys) is gone."""
        self.stop(kill=True)
        time.sleep(down_seconds)
        self.start()


def stack_env(*, database_url: str, redis_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment every process of one stack shares (services mode: REDIS_URL set)."""
    env = {key: value for key, value in os.environ.items() if key not in ("MASKLET_PRODUCTION",)}
    env.update({"DATABASE_URL": database_url, "REDIS_URL": redis_url, "MASKLET_DATA_DIR": str(data_dir),
                "DJANGO_SETTINGS_MODULE": "config.settings", "MASKLET_ALLOWED_HOSTS": "127.0.0.1,localhost",
                "PYTHONUNBUFFERED": "1", **extra})
    return env


def start_server(env: dict[str, str], log_path: Path, timeout: float = 60,
                 port: int | None = None) -> tuple[Service, str]:
    """Daphne serving ``config.asgi:application`` (on ``port``: a restart keeps the page's URL);
    returns (service, base url)."""
    port = port or free_port()
    service = _spawn([sys.executable, "-m", "engine.serve", "-b", "127.0.0.1", "-p", str(port),
                      "config.asgi:application"],
                     env, log_path, "daphne")
    url = f"http://127.0.0.1:{port}"
    _wait("daphne", lambda: urllib.request.urlopen(f"{url}/api/session/", timeout=2).status == 200, service, timeout)
    return service, url


def heartbeat(redis_url: str, nodename: str) -> dict[str, Any] | None:
    """The worker's heartbeat (``engine.heartbeat.beat_worker``: pid, incarnation) as in Redis, or None."""
    import pickle

    import redis

    # Django's cache key for engine.heartbeat.worker_heartbeat_key; its Redis cache pickles values.
    raw = redis.Redis.from_url(redis_url, socket_timeout=2).get(f":1:masklet:worker:gpu.{nodename}")
    return pickle.loads(raw) if raw is not None else None


def start_worker(env: dict[str, str], name: str, log_path: Path, timeout: float = 90) -> Service:
    """A GPU worker; returns once ITS heartbeat (this process's pid) is in the stack's Redis: a
    worker restarted under the same name finds its predecessor's key still there."""
    nodename = f"{name}@{os.uname().nodename}"
    service = _spawn(worker_command(nodename), env, log_path, nodename)

    def beating() -> bool:
        beat = heartbeat(env["REDIS_URL"], nodename)
        return beat is not None and beat["pid"] == service.process.pid

    _wait(f"worker {nodename}", beating, service, timeout)
    return service


def sign_in(url: str, username: str, password: str) -> str:
    """Sign in through ``/api/session/`` as a script would; returns the Cookie header for the socket."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(f"{url}/api/session/", timeout=10) as response:
        token = json.load(response)["csrf_token"]
    request = urllib.request.Request(f"{url}/api/session/", method="POST",
                                     data=json.dumps({"username": username, "password": password}).encode(),
                                     headers={"Content-Type": "application/json", "X-CSRFToken": token,
                                              "Referer": f"{url}/"})
    with opener.open(request, timeout=10) as response:
        assert json.load(response)["authenticated"], "sign-in refused"
    return "; ".join(f"{cookie.name}={cookie.value}" for cookie in jar)


class LiveSocket:
    """An annotation socket over real TCP (``websockets``); every message received is kept in order."""

    def __init__(self, connection: Any):
        self.connection = connection
        self.received: list[dict[str, Any]] = []
        self._next_id = 0

    @classmethod
    async def connect(cls, url: str, path: str, cookie: str, timeout: float = 30) -> LiveSocket:
        from websockets.asyncio.client import connect

        connection = await connect(url.replace("http://", "ws://") + path, open_timeout=timeout,
                                   additional_headers={"Cookie": cookie}, origin=url, max_size=2**24)
        socket_ = cls(connection)
        hello = await socket_.receive(timeout)
        assert hello["type"] == "hello", hello
        return socket_

    async def send(self, type_: str, **fields: Any) -> int:
        self._next_id += 1
        await self.connection.send(json.dumps({"v": 1, "type": type_, "id": self._next_id, **fields}))
        return self._next_id

    async def receive(self, timeout: float = 30) -> dict[str, Any]:
        import asyncio

        msg = json.loads(await asyncio.wait_for(self.connection.recv(), timeout))
        protocol.SERVER_MESSAGE.validate_python(msg)  # what the server sends is the protocol
        self.received.append(msg)
        return msg

    async def until(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            msg = await self.receive(max(0.01, deadline - time.monotonic()))
            if predicate(msg):
                return msg

    async def reply_to(self, msg_id: int, timeout: float = 60) -> dict[str, Any]:
        """The final reply to a message (``re`` = its id; not ``track_started``)."""
        return await self.until(lambda m: m.get("re") == msg_id and m["type"] != "track_started", timeout)

    async def request(self, type_: str, timeout: float = 60, **fields: Any) -> dict[str, Any]:
        return await self.reply_to(await self.send(type_, **fields), timeout)

    async def close(self) -> None:
        await self.connection.close()
