"""Live-session overhead in services mode: what the system adds on top of the segmenter.

Starts a real stack on loopback (``daphne config.asgi:application``, one ``celery -A config worker
-Q gpu -P solo`` with the classical backend, PostgreSQL database ``masklet_bench`` dropped and
re-created, Redis db 9 flushed), signs in over HTTP (``/api/session/``) and opens the real
annotation WebSocket. Then, in the same run:

1. Click to mask: ``--clicks`` clicks alternating objects and frames (each on the object, from the
   synthetic ground truth), one at a time; overhead = round trip - the reply's ``model_ms`` (the
   segmenter's own time for that call, measured on the worker). Baselines: the same clicks on a
   bare segmenter session in this process, and ``ping`` -> ``pong`` through the same server.
2. Propagation: ``track`` forward over every frame through the socket (worker -> database ->
   WebSocket, until ``track_done``) vs ``session.propagate`` alone on the same frames and objects
   (seeded like the worker seeds its session: the stored human masks as mask prompts); throughput
   ratio, runs alternated.

    .venv/bin/python bench/bench_session_overhead.py                   # 200 clicks, 3 x 160-frame tracks
    .venv/bin/python bench/bench_session_overhead.py --clicks 50 --tracks 1

``--database-url`` / ``--redis-url`` pick the throwaway database and Redis db (both are wiped).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

_spec = importlib.util.spec_from_file_location("live_stack", REPO_ROOT / "tests/annotator/sessions/live_stack.py")
live_stack = importlib.util.module_from_spec(_spec)
sys.modules["live_stack"] = live_stack
_spec.loader.exec_module(live_stack)

PASSWORD = "bench-password-0123"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def row(name: str, values: list[float]) -> str:
    return (f"| {name:<36} | {len(values):>4} | {percentile(values, 0.5):>8.2f} | {percentile(values, 0.95):>8.2f} "
            f"| {statistics.fmean(values):>8.2f} |")


def reset_database(database_url: str) -> None:
    """Drop and create the bench database (it must be a throwaway one)."""
    import psycopg

    parsed = urlparse(database_url)
    name = parsed.path.lstrip("/")
    if "bench" not in name:
        raise SystemExit(f"refusing to wipe {name!r}: the bench database name must contain 'bench'")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def seed(data_dir: Path, frames: int, width: int, height: int) -> tuple[Any, Any, Any]:
    """Migrate, then a user, a project (stride 1) and a READY synthetic video; returns (user, video, spec)."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from annotator.models import Membership, Project, Role, Video
    from annotator.services.videos import create_video_from_path, ingest_video
    from fixtures.synthetic import preset, write_video

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("bench", password=PASSWORD)
    spec = preset("demo", num_frames=frames, width=width, height=height, num_objects=3)
    project = Project.objects.create(name="Bench", slug="bench", annotation_fps=round(spec.fps))
    Membership.objects.create(project=project, user=user, role=Role.ANNOTATOR)
    mp4 = write_video(spec, data_dir / "bench.mp4")
    video = create_video_from_path(project, mp4, schedule_ingest=False)
    ingest_video(video.id)
    video.refresh_from_db()
    assert video.status == Video.Status.READY and video.stride == 1, (video.status, video.stride)
    return user, video, spec


def click_plan(spec: Any, frames: list[int], object_ids: list[int], count: int) -> list[dict[str, Any]]:
    """Clicks alternating objects and jumping between frames, each inside the object's visible mask."""
    import numpy as np

    from fixtures.synthetic import render_frame

    plan: list[dict[str, Any]] = []
    masks_at: dict[int, dict[int, Any]] = {}
    i = 0
    while len(plan) < count:
        frame = frames[(i * 7) % len(frames)]
        object_id = object_ids[i % len(object_ids)]
        i += 1
        if frame not in masks_at:
            masks_at[frame] = render_frame(spec, frame)[1]
        mask = masks_at[frame].get(object_ids.index(object_id) + 1)
        if mask is None or not mask.any():
            continue
        ys, xs = np.nonzero(mask)
        k = len(xs) // 2
        plan.append({"object_id": object_id, "frame": frame, "x": float(xs[k]), "y": float(ys[k]),
                     "positive": True})
    return plan


