"""Editing masklets: objects, locks, prompts and the masks they produce.

The WebSocket consumer and the GPU workers call these functions; nothing else changes a
masklet during annotation. The rules they enforce:

- A masklet is editable by a user iff it is a draft, the user's role may annotate, and the user
  holds an unexpired lock on it (``settings.LOCK_SECONDS``, renewed by every write and by
  ``renew_locks``). An expired lock may be taken by anyone; superusers obey locks too, so two
  people never silently overwrite each other.
- Every edit is one transaction: the masklet row is locked and re-checked, the prompt is
  logged, the mask is written with its revision (``annotator.services.masks``, the only mask
  writer) and the lock is renewed. Either all of it is stored or none of it.
- Person-made masks are stored with source ``human``; propagation (``save_tracked``) writes
  source ``model`` and leaves ``human`` frames alone unless asked.

Refusals raise ``EditRefused(code, message)``: ``code`` is a protocol error code, ``message``
is shown to the annotator as is, so it is written in plain words.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from annotator.masklet_status import MaskletAction, TransitionRefused, transition
from annotator.models import MaskFrame, MaskFrameRevision, Masklet, MaskSource, Prompt, Review, Role, Video
from annotator.permissions import Action, User, role_allows, role_of
from annotator.selectors import CONFIDENT_QUALITY, is_confident, with_quality
from annotator.services.masks import MaskWrite, restore_revision, save_mask_frames
from engine import verifier
from segmentation.masks import empty_rle
from segmentation.rle import RLEError, check_counts, valid_rle
from segmentation.segmenter import FrameQuality


class EditRefused(Exception):
    """An edit that the rules do not allow; ``code`` is a protocol error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class SavedMask:
    """A mask that is committed (or about to be, inside the caller's transaction)."""

    object_id: int
    frame_index: int
    counts: str
    source: str
    revision: int
    previous_revision: int
    area: int
    quality: float | None = None

    @classmethod
    def written(cls, object_id: int, revision: MaskFrameRevision) -> SavedMask:
        """The mask a revision just written by ``save_mask_frames`` made current."""
        return cls(object_id, revision.frame_index, revision.rle_counts, revision.source, revision.revision,
                   revision.revision - 1, revision.area, revision.quality)

    def to_message(self) -> dict[str, Any]:
        """The mask fields of the protocol's ``mask`` message."""
        return {"object_id": self.object_id, "frame": self.frame_index, "counts": self.counts,
                "source": self.source, "revision": self.revision, "previous_revision": self.previous_revision,
                "area": self.area, "quality": self.quality}


#: Protocol message types (and Prompt kinds themselves) -> the Prompt kind logged for a person's edit.
EDIT_KINDS: dict[str, str] = {
    "click": Prompt.Kind.POINT, Prompt.Kind.POINT: Prompt.Kind.POINT,
    "box": Prompt.Kind.BOX, Prompt.Kind.BOX: Prompt.Kind.BOX,
    "paint": Prompt.Kind.BRUSH, Prompt.Kind.BRUSH: Prompt.Kind.BRUSH, Prompt.Kind.MASK: Prompt.Kind.MASK,
}


def lock_until() -> Any:
    """When a lock taken or renewed now expires."""
    return timezone.now() + timedelta(seconds=settings.LOCK_SECONDS)


def _name(masklet: Masklet) -> str:
    return f"object {masklet.object_id}" + (f" ({masklet.label})" if masklet.label else "")


# -- checks ---------------------------------------------------------------------------------


def _check_may_annotate(masklet_or_video: Masklet | Video, user: User) -> None:
    """The user's role in the project must allow annotating (superusers may)."""
    video = masklet_or_video.video if isinstance(masklet_or_video, Masklet) else masklet_or_video
    if not (user.is_authenticated and user.is_active):
        raise EditRefused("forbidden", "Sign in to edit.")
    role = role_of(user, video.project)
    if role is None and not user.is_superuser:
        raise EditRefused("forbidden", "You are not a member of this project.")
    if not role_allows(user, role, Action.ANNOTATE):
        role_name = Role(role).label.lower() if role else "role"
        raise EditRefused("read_only", f"As a {role_name} you can view this video but not edit it.")


