"""The SAM 2 backend: Meta's ``SAM2VideoPredictor`` behind the ``Segmenter`` interface.

Two things differ from using the predictor as Meta's notebooks do:

1. **Frames are streamed, not preloaded.** ``SAM2VideoPredictor.init_state`` reads every JPEG of
   a folder into one float32 tensor of shape (N, 3, S, S) (12 MB per frame at S=1024) before the
   first click. ``LazyVideoFrames`` stands in for that tensor: it has ``__len__`` and
   ``__getitem__(i) -> (3, S, S)`` (all ``_get_image_feature`` needs), resizes and normalizes a
   frame from the ``FrameSource`` on demand exactly the way Meta's loader does, keeps at most
   ``cache_size`` of them, and loads the next frame of a propagation on a background thread.
   ``build_inference_state`` then builds the same dict ``init_state`` builds, around it.
   Memory for frames no longer grows with video length.
2. **Every tracked mask is rated.** Meta's predictor computes, per object and frame, the mask
   decoder's predicted IoU and an object-score logit (is the object there at all?) but keeps
   only the logit. ``record_predicted_iou`` keeps the predicted IoU with it in the per-frame
   output, and ``sam2_quality`` turns the two into the mask's quality score.
3. **Corrections stick.** The predictor is built with ``add_all_frames_to_correct_as_cond=true``
   (as Meta's demo does): a click on an already-tracked frame makes it a conditioning frame, so
   the next propagation keeps the correction instead of recomputing that frame from memory.

What still grows with length: the per-frame outputs the predictor keeps as memory for later
propagation and corrections (per frame and object: ``maskmem_features`` (1, 64, S/16, S/16) bf16
and ``pred_masks`` (1, 1, S/4, S/4) float32; ~48 KB at S=256, ~0.75 MB at S=1024). They are what
makes corrections and re-propagation work, so they are kept; ``offload_state_to_cpu`` moves them
off the GPU. The image features are cached for one frame only (the predictor replaces its
``cached_features`` dict on every miss), so they do not grow.

Errors: input is checked by ``SegmenterSession``; the rest is checked here before the predictor
is called (unknown objects, objects left without any prompt), and whatever the predictor still
refuses (``RuntimeError`` / ``ValueError`` / ``AssertionError``, out-of-memory excepted) is
re-raised as ``SegmentationError`` naming the operation; the session state is left as the
predictor left it. Adding a new object after tracking has started is supported by sam2 1.1.0,
so no reset-and-replay is needed.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image

from segmentation.frames import FrameSource
from segmentation.sam2_configs import describe
from segmentation.sam2_model import build_model, resolve_config, select_device
from segmentation.segmenter import (
    Box,
    FrameQuality,
    FrameResult,
    Points,
    SegmentationError,
    Segmenter,
    SegmenterSession,
)

# Meta's ``load_video_frames`` defaults (ImageNet statistics).
IMG_MEAN = (0.485, 0.456, 0.406)
IMG_STD = (0.229, 0.224, 0.225)

#: Predictor settings the interactive backend needs on top of Meta's video post-processing.
PREDICTOR_OVERRIDES = ("++model.add_all_frames_to_correct_as_cond=true",)

DEFAULT_FRAME_CACHE_SIZE = 8

T = TypeVar("T")


class LazyVideoFrames:
    """What ``init_state`` puts under ``inference_state["images"]``, computed on demand.

    ``frames[i]`` is the (3, S, S) float32 tensor Meta's loader would hold for frame ``i``:
    PIL resize of the RGB frame to S x S, divided by 255, normalized with ImageNet mean/std.
    At most ``cache_size`` frames are kept (least recently used out), on ``device``.

    With ``prefetch`` (default), two consecutive reads (i-1 then i, or i+1 then i, as
    propagation does) start loading the next frame in that direction on a background thread,
    so decoding overlaps the model's work on the current frame; at most one frame is in
    flight besides the cache.
    """

    def __init__(
        self,
        source: FrameSource,
        image_size: int,
        device: torch.device | str = "cpu",
        cache_size: int = DEFAULT_FRAME_CACHE_SIZE,
        prefetch: bool = True,
    ):
        if cache_size < 1:
            raise ValueError(f"cache_size must be at least 1, got {cache_size}")
        self.source = source
        self.image_size = int(image_size)
        self.device = torch.device(device)
        self.cache_size = int(cache_size)
        self.prefetch = prefetch
        self._mean = torch.tensor(IMG_MEAN, dtype=torch.float32, device=self.device)[:, None, None]
        self._std = torch.tensor(IMG_STD, dtype=torch.float32, device=self.device)[:, None, None]
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._pending: tuple[int, Future[torch.Tensor]] | None = None
        self._last: int | None = None
        self._source_lock = threading.Lock()  # frame sources keep their own unsynchronized caches
        #: How many frames were resized and normalized (cache misses); for tests and benchmarks.
        self.loads = 0
        #: How many of those were ready (or in progress) thanks to a prefetch.
        self.prefetched = 0
        #: The most frames ever held in the cache at once; never above ``cache_size``.
        self.peak_cached = 0

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> torch.Tensor:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"frame index {index} out of range 0..{len(self) - 1}")
        image = self._cache.get(index)
        if image is not None:
            self._cache.move_to_end(index)
        else:
            image = self._take_prefetched(index)
            if image is None:
                image = self._load(index)
            self.loads += 1
            self._cache[index] = image
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            self.peak_cached = max(self.peak_cached, len(self._cache))
        self._prefetch_after(index)
        self._last = index
        return image

    @property
    def cached(self) -> int:
        """How many normalized frames are held now."""
        return len(self._cache)

    def clear(self) -> None:
        """Drop every held frame (and a prefetch not yet started)."""
        if self._pending is not None:
            self._pending[1].cancel()
            self._pending = None
        self._cache.clear()

    def _take_prefetched(self, index: int) -> torch.Tensor | None:
        if self._pending is None or self._pending[0] != index:
            return None
        future = self._pending[1]
        self._pending = None
        self.prefetched += 1
        return future.result()

    def _prefetch_after(self, index: int) -> None:
        if not self.prefetch or self._last is None or abs(index - self._last) != 1:
            return
        following = 2 * index - self._last  # one more step in the same direction
        if not 0 <= following < len(self) or following in self._cache:
            return
        if self._pending is not None:
            if self._pending[0] == following:
                return
            self._pending[1].cancel()  # a stale guess; if it already runs, its result is dropped
        self._pending = (following, _prefetch_pool().submit(self._load, following))

    def _load(self, index: int) -> torch.Tensor:
        """(H, W, 3) uint8 RGB -> (3, S, S) float32, the same arithmetic as ``load_video_frames``."""
        with self._source_lock:
            rgb = np.asarray(self.source[index])
        size = self.image_size
        resized = np.asarray(Image.fromarray(rgb).resize((size, size)))  # (S, S, 3) uint8, PIL default filter
        image = torch.from_numpy(resized / 255.0).permute(2, 0, 1).to(torch.float32)  # (3, S, S)
        image = image.to(self.device)
        image -= self._mean
        image /= self._std
        return image


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _prefetch_pool() -> ThreadPoolExecutor:
    """One small pool for every session of the process (no thread to clean up per session)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sam2-frames")
        return _POOL


