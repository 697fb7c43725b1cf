"""Protocol v1 (engine/protocol.py): every type's fields are checked strictly, with sentences a person can read;
the pydantic models, their JSON Schema and the server's messages agree."""

from __future__ import annotations

import json

import jsonschema
import pytest
from pydantic import ValidationError

from engine.protocol import (
    CLIENT_MODELS,
    CONSUMER_TYPES,
    MAX_MESSAGE_BYTES,
    SERVER_MESSAGE,
    VIDEO_STATUS_MESSAGE,
    WORKER_TYPES,
    ProtocolError,
    check_against_video,
    error,
    json_schema,
    message,
    message_id,
    parse_client_message,
)


def parse(**fields):
    return parse_client_message(json.dumps({"v": 1, **fields}))


def refused(text, code="bad_message") -> str:
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(text if isinstance(text, str) else json.dumps(text))
    assert caught.value.code == code
    return caught.value.message


VALID = {
    "ping": {},
    "add_object": {"label": "car"},
    "update_object": {"object_id": 1, "label": "car"},
    "delete_object": {"object_id": 1},
    "lock": {"object_id": 1},
    "unlock": {"object_id": 1},
    "submit": {"object_id": 1},
    "reopen": {"object_id": 1},
    "cancel": {"op": "abc"},
    "click": {"object_id": 1, "frame": 4, "x": 10.5, "y": 3, "positive": False},
    "box": {"object_id": 1, "frame": 4, "box": [1, 2, 30, 40]},
    "paint": {"object_id": 1, "frame": 4, "counts": "0i0"},
    "clear": {"object_id": 1, "frame": 4},
    "restore": {"object_id": 1, "frame": 4, "revision": 0},
    "track": {"frame": 0, "direction": "both"},
}


def test_every_type_has_a_valid_example():
    assert set(VALID) == set(CLIENT_MODELS)


@pytest.mark.parametrize("type_", sorted(VALID))
def test_valid_messages_parse_with_their_id(type_):
    msg = parse(type=type_, id="a-1", **VALID[type_])
    assert msg["type"] == type_ and msg["id"] == "a-1" and msg["v"] == 1


@pytest.mark.parametrize("type_", sorted(t for t in VALID if VALID[t]))
def test_every_required_field_is_required(type_):
    for name in VALID[type_]:
        if type_ == "add_object":
            continue  # its label is optional
        fields = {k: v for k, v in VALID[type_].items() if k != name}
        assert f'needs "{name}"' in refused({"v": 1, "type": type_, **fields})


def test_defaults_are_filled_in():
    assert parse(type="add_object")["label"] == ""
    track = parse(type="track", frame=0, direction="forward")
    assert track["object_ids"] is None and track["overwrite_human"] is False


@pytest.mark.parametrize(("fields", "words"), [
    ({"type": "click", "object_id": 0, "frame": 0, "x": 1, "y": 1, "positive": True}, '"object_id" must be between'),
    ({"type": "click", "object_id": True, "frame": 0, "x": 1, "y": 1, "positive": True}, "whole number"),
    ({"type": "click", "object_id": 1, "frame": -4, "x": 1, "y": 1, "positive": True}, '"frame" must be between'),
    ({"type": "click", "object_id": 1, "frame": 1.5, "x": 1, "y": 1, "positive": True}, "whole number"),
    ({"type": "click", "object_id": 1, "frame": 0, "x": -1, "y": 1, "positive": True}, "must not be negative"),
    ({"type": "click", "object_id": 1, "frame": 0, "x": "1", "y": 1, "positive": True}, "number of pixels"),
    ({"type": "click", "object_id": 1, "frame": 0, "x": 1, "y": 1, "positive": 1}, "true or false"),
    ({"type": "click", "object_id": 1, "frame": 0, "x": 1, "y": 1, "positive": True, "extra": 1}, "no field extra"),
    ({"type": "box", "object_id": 1, "frame": 0, "box": [1, 2, 3]}, "four numbers"),
    ({"type": "box", "object_id": 1, "frame": 0, "box": [5, 2, 3, 9]}, "x0 < x1"),
    ({"type": "paint", "object_id": 1, "frame": 0, "counts": "abc~"}, "COCO compressed RLE"),
    ({"type": "paint", "object_id": 1, "frame": 0, "counts": 5}, "must be a string"),
    ({"type": "update_object", "object_id": 1, "label": "x" * 101}, "at most 100"),
    ({"type": "restore", "object_id": 1, "frame": 0, "revision": -1}, '"revision" must be between'),
    ({"type": "track", "frame": 0, "direction": "sideways"}, "forward, backward, both"),
    ({"type": "track", "frame": 0, "direction": "both", "object_ids": []}, "non-empty list"),
    ({"type": "track", "frame": 0, "direction": "both", "object_ids": [1, 1]}, "twice"),
    ({"type": "track", "frame": 0, "direction": "both", "overwrite_human": "yes"}, "true or false"),
    ({"type": "cancel", "op": "x" * 65}, "at most 64"),
    ({"type": "ping", "id": "x" * 65}, "longer than 64"),
    ({"type": "ping", "id": [1]}, "string or a whole number"),
    ({"type": "ping", "id": "a\x00"}, '"id" contains a NUL character'),
    ({"type": "add_object", "label": "car\x00"}, '"label" contains a NUL character'),
    ({"type": "update_object", "object_id": 1, "label": "\ud800"}, '"label" contains a lone surrogate (\\ud800)'),
    ({"type": "cancel", "op": "\udc00x"}, '"op" contains a lone surrogate'),
    ({"type": "fly"}, "Unknown message type"),
    ({"type": 3}, "Unknown message type"),
])
def test_field_errors_say_what_is_wrong(fields, words):
    assert words in refused({"v": 1, **fields})


