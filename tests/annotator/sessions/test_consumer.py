"""The annotation socket end to end in embedded mode: the real ASGI app, the in-process GPU pool,
the classical backend on a real ingested video, the test database. Nothing is mocked."""

from __future__ import annotations

import json
import threading
import time

import pytest
from channels.db import database_sync_to_async
from django.db import connections

from annotator.models import MaskFrame, Masklet, MaskSource, Prompt, Role
from engine.protocol import MAX_MESSAGE_BYTES

from .conftest import embedded_only, run

pytestmark = [embedded_only, pytest.mark.django_db(transaction=True)]

# The tiny synthetic video: 160x96, annotated frames 0, 4, ..., 20. Object 2 of the scene sits
# near the middle of frame 0; any point on the frame gives the classical backend something to segment.
POINT = {"x": 80.0, "y": 48.0}


@pytest.fixture
def team(make_user, make_project, make_ready_video):
    ann, other, rev = make_user("ann"), make_user("bob"), make_user("rev")
    project = make_project(members={ann: Role.ANNOTATOR, other: Role.ANNOTATOR, rev: Role.REVIEWER})
    return {"ann": ann, "bob": other, "rev": rev, "project": project, "video": make_ready_video(project)}


def stored(video, object_id, frame):
    return MaskFrame.objects.filter(masklet__video=video, masklet__object_id=object_id, frame_index=frame).first()


def test_hello_describes_the_session(team, open_socket):
    async def scenario():
        ok, _, ws = await open_socket(team["ann"], team["video"])
        assert ok
        hello = ws.received[0]
        assert hello["v"] == 1 and hello["protocol"] == 1 and len(hello["session"]) == 32
        assert hello["user"]["username"] == "ann" and hello["can_edit"] is True
        assert hello["video"]["frames"] == [0, 4, 8, 12, 16, 20]
        assert (hello["video"]["width"], hello["video"]["height"]) == (160, 96)
        assert hello["model"] == "classical (OpenCV)" and hello["masklets"] == []
        await ws.close()

    run(scenario)


def test_handshake_refused_for_non_members_and_unknown_or_unready_videos(team, open_socket, make_user):
    video = team["video"]
    stranger = make_user("stranger")

    async def scenario():
        assert (await open_socket(stranger, video))[:2] == (False, 4403)
        path = f"/ws/projects/{video.project.slug}/videos/{video.id + 999}/annotate/"
        assert (await open_socket(team["ann"], video, path=path))[:2] == (False, 4404)
        await database_sync_to_async(type(video).objects.filter(pk=video.pk).update)(status="ingesting")
        assert (await open_socket(team["ann"], video))[:2] == (False, 4404)

    run(scenario)


def read_elsewhere(query):
    """Run ``query()`` on a thread of its own, so on a database connection of its own: it sees only
    what is committed."""
    result: list = []
    thread = threading.Thread(target=lambda: (result.append(query()), connections.close_all()))
    thread.start()
    thread.join(timeout=30)
    return result[0] if result else None


def test_click_mask_is_committed_before_the_reply(team, open_socket, monkeypatch):
    """The moment the worker sends the ``mask`` reply, another database connection already reads the
    prompt and the mask (a reply sent from inside the edit's transaction would find neither)."""
    from engine.session_replies import Replier

    video = team["video"]
    at_send: list = []
    send = Replier.reply

    def reply_once_committed(self, msg, *, final):
        if msg.get("type") == "mask":
            at_send.append(read_elsewhere(lambda: (
                list(MaskFrame.objects.filter(masklet__video=video, frame_index=msg["frame"])
                     .values_list("revision", "rle_counts")),
                list(Prompt.objects.filter(masklet__video=video).values_list("kind", "frame_index")))))
        send(self, msg, final=final)

    monkeypatch.setattr(Replier, "reply", reply_once_committed)

    async def scenario():
        _, _, ws = await open_socket(team["ann"], video)
        created = await ws.request("add_object", label="")
        assert created["type"] == "object" and created["masklet"]["locked_by_me"] is True
        object_id = created["masklet"]["object_id"]
        started = time.perf_counter()
        reply = await ws.request("click", object_id=object_id, frame=4, positive=True, **POINT)
        elapsed_ms = (time.perf_counter() - started) * 1000
        assert reply["type"] == "mask", reply
        assert (reply["frame"], reply["revision"], reply["source"]) == (4, 1, "human")
        assert at_send == [([(1, reply["counts"])], [("point", 4)])]
        row = await database_sync_to_async(stored)(video, object_id, 4)
        assert row.source == MaskSource.HUMAN and reply["area"] == row.area > 0 and reply["model_ms"] >= 0
        print(f"click round trip {elapsed_ms:.1f} ms, model {reply['model_ms']:.1f} ms")
        await ws.close()

    run(scenario)


