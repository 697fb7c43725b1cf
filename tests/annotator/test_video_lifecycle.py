"""Videos after upload: the same file twice is noticed, a failed ingest is retried, a video is
deleted with everything made from it (exports stay), and the project page shows each video's progress."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotator.models import MaskFrame, Masklet, Review, Role, Video, VideoAssignment
from annotator.services.masks import MaskWrite, save_mask_frames
from annotator.services.videos import ingest_video, recover_lost_ingests, run_ingest
from segmentation.masks import encode_rle


@pytest.fixture(autouse=True)
def _isolated_files(isolated_files):
    """Every test here stores files: keep them in its own folder."""


@pytest.fixture
def team(make_user, make_project):
    boss, ann = make_user("boss"), make_user("ann")
    project = make_project("Street", slug="street", members={boss: Role.ADMIN, ann: Role.ANNOTATOR})
    return project, boss, ann


def _upload(client: Client, project, content: bytes, name: str = "walk.mp4", **extra):
    return client.post(reverse("api-video-list", args=[project.slug]),
                       {"file": SimpleUploadedFile(name, content), **extra})


def test_the_same_file_twice_is_refused_until_the_uploader_chooses_to_keep_both(team, tmp_path, make_mp4, settings):
    project, _, ann = team
    client = Client()
    client.force_login(ann)
    content = make_mp4(tmp_path / "w.mp4")
    first = _upload(client, project, content)
    assert first.status_code == 201
    again = _upload(client, project, content, name="copy.mp4")
    assert again.status_code == 409
    body = again.json()
    assert body["duplicate_of"] == {"id": first.json()["id"], "name": "walk"}
    assert "same as “walk”" in body["error"]["message"]
    assert Video.objects.count() == 1
    assert len(list((settings.MEDIA_ROOT / "videos").rglob("*.mp4"))) == 1  # the refused copy left no file
    kept = _upload(client, project, content, name="copy.mp4", allow_duplicate="1")
    assert kept.status_code == 201 and kept.json()["name"] == "copy"
    assert _upload(client, project, make_mp4(tmp_path / "other.mp4", frames=14), name="other.mp4").status_code == 201


def test_a_failed_ingest_is_retried_from_the_stored_file(team, tmp_path, make_mp4, django_capture_on_commit_callbacks):
    project, _, ann = team
    client = Client()
    client.force_login(ann)
    video = Video.objects.get(pk=_upload(client, project, make_mp4(tmp_path / "w.mp4")).json()["id"])
    assert recover_lost_ingests(queued_after=0) == [video.ingest_jobs.get().pk]  # its worker was lost
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = client.post(reverse("video-retry", args=[project.slug, video.id]), follow=True)
    assert "Ingest of walk started again" in response.content.decode()
    video.refresh_from_db()
    assert (video.status, video.failure_reason) == ("uploaded", "")
    assert len(queued) == 1  # the ingest is queued once the retry commits
    run_ingest(video.ingest_jobs.get(status="queued").pk)
    video.refresh_from_db()
    assert video.status == "ready"
    refused = client.post(reverse("video-retry", args=[project.slug, video.id]), follow=True)
    assert "Only a video whose ingest failed" in refused.content.decode()


def test_delete_takes_masklets_frames_and_file_but_not_exports(team, tmp_path, make_mp4, settings,
                                                                django_capture_on_commit_callbacks):
    project, boss, ann = team
    client = Client()
    client.force_login(boss)
    video = Video.objects.get(pk=_upload(client, project, make_mp4(tmp_path / "w.mp4")).json()["id"])
    ingest_video(video.id)
    video.refresh_from_db()
    masklet = Masklet.objects.create(video=video, object_id=1, assignee=ann)
    mask = np.zeros((video.height, video.width), bool)
    mask[2:9, 2:9] = True
    save_mask_frames(masklet, [MaskWrite(0, encode_rle(mask))], source="human", author=ann)
    Review.objects.create(masklet=masklet, reviewer=boss, verdict="satisfactory")
    export = settings.MEDIA_ROOT / "exports" / "street.zip"
    export.parent.mkdir(parents=True)
    export.write_bytes(b"PK")
    original, frames = video.original.path, video.frames_dir
    assert frames.is_dir()

    ann_client = Client()
    ann_client.force_login(ann)
    assert ann_client.post(reverse("video-delete", args=[project.slug, video.id])).status_code == 403
    assert ann_client.delete(reverse("api-video-detail", args=[project.slug, video.id])).status_code == 403

    page = client.get(reverse("video-delete", args=[project.slug, video.id])).content.decode()
    assert "1 masklet, 1 stored mask and 1 review" in page  # the confirmation says what goes
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("video-delete", args=[project.slug, video.id]), follow=True)
    assert "walk is deleted" in response.content.decode()
    assert not Video.objects.exists() and not Masklet.objects.exists() and not MaskFrame.objects.exists()
    assert not frames.exists() and not tmp_path.joinpath(original).exists()
    assert export.read_bytes() == b"PK"


def test_delete_is_refused_while_ingesting_and_through_the_api_when_gone(team, tmp_path, make_mp4):
    project, boss, _ = team
    client = Client()
    client.force_login(boss)
    video_id = _upload(client, project, make_mp4(tmp_path / "w.mp4")).json()["id"]
    refused = client.delete(reverse("api-video-detail", args=[project.slug, video_id]))
    assert refused.status_code == 409 and "being ingested" in refused.json()["error"]["message"]
    Video.objects.filter(pk=video_id).update(status=Video.Status.FAILED)
    deleted = client.delete(reverse("api-video-detail", args=[project.slug, video_id]))
    assert deleted.status_code == 200 and deleted.json() == {"deleted": video_id, "name": "walk"}
    assert client.delete(reverse("api-video-detail", args=[project.slug, video_id])).status_code == 404


def test_the_project_page_shows_each_videos_progress(team, django_assert_max_num_queries):
    from annotator import selectors

    project, boss, ann = team
    video = Video.objects.create(project=project, name="v", status=Video.Status.READY, frame_count=12, stride=4,
                                 width=8, height=6, annotated_frame_count=3)
    other = Video.objects.create(project=project, name="w", status=Video.Status.READY, frame_count=8, stride=4,
                                 width=8, height=6, annotated_frame_count=2)
    full, empty = np.ones((6, 8), bool), np.zeros((6, 8), bool)
    for object_id, status in ((1, "draft"), (2, "submitted"), (3, "submitted"), (4, "approved")):
        m = Masklet.objects.create(video=video, object_id=object_id, status=status)
        second = full if object_id == 1 else empty
        save_mask_frames(m, [MaskWrite(0, encode_rle(full)), MaskWrite(4, encode_rle(second)),
                             MaskWrite(8, encode_rle(empty))], source="model")
    VideoAssignment.objects.create(video=video, holder=ann, expires_at=timezone.now() + timezone.timedelta(minutes=5))
    VideoAssignment.objects.create(video=other, done_at=timezone.now(), done_by=ann)
    with django_assert_max_num_queries(3):
        rows = {v.name: v for v in selectors.videos_with_progress(project)}
    assert [(s, n) for s, _, n in rows["v"].progress_counts] == [("draft", 1), ("submitted", 2), ("approved", 1)]
    assert (rows["v"].masked_frames, rows["v"].holder, rows["v"].done) == (2, "ann", False)
    assert (rows["w"].masked_frames, rows["w"].holder, rows["w"].done) == (0, None, True)
    client = Client()
    client.force_login(boss)
    html = client.get(reverse("project-detail", args=[project.slug])).content.decode()
    assert "2 submitted" in html and "masks on 2 of 3 frames" in html and "ann is annotating" in html
    assert "done by ann" in html
