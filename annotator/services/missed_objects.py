"""A reviewer's decision on a possibly missed object (``annotator.models.MissedObject``).

- accept: the suggestion becomes a draft masklet whose mask on the suggestion's frame is the
  suggested one (stored as a person's mask, authored by the reviewer who accepted it, so tracking
  starts from it), assigned to the annotator who marked the video done; the video goes back to
  the annotators' queue, and that annotator's next "Get work" hands them the draft.
- dismiss: it stays stored as dismissed; the exhaustivity check compares its proposals with
  dismissed suggestions and does not offer the same object again.

Only pending suggestions can be decided, once, under a row lock.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from annotator.models import Masklet, MaskSource, MissedObject, Video, VideoAssignment
from annotator.permissions import Action, User, has_permission
from annotator.services.annotation import EditRefused
from annotator.services.masks import MaskWrite, save_mask_frames


def _pending(suggestion: MissedObject, user: User) -> MissedObject:
    """The suggestion re-read under a row lock (inside a transaction), still pending, for a reviewer."""
    if not has_permission(user, suggestion.video.project, Action.REVIEW):
        raise EditRefused("forbidden", "Your role in this project does not allow reviewing.")
    row = MissedObject.objects.select_for_update().filter(pk=suggestion.pk).first()
    if row is None:
        raise EditRefused("not_found", "That suggestion no longer exists.")
    if row.status != MissedObject.Status.PENDING:
        raise EditRefused("read_only", f"That suggestion was already {row.get_status_display().lower()}.")
    row.video = suggestion.video
    return row


def accept(suggestion: MissedObject, user: User) -> Masklet:
    """Turn the suggestion into a draft masklet to annotate (see the module docstring); returns it."""
    with transaction.atomic():
        row = _pending(suggestion, user)
        video = row.video
        Video.objects.select_for_update().filter(pk=video.pk).first()  # object ids: one writer at a time
        top = Masklet.objects.filter(video=video).aggregate(top=Max("object_id"))["top"] or 0
        assignment = VideoAssignment.objects.filter(video=video).first()
        annotator = assignment.done_by if assignment is not None else None
        masklet = Masklet.objects.create(video=video, object_id=top + 1, assignee=annotator)
        rle = {"size": [video.height, video.width], "counts": row.rle_counts}
        save_mask_frames(masklet, [MaskWrite(row.frame_index, rle)], source=MaskSource.HUMAN, author=user)
        VideoAssignment.objects.filter(video=video).update(done_at=None, updated_at=timezone.now())
        row.status, row.masklet, row.decided_by, row.decided_at = (MissedObject.Status.ACCEPTED, masklet, user,
                                                                  timezone.now())
        row.save(update_fields=["status", "masklet", "decided_by", "decided_at"])
    return masklet


def dismiss(suggestion: MissedObject, user: User) -> MissedObject:
    """Keep the suggestion as dismissed: later checks will not offer the same object again."""
    with transaction.atomic():
        row = _pending(suggestion, user)
        row.status, row.decided_by, row.decided_at = MissedObject.Status.DISMISSED, user, timezone.now()
        row.save(update_fields=["status", "decided_by", "decided_at"])
    return row
