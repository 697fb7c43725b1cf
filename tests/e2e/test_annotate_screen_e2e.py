"""The annotation screen as a person works on it (issue 14 §4), in a real Chromium on a real server:

- everything needed to work (canvas, tools, scrubber, play, per-object timeline, track controls
  and the tracking progress bar) is inside the viewport, without scrolling, at 1280x720 and
  1440x900 (positions from ``getBoundingClientRect`` against ``window.innerHeight``);
- a track of the selected object only touches that object's rows; its message counts the frames
  WITH a mask and says where the object was lost, and the timeline marks it lost there;
  "all my objects" tracks every object the person holds;
- play advances the frames at the project's annotation fps, pause (and the last frame) stops it;
- submitting an object with gaps asks "submit anyway?": dismissed, nothing is submitted;
  accepted, it is.

Screenshots at both sizes go to the artefacts folder (``MASKLET_E2E_ARTIFACTS``).
"""

from __future__ import annotations

import re
from dataclasses import replace

import cv2
import numpy as np
import pytest

from fixtures.synthetic import PRESETS, SyntheticFrames
from tests.e2e.conftest import Dialogs
from tests.e2e.test_annotate_e2e import (
    PASSWORD,
    SLUG,
    STRIDE,
    USERNAME,
    canvas,
    mask_rows,
    open_page,
    press_and_edit,
    seed,
    sign_in,
    stored,
    to_page,
    wait_canvas,
    wait_track,
)

pytestmark = pytest.mark.e2e

# Two demo videos: demo_01 for the layout and play, demo_02 for tracking and submitting.
SPECS = [replace(PRESETS["demo"], seed=seed, name=f"demo_{seed:02d}") for seed in (1, 2)]
FRAMES = SPECS[0].num_frames // STRIDE  # annotated frames per video (24)
SEED = f"""
from django.contrib.auth import get_user_model
from django.core.management import call_command
from annotator.models import Membership, Project, Role, Video
call_command("seed_demo", videos=2, verbosity=0)
user = get_user_model().objects.create_user({USERNAME!r}, password={PASSWORD!r})
project = Project.objects.get(slug={SLUG!r})
Membership.objects.create(project=project, user=user, role=Role.ANNOTATOR)
print(project.annotation_fps, *(Video.objects.get(project=project, name=n).id for n in {[s.video_id for s in SPECS]!r}))
"""

STATUS = """
from annotator.models import Masklet
print(Masklet.objects.get(video_id={video}, object_id={object_id}).status)
"""

# What must be on screen to work: tools, canvas, frame navigation and play, the track controls,
# the per-object timeline, the objects panel with Submit and "Video done".
ON_SCREEN = ["#frame-canvas", "[data-tool=click]", "[data-tool=eraser]", "#undo", "#clear-frame", "#zoom-in",
             "#help-open", "#status-connection", "#play", "#frame-prev", "#scrubber", "#frame-next", "#frame-caption",
             "#track-scope", "#track-backward", "#track-both", "#track-forward", "#track-overwrite",
             ".track-row .track-strip", "#object-list li.object", "#object-submit", "#video-finish"]
WHILE_TRACKING = ["#track-progress", "#track-cancel", ".track-label"]

RECTS = """(selectors) => selectors.map((s) => {
  const e = document.querySelector(s);
  if (!e) return {s, missing: true};
  const r = e.getBoundingClientRect();
  return {s, top: r.top, bottom: r.bottom, left: r.left, right: r.right, width: r.width, height: r.height};
})"""


@pytest.fixture(scope="module")
def screen_server(masklet_server_factory, tmp_path_factory):
    server = masklet_server_factory("screen", {})
    fps, *videos = (int(v) for v in seed(server, SEED, tmp_path_factory).strip().splitlines()[-1].split())
    return server, fps, videos


