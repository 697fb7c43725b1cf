"""A person uploads a video in the browser and looks at its frames (real server, real Chromium).

Log in, open the project, upload a small generated mp4, watch the upload bar reach 100 % and
the status become ready (pushed over the WebSocket), open the video and step through frames.
A file that is not a video ends failed with its reason in plain words.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.e2e

USERNAME, PASSWORD = "annie", "e2e-password-annie"
SLUG = "street-scenes"


def make_mp4(path: Path, frames: int = 48, fps: float = 24.0, size: tuple[int, int] = (160, 120)) -> Path:
    """Two seconds of a square moving over a gradient (mp4v): 12 annotated frames at 6 fps."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    gradient = np.tile(np.linspace(30, 200, size[0], dtype=np.uint8), (size[1], 1))
    for index in range(frames):
        frame = cv2.merge([gradient, np.flipud(gradient), np.full_like(gradient, 90)])
        cv2.rectangle(frame, (index * 2, 30), (index * 2 + 30, 60), (0, 220, 255), -1)
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def annotator_account(masklet_server) -> None:
    masklet_server.shell(
        "from django.contrib.auth import get_user_model\n"
        "from annotator.models import Membership, Project, Role\n"
        f"user = get_user_model().objects.create_user({USERNAME!r}, password={PASSWORD!r})\n"
        f"project = Project.objects.create(name='Street scenes', slug={SLUG!r}, labels=['car', 'person'])\n"
        "Membership.objects.create(project=project, user=user, role=Role.ANNOTATOR)\n"
    )


def sign_in_and_open_project(page) -> None:
    page.goto("/login/")
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/$"))
    page.click("text=Street scenes")
    page.wait_for_url(re.compile(f"/projects/{SLUG}/$"))


def test_upload_watch_ingest_and_view_frames(page, annotator_account, tmp_path, artifacts_dir):
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.goto(f"/projects/{SLUG}/")
    assert "/login/?next=" in page.url  # signed out: sent to sign in first
    page.screenshot(path=str(artifacts_dir / "login.png"))
    sign_in_and_open_project(page)

    page.set_input_files("#id_file", str(make_mp4(tmp_path / "walk.mp4")))
    page.click("#upload-form button[type=submit]")

    page.wait_for_function("document.getElementById('upload-progress').value === 100")
    assert page.inner_text("#upload-percent").replace("\u00a0", " ") == "100 %"
    page.wait_for_function(
        "['ready', 'failed'].includes(document.getElementById('ingest-progress').dataset.status)", timeout=60_000
    )
    result = page.inner_text("#upload-result")
    assert result.startswith("Ready"), f"ingest did not finish ready: {result!r}"
    assert page.get_attribute("#ingest-progress", "value") == "100"
    assert page.inner_text("tr[data-video-id] [data-role=status]") == "Ready"
    assert any(url.endswith(f"/ws/projects/{SLUG}/videos/") for url in sockets), "status did not come over the socket"
    page.screenshot(path=str(artifacts_dir / "project.png"), full_page=True)

    page.click("#open-video")
    page.wait_for_url(re.compile(r"/videos/\d+/$"))
    page.wait_for_function("document.getElementById('frame-image').complete "
                           "&& document.getElementById('frame-image').naturalWidth === 160")
    assert page.inner_text("#frame-caption") == "Frame 00000 · 1 of 12"
    assert page.locator(".filmstrip .thumb").count() == 12
    page.click("#frame-next")
    page.wait_for_function("document.getElementById('frame-image').src.endsWith('/frames/4.jpg')")
    page.wait_for_function("document.getElementById('frame-image').naturalWidth === 160")
    assert page.inner_text("#frame-caption") == "Frame 00004 · 2 of 12"
    page.keyboard.press("ArrowRight")
    assert page.inner_text("#frame-caption") == "Frame 00008 · 3 of 12"
    page.screenshot(path=str(artifacts_dir / "video.png"), full_page=True)


def test_a_file_that_is_not_a_video_fails_with_its_reason(page, annotator_account, tmp_path, artifacts_dir):
    sign_in_and_open_project(page)
    fake = tmp_path / "notes.mp4"
    fake.write_text("meeting notes, definitely not a video\n" * 20)
    page.set_input_files("#id_file", str(fake))
    page.click("#upload-form button[type=submit]")
    page.wait_for_function("document.getElementById('ingest-progress').dataset.status === 'failed'", timeout=60_000)
    assert page.inner_text("#upload-result").startswith("Failed: not a video file")
    row = page.locator("tr[data-video-id]", has_text="notes")
    assert "not a video file" in row.inner_text()
    page.goto("/")
    page.screenshot(path=str(artifacts_dir / "project-list.png"), full_page=True)
    page.goto(f"/projects/{SLUG}/")
    assert not page.is_visible("#upload-status"), "the upload panel shows before anything was uploaded"
    assert "not a video file" in page.locator("tr[data-video-id]", has_text="notes").inner_text()
    page.screenshot(path=str(artifacts_dir / "project-failed.png"), full_page=True)
