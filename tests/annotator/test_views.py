"""The HTML pages: sign in, project list and creation, project and video pages, the frame view."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotator.models import Membership, Project, Role, Video
from annotator.services.projects import parse_labels


@pytest.fixture(autouse=True)
def _isolated_files(isolated_files):
    """Every test here stores files: keep them in its own folder."""


def ready_video(project: Project, name: str = "clip", frame_count: int = 10, stride: int = 4) -> Video:
    """A video as ingest leaves it: ready, with its annotated frames on disk."""
    video = Video.objects.create(project=project, name=name, status=Video.Status.READY, fps=24.0,
                                 frame_count=frame_count, stride=stride, width=32, height=24, duration=frame_count / 24,
                                 annotated_frame_count=len(range(0, frame_count, stride)), file_size=1234)
    video.frames_dir.mkdir(parents=True)
    for index in video.annotated_frame_indices():
        cv2.imwrite(str(video.frames_dir / f"{index:05d}.jpg"), np.full((24, 32, 3), index * 20, np.uint8))
    return video


def test_login_page_and_sign_in(client, make_user, password):
    make_user("alice")
    page = client.get(reverse("login"))
    assert page.status_code == 200
    assert b'name="username"' in page.content
    response = client.post(reverse("login"), {"username": "alice", "password": password})
    assert response.status_code == 302
    assert response["Location"] == reverse("project-list")
    client.post(reverse("logout"))
    wrong = client.post(reverse("login"), {"username": "alice", "password": "nope"})
    assert wrong.status_code == 200
    assert b"correct username and password" in wrong.content


def test_pages_redirect_signed_out_users_to_login(client, project):
    response = client.get(reverse("project-detail", args=[project.slug]))
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next=/projects/{project.slug}/"


def test_project_list_shows_only_member_projects(client, make_user, make_project):
    alice = make_user("alice")
    mine = make_project("Street scenes", members={alice: Role.REVIEWER})
    make_project("Hidden kitchen")
    client.force_login(alice)
    page = client.get(reverse("project-list")).content.decode()
    assert mine.name in page and "Reviewer" in page
    assert "Hidden kitchen" not in page
    assert "New project" not in page  # not staff

    client.force_login(make_user("root", superuser=True))
    page = client.get(reverse("project-list")).content.decode()
    assert "Street scenes" in page and "Hidden kitchen" in page


def test_staff_create_a_project_and_become_its_admin(client, make_user):
    staff = make_user("sam", staff=True)
    client.force_login(staff)
    assert client.get(reverse("project-create")).status_code == 200
    response = client.post(reverse("project-create"), {
        "name": "Kitchens", "slug": "kitchens", "annotation_fps": 6, "labels": "cup, knife\nplate\ncup",
    })
    assert response.status_code == 302
    project = Project.objects.get(slug="kitchens")
    assert response["Location"] == reverse("project-detail", args=["kitchens"])
    assert project.labels == ["cup", "knife", "plate"]
    assert project.created_by == staff
    assert Membership.objects.get(project=project, user=staff).role == Role.ADMIN

    again = client.post(reverse("project-create"), {"name": "Again", "slug": "kitchens", "annotation_fps": 6})
    assert again.status_code == 200
    assert b"already exists" in again.content
    bad_fps = client.post(reverse("project-create"), {"name": "Fast", "slug": "fast", "annotation_fps": 0})
    assert bad_fps.status_code == 200 and not Project.objects.filter(slug="fast").exists()


def test_non_staff_cannot_create_projects(client, make_user):
    client.force_login(make_user("alice"))
    assert client.post(reverse("project-create"), {"name": "X", "slug": "x", "annotation_fps": 6}).status_code == 403
    assert not Project.objects.filter(slug="x").exists()


def test_parse_labels():
    assert parse_labels(" cup ,knife\n\nplate, cup ") == ["cup", "knife", "plate"]
    assert parse_labels("") == []


def test_project_page_lists_videos_with_status_and_reasons(client, make_user, make_project):
    alice, rita = make_user("alice"), make_user("rita")
    project = make_project("Street", members={alice: Role.ANNOTATOR, rita: Role.REVIEWER})
    ready_video(project, "walk")
    Video.objects.create(project=project, name="broken", status=Video.Status.FAILED,
                         failure_reason="not a video file: the data is not in a known video container")
    Video.objects.create(project=project, name="busy", status=Video.Status.INGESTING, progress=0.42)

    client.force_login(alice)
    page = client.get(reverse("project-detail", args=[project.slug])).content.decode()
    assert "status-ready" in page and "status-failed" in page and "Ingesting 42" in page
    assert "not a video file: the data is not in a known video container" in page
    assert "3 <span" in page  # annotated frames of 'walk': 0, 4, 8
    assert 'id="upload-form"' in page and "upload.js" in page

    client.force_login(rita)
    page = client.get(reverse("project-detail", args=[project.slug])).content.decode()
    assert 'id="upload-form"' not in page  # reviewers do not upload


def test_upload_form_without_javascript(client, make_user, make_project, tmp_path, settings, make_mp4):
    alice = make_user("alice")
    project = make_project(members={alice: Role.ANNOTATOR})
    client.force_login(alice)
    data = make_mp4(tmp_path / "walk.mp4")
    response = client.post(reverse("video-upload", args=[project.slug]),
                           {"file": SimpleUploadedFile("walk.mp4", data, "video/mp4")}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("project-detail", args=[project.slug])
    video = Video.objects.get(project=project)
    assert (video.name, video.status, video.uploaded_by) == ("walk", Video.Status.UPLOADED, alice)
    assert b"Uploaded walk" in response.content

    settings.MAX_UPLOAD_BYTES = 100
    response = client.post(reverse("video-upload", args=[project.slug]),
                           {"file": SimpleUploadedFile("big.mp4", data, "video/mp4")}, follow=True)
    assert b"larger than the limit" in response.content
    assert Video.objects.filter(project=project).count() == 1


def test_video_page_shows_metadata_and_frame_viewer(client, make_user, make_project):
    alice = make_user("alice")
    project = make_project(members={alice: Role.REVIEWER})
    video = ready_video(project)
    client.force_login(alice)
    url = reverse("video-detail", args=[project.slug, video.id])

    page = client.get(url).content.decode()
    first = reverse("video-frame", args=[project.slug, video.id, 0])
    assert f'id="frame-image" src="{first}"' in page
    assert "Frame 00000 · 1 of 3" in page
    assert 'href="?frame=4"' in page  # next
    assert "32 × 24" in page and "24.00 fps" in page
    assert page.count('class="thumb') == 3

    page = client.get(url, {"frame": 8}).content.decode()
    assert "Frame 00008 · 3 of 3" in page
    for bad in ("5", "../../etc/passwd", "-4", "99999999999999999999"):
        assert "Frame 00000 · 1 of 3" in client.get(url, {"frame": bad}).content.decode(), bad


def test_video_page_of_a_failed_video_says_why(client, make_user, make_project):
    alice = make_user("alice")
    project = make_project(members={alice: Role.ANNOTATOR})
    video = Video.objects.create(project=project, name="bad", status=Video.Status.FAILED,
                                 failure_reason="the video has no frames")
    client.force_login(alice)
    page = client.get(reverse("video-detail", args=[project.slug, video.id])).content.decode()
    assert "Ingest failed: the video has no frames" in page
    assert "frame-image" not in page


def test_frame_view_serves_only_annotated_frames_of_the_projects_videos(client, make_user, make_project):
    alice = make_user("alice")
    project = make_project(members={alice: Role.ANNOTATOR})
    other = make_project(members={alice: Role.ANNOTATOR})
    video = ready_video(project)
    client.force_login(alice)

    response = client.get(reverse("video-frame", args=[project.slug, video.id, 4]))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert b"".join(response.streaming_content) == (video.frames_dir / "00004.jpg").read_bytes()

    for index in (1, 5, 12, 400):  # not on the stride, or past the end
        assert client.get(reverse("video-frame", args=[project.slug, video.id, index])).status_code == 404
    # A video id from another project is not found through this project, even for a member of both.
    assert client.get(reverse("video-frame", args=[other.slug, video.id, 0])).status_code == 404
    # Only integers reach the view: anything else does not even resolve.
    assert client.get(f"/projects/{project.slug}/videos/{video.id}/frames/..%2F..%2Fsecret.jpg").status_code == 404
    (video.frames_dir / "00008.jpg").unlink()
    assert client.get(reverse("video-frame", args=[project.slug, video.id, 8])).status_code == 404


def test_frames_of_a_video_that_is_not_ready_are_not_served(client, make_user, make_project):
    alice = make_user("alice")
    project = make_project(members={alice: Role.ANNOTATOR})
    video = ready_video(project)
    Video.objects.filter(pk=video.pk).update(status=Video.Status.INGESTING)
    client.force_login(alice)
    assert client.get(reverse("video-frame", args=[project.slug, video.id, 0])).status_code == 404


def test_error_pages_do_not_leak_and_explain(client, make_user, make_project):
    alice, rita = make_user("alice"), make_user("rita")
    project = make_project("Secret garden", members={rita: Role.REVIEWER})
    client.force_login(alice)
    hidden = client.get(reverse("project-detail", args=[project.slug]))
    assert hidden.status_code == 404
    assert b"Not found" in hidden.content and b"Secret garden" not in hidden.content

    client.force_login(rita)
    refused = client.post(reverse("video-upload", args=[project.slug]), {})
    assert refused.status_code == 403
    assert b"does not allow this (upload_video)" in refused.content


def test_page_without_csrf_token_gets_djangos_page(make_user, make_project):
    from django.test import Client

    alice = make_user("alice")
    project = make_project(members={alice: Role.ANNOTATOR})
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    response = browser.post(reverse("video-upload", args=[project.slug]), {})
    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/html")


def test_video_page_follows_ingest_until_final(client, make_user, make_project):
    alice = make_user("alice")
    project = make_project(members={alice: Role.ANNOTATOR})
    video = Video.objects.create(project=project, name="busy", status=Video.Status.INGESTING, progress=0.25)
    client.force_login(alice)
    url = reverse("video-detail", args=[project.slug, video.id])
    page = client.get(url).content.decode()
    assert f'data-status-url="{reverse("api-video-detail", args=[project.slug, video.id])}"' in page
    assert "ingesting, 25&nbsp;%" in page
    video.status = Video.Status.FAILED
    video.save()
    assert "data-status-url" not in client.get(url).content.decode()
