"""The datasets page in Chromium (issue 14 §6): the export's videos are picked from a searchable list
of the project's videos (the job gets exactly the ticked ones), and the chosen format stays chosen
after an export starts, after a reload, and when it was only chosen (this browser remembers it).
"""

from __future__ import annotations

import json
import time

import pytest

pytestmark = pytest.mark.e2e

SLUG = "sets"
PASSWORD = "e2e-datasets-password"
NAMES = ["beach", "kitchen", "park", "street-day", "street-night"]
SEED = f"""
from django.contrib.auth import get_user_model
from annotator.models import Membership, Project, Role
from tests.engine.conftest import add_synthetic_video
lead = get_user_model().objects.create_user("lead", password={PASSWORD!r})
project = Project.objects.create(name="Sets", slug={SLUG!r})
Membership.objects.create(project=project, user=lead, role=Role.ADMIN)
for seed, name in enumerate({NAMES!r}):
    video = add_synthetic_video(project, seed, "train")
    video.name = name
    video.save(update_fields=["name"])
"""
JOBS = f"""
import json
from annotator.models import DatasetJob
print(json.dumps([[j.format, j.options["filters"]["videos"], j.status]
                  for j in DatasetJob.objects.filter(project__slug={SLUG!r}).order_by("id")]))
"""


@pytest.fixture(scope="module")
def server(masklet_server_factory):
    server = masklet_server_factory("datasets")
    server.shell(SEED)
    return server


def _jobs(server) -> list:
    return json.loads(server.shell(JOBS).strip().splitlines()[-1])


def _shown(page) -> list[str]:
    return [text.strip() for text in page.locator("#video-options .video-option:visible").all_inner_texts()]


def test_the_lead_picks_videos_by_search_and_the_format_stays_chosen(server, sign_in, artifacts_dir):
    context, page = sign_in(server, "lead", PASSWORD)
    try:
        page.goto(f"/projects/{SLUG}/datasets/")
        assert _shown(page) == NAMES
        assert page.inner_text("#video-count").startswith("None ticked: every video")
        page.select_option("#export select[name=format]", "ytvis")

        # Search, tick; a ticked video stays in the list while the next search narrows it.
        page.fill("#video-search", "street")
        assert _shown(page) == ["street-day", "street-night"]
        page.check("#video-options .video-option:has-text('street-night') input")
        page.fill("#video-search", "par")
        assert _shown(page) == ["park", "street-night"]
        page.press("#video-search", "Enter")  # the only unticked match is ticked, the form is not sent
        assert page.input_value("#video-search") == ""
        assert page.inner_text("#video-count").startswith("2 ticked")
        page.screenshot(path=str(artifacts_dir / "datasets-picker.png"), full_page=True)
        assert _jobs(server) == []

        page.click("#export button[type=submit]")
        page.wait_for_selector("text=queued.")
        (job,) = _jobs(server)
        assert job[:2] == ["ytvis", ["park", "street-night"]]  # exactly the ticked videos
        assert page.input_value("#export select[name=format]") == "ytvis"  # kept after the export started
        page.reload()
        assert page.input_value("#export select[name=format]") == "ytvis"  # and after a reload

        # A format only chosen (nothing exported) is remembered by this browser across a reload.
        page.select_option("#export select[name=format]", "davis")
        page.reload()
        assert page.input_value("#export select[name=format]") == "davis"
        deadline = time.monotonic() + 60
        while _jobs(server)[0][2] in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(0.1)  # between looks (each a forked server shell, tens of milliseconds)
        assert _jobs(server)[0][2] == "done"
        page.reload()
        page.screenshot(path=str(artifacts_dir / "datasets.png"), full_page=True)
    finally:
        context.close()