def record_predicted_iou(predictor: Any) -> None:
    """Keep the mask decoder's predicted IoU in each tracked frame's output (as ``"predicted_iou"``,
    next to Meta's ``"object_score_logits"``), where ``Sam2Session`` reads it for the quality score.

    ``_forward_sam_heads`` returns the IoU predictions but ``track_step`` drops them, and
    ``_run_single_frame_inference`` (one call per object and tracked frame) stores a compact output
    without them; both are wrapped on this predictor instance, passing the value through a
    thread-local between the two calls of one frame.
    """
    last = threading.local()
    heads, single_frame = predictor._forward_sam_heads, predictor._run_single_frame_inference

    def forward_sam_heads(*args: Any, **kwargs: Any) -> Any:
        outputs = heads(*args, **kwargs)
        last.iou = outputs[2].max(dim=-1).values  # the chosen mask is the best-IoU one when multimask
        return outputs

    def run_single_frame_inference(*args: Any, **kwargs: Any) -> Any:
        last.iou = None
        compact, pred_masks = single_frame(*args, **kwargs)
        if last.iou is not None:
            compact["predicted_iou"] = last.iou.detach().float().to(compact["object_score_logits"].device)
        return compact, pred_masks

    predictor._forward_sam_heads = forward_sam_heads
    predictor._run_single_frame_inference = run_single_frame_inference


