"""The worker side of live sessions (embedded mode, through the real socket): sessions are a cache
of the database — bounded, evicted, rebuilt from stored human masks with the same stored result —
and a small random-weight SAM 2 serves click + track like the classical backend."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from channels.db import database_sync_to_async

from annotator import sessions
from annotator.models import MaskFrame, Role
from engine import heartbeat
from engine.envelope import SessionEnvelope

from .conftest import embedded_only, run

pytestmark = [embedded_only, pytest.mark.django_db(transaction=True)]

POINT = {"x": 80.0, "y": 48.0}


@pytest.fixture
def two_videos(make_user, make_project, make_ready_video):
    ann = make_user("ann")
    project = make_project(members={ann: Role.ANNOTATOR})
    return ann, make_ready_video(project), make_ready_video(project)


def masks_of(video) -> dict[tuple[int, int], tuple[str, str]]:
    return {(f.masklet.object_id, f.frame_index): (f.source, f.rle_counts)
            for f in MaskFrame.objects.filter(masklet__video=video).select_related("masklet")}


async def annotate(open_socket, user, first, second, interleave: bool) -> None:
    """Click on both videos, then correct and track the first (a rebuild when sessions were evicted)."""
    _, _, ws_a = await open_socket(user, first)
    _, _, ws_b = await open_socket(user, second)
    object_a = (await ws_a.request("add_object"))["masklet"]["object_id"]
    object_b = (await ws_b.request("add_object"))["masklet"]["object_id"]
    assert (await ws_a.request("click", object_id=object_a, frame=0, positive=True, **POINT))["type"] == "mask"
    if interleave:
        assert (await ws_b.request("click", object_id=object_b, frame=0, positive=True, **POINT))["type"] == "mask"
    assert (await ws_a.request("click", object_id=object_a, frame=12, positive=True, x=60.0, y=40.0))["type"] == "mask"
    if interleave:
        assert (await ws_b.request("track", frame=0, direction="forward"))["type"] == "track_done"
    done = await ws_a.request("track", frame=0, direction="forward")
    assert done["type"] == "track_done" and done["done"] == 6, done
    await ws_a.close()
    await ws_b.close()


def test_evicted_sessions_are_rebuilt_with_the_same_stored_state(two_videos, open_socket, settings,
                                                                 make_ready_video):
    user, first, second = two_videos

    # Reference: one session per video, never evicted.
    settings.WORKER_SESSIONS = 4
    run(lambda: annotate(open_socket, user, first, second, interleave=False))
    reference = masks_of(first)
    assert len(reference) == 6

    # Same edits on fresh videos, with room for one live session: every switch evicts the other.
    sessions.registry.clear()
    settings.WORKER_SESSIONS = 1
    third, fourth = make_ready_video(first.project), make_ready_video(first.project)
    run(lambda: annotate(open_socket, user, third, fourth, interleave=True))
    assert len(sessions.registry) == 1
    rebuilt = masks_of(third)
    assert rebuilt.keys() == reference.keys()
    assert {key: value[0] for key, value in rebuilt.items()} == {key: value[0] for key, value in reference.items()}
    assert rebuilt == reference


def test_idle_sessions_are_evicted(two_videos, open_socket, settings):
    user, first, _ = two_videos

    async def scenario():
        _, _, ws = await open_socket(user, first)
        object_id = (await ws.request("add_object"))["masklet"]["object_id"]
        await ws.request("click", object_id=object_id, frame=0, positive=True, **POINT)
        assert len(sessions.registry) == 1
        settings.SESSION_IDLE_SECONDS = 0
        # The reply leaves before the worker thread lets go of the session: a busy one is never evicted.
        for _ in range(100):
            if sessions.registry.evict_idle():
                break
            await asyncio.sleep(0.01)
        assert len(sessions.registry) == 0
        settings.SESSION_IDLE_SECONDS = 600
        # The next message rebuilds the session from the stored click mask, transparently.
        done = await ws.request("track", frame=0, direction="forward")
        assert done["type"] == "track_done" and done["written"] == 5
        await ws.close()

    run(scenario)


@pytest.mark.slow
def test_small_random_weight_sam2_serves_click_and_track(two_videos, open_socket, settings):
    from engine.segmenters import forget_segmenters

    settings.SEGMENTER = "sam2"
    settings.SAM2_IMAGE_SIZE = 128  # any multiple of 32: a quarter of 256's encoder work
    settings.SAM2_CHECKPOINT = ""
    settings.DEVICE = "cpu"
    user, video, _ = two_videos

    async def scenario():
        _, _, ws = await open_socket(user, video)
        assert ws.received[0]["model"].startswith("SAM 2.1 hiera-t @128")
        object_id = (await ws.request("add_object"))["masklet"]["object_id"]
        mask = await ws.request("click", object_id=object_id, frame=4, positive=True, timeout=300, **POINT)
        assert mask["type"] == "mask" and mask["source"] == "human" and mask["model_ms"] > 0, mask
        done = await ws.request("track", frame=4, direction="both", timeout=300)
        assert done["type"] == "track_done" and (done["done"], done["total"]) == (6, 6), done
        assert done["written"] + done["skipped"] == 6
        await ws.close()

    try:
        run(scenario)
        rows = masks_of(video)
        assert len(rows) == 6 and rows[(1, 4)][0] == "human"
    finally:
        forget_segmenters()


def test_a_session_reloads_an_object_someone_else_edited(make_user, make_project, make_ready_video, open_socket):
    """My lock expired, Bob took the object and painted a frame, I took it back: my live session
    must track from Bob's stored mask, exactly as a session built fresh from the database would."""
    from datetime import timedelta

    from django.utils import timezone

    from annotator.models import Masklet
    from annotator.services import annotation
    from segmentation.masks import encode_rle

    ann, bob = make_user("ann"), make_user("bob")
    project = make_project(members={ann: Role.ANNOTATOR, bob: Role.ANNOTATOR})

    def bob_paints(video) -> None:
        Masklet.objects.filter(video=video).update(lock_expires_at=timezone.now() - timedelta(seconds=1))
        masklet = annotation.acquire_lock(Masklet.objects.select_related("video__project").get(video=video), bob)
        painted = np.zeros((video.height, video.width), dtype=bool)
        painted[10:40, 20:70] = True  # somewhere else than ann's object
        rle = encode_rle(painted)
        annotation.record_edit(masklet, bob, frame_index=8, kind="paint", payload={"counts": rle["counts"]},
                               rle=rle, session_id="bob")
        annotation.release_lock(masklet, bob)

    async def edit(video, fresh_session: bool) -> None:
        _, _, ws = await open_socket(ann, video)
        object_id = (await ws.request("add_object"))["masklet"]["object_id"]
        assert (await ws.request("click", object_id=object_id, frame=0, positive=True, **POINT))["type"] == "mask"
        await database_sync_to_async(bob_paints)(video)
        assert (await ws.request("lock", object_id=object_id))["type"] == "object"
        if fresh_session:
            sessions.registry.clear()
        done = await ws.request("track", frame=0, direction="forward")
        assert done["type"] == "track_done" and done["skipped"] == 2, done  # frame 0 (mine), 8 (bob's)
        await ws.close()

    stale_candidate, reference = make_ready_video(project), make_ready_video(project)
    run(lambda: edit(reference, fresh_session=True))
    run(lambda: edit(stale_candidate, fresh_session=False))
    expected, got = masks_of(reference), masks_of(stale_candidate)
    assert got == expected
    # Bob's frame steered the track: frame 12 follows his mask, not ann's click.
    assert expected[(1, 12)] != expected[(1, 4)]


