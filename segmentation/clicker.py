"""The simulated annotator: where a person would click, and the interactive protocols built on it.

Click placement follows the SAM 2 paper's interactive evaluation (appendix E.1.2, summarised in
``docs/DATA_ENGINE.md``): the first click of an object goes to the centre of its ground-truth
mask (the pixel farthest from the boundary, frame borders counting as boundary); each later
click goes to the centre of the largest error region, positive if that region is missed
foreground, negative if it is false foreground.

The protocols drive any ``SegmenterSession`` for ONE object at a time against ground-truth masks
given per session frame (``{frame_index: bool mask}``; an empty mask where the object is not
visible). They reset the session first, so earlier objects' prompts never leak in. Frames the
backend yields without the object, or never yields, count as an empty prediction.

Time model (``annotation_seconds``): 1 s to locate a frame, 1.5 s per click, and 30 s to examine
a 300-frame video scaled to the video's length; the protocols count one examination per
propagation the annotator has to watch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import cv2
import numpy as np

from segmentation.metrics import DEFAULT_BOUND_TH, ObjectScore, evaluate_object, j_and_f, jaccard
from segmentation.segmenter import Direction, FrameQuality, SegmenterSession

LOCATE_FRAME_S = 1.0
CLICK_S = 1.5
EXAMINE_300_FRAMES_S = 30.0


class Click(NamedTuple):
    """One simulated click in frame pixels; ``label`` 1 = positive, 0 = negative."""

    x: int
    y: int
    label: int


@dataclass
class PromptStep:
    """One prompted frame: its clicks, its own J before/after them, and (offline) the video's scores after."""

    frame_index: int
    clicks: list[Click]
    frame_j_before: float
    frame_j_after: float
    j: float | None = None
    f: float | None = None
    jf: float | None = None


@dataclass
class ProtocolResult:
    """Outcome of the offline or online protocol for one object; scores are over all its GT frames."""

    protocol: str
    object_id: int
    num_frames: int
    steps: list[PromptStep] = field(default_factory=list)
    j: float = 1.0
    f: float = 1.0
    jf: float = 1.0
    clicks: int = 0
    prompted_frames: int = 0
    propagations: int = 0
    annotation_seconds: float = 0.0
    visible: bool = True


@dataclass
class TargetResult:
    """Clicks one object needed to reach J&F >= target on every annotated frame (or the budget ran out)."""

    object_id: int
    num_frames: int
    target: float
    reached: bool
    clicks: int = 0
    prompted_frames: int = 0
    frame_visits: int = 0
    propagations: int = 0
    worst_jf: list[float] = field(default_factory=list)
    annotation_seconds: float = 0.0
    visible: bool = True


@dataclass
class ReviewResult:
    """The review protocol for one object: each propagated frame's quality score and true J&F.

    ``frames``, ``scores`` and ``jf`` are parallel, in frame order; the prompted frame is left out
    (a person made it), and so is any frame the backend did not rate (``unrated`` counts them).
    ``masks``: the propagated mask of each of those frames, when asked for (``keep_masks``).
    """

    object_id: int
    num_frames: int
    prompted_frame: int | None = None
    clicks: int = 0
    frames: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    jf: list[float] = field(default_factory=list)
    features: list[dict[str, float]] = field(default_factory=list)
    masks: dict[int, np.ndarray] = field(default_factory=dict)
    unrated: int = 0
    visible: bool = True


# -- click placement ------------------------------------------------------------------------


def _centre(mask: np.ndarray) -> tuple[int, int]:
    """(x, y) of the pixel farthest from the mask's boundary; frame borders count as boundary.

    Ties go to the first such pixel in row-major order, so placement is deterministic.
    """
    padded = np.pad(mask.astype(np.uint8), 1)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return int(x), int(y)


def first_click(gt: np.ndarray) -> Click | None:
    """Positive click at the centre of the ground truth; None when the object is not on this frame."""
    gt = np.asarray(gt).astype(bool)
    if not gt.any():
        return None
    x, y = _centre(gt)
    return Click(x, y, 1)


