"""Exhaustivity check: are objects nobody annotated found, and how many false suggestions come with them?

    .venv/bin/python bench/bench_exhaustivity.py            # 6 synthetic videos (~8 min on 2 cores)
    .venv/bin/python bench/bench_exhaustivity.py --quick    # 2 videos
    .venv/bin/python bench/bench_exhaustivity.py --json out.json

Each synthetic video (``fixtures.synthetic``: 320x180, 5 objects, exact ground truth) is
"annotated" with the true frame-0 masks of every object except two, and the check that runs
when an annotator marks a video done (``annotator.automasks.missed``, classical backend, the
real 12x12 grid) looks for what was left out. An object is found when a suggestion matches it
at IoU >= 0.5; any other suggestion (background, an annotated object, a second match) is false.

Baseline, measured in the same run: the auto-masklet generator as it is (``generate.select``
with the annotated masks as existing masks: its own duplicate test, no cut-out of annotated
pixels, no overlap filter), i.e. what offering auto masklets as suggestions would give.

Targets (issue 18): recall >= 0.8 with <= 1 false suggestion per video; the script exits 1
when the check misses them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from annotator.automasks.missed import measure  # noqa: E402
from fixtures.synthetic import SyntheticFrames, SyntheticSpec  # noqa: E402
from segmentation.backends import build_segmenter  # noqa: E402

SEEDS = (1, 2, 3, 4, 5, 6)
LEFT_OUT = (2, 4)
TARGET_RECALL = 0.8
TARGET_FALSE_PER_VIDEO = 1.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="two videos")
    parser.add_argument("--json", type=Path, help="write the rows and totals here")
    args = parser.parse_args(argv)
    seeds = SEEDS[:2] if args.quick else SEEDS
    segmenter = build_segmenter("classical")
    rows = []
    print(f"{'video':<22}{'left out':>9}{'found':>7}{'false':>7}{'base found':>12}{'base false':>12}{'s':>7}")
    for seed in seeds:
        spec = SyntheticSpec(seed=seed, width=320, height=180, num_frames=8, num_objects=5)
        frames = SyntheticFrames(spec, stride=4)
        truth = frames.masks(0)
        start = time.perf_counter()
        check = measure(segmenter, frames, truth, LEFT_OUT)
        seconds = time.perf_counter() - start
        base = measure(segmenter, frames, truth, LEFT_OUT, filtered=False)
        rows.append({"video": spec.video_id, "left_out": check.left_out, "found": check.found, "false": check.false,
                     "baseline_found": base.found, "baseline_false": base.false, "seconds": round(seconds, 1)})
        print(f"{spec.video_id:<22}{check.left_out:>9}{check.found:>7}{check.false:>7}{base.found:>12}"
              f"{base.false:>12}{seconds:>7.1f}", flush=True)
    left_out = sum(r["left_out"] for r in rows)
    totals = {
        "videos": len(rows), "left_out": left_out,
        "recall": sum(r["found"] for r in rows) / left_out,
        "false_per_video": sum(r["false"] for r in rows) / len(rows),
        "baseline_recall": sum(r["baseline_found"] for r in rows) / left_out,
        "baseline_false_per_video": sum(r["baseline_false"] for r in rows) / len(rows),
    }
    print(f"\ncheck:    recall {totals['recall']:.2f}, {totals['false_per_video']:.2f} false suggestions per video")
    print(f"baseline: recall {totals['baseline_recall']:.2f}, "
          f"{totals['baseline_false_per_video']:.2f} false suggestions per video")
    ok = totals["recall"] >= TARGET_RECALL and totals["false_per_video"] <= TARGET_FALSE_PER_VIDEO
    print(f"target (recall >= {TARGET_RECALL}, <= {TARGET_FALSE_PER_VIDEO:g} false per video): "
          f"{'met' if ok else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "totals": totals}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
