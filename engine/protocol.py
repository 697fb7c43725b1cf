"""The annotation WebSocket protocol, version 1 (``/ws/projects/<slug>/videos/<video_id>/annotate/``,
optionally ``?model_version=<id>|none``, see ``Hello``), defined once: the pydantic models below.

The models are the specification. ``parse_client_message`` checks client frames against them;
``python -m engine.protocol --json-schema`` writes their JSON Schema, from which the frontend build
generates its TypeScript types (``frontend/src/generated/protocol.ts``, see docs/DECISIONS.md); the
socket tests check every server message they receive against ``SERVER_MESSAGE``. The project page's
video-status socket and the models page's socket are defined here too (at the end). This module is
part of the runtime layer and imports nothing of ``annotator``.

Every message, both ways, is one JSON text frame holding an object with ``"v": 1`` and a
``"type"``. A client message may carry ``"id"`` (a string or integer of at most 64 characters,
chosen by the client); every reply to it carries ``"re": <that id>``. Frames larger than
2 MiB get error ``too_large``; anything that is not a JSON object of a known type with exactly
the fields of its model gets error ``bad_message``, and so does text holding a NUL character or a
lone surrogate (``engine.input.text_problem``). Bad input never closes the socket, up to the
transport's limit of 4 MiB a frame: a bigger frame closes it with code 1009 (message too big).

Frame numbers are NATIVE video frame numbers (0, 4, 8, ... at stride 4), always members of the
video's annotated frames. ``object_id`` is the masklet's object id within the video (1, 2, ...).
Masks are COCO compressed RLE ``counts`` strings at the video's size (height, width).

The handshake is refused with close code 4403 for non-members and 4404 for an unknown or
not-ready video (4401 when not logged in); a client does not retry those. Client messages marked
(C) are handled by the web process with the database only; (W) go to the GPU worker that holds
this user's live segmenter session for the video. ``mask`` and ``track_progress`` are sent only
after their rows are committed. Other sockets on the same video receive ``mask`` /
``track_progress`` / ``object`` / ``object_deleted`` too, with ``"by": "<username>"`` and without
``re``.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from typing import Annotated, Any, Literal, get_args
from urllib.parse import parse_qs

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import PydanticCustomError

from engine.input import text_problem
from segmentation.rle import RLEError, check_counts

PROTOCOL_VERSION = 1

#: Largest accepted text frame, in bytes (a 4K mask's RLE is far below this).
MAX_MESSAGE_BYTES = 2 * 1024 * 1024
MAX_ID_LENGTH = 64
MAX_LABEL_LENGTH = 100
MAX_OBJECT_ID = 2**31 - 1
MAX_FRAME = 10**9
MAX_TRACK_OBJECTS = 1000
#: Room for the RLE inside the frame limit, leaving space for the envelope.
MAX_COUNTS_LENGTH = MAX_MESSAGE_BYTES - 1024

ErrorCode = Literal[
    "bad_message", "too_large", "forbidden", "read_only", "locked", "not_found", "segmentation",
    "worker_lost", "empty", "busy", "model_changed",
]
ERROR_CODES = frozenset(get_args(ErrorCode))
Direction = Literal["forward", "backward", "both"]
DIRECTIONS = get_args(Direction)
MaskSource = Literal["human", "model", "imported"]
MaskletStatus = Literal["draft", "submitted", "approved", "rejected", "discarded"]

#: What ``segmentation.rle.check_counts`` accepts, for the JSON Schema: COCO compressed RLE characters.
RLE_COUNTS_PATTERN = r"^[0-o]*$"


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


# -- field types: the JSON Schema's constraints, and a sentence a person can read when one fails -------


def _bad(text: str) -> PydanticCustomError:
    return PydanticCustomError("bad_message", text)


def _show(value: Any) -> str:
    text = json.dumps(value)[:40] if not isinstance(value, str) else repr(value[:40])
    return f"{type(value).__name__} {text}"


def _checked(check: Callable[[Any], Any]) -> BeforeValidator:
    """Run ``check`` before pydantic's own validation, so a refusal says it in the protocol's words."""
    return BeforeValidator(check)


def _whole_number(name: str, low: int, high: int) -> Any:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(f'"{name}" must be a whole number, got {_show(value)}')
        if not low <= value <= high:
            raise _bad(f'"{name}" must be between {low} and {high}, got {value}')
        return value

    return Annotated[int, Field(ge=low, le=high), _checked(check)]


def _check_pixels(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _bad(f'"{name}" must be a number of pixels, got {_show(value)}')
    if value < 0:
        raise _bad(f'"{name}" must not be negative, got {value}')
    return float(value)


def _pixels(name: str) -> Any:
    return Annotated[float, Field(ge=0), _checked(lambda value: _check_pixels(name, value))]


def _flag(name: str) -> Any:
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise _bad(f'"{name}" must be true or false, got {_show(value)}')
        return value

    return Annotated[bool, _checked(check)]


def _check_text(name: str, max_length: int, value: Any) -> str:
    if not isinstance(value, str):
        raise _bad(f'"{name}" must be a string, got {_show(value)}')
    if len(value) > max_length:
        raise _bad(f'"{name}" is {len(value)} characters long; at most {max_length} are allowed')
    problem = text_problem(value)
    if problem:
        raise _bad(f'"{name}" {problem}')
    return value


def _text(name: str, max_length: int) -> Any:
    return Annotated[str, Field(max_length=max_length), _checked(lambda value: _check_text(name, max_length, value))]


def _check_box(value: Any) -> list[float]:
    if not isinstance(value, list) or len(value) != 4:
        raise _bad(f'"box" must be a list of four numbers [x0, y0, x1, y1], got {_show(value)}')
    x0, y0, x1, y1 = (_check_pixels("box", v) for v in value)
    if x1 <= x0 or y1 <= y0:
        raise _bad(f'"box" must have x0 < x1 and y0 < y1, got {value}')
    return [x0, y0, x1, y1]


def _check_counts(value: Any) -> str:
    value = _check_text("counts", MAX_COUNTS_LENGTH, value)
    try:
        return check_counts(value)
    except RLEError as error:
        raise _bad(str(error)) from None


def _check_direction(value: Any) -> str:
    if value not in DIRECTIONS:
        raise _bad(f'"direction" must be one of {", ".join(DIRECTIONS)}, got {_show(value)}')
    return value


def _check_message_id(value: Any) -> str | int:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _bad(f'"id" must be a string or a whole number, got {_show(value)}')
    if len(str(value)) > MAX_ID_LENGTH:
        raise _bad(f'"id" is longer than {MAX_ID_LENGTH} characters')
    if isinstance(value, str) and text_problem(value):
        raise _bad(f'"id" {text_problem(value)}')
    return value


ObjectId = _whole_number("object_id", 1, MAX_OBJECT_ID)
Frame = _whole_number("frame", 0, MAX_FRAME)
Label = _text("label", MAX_LABEL_LENGTH)
MessageId = Annotated[str | int, _checked(_check_message_id)]
OpName = _text("op", MAX_ID_LENGTH)
Revision = _whole_number("revision", 0, MAX_OBJECT_ID)
X = _pixels("x")
Y = _pixels("y")
Positive = _flag("positive")
OverwriteHuman = _flag("overwrite_human")


def _check_object_ids(value: Any) -> list[int]:
    if not isinstance(value, list) or not value:
        raise _bad(f'"object_ids" must be a non-empty list of object ids, got {_show(value)}')
    if len(value) > MAX_TRACK_OBJECTS:
        raise _bad(f'"object_ids" lists {len(value)} objects; at most {MAX_TRACK_OBJECTS} are allowed')
    ids = [_OBJECT_IDS.validate_python(v) for v in value]
    if len(set(ids)) != len(ids):
        raise _bad('"object_ids" names an object twice')
    return ids


_OBJECT_IDS = TypeAdapter(ObjectId)


# -- client -> server ---------------------------------------------------------------------------------


class ClientMessageBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    v: Literal[1]
    id: MessageId | None = Field(None, description="Chosen by the client; every reply to it carries it as `re`.")


class Ping(ClientMessageBase):
    """(C) Renews my locks; answered by `pong`."""

    type: Literal["ping"]


class AddObject(ClientMessageBase):
    """(C) A new object, locked to me; answered by `object`."""

    type: Literal["add_object"]
    label: Label = ""


class UpdateObject(ClientMessageBase):
    """(C) Renames an object; answered by `object`."""

    type: Literal["update_object"]
    object_id: ObjectId
    label: Label


class DeleteObject(ClientMessageBase):
    """(C) Answered by `object_deleted`."""

    type: Literal["delete_object"]
    object_id: ObjectId


class Lock(ClientMessageBase):
    """(C) Answered by `object`, or error `locked`."""

    type: Literal["lock"]
    object_id: ObjectId


class Unlock(ClientMessageBase):
    """(C) Answered by `object`."""

    type: Literal["unlock"]
    object_id: ObjectId


class Submit(ClientMessageBase):
    """(C) Sends the object to review; answered by `object`, or error `empty`."""

    type: Literal["submit"]
    object_id: ObjectId


class Reopen(ClientMessageBase):
    """(C) Answered by `object`."""

    type: Literal["reopen"]
    object_id: ObjectId


class Cancel(ClientMessageBase):
    """(C) Stops my running track `op` (its `track_done` says cancelled)."""

    type: Literal["cancel"]
    op: OpName


class Click(ClientMessageBase):
    """(W) A point prompt in pixels; answered by `mask`."""

    type: Literal["click"]
    object_id: ObjectId
    frame: Frame
    x: X
    y: Y
    positive: Positive


class Box(ClientMessageBase):
    """(W) A box prompt; answered by `mask`."""

    type: Literal["box"]
    object_id: ObjectId
    frame: Frame
    box: Annotated[list[float], Field(min_length=4, max_length=4), _checked(_check_box)] = Field(
        description="[x0, y0, x1, y1] in pixels, inside the frame: x0 < x1 <= width, y0 < y1 <= height.")


class Paint(ClientMessageBase):
    """(W) The whole new mask of the frame, painted; answered by `mask`."""

    type: Literal["paint"]
    object_id: ObjectId
    frame: Frame
    counts: Annotated[str, Field(max_length=MAX_COUNTS_LENGTH, pattern=RLE_COUNTS_PATTERN),
                      _checked(_check_counts)]


class Clear(ClientMessageBase):
    """(W) Removes the frame's mask; answered by `mask` (empty, model)."""

    type: Literal["clear"]
    object_id: ObjectId
    frame: Frame


