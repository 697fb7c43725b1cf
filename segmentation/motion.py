"""Moving regions of a video frame, by background subtraction: objects the colour cut cannot outline.

A white dog on pale pavement has no colour edge a click, a box or a graph cut can follow, but it
moves, and the pavement behind it is seen in most of the video. So:

1. ``SAMPLES`` frames spread over the video are aligned to the seed frame (ORB matches and a RANSAC
   homography: a panning or shaking camera is compensated, a frame that cannot be aligned is left out).
2. The per-pixel median of the aligned frames is the background; the seed frame's Lab distance to it,
   over ``THRESHOLD_FACTOR`` times its median (at least ``MIN_THRESHOLD``), is what differs from it.
3. A shadow is darker than the background with the same chromaticity (r, g, b over their sum, which a
   shadow's dimming leaves alone): it is not an object.
4. Holes are filled and specks opened away; regions touching through a thin neck (a hand on the dog's
   head) are split where the neck is thinner than ``NECK`` of the frame's long side: each core wider
   than that grows back over its own pixels.
5. Each region says how much of it differs from the background (``support``) and how steady the
   background behind it was (``agreement``: the share of aligned frames that agree with the median
   there). A region over a background that keeps changing (a person moving across the whole scene, a
   hand shuffling cups) is a change of scene, not an object; the caller filters on both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

SAMPLES = 15
WORK_SIDE = 480
THRESHOLD_FACTOR = 4.0
MIN_THRESHOLD = 10.0
NECK = 4 / 480
SHADOW_CHROMATICITY = 0.03
SHADOW_DARKEST = 0.35
SHADOW_LIGHTEST = 0.95
MIN_MATCHES = 30
MIN_REGION_SHARE = 0.001


@dataclass
class MovingRegion:
    """One region of the seed frame that is not the video's background, at the frame's full size."""

    mask: np.ndarray  # (H, W) bool
    support: float  # share of its pixels that differ from the background (before filling holes)
    agreement: float  # mean share of aligned frames that showed the background behind it


def sample_indices(length: int, seed: int, samples: int = SAMPLES) -> list[int]:
    """The seed frame first, then up to ``samples - 1`` others spread evenly over the video."""
    others = sorted({int(round(i)) for i in np.linspace(0, length - 1, samples)} - {seed})
    return [seed, *others]


def moving_regions(frames: Sequence[np.ndarray]) -> list[MovingRegion]:
    """Regions of ``frames[0]`` (the seed, RGB uint8) that differ from the background of ``frames``."""
    seed = frames[0]
    height, width = seed.shape[:2]
    scale = min(1.0, WORK_SIDE / max(height, width))
    small = [cv2.GaussianBlur(cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), (5, 5), 0)
             for f in frames]
    warped = (_align(small[0], other) for other in small[1:])
    aligned = [small[0].astype(np.float32), *(a for a in warped if a is not None)]
    if len(aligned) < 3:
        return []  # a still image or a video too short or too unsteady to tell background from objects
    rgb = np.stack(aligned).astype(np.float32)  # NaN where a warped frame did not reach
    lab = np.stack([cv2.cvtColor(a, cv2.COLOR_RGB2LAB).astype(np.float32) for a in np.nan_to_num(rgb).astype(np.uint8)])
    lab[np.isnan(rgb)] = np.nan
    background = np.nanmedian(lab, axis=0)
    distance = np.linalg.norm(lab[0] - background, axis=-1)
    threshold = max(MIN_THRESHOLD, THRESHOLD_FACTOR * float(np.median(distance)))
    seen = ~np.isnan(lab[..., 0])
    agreement = ((np.linalg.norm(lab - background[None], axis=-1) < threshold) & seen).sum(axis=0) / seen.sum(axis=0)
    differs = (distance > threshold) & ~_shadow(aligned[0], np.nanmedian(rgb, axis=0))
    regions = _split_at_necks(_solid(differs), max(2.0, NECK * max(differs.shape)))
    out = []
    for label in range(1, int(regions.max()) + 1):
        region = regions == label
        if region.sum() < MIN_REGION_SHARE * region.size:
            continue
        full = cv2.resize(region.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
        out.append(MovingRegion(full, float(differs[region].mean()), float(agreement[region].mean())))
    return out


def _align(reference: np.ndarray, other: np.ndarray) -> np.ndarray | None:
    """``other`` warped onto ``reference`` by a RANSAC homography of ORB matches (float, NaN where it does not
    reach: a pixel the camera saw only in some frames has its background from those); None when they do not match."""
    orb = cv2.ORB_create(2000)
    grey = [cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) for image in (reference, other)]
    (ref_points, ref_desc), (other_points, other_desc) = (orb.detectAndCompute(g, None) for g in grey)
    if ref_desc is None or other_desc is None:
        return None
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(ref_desc, other_desc)
    if len(matches) < MIN_MATCHES:
        return None
    src = np.float32([other_points[m.trainIdx].pt for m in matches])
    dst = np.float32([ref_points[m.queryIdx].pt for m in matches])
    homography, inliers = cv2.findHomography(src, dst, cv2.RANSAC, 2.0)
    if homography is None or int(inliers.sum()) < MIN_MATCHES:
        return None
    h, w = reference.shape[:2]
    warped = cv2.warpPerspective(other.astype(np.float32), homography, (w, h), borderMode=cv2.BORDER_CONSTANT,
                                 borderValue=(np.nan,) * 3)
    return warped


def _shadow(image: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Pixels of ``image`` that are ``background`` dimmed: darker by a bounded ratio, same chromaticity."""
    image, background = np.asarray(image, np.float32) + 1.0, background.astype(np.float32) + 1.0
    brightness, background_brightness = image.sum(axis=-1), background.sum(axis=-1)
    ratio = brightness / background_brightness
    chromaticity = np.abs(image / brightness[..., None] - background / background_brightness[..., None]).max(axis=-1)
    return (ratio > SHADOW_DARKEST) & (ratio < SHADOW_LIGHTEST) & (chromaticity < SHADOW_CHROMATICITY)


def _solid(mask: np.ndarray) -> np.ndarray:
    """Gaps closed, holes filled, specks opened away."""
    ellipse = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    solid = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, ellipse)
    solid = ndimage.binary_fill_holes(solid).astype(np.uint8)
    return cv2.morphologyEx(solid, cv2.MORPH_OPEN, ellipse)


def _split_at_necks(mask: np.ndarray, neck: float) -> np.ndarray:
    """Labels (0 = none): cores wider than ``neck`` px, each grown back over the mask's pixels nearest to it."""
    cores = (cv2.distanceTransform(mask, cv2.DIST_L2, 5) > neck).astype(np.uint8)
    count, core_labels = cv2.connectedComponents(cores)
    if count <= 1:
        return np.zeros(mask.shape, np.int32)
    _, nearest = cv2.distanceTransformWithLabels(1 - cores, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_CCOMP)
    to_core = np.zeros(int(nearest.max()) + 1, np.int32)
    to_core[nearest[cores > 0]] = core_labels[cores > 0]
    return np.where(mask > 0, to_core[nearest], 0)
