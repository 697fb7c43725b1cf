"""Dataset export throughput (masks/s) and peak memory, against a same-run baseline.

    .venv/bin/python bench/bench_export.py                 # 100,000 mask frames (setup ~1-2 min)
    .venv/bin/python bench/bench_export.py --masks 20000   # smaller

Setup (once, in a throwaway embedded-mode data dir): a project of videos at 848x480, 24 fps,
121 annotated frames each (SA-V's example: 483 frames at stride 4), 10 approved masklets per
video with a mask on every annotated frame, written through ``save_mask_frames`` (so every
mask has its revision row). Masks are drawn from a pool of 64 different moving-ellipse RLEs
(encoding 100,000 distinct masks would dominate the setup, and exports never decode them).

Every measurement runs in a fresh subprocess so its peak RSS (VmHWM) is its own:

- ``django``: Django set up, nothing else: the floor every row below includes;
- ``baseline``: the naive export, ``json.dump`` of every mask row of the project read at once
  with ``values_list`` (counts, area, bbox, frame, masklet): no per-video grouping, no format,
  the whole dataset in memory;
- ``sav`` / ``coco``: ``annotator.datasets.export_dataset`` exactly as the CLI runs it
  (``--status all --no-media``): per-video streaming, SA-V fields / COCO images + annotations.

masks/s = visible mask frames written / wall time of the export call (Django setup excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
HEIGHT, WIDTH, FRAMES, STRIDE = 848, 480, 483, 4
MASKLETS_PER_VIDEO = 10
POOL = 64


def _peak_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss it is not inherited across fork + exec)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _setup_django(data_dir: str) -> None:
    os.environ["MASKLET_DATA_DIR"] = data_dir
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("MASKLET_LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(REPO_ROOT))
    import django

    django.setup()


# -- children ------------------------------------------------------------------------------------


def child_populate(data_dir: str, masks: int) -> dict:
    _setup_django(data_dir)
    import numpy as np

    from annotator.models import Masklet, MaskSource, Project, Video
    from annotator.services.masks import MaskWrite, save_mask_frames
    from segmentation.masks import encode_rle

    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    pool = []
    for k in range(POOL):
        cy, cx = 200 + 400 * (k / POOL), 100 + 280 * ((k * 7 % POOL) / POOL)
        pool.append(encode_rle(((yy - cy) / (40 + k)) ** 2 + ((xx - cx) / (30 + k % 9)) ** 2 <= 1))
    annotated = list(range(0, FRAMES, STRIDE))
    per_video = MASKLETS_PER_VIDEO * len(annotated)
    videos = max(1, round(masks / per_video))
    project = Project.objects.create(name="Bench", slug="bench", labels=["thing"])
    started = time.perf_counter()
    for v in range(videos):
        video = Video.objects.create(project=project, name=f"bench_{v:05d}", status=Video.Status.READY, fps=24.0,
                                     frame_count=FRAMES, width=WIDTH, height=HEIGHT, stride=STRIDE,
                                     annotated_frame_count=len(annotated), duration=FRAMES / 24)
        for m in range(MASKLETS_PER_VIDEO):
            masklet = Masklet.objects.create(video=video, object_id=m, label="thing", status=Masklet.Status.APPROVED)
            writes = [MaskWrite(f, pool[(v + m + i) % POOL]) for i, f in enumerate(annotated)]
            save_mask_frames(masklet, writes, source=MaskSource.MODEL)
    return {"videos": videos, "masks": videos * per_video, "seconds": time.perf_counter() - started}


def child_measure(data_dir: str, kind: str, out: str) -> dict:
    _setup_django(data_dir)
    from annotator.datasets import ExportFilters, export_dataset
    from annotator.models import MaskFrame, Project

    project = Project.objects.get(slug="bench")
    started = time.perf_counter()
    if kind == "django":
        written = 0
    elif kind == "baseline":
        rows = list(MaskFrame.objects.filter(masklet__video__project=project).values_list(
            "masklet_id", "frame_index", "rle_counts", "area", "bbox"))
        with open(Path(out) / "rows.json", "w") as handle:
            json.dump(rows, handle)
        written = len(rows)
    else:
        written = export_dataset(project, kind, out, ExportFilters(statuses=()), media=False).masks
    seconds = time.perf_counter() - started
    size = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file())
    return {"kind": kind, "masks": written, "seconds": seconds, "peak_mb": _peak_mb(), "output_mb": size / 2**20}


def run_child(*args: str) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True,
                            cwd=REPO_ROOT)
    if result.returncode != 0:
        raise SystemExit(f"child {args[:2]} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--masks", type=int, default=100_000, help="mask frames in the synthetic project")
    parser.add_argument("--repeat", type=int, default=1, help="runs per row (best time, worst memory kept)")
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        print(json.dumps(child_populate(rest[0], int(rest[1])) if kind == "populate" else child_measure(*rest)))
        return

    with tempfile.TemporaryDirectory(prefix="masklet-bench-export-") as tmp:
        data = Path(tmp) / "data"
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env["MASKLET_DATA_DIR"] = str(data)
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO_ROOT, env=env, check=True)
        print(f"populating ~{args.masks:,} mask frames...", flush=True)
        setup = run_child("populate", str(data), str(args.masks))
        print(f"  {setup['masks']:,} masks in {setup['videos']} videos ({setup['seconds']:.0f} s through "
              "save_mask_frames)", flush=True)
        rows = []
        for kind in ("django", "baseline", "sav", "coco"):
            best = None
            for attempt in range(args.repeat):
                out = Path(tmp) / f"out-{kind}-{attempt}"
                out.mkdir()
                result = run_child("measure", str(data), kind, str(out))
                shutil.rmtree(out)
                if best is None or result["seconds"] < best["seconds"]:
                    best = {**result, "peak_mb": max(result["peak_mb"], (best or result)["peak_mb"])}
            rows.append(best)
            print(f"  measured {kind}", flush=True)

    floor = rows[0]["peak_mb"]
    baseline = rows[1]
    print()
    print(f"Export benchmark: {setup['masks']:,} mask frames, {setup['videos']} videos of {HEIGHT}x{WIDTH} "
          f"({os.cpu_count()} CPUs, best of {args.repeat}); each row from a fresh process")
    print()
    table = [["case", "masks", "seconds", "masks/s", "vs baseline", "peak MB", "over Django MB", "output MB"]]
    for row in rows:
        rate = row["masks"] / row["seconds"] if row["masks"] else 0
        ratio = (baseline["seconds"] / row["seconds"]) if row["masks"] else 0
        table.append([row["kind"], f"{row['masks']:,}", f"{row['seconds']:.2f}", f"{rate:,.0f}" if rate else "—",
                      f"{ratio:.2f}x" if rate else "—", f"{row['peak_mb']:.0f}", f"{row['peak_mb'] - floor:.0f}",
                      f"{row['output_mb']:.0f}"])
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for i, row in enumerate(table):
        print("| " + " | ".join(cell.ljust(widths[j]) if j == 0 else cell.rjust(widths[j])
                                for j, cell in enumerate(row)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print()
    print("vs baseline: baseline time / this time (> 1: faster than dumping the raw rows).")


if __name__ == "__main__":
    main()
