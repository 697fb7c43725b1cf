"""Kill -9 faults on a real services-mode stack (``live_stack``), as the page lives them: one
annotation socket works on a video (clicks, a long track), a process is killed in the middle of
the track and started again, and the scenario measures when the page works again and checks that
it was told why it paused. Used by ``test_faults.py`` (one kill of each kind) and by
``bench/bench_faults.py`` (many, loading this file by path like ``live_stack``).

Kinds:

- ``worker-fast``: the GPU worker killed and started again at once under the same name (its
  heartbeat key never expires: only its incarnation changes). The page gets ``worker`` lost, its
  track is sent again and runs to the end.
- ``worker-slow``: the same, started again only after the page was told the worker is lost.
- ``server``: daphne killed and started again on the same port. The page's socket drops (that
  is what it is told); it reconnects and clicks; the orphaned track stops on the worker by itself
  (its socket no longer says it is alive), so the click is not stuck behind it.
- ``redis``: Redis killed (everything in it is lost) and started again on the same port. The
  page's socket stays open and its track ends in error ``worker_lost`` (in words); a new socket
  opens at once; the page clicks again.

Recovery time: from the process answering again (worker beating, daphne serving, Redis
answering) to the page's first answered model message after the fault.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    from . import live_stack
except ImportError:  # loaded by path (bench/)
    import live_stack  # type: ignore[no-redef]

KINDS = ("worker-fast", "worker-slow", "server", "redis")
#: The stack's heartbeat TTL: long enough that a worker restarted at once beats again before its
#: predecessor's key expires (a restart takes a few seconds), as compose's restart does with the
#: default 10 s; the socket's watchdog still checks every second.
HEARTBEAT_SECONDS = 20


@dataclass
class Outcome:
    kind: str
    recovery_s: float
    told: str  #: what the page was told (a message type / code, or how the socket closed)


@dataclass
class Stack:
    """A running stack: private Redis, daphne on a fixed port, one GPU worker named ``worker_name``."""

    env: dict[str, str]
    log_dir: Path
    redis: live_stack.RedisServer
    worker_name: str = "faults"
    server: live_stack.Service | None = None
    worker: live_stack.Service | None = None
    url: str = ""
    port: int = 0
    outcomes: list[Outcome] = field(default_factory=list)

    @classmethod
    def start(cls, env: dict[str, str], log_dir: Path, redis: live_stack.RedisServer) -> Stack:
        stack = cls(env=env, log_dir=log_dir, redis=redis, port=live_stack.free_port())
        stack.start_server()
        stack.start_worker()
        return stack

    def start_server(self) -> None:
        self.server, self.url = live_stack.start_server(self.env, self.log_dir / "daphne.log", port=self.port)

    def start_worker(self) -> None:
        self.worker = live_stack.start_worker(self.env, self.worker_name, self.log_dir / "worker.log")

    @property
    def nodename(self) -> str:
        return self.worker.name

    def processes(self) -> list[live_stack.Service]:
        return [p for p in (self.server, self.worker) if p is not None]

    def stop(self) -> None:
        for process in self.processes():
            process.stop()


class Acknowledged:
    """Every mask the client was told is stored: (object, frame, revision) -> counts."""

    def __init__(self) -> None:
        self.masks: dict[tuple[int, int, int], str] = {}

    def record(self, messages: list[dict[str, Any]]) -> None:
        for msg in messages:
            if msg.get("type") == "mask" and "re" in msg:
                self.masks[(msg["object_id"], msg["frame"], msg["revision"])] = msg["counts"]
            elif msg.get("type") == "track_progress" and "by" not in msg:
                for mask in msg["masks"]:
                    self.masks[(mask["object_id"], mask["frame"], mask["revision"])] = mask["counts"]

    def lost(self, video: Any) -> list[tuple[int, int, int]]:
        """The acknowledged masks not in the database as acknowledged."""
        from annotator.models import MaskFrameRevision

        stored = {(r.masklet.object_id, r.frame_index, r.revision): r.rle_counts
                  for r in MaskFrameRevision.objects.filter(masklet__video=video).select_related("masklet")}
        return sorted(key for key, counts in self.masks.items() if stored.get(key) != counts)


async def connect_when_possible(url: str, path: str, cookie: str, timeout: float = 60) -> live_stack.LiveSocket:
    """What the page does: retry the socket until the server takes it again."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await live_stack.LiveSocket.connect(url, path, cookie, timeout=10)
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


