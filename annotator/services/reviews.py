"""Verification: a reviewer's verdict on a submitted masklet, kept forever as history.

- satisfactory -> approved;
- unsatisfactory with a reason from ``annotator.verdicts.REASONS`` (+ free text) -> rejected: back to its annotator,
  who reopens it (the work queue does so for them) and sees the reason (``open_review``) on the
  annotation page and in the queue's message until they submit it again;
- unsatisfactory and final (reason ``no_clear_boundary``: the object has no clear boundary) ->
  discarded ("rejected for good"), never reopened.

Every verdict is a new ``Review`` row; nothing is overwritten. Nobody reviews their own masklet
(``annotator.services.queues.own_masklets``), and a masklet another reviewer holds is theirs
until their claim expires.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from annotator.masklet_status import MaskletAction
from annotator.models import Masklet, Review
from annotator.permissions import Action, User, has_permission
from annotator.services.annotation import EditRefused, change_status
from annotator.services.queues import own_masklets
from annotator.verdicts import FINAL_REASONS, REASONS, reason_label, verdict_words


def review_masklet(masklet: Masklet, reviewer: User, *, verdict: str, reason: str = "", comment: str = "",
                   final: bool = False) -> Review:
    """Record a verdict and move the masklet on (see the module docstring); raises ``EditRefused``."""
    comment = (comment or "").strip()
    if verdict not in Review.Verdict.values:
        raise EditRefused("bad_message", "The verdict is satisfactory or unsatisfactory.")
    if verdict == Review.Verdict.SATISFACTORY:
        reason, final = "", False
    elif final:
        reason = reason or "no_clear_boundary"
        if reason not in FINAL_REASONS:
            raise EditRefused("bad_message", "Rejecting for good is only for objects without a clear boundary.")
    elif reason not in REASONS:
        raise EditRefused("bad_message", "Choose a reason from the list to send the masklet back.")
    elif reason == "other" and not comment:
        raise EditRefused("bad_message", "Say what is wrong in the comment when the reason is “Other”.")
    with transaction.atomic():
        row = Masklet.objects.select_for_update().select_related("video__project").filter(pk=masklet.pk).first()
        if row is None:
            raise EditRefused("not_found", "That masklet no longer exists.")
        if not has_permission(reviewer, row.video.project, Action.REVIEW):
            raise EditRefused("forbidden", "Your role in this project does not allow reviewing.")
        if Masklet.objects.filter(pk=row.pk).filter(own_masklets(reviewer)).exists():
            raise EditRefused("forbidden", "You worked on this masklet: someone else must review it.")
        change_status(row, verdict_action(verdict, final))
        if row.lock_is_active() and row.lock_holder_id != reviewer.pk:
            raise EditRefused("locked", "Another reviewer is checking this masklet.")
        review = Review.objects.create(masklet=row, reviewer=reviewer, verdict=verdict, reason=reason,
                                       comment=comment, final=final)
        row.lock_holder, row.lock_expires_at = None, None
        row.save(update_fields=["status", "lock_holder", "lock_expires_at", "updated_at"])
    return review


def verdict_action(verdict: str, final: bool) -> MaskletAction:
    """The status transition a verdict asks for."""
    if verdict == Review.Verdict.SATISFACTORY:
        return MaskletAction.APPROVE
    return MaskletAction.DISCARD if final else MaskletAction.SEND_BACK


def open_review(masklet: Masklet) -> Review | None:
    """The verdict that sent the masklet back and that its annotator has not answered yet: its latest
    review, when unsatisfactory, while the masklet is rejected (or a draft again after reopening).
    Resubmitting answers it; a discarded masklet has nothing left to answer."""
    if masklet.status not in (Masklet.Status.REJECTED, Masklet.Status.DRAFT):
        return None
    latest = masklet.reviews.select_related("reviewer").order_by("-created_at", "-id").first()
    return latest if latest is not None and latest.verdict == Review.Verdict.UNSATISFACTORY else None


def describe_review(review: Review) -> str:
    """The reviewer's reason in one line for people: label, comment and who said it."""
    text = reason_label(review.reason) if review.reason else "no reason given"
    if review.comment:
        text += f": “{review.comment}”"
    return f"{text} ({review.reviewer.get_username() if review.reviewer else 'a former reviewer'})"


def review_history(masklet: Masklet) -> list[dict[str, Any]]:
    """Every verdict on the masklet, oldest first, for the review page and the API."""
    return [{"verdict": r.verdict, "words": verdict_words(r), "reason": r.reason,
             "reason_label": reason_label(r.reason) if r.reason else "",
             "comment": r.comment, "final": r.final, "automatic": r.automatic,
             "reviewer": r.reviewer.get_username() if r.reviewer else None,
             "at": r.created_at.isoformat()}
            for r in masklet.reviews.select_related("reviewer").order_by("created_at", "id")]
