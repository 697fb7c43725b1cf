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

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
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


# -- what the team page and its JSON show (the same scripted log) ---------------------------------

#: Hand-computed from the log above. A (v1): ann1's 90 s + ann2's 8 s over 10 frames; clicks on
#: frames 0, 0, 4 (ann1) and 8 (ann2); edited frames 0, 4, 8; approved; reviews bad, good.
#: B (no version): ann2's 2 s over 5 frames; two clicks on frame 0; submitted; one bad review.
BY_VERSION = {
    "v1": {"interactions": 6, "clicks": 4, "clicked_frames": 3, "edited_frames": 3, "annotated_frames": 10,
           "active_seconds": 98.0, "masklets": 1, "masklets_done": 1, "reviews": 2, "rejections": 1,
           "active_seconds_per_frame": 9.8, "clicks_per_clicked_frame": 4 / 3, "edited_frame_share": 0.3,
           "masklets_per_hour": 3600 / 98, "rejection_rate": 0.5},
    "None": {"interactions": 2, "clicks": 2, "clicked_frames": 1, "edited_frames": 1, "annotated_frames": 5,
             "active_seconds": 2.0, "masklets": 1, "masklets_done": 1, "reviews": 1, "rejections": 1,
             "active_seconds_per_frame": 0.4, "clicks_per_clicked_frame": 2.0, "edited_frame_share": 0.2,
             "masklets_per_hour": 1800.0, "rejection_rate": 1.0},
}


@pytest.fixture
def admin_client(scripted, make_user, make_membership):
    """A signed-in admin of the scripted project (the team page and its JSON are theirs)."""
    boss = make_user("boss")
    make_membership(scripted[0], boss, Role.ADMIN)
    client = Client()
    client.force_login(boss)
    return client


def test_the_effort_api_matches_the_hand_computed_values(scripted, admin_client):
    project, v1 = scripted
    data = admin_client.get(reverse("api-effort", kwargs={"slug": project.slug})).json()
    assert data["active_gap_cap_seconds"] == 60.0
    assert set(data["model_versions"]) == {str(v1.pk), "None"}
    for key, expected in (("v1", str(v1.pk)), ("None", "None")):
        assert data["model_versions"][expected] == pytest.approx(BY_VERSION[key]), key
    assert data["project"] == pytest.approx({
        "interactions": 8, "clicks": 6, "clicked_frames": 4, "edited_frames": 4, "annotated_frames": 15,
        "active_seconds": 100.0, "masklets": 2, "masklets_done": 2, "reviews": 3, "rejections": 2,
        "active_seconds_per_frame": 100 / 15, "clicks_per_clicked_frame": 1.5, "edited_frame_share": 4 / 15,
        "masklets_per_hour": 72.0, "rejection_rate": 2 / 3})
    assert data["annotators"]["ann1"] == pytest.approx({
        "interactions": 5, "clicks": 3, "clicked_frames": 2, "edited_frames": 3, "annotated_frames": 10,
        "active_seconds": 90.0, "masklets": 1, "masklets_done": 1, "reviews": 2, "rejections": 1,
        "active_seconds_per_frame": 9.0, "clicks_per_clicked_frame": 1.5, "edited_frame_share": 0.3,
        "masklets_per_hour": 40.0, "rejection_rate": 0.5})
    assert data["annotators"]["ann2"]["active_seconds"] == 10.0 and data["annotators"]["ann2"]["masklets"] == 2


def test_the_team_page_charts_effort_per_model_version(scripted, admin_client):
    project, v1 = scripted
    html = admin_client.get(reverse("team", kwargs={"slug": project.slug})).content.decode()
    charts = html[html.index('id="version-charts"'):html.index('id="version-effort-table"')]
    titles = re.findall(r'<text x="0" y="14" class="chart-title">([^<]+)</text>', charts)
    assert titles == [f"{t}, by model version" for t in (
        "Active seconds per annotated frame", "Clicks per clicked frame", "% of frames edited",
        "Masklets per active hour", "Review rejection rate")]
    bars = re.findall(r'class="chart-bar"><title>([^<]+)</title>', charts)
    assert bars == [  # the fallback model first, then v1, in each chart
        "fallback model: 0.4 s", "v1: 9.8 s", "fallback model: 2.00", "v1: 1.33",
        "fallback model: 20.0 %", "v1: 30.0 %", "fallback model: 1800.0", "v1: 36.7",
        "fallback model: 100 %", "v1: 50 %"]
    table = html[html.index('id="version-effort-table"'):]
    row = re.search(rf'<tr data-version="{v1.pk}">(.*?)</tr>', table, re.S).group(1)
    assert re.findall(r'<td[^>]*>([^<]*)</td>', row) == ["v1", "1", "9.80", "1.33", "30 %", "36.7", "50 %"]
    assert '<tr data-version="none"><td>fallback model</td>' in table
