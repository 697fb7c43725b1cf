"""A person annotates a demo video in the browser, end to end (real server, real Chromium).

``test_click_track_brush_submit_reload`` runs once per segmenter backend (the classical OpenCV
one and a small random-weight SAM 2, registered as the project's production version), with the
server started by the test in embedded mode: sign in, open the demo video's annotation page,
click on an object and see its mask appear, track forward through the video, correct one frame
with the brush, submit the masklet, reload, and find every mask exactly as it was stored.

The other tests use the classical backend on a server of their own and go through the page's
features in sequence: zoom and pan, the help overlay, the objects panel (label, colour,
show/hide, delete with confirmation); positive and negative clicks, box, eraser, clear, undo and
redo, tracking backward / both / cancelled; and a track that fails or loses its connection
midway, after which the page must recover and track again.

The page is observed through what it publishes on the canvas (``data-frame``, ``data-masks``,
``data-connection``, ``data-busy``, ``data-last-edit``, ``data-track-end`` ...; see
frontend/src/annotate/renderer.ts and app.ts) and the database through ``manage.py shell``: a
mask counts as shown when the canvas drew it AND a ``MaskFrame`` row holds it.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from fixtures.synthetic import PRESETS, SyntheticFrames
from tests.e2e.conftest import Dialogs, watch_csp

pytestmark = pytest.mark.e2e

USERNAME, PASSWORD = "ann", "e2e-password-ann"
SLUG = "demo"
BACKENDS = [
    pytest.param({}, id="classical"),
    pytest.param({"MASKLET_SEGMENTER": "sam2", "MASKLET_SAM2_IMAGE_SIZE": "64"}, id="sam2"),
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

# A SAM 2 production version (random init, the tiny config at the server's image size), promoted
# through the registry: the SAM 2 run serves one, and a second one is a promotion while a page is
# open. Every mask the model makes names the serving version in MaskFrame.model_version.
PROMOTE_RANDOM_SAM2 = """
from django.conf import settings
from annotator.models import Project
from loop import registry
from engine.models import ModelVersion
from segmentation.sam2_model import resolve_config
version = ModelVersion.objects.create(project=Project.objects.get(slug={slug!r}), name={name!r},
                                      checkpoint="", sam2_config=resolve_config(settings.SAM2_CONFIG),
                                      image_size=settings.SAM2_IMAGE_SIZE)
registry.promote(version)
print(version.pk)
"""


def promote_random_sam2(server, name: str) -> int:
    """Register and promote a random-weight SAM 2 version on ``server``; its primary key."""
    return int(server.shell(PROMOTE_RANDOM_SAM2.format(slug=SLUG, name=name)).strip().splitlines()[-1])


MASKS = """
import json
from annotator.models import MaskFrame, Masklet, Prompt
out = {{"masklets": list(Masklet.objects.filter(video_id={video}).order_by("object_id")
                         .values("object_id", "status", "label")),
        "masks": list(MaskFrame.objects.filter(masklet__video_id={video}).order_by("masklet__object_id", "frame_index")
                      .values("masklet__object_id", "frame_index", "source", "area", "revision", "rle_counts",
                              "model_version_id")),
        "prompts": list(Prompt.objects.filter(masklet__video_id={video}).order_by("pk")
                        .values("masklet__object_id", "frame_index", "kind", "payload"))}}
