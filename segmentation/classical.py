"""The classical backend: a graph cut for prompts, dense optical flow + GrabCut for propagation.

It serves machines without any SAM 2 checkpoint, so annotation still works (more clicks, but
real masks on real video). Everything runs on a downscaled working copy of each frame (long
side <= ``work_side``); the cuts additionally run on a crop around the object, capped at
``cut_pixels`` / ``gc_pixels`` pixels, because their cost grows faster than linearly with the
pixel count.

Prompts go through ``segmentation.graphcut``: colour models plus a spatial prior, each prompt
saying where the object is likely and where colour samples of object and background come from:

- clicks alone: the prior falls with the distance to the positive clicks; the object's colours
  are sampled around them, the background's along the frame border and around negative clicks;
- a box: nothing outside it; the prior is highest at its centre, and doubled while the cut
  spans less than ``BOX_SPAN`` of the box (a box is drawn tight); the background's colours come
  from a ring around it and are taken out of the box's to give the object's;
- a click on a frame that already has a mask (from earlier prompts, a brush edit or propagation)
  corrects it: the prior is the current mask, faded to nothing around the new click, so the
  mask changes there and not elsewhere; a region a negative click sits in goes up to its
  narrowest neck towards the positive clicks;
- clicks sent together are applied one after the other; a mask (brush edit) is taken as-is;
- every prompted frame is a conditioning frame: propagation yields its prompted mask and
  restarts tracking from it.

Propagation warps the previous frame's mask with DIS optical flow (backward warping with
``cv2.remap``) and refines it with GrabCut on a trimap made from the warped mask (eroded core =
sure foreground, a band either side = probable, beyond = sure background), so the mask snaps to
colour edges instead of drifting with flow error. An object whose mask shrinks to nothing has
left: it stays empty until a later prompt re-anchors it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import cv2
import numpy as np

from segmentation import graphcut, quality
from segmentation.frames import FrameSource
from segmentation.segmenter import (
    Box,
    FrameQuality,
    FrameResult,
    Points,
    SegmentationError,
    Segmenter,
    SegmenterSession,
)

_FG = (cv2.GC_FGD, cv2.GC_PR_FGD)

# Prompt priors (log-odds of the object; see ``graphcut``). Chosen on the synthetic scenes, the real
# videos and DAVIS dev together, and checked leave-one-sequence-out (bench/README.md).
CLICK_PRIOR = (1.0, 8.0)  # clicks alone: at the click, and the fall per frame long side of distance
BOX_PRIOR = (1.5, 3.0, 6.0)  # a box: at its centre (+), at its corners (-); stronger until the cut spans it
BOX_SPAN = 0.7  # ...i.e. until its bounding box covers this share of the box's width and height
BOX_PURITY = 0.5  # share of a box the object covers, for its first colour model (graphcut._unmix)
REFINE_PRIOR = 3.0  # a corrected mask: its own label, away from the new click
REFINE_REACH = (4.0, 0.5)  # ...fading out within max(a * click radius, b * sqrt(mask area)) of them
SAMPLE_RADIUS = 3  # colour samples: discs of this many click radii around clicks
LOST_PRESENCE = 0.25  # a tracked mask with less of its object's colours than this share of the anchor's: lost
BORDER_BAND = 0.03  # background colour sample along the frame border (share of the long side)


@dataclass
class _FramePrompts:
    """One object's prompts on one frame: an optional box or mask, plus accumulated clicks."""

    box: Box | None = None
    mask: np.ndarray | None = None
    coords: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)


class ClassicalSegmenter(Segmenter):
    """OpenCV-only segmenter: no weights, no torch; a few hundred ms per frame on a CPU core."""

    name = "classical (OpenCV)"

    def __init__(self, work_side: int = 480, gc_pixels: int = 40_000, gc_iters: int = 3, track_iters: int = 2):
        if work_side < 64:
            raise ValueError(f"work_side must be at least 64 pixels, got {work_side}")
        self.work_side = int(work_side)
        self.gc_pixels = int(gc_pixels)
        self.gc_iters = int(gc_iters)
        self.track_iters = int(track_iters)

    def open_session(self, frames: FrameSource) -> ClassicalSession:
        return ClassicalSession(
            frames,
            work_side=self.work_side,
            gc_pixels=self.gc_pixels,
            gc_iters=self.gc_iters,
            track_iters=self.track_iters,
        )