def open_at(browser, server, video_id: int, width: int, height: int):
    context = browser.new_context(base_url=server.url, viewport={"width": width, "height": height})
    context.set_default_timeout(30_000)
    page = context.new_page()
    sign_in(page, server)
    open_page(page, video_id)
    return context, page


def biggest_object(spec, position: int) -> np.ndarray:
    masks = SyntheticFrames(spec, stride=STRIDE).masks(position)
    return max(masks.values(), key=lambda mask: int(mask.sum()))


def deepest(mask: np.ndarray) -> tuple[int, int]:
    depth = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return int(x), int(y)


def assert_on_screen(page, selectors: list[str]) -> dict:
    """Each element is drawn (non-zero size) fully inside the viewport, and the page does not scroll."""
    width, height = page.evaluate("[innerWidth, innerHeight]")
    rects = {r["s"]: r for r in page.evaluate(RECTS, selectors)}
    for selector, r in rects.items():
        assert not r.get("missing"), f"{selector} is not on the page"
        assert r["width"] > 0 and r["height"] > 0, (selector, r)
        where = f"{selector}: x {r['left']:.0f}-{r['right']:.0f}, y {r['top']:.0f}-{r['bottom']:.0f}, {width}x{height}"
        assert r["top"] >= 0 and r["bottom"] <= height, where
        assert r["left"] >= 0 and r["right"] <= width, where
    scroll = page.evaluate("[document.documentElement.scrollHeight, document.documentElement.scrollWidth]")
    assert scroll[0] <= height and scroll[1] <= width, f"the page scrolls: {scroll} in {width}x{height}"
    return rects


@pytest.mark.parametrize("size", [(1280, 720), (1440, 900)], ids=["1280x720", "1440x900"])
def test_everything_needed_to_work_is_on_screen(browser, screen_server, artifacts_dir, size):
    server, _, (video_id, _) = screen_server
    context, page = open_at(browser, server, video_id, *size)
    try:
        # An object (a click on the biggest one), tracked forward: its timeline row and, while the
        # track runs, the progress bar and Cancel are on screen too.
        x, y = deepest(biggest_object(SPECS[0], 0))
        edit = press_and_edit(page, lambda: page.mouse.click(*to_page(page, x, y)))
        tracked = int(canvas(page, "tracked") or 0)
        page.click("#track-forward")
        during = page.wait_for_function(
            "(selectors) => { const d = document.getElementById('frame-canvas').dataset;"
            " if (d.tracking !== '1' || document.getElementById('track-status').hidden) return false;"
            f" return ({RECTS})(selectors); }}", arg=WHILE_TRACKING, polling="raf").json_value()
        for r in during:
            assert r["width"] > 0 and 0 <= r["top"] and r["bottom"] <= size[1], r
        wait_track(page, "done", tracked=tracked + 1)
        page.wait_for_function(f"document.querySelector(\".track-row[data-object-id='{edit[0]}'] canvas\")"
                               ".dataset.present > '1'")
        rects = assert_on_screen(page, ON_SCREEN + WHILE_TRACKING[:1])  # the bar keeps its place when idle
        canvas_box = rects["#frame-canvas"]
        # The canvas takes the room the controls leave: most of the height, the frame fitted inside it.
        assert canvas_box["height"] >= 0.42 * size[1], canvas_box
        scale, *_ = (float(v) for v in canvas(page, "view").split())
        assert scale * SPECS[0].height <= canvas_box["height"] + 1 and scale * SPECS[0].width <= canvas_box["width"] + 1
        page.screenshot(path=str(artifacts_dir / f"annotate-{size[0]}x{size[1]}.png"))
    finally:
        context.close()


