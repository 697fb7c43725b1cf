"""Frames through object storage (issue 17): frames/s read from the local disk against an S3 bucket
through the machine's cache, cold (empty cache) and warm, and propagation throughput on each.

    .venv/bin/python bench/bench_storage.py               # 120 frames at 854x480, 3 repeats
    .venv/bin/python bench/bench_storage.py --quick       # 24 frames at 320x180, 1 repeat (the smoke test)

Cases, all in one run on the same JPEGs (ingest's q90), alternated so load moves them alike:

- ``local``: ``file://`` storage, the frames read in place (``JpegFolderFrames``), the baseline;
- ``s3 cold``: ``s3://`` storage on moto's server on 127.0.0.1 (``tests/s3_server.py``), an empty
  cache: every frame is fetched, ``PREFETCH`` ahead of the reader by ``TRANSFER_THREADS`` threads;
- ``s3 warm``: the same with the video already in the cache (a worker's second session on it).

"read" decodes every frame in order; "track" is a classical propagation of one clicked object
from frame 0 through the video (``segmentation.classical``), what a GPU worker serves. Ratios are
local time / case time (1.0: as fast as local). Target: the warm track >= 0.9 of local. moto is
a local process: a MinIO on another host adds its network latency to the cold case only.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "bench" / "results"
VIDEO_ID = 1
CASES = ("local", "s3 cold", "s3 warm")


def load_s3_server():
    """``tests/s3_server.py`` by path (bench scripts do not import the test package)."""
    spec = importlib.util.spec_from_file_location("s3_server", REPO_ROOT / "tests" / "s3_server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_frames(folder: Path, width: int, height: int, count: int) -> tuple[float, float]:
    """Synthetic frames as ingest writes them; returns a click on object 1 of frame 0 (x, y)."""
    import cv2
    import numpy as np

    from fixtures.synthetic import preset, render_frame

    spec = preset("tiny", width=width, height=height, num_frames=count, num_objects=2)
    folder.mkdir(parents=True)
    for t in range(count):
        rgb, masks = render_frame(spec, t)
        cv2.imwrite(str(folder / f"{t:05d}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        if t == 0:
            ys, xs = np.nonzero(masks[1])
            click = float(xs[len(xs) // 2]), float(ys[len(ys) // 2])
    return click


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--size", default="854x480")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="24 frames at 320x180, one repeat")
    parser.add_argument("--out", type=Path, default=RESULTS / "storage.json", help="where the JSON goes")
    args = parser.parse_args()
    if args.quick:
        args.frames, args.size, args.repeats = 24, "320x180", 1
    width, height = (int(n) for n in args.size.split("x"))

    scratch = Path(tempfile.mkdtemp(prefix="masklet-bench-storage-"))
    os.environ.update(MASKLET_DATA_DIR=str(scratch / "data"), DJANGO_SETTINGS_MODULE="config.settings")
    os.environ.pop("MASKLET_STORAGE_URL", None)
    sys.path.insert(0, str(REPO_ROOT))
    import django

    django.setup()
    from django.conf import settings

    from config.settings import storage_settings
    from engine import storage
    from segmentation.backends import build_segmenter

    s3 = load_s3_server()
    for name, value in s3.CREDENTIALS.items():
        os.environ.setdefault(name, value)
    server = s3.S3Server()
    try:
        frames_folder = scratch / "frames"
        click = write_frames(frames_folder, width, height, args.frames)
        local = storage_settings((scratch / "local").as_uri(), None, scratch / "data")
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        server.client().create_bucket(Bucket=bucket)
        remote = storage_settings(f"s3://{bucket}/bench", server.url, scratch / "data")

        def use(values: dict) -> None:
            for name, value in values.items():
                setattr(settings, name, value)

        for values in (local, remote):  # publish the same frames to both storages
            use(values)
            copy = scratch / f"publish-{uuid.uuid4().hex[:6]}"
            shutil.copytree(frames_folder, copy)
            storage.VideoFrames(VIDEO_ID).publish(copy)

        def open_case(case: str):
            use(local if case == "local" else remote)
            if case == "s3 cold":
                shutil.rmtree(settings.CACHE_ROOT, ignore_errors=True)
            return storage.VideoFrames(VIDEO_ID).source()

        def read(case: str) -> float:
            start = time.perf_counter()
            source = open_case(case)
            for index in range(len(source)):
                source[index]
            return time.perf_counter() - start

        def track(case: str) -> float:
            start = time.perf_counter()
            session = build_segmenter("classical").open_session(open_case(case))
            session.add_points(0, 1, [click], [1])
            tracked = sum(1 for _ in session.propagate(0, "forward"))
            assert tracked == args.frames, tracked
            return time.perf_counter() - start

        read("local"), track("local")  # warm-up: imports, OpenCV's first calls, the page cache
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.repeats):
            for what, run in (("read", read), ("track", track)):
                for case in CASES:  # cold empties the cache, warm follows it: warm is a second look
                    times.setdefault((what, case), []).append(run(case))
    finally:
        server.close()
        shutil.rmtree(scratch, ignore_errors=True)

    rows = []
    print(f"\n{args.frames} frames {width}x{height}, {args.repeats} repeat(s), median seconds\n")
    print(f"| {'':5} | {'case':8} | {'s':>7} | {'frames/s':>8} | {'vs local':>8} |")
    print(f"|{'-' * 7}|{'-' * 10}|{'-' * 9}|{'-' * 10}|{'-' * 10}|")
    for what in ("read", "track"):
        base = statistics.median(times[(what, "local")])
        for case in CASES:
            seconds = statistics.median(times[(what, case)])
            rows.append({"what": what, "case": case, "seconds": seconds, "fps": args.frames / seconds,
                         "vs_local": base / seconds})
            print(f"| {what:5} | {case:8} | {seconds:7.3f} | {args.frames / seconds:8.1f} | {base / seconds:8.2f} |")
    warm = next(r for r in rows if r["what"] == "track" and r["case"] == "s3 warm")["vs_local"]
    cold = next(r for r in rows if r["what"] == "track" and r["case"] == "s3 cold")
    local_track = next(r for r in rows if r["what"] == "track" and r["case"] == "local")
    print(f"\nwarm track vs local: {warm:.2f} (target >= 0.90: {'met' if warm >= 0.9 else 'NOT met'}); "
          f"cold-start penalty: {cold['seconds'] - local_track['seconds']:+.3f} s over the whole track")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"frames": args.frames, "size": [width, height],
                                                      "repeats": args.repeats, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