class ClassicalSession(SegmenterSession):
    """Per-video state: prompts and prompted masks per object and frame, and the last tracked masks."""

    def __init__(
        self,
        frames: FrameSource,
        work_side: int = 480,
        gc_pixels: int = 40_000,
        gc_iters: int = 3,
        track_iters: int = 2,
    ):
        super().__init__(frames)
        self.scale = min(1.0, work_side / max(self.height, self.width))
        self.work_size = (max(1, round(self.width * self.scale)), max(1, round(self.height * self.scale)))
        self.gc_pixels = gc_pixels
        self.gc_iters = gc_iters
        self.track_iters = track_iters
        self.cut_pixels = 60_000
        long_side = max(self.work_size)
        self._click_radius = max(2, round(0.012 * long_side))
        self._min_area = max(4, round(1e-4 * self.work_size[0] * self.work_size[1]))
        # FAST rather than MEDIUM: smoother flow that follows objects better on DAVIS dev (mean J 0.65 -> 0.71).
        self._flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._prompts: dict[int, dict[int, _FramePrompts]] = {}
        self._prompted_masks: dict[int, dict[int, np.ndarray]] = {}
        # Masks from the last propagation, bit-packed (1/8 of a bool mask) so long videos stay small.
        self._tracked: dict[int, dict[int, np.ndarray]] = {}
        self._graphs: graphcut.GraphCache | None = None  # see ``reusing_work``

    # -- bookkeeping hooks ----------------------------------------------------------------

    @property
    def object_ids(self) -> list[int]:
        return [obj for obj, frames in self._prompts.items() if frames]

    def first_prompted_frame(self) -> int:
        frames = [f for per_frame in self._prompts.values() for f in per_frame]
        if not frames:
            raise SegmentationError("no prompts yet: add a click, box or mask first")
        return min(frames)

    def _remove_object(self, object_id: int) -> None:
        self._prompts.pop(object_id, None)
        self._prompted_masks.pop(object_id, None)
        self._tracked.pop(object_id, None)

    def _clear_prompts(self, frame_index: int, object_id: int) -> None:
        self._prompts.get(object_id, {}).pop(frame_index, None)
        self._prompted_masks.get(object_id, {}).pop(frame_index, None)
        self._tracked.get(object_id, {}).pop(frame_index, None)
        if not self._prompts.get(object_id):
            self._remove_object(object_id)

    def reset(self) -> None:
        self._prompts.clear()
        self._prompted_masks.clear()
        self._tracked.clear()

    @contextmanager
    def reusing_work(self) -> Iterator[None]:
        """Inside, cuts on an image already cut start from that cut's max-flow graph (``graphcut.GraphCache``).

        Same masks, sooner, for many prompts on one frame (the auto-masklet generator's grid clicks:
        01_dog.mp4's grid 30 % less time in its cuts); outside, no graph outlives its cut.
        """
        previous = self._graphs
        self._graphs = graphcut.GraphCache()
        try:
            yield
        finally:
            self._graphs = previous

    # -- prompts --------------------------------------------------------------------------

    def _add_points(self, frame_index: int, object_id: int, points: Points) -> np.ndarray:
        per_frame = self._prompts.setdefault(object_id, {})
        if frame_index not in per_frame:
            # Clicks on a frame that propagation already segmented correct that mask, as SAM 2's do.
            tracked = self._tracked.get(object_id, {}).get(frame_index)
            start = _unpack(tracked, (self.height, self.width)) if tracked is not None else None
            per_frame[frame_index] = _FramePrompts(mask=start if start is not None and start.any() else None)
        prompts = per_frame[frame_index]
        current = self._prompted_masks.get(object_id, {}).get(frame_index)
        if current is None:
            current = prompts.mask
        # Clicks sent together are taken one after the other, so a mask never depends on how a
        # person's clicks were batched: the first segments, each later one corrects (a colour
        # sample pooled from clicks all over an object and its surroundings floods, measured on
        # the dog of 01_dog.mp4: four clicks at once 0.21 IoU, one by one 0.59).
        for xy, label in zip(points.coords, points.labels, strict=True):
            prompts.coords.append(xy)
            prompts.labels.append(label)
            if current is not None and current.any():
                current = self._refine(frame_index, current, prompts, xy)
            elif prompts.box is not None:
                current = self._from_box(frame_index, prompts)
            else:
                current = self._from_clicks(frame_index, prompts)
        return self._store(frame_index, object_id, current)

    def _add_box(self, frame_index: int, object_id: int, box: Box) -> np.ndarray:
        prompts = _FramePrompts(box=box)
        self._prompts.setdefault(object_id, {})[frame_index] = prompts
        return self._store(frame_index, object_id, self._from_box(frame_index, prompts))

    def _add_mask(self, frame_index: int, object_id: int, mask: np.ndarray) -> np.ndarray:
        prompts = _FramePrompts(mask=mask.copy())
        self._prompts.setdefault(object_id, {})[frame_index] = prompts
        return self._store(frame_index, object_id, mask.copy())

    def _store(self, frame_index: int, object_id: int, mask: np.ndarray) -> np.ndarray:
        self._prompted_masks.setdefault(object_id, {})[frame_index] = mask
        self._tracked.get(object_id, {}).pop(frame_index, None)
        return mask.copy()

    # -- prompt segmentation: a graph cut whose prior and colour samples come from the prompts --------

    def _clicks(self, prompts: _FramePrompts, label: int) -> list[tuple[int, int]]:
        return [self._to_work(p) for p, lab in zip(prompts.coords, prompts.labels, strict=True) if lab == label]

    def _from_clicks(self, frame_index: int, prompts: _FramePrompts) -> np.ndarray:
        """First clicks, no box or mask: the object is near the positive clicks, the background at the frame border.

        The prior falls linearly with the distance to the nearest positive click (``CLICK_PRIOR``:
        log-odds at the click and per long side of distance); colours are sampled in a disc around
        each positive click and in a band along the frame border (where an object is less often
        than the background) and around negative clicks.
        """
        image, _ = self._work_frame(frame_index)
        h, w = image.shape[:2]
        pos, neg = self._clicks(prompts, 1), self._clicks(prompts, 0)
        if not pos:
            # Only negative clicks: nothing to segment yet (the clicks are kept for later ones).
            return np.zeros((self.height, self.width), bool)
        r = self._click_radius
        long_side = max(h, w)
        near = _distance_to(pos, (h, w)) / long_side
        at_click, per_side = CLICK_PRIOR
        prior = at_click - per_side * near
        band = max(2, round(BORDER_BAND * long_side))
        border = np.ones((h, w), bool)
        border[band:-band, band:-band] = False
        fg = self._cut_in(
            np.ones((h, w), bool),
            image,
            prior,
            fg_sample=_discs((h, w), pos, SAMPLE_RADIUS * r),
            bg_sample=border | _discs((h, w), neg, SAMPLE_RADIUS * r),
            sure_fg=_discs((h, w), pos, r),
            sure_bg=_discs((h, w), neg, r),
        )
        fg = _keep_components(fg, _discs((h, w), pos, r), _discs((h, w), neg, r))
        return self._to_frame_mask(fg)

    def _from_box(self, frame_index: int, prompts: _FramePrompts) -> np.ndarray:
        """A box: the object fills it (prior highest at its centre, falling towards its corners), nothing is outside.

        Colours are sampled inside the box (object) and in a ring around it (background), as
        GrabCut does; the box prior is what keeps an object whose colours also lie outside from
        being cut down to its most distinctive part.
        """
        image, _ = self._work_frame(frame_index)
        h, w = image.shape[:2]
        x0, y0 = self._to_work((prompts.box.x0, prompts.box.y0))
        x1, y1 = self._to_work((prompts.box.x1, prompts.box.y1))
        x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
        pos, neg = self._clicks(prompts, 1), self._clicks(prompts, 0)
        r = self._click_radius
        inside = np.zeros((h, w), bool)
        inside[y0 : y1 + 1, x0 : x1 + 1] = True
        ring = _grow_box(inside, 0.25, 3 * r) & ~inside
        crop = _grow_box(inside | _discs((h, w), pos, r), 0.3, 4 * r)
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        cx, cy, ax, ay = (x0 + x1) / 2, (y0 + y1) / 2, max(1.0, (x1 - x0) / 2), max(1.0, (y1 - y0) / 2)
        ellipse = ((xs - cx) / ax) ** 2 + ((ys - cy) / ay) ** 2  # 1 on the inscribed ellipse, 2 at the corners
        shape = np.clip(1.0 - ellipse, -1.0, 1.0)
        # A box is drawn tight: the object reaches its four sides. When the cut spans much less of it
        # (colours the background shares, cut off by the smoothness term), the prior is doubled.
        for strength in BOX_PRIOR:
            fg = self._cut_in(
                crop,
                image,
                strength * shape,
                fg_sample=inside,
                bg_sample=ring | _discs((h, w), neg, SAMPLE_RADIUS * r),
                sure_fg=_discs((h, w), pos, r),
                sure_bg=~inside | _discs((h, w), neg, r),
                purity=BOX_PURITY,
            )
            if _spans(fg, (x1 - x0 + 1, y1 - y0 + 1), BOX_SPAN):
                break
        fg = _keep_components(fg, _discs((h, w), pos, r), _discs((h, w), neg, r), keep_large=True)
        return self._to_frame_mask(fg)

    def _refine(
        self, frame_index: int, current: np.ndarray, prompts: _FramePrompts, click: tuple[float, float]
    ) -> np.ndarray:
        """Correct ``current`` with a new click: it changes around it, and stays as it was farther away.

        The prior is the current mask's label (``REFINE_PRIOR`` log-odds) faded to nothing at the
        new click over a radius that grows with the object; colours are sampled from the current
        mask and positive clicks (object) and its outside and negative clicks (background). Every
        click made on the frame stays a hard constraint.
        """
        image, _ = self._work_frame(frame_index)
        h, w = image.shape[:2]
        small = self._to_work_mask(current)
        pos, neg = self._clicks(prompts, 1), self._clicks(prompts, 0)
        fresh = [self._to_work(click)]
        r = self._click_radius
        reach = max(REFINE_REACH[0] * r, REFINE_REACH[1] * np.sqrt(max(1, int(small.sum()))))
        fade = np.clip(_distance_to(fresh, (h, w)) / reach, 0.0, 1.0)
        prior = REFINE_PRIOR * np.where(small, 1.0, -1.0) * fade
        pos_discs, neg_discs = _discs((h, w), pos, r), _discs((h, w), neg, r)
        crop = _grow_box(small | pos_discs | neg_discs, 0.3, 4 * r)
        fg = self._cut_in(
            crop,
            image,
            prior,
            fg_sample=(small & ~_discs((h, w), neg, SAMPLE_RADIUS * r)) | _discs((h, w), pos, SAMPLE_RADIUS * r),
            bg_sample=(~small & ~_discs((h, w), pos, SAMPLE_RADIUS * r)) | _discs((h, w), neg, SAMPLE_RADIUS * r),
            sure_fg=pos_discs,
            sure_bg=neg_discs,
        )
        # What anchors the object: its positive clicks and the current mask away from negative clicks, so
        # a region a negative click sits in goes when nothing else holds it (``_keep_components``).
        anchor = pos_discs | (small & ~_discs((h, w), neg, round(reach)))
        fg = _keep_components(fg, anchor, neg_discs)
        return self._to_frame_mask(fg)

    def _cut_in(
        self, crop: np.ndarray, image: np.ndarray, prior: np.ndarray, purity: float = 1.0, **maps: np.ndarray
    ) -> np.ndarray:
        """``graphcut.cut`` on the bounding box of ``crop``, downscaled to at most ``cut_pixels``; full-size result."""
        h, w = crop.shape
        ys, xs = np.nonzero(crop)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        factor = min(1.0, float(np.sqrt(self.cut_pixels / ((y1 - y0) * (x1 - x0)))))
        size = (max(8, round((x1 - x0) * factor)), max(8, round((y1 - y0) * factor)))

        def fit(a: np.ndarray, nearest: bool) -> np.ndarray:
            part = np.ascontiguousarray(a[y0:y1, x0:x1])
            if factor >= 1.0:
                return part
            if part.dtype == bool:
                return cv2.resize(part.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
            return cv2.resize(part, size, interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)

        fg = graphcut.cut(
            fit(image, False),
            fit(prior.astype(np.float32), True),
            purity=purity,
            cache=self._graphs,
            **{key: fit(value, True) for key, value in maps.items()},
        )
        if factor < 1.0:
            fg = cv2.resize(fg.astype(np.uint8) * 255, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR) > 127
        out = np.zeros((h, w), bool)
        out[y0:y1, x0:x1] = fg
        return out

    # -- propagation ----------------------------------------------------------------------

    def _propagate(self, start_frame: int, reverse: bool, max_frames: int | None) -> Iterator[FrameResult]:
        """Track each object frame by frame; prompted frames re-anchor it. ``max_frames`` counts the start frame."""
        step = -1 if reverse else 1
        stop = -1 if reverse else self.num_frames
        indices = range(start_frame, stop, step)
        if max_frames is not None:
            indices = indices[: max(0, max_frames)]
        objects = self.object_ids
        # Current small-resolution masks (None: not yet seen in this pass, or has left the frame).
        current: dict[int, np.ndarray | None] = {}
        # Colour model of each object from the frame that anchored it: (object/background histogram
        # ratio, share of the anchor mask that the model calls object).
        models: dict[int, tuple[np.ndarray, float]] = {}
        # Each object's last rating in this pass (a lost object keeps the rating of its loss).
        rated: dict[int, FrameQuality] = {}
        previous_index: int | None = None
        for index in indices:
            result = FrameResult(frame_index=index)
            flow = forward = None
            for obj in objects:
                prompted = self._prompted_mask(obj, index)
                score = 1.0
                if prompted is not None:
                    mask = prompted
                    current[obj] = self._to_work_mask(prompted)
                    models[obj] = self._colour_model(index, current[obj])
                    rated.pop(obj, None)
                elif previous_index is None:
                    stored = self._tracked.get(obj, {}).get(index)
                    mask = _unpack(stored, (self.height, self.width)) if stored is not None else None
                    current[obj] = self._to_work_mask(mask) if mask is not None else None
                    if current[obj] is not None:
                        models[obj] = self._colour_model(index, current[obj])
                    mask = mask if mask is not None else np.zeros((self.height, self.width), bool)
                    score = float(current[obj] is not None and current[obj].any())
                else:
                    prev = current.get(obj)
                    small = None
                    if prev is not None and prev.any():
                        if flow is None:
                            flow = self._flow_to(previous_index, index)
                        small = self._track(index, prev, flow, models.get(obj, (None,))[0])
                        if small.any() and obj in models:
                            score = self._presence(index, small, *models[obj])
                    if small is None or not small.any() or score < LOST_PRESENCE:
                        # Lost: the object left, or the mask was left behind on the background.
                        current[obj], score = None, 0.0
                        mask = np.zeros((self.height, self.width), bool)
                    else:
                        current[obj] = small
                        mask = self._to_frame_mask(small)
                    if prev is not None and prev.any():
                        if forward is None:
                            forward = self._flow.calc(self._work_frame(previous_index)[1], self._work_frame(index)[1],
                                                      None)
                        signals = self._signals(index, prev, current[obj], flow, forward, models.get(obj), score)
                        result.quality[obj] = rated[obj] = quality.classical_quality(signals)
                    elif obj in rated:  # still lost: nothing new was seen
                        result.quality[obj] = rated[obj] = quality.carried(rated[obj])
                    self._tracked.setdefault(obj, {})[index] = np.packbits(mask)
                result.masks[obj] = mask
                result.scores[obj] = round(score, 4)
            previous_index = index
            yield result

    def _signals(
        self,
        index: int,
        prev: np.ndarray,
        small: np.ndarray | None,
        coords: np.ndarray,
        forward: np.ndarray,
        model: tuple[np.ndarray, float] | None,
        presence: float,
    ) -> dict[str, float]:
        """What this frame says about the mask carried into it from the frame before (``quality.SIGNALS``).

        ``coords`` is the backward flow (target pixel -> source position), ``forward`` the forward
        flow's displacement (source pixel -> its move); both at working resolution.
        """
        mask = small if small is not None else np.zeros_like(prev)
        area, prev_area = int(mask.sum()), int(prev.sum())
        warped = cv2.remap(prev.astype(np.float32), coords[..., 0], coords[..., 1], cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT) > 0.4
        union = int((warped | mask).sum())
        signals = {
            "presence": float(presence),
            "flow_agreement": float((warped & mask).sum() / union) if union else 1.0,
            "area_change": abs(float(np.log((area + 1.0) / (prev_area + 1.0)))),
            "fb_error": 1.0,
            "edge_agreement": 0.0,
            "separation": -1.0,
        }
        if not area:
            return signals
        # Forward-backward consistency: follow each mask pixel back to the previous frame, then forward
        # again; where the two flows disagree by more than a few pixels, the flow (and the mask) is unsure.
        back_x, back_y = coords[..., 0][mask], coords[..., 1][mask]
        ys, xs = np.nonzero(mask)
        fwd = forward[np.clip(back_y.round().astype(int), 0, mask.shape[0] - 1),
                      np.clip(back_x.round().astype(int), 0, mask.shape[1] - 1)]
        error = np.hypot(back_x + fwd[:, 0] - xs, back_y + fwd[:, 1] - ys)
        signals["fb_error"] = float((error > max(1.5, 0.02 * np.sqrt(area))).mean())
        # Boundary-edge agreement: a right mask's outline lies on image edges; compare the gradient on it
        # with the gradient in the band around it.
        _, gray = self._work_frame(index)
        gradient = cv2.magnitude(cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1))
        mask_u8 = mask.astype(np.uint8)
        outline = mask & ~cv2.erode(mask_u8, _disc_kernel(1)).astype(bool)
        band_width = max(3, round(0.1 * np.sqrt(area)))
        band = cv2.dilate(mask_u8, _disc_kernel(band_width)).astype(bool) & ~cv2.erode(
            mask_u8, _disc_kernel(band_width)).astype(bool) & ~outline
        if outline.any() and band.any():
            on, around = float(gradient[outline].mean()), float(gradient[band].mean())
            signals["edge_agreement"] = on / (on + around) if on + around > 0 else 0.5
        if model is not None:
            signals["separation"] = self._separation(index, mask, model[0])
        return signals

    def _prompted_mask(self, object_id: int, frame_index: int) -> np.ndarray | None:
        mask = self._prompted_masks.get(object_id, {}).get(frame_index)
        return None if mask is None else mask.copy()

    def _colour_model(self, index: int, mask: np.ndarray) -> tuple[np.ndarray, float]:
        """Object-vs-background colour histograms of an anchor frame: does a later mask still hold the object?"""
        image, _ = self._work_frame(index)
        bins = _colour_bins(image)
        fg = np.bincount(bins[mask], minlength=_BINS**3) + 1.0
        bg = np.bincount(bins[~mask], minlength=_BINS**3) + 1.0
        ratio = (fg / fg.sum()) / (bg / bg.sum())
        share = float((ratio[bins[mask]] > 1.0).mean()) if mask.any() else 0.0
        return ratio, share

    def _presence(self, index: int, mask: np.ndarray, ratio: np.ndarray, share: float) -> float:
        """How much of the mask still has the object's colours, relative to the anchor frame (capped at 1).

        Flow on a static background is zero, so a mask left behind by an object that moved away
        (or out of the frame) would otherwise stay there forever: under ``LOST_PRESENCE`` the
        object is lost. On DAVIS dev it never fell below 0.4 while the object was there
        (car-shadow driving into shade).
        """
        now = float(self._object_colours(index, ratio)[mask].mean())
        return min(1.0, now / max(share, 1e-6))

    def _object_colours(self, index: int, ratio: np.ndarray) -> np.ndarray:
        """Pixels of frame ``index`` whose colour an anchor's model calls object rather than background."""
        image, _ = self._work_frame(index)
        return ratio[_colour_bins(image)] > 1.0

    def _separation(self, index: int, mask: np.ndarray, ratio: np.ndarray) -> float:
        """Share of ``mask`` with the object's colours minus that share in a ring around it: how well it fits."""
        if not mask.any():
            return -1.0
        ring = cv2.dilate(mask.astype(np.uint8), _disc_kernel(max(3, round(0.15 * np.sqrt(mask.sum()))))).astype(bool)
        ring &= ~mask
        colours = self._object_colours(index, ratio)
        return float(colours[mask].mean() - (colours[ring].mean() if ring.any() else 0.0))

    def _flow_to(self, source: int, target: int) -> np.ndarray:
        """Backward flow: for each pixel of ``target``, where it came from in ``source`` (for ``cv2.remap``)."""
        _, source_gray = self._work_frame(source)
        _, target_gray = self._work_frame(target)
        flow = self._flow.calc(target_gray, source_gray, None)
        h, w = flow.shape[:2]
        grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        flow[..., 0] += grid_x
        flow[..., 1] += grid_y
        return flow

    def _track(self, index: int, prev: np.ndarray, coords: np.ndarray, ratio: np.ndarray | None) -> np.ndarray:
        """The previous mask carried into frame ``index``: moved by the flow, or left where it was.

        Both candidates are snapped to the frame's colour edges (``_follow``) and the one whose
        colours the anchor's model (``ratio``) separates better from its surroundings is kept, so
        tracking does no worse than a mask that stays put when the flow follows something else: on
        DAVIS libby the flow carried the dog's mask away with the fence post running in front of it
        (mean J with a ground-truth start, dev: 0.63 -> 0.71 with ``_flow``'s FAST preset, every
        sequence better; bench/README.md).
        """
        moved = self._follow(index, prev, coords)
        if ratio is None:
            return moved
        h, w = prev.shape
        grid = np.stack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)), axis=-1)
        still = self._follow(index, prev, grid)
        return max((moved, still), key=lambda mask: self._separation(index, mask, ratio))

    def _follow(self, index: int, prev: np.ndarray, coords: np.ndarray) -> np.ndarray:
        """Warp ``prev`` into frame ``index`` and snap it to the frame's colour edges.

        The constants were tuned on the four DAVIS dev sequences (mask prompt on frame 0, mean J):
        a warp threshold of 0.4 rather than 0.5 and a probable-background ring twice the band
        counter the shrinking that backward warping causes at motion boundaries (0.58 -> 0.66).
        """
        warped = cv2.remap(
            prev.astype(np.float32), coords[..., 0], coords[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
        moved = warped > 0.4
        area = int(moved.sum())
        if area < self._min_area:
            return np.zeros_like(moved)
        image, _ = self._work_frame(index)
        band = int(np.clip(round(0.08 * np.sqrt(area)), 2, 12))
        moved_u8 = moved.astype(np.uint8)
        core = cv2.erode(moved_u8, _disc_kernel(band)).astype(bool)
        outer = cv2.dilate(moved_u8, _disc_kernel(2 * band)).astype(bool)
        trimap = np.full(moved.shape, cv2.GC_BGD, np.uint8)
        trimap[outer] = cv2.GC_PR_BGD
        trimap[moved] = cv2.GC_PR_FGD
        trimap[core] = cv2.GC_FGD
        refined = _grabcut(image, trimap, self.track_iters, self.gc_pixels)
        refined = _keep_components(refined, moved, None)
        refined_area = int(refined.sum())
        # GrabCut fails when foreground and background colours overlap; then trust the flow alone.
        if not 0.5 * area <= refined_area <= 2.0 * area:
            return moved
        return refined

    # -- resolution helpers ---------------------------------------------------------------

    def _work_frame(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The frame at working resolution (RGB) and its grey copy, with a tiny cache for neighbour reuse."""
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        frame = np.ascontiguousarray(self.frames[index])
        if self.scale < 1.0:
            frame = cv2.resize(frame, self.work_size, interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        self._cache[index] = (frame, gray)
        if len(self._cache) > 4:
            self._cache.popitem(last=False)
        return frame, gray

    def _to_work(self, point: tuple[float, float], clip: bool = True) -> tuple[int, int]:
        x, y = int(point[0] * self.scale), int(point[1] * self.scale)
        if clip:
            x = min(max(x, 0), self.work_size[0] - 1)
            y = min(max(y, 0), self.work_size[1] - 1)
        return x, y

    def _to_work_mask(self, mask: np.ndarray) -> np.ndarray:
        if self.scale >= 1.0:
            return mask.astype(bool)
        small = cv2.resize(mask.astype(np.uint8) * 255, self.work_size, interpolation=cv2.INTER_AREA)
        return small > 127

    def _to_frame_mask(self, small: np.ndarray) -> np.ndarray:
        if self.scale >= 1.0:
            return small.astype(bool)
        big = cv2.resize(small.astype(np.uint8) * 255, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        return big > 127


# -- image helpers --------------------------------------------------------------------------

_BINS = 8  # colour histogram bins per channel


def _colour_bins(image: np.ndarray) -> np.ndarray:
    q = (image // (256 // _BINS)).astype(np.int32)
    return (q[..., 0] * _BINS + q[..., 1]) * _BINS + q[..., 2]


def _disc_kernel(radius: int) -> np.ndarray:
    size = 2 * max(1, int(radius)) + 1
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def _discs(shape: tuple[int, int], centres: list[tuple[int, int]], radius: int) -> np.ndarray:
    out = np.zeros(shape, np.uint8)
    for x, y in centres:
        cv2.circle(out, (int(x), int(y)), int(radius), 1, thickness=-1)
    return out.astype(bool)


def _spans(mask: np.ndarray, size: tuple[int, int], share: float) -> bool:
    """Whether the bounding box of ``mask`` covers ``share`` of ``size`` (width, height) both ways."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return False
    return xs.max() - xs.min() + 1 >= share * size[0] and ys.max() - ys.min() + 1 >= share * size[1]


def _distance_to(points: list[tuple[int, int]], shape: tuple[int, int]) -> np.ndarray:
    """Euclidean distance of every pixel to the nearest of ``points`` (inf-like when there are none)."""
    if not points:
        return np.full(shape, float(sum(shape)), np.float32)
    free = np.ones(shape, np.uint8)
    for x, y in points:
        free[int(y), int(x)] = 0
    return cv2.distanceTransform(free, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def _grow_box(mask: np.ndarray, fraction: float, minimum: int) -> np.ndarray:
    """The bounding box of ``mask`` grown by ``fraction`` of its size (at least ``minimum`` px) each side."""
    out = np.zeros(mask.shape, bool)
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return out
    y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
    dy = max(minimum, int(fraction * (y1 - y0 + 1)))
    dx = max(minimum, int(fraction * (x1 - x0 + 1)))
    out[max(0, y0 - dy) : y1 + dy + 1, max(0, x0 - dx) : x1 + dx + 1] = True
    return out


def _grabcut(image: np.ndarray, trimap: np.ndarray, iters: int, max_pixels: int) -> np.ndarray:
    """GrabCut on the crop around the non-sure-background pixels, downscaled to at most ``max_pixels``.

    Returns the foreground as a bool mask of the full working size. Falls back to the trimap's
    foreground labels when either side has too few pixels for GrabCut's colour models.
    """
    h, w = trimap.shape
    ys, xs = np.nonzero(trimap != cv2.GC_BGD)
    if ys.size == 0:
        return np.zeros((h, w), bool)
    margin = max(4, int(0.1 * max(ys.max() - ys.min(), xs.max() - xs.min())))
    y0, y1 = max(0, ys.min() - margin), min(h, ys.max() + margin + 1)
    x0, x1 = max(0, xs.min() - margin), min(w, xs.max() + margin + 1)
    crop_img = image[y0:y1, x0:x1]
    crop_tri = trimap[y0:y1, x0:x1]
    ch, cw = crop_tri.shape
    factor = min(1.0, float(np.sqrt(max_pixels / (ch * cw))))
    if factor < 1.0:
        size = (max(8, round(cw * factor)), max(8, round(ch * factor)))
        crop_img = cv2.resize(crop_img, size, interpolation=cv2.INTER_AREA)
        crop_tri = cv2.resize(crop_tri, size, interpolation=cv2.INTER_NEAREST)
    crop_tri = np.ascontiguousarray(crop_tri)
    is_fg = np.isin(crop_tri, _FG)
    fallback = np.isin(trimap, _FG)
    if is_fg.sum() < 16 or (~is_fg).sum() < 16:
        return fallback
    bgd_model = np.zeros((1, 65), np.float64)
    fgd_model = np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut seeds its colour models with k-means: same prompts, same mask
    try:
        cv2.grabCut(np.ascontiguousarray(crop_img), crop_tri, None, bgd_model, fgd_model, iters, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return fallback
    fg = np.isin(crop_tri, _FG).astype(np.uint8) * 255
    if factor < 1.0:
        fg = cv2.resize(fg, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    out = np.zeros((h, w), bool)
    out[y0:y1, x0:x1] = fg > 127
    return out


def _keep_components(
    fg: np.ndarray, anchor: np.ndarray | None, negative: np.ndarray | None, keep_large: bool = False
) -> np.ndarray:
    """Keep the foreground regions that belong to the object.

    The components touching ``anchor`` (positive clicks, a brushed mask, a tracked mask) are kept;
    with ``keep_large`` (a box) or without any anchor, so are the largest component and any at
    least 15 % of its size. A component around a negative click, touching no anchor, is dropped unless
    it is the largest one kept (a negative click next to a box's object must not delete it);
    when one touches both, a watershed from the two sets of seeds splits it and the negative side goes.
    """
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
    if n <= 1:
        return fg.astype(bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    has_anchor = anchor is not None and bool((anchor & fg).any())
    keep = set(np.unique(labels[anchor & fg]).tolist()) - {0} if has_anchor else set()
    if keep_large or not keep:
        largest = areas.max()
        keep |= {i + 1 for i, a in enumerate(areas) if a >= 0.15 * largest}
    out = np.isin(labels, list(keep))
    if negative is not None and negative.any():
        near_neg = cv2.dilate(negative.astype(np.uint8), _disc_kernel(2)).astype(bool)
        largest_kept = max(areas[k - 1] for k in keep)
        count, clicks = cv2.connectedComponents(negative.astype(np.uint8))
        for click in range(1, count):
            disc = clicks == click
            ring = cv2.dilate(disc.astype(np.uint8), _disc_kernel(4)).astype(bool) & ~disc
            for label in sorted(set(np.unique(labels[ring]).tolist()) - {0}):
                if label not in keep:
                    continue
                component = labels == label
                seeds = None if anchor is None else component & anchor & ~near_neg
                if seeds is not None and seeds.any():
                    out &= ~_watershed_negative_side(component, seeds, disc | (near_neg & component))
                elif areas[label - 1] < largest_kept and (ring & component).mean() > 0.6 * ring.mean():
                    # The click sits inside this region (it surrounds the click), not on the edge of another.
                    out &= ~component
    return out


def _watershed_negative_side(component: np.ndarray, anchor: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """The part of ``component`` nearer (along the shape) to the negative clicks than to the anchor.

    The negative click's own disc (a hole the cut left) is filled in first: as a hole it would sit on
    a ridge of the relief, and the anchor's basin would flood the whole region before it.
    """
    area = component | negative
    markers = np.full(component.shape, 3, np.int32)  # outside the component: its own basin
    markers[area] = 0
    markers[area & negative] = 2
    markers[component & anchor & ~negative] = 1
    # Distance to the outside as the relief: the split follows the component's narrowest neck.
    dist = cv2.distanceTransform(area.astype(np.uint8), cv2.DIST_L2, 3)
    relief = cv2.cvtColor(
        (255 - np.clip(dist * 255.0 / max(dist.max(), 1.0), 0, 255)).astype(np.uint8), cv2.COLOR_GRAY2BGR
    )
    cv2.watershed(relief, markers)
    return (markers == 2) & component


def _unpack(packed: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return np.unpackbits(packed, count=shape[0] * shape[1]).reshape(shape).astype(bool)