def test_track_streams_progress_writes_every_frame_and_spares_human_frames(team, open_socket):
    video = team["video"]

    async def scenario():
        _, _, ws = await open_socket(team["ann"], video)
        object_id = (await ws.request("add_object"))["masklet"]["object_id"]
        clicked = await ws.request("click", object_id=object_id, frame=8, positive=True, **POINT)
        track_id = await ws.send("track", frame=8, direction="both")
        started = await ws.until(lambda m: m["type"] == "track_started")
        assert started["re"] == track_id and started["total"] == 6 and started["object_ids"] == [object_id]
        done = await ws.reply_to(track_id)
        assert done["type"] == "track_done" and done["cancelled"] is False
        assert (done["done"], done["total"], done["written"], done["skipped"]) == (6, 6, 5, 1)
        progress = [m for m in ws.received if m["type"] == "track_progress"]
        assert progress and progress[-1]["done"] == 6
        assert [s["frame"] for p in progress for s in p["skipped"]] == [8]  # the person's frame stays
        frames = sorted(m["frame"] for p in progress for m in p["masks"])
        assert frames == [0, 4, 12, 16, 20]
        rows = await database_sync_to_async(lambda: {
            f.frame_index: (f.source, f.rle_counts) for f in MaskFrame.objects.filter(masklet__video=video)})()
        assert sorted(rows) == [0, 4, 8, 12, 16, 20]
        assert rows[8] == ("human", clicked["counts"])
        assert {rows[f][0] for f in (0, 4, 12, 16, 20)} == {"model"}
        # Every model frame is rated by the backend, stored, and sent as it is stored.
        quality = await database_sync_to_async(lambda: {
            f.frame_index: f.quality for f in MaskFrame.objects.filter(masklet__video=video)})()
        assert quality[8] is None and "quality" not in clicked
        assert all(0.0 <= quality[f] <= 1.0 for f in (0, 4, 12, 16, 20)), quality
        assert {m["frame"]: m["quality"] for p in progress for m in p["masks"]} == {
            f: quality[f] for f in (0, 4, 12, 16, 20)}
        # The summary counts frames where the object HAS a mask (not masks written) and names the
        # first frame, in visiting order (forward from 8, then back), where the model lost it.
        areas = await database_sync_to_async(lambda: {
            f.frame_index: f.area for f in MaskFrame.objects.filter(masklet__video=video)})()
        empty = [f for f in (8, 12, 16, 20, 4, 0) if areas[f] == 0]
        assert done["objects"] == [{"object_id": object_id, "frames": 6,
                                    "with_mask": sum(1 for a in areas.values() if a > 0),
                                    "lost_at": empty[0] if empty else None}], (done["objects"], areas)
        await ws.close()

    run(scenario)


def test_cancel_stops_a_track(team, open_socket, settings, monkeypatch):
    from annotator import sessions

    monkeypatch.setattr(sessions, "FLUSH_FRAMES", 1)
    video = team["video"]

    async def scenario():
        _, _, ws = await open_socket(team["ann"], video)
        object_id = (await ws.request("add_object"))["masklet"]["object_id"]
        await ws.request("click", object_id=object_id, frame=0, positive=True, **POINT)
        track_id = await ws.send("track", frame=0, direction="forward")
        started = await ws.until(lambda m: m["type"] == "track_started")
        await ws.send("cancel", op=started["op"])
        done = await ws.reply_to(track_id)
        assert done["type"] == "track_done" and done["cancelled"] is True
        assert done["done"] < done["total"] == 6
        # Everything reported done is stored.
        reported = {m["frame"] for p in ws.received if p["type"] == "track_progress" for m in p["masks"]}
        stored_frames = await database_sync_to_async(lambda: set(
            MaskFrame.objects.filter(masklet__video=video, source="model").values_list("frame_index", flat=True)))()
        assert reported <= stored_frames
        await ws.close()

    run(scenario)


