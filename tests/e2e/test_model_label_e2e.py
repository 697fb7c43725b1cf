"""The classical fallback is labelled as such, with a link to getting SAM 2, on the annotation page
and the models dashboard; the dashboard downloads SAM 2.1 tiny with live progress (from a real HTTP
server on 127.0.0.1 serving a random-weight checkpoint in Meta's format, named as a mirror of
Meta's), checks and promotes it, and then neither page calls what serves a fallback."""

from __future__ import annotations

import re
import threading

import pytest

from loop.loop_demo import random_checkpoint
from tests.checkpoint_server import checkpoint_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SLUG = "demo"
PASSWORD = "e2e-model-label-password"
SEED = f"""
from django.contrib.auth import get_user_model
from django.core.management import call_command
from annotator.models import Membership, Project, Role, Video
call_command("seed_demo", videos=1, verbosity=0)
boss = get_user_model().objects.create_user("boss", password={PASSWORD!r})
project = Project.objects.get(slug={SLUG!r})
Membership.objects.create(project=project, user=boss, role=Role.ADMIN)
print(Video.objects.filter(project=project).order_by("name").first().id)
"""
TINY = "/mirror/sam2.1_hiera_tiny.pt"


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    checkpoint = random_checkpoint("sam2.1_hiera_t", 64, 0, tmp_path_factory.mktemp("ckpt") / "tiny.pt")
    with checkpoint_server() as httpd:
        httpd.files[TINY] = checkpoint.read_bytes()
        httpd.gates[TINY] = threading.Event()  # half the file, then wait until the test saw the progress
        yield httpd


@pytest.fixture(scope="module")
def label_server(masklet_server_factory, mirror):
    server = masklet_server_factory("model-label", {
        "MASKLET_CHECKPOINT_MIRROR": mirror.url("/mirror/"), "MASKLET_SAM2_IMAGE_SIZE": "64",
        "MASKLET_LOOP_TICK_S": "0"})
    return server, int(server.shell(SEED).strip().splitlines()[-1])


def open_annotation(page, video_id: int) -> None:
    page.goto(f"/projects/{SLUG}/videos/{video_id}/annotate/")
    page.wait_for_function("document.getElementById('frame-canvas').dataset.connection === 'connected'")


def test_the_fallback_is_labelled_until_the_dashboard_downloads_sam2(sign_in, label_server, mirror, artifacts_dir):
    server, video_id = label_server
    context, page = sign_in(server, "boss", PASSWORD)

    open_annotation(page, video_id)
    assert page.inner_text("#status-model") == "classical (OpenCV)"
    note = page.locator("#status-fallback")
    assert note.is_visible() and "low-quality fallback" in note.inner_text()
    help_url = note.locator("a").get_attribute("href")
    assert help_url == "/help/sam2/"
    page.screenshot(path=str(artifacts_dir / "model-label-annotate-fallback.png"))

    page.goto(help_url)
    assert "fetch_model sam2.1_hiera_tiny --promote" in page.inner_text("main, body")

    page.goto(f"/projects/{SLUG}/models/")
    page.wait_for_function("document.getElementById('dashboard').dataset.live === '1'")
    dashboard_note = page.locator("[data-fallback-note]")
    assert dashboard_note.is_visible() and dashboard_note.locator("a").get_attribute("href") == "/help/sam2/"
    page.get_by_role("button", name="Download SAM 2.1 tiny (≈150 MB)").click()
    running = page.locator(".download-item[data-status=running]")
    running.locator("progress").wait_for()
    page.wait_for_function("document.querySelector('.download-item progress').value > 0")
    assert re.search(r"SAM 2\.1 tiny \(≈150 MB\): running — [\d.]+ MB of [\d.]+ MB", running.inner_text())
    assert page.get_by_role("button", name="Download SAM 2.1 tiny (≈150 MB)").is_disabled()
    page.screenshot(path=str(artifacts_dir / "model-label-download-progress.png"))
    mirror.gates[TINY].set()
    page.locator(".download-item[data-status=done]").wait_for(timeout=120_000)
    page.wait_for_function("document.getElementById('serving').textContent.startsWith("
                           "'sam2.1_hiera_tiny — SAM 2.1 hiera-t @64')")
    assert not dashboard_note.is_visible()
    page.screenshot(path=str(artifacts_dir / "model-label-download-done.png"))

    open_annotation(page, video_id)
    assert page.inner_text("#status-model").startswith("sam2.1_hiera_tiny — SAM 2.1 hiera-t @64")
    assert not page.locator("#status-fallback").is_visible()
    context.close()
