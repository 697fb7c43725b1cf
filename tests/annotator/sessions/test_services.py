"""Services mode: real Redis (broker, channel layer, cache) and PostgreSQL, real ``celery worker -Q gpu``
subprocesses. The consumer runs in this process; model work only in the workers."""

from __future__ import annotations

import time

import numpy as np
import pytest
from channels.db import database_sync_to_async
from django.core.cache import cache

from annotator.models import MaskFrame, Role
from engine import workers
from segmentation.masks import encode_rle

from .conftest import run, services_only

pytestmark = [services_only, pytest.mark.services, pytest.mark.django_db(transaction=True)]

POINT = {"x": 80.0, "y": 48.0}


@pytest.fixture
def ann_video(make_user, make_project, make_ready_video):
    cache.clear()  # this run's Redis database: no owners or heartbeats left by earlier runs
    ann = make_user("ann")
    project = make_project(members={ann: Role.ANNOTATOR})
    return ann, make_ready_video(project)


def session_messages(worker) -> int:
    return sum(1 for line in worker.log().splitlines() if "annotator.session_message[" in line and "received" in line)


def test_click_and_track_on_a_real_worker_commit_before_the_reply(ann_video, open_socket, gpu_worker):
    user, video = ann_video
    worker = gpu_worker()

    async def scenario():
        _, _, ws = await open_socket(user, video)
        object_id = (await ws.request("add_object"))["masklet"]["object_id"]
        latencies, model = [], []
        for frame in (0, 4, 8, 0, 4, 8):
            started = time.perf_counter()
            mask = await ws.request("click", object_id=object_id, frame=frame, positive=True, **POINT)
            latencies.append((time.perf_counter() - started) * 1000)
            assert mask["type"] == "mask", mask
            row = await database_sync_to_async(
                MaskFrame.objects.filter(masklet__video=video, frame_index=frame).values_list("rle_counts",
                                                                                               flat=True).first)()
            assert row == mask["counts"]
            model.append(mask["model_ms"])
        states = [m for m in ws.received if m["type"] == "worker"]
        assert [m["state"] for m in states][:2] == ["assigning", "ready"]
        overhead = sorted(a - b for a, b in zip(latencies[1:], model[1:], strict=True))
        print(f"services click: round trip {sorted(latencies[1:])} ms, overhead median {overhead[2]:.1f} ms")

        done = await ws.request("track", frame=0, direction="forward", timeout=120)
        assert done["type"] == "track_done" and done["done"] == 6 and done["written"] == 3 and done["skipped"] == 3
        await ws.close()

    run(scenario)
    assert workers.session_owner(video.id, user.id)[0] == worker.queue
    assert session_messages(worker) == 7


def test_a_session_stays_on_the_worker_that_holds_it(ann_video, open_socket, gpu_worker):
    user, video = ann_video
    first, second = gpu_worker(), gpu_worker()

    async def scenario():
        _, _, ws = await open_socket(user, video)
        object_id = (await ws.request("add_object"))["masklet"]["object_id"]
        # Sent at once, before any reply names the worker: the consumer holds the rest back.
        ids = [await ws.send("click", object_id=object_id, frame=frame, positive=True, **POINT)
               for frame in (0, 4, 8, 12, 16)]
        for msg_id in ids:
            assert (await ws.reply_to(msg_id))["type"] == "mask"
        await ws.close()

        # A reloaded page goes back to the same warm worker.
        _, _, again = await open_socket(user, video)
        assert (await again.request("click", object_id=object_id, frame=20, positive=True, **POINT))["type"] == "mask"
        await again.close()

    run(scenario)
    counts = sorted([session_messages(first), session_messages(second)])
    assert counts == [0, 6], counts


def test_worker_lost_mid_track_moves_the_track_to_another_worker(ann_video, open_socket, gpu_worker, settings):
    """The watchdog path (helper D's fault tests go further): SIGKILL the owner while it tracks."""
    user, video = ann_video
    settings.WORKER_HEARTBEAT_SECONDS = 2
    # A random-weight SAM 2 on the CPU takes a good fraction of a second per frame: time to kill it.
    first = gpu_worker(env={"MASKLET_SEGMENTER": "sam2", "MASKLET_SAM2_IMAGE_SIZE": "256", "MASKLET_DEVICE": "cpu"})

    async def scenario():
        _, _, ws = await open_socket(user, video)
        object_id = (await ws.request("add_object"))["masklet"]["object_id"]
        # A painted mask, not a click: a random-weight model's click mask may be empty, and an empty
        # mask gives the next worker nothing to rebuild the object from ("nothing to track").
        painted = np.zeros((video.height, video.width), dtype=bool)
        painted[30:60, 60:100] = True
        mask = await ws.request("paint", object_id=object_id, frame=0, counts=encode_rle(painted)["counts"])
        assert mask["type"] == "mask" and mask["area"] > 0, mask
        second = gpu_worker()
        track_id = await ws.send("track", frame=0, direction="forward")
        await ws.until(lambda m: m["type"] == "track_progress", timeout=60)
        first.kill()
        lost = await ws.until(lambda m: m["type"] == "worker" and m["state"] == "lost", timeout=60)
        assert lost
        done = await ws.reply_to(track_id, timeout=120)
        assert done["type"] == "track_done" and done["done"] == 6, done
        await ws.close()
        return second

    second = run(scenario)
    stored = MaskFrame.objects.filter(masklet__video=video).count()
    assert stored == 6
    assert workers.session_owner(video.id, user.id)[0] == second.queue
