"""The socket's half of a live session (``engine.session_routing``), without the data app: where each
model message goes, what waits, and what happens to the messages a lost or restarted worker held.

The broker is replaced by a list of what was submitted (the real path, a Celery worker killed and
restarted under a socket, is tests/annotator/sessions/test_faults.py's); heartbeats and flags are the
real cache keys.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from django.core.cache import cache

from engine import heartbeat, protocol, session_routing, workers
from engine.envelope import SessionEnvelope, SessionReply
from engine.session_flags import abandoned_op_key, cancel_key

WORKER = workers.queue_for_node("gpu0@host")


@pytest.fixture
def routed(monkeypatch, settings):
    """(router, what was submitted as (queue, envelope), what the page was sent), in services mode."""
    settings.EMBEDDED = False
    submitted: list[tuple[str, SessionEnvelope]] = []
    page: list[dict[str, Any]] = []

    def submit(task: str, wire: dict, *, queue: str) -> None:
        assert task == "annotator.session_message"
        submitted.append((queue, SessionEnvelope.model_validate(wire)))

    async def send_to_page(msg: dict[str, Any]) -> None:
        page.append(msg)

    monkeypatch.setattr(session_routing, "submit", submit)
    router = session_routing.SessionRouter(uuid.uuid4().hex, send_to_page)
    router.owner = None  # services mode, no worker holds this person's session yet
    yield router, submitted, page
    cache.delete(heartbeat.worker_heartbeat_key(WORKER))


def envelope(name: str, kind: str = "click") -> SessionEnvelope:
    """A message whose op is ``name`` and a fresh suffix (flags of other tests' ops are never read)."""
    message = {"type": kind, "id": f"m-{name}", "object_id": 1, "frame": 0}
    return SessionEnvelope(session="s1", reply_channel="chan", user_id=1, video_id=1, op=f"{name}-{uuid.uuid4().hex}",
                           message=message)


def reply(env: SessionEnvelope, *, final: bool, worker: str | None = WORKER, incarnation: str = "i1",
          attempt: int | None = None, message: dict | None = None) -> SessionReply:
    return SessionReply(op=env.op, attempt=env.attempt if attempt is None else attempt, worker=worker,
                        incarnation=incarnation, final=final, message=message or {"type": "mask", "re": env.op})


def test_messages_wait_for_the_first_worker_to_name_itself_then_go_to_its_own_queue(routed):
    router, submitted, page = routed
    first, second = envelope("a"), envelope("b")

    async def scenario():
        await router.send(first)
        await router.send(second)
        assert [(queue, env.op, env.assign) for queue, env in submitted] == [("gpu", first.op, True)]
        assert page == [protocol.message("worker", state="assigning")]
        assert await router.take_reply(reply(first, final=True))  # the worker names itself: the rest follows
        assert [(queue, env.op, env.assign) for queue, env in submitted][1:] == [(WORKER, second.op, False)]
        assert (router.owner, router.owner_incarnation) == (WORKER, "i1") and list(router.in_flight) == [second.op]
        assert not await router.take_reply(reply(first, final=True))  # answered already: not for the page
        assert not await router.take_reply(reply(second, final=True, attempt=1))  # a delivery never made
        await router.cancel(second.op)
        assert cache.get(cancel_key(second.op))
        with pytest.raises(protocol.ProtocolError, match="No running operation"):
            await router.cancel(first.op)

    asyncio.run(scenario())


def test_a_lost_workers_track_goes_again_to_the_shared_queue_and_its_edits_fail_in_words(routed):
    router, submitted, page = routed
    router.owner, router.owner_incarnation = WORKER, "i1"
    track, click = envelope("t", "track"), envelope("c")

    async def scenario():
        await router.send(track)
        await router.send(click)
        assert await router.take_reply(reply(track, final=False, message={"type": "track_progress", "done": 2,
                                                                          "total": 6}))
        assert [queue for queue, _ in submitted] == [WORKER, WORKER] and router.tracking()
        await router._check_workers()  # no heartbeat under WORKER: its process is gone
        assert page == [protocol.message("worker", state="lost"),
                        protocol.message("worker", state="assigning"),  # the track, to whoever takes it
                        protocol.error("worker_lost", "The model worker stopped before finishing this; it was not "
                                                      "saved. Please do it again.", re="m-c")]
        queue, again = submitted[-1]
        assert (queue, again.op, again.attempt, again.assign) == ("gpu", track.op, 1, True)  # to whoever takes it
        assert list(router.in_flight) == [track.op] and router.owner is None
        assert cache.get(abandoned_op_key(track.op, 0)) and cache.get(abandoned_op_key(click.op, 0))  # never run late
        assert not await router.take_reply(reply(track, final=True, attempt=0))  # the lost delivery's answer

    asyncio.run(scenario())


def test_a_worker_restarted_under_its_name_counts_as_lost(routed):
    router, submitted, page = routed
    router.owner, router.owner_incarnation = WORKER, "an earlier process"
    click = envelope("c")

    async def scenario():
        await router.send(click)
        heartbeat.beat_worker(WORKER)  # beating again, as this process: another incarnation
        await router._check_workers()
        assert [msg.get("code") for msg in page] == [None, "worker_lost"] and not router.in_flight

    asyncio.run(scenario())


def test_an_interrupted_channel_layer_gives_up_what_is_in_flight_saying_what_a_track_stored(routed):
    router, submitted, page = routed
    router.owner, router.owner_incarnation = WORKER, "i1"
    track = envelope("t", "track")

    async def scenario():
        await router.send(track)
        await router.take_reply(reply(track, final=False, message={"type": "track_progress", "done": 3, "total": 6}))
        await router.interrupted()
        assert page[-1]["code"] == "worker_lost" and "at least 3 of 6 frames" in page[-1]["error"]
        assert not router.in_flight and router.owner is None and cache.get(abandoned_op_key(track.op, 0))

    asyncio.run(scenario())
