"""The auto-masklet algorithm, independent of Django: proposals -> cleanup -> dedup -> propagation.

Meta's data engine (SAM 2 paper, section 5): a 32x32 point grid on the first frame through SAM's
automatic mask generator, small components and holes under 200 px removed, then propagation and
the same verification as manual masklets. Here:

- **SAM 2 serving**: ``SAM2AutomaticMaskGenerator`` on the video model itself (the video predictor
  is a ``SAM2Base``, so no second copy of the weights is loaded), ``points_per_side`` points,
  its own predicted-IoU and stability filters and box NMS; each proposal keeps its stability score.
- **classical serving**: a coarser grid (``CLASSICAL_POINTS_PER_SIDE``) of single positive clicks
  through the session's own click segmentation; a grid point that falls inside a proposal already
  made is skipped (it would only find the same region again), which is what keeps the cut's cost
  bounded; only proposals that pass the stability and edge filters below cover their grid points,
  and every click's mask is a proposal (so ``select`` counts the too small and too large ones too).
  The stability score is the IoU between the proposal and the segmenter's answer to a box around
  it grown by 10 %: an object with a real boundary comes back the same from a different kind of
  prompt, a region that leaked from a grid point does not (on the synthetic scenes objects score
  0.88-1.0; a centre click was tried first and failed on textured objects). A box can also take what
  stands behind an object of the same colours (the woman of 01_dog.mp4: her box takes the bush, 0.57),
  so a proposal under ``MIN_STABILITY`` gets a second probe, a click at its innermost pixel (farthest
  from its boundary), and keeps the better IoU: a region is stable when some other prompt gives it
  back (the woman: 1.0). Objects whose colours outline no cut (a white dog on pale pavement) come
  from motion instead: the seed frame's **moving regions** (``segmentation.motion``: background
  subtraction against the median of frames spread over the video, shadows and thin necks split
  off) are proposals too, with the share of the region that differs from the background as their
  stability; one over a background that kept changing (agreement under
  ``MIN_BACKGROUND_AGREEMENT``: a person moving across the scene, hands shuffling cups) is a change
  of scene, not an object, and is dropped. The cut also returns
  stable background patches (a region of even texture comes back the same
  from a box), so each proposal also gets an **edge support**: the share of its boundary pixels
  where the image gradient (or a neighbour's, as the cut runs at working resolution) is over
  ``EDGE_FACTOR`` times the frame's median gradient. An object
  is outlined by an edge almost all the way round (0.89-1.0 on the synthetic scenes, seeds 3-10),
  a background patch only where it happens to touch one (at most 0.77); under
  ``MIN_EDGE_SUPPORT`` it is dropped. Frame-border pixels are not boundary pixels, so clipped
  objects are not penalised.
Then for every proposal: components and holes under ``MIN_REGION_AREA`` px removed; proposals
covering more than ``MAX_AREA_FRACTION`` of the frame dropped (background); near-duplicates
dropped greedily, most stable first: IoU >= ``DUPLICATE_IOU`` with a kept one, or one lying
almost entirely (``CONTAINED_FRACTION``) inside a kept one, or matching a mask that already
exists on that frame. Survivors are propagated through the whole video in both directions and
cleaned the same way on every frame.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from segmentation import motion
from segmentation.frames import FrameSource
from segmentation.segmenter import Direction, SegmentationError, Segmenter, SegmenterSession

MIN_REGION_AREA = 200
DUPLICATE_IOU = 0.7
CONTAINED_FRACTION = 0.9
MAX_AREA_FRACTION = 0.5
SAM2_POINTS_PER_SIDE = 32
CLASSICAL_POINTS_PER_SIDE = 12
MIN_STABILITY = 0.85
EDGE_FACTOR = 4.0
MIN_EDGE_SUPPORT = 0.85
MIN_BACKGROUND_AGREEMENT = 0.6
_PROBE_OBJECT = 1_000_000  # a temporary object id no masklet uses


@dataclass
class Proposal:
    """One candidate object on the seed frame."""

    mask: np.ndarray
    stability: float
    predicted_iou: float | None = None
    edge_support: float | None = None  # classical click proposals only (see the module docstring)
    background_agreement: float | None = None  # classical moving regions only (segmentation.motion)

    @property
    def area(self) -> int:
        return int(self.mask.sum())


def clean_mask(mask: np.ndarray, min_area: int = MIN_REGION_AREA) -> np.ndarray:
    """Remove connected components and fill holes smaller than ``min_area`` pixels.

    Both steps label only the window around the mask (a component of it, or a hole in it, lies
    inside its bounding box): an object is a small part of a frame, and labelling the whole frame
    twice per proposal and per propagated frame was most of the cost. The result is the same as
    labelling the whole frame (``_clean_whole_frame``, which the tests compare it with).
    """
    mask = mask.astype(bool)
    window = _window(mask, 0)
    if window is None:
        return _clean_whole_frame(mask, min_area)
    part = mask[window]  # a view: changing it changes ``mask``
    count, labels, stats, _ = cv2.connectedComponentsWithStats(part.astype(np.uint8), connectivity=8)
    small = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] < min_area]
    if small:
        part &= ~np.isin(labels, small)
    window = _window(mask, 1)
    if window is None:
        return _clean_whole_frame(mask, min_area)
    # One pixel of margin where the window is not at the frame's edge: a background region that
    # touches it continues outside the window, so its area here is not its area; it is not a hole
    # when that part alone reaches ``min_area``, and otherwise the whole frame has to say.
    part = mask[window]
    count, labels, stats, _ = cv2.connectedComponentsWithStats((~part).astype(np.uint8), connectivity=8)
    rows, cols = window
    margin = np.zeros(part.shape, bool)
    margin[0, :] |= rows.start > 0
    margin[-1, :] |= rows.stop < mask.shape[0]
    margin[:, 0] |= cols.start > 0
    margin[:, -1] |= cols.stop < mask.shape[1]
    outside = set(np.unique(labels[margin]).tolist())
    small = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] < min_area]
    if any(i in outside for i in small):
        return _clean_whole_frame(mask, min_area)
    if small:
        part |= np.isin(labels, small)
    return mask


def _window(mask: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    """The bounding box of ``mask`` grown by ``margin`` pixels (within the frame), or None when it is empty."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return (slice(max(0, rows[0] - margin), min(mask.shape[0], rows[-1] + margin + 1)),
            slice(max(0, cols[0] - margin), min(mask.shape[1], cols[-1] + margin + 1)))