def _check_draft(masklet: Masklet) -> None:
    if masklet.status == Masklet.Status.SUBMITTED:
        raise EditRefused("read_only", f"{_name(masklet).capitalize()} is submitted for review; "
                                       "it cannot be edited unless the reviewer sends it back.")
    if masklet.status == Masklet.Status.APPROVED:
        raise EditRefused("read_only", f"{_name(masklet).capitalize()} was approved; it can no longer be edited.")
    if masklet.status == Masklet.Status.DISCARDED:
        raise EditRefused("read_only", f"The reviewer rejected {_name(masklet)} for good (no clear boundary); "
                                       "it can no longer be edited.")
    if masklet.status == Masklet.Status.REJECTED:
        raise EditRefused("read_only", f"The reviewer sent {_name(masklet)} back; reopen it to edit it.")


def _check_not_locked_by_other(masklet: Masklet, user: User) -> None:
    if masklet.lock_is_active() and masklet.lock_holder_id != user.pk:
        holder = masklet.lock_holder.get_username() if masklet.lock_holder else "someone else"
        raise EditRefused("locked", f"{holder} is editing {_name(masklet)}; it is read-only for you until "
                                    "they finish or stay away long enough for their lock to expire.")


def check_editable(masklet: Masklet, user: User) -> None:
    """Raise ``EditRefused`` unless ``user`` may edit ``masklet`` right now (see the module rules)."""
    _check_may_annotate(masklet, user)
    _check_draft(masklet)
    _check_not_locked_by_other(masklet, user)
    if not masklet.is_locked_by(user):
        raise EditRefused("locked", f"You do not hold {_name(masklet)} any more (your lock expired): "
                                    "select it again to continue editing.")


def _check_label(video: Video, label: str, current: str = "") -> str:
    """An active label of the project (or none); an object keeps a label that was retired since."""
    label = (label or "").strip()
    if len(label) > Masklet._meta.get_field("label").max_length:
        raise EditRefused("bad_message", "That label is too long (100 characters at most).")
    allowed = list(video.project.labels or [])
    if label and label in (video.project.retired_labels or []) and label != current:
        raise EditRefused("bad_message", f"“{label}” is retired: choose one of {', '.join(allowed) or 'no label'}.")
    if label and allowed and label not in allowed and label != current:
        raise EditRefused("bad_message", f"“{label}” is not one of this project's labels: {', '.join(allowed)}.")
    return label


def _locked_row(masklet: Masklet, annotations: dict[str, Any] | None = None) -> Masklet:
    """The masklet re-read under a row lock (call inside a transaction), sharing the caller's video;
    ``annotations`` are added to the query as they are."""
    rows = Masklet.objects.select_for_update().filter(pk=masklet.pk)
    try:
        row = rows.annotate(**(annotations or {})).get()
    except Masklet.DoesNotExist:
        raise EditRefused("not_found", f"{_name(masklet).capitalize()} no longer exists.") from None
    row.video = masklet.video
    return row


# -- objects and locks ----------------------------------------------------------------------


def create_masklet(video: Video, user: User, *, label: str = "") -> Masklet:
    """A new draft object on the video, locked to its creator (object ids count up per video)."""
    _check_may_annotate(video, user)
    if video.status != Video.Status.READY:
        raise EditRefused("not_found", "This video is not ready for annotation yet.")
    label = _check_label(video, label)
    for attempt in range(3):
        try:
            with transaction.atomic():
                Video.objects.select_for_update().filter(pk=video.pk).first()  # serialises id allocation
                highest = Masklet.objects.filter(video=video).aggregate(top=Max("object_id"))["top"] or 0
                masklet = Masklet.objects.create(video=video, object_id=highest + 1, label=label, assignee=user,
                                                 lock_holder=user, lock_expires_at=lock_until())
            return masklet
        except IntegrityError:  # a concurrent create took the id (databases without row locks)
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def update_masklet(masklet: Masklet, user: User, *, label: str) -> Masklet:
    """Relabel an object the user is editing (labels come from the project's label set)."""
    with transaction.atomic():
        row = _locked_row(masklet)
        check_editable(row, user)
        row.label = _check_label(row.video, label, current=row.label)
        row.lock_expires_at = lock_until()
        row.save(update_fields=["label", "lock_expires_at", "updated_at"])
    return row


