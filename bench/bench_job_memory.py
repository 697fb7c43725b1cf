"""Peak memory of a fine-tuning run against its settings: the numbers ``engine.jobs`` estimates from.

    nice .venv/bin/python bench/bench_job_memory.py                       # default grid (~5 min on 2 cores)
    nice .venv/bin/python bench/bench_job_memory.py --sizes 128,256 --frames 2,4

Each case runs in a fresh subprocess: ``segmentation.training.loop.fine_tune`` of the tiny config
(random weights, CPU, ``--objects`` objects) for ``--steps`` steps on one synthetic clip of ``frames``
frames at ``size`` px, and reports its own peak RSS (``ru_maxrss``) and the RSS after ``import torch``
(the interpreter's floor). The table then compares each peak with ``engine.jobs.estimate_training_mb`` (the
fitted model: base + bytes per pixel x pixels x frames) and prints a least-squares fit of the
measured peaks, which is where the constants of ``engine.jobs`` come from.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, os, resource, sys
import numpy as np
import torch
torch.set_num_threads(1)
floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
from segmentation.training.clips import Clip
from segmentation.training.loop import FineTuneConfig, fine_tune
size, frames, steps, objects = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = np.random.default_rng(0)
images = [(rng.random((size, size, 3)) * 255).astype(np.uint8) for _ in range(frames)]
masks = []
for t in range(frames):
    mask = np.zeros((size, size), bool)
    mask[size // 4 + t: size // 2 + t, size // 4: size // 2] = True
    masks.append(mask)
tracks = {1 + k: [np.roll(m, 7 * k, axis=1) for m in masks] for k in range(objects)}
config = FineTuneConfig(model_config="sam2.1_hiera_t", image_size=size, steps=steps, clip_length=frames,
                        max_objects=objects, device="cpu", seed=0)
result = fine_tune([Clip(images, tracks)], config)
print(json.dumps({"floor_mb": floor, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "s_per_step": result.seconds_per_step}))
"""


INFER_CHILD = r"""
import json, resource, sys
import torch
torch.set_num_threads(1)
floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
from segmentation import sam2_model
size = int(sys.argv[1])
model = sam2_model.build_model("sam2.1_hiera_t", image_size=size, device="cpu")
with torch.inference_mode():
    model.forward_image(torch.randn(1, 3, size, size))
print(json.dumps({"floor_mb": floor, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def measure(size: int, frames: int, steps: int, child: str = CHILD, objects: int = 1) -> dict:
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run([sys.executable, "-c", child, str(size), str(frames), str(steps), str(objects)],
                         env=env,
                         capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="128,256,384")
    parser.add_argument("--frames", default="2,4")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--objects", type=int, default=1, help="objects per window")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    import numpy as np

    from engine.jobs import estimate_inference_mb, estimate_training_mb

    rows = []
    print(f"{args.objects} object(s) per window")
    print(f"{'size':>5} {'frames':>6} {'floor MB':>9} {'peak MB':>8} {'estimate MB':>11} {'est/peak':>8} {'s/step':>7}")
    for size in [int(s) for s in args.sizes.split(",")]:
        for frames in [int(f) for f in args.frames.split(",")]:
            row = {"size": size, "frames": frames, **measure(size, frames, args.steps, objects=args.objects)}
            row["estimate_mb"] = estimate_training_mb("sam2.1_hiera_t", size, frames, args.objects)
            rows.append(row)
            print(f"{size:>5} {frames:>6} {row['floor_mb']:>9.0f} {row['peak_mb']:>8.0f} {row['estimate_mb']:>11.0f} "
                  f"{row['estimate_mb'] / row['peak_mb']:>8.2f} {row['s_per_step']:>7.2f}", flush=True)
    if len(rows) > 2:
        pixels_frames = np.array([r["size"] ** 2 * r["frames"] for r in rows], dtype=float)
        slope, base = np.polyfit(pixels_frames, [r["peak_mb"] for r in rows], 1)
        print(f"fit: peak MB = {base:.0f} + {slope * 2**20:.0f} bytes x pixels x frames")
    print(f"\ninference (model built + one frame through the image encoder)\n{'size':>5} {'floor MB':>9} "
          f"{'peak MB':>8} {'estimate MB':>11} {'est/peak':>8}")
    infer = []
    for size in [int(s) for s in args.sizes.split(",")]:
        row = {"size": size, **measure(size, 1, 1, INFER_CHILD)}
        row["estimate_mb"] = estimate_inference_mb("sam2.1_hiera_t", size)
        infer.append(row)
        print(f"{size:>5} {row['floor_mb']:>9.0f} {row['peak_mb']:>8.0f} {row['estimate_mb']:>11.0f} "
              f"{row['estimate_mb'] / row['peak_mb']:>8.2f}", flush=True)
    if len(infer) > 2:
        slope, base = np.polyfit([r["size"] ** 2 for r in infer], [r["peak_mb"] for r in infer], 1)
        print(f"fit: peak MB = {base:.0f} + {slope * 2**20:.0f} bytes x pixels")


if __name__ == "__main__":
    main()