def test_play_advances_frames_at_the_annotation_fps_and_pause_stops(browser, screen_server):
    server, fps, (video_id, _) = screen_server
    context, page = open_at(browser, server, video_id, 1440, 900)
    try:
        # The help overlay lists the key, from the same table that binds it.
        page.keyboard.press("?")
        assert "Play / pause" in page.inner_text("#shortcut-table tr[data-commands='play']")
        page.keyboard.press("Escape")
        # Record when each frame is shown, then play (K) from frame 0 to the end: it stops there by itself.
        page.evaluate("""() => { const c = document.getElementById('frame-canvas'); window.shown = [];
            new MutationObserver(() => { const last = window.shown[window.shown.length - 1];
                if (!last || last[0] !== c.dataset.frame) window.shown.push([c.dataset.frame, performance.now()]); })
              .observe(c, {attributes: true, attributeFilter: ['data-frame']}); }""")
        page.keyboard.press("k")
        wait_canvas(page, "playing", "1")
        assert page.inner_text("#play").strip().endswith("Pause")
        wait_canvas(page, "playing", "0", timeout=FRAMES / fps * 1000 * 3 + 5000)
        assert canvas(page, "frame") == str((FRAMES - 1) * STRIDE)
        shown = page.evaluate("window.shown")
        # The page may draw its start frame (0) again after the observer starts: playing begins at the next frame.
        shown = shown[next(i for i, (f, _) in enumerate(shown) if f != "0"):]
        frames = [int(f) for f, _ in shown]
        assert frames == list(range(STRIDE, FRAMES * STRIDE, STRIDE)), frames  # every frame, in order
        seconds = (shown[-1][1] - shown[0][1]) / 1000
        assert seconds == pytest.approx((FRAMES - 2) / fps, rel=0.35), f"{seconds:.2f} s at {fps} fps"

        # Play again (the button, from the end: it starts over), pause after a few frames: it stays there.
        page.click("#play")
        # Until the restart lands the page still shows the last frame, which is >= 3 strides too: wait for both.
        page.wait_for_function(f"(f => f >= {3 * STRIDE} && f < {(FRAMES - 1) * STRIDE})"
                               "(Number(document.getElementById('frame-canvas').dataset.frame))")
        page.click("#play")
        wait_canvas(page, "playing", "0")
        paused = canvas(page, "frame")
        assert STRIDE * 3 <= int(paused) < (FRAMES - 1) * STRIDE
        # Nothing can be waited for when nothing should happen: give it four frame periods.
        page.wait_for_timeout(4000 / fps)
        assert canvas(page, "frame") == paused and page.inner_text("#play").strip().endswith("Play")
    finally:
        context.close()


