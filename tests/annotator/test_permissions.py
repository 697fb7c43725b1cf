"""Every endpoint has a declared permission rule, and every rule holds for every kind of user.

1. Walk the whole URLconf (Django admin excepted: it is staff-only by Django) and fail on any
   view without a rule marker, and on any URL name missing from ``ENDPOINTS`` below, so a new
   endpoint cannot ship without a rule and without being exercised here.
2. For each endpoint x each persona (anonymous, non-member, staff non-member, annotator,
   reviewer, admin, superuser), make the real request and check allowed / denied, once signed in
   with the session cookie and once, for ``/api/`` endpoints, with each persona's API token
   (``Authorization: Bearer``): the same rules hold for both.
   Where a redirect alone cannot tell whether the action happened (the review verdict), the case
   also checks its effect for allowed people and its absence for the others.
3. The same for the project WebSocket: non-members and anonymous users are refused on connect,
   and a member who loses their membership is cut off on the next message. The annotation
   socket's matrix (every edit message type x every kind of person, roles changed while it is
   open) is ``tests/annotator/sessions/test_socket_permissions.py``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import pytest
from asgiref.sync import async_to_sync
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from annotator.consumers import ProjectConsumer, VideoStatusConsumer, _permissions
from annotator.models import Membership, Role, Video
from annotator.permissions import RULES, Access, Action, role_of, roles_by_project, rule_of
from annotator.services.tokens import issue_token
from config.routing import websocket_urlpatterns
from engine import protocol

PERSONAS = ("anonymous", "non_member", "staff", "annotator", "reviewer", "admin", "superuser")
MEMBER_ROLES = {"annotator": Role.ANNOTATOR, "reviewer": Role.REVIEWER, "admin": Role.ADMIN}

#: The policy, written out independently of ``annotator.permissions.RULES``: the table must match it.
EXPECTED_RULES = {
    Action.VIEW_PROJECT: {"annotator", "reviewer", "admin"},
    Action.UPLOAD_VIDEO: {"annotator", "admin"},
    Action.ANNOTATE: {"annotator", "admin"},
    Action.REVIEW: {"reviewer", "admin"},
    Action.EXPORT: {"reviewer", "admin"},
    Action.MANAGE_PROJECT: {"admin"},
    Action.MANAGE_MEMBERS: {"admin"},
    Action.MANAGE_MODELS: {"admin"},
}


@dataclass
class World:
    project: Any
    video: Any
    users: dict[str, Any]
    tokens: dict[str, str]


@dataclass(frozen=True)
class Case:
    """One request to one endpoint: the method, URL kwargs, body, the rule it must declare and
    the status an allowed user gets."""

    method: str
    kwargs: Callable[[World], dict[str, Any]]
    expects: Access | Action
    ok_status: int | tuple[int, ...] = 200
    #: POST: a form (files allowed); PUT and PATCH: sent as JSON.
    data: Callable[[], dict[str, Any]] | None = None
    #: ``verify(world, url_kwargs, user, allowed)`` after each persona's request: the effect happened
    #: for allowed people and not for the others. With it, ``kwargs`` is called once per persona.
    verify: Callable[[World, dict[str, Any], Any, bool], None] | None = None


def _project(world: World) -> dict[str, Any]:
    return {"slug": world.project.slug}


def _video(world: World) -> dict[str, Any]:
    return {"slug": world.project.slug, "video_id": world.video.id}


def _frame(world: World) -> dict[str, Any]:
    return {"slug": world.project.slug, "video_id": world.video.id, "frame_index": 4}


def _none(world: World) -> dict[str, Any]:
    return {}


def _spare_video(world: World) -> dict[str, Any]:
    """A failed video of the world's project that a delete may take (one per persona)."""
    video = Video.objects.create(project=world.project, name=f"spare-{Video.objects.count()}",
                                 status=Video.Status.FAILED)
    return {"slug": world.project.slug, "video_id": video.id}


def _video_deleted(world: World, kwargs: dict[str, Any], user: Any, allowed: bool) -> None:
    assert Video.objects.filter(pk=kwargs["video_id"]).exists() is not allowed, (user, allowed)


def _invite(world: World) -> dict[str, Any]:
    return {"uidb64": "MQ", "token": "not-a-token"}


