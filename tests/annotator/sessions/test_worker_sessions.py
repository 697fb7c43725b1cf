"""The worker side of live sessions (embedded mode, through the real socket): sessions are a cache
of the database — bounded, evicted, rebuilt from stored human masks with the same stored result —
and a small random-weight SAM 2 serves click + track like the classical backend."""

from __future__ import annotations

import pytest

from annotator import sessions
from annotator.models import MaskFrame, Role

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
        assert sessions.registry.evict_idle() == 1 and len(sessions.registry) == 0
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
    settings.SAM2_IMAGE_SIZE = 256
    settings.SAM2_CHECKPOINT = ""
    settings.DEVICE = "cpu"
    user, video, _ = two_videos

    async def scenario():
        _, _, ws = await open_socket(user, video)
        assert ws.received[0]["model"].startswith("SAM 2.1 hiera-t @256")
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
