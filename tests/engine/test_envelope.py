"""The worker envelope (engine.envelope): one definition the consumer writes and the worker reads."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from engine.envelope import SessionEnvelope, SessionReply

FIELDS = {"session": "s1", "reply_channel": "chan", "user_id": 4, "username": "ann", "video_id": 9, "op": "o1",
          "attempt": 0, "message": {"type": "click", "id": 3}}


def test_an_envelope_survives_the_task_queue_with_its_pin():
    pinned = SessionEnvelope(**FIELDS, model_version=None)
    unpinned = SessionEnvelope(**FIELDS)
    for envelope in (pinned, unpinned):
        carried = SessionEnvelope.model_validate(json.loads(json.dumps(envelope.wire())))  # Celery's JSON
        assert carried == envelope and carried.pinned == envelope.pinned
    assert (pinned.pinned, unpinned.pinned) == (True, False)
    retried = pinned.again(attempt=1, assign=True)
    assert (retried.attempt, retried.assign, retried.pinned, pinned.attempt) == (1, True, True, 0)


@pytest.mark.parametrize("change", [{"user_id": "ann"}, {"op": None}, {"message": "click"}, {"reply_to": "x"}],
                         ids=["user-not-a-number", "no-op", "message-not-an-object", "unknown-field"])
def test_a_malformed_envelope_is_refused(change):
    with pytest.raises(ValidationError):
        SessionEnvelope.model_validate({**FIELDS, **change})


def test_a_reply_is_a_channel_event_for_session_reply():
    reply = SessionReply(op="o1", attempt=2, worker="gpu.w1", incarnation="abc", final=True,
                         message={"v": 1, "type": "mask"})
    event = reply.event()
    assert event["type"] == "session.reply" and "model_version" not in event
    assert SessionReply.model_validate(event) == reply and not reply.repins
    fallback = SessionReply(op="o1", final=False, message={}, model_version=None)
    assert SessionReply.model_validate(fallback.event()).repins  # re-pin to the settings' model
