"""Live annotation sessions on a GPU worker: the people-and-data side of the annotation socket's
model messages.

The consumer (``annotator.consumers.AnnotationConsumer``, routing through
``engine.session_routing``) sends each model message (click, box, paint, clear, restore, track) as
an *envelope* to the ``annotator.session_message`` task on the worker that holds the session. The
runtime it runs on is engine's: the bounded, aged registry of live sessions
(``engine.session_registry``), the cancel and abandon flags (``engine.session_flags``), replies and
broadcasts (``engine.session_replies``) and a track's background writer (``engine.track_writer``).
This module is what needs the project's data:

- A ``LiveSession`` per (video, user) holds the segmenter session (SAM 2 memory) and is only a
  cache of the database. Objects enter it lazily, rebuilt from the masks a person made
  (``selectors.human_masks``, replayed as mask prompts), so a session evicted, lost with its
  worker, or moved to another worker is rebuilt transparently on the next message.
- Every edit goes through ``annotator.services.annotation`` and its transaction commits BEFORE
  the reply is sent; propagation commits in batches (every ``FLUSH_SECONDS`` or ``FLUSH_FRAMES``)
  and streams a ``track_progress`` after each commit, checking the cancel flag every frame.
- Replies name this worker's own queue, so the consumer sends the session's next messages here.
  Errors become protocol ``error`` replies in words (``error_reply``); the worker itself never
  fails a message.
- A page keeps the model version it started with: the consumer pins the version serving when
  the page connected (``hello``) and every envelope carries it (``model_version``; null: the
  settings' model), so a session rebuilt after eviction, a lost worker or a move to another
  worker serves that version again, not a newer production one. A page that reconnects asks for
  its version (``?model_version=`` on the socket URL) and the consumer pins it again. Only when
  the page may not keep the version (``model_for_page``: gone, another project's, a candidate,
  or its checkpoint file gone) does it fall back to the project's serving model; it is told
  (``worker`` / ``hello`` with the new model's name and id, then error ``model_changed``), and
  the consumer pins the fallback (``model_version`` on the reply event).

The envelope (the task's only argument) and the reply event are ``engine.envelope``'s
``SessionEnvelope`` and ``SessionReply``, the one definition the consumer uses too.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone
from pydantic import ValidationError

from annotator import selectors
from annotator.models import MaskFrameRevision, Masklet, Project, Video
from annotator.services import annotation
from annotator.services.annotation import EditRefused, SavedMask
from annotator.services.masks import ACCEPTED_SOURCES
from engine import heartbeat, protocol, storage, workers
from engine.envelope import SessionEnvelope
from engine.models import ModelVersion
from engine.segmenters import ServingModel, get_segmenter, serving_model, settings_model, version_model
from engine.session_flags import read_state, stop_requested
from engine.session_registry import HeldSession, SessionRegistry
from engine.session_replies import Replier, track_stopped
from engine.track_writer import TrackedFrame, TrackSummary, TrackWriter
from segmentation.masks import decode_rle, encode_rle
from segmentation.rle import RLEError, decode_checked
from segmentation.segmenter import SegmentationError, SegmenterSession

logger = logging.getLogger(__name__)

#: Propagation commits a batch when this much time passed or this many frames are waiting.
FLUSH_SECONDS = 0.25
FLUSH_FRAMES = 8
#: Frames a batch may gather while the previous one commits, before the model waits for the database.
MAX_BATCH_FRAMES = 4 * FLUSH_FRAMES

#: A live session trusts the video, user and serving model it read this long before reading them
#: again (four queries a message otherwise). Permission is still checked on every message: by the
#: consumer before dispatch, and again inside every edit's transaction.
CONTEXT_SECONDS = 2.0


# -- live sessions ------------------------------------------------------------------------------


class LiveSession(HeldSession):
    """One user's segmenter session on one video, with the objects loaded into it so far."""

    def __init__(self, video: Video, user_id: int, serving: ServingModel, segmenter_session: SegmenterSession):
        super().__init__(serving)
        self.video_id = video.pk
        self.user_id = user_id
        self.segmenter = segmenter_session
        self.frames = video.annotated_frame_indices()
        self.index_of = {native: index for index, native in enumerate(self.frames)}
        #: object id -> (masklet pk, newest revision id by someone else when loaded) of the objects
        #: whose state is in the segmenter session; a newer one means the session is stale.
        self.loaded: dict[int, tuple[int, int | None]] = {}
        #: The video and user as last read, and when (``CONTEXT_SECONDS``); when the owner key was written.
        self.video: Video | None = None
        self.user: Any = None
        self.context_at = float("-inf")
        self.owner_written_at = float("-inf")

    def index(self, frame: int) -> int:
        """The session index of a native frame number."""
        try:
            return self.index_of[frame]
        except KeyError:
            raise protocol.ProtocolError("bad_message", f"Frame {frame} is not an annotated frame.") from None

    def set_context(self, video: Video, user: Any) -> None:
        self.video, self.user, self.context_at = video, user, time.monotonic()

    def context_fresh(self) -> bool:
        return self.video is not None and time.monotonic() - self.context_at < CONTEXT_SECONDS

    def serves(self, envelope: SessionEnvelope) -> bool:
        """Whether this session runs the model the envelope's page is pinned to."""
        return envelope.pinned and self.serving.model_version_id == envelope.model_version

    def holds(self, object_id: int, pk: int) -> bool:
        """Whether the session holds this masklet's state (not an older masklet's of the same id)."""
        return object_id in self.loaded and self.loaded[object_id][0] == pk

    def ensure_objects(self, video: Video, masklets: dict[int, tuple[int, int | None]]) -> None:
        """Load objects ``{object_id: (masklet pk, newest revision by others)}`` not yet in the
        session from the masks a person made (as mask prompts). An object whose id now names
        another masklet (deleted, re-created), or that someone else edited since it was loaded
        (my lock expired and they took it), is reloaded from the database."""
        for object_id, state in masklets.items():
            if object_id in self.loaded and self.loaded[object_id] != state:
                self.forget(object_id)
        missing = [object_id for object_id in masklets if object_id not in self.loaded]
        if not missing:
            return
        for object_id, masks in selectors.human_masks(video, missing).items():
            for frame, rle in masks:
                if frame in self.index_of:
                    self.segmenter.add_mask(self.index_of[frame], object_id, decode_rle(rle))
            self.loaded[object_id] = masklets[object_id]

    def forget(self, object_id: int) -> None:
        """Drop an object's state; it is rebuilt from the database when next used."""
        self.loaded.pop(object_id, None)
        if object_id in self.segmenter.object_ids:
            try:
                self.segmenter.remove_object(object_id)
            except SegmentationError:
                logger.warning("could not remove object %s from a live session", object_id, exc_info=True)

    def sync_objects(self, video: Video, masklets: dict[int, tuple[int, int | None]]) -> None:
        """Make the tracked set exactly ``masklets`` (propagation tracks every object it holds)."""
        for object_id in sorted(set(self.loaded) - set(masklets)):
            self.forget(object_id)
        self.ensure_objects(video, masklets)

    def close(self) -> None:
        try:
            self.segmenter.close()
        except Exception:
            logger.warning("closing a live session failed", exc_info=True)


