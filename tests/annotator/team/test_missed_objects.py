"""Exhaustivity: marking a video done looks for objects nobody annotated; reviewers accept or dismiss them.

The synthetic video's ground truth is exact, so the suggestion can be matched to the object that
was left out (IoU >= ``missed.MATCH_IOU``).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from django.test import Client
from django.urls import reverse

from annotator.automasks import generate, missed
from annotator.automasks.runs import execute
from annotator.models import AutoMaskletRun, MaskFrame, Masklet, MissedObject, VideoAssignment
from annotator.services import missed_objects
from annotator.services.annotation import EditRefused, create_masklet
from annotator.services.masks import MaskWrite, save_mask_frames
from annotator.services.queues import finish_video, next_work
from fixtures.synthetic import PRESETS, SyntheticFrames
from segmentation.backends import build_segmenter
from segmentation.masks import decode_rle, encode_rle, rle_area, rle_bbox

#: A coarser grid than a real check's, to keep the test short (the bench runs the real one).
TEST_GRID = 8


def _annotate(video, user, masks: dict[int, np.ndarray]) -> None:
    for mask in masks.values():
        masklet = create_masklet(video, user)
        save_mask_frames(masklet, [MaskWrite(0, encode_rle(mask))], source="human", author=user)


def _finish_and_check(client: Client, video) -> AutoMaskletRun:
    response = client.post(reverse("video-finish", kwargs={"slug": video.project.slug, "video_id": video.id}))
    assert response.status_code == 302
    run = AutoMaskletRun.objects.filter(video=video).first()
    assert (run.kind, run.trigger, run.status, run.frame_index) == ("missed", "finished", "queued", 0)
    AutoMaskletRun.objects.filter(pk=run.pk).update(points_per_side=TEST_GRID)
    run = execute(run.pk)
    assert run.status == AutoMaskletRun.Status.DONE, run.error
    return run


def test_marking_a_video_done_offers_the_object_left_out_and_a_dismissed_one_is_not_offered_again(
        team, synthetic_video):
    video, frames = synthetic_video(team.project, spec=PRESETS["tiny"])
    truth = frames.masks(0)
    _annotate(video, team.annotator, {oid: m for oid, m in truth.items() if oid != 2})
    annotator = Client()
    annotator.force_login(team.annotator)

    run = _finish_and_check(annotator, video)
    assert VideoAssignment.objects.get(video=video).done_by == team.annotator
    suggestions = list(MissedObject.objects.filter(video=video))
    assert len(suggestions) == run.created_count == 1, run.stats
    only = suggestions[0]
    mask = decode_rle({"size": [video.height, video.width], "counts": only.rle_counts}).astype(bool)
    assert generate.iou(mask, truth[2]) >= missed.MATCH_IOU
    assert (only.status, only.frame_index, only.run_id) == ("pending", 0, run.pk) and 0 < only.score <= 1
    assert Masklet.objects.filter(video=video).count() == 2  # a suggestion is no masklet until accepted

    missed_objects.dismiss(only, team.reviewer)
    again = _finish_and_check(annotator, video)
    assert again.created_count == 0, again.stats
    assert list(MissedObject.objects.filter(video=video).values_list("status", flat=True)) == ["dismissed"]


def test_the_check_finds_the_objects_left_out_of_a_small_synthetic_video():
    """The bench's measurement (``bench/bench_exhaustivity.py``) on one small case."""
    video = SyntheticFrames(PRESETS["tiny"], stride=4)
    result = missed.measure(build_segmenter("classical"), video, video.masks(0), [2], per_side=TEST_GRID)
    assert (result.left_out, result.found, result.false) == (1, 1, 0)
    assert result.recall == 1.0


def _suggestion(video, frame: int = 0) -> MissedObject:
    mask = np.zeros((video.height, video.width), bool)
    mask[20:60, 30:90] = True
    rle = encode_rle(mask)
    return MissedObject.objects.create(video=video, frame_index=frame, rle_counts=rle["counts"], area=rle_area(rle),
                                       bbox=rle_bbox(rle), score=0.93)