def _largest_component(region: np.ndarray) -> tuple[int, np.ndarray | None]:
    """Area and mask of the largest 8-connected component (the first in raster order among equals)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(region.astype(np.uint8), connectivity=8)
    if count <= 1:
        return 0, None
    areas = stats[1:, cv2.CC_STAT_AREA]
    best = int(np.argmax(areas)) + 1
    return int(areas[best - 1]), labels == best


def next_click(gt: np.ndarray, pred: np.ndarray | None) -> Click | None:
    """Correction click at the centre of the largest error component; None when the prediction is exact.

    Missed foreground (GT and not predicted) gives a positive click, false foreground a negative
    one; on equal areas the missed foreground wins. Missed and false regions are separate
    components even where they touch.
    """
    gt = np.asarray(gt).astype(bool)
    pred = np.zeros_like(gt) if pred is None else np.asarray(pred).astype(bool)
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in shape")
    missed_area, missed = _largest_component(gt & ~pred)
    false_area, false = _largest_component(pred & ~gt)
    if missed is None and false is None:
        return None
    if missed is not None and missed_area >= false_area:
        x, y = _centre(missed)
        return Click(x, y, 1)
    x, y = _centre(false)
    return Click(x, y, 0)


def annotation_seconds(clicks: int, prompted_frames: int, num_frames: int, examinations: int = 1) -> float:
    """The paper's time model: 1 s per located frame, 1.5 s per click, 30 s per 300 frames examined."""
    return (
        LOCATE_FRAME_S * prompted_frames + CLICK_S * clicks + EXAMINE_300_FRAMES_S * (num_frames / 300.0) * examinations
    )


# -- protocol helpers -----------------------------------------------------------------------


class _Run:
    """The state of one object's protocol: GT, current predictions per GT frame, and the session."""

    def __init__(self, session: SegmenterSession, gt_masks: Mapping[int, np.ndarray], object_id: int):
        self.session = session
        self.object_id = int(object_id)
        self.gt = {int(frame): np.asarray(mask).astype(bool) for frame, mask in gt_masks.items()}
        self.frames = sorted(self.gt)
        for frame in self.frames:
            if self.gt[frame].shape != (session.height, session.width):
                raise ValueError(
                    f"ground truth of frame {frame} is {self.gt[frame].shape}, "
                    f"the session's frames are {(session.height, session.width)}"
                )
            if not 0 <= frame < session.num_frames:
                raise ValueError(f"ground truth frame {frame} is outside the session's 0..{session.num_frames - 1}")
        self.empty = np.zeros((session.height, session.width), dtype=bool)
        self.empty.setflags(write=False)
        self.pred: dict[int, np.ndarray] = {frame: self.empty for frame in self.frames}
        self.clicks = 0
        self.propagations = 0
        session.reset()

    def first_visible(self) -> int | None:
        return next((frame for frame in self.frames if self.gt[frame].any()), None)

    def _mask_of(self, masks: Mapping[int, np.ndarray]) -> np.ndarray:
        mask = masks.get(self.object_id)
        return self.empty if mask is None else np.asarray(mask).astype(bool)

    def click(self, frame: int, click: Click) -> np.ndarray:
        mask = self.session.add_points(frame, self.object_id, [(click.x, click.y)], [click.label])
        mask = np.asarray(mask).astype(bool)
        self.clicks += 1
        if frame in self.pred:
            self.pred[frame] = mask
        return mask

    def prompt(self, frame: int, max_clicks: int, first: bool, stop_at_jf: float | None = None) -> list[Click]:
        """Up to ``max_clicks`` clicks on one frame, each placed on the mask the previous one produced."""
        gt = self.gt[frame]
        pred = self.pred.get(frame, self.empty)
        clicks: list[Click] = []
        for index in range(max_clicks):
            click = first_click(gt) if first and index == 0 else next_click(gt, pred)
            if click is None:
                break
            pred = self.click(frame, click)
            clicks.append(click)
            if stop_at_jf is not None and j_and_f(gt, pred).jf >= stop_at_jf:
                break
        return clicks

    def propagate_all(self) -> None:
        """Re-propagate both ways from the earliest prompted frame and keep every GT frame's mask."""
        self.propagations += 1
        fresh = dict.fromkeys(self.frames, self.empty)
        for result in self.session.propagate(direction=Direction.BOTH):
            if result.frame_index in fresh:
                fresh[result.frame_index] = self._mask_of(result.masks)
        self.pred = fresh

    def score(self, bound_th: float) -> ObjectScore:
        return evaluate_object(self.gt, self.pred, bound_th=bound_th)