def test_second_user_is_read_only_on_a_locked_object_and_follows_live(team, open_socket):
    video = team["video"]

    async def scenario():
        _, _, ann = await open_socket(team["ann"], video)
        _, _, bob = await open_socket(team["bob"], video)
        object_id = (await ann.request("add_object"))["masklet"]["object_id"]
        seen = await bob.until(lambda m: m["type"] == "object")
        assert seen["by"] == "ann" and seen["masklet"]["locked_by_me"] is False
        assert seen["masklet"]["lock_holder"] == "ann"

        refused = await bob.request("click", object_id=object_id, frame=0, positive=True, **POINT)
        assert refused["type"] == "error" and refused["code"] == "locked"
        assert (await bob.request("lock", object_id=object_id))["code"] == "locked"

        mask = await ann.request("click", object_id=object_id, frame=0, positive=True, **POINT)
        followed = await bob.until(lambda m: m["type"] == "mask")
        assert followed["by"] == "ann" and "re" not in followed and followed["counts"] == mask["counts"]
        rows = await database_sync_to_async(MaskFrame.objects.count)()
        assert rows == 1
        await ann.close()
        await bob.close()

    run(scenario)


def test_reviewer_cannot_edit(team, open_socket):
    video = team["video"]

    async def scenario():
        _, _, ann = await open_socket(team["ann"], video)
        object_id = (await ann.request("add_object"))["masklet"]["object_id"]
        ok, _, rev = await open_socket(team["rev"], video)
        assert ok and rev.received[0]["can_edit"] is False
        for type_, fields in (("add_object", {}), ("lock", {"object_id": object_id}),
                              ("click", {"object_id": object_id, "frame": 0, "positive": True, **POINT})):
            reply = await rev.request(type_, **fields)
            assert reply["type"] == "error" and reply["code"] == "read_only", reply
        assert (await rev.request("ping"))["type"] == "pong"
        count = await database_sync_to_async(Masklet.objects.count)()
        assert count == 1
        await ann.close()
        await rev.close()

    run(scenario)


def test_malformed_and_oversized_frames_get_errors_and_the_socket_stays_usable(team, open_socket):
    video = team["video"]

    async def scenario():
        _, _, ws = await open_socket(team["ann"], video)
        bad = [
            "not json", "[1, 2]", json.dumps({"type": "ping"}), json.dumps({"v": 1, "type": "fly"}),
            json.dumps({"v": 1, "type": "click", "id": 7, "object_id": 1, "frame": 0, "x": 1, "y": 1}),
            json.dumps({"v": 1, "type": "click", "id": 8, "object_id": 1, "frame": 3, "x": 1, "y": 1,
                        "positive": True}),
            json.dumps({"v": 1, "type": "click", "id": 9, "object_id": 1, "frame": 0, "x": 500, "y": 1,
                        "positive": True}),
            json.dumps({"v": 1, "type": "paint", "object_id": 1, "frame": 0, "counts": "not RLE!"}),
        ]
        for text in bad:
            await ws.send_raw(text)
            reply = await ws.receive()
            assert reply["type"] == "error" and reply["code"] == "bad_message", (text, reply)
        assert [m.get("re") for m in ws.received[-4:-1]] == [7, 8, 9]
        await ws.send_raw(json.dumps({"v": 1, "type": "ping", "pad": "x" * (MAX_MESSAGE_BYTES + 1)}))
        assert (await ws.receive())["code"] == "too_large"
        await ws.communicator.send_to(bytes_data=b"\x00\x01")
        assert (await ws.receive())["code"] == "bad_message"
        # A paint whose RLE does not describe a 160x96 mask reaches the worker and is refused there.
        object_id = (await ws.request("add_object"))["masklet"]["object_id"]
        refused = await ws.request("paint", object_id=object_id, frame=0, counts="0i0")
        assert refused["code"] == "bad_message"
        assert (await ws.request("ping"))["type"] == "pong"
        await ws.close()

    run(scenario)


def test_a_track_failing_midway_says_how_many_frames_it_stored_and_that_they_are_kept(team, open_socket):
    """The last frame's file is unreadable: the model fails there. The error (``re`` = the track)
    says the frames before it are stored and kept, and they are: not "nothing was changed"."""
    from pathlib import Path

    video = team["video"]
    last = sorted(Path(video.frames_dir).glob("*.jpg"))[-1]

    async def scenario():
        _, _, ws = await open_socket(team["ann"], video)
        object_id = (await ws.request("add_object"))["masklet"]["object_id"]
        assert (await ws.request("click", object_id=object_id, frame=0, positive=True, **POINT))["type"] == "mask"
        last.write_bytes(b"not a JPEG")
        track_id = await ws.send("track", frame=0, direction="forward")
        failed = await ws.reply_to(track_id)
        assert failed["type"] == "error" and failed["code"] == "segmentation", failed
        assert failed["error"] == ("Something went wrong on the model worker; 5 of 6 frames were tracked and stored "
                                   "before it and are kept. Track again to continue.")
        progress = [m for m in ws.received if m["type"] == "track_progress"]
        assert progress[-1]["done"] == 5  # the page was told the same
        model_frames = await database_sync_to_async(lambda: sorted(MaskFrame.objects.filter(
            masklet__video=video, source="model").values_list("frame_index", flat=True)))()
        assert model_frames == [4, 8, 12, 16]  # frames 0 (the person's, left alone) to 16 are done; 20 failed
        assert (await ws.request("ping"))["type"] == "pong"
        await ws.close()

    run(scenario)


