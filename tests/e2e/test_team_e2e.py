"""A small project run end to end in Chromium by three people with the three roles.

The admin adds the annotator and the reviewer on the team page (one added with the wrong role
and corrected), moves the video to a split and generates auto masklets; the annotator asks for
work, annotates an object, submits it and marks the video done; the reviewer asks for work and
judges masklets (one approved, one sent back with a reason); the admin's team page then shows
the queue counts and effort charts with data. Screenshots of the three pages are kept in the
artifacts folder (``MASKLET_E2E_ARTIFACTS``).
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from fixtures.synthetic import PRESETS, SyntheticFrames

pytestmark = pytest.mark.e2e

SLUG = "demo"
PASSWORD = "e2e-team-password"
SPEC = replace(PRESETS["demo"], seed=1, name="demo_01")  # seed_demo's first video
SEED = f"""
from django.contrib.auth import get_user_model
from django.core.management import call_command
from annotator.models import Membership, Project, Role, Video
call_command("seed_demo", videos=1, verbosity=0)
project = Project.objects.get(slug={SLUG!r})
video = Video.objects.get(project=project, name={SPEC.video_id!r})
video.masklets.all().delete()  # a fresh video: the team annotates it
User = get_user_model()
people = {{name: User.objects.create_user(name, password={PASSWORD!r}) for name in ("boss", "ann", "rev")}}
Membership.objects.create(project=project, user=people["boss"], role=Role.ADMIN)
print(video.id)
"""
STATE = """
import json
from annotator.models import Masklet, Membership, Review, Video, VideoAssignment
video = Video.objects.get(pk={video})
print(json.dumps({{
    "roles": dict(Membership.objects.filter(project=video.project).values_list("user__username", "role")),
    "split": video.split,
    "masklets": sorted(Masklet.objects.filter(video=video).values_list("type", "status")),
    "done_by": list(VideoAssignment.objects.filter(video=video, done_at__isnull=False)
                    .values_list("done_by__username", flat=True)),
    "reviews": sorted(Review.objects.filter(masklet__video=video).values_list("verdict", "reason")),
}}))
"""


@pytest.fixture(scope="module")
def team_server(masklet_server_factory):
    server = masklet_server_factory("team")
    return server, int(server.shell(SEED).strip().splitlines()[-1])



def _state(server, video_id: int) -> dict:
    return json.loads(server.shell(STATE.format(video=video_id)).strip().splitlines()[-1])


def _admin_sets_up(page, video_id: int) -> None:
    page.goto(f"/projects/{SLUG}/")
    page.click("text=Team, splits, auto masklets and effort")
    page.wait_for_url("**/team/")
    for name, role in (("ann", "annotator"), ("rev", "annotator")):  # rev's role is corrected below
        page.fill("#add-member input[name=user]", name)
        page.select_option("#add-member select[name=role]", role)
        page.click("#add-member button[type=submit]")
        page.wait_for_selector(f"#member-table tr[data-user={name}]")
    row = page.locator("#member-table tr[data-user=rev]")
    row.locator("select[name=role]").select_option("reviewer")
    row.locator("button", has_text="Set").click()
    page.wait_for_selector("text=rev is now reviewer")
    page.check(f"#split-form input[value='{video_id}']")
    page.select_option("#split-form select[name=split]", "val")
    page.click("#split-form button[type=submit]")
    page.wait_for_selector("text=1 video(s) moved to val")
    page.fill("#auto-form input[name=points_per_side]", "6")
    page.click("#auto-form button[type=submit]")
    # The team page reloads itself every 3 s while a run is queued or running (a reload of the test's
    # own raced it: net::ERR_ABORTED).
    page.wait_for_selector("#auto-runs tr[data-status=done], #auto-runs tr[data-status=failed]", timeout=300_000)
    assert not page.locator("#auto-runs tr[data-status=failed]").count(), page.inner_text("#auto-runs")


def _object_point() -> tuple[float, float]:
    """The centre of the largest object on frame 0 (video pixels)."""
    masks = SyntheticFrames(SPEC, stride=4).masks(0)
    ys, xs = np.nonzero(max(masks.values(), key=lambda m: m.sum()))
    return float(xs.mean()), float(ys.mean())


def _annotator_works(page, artifacts_dir) -> None:
    page.goto(f"/projects/{SLUG}/")
    page.click("#work-next")
    page.wait_for_url("**/annotate/")
    page.wait_for_function("document.getElementById('frame-canvas').dataset.connection === 'connected'")
    page.wait_for_function("document.getElementById('frame-canvas').dataset.frameReady === '1'")
    box = page.locator("#frame-canvas").bounding_box()
    scale, tx, ty = (float(v) for v in page.get_attribute("#frame-canvas", "data-view").split())
    x, y = _object_point()
    for dx in (0, 4):  # two clicks on the object: a new object, then a refinement
        before = page.get_attribute("#frame-canvas", "data-last-edit") or ""
        page.mouse.click(box["x"] + tx + (x + dx) * scale, box["y"] + ty + y * scale)
        page.wait_for_function("(before) => { const d = document.getElementById('frame-canvas').dataset;"
                               " return (d.lastEdit || '') !== before && d.busy === '0'; }", arg=before)
    page.click("#object-submit")
    page.wait_for_function("[...document.querySelectorAll('li.object .object-status')]"
                           ".some((s) => s.textContent === 'Submitted')")
    page.screenshot(path=str(artifacts_dir / "team-flow-annotate.png"))
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#video-finish")
    page.wait_for_url(f"**/projects/{SLUG}/")
    assert "is done" in page.inner_text(".messages")


def _reviewer_works(page, artifacts_dir) -> None:
    page.goto(f"/projects/{SLUG}/")
    page.click("#review-next")
    page.wait_for_url("**/review/")
    page.wait_for_function("document.body.dataset.reviewReady === 'true'")
    page.screenshot(path=str(artifacts_dir / "team-flow-review.png"), full_page=True)
    page.click("#verdict-ok")
    page.wait_for_url("**/review/")  # the next masklet opens at once
    page.wait_for_function("document.body.dataset.reviewReady === 'true'")
    page.select_option("#verdict-reason", "inaccurate_boundary")
    page.fill("#verdict-comment", "The left edge cuts into the object")
    page.click("#verdict-bad")
    page.wait_for_load_state()


def test_three_roles_run_a_small_project(sign_in, team_server, artifacts_dir):
    server, video_id = team_server
    contexts = []
    try:
        contexts.append(boss_context := sign_in(server, "boss", PASSWORD)[0])
        boss = boss_context.pages[0]
        _admin_sets_up(boss, video_id)
        state = _state(server, video_id)
        assert state["roles"] == {"boss": "admin", "ann": "annotator", "rev": "reviewer"}
        assert state["split"] == "val"
        auto = [m for m in state["masklets"] if m[0] == "auto"]
        assert auto and {status for _, status in auto} == {"submitted"}

        ann_context, ann = sign_in(server, "ann", PASSWORD)
        contexts.append(ann_context)
        _annotator_works(ann, artifacts_dir)
        rev_context, rev = sign_in(server, "rev", PASSWORD)
        contexts.append(rev_context)
        _reviewer_works(rev, artifacts_dir)

        state = _state(server, video_id)
        assert state["done_by"] == ["ann"]
        assert ["manual", "submitted"] in state["masklets"]  # the reviewer took the older auto ones first
        assert state["reviews"] == [["satisfactory", ""], ["unsatisfactory", "inaccurate_boundary"]]

        boss.goto(f"/projects/{SLUG}/team/")
        assert "1 done" in boss.inner_text(".heading")
        assert boss.locator("#effort .chart-bar").count() >= 3  # ann's effort drawn
        assert "ann" in boss.inner_text("#effort-table")
        boss.screenshot(path=str(artifacts_dir / "team-flow-team.png"), full_page=True)
    finally:
        for context in contexts:
            context.close()
