"""J and F against answers worked out by hand on small masks, and SA-V's per-object averaging."""

from __future__ import annotations

import math

import numpy as np
import pytest

from segmentation.metrics import (
    ObjectScore,
    boundary_f,
    boundary_radius,
    evaluate_object,
    evaluate_video,
    j_and_f,
    jaccard,
    mean_over_objects,
    seg2bmap,
)


def square(top: int, bottom: int, left: int, right: int, size: int = 10) -> np.ndarray:
    """Rows top..bottom, columns left..right, inclusive."""
    mask = np.zeros((size, size), dtype=bool)
    mask[top : bottom + 1, left : right + 1] = True
    return mask


GT = square(2, 5, 2, 5)  # 4x4
EMPTY = np.zeros((10, 10), dtype=bool)


def test_seg2bmap_of_a_square_is_its_perimeter_shifted_half_a_pixel_up_left():
    expected = np.zeros((10, 10), dtype=bool)
    expected[1:6, 1:6] = True
    expected[2:5, 2:5] = False  # the 5x5 ring over rows/cols 1..5
    assert np.array_equal(seg2bmap(GT), expected)
    assert not seg2bmap(np.ones((10, 10), dtype=bool)).any()  # a full-frame mask has no boundary


def test_jaccard_by_hand():
    assert jaccard(GT, GT) == 1.0
    assert jaccard(GT, square(2, 5, 5, 8)) == pytest.approx(4 / 28)  # overlap one column of 4 pixels
    assert jaccard(GT, square(2, 3, 2, 3)) == pytest.approx(4 / 16)
    assert jaccard(EMPTY, EMPTY) == 1.0
    assert jaccard(GT, EMPTY) == 0.0 and jaccard(EMPTY, GT) == 0.0


def test_boundary_radius():
    assert boundary_radius((10, 10)) == 1  # ceil(0.008 * 14.1)
    assert boundary_radius((480, 854)) == 8  # ceil(0.008 * 979.6)
    assert boundary_radius((480, 854), bound_th=3) == 3


def test_boundary_f_shifted_square_by_hand():
    # Boundaries: perimeters of the 5x5 squares over cols 1..5 and cols 4..8 (rows 1..5), 16 pixels each.
    # Radius 1 (a plus-shaped disk): the predicted boundary near the GT's is columns 4..6 of rows 1 and 5
    # (3 + 3) and column 4 of rows 2..4 (3): 9 of 16. By symmetry recall is 9/16 too, so F = 9/16.
    pred = square(2, 5, 5, 8)
    assert boundary_f(GT, pred) == pytest.approx(9 / 16)
    assert boundary_f(GT, pred, bound_th=1) == pytest.approx(9 / 16)
    # Radius 2 also reaches column 7 of rows 1 and 5 (2 pixels away along the row): 11 of 16.
    assert boundary_f(GT, pred, bound_th=2) == pytest.approx(11 / 16)


def test_boundary_f_with_different_precision_and_recall():
    # A 2x2 prediction in the GT's top-left corner: its 8-pixel boundary (ring over rows/cols 1..3) lies within
    # one pixel of the GT boundary except (3, 3): P = 7/8. Of the GT's 16 boundary pixels, (1, 1..4) and
    # (2..4, 1) are matched: R = 7/16. F = 2PR / (P + R) = 7/12.
    assert boundary_f(GT, square(2, 3, 2, 3)) == pytest.approx(7 / 12)


def test_boundary_f_empty_conventions():
    assert boundary_f(EMPTY, EMPTY) == 1.0
    assert boundary_f(GT, EMPTY) == 0.0
    assert boundary_f(EMPTY, GT) == 0.0
    full = np.ones((10, 10), dtype=bool)
    assert boundary_f(full, full) == 1.0  # no boundary on either side
    assert boundary_f(full, GT) == 0.0


def test_far_apart_squares_score_zero():
    assert boundary_f(GT, square(7, 9, 7, 9)) == 0.0
    assert j_and_f(GT, square(7, 9, 7, 9)).jf == 0.0


