"""The annotation WebSocket protocol, version 1 (``/ws/projects/<slug>/videos/<video_id>/annotate/``,
optionally ``?model_version=<id>|none``, see hello).

This docstring is the authoritative description; ``parse_client_message`` enforces it.

Every message, both ways, is one JSON text frame holding an object with ``"v": 1`` and a
``"type"``. A client message may carry ``"id"`` (a string or integer of at most 64 characters,
chosen by the client); every reply to it carries ``"re": <that id>``. Frames larger than
2 MiB get error ``too_large``; anything that is not a JSON object of a known type with exactly
the fields below gets error ``bad_message``, and so does text holding a NUL character or a lone
surrogate (``engine.input.text_problem``). Bad input never closes the socket, up to the
transport's limit of 4 MiB a frame: a bigger frame closes it with code 1009 (message too big).

Frame numbers are NATIVE video frame numbers (0, 4, 8, ... at stride 4), always members of the
video's annotated frames. ``object_id`` is the masklet's object id within the video (1, 2, ...).
Masks are COCO compressed RLE ``counts`` strings at the video's size (height, width).

Server -> client on connect (the handshake is refused with close code 4403 for non-members and
4404 for an unknown or not-ready video)::

    {"v":1,"type":"hello","session":"<hex>","protocol":1,"user":{"id":1,"username":"ann"},
     "can_edit":true,"video":{"id":3,"name":"demo_001","width":640,"height":360,"frames":[0,4,...]},
     "labels":["person"],"model":"classical (OpenCV)","model_version":null,"model_fallback":true,"lock_seconds":120,
     "masklets":[<masklet>...]}

``model``/``model_version`` name the model this socket's edits use (``model_version``: the
registered version's id, null for the settings' model; ``model_fallback``: true for the classical
backend, which the page labels a low-quality fallback): the project's serving model, or the one
a reconnecting page asks to keep with ``?model_version=<id>`` (or ``?model_version=none`` for the
settings' model) on the socket URL. A page keeps the version it started with that way;
the server honours the request only for a version of the socket's project (or a shared one)
that has served (production or retired) and can still be loaded. Otherwise hello names the
serving model and is followed by error ``model_changed`` (the version cannot be kept, and why),
or ``bad_message`` when the value is not a version id.

Client -> server. C: handled by the web process with the database only; W: sent to the GPU
worker that holds this user's live segmenter session for the video.

==============  ==========================================================  ======================
type            fields                                                      reply
==============  ==========================================================  ======================
ping (C)        -                                                           ``pong``; renews my locks
add_object (C)  label? (str <= 100)                                         ``object`` (locked to me)
update_object   object_id, label                                            ``object``
delete_object   object_id                                                   ``object_deleted``
lock (C)        object_id                                                   ``object`` / ``locked``
unlock (C)      object_id                                                   ``object``
submit (C)      object_id                                                   ``object`` / ``empty``
reopen (C)      object_id                                                   ``object``
cancel (C)      op (str <= 64)                                              (``track_done`` cancelled)
click (W)       object_id, frame, x, y (pixels), positive (bool)            ``mask``
box (W)         object_id, frame, box [x0, y0, x1, y1] (pixels, inside      ``mask``
                the frame: x0 < x1 <= width, y0 < y1 <= height)
paint (W)       object_id, frame, counts (RLE of the whole new mask)        ``mask``
clear (W)       object_id, frame                                            ``mask`` (empty, model)
restore (W)     object_id, frame, revision (>= 0; 0 = no mask)              ``mask``
track (W)       frame, direction (forward/backward/both), object_ids?       ``track_started``,
                (default: every object locked by me), overwrite_human?      ``track_progress``*,
                (default false)                                             ``track_done``
==============  ==========================================================  ======================

Server -> client::

    mask:           {"type":"mask","re":..,"object_id":1,"frame":8,"counts":"..","source":"human",
                     "revision":3,"previous_revision":2,"area":1234,"quality":0.93,"model_ms":41.5}
                     # quality: the model's rating of its mask in [0, 1] (higher = more likely
                     # right); absent (null in track_progress) for people's and unrated masks
    track_started:  {"type":"track_started","re":..,"op":"<op>","total":N,"object_ids":[1,2]}
    track_progress: {"type":"track_progress","op":..,"done":k,"total":N,"model_ms":..,
                     "masks":[{"object_id","frame","counts","source","revision","area","quality"}...],
                     "skipped":[{"object_id","frame"}...]}          # human frames left alone
    track_done:     {"type":"track_done","re":..,"op":..,"done":k,"total":N,"cancelled":bool,
                     "written":n,"skipped":m,"model_ms":..,
                     "objects":[{"object_id":1,"frames":k,"with_mask":j,"lost_at":<frame>|null}...]}
                     # per tracked object: of the k frames visited, j where the model found it,
                     # and the first frame (in visiting order) where it found nothing (lost)
    object:         {"type":"object","re":..,"masklet":<masklet>}
    object_deleted: {"type":"object_deleted","re":..,"object_id":1}
    pong:           {"type":"pong","re":..,"renewed":n}
    worker:         {"type":"worker","state":"assigning|ready|rebuilding|lost","model":"..","model_fallback":false,
                     "model_version":7}                 # model_version: only before model_changed
    error:          {"type":"error","re":..,"code":"<code>","error":"<plain words>"}

Error codes: bad_message, too_large, forbidden, read_only, locked, not_found, segmentation,
worker_lost, empty, busy, model_changed (no ``re``: the model version the page started with
cannot be kept, so its edits now use the model named by the ``worker`` or ``hello`` message just
before it; a page reconnects asking for that one). An error ending a ``track`` after
``track_started`` says how many frames were stored before it (they are kept). ``mask``
and ``track_progress`` are sent only after their rows are committed. Other sockets on the same
video receive ``mask`` / ``track_progress`` / ``object`` / ``object_deleted`` too, with
``"by": "<username>"`` and without ``re``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from engine.input import text_problem
from segmentation.rle import RLEError, check_counts

PROTOCOL_VERSION = 1

#: Largest accepted text frame, in bytes (a 4K mask's RLE is far below this).
MAX_MESSAGE_BYTES = 2 * 1024 * 1024
MAX_ID_LENGTH = 64
MAX_LABEL_LENGTH = 100
MAX_OBJECT_ID = 2**31 - 1
MAX_TRACK_OBJECTS = 1000
#: Room for the RLE inside the frame limit, leaving space for the envelope.
MAX_COUNTS_LENGTH = MAX_MESSAGE_BYTES - 1024

ERROR_CODES = frozenset({
    "bad_message", "too_large", "forbidden", "read_only", "locked", "not_found", "segmentation",
    "worker_lost", "empty", "busy", "model_changed",
})
CONSUMER_TYPES = frozenset({
    "ping", "add_object", "update_object", "delete_object", "lock", "unlock", "submit", "reopen", "cancel",
})
WORKER_TYPES = frozenset({"click", "box", "paint", "clear", "restore", "track"})
#: Messages that change annotations: the sender needs the ANNOTATE permission.
EDIT_TYPES = frozenset(WORKER_TYPES | CONSUMER_TYPES - {"ping", "cancel"})
DIRECTIONS = ("forward", "backward", "both")


class ProtocolError(Exception):
    """A message the server will not act on; ``code`` is one of ``ERROR_CODES``."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def message(type_: str, **fields: Any) -> dict[str, Any]:
    """A server message: ``{"v": 1, "type": ..., **fields}`` (fields that are None are left out)."""
    return {"v": PROTOCOL_VERSION, "type": type_, **{k: v for k, v in fields.items() if v is not None}}


