"""The annotation socket's permission matrix: every edit message type x every kind of person, and
roles changed while a socket is open. The HTTP side of the matrix is ``tests/annotator/test_permissions.py``.

The rules (``annotator.permissions.RULES``, ``annotator.consumers``): anyone who may view the
project opens the socket (the others are accepted and closed at once: non-members 4403, signed-out
people 4401);
every message in ``protocol.EDIT_TYPES`` needs ``Action.ANNOTATE`` (annotators, admins,
superusers) and is refused ``read_only`` for reviewers, with nothing stored; the role is read
again for every message, so a demotion is felt on the next message and a removal closes the socket.

Allowed people run a script that uses each edit type once and must succeed at each (the reply is
the type's success message and the database holds its effect): the check is that they may, not
only that they are not refused. Embedded mode: the real ASGI app, the in-process GPU pool and the
classical backend on a real ingested video.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser

from annotator.models import MaskFrame, MaskFrameRevision, Masklet, Prompt, Role
from annotator.services import team as team_service
from annotator.services.reviews import review_masklet
from engine import protocol
from segmentation.masks import encode_rle

from .conftest import embedded_only, run

pytestmark = [embedded_only, pytest.mark.django_db(transaction=True)]

POINT = {"x": 80.0, "y": 48.0}  # inside the tiny video's 160x96 frame, on an object of frame 0
PERSONAS = ("admin", "annotator", "reviewer", "non_member", "anonymous", "superuser")
MAY_EDIT = {"admin", "annotator", "superuser"}  # Action.ANNOTATE, written out independently of RULES
MAY_CONNECT = MAY_EDIT | {"reviewer"}  # Action.VIEW_PROJECT


def _painted() -> str:
    mask = np.zeros((96, 160), bool)
    mask[30:60, 50:110] = True
    return encode_rle(mask)["counts"]


#: (type, fields for object ``o``, reply type on success). Run in this order by allowed people;
#: ``reopen`` needs the object sent back, which a reviewer does between ``submit`` and it.
SCRIPT: list[tuple[str, Any, str]] = [
    ("add_object", lambda o: {"label": ""}, "object"),
    ("update_object", lambda o: {"object_id": o, "label": "car"}, "object"),
    ("unlock", lambda o: {"object_id": o}, "object"),
    ("lock", lambda o: {"object_id": o}, "object"),
    ("click", lambda o: {"object_id": o, "frame": 0, "positive": True, **POINT}, "mask"),
    ("box", lambda o: {"object_id": o, "frame": 0, "box": [40.0, 20.0, 120.0, 76.0]}, "mask"),
    ("paint", lambda o: {"object_id": o, "frame": 0, "counts": _painted()}, "mask"),
    ("clear", lambda o: {"object_id": o, "frame": 0}, "mask"),
    ("restore", lambda o: {"object_id": o, "frame": 0, "revision": 1}, "mask"),
    ("track", lambda o: {"frame": 0, "direction": "forward", "object_ids": [o]}, "track_done"),
    ("submit", lambda o: {"object_id": o}, "object"),
    ("reopen", lambda o: {"object_id": o}, "object"),
    ("delete_object", lambda o: {"object_id": o}, "object_deleted"),
]


def test_the_script_covers_every_edit_message_type():
    assert {type_ for type_, _, _ in SCRIPT} == protocol.EDIT_TYPES


@pytest.fixture
def world(make_user, make_project, make_ready_video) -> dict[str, Any]:
    people = {"admin": make_user("boss"), "annotator": make_user("ann"), "reviewer": make_user("rev"),
              "non_member": make_user("outsider"), "superuser": make_user("root", superuser=True),
              "anonymous": AnonymousUser()}
    project = make_project(members={people["admin"]: Role.ADMIN, people["annotator"]: Role.ANNOTATOR,
                                    people["reviewer"]: Role.REVIEWER})
    return {**people, "project": project, "video": make_ready_video(project)}


def _counts() -> tuple[int, int, int, int]:
    return (Masklet.objects.count(), Prompt.objects.count(), MaskFrame.objects.count(),
            MaskFrameRevision.objects.count())


async def _open(open_socket, user, video):
    if isinstance(user, AnonymousUser):  # no session cookie at all: the socket's scope is anonymous
        from channels.testing import WebsocketCommunicator

        from config.routing import build_application

        application = build_application()
        path = f"/ws/projects/{video.project.slug}/videos/{video.id}/annotate/"
        communicator = WebsocketCommunicator(application, path, headers=[(b"origin", b"http://127.0.0.1"),
                                                                          (b"host", b"127.0.0.1")])
        assert await communicator.connect(timeout=10) == (True, None)  # accepted, to be told why it closes
        closed = await communicator.receive_output(timeout=10)
        return False, closed["code"], None
    return await open_socket(user, video)


async def _may_edit(ws, world, persona: str) -> None:
    """Each edit type once, each must succeed and leave its effect in the database."""
    video, reviewer = world["video"], world["reviewer"]
    object_id = None
    revisions: list[int] = []
    for type_, fields, success in SCRIPT:
        if type_ == "reopen":  # a reviewer sends it back first (the real verdict service)
            masklet = await database_sync_to_async(Masklet.objects.get)(video=video, object_id=object_id)
            await database_sync_to_async(review_masklet)(masklet, reviewer, verdict="unsatisfactory", reason="leak")
        reply = await ws.request(type_, **fields(object_id))
        label = f"{persona} {type_}"
        assert reply["type"] == success, (label, reply)
        if type_ == "add_object":
            object_id = reply["masklet"]["object_id"]
            assert reply["masklet"]["locked_by_me"] is True, label
        row = await database_sync_to_async(Masklet.objects.filter(video=video, object_id=object_id).first)()
        if success == "mask":
            revisions.append(reply["revision"])
            stored = await database_sync_to_async(MaskFrame.objects.get)(masklet=row, frame_index=0)
            assert (stored.rle_counts, stored.revision) == (reply["counts"], reply["revision"]), label
        expected = {"update_object": ("car", "draft", None), "unlock": ("car", "draft", False),
                    "lock": ("car", "draft", True), "submit": ("car", "submitted", False),
                    "reopen": ("car", "draft", True)}.get(type_)
        if expected is not None:
            mine = row.lock_holder_id == world[persona].pk
            actual = (row.label, row.status, None if expected[2] is None else mine)
            assert actual == expected, (label, actual)
        if type_ == "track":
            assert reply["cancelled"] is False and reply["done"] == reply["total"] == 6, label
            frames = await database_sync_to_async(MaskFrame.objects.filter(masklet=row).count)()
            assert frames == 6, label
        if type_ == "delete_object":
            assert row is None, label
    assert revisions == [1, 2, 3, 4, 5], revisions  # click, box, paint, clear, restore: each a new revision


async def _may_not_edit(ws, world) -> None:
    """Each edit type refused read_only, on an object someone else is editing; nothing changes."""
    video = world["video"]
    target = await database_sync_to_async(Masklet.objects.get)(video=video, object_id=1)
    before = await database_sync_to_async(_counts)()
    for type_, fields, _ in SCRIPT:
        reply = await ws.request(type_, **fields(target.object_id))
        assert (reply["type"], reply.get("code")) == ("error", "read_only"), (type_, reply)
    assert await database_sync_to_async(_counts)() == before
    after = await database_sync_to_async(Masklet.objects.get)(pk=target.pk)
    assert (after.label, after.status, after.lock_holder_id) == (target.label, target.status, target.lock_holder_id)
    assert (await ws.request("ping"))["type"] == "pong"  # viewing goes on


def test_every_edit_message_type_for_every_kind_of_person(world, open_socket):
    video = world["video"]

    async def scenario():
        _, _, owner = await open_socket(world["annotator"], video)  # object 1: the target of refused edits
        await owner.request("add_object", label="")
        for persona in PERSONAS:
            connected, code, ws = await _open(open_socket, world[persona], video)
            assert connected == (persona in MAY_CONNECT), persona
            if not connected:
                assert code == (4401 if persona == "anonymous" else 4403), (persona, code)  # nothing can be sent
                continue
            assert ws.received[0]["can_edit"] == (persona in MAY_EDIT), persona
            if persona in MAY_EDIT:
                await _may_edit(ws, world, persona)
            else:
                await _may_not_edit(ws, world)
            await ws.close()
        await owner.close()

    run(scenario)
    # Only object 1 is left, untouched: every allowed person deleted their own object (with its prompts
    # and masks) at the end of their script, and the refused edits stored nothing.
    assert list(Masklet.objects.values_list("object_id", "status", "lock_holder__username")) == [(1, "draft", "ann")]
    assert not Prompt.objects.exists() and not MaskFrame.objects.exists()


def test_a_member_demoted_or_removed_while_their_socket_is_open_is_refused_at_the_next_message(world, open_socket):
    video, project, ann = world["video"], world["project"], world["annotator"]

    async def scenario():
        _, _, ws = await open_socket(ann, video)
        object_id = (await ws.request("add_object"))["masklet"]["object_id"]
        assert (await ws.request("click", object_id=object_id, frame=0, positive=True, **POINT))["type"] == "mask"
        before = await database_sync_to_async(_counts)()

        await database_sync_to_async(team_service.set_role)(project, ann.pk, Role.REVIEWER)
        for type_, fields, _ in SCRIPT:
            reply = await ws.request(type_, **fields(object_id))
            assert (reply["type"], reply.get("code")) == ("error", "read_only"), (type_, reply)
        assert await database_sync_to_async(_counts)() == before
        assert (await ws.request("ping"))["type"] == "pong"  # a reviewer still sees the video

        await database_sync_to_async(team_service.set_role)(project, ann.pk, Role.ANNOTATOR)
        again = await ws.request("click", object_id=object_id, frame=4, positive=True, **POINT)
        assert again["type"] == "mask"  # promoted back: the next message may edit again
        before = await database_sync_to_async(_counts)()

        await database_sync_to_async(team_service.remove_member)(project, ann.pk)
        await ws.send("click", object_id=object_id, frame=8, positive=True, **POINT)
        refused = await ws.receive(timeout=10)
        assert refused["type"] == "error" and "no longer have access" in refused["error"], refused
        assert await ws.communicator.receive_output(timeout=10) == {"type": "websocket.close", "code": 4403}
        assert await database_sync_to_async(_counts)() == before
        masklet = await database_sync_to_async(Masklet.objects.get)(video=video, object_id=object_id)
        assert masklet.lock_holder_id is None  # removal released the lock: the object is free for others
        connected, code, _ = await open_socket(ann, video)
        assert (connected, code) == (False, 4403)

    run(scenario)