print(json.dumps(out))
"""

# The annotation socket's URL, also when a reconnecting page asks for its model version (?model_version=).
ANNOTATE_SOCKET = re.compile(r"/annotate/(\?[^/]*)?$")

# An object whose masks came with a dataset import (source "imported") on frames 0, 4 and 8.
IMPORTED_OBJECT = """
import numpy as np
from annotator.models import MaskSource, Masklet, Video
from annotator.services.masks import MaskWrite, save_mask_frames
from segmentation.masks import encode_rle
video = Video.objects.get(pk={video})
mask = np.zeros((video.height, video.width), bool)
mask[10:40, 10:60] = True
object_id = (max(Masklet.objects.filter(video=video).values_list("object_id", flat=True), default=0) or 0) + 1
masklet = Masklet.objects.create(video=video, object_id=object_id, label="")
save_mask_frames(masklet, [MaskWrite(f, encode_rle(mask)) for f in (0, 4, 8)], source=MaskSource.IMPORTED)
print(object_id)
"""

FRAMES_DIR = """
from annotator.models import Video
print(Video.objects.get(pk={video}).frames_dir)
"""


def seed(server, code: str, tmp_path_factory) -> str:
    """Run seeding ``code`` (it calls ``seed_demo``) on ``server``; its output. The synthetic demo videos
    are generated once per test process: seed_demo only generates a video whose files are missing from
    ``$MASKLET_DATA_DIR/demo`` (~2.5 s a video under load), so the files an earlier server made are
    copied there first, and the new ones kept for the next server."""
    made = tmp_path_factory.getbasetemp() / "e2e-demo-videos"
    demo = server.data_dir / "demo"
    if made.is_dir():
        shutil.copytree(made, demo, dirs_exist_ok=True)
    out = server.shell(code)
    shutil.copytree(demo, made, dirs_exist_ok=True)
    return out


def start_server(factory, tmp_path_factory, name: str, env: dict) -> tuple:
    """A fresh server with the demo project, one demo video and an annotator: (server, video id, version
    id)."""
    server = factory(name, env)
    video_id = int(seed(server, SEED, tmp_path_factory).strip().splitlines()[-1])
    version = None
    if env.get("MASKLET_SEGMENTER") == "sam2":
        version = promote_random_sam2(server, "e2e-random-tiny")
    return server, video_id, version


@pytest.fixture(scope="module", params=BACKENDS)
def annotate_server(request, masklet_server_factory, tmp_path_factory):
    """A fresh server per backend."""
    return start_server(masklet_server_factory, tmp_path_factory, request.param.get("MASKLET_SEGMENTER", "classical"),
                        request.param)


@pytest.fixture(scope="module")
def tools_server(masklet_server_factory, tmp_path_factory):
    """A classical-backend server of its own for the feature tests (object ids start at 1 there)."""
    return start_server(masklet_server_factory, tmp_path_factory, "tools", {})


def _page(browser, server, csp_violations):
    context = browser.new_context(base_url=server.url, viewport={"width": 1440, "height": 1000})
    context.set_default_timeout(30_000)
    watch_csp(context, csp_violations)
    return context, context.new_page()


@pytest.fixture
def annotate_page(browser, annotate_server, csp_violations):
    server, video_id, version = annotate_server
    context, page = _page(browser, server, csp_violations)
    try:
        yield page, server, video_id, version
    finally:
        context.close()


@pytest.fixture
def tools_page(browser, tools_server, csp_violations):
    server, video_id, _ = tools_server
    context, page = _page(browser, server, csp_violations)
    try:
        yield page, server, video_id
    finally:
        context.close()


def stored(server, video_id: int) -> dict:
    return json.loads(server.shell(MASKS.format(video=video_id)).strip().splitlines()[-1])


def mask_rows(state: dict, object_id: int) -> dict[int, dict]:
    """frame -> stored mask row of one object."""
    return {m["frame_index"]: m for m in state["masks"] if m["masklet__object_id"] == object_id}


def prompts_of(state: dict, object_id: int) -> list[tuple[int, str, dict]]:
    return [(p["frame_index"], p["kind"], p["payload"]) for p in state["prompts"]
            if p["masklet__object_id"] == object_id]


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


def wait_canvas(page, name: str, value: str, timeout: float = 30_000) -> None:
    """Wait until the canvas publishes ``data-<name>`` == value (name in camelCase, as in dataset)."""
    page.wait_for_function(f"document.getElementById('frame-canvas').dataset.{name} === {json.dumps(value)}",
                           timeout=timeout)


def last_edit(page) -> tuple[int, ...]:
    """(object, frame, revision, area) of the last edit the server confirmed, () before any."""
    text = canvas(page, "last-edit")
    return tuple(int(v) for v in text.split()) if text else ()


def wait_edit(page, before: tuple[int, ...]) -> tuple[int, ...]:
    """Wait for the server's reply to an edit (``data-last-edit`` changes and nothing is waiting)."""
    page.wait_for_function(f"(() => {{ const d = document.getElementById('frame-canvas').dataset;"
                           f" return (d.lastEdit || '') !== {json.dumps(' '.join(map(str, before)))}"
                           f" && d.busy === '0'; }})()")
    assert canvas(page, "error") == "", canvas(page, "error")
    return last_edit(page)


def view(page) -> tuple[float, float, float]:
    scale, tx, ty = (float(v) for v in canvas(page, "view").split())
    return scale, tx, ty


def wait_view_change(page, before: tuple[float, float, float]) -> tuple[float, float, float]:
    page.wait_for_function("(before) => document.getElementById('frame-canvas').dataset.view.split(' ')"
                           ".map(Number).some((v, i) => Math.abs(v - before[i]) > 1e-9)", arg=list(before))
    return view(page)