def _export_job(world: World) -> dict[str, Any]:
    """A finished export of the world's project, its zip on disk (the download endpoint's case)."""
    from annotator.models import DatasetJob

    relative = f"exports/{world.project.slug}.zip"
    path = settings.MEDIA_ROOT / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    job = DatasetJob.objects.create(project=world.project, kind="export", format="coco", status="done", file=relative)
    return {"slug": world.project.slug, "job_id": job.id}


def _submitted_masklet(world: World) -> dict[str, Any]:
    """A submitted masklet of the world's video (the review page's case); the annotator made it."""
    from annotator.models import Masklet

    masklet = Masklet.objects.create(video=world.video, object_id=Masklet.objects.count() + 1,
                                     status=Masklet.Status.SUBMITTED, assignee=world.users["annotator"])
    return {"slug": world.project.slug, "masklet_id": masklet.id}


def _verdict_recorded(world: World, kwargs: dict[str, Any], user: Any, allowed: bool) -> None:
    """A 302 alone does not say whether the verdict was kept: an allowed reviewer's is, nobody else's."""
    from annotator.models import Masklet, Review

    masklet = Masklet.objects.get(pk=kwargs["masklet_id"])
    reviews = list(Review.objects.filter(masklet=masklet).values_list("reviewer_id", "verdict"))
    if allowed:
        assert (masklet.status, reviews) == ("approved", [(user.pk, "satisfactory")]), (user, masklet.status, reviews)
    else:
        assert (masklet.status, reviews) == ("submitted", []), (user, masklet.status, reviews)


def _missed_object(world: World) -> dict[str, Any]:
    """A pending possibly missed object on frame 4 of the world's video (one per persona)."""
    from annotator.models import MissedObject
    from segmentation.masks import encode_rle, rle_area, rle_bbox

    mask = np.zeros((24, 32), bool)
    mask[4:12, 6:20] = True
    rle = encode_rle(mask)
    missed = MissedObject.objects.create(video=world.video, frame_index=4, rle_counts=rle["counts"],
                                         area=rle_area(rle), bbox=rle_bbox(rle), score=0.9)
    return {"slug": world.project.slug, "video_id": world.video.id, "missed_id": missed.id}


def _missed_dismissed(world: World, kwargs: dict[str, Any], user: Any, allowed: bool) -> None:
    """Only an allowed reviewer's dismissal is kept."""
    from annotator.models import MissedObject

    missed = MissedObject.objects.get(pk=kwargs["missed_id"])
    assert (missed.status, missed.decided_by_id) == (("dismissed", user.pk) if allowed else ("pending", None)), user


def _member(world: World) -> dict[str, Any]:
    return {"slug": world.project.slug, "username": world.users["annotator"].get_username()}


def _missing(key: str) -> Callable[[World], dict[str, Any]]:
    """URL kwargs naming a row that does not exist (allowed people get 404, the rule is checked first)."""
    return lambda world: {"slug": world.project.slug, key: 999_999}


def _dataset_upload() -> dict[str, Any]:
    return {"format": "coco", "status": "submitted",
            "file": SimpleUploadedFile("annotations.json", b'{"images": [], "annotations": []}', "application/json")}


_uploads = itertools.count()


def _upload() -> dict[str, Any]:
    # Different bytes each time: the same file twice would be refused as a duplicate (409).
    content = b"\x00\x00\x00\x18ftypmp42" + next(_uploads).to_bytes(8) + b"\x00" * 64
    return {"file": SimpleUploadedFile("clip.mp4", content, "video/mp4")}


