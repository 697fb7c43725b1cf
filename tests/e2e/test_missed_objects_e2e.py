"""Possibly missed objects in Chromium: a reviewer accepts one suggestion and dismisses another.

The video was marked done by its annotator and the exhaustivity check left two suggestions (seeded
here; ``tests/annotator/team/test_missed_objects.py`` runs the real check). The reviewer sees both
on the video page, each as its frame with the mask drawn over it; accepting one makes a draft
masklet that the annotator's next "Get work" opens; the dismissed one stays dismissed after a
reload. Every step is checked against the stored rows.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.e2e

SLUG = "demo"
PASSWORD = "e2e-missed-password"
SEED = f"""
import numpy as np
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone
from annotator.models import Membership, MissedObject, Project, Role, Video, VideoAssignment
from segmentation.masks import encode_rle, rle_area, rle_bbox
call_command("seed_demo", videos=1, verbosity=0)
project = Project.objects.get(slug={SLUG!r})
User = get_user_model()
people = {{name: User.objects.create_user(name, password={PASSWORD!r}) for name in ("ann", "rev")}}
Membership.objects.create(project=project, user=people["ann"], role=Role.ANNOTATOR)
Membership.objects.create(project=project, user=people["rev"], role=Role.REVIEWER)
video = Video.objects.filter(project=project).order_by("name").first()
video.masklets.update(status="approved")
VideoAssignment.objects.update_or_create(video=video, defaults={{"done_at": timezone.now(), "done_by": people["ann"]}})
ids = []
for y0, x0 in ((40, 60), (200, 400)):
    mask = np.zeros((video.height, video.width), bool)
    mask[y0:y0 + 80, x0:x0 + 100] = True
    rle = encode_rle(mask)
    ids.append(MissedObject.objects.create(video=video, frame_index=0, rle_counts=rle["counts"], area=rle_area(rle),
                                           bbox=rle_bbox(rle), score=0.9).id)
print(video.id, *ids)
"""
STATE = """
import json
from annotator.models import MissedObject
rows = MissedObject.objects.filter(video_id={video}).order_by("id")
print(json.dumps([[r.status, r.masklet.object_id if r.masklet else None, r.masklet.status if r.masklet else None]
                  for r in rows]))
"""


def _state(server, video_id: int) -> list:
    return json.loads(server.shell(STATE.format(video=video_id)).strip().splitlines()[-1])


def _decide(page, missed_id: int, action: str) -> None:
    page.click(f"[data-missed='{missed_id}'] button[value={action}]")
    page.wait_for_load_state()
    page.wait_for_url("**/#missed")


def test_a_reviewer_accepts_one_suggestion_and_dismisses_another(masklet_server_factory, sign_in, artifacts_dir):
    server = masklet_server_factory("missed")
    video_id, first, second = (int(v) for v in server.shell(SEED).strip().splitlines()[-1].split())
    context, page = sign_in(server, "rev", PASSWORD)
    try:
        page.goto(f"/projects/{SLUG}/videos/{video_id}/")
        assert page.locator(".missed-item").count() == 2
        page.wait_for_function("[...document.querySelectorAll('.missed-item img')]"
                               ".every((img) => img.complete && img.naturalWidth > 0)")
        page.locator("#missed").screenshot(path=str(artifacts_dir / "missed-objects.png"))

        _decide(page, first, "accept")
        assert "added as a draft to annotate (ann)" in page.inner_text(".messages")
        assert [int(item.get_attribute("data-missed")) for item in page.locator(".missed-item").all()] == [second]
        _decide(page, second, "dismiss")
        assert "will not offer that object again" in page.inner_text(".messages")
        page.reload()
        assert page.locator(".missed-item").count() == 0
        assert page.inner_text("#missed-decided") == "1 accepted, 1 dismissed."
        (accepted, object_id, status), dismissed = _state(server, video_id)
        assert (accepted, status, dismissed) == ("accepted", "draft", ["dismissed", None, None])
    finally:
        context.close()

    context, page = sign_in(server, "ann", PASSWORD)
    try:  # the accepted object is the annotator's next piece of work
        page.goto(f"/projects/{SLUG}/")
        page.click("#work-next")
        page.wait_for_url(f"**/videos/{video_id}/annotate/?object={object_id}")
    finally:
        context.close()