def test_error_words_for_messages_and_for_tracks_that_stop_midway():
    """The one place for the words of a worker's error reply (``sessions.error_reply``)."""
    from annotator.services.annotation import EditRefused
    from annotator.sessions import TrackFailed, error_reply
    from engine.session_replies import track_stopped
    from segmentation.segmenter import SegmentationError

    assert error_reply(RuntimeError("boom")) == (
        "segmentation", "Something went wrong on the model worker; nothing was changed. Try again.")
    assert error_reply(TrackFailed(RuntimeError("boom"), 1, 6)) == (
        "segmentation", "Something went wrong on the model worker; 1 of 6 frames was tracked and stored before it "
                        "and is kept. Track again to continue.")
    assert track_stopped("Lost", 2, 6, reported=True) == (
        "Lost; at least 2 of 6 frames were tracked and stored before it and are kept. Track again to continue.")
    assert track_stopped("Lost", 0, 6, reported=True) == "Lost; any frames it stored are kept. Track again to continue."
    assert error_reply(TrackFailed(EditRefused("locked", "Someone else holds the lock."), 0, 6)) == (
        "locked", "Someone else holds the lock; no frame had been stored yet. Track again to continue.")
    assert error_reply(TrackFailed(SegmentationError("out of memory"), 3, 6)) == (
        "segmentation", "The model could not do that: out of memory; 3 of 6 frames were tracked and stored before "
                        "it and are kept. Track again to continue.")


def test_a_track_cut_off_by_a_channel_layer_outage_says_what_it_stored(team, open_socket, monkeypatch):
    """The channel layer fails under the socket mid-track (as when Redis restarts): the consumer gives
    the track up (the worker stops it) and says how many frames the socket saw stored, at least."""
    from channels.layers import InMemoryChannelLayer
    from django.core.cache import cache

    from annotator import sessions
    from engine.session_flags import abandoned_op_key
    from engine.session_replies import Replier

    monkeypatch.setattr(sessions, "FLUSH_FRAMES", 1)
    video = team["video"]
    armed = {"receive": False}
    receive, reply = InMemoryChannelLayer.receive, Replier.reply

    async def failing_receive(self, channel):
        if armed["receive"]:
            armed["receive"] = False
            raise ConnectionError("test: the channel layer is restarting")
        return await receive(self, channel)

    def reply_then_wait(self, msg, *, final, **fields):
        if msg.get("type") == "track_progress" and not armed.get("done"):
            armed.update(receive=True, done=True)
            reply(self, msg, final=final, **fields)
            abandoned = abandoned_op_key(self.envelope.op, self.envelope.attempt)
            deadline = time.monotonic() + 20
            while not cache.get(abandoned) and time.monotonic() < deadline:  # the consumer gave it up
                time.sleep(0.02)
            return
        reply(self, msg, final=final, **fields)

    monkeypatch.setattr(InMemoryChannelLayer, "receive", failing_receive)
    monkeypatch.setattr(Replier, "reply", reply_then_wait)

    async def scenario():
        _, _, ws = await open_socket(team["ann"], video)
        object_id = (await ws.request("add_object"))["masklet"]["object_id"]
        assert (await ws.request("click", object_id=object_id, frame=0, positive=True, **POINT))["type"] == "mask"
        track_id = await ws.send("track", frame=0, direction="forward")
        lost = await ws.reply_to(track_id)
        seen = max(m["done"] for m in ws.received if m["type"] == "track_progress")
        assert lost["type"] == "error" and lost["code"] == "worker_lost", lost
        assert lost["error"] == ("The connection to the model workers was interrupted while tracking; at least "
                                 f"{seen} of 6 frames were tracked and stored before it and are kept. Track again "
                                 "to continue.")
        stored_frames = await database_sync_to_async(lambda: MaskFrame.objects.filter(masklet__video=video).count())()
        assert stored_frames >= seen
        assert not armed["receive"]  # the outage happened
        done = await ws.request("track", frame=0, direction="forward")  # and the page can track again
        assert done["type"] == "track_done" and done["done"] == 6, done
        await ws.close()

    run(scenario)
