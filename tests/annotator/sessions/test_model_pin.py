"""A page keeps its model version across reconnects: the socket URL's ``?model_version=`` (what the
page's hello named) is honoured only for a version the page may keep (this project's or a shared
one, that has served, still loadable); anything else gets the project's serving model and an
error saying why, right after hello. Embedded mode, real ASGI app, classical backend for clicks."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from annotator.models import MaskFrame, Role
from engine.models import ModelVersion

from .conftest import embedded_only, run

pytestmark = [embedded_only, pytest.mark.django_db(transaction=True)]

POINT = {"x": 80.0, "y": 48.0}
TINY = {"sam2_config": "configs/sam2.1/sam2.1_hiera_t.yaml", "image_size": 256, "checkpoint": ""}


@pytest.fixture
def page(make_user, make_project, make_ready_video):
    ann = make_user("ann")
    project = make_project(members={ann: Role.ANNOTATOR})
    return ann, make_ready_video(project)


def path_for(video, query: str) -> str:
    return f"/ws/projects/{video.project.slug}/videos/{video.id}/annotate/?{query}"


def version(project, name: str, status: str, **fields) -> ModelVersion:
    return ModelVersion.objects.create(project=project, name=name, status=status, **{**TINY, **fields})


def version_of(video, frame: int) -> int | None:
    return MaskFrame.objects.get(masklet__video=video, frame_index=frame).model_version_id


async def click(ws, frame: int) -> dict:
    object_id = (await ws.request("add_object"))["masklet"]["object_id"]
    return await ws.request("click", object_id=object_id, frame=frame, positive=True, timeout=300, **POINT)


def test_a_page_that_started_on_the_settings_model_keeps_it_after_a_promotion(page, open_socket):
    user, video = page

    async def scenario():
        _, _, first = await open_socket(user, video)
        hello = first.received[0]
        assert (hello["model"], hello["model_version"]) == ("classical (OpenCV)", None)  # null is sent, not left out
        await first.close()

        promoted = await database_sync_to_async(version)(video.project, "v1", ModelVersion.Status.PRODUCTION)
        _, _, fresh = await open_socket(user, video)  # a new page gets the promoted version
        assert fresh.received[0]["model_version"] == promoted.pk
        assert fresh.received[0]["model"].startswith("v1 — SAM 2.1 hiera-t @256")
        await fresh.close()

        _, _, again = await open_socket(user, video, path=path_for(video, "model_version=none"))
        hello = again.received[0]
        assert (hello["model"], hello["model_version"]) == ("classical (OpenCV)", None)
        assert await again.nothing_within(0.3)  # kept: no notice
        assert (await click(again, 0))["type"] == "mask"
        assert await database_sync_to_async(version_of)(video, 0) is None  # made by the classical backend
        await again.close()

    run(scenario)


def test_a_reconnecting_page_keeps_a_retired_or_shared_version(page, open_socket):
    """Only the hello is checked (no model is loaded): the slow test below clicks with one."""
    user, video = page
    project = video.project
    retired = version(project, "v1", ModelVersion.Status.RETIRED)
    shared = version(None, "shared", ModelVersion.Status.RETIRED)
    production = version(project, "v2", ModelVersion.Status.PRODUCTION)

    async def scenario():
        for kept in (retired, shared, production):
            _, _, ws = await open_socket(user, video, path=path_for(video, f"model_version={kept.pk}"))
            hello = ws.received[0]
            assert hello["model_version"] == kept.pk and hello["model"].startswith(f"{kept.name} — "), hello
            assert await ws.nothing_within(0.2)
            await ws.close()

    run(scenario)


@pytest.mark.parametrize("query, words", [
    ("model_version=abc", "got str 'abc'"),
    ("model_version=", "got str ''"),
    ("model_version=0", "got str '0'"),
    ("model_version=-3", "got str '-3'"),
    ("model_version=1.5", "got str '1.5'"),
    ("model_version=99999999999", "got str '99999999999'"),
    ("model_version=%EF%BC%91", "got str"),  # a full-width digit one: not an id
    ("model_version=1&model_version=2", 'names "model_version" more than once'),
])
def test_a_malformed_request_is_refused_in_words_and_the_page_gets_the_serving_model(page, open_socket, query, words):
    user, video = page
    path = path_for(video, query)

    async def scenario():
        _, _, ws = await open_socket(user, video, path=path)
        hello = ws.received[0]
        assert (hello["model"], hello["model_version"]) == ("classical (OpenCV)", None)
        refused = await ws.receive()
        assert refused["type"] == "error" and refused["code"] == "bad_message" and "re" not in refused
        assert words in refused["error"] and refused["error"].endswith("This page uses classical (OpenCV)."), refused
        assert (await ws.request("ping"))["type"] == "pong"  # the socket works on
        await ws.close()

    run(scenario)


@pytest.mark.parametrize("case", ["other project", "deleted", "candidate", "checkpoint gone"])
def test_a_version_the_page_may_not_keep_falls_back_to_the_serving_model_and_the_page_is_told(
        page, open_socket, make_project, tmp_path, case):
    user, video = page
    project = video.project
    if case == "other project":
        asked = version(make_project(), "theirs", ModelVersion.Status.PRODUCTION).pk
        why = "no longer exists in this project"
    elif case == "deleted":
        gone = version(project, "v0", ModelVersion.Status.RETIRED)
        asked = gone.pk
        gone.delete()
        why = "no longer exists in this project"
    elif case == "candidate":  # never promoted: a page cannot pick it for itself
        asked = version(project, "c1", ModelVersion.Status.CANDIDATE).pk
        why = "(c1) is a candidate that has not been promoted"
    else:
        asked = version(project, "v1", ModelVersion.Status.RETIRED, checkpoint=str(tmp_path / "gone.pt")).pk
        why = "(v1) lost its checkpoint file"

    path = path_for(video, f"model_version={asked}")

    async def scenario():
        _, _, ws = await open_socket(user, video, path=path)
        hello = ws.received[0]
        assert (hello["model"], hello["model_version"]) == ("classical (OpenCV)", None)
        told = await ws.receive()
        assert told["type"] == "error" and told["code"] == "model_changed" and "re" not in told
        assert told["error"] == (f"The model version this page started with {why}: your edits now use "
                                 "classical (OpenCV).")
        # The consumer pinned the fallback: the edit is the serving model's, not the asked version's.
        assert (await click(ws, 4))["type"] == "mask"
        assert await database_sync_to_async(version_of)(video, 4) is None
        await ws.close()

    run(scenario)


@pytest.mark.slow
def test_a_page_reconnecting_after_a_promotion_keeps_editing_with_its_version(page, open_socket):
    """The issue's case: v1 serves the page, v2 is promoted, the socket drops and the page comes
    back asking for v1 (what its hello named): its next click is v1's, a new page's is v2's."""
    from engine.segmenters import forget_segmenters

    user, video = page
    v1 = version(video.project, "v1", ModelVersion.Status.PRODUCTION)
    v2 = version(video.project, "v2", ModelVersion.Status.CANDIDATE)

    def promote_v2() -> None:
        ModelVersion.objects.filter(pk=v1.pk).update(status=ModelVersion.Status.RETIRED)
        ModelVersion.objects.filter(pk=v2.pk).update(status=ModelVersion.Status.PRODUCTION)

    async def scenario():
        _, _, first = await open_socket(user, video)
        pinned = first.received[0]["model_version"]
        assert pinned == v1.pk
        assert (await click(first, 0))["type"] == "mask"
        await database_sync_to_async(promote_v2)()
        await first.close()  # the connection drops

        _, _, back = await open_socket(user, video, path=path_for(video, f"model_version={pinned}"))
        assert back.received[0]["model_version"] == v1.pk
        assert (await click(back, 4))["type"] == "mask"
        assert await database_sync_to_async(version_of)(video, 4) == v1.pk
        assert not [m for m in back.received if m["type"] == "error"]
        await back.close()

        _, _, new_page = await open_socket(user, video)
        assert new_page.received[0]["model_version"] == v2.pk
        assert (await click(new_page, 8))["type"] == "mask"
        assert await database_sync_to_async(version_of)(video, 8) == v2.pk
        await new_page.close()

    try:
        run(scenario)
    finally:
        forget_segmenters()
