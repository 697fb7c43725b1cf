"""Three people, three roles, one masklet's review round trip in Chromium.

The annotator takes work from the queue and submits their object; the reviewer takes it from
the review queue, plays it over the video and sends it back with a reason; the annotator gets it
back from the queue (reopened) and reads the reviewer's reason (pick-list label, comment, who)
in the queue's message and in the object's panel, fixes it with a click and resubmits; the reviewer approves it;
the annotator marks the video done and the queue has nothing left for them. The queue's link
(``?object=N``) selects and locks the object without a click. Every step is checked against
the stored rows.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.conftest import Dialogs
from tests.e2e.test_annotate_e2e import click_submit, seed

pytestmark = pytest.mark.e2e

SLUG = "demo"
PASSWORD = "e2e-review-password"
SEED = f"""
import numpy as np
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management import call_command
from annotator.models import Masklet, Membership, Project, Role, Video
from annotator.services.annotation import create_masklet, release_lock
from annotator.services.masks import MaskWrite, save_mask_frames
from segmentation.masks import encode_rle
call_command("seed_demo", videos=1, verbosity=0)
project = Project.objects.get(slug={SLUG!r})
User = get_user_model()
hashed = make_password({PASSWORD!r})  # one PBKDF2 hash (~0.5 s) for the four people who share the password
people = {{name: User.objects.create(username=name, password=hashed) for name in ("ann", "ann2", "rev", "boss")}}
for name, role in (("ann", Role.ANNOTATOR), ("ann2", Role.ANNOTATOR), ("rev", Role.REVIEWER), ("boss", Role.ADMIN)):
    Membership.objects.create(project=project, user=people[name], role=role)
video = Video.objects.filter(project=project).exclude(masklets__isnull=False).order_by("name").first() or \\
    Video.objects.filter(project=project).order_by("name").first()