class Restore(ClientMessageBase):
    """(W) Puts back an earlier revision (0: no mask); answered by `mask`."""

    type: Literal["restore"]
    object_id: ObjectId
    frame: Frame
    revision: Revision


class Track(ClientMessageBase):
    """(W) Propagates the objects' masks from `frame`: `track_started`, `track_progress`*, `track_done`."""

    type: Literal["track"]
    frame: Frame
    direction: Annotated[Direction, _checked(_check_direction)]
    object_ids: Annotated[list[int], Field(min_length=1, max_length=MAX_TRACK_OBJECTS),
                          _checked(_check_object_ids)] | None = Field(
        None, description="Default: every object locked by me.")
    overwrite_human: OverwriteHuman = Field(
        False, description="Replace masks a person made (default: leave them, listed as skipped).")


CLIENT_MODELS: dict[str, type[ClientMessageBase]] = {
    get_args(model.model_fields["type"].annotation)[0]: model
    for model in (Ping, AddObject, UpdateObject, DeleteObject, Lock, Unlock, Submit, Reopen, Cancel,
                  Click, Box, Paint, Clear, Restore, Track)
}
CONSUMER_TYPES = frozenset({"ping", "add_object", "update_object", "delete_object", "lock", "unlock", "submit",
                            "reopen", "cancel"})