registry: SessionRegistry[LiveSession] = SessionRegistry()
# Idle sessions are closed on the worker's heartbeat thread too, not only when a message arrives.
heartbeat.add_worker_heartbeat_hook(registry.evict_idle)


def live_session(video: Video, user_id: int, serving: ServingModel) -> tuple[LiveSession, bool]:
    """This process's live session of ``user_id`` on ``video`` running ``serving`` (the page's model,
    see ``page_model``), marked busy (``registry.release`` it), and whether it is new: opened empty
    (objects load lazily) when absent or when it runs another model."""

    def open_session() -> LiveSession:
        frames = video.frames.source()
        if len(frames) != len(video.annotated_frame_indices()):
            raise SegmentationError(f"the video has {len(video.annotated_frame_indices())} annotated frames but "
                                    f"{len(frames)} frame files; ingest it again")
        return LiveSession(video, user_id, serving, get_segmenter(serving).open_session(frames))

    return registry.get(video.pk, user_id, serving, open_session)


# -- handling one message -----------------------------------------------------------------------


def handle_envelope(data: dict[str, Any]) -> None:
    """Serve one message of a session; every outcome is a reply, never an exception."""
    try:
        envelope = SessionEnvelope.model_validate(data)
    except ValidationError:
        logger.error("malformed session envelope dropped: %r", data)
        return
    abandoned, owner = read_state(envelope)
    if abandoned:
        logger.info("skipping op %s of abandoned session %s", envelope.op, envelope.session)
        return
    replier = Replier(envelope)
    try:
        _handle(envelope, replier, owner)
    except Exception as error:
        replier.error(*error_reply(error, envelope.message.get("type")))