def test_the_heartbeat_sweep_closes_idle_sessions_but_not_busy_ones(two_videos, settings):
    user, first, second = two_videos
    from engine.segmenters import serving_model

    serving = serving_model(first.project)
    busy, _ = sessions.live_session(first, user.pk, serving)  # checked out: in use
    idle, _ = sessions.live_session(second, user.pk, serving)
    sessions.registry.release(idle)
    settings.SESSION_IDLE_SECONDS = 0
    assert sessions.registry.evict_idle in heartbeat._worker_hooks
    assert sessions.registry.evict_idle() == 1
    assert sessions.registry.keys() == [(first.pk, user.pk)]
    sessions.registry.release(busy)
    assert sessions.registry.evict_idle() == 1 and len(sessions.registry) == 0


def test_an_object_deleted_and_created_again_under_its_id_is_edited_fresh(two_videos, open_socket):
    user, video, _ = two_videos

    async def scenario():
        _, _, ws = await open_socket(user, video)
        first = (await ws.request("add_object"))["masklet"]["object_id"]
        assert (await ws.request("click", object_id=first, frame=0, positive=True, **POINT))["type"] == "mask"
        assert (await ws.request("delete_object", object_id=first))["type"] == "object_deleted"
        again = (await ws.request("add_object"))["masklet"]["object_id"]
        assert again == first  # ids count up from the highest left: the id names a new masklet
        mask = await ws.request("click", object_id=again, frame=4, positive=True, **POINT)
        assert mask["type"] == "mask" and mask["revision"] == 1, mask
        done = await ws.request("track", frame=4, direction="forward")
        assert done["type"] == "track_done" and done["skipped"] == 1, done  # only the new click's frame
        await ws.close()

    run(scenario)
    assert sorted(frame for (_, frame) in masks_of(video)) == [4, 8, 12, 16, 20]


