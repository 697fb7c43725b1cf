"""Classical (OpenCV) backend: quality on DAVIS and per-frame speed at 480p and 720p, against trivial baselines.

    .venv/bin/python bench/bench_classical.py           # all 4 DAVIS sequences, all frames (~1-2 min)
    .venv/bin/python bench/bench_classical.py --quick   # first 15 frames of each sequence
    .venv/bin/python bench/bench_classical.py --json out.json

Quality (``../shared/data/davis-dev``, skipped when absent): each sequence is prompted on frame 0
and propagated over every frame. J is the IoU computed here with numpy; J&F comes from
``segmentation.metrics`` when that module is present (DAVIS convention: first and last frames
left out). Prompts:

- ``click``: one positive click at the centre of the frame-0 ground truth (the simulated
  annotator's first click);
- ``box``: the ground-truth bounding box of frame 0;
- ``box+2``: the same box plus two correction clicks on frame 0 from the simulated annotator
  (centre of the largest error region, positive if missed, negative if false), as in the SAM 2
  paper's interactive protocol;
- ``gt-mask``: the frame-0 ground truth as a mask prompt, which isolates propagation quality.

Baselines measured in the same run so the numbers mean something: ``copy-gt`` copies the frame-0
ground truth to every frame (what a tracker that never moves would score) and ``copy-box`` copies
the frame-0 box-prompt mask.

Clicks (``--clicks N``, default 5): the per-click IoU curve on the prompted frame itself, the
simulated annotator's clicks one at a time (``segmentation.clicker``: centre first, then the
centre of the largest error region), on frames 0, middle and last of each DAVIS sequence and on
the objects drawn by hand on real video (``tests/segmentation/data/real_video_masks.json``); the
baseline is the first click's mask kept as it is. Reported: mean IoU after each click, and how
many corrective clicks raised the IoU / lowered it by more than 0.05.

Speed: per-frame wall time of a box prompt, a click and a propagated frame on DAVIS (854x480)
and on the first 30 frames of a real 1280x720 video from ``../shared/data/videos`` (decoded with
cv2), also resized to 854x480. Times depend on load: the machine this was written on has 2 shared
cores, so the median is reported next to the 90th percentile, and the CPU time per propagated
frame (``time.process_time``, all threads of this process) next to the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from segmentation.classical import ClassicalSegmenter  # noqa: E402
from segmentation.clicker import first_click, next_click  # noqa: E402
from segmentation.frames import ArrayFrames, JpegFolderFrames  # noqa: E402

SHARED = Path(os.environ.get("MASKLET_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
DAVIS = SHARED / "davis-dev"
VIDEOS = SHARED / "videos"
SEQUENCES = ("blackswan", "car-shadow", "dog", "libby")
DRAWN = REPO_ROOT / "tests" / "segmentation" / "data" / "real_video_masks.json"

try:  # written by another engineer at the same time; optional here
    from segmentation import metrics as _metrics
except ImportError:  # pragma: no cover
    _metrics = None


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Region similarity J (1 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def correction_click(gt: np.ndarray, pred: np.ndarray) -> tuple[tuple[int, int], int] | None:
    """The simulated annotator's next click: centre of the largest error region (paper appendix E.1.2)."""
    best = None
    for region, label in ((gt & ~pred, 1), (pred & ~gt, 0)):
        n, labels, stats, _ = cv2.connectedComponentsWithStats(region.astype(np.uint8), connectivity=8)
        if n <= 1:
            continue
        k = int(np.argmax(stats[1:, cv2.CC_STAT_AREA])) + 1
        area = int(stats[k, cv2.CC_STAT_AREA])
        if best is None or area > best[0]:
            best = (area, labels == k, label)
    if best is None:
        return None
    dist = cv2.distanceTransform(np.pad(best[1].astype(np.uint8), 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return (int(x), int(y)), best[2]


def gt_box(gt: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(gt)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def j_and_f(gts: list[np.ndarray], preds: list[np.ndarray]) -> float | None:
    if _metrics is None:
        return None
    score = _metrics.evaluate_object(dict(enumerate(gts)), dict(enumerate(preds)), skip_first_and_last=True)
    return float(score.jf)


def davis_quality(limit: int | None) -> list[dict]:
    rows = []
    segmenter = ClassicalSegmenter()
    for sequence in SEQUENCES:
        frames = JpegFolderFrames(DAVIS / "JPEGImages" / "480p" / sequence, cache_size=4)
        paths = sorted((DAVIS / "Annotations" / "480p" / sequence).glob("*.png"))[:limit]
        gts = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) > 127 for p in paths]
        n = len(gts)
        box_mask = None
        for mode in ("click", "box", "box+2", "gt-mask"):
            session = segmenter.open_session(frames)
            t0 = time.perf_counter()
            if mode == "gt-mask":
                first = session.add_mask(0, 1, gts[0])
            elif mode == "click":
                first = session.add_points(0, 1, [correction_click(gts[0], np.zeros_like(gts[0]))[0]], [1])
            else:
                first = session.add_box(0, 1, gt_box(gts[0]))
                if mode == "box":
                    box_mask = first
                else:
                    for _ in range(2):
                        click = correction_click(gts[0], first)
                        if click is None:
                            break
                        first = session.add_points(0, 1, [click[0]], [click[1]])
            prompt_s = time.perf_counter() - t0
            preds, times = [], []
            t = time.perf_counter()
            for result in session.propagate(0, max_frames=n):
                now = time.perf_counter()
                times.append(now - t)
                t = now
                preds.append(result.masks[1])
            js = [iou(p, g) for p, g in zip(preds, gts, strict=True)]
            rows.append(
                {
                    "sequence": sequence,
                    "prompt": mode,
                    "frames": n,
                    "J_frame0": js[0],
                    "J": float(np.mean(js[1:])),
                    "JF": j_and_f(gts, preds),
                    "prompt_s": prompt_s,
                    "propagate_s_median": float(np.median(times[1:])),
                }
            )
            print(f"  {sequence:10s} {mode:8s} J={rows[-1]['J']:.3f}", file=sys.stderr, flush=True)
        for name, mask in (("copy-gt", gts[0]), ("copy-box", box_mask)):
            preds = [mask] * n
            js = [iou(mask, g) for g in gts]
            rows.append(
                {
                    "sequence": sequence,
                    "prompt": name,
                    "frames": n,
                    "J_frame0": js[0],
                    "J": float(np.mean(js[1:])),
                    "JF": j_and_f(gts, preds),
                    "prompt_s": None,
                    "propagate_s_median": None,
                }
            )
    return rows


def click_cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, frame, ground truth) of every frame the click curve is measured on."""
    cases = []
    if DAVIS.exists():
        for sequence in SEQUENCES:
            paths = sorted((DAVIS / "Annotations" / "480p" / sequence).glob("*.png"))
            for path in (paths[0], paths[len(paths) // 2], paths[-1]):
                image = DAVIS / "JPEGImages" / "480p" / sequence / f"{path.stem}.jpg"
                frame = cv2.cvtColor(cv2.imread(str(image)), cv2.COLOR_BGR2RGB)
                cases.append((f"{sequence}@{int(path.stem)}", frame, cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) > 127))
    for name, entry in json.loads(DRAWN.read_text())["objects"].items():
        if (VIDEOS / entry["video"]).exists():
            frame = read_video(VIDEOS / entry["video"], 1)[0]
            gt = np.zeros(frame.shape[:2], np.uint8)
            cv2.fillPoly(gt, [np.array(entry["polygon"], np.int32)], 1)
            cases.append((f"{entry['video']} {name}", frame, gt.astype(bool)))
    return cases


def click_curves(clicks: int) -> list[dict]:
    rows = []
    for name, frame, gt in click_cases():
        session = ClassicalSegmenter().open_session(ArrayFrames([frame]))
        pred, ious, seconds = None, [], []
        for number in range(clicks):
            click = first_click(gt) if number == 0 else next_click(gt, pred)
            if click is None:
                ious.append(1.0)
                continue
            t = time.perf_counter()
            pred = session.add_points(0, 1, [(click.x, click.y)], [click.label])
            seconds.append(time.perf_counter() - t)
            ious.append(iou(pred, gt))
        rows.append({"case": name, "iou": ious, "click_s_median": float(np.median(seconds))})
        print(f"  {name:24s} " + " ".join(f"{v:.3f}" for v in ious), file=sys.stderr, flush=True)
    return rows


def timing(label: str, frames: ArrayFrames, box: tuple[int, int, int, int]) -> dict:
    """Per-frame times of a box prompt, a click (added to the box) and propagation over all frames."""
    session = ClassicalSegmenter().open_session(frames)
    t = time.perf_counter()
    session.add_box(0, 1, box)
    box_s = time.perf_counter() - t
    cx, cy = (box[0] + box[2]) // 2, (box[1] + box[3]) // 2
    t = time.perf_counter()
    session.add_points(0, 1, [(cx, cy)], [1])
    click_s = time.perf_counter() - t
    fresh = ClassicalSegmenter().open_session(frames)
    t = time.perf_counter()
    fresh.add_points(0, 2, [(cx, cy)], [1])
    click_only_s = time.perf_counter() - t
    times, cpu = [], []
    t, c = time.perf_counter(), time.process_time()
    tracked = 0
    for result in session.propagate(0):
        tracked += bool(result.masks[1].any())
        now, now_c = time.perf_counter(), time.process_time()
        times.append(now - t)
        cpu.append(now_c - c)
        t, c = now, now_c
    per_frame = np.array(times[1:])
    return {
        "video": label,
        "size": f"{frames.width}x{frames.height}",
        "frames": len(frames),
        "box_s": box_s,
        "click_on_box_s": click_s,
        "click_only_s": click_only_s,
        "propagate_s_median": float(np.median(per_frame)),
        "propagate_s_p90": float(np.percentile(per_frame, 90)),
        "propagate_cpu_s_median": float(np.median(cpu[1:])),
        "frames_with_mask": tracked,
    }


def read_video(path: Path, count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < count:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


def speed(limit: int | None) -> list[dict]:
    rows = []
    if DAVIS.exists():
        sequence = "dog"
        paths = sorted((DAVIS / "JPEGImages" / "480p" / sequence).glob("*.jpg"))[: limit or 30]
        frames = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]
        gt = cv2.imread(str(DAVIS / "Annotations" / "480p" / sequence / "00000.png"), cv2.IMREAD_GRAYSCALE) > 127
        rows.append(timing(f"DAVIS {sequence}", ArrayFrames(frames), gt_box(gt)))
    video = VIDEOS / "01_dog.mp4"
    if video.exists():
        frames = read_video(video, 30)
        h, w = frames[0].shape[:2]
        box = (w // 3, h // 3, 2 * w // 3, 2 * h // 3)
        rows.append(timing(video.name, ArrayFrames(frames), box))
        small = [cv2.resize(f, (854, 480), interpolation=cv2.INTER_AREA) for f in frames]
        sbox = tuple(round(v * 854 / w) for v in box)
        rows.append(timing(f"{video.name} resized", ArrayFrames(small), sbox))
    return rows


def fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="first 15 frames of each sequence")
    parser.add_argument("--clicks", type=int, default=5, help="clicks per frame for the click curve (0: skip)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    limit = 15 if args.quick else None
    print(f"cv2 {cv2.__version__}, {cv2.getNumThreads()} OpenCV threads, {os.cpu_count()} CPUs")

    quality = []
    if DAVIS.exists():
        quality = davis_quality(limit)
        print("\nDAVIS (frame 0 prompted, J = mean IoU over frames 1..N-1; J&F by segmentation.metrics,")
        print("first and last frames left out; copy-* are baselines measured in this run)")
        print(
            f"{'sequence':11s} {'prompt':9s} {'frames':>6s} {'J f0':>6s} {'J':>6s} {'J&F':>6s} "
            f"{'prompt s':>9s} {'s/frame':>8s}"
        )
        for r in quality:
            print(
                f"{r['sequence']:11s} {r['prompt']:9s} {r['frames']:6d} {r['J_frame0']:6.3f} {r['J']:6.3f} "
                f"{fmt(r['JF']):>6s} {fmt(r['prompt_s']):>9s} {fmt(r['propagate_s_median']):>8s}"
            )
        print("\nmean over sequences")
        for mode in ("click", "box", "box+2", "gt-mask", "copy-gt", "copy-box"):
            rows = [r for r in quality if r["prompt"] == mode]
            jf = [r["JF"] for r in rows if r["JF"] is not None]
            print(f"  {mode:9s} J={np.mean([r['J'] for r in rows]):.3f}  J&F={fmt(np.mean(jf) if jf else None)}")
    else:
        print(f"\n{DAVIS} is absent: DAVIS quality skipped")

    curves = click_curves(args.clicks) if args.clicks > 0 else []
    if curves:
        print(f"\nClick curve on the prompted frame ({len(curves)} frames; IoU after each click)")
        print(f"{'case':26s} " + " ".join(f"{'c' + str(i + 1):>6s}" for i in range(args.clicks)) + f" {'s/click':>8s}")
        for r in curves:
            print(f"{r['case']:26s} " + " ".join(f"{v:6.3f}" for v in r["iou"]) + f" {r['click_s_median']:8.3f}")
        table = np.array([r["iou"] for r in curves])
        print(f"{'mean':26s} " + " ".join(f"{v:6.3f}" for v in table.mean(axis=0)))
        first = f"{table[:, 0].mean():6.3f}"
        print(f"{'baseline: first click kept':26s} " + " ".join([first] * args.clicks))
        steps = [(a, b) for row in table for a, b in zip(row, row[1:], strict=False) if a < 0.999]
        better = sum(b > a for a, b in steps)
        worse = sum(b < a - 0.05 for a, b in steps)
        print(f"corrective clicks: {better}/{len(steps)} raised the IoU, {worse} lowered it by more than 0.05")

    speeds = speed(limit)
    if speeds:
        print("\nSpeed (seconds; propagate = per propagated frame)")
        print(
            f"{'video':26s} {'size':>9s} {'frames':>6s} {'box':>6s} {'click+box':>9s} {'click':>6s} "
            f"{'prop med':>8s} {'p90':>6s} {'cpu med':>7s} {'tracked':>7s}"
        )
        for r in speeds:
            print(
                f"{r['video']:26s} {r['size']:>9s} {r['frames']:6d} {r['box_s']:6.3f} {r['click_on_box_s']:9.3f} "
                f"{r['click_only_s']:6.3f} {r['propagate_s_median']:8.3f} {r['propagate_s_p90']:6.3f} "
                f"{r['propagate_cpu_s_median']:7.3f} {r['frames_with_mask']:7d}"
            )
    else:
        print(f"\nno shared data under {SHARED}: speed skipped")
    if args.json:
        args.json.write_text(json.dumps({"quality": quality, "clicks": curves, "speed": speeds}, indent=2))


if __name__ == "__main__":
    main()