def settled_view(page) -> tuple[float, float, float]:
    """The view once the canvas has drawn every pending change (two animation frames later)."""
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
    return view(page)


def renders(page) -> int:
    return int(canvas(page, "renders") or 0)


def pixel(page, x: int, y: int) -> tuple[int, int, int]:
    """The canvas's RGB at the centre of video pixel (x, y), as drawn now."""
    scale, tx, ty = view(page)
    return tuple(page.evaluate(
        "([cx, cy]) => { const c = document.getElementById('frame-canvas');"
        " const k = c.width / c.getBoundingClientRect().width;"
        " return Array.from(c.getContext('2d').getImageData(Math.floor(cx * k), Math.floor(cy * k), 1, 1).data)"
        ".slice(0, 3); }", [tx + (x + 0.5) * scale, ty + (y + 0.5) * scale]))


def wait_pixel(page, x: int, y: int, done, timeout_s: float = 10) -> tuple[int, int, int]:
    """Poll the canvas pixel of video pixel (x, y) until ``done(rgb)`` (overlays decode off the main thread)."""
    deadline = time.monotonic() + timeout_s
    while True:
        rgb = pixel(page, x, y)
        if done(rgb) or time.monotonic() > deadline:
            return rgb
        page.wait_for_timeout(50)


# Each server's signed-in session cookies (by its data directory), from its first sign-in.
_SIGNED_IN: dict[Path, list] = {}


def sign_in(page, server) -> None:
    """Sign the annotator in: through the login page on a server's first page, then with that
    session's cookies, as a returning browser would (a sign-in is one PBKDF2 hash, ~1 s of the server)."""
    cookies = _SIGNED_IN.get(server.data_dir)
    if cookies is not None:
        page.context.add_cookies(cookies)
        return
    page.goto("/login/")
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/$"))
    _SIGNED_IN[server.data_dir] = page.context.cookies()


def sign_in_and_open(page, server, video_id: int) -> None:
    sign_in(page, server)
    open_page(page, video_id)


def interior(mask: np.ndarray, away_from: list[tuple[int, int]] = (), margin: int = 0) -> tuple[int, int]:
    """The pixel (x, y) of ``mask`` deepest inside it, at least ``margin`` px from each point of ``away_from``."""
    depth = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    yy, xx = np.mgrid[:mask.shape[0], :mask.shape[1]]
    for px, py in away_from:
        depth[(xx - px) ** 2 + (yy - py) ** 2 < margin ** 2] = 0
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    assert depth[y, x] > 0, "no such pixel"
    return int(x), int(y)


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


def click_submit(page) -> None:
    """Click Submit, accepting the "Submit anyway?" that an object with frames without a mask
    between its first and last masked frame asks (tracking may lose the object midway); the
    question itself is tested in test_annotate_screen_e2e.py."""
    def accept(dialog):
        dialog.accept() if dialog.message.endswith("Submit anyway?") else dialog.dismiss()

    page.on("dialog", accept)
    try:
        page.click("#object-submit")
    finally:
        page.remove_listener("dialog", accept)


def test_click_track_brush_submit_reload(annotate_page, artifacts_dir, request):
    page, server, video_id, version = annotate_page
    backend = request.node.callspec.id
    sign_in_and_open(page, server, video_id)
    assert canvas(page, "frame") == "0" and canvas(page, "masks") == "0"
    model = canvas(page, "model")
    if backend == "sam2":
        assert model.startswith("e2e-random-tiny") and "SAM 2" in model, model
    else:
        assert "classical" in model.lower(), model
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
    ((frame, kind, point),) = prompts_of(state, 1)
    assert (frame, kind, point["positive"]) == (0, "point", True)
    assert abs(point["x"] - x) <= 1 and abs(point["y"] - y) <= 1, (point, x, y)
    # The mask reply reached the page and carried what was stored.
    assert last_edit(page) == (1, 0, first["revision"], first["area"])
    # The model that made it: the registered SAM 2 version, or (classical, not a registered version) none.
    assert first["model_version_id"] == version
    page.wait_for_function(f"document.getElementById('frame-canvas').dataset.masks === '{int(first['area'] > 0)}'")
    if backend == "classical":
        mask = decode(first["rle_counts"])  # a region around the click, inside the object
        assert mask[y, x] and (mask & truth).sum() / mask.sum() > 0.8
        assert canvas(page, "masks") == "1"
    # (random SAM 2 weights segment nothing in particular: an empty mask is a right answer there)
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
    assert {m["model_version_id"] for f, m in frames.items() if f} == {version}
    present = sum(m["area"] > 0 for m in frames.values())
    page.wait_for_function(f"document.querySelector('.track-row canvas').dataset.present === '{present}'")
    page.screenshot(path=str(artifacts_dir / f"annotate-tracked-{backend}.png"))

    # Brush-correct frame 20: paint a stroke outwards from the object's centre, starting where the
    # tracked mask ends (a stroke over pixels the mask already has changes nothing, and sends nothing).
    position = 5
    go_to_frame(page, position)
    before = frames[position * STRIDE]
    cx, by, _, _ = target_point(position)
    tracked = decode(before["rle_counts"]) if before["area"] else np.zeros((SPEC.height, SPEC.width), bool)
    bx = next((x for x in range(cx, SPEC.width - 45) if not tracked[by, x]), cx)
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
    click_submit(page)
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


