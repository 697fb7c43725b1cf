"""Ingest speed and memory: frames decoded/s, annotated frames written/s and peak RSS, against a bare decode.

    .venv/bin/python bench/bench_ingest.py            # full table (generates videos once, ~1-2 min)
    .venv/bin/python bench/bench_ingest.py --quick    # shorter clips

Videos: synthetic 1080p (fixtures ``hd``) and 854x480 at 24 fps, ~10 s each; the 480p spec at 5 s
and 20 s to show memory does not grow with length; and a real 720p h264 clip from
``../shared/data/videos`` when present. Generated videos are cached in ``bench/results/videos``.

Every measurement runs in a fresh subprocess so peak RSS (``ru_maxrss``) belongs to that run alone:

- ``baseline``: a bare ``cv2.VideoCapture(...).read()`` loop over every frame, the floor any
  OpenCV ingest pays;
- ``ingest``: the real service, ``annotator.services.videos.ingest_video`` (probe, decode, JPEG
  q90 at the project's stride, progress writes to SQLite, atomic rename). Django is set up from a
  database migrated once beforehand, so the child's peak is Django + ingest, not ``migrate``.

"ratio" is ingest time / baseline time on the same file (< 1 means ingest is faster than the bare
loop, because skipped frames are only ``grab()``-ed, not converted to BGR).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "bench" / "results"
SHARED_VIDEOS = Path(os.environ.get("MASKLET_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")) / "videos"


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent
    across fork + exec, so a child would report the (bigger) parent's peak."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- children ------------------------------------------------------------------------------


def child_baseline(path: str) -> dict:
    import cv2

    start_rss = _rss_mb()
    t0 = time.perf_counter()
    capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    frames = 0
    while True:
        ok, _frame = capture.read()
        if not ok:
            break
        frames += 1
    capture.release()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "decoded": frames, "written": 0, "rss_start_mb": start_rss, "peak_mb": _peak_mb()}


def child_ingest(path: str, data_dir: str) -> dict:
    os.environ["MASKLET_DATA_DIR"] = data_dir
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("MASKLET_LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(REPO_ROOT))
    import django

    django.setup()
    from django.db import transaction

    from annotator.models import Project
    from annotator.services.videos import create_video_from_path, ingest_video

    project = Project.objects.create(name="Bench", slug="bench")
    with transaction.atomic():
        video = create_video_from_path(project, path, schedule_ingest=False)
    start_rss = _rss_mb()
    t0 = time.perf_counter()
    video = ingest_video(video.id)
    seconds = time.perf_counter() - t0
    if video.status != "ready":
        raise SystemExit(f"ingest failed: {video.failure_reason}")
    return {"seconds": seconds, "decoded": video.frame_count, "written": video.annotated_frame_count,
            "stride": video.stride, "rss_start_mb": start_rss, "peak_mb": _peak_mb()}


# -- parent --------------------------------------------------------------------------------


def run_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, cwd=REPO_ROOT,
                         check=False)
    if out.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def migrated_template(root: Path) -> Path:
    """A data dir with a migrated SQLite database; each ingest child gets a copy."""
    template = root / "template"
    template.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["MASKLET_DATA_DIR"] = str(template)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=REPO_ROOT, env=env, check=True)
    return template


def synthetic_videos(quick: bool) -> list[tuple[str, Path]]:
    sys.path.insert(0, str(REPO_ROOT))
    from fixtures.synthetic import PRESETS, write_video

    seconds = 2 if quick else 10
    specs = [
        ("1080p synthetic", replace(PRESETS["hd"], num_frames=24 * seconds, name=f"bench_1080p_{seconds}s")),
        ("480p synthetic", replace(PRESETS["sav"], width=854, num_frames=24 * seconds, name=f"bench_480p_{seconds}s")),
        ("480p 5 s", replace(PRESETS["sav"], width=854, num_frames=24 * 5, name="bench_480p_5s")),
        ("480p 20 s", replace(PRESETS["sav"], width=854, num_frames=24 * 20, name="bench_480p_20s")),
    ]
    if quick:
        specs = specs[:2]
    folder = RESULTS / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for label, spec in specs:
        path = folder / f"{spec.video_id}.mp4"
        if not path.exists():
            print(f"generating {path.name} ({spec.width}x{spec.height}, {spec.num_frames} frames)...", flush=True)
            partial = path.with_suffix(".part.mp4")
            write_video(spec, partial)
            partial.rename(path)
        out.append((label, path))
    return out


def real_video() -> tuple[str, Path] | None:
    for name in ("02_cups.mp4", "01_dog.mp4"):
        if (SHARED_VIDEOS / name).exists():
            return (f"720p real h264 ({name})", SHARED_VIDEOS / name)
    return None


def describe(path: Path) -> str:
    import cv2

    capture = cv2.VideoCapture(str(path))
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps, count = capture.get(cv2.CAP_PROP_FPS), int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    codec = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("latin-1")
    capture.release()
    return f"{width}x{height} {codec} {fps:.2f} fps {count} fr ({count / fps:.1f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 s clips, no length sweep")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement; the fastest is kept")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        print(json.dumps(child_baseline(*rest) if kind == "baseline" else child_ingest(*rest)))
        return

    videos = synthetic_videos(args.quick)
    real = real_video()
    if real:
        videos.insert(2, real)
    else:
        print(f"(no real video: {SHARED_VIDEOS} is absent)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        template = migrated_template(Path(tmp))
        for label, path in videos:
            best: dict[str, dict] = {}
            for _ in range(args.repeat):
                base = run_child("baseline", str(path))
                data = Path(tmp) / f"run-{len(rows)}-{time.monotonic_ns()}"
                shutil.copytree(template, data)
                ingest = run_child("ingest", str(path), str(data))
                shutil.rmtree(data)
                for key, value in (("baseline", base), ("ingest", ingest)):
                    if key not in best or value["seconds"] < best[key]["seconds"]:
                        best[key] = value
            rows.append((label, describe(path), best["baseline"], best["ingest"]))
            print(f"  measured {label}", flush=True)

    print()
    print(f"Ingest benchmark ({os.cpu_count()} CPUs, best of {args.repeat}); each cell from a fresh process")
    header = ("video", "source", "bare read fr/s", "bare peak MB", "ingest decoded fr/s", "written fr/s",
              "stride", "ingest s", "ratio", "RSS before MB", "ingest peak MB")
    table = [header]
    for label, source, base, ing in rows:
        table.append((
            label, source,
            f"{base['decoded'] / base['seconds']:.0f}", f"{base['peak_mb']:.0f}",
            f"{ing['decoded'] / ing['seconds']:.0f}", f"{ing['written'] / ing['seconds']:.1f}",
            str(ing["stride"]), f"{ing['seconds']:.2f}", f"{ing['seconds'] / base['seconds']:.2f}",
            f"{ing['rss_start_mb']:.0f}", f"{ing['peak_mb']:.0f}",
        ))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print("| " + " | ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ingest.json").write_text(json.dumps(
        [{"video": r[0], "source": r[1], "baseline": r[2], "ingest": r[3]} for r in rows], indent=1))


if __name__ == "__main__":
    main()