def delete_masklet(masklet: Masklet, user: User) -> None:
    """Delete a draft object with all its masks, prompts and history (the page asks first)."""
    with transaction.atomic():
        row = _locked_row(masklet)
        _check_may_annotate(row, user)
        _check_draft(row)
        _check_not_locked_by_other(row, user)
        row.delete()


def acquire_lock(masklet: Masklet, user: User) -> Masklet:
    """Lock a draft to the user (or renew their lock); refused while someone else's lock is live."""
    with transaction.atomic():
        row = _locked_row(masklet)
        _check_may_annotate(row, user)
        _check_draft(row)
        _check_not_locked_by_other(row, user)
        row.lock_holder = user
        row.lock_expires_at = lock_until()
        row.save(update_fields=["lock_holder", "lock_expires_at", "updated_at"])
    return row


def release_lock(masklet: Masklet, user: User) -> Masklet:
    """Give the lock back; a no-op when nobody holds it; someone else's live lock is refused (``locked``)."""
    with transaction.atomic():
        row = _locked_row(masklet)
        _check_not_locked_by_other(row, user)
        if row.lock_holder_id == user.pk:
            row.lock_holder = None
            row.lock_expires_at = None
            row.save(update_fields=["lock_holder", "lock_expires_at", "updated_at"])
    return row


# -- edits ----------------------------------------------------------------------------------


def _number(payload: dict, key: str) -> float:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise EditRefused("bad_message", f"“{key}” must be a number.")
    return float(value)


def _clean_payload(kind: str, payload: dict, video: Video) -> dict[str, Any]:
    """The prompt as logged: checked, with only the fields the protocol defines."""
    if not isinstance(payload, dict):
        raise EditRefused("bad_message", "The prompt must be a JSON object.")
    width, height = video.width or 0, video.height or 0
    if kind == Prompt.Kind.POINT:
        x, y = _number(payload, "x"), _number(payload, "y")
        if not isinstance(payload.get("positive", True), bool):
            raise EditRefused("bad_message", "“positive” must be true or false.")
        if not (0 <= x <= width and 0 <= y <= height):
            raise EditRefused("bad_message", f"The click at ({x:g}, {y:g}) is outside the {width}×{height} frame.")
        return {"x": x, "y": y, "positive": payload.get("positive", True)}
    if kind == Prompt.Kind.BOX:
        x0, y0, x1, y1 = (_number(payload, key) for key in ("x0", "y0", "x1", "y1"))
        if x1 <= x0 or y1 <= y0:
            raise EditRefused("bad_message", "A box needs a width and a height: drag from one corner to the other.")
        if not (0 <= x0 and 0 <= y0 and x1 <= width and y1 <= height):
            raise EditRefused("bad_message", f"The box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) does not fit the "
                                             f"{width}×{height} frame.")
        return {"x0": x0, "y0": y0, "x1": x1, "y1": y1}
    if kind in (Prompt.Kind.BRUSH, Prompt.Kind.MASK):
        try:
            return {"counts": check_counts(payload.get("counts"))}
        except RLEError as error:
            raise EditRefused("bad_message", f"The painted mask could not be read: {error}.") from None
    raise EditRefused("bad_message", f"Unknown kind of edit “{kind}”.")


def _canonical(rle: dict, video: Video) -> dict:
    """A mask that came from the browser, checked and canonical, so a corrupt string is never stored."""
    try:
        return valid_rle(rle, video.height, video.width)
    except RLEError as error:
        raise EditRefused("bad_message", f"The painted mask could not be read: {error}.") from None