#: What a person reads when something unexpected failed on the worker (the log has the details).
WORKER_FAILED = "Something went wrong on the model worker"


class TrackFailed(Exception):
    """A track stopped by ``cause`` after ``track_started``: the ``done`` of ``total`` frames it
    committed before stay stored, so "nothing was changed" would be wrong."""

    def __init__(self, cause: Exception, done: int, total: int):
        super().__init__(str(cause))
        self.cause, self.done, self.total = cause, done, total


def error_reply(error: Exception, kind: str | None = None) -> tuple[str, str]:
    """(protocol error code, plain words) for what stopped a message: the one place for these words."""
    cause = error.cause if isinstance(error, TrackFailed) else error
    if isinstance(cause, (EditRefused, protocol.ProtocolError)):
        code, reason = cause.code, cause.message
    elif isinstance(cause, SegmentationError):
        code, reason = "segmentation", f"The model could not do that: {cause}"
    elif isinstance(cause, (Video.DoesNotExist, get_user_model().DoesNotExist)):
        code, reason = "not_found", "This video (or your account) no longer exists."
    else:
        logger.error("session message %s failed", kind, exc_info=cause)
        code, reason = "segmentation", WORKER_FAILED
        if not isinstance(error, TrackFailed):
            reason += "; nothing was changed. Try again."
    if isinstance(error, TrackFailed):
        reason = track_stopped(reason, error.done, error.total)
    return code, reason


def page_model(project: Project, envelope: SessionEnvelope) -> tuple[ServingModel, str | None]:
    """The model a page works with, and a notice for the page when that is not the one it started with.

    The pinned version while the page may keep it (``model_for_page``), else the project's
    serving model; an unpinned envelope gets the serving model.
    """
    if not envelope.pinned:
        return serving_model(project), None
    return model_for_page(project, envelope.model_version)


def model_for_page(project: Project, version_id: int | None) -> tuple[ServingModel, str | None]:
    """The model for a page pinned to ``version_id`` (None: the settings' model), and a notice when
    it cannot keep it. The one rule for what a page may keep, for rebuilt sessions and reconnecting
    sockets alike: a version of this project (or a shared one) that has served (production or
    retired: never a candidate nobody promoted) and still has its checkpoint file; otherwise the
    project's serving model. A version of another project reads as one that does not exist."""
    if version_id is None:
        return settings_model(), None
    version = (ModelVersion.objects.filter(pk=version_id)
               .filter(Q(project=project) | Q(project__isnull=True)).first())
    if version is None:
        why = "no longer exists in this project"
    elif version.status == ModelVersion.Status.CANDIDATE:
        why = f"({version.name}) is a candidate that has not been promoted"
    elif version.checkpoint and not storage.checkpoint_available(version.checkpoint):
        why = f"({version.name}) lost its checkpoint file"
    else:
        return version_model(version), None
    current = serving_model(project)
    return current, f"The model version this page started with {why}: your edits now use {current.name}."


HANDLERS: dict[str, Callable[..., None]] = {}