def error(code: str, text: str, re: Any = None) -> dict[str, Any]:
    """An ``error`` reply; ``re`` is the id of the message it answers, when it had one."""
    if code not in ERROR_CODES:
        raise ValueError(f"unknown error code {code!r}")
    return message("error", re=re, code=code, error=text)


# -- field checks -----------------------------------------------------------------------------


def _bad(text: str) -> ProtocolError:
    return ProtocolError("bad_message", text)


def _int(name: str, low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(f'"{name}" must be a whole number, got {_show(value)}')
        if not low <= value <= high:
            raise _bad(f'"{name}" must be between {low} and {high}, got {value}')
        return value

    return check


def _coordinate(name: str) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _bad(f'"{name}" must be a number of pixels, got {_show(value)}')
        if value < 0:
            raise _bad(f'"{name}" must not be negative, got {value}')
        return float(value)

    return check


def _bool(name: str) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise _bad(f'"{name}" must be true or false, got {_show(value)}')
        return value

    return check


def _text(name: str, max_length: int) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise _bad(f'"{name}" must be a string, got {_show(value)}')
        if len(value) > max_length:
            raise _bad(f'"{name}" is {len(value)} characters long; at most {max_length} are allowed')
        problem = text_problem(value)
        if problem:
            raise _bad(f'"{name}" {problem}')
        return value

    return check


def _box(value: Any) -> list[float]:
    if not isinstance(value, list) or len(value) != 4:
        raise _bad(f'"box" must be a list of four numbers [x0, y0, x1, y1], got {_show(value)}')
    x0, y0, x1, y1 = (_coordinate("box")(v) for v in value)
    if x1 <= x0 or y1 <= y0:
        raise _bad(f'"box" must have x0 < x1 and y0 < y1, got {value}')
    return [x0, y0, x1, y1]


def _counts(value: Any) -> str:
    value = _text("counts", MAX_COUNTS_LENGTH)(value)
    try:
        return check_counts(value)
    except RLEError as error:
        raise _bad(str(error)) from None


def _direction(value: Any) -> str:
    if value not in DIRECTIONS:
        raise _bad(f'"direction" must be one of {", ".join(DIRECTIONS)}, got {_show(value)}')
    return value


def _object_ids(value: Any) -> list[int]:
    if not isinstance(value, list) or not value:
        raise _bad(f'"object_ids" must be a non-empty list of object ids, got {_show(value)}')
    if len(value) > MAX_TRACK_OBJECTS:
        raise _bad(f'"object_ids" lists {len(value)} objects; at most {MAX_TRACK_OBJECTS} are allowed')
    ids = [_OBJECT_ID(v) for v in value]
    if len(set(ids)) != len(ids):
        raise _bad('"object_ids" names an object twice')
    return ids


_OBJECT_ID = _int("object_id", 1, MAX_OBJECT_ID)
_FRAME = _int("frame", 0, 10**9)

#: type -> (required fields, optional fields with their defaults); each field has its check.
_Fields = dict[str, Callable[[Any], Any]]
SCHEMA: dict[str, tuple[_Fields, dict[str, tuple[Callable[[Any], Any], Any]]]] = {
    "ping": ({}, {}),
    "add_object": ({}, {"label": (_text("label", MAX_LABEL_LENGTH), "")}),
    "update_object": ({"object_id": _OBJECT_ID, "label": _text("label", MAX_LABEL_LENGTH)}, {}),
    "delete_object": ({"object_id": _OBJECT_ID}, {}),
    "lock": ({"object_id": _OBJECT_ID}, {}),
    "unlock": ({"object_id": _OBJECT_ID}, {}),
    "submit": ({"object_id": _OBJECT_ID}, {}),
    "reopen": ({"object_id": _OBJECT_ID}, {}),
    "cancel": ({"op": _text("op", MAX_ID_LENGTH)}, {}),
    "click": ({"object_id": _OBJECT_ID, "frame": _FRAME, "x": _coordinate("x"), "y": _coordinate("y"),
               "positive": _bool("positive")}, {}),
    "box": ({"object_id": _OBJECT_ID, "frame": _FRAME, "box": _box}, {}),
    "paint": ({"object_id": _OBJECT_ID, "frame": _FRAME, "counts": _counts}, {}),
    "clear": ({"object_id": _OBJECT_ID, "frame": _FRAME}, {}),
    "restore": ({"object_id": _OBJECT_ID, "frame": _FRAME, "revision": _int("revision", 0, MAX_OBJECT_ID)}, {}),
    "track": ({"frame": _FRAME, "direction": _direction},
              {"object_ids": (_object_ids, None), "overwrite_human": (_bool("overwrite_human"), False)}),
}
assert set(SCHEMA) == CONSUMER_TYPES | WORKER_TYPES


def _show(value: Any) -> str:
    text = json.dumps(value)[:40] if not isinstance(value, str) else repr(value[:40])
    return f"{type(value).__name__} {text}"


def _message_id(value: Any) -> str | int:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _bad(f'"id" must be a string or a whole number, got {_show(value)}')
    if len(str(value)) > MAX_ID_LENGTH:
        raise _bad(f'"id" is longer than {MAX_ID_LENGTH} characters')
    if isinstance(value, str) and text_problem(value):
        raise _bad(f'"id" {text_problem(value)}')
    return value


def message_id(text: str | bytes) -> str | int | None:
    """The ``id`` of a message that failed to parse, when one can still be read (for ``re``)."""
    try:
        data = json.loads(text)
        return _message_id(data["id"]) if isinstance(data, dict) and "id" in data else None
    except (ValueError, TypeError, ProtocolError, RecursionError):
        return None


def parse_client_message(text: str | bytes) -> dict[str, Any]:
    """Check one client frame against protocol v1; returns the message with defaults filled in.

    Raises ``ProtocolError`` (``too_large`` or ``bad_message``) with a sentence a person can read.
    Fields not listed for the type are refused rather than ignored, so typos surface at once.
    """
    size = len(text.encode("utf-8") if isinstance(text, str) else text)
    if size > MAX_MESSAGE_BYTES:
        raise ProtocolError("too_large", f"The message is {size} bytes; at most {MAX_MESSAGE_BYTES} are accepted.")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise _bad("The message is not valid JSON.") from None
    if not isinstance(data, dict):
        raise _bad("A message must be a JSON object.")
    if data.get("v") != PROTOCOL_VERSION or isinstance(data.get("v"), bool):
        raise _bad(f'Unsupported protocol version {_show(data.get("v"))}: this server speaks "v": {PROTOCOL_VERSION}.')
    type_ = data.get("type")
    if not isinstance(type_, str) or type_ not in SCHEMA:
        raise _bad(f"Unknown message type {_show(type_)}.")
    required, optional = SCHEMA[type_]
    parsed: dict[str, Any] = {"v": PROTOCOL_VERSION, "type": type_}
    if "id" in data:
        parsed["id"] = _message_id(data["id"])
    unknown = sorted(set(data) - {"v", "type", "id"} - set(required) - set(optional))
    if unknown:
        raise _bad(f'A "{type_}" message has no field {", ".join(unknown)}.')
    for name, check in required.items():
        if name not in data:
            raise _bad(f'A "{type_}" message needs "{name}".')
        parsed[name] = check(data[name])
    for name, (check, default) in optional.items():
        parsed[name] = check(data[name]) if name in data and data[name] is not None else default
    return parsed


#: The socket URL's ``model_version`` for "the settings' model" (a page that started without a registered version).
SETTINGS_MODEL = "none"


def requested_model_version(query_string: bytes | str) -> tuple[bool, int | None]:
    """The model version a reconnecting page asks to keep, from the socket URL's query string:
    ``(False, None)`` when it asks for none, ``(True, id)``, or ``(True, None)`` for
    ``model_version=none`` (the settings' model). Other query fields are ignored. Whether the
    page may keep that version is the server's call (``annotator.sessions.model_for_page``).

    Raises ``ProtocolError`` (``bad_message``) for a value that is not a version id.
    """
    try:
        text = query_string.decode("ascii") if isinstance(query_string, bytes) else query_string
    except UnicodeDecodeError:
        raise _bad("The socket URL's query string is not ASCII.") from None
    values = parse_qs(text, keep_blank_values=True).get("model_version")
    if values is None:
        return False, None
    if len(values) > 1:
        raise _bad('The socket URL names "model_version" more than once.')
    value = values[0]
    if value == SETTINGS_MODEL:
        return True, None
    if not (value.isascii() and value.isdigit() and len(value) <= 10 and 1 <= int(value) <= MAX_OBJECT_ID):
        raise _bad(f'The socket URL\'s "model_version" must be a model version id or "{SETTINGS_MODEL}", '
                   f"got {_show(value)}.")
    return True, int(value)


def check_against_video(msg: dict[str, Any], width: int, height: int, frames: list[int] | set[int]) -> None:
    """Checks that need the video: frame is an annotated frame, points and masks fit the picture."""
    if "frame" in msg and msg["frame"] not in frames:
        raise _bad(f"Frame {msg['frame']} is not an annotated frame of this video.")
    if msg["type"] == "click" and not (msg["x"] < width and msg["y"] < height):
        raise _bad(f"The point ({msg['x']:g}, {msg['y']:g}) is outside the {width}x{height} frame.")
    if msg["type"] == "box":
        x0, y0, x1, y1 = msg["box"]
        if x0 >= width or y0 >= height or x1 > width or y1 > height:
            raise _bad(f"The box {msg['box']} does not fit the {width}x{height} frame "
                       f"(0 <= x0 < x1 <= {width}, 0 <= y0 < y1 <= {height}).")