def test_j_and_f_is_the_mean():
    score = j_and_f(GT, square(2, 5, 5, 8))
    assert (score.j, score.f) == pytest.approx((4 / 28, 9 / 16))
    assert score.jf == pytest.approx((4 / 28 + 9 / 16) / 2)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        jaccard(GT, np.zeros((5, 5), dtype=bool))


def test_evaluate_object_averages_frames_and_skips_first_and_last():
    gt = {0: GT, 1: GT, 2: GT, 3: GT}
    pred = {0: GT, 1: square(2, 5, 5, 8), 2: EMPTY, 3: GT}
    score = evaluate_object(gt, pred)
    assert score.j == pytest.approx((1 + 4 / 28 + 0 + 1) / 4)
    assert score.f == pytest.approx((1 + 9 / 16 + 0 + 1) / 4)
    assert score.jf == pytest.approx((score.j + score.f) / 2)
    assert sorted(score.per_frame) == [0, 1, 2, 3] and score.visible
    inner = evaluate_object(gt, pred, skip_first_and_last=True)
    assert sorted(inner.per_frame) == [1, 2]
    assert inner.j == pytest.approx((4 / 28 + 0) / 2)
    assert inner.f == pytest.approx((9 / 16 + 0) / 2)


def test_frames_before_the_first_appearance_are_not_counted():
    # As Meta's evaluator: frames empty in both GT and prediction count only after the object first appears.
    gt = {0: EMPTY, 1: EMPTY, 2: GT, 3: EMPTY}
    pred = {0: EMPTY, 1: EMPTY, 2: GT, 3: EMPTY}
    score = evaluate_object(gt, pred)
    assert sorted(score.per_frame) == [2, 3] and score.jf == 1.0
    early = {**pred, 1: GT}  # a false positive before the GT appears starts the count
    score = evaluate_object(gt, early)
    assert sorted(score.per_frame) == [1, 2, 3]
    assert score.j == pytest.approx(2 / 3) and score.f == pytest.approx(2 / 3)


def test_missing_prediction_is_a_clear_error():
    with pytest.raises(KeyError, match=r"no prediction for 2 ground-truth frame\(s\): 1, 3"):
        evaluate_object({0: GT, 1: GT, 2: GT, 3: GT}, {0: GT, 2: GT})
    # With skip_first_and_last only the evaluated frames need a prediction.
    assert evaluate_object({0: GT, 1: GT, 2: GT}, {1: GT}, skip_first_and_last=True).jf == 1.0


def test_evaluate_video_and_mean_over_objects():
    gt = {1: {0: GT, 1: GT}, 2: {0: EMPTY, 1: GT}, 3: {0: EMPTY, 1: EMPTY}}
    pred = {1: {0: GT, 1: GT}, 2: {0: EMPTY, 1: EMPTY}, 3: {0: GT, 1: EMPTY}}
    scores = evaluate_video(gt, pred)
    assert scores[1].jf == 1.0
    assert (scores[2].j, scores[2].f) == (0.0, 0.0)  # never predicted: counted from its first GT frame, 1
    assert sorted(scores[2].per_frame) == [1]
    assert not scores[3].visible  # never in the GT: left out of the mean, as Meta's evaluator leaves it out
    mean = mean_over_objects(scores.values())
    assert mean.num_objects == 2
    assert (mean.j, mean.f, mean.jf) == (0.5, 0.5, 0.5)
    with pytest.raises(KeyError, match="object"):
        evaluate_video(gt, {1: pred[1]})


def test_mean_is_over_objects_not_frames():
    short = ObjectScore(j=1.0, f=1.0, jf=1.0, per_frame={})
    long = ObjectScore(j=0.0, f=0.5, jf=0.25, per_frame={})
    mean = mean_over_objects([short, long])
    assert (mean.j, mean.f, mean.jf) == (0.5, 0.75, 0.625)
    assert math.isnan(mean_over_objects([]).jf)
