"""Quality radar: does the score tell a reviewer where to look, and does the learned verifier beat it?

    .venv/bin/python bench/bench_radar.py                 # davis-dev review protocol + verifier (~3 min)
    .venv/bin/python bench/bench_radar.py --quick         # first 15 frames of each sequence
    .venv/bin/python bench/bench_radar.py --json out.json

1. Review protocol (``python -m segmentation.evaluate --protocol review``) on ``../shared/data/davis-dev``
   with the classical backend: per object 3 clicks on the first visible frame, one propagation,
   each other frame's quality score against its true J&F. Reported per sequence and pooled: AUROC
   (score separating J&F < 0.7 from the rest), Spearman, and the frames examined to find 90 % of
   each object's bad frames in four orders measured in the same run:

   - ``radar``: lowest score first (ties in frame order);
   - ``sequential``: frame order, what a reviewer scrubbing the video does;
   - ``distance``: farthest from the prompted frame first, a trivial radar (propagation errors
     grow with distance), so the score is shown to know more than that;
   - ``oracle``: lowest true J&F first, the floor no order can beat.

2. Learned verifier (``loop.verifier.fit``) on simulated reviews of synthetic videos
   (``fixtures.reviews``: the classical backend tracks every object of 8 ``tiny`` videos, the
   reviewer fixes frames with J&F < 0.7 and approves the rest): AUROC on held-out masklets of the
   verifier and of the backend's hand-combined score, over 5 random masklet splits; and the same
   objects as a review protocol (AUROC, Spearman, the four orders).

3. Cost: the share of a propagated frame's time the classical quality signals take.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from fixtures.reviews import reviewed_objects  # noqa: E402
from loop import verifier  # noqa: E402
from segmentation.classical import ClassicalSegmenter, ClassicalSession  # noqa: E402
from segmentation.datasets import load_davis  # noqa: E402
from segmentation.evaluate import run_evaluation  # noqa: E402
from segmentation.metrics import BAD_JF, frames_to_find, review_metrics  # noqa: E402

DAVIS = Path(os.environ.get("MASKLET_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")) / "davis-dev"


def orders(entry: dict) -> dict[str, int]:
    """Frames to find 90 % of one object's bad frames in each order."""
    review = entry["review"]
    frames, scores, jf = review["frames"], review["scores"], review["jf"]
    bad = [value < BAD_JF for value in jf]
    n = range(len(frames))
    prompted = review["prompted_frame"]
    return {
        "radar": frames_to_find(sorted(n, key=lambda i: (scores[i], i)), bad),
        "sequential": frames_to_find(n, bad),
        "distance": frames_to_find(sorted(n, key=lambda i: (-abs(frames[i] - prompted), i)), bad),
        "oracle": frames_to_find(sorted(n, key=lambda i: (jf[i], i)), bad),
    }


def review_table(limit: int | None) -> dict:
    records = load_davis(DAVIS)
    if limit:
        records = [record.truncated(limit) for record in records]
    signal_seconds = 0.0
    real_signals = ClassicalSession._signals

    def timed(self, *args, **kwargs):
        nonlocal signal_seconds
        started = time.perf_counter()
        try:
            return real_signals(self, *args, **kwargs)
        finally:
            signal_seconds += time.perf_counter() - started

    ClassicalSession._signals = timed
    started = time.perf_counter()
    try:
        results = run_evaluation(ClassicalSegmenter(), records, protocol="review", clicks=3, progress=False)
    finally:
        ClassicalSession._signals = real_signals
    total = time.perf_counter() - started
    rows = []
    for video in results["videos"] + [{"name": "all (pooled)", "objects": [o for v in results["videos"]
                                                                            for o in v["objects"]]}]:
        metrics = review_metrics((o["review"]["scores"], o["review"]["jf"]) for o in video["objects"])
        counts = {key: sum(orders(o)[key] for o in video["objects"]) for key in ("radar", "sequential", "distance",
                                                                                 "oracle")}
        rows.append({"video": video["name"], "frames": metrics["frames"], "bad": metrics["bad_frames"],
                     "auroc": metrics["auroc"], "spearman": metrics["spearman"], **counts})
    frames = sum(row["frames"] for row in rows[:-1])
    return {"rows": rows, "seconds": total, "signal_seconds": signal_seconds, "frames": frames}


