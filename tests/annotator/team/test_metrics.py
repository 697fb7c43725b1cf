"""Effort metrics on a scripted interaction log whose answers are worked out by hand below.

Video: 10 annotated frames. Masklet A (approved, reviews: unsatisfactory then satisfactory) has
masks on all 10 frames; masklet B (submitted, one unsatisfactory review) on 5.

    t (s)  who   masklet frame kind    gap counted
    0      ann1  A       0     point   0 (first)
    10     ann1  A       0     point   10
    25     ann1  A       4     point   15
    200    ann1  A       4     brush   60 (175 capped)
    205    ann1  A       8     box     5          ann1: 90 s
    50     ann2  B       0     point   0 (first)
    52     ann2  B       0     point   2
    60     ann2  A       8     point   8          ann2: 10 s (2 on B, 8 on A)

Model version v1 wrote 3 model revisions of A and v2 one: A belongs to v1; B has none (None).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotator import metrics
from annotator.models import MaskFrame, MaskFrameRevision, Masklet, Prompt, Review, Role, Video
from engine.models import ModelVersion

LOG = [  # (seconds, user, masklet, frame, kind)
    (0, "ann1", "A", 0, "point"), (10, "ann1", "A", 0, "point"), (25, "ann1", "A", 4, "point"),
    (200, "ann1", "A", 4, "brush"), (205, "ann1", "A", 8, "box"),
    (50, "ann2", "B", 0, "point"), (52, "ann2", "B", 0, "point"), (60, "ann2", "A", 8, "point"),
]


@pytest.fixture
def scripted(make_user, make_project):
    users = {name: make_user(name) for name in ("ann1", "ann2", "rev")}
    project = make_project(members={users["ann1"]: Role.ANNOTATOR, users["ann2"]: Role.ANNOTATOR,
                                    users["rev"]: Role.REVIEWER})
    video = Video.objects.create(project=project, name="v", status=Video.Status.READY, frame_count=40, stride=4,
                                 width=8, height=8, annotated_frame_count=10)
    masklets = {
        "A": Masklet.objects.create(video=video, object_id=1, status=Masklet.Status.APPROVED, assignee=users["ann1"]),
        "B": Masklet.objects.create(video=video, object_id=2, status=Masklet.Status.SUBMITTED,
                                    assignee=users["ann2"]),
    }
    for name, frames in (("A", 10), ("B", 5)):
        MaskFrame.objects.bulk_create(MaskFrame(masklet=masklets[name], frame_index=4 * i, rle_counts="", area=0,
                                                bbox=[0, 0, 0, 0], source="model") for i in range(frames))
    t0 = timezone.now() - timedelta(days=1)
    for seconds, user, masklet, frame, kind in LOG:
        prompt = Prompt.objects.create(masklet=masklets[masklet], frame_index=frame, kind=kind, payload={},
                                       author=users[user])
        Prompt.objects.filter(pk=prompt.pk).update(created_at=t0 + timedelta(seconds=seconds))
    for verdict in ("unsatisfactory", "satisfactory"):
        Review.objects.create(masklet=masklets["A"], reviewer=users["rev"], verdict=verdict)
    Review.objects.create(masklet=masklets["B"], reviewer=users["rev"], verdict="unsatisfactory")
    v1 = ModelVersion.objects.create(project=project, name="v1")
    v2 = ModelVersion.objects.create(project=project, name="v2")
    for revision, version in enumerate((v1, v1, v2, v1), start=1):
        MaskFrameRevision.objects.create(masklet=masklets["A"], frame_index=12, revision=revision, rle_counts="",
                                         area=0, bbox=[0, 0, 0, 0], source="model", model_version=version)
    return project, v1


def test_per_annotator(scripted):
    project, _ = scripted
    effort = metrics.effort_by_annotator(project)
    assert set(effort) == {"ann1", "ann2"}
    ann1, ann2 = effort["ann1"], effort["ann2"]
    assert ann1.active_seconds == 90
    assert ann1.active_seconds_per_frame == pytest.approx(9.0)
    assert (ann1.clicks, ann1.clicked_frames, ann1.clicks_per_clicked_frame) == (3, 2, 1.5)
    assert ann1.edited_frame_share == pytest.approx(0.3)
    assert ann1.masklets_per_hour == pytest.approx(40.0)  # 1 done masklet in 90 s
    assert ann1.rejection_rate == pytest.approx(0.5)
    assert ann2.active_seconds == 10
    assert ann2.active_seconds_per_frame == pytest.approx(10 / 15)
    assert ann2.clicks_per_clicked_frame == pytest.approx(1.5)
    assert ann2.edited_frame_share == pytest.approx(2 / 15)
    assert ann2.masklets_per_hour == pytest.approx(720.0)
    assert ann2.rejection_rate == pytest.approx(2 / 3)


def test_per_project(scripted):
    project, _ = scripted
    effort = metrics.project_effort(project)
    assert (effort.interactions, effort.active_seconds, effort.annotated_frames) == (8, 100, 15)
    assert effort.active_seconds_per_frame == pytest.approx(100 / 15)
    assert (effort.clicks, effort.clicked_frames) == (6, 4)
    assert effort.edited_frame_share == pytest.approx(4 / 15)  # frame 8 of A edited by both counts once
    assert effort.masklets_per_hour == pytest.approx(72.0)
    assert effort.rejection_rate == pytest.approx(2 / 3)
    assert effort.as_dict()["clicks_per_clicked_frame"] == pytest.approx(1.5)


def test_per_model_version(scripted):
    project, v1 = scripted
    by_version = metrics.effort_by_model_version(project)
    assert set(by_version) == {v1.pk, None}
    assert by_version[v1.pk].active_seconds == 98
    assert by_version[v1.pk].active_seconds_per_frame == pytest.approx(9.8)
    assert (by_version[v1.pk].clicks, by_version[v1.pk].clicked_frames) == (4, 3)
    assert by_version[v1.pk].rejection_rate == pytest.approx(0.5)
    assert by_version[None].active_seconds == 2
    assert by_version[None].clicks_per_clicked_frame == pytest.approx(2.0)
    assert metrics.effort_by_model_version(None)[v1.pk] == by_version[v1.pk]


def test_empty_project_has_no_ratios(make_project):
    effort = metrics.project_effort(make_project())
    assert effort.active_seconds_per_frame is None and effort.rejection_rate is None
    assert metrics.effort_by_annotator(make_project()) == {}