def _write(row: Masklet, user: User, frame_index: int, rle: dict, *, source: str,
           model_version: Any = None) -> SavedMask:
    """One frame's mask through the one mask writer; its refusals become ``bad_message``."""
    try:
        [written] = save_mask_frames(row, [MaskWrite(frame_index, rle)], source=source, author=user,
                                     model_version=model_version)
    except ValidationError as error:
        raise EditRefused("bad_message", " ".join(error.messages)) from None
    return SavedMask.written(row.object_id, written)


def _check_frame(video: Video, frame_index: int) -> int:
    if isinstance(frame_index, bool) or not isinstance(frame_index, int):
        raise EditRefused("bad_message", "“frame” must be a frame number.")
    stride, count = video.stride or 0, video.frame_count or 0
    if not (stride and 0 <= frame_index < count and frame_index % stride == 0):
        raise EditRefused("bad_message", f"Frame {frame_index} is not one of this video's annotated frames.")
    return frame_index


def _edit(masklet: Masklet, user: User, frame_index: int, kind: str, payload: dict, session_id: str,
          write: Any, annotations: dict[str, Any] | None = None) -> SavedMask:
    """The shared transaction of every person's edit: re-check, log the prompt, write, renew the lock."""
    with transaction.atomic():
        row = _locked_row(masklet, annotations)
        check_editable(row, user)
        _check_frame(row.video, frame_index)
        Prompt.objects.create(masklet=row, frame_index=frame_index, kind=kind, payload=payload, author=user,
                              session_id=(session_id or "")[:64])
        saved = write(row)  # may compute the mask now, holding the row (see record_edit)
        row.lock_expires_at = lock_until()
        row.save(update_fields=["lock_expires_at", "updated_at"])
    return saved


def record_edit(masklet: Masklet, user: User, *, frame_index: int, kind: str, payload: dict,
                rle: dict | Callable[[Masklet], dict], session_id: str,
                annotations: dict[str, Any] | None = None, model_version: Any = None) -> SavedMask:
    """Store a person's click/box/brush and the mask it produced, as source ``human``.

    ``kind`` is a protocol type (``click``, ``box``, ``paint``) or a ``Prompt.Kind`` value.
    ``rle`` may be a function of the locked, re-checked row (with ``annotations`` added to its
    query) that computes the mask: a live session runs the model there, so an edit that would be
    refused costs no model work and the row cannot change between the check and the write.
    ``model_version``: the registered version that turned a click or box into the mask (None for
    the settings' model); a painted mask is the person's own and records none.
    """
    prompt_kind = EDIT_KINDS.get(kind)
    if prompt_kind is None:
        raise EditRefused("bad_message", f"Unknown kind of edit “{kind}”.")
    payload = _clean_payload(prompt_kind, payload, masklet.video)

    def write(row: Masklet) -> SavedMask:
        mask = rle(row) if callable(rle) else rle
        drawn = prompt_kind in (Prompt.Kind.BRUSH, Prompt.Kind.MASK)
        if drawn:
            mask = _canonical(mask, row.video)
        return _write(row, user, frame_index, mask, source=MaskSource.HUMAN,
                      model_version=None if drawn else model_version)

    return _edit(masklet, user, frame_index, prompt_kind, payload, session_id, write, annotations)


