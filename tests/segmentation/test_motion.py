"""Moving regions by background subtraction (segmentation.motion) on synthetic clips with exact truth."""

from __future__ import annotations

import numpy as np

from segmentation import motion


def textured_background(seed: int, height: int = 240, width: int = 320) -> np.ndarray:
    """A random-texture background, blurred so ORB finds corners to align frames on."""
    import cv2

    noise = np.random.default_rng(seed).integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
    return cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)


def clip(positions: list[tuple[int, int]], shift: tuple[int, int] = (0, 0)) -> tuple[list[np.ndarray], np.ndarray]:
    """A pale square walking over the background (its shadow beside it); the camera pans by ``shift`` per frame."""
    big = textured_background(1, 300, 400)
    frames = []
    truth = None
    for number, (x, y) in enumerate(positions):
        dx, dy = shift[0] * number, shift[1] * number
        frame = big[30 + dy : 270 + dy, 40 + dx : 360 + dx].copy()
        shadow = frame[y + 40 : y + 50, x + 10 : x + 50]
        frame[y + 40 : y + 50, x + 10 : x + 50] = (shadow * 0.6).astype(np.uint8)  # darker, same chroma
        frame[y : y + 40, x : x + 40] = (235, 232, 228)
        frames.append(frame)
        if truth is None:
            truth = np.zeros(frame.shape[:2], bool)
            truth[y : y + 40, x : x + 40] = True
    return frames, truth


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_a_moving_object_is_found_without_its_shadow() -> None:
    frames, truth = clip([(20 + 15 * i, 60 + 8 * i) for i in range(12)])
    regions = motion.moving_regions(frames)
    best = max(regions, key=lambda r: iou(r.mask, truth))
    assert iou(best.mask, truth) >= 0.85  # the shadow under it is not part of it
    assert best.support >= 0.85 and best.agreement >= 0.8


def test_a_panning_camera_is_compensated() -> None:
    frames, truth = clip([(20 + 15 * i, 60 + 8 * i) for i in range(12)], shift=(2, 1))
    regions = motion.moving_regions(frames)
    assert max(iou(r.mask, truth) for r in regions) >= 0.8
    assert sum(r.mask.sum() for r in regions) < 2 * truth.sum()  # the panned background is not moving


def test_an_object_that_never_moves_is_background() -> None:
    frames, _ = clip([(100, 100)] * 12)
    assert motion.moving_regions(frames) == []


def test_samples_start_at_the_seed_and_spread_over_the_video() -> None:
    assert motion.sample_indices(100, 40, samples=5) == [40, 0, 25, 50, 74, 99]
    assert motion.sample_indices(1, 0) == [0]