WORKER_TYPES = frozenset(CLIENT_MODELS) - CONSUMER_TYPES
#: Messages that change annotations: the sender needs the ANNOTATE permission.
EDIT_TYPES = frozenset(CLIENT_MODELS) - {"ping", "cancel"}
ClientMessage = Annotated[
    Ping | AddObject | UpdateObject | DeleteObject | Lock | Unlock | Submit | Reopen | Cancel | Click | Box
    | Paint | Clear | Restore | Track, Field(discriminator="type")]


# -- server -> client ---------------------------------------------------------------------------------


class ServerPart(BaseModel):
    """A part of a server message: exactly these fields (a test catches the server sending others)."""

    model_config = ConfigDict(extra="forbid")


class ServerMessageBase(ServerPart):
    """Optional fields of server messages are left out rather than sent as null (``message``), so their type
    has no null: a null the server sent by mistake fails the socket tests."""

    v: Literal[1]
    re: str | int = Field(None, description="The `id` of the message this answers.")
    by: str = Field(None, description="Who made the change, on copies sent to the video's other sockets.")


class User(ServerPart):
    id: int
    username: str


class VideoInfo(ServerPart):
    id: int
    name: str
    width: int
    height: int
    frames: list[int] = Field(description="The annotated frames' native numbers.")


