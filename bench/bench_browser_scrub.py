"""Scrubbing the annotation page in Chromium: frames per second with 10 mask overlays on 1080p frames.

    .venv/bin/python bench/bench_browser_scrub.py              # ~1-2 min (generates the video once)
    .venv/bin/python bench/bench_browser_scrub.py --seconds 10 --objects 10

Setup, in a throwaway data directory (embedded mode, SQLite): a synthetic 1920x1080 video
(fixtures ``hd`` preset, 96 frames at 24 fps -> 24 annotated frames at stride 4), ingested by the
real service, and ``--objects`` masklets with a mask on every annotated frame written through
``annotator.services.masks.save_mask_frames``: the preset's 5 objects (their exact visible masks)
plus ellipses of 150-450 px drifting across the frame, so most frames carry all 10 overlays.
A real ``manage.py runserver`` serves it; headless Debian Chromium (the e2e tests' flags,
software rendering, device pixel ratio 1, a 1600x1000 window) opens the annotation page.

What is measured, in the page (requestAnimationFrame, not wall time of Python calls):

- ``first pass``: stepping once through every frame, waiting at each until the frame and all
  its overlays are drawn (frames fetched + decoded, RLE decoded into bitmaps by the worker):
  the latency a person sees when landing on a frame for the first time;
- ``scrub``: the scrubber moves to the next frame on EVERY animation frame (as fast as a person
  can drag) for ``--seconds``, looping over the video; fps = canvas draws per second (the
  canvas publishes ``data-renders``), "complete" = draws that showed the frame image and every
  stored overlay of that frame, p50/p95 = time between animation frames;
- ``baseline``: the same scrub with every object hidden (no overlays), same page, same run.

Both are measured twice: at the display's animation-frame rate (60 Hz in headless Chromium, a
ceiling both reach when drawing keeps up) and "uncapped" (``--disable-frame-rate-limit
--disable-gpu-vsync``: animation frames as fast as the page draws them), which shows the headroom.
Results also go to ``bench/results/browser_scrub.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "bench" / "results"
CHROMIUM = Path(os.environ.get("MASKLET_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
# Animation frames as fast as the page can draw them instead of at the display's 60 Hz: the headroom.
UNCAPPED_ARGS = ["--disable-frame-rate-limit", "--disable-gpu-vsync"]
USERNAME, PASSWORD = "bench", "bench-password-0123"
STRIDE = 4

SCRUB_JS = """
async ({seconds, count}) => {
  const canvas = document.getElementById('frame-canvas');
  const scrubber = document.getElementById('scrubber');
  const data = canvas.dataset;
  let position = Number(scrubber.value);
  const intervals = [];
  let complete = 0, steps = 0, overlays = 0;
  const renders0 = Number(data.renders);
  return await new Promise((resolve) => {
    let start = null, last = null;
    const tick = (now) => {
      if (start === null) { start = now; last = now; }
      else {
        intervals.push(now - last); last = now;
        // The renderer's callback ran before this one (registered first, by the previous step).
        if (data.frameReady === '1' && data.masks === data.masksExpected) complete += 1;
        overlays += Number(data.masks);
      }
      if (now - start >= seconds * 1000) {
        const renders = Number(data.renders) - renders0;
        resolve({elapsed_ms: now - start, renders, steps, complete, overlays, intervals});
        return;
      }
      position = (position + 1) % count;
      scrubber.value = String(position);
      scrubber.dispatchEvent(new Event('input'));
      steps += 1;
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  });
}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE",
                                                              "MASKLET_PRODUCTION")}
    env.update({"MASKLET_DATA_DIR": str(data_dir), "DJANGO_SETTINGS_MODULE": "config.settings",
                "MASKLET_ALLOWED_HOSTS": "127.0.0.1,localhost", "PYTHONUNBUFFERED": "1",
                "MASKLET_SECRET_KEY": "bench-only-secret-key-not-for-production-0123456789"})
    return env


def hd_video() -> Path:
    """The hd preset as mp4, generated once into bench/results/videos."""
    from fixtures.synthetic import PRESETS, write_video

    spec = PRESETS["hd"]
    path = RESULTS / "videos" / f"{spec.video_id}.mp4"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"generating {path} (1080p, {spec.num_frames} frames)...", flush=True)
        write_video(spec, path)
    return path