async def socket_phase(url: str, cookie: str, path: str, plan: list[dict[str, Any]], pings: int, tracks: int,
                       object_ids_out: list[int]) -> dict[str, Any]:
    ws = await live_stack.LiveSocket.connect(url, path, cookie)
    for _ in range(3):
        object_ids_out.append((await ws.request("add_object"))["masklet"]["object_id"])
    # Warm up: assign the worker, build the session, load each object.
    for click in plan[:6]:
        reply = await ws.request("click", **click)
        assert reply["type"] == "mask", reply
    ping_ms = []
    for _ in range(pings):
        started = time.perf_counter()
        assert (await ws.request("ping"))["type"] == "pong"
        ping_ms.append((time.perf_counter() - started) * 1000)
    round_trip, model, overhead = [], [], []
    for click in plan[6:]:
        started = time.perf_counter()
        reply = await ws.request("click", **click)
        elapsed = (time.perf_counter() - started) * 1000
        assert reply["type"] == "mask", reply
        round_trip.append(elapsed)
        model.append(reply["model_ms"])
        overhead.append(elapsed - reply["model_ms"])
    track_s, track_frames = [], 0
    for _ in range(tracks):
        started = time.perf_counter()
        done = await ws.request("track", frame=0, direction="forward", timeout=600)
        track_s.append(time.perf_counter() - started)
        assert done["type"] == "track_done" and not done["cancelled"], done
        track_frames = done["done"]
    await ws.close()
    return {"ping_ms": ping_ms, "round_trip_ms": round_trip, "model_ms": model, "overhead_ms": overhead,
            "track_s": track_s, "track_frames": track_frames}


def bare_clicks(video: Any, plan: list[dict[str, Any]]) -> list[float]:
    """The same clicks on a bare classical session in this process (no database, no transport)."""
    from segmentation.backends import build_segmenter
    from segmentation.frames import JpegFolderFrames

    session = build_segmenter("classical").open_session(JpegFolderFrames(video.frames_dir))
    index_of = {native: i for i, native in enumerate(video.annotated_frame_indices())}
    times = []
    for click in plan:
        started = time.perf_counter()
        session.add_points(index_of[click["frame"]], click["object_id"], [(click["x"], click["y"])], [1])
        times.append((time.perf_counter() - started) * 1000)
    session.close()
    return times


