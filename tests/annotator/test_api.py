"""The JSON API as a script uses it (session + CSRF), its errors, and the live video-status socket."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from annotator.consumers import VideoStatusConsumer, notify_video_changed
from annotator.models import Role, Video
from annotator.routing import websocket_urlpatterns
from annotator.services.videos import ingest_video


@pytest.fixture(autouse=True)
def _isolated_files(isolated_files):
    """Every test here stores files: keep them in its own folder."""


@pytest.fixture
def team(make_user, make_project):
    alice, rita = make_user("alice"), make_user("rita")
    project = make_project("Street", slug="street", members={alice: Role.ANNOTATOR, rita: Role.REVIEWER},
                           labels=["car", "person"])
    return project, alice, rita


def test_a_script_signs_in_with_session_and_csrf_then_uploads(team, tmp_path, make_mp4, password):
    project, alice, _ = team
    script = Client(enforce_csrf_checks=True)
    state = script.get(reverse("api-session")).json()
    assert state["authenticated"] is False and state["csrf_token"]
    headers = {"HTTP_X_CSRFTOKEN": state["csrf_token"]}

    login = script.post(reverse("api-session"), {"username": "alice", "password": password},
                        content_type="application/json", **headers)
    assert login.status_code == 200 and login.json()["username"] == "alice"
    token = login.json()["csrf_token"]  # rotated on sign-in

    upload = {"file": SimpleUploadedFile("walk.mp4", make_mp4(tmp_path / "w.mp4"), "video/mp4")}
    refused = script.post(reverse("api-video-list", args=[project.slug]), upload)
    assert refused.status_code == 403  # no CSRF token
    assert refused.json()["error"]["message"].startswith("CSRF check failed")

    upload["file"].seek(0)
    created = script.post(reverse("api-video-list", args=[project.slug]), upload, HTTP_X_CSRFTOKEN=token)
    assert created.status_code == 201
    body = created.json()
    assert (body["name"], body["status"], body["progress"]) == ("walk", "uploaded", 0.0)

    out = script.delete(reverse("api-session"), HTTP_X_CSRFTOKEN=token)
    assert out.json()["authenticated"] is False
    assert script.get(reverse("api-project-list")).status_code == 401


def test_session_login_errors(team):
    client = Client()
    url = reverse("api-session")
    assert client.post(url, {"username": "alice", "password": "x"}, content_type="application/json").status_code == 401
    bad_json = client.post(url, "{nope", content_type="application/json")
    assert bad_json.status_code == 400 and "JSON" in bad_json.json()["error"]["message"]
    assert client.post(url, [1, 2], content_type="application/json").status_code == 400
    assert client.post(url, {"username": "alice"}, content_type="application/json").status_code == 400


def test_projects(client, team, make_project):
    project, alice, _ = team
    make_project("Hidden")
    client.force_login(alice)
    listed = client.get(reverse("api-project-list")).json()["projects"]
    assert [(p["slug"], p["role"], p["labels"]) for p in listed] == [("street", "annotator", ["car", "person"])]
    detail = client.get(reverse("api-project-detail", args=["street"])).json()
    assert detail["annotation_fps"] == 6 and detail["video_count"] == 0


def test_upload_errors_are_json(client, team, settings, tmp_path, make_mp4):
    project, alice, _ = team
    client.force_login(alice)
    url = reverse("api-video-list", args=[project.slug])
    data = make_mp4(tmp_path / "w.mp4")

    missing = client.post(url, {})
    assert missing.status_code == 400 and "'file'" in missing.json()["error"]["message"]
    bad_name = client.post(url, {"file": SimpleUploadedFile("w.mp4", data), "name": "../etc"})
    assert bad_name.status_code == 400 and "invalid video name" in bad_name.json()["error"]["message"]
    empty = client.post(url, {"file": SimpleUploadedFile("e.mp4", b"")})
    assert empty.status_code == 400 and "empty" in empty.json()["error"]["message"]
    settings.MAX_UPLOAD_BYTES = 100
    large = client.post(url, {"file": SimpleUploadedFile("w.mp4", data)})
    assert large.status_code == 413 and "larger than the limit" in large.json()["error"]["message"]
    assert not Video.objects.exists()

    wrong_method = client.put(url)
    assert wrong_method.status_code == 405 and wrong_method["Allow"] == "GET, POST, OPTIONS"
    assert "not allowed" in wrong_method.json()["error"]["message"]


def test_reviewers_cannot_upload(client, team, tmp_path, make_mp4):
    project, _, rita = team
    client.force_login(rita)
    response = client.post(reverse("api-video-list", args=[project.slug]),
                           {"file": SimpleUploadedFile("w.mp4", make_mp4(tmp_path / "w.mp4"))})
    assert response.status_code == 403 and "upload_video" in response.json()["error"]["message"]


def test_uploaded_video_goes_through_ingest_to_frames(client, team, tmp_path, make_mp4):
    project, alice, _ = team
    client.force_login(alice)
    created = client.post(reverse("api-video-list", args=[project.slug]),
                          {"file": SimpleUploadedFile("walk.mp4", make_mp4(tmp_path / "w.mp4", frames=12))}).json()
    # The test transaction never commits, so run the ingest the commit would have scheduled.
    ingest_video(created["id"])

    detail = client.get(reverse("api-video-detail", args=[project.slug, created["id"]])).json()
    assert detail["status"] == "ready" and detail["progress"] == 1.0 and detail["failure_reason"] == ""
    assert (detail["width"], detail["height"], detail["frame_count"], detail["stride"]) == (64, 48, 12, 4)
    assert detail["frame_indices"] == [0, 4, 8]
    listed = client.get(reverse("api-video-list", args=[project.slug])).json()["videos"]
    assert [v["id"] for v in listed] == [created["id"]]

    frame = client.get(reverse("api-video-frame", args=[project.slug, created["id"], 8]))
    assert frame.status_code == 200 and frame["Content-Type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(b"".join(frame.streaming_content), np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (48, 64, 3)
    missing = client.get(reverse("api-video-frame", args=[project.slug, created["id"], 3]))
    assert missing.status_code == 404 and "not an annotated frame" in missing.json()["error"]["message"]
    assert client.get(reverse("api-video-detail", args=[project.slug, 99999])).status_code == 404


def test_failed_ingest_reason_is_in_the_json(client, team):
    project, alice, _ = team
    client.force_login(alice)
    created = client.post(reverse("api-video-list", args=[project.slug]),
                          {"file": SimpleUploadedFile("notes.mp4", b"these are not video bytes" * 10)}).json()
    ingest_video(created["id"])
    detail = client.get(reverse("api-video-detail", args=[project.slug, created["id"]])).json()
    assert detail["status"] == "failed"
    assert detail["failure_reason"].startswith("not a video file")
    assert detail["frame_indices"] == []


@pytest.mark.django_db(transaction=True)
def test_status_socket_pushes_changes(team, monkeypatch):
    """A change is pushed at once when notified, and found by the poll when nobody notifies."""
    project, alice, _ = team
    video = Video.objects.create(project=project, name="walk", status=Video.Status.UPLOADED)
    monkeypatch.setattr(VideoStatusConsumer, "busy_interval", 0.2)
    monkeypatch.setattr(VideoStatusConsumer, "idle_interval", 30.0)

    @database_sync_to_async
    def change(**fields) -> None:
        Video.objects.filter(pk=video.pk).update(**fields)

    @database_sync_to_async
    def notify() -> None:
        notify_video_changed(Video.objects.get(pk=video.pk))

    async def run() -> list[dict]:
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/projects/{project.slug}/videos/")
        communicator.scope["user"] = alice
        assert (await communicator.connect(timeout=5))[0]
        seen = [await communicator.receive_json_from(timeout=5)]
        await change(status=Video.Status.INGESTING, progress=0.5)  # found by the busy poll
        seen.append(await communicator.receive_json_from(timeout=5))
        await change(status=Video.Status.READY, progress=1.0)
        seen.append(await communicator.receive_json_from(timeout=5))
        await change(split="val")  # now idle (30 s poll): only the nudge makes this arrive in time
        await notify()
        seen.append(await communicator.receive_json_from(timeout=5))
        await communicator.disconnect()
        return seen

    snapshot, ingesting, ready, nudged = async_to_sync(run)()
    assert snapshot["type"] == "snapshot" and snapshot["videos"][0]["status"] == "uploaded"
    assert (ingesting["video"]["status"], ingesting["video"]["progress"]) == ("ingesting", 0.5)
    assert ready["video"]["status"] == "ready"
    assert nudged["video"]["split"] == "val"
