"""The simulated annotator: click placement on hand-made masks, and the protocols driven by a known segmenter."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict

import numpy as np
import pytest

from segmentation.backends import build_segmenter
from segmentation.clicker import (
    Click,
    annotation_seconds,
    clicks_to_target,
    first_click,
    next_click,
    offline_protocol,
    online_protocol,
)
from segmentation.datasets import load_davis
from segmentation.frames import ArrayFrames
from segmentation.segmenter import Box, FrameResult, Points, Segmenter, SegmenterSession

# -- click placement -------------------------------------------------------------------------


def square(size: int, top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


def test_first_click_is_the_centre_of_a_square():
    assert first_click(square(40, 10, 20, 11)) == Click(25, 15, 1)


def test_first_click_counts_the_frame_border_as_boundary():
    # A 5-wide band along the left edge, rows 0..19: without the border the farthest point would be at x=0.
    mask = np.zeros((20, 30), dtype=bool)
    mask[:, :5] = True
    x, y, label = first_click(mask)
    assert (x, label) == (2, 1)
    assert 2 <= y <= 17


def test_first_click_on_a_ring_lands_on_the_ring_not_the_hole():
    yy, xx = np.mgrid[:61, :61]
    radius = np.hypot(yy - 30, xx - 30)
    ring = (radius >= 10) & (radius <= 20)
    x, y, label = first_click(ring)
    assert label == 1 and ring[y, x]
    assert abs(np.hypot(x - 30, y - 30) - 15) <= 1.0  # halfway between the inner and outer circles


def test_first_click_on_an_empty_frame_is_none():
    assert first_click(np.zeros((8, 8), dtype=bool)) is None


def test_next_click_is_none_when_the_prediction_is_exact():
    gt = square(20, 2, 2, 6)
    assert next_click(gt, gt.copy()) is None
    assert next_click(np.zeros((5, 5), bool), np.zeros((5, 5), bool)) is None


def test_next_click_is_positive_in_missed_foreground():
    gt = square(30, 0, 0, 30)
    pred = gt.copy()
    pred[:, 15:] = False  # the right half is missed: columns 15..29, centre column 22
    x, y, label = next_click(gt, pred)
    assert label == 1 and x == 22 and 7 <= y <= 22
    assert next_click(gt, None) == first_click(gt)


def test_next_click_is_negative_in_false_foreground_and_picks_the_largest_region():
    gt = square(40, 5, 5, 10)
    pred = gt.copy()
    pred[30:35, 30:35] = True  # false foreground 5x5, centre (32, 32)
    pred[5:8, 5:8] = False  # missed foreground 3x3 in a corner: smaller
    assert next_click(gt, pred) == Click(32, 32, 0)


def test_next_click_prefers_missed_foreground_on_equal_areas():
    gt = square(30, 2, 2, 5)
    pred = square(30, 20, 20, 5)
    assert next_click(gt, pred) == Click(4, 4, 1)
    assert next_click(pred, gt) == Click(22, 22, 1)  # the roles swap: the missed square is now the lower one
    assert next_click(np.zeros_like(gt), gt | pred) == Click(4, 4, 0)  # equal false regions: raster-first


def test_annotation_seconds_follows_the_time_model():
    assert annotation_seconds(3, 1, 300) == pytest.approx(1 + 4.5 + 30)
    assert annotation_seconds(4, 3, 60, examinations=2) == pytest.approx(3 + 6 + 2 * 6)


# -- a segmenter whose answers are known exactly ---------------------------------------------


class DiscSession(SegmenterSession):
    """An oracle: a positive click adds the GT inside a disc around it, a negative click removes a disc.

    Clicks on a frame start from the mask the frame shows (propagated or earlier clicks);
    propagation copies the last prompted frame's mask forward (or backward; with ``copy_backward``
    False the backward pass yields frames without the object, as a tracker that lost it would).
    """

    def __init__(self, frames: ArrayFrames, gt: dict[int, np.ndarray], radius: float, copy_backward: bool = True):
        super().__init__(frames)
        self.gt = gt
        self.radius = radius
        self.copy_backward = copy_backward
        self.yy, self.xx = np.mgrid[: self.height, : self.width]
        self.reset()

    def reset(self) -> None:
        self.prompted: dict[tuple[int, int], np.ndarray] = {}
        self.shown: dict[tuple[int, int], np.ndarray] = {}
        self.objects: list[int] = []

    @property
    def object_ids(self) -> list[int]:
        return list(self.objects)

    def first_prompted_frame(self) -> int:
        return min(frame for frame, _ in self.prompted)

    def _disc(self, x: float, y: float) -> np.ndarray:
        return np.hypot(self.xx - x, self.yy - y) <= self.radius

    def _add_points(self, frame_index: int, object_id: int, points: Points) -> np.ndarray:
        key = (frame_index, object_id)
        mask = self.prompted.get(key, self.shown.get(key, np.zeros((self.height, self.width), bool))).copy()
        for (x, y), label in zip(points.coords, points.labels, strict=True):
            if label == 1:
                mask |= self.gt[frame_index] & self._disc(x, y)
            else:
                mask &= ~self._disc(x, y)
        self.prompted[key] = self.shown[key] = mask
        if object_id not in self.objects:
            self.objects.append(object_id)
        return mask.copy()

    def _add_box(self, frame_index: int, object_id: int, box: Box) -> np.ndarray:
        raise NotImplementedError

    def _add_mask(self, frame_index: int, object_id: int, mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _propagate(self, start_frame: int, reverse: bool, max_frames: int | None) -> Iterator[FrameResult]:
        order = range(start_frame, -1, -1) if reverse else range(start_frame, self.num_frames)
        current = {obj: self.shown.get((start_frame, obj)) for obj in self.objects}
        for count, frame in enumerate(order):
            if max_frames is not None and count >= max_frames:
                return
            if reverse and not self.copy_backward:
                yield FrameResult(frame, {})
                continue
            masks = {}
            for obj in self.objects:
                if (frame, obj) in self.prompted:
                    current[obj] = self.prompted[(frame, obj)]
                if current[obj] is not None:
                    masks[obj] = self.shown[(frame, obj)] = current[obj].copy()
            yield FrameResult(frame, masks)

    def _remove_object(self, object_id: int) -> None:
        raise NotImplementedError

    def _clear_prompts(self, frame_index: int, object_id: int) -> None:
        raise NotImplementedError


class DiscSegmenter(Segmenter):
    name = "disc oracle"

    def __init__(self, gt: dict[int, np.ndarray], radius: float = 6, copy_backward: bool = True):
        self.gt = gt
        self.radius = radius
        self.copy_backward = copy_backward

    def open_session(self, frames: ArrayFrames) -> DiscSession:
        return DiscSession(frames, self.gt, self.radius, self.copy_backward)


SIZE = 32
A = square(SIZE, 4, 4, 9)  # centre (8, 8); a disc of radius 6 there covers all of it (corner at 5.66)
B = square(SIZE, 18, 18, 9)  # centre (22, 22), far from A
EMPTY = np.zeros((SIZE, SIZE), dtype=bool)
# The object sits at A on frames 0-1, jumps to B on frames 2-3 and has left the frame on 4.
GT = {0: A, 1: A, 2: B, 3: B, 4: EMPTY}


def black_frames() -> ArrayFrames:
    return ArrayFrames(np.zeros((len(GT), SIZE, SIZE, 3), dtype=np.uint8))


@pytest.fixture
def session() -> DiscSession:
    return DiscSegmenter(GT).open_session(black_frames())


def test_offline_protocol_prompts_the_worst_frames_in_turn(session):
    result = offline_protocol(session, GT, object_id=7)
    # Frame 0: one click at A's centre gives A exactly; copying it leaves J = 0 on frames 2, 3 (B) and 4 (empty).
    # Worst: frame 2 (earliest J = 0). Its shown mask is A: missed B and false A tie, the missed one wins
    # (+ at B's centre -> A|B), then - at A's centre -> B. Copying B leaves frame 4 wrong: one - click empties it.
    assert [step.frame_index for step in result.steps] == [0, 2, 4]
    assert [step.clicks for step in result.steps] == [
        [Click(8, 8, 1)],
        [Click(22, 22, 1), Click(8, 8, 0)],
        [Click(22, 22, 0)],
    ]
    assert [step.jf for step in result.steps] == pytest.approx([0.4, 0.8, 1.0])
    assert [step.j for step in result.steps] == pytest.approx([0.4, 0.8, 1.0])
    assert [step.frame_j_before for step in result.steps] == [0.0, 0.0, 0.0]
    assert [step.frame_j_after for step in result.steps] == [1.0, 1.0, 1.0]
    assert (result.clicks, result.prompted_frames, result.propagations) == (4, 3, 3)
    assert (result.j, result.f, result.jf) == (1.0, 1.0, 1.0)
    # 3 frames located, 4 clicks, three 5-frame examinations.
    assert result.annotation_seconds == pytest.approx(3 * 1 + 4 * 1.5 + 3 * 30 * 5 / 300)
    json.dumps(asdict(result))


def test_offline_protocol_with_one_click_per_frame(session):
    result = offline_protocol(session, GT, object_id=1, clicks_per_frame=1, max_prompted_frames=2)
    # Step 2 leaves A|B on frames 2-4: J = (1 + 1 + 1/2 + 1/2 + 0) / 5. Boundary F on frames 2-3: precision 1/2
    # (B's half of the A|B boundary), recall 1 -> 2/3; F = (1 + 1 + 2/3 + 2/3 + 0) / 5.
    assert [step.frame_index for step in result.steps] == [0, 2]
    assert result.steps[1].clicks == [Click(22, 22, 1)]
    assert result.steps[1].frame_j_after == pytest.approx(0.5)
    assert result.j == pytest.approx(0.6)
    assert result.f == pytest.approx(2 / 3)
    assert result.jf == pytest.approx((0.6 + 2 / 3) / 2)
    assert result.prompted_frames == 2 and result.clicks == 2


def test_offline_protocol_stops_at_the_frame_budget(session):
    result = offline_protocol(session, GT, object_id=1, max_prompted_frames=1)
    assert result.prompted_frames == 1 and result.clicks == 1
    assert result.jf == pytest.approx(0.4)


def test_online_protocol_pauses_where_j_drops(session):
    result = online_protocol(session, GT, object_id=3)
    # Forward from frame 0: frame 1 fine, frame 2 J = 0 -> pause, 2 clicks; frame 3 fine, frame 4 J = 0 -> 1 click.
    assert [step.frame_index for step in result.steps] == [0, 2, 4]
    assert [len(step.clicks) for step in result.steps] == [1, 2, 1]
    assert all(step.j is None for step in result.steps)
    assert (result.j, result.f, result.jf, result.clicks) == (1.0, 1.0, 1.0, 4)
    assert result.annotation_seconds == pytest.approx(3 + 6 + 30 * 5 / 300)


def test_online_protocol_without_pauses_left_keeps_going(session):
    result = online_protocol(session, GT, object_id=3, max_prompted_frames=1)
    assert [step.frame_index for step in result.steps] == [0]
    assert result.j == pytest.approx(0.4)


def test_clicks_to_target_one_click_per_round(session):
    result = clicks_to_target(session, GT, object_id=2, target=0.9)
    # Rounds: f0 +A; f2 +B (A|B everywhere after); f4 -A (raster-first of two equal false regions) -> B;
    # f4 -B -> empty; f2 -A -> B, copied to frame 3: every frame exact.
    assert result.reached and result.clicks == 5
    assert result.prompted_frames == 3 and result.frame_visits == 4 and result.propagations == 5
    assert result.worst_jf[-1] == 1.0 and result.worst_jf[0] == 0.0
    assert result.annotation_seconds == pytest.approx(4 + 5 * 1.5 + 5 * 30 * 5 / 300)


def test_clicks_to_target_several_clicks_per_round(session):
    result = clicks_to_target(session, GT, object_id=2, clicks_per_round=3)
    # f0: 1 click (exact); f2: +B then -A (exact, stop); f4: -B.
    assert result.reached and result.clicks == 4 and result.propagations == 3


def test_clicks_to_target_budget_runs_out(session):
    result = clicks_to_target(session, GT, object_id=2, max_clicks=3)
    assert not result.reached and result.clicks == 3 and len(result.worst_jf) == 3


def test_object_never_visible_needs_no_clicks(session):
    never = dict.fromkeys(GT, EMPTY)
    result = offline_protocol(session, never, object_id=1)
    assert not result.visible and result.clicks == 0 and result.steps == []
    target = clicks_to_target(session, never, object_id=1)
    assert target.reached and target.clicks == 0 and not target.visible


def test_prediction_missing_the_object_counts_as_empty():
    # Ground truth on frames 0-2 only, the object first visible on 2. The backward pass yields frames 0-1
    # without the object: they count as empty predictions (right, as the object is absent there).
    session = DiscSegmenter({0: EMPTY, 1: EMPTY, 2: B}, copy_backward=False).open_session(black_frames())
    result = offline_protocol(session, {0: EMPTY, 1: EMPTY, 2: B}, object_id=1)
    assert [step.frame_index for step in result.steps] == [2]
    assert result.jf == 1.0
    # Where the object IS there, a missing prediction is a miss: GT A on frame 0 scores J = 0 there.
    session = DiscSegmenter({0: A, 1: EMPTY, 2: B}, copy_backward=False).open_session(black_frames())
    result = offline_protocol(session, {0: A, 1: EMPTY, 2: B}, object_id=1, max_prompted_frames=1)
    assert result.steps[0].frame_index == 0
    assert result.j == pytest.approx(1 / 3)


def test_protocols_reject_ground_truth_of_the_wrong_size(session):
    with pytest.raises(ValueError, match="ground truth of frame 0"):
        offline_protocol(session, {0: np.zeros((5, 5), bool)}, object_id=1)


# -- the real classical backend on a real DAVIS sequence ------------------------------------


def test_protocols_drive_the_classical_backend_on_davis(davis_root):
    record = load_davis(davis_root, ["blackswan"])[0].truncated(6)
    gt = record.gt_masks(1)
    with build_segmenter("classical").open_session(record.frames) as session:
        offline = offline_protocol(session, gt, object_id=1, max_prompted_frames=2)
        online = online_protocol(session, gt, object_id=1, max_prompted_frames=3)
        target = clicks_to_target(session, gt, object_id=1, max_clicks=3)

    assert offline.steps[0].frame_index == 0 and offline.steps[0].clicks[0] == first_click(gt[0])
    assert len(offline.steps) == 2 and offline.steps[1].frame_index != 0
    assert offline.clicks == sum(len(step.clicks) for step in offline.steps) <= 6
    assert offline.steps[0].frame_j_after > 0.25  # the swan is found, if roughly (the measured J is ~0.5)
    for result in (offline, online):
        assert 0 <= result.j <= 1 and 0 <= result.f <= 1 and result.jf == pytest.approx((result.j + result.f) / 2)
    assert offline.jf == pytest.approx(offline.steps[-1].jf)

    frames = [step.frame_index for step in online.steps]
    assert frames[0] == 0 and frames == sorted(set(frames)) and len(frames) <= 3
    assert all(step.frame_j_before < 0.75 for step in online.steps[1:])  # it only pauses where J dropped

    assert target.clicks <= 3 and len(target.worst_jf) == target.propagations
    assert target.reached == (target.worst_jf[-1] >= 0.9)
    json.dumps([asdict(offline), asdict(online), asdict(target)])
