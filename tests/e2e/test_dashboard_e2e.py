"""The admin retraining dashboard in Chromium: its charts drawn from real rows, promote and roll back.

The project is seeded through the real services: two random-weight tiny SAM 2 checkpoints
registered (and so loaded) by ``engine.registry``, v1 promoted; an evaluation of each saved
by ``engine.training.save_evaluation``; two finished runs with their loss curves (no training
here: the training tests run real ones); masklets made over three days, and a draft one that
was clicked and tracked with v1 (the effort per model version). The admin checks that every
chart has one series per version/run/quantity with the right number of points, promotes v2,
rolls back to v1, and sees the database and the page agree each time; an annotator of the
project is refused (403) and an outsider does not learn the project exists (404).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SLUG = "models"
PASSWORD = "e2e-dashboard-password"
SCREENSHOT = Path("/tmp/dashboard.png")
SEED = f"""
import json, tempfile
from datetime import timedelta
from pathlib import Path
from django.contrib.auth import get_user_model
from django.utils import timezone
from annotator.models import MaskFrameRevision, Masklet, Membership, Project, Role, Video
from annotator.services import annotation
from annotator.services.masks import MaskWrite, save_mask_frames
from engine import registry, training
from engine.loop_demo import random_checkpoint
from engine.models import TrainingRun
from segmentation.masks import encode_rle
import numpy as np

User = get_user_model()
people = {{name: User.objects.create_user(name, password={PASSWORD!r}) for name in ("boss", "ann", "out")}}
project = Project.objects.create(name="Model loop", slug={SLUG!r})
Membership.objects.create(project=project, user=people["boss"], role=Role.ADMIN)
Membership.objects.create(project=project, user=people["ann"], role=Role.ANNOTATOR)

folder = Path(tempfile.mkdtemp())
def register(name, seed, parent=None):
    checkpoint = random_checkpoint("sam2.1_hiera_t", 64, seed, folder / f"{{name}}.pt")
    return registry.register_version(project, name=name, checkpoint=checkpoint, config="sam2.1_hiera_t",
                                     image_size=64, user=people["boss"], parent=parent)
v1 = register("v1", 0)
v2 = register("v2", 1, parent=v1)
registry.promote(v1, people["boss"])
for version, jf_after, clicks in ((v1, [0.40, 0.52, 0.55], 6.0), (v2, [0.48, 0.61, 0.66], 4.5)):
    training.save_evaluation(version, {{"jf": jf_after[-1], "j": jf_after[-1] - 0.02, "f": jf_after[-1] + 0.02,
                                        "jf_after": jf_after, "clicks_to_target": clicks, "target_reached": 0.5,
                                        "target_seconds": 14.2, "num_objects": 3}})
now = timezone.now()
for produced, base, losses in ((v1, None, [2.4, 1.9, 1.6, 1.4, 1.3]), (v2, v1, [1.5, 1.2, 1.05, 0.95, 0.9])):
    TrainingRun.objects.create(project=project, status="succeeded", base_version=base, produced_version=produced,
                               loss_curve=[[i + 1, loss] for i, loss in enumerate(losses)], progress=1.0,
                               parameters={{"steps": 5}}, data_snapshot={{"masklet_count": 3, "frame_count": 9}},
                               started_at=now, finished_at=now, log="seeded\\n")

video = Video.objects.create(project=project, name="clip", status=Video.Status.READY, fps=24, frame_count=9, stride=3,
                             width=64, height=48, annotated_frame_count=3, split="train")
square = np.zeros((48, 64), bool)
square[10:30, 20:40] = True
for days_ago, kind, status in ((2, "manual", "approved"), (2, "manual", "approved"), (1, "auto", "submitted"),
                               (1, "manual", "approved")):
    masklet = Masklet.objects.create(video=video, object_id=Masklet.objects.filter(video=video).count() + 1,
                                     type=kind, status=status)
    save_mask_frames(masklet, [MaskWrite(f, encode_rle(square)) for f in (0, 3, 6)], source="human")
    then = now - timedelta(days=days_ago)
    Masklet.objects.filter(pk=masklet.pk).update(created_at=then, updated_at=then)
    MaskFrameRevision.objects.filter(masklet=masklet).update(created_at=then)
# Today: boss clicks a new object on two frames with v1 serving, and v1 tracks it to the third.
draft = annotation.create_masklet(video, people["boss"])
for frame, x in ((0, 25.0), (0, 30.0), (3, 28.0)):
    annotation.record_edit(draft, people["boss"], frame_index=frame, kind="click", session_id="seed",
                           payload={{"x": x, "y": 20.0, "positive": True}}, rle=encode_rle(square), model_version=v1)
annotation.save_tracked(video, people["boss"], [(6, {{draft.object_id: encode_rle(square)}})], model_version=v1)
for prompt, seconds in zip(draft.prompts.order_by("id"), (0, 4, 10)):  # 4 s and 6 s between the clicks
    type(prompt).objects.filter(pk=prompt.pk).update(created_at=now - timedelta(minutes=5) + timedelta(seconds=seconds))
