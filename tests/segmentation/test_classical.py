"""The classical (OpenCV) backend on synthetic frames with exact ground truth, and on real DAVIS frames."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from segmentation.backends import build_segmenter
from segmentation.classical import ClassicalSegmenter, ClassicalSession
from segmentation.frames import ArrayFrames, JpegFolderFrames
from segmentation.segmenter import SegmentationError

H, W = 240, 320


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def texture(shape: tuple[int, int], base: tuple[int, int, int], seed: int, amplitude: float = 40.0) -> np.ndarray:
    """Smoothed colour noise around ``base``: texture strong enough that flat-colour tricks fail."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (*shape, 3)).astype(np.float32), (0, 0), 2.5)
    noise /= noise.std()
    return np.clip(np.array(base, np.float32) + amplitude * noise, 0, 255).astype(np.uint8)


BACKGROUND = texture((H, W), (60, 120, 70), seed=1)  # dark greenish
OBJECT_TEXTURE = texture((H, W), (220, 100, 70), seed=2)  # brighter reddish: flow runs on grey


def ellipse(centre: tuple[int, int], axes: tuple[int, int] = (45, 30), shape: tuple[int, int] = (H, W)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 1, thickness=-1)
    return mask.astype(bool)


def compose(*masks: np.ndarray) -> np.ndarray:
    """Paint each object mask with the object texture, carried along with the object (rolled to its centroid).

    Moving the texture with the shape matters: a fixed texture seen through a moving window has
    zero optical flow, which no real object has.
    """
    frame = BACKGROUND.copy()
    for mask in masks:
        ys, xs = np.nonzero(mask)
        if ys.size == 0:
            continue
        shift = (int(ys.mean()) - H // 2, int(xs.mean()) - W // 2)
        frame[mask] = np.roll(OBJECT_TEXTURE, shift, axis=(0, 1))[mask]
    return frame


def bbox(mask: np.ndarray, pad: int = 4) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return xs.min() - pad, ys.min() - pad, xs.max() + pad, ys.max() + pad


def session(frames: list[np.ndarray]) -> ClassicalSession:
    return ClassicalSegmenter().open_session(ArrayFrames(frames))


# -- prompts on one frame ---------------------------------------------------------------------


def test_factory_builds_the_classical_backend() -> None:
    segmenter = build_segmenter("classical")
    assert isinstance(segmenter, ClassicalSegmenter)
    assert segmenter.name == "classical (OpenCV)"


def test_click_on_a_textured_object_gives_its_mask() -> None:
    gt = ellipse((150, 120))
    s = session([compose(gt)])
    mask = s.add_points(0, 1, [(150, 120)], [1])
    assert mask.shape == (H, W) and mask.dtype == bool
    assert iou(mask, gt) > 0.8


def test_box_on_a_textured_object_gives_its_mask() -> None:
    gt = ellipse((150, 120))
    s = session([compose(gt)])
    assert iou(s.add_box(0, 1, bbox(gt)), gt) > 0.8


def test_negative_click_removes_a_false_region_and_clicks_accumulate() -> None:
    gt = ellipse((110, 120), (40, 30))
    distractor = ellipse((215, 120), (22, 22))  # same texture, inside the box the annotator drew
    s = session([compose(gt, distractor)])
    box = (60, 80, 245, 160)
    with_distractor = s.add_box(0, 1, box)
    assert with_distractor[distractor].mean() > 0.8  # the box alone cannot tell them apart
    assert iou(with_distractor, gt) < 0.8
    corrected = s.add_points(0, 1, [(215, 120)], [0])  # adds to the box, does not replace it
    assert not corrected[distractor].any()
    assert iou(corrected, gt) > 0.8


def test_negative_click_refines_a_brushed_mask() -> None:
    gt = ellipse((110, 120), (40, 30))
    distractor = ellipse((215, 120), (22, 22))
    s = session([compose(gt, distractor)])
    s.add_mask(0, 1, gt | distractor)  # an accepted mask that wrongly holds the distractor
    corrected = s.add_points(0, 1, [(215, 120)], [0])
    assert not corrected[distractor].any()
    assert iou(corrected, gt) > 0.8


def test_negative_only_click_after_a_positive_one_keeps_the_object() -> None:
    gt = ellipse((150, 120))
    s = session([compose(gt)])
    s.add_points(0, 1, [(150, 120)], [1])
    # A negative click far from the object: if clicks did not accumulate, nothing positive would be left.
    mask = s.add_points(0, 1, [(20, 20)], [0])
    assert iou(mask, gt) > 0.8


def test_same_prompts_give_the_same_mask(davis_root: Path) -> None:
    """GrabCut's k-means is seeded: replaying stored prompts must rebuild exactly the same masks.

    On this real frame (object and background colours overlap) unseeded GrabCut was measured to
    differ by up to ~800 pixels between identical runs.
    """
    frames = JpegFolderFrames(davis_root / "JPEGImages" / "480p" / "libby")
    masks = []
    for _ in range(3):
        s = ClassicalSegmenter().open_session(frames)
        s.add_box(0, 1, (292, 171, 568, 348))
        masks.append(s.add_points(0, 1, [(433, 233)], [0]))
    for mask in masks[1:]:
        np.testing.assert_array_equal(mask, masks[0])


def test_mask_prompt_is_taken_as_is() -> None:
    s = session([compose(ellipse((150, 120)))])
    brushed = np.zeros((H, W), bool)
    brushed[10:30, 10:50] = True  # deliberately not the object: a brush edit is the person's word
    np.testing.assert_array_equal(s.add_mask(0, 3, brushed), brushed)


def test_bad_prompts_are_rejected_by_the_shared_checks() -> None:
    s = session([compose(ellipse((150, 120)))])
    with pytest.raises(SegmentationError):
        s.add_points(0, 1, [(W + 5, 10)], [1])
    with pytest.raises(SegmentationError):
        s.add_mask(0, 1, np.zeros((10, 10), bool))


# -- propagation --------------------------------------------------------------------------------


def moving_clip(n: int = 8, step: int = 4) -> tuple[list[np.ndarray], list[np.ndarray]]:
    gts = [ellipse((110 + step * i, 120 + i)) for i in range(n)]
    return [compose(gt) for gt in gts], gts


def test_propagation_follows_a_moving_object_forward() -> None:
    frames, gts = moving_clip()
    s = session(frames)
    s.add_points(0, 1, [(110, 120)], [1])
    results = list(s.propagate(0))
    assert [r.frame_index for r in results] == list(range(len(frames)))
    ious = [iou(r.masks[1], gts[r.frame_index]) for r in results]
    assert min(ious) > 0.8, ious
    # Not a copy of the first mask: by the last frame the object has moved off most of it.
    assert iou(gts[0], gts[-1]) < 0.7


def test_a_still_object_stays_put_when_the_camera_pans_behind_it() -> None:
    """Flow smooths the background's motion over a plain object and drags its mask along (DAVIS libby):
    the mask left where it was fits the object's colours better than the moved one, and is kept."""
    gt = ellipse((160, 120), (30, 20))
    frames = []
    for i in range(12):
        frame = np.roll(BACKGROUND, 12 * i, axis=1)
        frame[gt] = (220, 100, 70)
        frames.append(frame)
    s = session(frames)
    s.add_mask(0, 1, gt)
    ious = [iou(r.masks[1], gt) for r in s.propagate(0)]
    assert min(ious) > 0.9, ious


def test_propagation_backward_from_a_later_prompt() -> None:
    frames, gts = moving_clip()
    s = session(frames)
    last = len(frames) - 1
    s.add_box(last, 1, bbox(gts[last]))
    results = list(s.propagate(last, direction="backward"))
    assert [r.frame_index for r in results] == list(range(last, -1, -1))
    assert min(iou(r.masks[1], gts[r.frame_index]) for r in results) > 0.8


def test_object_leaving_the_frame_becomes_empty() -> None:
    gts = [ellipse((220 + 10 * i, 120), (30, 25)) for i in range(14)]  # fully out (x - 30 >= W) by frame 13
    assert not gts[-1].any()
    s = session([compose(gt) for gt in gts])
    s.add_mask(0, 1, gts[0])
    results = list(s.propagate(0))
    assert min(iou(r.masks[1], gts[r.frame_index]) for r in results[:6]) > 0.8
    assert not results[-1].masks[1].any()
    assert results[0].scores[1] == 1.0 and results[-1].scores[1] == 0.0


def test_object_that_vanishes_in_place_is_marked_lost_not_left_on_the_background() -> None:
    """Flow on a still background is zero: without a presence check the mask would stay where the object was."""
    gt = ellipse((150, 120))
    empty = np.zeros_like(gt)
    s = session([compose(gt)] * 3 + [compose(empty)] * 3)
    s.add_points(0, 1, [(150, 120)], [1])
    results = list(s.propagate(0))
    assert [r.frame_index for r in results] == list(range(6))
    assert all(iou(r.masks[1], gt) > 0.8 and r.scores[1] > 0.5 for r in results[:3])
    for r in results[3:]:
        assert not r.masks[1].any(), f"frame {r.frame_index}: mask left on the background"
        assert r.scores[1] == 0.0


def test_two_objects_are_tracked_independently_and_prompted_frames_are_kept() -> None:
    a = [ellipse((70 + 3 * i, 70), (30, 22)) for i in range(6)]
    b = [ellipse((240 - 3 * i, 170), (30, 22)) for i in range(6)]
    frames = [compose(x, y) for x, y in zip(a, b, strict=True)]
    s = session(frames)
    s.add_points(0, 1, [(70, 70)], [1])
    s.add_box(0, 2, bbox(b[0]))
    brushed = b[4].copy()
    brushed[:, :235] = False  # a partial brush on frame 4 must come back unchanged
    s.add_mask(4, 2, brushed)
    assert s.object_ids == [1, 2]
    results = {r.frame_index: r.masks for r in s.propagate(0)}
    for i in range(6):
        assert set(results[i]) == {1, 2}
        assert iou(results[i][1], a[i]) > 0.8
        assert not (results[i][1] & b[i]).any()
    np.testing.assert_array_equal(results[4][2], brushed)
    assert iou(results[3][2], b[3]) > 0.8


def test_max_frames_and_both_directions() -> None:
    frames, gts = moving_clip()
    s = session(frames)
    s.add_box(4, 1, bbox(gts[4]))
    assert [r.frame_index for r in s.propagate(4, max_frames=3)] == [4, 5, 6]
    both = [r.frame_index for r in s.propagate(4, direction="both")]
    assert both == [4, 5, 6, 7, 3, 2, 1, 0]


def test_propagation_from_an_unprompted_frame_reuses_the_tracked_mask() -> None:
    frames, gts = moving_clip()
    s = session(frames)
    s.add_points(0, 1, [(110, 120)], [1])
    list(s.propagate(0))
    later = list(s.propagate(3))
    assert later[0].frame_index == 3
    assert iou(later[0].masks[1], gts[3]) > 0.8
    assert iou(later[-1].masks[1], gts[-1]) > 0.8


def test_clicks_on_a_propagated_frame_refine_the_propagated_mask() -> None:
    frames, gts = moving_clip()
    s = session(frames)
    s.add_points(0, 1, [(110, 120)], [1])
    list(s.propagate(0))
    # A lone negative click in the background: from clicks alone there would be nothing positive left.
    mask = s.add_points(5, 1, [(20, 220)], [0])
    assert iou(mask, gts[5]) > 0.8
    assert s.first_prompted_frame() == 0 and 5 in {r.frame_index for r in s.propagate(5, max_frames=1)}


def test_cancel_stops_propagation() -> None:
    frames, _ = moving_clip()
    s = session(frames)
    s.add_points(0, 1, [(110, 120)], [1])
    cancel = threading.Event()
    seen = []
    for result in s.propagate(0, cancel=cancel):
        seen.append(result.frame_index)
        cancel.set()
    assert seen == [0]


# -- bookkeeping ----------------------------------------------------------------------------------


def test_remove_object_clear_prompts_and_reset() -> None:
    frames, gts = moving_clip(4)
    s = session(frames)
    s.add_points(2, 1, [(118, 122)], [1])
    s.add_box(1, 1, bbox(gts[1]))
    s.add_box(3, 7, bbox(gts[3]))
    assert s.object_ids == [1, 7]
    assert s.first_prompted_frame() == 1

    s.clear_prompts(1, 1)  # object 1 keeps its frame-2 click
    assert s.object_ids == [1, 7]
    assert s.first_prompted_frame() == 2

    s.remove_object(7)
    assert s.object_ids == [1]
    assert all(set(r.masks) == {1} for r in s.propagate(2))
    with pytest.raises(SegmentationError):
        s.remove_object(7)

    s.clear_prompts(2, 1)  # its last prompt: the object is gone
    assert s.object_ids == []

    s.add_box(0, 5, bbox(gts[0]))
    s.reset()
    assert s.object_ids == []
    with pytest.raises(SegmentationError):
        list(s.propagate(0))
    with pytest.raises(SegmentationError):
        s.first_prompted_frame()


# -- real video -----------------------------------------------------------------------------------


def test_box_then_propagate_on_real_davis_frames(davis_root: Path) -> None:
    """car-shadow, frames 0-14: box from the GT bbox on frame 0, then propagate.

    Measured on this backend: mean J 0.76 over the 15 frames (prompt J 0.78), while copying the
    frame-0 GT mask to every frame scores 0.59 and the GT box as a mask 0.48. The threshold 0.65
    fails a backend that only copies, only warps a box, or loses the car.
    """
    sequence = "car-shadow"
    n = 15
    frames = JpegFolderFrames(davis_root / "JPEGImages" / "480p" / sequence)
    gts = [
        cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) > 127
        for p in sorted((davis_root / "Annotations" / "480p" / sequence).glob("*.png"))[:n]
    ]
    s = ClassicalSegmenter().open_session(frames)
    x0, y0, x1, y1 = bbox(gts[0], pad=0)
    first = s.add_box(0, 1, (x0, y0, x1 + 1, y1 + 1))
    assert iou(first, gts[0]) > 0.7
    results = list(s.propagate(0, max_frames=n))
    assert [r.frame_index for r in results] == list(range(n))
    mean_j = float(np.mean([iou(r.masks[1], gts[r.frame_index]) for r in results]))
    copy_baseline = float(np.mean([iou(gts[0], gt) for gt in gts]))
    assert mean_j > 0.65
    assert mean_j > copy_baseline + 0.05
