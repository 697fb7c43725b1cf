"""Where to look, in Chromium: the score heat strip, the suspect jump (J) and the review queue by lowest score.

Scores are seeded as a backend stores them (``MaskFrame.quality`` on model frames); which frames
people looked at is read back from the server after each jump.
"""

from __future__ import annotations

import json
import time

import pytest

pytestmark = pytest.mark.e2e

SLUG = "demo"
PASSWORD = "e2e-radar-password"
#: Object "tracked" by the model with these scores (native frame -> score); every other frame 0.95.
SCORES = {16: 0.1, 32: 0.3, 8: 0.5, 60: 0.7}
SEED = f"""
import numpy as np
from django.contrib.auth import get_user_model
from django.core.management import call_command
from annotator.models import Membership, Project, Role, SeenFrame, Video
from annotator.services.annotation import create_masklet, release_lock, submit_masklet
from annotator.services.masks import MaskWrite, save_mask_frames
from segmentation.masks import encode_rle
from segmentation.segmenter import FrameQuality
call_command("seed_demo", videos=1, verbosity=0)
project = Project.objects.get(slug={SLUG!r})
User = get_user_model()
people = {{name: User.objects.create_user(name, password={PASSWORD!r}) for name in ("ann", "rev")}}
Membership.objects.create(project=project, user=people["ann"], role=Role.ANNOTATOR)
Membership.objects.create(project=project, user=people["rev"], role=Role.REVIEWER)
video = Video.objects.filter(project=project).order_by("name").first()
video.masklets.update(status="approved")
scores = {{int(k): v for k, v in {json.dumps({str(k): v for k, v in SCORES.items()})}.items()}}

def tracked(box, scores, low):
    masklet = create_masklet(video, people["ann"])
    mask = np.zeros((video.height, video.width), bool)
    mask[box[0]:box[1], box[2]:box[3]] = True
    save_mask_frames(masklet, [MaskWrite(0, encode_rle(mask))], source="human", author=people["ann"])
    save_mask_frames(masklet, [MaskWrite(f, encode_rle(mask), FrameQuality(scores.get(f, low)))
                               for f in video.annotated_frame_indices()[1:]], source="model")
    return masklet

target = tracked((40, 120, 60, 160), scores, 0.95)
SeenFrame.objects.create(masklet=target, frame_index=16, user=people["ann"])  # the lowest, already looked at
release_lock(target, people["ann"])
fine = submit_masklet(tracked((200, 260, 300, 400), {{}}, 0.97), people["ann"])
doubtful = submit_masklet(tracked((200, 260, 450, 560), {{12: 0.05}}, 0.9), people["ann"])
print(video.id, target.object_id, fine.id, doubtful.id)
"""
SEEN = """
from annotator.models import SeenFrame
print(sorted(SeenFrame.objects.filter(masklet__video_id={video}, masklet__object_id={object_id})
             .values_list("frame_index", flat=True)))
"""


@pytest.fixture(scope="module")
def radar_server(masklet_server_factory):
    server = masklet_server_factory("radar")
    return server, *(int(v) for v in server.shell(SEED).strip().splitlines()[-1].split())


def _wait_seen(server, video_id: int, object_id: int, wanted: set[int], timeout_s: float = 15) -> None:
    """Until the server has stored looks at ``wanted`` frames (the page posts them in the background)."""
    deadline = time.monotonic() + timeout_s
    while True:
        seen = set(json.loads(server.shell(SEEN.format(video=video_id, object_id=object_id)).strip().splitlines()[-1]))
        if wanted <= seen:
            return
        assert time.monotonic() < deadline, f"looks stored: {sorted(seen)}, expected {sorted(wanted)}"
        time.sleep(0.1)  # between looks (each a forked server shell, tens of milliseconds)


def _heat_pixel(page, object_id: int, frame_position: int) -> list[int]:
    """The heat band's colour (RGB) under one frame of an object's timeline row."""
    return page.evaluate("""([id, position]) => {
        const strip = document.querySelector(`.track-row[data-object-id="${id}"] canvas`);
        const n = Number(strip.dataset.frames);
        const x = Math.floor((position + 0.5) * strip.width / n);
        return Array.from(strip.getContext('2d').getImageData(x, strip.height - 2, 1, 1).data.slice(0, 3));
    }""", [object_id, frame_position])


