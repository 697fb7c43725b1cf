"""The annotation page's HTTP side: masklets and masks as JSON, the page itself, the Annotate link."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from django.test import Client
from django.urls import reverse

import annotator
from annotator.models import Review, Role, Video
from annotator.services import annotation
from segmentation.masks import encode_rle

pytestmark = pytest.mark.django_db

H, W = 24, 32


@pytest.fixture
def setup(make_user, make_project):
    ann, rev = make_user("ann"), make_user("rev")
    project = make_project(slug="streets", members={ann: Role.ANNOTATOR, rev: Role.REVIEWER}, labels=["car"])
    video = Video.objects.create(project=project, name="v", status=Video.Status.READY, frame_count=20, stride=4,
                                 height=H, width=W, fps=24)
    return project, video, ann, rev


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def square(x0: int, size: int) -> dict:
    mask = np.zeros((H, W), bool)
    mask[x0:x0 + size, x0:x0 + size] = True
    return encode_rle(mask)


def url(name: str, project, video) -> str:
    return reverse(name, kwargs={"slug": project.slug, "video_id": video.id})


def test_masklets_endpoint_shows_locks_as_the_viewer_sees_them_and_review_reasons(setup):
    project, video, ann, rev = setup
    editing = annotation.create_masklet(video, ann, label="car")
    rejected = annotation.create_masklet(video, ann)
    annotation.record_edit(rejected, ann, frame_index=0, kind="click", payload={"x": 1, "y": 1}, rle=square(0, 3),
                           session_id="s")
    annotation.submit_masklet(rejected, ann)
    Review.objects.create(masklet=rejected, reviewer=rev, verdict=Review.Verdict.UNSATISFACTORY, reason="leaks")
    type(rejected).objects.filter(pk=rejected.pk).update(status="rejected")

    as_ann = client_for(ann).get(url("api-video-masklets", project, video)).json()["masklets"]
    as_rev = client_for(rev).get(url("api-video-masklets", project, video)).json()["masklets"]
    assert [(m["object_id"], m["label"], m["status"], m["lock_holder"], m["locked_by_me"]) for m in as_ann] == [
        (editing.object_id, "car", "draft", "ann", True), (rejected.object_id, "", "rejected", None, False)]
    assert as_rev[0]["locked_by_me"] is False and as_rev[0]["lock_holder"] == "ann"
    assert as_ann[0]["lock_expires_at"] and as_ann[0]["review"] is None
    assert as_ann[1]["review"]["reason"] == "leaks" and as_ann[1]["review"]["reviewer"] == "rev"
    assert [m["assignee"] for m in as_rev] == ["ann", "ann"]  # whom a sent-back masklet goes back to
    assert set(as_ann[0]) == {"id", "object_id", "label", "type", "status", "lock_holder", "locked_by_me",
                              "lock_expires_at", "review", "assignee", "lowest_quality", "confident"}
    assert as_ann[0]["lowest_quality"] is None and as_ann[0]["confident"] is False  # no model frame scored yet


def test_masks_endpoint_returns_the_stored_masks_by_frame_range(setup):
    project, video, ann, _ = setup
    masklet = annotation.create_masklet(video, ann)
    annotation.record_edit(masklet, ann, frame_index=4, kind="click", payload={"x": 1, "y": 1}, rle=square(1, 3),
                           session_id="s")
    annotation.save_tracked(video, ann, [(0, {1: square(0, 2)}), (8, {1: square(2, 2)})])
    client = client_for(ann)
    body = client.get(url("api-video-masks", project, video)).json()
    assert body["size"] == [H, W]
    assert [(m["frame"], m["source"]) for m in body["masks"]] == [(0, "model"), (4, "human"), (8, "model")]
    assert body["masks"][1] == {"object_id": 1, "frame": 4, "counts": square(1, 3)["counts"], "source": "human",
                                "revision": 1, "area": 9, "quality": None}
    ranged = client.get(url("api-video-masks", project, video), {"start": "4", "end": "8"}).json()
    assert [m["frame"] for m in ranged["masks"]] == [4, 8]
    assert [m["frame"] for m in client.get(url("api-video-masks", project, video), {"start": 5}).json()["masks"]] \
        == [8]


def test_masks_endpoint_names_imported_masks_so_the_page_marks_them_accepted(setup):
    """Masks from a dataset import keep source ``imported`` through tracking and reach the page as
    such (the timeline marks them apart from the model's frames)."""
    from annotator.models import MaskSource
    from annotator.services.masks import MaskWrite, save_mask_frames

    project, video, ann, _ = setup
    masklet = annotation.create_masklet(video, ann)
    save_mask_frames(masklet, [MaskWrite(0, square(0, 4)), MaskWrite(8, square(2, 3))], source=MaskSource.IMPORTED)
    annotation.save_tracked(video, ann, [(0, {1: square(5, 2)}), (4, {1: square(1, 2)}), (8, {1: square(6, 2)})])
    masks = client_for(ann).get(url("api-video-masks", project, video)).json()["masks"]
    assert [(m["frame"], m["source"], m["counts"]) for m in masks] == [
        (0, "imported", square(0, 4)["counts"]), (4, "model", square(1, 2)["counts"]),
        (8, "imported", square(2, 3)["counts"])]


@pytest.mark.parametrize(
    ("query", "words"),
    [({"start": "abc"}, "'start' must be a frame number"), ({"end": "-4"}, "'end' must be 0 or more"),
     ({"start": "8", "end": "4"}, "'start' (8) is after 'end' (4)")],
    ids=["not-a-number", "negative", "reversed"],
)
def test_bad_frame_ranges_get_a_400_in_words(setup, query, words):
    project, video, ann, _ = setup
    response = client_for(ann).get(url("api-video-masks", project, video), query)
    assert response.status_code == 400
    assert words in response.json()["error"]["message"]


def test_videos_of_other_projects_are_not_found(setup, make_project):
    project, _, ann, _ = setup
    elsewhere = Video.objects.create(project=make_project(), name="x", status=Video.Status.READY, frame_count=4,
                                     stride=4, height=H, width=W)
    client = client_for(ann)
    for name in ("api-video-masklets", "api-video-masks"):
        response = client.get(reverse(name, kwargs={"slug": project.slug, "video_id": elsewhere.id}))
        assert response.status_code == 404 and "No such video" in response.json()["error"]["message"]
    assert client.get(url("video-annotate", project, elsewhere)).status_code == 404


def test_the_page_is_only_for_ready_videos_and_linked_from_them(setup):
    project, video, ann, _ = setup
    client = client_for(ann)
    assert url("video-annotate", project, video).encode() in client.get(url("video-detail", project, video)).content
    video.status = Video.Status.INGESTING
    video.save()
    assert b"annotate-link" not in client.get(url("video-detail", project, video)).content
    assert client.get(url("video-annotate", project, video)).status_code == 404


@pytest.mark.parametrize(("who", "can_edit"), [("ann", True), ("rev", False)])
def test_the_page_context(setup, who, can_edit):
    if not (Path(annotator.__file__).parent / "templates" / "annotator" / "annotate.html").exists():
        pytest.skip("annotate.html (the page's template) is not there yet")
    project, video, ann, rev = setup
    response = client_for({"ann": ann, "rev": rev}[who]).get(url("video-annotate", project, video))
    assert response.status_code == 200
    context = response.context
    assert context["video"] == video and context["project"] == project
    assert context["can_edit"] is can_edit
    assert context["ws_path"] == f"/ws/projects/streets/videos/{video.id}/annotate/"
    assert context["frames"] == [0, 4, 8, 12, 16]
    assert context["frame_url_template"].endswith("/0.jpg")
    assert context["frame_url_template"].replace("/0.jpg", "/8.jpg") == reverse(
        "video-frame", kwargs={"slug": "streets", "video_id": video.id, "frame_index": 8})
    assert context["masks_url"] == url("api-video-masks", project, video)
    assert context["labels"] == ["car"]