def _not_visible_protocol(name: str, run: _Run, object_id: int) -> ProtocolResult:
    return ProtocolResult(protocol=name, object_id=object_id, num_frames=run.session.num_frames, visible=False)


def _finish(result: ProtocolResult, run: _Run, bound_th: float, examinations: int) -> ProtocolResult:
    score = run.score(bound_th)
    result.j, result.f, result.jf = score.j, score.f, score.jf
    result.clicks = run.clicks
    result.prompted_frames = len(result.steps)
    result.propagations = run.propagations
    result.annotation_seconds = annotation_seconds(
        run.clicks, len(result.steps), run.session.num_frames, examinations=examinations
    )
    return result


# -- protocols ------------------------------------------------------------------------------


def offline_protocol(
    session: SegmenterSession,
    gt_masks: Mapping[int, np.ndarray],
    object_id: int,
    clicks_per_frame: int = 3,
    max_prompted_frames: int = 8,
    bound_th: float = DEFAULT_BOUND_TH,
) -> ProtocolResult:
    """Prompt the first visible frame, propagate, then repeatedly prompt the worst-J frame and re-propagate.

    Each step records J, F, J&F over all GT frames after its propagation. The next frame is the
    not-yet-prompted GT frame with the lowest J (earliest among equals); the protocol stops after
    ``max_prompted_frames`` or when every frame is exact.
    """
    run = _Run(session, gt_masks, object_id)
    frame = run.first_visible()
    if frame is None:
        return _not_visible_protocol("offline", run, object_id)
    result = ProtocolResult(protocol="offline", object_id=int(object_id), num_frames=session.num_frames)
    prompted: set[int] = set()
    while frame is not None and len(result.steps) < max_prompted_frames:
        before = jaccard(run.gt[frame], run.pred[frame])
        clicks = run.prompt(frame, clicks_per_frame, first=not result.steps)
        if not clicks:
            break
        prompted.add(frame)
        after = jaccard(run.gt[frame], run.pred[frame])
        run.propagate_all()
        score = run.score(bound_th)
        result.steps.append(PromptStep(frame, clicks, before, after, score.j, score.f, score.jf))
        candidates = [f for f in run.frames if f not in prompted]
        ious = {f: jaccard(run.gt[f], run.pred[f]) for f in candidates}
        frame = min(candidates, key=lambda f: (ious[f], f)) if candidates else None
        if frame is not None and ious[frame] >= 1.0:
            frame = None
    return _finish(result, run, bound_th, examinations=max(1, run.propagations))


def online_protocol(
    session: SegmenterSession,
    gt_masks: Mapping[int, np.ndarray],
    object_id: int,
    clicks_per_frame: int = 3,
    max_prompted_frames: int | None = None,
    iou_threshold: float = 0.75,
    bound_th: float = DEFAULT_BOUND_TH,
) -> ProtocolResult:
    """One forward pass from the first visible frame that pauses where J < ``iou_threshold``, prompts, resumes.

    Frames before the first visible frame are not visited (their prediction stays empty). Once
    ``max_prompted_frames`` frames are prompted the pass runs to the end without pausing.
    """
    run = _Run(session, gt_masks, object_id)
    frame = run.first_visible()
    if frame is None:
        return _not_visible_protocol("online", run, object_id)
    result = ProtocolResult(protocol="online", object_id=int(object_id), num_frames=session.num_frames)
    first = True
    while frame is not None:
        before = jaccard(run.gt[frame], run.pred[frame])
        clicks = run.prompt(frame, clicks_per_frame, first=first)
        first = False
        result.steps.append(PromptStep(frame, clicks, before, jaccard(run.gt[frame], run.pred[frame])))
        start, frame = frame, None
        run.propagations += 1
        stream = session.propagate(start_frame=start, direction=Direction.FORWARD)
        try:
            for frame_result in stream:
                index = frame_result.frame_index
                if index not in run.gt:
                    continue
                mask = run._mask_of(frame_result.masks)
                run.pred[index] = mask
                may_pause = max_prompted_frames is None or len(result.steps) < max_prompted_frames
                if index != start and may_pause and jaccard(run.gt[index], mask) < iou_threshold:
                    frame = index
                    break
        finally:
            stream.close()
    return _finish(result, run, bound_th, examinations=1)  # the resumed passes add up to one watch of the video