class ReviewInfo(ServerPart):
    verdict: Literal["satisfactory", "unsatisfactory"]
    reason: str
    reason_label: str = Field(description="The reason as people read it (the pick list's words).")
    comment: str
    reviewer: str | None = Field(description="Null when the reviewer's account is gone.")
    at: str


class Masklet(ServerPart):
    id: int
    object_id: int
    label: str
    type: Literal["manual", "auto"]
    status: MaskletStatus
    lock_holder: str | None
    locked_by_me: bool
    lock_expires_at: str | None
    assignee: str | None = Field(
        description="The annotator it belongs to (whom it is sent back to); null for a masklet nobody took yet.")
    review: ReviewInfo | None


class StoredMask(ServerPart):
    """One stored mask, as `track_progress` (and the HTTP masks endpoint) carry it."""

    object_id: int
    frame: int
    counts: str
    source: MaskSource
    revision: int
    area: int
    quality: float | None = Field(description="The model's rating of its mask in [0, 1] (higher: more likely right); "
                                              "null for people's and unrated masks.")


class Hello(ServerMessageBase):
    """Sent on connect. `model` / `model_version` name the model this socket's edits use: the project's
    serving model, or the one a reconnecting page asks to keep with `?model_version=<id>` (`none`: the
    settings' model) when it is a version of the project (or a shared one) that has served and can still
    be loaded; otherwise error `model_changed` (or `bad_message` for a value that is not a version id)
    follows."""

    type: Literal["hello"]
    session: str
    protocol: int
    user: User
    can_edit: bool
    video: VideoInfo
    labels: list[str]
    model: str
    model_version: int | None = Field(description="The registered version's id; null for the settings' model.")
    model_fallback: bool = Field(description="The classical backend, labelled a low-quality fallback.")
    lock_seconds: int
    masklets: list[Masklet]


class Mask(ServerMessageBase):
    """The answer to click, box, paint, clear and restore."""

    type: Literal["mask"]
    object_id: int
    frame: int
    counts: str
    source: MaskSource
    revision: int
    previous_revision: int
    area: int
    quality: float = Field(None, description="The model's rating of its mask in [0, 1]; left out for people's and "
                                             "unrated masks.")
    model_ms: float = Field(None, description="Model time; on the reply to the sender only.")


class TrackStarted(ServerMessageBase):
    type: Literal["track_started"]
    op: str
    total: int
    object_ids: list[int]


class SkippedFrame(ServerPart):
    object_id: int
    frame: int


class TrackProgress(ServerMessageBase):
    type: Literal["track_progress"]
    op: str
    done: int
    total: int
    masks: list[StoredMask]
    skipped: list[SkippedFrame] = Field(description="Frames a person made, left alone.")
    model_ms: float = None


class TrackedObject(ServerPart):
    """What a track found for one object: of the `frames` it visited, `with_mask` where the model found it,
    and the first frame (in visiting order) where it found nothing (null: never lost)."""

    object_id: int
    frames: int
    with_mask: int
    lost_at: int | None


