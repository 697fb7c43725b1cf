"""A person annotates a demo video in the browser, end to end (real server, real Chromium).

Once per segmenter backend (the classical OpenCV one and a small random-weight SAM 2), with the
server started by the test in embedded mode: sign in, open the demo video's annotation page,
click on an object and see its mask appear, track forward through the video, correct one frame
with the brush, submit the masklet, reload, and find every mask exactly as it was stored.

The page is observed through what it publishes on the canvas (``data-frame``, ``data-masks``,
``data-connection``, ``data-busy`` ...; see frontend/src/annotate/renderer.ts) and the database
through ``manage.py shell``: a mask counts as shown when the canvas drew it AND a ``MaskFrame``
row holds it.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from fixtures.synthetic import PRESETS, SyntheticFrames

pytestmark = pytest.mark.e2e

USERNAME, PASSWORD = "ann", "e2e-password-ann"
SLUG = "demo"
BACKENDS = [
    pytest.param({}, id="classical"),
    pytest.param({"MASKLET_SEGMENTER": "sam2", "MASKLET_SAM2_IMAGE_SIZE": "256"}, id="sam2"),
]
# seed_demo's first video (demo_01): the demo preset with seed 1, 24 annotated frames at stride 4.
SPEC = replace(PRESETS["demo"], seed=1, name="demo_01")
STRIDE = 4

SEED = f"""
from django.contrib.auth import get_user_model
from django.core.management import call_command
from annotator.models import Membership, Project, Role, Video
call_command("seed_demo", videos=1, verbosity=0)
user = get_user_model().objects.create_user({USERNAME!r}, password={PASSWORD!r})
project = Project.objects.get(slug={SLUG!r})
Membership.objects.create(project=project, user=user, role=Role.ANNOTATOR)
print(Video.objects.get(project=project, name={SPEC.video_id!r}).id)
"""

MASKS = """
import json
from annotator.models import MaskFrame, Masklet
out = {{"masklets": list(Masklet.objects.filter(video_id={video}).values("object_id", "status", "label")),
        "masks": list(MaskFrame.objects.filter(masklet__video_id={video}).order_by("masklet__object_id", "frame_index")
                      .values("masklet__object_id", "frame_index", "source", "area", "revision", "rle_counts"))}}