class Page:
    """One annotating page: its socket (replaced when it reconnects) and what it was acknowledged."""

    def __init__(self, stack: Stack, path: str, cookie: str, points: list[dict[str, Any]]):
        self.stack, self.path, self.cookie, self.points = stack, path, cookie, points
        self.acked = Acknowledged()
        self.ws: live_stack.LiveSocket | None = None
        self.object_id = 0
        self._click = 0

    async def open(self) -> None:
        if self.ws is not None:
            self.acked.record(self.ws.received)
        self.ws = await connect_when_possible(self.stack.url, self.path, self.cookie)

    async def start(self) -> None:
        """Open the socket, make an object and lock it (a track follows the objects locked by me)."""
        await self.open()
        masklets = self.ws.received[0]["masklets"]
        if masklets:
            self.object_id = masklets[0]["object_id"]
            assert (await self.ws.request("lock", object_id=self.object_id))["type"] == "object"
        else:
            self.object_id = (await self.ws.request("add_object"))["masklet"]["object_id"]

    async def click(self, timeout: float = 60) -> dict[str, Any]:
        """One click (the next planned point), sent again while the answer is ``worker_lost``."""
        point = self.points[self._click % len(self.points)]
        self._click += 1
        deadline = time.monotonic() + timeout
        while True:
            reply = await self.ws.request("click", timeout=max(1.0, deadline - time.monotonic()),
                                          object_id=self.object_id, positive=True, **point)
            if reply["type"] == "mask":
                return reply
            assert reply["type"] == "error" and reply["code"] == "worker_lost", reply
            if time.monotonic() > deadline:
                raise AssertionError(f"click not answered in {timeout} s: {self.ws.received[-5:]}")

    async def start_track(self) -> int:
        """Send a forward track from the first frame; returns its id once it has stored frames."""
        track_id = await self.ws.send("track", frame=self.points[0]["frame"], direction="forward")
        await self.ws.until(lambda m: m["type"] == "track_progress" and "by" not in m
                            or (m.get("re") == track_id and m["type"] in ("error", "track_done")), 60)
        assert self.ws.received[-1]["type"] == "track_progress", f"the track ended at once: {self.ws.received[-1]}"
        return track_id

    def close_record(self) -> None:
        if self.ws is not None:
            self.acked.record(self.ws.received)


async def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen in {timeout} s")
        await asyncio.sleep(0.05)