@pytest.mark.parametrize("text", ["", "nope", "[]", "3", '"ping"', '{"type": "ping"}', '{"v": 2, "type": "ping"}',
                                  '{"v": true, "type": "ping"}', "[" * 100000])
def test_not_a_v1_object_is_a_bad_message(text):
    refused(text)


def test_oversized_frames_are_refused_before_parsing():
    text = json.dumps({"v": 1, "type": "ping", "id": 1, "pad": "x" * MAX_MESSAGE_BYTES})
    assert "at most" in refused(text, code="too_large")


def test_message_id_is_recovered_from_a_refused_message():
    assert message_id('{"v": 1, "type": "fly", "id": 12}') == 12
    assert message_id("not json") is None
    assert message_id('{"id": {"a": 1}}') is None


def test_video_checks():
    frames = {0, 4, 8}
    check_against_video(parse(**{"type": "click", **VALID["click"]}), 160, 96, frames)
    with pytest.raises(ProtocolError, match="not an annotated frame"):
        check_against_video(parse(type="clear", object_id=1, frame=5), 160, 96, frames)
    with pytest.raises(ProtocolError, match="outside the 160x96 frame"):
        check_against_video(parse(type="click", object_id=1, frame=0, x=160, y=0, positive=True), 160, 96, frames)
    for box in ([200, 0, 300, 10], [0, 0, 1e308, 10], [0, 0, 10, 96.5], [159.5, 0, 161, 10]):
        with pytest.raises(ProtocolError, match=r"does not fit the 160x96 frame \(0 <= x0 < x1 <= 160"):
            check_against_video(parse(type="box", object_id=1, frame=0, box=box), 160, 96, frames)
    check_against_video(parse(type="box", object_id=1, frame=0, box=[0, 0, 160, 96]), 160, 96, frames)  # edge to edge


def test_error_codes_are_closed():
    assert error("busy", "wait", re=3) == {"v": 1, "type": "error", "re": 3, "code": "busy", "error": "wait"}
    with pytest.raises(ValueError):
        error("oops", "no such code")


# -- the models are the schema: JSON Schema, round trips and server messages ---------------------------


@pytest.fixture(scope="module")
def schema() -> dict:
    return json_schema()


def _definition(schema: dict, name: str) -> jsonschema.Validator:
    """A validator for one of the schema's definitions (``ClientMessage``, ``ServerMessage``, ...)."""
    return jsonschema.Draft202012Validator({**schema, "$ref": f"#/$defs/{name}"})


@pytest.mark.parametrize("type_", sorted(VALID))
def test_valid_messages_round_trip_and_fit_the_json_schema(schema, type_):
    text = json.dumps({"v": 1, "type": type_, "id": 7, **VALID[type_]})
    msg = parse_client_message(text)
    assert parse_client_message(json.dumps(msg)) == msg  # what parsing returns parses to itself
    assert CLIENT_MODELS[type_].model_validate(msg).model_dump() == msg
    _definition(schema, "ClientMessage").validate(json.loads(text))


@pytest.mark.parametrize(("fields", "words"), [
    ({"type": "click", "object_id": 0, "frame": 0, "x": 1, "y": 1, "positive": True}, '"object_id" must be between'),
    ({"type": "click", "object_id": 1, "frame": 0, "x": -1, "y": 1, "positive": True}, "must not be negative"),
    ({"type": "box", "object_id": 1, "frame": 0, "box": [1, 2, 3]}, "four numbers"),
    ({"type": "paint", "object_id": 1, "frame": 0, "counts": "abc~"}, "COCO compressed RLE"),
    ({"type": "update_object", "object_id": 1, "label": "x" * 101}, "at most 100"),
    ({"type": "track", "frame": 0, "direction": "sideways"}, "forward, backward, both"),
    ({"type": "track", "frame": 0, "direction": "both", "object_ids": []}, "non-empty list"),
    ({"type": "cancel", "op": "x" * 65}, "at most 64"),
    ({"type": "lock"}, 'needs "object_id"'),
    ({"type": "lock", "object_id": 1, "extra": 1}, "no field extra"),
])
def test_what_the_server_refuses_the_json_schema_refuses_too(schema, fields, words):
    """The TypeScript types come from the schema: its constraints are the server's, not looser ones."""
    assert words in refused({"v": 1, **fields})
    assert not _definition(schema, "ClientMessage").is_valid({"v": 1, **fields})


