"""Seconds per frame of SAM 2.1 tiny at each input size on this machine: picks the CPU default.

    .venv/bin/python bench/bench_sam2_cpu_size.py                       # sizes 512 and 1024, 8 frames
    .venv/bin/python bench/bench_sam2_cpu_size.py --sizes 256,512,768,1024 --frames 12 --threads 1

For each ``--sizes`` entry the tiny model (random weights: the same compute as Meta's released
checkpoint) is built once, then a session opens on ``--frames`` synthetic 854x480 JPEGs, one
positive click goes on frame 0 (``click s``: frame 0's image encoder plus one decoder pass, what
an annotator waits for after the first click) and the object is propagated forward over every
frame (``s/frame``: image encoder + memory attention + decoder + memory encoder, per frame).
Each size runs ``--repeats`` times, alternating sizes so that load from other processes hits all
alike; the table shows the median and the minimum. The baseline is 1024, the size SAM 2 was
trained at and the GPU default, measured in the same run: "x 1024" is the speed-up over it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.bench_sam2_session import write_synthetic_jpegs  # noqa: E402
from segmentation.frames import JpegFolderFrames  # noqa: E402
from segmentation.sam2_backend import Sam2Segmenter  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results"
BASELINE = 1024


def one_run(segmenter: Sam2Segmenter, folder: Path) -> tuple[float, float]:
    """(seconds for the first click, seconds per propagated frame)."""
    source = JpegFolderFrames(folder)
    with segmenter.open_session(source) as session:
        t0 = time.perf_counter()
        session.add_points(0, 1, [(source.width / 2, source.height / 2)], [1])
        t1 = time.perf_counter()
        frames = sum(1 for _ in session.propagate(0, "forward"))
        t2 = time.perf_counter()
    return t1 - t0, (t2 - t1) / max(1, frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="512,1024", help="comma-separated input sizes (multiples of 32)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    sizes = sorted({int(s) for s in args.sizes.split(",")} | {BASELINE})
    if args.threads:
        torch.set_num_threads(args.threads)
    segmenters = {}
    for size in sizes:
        torch.manual_seed(0)
        segmenters[size] = Sam2Segmenter("sam2.1_hiera_t", image_size=size, device=args.device)
    runs: dict[int, list[tuple[float, float]]] = {size: [] for size in sizes}
    with tempfile.TemporaryDirectory(prefix="bench-cpu-size-") as tmp:
        folder = write_synthetic_jpegs(Path(tmp) / "frames", args.frames)
        for repeat in range(args.repeats):
            order = sizes if repeat % 2 == 0 else sizes[::-1]
            for size in order:
                click, per_frame = one_run(segmenters[size], folder)
                runs[size].append((click, per_frame))
                print(f"run {repeat + 1} @{size}: click {click:.2f}s, {per_frame:.2f} s/frame", flush=True)

    base = statistics.median(r[1] for r in runs[BASELINE])
    print()
    print(f"SAM 2.1 tiny (random weights) on {args.device}, torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} CPUs, {args.frames} frames 854x480, {args.repeats} runs per size")
    print(f"{'size':>6} {'click s':>8} {'s/frame median':>15} {'s/frame min':>12} {'x 1024':>7}")
    rows = []
    for size in sizes:
        click = statistics.median(r[0] for r in runs[size])
        median = statistics.median(r[1] for r in runs[size])
        least = min(r[1] for r in runs[size])
        rows.append({"size": size, "click_s": click, "s_per_frame": median, "s_per_frame_min": least,
                     "speedup_vs_1024": base / median})
        print(f"{size:6d} {click:8.2f} {median:15.2f} {least:12.2f} {base / median:7.2f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sam2_cpu_size.json").write_text(json.dumps(
        {"device": args.device, "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "frames": args.frames,
         "rows": rows, "runs": {str(k): v for k, v in runs.items()}}, indent=2))


if __name__ == "__main__":
    main()
