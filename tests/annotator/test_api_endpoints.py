"""Every endpoint a team automates, through a token: its happy path and its bad inputs (4xx, the error shape,
nothing stored). Permissions per persona are ``test_permissions.py``; tokens and the schema ``test_api_tokens.py``."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from annotator.datasets.jobs import run_job
from annotator.models import DatasetJob, MaskFrameRevision, Masklet, Membership, Project, Prompt, Review, Role, Video
from annotator.services.tokens import issue_token
from annotator.services.videos import create_video_from_path, ingest_video
from engine.models import TrainingRun
from fixtures.synthetic import PRESETS, write_video
from segmentation.masks import decode_rle, encode_rle

pytestmark = pytest.mark.django_db


class Api:
    """A script holding one person's token."""

    def __init__(self, user):
        self.token = issue_token(user, "test")[1]
        self.client = Client()

    def __call__(self, method: str, url: str, body=None, *, multipart: bool = False):
        headers = {"Authorization": f"Bearer {self.token}"}
        if multipart:
            return self.client.post(url, body or {}, headers=headers)
        if body is None:
            return self.client.generic(method, url, headers=headers)
        return self.client.generic(method, url, json.dumps(body), content_type="application/json", headers=headers)


def refused(response, status: int, field: str | None = None, words: str = "") -> dict:
    assert response.status_code == status, response.content[:400]
    error = response.json()["error"]
    assert set(error) == {"code", "message", "field"} and error["message"], error
    if field is not None:
        assert error["field"] == field, error
    assert words in error["message"], error
    return error


