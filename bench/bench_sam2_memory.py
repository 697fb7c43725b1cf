"""Peak memory of a SAM 2 session against video length: our lazy frames vs Meta's ``init_state``.

    .venv/bin/python bench/bench_sam2_memory.py                      # 50, 200, 800 frames (~15 min on 2 cores)
    .venv/bin/python bench/bench_sam2_memory.py --lengths 50,200     # quick run

Frames: synthetic 854x480 JPEGs (q90) written once to a temp folder; each length uses the first N
of them. Each (length, loader) case runs in a fresh subprocess that builds the model (tiny config,
random weights, ``--image-size`` 256), opens a session, clicks one object on frame 0 and
propagates forward over all N frames, then reports its own peak RSS (``ru_maxrss``):

- ``meta``: ``predictor.init_state(folder)``: every frame as float32 (3, S, S) in one tensor
  (0.75 MB per frame at 256, 12 MB at 1024), held for the whole session;
- ``ours``: ``Sam2Segmenter.open_session(JpegFolderFrames(folder))``: frames decoded, resized
  and normalized on demand, at most ``frame_cache_size`` held.

Columns: ``model MB`` is RSS after building the model (before any video), ``peak MB`` the
process peak (``ru_maxrss``, which includes the model build's own transient peak),
``session peak`` the peak RSS from after the build to the end (VmHWM, reset through
``/proc/self/clear_refs``), ``session MB`` = session peak - model MB; ``outputs MB`` is what the predictor keeps per
tracked frame (memory features + low-res mask logits, the part that grows in both);
``frames held`` is how many normalized frames were in memory at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "bench" / "results"


def rss_mb() -> float:
    """Current resident set size, from /proc (no psutil)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so it measures from now; False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def hwm_mb() -> float:
    """Peak RSS since the last ``reset_peak`` (VmHWM), from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def tensor_mb(obj, seen: set[int] | None = None) -> float:
    """Megabytes of distinct tensor storage reachable through dicts/lists/tuples."""
    import torch

    seen = set() if seen is None else seen
    if isinstance(obj, torch.Tensor):
        ptr = obj.untyped_storage().data_ptr()
        if ptr in seen:
            return 0.0
        seen.add(ptr)
        return obj.untyped_storage().nbytes() / 2**20
    if isinstance(obj, dict):
        return sum(tensor_mb(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_mb(v, seen) for v in obj)
    return 0.0


def child(loader: str, folder: Path, image_size: int, config: str, threads: int | None) -> dict:
    """One case, in this (fresh) process."""
    import numpy as np
    import torch

    if threads:
        torch.set_num_threads(threads)
    sys.path.insert(0, str(REPO_ROOT))
    from segmentation.frames import JpegFolderFrames
    from segmentation.sam2_backend import Sam2Segmenter

    torch.manual_seed(0)
    segmenter = Sam2Segmenter(config, image_size=image_size, device="cpu")
    predictor = segmenter.predictor
    model_mb = rss_mb()
    # Building the model has its own transient peak; measure the session's peak from here on.
    session_peak_from_here = reset_peak()
    source = JpegFolderFrames(folder)
    click = (source.width / 2, source.height / 2)

    t0 = time.perf_counter()
    if loader == "ours":
        session = segmenter.open_session(source)
        state = session.state
        open_s = time.perf_counter() - t0
        session.add_points(0, 1, [click], [1])
        t1 = time.perf_counter()
        frames = sum(1 for _ in session.propagate(0, "forward"))
        held = session.images.cached
    else:
        state = predictor.init_state(video_path=str(folder))
        open_s = time.perf_counter() - t0
        predictor.add_new_points_or_box(state, 0, 1, points=np.asarray([click], np.float32), labels=np.array([1]))
        t1 = time.perf_counter()
        frames = sum(1 for _ in predictor.propagate_in_video(state, start_frame_idx=0))
        held = len(state["images"])
    propagate_s = time.perf_counter() - t1
    return {
        "loader": loader,
        "frames": frames,
        "model_mb": model_mb,
        "peak_mb": peak_rss_mb(),
        "session_peak_mb": hwm_mb() if session_peak_from_here else peak_rss_mb(),
        "open_s": open_s,
        "per_frame_s": propagate_s / frames,
        "frames_held": held,
        "outputs_mb": tensor_mb(state["output_dict_per_obj"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="50,200,800", help="comma-separated frame counts")
    parser.add_argument("--loaders", default="ours,meta")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--config", default="sam2.1_hiera_t")
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 is far faster on a loaded shared CPU)")
    parser.add_argument("--child", choices=("ours", "meta"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(child(args.child, args.folder, args.image_size, args.config, args.threads)))
        return

    sys.path.insert(0, str(REPO_ROOT / "bench"))
    from bench_sam2_session import write_synthetic_jpegs

    lengths = [int(n) for n in args.lengths.split(",")]
    loaders = args.loaders.split(",")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-sam2-mem-") as tmp:
        all_frames = write_synthetic_jpegs(Path(tmp) / "all", max(lengths))
        for n in lengths:
            folder = Path(tmp) / f"n{n}"
            folder.mkdir()
            for path in sorted(all_frames.glob("*.jpg"))[:n]:
                (folder / path.name).symlink_to(path)
            for loader in loaders:
                cmd = [sys.executable, __file__, "--child", loader, "--folder", str(folder)]
                cmd += ["--image-size", str(args.image_size), "--config", args.config]
                cmd += ["--threads", str(args.threads)] if args.threads else []
                done = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    sys.exit(f"{loader} on {n} frames failed:\n{done.stderr[-3000:]}")
                row = json.loads(done.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(f"{n} frames {loader}: {json.dumps(row)}", flush=True)

    print()
    print(f"SAM 2 session memory: tiny config @{args.image_size}, CPU, 854x480 synthetic JPEGs, 1 object")
    header = (
        f"{'frames':>6} {'loader':6} {'model MB':>9} {'peak MB':>8} {'session peak':>13} {'session MB':>11} "
        f"{'frames held':>12} {'outputs MB':>11} {'open s':>7} {'s/frame':>8}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['frames']:6d} {r['loader']:6} {r['model_mb']:9.0f} {r['peak_mb']:8.0f} {r['session_peak_mb']:13.0f} "
            f"{r['session_peak_mb'] - r['model_mb']:11.0f} {r['frames_held']:12d} {r['outputs_mb']:11.1f} "
            f"{r['open_s']:7.2f} {r['per_frame_s']:8.3f}"
        )
    for loader in loaders:
        mine = sorted((r for r in rows if r["loader"] == loader), key=lambda r: r["frames"])
        if len(mine) >= 2:
            a, b = mine[0], mine[-1]
            slope = (b["session_peak_mb"] - a["session_peak_mb"]) / (b["frames"] - a["frames"]) * 100
            print(f"{loader}: session peak grows {slope:.1f} MB per 100 frames ({a['frames']} -> {b['frames']})")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sam2_memory.json").write_text(json.dumps({"image_size": args.image_size, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
