"""The admin retraining dashboard in Chromium: its charts drawn from real rows, promote and roll back.

The project is seeded through the real services: two versions of one random-weight tiny SAM 2
checkpoint registered by ``loop.registry`` (without the load check, as a run registers what it
wrote: the last test registers through the form, which loads), v1 promoted; an evaluation of
each saved by ``loop.training.save_evaluation``; two finished runs with their loss curves (no training
here: the training tests run real ones); masklets made over three days, and a draft one that
was clicked and tracked with v1 (the effort per model version). The admin checks that every
chart has one series per version/run/quantity with the right number of points, promotes v2,
rolls back to v1, and sees the database and the page agree each time; an annotator of the
project is refused (403) and an outsider does not learn the project exists (404).

The last test is the admin's whole story with nothing seeded in the registry: a checkpoint
registered through the page's form, a run started by the schedule (the embedded beat) and
trained, evaluated and registered for real (tiny SAM 2 at 64 px, 4 steps, about a minute on
two CPU cores), followed live over the socket, promoted, and then used by a new annotation
session.
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
from loop import registry, training
from loop.loop_demo import random_checkpoint
from engine.models import TrainingRun
from segmentation.masks import encode_rle
import numpy as np

User = get_user_model()
people = {{name: User.objects.create_user(name, password={PASSWORD!r}) for name in ("boss", "ann", "out")}}
project = Project.objects.create(name="Model loop", slug={SLUG!r})
Membership.objects.create(project=project, user=people["boss"], role=Role.ADMIN)
Membership.objects.create(project=project, user=people["ann"], role=Role.ANNOTATOR)

folder = Path(tempfile.mkdtemp())
checkpoint = random_checkpoint("sam2.1_hiera_t", 64, 0, folder / "random.pt")
def register(name, parent=None):
    # check=False, as a training run registers what it has just written: the page never loads them, and
    # loading on registering (a child process each) is the last test's (the Register form) and test_registry's.
    return registry.register_version(project, name=name, checkpoint=checkpoint, config="sam2.1_hiera_t",
                                     image_size=64, user=people["boss"], parent=parent, check=False)
v1 = register("v1")
v2 = register("v2", parent=v1)
registry.promote(v1, people["boss"])
for version, jf_after, clicks in ((v1, [0.40, 0.52, 0.55], 6.0), (v2, [0.48, 0.61, 0.66], 4.5)):
    training.save_evaluation(version, {{"jf": jf_after[-1], "j": jf_after[-1] - 0.02, "f": jf_after[-1] + 0.02,
                                        "jf_after": jf_after, "clicks_to_target": clicks, "target_reached": 0.5,
                                        "target_seconds": 14.2, "num_objects": 3}})
now = timezone.now()
runs = []
for produced, base, losses in ((v1, None, [2.4, 1.9, 1.6, 1.4, 1.3]), (v2, v1, [1.5, 1.2, 1.05, 0.95, 0.9])):
    run = TrainingRun.objects.create(project=project, status="done", base_version=base, produced_version=produced,
                                     loss_curve=[[i + 1, loss] for i, loss in enumerate(losses)], progress=1.0,
                                     parameters={{"steps": 5}}, data_snapshot={{"masklet_count": 3, "frame_count": 9}},
                                     started_at=now, finished_at=now, log="seeded\\n")
    runs.append(run.pk)

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
print(json.dumps({{"v1": v1.pk, "v2": v2.pk, "runs": runs}}))
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
        assert sorted(loss["series"]) == [[f"run {n}", 5] for n in sorted(ids["runs"])] and loss["points"] == 10
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

        # Promote v2: the only candidate has the only Promote button that works; v1's says why not.
        assert page.locator("#versions button:enabled", has_text="Promote").count() == 1
        assert page.get_attribute("#versions tr:has-text('v1') button", "title") == "v1 is already in production"
        assert page.locator("#versions tr:has-text('v1') button").is_disabled()
        page.click("#versions button:enabled:has-text('Promote')")
        page.wait_for_function("document.getElementById('serving').textContent.startsWith('v2')")
        state = _state(server)
        assert state["status"] == {"v1": "retired", "v2": "production"}
        assert state["events"][-1] == ["promoted", "v2", "boss"]
        rows = {r.split("\t")[0]: r.split("\t") for r in page.locator("#versions tbody tr").all_inner_texts()}
        assert rows["v2"][1] == "production" and rows["v1"][1] == "retired"
        assert page.locator("#versions tr:has-text('v2') button").is_disabled()
        assert "promoted" in page.locator("#events tbody tr").first.inner_text()

        # Roll back (after the confirmation): v1 serves again.
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#rollback")
        page.wait_for_function("document.getElementById('serving').textContent.startsWith('v1')")
        state = _state(server)
        assert state["status"] == {"v1": "production", "v2": "retired"}
        assert state["events"][-1] == ["rolled_back", "v1", "boss"]
        assert "rolled back" in page.locator("#events tbody tr").first.inner_text()
        assert page.locator("#run-error").is_hidden()
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
            assert ("does not allow" if status == 403 else "No such project") in refused.json()["error"]["message"]
        finally:
            context.close()
    assert _state(server) == before


def _screenshot(page, artifacts_dir: Path) -> None:
    page.screenshot(path=str(artifacts_dir / "dashboard.png"), full_page=True)
    shutil.copy(artifacts_dir / "dashboard.png", SCREENSHOT)


# -- the admin's whole story with real parts: register, a scheduled run watched live, promote, serve -------

LOOP_SLUG = "loop"
LIVE_SCREENSHOT = Path("/tmp/dashboard-live.png")
#: A tiny run: tiny SAM 2 at 64 px, 4 steps of 2-frame clips, 1 click on 2 prompted frames per val object;
#: the embedded beat checks the schedule every second and every step is stored and broadcast.
LOOP_ENV = {
    "MASKLET_LOOP_TICK_S": "1", "MASKLET_LOOP_STEPS": "4", "MASKLET_LOOP_IMAGE_SIZE": "64",
    "MASKLET_LOOP_LR": "1e-3", "MASKLET_LOOP_CLIP_LENGTH": "2", "MASKLET_LOOP_PROGRESS_S": "0",
    "MASKLET_LOOP_EVAL_CLICKS": "1", "MASKLET_LOOP_EVAL_FRAMES": "2", "MASKLET_LOOP_EVAL_BUDGET": "2",
    "MASKLET_DEVICE": "cpu",
}
# Two train videos whose masklets wait for review, one val video with approved masklets (the held-out
# data evaluation needs), a schedule of "2 newly approved masklets, no wait" with auto-promotion off (the
# admin decides), and a random-weight tiny SAM 2 checkpoint on the server's disk for the Register form.
LOOP_SEED = f"""
import json
from pathlib import Path
from django.conf import settings
from django.contrib.auth import get_user_model
from annotator.models import Masklet, Membership, Project, Role
from loop import training
from loop.loop_demo import random_checkpoint
from tests.engine.conftest import add_synthetic_video

