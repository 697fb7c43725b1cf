"""Fault injection, the full run: ``kill -9`` of the GPU worker (restarted at once, and late), of the
web server and of Redis, over and over, on one real services-mode stack, while a page annotates.

The stack and the scenarios are the fault suite's (``tests/annotator/sessions/fault_kit.py`` on
``live_stack.py``, loaded by path): daphne on a fixed port, one ``celery -A config worker -Q gpu -P
solo`` (classical backend, 20 s heartbeat TTL), a private ``redis-server``, PostgreSQL database
``masklet_bench_faults`` (dropped and re-created); the seed is ``bench_session_overhead``'s (a
synthetic video, stride 1). One page clicks and tracks; each kill hits the middle of a track.

Per kind: kills, acknowledged edits lost (every ``mask`` / ``track_progress`` the page was told
about, compared with the database after each kill), what the page was told, and the recovery time
(from the process answering again to the page's first answered model message) p50 / max. Baseline
in the same run: a click's round trip with nothing killed.

    .venv/bin/python bench/bench_faults.py                # 5 kills of each of 4 kinds = 20
    .venv/bin/python bench/bench_faults.py --kills 2
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

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "bench"))

import bench_session_overhead as overhead  # noqa: E402  (loads live_stack by path, sets up sys.path)

_spec = importlib.util.spec_from_file_location("fault_kit", REPO_ROOT / "tests/annotator/sessions/fault_kit.py")
fault_kit = importlib.util.module_from_spec(_spec)
sys.modules["fault_kit"] = fault_kit
_spec.loader.exec_module(fault_kit)
live_stack = overhead.live_stack


async def campaign(page, kinds: list[str], kills: int, video, baseline_clicks: int) -> tuple[list, list, dict]:
    await page.start()
    baseline = []
    for _ in range(baseline_clicks):
        started = time.perf_counter()
        await page.click()
        baseline.append(time.perf_counter() - started)
    outcomes, lost_by_kind, lost_so_far = [], {kind: 0 for kind in kinds}, 0
    for _ in range(kills):
        for kind in kinds:
            outcome = await fault_kit.run_kill(kind, page)
            page.close_record()
            lost = len(await asyncio.get_running_loop().run_in_executor(None, page.acked.lost, video))
            lost_by_kind[kind] += lost - lost_so_far
            lost_so_far = lost
            outcomes.append(outcome)
            print(f"  kill {len(outcomes):>2} ({kind}): back in {outcome.recovery_s:.2f} s, told: {outcome.told[:70]}",
                  flush=True)
    await page.ws.close()
    return outcomes, baseline, lost_by_kind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=5, help="kills of each kind")
    parser.add_argument("--frames", type=int, default=240, help="frames of the synthetic video (a track's length)")
    parser.add_argument("--size", default="320x180")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/masklet_bench_faults")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "bench/results/faults.json")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    data_dir = Path(tempfile.mkdtemp(prefix="masklet-bench-faults-"))
    redis = live_stack.RedisServer(data_dir / "redis.log").start()
    env = live_stack.stack_env(database_url=args.database_url, redis_url=redis.url(0), data_dir=data_dir,
                               MASKLET_SEGMENTER="classical",
                               MASKLET_WORKER_HEARTBEAT_S=str(fault_kit.HEARTBEAT_SECONDS))
    os.environ.update(env)
    overhead.reset_database(args.database_url)
    import django

    django.setup()
    user, video, spec = overhead.seed(data_dir, args.frames, width, height)
    stack = fault_kit.Stack.start(env, data_dir, redis)
    kinds = list(fault_kit.KINDS)
    load_before = os.getloadavg()
    try:
        path = f"/ws/projects/{video.project.slug}/videos/{video.id}/annotate/"
        page = fault_kit.Page(stack, path, live_stack.sign_in(stack.url, user.username, overhead.PASSWORD),
                              fault_kit.click_points(spec, video.annotated_frame_indices()))
        outcomes, baseline, lost_by_kind = asyncio.run(campaign(page, kinds, args.kills, video, 20))
        alive = all(p.alive() for p in stack.processes())
    finally:
        stack.stop()
        redis.stop()
    load_after = os.getloadavg()

    print(f"\nkill -9 during a track, services mode ({width}x{height}, {args.frames}-frame track, classical, "
          f"load {load_before[0]:.2f} -> {load_after[0]:.2f}); recovery = process back -> page answered, s")
    print("| kind                         | kills | edits lost | page told                              "
          "| recovery p50 | recovery max |")
    print("|------------------------------|------:|-----------:|----------------------------------------"
          "|-------------:|-------------:|")
    rows = {}
    for kind in kinds:
        times = [o.recovery_s for o in outcomes if o.kind == kind]
        told = next(o.told for o in outcomes if o.kind == kind).split(":")[0]
        rows[kind] = {"kills": len(times), "lost": lost_by_kind[kind], "p50": statistics.median(times),
                      "max": max(times), "told": told}
        print(f"| {kind:<28} | {len(times):>5} | {lost_by_kind[kind]:>10} | {told[:38]:<38} "
              f"| {statistics.median(times):>12.2f} | {max(times):>12.2f} |")
    all_times = [o.recovery_s for o in outcomes]
    print(f"| {'all':<28} | {len(outcomes):>5} | {sum(lost_by_kind.values()):>10} | {'':<38} "
          f"| {statistics.median(all_times):>12.2f} | {max(all_times):>12.2f} |")
    print(f"baseline: click round trip with nothing killed, p50 {statistics.median(baseline) * 1000:.1f} ms "
          f"({len(baseline)} clicks); acknowledged masks checked: {len(page.acked.masks)}; "
          f"every process alive at the end: {alive}")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "when": time.strftime("%Y-%m-%d %H:%M:%S"), "load": [load_before[0], load_after[0]], "kinds": rows,
        "acknowledged": len(page.acked.masks), "baseline_click_ms_p50": statistics.median(baseline) * 1000,
    }, indent=1))
    if sum(lost_by_kind.values()) or max(all_times) >= 5.0 or not alive:
        raise SystemExit("FAILED: an acknowledged edit was lost, a recovery took 5 s or more, or a process died")


if __name__ == "__main__":
    main()
