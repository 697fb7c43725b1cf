"""Load: N simulated annotators clicking at once over WebSockets, against one and two GPU workers.

The stack is ``bench_session_overhead``'s (``live_stack``: daphne, ``celery -A config worker -Q gpu -P
solo`` with the classical backend, PostgreSQL database ``masklet_bench_load`` dropped and re-created,
a private ``redis-server``), seeded the same way (a synthetic video, stride 1, copied so that every
``--per-video`` annotators share one: by default each works on a video of their own, as a team
does; on a shared video every mask is also broadcast to the other sockets). Each annotator is its
own user with its own socket and object; it clicks inside object 1 of the synthetic ground truth,
one click after the other with no think time (a closed loop: this measures capacity, not a
person's pace). ``MASKLET_WORKER_SESSIONS`` is raised to hold every annotator's
live session, so the numbers are about serving clicks, not about evicting sessions.

Per (workers, N): click round trip p50/p95 and throughput (clicks/s over the measured phase), with
N = 1 on one worker as the baseline, and the two-worker / one-worker throughput ratio at N = 20.

    .venv/bin/python bench/bench_load.py                          # N = 1, 5, 10, 20, 50; 20 clicks each
    .venv/bin/python bench/bench_load.py --annotators 1,20 --clicks 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "bench"))

import bench_session_overhead as overhead  # noqa: E402  (loads live_stack by path, sets up sys.path)

live_stack = overhead.live_stack
PASSWORD = "load-password-0123"


def copies(video: Any, mp4: Path, count: int) -> list[Any]:
    """``video`` and ``count - 1`` more READY videos ingested from its file ``mp4``."""
    from annotator.models import Video
    from annotator.services.videos import create_video_from_path, ingest_video

    videos = [video]
    while len(videos) < count:
        copy = create_video_from_path(video.project, mp4, schedule_ingest=False)
        ingest_video(copy.id)
        copy.refresh_from_db()
        assert copy.status == Video.Status.READY, copy.failure_reason
        videos.append(copy)
    return videos


def make_annotators(project: Any, count: int) -> list[str]:
    """``count`` annotators of ``project`` (cheap password hashes: signing in is not what is measured)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    from annotator.models import Membership, Role

    names = []
    for i in range(count):
        user = get_user_model().objects.create(
            username=f"load{i}", password=PBKDF2PasswordHasher().encode(PASSWORD, f"loadsalt{i:08d}", iterations=1000))
        Membership.objects.create(project=project, user=user, role=Role.ANNOTATOR)
        names.append(user.username)
    return names


async def annotator(url: str, path: str, cookie: str, plan: list[dict[str, Any]], start: asyncio.Event,
                    ready: asyncio.Queue) -> list[tuple[float, float]]:
    """One page: connect, add an object, warm its session with a click, then click through ``plan``
    once everyone is ready; returns (start, end) of each measured click."""
    ws = await live_stack.LiveSocket.connect(url, path, cookie, timeout=120)
    object_id = (await ws.request("add_object", timeout=120))["masklet"]["object_id"]
    clicks = [{**click, "object_id": object_id} for click in plan]
    warm = await ws.request("click", timeout=300, **clicks[0])
    assert warm["type"] == "mask", warm
    await ready.put(True)
    await start.wait()
    spans = []
    for click in clicks[1:]:
        started = time.perf_counter()
        reply = await ws.request("click", timeout=300, **click)
        spans.append((started, time.perf_counter()))
        assert reply["type"] == "mask", reply
    await ws.close()
    return spans


