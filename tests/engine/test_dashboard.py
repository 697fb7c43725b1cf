"""The retraining dashboard: the state it draws, its actions, and the live socket (admins only)."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from pydantic import ValidationError

from annotator.models import Membership, Project, Role
from engine.models import Evaluation, ModelDownload, ModelVersion, TrainingRun, VerifierVersion
from engine.protocol import DASHBOARD_MESSAGE
from loop import dashboard, downloads, fetch, registry, training, verifier
from loop.loop_demo import random_checkpoint
from loop.routing import websocket_urlpatterns

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """One random-weight tiny SAM 2 checkpoint at 64 px for the module (building and saving one takes
    seconds): tests that register it without the load check use it as is, the upload test sends its bytes."""
    return random_checkpoint("sam2.1_hiera_t", 64, 0, tmp_path_factory.mktemp("tiny") / "v.pt")


@pytest.fixture
def admin_client(loop_project):
    project = loop_project(train=2, val=1, slug="dash")
    admin = Membership.objects.get(project=project, role=Role.ADMIN).user
    client = Client()
    client.force_login(admin)
    return project, client, admin


def test_the_page_and_state_show_versions_runs_growth_and_effort(admin_client, tiny_checkpoint):
    project, client, admin = admin_client
    version = registry.register_version(project, name="meta tiny", checkpoint=tiny_checkpoint, config="tiny",
                                        image_size=64, user=admin, check=False)
    Evaluation.objects.create(model_version=version, j=0.5, f=0.6, j_and_f=0.55, clicks_to_target=4.0,
                              details={"jf_after": [0.4, 0.55], "num_objects": 1})
    TrainingRun.objects.create(project=project, status="done", loss_curve=[[1, 3.0], [2, 2.0]],
                               produced_version=version)
    page = client.get(reverse("models", args=[project.slug]))
    assert page.status_code == 200 and b"dashboard.js" in page.content and b"dashboard-state" in page.content
    state = client.get(reverse("api-models", args=[project.slug])).json()
    assert state["versions"][0]["evaluation"]["jf_after"] == [0.4, 0.55]
    assert state["runs"][0]["loss_curve"] == [[1, 3.0], [2, 2.0]]
    assert state["active_run"] is None
    assert {(r["status"], r["type"], r["count"]) for r in state["growth"]["by_status_type"]} == {
        ("approved", "manual", 3)}
    assert state["growth"]["cumulative"]["approved"][-1] == 3
    assert state["growth"]["cumulative"]["frames"][-1] == 9  # 3 videos x 3 annotated frames
    assert state["events"][0]["action"] == "registered" and state["events"][0]["actor"] == admin.username
    assert state["loop"]["new_masklets"] == 2
    assert state["effort"] == []  # imported masks: nobody clicked yet


def test_effort_per_model_version_has_table_1s_columns_from_the_interaction_log(admin_client, tiny_checkpoint):
    """Three clicks on two frames of a new object, then the version tracks its third frame: the
    object is that version's, and its effort is worked out by hand from the stored prompts."""
    from datetime import timedelta

    from django.utils import timezone

    from annotator.models import Prompt, Video
    from annotator.services import annotation
    from segmentation.masks import empty_rle

    project, client, admin = admin_client
    version = registry.register_version(project, name="v1", checkpoint=tiny_checkpoint, config="tiny", image_size=64,
                                        check=False)
    video = Video.objects.filter(project=project, split="train").order_by("id").first()
    masklet = annotation.create_masklet(video, admin)
    mask = empty_rle(video.height, video.width)
    for frame, x in ((0, 10.0), (0, 20.0), (3, 30.0)):
        annotation.record_edit(masklet, admin, frame_index=frame, kind="click", session_id="page",
                               payload={"x": x, "y": 10.0, "positive": True}, rle=mask, model_version=version)
    annotation.save_tracked(video, admin, [(6, {masklet.object_id: mask})], model_version=version)
    # Gaps of 10 s and of 100 s (a break: counted as the 60 s cap) between the three clicks.
    start = timezone.now() - timedelta(hours=1)
    for prompt, offset in zip(Prompt.objects.filter(masklet=masklet).order_by("id"), (0, 10, 110), strict=True):
        Prompt.objects.filter(pk=prompt.pk).update(created_at=start + timedelta(seconds=offset))

    effort = client.get(reverse("api-models", args=[project.slug])).json()["effort"]
    assert len(effort) == 1
    row = effort[0]
    assert (row["version"], row["name"]) == (version.pk, "v1")
    assert (row["clicks"], row["clicked_frames"], row["edited_frames"], row["annotated_frames"]) == (3, 2, 2, 3)
    assert row["active_seconds"] == pytest.approx(70.0)
    assert row["active_seconds_per_frame"] == pytest.approx(70.0 / 3)  # seconds per annotated frame
    assert row["clicks_per_clicked_frame"] == pytest.approx(1.5)
    assert row["edited_frame_share"] == pytest.approx(2 / 3)