def _handler(type_: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def register(function: Callable[..., None]) -> Callable[..., None]:
        HANDLERS[type_] = function
        return function

    return register


def _handle(envelope: SessionEnvelope, replier: Replier, previous_owner: str | None) -> None:
    msg = envelope.message
    handler = HANDLERS.get(msg.get("type"))
    if handler is None:
        raise protocol.ProtocolError("bad_message", f"Workers do not handle {msg.get('type')!r} messages.")
    queue = workers.own_queue()
    if previous_owner and previous_owner != queue:
        # The session lived on another worker since this one last saw it: what is here is stale.
        registry.drop(envelope.video_id, envelope.user_id)
    live = registry.checkout(envelope.video_id, envelope.user_id)
    notice = None
    try:
        fresh = live is not None and live.context_fresh() and live.serves(envelope)
        if fresh:
            video, user, serving = live.video, live.user, live.serving
        else:
            video = Video.objects.select_related("project").get(pk=envelope.video_id, status=Video.Status.READY)
            user = get_user_model().objects.get(pk=envelope.user_id, is_active=True)
            serving, notice = page_model(video.project, envelope)
        if envelope.assign or previous_owner != queue:
            # Name this worker at once: the consumer holds the session's next messages until it knows.
            moved = bool(previous_owner) and previous_owner != queue
            replier.reply(protocol.message("worker", state="rebuilding" if moved else "ready", model=serving.name,
                                           model_fallback=serving.fallback), final=False)
        if not fresh:
            if live is not None:
                registry.release(live)
            live = None
            live, _ = live_session(video, user.pk, serving)
            live.set_context(video, user)
        if notice:
            replier.model_changed(serving, notice)
        now = time.monotonic()
        if previous_owner != queue or now - live.owner_written_at > settings.SESSION_IDLE_SECONDS / 4:
            workers.set_session_owner(video.pk, user.pk, queue)
            live.owner_written_at = now
        handler(envelope, replier, video, user, live)
    finally:
        if live is not None:
            registry.release(live)


def _masklet(video: Video, object_id: int, user: Any) -> Masklet:
    """The masklet (sharing ``video``) with ``others_revision``: the newest revision of its masks
    written by someone else, which tells a live session whether what it holds is still current."""
    masklet = Masklet.objects.filter(video=video, object_id=object_id).select_related("lock_holder").annotate(
        others_revision=_newest_revision_by_others(user)).first()
    if masklet is None:
        raise EditRefused("not_found", f"Object {object_id} does not exist on this video.")
    masklet.video = video
    return masklet


def _newest_revision_by_others(user: Any) -> Subquery:
    return Subquery(MaskFrameRevision.objects.filter(masklet=OuterRef("pk")).exclude(author_id=user.pk)
                    .order_by("-pk").values("pk")[:1])


def _state(masklet: Masklet) -> tuple[int, int | None]:
    """What a live session remembers of a loaded object (see ``LiveSession.ensure_objects``)."""
    return masklet.pk, masklet.others_revision


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = call()
    return result, (time.perf_counter() - start) * 1000.0


def _send_mask(replier: Replier, saved: SavedMask, model_ms: float) -> None:
    fields = saved.to_message()
    replier.answer("mask", **fields, model_ms=round(model_ms, 2))
    replier.broadcast("mask", **fields)


def _model_edit(envelope: SessionEnvelope, replier: Replier, video: Video, user: Any, live: LiveSession, kind: str,
                payload: dict, run_model: Callable[[int, int], np.ndarray], drawn: dict | None = None) -> None:
    """click/box/paint in ONE transaction: lock and re-check the masklet (reading in the same query
    whether someone else changed it since the session loaded it), run the model on the live
    session, store prompt + mask; the reply goes after the commit. ``drawn``: the person's own
    mask (paint), stored as drawn; otherwise the model's mask is stored."""
    msg = envelope.message
    object_id, frame = msg["object_id"], msg["frame"]
    index = live.index(frame)
    model_ms = 0.0

    def compute(row: Masklet) -> dict:
        nonlocal model_ms
        live.ensure_objects(video, {object_id: _state(row)})
        mask, model_ms = _timed(lambda: run_model(index, object_id))
        return drawn if drawn is not None else encode_rle(mask)

    known = object_id in live.loaded
    for attempt in (1, 2):
        masklet = _masklet_ref(live, video, object_id, user)
        try:
            saved = annotation.record_edit(masklet, user, frame_index=frame, kind=kind, payload=payload, rle=compute,
                                           session_id=envelope.session,
                                           annotations={"others_revision": _newest_revision_by_others(user)},
                                           model_version=live.serving.model_version())
            break
        except BaseException as error:
            live.forget(object_id)  # the model may hold a prompt the database does not: rebuild it
            # The masklet the session knew was deleted (and maybe re-created under the same id): look it up.
            stale = isinstance(error, EditRefused) and error.code == "not_found" and known and attempt == 1
            if not stale:
                raise
    _send_mask(replier, saved, model_ms)


def _masklet_ref(live: LiveSession, video: Video, object_id: int, user: Any) -> Masklet:
    """The masklet to lock for an edit: the one the session holds (no query), else looked up."""
    if object_id in live.loaded:
        return Masklet(pk=live.loaded[object_id][0], video=video, object_id=object_id)
    return _masklet(video, object_id, user)


@_handler("click")
def _click(envelope: SessionEnvelope, replier: Replier, video: Video, user: Any, live: LiveSession) -> None:
    msg = envelope.message
    label = 1 if msg["positive"] else 0
    payload = {"x": msg["x"], "y": msg["y"], "positive": msg["positive"]}
    _model_edit(envelope, replier, video, user, live, "click", payload,
                lambda index, object_id: live.segmenter.add_points(index, object_id, [(msg["x"], msg["y"])], [label]))


@_handler("box")
def _box(envelope: SessionEnvelope, replier: Replier, video: Video, user: Any, live: LiveSession) -> None:
    box = envelope.message["box"]
    _model_edit(envelope, replier, video, user, live, "box", dict(zip(("x0", "y0", "x1", "y1"), box, strict=True)),
                lambda index, object_id: live.segmenter.add_box(index, object_id, box))


def decode_painted(counts: str, height: int, width: int) -> np.ndarray:
    """The brushed mask; refuses RLE strings that do not describe exactly a (height, width) mask."""
    try:
        return decode_checked(counts, height, width)
    except RLEError as error:
        raise protocol.ProtocolError("bad_message", f"The painted mask could not be read: {error}.") from None


@_handler("paint")
def _paint(envelope: SessionEnvelope, replier: Replier, video: Video, user: Any, live: LiveSession) -> None:
    msg = envelope.message
    mask = decode_painted(msg["counts"], video.height, video.width)
    # The person's mask is stored as drawn; the model takes it as this frame's mask prompt.
    _model_edit(envelope, replier, video, user, live, "paint", {"counts": msg["counts"]},
                lambda index, object_id: live.segmenter.add_mask(index, object_id, mask),
                drawn={"size": [video.height, video.width], "counts": msg["counts"]})


def _apply_stored(live: LiveSession, index: int, masklet: Masklet, saved: SavedMask, video: Video) -> float:
    """After clear/restore: the frame's prompt in the model becomes what is now stored."""
    object_id = masklet.object_id
    if not live.holds(object_id, masklet.pk) or live.loaded[object_id] != _state(masklet):
        live.forget(object_id)
        return 0.0  # rebuilt from the database when next used, which holds the new state
    try:
        if saved.source in ACCEPTED_SOURCES and saved.area > 0:
            mask = decode_rle({"size": [video.height, video.width], "counts": saved.counts})
            return _timed(lambda: live.segmenter.add_mask(index, object_id, mask))[1]
        if object_id in live.segmenter.object_ids:
            return _timed(lambda: live.segmenter.clear_prompts(index, object_id))[1]
        return 0.0
    except Exception:
        # The row is committed; the model will be rebuilt from it rather than fail the reply.
        logger.warning("live session out of step after %s; object %s reloads", saved.source, object_id, exc_info=True)
        live.forget(object_id)
        return 0.0


@_handler("clear")
def _clear(envelope: SessionEnvelope, replier: Replier, video: Video, user: Any, live: LiveSession) -> None:
    msg = envelope.message
    index = live.index(msg["frame"])
    masklet = _masklet(video, msg["object_id"], user)
    saved = annotation.clear_frame(masklet, user, frame_index=msg["frame"], session_id=envelope.session)
    _send_mask(replier, saved, _apply_stored(live, index, masklet, saved, video))


@_handler("restore")
def _restore(envelope: SessionEnvelope, replier: Replier, video: Video, user: Any, live: LiveSession) -> None:
    msg = envelope.message
    index = live.index(msg["frame"])
    masklet = _masklet(video, msg["object_id"], user)
    saved = annotation.restore_frame(masklet, user, frame_index=msg["frame"], revision=msg["revision"],
                                     session_id=envelope.session)
    _send_mask(replier, saved, _apply_stored(live, index, masklet, saved, video))


def _track_objects(video: Video, user: Any, requested: list[int] | None) -> dict[int, tuple[int, int | None]]:
    """The objects a track covers, ``{object_id: (masklet pk, newest revision by others)}``: the ones
    asked for (each must be editable), else every object locked by me."""
    if requested is None:
        mine = Masklet.objects.filter(
            video=video, status=Masklet.Status.DRAFT, lock_holder=user, lock_expires_at__gt=timezone.now(),
        ).annotate(others_revision=_newest_revision_by_others(user)).order_by("object_id")
        return {object_id: (pk, others) for object_id, pk, others in mine.values_list("object_id", "pk",
                                                                                       "others_revision")}
    masklets = {}
    for object_id in requested:
        masklet = _masklet(video, object_id, user)
        annotation.check_editable(masklet, user)
        masklets[object_id] = _state(masklet)
    return masklets


def _frames_to_visit(total_frames: int, index: int, direction: str) -> int:
    return {"forward": total_frames - index, "backward": index + 1, "both": total_frames}[direction]


@_handler("track")
def _track(envelope: SessionEnvelope, replier: Replier, video: Video, user: Any, live: LiveSession) -> None:
    msg = envelope.message
    index = live.index(msg["frame"])
    object_ids = _track_objects(video, user, msg.get("object_ids"))
    if not object_ids:
        raise EditRefused("empty", "No object to track: select (lock) an object first.")
    live.sync_objects(video, object_ids)
    tracked = [object_id for object_id in object_ids if object_id in live.segmenter.object_ids]
    if not tracked:
        raise EditRefused("empty", "Nothing to track yet: click on the object in a frame first.")
    total = _frames_to_visit(len(live.frames), index, msg["direction"])
    model_version = live.serving.model_version()
    replier.reply(protocol.message("track_started", re=replier.re, op=envelope.op, total=total, object_ids=tracked),
                  final=False)

    done = written = skipped_count = 0
    model_ms = 0.0
    summary = TrackSummary(tracked)
    batch: list[TrackedFrame] = []
    last_flush = time.monotonic()

    def store(computed: list[TrackedFrame], model_ms_so_far: float) -> None:
        """On the writer thread: commit one batch, then report it."""
        nonlocal done, written, skipped_count
        frames = [(frame, masks) for frame, masks, _ in computed]
        quality = {(object_id, frame): rating
                   for frame, _, ratings in computed for object_id, rating in ratings.items()}
        saved, skipped = annotation.save_tracked(video, user, frames, model_version=model_version,
                                                 overwrite_human=msg["overwrite_human"], quality=quality)
        done += len(frames)
        written += len(saved)
        skipped_count += len(skipped)
        masks = [{k: v for k, v in s.to_message().items() if k != "previous_revision"} for s in saved]
        skipped_list = [{"object_id": object_id, "frame": frame} for object_id, frame in skipped]
        progress = {"op": envelope.op, "done": done, "total": total, "masks": masks, "skipped": skipped_list}
        replier.reply(protocol.message("track_progress", **progress, model_ms=round(model_ms_so_far, 2)), final=False)
        replier.broadcast("track_progress", **progress)

    writer = TrackWriter(store)

    def flush() -> None:
        nonlocal batch, last_flush
        if batch:
            writer.submit(batch, model_ms)
            batch, last_flush = [], time.monotonic()

    cancelled, failure = False, None
    try:
        results = live.segmenter.propagate(index, msg["direction"])
        try:
            while True:
                if stop_requested(envelope):  # every frame: one cache read, small beside a frame's model time
                    cancelled = True
                    break
                result, ms = _timed(lambda: next(results, None))
                if result is None:
                    break
                model_ms += ms
                native = live.frames[result.frame_index]
                summary.add(native, result.masks)
                batch.append((native, {object_id: encode_rle(result.masks[object_id])
                                       for object_id in tracked if object_id in result.masks},
                              {object_id: result.quality[object_id] for object_id in tracked
                               if object_id in result.quality}))
                due = len(batch) >= FLUSH_FRAMES or time.monotonic() - last_flush >= FLUSH_SECONDS
                # While the previous batch is still committing, frames gather into a bigger one: fewer
                # statements per frame when the database is the slower side.
                if due and (writer.idle() or len(batch) >= MAX_BATCH_FRAMES):
                    flush()
            flush()
        except Exception:
            with contextlib.suppress(Exception):
                flush()  # what was computed is kept
            raise
        finally:
            results.close()
    except Exception as error:
        failure = error
    try:
        writer.finish()  # every batch committed and reported (or the first failure raised) before the end
    except Exception as error:
        failure = failure or error
    if failure is not None:  # the error reply says how many frames are stored (``done``, now final)
        raise TrackFailed(failure, done, total) from failure
    replier.answer("track_done", op=envelope.op, done=done, total=total, cancelled=cancelled, written=written,
                   skipped=skipped_count, objects=summary.objects(), model_ms=round(model_ms, 2))