class TrackDone(ServerMessageBase):
    type: Literal["track_done"]
    op: str
    done: int
    total: int
    cancelled: bool
    written: int
    skipped: int
    objects: list[TrackedObject]
    model_ms: float


class ObjectChanged(ServerMessageBase):
    type: Literal["object"]
    masklet: Masklet


class ObjectDeleted(ServerMessageBase):
    type: Literal["object_deleted"]
    object_id: int


class Pong(ServerMessageBase):
    type: Literal["pong"]
    renewed: int = Field(description="How many of my locks were renewed.")


class WorkerState(ServerMessageBase):
    """The GPU worker serving this socket's edits."""

    type: Literal["worker"]
    state: Literal["assigning", "ready", "rebuilding", "lost"]
    model: str = None
    model_fallback: bool = None
    model_version: int | None = Field(
        None, description="Only when the page's version could not be kept (before error `model_changed`): "
                          "the one now used (null: the settings' model).")


class ServerError(ServerMessageBase):
    """A refusal or failure in plain words. `model_changed` has no `re`: the model version the page started
    with cannot be kept, so its edits now use the model named by the `worker` or `hello` message just before
    it. An error ending a `track` after `track_started` says how many frames were stored (they are kept)."""

    type: Literal["error"]
    code: ErrorCode
    error: str
    op: str = None


ServerMessage = Annotated[
    Hello | Mask | TrackStarted | TrackProgress | TrackDone | ObjectChanged | ObjectDeleted | Pong | WorkerState
    | ServerError, Field(discriminator="type")]
#: Checks a server message against the protocol (the socket tests run every received message through it).
SERVER_MESSAGE: TypeAdapter[Any] = TypeAdapter(ServerMessage)


# -- the project page's video-status socket (/ws/projects/<slug>/videos/) ---------------------------------


class Refresh(BaseModel):
    """Client -> server: send a new snapshot."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["refresh"]


class VideoRow(ServerPart):
    """A video as the project page lists it (``annotator.selectors.video_to_dict``)."""

    id: int
    name: str
    status: Literal["uploaded", "ingesting", "ready", "failed"]
    status_label: str
    progress: float = Field(description="Of the ingest, 0 to 1.")
    failure_reason: str
    split: str
    split_label: str
    file_size: int
    fps: float | None
    frame_count: int | None = Field(description="Native frames.")
    width: int | None
    height: int | None
    duration: float | None = Field(description="Seconds.")
    stride: int | None
    annotated_frame_count: int | None
    created_at: str | None
    updated_at: str | None


class VideoSnapshot(ServerPart):
    """Every video of the project: on connect, and in answer to `refresh`."""

    type: Literal["snapshot"]
    videos: list[VideoRow]


class VideoChanged(ServerPart):
    type: Literal["video"]
    video: VideoRow


class VideoRemoved(ServerPart):
    type: Literal["removed"]
    id: int


class SocketError(ServerPart):
    """A per-project socket's refusal of a message (the annotation socket's errors are `ServerError`)."""

    type: Literal["error"]
    error: str


VideoStatusMessage = Annotated[VideoSnapshot | VideoChanged | VideoRemoved | SocketError, Field(discriminator="type")]
VIDEO_STATUS_MESSAGE: TypeAdapter[Any] = TypeAdapter(VideoStatusMessage)



# -- the models page's socket (/ws/projects/<slug>/models/, admins only; the page sends nothing) ---------

JobState = Literal["queued", "running", "done", "failed", "cancelled"]


class TrainingRunRow(ServerPart):
    """A training run as the models page shows it (``loop.dashboard._run``)."""

    id: int
    status: JobState
    trigger: str
    progress: float = Field(description="0 to 1.")
    loss_curve: list[Annotated[list[float], Field(min_length=2, max_length=2)]] = Field(
        description="[step, loss] pairs.")
    log: str = Field(description="The log's tail.")
    error: str
    base_version: int | None
    produced_version: int | None
    parameters: dict[str, Any]
    masklets: int | None
    frames: int | None
    cancel_requested: bool
    created_at: str
    started_at: str | None
    finished_at: str | None


class DashboardHello(ServerPart):
    """On connect: the project's active training run, if any."""

    type: Literal["hello"]
    run: TrainingRunRow | None