def _clean_whole_frame(mask: np.ndarray, min_area: int = MIN_REGION_AREA) -> np.ndarray:
    """``clean_mask`` labelling the whole frame."""
    mask = mask.astype(bool)
    for fill in (False, True):
        working = (mask if not fill else ~mask).astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(working, connectivity=8)
        small = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] < min_area]
        if small:
            region = np.isin(labels, small)
            mask = mask & ~region if not fill else mask | region
    return mask


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def is_duplicate(mask: np.ndarray, others: Sequence[np.ndarray]) -> bool:
    """Near-duplicate of any of ``others``: high IoU, or almost entirely inside one of them."""
    area = mask.sum()
    for other in others:
        inter = np.logical_and(mask, other).sum()
        if not inter:
            continue
        union = area + other.sum() - inter
        if inter / union >= DUPLICATE_IOU or inter / max(1, min(area, other.sum())) >= CONTAINED_FRACTION:
            return True
    return False


def select(proposals: list[Proposal], existing: Sequence[np.ndarray] = (), *,
           min_stability: float = MIN_STABILITY) -> tuple[list[Proposal], dict[str, Any]]:
    """Clean, filter and deduplicate proposals (most stable first); returns the kept ones and counts.

    The counts are per filter (each proposal is counted by the first it fails), with ``summary``
    saying the same in words.
    """
    stats = {"proposals": len(proposals), "too_small": 0, "too_large": 0, "unstable": 0, "weak_edges": 0,
             "unsteady_background": 0, "duplicates": 0, "existing": 0}
    kept: list[Proposal] = []
    for proposal in sorted(proposals, key=lambda p: (-p.stability, -p.area)):
        mask = clean_mask(proposal.mask)
        if mask.sum() < MIN_REGION_AREA:
            stats["too_small"] += 1
        elif mask.sum() > MAX_AREA_FRACTION * mask.size:
            stats["too_large"] += 1
        elif proposal.stability < min_stability:
            stats["unstable"] += 1
        elif proposal.edge_support is not None and proposal.edge_support < MIN_EDGE_SUPPORT:
            stats["weak_edges"] += 1
        elif proposal.background_agreement is not None and proposal.background_agreement < MIN_BACKGROUND_AGREEMENT:
            stats["unsteady_background"] += 1
        elif is_duplicate(mask, existing):
            stats["existing"] += 1
        elif is_duplicate(mask, [k.mask for k in kept]):
            stats["duplicates"] += 1
        else:
            kept.append(Proposal(mask, proposal.stability, proposal.predicted_iou, proposal.edge_support,
                                 proposal.background_agreement))
    stats["kept"] = len(kept)
    stats["summary"] = describe(stats)
    return kept, stats