def test_actions_start_cancel_promote_roll_back(admin_client, tiny_checkpoint, monkeypatch):
    monkeypatch.setattr("engine.dispatch.submit", lambda *a, **k: None)
    project, client, admin = admin_client
    start = client.post(reverse("api-models-start", args=[project.slug]))
    assert start.status_code == 202 and start.json()["run"]["status"] == "queued"
    again = client.post(reverse("api-models-start", args=[project.slug]))
    assert again.status_code == 409 and "already" in again.json()["error"]["message"]
    cancel = client.post(reverse("api-models-cancel", args=[project.slug]))
    assert cancel.status_code == 200 and cancel.json()["run"]["status"] == "cancelled"

    v1 = registry.register_version(project, name="v1", checkpoint=tiny_checkpoint, config="tiny", image_size=64,
                                   check=False)
    promoted = client.post(reverse("api-models-promote", args=[project.slug]), {"version": v1.pk})
    assert promoted.status_code == 200 and "v1" in promoted.json()["serving"]
    assert client.post(reverse("api-models-promote", args=[project.slug]), {"version": v1.pk}).status_code == 409
    rolled = client.post(reverse("api-models-rollback", args=[project.slug]))
    assert rolled.status_code == 200 and rolled.json()["restored"] is None
    assert ModelVersion.objects.get(pk=v1.pk).status == "retired"


@pytest.mark.parametrize(("rule", "subject", "possible", "reason"), [
    (dashboard.can_start_run, None, True, ""),
    (dashboard.can_start_run, TrainingRun(pk=7, status="running"), False,
     "run 7 is already running: one run at a time"),
    (dashboard.can_cancel_run, None, False, "no training run of this project is queued or running"),
    (dashboard.can_cancel_run, TrainingRun(pk=7, status="queued"), True, ""),
    (dashboard.can_cancel_run, TrainingRun(pk=7, status="running", cancel_requested=True), False,
     "run 7 is already being cancelled"),
    (dashboard.can_roll_back, None, False, "nothing to roll back: no version of this project is in production"),
    (dashboard.can_roll_back, ModelVersion(name="v1", status="production"), True, ""),
    (dashboard.can_promote, ModelVersion(name="v1", status="production"), False, "v1 is already in production"),
    (dashboard.can_promote, ModelVersion(name="v1", status="candidate"), True, ""),
    (dashboard.can_promote, ModelVersion(name="v1", status="retired"), True, ""),
])
def test_each_button_rule_says_whether_and_why_not(rule, subject, possible, reason):
    assert rule(subject) == dashboard.Allowed(possible, reason)


def test_a_checkpoint_cannot_be_downloaded_twice_at_once():
    tiny = fetch.OFFICIAL["sam2.1_hiera_tiny"]
    assert dashboard.can_download(tiny, None) == dashboard.YES
    busy = dashboard.can_download(tiny, ModelDownload(name=tiny.name, status="running"))
    assert busy == dashboard.Allowed(False, f"{tiny.label} is already being downloaded (running)")


def test_the_page_disables_what_the_endpoint_refuses_with_the_same_reason(admin_client, tiny_checkpoint,
                                                                            monkeypatch):
    """The state's rules (drawn as disabled buttons with a title) and the endpoints' refusals are one rule."""
    monkeypatch.setattr("engine.dispatch.submit", lambda *a, **k: None)
    project, client, _ = admin_client
    page = client.get(reverse("models", args=[project.slug])).content.decode()
    nothing = "nothing to roll back: no version of this project is in production"
    assert f'id="rollback" disabled title="{nothing}"' in page
    assert 'id="cancel-run" disabled title="no training run of this project is queued or running"' in page
    assert 'id="start-run">' in page  # possible: no title, not disabled
    rollback = client.post(reverse("api-models-rollback", args=[project.slug]))
    assert rollback.status_code == 409 and rollback.json()["error"]["message"] == nothing
    actions = client.get(reverse("api-models", args=[project.slug])).json()["actions"]
    assert actions["rollback"] == {"possible": False, "reason": nothing}
    assert set(actions["download"]) == set(fetch.OFFICIAL) and all(r["possible"] for r in actions["download"].values())
    tiny = fetch.OFFICIAL["sam2.1_hiera_tiny"]
    ModelDownload.objects.create(project=project, name=tiny.name, status="running")
    busy = f"{tiny.label} is already being downloaded (running)"
    assert f'data-name="{tiny.name}" disabled title="{busy}"' in client.get(
        reverse("models", args=[project.slug])).content.decode()
    again = client.post(reverse("api-models-download", args=[project.slug]), {"name": tiny.name})
    assert again.status_code == 409 and again.json()["error"]["message"] == busy

    run = client.post(reverse("api-models-start", args=[project.slug])).json()["run"]
    actions = client.get(reverse("api-models", args=[project.slug])).json()["actions"]
    busy = f"run {run['id']} is already queued: one run at a time"
    assert actions["start"] == {"possible": False, "reason": busy} and actions["cancel"]["possible"]
    refused = client.post(reverse("api-models-start", args=[project.slug]))
    assert refused.status_code == 409 and refused.json()["error"]["message"] == busy

    v1 = registry.register_version(project, name="v1", checkpoint=tiny_checkpoint, config="tiny", image_size=64,
                                   check=False)
    registry.promote(v1)
    actions = client.get(reverse("api-models", args=[project.slug])).json()["actions"]
    assert actions["promote"] == {str(v1.pk): {"possible": False, "reason": "v1 is already in production"}}
    assert actions["rollback"] == {"possible": True, "reason": ""}
    again = client.post(reverse("api-models-promote", args=[project.slug]), {"version": v1.pk})
    assert again.status_code == 409 and again.json()["error"]["message"] == "v1 is already in production"


