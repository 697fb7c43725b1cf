"""Overhead of our SAM 2 session over Meta's ``SAM2VideoPredictor`` used directly.

    .venv/bin/python bench/bench_sam2_session.py                   # 30 synthetic 854x480 frames, 2 objects
    .venv/bin/python bench/bench_sam2_session.py --frames 50 --folder ../shared/data/davis-dev/JPEGImages/480p/dog

Both sides use the same model object (tiny config, random weights, ``--image-size`` 256 by
default), the same JPEG folder and the same prompts (one positive click per object on frame 0),
and propagate forward over every frame:

- ``meta``: ``predictor.init_state(folder)`` (reads every frame into one N x 3 x S x S tensor up
  front), ``add_new_points_or_box``, ``propagate_in_video``;
- ``ours``: ``Sam2Segmenter.open_session(JpegFolderFrames(folder))``, ``add_points``,
  ``propagate`` (frames decoded, resized and normalized on demand, LRU-bounded).

Runs alternate (ours, meta, meta, ours, ...) so that load from other processes hits both alike;
the table shows the median and the minimum of ``--repeats`` runs (on a shared machine the minimum
is the better estimate of the intrinsic cost). "per frame" is propagation wall time / frames:
ours includes loading each frame, Meta's does not (it paid that in ``open``), so the ratio is the
honest price of streaming. The masks of both sides are compared for equality.
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

os.environ.setdefault("TQDM_DISABLE", "1")  # Meta's propagate_in_video draws a progress bar

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from segmentation.frames import JpegFolderFrames  # noqa: E402
from segmentation.sam2_backend import LazyVideoFrames, Sam2Segmenter  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results"


def write_synthetic_jpegs(folder: Path, count: int, height: int = 480, width: int = 854) -> Path:
    """``count`` frames of a disc moving over a blurred-noise background, ``00000.jpg``... (q90)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    background = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (9, 9), 0)
    for t in range(count):
        frame = background.copy()
        x = int(width * 0.2 + (t * 3) % int(width * 0.6))
        cv2.circle(frame, (x, height // 2), height // 8, (40, 40, 230), -1)
        cv2.rectangle(frame, (width - 200, 60 + t % 200), (width - 120, 140 + t % 200), (60, 200, 40), -1)
        cv2.imwrite(str(folder / f"{t:05d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return folder


def prompt_points(num_objects: int, height: int, width: int) -> list[tuple[int, tuple[float, float]]]:
    """One click per object on frame 0, spread over the frame: [(object_id, (x, y)), ...]."""
    return [(k + 1, (width * (k + 1) / (num_objects + 1), height / 2)) for k in range(num_objects)]


def run_ours(segmenter: Sam2Segmenter, folder: Path, clicks) -> tuple[dict[str, float], dict]:
    t0 = time.perf_counter()
    session = segmenter.open_session(JpegFolderFrames(folder))
    t1 = time.perf_counter()
    for obj, xy in clicks:
        session.add_points(0, obj, [xy], [1])
    t2 = time.perf_counter()
    masks = {r.frame_index: r.masks for r in session.propagate(0, "forward")}
    t3 = time.perf_counter()
    session.close()
    return {"open": t1 - t0, "prompts": t2 - t1, "propagate": t3 - t2}, masks


def run_meta(predictor, folder: Path, clicks) -> tuple[dict[str, float], dict]:
    t0 = time.perf_counter()
    state = predictor.init_state(video_path=str(folder))
    t1 = time.perf_counter()
    for obj, xy in clicks:
        predictor.add_new_points_or_box(
            state, 0, obj, points=np.asarray([xy], np.float32), labels=np.asarray([1], np.int32), clear_old_points=False
        )
    t2 = time.perf_counter()
    masks = {}
    for frame, ids, logits in predictor.propagate_in_video(state, start_frame_idx=0):
        binary = (logits[:, 0] > 0).cpu().numpy()
        masks[frame] = {int(o): binary[i] for i, o in enumerate(ids)}
    t3 = time.perf_counter()
    return {"open": t1 - t0, "prompts": t2 - t1, "propagate": t3 - t2}, masks


def same_masks(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        a[f].keys() == b[f].keys() and all(np.array_equal(a[f][o], b[f][o]) for o in a[f]) for f in a
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--objects", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--config", default="sam2.1_hiera_t")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None)
    parser.add_argument("--folder", type=Path, help="a JPEG folder to use instead of synthetic 854x480 frames")
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 is far faster on a loaded shared CPU)")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    segmenter = Sam2Segmenter(args.config, image_size=args.image_size, device=args.device)
    with tempfile.TemporaryDirectory(prefix="bench-sam2-") as tmp:
        if args.folder:
            folder = Path(tmp) / "frames"
            folder.mkdir()
            for path in sorted(args.folder.glob("*.jpg"))[: args.frames]:
                (folder / path.name).symlink_to(path.resolve())
        else:
            folder = write_synthetic_jpegs(Path(tmp) / "frames", args.frames)
        source = JpegFolderFrames(folder)
        frames, height, width = len(source), source.height, source.width
        clicks = prompt_points(args.objects, height, width)

        # The cost of streaming alone: decode + resize + normalize each frame once.
        lazy = LazyVideoFrames(JpegFolderFrames(folder, cache_size=1), segmenter.image_size, segmenter.device)
        t0 = time.perf_counter()
        for i in range(frames):
            lazy[i]
        load_per_frame = (time.perf_counter() - t0) / frames

        runs: dict[str, list[dict[str, float]]] = {"ours": [], "meta": []}
        identical = True
        for r in range(args.repeats):
            order = ("ours", "meta") if r % 2 == 0 else ("meta", "ours")
            masks = {}
            for side in order:
                if side == "ours":
                    timing, masks[side] = run_ours(segmenter, folder, clicks)
                else:
                    timing, masks[side] = run_meta(segmenter.predictor, folder, clicks)
                runs[side].append(timing)
                print(f"run {r + 1} {side}: " + ", ".join(f"{k} {v:.2f}s" for k, v in timing.items()), flush=True)
            identical &= same_masks(masks["ours"], masks["meta"])

    def stat(side: str, key: str, pick=statistics.median) -> float:
        return pick(t[key] for t in runs[side])

    rows = []
    for side in ("meta", "ours"):
        totals = [t["open"] + t["prompts"] + t["propagate"] for t in runs[side]]
        rows.append(
            (
                side,
                stat(side, "open"),
                stat(side, "prompts"),
                stat(side, "propagate") / frames,
                stat(side, "propagate", min) / frames,
                statistics.median(totals),
            )
        )
    ratio = rows[1][3] / rows[0][3]
    ratio_min = rows[1][4] / rows[0][4]
    total_ratio = rows[1][5] / rows[0][5]

    print()
    print(
        f"SAM 2 session overhead: {segmenter.name}, device {segmenter.device}, {frames} frames {width}x{height}, "
        f"{args.objects} objects, {args.repeats} runs each, torch threads {torch.get_num_threads()}"
    )
    print(f"{'':6} {'open s':>8} {'prompts s':>10} {'s/frame median':>15} {'s/frame min':>12} {'total s':>9}")
    for side, open_s, prompt_s, per_frame, per_frame_min, total in rows:
        print(f"{side:6} {open_s:8.2f} {prompt_s:10.2f} {per_frame:15.4f} {per_frame_min:12.4f} {total:9.2f}")
    print(
        f"ratio ours/meta per propagated frame: median {ratio:.3f}, min {ratio_min:.3f} (target <= 1.05); "
        f"end to end (open + prompts + propagate, median): {total_ratio:.3f}"
    )
    print(f"frame loading alone (decode + resize + normalize): {load_per_frame * 1000:.1f} ms/frame")
    print(f"masks identical to Meta's: {'yes' if identical else 'NO'}")

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {
        "model": segmenter.name,
        "device": str(segmenter.device),
        "frames": frames,
        "frame_size": [width, height],
        "objects": args.objects,
        "runs": runs,
        "ratio_per_frame": ratio,
        "ratio_per_frame_min": ratio_min,
        "ratio_end_to_end": total_ratio,
        "load_ms_per_frame": load_per_frame * 1000,
        "identical_masks": identical,
    }
    (RESULTS / "sam2_session.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