def sam2_quality(predicted_iou: float, object_score_logit: float, has_mask: bool) -> FrameQuality:
    """SAM 2's quality score from its own two estimates.

    With a mask: the decoder's predicted IoU (clipped to [0, 1]) times the probability that the
    object is there (sigmoid of the object-score logit): right only if the object is present AND
    outlined well. Without a mask (SAM 2 judged the object absent): how sure it is of that, 1 -
    that probability; an empty mask is right exactly when the object is gone.
    """
    present = 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, object_score_logit))))
    iou = min(1.0, max(0.0, predicted_iou))
    score = iou * present if has_mask else 1.0 - present
    features = {"predicted_iou": round(iou, 4), "object_score_logit": round(object_score_logit, 4),
                "presence": round(present, 4), "has_mask": float(has_mask)}
    return FrameQuality(round(score, 4), features)


def build_inference_state(
    predictor: Any,
    images: LazyVideoFrames,
    video_height: int,
    video_width: int,
    offload_video_to_cpu: bool = False,
    offload_state_to_cpu: bool = False,
) -> dict[str, Any]:
    """The dict ``SAM2VideoPredictor.init_state`` returns, around lazily loaded ``images``.

    Keys mirror sam2 1.1.0's ``init_state`` (a test compares the key sets). Unlike
    ``init_state`` it does not run the image encoder on frame 0 ahead of time: the first prompt
    computes the features of the frame it is on.
    """
    compute_device = predictor.device
    return {
        "images": images,
        "num_frames": len(images),
        "offload_video_to_cpu": offload_video_to_cpu,
        "offload_state_to_cpu": offload_state_to_cpu,
        "video_height": int(video_height),
        "video_width": int(video_width),
        "device": compute_device,
        "storage_device": torch.device("cpu") if offload_state_to_cpu else compute_device,
        "point_inputs_per_obj": {},
        "mask_inputs_per_obj": {},
        "cached_features": {},  # the predictor keeps one frame's features here (it replaces the dict)
        "constants": {},
        "obj_id_to_idx": OrderedDict(),
        "obj_idx_to_id": OrderedDict(),
        "obj_ids": [],
        "output_dict_per_obj": {},
        "temp_output_dict_per_obj": {},
        "frames_tracked_per_obj": {},
    }