class RunEvent(ServerPart):
    """A training run changed (``loop.training.broadcast``): a status, a training step, an evaluated object,
    a log line or a promotion. Fields that do not apply are left out."""

    type: Literal["run"]
    run: int
    status: JobState = None
    progress: float = None
    step: int = None
    steps: int = None
    loss: float = None
    stage: str = Field(None, description="What the run is doing, e.g. `evaluating val`.")
    done: int = Field(None, description="Objects evaluated so far in `stage`.")
    total: int = None
    log: str = Field(None, description="One line appended to the run's log.")
    error: str = None
    version: int = Field(None, description="The version the run registered.")
    promoted: int = Field(None, description="The version promoted after the run.")
    cancel_requested: bool = None


class VerifierEvent(ServerPart):
    """A training of the quality verifier changed status (``loop.verifier``)."""

    type: Literal["verifier"]
    verifier: int = Field(description="The verifier version's number.")
    status: JobState
    error: str


class DownloadRow(ServerPart):
    """A checkpoint download (``loop.downloads.as_dict``)."""

    id: int
    name: str
    label: str
    status: JobState
    bytes_done: int
    bytes_total: int | None
    stage: str
    error: str
    version: int | None
    promote: bool
    created_at: str
    finished_at: str | None


class DownloadEvent(DownloadRow):
    """A step of a checkpoint download (``loop.downloads.broadcast``): the whole row."""

    type: Literal["download"]


DashboardMessage = Annotated[DashboardHello | RunEvent | VerifierEvent | DownloadEvent | SocketError,
                             Field(discriminator="type")]
DASHBOARD_MESSAGE: TypeAdapter[Any] = TypeAdapter(DashboardMessage)


def dashboard_message(event: ServerPart) -> dict[str, Any]:
    """The frame of a models-page message: the fields that were given (``RunEvent`` leaves the rest out)."""
    return event.model_dump(mode="json", exclude_unset=True)

# -- parsing -------------------------------------------------------------------------------------------


def message_id(text: str | bytes) -> str | int | None:
    """The ``id`` of a message that failed to parse, when one can still be read (for ``re``)."""
    try:
        data = json.loads(text)
        return _check_message_id(data["id"]) if isinstance(data, dict) and "id" in data else None
    except (ValueError, TypeError, RecursionError):  # PydanticCustomError is a ValueError
        return None


def _refusal(type_: str, failure: ValidationError) -> ProtocolError:
    """The first problem of a refused message, in the protocol's words."""
    problems = failure.errors(include_url=False)
    unknown = sorted(str(p["loc"][0]) for p in problems if p["type"] == "extra_forbidden")
    if unknown:
        return ProtocolError("bad_message", f'A "{type_}" message has no field {", ".join(unknown)}.')
    for problem in problems:
        if problem["type"] == "missing":
            return ProtocolError("bad_message", f'A "{type_}" message needs "{problem["loc"][0]}".')
    return ProtocolError("bad_message", problems[0]["msg"])