def write_masks(masklet: Masklet, user: User, frames: list[tuple[int, dict]], *, session_id: str) -> list[SavedMask]:
    """Store masks a person (or their script, through the API) drew on several frames, as source ``human``.

    The same rules as an edit on the page, in one transaction: the row is locked and checked (a
    draft the user may annotate, nobody else's lock; the user takes or renews the lock), every frame
    must be an annotated frame and every mask a readable RLE of the video's size (``_canonical``, as
    a painted mask), each frame is logged as a ``mask`` prompt, and every mask gets a
    revision. All frames are stored or none."""
    if not frames:
        raise EditRefused("bad_message", "Send at least one frame.")
    if len({frame_index for frame_index, _ in frames}) != len(frames):
        raise EditRefused("bad_message", "The same frame appears twice.")
    with transaction.atomic():
        row = _locked_row(masklet)
        _check_may_annotate(row, user)
        _check_draft(row)
        _check_not_locked_by_other(row, user)
        writes = []
        for frame_index, rle in frames:
            _check_frame(row.video, frame_index)
            writes.append(MaskWrite(frame_index, _canonical(rle, row.video)))
        Prompt.objects.bulk_create([Prompt(masklet=row, frame_index=w.frame_index, kind=Prompt.Kind.MASK,
                                           payload={"counts": w.rle["counts"]}, author=user,
                                           session_id=(session_id or "")[:64]) for w in writes])
        try:
            written = save_mask_frames(row, writes, source=MaskSource.HUMAN, author=user)
        except ValidationError as error:
            raise EditRefused("bad_message", " ".join(error.messages)) from None
        row.lock_holder, row.lock_expires_at = user, lock_until()
        row.save(update_fields=["lock_holder", "lock_expires_at", "updated_at"])
    return [SavedMask.written(row.object_id, revision) for revision in written]


def clear_frame(masklet: Masklet, user: User, *, frame_index: int, session_id: str) -> SavedMask:
    """Withdraw the person's input on a frame: an empty mask with source ``model`` (tracking may refill it)."""
    video = masklet.video
    empty = empty_rle(video.height or 0, video.width or 0)
    return _edit(masklet, user, frame_index, Prompt.Kind.CLEAR, {}, session_id,
                 lambda row: _write(row, user, frame_index, empty, source=MaskSource.MODEL))


def restore_frame(masklet: Masklet, user: User, *, frame_index: int, revision: int, session_id: str) -> SavedMask:
    """Undo/redo: make ``revision`` of the frame current again; revision 0 is "no mask" (empty, model)."""
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
        raise EditRefused("bad_message", "“revision” must be a whole number, 0 or more.")

    def write(row: Masklet) -> SavedMask:
        if revision == 0:
            empty = empty_rle(row.video.height or 0, row.video.width or 0)
            return _write(row, user, frame_index, empty, source=MaskSource.MODEL)
        try:
            restored = restore_revision(row, frame_index, revision, author=user)
        except ValidationError:
            raise EditRefused("not_found", f"Frame {frame_index} of {_name(row)} has no revision {revision} "
                                           "to go back to.") from None
        return SavedMask.written(row.object_id, restored)

    return _edit(masklet, user, frame_index, Prompt.Kind.RESTORE, {"revision": revision}, session_id, write)


def save_tracked(video: Video, user: User, frames: list[tuple[int, dict[int, dict]]], *, model_version=None,
                 overwrite_human: bool = False, quality: dict[tuple[int, int], FrameQuality] | None = None,
                 ) -> tuple[list[SavedMask], list[tuple[int, int]]]:
    """Store one batch of propagated masks in one transaction, source ``model``.

    ``frames`` is ``[(frame_index, {object_id: rle})]``; ``quality`` the backend's rating of those
    masks by ``(object_id, frame_index)`` (a mask without one is stored unrated), re-scored by the
    project's active learned verifier when it has one (``engine.verifier.rescore``). Objects the user
    cannot edit (now) are left out; frames a person edited are skipped unless ``overwrite_human``.
    Returns the saved masks (in the order given) and the skipped ``(object_id, frame_index)`` pairs.
    """
    quality = verifier.rescore(video.project_id, quality or {})
    by_object: dict[int, list[MaskWrite]] = defaultdict(list)
    for frame_index, masks in frames:
        for object_id, rle in masks.items():
            key = (int(object_id), int(frame_index))
            by_object[key[0]].append(MaskWrite(key[1], rle, quality.get(key)))
    if not by_object:
        return [], []
    try:
        _check_may_annotate(video, user)
    except EditRefused:
        return [], []
    stored: dict[tuple[int, int], MaskFrameRevision] = {}
    skipped: list[tuple[int, int]] = []
    with transaction.atomic():
        rows = list(Masklet.objects.select_for_update().filter(
            video=video, object_id__in=list(by_object), status=Masklet.Status.DRAFT, lock_holder=user,
            lock_expires_at__gt=timezone.now()))
        for row in rows:
            row.video = video
            writes = by_object[row.object_id]
            try:
                written = save_mask_frames(row, writes, source=MaskSource.MODEL, author=user,
                                           model_version=model_version, overwrite_human=overwrite_human)
            except ValidationError as error:
                raise EditRefused("bad_message", " ".join(error.messages)) from None
            stored.update(((row.object_id, revision.frame_index), revision) for revision in written)
            skipped.extend((row.object_id, w.frame_index) for w in writes
                           if (row.object_id, w.frame_index) not in stored)
        Masklet.objects.filter(pk__in=[row.pk for row in rows]).update(lock_expires_at=lock_until())
    saved = []
    for frame_index, masks in frames:
        for object_id in masks:
            key = (int(object_id), int(frame_index))
            if key in stored:
                saved.append(SavedMask.written(key[0], stored[key]))
    return saved, skipped