def test_register_errors_name_the_field_to_blame_in_words(admin_client, tmp_path, settings):
    project, client, _ = admin_client
    url = reverse("api-models-register", args=[project.slug])
    empty = client.post(url, {"path": "", "config": "tiny"}).json()["error"]
    assert empty["field"] == "path" and "models folder" in empty["message"]
    size = client.post(url, {"path": "a.pt", "image_size": "big"}).json()["error"]
    assert (size["field"], size["message"]) == ("image_size",
                                                "the image size must be a whole number of pixels, e.g. 512")
    # A broken upload's refusal names "file": checked by the next test, on the same request (each one
    # starts a child process that loads the checkpoint).
    settings.MODELS_ROOT.mkdir(parents=True, exist_ok=True)
    (settings.MODELS_ROOT / "notes.pt").write_bytes(b"PK\x03\x04 not a checkpoint at all")
    garbage = client.post(url, {"path": "notes.pt", "config": "tiny", "image_size": 64}).json()["error"]
    assert garbage["field"] == "path" and garbage["message"].startswith("not registered: ")
    assert "Error" not in garbage["message"] and "Traceback" not in garbage["message"], garbage


def test_register_by_upload_refuses_a_broken_file_with_the_reason(admin_client, tiny_checkpoint, settings):
    project, client, _ = admin_client
    url = reverse("api-models-register", args=[project.slug])
    bad = client.post(url, {"file": SimpleUploadedFile("broken.pt", b"nope"), "config": "tiny", "image_size": 64})
    assert bad.status_code == 400 and "cannot read" in bad.json()["error"]["message"]
    assert bad.json()["error"]["field"] == "file"  # the field to blame
    assert not list((settings.MODELS_ROOT / "uploads").glob("*.pt"))
    good = client.post(url, {"file": SimpleUploadedFile("good.pt", tiny_checkpoint.read_bytes()), "config": "tiny",
                             "image_size": 64, "name": "uploaded"})
    assert good.status_code == 201
    version = ModelVersion.objects.get(pk=good.json()["version"])
    assert version.name == "uploaded" and version.status == "candidate"
    mine = settings.MODELS_ROOT / "mine" / "good.pt"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(tiny_checkpoint.read_bytes())
    by_path = client.post(url, {"path": "mine/good.pt", "config": "sam2.1_hiera_s", "image_size": 64})
    error = by_path.json()["error"]["message"]
    assert by_path.status_code == 400 and "does not match" in error and str(settings.MODELS_ROOT) not in error
    registered = client.post(url, {"path": str(mine), "config": "tiny", "image_size": 64})
    assert registered.status_code == 201, registered.json()