def seed(data_dir: Path, video_path: Path, objects: int) -> tuple[int, str, float]:
    """Child process (Django set up against ``data_dir``): user, project, ingested video, masks."""
    code = f"""
import json, math, time
import numpy as np
from django.contrib.auth import get_user_model
from annotator.models import Masklet, Membership, Project, Role
from annotator.services.masks import MaskWrite, save_mask_frames
from annotator.services.videos import create_video_from_path, ingest_video
from fixtures.synthetic import PRESETS, SyntheticFrames
from segmentation.masks import encode_rle
user = get_user_model().objects.create_user({USERNAME!r}, password={PASSWORD!r})
project = Project.objects.create(name="Bench", slug="bench", labels=["thing"], annotation_fps=6)
Membership.objects.create(project=project, user=user, role=Role.ANNOTATOR)
video = create_video_from_path(project, {str(video_path)!r}, None, "hd", schedule_ingest=False)
video = ingest_video(video.id)
assert video.status == "ready", video.failure_reason
frames = video.annotated_frame_indices()
spec = PRESETS["hd"]
truth = SyntheticFrames(spec, stride={STRIDE})
H, W = video.height, video.width
yy, xx = np.mgrid[:H, :W]
t0 = time.perf_counter()
for k in range(1, {objects} + 1):
    masklet = Masklet.objects.create(video=video, object_id=k, label="thing")
    writes = []
    for i, frame in enumerate(frames):
        if k <= spec.num_objects:
            mask = truth.masks(i)[k]
        else:
            rx, ry = 75 + 40 * (k % 5), 60 + 30 * (k % 4)
            cx = (0.1 + 0.8 * ((0.13 * k + 0.02 * i) % 1.0)) * W
            cy = (0.5 + 0.35 * math.sin(k + 0.2 * i)) * H
            mask = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        writes.append(MaskWrite(frame, encode_rle(mask)))
    save_mask_frames(masklet, writes, source="model")
print(json.dumps({{"video": video.id, "frames": len(frames), "size": f"{{W}}x{{H}}",
                  "seconds": time.perf_counter() - t0}}))
"""
    env = _env(data_dir)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=REPO_ROOT, env=env, check=True)
    out = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=REPO_ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout
    info = json.loads(out.strip().splitlines()[-1])
    return info["video"], info["size"], info["seconds"]