DROP_REASONS = (
    ("too_small", f"under {MIN_REGION_AREA} px"),
    ("too_large", f"over {MAX_AREA_FRACTION:.0%} of the frame"),
    ("unstable", "unstable (neither a box around it nor a click at its centre gives it back)"),
    ("weak_edges", "not outlined by image edges"),
    ("unsteady_background", "moving over a background that keeps changing"),
    ("duplicates", "duplicates"),
    ("existing", "already annotated"),
)


def describe(stats: dict[str, int]) -> str:
    """What became of the proposals, per filter, in words: the run's result shows it."""
    dropped = [f"{stats[key]} {words}" for key, words in DROP_REASONS if stats.get(key)]
    text = f"{stats['proposals']} proposals, {stats['kept']} kept"
    return f"{text}; dropped: {', '.join(dropped)}" if dropped else text


def gradient_magnitude(image: np.ndarray) -> np.ndarray:
    """Colour gradient magnitude (Sobel on Lab, so it follows perceived colour differences)."""
    lab = cv2.cvtColor(np.ascontiguousarray(image, np.uint8), cv2.COLOR_RGB2LAB).astype(np.float32)
    return np.sqrt(cv2.Sobel(lab, cv2.CV_32F, 1, 0) ** 2 + cv2.Sobel(lab, cv2.CV_32F, 0, 1) ** 2).sum(axis=2)


def strong_edges(gradient: np.ndarray, factor: float = EDGE_FACTOR) -> np.ndarray:
    """Pixels on or next to a strong edge: a neighbour's gradient over ``factor`` times the frame's median.

    A boundary pixel next to an edge pixel counts: a cut at working resolution lands a pixel off.
    """
    near_edge = cv2.dilate(gradient, np.ones((3, 3), np.uint8))
    return near_edge > factor * max(float(np.median(gradient)), 1e-6)


def edge_support(strong: np.ndarray, mask: np.ndarray) -> float:
    """Share of the mask's boundary pixels lying on the frame's ``strong_edges`` (see the module docstring)."""
    mask8 = mask.astype(np.uint8)
    boundary = cv2.morphologyEx(mask8, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)).astype(bool)
    boundary[[0, -1], :] = False
    boundary[:, [0, -1]] = False
    if not boundary.any():
        return 1.0  # a mask filling the frame up to its borders has no boundary to judge
    return float(strong[boundary].mean())


def grid(width: int, height: int, per_side: int) -> list[tuple[float, float]]:
    """``per_side`` x ``per_side`` points at cell centres, as SAM's ``build_point_grid``."""
    offset = 1 / (2 * per_side)
    steps = np.linspace(offset, 1 - offset, per_side)
    return [(float(x * width), float(y * height)) for y in steps for x in steps]


def _click(session: SegmenterSession, frame: int, point: tuple[float, float]) -> np.ndarray:
    if _PROBE_OBJECT in session.object_ids:
        session.remove_object(_PROBE_OBJECT)
    try:
        return session.add_points(frame, _PROBE_OBJECT, [point], [1]).astype(bool)
    except SegmentationError:
        return np.zeros((session.height, session.width), bool)


def innermost_point(mask: np.ndarray) -> tuple[float, float]:
    """The mask's pixel farthest from its boundary (frame borders count as boundary), as (x, y)."""
    distance = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return float(x), float(y)


def _boxed(session: SegmenterSession, frame: int, mask: np.ndarray) -> np.ndarray:
    """The segmenter's answer to a box around ``mask`` grown by 10 % (the stability probe)."""
    ys, xs = np.nonzero(mask)
    pad_x, pad_y = 0.1 * (xs.max() - xs.min() + 1), 0.1 * (ys.max() - ys.min() + 1)
    box = (max(0.0, xs.min() - pad_x), max(0.0, ys.min() - pad_y),
           min(session.width - 1.0, xs.max() + pad_x), min(session.height - 1.0, ys.max() + pad_y))
    if _PROBE_OBJECT in session.object_ids:
        session.remove_object(_PROBE_OBJECT)
    try:
        return session.add_box(frame, _PROBE_OBJECT, box).astype(bool)
    except SegmentationError:
        return np.zeros_like(mask)