def test_register_by_path_only_from_the_models_folder_and_says_nothing_about_other_files(admin_client, tmp_path,
                                                                                          settings):
    """Missing, unreadable, real and linked-to files outside the models folder get the same words, and the
    register endpoint never opens them (their contents cannot leak through the error)."""
    project, client, _ = admin_client
    url = reverse("api-models-register", args=[project.slug])
    secret = tmp_path / "secret.pt"
    secret.write_bytes(b"\x80top secret")
    unreadable = tmp_path / "unreadable.pt"
    unreadable.write_bytes(b"x")
    unreadable.chmod(0)
    settings.MODELS_ROOT.mkdir(parents=True)
    (settings.MODELS_ROOT / "link.pt").symlink_to(secret)
    outside = [str(secret), str(unreadable), str(tmp_path / "missing.pt"), "../secret.pt", "../../etc/passwd",
               "/etc/passwd", "link.pt", ".", "/", f"../{'x' * 5000}"]
    errors = set()
    for path in outside:
        response = client.post(url, {"path": path, "config": "tiny", "image_size": 64})
        assert response.status_code == 400, path
        errors.add(response.json()["error"]["message"])
    assert len(errors) == 1
    refusal = errors.pop()
    assert "MASKLET_DATA_DIR/models/" in refusal and str(tmp_path) not in refusal and "secret" not in refusal
    for path in ["mine/\x00.pt", "x" * 5000, ""]:  # refused too, in words about the field or the models folder
        response = client.post(url, {"path": path, "config": "tiny", "image_size": 64})
        assert response.status_code == 400 and str(tmp_path) not in response.json()["error"]["message"]
    missing = client.post(url, {"path": "nope.pt", "config": "tiny", "image_size": 64}).json()["error"]["message"]
    assert missing == "not registered: no checkpoint file nope.pt in the models folder"
    assert not ModelVersion.objects.filter(project=project).exists()


@pytest.mark.django_db(transaction=True)
def test_the_socket_relays_run_events_to_admins_only(loop_project):
    project = loop_project(train=1, val=0, slug="sock")
    admin = Membership.objects.get(project=project, role=Role.ADMIN).user
    from django.contrib.auth import get_user_model

    annotator = get_user_model().objects.create_user("ann")
    Membership.objects.create(project=project, user=annotator, role=Role.ANNOTATOR)

    async def scenario():
        path = f"/ws/projects/{project.slug}/models/"
        refused = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
        refused.scope["user"] = annotator
        assert (await refused.connect(timeout=5))[0]  # accepted, to be told why it closes
        assert await refused.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}
        socket = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
        socket.scope["user"] = admin
        connected, _ = await socket.connect(timeout=5)
        assert connected
        hello = await socket.receive_json_from(timeout=5)
        assert DASHBOARD_MESSAGE.validate_python(hello) and hello == {"type": "hello", "run": None}
        await get_channel_layer().group_send(training.training_group(project.id), {
            "type": "dashboard.message", "message": {"type": "run", "run": 7, "status": "running", "step": 3,
                                                     "loss": 1.5}})
        message = await socket.receive_json_from(timeout=5)
        assert message == {"type": "run", "run": 7, "status": "running", "step": 3, "loss": 1.5}
        await socket.disconnect()
        run = await database_sync_to_async(TrainingRun.objects.create)(project=project, status="running",
                                                                         loss_curve=[[1, 2.5]])
        socket = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
        socket.scope["user"] = admin
        assert (await socket.connect(timeout=5))[0]
        hello = DASHBOARD_MESSAGE.validate_python(await socket.receive_json_from(timeout=5))
        assert (hello.run.id, hello.run.status, hello.run.loss_curve) == (run.pk, "running", [[1, 2.5]])
        await socket.disconnect()

    async_to_sync(scenario)()


def test_broadcast_goes_to_the_project_group_as_a_protocol_message(monkeypatch):
    sent = []
    monkeypatch.setattr("engine.channel_bridge.group_send_soon", lambda group, event: sent.append((group, event)))
    training.broadcast(5, run=1, progress=0.5)
    assert sent == [("project-5-training", {"type": "dashboard.message",
                                            "message": {"type": "run", "run": 1, "progress": 0.5}})]
    with pytest.raises(ValidationError):  # a field the protocol does not define never leaves the server
        training.broadcast(5, run=1, progess=0.5)
    with pytest.raises(ValidationError):
        training.broadcast(5, run=1, status="finished")
    assert len(sent) == 1


@pytest.mark.django_db
def test_downloads_and_verifier_trainings_tell_the_page_in_protocol_messages(monkeypatch):
    sent = []
    monkeypatch.setattr("engine.channel_bridge.group_send_soon", lambda group, event: sent.append(event["message"]))
    project = Project.objects.create(name="p", slug="p")
    downloads.broadcast(ModelDownload.objects.create(project=project, name="sam2.1_hiera_tiny", status="running",
                                                     bytes_done=5))
    verifier._broadcast(VerifierVersion.objects.create(project=project, number=1, status="failed", error="too few"))
    assert [DASHBOARD_MESSAGE.validate_python(message).type for message in sent] == ["download", "verifier"]
    assert (sent[0]["bytes_done"], sent[0]["label"]) == (5, fetch.OFFICIAL["sam2.1_hiera_tiny"].label)
    assert sent[1] == {"type": "verifier", "verifier": 1, "status": "failed", "error": "too few"}