class Sam2Session(SegmenterSession):
    """One video's interactive state on a shared, warm ``SAM2VideoPredictor``."""

    def __init__(
        self,
        predictor: Any,
        frames: FrameSource,
        offload_video_to_cpu: bool = False,
        offload_state_to_cpu: bool = False,
        frame_cache_size: int = DEFAULT_FRAME_CACHE_SIZE,
        prefetch_frames: bool = True,
    ):
        super().__init__(frames)
        self.predictor = predictor
        device = predictor.device
        self.images = LazyVideoFrames(
            frames,
            predictor.image_size,
            device=torch.device("cpu") if offload_video_to_cpu else device,
            cache_size=frame_cache_size,
            prefetch=prefetch_frames,
        )
        self.state: dict[str, Any] | None = build_inference_state(
            predictor, self.images, self.height, self.width, offload_video_to_cpu, offload_state_to_cpu
        )
        self._autocast = device.type == "cuda"

    # -- queries ----------------------------------------------------------------------------

    @property
    def object_ids(self) -> list[int]:
        state = self._live_state()
        return [
            obj_id
            for obj_id, idx in state["obj_id_to_idx"].items()
            if state["point_inputs_per_obj"][idx] or state["mask_inputs_per_obj"][idx]
        ]

    def first_prompted_frame(self) -> int:
        frames = [frame for obj_id in self.object_ids for frame in self._prompted_frames(obj_id)]
        if not frames:
            raise SegmentationError("no frame holds a prompt yet")
        return min(frames)

    # -- prompts ----------------------------------------------------------------------------

    def _add_points(self, frame_index: int, object_id: int, points: Points) -> np.ndarray:
        _, obj_ids, masks = self._call(
            "add points",
            self.predictor.add_new_points_or_box,
            self._live_state(),
            frame_idx=frame_index,
            obj_id=object_id,
            points=np.asarray(points.coords, dtype=np.float32),  # (P, 2) x, y in frame pixels
            labels=np.asarray(points.labels, dtype=np.int32),  # (P,)
            clear_old_points=False,
            normalize_coords=True,
        )
        return self._object_mask(obj_ids, masks, object_id)

    def _add_box(self, frame_index: int, object_id: int, box: Box) -> np.ndarray:
        _, obj_ids, masks = self._call(
            "add box",
            self.predictor.add_new_points_or_box,
            self._live_state(),
            frame_idx=frame_index,
            obj_id=object_id,
            box=np.asarray([box.x0, box.y0, box.x1, box.y1], dtype=np.float32),
            clear_old_points=True,  # a box starts the object's prompts on this frame afresh
            normalize_coords=True,
        )
        return self._object_mask(obj_ids, masks, object_id)

    def _add_mask(self, frame_index: int, object_id: int, mask: np.ndarray) -> np.ndarray:
        _, obj_ids, masks = self._call(
            "add mask",
            self.predictor.add_new_mask,
            self._live_state(),
            frame_idx=frame_index,
            obj_id=object_id,
            mask=torch.from_numpy(np.ascontiguousarray(mask, dtype=bool)),  # (H, W)
        )
        return self._object_mask(obj_ids, masks, object_id)

    # -- propagation ------------------------------------------------------------------------

    def _propagate(self, start_frame: int, reverse: bool, max_frames: int | None) -> Iterator[FrameResult]:
        state = self._live_state()
        if max_frames is not None and max_frames < 1:
            return
        # Meta counts frames *after* the start; the interface counts the start frame too.
        max_num = None if max_frames is None else max_frames - 1
        if reverse and start_frame == 0:
            # Meta skips a reverse pass from frame 0 (a forward pass would have covered it);
            # a backward-only request still has to yield frame 0.
            reverse, max_num = False, 0
        steps = self.predictor.propagate_in_video(
            state, start_frame_idx=start_frame, max_frame_num_to_track=max_num, reverse=reverse
        )
        try:
            while True:
                # Enter the model context around each step only: a generator must not leave
                # autocast / inference mode switched on in the caller's code between yields.
                with self._model_context():
                    try:
                        frame_idx, obj_ids, masks = next(steps)  # masks: (O, 1, H, W) logits
                    except StopIteration:
                        return
                    except torch.OutOfMemoryError:
                        raise
                    except (RuntimeError, ValueError, AssertionError) as exc:
                        raise SegmentationError(f"SAM 2 could not propagate: {exc}") from exc
                    binary = (masks[:, 0] > 0).cpu().numpy()  # (O, H, W) bool
                result = FrameResult(int(frame_idx), {int(o): binary[i] for i, o in enumerate(obj_ids)})
                result.quality = self._ratings(state, int(frame_idx), result.masks)
                yield result
        finally:
            steps.close()

    def _ratings(self, state: dict[str, Any], frame_idx: int, masks: dict[int, np.ndarray]) -> dict[int, FrameQuality]:
        """The quality of each object's tracked mask on this frame; prompted frames (a person's) are not rated."""
        ratings = {}
        for object_id, mask in masks.items():
            outputs = state["output_dict_per_obj"][state["obj_id_to_idx"][object_id]]
            out = outputs["non_cond_frame_outputs"].get(frame_idx)
            if out is None or "predicted_iou" not in out:
                continue
            ratings[object_id] = sam2_quality(float(out["predicted_iou"].reshape(-1)[0]),
                                              float(out["object_score_logits"].reshape(-1)[0]), bool(mask.any()))
        return ratings

    # -- removal ----------------------------------------------------------------------------

    def _remove_object(self, object_id: int) -> None:
        self._call("remove object", self.predictor.remove_object, self._live_state(), object_id, need_output=False)

    def _clear_prompts(self, frame_index: int, object_id: int) -> None:
        """No-op for an object without prompts on that frame; an object left with no prompt anywhere
        is removed (the predictor refuses to propagate an object that has no conditioning frame)."""
        if frame_index not in self._prompted_frames(object_id):
            return
        state = self._live_state()
        self._call(
            "clear prompts",
            self.predictor.clear_all_prompts_in_frame,
            state,
            frame_index,
            object_id,
            need_output=False,
        )
        if not self._prompted_frames(object_id):
            self._call("remove object", self.predictor.remove_object, state, object_id, need_output=False)

    def reset(self) -> None:
        self._call("reset", self.predictor.reset_state, self._live_state())

    def close(self) -> None:
        """Drop the inference state and cached frames; the predictor stays warm for other sessions."""
        self.state = None
        self.images.clear()

    # -- helpers ----------------------------------------------------------------------------

    def _live_state(self) -> dict[str, Any]:
        if self.state is None:
            raise SegmentationError("this SAM 2 session is closed")
        return self.state

    def _prompted_frames(self, object_id: int) -> set[int]:
        state = self._live_state()
        idx = state["obj_id_to_idx"].get(object_id)
        if idx is None:
            return set()
        return set(state["point_inputs_per_obj"][idx]) | set(state["mask_inputs_per_obj"][idx])

    def _model_context(self) -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        if self._autocast:
            stack.enter_context(torch.autocast("cuda", dtype=torch.bfloat16))
        return stack

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._model_context():
            try:
                return fn(*args, **kwargs)
            except torch.OutOfMemoryError:
                raise  # a resource problem, not a bad request: callers handle it differently
            except (RuntimeError, ValueError, AssertionError) as exc:
                raise SegmentationError(f"SAM 2 could not {what}: {exc}") from exc

    def _object_mask(self, obj_ids: list[int], masks: torch.Tensor, object_id: int) -> np.ndarray:
        """(O, 1, H, W) logits of every object on the frame -> (H, W) bool for ``object_id``."""
        return (masks[obj_ids.index(object_id), 0] > 0).cpu().numpy()