# -- review round trip ----------------------------------------------------------------------


def change_status(row: Masklet, action: MaskletAction) -> None:
    """The row's new status from the transition table (``annotator.masklet_status``); the caller saves it."""
    try:
        transition(row, action)
    except TransitionRefused as refused:
        raise EditRefused("read_only", str(refused)) from None


def submit_masklet(masklet: Masklet, user: User) -> Masklet:
    """Hand a finished object to review: draft -> submitted, lock released; refused when it has no mask."""
    with transaction.atomic():
        row = _locked_row(masklet)
        check_editable(row, user)
        if not MaskFrame.objects.filter(masklet=row, area__gt=0).exists():
            raise EditRefused("empty", f"{_name(row).capitalize()} has no mask on any frame yet: click on the "
                                       "object in a frame (and track it) before submitting.")
        change_status(row, MaskletAction.SUBMIT)
        row.lock_holder = None
        row.lock_expires_at = None
        row.assignee = row.assignee or user
        row.save(update_fields=["status", "lock_holder", "lock_expires_at", "assignee", "updated_at"])
        approve_if_confident(row)
    return row


def approve_if_confident(masklet: Masklet) -> Review | None:
    """Where the project switched auto-approve on, approve a just-submitted masklet whose model frames are all
    confidently good (``annotator.selectors.CONFIDENT_QUALITY``), with a review row saying it was automatic
    and no reviewer. Call inside the submit's transaction; None when it stays for a person to review."""
    row = with_quality(Masklet.objects.filter(pk=masklet.pk)).select_related("video__project").first()
    if row is None or not row.video.project.auto_approve_confident or not is_confident(row):
        return None
    review = Review.objects.create(masklet=row, reviewer=None, verdict=Review.Verdict.SATISFACTORY, automatic=True,
                                   comment=f"Approved automatically: every model frame scored at least "
                                           f"{CONFIDENT_QUALITY:.2f} (lowest {row.lowest_quality:.2f}).")
    change_status(row, MaskletAction.APPROVE)
    row.save(update_fields=["status", "updated_at"])
    masklet.status = row.status
    return review


def reopen_masklet(masklet: Masklet, user: User) -> Masklet:
    """Take back an object the reviewer sent back: rejected -> draft, locked to the user. Only the
    annotator it was sent back to (its assignee) or a project admin may."""
    with transaction.atomic():
        row = _locked_row(masklet)
        _check_may_annotate(row, user)
        if (row.status == Masklet.Status.REJECTED and row.assignee_id not in (None, user.pk)
                and not role_allows(user, role_of(user, row.video.project), Action.MANAGE_PROJECT)):
            holder = row.assignee.get_username() if row.assignee else "its annotator"
            raise EditRefused("forbidden", f"{_name(row).capitalize()} was sent back to {holder}: only they or a "
                                           "project admin may reopen it.")
        if row.status == Masklet.Status.DRAFT:
            _check_not_locked_by_other(row, user)
        change_status(row, MaskletAction.REOPEN)
        row.lock_holder = user
        row.lock_expires_at = lock_until()
        row.save(update_fields=["status", "lock_holder", "lock_expires_at", "updated_at"])
    return row