#: url name -> the requests that exercise it. A URL name missing here fails the suite.
ENDPOINTS: dict[str, list[Case]] = {
    "healthz": [Case("GET", _none, Access.PUBLIC)],
    "help-models": [Case("GET", _none, Access.AUTHENTICATED)],
    "login": [Case("GET", _none, Access.PUBLIC, ok_status=(200, 302))],  # signed in: sent on to the projects
    "favicon": [Case("GET", _none, Access.PUBLIC, ok_status=301)],
    "logout": [Case("POST", _none, Access.PUBLIC, ok_status=302)],
    "project-list": [Case("GET", _none, Access.AUTHENTICATED)],
    "people": [
        Case("GET", _none, Access.STAFF),
        Case("POST", _none, Access.STAFF, ok_status=302, data=lambda: {"action": "create", "username": ""}),
    ],
    "invite": [Case("GET", _invite, Access.PUBLIC)],
    "account": [
        Case("GET", _none, Access.AUTHENTICATED),
        Case("POST", _none, Access.AUTHENTICATED, data=lambda: {"action": "create", "name": "from the page"}),
    ],  # a void link: the page says so
    "project-create": [Case("GET", _none, Access.STAFF)],
    "project-detail": [Case("GET", _project, Action.VIEW_PROJECT)],
    "project-edit": [
        Case("GET", _project, Action.MANAGE_PROJECT),
        Case("POST", _project, Action.MANAGE_PROJECT, ok_status=302, data=lambda: {"action": "retire_label",
                                                                                   "label": "nothing"}),
    ],
    "video-upload": [Case("POST", _project, Action.UPLOAD_VIDEO, ok_status=302, data=_upload)],
    "video-detail": [Case("GET", _video, Action.VIEW_PROJECT)],
    "video-frame": [Case("GET", _frame, Action.VIEW_PROJECT)],
    "video-annotate": [Case("GET", _video, Action.VIEW_PROJECT)],
    "video-delete": [
        Case("GET", _video, Action.MANAGE_PROJECT),
        Case("POST", _spare_video, Action.MANAGE_PROJECT, ok_status=302, verify=_video_deleted),
    ],
    "video-retry": [Case("POST", _video, Action.UPLOAD_VIDEO, ok_status=302)],  # not failed: refused in words
    "datasets": [
        Case("GET", _project, Action.EXPORT),
        Case("POST", _project, Action.EXPORT, ok_status=302, data=lambda: {"format": "coco", "statuses": "approved"}),
    ],
    "dataset-import": [Case("POST", _project, Action.MANAGE_PROJECT, ok_status=302, data=_dataset_upload)],
    "dataset-download": [Case("GET", _export_job, Action.EXPORT)],
    "api-dataset-jobs": [
        Case("GET", _project, Action.EXPORT),
        Case("POST", _project, Action.EXPORT, ok_status=202, data=lambda: {"format": "coco"}),
    ],
    "api-dataset-job-detail": [Case("GET", _export_job, Action.EXPORT)],
    "api-dataset-job-download": [Case("GET", _export_job, Action.EXPORT)],
    "team": [
        Case("GET", _project, Action.MANAGE_MEMBERS),
        Case("POST", _project, Action.MANAGE_MEMBERS, ok_status=302, data=lambda: {"action": "add", "user": "nobody"}),
    ],
    "team-splits": [Case("POST", _project, Action.MANAGE_PROJECT, ok_status=302, data=lambda: {"split": "val"})],
    "auto-masklets": [Case("POST", _project, Action.MANAGE_PROJECT, ok_status=302, data=lambda: {"video": ""})],
    "work-next": [Case("POST", _project, Action.ANNOTATE, ok_status=302)],
    "video-finish": [Case("POST", _video, Action.ANNOTATE, ok_status=302)],
    "review-next": [Case("POST", _project, Action.REVIEW, ok_status=302)],
    "review-queue": [Case("GET", _project, Action.REVIEW)],
    "api-video-seen": [
        Case("GET", _video, Action.VIEW_PROJECT),
        Case("POST", _video, Action.VIEW_PROJECT, ok_status=400),  # an empty form, not the JSON it takes: refused
    ],
    "missed-object": [Case("POST", _missed_object, Action.REVIEW, ok_status=302, data=lambda: {"action": "dismiss"},
                           verify=_missed_dismissed)],
    "missed-object-image": [Case("GET", _missed_object, Action.REVIEW)],
    "masklet-review": [
        Case("GET", _submitted_masklet, Action.REVIEW),
        Case("POST", _submitted_masklet, Action.REVIEW, ok_status=302, data=lambda: {"verdict": "satisfactory"},
             verify=_verdict_recorded),
    ],
    "api-auto-masklet-runs": [
        Case("GET", _project, Action.MANAGE_PROJECT),
        Case("POST", _project, Action.MANAGE_PROJECT, ok_status=400, data=lambda: {"video": ""}),
    ],
    "api-effort": [Case("GET", _project, Action.MANAGE_MEMBERS)],
    "api-session": [Case("GET", _none, Access.PUBLIC)],
    "api-schema": [Case("GET", _none, Access.PUBLIC)],
    "api-docs": [Case("GET", _none, Access.PUBLIC)],
    "api-tokens": [
        Case("GET", _none, Access.AUTHENTICATED),
        Case("POST", _none, Access.AUTHENTICATED, ok_status=201, data=lambda: {"name": "matrix"}),
    ],
    "api-token-detail": [Case("DELETE", lambda world: {"token_id": 999_999}, Access.AUTHENTICATED, ok_status=404)],
    "api-users": [
        Case("GET", _none, Access.STAFF),
        Case("POST", _none, Access.STAFF, ok_status=400, data=lambda: {"username": ""}),
    ],
    # POST (creating a project) is for staff, refused by the service: tests/annotator/test_api_endpoints.py.
    "api-project-list": [Case("GET", _none, Access.AUTHENTICATED)],
    "api-project-detail": [
        Case("GET", _project, Action.VIEW_PROJECT),
        Case("PATCH", _project, Action.MANAGE_PROJECT, data=lambda: {"description": "edited"}),
    ],
    "api-members": [
        Case("GET", _project, Action.VIEW_PROJECT),
        Case("POST", _project, Action.MANAGE_MEMBERS, ok_status=400, data=lambda: {"username": "nobody",
                                                                                   "role": "annotator"}),
    ],
    "api-member-detail": [Case("PATCH", _member, Action.MANAGE_MEMBERS, data=lambda: {"role": "annotator"})],
    "api-video-retry": [Case("POST", _video, Action.UPLOAD_VIDEO, ok_status=409)],  # ready, not failed
    "api-masklet-detail": [Case("GET", _submitted_masklet, Action.VIEW_PROJECT)],
    "api-masklet-masks": [
        Case("GET", _submitted_masklet, Action.VIEW_PROJECT),
        Case("PUT", _submitted_masklet, Action.ANNOTATE, ok_status=400, data=lambda: {"frames": []}),
    ],
    "api-masklet-submit": [Case("POST", _submitted_masklet, Action.ANNOTATE, ok_status=409)],  # submitted already
    "api-masklet-review": [Case("POST", _submitted_masklet, Action.REVIEW, ok_status=201,
                                data=lambda: {"verdict": "approve"}, verify=_verdict_recorded)],
    "api-reviews": [Case("GET", _project, Action.VIEW_PROJECT)],
    "api-webhooks": [
        Case("GET", _project, Action.MANAGE_PROJECT),
        Case("POST", _project, Action.MANAGE_PROJECT, ok_status=400, data=lambda: {"url": "ftp://x", "events": []}),
    ],
    "api-webhook-detail": [Case("DELETE", _missing("webhook_id"), Action.MANAGE_PROJECT, ok_status=404)],
    "api-webhook-deliveries": [Case("GET", _missing("webhook_id"), Action.MANAGE_PROJECT, ok_status=404)],
    "api-video-list": [
        Case("GET", _project, Action.VIEW_PROJECT),
        Case("POST", _project, Action.UPLOAD_VIDEO, ok_status=201, data=_upload),
    ],
    "api-video-detail": [
        Case("GET", _video, Action.VIEW_PROJECT),
        Case("DELETE", _spare_video, Action.MANAGE_PROJECT, verify=_video_deleted),
    ],
    "api-video-frame": [Case("GET", _frame, Action.VIEW_PROJECT)],
    "api-video-masklets": [
        Case("GET", _video, Action.VIEW_PROJECT),
        Case("POST", _video, Action.ANNOTATE, ok_status=201, data=lambda: {"label": ""}),
    ],
    "api-video-masks": [Case("GET", _video, Action.VIEW_PROJECT)],
    # The retraining dashboard (loop.dashboard): admins only. The world has no approved masklets, no active
    # run and no versions, so allowed actions are refused with 409/400 and change nothing.
    "models": [Case("GET", _project, Action.MANAGE_MODELS)],
    "api-models": [
        Case("GET", _project, Action.MANAGE_MODELS),
        Case("POST", _project, Action.MANAGE_MODELS, ok_status=400),  # nothing to register
    ],
    "api-model-promote": [Case("POST", _missing("version_id"), Action.MANAGE_MODELS, ok_status=404)],
    "api-training-runs": [Case("GET", _project, Action.MANAGE_MODELS)],
    "api-training-run": [Case("GET", _missing("run_id"), Action.MANAGE_MODELS, ok_status=404)],
    "api-training-run-cancel": [Case("POST", _missing("run_id"), Action.MANAGE_MODELS, ok_status=404)],
    "api-models-start": [Case("POST", _project, Action.MANAGE_MODELS, ok_status=409)],
    "api-models-cancel": [Case("POST", _project, Action.MANAGE_MODELS, ok_status=409)],
    "api-models-promote": [Case("POST", _project, Action.MANAGE_MODELS, ok_status=400)],
    "api-models-rollback": [Case("POST", _project, Action.MANAGE_MODELS, ok_status=409)],
    "api-models-register": [Case("POST", _project, Action.MANAGE_MODELS, ok_status=400)],
    "api-models-download": [Case("POST", _project, Action.MANAGE_MODELS, ok_status=400)],  # no name: nothing starts
    "api-models-verifier": [Case("POST", _project, Action.MANAGE_MODELS, ok_status=409)],  # no rated frame yet
}