Masklet.objects.filter(video__project=project).exclude(video=video).update(status="approved")
masklet = create_masklet(video, people["ann"])
mask = np.zeros((video.height, video.width), bool)
mask[40:120, 60:160] = True
save_mask_frames(masklet, [MaskWrite(0, encode_rle(mask))], source="human", author=people["ann"])
release_lock(masklet, people["ann"])
print(video.id, masklet.id, masklet.object_id)
"""
REJECTABLE = """
import numpy as np
from django.contrib.auth import get_user_model
from annotator.models import Masklet, Video
from annotator.services.annotation import create_masklet, submit_masklet
from annotator.services.masks import MaskWrite, save_mask_frames
from segmentation.masks import encode_rle
ann = get_user_model().objects.get(username="ann")
video = Video.objects.filter(masklets__assignee=ann).first()
masklet = create_masklet(video, ann)
mask = np.zeros((video.height, video.width), bool)
mask[10:30, 10:30] = True
save_mask_frames(masklet, [MaskWrite(0, encode_rle(mask))], source="human", author=ann)
print(submit_masklet(masklet, ann).id)
"""
STATE = """
import json
from annotator.models import Masklet, Review
from annotator.models import VideoAssignment
m = Masklet.objects.get(pk={masklet})
done = VideoAssignment.objects.filter(video=m.video, done_at__isnull=False).values_list("done_by__username", flat=True)
reviews = Review.objects.filter(masklet=m).order_by("id").values_list("verdict", "reason", "comment")
print(json.dumps({{"status": m.status, "done_by": list(done), "reviews": list(reviews)}}))
"""

# Marking a video done queues its missed-object check (an auto-masklet run in a child process;
# tests/annotator/team/test_missed_objects.py runs one through). Left running, it would compete for the
# CPU with the next test until the server stops: the admin cancels it.
CANCEL_MISSED_CHECK = """
from django.contrib.auth import get_user_model
from annotator.automasks.runs import cancel_run
from annotator.models import AutoMaskletRun
(run,) = AutoMaskletRun.objects.filter(video_id={video_id})
cancel_run(run, get_user_model().objects.get(username="boss"))
print(run.kind, run.trigger)
"""
MISSED_CHECK_ENDED = """
from annotator.models import AutoMaskletRun
print(not AutoMaskletRun.objects.filter(video_id={video_id}, status__in=AutoMaskletRun.ACTIVE).exists())
"""


@pytest.fixture(scope="module")
def review_server(masklet_server_factory, tmp_path_factory):
    server = masklet_server_factory("review")
    video_id, masklet_id, object_id = (int(v) for v in seed(server, SEED, tmp_path_factory).strip().splitlines()[-1]
                                       .split())
    return server, video_id, masklet_id, object_id



def _state(server, masklet_id: int) -> dict:
    return json.loads(server.shell(STATE.format(masklet=masklet_id)).strip().splitlines()[-1])


def _annotate_and_submit(page, object_id: int, fix: bool, sent_back: tuple[str, str, str] | None = None) -> None:
    """``sent_back``: (reason label, comment, reviewer) the annotator must be able to read on the page."""
    page.goto(f"/projects/{SLUG}/")
    page.click("#work-next")
    page.wait_for_url(f"**/annotate/?object={object_id}")
    page.wait_for_function("document.getElementById('frame-canvas').dataset.connection === 'connected'")
    page.wait_for_function("document.getElementById('frame-canvas').dataset.frameReady === '1'")
    # No click on the row: the queue's ?object= selected the object and took its lock.
    row = page.locator("li.object.selected")
    assert row.count() == 1 and str(object_id) in row.inner_text()
    page.wait_for_function("!document.querySelector('#object-submit').disabled")
    review = page.locator("[data-role=review]")
    if sent_back is None:
        assert review.count() == 0
    else:  # reopened by the queue (a draft again), yet the reviewer's reason is on the page
        label, comment, reviewer = sent_back
        flash = page.inner_text(".messages")
        assert "came back from review" in flash and label in flash and comment in flash, flash
        assert review.count() == 1
        assert f"Sent back by {reviewer}" in review.inner_text()
        assert page.inner_text("[data-role=review] .review-reason") == label
        assert page.inner_text("[data-role=review] .review-comment") == comment
    if fix:  # a click inside the object on frame 0: the fix
        box = page.locator("#frame-canvas").bounding_box()
        scale, tx, ty = (float(v) for v in page.get_attribute("#frame-canvas", "data-view").split())
        page.mouse.click(box["x"] + tx + 110 * scale, box["y"] + ty + 80 * scale)
        page.wait_for_function("document.getElementById('frame-canvas').dataset.busy === '0'")
    click_submit(page)
    page.wait_for_function("document.querySelector('li.object .object-status').textContent === 'Submitted'")
    assert page.locator("[data-role=review]").count() == 0  # answered: the resubmitted masklet waits for review


def _review(page, verdict: str, reason: str = "", comment: str = "", shot=None) -> None:
    page.goto(f"/projects/{SLUG}/")
    page.click("#review-next")
    page.wait_for_url("**/review/")
    page.wait_for_function("document.body.dataset.reviewReady === 'true'")
    assert page.inner_text("#review-annotators") == "Annotated by ann"
    assert [b.inner_text() for b in page.locator("#verdict-form button").all()] == [
        "Approve", "Send back", "Reject for good"]
    if shot is not None:
        page.screenshot(path=str(shot), full_page=True)
    first = page.get_attribute("#review-canvas", "data-frame")
    page.click("#review-play")  # plays the masklet over the video
    assert page.inner_text("#review-play").strip() == "Pause"
    assert page.locator("#review-play svg.icon").count() == 1  # an SVG icon, not a glyph fonts may lack
    page.wait_for_function(f"document.getElementById('review-canvas').dataset.frame !== '{first}'")
    page.click("#review-play")
    page.locator("#review-scrub").fill("3")
    page.wait_for_function("document.getElementById('review-canvas').dataset.frame === '12'")
    if verdict == "unsatisfactory":
        page.select_option("#verdict-reason", reason)
        page.fill("#verdict-comment", comment)
        page.click("#verdict-bad")
    else:
        page.click("#verdict-ok")
    page.wait_for_url(f"**/projects/{SLUG}/")


def _others_cannot_reopen(sign_in, server, video_id: int, object_id: int) -> None:
    """Another annotator opening the sent-back object is told whose it is, with no Reopen button."""
    context, page = sign_in(server, "ann2", PASSWORD)
    try:
        page.goto(f"/projects/{SLUG}/videos/{video_id}/annotate/?object={object_id}")
        page.wait_for_function("document.getElementById('frame-canvas').dataset.connection === 'connected'")
        page.locator("li.object", has_text=str(object_id)).first.click()
        page.wait_for_selector("text=Sent back to ann: only they or a project admin may reopen it.")
        assert page.locator("#object-details button", has_text="Reopen").count() == 0
        assert page.locator("li.object .object-status").first.inner_text() == "Sent back"
    finally:
        context.close()


def _reject_for_good_asks_first(page, server) -> None:
    """The irreversible verdict asks; dismissing keeps the masklet waiting, accepting ends it for good."""
    masklet_id = int(server.shell(REJECTABLE).strip().splitlines()[-1])
    page.goto(f"/projects/{SLUG}/masklets/{masklet_id}/review/")
    page.wait_for_function("document.body.dataset.reviewReady === 'true'")
    dialogs = Dialogs(page)
    questions = dialogs.questions
    dialogs.answer_next(False)
    page.click("#verdict-discard")
    assert "cannot be undone" in questions[0]
    assert _state(server, masklet_id)["status"] == "submitted"
    dialogs.answer_next(True)
    page.click("#verdict-discard")
    page.wait_for_url(f"**/projects/{SLUG}/")
    assert "rejected for good" in page.inner_text(".messages")
    assert _state(server, masklet_id)["status"] == "discarded"
    page.goto(f"/projects/{SLUG}/masklets/{masklet_id}/review/")
    assert "rev rejected for good: Object has no clear boundary" in page.inner_text("#review-history")


def _finish_video(page) -> None:
    page.goto(f"/projects/{SLUG}/")
    page.click("#work-next")  # the video itself now (its object is approved)
    page.wait_for_url("**/annotate/")
    page.wait_for_function("document.getElementById('frame-canvas').dataset.connection === 'connected'")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#video-finish")
    page.wait_for_url(f"**/projects/{SLUG}/")
    assert "is done" in page.inner_text(".messages")


def test_submit_reject_fix_resubmit_approve(sign_in, review_server, artifacts_dir):
    server, video_id, masklet_id, object_id = review_server
    ann_context, ann = sign_in(server, "ann", PASSWORD)
    rev_context, rev = sign_in(server, "rev", PASSWORD)
    try:
        _annotate_and_submit(ann, object_id, fix=False)
        assert _state(server, masklet_id)["status"] == "submitted"

        _review(rev, "unsatisfactory", "missing_frames", "It is missing after frame 8")
        rev.screenshot(path=str(artifacts_dir / "review-sent-back.png"))
        state = _state(server, masklet_id)
        assert state == {"status": "rejected", "done_by": [],
                         "reviews": [["unsatisfactory", "missing_frames", "It is missing after frame 8"]]}

        _others_cannot_reopen(sign_in, server, video_id, object_id)
        # The queue reopens it for its annotator first, and they read why it came back.
        _annotate_and_submit(ann, object_id, fix=True, sent_back=(
            "Object missing on some frames", "It is missing after frame 8", "rev"))
        assert _state(server, masklet_id)["status"] == "submitted"

        _review(rev, "satisfactory", shot=artifacts_dir / "review-page.png")
        state = _state(server, masklet_id)
        assert state["status"] == "approved"
        assert [r[0] for r in state["reviews"]] == ["unsatisfactory", "satisfactory"]
        assert state["done_by"] == []

        _reject_for_good_asks_first(rev, server)
        _finish_video(ann)
        assert _state(server, masklet_id)["done_by"] == ["ann"]
        cancelled = server.shell(CANCEL_MISSED_CHECK.format(video_id=video_id)).strip().splitlines()[-1]
        assert cancelled.split() == ["missed", "finished"], cancelled
        ann.click("#work-next")  # the only video is done: nothing left
        ann.wait_for_url(f"**/projects/{SLUG}/")
        assert "Nothing left to annotate" in ann.inner_text(".messages")
        deadline = time.monotonic() + 60  # the cancelled check's child process has ended
        while server.shell(MISSED_CHECK_ENDED.format(video_id=video_id)).strip().splitlines()[-1] != "True":
            assert time.monotonic() < deadline, "the cancelled missed-object check did not end"
            ann.wait_for_timeout(100)
    finally:
        ann_context.close()
        rev_context.close()


OVERLAY_MASKLET = """
import numpy as np
from django.contrib.auth import get_user_model
from annotator.models import Video
from annotator.services.annotation import create_masklet, release_lock
from annotator.services.masks import MaskWrite, save_mask_frames
from segmentation.masks import encode_rle
ann = get_user_model().objects.get(username="ann")
video = Video.objects.get(pk={video_id})
masklet = create_masklet(video, ann)
mask = np.zeros((video.height, video.width), bool)
mask[10:30, 10:30] = True
save_mask_frames(masklet, [MaskWrite(0, encode_rle(mask))], source="human", author=ann)
release_lock(masklet, ann)
print(masklet.id)
"""
PINK, YELLOW, FILL_ALPHA = (0xFF, 0x3D, 0x7F), (0xFF, 0xF2, 0x00), 110 / 255


def _pixel(page, x: int, y: int) -> list[int]:
    return page.evaluate("([x, y]) => [...document.getElementById('review-canvas').getContext('2d')"
                         ".getImageData(x, y, 1, 1).data]", [x, y])


def test_the_review_page_draws_its_overlay_with_the_annotation_pages_renderer(sign_in, review_server):
    """The masklet's frame-0 mask is a square at x, y in [10, 30): decoded by annotate_worker.js (the
    annotation page's Web Worker), drawn with an opaque yellow edge and a pink fill at the fill alpha,
    and with the edge only when "outline only" is ticked."""
    server, video_id, _, _ = review_server
    masklet_id = int(server.shell(OVERLAY_MASKLET.format(video_id=video_id)).strip().splitlines()[-1])
    context, page = sign_in(server, "rev", PASSWORD)
    try:
        page.goto(f"/projects/{SLUG}/masklets/{masklet_id}/review/")
        page.wait_for_function("document.body.dataset.reviewReady === 'true'")
        page.wait_for_function("document.getElementById('review-canvas').dataset.overlay === '0 filled'")
        page.wait_for_function("document.getElementById('review-canvas').dataset.drawn === 'true'")
        assert any(worker.url.endswith("/annotate_worker.js") for worker in page.workers), page.workers
        edge, filled, outside = _pixel(page, 10, 10), _pixel(page, 20, 20), _pixel(page, 40, 40)
        page.check("#review-outline")
        page.wait_for_function("document.getElementById('review-canvas').dataset.overlay === '0 outlined'")
        assert _pixel(page, 10, 10) == [*YELLOW, 255] == edge  # the boundary, opaque, in both looks
        frame = _pixel(page, 20, 20)  # outline only: the inside is the video frame itself
        assert _pixel(page, 40, 40) == outside  # outside the mask nothing is drawn either way
        expected = [round(f * (1 - FILL_ALPHA) + p * FILL_ALPHA) for f, p in zip(frame[:3], PINK, strict=True)]
        assert all(abs(a - b) <= 3 for a, b in zip(filled[:3], expected, strict=True)), (filled, frame, expected)
    finally:
        context.close()
        server.shell(f"from annotator.models import Masklet; Masklet.objects.filter(pk={masklet_id}).delete()")