boss = get_user_model().objects.create_user("boss", password={PASSWORD!r})
project = Project.objects.create(name="Loop", slug={LOOP_SLUG!r})
Membership.objects.create(project=project, user=boss, role=Role.ADMIN)
train = [add_synthetic_video(project, 10 + i, "train", status=Masklet.Status.SUBMITTED) for i in range(2)]
add_synthetic_video(project, 50, "val")
knobs = training.loop_settings(project)
knobs.min_new_masklets, knobs.min_hours, knobs.auto_promote = 2, 0, False
knobs.save()
random_checkpoint("sam2.1_hiera_t", 64, 0, Path(settings.MODELS_ROOT) / "by-hand" / "tiny-random-64.pt")
print(json.dumps({{"checkpoint": "by-hand/tiny-random-64.pt", "video": train[0].pk}}))
"""
# A reviewer's verdicts through the real service: the train masklets become approved, which makes the
# project due for the periodic job.
APPROVE = f"""
from django.contrib.auth import get_user_model
from annotator.models import Masklet
from annotator.services.reviews import review_masklet
boss = get_user_model().objects.get(username="boss")
for masklet in Masklet.objects.filter(video__project__slug={LOOP_SLUG!r}, status="submitted"):
    review_masklet(masklet, boss, verdict="satisfactory")