def test_client_message_types_split_into_consumer_and_worker_ones():
    assert CONSUMER_TYPES | WORKER_TYPES == set(CLIENT_MODELS) and not CONSUMER_TYPES & WORKER_TYPES
    assert WORKER_TYPES == {"click", "box", "paint", "clear", "restore", "track"}


MASKLET = {"id": 3, "object_id": 1, "label": "car", "type": "manual", "status": "draft", "lock_holder": None,
           "locked_by_me": False, "lock_expires_at": None, "assignee": None,
           "review": {"verdict": "unsatisfactory", "reason": "loose", "reason_label": "Loose boundary",
                      "comment": "", "reviewer": None, "at": "2026-01-01T00:00:00+00:00"}}
SERVER = [
    message("hello", session="ab", protocol=1, user={"id": 1, "username": "ann"}, can_edit=True,
            video={"id": 3, "name": "v", "width": 16, "height": 8, "frames": [0, 4]}, labels=["car"],
            model="classical", lock_seconds=120, masklets=[MASKLET]) | {"model_version": None, "model_fallback": True},
    message("mask", re="c1", object_id=1, frame=4, counts="0i0", source="human", revision=2, previous_revision=1,
            area=0, model_ms=1.5),
    message("mask", by="bob", object_id=1, frame=4, counts="0i0", source="model", revision=2, previous_revision=0,
            area=0, quality=0.25),
    message("track_started", re=2, op="x", total=3, object_ids=[1]),
    message("track_progress", op="x", done=1, total=3, masks=[{"object_id": 1, "frame": 0, "counts": "0i0",
                                                             "source": "model", "revision": 1, "area": 0,
                                                             "quality": None}],
            skipped=[{"object_id": 2, "frame": 4}], model_ms=3.0),
    message("track_done", re=2, op="x", done=3, total=3, cancelled=False, written=3, skipped=0, model_ms=9.0,
            objects=[{"object_id": 1, "frames": 3, "with_mask": 2, "lost_at": None}]),
    message("object", re=5, masklet=MASKLET),
    message("object_deleted", by="bob", object_id=1),
    message("pong", re=1, renewed=0),
    message("worker", state="ready", model="SAM 2", model_fallback=False) | {"model_version": None},
    error("model_changed", "gone"),
    error("worker_lost", "lost", re="c4") | {"op": "x"},
]


@pytest.mark.parametrize("msg", SERVER, ids=[m["type"] for m in SERVER])
def test_server_messages_fit_their_models_and_the_json_schema(schema, msg):
    assert SERVER_MESSAGE.validate_python(msg).model_dump(exclude_unset=True) == msg
    _definition(schema, "ServerMessage").validate(msg)


@pytest.mark.parametrize(("msg", "wrong"), [
    ({**SERVER[-1], "code": "offline"}, "code"),  # only the protocol's error codes
    ({**SERVER[1], "model_ms": None}, "model_ms"),  # an optional field is left out, never null
    ({**SERVER[8], "extra": 1}, "extra"),  # no field the protocol does not name
    ({k: v for k, v in SERVER[0].items() if k != "model_version"}, "model_version"),  # null, but always there
])
def test_server_messages_that_drift_from_the_protocol_are_caught(schema, msg, wrong):
    with pytest.raises(ValidationError, match=wrong):
        SERVER_MESSAGE.validate_python(msg)
    assert not _definition(schema, "ServerMessage").is_valid(msg)


VIDEO = {"id": 2, "name": "clip", "status": "ingesting", "status_label": "Ingesting", "progress": 0.5,
         "failure_reason": "", "split": "train", "split_label": "Train", "file_size": 1024, "fps": None,
         "frame_count": None, "width": None, "height": None, "duration": None, "stride": None,
         "annotated_frame_count": None, "created_at": "2026-01-01T00:00:00+00:00", "updated_at": None}


@pytest.mark.parametrize("msg", [{"type": "snapshot", "videos": [VIDEO]}, {"type": "video", "video": VIDEO},
                                 {"type": "removed", "id": 2}, {"type": "error", "error": "No access."}])
def test_the_video_status_sockets_messages_are_in_the_schema_too(schema, msg):
    assert VIDEO_STATUS_MESSAGE.validate_python(msg).model_dump() == msg
    _definition(schema, "VideoStatusMessage").validate(msg)
    with pytest.raises(ValidationError):
        VIDEO_STATUS_MESSAGE.validate_python({**msg, "extra": 1})
    jsonschema.Draft202012Validator({**schema, "$ref": "#/$defs/Refresh"}).validate({"type": "refresh"})