async def kill_worker(page: Page, *, fast: bool) -> Outcome:
    """Kill -9 the GPU worker mid-track; start it again at once (fast) or once the page heard it is lost."""
    stack, ws = page.stack, page.ws
    track_id = await page.start_track()
    seen = len(ws.received)
    # After a Redis restart the key is back at the worker's next beat (a third of the TTL).
    await _wait_for(lambda: live_stack.heartbeat(stack.env["REDIS_URL"], stack.nodename) is not None, 30,
                    "the worker's heartbeat")
    last_beat = live_stack.heartbeat(stack.env["REDIS_URL"], stack.nodename)["at"]
    stack.worker.kill()
    if not fast:
        await ws.until(lambda m: m["type"] == "worker" and m["state"] == "lost", 60)
    await asyncio.get_running_loop().run_in_executor(None, stack.start_worker)
    back = time.monotonic()
    if fast:  # the new process beat before the old key expired: only its incarnation differs
        first_beat = live_stack.heartbeat(stack.env["REDIS_URL"], stack.nodename)["at"]
        assert first_beat < last_beat + HEARTBEAT_SECONDS, "the restart took longer than the heartbeat TTL"
    lost = None
    if fast:
        try:
            lost = await ws.until(lambda m: m["type"] == "worker" and m["state"] == "lost", 30)
        except TimeoutError:
            raise AssertionError("the page was not told that its worker restarted: its track hangs") from None
    # The page works again: its track (sent again by the consumer) stores frames or ends.
    resumed = await ws.until(lambda m: (m["type"] == "track_progress" and "by" not in m)
                             or m.get("re") == track_id, 60)
    recovery = time.monotonic() - back
    told = [m for m in ws.received[seen:] if m["type"] == "worker" and m["state"] == "lost"]
    assert told or lost, "the page was not told that the worker was lost"
    ends = ("track_done", "error")
    done = resumed if resumed["type"] in ends else await ws.until(lambda m: m.get("re") == track_id
                                                                   and m["type"] in ends, 300)
    assert done["type"] == "track_done" and not done["cancelled"], done
    await page.click()
    return Outcome("worker-fast" if fast else "worker-slow", recovery, "worker lost")


async def kill_server(page: Page) -> Outcome:
    """Kill -9 daphne mid-track and start it again on the same port: the page reconnects and clicks;
    the orphaned track stops on the worker (the solo worker would otherwise serve the click after it)."""
    import websockets

    stack = page.stack
    await page.start_track()
    stack.server.kill()
    try:
        await page.ws.until(lambda m: False, 30)
        told = "nothing"
    except websockets.exceptions.ConnectionClosed as closed:
        told = f"socket closed ({closed.rcvd.code if closed.rcvd else 'no close frame'})"
    await asyncio.get_running_loop().run_in_executor(None, stack.start_server)
    back = time.monotonic()
    await page.open()
    assert (await page.ws.request("lock", object_id=page.object_id))["type"] == "object"
    await page.click()
    recovery = time.monotonic() - back
    assert told != "nothing", "the page's socket stayed open with its server dead"
    return Outcome("server", recovery, told)


async def kill_redis(page: Page) -> Outcome:
    """Kill -9 Redis mid-track and start it again on the same port (empty): the page's socket stays,
    its track ends in words; a new socket opens at once; the page's clicks work again."""
    stack, ws = page.stack, page.ws
    track_id = await page.start_track()
    await asyncio.get_running_loop().run_in_executor(None, lambda: stack.redis.restart(down_seconds=1.0))
    back = time.monotonic()
    ended = await ws.reply_to(track_id, 60)
    assert ended["type"] == "error" and ended["code"] == "worker_lost", ended
    other = await live_stack.LiveSocket.connect(stack.url, page.path, page.cookie)  # no 1011 right after
    await other.close()
    await page.click()
    recovery = time.monotonic() - back
    return Outcome("redis", recovery, f"error {ended['code']}: {ended['error']}")


async def run_kill(kind: str, page: Page) -> Outcome:
    if kind.startswith("worker"):
        return await kill_worker(page, fast=kind == "worker-fast")
    return await {"server": kill_server, "redis": kill_redis}[kind](page)


def click_points(spec: Any, frames: list[int], count: int = 4) -> list[dict[str, Any]]:
    """Clicks on object 1 of a synthetic video (``fixtures.synthetic``), one per frame from the first."""
    import numpy as np

    from fixtures.synthetic import render_frame

    points = []
    for frame in frames:
        mask = render_frame(spec, frame)[1].get(1)
        if mask is None or not mask.any():
            continue
        ys, xs = np.nonzero(mask)
        points.append({"frame": frame, "x": float(xs[len(xs) // 2]), "y": float(ys[len(ys) // 2])})
        if len(points) == count:
            break
    return points