"""
LOOP_STATE = f"""
import json
from annotator.models import MaskFrame
from engine.models import ModelVersion, TrainingRun
runs = list(TrainingRun.objects.filter(project__slug={LOOP_SLUG!r}).order_by("id").values(
    "id", "status", "trigger", "created_by", "base_version__name", "produced_version", "produced_version__parent__name",
    "loss_curve"))
print(json.dumps({{
    "versions": list(ModelVersion.objects.filter(project__slug={LOOP_SLUG!r}).order_by("id").values("id", "name",
                                                                                                 "status")),
    "runs": runs,
    "masks": list(MaskFrame.objects.filter(masklet__video__project__slug={LOOP_SLUG!r}, source="human",
                                           model_version__isnull=False).values_list("model_version_id", flat=True)),
}}))
"""
# Records what the live panel and the loss chart show after every change of the page (no reload:
# a reload would lose window.__live).
WATCH_LIVE = """() => {
    const live = window.__live = {progress: [], titles: [], logs: [], lossPoints: {}};
    const record = () => {
        const bar = document.querySelector("#run-live progress");
        const title = document.querySelector("#run-live p");
        if (bar && !live.progress.includes(Number(bar.value))) live.progress.push(Number(bar.value));
        if (title && bar && !live.titles.includes(title.textContent)) live.titles.push(title.textContent);
        if (!bar) return;
        for (const line of document.querySelector("#run-live pre.log").textContent.split("\\n")) {
            if (line && !live.logs.includes(line)) live.logs.push(line);
        }
        for (const path of document.querySelectorAll("#chart-loss path.series")) {
            const n = path.getAttribute("d").split(/[ML]/).filter(Boolean).length;
            live.lossPoints[path.dataset.series] = [...new Set([...(live.lossPoints[path.dataset.series] || []), n])];
        }
    };
    new MutationObserver(record).observe(document.getElementById("dashboard"), {childList: true, subtree: true,
                                                                               attributes: true});
}"""


@pytest.fixture(scope="module")
def loop_server(masklet_server_factory):
    server = masklet_server_factory("dashboard-loop", LOOP_ENV)
    return server, json.loads(server.shell(LOOP_SEED).strip().splitlines()[-1])


def _loop_state(server) -> dict:
    return json.loads(server.shell(LOOP_STATE).strip().splitlines()[-1])


def _rows(page, host: str) -> dict[str, list[str]]:
    return {r.split("\t")[0]: r.split("\t") for r in page.locator(f"#{host} tbody tr").all_inner_texts()}


def _assert_in_viewport(page, selector: str) -> None:
    box = page.locator(selector).bounding_box()
    view = page.viewport_size
    assert box is not None and box["height"] > 0, selector
    assert 0 <= box["y"] and box["y"] + box["height"] <= view["height"], (selector, box, view)
    assert 0 <= box["x"] and box["x"] + box["width"] <= view["width"], (selector, box, view)


def _register(page, name: str, path: str) -> None:
    page.fill("#reg-name", name)
    page.fill("#reg-path", path)
    page.fill("#reg-size", "64")
    page.click("#register button[type=submit]")


def test_the_admin_registers_watches_a_scheduled_run_live_and_promotes_what_new_sessions_use(
        sign_in, loop_server, artifacts_dir):
    """Issue 7's "done when", in one browser: register a checkpoint (a bad path is refused with the
    reason), promote it; approvals make the project due and the embedded beat starts a run by
    itself; the page follows its progress and loss over the socket, then shows the candidate's
    evaluation next to production's; the admin promotes it and a new annotation session uses it."""
    server, seeded = loop_server
    context, page = sign_in(server, "boss", PASSWORD)
    try:
        page.goto(f"/projects/{LOOP_SLUG}/models/")
        assert "classical" in _serving(page).lower()
        assert page.inner_text("#run-live") == "No run is queued or running."
        assert "after 2 newly approved masklets (now 0) and 0 h; auto-promote off" in page.inner_text("#loop-status")
        # Nothing registered, nothing running: roll back and cancel are disabled and say why on hover.
        assert page.locator("#rollback").is_disabled() and page.locator("#cancel-run").is_disabled()
        assert page.get_attribute("#rollback", "title") == ("nothing to roll back: no version of this project is "
                                                            "in production")
        assert page.get_attribute("#cancel-run", "title") == "no training run of this project is queued or running"
        page.evaluate(WATCH_LIVE)

        # 1. Register: a path outside the models folder is refused in words, under the path field and on
        # screen; the real one is loaded and listed.
        _register(page, "nothing-there", "/no/such/dir/sam2.pt")
        page.wait_for_selector("#register-error:not([hidden])")
        assert page.inner_text("#register-error") == (
            "not registered: a checkpoint path must name a .pt file inside the models folder "
            "(MASKLET_DATA_DIR/models/, e.g. uploads/my-model.pt); or upload the file")
        assert page.evaluate("document.getElementById('reg-path').nextElementSibling.id") == "register-error"
        assert page.get_attribute("#reg-path", "aria-invalid") == "true"
        _assert_in_viewport(page, "#register-error")
        page.screenshot(path=str(artifacts_dir / "models-register-error.png"))
        assert _loop_state(server)["versions"] == []
        _register(page, "tiny-random-64", seeded["checkpoint"])
        # Registering loads the checkpoint in a child process (torch and SAM 2 imported afresh): 19 s and
        # once more than the default 30 s on a loaded 2-core machine.
        page.wait_for_selector("#versions tbody tr", timeout=120_000)
        assert page.locator("#register-error").is_hidden() and page.get_attribute("#reg-path", "aria-invalid") is None
        row = _rows(page, "versions")["tiny-random-64"]
        assert row[1:3] == ["candidate", "sam2.1_hiera_t @64"] and row[3] == "–"  # not evaluated yet
        page.click("#versions tr:has-text('tiny-random-64') button:has-text('Promote')")
        page.wait_for_function("document.getElementById('serving').textContent.startsWith('tiny-random-64')")

        # 2. Reviews approve the train masklets: the schedule starts a run by itself (nobody clicks Start).
        server.shell(APPROVE)
        page.wait_for_function("document.querySelector('#run-live p').textContent.startsWith('Run ')",
                               timeout=30_000)

        # 3. Live: progress and loss arrive over the socket; a screenshot mid-run.
        page.wait_for_function("window.__live.titles.some((t) => t.includes('step 2/4'))", timeout=90_000)
        page.screenshot(path=str(artifacts_dir / "dashboard-live.png"), full_page=True)
        shutil.copy(artifacts_dir / "dashboard-live.png", LIVE_SCREENSHOT)
        page.wait_for_function("document.getElementById('run-live').textContent === 'No run is queued or running.'",
                               timeout=120_000)
        state = _loop_state(server)
        (run,) = state["runs"]
        assert (run["status"], run["trigger"], run["created_by"]) == ("done", "schedule", None)
        assert run["base_version__name"] == "tiny-random-64" == run["produced_version__parent__name"]
        assert [step for step, _ in run["loss_curve"]] == [1, 2, 3, 4]
        live = page.evaluate("window.__live")  # still there: the page was never reloaded
        assert len([p for p in live["progress"] if 0 < p < 1]) >= 2, live
        assert any("step 1/4" in t for t in live["titles"]) and any("evaluating" in t for t in live["titles"]), live
        # The log grew line by line while the run went on (each line as stored, sent over the socket).
        assert [text for text in ("step 1/4 loss", "step 4/4 loss", "checkpoint written", "evaluating on 1 val videos")
                if not any(text in line for line in live["logs"])] == [], live["logs"]
        assert len(live["lossPoints"].get(f"run {run['id']}", [])) >= 2, live  # points added while it ran
        candidate = f"run {run['id']}"
        rows = _rows(page, "versions")
        assert rows[candidate][1:3] == ["candidate", "sam2.1_hiera_t @64"] and rows[candidate][3] != "–"
        assert rows["tiny-random-64"][1] == "production" and rows["tiny-random-64"][3] != "–"  # measured too
        assert _rows(page, "runs")[str(run["id"])][1:3] == ["done", "schedule"]
        assert _chart(page, "chart-jf")["series"] == [["tiny-random-64", 2], [candidate, 2]]
        assert [label for label, _ in _chart(page, "chart-clicks")["bars"]] == ["tiny-random-64", candidate]
        assert _chart(page, "chart-loss")["series"] == [[candidate, 4]]

        # 4. Promote the candidate: a new annotation session serves it and its masks name it.
        page.click(f"#versions tr:has-text('{candidate}') button:has-text('Promote')")
        page.wait_for_function(f"document.getElementById('serving').textContent.startsWith({candidate!r})")
        assert page.locator("#run-error").is_hidden()
        versions = {v["name"]: v for v in _loop_state(server)["versions"]}
        assert versions[candidate]["status"] == "production" and versions["tiny-random-64"]["status"] == "retired"
        page.goto(f"/projects/{LOOP_SLUG}/videos/{seeded['video']}/annotate/")
        page.wait_for_function("document.getElementById('frame-canvas').dataset.connection === 'connected'")
        page.wait_for_function("document.getElementById('frame-canvas').dataset.frameReady === '1'")
        shown = page.get_attribute("#frame-canvas", "data-model")
        assert shown.startswith(f"{candidate} — SAM 2") and page.inner_text("#status-model") == shown
        assert page.get_attribute("#frame-canvas", "data-model-version") == str(versions[candidate]["id"])
        box = page.locator("#frame-canvas").bounding_box()
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.wait_for_function("(() => { const d = document.getElementById('frame-canvas').dataset;"
                               " return (d.lastEdit || '') !== '' && d.busy === '0'; })()")
        assert _loop_state(server)["masks"] == [versions[candidate]["id"]]
    finally:
        context.close()