def test_heat_strip_and_the_jump_to_the_lowest_unseen_frame(radar_server, sign_in, artifacts_dir):
    server, video_id, object_id, _, _ = radar_server
    context, page = sign_in(server, "rev", PASSWORD)
    # The page's first read of who looked at what is held until J has been pressed: the jump waits for
    # it rather than landing on a frame someone has seen (as it could on a slow server).
    held = []
    page.route("**/seen/", lambda route: held.append(route) if route.request.method == "GET" and not held
               else route.continue_())
    try:
        page.goto(f"/projects/{SLUG}/videos/{video_id}/annotate/")
        page.wait_for_function("document.getElementById('frame-canvas').dataset.masksLoaded === '1'")
        strip = f".track-row[data-object-id='{object_id}'] canvas"
        page.wait_for_function(f"document.querySelector(\"{strip}\")?.dataset.scored === '23'")
        assert page.get_attribute(strip, "data-lowest") == "0.10"
        red, green, _ = _heat_pixel(page, object_id, 4)  # frame 16: score 0.1
        assert red > 150 and green < 90, (red, green)
        red, green, _ = _heat_pixel(page, object_id, 5)  # frame 20: score 0.95
        assert green > 150 and red < 90, (red, green)

        page.click(f"li.object[data-object-id='{object_id}'] .object-name")
        page.wait_for_function(f"document.getElementById('frame-canvas').dataset.selected === '{object_id}'")
        page.keyboard.press("j")  # frame 16 is lower, but someone looked at it already
        assert len(held) == 1 and "frame=" not in page.evaluate("location.search")  # J waits for the looks
        held[0].continue_()
        page.wait_for_function("location.search === '?frame=32'")
        assert "suspect frame 32 (score 0.30)" in page.inner_text("#status-note")
        red, green, blue = _heat_pixel(page, object_id, 0)  # frame 0 (the cursor has left it): a person's mask
        assert abs(red - green) < 20 and abs(green - blue) < 30, (red, green, blue)  # neutral grey
        page.locator("#timeline").screenshot(path=str(artifacts_dir / "radar-timeline.png"))
        page.keyboard.press("j")
        page.wait_for_function("location.search === '?frame=8'")
        page.wait_for_function("document.getElementById('frame-canvas').dataset.suspect === '8'")
        _wait_seen(server, video_id, object_id, {16, 32, 8})
        page.screenshot(path=str(artifacts_dir / "radar-annotate.png"))
    finally:
        context.close()

    context, page = sign_in(server, "rev", PASSWORD)  # a new page reads the looks back: on to the next suspect
    try:
        page.goto(f"/projects/{SLUG}/videos/{video_id}/annotate/?object={object_id}")
        page.wait_for_function("document.getElementById('frame-canvas').dataset.masksLoaded === '1'")
        page.click(f"li.object[data-object-id='{object_id}'] .object-name")
        page.keyboard.press("?")  # the key is in the help overlay
        assert page.locator("#shortcut-table tr[data-commands='suspect']").count() == 1
        page.keyboard.press("?")
        page.keyboard.press("j")
        page.wait_for_function("location.search === '?frame=60'")
        rows = lambda: [int(r.get_attribute("data-object-id")) for r in page.locator("li.object").all()]  # noqa: E731
        assert rows() == sorted(rows())  # by number
        page.select_option("#object-order", "score")  # the masklet list, lowest score first
        lowest = [page.get_attribute(f"li.object[data-object-id='{i}']", "data-lowest") for i in rows()]
        assert lowest == sorted(lowest) and lowest[0] == "0.05" and lowest[1] == "0.10", lowest
    finally:
        context.close()


def test_the_review_queue_in_lowest_score_order(radar_server, sign_in, artifacts_dir):
    server, _, _, fine, doubtful = radar_server
    context, page = sign_in(server, "rev", PASSWORD)
    try:
        page.goto(f"/projects/{SLUG}/")
        page.click("#review-queue-link")
        rows = lambda: [int(r.get_attribute("data-masklet")) for r in page.locator("#review-queue tbody tr").all()]  # noqa: E731
        assert rows() == [fine, doubtful]  # oldest first
        assert page.locator(f"tr[data-masklet='{fine}'] .badge.confident").count() == 1
        assert page.locator(f"tr[data-masklet='{doubtful}'] .badge.confident").count() == 0
        page.select_option("#queue-order-select", "score")
        page.click("#queue-order button")
        page.wait_for_url("**/review/?order=score")
        assert rows() == [doubtful, fine]
        page.screenshot(path=str(artifacts_dir / "radar-review-queue.png"), full_page=True)
        page.click("#queue-review-next")
        page.wait_for_url(f"**/masklets/{doubtful}/review/?order=score")
        assert "Lowest frame score 0.05" in page.inner_text("#review-quality")
    finally:
        context.close()