def verifier_table(seeds: int, splits: int) -> dict:
    objects = reviewed_objects(range(seeds))
    entries = [{"review": {"frames": obj.frames, "scores": [rating.score for rating in obj.quality], "jf": obj.jf,
                           "prompted_frame": obj.prompted_frame}} for obj in objects]
    review = review_metrics((entry["review"]["scores"], entry["review"]["jf"]) for entry in entries)
    counts = {key: sum(orders(entry)[key] for entry in entries) for key in ("radar", "sequential", "distance",
                                                                            "oracle")}
    labelled = [verifier.Labelled(number, rating.features, rating.score, not edited)
                for number, obj in enumerate(objects)
                for rating, edited in zip(obj.quality, obj.edited, strict=True)]
    runs = [verifier.fit(labelled, seed=seed) for seed in range(splits)]
    return {"objects": len(objects), "frames": len(labelled), "bad": sum(not row.good for row in labelled),
            "verifier": [run["auroc"] for run in runs], "backend": [run["backend_auroc"] for run in runs],
            "heldout": [run["heldout_frames"] for run in runs],
            "review": {"auroc": review["auroc"], "spearman": review["spearman"], **counts}}


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="first 15 frames of each sequence, 4 synthetic videos")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    out: dict = {}
    if DAVIS.is_dir():
        review = out["review"] = review_table(15 if args.quick else None)
        print("Review protocol, classical backend, davis-dev (frames examined to find 90 % of bad frames)")
        print(f"{'video':<14} {'frames':>6} {'bad':>4} {'AUROC':>6} {'Spearman':>8} {'radar':>6} {'sequential':>10} "
              f"{'distance':>8} {'oracle':>6}")
        for row in review["rows"]:
            print(f"{row['video']:<14} {row['frames']:>6} {row['bad']:>4} {fmt(row['auroc']):>6} "
                  f"{fmt(row['spearman']):>8} {row['radar']:>6} {row['sequential']:>10} {row['distance']:>8} "
                  f"{row['oracle']:>6}")
        share = review["signal_seconds"] / review["seconds"]
        print(f"quality signals: {1000 * review['signal_seconds'] / review['frames']:.1f} ms per rated frame, "
              f"{100 * share:.1f} % of the protocol's {review['seconds']:.0f} s")
    else:
        print(f"{DAVIS} not found: review protocol skipped")
    table = out["verifier"] = verifier_table(4 if args.quick else 8, 5)
    print(f"\nLearned verifier, simulated reviews of {table['objects']} synthetic objects ({table['frames']} frames, "
          f"{table['bad']} edited), 5 held-out masklet splits")
    print(f"{'split':>5} {'held out':>8} {'verifier AUROC':>14} {'backend AUROC':>13}")
    for i, (ours, theirs, held) in enumerate(zip(table["verifier"], table["backend"], table["heldout"], strict=True)):
        print(f"{i:>5} {held:>8} {ours:>14.3f} {theirs:>13.3f}")
    print(f"{'mean':>5} {'':>8} {np.mean(table['verifier']):>14.3f} {np.mean(table['backend']):>13.3f}")
    synthetic = table["review"]
    print(f"\nThe same synthetic objects as a review protocol: AUROC {fmt(synthetic['auroc'])}, Spearman "
          f"{fmt(synthetic['spearman'])}; frames to find 90 % of bad frames: radar {synthetic['radar']}, sequential "
          f"{synthetic['sequential']}, distance {synthetic['distance']}, oracle {synthetic['oracle']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