SET_ROLE = f"""
from annotator.models import Membership
Membership.objects.filter(project__slug={SLUG!r}, user__username="boss").update(role="{{role}}")
"""
#: Counts the sockets the page opens (the real WebSocket still does all the work).
COUNT_SOCKETS = """
window.socketsOpened = 0;
const RealWebSocket = window.WebSocket;
window.WebSocket = class extends RealWebSocket {
  constructor(...args) { super(...args); window.socketsOpened += 1; }
};
"""


def test_a_socket_refused_with_4403_stops_and_says_why(sign_in, dashboard_server):
    """The models page loads for an admin, who is made an annotator before its script opens the socket: the
    server refuses the socket (4403). The page says why and never tries again, however long it stays open
    (its clock is run an hour ahead). The page used to retry every 3 s for as long as it was open."""
    server, _ = dashboard_server
    context, page = sign_in(server, "boss", PASSWORD)
    try:
        page.add_init_script(COUNT_SOCKETS)
        page.clock.install()

        def demote_first(route) -> None:
            server.shell(SET_ROLE.format(role="annotator"))
            route.continue_()

        page.route("**/dashboard.js", demote_first)
        page.goto(f"/projects/{SLUG}/models/")
        refusal = page.wait_for_selector("#socket-refused[role=alert]")
        assert "do not have access to this project" in refusal.inner_text()
        page.clock.run_for(3_600_000)  # every backoff timer there could be fires now
        assert page.evaluate("window.socketsOpened") == 1
        assert page.get_attribute("#dashboard", "data-live") == "0"
    finally:
        context.close()
        server.shell(SET_ROLE.format(role="admin"))