async def load_round(url: str, paths: list[str], cookies: list[str], plan: list[dict[str, Any]]) -> dict[str, Any]:
    start, ready = asyncio.Event(), asyncio.Queue()
    tasks = [asyncio.create_task(annotator(url, path, cookie, plan, start, ready))
             for path, cookie in zip(paths, cookies, strict=True)]
    for _ in cookies:
        getter = asyncio.create_task(ready.get())
        done, _pending = await asyncio.wait({getter, *tasks}, return_when=asyncio.FIRST_COMPLETED)
        if getter not in done:
            getter.cancel()
            for task in done:
                task.result()  # an annotator failed before it was ready: raise its error
    start.set()
    spans = [span for result in await asyncio.gather(*tasks) for span in result]
    times = [(end - begin) * 1000 for begin, end in spans]
    wall = max(end for _, end in spans) - min(begin for begin, _ in spans)
    return {"clicks": len(times), "p50": overhead.percentile(times, 0.5), "p95": overhead.percentile(times, 0.95),
            "throughput": len(times) / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotators", default="1,5,10,20,50")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--clicks", type=int, default=20, help="measured clicks per annotator")
    parser.add_argument("--per-video", type=int, default=1, help="annotators sharing one video")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", default="320x180")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/masklet_bench_load")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "bench/results/load.json")
    args = parser.parse_args()
    counts = [int(n) for n in args.annotators.split(",")]
    worker_counts = [int(n) for n in args.workers.split(",")]
    width, height = (int(v) for v in args.size.split("x"))

    data_dir = Path(tempfile.mkdtemp(prefix="masklet-bench-load-"))
    redis = live_stack.RedisServer(data_dir / "redis.log").start()
    env = live_stack.stack_env(database_url=args.database_url, redis_url=redis.url(0), data_dir=data_dir,
                               MASKLET_SEGMENTER="classical", MASKLET_WORKER_SESSIONS=str(max(counts) + 4))
    os.environ.update(env)
    overhead.reset_database(args.database_url)
    import django

    django.setup()
    _user, video, spec = overhead.seed(data_dir, args.frames, width, height)
    names = make_annotators(video.project, max(counts))
    videos = copies(video, data_dir / "bench.mp4", -(-max(counts) // args.per_video))
    paths = [f"/ws/projects/{video.project.slug}/videos/{videos[i // args.per_video].id}/annotate/"
             for i in range(max(counts))]
    plan = [{k: v for k, v in click.items() if k != "object_id"}
            for click in overhead.click_plan(spec, video.annotated_frame_indices(), [1], args.clicks + 1)]
    results: dict[int, dict[int, dict[str, Any]]] = {}
    load_before = os.getloadavg()
    try:
        for workers in worker_counts:
            server, url = live_stack.start_server(env, data_dir / f"daphne-{workers}.log")
            started = [live_stack.start_worker(env, f"load{workers}-{i}", data_dir / f"worker-{workers}-{i}.log")
                       for i in range(workers)]
            try:
                cookies = [live_stack.sign_in(url, name, PASSWORD) for name in names]
                results[workers] = {}
                for n in counts:
                    results[workers][n] = row = asyncio.run(load_round(url, paths[:n], cookies[:n], plan))
                    print(f"  {workers} worker(s), {n:>2} annotators: p50 {row['p50']:.1f} ms, "
                          f"p95 {row['p95']:.1f} ms, {row['throughput']:.1f} clicks/s", flush=True)
            finally:
                for process in (*started, server):
                    process.stop()
    finally:
        redis.stop()
    load_after = os.getloadavg()

    print(f"\nclicks over WebSockets, services mode, closed loop ({width}x{height}, classical, {args.clicks} clicks "
          f"per annotator, {args.per_video} per video, {os.cpu_count()} CPUs, "
          f"load {load_before[0]:.2f} -> {load_after[0]:.2f})")
    print("| GPU workers | annotators | clicks | p50 ms | p95 ms | clicks/s |")
    print("|------------:|-----------:|-------:|-------:|-------:|---------:|")
    for workers, rows in results.items():
        for n, row in rows.items():
            print(f"| {workers:>11} | {n:>10} | {row['clicks']:>6} | {row['p50']:>6.1f} | {row['p95']:>6.1f} "
                  f"| {row['throughput']:>8.1f} |")
    if 1 in results and 2 in results and 20 in results[1] and 20 in results[2]:
        ratio = results[2][20]["throughput"] / results[1][20]["throughput"]
        print(f"throughput ratio two workers / one worker at N = 20: {ratio:.2f} "
              f"(p50 {results[1][20]['p50']:.1f} -> {results[2][20]['p50']:.1f} ms)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"when": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(),
                                     "load": [load_before[0], load_after[0]], "results": results}, indent=1))


if __name__ == "__main__":
    main()