def parse_client_message(text: str | bytes) -> dict[str, Any]:
    """Check one client frame against protocol v1; returns the message with defaults filled in.

    Raises ``ProtocolError`` (``too_large`` or ``bad_message``) with a sentence a person can read.
    Fields not listed for the type are refused rather than ignored, so typos surface at once; an
    optional field sent as null takes its default.
    """
    size = len(text.encode("utf-8") if isinstance(text, str) else text)
    if size > MAX_MESSAGE_BYTES:
        raise ProtocolError("too_large", f"The message is {size} bytes; at most {MAX_MESSAGE_BYTES} are accepted.")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError("bad_message", "The message is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ProtocolError("bad_message", "A message must be a JSON object.")
    if data.get("v") != PROTOCOL_VERSION or isinstance(data.get("v"), bool):
        raise ProtocolError("bad_message", f'Unsupported protocol version {_show(data.get("v"))}: '
                                           f'this server speaks "v": {PROTOCOL_VERSION}.')
    type_ = data.get("type")
    if not isinstance(type_, str) or type_ not in CLIENT_MODELS:
        raise ProtocolError("bad_message", f"Unknown message type {_show(type_)}.")
    model = CLIENT_MODELS[type_]
    optional = {name for name, field in model.model_fields.items() if not field.is_required() and name != "id"}
    try:
        parsed = model.model_validate({k: v for k, v in data.items() if v is not None or k not in optional})
    except ValidationError as failure:
        raise _refusal(type_, failure) from None
    fields = parsed.model_dump()
    if fields["id"] is None:
        del fields["id"]
    return fields


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
        raise ProtocolError("bad_message", "The socket URL's query string is not ASCII.") from None
    values = parse_qs(text, keep_blank_values=True).get("model_version")
    if values is None:
        return False, None
    if len(values) > 1:
        raise ProtocolError("bad_message", 'The socket URL names "model_version" more than once.')
    value = values[0]
    if value == SETTINGS_MODEL:
        return True, None
    if not (value.isascii() and value.isdigit() and len(value) <= 10 and 1 <= int(value) <= MAX_OBJECT_ID):
        raise ProtocolError("bad_message", f'The socket URL\'s "model_version" must be a model version id or '
                                           f'"{SETTINGS_MODEL}", got {_show(value)}.')
    return True, int(value)


def check_against_video(msg: dict[str, Any], width: int, height: int, frames: list[int] | set[int]) -> None:
    """Checks that need the video: frame is an annotated frame, points and masks fit the picture."""
    if "frame" in msg and msg["frame"] not in frames:
        raise ProtocolError("bad_message", f"Frame {msg['frame']} is not an annotated frame of this video.")
    if msg["type"] == "click" and not (msg["x"] < width and msg["y"] < height):
        raise ProtocolError("bad_message", f"The point ({msg['x']:g}, {msg['y']:g}) is outside the "
                                           f"{width}x{height} frame.")
    if msg["type"] == "box":
        x0, y0, x1, y1 = msg["box"]
        if x0 >= width or y0 >= height or x1 > width or y1 > height:
            raise ProtocolError("bad_message", f"The box {msg['box']} does not fit the {width}x{height} frame "
                                               f"(0 <= x0 < x1 <= {width}, 0 <= y0 < y1 <= {height}).")


# -- JSON Schema (the TypeScript types are generated from it) ------------------------------------------


class _NoFieldTitles(GenerateJsonSchema):
    """No ``title`` on fields: json-schema-to-typescript would make each titled field a named type."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def json_schema() -> dict[str, Any]:
    """Every message both ways: ``ClientMessage``, ``ServerMessage``, ``VideoStatusMessage``, ``DashboardMessage``
    and ``Refresh`` (and their parts) in ``$defs``."""
    unions = {"ClientMessage": "A frame the annotation page sends.",
              "ServerMessage": "A frame the annotation socket sends.",
              "VideoStatusMessage": "A frame the project page's video-status socket sends (it sends `refresh`).",
              "DashboardMessage": "A frame the models page's socket sends (the page sends nothing)."}
    schema = TypeAdapter(ClientMessage | ServerMessage | VideoStatusMessage | DashboardMessage | Refresh).json_schema(
        schema_generator=_NoFieldTitles)
    defs = schema.pop("$defs")
    *roots, refresh = schema.pop("anyOf")
    for (name, description), root in zip(unions.items(), roots, strict=True):
        defs[name] = {**root, "title": name, "description": description}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "Message",
            "description": f"The Masklet WebSocket protocols (engine/protocol.py): annotation v{PROTOCOL_VERSION}, "
                           f"the project page's video status and the models page.",
            "anyOf": [*({"$ref": f"#/$defs/{name}"} for name in unions), refresh], "$defs": defs}


if __name__ == "__main__":
    if sys.argv[1:] != ["--json-schema"]:
        sys.exit("usage: python -m engine.protocol --json-schema   (writes the protocol's JSON Schema to stdout)")
    print(json.dumps(json_schema(), indent=2, sort_keys=True))
