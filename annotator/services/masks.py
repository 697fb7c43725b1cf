"""Writing masks: the one place a ``MaskFrame`` changes, always with a revision row.

Every write appends a ``MaskFrameRevision`` (append-only history), so any earlier state of a
frame can be restored, and "frames a person edited" (SA-V ``masklet_edited_frame_count``) is
read from the history. Writes are bulk (propagation streams many frames at once) and run in
one transaction: either every frame of a call is stored with its revision, or none is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction

from annotator.models import MaskFrame, MaskFrameRevision, Masklet, MaskSource
from segmentation.masks import rle_area, rle_bbox
from segmentation.segmenter import FrameQuality

#: Sources of accepted human annotation: a person drew the mask, here (``human``) or in another
#: tool whose dataset was imported (``imported``). Propagation does not overwrite them (unless
#: asked) and a live session is rebuilt with them as prompts (``selectors.human_masks``). Not the
#: same as "edited here": SA-V edited-frame counts and the effort metrics count people's own work
#: in this tool (``human`` revisions, the prompt log), never imported masks.
ACCEPTED_SOURCES = frozenset({MaskSource.HUMAN, MaskSource.IMPORTED})


@dataclass(frozen=True)
class MaskWrite:
    """One frame's new mask: a COCO compressed RLE ``{"size": [H, W], "counts": str}``, and for a
    model's mask the backend's rating of it (``quality``; stored only with source ``model``)."""

    frame_index: int
    rle: dict
    quality: FrameQuality | None = None


def save_mask_frames(
    masklet: Masklet,
    writes: Iterable[MaskWrite],
    *,
    source: str,
    author=None,
    model_version=None,
    overwrite_human: bool = True,
) -> list[MaskFrameRevision]:
    """Store masks for several frames of one masklet; returns the revisions written, in order
    (a frame left as it was has none), so callers answer from them without reading back.

    With ``overwrite_human=False`` (propagation's default upstream), frames whose current mask
    came from a person (any of ``ACCEPTED_SOURCES``, imported masks included) are left as they
    are: a model never silently replaces human annotation.
    """
    if source not in MaskSource.values:
        raise ValidationError(f"unknown mask source {source!r}")
    video = masklet.video
    valid_frames = set(video.annotated_frame_indices()) if video.frame_count else None
    writes = list(writes)
    for write in writes:
        _check_write(write, video, valid_frames)
    if len({w.frame_index for w in writes}) != len(writes):
        raise ValidationError("the same frame appears twice in one write")

    # No savepoint inside a caller's transaction (a person's edit, an import): nothing here is
    # caught and retried, so a failure rolls back the caller's whole transaction either way.
    with transaction.atomic(savepoint=False):
        current = {
            frame.frame_index: frame
            for frame in MaskFrame.objects.select_for_update().filter(
                masklet=masklet, frame_index__in=[w.frame_index for w in writes]
            )
        }
        to_create, to_update, revisions = [], [], []
        for write in writes:
            existing = current.get(write.frame_index)
            if existing is not None and not overwrite_human and existing.source in ACCEPTED_SOURCES:
                continue
            quality = write.quality if source == MaskSource.MODEL else None
            fields = {
                "rle_counts": write.rle["counts"],
                "area": rle_area(write.rle),
                "bbox": rle_bbox(write.rle),
                "source": source,
                "model_version": model_version,
                "quality": None if quality is None else quality.score,
                "quality_features": None if quality is None else quality.features,
            }
            if existing is None:
                frame = MaskFrame(masklet=masklet, frame_index=write.frame_index, revision=1, updated_by=author,
                                  **fields)
                to_create.append(frame)
            else:
                frame = existing
                for name, value in fields.items():
                    setattr(frame, name, value)
                frame.revision += 1
                frame.updated_by = author
                to_update.append(frame)
            revisions.append(MaskFrameRevision(masklet=masklet, frame_index=write.frame_index,
                                               revision=frame.revision, author=author, **fields))
        MaskFrame.objects.bulk_create(to_create)
        MaskFrame.objects.bulk_update(
            to_update, ["rle_counts", "area", "bbox", "source", "model_version", "quality", "quality_features",
                        "revision", "updated_by", "updated_at"]
        )
        MaskFrameRevision.objects.bulk_create(revisions)
    return revisions


def restore_revision(masklet: Masklet, frame_index: int, revision: int, *, author=None) -> MaskFrameRevision:
    """Make an earlier revision current again, as a new revision (history is never rewritten); returns it."""
    old = MaskFrameRevision.objects.filter(masklet=masklet, frame_index=frame_index, revision=revision).first()
    if old is None:
        raise ValidationError(f"masklet {masklet.pk} has no revision {revision} of frame {frame_index}")
    rle = {"size": [masklet.video.height, masklet.video.width], "counts": old.rle_counts}
    quality = None if old.quality is None else FrameQuality(old.quality, old.quality_features or {})
    [restored] = save_mask_frames(masklet, [MaskWrite(frame_index, rle, quality)], source=old.source,
                                  author=author, model_version=old.model_version)
    return restored


def _check_write(write: MaskWrite, video, valid_frames: set[int] | None) -> None:
    size = write.rle.get("size") if isinstance(write.rle, dict) else None
    if size is None or "counts" not in write.rle:
        raise ValidationError(f"frame {write.frame_index}: a mask must be a COCO RLE with 'size' and 'counts'")
    if video.height and list(size) != [video.height, video.width]:
        expected = [video.height, video.width]
        raise ValidationError(f"frame {write.frame_index}: mask size {list(size)} is not the video size {expected}")
    if valid_frames is not None and write.frame_index not in valid_frames:
        raise ValidationError(f"frame {write.frame_index} is not an annotated frame of video {video.name}")
    if write.quality is not None and not 0.0 <= write.quality.score <= 1.0:
        raise ValidationError(f"frame {write.frame_index}: quality {write.quality.score} is outside [0, 1]")