print(json.dumps({{"v1": v1.pk, "v2": v2.pk}}))
"""
STATE = f"""
import json
from engine.models import ModelVersion, ModelVersionEvent
print(json.dumps({{
    "status": dict(ModelVersion.objects.filter(project__slug={SLUG!r}).values_list("name", "status")),
    "events": list(ModelVersionEvent.objects.filter(project__slug={SLUG!r}).order_by("id")
                   .values_list("action", "version__name", "actor__username")),
}}))
"""


@pytest.fixture(scope="module")
def dashboard_server(masklet_server_factory):
    server = masklet_server_factory("dashboard", {"MASKLET_LOOP_TICK_S": "0"})
    return server, json.loads(server.shell(SEED).strip().splitlines()[-1])


def _state(server) -> dict:
    return json.loads(server.shell(STATE).strip().splitlines()[-1])


def _chart(page, chart: str) -> dict:
    """What one chart's SVG holds: its series (name -> points drawn) and its bars (label -> value)."""
    return page.evaluate("""(id) => {
        const svg = document.querySelector(`#${id} svg`);
        if (!svg) return null;
        const paths = [...svg.querySelectorAll("path.series")];
        const points = [...svg.querySelectorAll("circle.point")];
        return {
            series: paths.map((p) => [p.dataset.series, p.getAttribute("d").split(/[ML]/).filter(Boolean).length]),
            points: points.length,
            bars: [...svg.querySelectorAll("rect.bar")].map((r) => [r.dataset.label, Number(r.dataset.value)]),
            segments: [...svg.querySelectorAll("rect.segment")].map((r) => Number(r.dataset.value)),
        };
    }""", chart)


def _serving(page) -> str:
    return page.inner_text("#serving")


def test_the_admin_compares_versions_promotes_and_rolls_back(sign_in, dashboard_server, artifacts_dir):
    server, ids = dashboard_server
    context, page = sign_in(server, "boss", PASSWORD)
    try:
        page.goto(f"/projects/{SLUG}/models/")
        page.wait_for_selector("#chart-jf svg")
        assert _serving(page).startswith("v1 — SAM 2.1 hiera-t @64")

        assert _chart(page, "chart-jf")["series"] == [["v1", 3], ["v2", 3]]  # J&F after 1..3 prompted frames
        assert _chart(page, "chart-clicks")["bars"] == [["v1", 6.0], ["v2", 4.5]]
        loss = _chart(page, "chart-loss")
        assert sorted(loss["series"]) == [[f"run {n}", 5] for n in sorted(_run_ids(server))] and loss["points"] == 10
        growth = _chart(page, "chart-growth")  # three days: two days ago, yesterday, today
        assert growth["series"] == [["manual masklets", 3], ["auto masklets", 3], ["approved masklets", 3],
                                    ["frames annotated", 3]]
        assert growth["points"] == 12
        assert sorted(_chart(page, "chart-status")["segments"]) == [1, 1, 3]  # approved 3, submitted 1, draft 1
        effort = _chart(page, "chart-effort")["bars"]
        assert len(effort) == 1 and effort[0][0] == "v1"
        effort_row = page.locator("#effort tbody tr").first.inner_text().split("\t")
        # 10 active seconds over 3 annotated frames, 3 clicks on 2 frames, 2 of 3 frames edited.
        assert effort_row[0] == "v1" and effort_row[1:5] == ["3.3", "1.50", "66.7 %", "3"]
        _screenshot(page, artifacts_dir)

        # Promote v2: the only candidate has the only Promote button.
        assert page.locator("#versions button", has_text="Promote").count() == 1
        page.click("#versions button:has-text('Promote')")
        page.wait_for_function("document.getElementById('serving').textContent.startsWith('v2')")
        state = _state(server)
        assert state["status"] == {"v1": "retired", "v2": "production"}
        assert state["events"][-1] == ["promoted", "v2", "boss"]
        rows = {r.split("\t")[0]: r.split("\t") for r in page.locator("#versions tbody tr").all_inner_texts()}
        assert rows["v2"][1] == "production" and rows["v2"][-1] == "serving" and rows["v1"][1] == "retired"
        assert "promoted" in page.locator("#events tbody tr").first.inner_text()

        # Roll back (after the confirmation): v1 serves again.
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#rollback")
        page.wait_for_function("document.getElementById('serving').textContent.startsWith('v1')")
        state = _state(server)
        assert state["status"] == {"v1": "production", "v2": "retired"}
        assert state["events"][-1] == ["rolled_back", "v1", "boss"]
        assert "rolled back" in page.locator("#events tbody tr").first.inner_text()
        assert page.locator("#action-error").is_hidden()
    finally:
        context.close()


def test_the_dashboard_is_for_project_admins_only(sign_in, dashboard_server):
    server, ids = dashboard_server
    before = _state(server)
    for username, status in (("ann", 403), ("out", 404)):
        context, page = sign_in(server, username, PASSWORD)
        try:
            assert page.goto(f"/projects/{SLUG}/models/").status == status
            assert page.request.get(f"/api/projects/{SLUG}/models/").status == status
            # A forged promote with a valid CSRF token is refused by the role check, not by CSRF.
            token = next(c["value"] for c in context.cookies() if c["name"] == "csrftoken")
            refused = page.request.post(f"/api/projects/{SLUG}/models/promote/", form={"version": ids["v2"]},
                                        headers={"X-CSRFToken": token, "Referer": server.url + "/"})
            assert refused.status == status
            assert ("does not allow" if status == 403 else "No such project") in refused.json()["error"]
        finally:
            context.close()
    assert _state(server) == before


def _run_ids(server) -> list[int]:
    out = server.shell(f"from engine.models import TrainingRun; print(list(TrainingRun.objects.filter("
                       f"project__slug={SLUG!r}).values_list('id', flat=True)))")
    return json.loads(out.strip().splitlines()[-1])


def _screenshot(page, artifacts_dir: Path) -> None:
    page.screenshot(path=str(artifacts_dir / "dashboard.png"), full_page=True)
    shutil.copy(artifacts_dir / "dashboard.png", SCREENSHOT)