def bare_propagation(video: Any, object_ids: list[int]) -> tuple[float, int]:
    """``propagate`` alone from frame 0 forward, seeded from the stored human masks like a worker session."""
    from annotator import selectors
    from segmentation.backends import build_segmenter
    from segmentation.frames import JpegFolderFrames
    from segmentation.masks import decode_rle

    session = build_segmenter("classical").open_session(JpegFolderFrames(video.frames_dir))
    index_of = {native: i for i, native in enumerate(video.annotated_frame_indices())}
    for object_id, masks in selectors.human_masks(video, object_ids).items():
        for frame, rle in masks:
            session.add_mask(index_of[frame], object_id, decode_rle(rle))
    started = time.perf_counter()
    count = sum(1 for _ in session.propagate(0, "forward"))
    elapsed = time.perf_counter() - started
    session.close()
    return elapsed, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clicks", type=int, default=200)
    parser.add_argument("--pings", type=int, default=100)
    parser.add_argument("--tracks", type=int, default=3, help="track runs (each alternated with a bare run)")
    parser.add_argument("--frames", type=int, default=96, help="frames of the synthetic video (stride 1)")
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/masklet_bench")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "bench/results/session_overhead.json")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    data_dir = Path(tempfile.mkdtemp(prefix="masklet-bench-"))
    env = live_stack.stack_env(database_url=args.database_url, redis_url=args.redis_url, data_dir=data_dir,
                               MASKLET_SEGMENTER="classical")
    os.environ.update(env)
    reset_database(args.database_url)
    import redis

    redis.Redis.from_url(args.redis_url).flushdb()
    import django

    django.setup()
    user, video, spec = seed(data_dir, args.frames, width, height)
    server, url = live_stack.start_server(env, data_dir / "daphne.log")
    worker = live_stack.start_worker(env, "bench", data_dir / "worker.log")
    load_before = os.getloadavg()
    try:
        cookie = live_stack.sign_in(url, "bench", PASSWORD)
        path = f"/ws/projects/{video.project.slug}/videos/{video.id}/annotate/"
        frames = video.annotated_frame_indices()
        # Object ids are 1, 2, 3 on a fresh video: plan the clicks before the socket creates them.
        plan = click_plan(spec, frames, [1, 2, 3], args.clicks + 6)
        object_ids: list[int] = []
        measured = asyncio.run(socket_phase(url, cookie, path, plan, args.pings, 0, object_ids))
        assert object_ids == [1, 2, 3], object_ids
        bare = bare_clicks(video, plan[6:])
        system_s, bare_s, track_frames = [], [], 0
        for _ in range(args.tracks):
            run = asyncio.run(socket_phase(url, cookie, path, plan[:0], 0, 1, []))
            system_s.extend(run["track_s"])
            track_frames = run["track_frames"]
            elapsed, count = bare_propagation(video, object_ids)
            bare_s.append(elapsed)
    finally:
        worker.stop()
        server.stop()
    load_after = os.getloadavg()

    print(f"\nclick -> mask over the WebSocket, services mode, loopback ({width}x{height}, classical, "
          f"load {load_before[0]:.2f} -> {load_after[0]:.2f}), ms")
    print("| measure                              |    n |      p50 |      p95 |     mean |")
    print("|--------------------------------------|-----:|---------:|---------:|---------:|")
    print(row("overhead (round trip - model_ms)", measured["overhead_ms"]))
    print(row("round trip", measured["round_trip_ms"]))
    print(row("model_ms (segmenter, on the worker)", measured["model_ms"]))
    print(row("baseline: bare segmenter call", bare))
    print(row("baseline: ping -> pong", measured["ping_ms"]))

    system_fps = [track_frames / s for s in system_s]
    bare_fps = [track_frames / s for s in bare_s]
    ratio = statistics.median(system_fps) / statistics.median(bare_fps)
    print(f"\npropagation, {track_frames} frames x 3 objects, forward from frame 0 (frames/s, {args.tracks} runs each)")
    print("| path                                        | median fps | best fps |")
    print("|---------------------------------------------|-----------:|---------:|")
    print(f"| system: track via socket (worker, DB, WS)   | {statistics.median(system_fps):>10.1f} | "
          f"{max(system_fps):>8.1f} |")
    print(f"| segmenter alone: session.propagate          | {statistics.median(bare_fps):>10.1f} | "
          f"{max(bare_fps):>8.1f} |")
    print(f"throughput ratio (median system / median segmenter): {ratio:.2f}")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "when": time.strftime("%Y-%m-%d %H:%M:%S"), "load": [load_before[0], load_after[0]],
        "size": [width, height], "clicks": args.clicks,
        "overhead_ms": {"p50": percentile(measured["overhead_ms"], 0.5),
                        "p95": percentile(measured["overhead_ms"], 0.95)},
        "round_trip_ms_p50": percentile(measured["round_trip_ms"], 0.5),
        "bare_click_ms_p50": percentile(bare, 0.5), "ping_ms_p50": percentile(measured["ping_ms"], 0.5),
        "track_frames": track_frames, "system_fps": system_fps, "bare_fps": bare_fps, "ratio": ratio,
    }, indent=1))


if __name__ == "__main__":
    main()