def test_a_page_that_reconnects_after_a_promotion_keeps_its_model_version(annotate_page):
    """Issue 7's "a session keeps the version it started with", across a dropped socket: another
    version is promoted while the page is open, the socket drops, the page reconnects asking for
    its version, and its next click's stored mask names that version (SAM 2 run: the registered
    one; classical run: none), not the promoted one."""
    page, server, video_id, version = annotate_page
    sockets: list = []

    def route(ws):
        sockets.append(ws)
        ws.connect_to_server()

    page.route_web_socket(ANNOTATE_SOCKET, route)
    sign_in_and_open(page, server, video_id)
    model, pinned = canvas(page, "model"), canvas(page, "model-version")
    assert pinned == (str(version) if version else "none")
    assert "model_version" not in sockets[0].url  # a first connection asks for nothing

    promoted = promote_random_sam2(server, "e2e-promoted-later")
    sockets[-1].close(code=4000, reason="test: connection lost")
    page.wait_for_function("document.getElementById('frame-canvas').dataset.connection !== 'connected'")
    wait_canvas(page, "connection", "connected")
    assert len(sockets) == 2 and sockets[1].url.endswith(f"?model_version={pinned}"), sockets[1].url
    assert (canvas(page, "model"), canvas(page, "model-version")) == (model, pinned)
    assert canvas(page, "error") == ""

    x, y, _, _ = target_point(0)
    oid, frame, _, _ = press_and_edit(page, lambda: page.mouse.click(*to_page(page, x, y)))
    row = mask_rows(stored(server, video_id), oid)[frame]
    assert row["source"] == "human" and row["model_version_id"] == version != promoted