class Sam2Segmenter(Segmenter):
    """SAM 2 built once (kept warm) and shared by every session it opens."""

    def __init__(
        self,
        config: str = "sam2.1_hiera_t",
        checkpoint: str | Path | None = None,
        image_size: int | None = None,
        device: str | torch.device | None = None,
        offload_video_to_cpu: bool = False,
        offload_state_to_cpu: bool = False,
        frame_cache_size: int = DEFAULT_FRAME_CACHE_SIZE,
        prefetch_frames: bool = True,
    ):
        self.config_name = resolve_config(config)
        self.device = select_device(device)
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.offload_video_to_cpu = offload_video_to_cpu
        self.offload_state_to_cpu = offload_state_to_cpu
        self.frame_cache_size = frame_cache_size
        self.prefetch_frames = prefetch_frames
        self.predictor = build_model(
            self.config_name,
            checkpoint=self.checkpoint,
            image_size=image_size,
            device=self.device,
            extra_overrides=PREDICTOR_OVERRIDES,
        )
        record_predicted_iou(self.predictor)
        self.image_size = int(self.predictor.image_size)
        self.name = describe(self.config_name, self.image_size, self.checkpoint)

    def open_session(self, frames: FrameSource) -> Sam2Session:
        return Sam2Session(
            self.predictor,
            frames,
            offload_video_to_cpu=self.offload_video_to_cpu,
            offload_state_to_cpu=self.offload_state_to_cpu,
            frame_cache_size=self.frame_cache_size,
            prefetch_frames=self.prefetch_frames,
        )