def test_track_selected_or_all_says_where_an_object_is_lost_and_submit_with_gaps_asks(browser, screen_server,
                                                                                       artifacts_dir):
    server, _, (_, video_id) = screen_server
    context, page = open_at(browser, server, video_id, 1440, 900)
    try:
        # Object A: a click on the biggest object. Object B (N): a 2-pixel brush dot, too small to
        # follow, so tracking loses it on the next frame.
        x, y = deepest(biggest_object(SPECS[1], 0))
        a = press_and_edit(page, lambda: page.mouse.click(*to_page(page, x, y)))[0]
        page.keyboard.press("n")
        page.wait_for_function(f"document.getElementById('frame-canvas').dataset.selected !== '{a}'")
        b = int(canvas(page, "selected"))
        page.keyboard.press("p")
        page.locator("#brush-size").fill("2")
        dot = to_page(page, 20, 20)
        page.mouse.move(*dot)
        press_and_edit(page, lambda: (page.mouse.down(), page.mouse.up()))
        before = stored(server, video_id)
        assert sorted(mask_rows(before, a)) == [0] and sorted(mask_rows(before, b)) == [0]

        # Track the selected object (the default): only B's rows change; A keeps its one frame.
        assert page.input_value("#track-scope") == "selected"
        page.keyboard.press("t")
        wait_track(page, "done", tracked=1)
        after = stored(server, video_id)
        assert mask_rows(after, a) == mask_rows(before, a)
        rows_b = mask_rows(after, b)
        assert sorted(rows_b) == list(range(0, FRAMES * STRIDE, STRIDE))
        with_mask = [f for f, m in sorted(rows_b.items()) if m["area"] > 0]
        empty = [f for f, m in sorted(rows_b.items()) if m["area"] == 0]
        assert with_mask == [0] and empty, "the dot was expected to be lost"
        note = page.inner_text("#status-note")
        expected = (rf"Tracking done: #{b}( [^;]*)? has a mask on 1 of {FRAMES} frames, lost at frame {empty[0]}"
                    r" \(1 frame edited by a person kept\)\.")  # the dot itself
        assert re.fullmatch(expected, note), note
        # The timeline marks where it was lost (the first empty frame next to a masked one) and how long.
        strip = f".track-row[data-object-id='{b}'] canvas"
        page.wait_for_function(f"document.querySelector(\"{strip}\").dataset.lostAt === '{empty[0]}'")
        assert page.get_attribute(strip, "data-lost") == str(len(empty))
        assert f"lost at frame {empty[0]}" in page.get_attribute(strip, "title")
        # With seven objects the timeline scrolls; the selected object's row is scrolled into its view.
        page.wait_for_function("""(id) => { const t = document.getElementById('timeline').getBoundingClientRect();
            const r = document.querySelector(`.track-row[data-object-id='${id}']`).getBoundingClientRect();
            return r.top >= t.top - 1 && r.bottom <= t.bottom + 1 && r.bottom <= innerHeight; }""", arg=b)
        page.screenshot(path=str(artifacts_dir / "annotate-lost.png"))

        # All my objects: A is tracked too (B again), and the message names both.
        page.select_option("#track-scope", "all")
        page.click("#track-forward")
        wait_track(page, "done", tracked=2)
        rows_a = mask_rows(stored(server, video_id), a)
        assert sorted(rows_a) == list(range(0, FRAMES * STRIDE, STRIDE))
        note = page.inner_text("#status-note")
        a_masked = sum(m["area"] > 0 for m in rows_a.values())
        assert f"#{a}" in note and f"has a mask on {a_masked} of {FRAMES} frames" in note and f"#{b}" in note, note
        assert a_masked >= 3, "object A should be followed for a few frames at least"

        # A gap in A: clear its mask on the second frame. Submitting asks; dismissed, nothing happens.
        page.click(f"li.object[data-object-id='{a}'] .object-name")
        wait_canvas(page, "selected", str(a))
        page.locator("#scrubber").fill("1")
        wait_canvas(page, "frame", str(STRIDE))
        press_and_edit(page, lambda: page.keyboard.press("c"))
        dialogs = Dialogs(page)
        questions = dialogs.questions
        dialogs.answer_next(False)
        page.click("#object-submit")
        page.wait_for_function("document.getElementById('status-note').textContent.includes('not submitted')")
        assert len(questions) == 1 and questions[0].endswith("Submit anyway?"), questions
        assert f"frames {STRIDE}" in questions[0] and "no mask on" in questions[0], questions[0]
        assert server.shell(STATUS.format(video=video_id, object_id=a)).split()[-1] == "draft"

        dialogs.answer_next(True)
        page.click("#object-submit")
        page.wait_for_function(f"document.querySelector(\"li.object[data-object-id='{a}'] .object-status\")"
                               ".textContent === 'Submitted'")
        assert len(questions) == 2
        assert server.shell(STATUS.format(video=video_id, object_id=a)).split()[-1] == "submitted"
        # B has a mask on one frame only: no gap, so it is submitted without a question.
        page.click(f"li.object[data-object-id='{b}'] .object-name")
        wait_canvas(page, "selected", str(b))
        page.wait_for_selector("#object-submit:not([disabled])")
        page.click("#object-submit")
        page.wait_for_function(f"document.querySelector(\"li.object[data-object-id='{b}'] .object-status\")"
                               ".textContent === 'Submitted'")
        assert len(questions) == 2
    finally:
        context.close()