def test_zoom_pan_help_and_the_objects_panel(tools_page, artifacts_dir):
    """View and panel features in one pass: help overlay, zoom and pan (and a box drawn through
    them landing on the right pixels), label, colour, show/hide, delete with confirmation."""
    page, server, video_id = tools_page
    sign_in_and_open(page, server, video_id)

    # The help overlay ("?") lists the very table that binds the keys: each tool row's key selects that tool.
    page.keyboard.press("?")
    page.wait_for_selector("#help-overlay:not([hidden])")
    rows = page.locator("#shortcut-table tr")
    help_rows = {rows.nth(i).get_attribute("data-commands"): rows.nth(i).inner_text() for i in range(rows.count())}
    assert "Undo / redo" in help_rows["undo redo"] and "Ctrl+Z" in help_rows["undo redo"]
    assert "Track forward / backward / both" in help_rows["track-forward track-backward track-both"]
    page.screenshot(path=str(artifacts_dir / "annotate-help.png"))
    page.keyboard.press("Escape")
    page.wait_for_selector("#help-overlay", state="hidden")
    tools = {"tool-box": "box", "tool-brush": "brush", "tool-eraser": "eraser", "tool-click": "click"}
    for command, tool in tools.items():
        key = help_rows[command].split()[0]
        page.keyboard.press(key.lower())
        assert canvas(page, "tool") == tool, (key, canvas(page, "tool"))
    page.click("#help-open")
    page.wait_for_selector("#help-overlay:not([hidden])")
    page.click("#help-close")
    page.wait_for_selector("#help-overlay", state="hidden")

    # Zoom with the keys: + and − scale about the centre, and every change redraws the canvas.
    fitted = view(page)
    drawn = renders(page)
    page.keyboard.press("+")
    zoomed = wait_view_change(page, fitted)
    assert zoomed[0] == pytest.approx(fitted[0] * 1.25)
    assert renders(page) > drawn
    page.keyboard.press("-")
    assert wait_view_change(page, zoomed)[0] == pytest.approx(fitted[0])

    # The wheel zooms about the mouse: the video pixel under it stays under it.
    truth = SyntheticFrames(SPEC, stride=STRIDE).masks(0)
    object_id = sorted(truth, key=lambda k: -int(truth[k].sum()))[1]  # the second largest object
    ys, xs = np.nonzero(truth[object_id])
    cx, cy = interior(truth[object_id])
    mx, my = to_page(page, cx, cy)
    page.mouse.move(mx, my)
    before = view(page)
    page.mouse.wheel(0, -240)
    wheeled = wait_view_change(page, before)
    assert wheeled[0] > before[0] * 1.3
    assert to_page(page, cx, cy) == pytest.approx((mx, my), abs=1)  # events carry whole CSS pixels

    # Pan with Space + drag (focus on a toolbar button must not matter) and with the middle button.
    page.focus("#zoom-fit")
    page.keyboard.down(" ")
    page.mouse.down()
    page.mouse.move(mx + 40, my + 25, steps=4)
    page.mouse.up()
    page.keyboard.up(" ")
    panned = settled_view(page)
    assert panned == pytest.approx((wheeled[0], wheeled[1] + 40, wheeled[2] + 25))
    page.mouse.move(mx, my)
    page.mouse.down(button="middle")
    page.mouse.move(mx - 30, my + 10, steps=3)
    page.mouse.up(button="middle")
    panned = settled_view(page)
    assert panned == pytest.approx((wheeled[0], wheeled[1] + 10, wheeled[2] + 35))
    assert stored(server, video_id)["masklets"] == []  # panning drew nothing

    # A box drawn on the zoomed, panned view lands on the video pixels under the pointer.
    page.keyboard.press("b")
    x0, y0, x1, y1 = int(xs.min()) - 3, int(ys.min()) - 3, int(xs.max()) + 3, int(ys.max()) + 3
    page.mouse.move(*to_page(page, x0, y0))
    page.mouse.down()
    page.mouse.move(*to_page(page, x1, y1), steps=6)
    page.mouse.up()
    edit = wait_edit(page, ())
    state = stored(server, video_id)
    ((frame, kind, box),) = prompts_of(state, edit[0])
    assert (frame, kind) == (0, "box")
    assert [box[k] for k in ("x0", "y0", "x1", "y1")] == pytest.approx([x0, y0, x1, y1], abs=1)
    row = mask_rows(state, edit[0])[0]
    assert edit == (edit[0], 0, row["revision"], row["area"]) and row["source"] == "human"
    mask = decode(row["rle_counts"])
    assert (mask & truth[object_id]).sum() / (mask | truth[object_id]).sum() > 0.9
    wait_canvas(page, "masks", "1")
    oid = edit[0]
    item = f"li.object[data-object-id='{oid}']"

    # Fit (the 0 key) returns to the first view.
    page.keyboard.press("0")
    assert wait_view_change(page, panned) == pytest.approx(fitted)

    # Colour: the overlay is drawn in the chosen colour (the canvas pixel inside the mask turns blue).
    px, py = interior(mask)
    shown = pixel(page, px, py)
    page.click(f"{item} .object-visible")  # hide: the frame's own pixel, and no overlay drawn
    wait_canvas(page, "masks", "0")
    assert page.locator(item).evaluate("row => row.classList.contains('hidden-object')")
    assert canvas(page, "masks-expected") == "0"
    raw = pixel(page, px, py)
    assert raw != shown
    page.keyboard.press("h")  # H shows the selected object again
    wait_canvas(page, "masks", "1")
    page.wait_for_function(f"!document.querySelector(\"{item}\").classList.contains('hidden-object')")
    assert pixel(page, px, py) == shown
    page.locator(f"{item} .object-colour").fill("#0000ff")
    blue = wait_pixel(page, px, py, lambda p: p != shown)
    assert blue[2] > shown[2] + 40 and blue[0] < shown[0] - 40, (shown, blue, raw)

    # Label, from the project's label set: stored, and shown in the timeline.
    labels = page.locator(f"{item} select.object-label option").evaluate_all("os => os.map(o => o.value)")
    current = page.locator(f"{item} select.object-label").input_value()
    label = next(v for v in labels if v and v != current)
    page.select_option(f"{item} select.object-label", label)
    page.wait_for_function(f"document.querySelector(\".track-row[data-object-id='{oid}'] .track-name\")"
                           f".textContent === '#{oid} {label}'")
    assert stored(server, video_id)["masklets"] == [{"object_id": oid, "status": "draft", "label": label}]

    # Reload: the label is stored; the colour is this browser's choice (kept in localStorage).
    page.reload()
    open_page(page, video_id)
    wait_canvas(page, "masks", "1")
    assert page.locator(f"{item} .object-colour").input_value() == "#0000ff"
    assert page.locator(f"{item} select.object-label").input_value() == label

    # Delete asks first: dismissed, nothing changes; accepted, the object and its masks are gone.
    dialogs = Dialogs(page)
    dialogs.answer_next(False)
    page.click(f"{item} .object-delete")
    page.wait_for_function("n => n > 0", arg=len(dialogs.questions))
    assert f"Delete object #{oid} {label}" in dialogs.questions[0] and "1 frame" in dialogs.questions[0]
    assert page.locator(item).count() == 1 and len(stored(server, video_id)["masklets"]) == 1
    dialogs.answer_next(True)
    page.click(f"{item} .object-delete")
    page.wait_for_selector(item, state="detached")
    wait_canvas(page, "objects", "0")
    wait_canvas(page, "masks", "0")
    state = stored(server, video_id)
    assert state["masklets"] == [] and state["masks"] == []


