"""Where to look: review queue and masklet list by lowest score, the confident mark and auto-approve,
and the frames people have seen (the jump key's memory)."""

from __future__ import annotations

import json

import numpy as np
from django.test import Client
from django.urls import reverse

from annotator.models import Masklet, Review, SeenFrame
from annotator.selectors import CONFIDENT_QUALITY, seen_frames
from annotator.services.annotation import create_masklet, record_edit, submit_masklet
from annotator.services.masks import MaskWrite, save_mask_frames
from annotator.services.queues import next_review
from segmentation.masks import encode_rle
from segmentation.segmenter import FrameQuality


def _scored(video, user, scores: list[float | None], submit: bool = True) -> Masklet:
    """A masklet with one human frame (0) and model frames 4, 8, ... scored ``scores`` (None: unscored)."""
    masklet = create_masklet(video, user)
    mask = np.zeros((video.height, video.width), bool)
    mask[20:60, 30:90] = True
    save_mask_frames(masklet, [MaskWrite(0, encode_rle(mask))], source="human", author=user)
    save_mask_frames(masklet, [MaskWrite(4 * (i + 1), encode_rle(mask), FrameQuality(s) if s is not None else None)
                               for i, s in enumerate(scores)], source="model")
    return submit_masklet(masklet, user) if submit else masklet


def test_the_review_queue_and_the_masklet_list_put_the_lowest_score_first(team, synthetic_video):
    video, _ = synthetic_video(team.project)
    good = _scored(video, team.annotator, [0.95, 0.97])
    unscored = _scored(video, team.annotator, [None])
    bad = _scored(video, team.annotator, [0.9, 0.2, 0.8])
    middling = _scored(video, team.annotator, [0.6, 0.99])

    reviewer = Client()
    reviewer.force_login(team.reviewer)
    queue = reverse("review-queue", kwargs={"slug": team.project.slug})
    html = reviewer.get(queue, {"order": "score"}).content.decode()
    rows = [int(part.split('"')[0]) for part in html.split('data-masklet="')[1:]]
    assert rows == [bad.id, middling.id, good.id, unscored.id]
    assert f'data-masklet="{good.id}" data-lowest="0.95" data-confident="1"' in html
    assert html.count('data-confident="1"') == 1
    html = reviewer.get(queue).content.decode()  # default: oldest first
    assert [int(part.split('"')[0]) for part in html.split('data-masklet="')[1:]] == [
        good.id, unscored.id, bad.id, middling.id]

    api = reverse("api-video-masklets", kwargs={"slug": team.project.slug, "video_id": video.id})
    listed = reviewer.get(api, {"order": "score"}).json()["masklets"]
    assert [(m["object_id"], m["lowest_quality"], m["confident"]) for m in listed] == [
        (bad.object_id, 0.2, False), (middling.object_id, 0.6, False), (good.object_id, 0.95, True),
        (unscored.object_id, None, False)]
    assert reviewer.get(api, {"order": "worst"}).status_code == 400

    assert next_review(team.project, team.reviewer, "score") == bad
    response = reviewer.post(reverse("review-next", kwargs={"slug": team.project.slug}), {"order": "score"})
    assert response["Location"].endswith(f"/masklets/{bad.id}/review/?order=score")  # the one already held
    verdict = reviewer.post(response["Location"], {"verdict": "satisfactory", "order": "score"})
    assert verdict["Location"].endswith(f"/masklets/{middling.id}/review/?order=score")


def test_confident_masklets_are_approved_by_themselves_only_where_the_admin_switched_it_on(team, synthetic_video):
    video, _ = synthetic_video(team.project)
    assert _scored(video, team.annotator, [0.95, 0.99]).status == "submitted"  # off by default

    admin = Client()
    admin.force_login(team.admin)
    edit = reverse("project-edit", kwargs={"slug": team.project.slug})
    admin.post(edit, {"action": "details", "name": team.project.name, "annotation_fps": 6,
                      "auto_approve_confident": "on"})
    team.project.refresh_from_db()
    assert team.project.auto_approve_confident

    confident = _scored(video, team.annotator, [CONFIDENT_QUALITY, 0.99])
    assert confident.status == "approved"
    review = Review.objects.get(masklet=confident)
    assert (review.verdict, review.automatic, review.reviewer) == ("satisfactory", True, None)
    assert "automatically" in review.comment
    for scores in ([0.99, CONFIDENT_QUALITY - 0.01], [0.99, None], []):  # one doubtful or unscored frame: a person
        masklet = _scored(video, team.annotator, scores)
        assert masklet.status == "submitted" and not masklet.reviews.exists(), scores
    page = Client()
    page.force_login(team.reviewer)
    story = page.get(reverse("masklet-review", kwargs={"slug": team.project.slug, "masklet_id": confident.id}))
    assert "approved automatically" in story.content.decode()


def test_frames_people_saw_or_edited_are_remembered(team, synthetic_video):
    video, _ = synthetic_video(team.project)
    masklet = _scored(video, team.annotator, [0.3, 0.5], submit=False)
    mask = np.zeros((video.height, video.width), bool)
    mask[10:30, 10:30] = True
    record_edit(masklet, team.annotator, frame_index=12, kind="point", payload={"x": 20, "y": 20, "positive": True},
                rle=encode_rle(mask), session_id="s")
    url = reverse("api-video-seen", kwargs={"slug": team.project.slug, "video_id": video.id})
    reviewer = Client()
    reviewer.force_login(team.reviewer)
    post = lambda body: reviewer.post(url, json.dumps(body), content_type="application/json")  # noqa: E731
    assert post({"object_id": masklet.object_id, "frames": [4, 4]}).json()["seen"] == {
        str(masklet.object_id): [4, 12]}
    assert post({"object_id": masklet.object_id, "frames": [4]}).status_code == 200  # the first look is kept
    assert list(SeenFrame.objects.values_list("frame_index", "user")) == [(4, team.reviewer.pk)]
    assert post({"object_id": masklet.object_id, "frames": [5]}).status_code == 400  # not an annotated frame
    assert post({"object_id": 999, "frames": [4]}).status_code == 404
    assert post({"object_id": masklet.object_id, "frames": "4"}).status_code == 400
    assert reviewer.post(url, {"object_id": 1}).status_code == 400  # a form, not JSON
    assert seen_frames(video) == {masklet.object_id: [4, 12]}
    assert SeenFrame.objects.count() == 1