def classical_proposals(session: SegmenterSession, frame: int, per_side: int = CLASSICAL_POINTS_PER_SIDE,
                        progress: Callable[[float], None] | None = None,
                        known: np.ndarray | None = None) -> list[Proposal]:
    """Grid clicks through the session's click segmentation (see the module docstring).

    ``known`` (the union of masks people already made on the frame) is taken as explained: no grid
    point inside it is clicked, and it is cut out of every answer, so an object the click segmentation
    merges with an annotated neighbour still comes back on its own (the exhaustivity check).
    """
    proposals: list[Proposal] = []
    unknown = ~known if known is not None else np.ones((session.height, session.width), bool)
    covered = ~unknown
    strong = strong_edges(gradient_magnitude(session.frames[frame]))
    points = grid(session.width, session.height, per_side)
    with session.reusing_work():  # the classical session keeps its cut graphs between these clicks
        for number, (x, y) in enumerate(points, start=1):
            if progress:
                progress(number / len(points))
            if covered[min(int(y), session.height - 1), min(int(x), session.width - 1)]:
                continue
            mask = clean_mask(_click(session, frame, (x, y)) & unknown)
            if mask.sum() < MIN_REGION_AREA or mask.sum() > MAX_AREA_FRACTION * mask.size:
                proposals.append(Proposal(mask, 0.0))  # counted by ``select`` as too small / too large
                continue
            stability = iou(mask, _boxed(session, frame, mask) & unknown)
            if stability < MIN_STABILITY:
                # A box around a person cut into a jacket and jeans also takes the bush behind them; the
                # mask is still the object's when a click at its innermost point gives it back.
                inner = _click(session, frame, innermost_point(mask)) & unknown
                stability = max(stability, iou(mask, clean_mask(inner)))
            proposal = Proposal(mask, stability, edge_support=edge_support(strong, mask))
            proposals.append(proposal)
            if proposal.stability >= MIN_STABILITY and proposal.edge_support >= MIN_EDGE_SUPPORT:
                # Only a proposal that passes the filters explains its pixels: one that leaked over other
                # objects (the sweater and both cups of 02_cups.mp4) must not hide their grid points.
                covered |= mask
        if _PROBE_OBJECT in session.object_ids:
            session.remove_object(_PROBE_OBJECT)
    return proposals + moving_proposals(session.frames, frame, unknown)


def moving_proposals(frames: FrameSource, frame: int, unknown: np.ndarray) -> list[Proposal]:
    """The seed frame's moving regions (``segmentation.motion``) outside what is ``known``, as proposals: stability
    is the share of the region that differs from the background; the background behind it must have been steady."""
    indices = motion.sample_indices(len(frames), frame)
    return [Proposal(clean_mask(region.mask & unknown), region.support, background_agreement=region.agreement)
            for region in motion.moving_regions([frames[i] for i in indices])]


def sam2_proposals(segmenter: Segmenter, image: np.ndarray, per_side: int = SAM2_POINTS_PER_SIDE) -> list[Proposal]:
    """SAM 2's automatic mask generator on the serving video model (same weights)."""
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    model = segmenter.predictor  # type: ignore[attr-defined]
    generator = SAM2AutomaticMaskGenerator(model, points_per_side=per_side, points_per_batch=64,
                                           min_mask_region_area=MIN_REGION_AREA, output_mode="binary_mask")
    size = int(model.image_size)
    if size != 1024:  # the image predictor hard-codes 1024's feature sizes (DATA_ENGINE.md)
        generator.predictor._bb_feat_sizes = [(size // 4,) * 2, (size // 8,) * 2, (size // 16,) * 2]
    return [Proposal(np.asarray(r["segmentation"], bool), float(r["stability_score"]), float(r["predicted_iou"]))
            for r in generator.generate(image)]


def propagate(session: SegmenterSession, frame: int, masks: dict[int, np.ndarray],
              cancel: threading.Event | None = None) -> Iterator[tuple[int, dict[int, np.ndarray]]]:
    """Seed each object with its mask on ``frame`` and track both ways; yields cleaned masks per frame."""
    for object_id in list(session.object_ids):
        session.remove_object(object_id)
    for object_id, mask in masks.items():
        session.add_mask(frame, object_id, mask)
    for result in session.propagate(frame, Direction.BOTH, cancel=cancel):
        yield result.frame_index, {oid: clean_mask(m) for oid, m in result.masks.items()}