def start_server(data_dir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "manage.py", "runserver", "--noreload", "--insecure", f"127.0.0.1:{port}"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=_env(data_dir), stdout=log.open("w"),
                               stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/login/", timeout=2) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError(f"the server did not start:\n{log.read_text()[-3000:]}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def summarise(name: str, raw: dict) -> dict:
    seconds = raw["elapsed_ms"] / 1000
    return {"case": name, "fps": raw["renders"] / seconds, "steps_per_s": raw["steps"] / seconds,
            "complete": raw["complete"] / max(1, len(raw["intervals"])),
            "overlays_per_frame": raw["overlays"] / max(1, len(raw["intervals"])),
            "p50_ms": percentile(raw["intervals"], 0.5), "p95_ms": percentile(raw["intervals"], 0.95),
            "seconds": seconds}


def measure(url: str, video_id: int, frames: int, seconds: float, shots: Path | None, uncapped: bool) -> dict:
    from playwright.sync_api import sync_playwright

    args = CHROMIUM_ARGS + (UNCAPPED_ARGS if uncapped else [])
    mode = "uncapped" if uncapped else "60 Hz"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args, headless=True)
        context = browser.new_context(base_url=url, viewport={"width": 1600, "height": 1000}, device_scale_factor=1)
        context.set_default_timeout(60_000)
        page = context.new_page()
        page.goto("/login/")
        page.fill("#id_username", USERNAME)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"/$"))
        page.goto(f"/projects/bench/videos/{video_id}/annotate/")
        page.wait_for_function("document.getElementById('frame-canvas').dataset.connection === 'connected'")
        page.wait_for_function("Number(document.getElementById('frame-canvas').dataset.masksLoaded || 0) > 0")
        canvas = page.locator("#frame-canvas")
        size = canvas.bounding_box()

        # First pass: each frame until its image and every overlay are on the canvas.
        waits = []
        for position in range(frames):
            t0 = time.perf_counter()
            page.evaluate("(p) => { const s = document.getElementById('scrubber'); s.value = String(p);"
                          " s.dispatchEvent(new Event('input')); }", position)
            page.wait_for_function(f"(() => {{ const d = document.getElementById('frame-canvas').dataset;"
                                   f" return d.frame === '{position * STRIDE}' && d.frameReady === '1'"
                                   f" && d.masks === d.masksExpected; }})()", polling="raf")
            waits.append((time.perf_counter() - t0) * 1000)
        if shots and not uncapped:
            page.screenshot(path=str(shots / "bench-scrub.png"))
        overlays = summarise(f"{mode}: overlays", page.evaluate(SCRUB_JS, {"seconds": seconds, "count": frames}))
        for row in page.locator("li.object").all():  # hide every object: the baseline draws frames only
            row.locator(".object-visible").click()
        page.wait_for_function("document.getElementById('frame-canvas').dataset.masksExpected === '0'")
        baseline = summarise(f"{mode}: baseline", page.evaluate(SCRUB_JS, {"seconds": seconds, "count": frames}))
        version = browser.version
        browser.close()
    return {"first_pass_ms": {"median": percentile(waits, 0.5), "max": max(waits), "mean": sum(waits) / len(waits)},
            "rows": [baseline, overlays], "canvas": f"{size['width']:.0f}x{size['height']:.0f}", "chromium": version}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--keep", type=Path, help="keep the data directory, server log and a screenshot here")
    args = parser.parse_args()
    if not CHROMIUM.exists():
        sys.exit(f"Chromium not found at {CHROMIUM} (apt-get install -y chromium)")
    if not (REPO_ROOT / "frontend" / "dist" / "annotate.js").is_file():
        sys.exit("frontend/dist/annotate.js is missing: run `make frontend` first")
    sys.path.insert(0, str(REPO_ROOT))
    video_path = hd_video()
    root = args.keep or Path(tempfile.mkdtemp(prefix="masklet-bench-scrub-"))
    root.mkdir(parents=True, exist_ok=True)
    data_dir = root / "data"
    shutil.rmtree(data_dir, ignore_errors=True)
    t0 = time.perf_counter()
    video_id, size, mask_seconds = seed(data_dir, video_path, args.objects)
    print(f"seeded {size} video, {args.objects} masklets in {time.perf_counter() - t0:.1f} s "
          f"(masks written in {mask_seconds:.1f} s)", flush=True)
    process, url = start_server(data_dir, root / "server.log")
    try:
        result = measure(url, video_id, 24, args.seconds, root if args.keep else None, uncapped=False)
        uncapped = measure(url, video_id, 24, args.seconds, None, uncapped=True)
        result["rows"] += uncapped["rows"]
        result["first_pass_uncapped_ms"] = uncapped["first_pass_ms"]
    finally:
        process.terminate()
        process.wait(timeout=10)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    first = result["first_pass_ms"]
    print(f"\nChromium {result['chromium']} headless (--disable-gpu), canvas {result['canvas']} CSS px, "
          f"{size} frames, {args.objects} masklets, {os.cpu_count()} CPUs ({platform.machine()})")
    print(f"first pass (frame + overlays on screen): median {first['median']:.0f} ms, mean {first['mean']:.0f} ms, "
          f"max {first['max']:.0f} ms per frame\n")
    print(f"| {'case':<24} | {'fps':>5} | {'complete':>8} | {'overlays/frame':>14} | {'p50 ms':>6} | {'p95 ms':>6} |")
    print(f"|{'-' * 26}|{'-' * 7}|{'-' * 10}|{'-' * 16}|{'-' * 8}|{'-' * 8}|")
    for row in result["rows"]:
        print(f"| {row['case']:<24} | {row['fps']:5.1f} | {row['complete']:8.0%} | {row['overlays_per_frame']:14.1f} "
              f"| {row['p50_ms']:6.1f} | {row['p95_ms']:6.1f} |")
    rows = result["rows"]
    print(f"\nwith / without overlays: {rows[1]['fps'] / rows[0]['fps']:.2f} at 60 Hz, "
          f"{rows[3]['fps'] / rows[2]['fps']:.2f} uncapped (target: >= 30 fps with {args.objects} overlays)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "browser_scrub.json").write_text(json.dumps({**result, "objects": args.objects, "size": size,
                                                            "seconds": args.seconds}, indent=2))


if __name__ == "__main__":
    main()