def iter_url_patterns(patterns: list, prefix: str = "") -> Iterator[tuple[str, str | None, Callable]]:
    """(route, name, view) for every URL pattern, recursively, Django admin left out."""
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            if pattern.app_name == "admin" or pattern.namespace == "admin":
                continue
            yield from iter_url_patterns(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            yield prefix + str(pattern.pattern), pattern.name, pattern.callback


def test_every_url_declares_a_rule_and_has_a_matrix_entry():
    names = set()
    for route, name, view in iter_url_patterns(get_resolver().url_patterns):
        assert name, f"URL {route!r} has no name: name it and add it to ENDPOINTS"
        assert rule_of(view) is not None, (
            f"view for {route!r} ({name}) declares no permission rule: decorate it with @public, "
            "@login_required_rule, @staff_required or @project_permission(action)"
        )
        assert name in ENDPOINTS, f"URL name {name!r} ({route}) has no entry in ENDPOINTS of {__file__}"
        names.add(name)
    assert not set(ENDPOINTS) - names, f"ENDPOINTS names URLs that no longer exist: {set(ENDPOINTS) - names}"


@pytest.mark.parametrize("name", sorted(ENDPOINTS))
def test_views_declare_the_expected_rule(name):
    view = get_resolver().resolve(_reverse_sample(name)).func
    rule = rule_of(view)
    for case in ENDPOINTS[name]:
        if isinstance(case.expects, Action):
            assert rule.access == Access.PROJECT, name
            assert rule.action_for(case.method) == case.expects, f"{name} {case.method}"
        else:
            assert rule.access == case.expects, name
        if rule.access != Access.PUBLIC:
            assert rule.api == name.startswith("api-"), f"{name}: API views answer JSON, pages redirect"


def _reverse_sample(name: str) -> str:
    sample = {"slug": "p", "video_id": 1, "frame_index": 0}
    for kwargs in ({}, {"slug": "p"}, {"slug": "p", "video_id": 1}, sample, {"slug": "p", "job_id": 1},
                   {"slug": "p", "masklet_id": 1}, {"slug": "p", "video_id": 1, "missed_id": 1},
                   {"uidb64": "MQ", "token": "t"}, {"token_id": 1}, {"slug": "p", "username": "u"},
                   {"slug": "p", "version_id": 1}, {"slug": "p", "run_id": 1}, {"slug": "p", "webhook_id": 1}):
        try:
            return reverse(name, kwargs=kwargs)
        except Exception:
            continue
    raise AssertionError(f"cannot reverse {name}")


def test_rule_table_matches_the_policy():
    assert {action: {r.value for r in roles} for action, roles in RULES.items()} == EXPECTED_RULES


@pytest.fixture
def world(make_user, make_project, settings, tmp_path) -> World:
    """A project with one member of each role, outsiders, and a ready video with frames on disk."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.FRAMES_ROOT = tmp_path / "frames"
    users = {
        "non_member": make_user("outsider"),
        "staff": make_user("staffer", staff=True),
        "superuser": make_user("root", superuser=True),
        **{persona: make_user(persona) for persona in MEMBER_ROLES},
    }
    project = make_project(slug="secret", members={users[p]: role for p, role in MEMBER_ROLES.items()})
    video = Video.objects.create(project=project, name="clip", status=Video.Status.READY, fps=24, frame_count=10,
                                 stride=4, width=32, height=24, annotated_frame_count=3)
    video.frames_dir.mkdir(parents=True)
    for index in video.annotated_frame_indices():
        cv2.imwrite(str(video.frames_dir / f"{index:05d}.jpg"), np.full((24, 32, 3), index * 20, np.uint8))
    tokens = {persona: issue_token(user, "matrix")[1] for persona, user in users.items()}
    return World(project=project, video=video, users=users, tokens=tokens)


def _allowed(persona: str, expects: Access | Action) -> bool:
    if expects == Access.PUBLIC:
        return True
    if persona == "anonymous":
        return False
    if expects == Access.AUTHENTICATED or persona == "superuser":
        return True
    if expects == Access.STAFF:
        return persona == "staff"
    return persona in EXPECTED_RULES[expects]


def _denied_status(persona: str, expects: Access | Action, api: bool) -> int:
    if persona == "anonymous":
        return 401 if api else 302
    if isinstance(expects, Action) and persona not in MEMBER_ROLES:
        return 404  # non-members cannot tell a hidden project from a missing one
    return 403


def _request(client: Client, method: str, url: str, data: dict[str, Any] | None, headers: dict[str, str]):
    if method in ("GET", "DELETE"):
        return client.generic(method, url, headers=headers)
    if method == "POST":
        return client.post(url, data or {}, headers=headers)
    return client.generic(method, url, json.dumps(data or {}), content_type="application/json", headers=headers)


@pytest.mark.parametrize("auth", ["session", "token"])
@pytest.mark.parametrize("name", sorted(ENDPOINTS))
def test_permission_matrix(name, auth, world):
    api = name.startswith("api-")
    if auth == "token" and not api:
        pytest.skip("pages are for the browser's session; tokens are for /api/")
    for case in ENDPOINTS[name]:
        kwargs = case.kwargs(world)
        for persona in PERSONAS:
            if case.verify is not None:  # each persona acts on a fresh object, so one's effect is not another's
                kwargs = case.kwargs(world)
            url = reverse(name, kwargs=kwargs)
            client = Client()
            headers = {}
            if persona != "anonymous" and auth == "session":
                client.force_login(world.users[persona])
            elif persona != "anonymous":
                headers["Authorization"] = f"Bearer {world.tokens[persona]}"
            response = _request(client, case.method, url, case.data() if case.data else None, headers)
            label = f"{case.method} {url} as {persona} ({auth})"
            if _allowed(persona, case.expects):
                ok = case.ok_status if isinstance(case.ok_status, tuple) else (case.ok_status,)
                assert response.status_code in ok, f"{label}: expected {ok}, got {response.status_code}"
                if response.status_code == 302 and case.expects != Access.PUBLIC:
                    assert "/login/" not in response["Location"], f"{label} was sent to the login page"
                if case.verify is not None:
                    case.verify(world, kwargs, world.users[persona], True)
            else:
                expected = _denied_status(persona, case.expects, api)
                assert response.status_code == expected, f"{label}: expected {expected}, got {response.status_code}"
                if expected == 302:
                    assert response["Location"].startswith(reverse("login")), label
                if api:
                    assert "error" in response.json(), label
                if case.verify is not None:
                    case.verify(world, kwargs, world.users.get(persona), False)


def test_non_member_404_is_the_same_as_for_a_missing_project(world):
    client = Client()
    client.force_login(world.users["non_member"])
    hidden = client.get(reverse("api-project-detail", kwargs={"slug": world.project.slug}))
    missing = client.get(reverse("api-project-detail", kwargs={"slug": "no-such-project"}))
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json()


# -- WebSocket -----------------------------------------------------------------------------


def test_every_websocket_route_is_a_project_consumer():
    for route in websocket_urlpatterns:
        consumer = route.callback.consumer_class
        assert issubclass(consumer, ProjectConsumer), f"{route.pattern} must check membership (ProjectConsumer)"


def _connect(user, slug: str) -> tuple[bool, Any]:
    """Open the video-status socket as ``user`` with an authenticated scope; return (let in, first message).

    A refused socket is accepted and closed at once with its reason's code (the first message then)."""

    async def run() -> tuple[bool, Any]:
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/projects/{slug}/videos/")
        communicator.scope["user"] = user
        assert (await communicator.connect(timeout=5))[0]
        output = await communicator.receive_output(timeout=5)
        await communicator.disconnect()
        if output["type"] == "websocket.close":
            return False, output
        return True, protocol.VIDEO_STATUS_MESSAGE.validate_python(json.loads(output["text"])).model_dump()

    return async_to_sync(run)()


@pytest.mark.django_db(transaction=True)
def test_websocket_matrix(world):
    from django.contrib.auth.models import AnonymousUser

    for persona in PERSONAS:
        user = AnonymousUser() if persona == "anonymous" else world.users[persona]
        connected, message = _connect(user, world.project.slug)
        assert connected == _allowed(persona, Action.VIEW_PROJECT), persona
        if connected:
            assert message["type"] == "snapshot"
            assert [v["id"] for v in message["videos"]] == [world.video.id]
        else:
            assert message["code"] == (4401 if persona == "anonymous" else 4403), persona
    assert _connect(world.users["superuser"], "no-such-project") == (False, {"type": "websocket.close",
                                                                             "code": 4403})


@pytest.mark.django_db(transaction=True)
def test_websocket_rechecks_membership_on_every_message(world, monkeypatch):
    monkeypatch.setattr(VideoStatusConsumer, "idle_interval", 60.0)
    annotator = world.users["annotator"]

    async def run() -> list[Any]:
        path = f"/ws/projects/{world.project.slug}/videos/"
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
        communicator.scope["user"] = annotator
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        await communicator.receive_json_from(timeout=5)  # snapshot
        await communicator.send_json_to({"type": "refresh"})
        refreshed = await communicator.receive_json_from(timeout=5)
        await _revoke(annotator)
        await communicator.send_json_to({"type": "refresh"})
        refused = await communicator.receive_json_from(timeout=5)
        closed = await communicator.receive_output(timeout=5)
        await communicator.disconnect()
        return [refreshed, refused, closed]

    from channels.db import database_sync_to_async

    @database_sync_to_async
    def _revoke(user) -> None:
        Membership.objects.filter(user=user).delete()

    refreshed, refused, closed = async_to_sync(run)()
    assert protocol.VIDEO_STATUS_MESSAGE.validate_python(refreshed).type == "snapshot"
    assert protocol.VIDEO_STATUS_MESSAGE.validate_python(refused).type == "error"
    assert closed == {"type": "websocket.close", "code": 4403}


@pytest.mark.django_db(transaction=True)
def test_the_video_status_socket_parses_refresh_through_the_protocol(world, monkeypatch):
    monkeypatch.setattr(VideoStatusConsumer, "idle_interval", 60.0)

    async def run() -> list[Any]:
        path = f"/ws/projects/{world.project.slug}/videos/"
        communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
        communicator.scope["user"] = world.users["annotator"]
        assert (await communicator.connect(timeout=5))[0]
        await communicator.receive_json_from(timeout=5)  # snapshot
        replies = []
        for message in ({"type": "refresh", "all": True}, {"type": "fly"}, {"type": "refresh"}):
            await communicator.send_json_to(message)
            replies.append(await communicator.receive_json_from(timeout=5))
        await communicator.disconnect()
        return replies

    extra, unknown, refreshed = (protocol.VIDEO_STATUS_MESSAGE.validate_python(r) for r in async_to_sync(run)())
    assert extra.error == unknown.error == 'This socket takes only {"type": "refresh"}.'
    assert refreshed.type == "snapshot"  # the refusals left the socket open


def test_one_role_lookup_answers_pages_services_and_sockets_alike(make_user, make_project):
    """``roles_by_project`` is the one role lookup: ``role_of`` and the socket's per-message check
    read it, so a role change is seen by all of them at once."""
    ann = make_user("roles-ann")
    first = make_project(members={ann: Role.ANNOTATOR})
    second = make_project(members={ann: Role.REVIEWER})
    elsewhere = make_project()
    assert roles_by_project(ann) == {first.pk: Role.ANNOTATOR, second.pk: Role.REVIEWER}
    assert [role_of(ann, p) for p in (first, second, elsewhere)] == [Role.ANNOTATOR, Role.REVIEWER, None]
    assert [_permissions(ann.pk, p) for p in (first, second, elsewhere)] == [(True, True), (True, False),
                                                                            (False, False)]
    Membership.objects.filter(user=ann, project=first).update(role=Role.REVIEWER)
    assert (roles_by_project(ann)[first.pk], role_of(ann, first), _permissions(ann.pk, first)) == (
        Role.REVIEWER, Role.REVIEWER, (True, False))
    assert roles_by_project(AnonymousUser()) == {} and role_of(AnonymousUser(), first) is None