def clicks_to_target(
    session: SegmenterSession,
    gt_masks: Mapping[int, np.ndarray],
    object_id: int,
    target: float = 0.9,
    max_clicks: int = 20,
    clicks_per_round: int = 1,
    bound_th: float = DEFAULT_BOUND_TH,
) -> TargetResult:
    """Add correction clicks on the worst frame until J&F >= ``target`` on every GT frame, or ``max_clicks``.

    A round places up to ``clicks_per_round`` clicks on the frame with the lowest J&F (earliest
    among equals; the first round: the first visible frame), stopping early once that frame
    reaches the target, then re-propagates. ``worst_jf`` is the lowest per-frame J&F after each
    round. Annotation time counts a located frame whenever the clicked frame changes and one
    examination per propagation.
    """
    run = _Run(session, gt_masks, object_id)
    frame = run.first_visible()
    if frame is None:
        return TargetResult(int(object_id), session.num_frames, target, reached=True, visible=False)
    result = TargetResult(int(object_id), session.num_frames, target, reached=False)
    prompted: set[int] = set()
    last_frame: int | None = None
    while run.clicks < max_clicks:
        budget = min(clicks_per_round, max_clicks - run.clicks)
        clicks = run.prompt(frame, budget, first=not prompted, stop_at_jf=target)
        if not clicks:  # the worst frame has no error left: cannot happen below target, but never loop
            break
        prompted.add(frame)
        if frame != last_frame:
            result.frame_visits += 1
            last_frame = frame
        run.propagate_all()
        scores = {f: j_and_f(run.gt[f], run.pred[f], bound_th).jf for f in run.frames}
        frame = min(run.frames, key=lambda f: (scores[f], f))
        result.worst_jf.append(scores[frame])
        if scores[frame] >= target:
            result.reached = True
            break
    result.clicks = run.clicks
    result.prompted_frames = len(prompted)
    result.propagations = run.propagations
    result.annotation_seconds = annotation_seconds(
        run.clicks, result.frame_visits, session.num_frames, examinations=max(1, run.propagations)
    )
    return result


def review_protocol(
    session: SegmenterSession,
    gt_masks: Mapping[int, np.ndarray],
    object_id: int,
    clicks_per_frame: int = 3,
    bound_th: float = DEFAULT_BOUND_TH,
    keep_masks: bool = False,
) -> ReviewResult:
    """Prompt the first visible frame with ``clicks_per_frame`` clicks, propagate both ways once, and
    pair every other GT frame's quality score with its true J&F: how well the score tells a
    reviewer where to look (``metrics.review_metrics``)."""
    run = _Run(session, gt_masks, object_id)
    result = ReviewResult(object_id=int(object_id), num_frames=session.num_frames)
    frame = run.first_visible()
    if frame is None:
        result.visible = False
        return result
    result.prompted_frame = frame
    result.clicks = len(run.prompt(frame, clicks_per_frame, first=True))
    ratings: dict[int, FrameQuality] = {}
    for propagated in session.propagate(direction=Direction.BOTH):
        index = propagated.frame_index
        if index in run.gt:
            run.pred[index] = run._mask_of(propagated.masks)
            rating = propagated.quality.get(run.object_id)
            if rating is not None:
                ratings[index] = rating
    for index in run.frames:
        if index == frame:
            continue
        if index not in ratings:
            result.unrated += 1
            continue
        result.frames.append(index)
        result.scores.append(float(ratings[index].score))
        result.features.append(dict(ratings[index].features))
        if keep_masks:
            result.masks[index] = run.pred[index]
        result.jf.append(j_and_f(run.gt[index], run.pred[index], bound_th).jf)
    return result