def test_accepting_makes_a_draft_for_the_annotator_who_finished_the_video(team, synthetic_video):
    video, _ = synthetic_video(team.project, spec=PRESETS["tiny"])
    finish_video(video, team.annotator)
    suggestion = _suggestion(video)
    with pytest.raises(EditRefused) as refused:
        missed_objects.accept(suggestion, team.annotator)
    assert refused.value.code == "forbidden"

    masklet = missed_objects.accept(suggestion, team.reviewer)
    assert (masklet.status, masklet.type, masklet.assignee) == ("draft", "manual", team.annotator)
    frame = MaskFrame.objects.get(masklet=masklet)
    assert (frame.frame_index, frame.rle_counts, frame.source) == (0, suggestion.rle_counts, "human")
    suggestion.refresh_from_db()
    assert (suggestion.status, suggestion.masklet, suggestion.decided_by) == ("accepted", masklet, team.reviewer)
    assert VideoAssignment.objects.get(video=video).done_at is None  # back in the annotators' queue
    item = next_work(team.project, team.annotator)
    assert (item.reason, item.masklet) == ("draft", masklet)
    for decide in (missed_objects.accept, missed_objects.dismiss):
        with pytest.raises(EditRefused) as refused:
            decide(suggestion, team.reviewer)
        assert refused.value.code == "read_only"


def test_unexplained_drops_proposals_overlapping_annotated_or_dismissed_masks():
    def box(y0, y1, x0, x1):
        mask = np.zeros((60, 80), bool)
        mask[y0:y1, x0:x1] = True
        return generate.Proposal(mask, 0.9)

    person = box(10, 50, 10, 30).mask
    shirt = box(10, 25, 10, 30)  # a part of an annotated object: low IoU, but no missed object
    touching = box(10, 50, 28, 45)  # shares a thin strip with it
    dismissed_one = box(40, 55, 50, 75)
    kept, stats = missed.unexplained([shirt, touching, dismissed_one], [person], [box(42, 55, 50, 75).mask])
    assert generate.iou(shirt.mask, person) < 0.5
    assert kept == [touching]
    assert stats == {"annotated": 1, "dismissed": 1, "missed": 1}


def test_reviewers_see_and_decide_suggestions_on_the_video_page(team, synthetic_video):
    video, _ = synthetic_video(team.project, spec=PRESETS["tiny"])
    suggestion = _suggestion(video)
    page = reverse("video-detail", kwargs={"slug": team.project.slug, "video_id": video.id})
    image = reverse("missed-object-image", kwargs={"slug": team.project.slug, "video_id": video.id,
                                                   "missed_id": suggestion.id})
    annotator, reviewer = Client(), Client()
    annotator.force_login(team.annotator)
    reviewer.force_login(team.reviewer)
    assert 'id="missed"' not in annotator.get(page).content.decode()
    html = reviewer.get(page).content.decode()
    assert image in html and "Accept: annotate it" in html
    response = reviewer.get(image)
    assert response["Content-Type"] == "image/jpeg"
    picture = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape[:2] == (video.height, video.width)
    decide = reverse("missed-object", kwargs={"slug": team.project.slug, "video_id": video.id,
                                              "missed_id": suggestion.id})
    assert reviewer.post(decide, {"action": "nonsense"}).status_code == 302
    suggestion.refresh_from_db()
    assert suggestion.status == "pending"
    response = reviewer.post(decide, {"action": "accept"}, follow=True)
    assert "added as a draft to annotate" in response.content.decode()
    suggestion.refresh_from_db()
    assert suggestion.status == "accepted"
    other = reverse("missed-object", kwargs={"slug": team.project.slug, "video_id": video.id + 1000,
                                             "missed_id": suggestion.id})
    assert reviewer.post(other, {"action": "dismiss"}).status_code == 404