def press_and_edit(page, action) -> tuple[int, ...]:
    """Do ``action`` (a click, a key) and wait for the server to confirm the edit it makes."""
    before = last_edit(page)
    action()
    return wait_edit(page, before)


def wait_track(page, end: str, tracked: int | None = None, timeout: float = 60_000) -> None:
    page.wait_for_function(f"(() => {{ const d = document.getElementById('frame-canvas').dataset;"
                           f" return d.trackEnd === {json.dumps(end)} && d.tracking === '0'"
                           + (f" && d.tracked === '{tracked}'" if tracked is not None else "") + "; })()",
                           timeout=timeout)


def test_clicks_box_eraser_clear_undo_redo_and_tracking(tools_page, artifacts_dir):
    """Editing tools in one pass, each checked against the stored prompts and mask revisions:
    positive, Shift+click and right-click negative points, undo / redo, eraser, clear, then
    tracking backward and both ways from a later frame, and a track cancelled at once."""
    page, server, video_id = tools_page
    sign_in_and_open(page, server, video_id)
    x, y, _, truth = target_point(0)

    # A positive click starts an object; a second one on the object grows its mask.
    edit = press_and_edit(page, lambda: page.mouse.click(*to_page(page, x, y)))
    oid = edit[0]
    p2 = interior(truth, [(x, y)], margin=25)
    edit = press_and_edit(page, lambda: page.mouse.click(*to_page(page, *p2)))
    state = stored(server, video_id)
    grown = mask_rows(state, oid)[0]
    assert edit == (oid, 0, 2, grown["area"]) and decode(grown["rle_counts"])[p2[1], p2[0]]

    # Negative points: Shift+click, then a right click; each takes its pixel out of the mask.
    page.keyboard.down("Shift")
    edit = press_and_edit(page, lambda: page.mouse.click(*to_page(page, *p2)))
    page.keyboard.up("Shift")
    shifted = mask_rows(stored(server, video_id), oid)[0]
    assert edit[2] == shifted["revision"] == 3 and not decode(shifted["rle_counts"])[p2[1], p2[0]]
    q = interior(decode(shifted["rle_counts"]) & truth, [(x, y), p2], margin=15)
    edit = press_and_edit(page, lambda: page.mouse.click(*to_page(page, *q), button="right"))
    state = stored(server, video_id)
    right = mask_rows(state, oid)[0]
    assert edit[2] == right["revision"] == 4 and not decode(right["rle_counts"])[q[1], q[0]]
    points = [(p["x"], p["y"], p["positive"]) for _, kind, p in prompts_of(state, oid) if kind == "point"]
    assert [positive for *_, positive in points] == [True, True, False, False]
    assert points[2][:2] == pytest.approx(p2, abs=1) and points[3][:2] == pytest.approx(q, abs=1)
    assert (canvas(page, "undo"), canvas(page, "redo")) == ("4", "0")

    # Undo brings back the mask before the right click; redo the one after (as new revisions).
    edit = press_and_edit(page, lambda: page.keyboard.press("Control+KeyZ"))
    undone = mask_rows(stored(server, video_id), oid)[0]
    assert undone["rle_counts"] == shifted["rle_counts"] and edit[2] == undone["revision"] == 5
    assert (canvas(page, "undo"), canvas(page, "redo")) == ("3", "1")
    edit = press_and_edit(page, lambda: page.click("#redo"))
    state = stored(server, video_id)
    redone = mask_rows(state, oid)[0]
    assert redone["rle_counts"] == right["rle_counts"] and edit[2] == redone["revision"] == 6
    assert [kind for _, kind, _ in prompts_of(state, oid)][-2:] == ["restore", "restore"]

    # The eraser takes a stroke out of the stored mask.
    page.keyboard.press("e")
    line = [(xx, y) for xx in range(x - 20, x + 21)]
    assert decode(redone["rle_counts"])[y, x - 20:x + 21].any(), "nothing to erase on that line"
    page.mouse.move(*to_page(page, *line[0]))
    page.mouse.down()
    for point in line[::5]:
        page.mouse.move(*to_page(page, *point))
    page.mouse.move(*to_page(page, *line[-1]))
    edit = press_and_edit(page, page.mouse.up)
    state = stored(server, video_id)
    erased = mask_rows(state, oid)[0]
    assert edit[2] == erased["revision"] == 7 and erased["source"] == "human"
    assert not decode(erased["rle_counts"])[y, x - 20:x + 21].any()
    assert prompts_of(state, oid)[-1][1] == "brush"

    # Clear (C): the frame's mask goes, as an empty model mask that tracking may fill again.
    edit = press_and_edit(page, lambda: page.keyboard.press("c"))
    state = stored(server, video_id)
    cleared = mask_rows(state, oid)[0]
    assert edit == (oid, 0, 8, 0) and (cleared["area"], cleared["source"]) == (0, "model")
    assert prompts_of(state, oid)[-1][1] == "clear"
    wait_canvas(page, "masks", "0")

    # Track backward (Shift+T) from frame 48 after a box there: frames 0 to 44 are filled.
    page.keyboard.press("b")
    go_to_frame(page, 12)
    ys, xs = np.nonzero(target_point(12)[3])
    page.mouse.move(*to_page(page, int(xs.min()) - 3, int(ys.min()) - 3))
    page.mouse.down()
    page.mouse.move(*to_page(page, int(xs.max()) + 3, int(ys.max()) + 3), steps=5)
    press_and_edit(page, page.mouse.up)
    page.keyboard.press("v")
    page.keyboard.press("Shift+KeyT")
    wait_track(page, "done", tracked=1)
    masks = mask_rows(stored(server, video_id), oid)
    assert sorted(masks) == list(range(0, 49, STRIDE))
    # Frames WITH a mask are counted (not masks written), and the first empty one is named.
    with_mask = sum(m["area"] > 0 for m in masks.values())
    empty = [f for f in range(48, -1, -STRIDE) if masks[f]["area"] == 0]
    lost = f", lost at frame {empty[0]}" if empty else ""
    note = page.inner_text("#status-note")
    assert note.startswith(f"Tracking done: #{oid}"), note
    assert f" has a mask on {with_mask} of 13 frames{lost} (1 frame edited by a person kept)." in note, note
    assert masks[48]["source"] == "human" and {masks[f]["source"] for f in range(0, 48, STRIDE)} == {"model"}

    # Track both ways (the button): every frame now, the person's frame 48 kept.
    page.click("#track-both")
    wait_track(page, "done", tracked=2)
    after_both = mask_rows(stored(server, video_id), oid)
    assert sorted(after_both) == list(range(0, SPEC.num_frames, STRIDE))
    assert after_both[48]["revision"] == masks[48]["revision"]
    page.wait_for_function(f"document.querySelector(\".track-row[data-object-id='{oid}'] canvas\").dataset.present"
                           f" === '{sum(m['area'] > 0 for m in after_both.values())}'")
    go_to_frame(page, 16)
    page.screenshot(path=str(artifacts_dir / "annotate-tracked-both.png"))

    # Track, then Cancel at once: it stops early, and what it wrote is what it said.
    go_to_frame(page, 0)
    page.evaluate("document.getElementById('track-forward').click(); document.getElementById('track-cancel').click()")
    wait_track(page, "cancelled", tracked=3)
    visited = int(re.search(r"Tracking cancelled: #\d+[^;]* has a mask on \d+ of (\d+) frames?",
                            page.inner_text("#status-note")).group(1))
    after_cancel = mask_rows(stored(server, video_id), oid)
    rewritten = [f for f, m in after_cancel.items() if m["revision"] != after_both[f]["revision"]]
    # Every visited frame is rewritten but the person's frame 48 (kept) if the track got that far.
    assert visited - 1 <= len(rewritten) <= visited < SPEC.num_frames // STRIDE - 1

    # Submit: out of this user's tracks from now on.
    click_submit(page)
    page.wait_for_function(f"document.querySelector(\"li.object[data-object-id='{oid}'] .object-status\")"
                           ".textContent === 'Submitted'")


