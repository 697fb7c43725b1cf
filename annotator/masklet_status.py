"""The masklet status transition table: every (status, action) -> status the review round trip allows.

Like ``annotator.permissions.RULES``, the table is the rule: services ask ``transition`` for the
new status and never assign one themselves, so a change nobody declared cannot happen, and
``tests/annotator/test_masklet_status.py`` tries every pair. A masklet's first status is not a
transition: people's start as drafts, auto masklets and imports enter the review queue as
submitted (or the status an import names).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from annotator.models import Masklet

Status = Masklet.Status


class MaskletAction(StrEnum):
    SUBMIT = "submit"  #: the annotator hands the object to review
    REOPEN = "reopen"  #: the annotator takes back an object sent back (or re-takes their draft)
    APPROVE = "approve"  #: a reviewer's satisfactory verdict
    SEND_BACK = "send_back"  #: a reviewer's unsatisfactory verdict: fix and submit again
    DISCARD = "discard"  #: a reviewer's final no (no clear boundary): never edited again


TRANSITIONS: Mapping[tuple[Status, MaskletAction], Status] = {
    (Status.DRAFT, MaskletAction.SUBMIT): Status.SUBMITTED,
    (Status.DRAFT, MaskletAction.REOPEN): Status.DRAFT,
    (Status.REJECTED, MaskletAction.REOPEN): Status.DRAFT,
    (Status.SUBMITTED, MaskletAction.APPROVE): Status.APPROVED,
    (Status.SUBMITTED, MaskletAction.SEND_BACK): Status.REJECTED,
    (Status.SUBMITTED, MaskletAction.DISCARD): Status.DISCARDED,
}

_DOING = {
    MaskletAction.SUBMIT: "submitted for review",
    MaskletAction.REOPEN: "reopened",
    MaskletAction.APPROVE: "approved",
    MaskletAction.SEND_BACK: "sent back",
    MaskletAction.DISCARD: "rejected for good",
}


class TransitionRefused(Exception):
    """``action`` is not declared for the masklet's status; the message says so in words."""


def transition(masklet: Masklet, action: MaskletAction) -> Status:
    """Set ``masklet.status`` to what the table says ``action`` leads to (the caller saves the row)."""
    current = Status(masklet.status)
    new = TRANSITIONS.get((current, MaskletAction(action)))
    if new is None:
        raise TransitionRefused(f"This masklet is {current.label.lower()}: it cannot be {_DOING[action]}.")
    masklet.status = new
    return new
