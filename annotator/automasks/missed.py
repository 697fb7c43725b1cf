"""Possibly missed objects (exhaustivity): auto-masklet proposals that no masklet explains.

When an annotator marks a video done, the auto-masklet generator's proposals on the seed frame
(cleaned, filtered and deduplicated by ``generate.select``) are compared with what people
annotated there: a proposal that shares ``MISSED_OVERLAP`` or more of the smaller one's area with
any annotated mask is that object (or a part of it, or it plus a neighbour) and is dropped;
what is left is offered to the reviewer. Dismissed suggestions are compared the same way, so a
later check does not offer the same object again. The measure is the share of the smaller
mask, not IoU: a proposal that is half of an annotated person (their shirt) has a low IoU with
them but is no missed object.

``measure`` runs the same steps on a synthetic video whose ground truth is exact, with some
objects left unannotated, and counts what was found (``bench/bench_exhaustivity.py``). No
Django here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from annotator.automasks import generate
from segmentation.segmenter import Segmenter

#: A proposal sharing this much of the smaller mask's area with an annotated (or dismissed) mask
#: is that object: the one threshold for "overlaps an existing masklet".
MISSED_OVERLAP = 0.3
#: A suggestion matches a ground-truth object at this IoU (measurement only).
MATCH_IOU = 0.5


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Shared pixels over the smaller mask's area (0 when either is empty)."""
    smaller = min(int(a.sum()), int(b.sum()))
    return float(np.logical_and(a, b).sum() / smaller) if smaller else 0.0


def is_known(mask: np.ndarray, known: Iterable[np.ndarray]) -> bool:
    """True when ``mask`` overlaps one of ``known`` by ``MISSED_OVERLAP`` or more."""
    return any(overlap(mask, other) >= MISSED_OVERLAP for other in known)


def unexplained(kept: Sequence[generate.Proposal], annotated: Sequence[np.ndarray],
                dismissed: Sequence[np.ndarray] = ()) -> tuple[list[generate.Proposal], dict[str, int]]:
    """The kept proposals that overlap no annotated and no dismissed mask, and how many each dropped."""
    stats = {"annotated": 0, "dismissed": 0}
    missed = []
    for proposal in kept:
        if is_known(proposal.mask, annotated):
            stats["annotated"] += 1
        elif is_known(proposal.mask, dismissed):
            stats["dismissed"] += 1
        else:
            missed.append(proposal)
    stats["missed"] = len(missed)
    return missed, stats


@dataclass(frozen=True)
class Measurement:
    """One synthetic video: objects left unannotated (visible on the seed frame), how many were found,
    and suggestions that match none of them (background, an annotated object, or a second match)."""

    left_out: int
    found: int
    false: int
    offered: int

    @property
    def recall(self) -> float:
        return self.found / self.left_out if self.left_out else 1.0


def match(suggestions: Sequence[np.ndarray], truth: dict[int, np.ndarray]) -> tuple[int, int]:
    """(objects of ``truth`` matched at ``MATCH_IOU``, suggestions matching none or a matched one again)."""
    found: set[int] = set()
    false = 0
    for mask in suggestions:
        best = max(truth, key=lambda oid: generate.iou(mask, truth[oid]), default=None)
        if best is None or best in found or generate.iou(mask, truth[best]) < MATCH_IOU:
            false += 1
        else:
            found.add(best)
    return len(found), false


def measure(segmenter: Segmenter, frames, truth: dict[int, np.ndarray], left_out: Iterable[int], *,
            per_side: int = generate.CLASSICAL_POINTS_PER_SIDE, filtered: bool = True) -> Measurement:
    """Annotate every object of ``truth`` (seed frame 0's masks) except ``left_out``, run the check on
    frame 0 and score it. ``filtered=False`` offers every kept proposal not already annotated by the
    generator's own duplicate test (the baseline: auto masklets as they are)."""
    left_out = set(left_out)
    truth = {oid: m for oid, m in truth.items() if m.sum() >= generate.MIN_REGION_AREA}
    annotated = [m for oid, m in truth.items() if oid not in left_out]
    session = segmenter.open_session(frames)
    known = np.logical_or.reduce(annotated) if annotated and filtered else None
    try:
        proposals = generate.classical_proposals(session, 0, per_side, known=known)
    finally:
        session.close()
    kept, _ = generate.select(proposals, annotated)
    offered = unexplained(kept, annotated)[0] if filtered else kept
    missing = {oid: m for oid, m in truth.items() if oid in left_out}
    found, false = match([p.mask for p in offered], missing)
    return Measurement(left_out=len(missing), found=found, false=false, offered=len(offered))