def test_a_track_that_fails_or_loses_its_socket_ends_and_the_page_tracks_again(tools_page):
    """An error after ``track_started`` (here a frame file the model cannot read) and a socket
    dropped mid-track both end the track on the page, in words, with the stored masks re-read;
    the page then tracks again (it used to say "Tracking is already running." until a reload)."""
    page, server, video_id = tools_page
    drop = {"armed": False, "dropped": 0}

    def route(ws):
        # Real server behind; the page's socket is closed right after `track_started` when armed.
        upstream = ws.connect_to_server()

        def from_server(message):
            ws.send(message)
            if drop["armed"] and '"track_started"' in str(message):
                drop["armed"] = False
                drop["dropped"] += 1
                ws.close(code=4000, reason="test: connection lost")
                upstream.close()

        upstream.on_message(from_server)

    page.route_web_socket(ANNOTATE_SOCKET, route)
    sign_in_and_open(page, server, video_id)
    # The object starts four annotated frames before the end, and every track here runs forward from
    # there: what is tested is how a track ends, which four frames show as well as the whole video.
    start = SPEC.num_frames // STRIDE - 4
    go_to_frame(page, start)
    x, y, _, _ = target_point(start)
    oid = press_and_edit(page, lambda: page.mouse.click(*to_page(page, x, y)))[0]
    total = SPEC.num_frames // STRIDE - start  # the frames a track from there visits

    # The last frame's file is unreadable: the model fails there, after tracking the others.
    last = sorted(Path(server.shell(FRAMES_DIR.format(video=video_id)).strip().splitlines()[-1]).glob("*.jpg"))[-1]
    good = last.read_bytes()
    loads = int(canvas(page, "masks-loaded"))
    try:
        last.write_bytes(b"not a JPEG")
        page.click("#track-forward")
        wait_track(page, "error")
    finally:
        last.write_bytes(good)
    error = canvas(page, "error")
    assert canvas(page, "error-code") and error.startswith("Tracking stopped: "), error
    assert page.locator("#status-error").is_visible() and page.locator("#track-status").is_hidden()
    page.wait_for_function(f"Number(document.getElementById('frame-canvas').dataset.masksLoaded) > {loads}")
    masks = mask_rows(stored(server, video_id), oid)
    assert 1 < len(masks) < total  # the frames before the bad one are stored ...
    # ... and the words say so (not "nothing was changed"): every frame before the last, kept.
    assert error.endswith(f"; {len(masks)} of {total} frames were tracked and stored before it and are kept. "
                          "Track again to continue."), error
    assert len(masks) == total - 1 and "nothing was changed" not in error
    page.wait_for_function(f"document.querySelector(\".track-row[data-object-id='{oid}'] canvas\").dataset.present"
                           f" === '{sum(m['area'] > 0 for m in masks.values())}'")  # ... and shown

    # Not stuck: the next track runs to the end.
    page.click("#track-forward")
    wait_track(page, "done", tracked=1)
    assert sorted(mask_rows(stored(server, video_id), oid)) == list(range(start * STRIDE, SPEC.num_frames, STRIDE))

    # The socket drops mid-track: the page says so, reconnects, re-reads what is stored, tracks again.
    loads = int(canvas(page, "masks-loaded"))
    drop["armed"] = True
    page.keyboard.press("t")
    wait_track(page, "lost")
    assert drop["dropped"] == 1
    assert "connection was lost while tracking" in page.inner_text("#status-note")
    wait_canvas(page, "connection", "connected")
    page.wait_for_function(f"Number(document.getElementById('frame-canvas').dataset.masksLoaded) > {loads}")
    page.keyboard.press("t")
    wait_track(page, "done", tracked=2)
    assert canvas(page, "error") == ""


def test_imported_masks_are_marked_on_the_timeline_apart_from_model_and_person_frames(tools_page):
    """Masks from a dataset import are accepted annotation: their frames are marked "imported" on
    the object's filmstrip (and legend), not drawn as the model's frames still to review."""
    page, server, video_id = tools_page
    object_id = int(server.shell(IMPORTED_OBJECT.format(video=video_id)).strip().splitlines()[-1])
    sign_in_and_open(page, server, video_id)
    strip = page.locator(f".track-row[data-object-id='{object_id}'] canvas")
    page.wait_for_function(f"document.querySelector(\".track-row[data-object-id='{object_id}'] canvas\")"
                           ".dataset.imported === '3'")
    assert (strip.get_attribute("data-present"), strip.get_attribute("data-human")) == ("3", "0")
    assert strip.get_attribute("title").endswith(", 0 edited by a person, 3 imported")
    assert "imported (accepted)" in page.inner_text(".timeline-legend")
