"""Region (J) and boundary (F) scores, computed the way DAVIS and Meta's SA-V evaluator compute them.

Scores from Masklet are meant to sit next to the SAM 2 paper's, so the conventions follow
``sav_dataset/utils/sav_benchmark.py`` (itself DAVIS 2017's ``metrics.py``):

- J is the IoU of one frame, 1 when both masks are empty.
- F is the boundary F-measure: one-pixel boundary maps as Martin's ``seg2bmap`` draws them,
  each dilated with a disk of radius ``ceil(bound_th * image diagonal)`` (or ``bound_th`` pixels
  when ``bound_th >= 1``); precision = predicted boundary pixels near the GT boundary, recall
  the converse. Both boundaries empty -> 1; exactly one empty -> 0.
- Per object, J and F are averaged over frames, J&F = (J + F) / 2, and a video's or a data
  set's score is the mean over OBJECTS (not over videos or frames).
- Like Meta's evaluator, an object's frames are counted from the first evaluated frame where it
  appears in the ground truth or in the prediction (earlier frames, empty in both, are not
  counted), and an object never visible in the evaluated ground truth is left out of means.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

DEFAULT_BOUND_TH = 0.008


@dataclass(frozen=True)
class FrameScore:
    j: float
    f: float
    jf: float


@dataclass
class ObjectScore:
    """One object's mean scores over its counted frames, and the per-frame scores they came from.

    ``visible`` is False when the object never appears in the evaluated ground truth; such an
    object is skipped by ``mean_over_objects`` (Meta's evaluator reports only GT objects).
    """

    j: float
    f: float
    jf: float
    per_frame: dict[int, FrameScore] = field(default_factory=dict)
    visible: bool = True


@dataclass(frozen=True)
class MeanScore:
    j: float
    f: float
    jf: float
    num_objects: int


def _pair(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt = np.asarray(gt).astype(bool, copy=False)
    pred = np.asarray(pred).astype(bool, copy=False)
    if gt.shape != pred.shape or gt.ndim != 2:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} must be 2-D masks of one shape")
    return gt, pred


def jaccard(gt: np.ndarray, pred: np.ndarray) -> float:
    """IoU of two boolean masks; 1.0 when both are empty (nothing to find, nothing found)."""
    gt, pred = _pair(gt, pred)
    union = np.count_nonzero(gt | pred)
    if union == 0:
        return 1.0
    return float(np.count_nonzero(gt & pred) / union)


def seg2bmap(mask: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary map of a mask, offset half a pixel towards the origin (Martin's seg2bmap).

    A pixel is boundary when it differs from its right, lower or lower-right neighbour; the last
    row and column compare only along themselves, and the bottom-right corner never is. So a
    mask covering the whole frame has no boundary at all.
    """
    seg = np.asarray(mask).astype(bool)
    east = np.zeros_like(seg)
    south = np.zeros_like(seg)
    south_east = np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    bmap = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    bmap[-1, :] = seg[-1, :] ^ east[-1, :]
    bmap[:, -1] = seg[:, -1] ^ south[:, -1]
    bmap[-1, -1] = False
    return bmap


@lru_cache(maxsize=32)
def _disk(radius: int) -> np.ndarray:
    """skimage.morphology.disk(radius): the (2r+1)^2 square's points with x^2 + y^2 <= r^2."""
    offsets = np.arange(-radius, radius + 1)
    return (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2).astype(np.uint8)


def boundary_radius(shape: tuple[int, int], bound_th: float = DEFAULT_BOUND_TH) -> int:
    """Tolerance in pixels: ``bound_th`` itself when >= 1, else ``ceil(bound_th * diagonal)``."""
    if bound_th >= 1:
        return int(bound_th)
    return int(math.ceil(bound_th * math.hypot(shape[0], shape[1])))


def boundary_f(gt: np.ndarray, pred: np.ndarray, bound_th: float = DEFAULT_BOUND_TH) -> float:
    """DAVIS boundary F-measure of a prediction against the ground truth (see the module docstring)."""
    gt, pred = _pair(gt, pred)
    gt_boundary = seg2bmap(gt)
    pred_boundary = seg2bmap(pred)
    n_gt = int(np.count_nonzero(gt_boundary))
    n_pred = int(np.count_nonzero(pred_boundary))
    if n_gt == 0 and n_pred == 0:
        return 1.0
    if n_gt == 0 or n_pred == 0:
        return 0.0
    kernel = _disk(boundary_radius(gt.shape, bound_th))
    gt_dilated = cv2.dilate(gt_boundary.astype(np.uint8), kernel).astype(bool)
    pred_dilated = cv2.dilate(pred_boundary.astype(np.uint8), kernel).astype(bool)
    precision = np.count_nonzero(pred_boundary & gt_dilated) / n_pred
    recall = np.count_nonzero(gt_boundary & pred_dilated) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def j_and_f(gt: np.ndarray, pred: np.ndarray, bound_th: float = DEFAULT_BOUND_TH) -> FrameScore:
    """J, F and their mean for one frame."""
    j = jaccard(gt, pred)
    f = boundary_f(gt, pred, bound_th)
    return FrameScore(j=float(j), f=float(f), jf=float((j + f) / 2))


def evaluate_object(
    gt_masks: Mapping[int, np.ndarray],
    pred_masks: Mapping[int, np.ndarray],
    skip_first_and_last: bool = False,
    bound_th: float = DEFAULT_BOUND_TH,
) -> ObjectScore:
    """Score one object over its ground-truth frames (keys of ``gt_masks``, in frame order).

    ``skip_first_and_last`` drops the first and last GT frames, as SA-V val/test and DAVIS
    semi-supervised evaluation do. Every evaluated GT frame needs a prediction: a missing one
    raises ``KeyError`` naming the frames (an absent object must be an empty mask, not a gap).
    """
    frames = sorted(gt_masks)
    if skip_first_and_last:
        frames = frames[1:-1]
    missing = [frame for frame in frames if frame not in pred_masks]
    if missing:
        shown = ", ".join(str(frame) for frame in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise KeyError(f"no prediction for {len(missing)} ground-truth frame(s): {shown}")
    per_frame: dict[int, FrameScore] = {}
    started = False
    visible = False
    for frame in frames:
        gt, pred = _pair(gt_masks[frame], pred_masks[frame])
        gt_any = bool(gt.any())
        visible = visible or gt_any
        started = started or gt_any or bool(pred.any())
        if started:  # Meta's evaluator counts an object only from its first appearance in GT or prediction
            per_frame[frame] = j_and_f(gt, pred, bound_th)
    if not per_frame:
        return ObjectScore(j=1.0, f=1.0, jf=1.0, per_frame={}, visible=visible)
    j = float(np.mean([score.j for score in per_frame.values()]))
    f = float(np.mean([score.f for score in per_frame.values()]))
    return ObjectScore(j=j, f=f, jf=(j + f) / 2, per_frame=per_frame, visible=visible)


def evaluate_video(
    gt: Mapping[int, Mapping[int, np.ndarray]],
    pred: Mapping[int, Mapping[int, np.ndarray]],
    skip_first_and_last: bool = False,
    bound_th: float = DEFAULT_BOUND_TH,
) -> dict[int, ObjectScore]:
    """Score every GT object of a video: ``{object_id: {frame: mask}}`` on both sides.

    A GT object with no predictions at all is an error (``KeyError``), like a missing frame.
    """
    missing = [object_id for object_id in gt if object_id not in pred]
    if missing:
        raise KeyError(f"no prediction for object(s) {missing}")
    return {
        object_id: evaluate_object(gt[object_id], pred[object_id], skip_first_and_last, bound_th) for object_id in gt
    }


def mean_over_objects(scores: Iterable[ObjectScore]) -> MeanScore:
    """Mean J, F over visible objects (SA-V's global score); J&F = (mean J + mean F) / 2.

    With no visible object the means are NaN: there is nothing to score, and 0 or 1 would lie.
    """
    counted = [score for score in scores if score.visible]
    if not counted:
        return MeanScore(j=math.nan, f=math.nan, jf=math.nan, num_objects=0)
    j = float(np.mean([score.j for score in counted]))
    f = float(np.mean([score.f for score in counted]))
    return MeanScore(j=j, f=f, jf=(j + f) / 2, num_objects=len(counted))


# -- review: how well a quality score tells a reviewer where to look --------------------------

#: A frame whose J&F is below this is "bad": one a reviewer has to find and fix.
BAD_JF = 0.7
#: The share of an object's bad frames a review has to find.
FIND_SHARE = 0.9


def frames_to_find(order: Sequence[int], bad: Sequence[bool], share: float = FIND_SHARE) -> int:
    """How many frames a reviewer examines, in ``order`` (indices into ``bad``), before having seen
    ``ceil(share * number of bad frames)`` of them; 0 when there is nothing bad."""
    needed = math.ceil(share * sum(bool(b) for b in bad) - 1e-9)
    if needed <= 0:
        return 0
    found = 0
    for examined, index in enumerate(order, start=1):
        found += bool(bad[index])
        if found >= needed:
            return examined
    raise ValueError("the order does not visit every frame")


def review_metrics(objects: Iterable[tuple[Sequence[float], Sequence[float]]], bad_jf: float = BAD_JF,
                   ) -> dict[str, Any]:
    """Pooled over every object's ``(scores, jf)`` frames (each in frame order):

    - ``auroc``: how well the score separates frames with J&F < ``bad_jf`` (low score) from the rest
      (None when all frames are on one side);
    - ``spearman``: rank correlation of score and J&F (None when either is constant);
    - ``frames_to_find_90pct_bad``: frames examined, summed over objects, to find 90 % of each
      object's bad frames when looking lowest score first (``radar``; ties in frame order) and
      in frame order (``sequential``);
    - ``frames`` and ``bad_frames``: how many frames were scored, and how many were bad.
    """
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    all_scores: list[float] = []
    all_jf: list[float] = []
    radar = sequential = 0
    for scores, jf in objects:
        if len(scores) != len(jf):
            raise ValueError(f"{len(scores)} scores but {len(jf)} J&F values")
        bad = [value < bad_jf for value in jf]
        radar += frames_to_find(sorted(range(len(scores)), key=lambda i: (scores[i], i)), bad)
        sequential += frames_to_find(range(len(scores)), bad)
        all_scores.extend(float(v) for v in scores)
        all_jf.extend(float(v) for v in jf)
    good = [value >= bad_jf for value in all_jf]
    auroc = float(roc_auc_score(good, all_scores)) if 0 < sum(good) < len(good) else None
    spearman = None
    if len(set(all_scores)) > 1 and len(set(all_jf)) > 1:
        spearman = float(spearmanr(all_scores, all_jf).statistic)
    return {
        "auroc": auroc,
        "spearman": spearman,
        "frames_to_find_90pct_bad": {"radar": radar, "sequential": sequential},
        "frames": len(all_scores),
        "bad_frames": len(good) - sum(good),
    }