def two_versions(video):
    """v1 in production and a candidate v2: random-weight tiny SAM 2 at 128 px (no checkpoint file)."""
    from engine.models import ModelVersion

    tiny = {"sam2_config": "configs/sam2.1/sam2.1_hiera_t.yaml", "image_size": 128, "checkpoint": ""}
    v1 = ModelVersion.objects.create(project=video.project, name="v1", status=ModelVersion.Status.PRODUCTION, **tiny)
    v2 = ModelVersion.objects.create(project=video.project, name="v2", **tiny)
    return v1, v2


def promote(old, new) -> None:
    from engine.models import ModelVersion

    ModelVersion.objects.filter(pk=old.pk).update(status=ModelVersion.Status.RETIRED)
    ModelVersion.objects.filter(pk=new.pk).update(status=ModelVersion.Status.PRODUCTION)


def version_of(video, frame: int) -> int | None:
    return MaskFrame.objects.get(masklet__video=video, frame_index=frame).model_version_id


@pytest.mark.slow
def test_an_open_page_keeps_its_model_version_after_promotion_and_eviction_and_a_new_page_gets_the_new_one(
        two_videos, open_socket, monkeypatch):
    """Masks record the version that made them; a promotion reaches newly opened pages only, even
    when the open page's live session is evicted (or lost with its worker) and rebuilt."""
    from engine.segmenters import forget_segmenters

    user, video, _ = two_videos
    v1, v2 = two_versions(video)

    async def scenario():
        _, _, first_page = await open_socket(user, video)
        assert first_page.received[0]["model"].startswith("v1 — SAM 2.1 hiera-t @128")
        object_id = (await first_page.request("add_object"))["masklet"]["object_id"]
        click = {"object_id": object_id, "positive": True, "timeout": 300, **POINT}
        assert (await first_page.request("click", frame=0, **click))["type"] == "mask"
        assert await database_sync_to_async(version_of)(video, 0) == v1.pk

        await database_sync_to_async(promote)(v1, v2)
        monkeypatch.setattr(sessions, "CONTEXT_SECONDS", 0.0)  # from now on every message re-reads the context
        assert (await first_page.request("click", frame=4, **click))["type"] == "mask"
        assert await database_sync_to_async(version_of)(video, 4) == v1.pk  # the open page keeps v1

        sessions.registry.clear()  # evicted, or its worker lost: rebuilt from the database on the next click
        assert (await first_page.request("click", frame=8, **click))["type"] == "mask"
        assert await database_sync_to_async(version_of)(video, 8) == v1.pk  # still v1, not production's v2
        assert not [m for m in first_page.received if m.get("code") == "model_changed"]
        await first_page.close()

        _, _, second_page = await open_socket(user, video)
        assert second_page.received[0]["model"].startswith("v2 — SAM 2.1 hiera-t @128")
        assert (await second_page.request("click", frame=12, **click))["type"] == "mask"
        assert await database_sync_to_async(version_of)(video, 12) == v2.pk  # a new page gets v2
        await second_page.close()

    try:
        run(scenario)
    finally:
        forget_segmenters()