print(json.dumps(out))
"""


@pytest.fixture(scope="module", params=BACKENDS)
def annotate_server(request, masklet_server_factory):
    """A fresh server per backend with the demo project, one demo video and an annotator."""
    env = request.param
    server = masklet_server_factory(env.get("MASKLET_SEGMENTER", "classical"), env)
    video_id = int(server.shell(SEED).strip().splitlines()[-1])
    return server, video_id


@pytest.fixture
def annotate_page(browser, annotate_server):
    server, video_id = annotate_server
    context = browser.new_context(base_url=server.url, viewport={"width": 1440, "height": 1000})
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        yield page, server, video_id
    finally:
        context.close()


def stored(server, video_id: int) -> dict:
    return json.loads(server.shell(MASKS.format(video=video_id)).strip().splitlines()[-1])


def decode(counts: str) -> np.ndarray:
    rle = {"size": [SPEC.height, SPEC.width], "counts": counts.encode()}
    return mask_utils.decode(rle).astype(bool)


def target_point(frame_position: int = 0) -> tuple[int, int, int, np.ndarray]:
    """The object with the largest visible area on a frame and its most interior pixel (x, y)."""
    masks = SyntheticFrames(SPEC, stride=STRIDE).masks(frame_position)
    object_id, mask = max(masks.items(), key=lambda item: int(item[1].sum()))
    depth = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return int(x), int(y), object_id, mask


def canvas(page, name: str) -> str:
    return page.get_attribute("#frame-canvas", f"data-{name}") or ""


def wait_idle(page) -> None:
    page.wait_for_function("document.getElementById('frame-canvas').dataset.busy === '0'")


def to_page(page, x: float, y: float) -> tuple[float, float]:
    """Page coordinates of video pixel (x, y), from the view transform the canvas publishes."""
    box = page.locator("#frame-canvas").bounding_box()
    scale, tx, ty = (float(v) for v in canvas(page, "view").split())
    return box["x"] + tx + (x + 0.5) * scale, box["y"] + ty + (y + 0.5) * scale


def open_page(page, video_id: int) -> None:
    page.goto(f"/projects/{SLUG}/videos/{video_id}/annotate/")
    page.wait_for_function("document.getElementById('frame-canvas').dataset.connection === 'connected'")
    page.wait_for_function("Number(document.getElementById('frame-canvas').dataset.masksLoaded || 0) > 0")
    page.wait_for_function("document.getElementById('frame-canvas').dataset.frameReady === '1'")


def go_to_frame(page, position: int) -> None:
    page.locator("#scrubber").fill(str(position))
    frame = position * STRIDE
    page.wait_for_function(f"(() => {{ const d = document.getElementById('frame-canvas').dataset;"
                           f" return d.frame === '{frame}' && d.frameReady === '1'"
                           f" && d.masks === d.masksExpected; }})()")


def test_click_track_brush_submit_reload(annotate_page, artifacts_dir, request):
    page, server, video_id = annotate_page
    backend = request.node.callspec.id
    page.goto("/login/")
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/$"))
    open_page(page, video_id)
    assert canvas(page, "frame") == "0" and canvas(page, "masks") == "0"
    model = canvas(page, "model")
    assert ("SAM 2" in model or "sam2" in model.lower()) if backend == "sam2" else "classical" in model.lower(), model
    assert page.inner_text("#status-connection").startswith("Connected")

    # Click on the largest object: a new object is created, locked to me, and its mask appears.
    x, y, _truth_id, truth = target_point(0)
    page.mouse.click(*to_page(page, x, y))
    wait_idle(page)
    assert canvas(page, "error") == ""
    state = stored(server, video_id)
    assert [m["object_id"] for m in state["masklets"]] == [1]
    (first,) = [m for m in state["masks"] if m["frame_index"] == 0]
    assert first["source"] == "human" and first["masklet__object_id"] == 1
    page.wait_for_function(f"document.getElementById('frame-canvas').dataset.masks === '{int(first['area'] > 0)}'")
    if backend == "classical":  # random SAM 2 weights segment nothing in particular
        mask = decode(first["rle_counts"])  # a region around the click, inside the object
        assert mask[y, x] and (mask & truth).sum() / mask.sum() > 0.8
        assert canvas(page, "masks") == "1"
    assert page.locator("li.object.selected .object-name").inner_text() == "#1"

    # Track forward from frame 0: every annotated frame of object 1 gets a stored mask.
    page.click("#track-forward")
    page.wait_for_function("document.getElementById('frame-canvas').dataset.tracked === '1'", timeout=240_000)
    assert canvas(page, "tracking") == "0" and canvas(page, "error") == ""
    state = stored(server, video_id)
    frames = {m["frame_index"]: m for m in state["masks"]}
    assert sorted(frames) == list(range(0, SPEC.num_frames, STRIDE))
    assert frames[0]["source"] == "human" and frames[0]["revision"] == first["revision"]  # a person's frame is kept
    assert all(m["source"] == "model" for f, m in frames.items() if f)
    present = sum(m["area"] > 0 for m in frames.values())
    page.wait_for_function(f"document.querySelector('.track-row canvas').dataset.present === '{present}'")
    page.screenshot(path=str(artifacts_dir / f"annotate-tracked-{backend}.png"))

    # Brush-correct frame 20: paint a stroke from the object's centre outwards.
    position = 5
    go_to_frame(page, position)
    before = frames[position * STRIDE]
    bx, by, _, _ = target_point(position)
    page.keyboard.press("p")
    assert canvas(page, "tool") == "brush"
    page.mouse.move(*to_page(page, bx, by))
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(*to_page(page, bx + 4 * step, by))
    page.mouse.up()
    wait_idle(page)
    assert canvas(page, "error") == ""
    after = {m["frame_index"]: m for m in stored(server, video_id)["masks"]}[position * STRIDE]
    assert after["source"] == "human" and after["revision"] == before["revision"] + 1
    painted = decode(after["rle_counts"])
    assert all(painted[by, bx + dx] for dx in range(0, 41)), "the brush stroke is not in the stored mask"
    page.wait_for_function("document.getElementById('frame-canvas').dataset.masks === '1'")
    page.keyboard.press("v")
    page.screenshot(path=str(artifacts_dir / f"annotate-brushed-{backend}.png"))

    # Submit for review: read only from now on.
    page.click("#object-submit")
    page.wait_for_function("document.querySelector('li.object .object-status').textContent === 'Submitted'")
    assert stored(server, video_id)["masklets"][0]["status"] == "submitted"

    # Reload: the page shows exactly what is stored.
    snapshot = stored(server, video_id)
    page.reload()
    open_page(page, video_id)
    assert stored(server, video_id) == snapshot, "reloading changed stored state"
    assert page.locator("li.object .object-status").inner_text() == "Submitted"
    masks = {m["frame_index"]: m for m in snapshot["masks"]}
    page.wait_for_function(f"document.querySelector('.track-row canvas').dataset.present === "
                           f"'{sum(m['area'] > 0 for m in masks.values())}'")
    human = sum(m["source"] == "human" and m["area"] > 0 for m in masks.values())
    assert page.get_attribute(".track-row canvas", "data-human") == str(human)
    for position in (0, 5, 10, 23):
        go_to_frame(page, position)
        assert canvas(page, "masks") == str(int(masks[position * STRIDE]["area"] > 0))
    go_to_frame(page, 5)
    page.click("li.object .object-name")
    page.wait_for_function("!document.getElementById('readonly-banner').hidden")
    assert "submitted" in page.inner_text("#readonly-banner")
    page.screenshot(path=str(artifacts_dir / f"annotate-reloaded-{backend}.png"))
