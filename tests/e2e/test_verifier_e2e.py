"""The quality verifier on the models dashboard, in Chromium: an admin trains it from the reviews of
a project and sees its version, its held-out AUROC against the backend's, and that it now scores
new frames.

The project is seeded with 4 synthetic videos whose objects the classical backend tracked (every
model frame scored) and a simulated reviewer fixed where J&F < 0.7, then approved
(``fixtures.reviews``). The click goes through the real endpoint, the training runs as a job in a
child process of the embedded server, and the table updates from the dashboard socket's event.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.e2e

SLUG = "radar"
PASSWORD = "e2e-verifier-password"
SEED = f"""
from django.contrib.auth import get_user_model
from fixtures.reviews import reviewed_objects, write_reviewed_project
admin = get_user_model().objects.create_user("boss", password={PASSWORD!r})
write_reviewed_project(reviewed_objects(range(4)), {SLUG!r}, admin)
"""
STATE = f"""
import json
from engine.models import VerifierVersion
print(json.dumps(list(VerifierVersion.objects.filter(project__slug={SLUG!r}).values(
    "number", "status", "active", "auroc", "backend_auroc", "heldout_frames"))))
"""


def test_the_admin_trains_the_verifier_and_sees_it_beat_the_backend_score(sign_in, masklet_server_factory):
    server = masklet_server_factory("verifier", {"MASKLET_LOOP_TICK_S": "0"})
    server.shell(SEED)
    context, page = sign_in(server, "boss", PASSWORD)
    try:
        page.goto(f"/projects/{SLUG}/models/")
        assert "Not trained yet" in page.inner_text("#verifiers")
        page.wait_for_selector("#dashboard[data-live='1']")  # following the socket before the click
        page.click("#train-verifier")
        page.wait_for_selector("#verifiers tbody tr:has-text('done')", timeout=120_000)
        (version,) = json.loads(server.shell(STATE).strip().splitlines()[-1])
        assert version["status"] == "done" and version["active"] is True
        assert version["auroc"] > version["backend_auroc"] and version["heldout_frames"] > 0
        cells = page.locator("#verifiers tbody tr").first.inner_text().split("\t")
        assert cells[:5] == ["v1", "done", "yes", f"{version['auroc']:.3f}", f"{version['backend_auroc']:.3f}"]
        assert cells[6] == str(version["heldout_frames"])
    finally:
        context.close()
