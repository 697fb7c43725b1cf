"""The words of verification, one vocabulary for pages, the API and the socket: the reasons a masklet is
sent back with and how a verdict is said. Below the services and selectors, which both speak it.
"""

from __future__ import annotations

from annotator.models import Review

#: The pick list of reasons an unsatisfactory masklet is sent back with (code -> what the annotator reads).
REASONS: dict[str, str] = {
    "inaccurate_boundary": "Boundary is inaccurate",
    "missing_frames": "Object missing on some frames",
    "extra_frames": "Mask where the object is not visible",
    "wrong_object": "Mask follows a different object",
    "leak": "Mask leaks onto the background or other objects",
    "incomplete": "Part of the object is missing",
    "wrong_label": "Wrong label",
    "other": "Other (see comment)",
}
#: The one reason for rejecting for good.
FINAL_REASONS: dict[str, str] = {"no_clear_boundary": "Object has no clear boundary"}


def reason_label(code: str) -> str:
    """What people read for a stored reason code (unknown codes are shown as they are)."""
    return REASONS.get(code) or FINAL_REASONS.get(code) or code


def verdict_words(review: Review) -> str:
    """The one vocabulary for a verdict: approved (automatically), sent back, rejected for good."""
    if review.automatic:
        return "approved automatically"
    return "rejected for good" if review.final else review.get_verdict_display().lower()