@pytest.fixture
def team(make_user, make_project, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.FRAMES_ROOT = tmp_path / "frames"
    staff, ann, rev = make_user("boss", staff=True), make_user("ann"), make_user("rev")
    project = make_project("Street", slug="street", members={staff: Role.ADMIN, ann: Role.ANNOTATOR,
                                                             rev: Role.REVIEWER}, labels=["car", "person"])
    return project, Api(staff), Api(ann), Api(rev)


@pytest.fixture
def video(team, tmp_path):
    project = team[0]
    video = create_video_from_path(project, write_video(PRESETS["tiny"], tmp_path / "tiny.mp4"),
                                   schedule_ingest=False)
    return ingest_video(video.id)


def test_projects_create_edit_and_labels(team, make_user):
    _, boss, ann, _ = team
    created = boss("POST", reverse("api-project-list"), {"slug": "depot", "name": "Depot", "labels": ["bus", "van"],
                                                         "annotation_fps": 4})
    assert created.status_code == 201, created.content
    assert (created.json()["role"], created.json()["labels"], created.json()["annotation_fps"]) == (
        "admin", ["bus", "van"], 4)
    refused(boss("POST", reverse("api-project-list"), {"slug": "depot", "name": "Again"}), 409, "slug")
    refused(boss("POST", reverse("api-project-list"), {"slug": "no spaces", "name": "x"}), 400, "slug")
    refused(boss("POST", reverse("api-project-list"), {"slug": "x", "name": "x", "annotation_fps": 0}), 400,
            "annotation_fps")
    refused(ann("POST", reverse("api-project-list"), {"slug": "mine", "name": "Mine"}), 403, words="staff")
    assert not Project.objects.filter(slug__in=["mine", "x"]).exists()

    url = reverse("api-project-detail", args=["depot"])
    edited = boss("PATCH", url, {"name": "Bus depot", "labels": ["bus", "tram"]})
    assert edited.status_code == 200
    body = edited.json()
    assert (body["name"], body["labels"], body["retired_labels"]) == ("Bus depot", ["bus", "tram"], ["van"])
    assert boss("PATCH", url, {"labels": ["bus", "tram", "van"]}).json()["retired_labels"] == []  # offered again
    refused(boss("PATCH", url, {"labels": ["a,b"]}), 400, words="comma")
    refused(boss("PATCH", url, {"labels": ["bus", "bus"]}), 400, words="twice")
    refused(boss("PATCH", url, {"labels": "bus"}), 400, "labels")
    assert Project.objects.get(slug="depot").labels == ["bus", "tram", "van"]


def test_members_and_users(team, password):
    project, boss, ann, _ = team
    user = boss("POST", reverse("api-users"), {"username": "newbie", "email": "n@example.com",
                                               "password": "a long enough passphrase"})
    assert user.status_code == 201 and user.json()["invite"] is None and user.json()["has_password"]
    assert Client().login(username="newbie", password="a long enough passphrase")
    invited = boss("POST", reverse("api-users"), {"username": "later"})
    assert invited.status_code == 201 and "/invite/" in invited.json()["invite"]
    refused(boss("POST", reverse("api-users"), {"username": "newbie"}), 409, words="exists already")
    refused(boss("POST", reverse("api-users"), {"username": "weak", "password": "123"}), 400, words="Password")
    refused(boss("POST", reverse("api-users"), {"username": "x", "email": "not-an-address"}), 400, "email")
    refused(ann("POST", reverse("api-users"), {"username": "sneaky"}), 403)
    listed = boss("GET", reverse("api-users")).json()
    assert {"newbie", "later", "boss"} <= {u["username"] for u in listed["results"]}

    members = reverse("api-members", args=[project.slug])
    added = boss("POST", members, {"username": "newbie", "role": "reviewer"})
    assert added.status_code == 201 and added.json()["role"] == "reviewer"
    refused(boss("POST", members, {"username": "newbie", "role": "reviewer"}), 409, "username")
    refused(boss("POST", members, {"username": "ghost", "role": "reviewer"}), 400, "username")
    refused(boss("POST", members, {"username": "later", "role": "king"}), 400, "role")
    listed = ann("GET", members).json()
    assert listed["count"] == 4 and {m["username"] for m in listed["results"]} == {"boss", "ann", "rev", "newbie"}
    one = reverse("api-member-detail", args=[project.slug, "newbie"])
    assert boss("PATCH", one, {"role": "annotator"}).json()["role"] == "annotator"
    refused(boss("PATCH", reverse("api-member-detail", args=[project.slug, "boss"]), {"role": "annotator"}), 409,
            words="at least one admin")
    assert boss("DELETE", one).status_code == 200
    refused(boss("DELETE", one), 404)
    assert not Membership.objects.filter(project=project, user__username="newbie").exists()


def test_videos_upload_filter_retry_and_delete(team, tmp_path, make_mp4):
    project, boss, ann, rev = team
    url = reverse("api-video-list", args=[project.slug])
    content = make_mp4(tmp_path / "walk.mp4")
    uploaded = ann("POST", url, {"file": SimpleUploadedFile("walk.mp4", content)}, multipart=True)
    assert uploaded.status_code == 201 and uploaded.json()["status"] == "uploaded"
    again = ann("POST", url, {"file": SimpleUploadedFile("copy.mp4", content)}, multipart=True)
    assert refused(again, 409, "file")["code"] == "duplicate" and again.json()["duplicate_of"]["name"] == "walk"
    kept = ann("POST", url, {"file": SimpleUploadedFile("copy.mp4", content), "allow_duplicate": "true"},
               multipart=True)
    assert kept.status_code == 201
    refused(ann("POST", url, {}, multipart=True), 400, "file")
    refused(rev("POST", url, {"file": SimpleUploadedFile("r.mp4", content)}, multipart=True), 403)

    assert [v["name"] for v in ann("GET", url + "?status=uploaded").json()["videos"]] == ["copy", "walk"]
    assert ann("GET", url + "?status=ready").json()["videos"] == []
    refused(ann("GET", url + "?status=done"), 400, "status")

    video = Video.objects.get(name="walk")
    retry = reverse("api-video-retry", args=[project.slug, video.id])
    refused(ann("POST", retry), 409, words="Only a video whose ingest failed")
    Video.objects.filter(pk=video.pk).update(status=Video.Status.FAILED, failure_reason="worker lost")
    assert ann("POST", retry).status_code == 202 and Video.objects.get(pk=video.pk).status == "uploaded"
    Video.objects.filter(pk=video.pk).update(status=Video.Status.FAILED)
    assert boss("DELETE", reverse("api-video-detail", args=[project.slug, video.id])).status_code == 200
    refused(boss("GET", reverse("api-video-detail", args=[project.slug, video.id])), 404)


def _rle(video: Video, rows: slice) -> dict:
    mask = np.zeros((video.height, video.width), bool)
    mask[rows, 10:40] = True
    return encode_rle(mask)


def test_masks_are_written_as_a_persons_edit_with_history_then_submitted_and_reviewed(team, video):
    project, boss, ann, rev = team
    created = ann("POST", reverse("api-video-masklets", args=[project.slug, video.id]), {"label": "car"})
    assert created.status_code == 201 and created.json()["locked_by_me"]
    masklet_id = created.json()["id"]
    refused(ann("POST", reverse("api-video-masklets", args=[project.slug, video.id]), {"label": "boat"}), 400,
            words="not one of this project's labels")
    masks = reverse("api-masklet-masks", args=[project.slug, masklet_id])
    frames = video.annotated_frame_indices()[:2]
    first = ann("PUT", masks, {"frames": [{"frame_index": f, "rle": _rle(video, slice(5, 20))} for f in frames]})
    assert first.status_code == 200, first.content
    assert [(s["frame_index"], s["revision"]) for s in first.json()["saved"]] == [(frames[0], 1), (frames[1], 1)]
    second = ann("PUT", masks, {"frames": [{"frame_index": frames[0], "rle": _rle(video, slice(8, 30))}]})
    assert second.json()["saved"][0]["revision"] == 2
    history = list(MaskFrameRevision.objects.filter(masklet_id=masklet_id, frame_index=frames[0])
                   .values_list("revision", "source", "author__username"))
    assert history == [(1, "human", "ann"), (2, "human", "ann")]
    assert Prompt.objects.filter(masklet_id=masklet_id, kind="mask").count() == 3  # one per frame written

    read = ann("GET", masks).json()
    assert [f["frame_index"] for f in read["frames"]] == frames and read["size"] == [video.height, video.width]
    assert decode_rle(read["frames"][0]["rle"]).sum() == 22 * 30
    detail = ann("GET", reverse("api-masklet-detail", args=[project.slug, masklet_id])).json()
    assert (detail["label"], detail["status"], detail["frames"]) == ("car", "draft", frames)

    size = [video.height, video.width]
    for body, words in [
        ({"frames": []}, "frames"),
        ({"frames": [{"frame_index": 1, "rle": _rle(video, slice(5, 9))}]}, "not one of this video's annotated"),
        ({"frames": [{"frame_index": frames[0], "rle": {"size": [4, 4], "counts": "04"}}]}, "does not match"),
        ({"frames": [{"frame_index": frames[0], "rle": {"size": size, "counts": "@@@@not-rle"}}]}, "could not be read"),
        ({"frames": [{"frame_index": frames[0], "rle": _rle(video, slice(1, 2))}] * 2}, "twice"),
        ({"frames": [{"frame_index": -4, "rle": _rle(video, slice(1, 2))}]}, "frame_index"),
        ([1, 2], "JSON object"),
    ]:
        refused(ann("PUT", masks, body), 400, words=words)
    assert MaskFrameRevision.objects.filter(masklet_id=masklet_id).count() == 3  # refusals stored nothing
    refused(boss("PUT", masks, {"frames": [{"frame_index": frames[0], "rle": _rle(video, slice(1, 3))}]}), 409,
            words="ann is editing")

    submit = reverse("api-masklet-submit", args=[project.slug, masklet_id])
    assert ann("POST", submit).json()["status"] == "submitted"
    refused(ann("PUT", masks, {"frames": [{"frame_index": frames[0], "rle": _rle(video, slice(1, 3))}]}), 409,
            words="submitted for review")

    review = reverse("api-masklet-review", args=[project.slug, masklet_id])
    refused(rev("POST", review, {"verdict": "send_back"}), 400, words="reason")
    refused(rev("POST", review, {"verdict": "maybe"}), 400, "verdict")
    approved = rev("POST", review, {"verdict": "approve", "comment": "clean"})
    assert approved.status_code == 201 and approved.json()["status"] == "approved"
    assert approved.json()["words"] == "approved"
    refused(rev("POST", review, {"verdict": "approve"}), 409, words="cannot be approved")
    listed = ann("GET", reverse("api-reviews", args=[project.slug]) + "?verdict=satisfactory").json()
    assert listed["count"] == 1 and listed["results"][0]["reviewer"] == "rev"
    refused(ann("GET", reverse("api-reviews", args=[project.slug]) + "?verdict=great"), 400, "verdict")


def test_the_annotator_cannot_review_their_own_masklet(team, video):
    project, boss, _, _ = team
    masklet = boss("POST", reverse("api-video-masklets", args=[project.slug, video.id]), {"label": ""}).json()
    boss("PUT", reverse("api-masklet-masks", args=[project.slug, masklet["id"]]),
         {"frames": [{"frame_index": 0, "rle": _rle(video, slice(5, 20))}]})
    boss("POST", reverse("api-masklet-submit", args=[project.slug, masklet["id"]]))
    own = boss("POST", reverse("api-masklet-review", args=[project.slug, masklet["id"]]), {"verdict": "approve"})
    refused(own, 403, words="someone else must review it")
    assert not Review.objects.exists() and Masklet.objects.get(pk=masklet["id"]).status == "submitted"


def test_dataset_export_runs_as_a_job_and_downloads(team, video):
    project, boss, ann, rev = team
    jobs = reverse("api-dataset-jobs", args=[project.slug])
    refused(rev("POST", jobs, {"kind": "export", "format": "parquet"}), 400, "format")
    refused(rev("POST", jobs, {"kind": "export", "format": "coco", "statuses": ["great"]}), 400, "statuses[0]")
    refused(rev("POST", jobs, {"kind": "export", "format": "coco", "videos": ["nope"]}), 400, words="nope")
    refused(rev("POST", jobs, {"kind": "import", "format": "coco"}), 403, words="admins")
    refused(boss("POST", jobs, {"kind": "import", "format": "coco"}, multipart=True), 400, "file")
    refused(ann("POST", jobs, {"kind": "export", "format": "coco"}), 403)
    assert not DatasetJob.objects.exists()

    started = rev("POST", jobs, {"kind": "export", "format": "coco", "statuses": [], "media": False})
    assert started.status_code == 202 and started.json()["status"] == "queued"
    job_id = started.json()["id"]
    download = reverse("api-dataset-job-download", args=[project.slug, job_id])
    refused(rev("GET", download), 404)
    run_job(job_id)  # the test transaction never commits: run what the commit would have queued
    detail = rev("GET", reverse("api-dataset-job-detail", args=[project.slug, job_id])).json()
    assert detail["status"] == "done" and detail["download"] == download
    zipped = rev("GET", download)
    assert zipped.status_code == 200 and zipped["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(b"".join(zipped.streaming_content))) as bundle:
        assert "annotations.json" in bundle.namelist()
    assert rev("GET", jobs).json()["jobs"][0]["id"] == job_id

    imported = boss("POST", jobs, {"kind": "import", "format": "coco", "status": "submitted",
                                   "file": SimpleUploadedFile("a.json", b'{"images": [], "annotations": []}')},
                    multipart=True)
    assert imported.status_code == 202 and imported.json()["kind"] == "import"


def test_models_and_training_runs(team, video, settings):
    project, boss, ann, rev = team
    runs = reverse("api-training-runs", args=[project.slug])
    assert boss("GET", runs).json()["count"] == 0
    refused(boss("POST", runs), 409, words="nothing to train on")
    refused(boss("POST", reverse("api-models", args=[project.slug]), {"path": "nope.pt"}, multipart=True), 400,
            "path")
    refused(boss("POST", reverse("api-model-promote", args=[project.slug, 12345])), 404)
    refused(ann("GET", runs), 403)

    masklet = ann("POST", reverse("api-video-masklets", args=[project.slug, video.id]), {"label": "car"}).json()
    ann("PUT", reverse("api-masklet-masks", args=[project.slug, masklet["id"]]),
        {"frames": [{"frame_index": f, "rle": _rle(video, slice(5, 20))} for f in video.annotated_frame_indices()]})
    ann("POST", reverse("api-masklet-submit", args=[project.slug, masklet["id"]]))
    rev("POST", reverse("api-masklet-review", args=[project.slug, masklet["id"]]), {"verdict": "approve"})
    started = boss("POST", runs)
    assert started.status_code == 202, started.content
    run_id = started.json()["run"]["id"]
    refused(boss("POST", runs), 409, words="already")
    assert boss("GET", reverse("api-training-run", args=[project.slug, run_id])).json()["status"] == "queued"
    cancelled = boss("POST", reverse("api-training-run-cancel", args=[project.slug, run_id]))
    assert cancelled.status_code == 200, cancelled.content
    assert TrainingRun.objects.get(pk=run_id).status == "cancelled"
    refused(boss("POST", reverse("api-training-run-cancel", args=[project.slug, run_id])), 409)
    assert boss("GET", runs).json()["results"][0]["id"] == run_id


def test_auto_masklet_runs_start_for_a_ready_video(team, video):
    project, boss, ann, _ = team
    url = reverse("api-auto-masklet-runs", args=[project.slug])
    refused(boss("POST", url, {"video": 99999}), 404, "video")
    refused(boss("POST", url, {"video": video.id, "frame": "first"}), 400, "frame")
    started = boss("POST", url, {"video": video.id, "frame": 0})
    assert started.status_code == 202 and started.json()["status"] == "queued"
    assert boss("GET", url).json()["runs"][0]["id"] == started.json()["id"]
    refused(ann("POST", url, {"video": video.id}), 403)