@pytest.mark.slow
def test_a_page_whose_version_was_deleted_falls_back_to_production_and_is_told(two_videos, open_socket):
    from engine.models import ModelVersion
    from engine.segmenters import forget_segmenters

    user, video, _ = two_videos
    v1, v2 = two_versions(video)

    def promote_and_delete_v1() -> None:
        promote(v1, v2)
        ModelVersion.objects.filter(pk=v1.pk).delete()

    async def scenario():
        _, _, page = await open_socket(user, video)
        object_id = (await page.request("add_object"))["masklet"]["object_id"]
        click = {"object_id": object_id, "positive": True, "timeout": 300, **POINT}
        assert (await page.request("click", frame=0, **click))["type"] == "mask"
        await database_sync_to_async(promote_and_delete_v1)()
        sessions.registry.clear()
        mark = len(page.received)
        assert (await page.request("click", frame=4, **click))["type"] == "mask"
        assert await database_sync_to_async(version_of)(video, 4) == v2.pk
        told = page.received[mark:]
        worker = next(m for m in told if m["type"] == "worker")
        assert worker["state"] == "ready" and worker["model"].startswith("v2 — SAM 2.1 hiera-t @128")
        assert worker["model_version"] == v2.pk  # what the page asks for if it reconnects
        notice = next(m for m in told if m["type"] == "error")
        assert notice["code"] == "model_changed" and "re" not in notice
        assert notice["error"].startswith("The model version this page started with no longer exists in this "
                                          "project: your edits now use v2")
        # The consumer now holds v2 for the page: later clicks, even after another rebuild, need no notice.
        sessions.registry.clear()
        mark = len(page.received)
        assert (await page.request("click", frame=8, **click))["type"] == "mask"
        assert await database_sync_to_async(version_of)(video, 8) == v2.pk
        assert not [m for m in page.received[mark:] if m["type"] in ("error", "worker")]
        await page.close()

    try:
        run(scenario)
    finally:
        forget_segmenters()


def test_page_model_keeps_a_retired_version_and_falls_back_when_its_checkpoint_is_gone(two_videos, tmp_path):
    """Which model a page's envelope gets (no model is loaded here)."""
    from engine.models import ModelVersion

    _, video, _ = two_videos
    project = video.project
    checkpoint = tmp_path / "v1.pt"
    checkpoint.write_bytes(b"weights")
    v1 = ModelVersion.objects.create(project=project, name="v1", sam2_config="configs/sam2.1/sam2.1_hiera_t.yaml",
                                     image_size=256, checkpoint=str(checkpoint), status=ModelVersion.Status.RETIRED)

    def envelope(**pin):
        return SessionEnvelope.model_validate({"session": "s", "reply_channel": "c", "user_id": 1,
                                               "video_id": video.pk,
                                               "op": "o", "message": {"type": "click"}, **pin})

    kept, notice = sessions.page_model(project, envelope(model_version=v1.pk))
    assert (kept.model_version_id, notice) == (v1.pk, None)  # retired, but the page started with it
    assert sessions.page_model(project, envelope(model_version=None)) == (sessions.settings_model(), None)
    assert sessions.page_model(project, envelope()) == (sessions.serving_model(project), None)  # not pinned
    checkpoint.unlink()
    fallback, notice = sessions.page_model(project, envelope(model_version=v1.pk))
    assert fallback == sessions.serving_model(project) and fallback.backend == "classical"
    assert notice == ("The model version this page started with (v1) lost its checkpoint file: your edits now use "
                      "classical (OpenCV).")
