"""Training clips and how they become Meta's ``BatchedVideoDatapoint``.

A ``Clip`` is what the data engine hands to fine-tuning: the frames of one annotated video
(or a stretch of one) and every object's mask on every frame. ``sample_window`` picks a
training window the way Meta's ``RandomUniformSampler`` does (consecutive frames, objects
visible on the window's first frame, at most ``max_objects`` of them), and ``to_batch``
turns it into the tensors ``SAM2Train`` consumes, via Meta's own ``collate_fn`` so the
layout (T x B x C x S x S images, T x O x S x S masks) is exactly the one its code expects.

Frames are resized and normalised the way inference reads them
(``sam2.utils.misc._load_img_as_tensor`` + ``load_video_frames``: PIL resize to S x S,
/255, ImageNet mean/std), so the model is trained on the same input distribution it will
see in the predictor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from PIL import Image
from training.utils.data_utils import BatchedVideoDatapoint, Frame, Object, VideoDatapoint, collate_fn

IMG_MEAN = (0.485, 0.456, 0.406)
IMG_STD = (0.229, 0.224, 0.225)

#: ``dict_key`` of every batch; the loss is looked up under it in Meta's trainer, we keep the name.
BATCH_KEY = "all"


@dataclass
class Clip:
    """One annotated video clip.

    ``frames``: T arrays of shape (H, W, 3), uint8 RGB, all the same size.
    ``masks``: object id -> T boolean arrays of shape (H, W), one per frame; an object that
    is absent on a frame has an all-False mask there (the loss then skips its mask terms
    and only trains the object score to say "not present").
    """

    frames: list[np.ndarray]
    masks: dict[int, list[np.ndarray]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.frames:
            raise ValueError("a clip needs at least one frame")
        height, width = self.frames[0].shape[:2]
        for index, frame in enumerate(self.frames):
            if frame.dtype != np.uint8 or frame.shape != (height, width, 3):
                raise ValueError(
                    f"frame {index}: expected ({height}, {width}, 3) uint8 RGB, got {frame.shape} {frame.dtype}"
                )
        if not self.masks:
            raise ValueError("a clip needs at least one object")
        for object_id, object_masks in self.masks.items():
            if len(object_masks) != len(self.frames):
                raise ValueError(f"object {object_id}: {len(object_masks)} masks for {len(self.frames)} frames")
            for index, mask in enumerate(object_masks):
                if mask.shape != (height, width):
                    raise ValueError(f"object {object_id}, frame {index}: mask shape {mask.shape} != {(height, width)}")

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the original frames."""
        return int(self.frames[0].shape[0]), int(self.frames[0].shape[1])

    def visible_objects(self, frame_index: int) -> list[int]:
        """Ids of the objects with a non-empty mask on ``frame_index``, in id order."""
        return sorted(oid for oid, masks in self.masks.items() if masks[frame_index].any())


@dataclass(frozen=True)
class Window:
    """The part of a clip one training step sees: ``frame_indices`` (consecutive) and ``object_ids``."""

    frame_indices: tuple[int, ...]
    object_ids: tuple[int, ...]


def sample_window(clip: Clip, num_frames: int, max_objects: int, rng: np.random.Generator) -> Window:
    """Pick ``num_frames`` consecutive frames and up to ``max_objects`` objects visible on the first.

    Like Meta's ``RandomUniformSampler``: the first frame of the window is the one that gets
    the initial prompt, so only objects present there can be prompted and trained on.
    A clip shorter than ``num_frames`` is used whole.
    """
    length = min(num_frames, clip.num_frames)
    starts = [s for s in range(clip.num_frames - length + 1) if clip.visible_objects(s)]
    if not starts:
        raise ValueError("no object is visible on any frame of the clip: nothing to train on")
    start = int(rng.choice(starts))
    visible = clip.visible_objects(start)
    if len(visible) > max_objects:
        visible = sorted(rng.choice(visible, size=max_objects, replace=False).tolist())
    return Window(tuple(range(start, start + length)), tuple(int(o) for o in visible))


def frame_to_tensor(frame: np.ndarray, image_size: int) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, S, S) float32, normalised exactly as the video predictor does."""
    resized = np.asarray(Image.fromarray(frame).resize((image_size, image_size)))
    image = torch.from_numpy(resized / 255.0).permute(2, 0, 1).float()
    mean = torch.tensor(IMG_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(IMG_STD, dtype=torch.float32)[:, None, None]
    return (image - mean) / std


def mask_to_tensor(mask: np.ndarray, image_size: int) -> torch.Tensor:
    """(H, W) bool -> (S, S) bool, nearest-neighbour so labels stay crisp."""
    resized = cv2.resize(mask.astype(np.uint8), (image_size, image_size), interpolation=cv2.INTER_NEAREST)
    return torch.from_numpy(resized > 0)


def to_datapoint(clip: Clip, window: Window, image_size: int, video_id: int = 0) -> VideoDatapoint:
    """One window of a clip as Meta's ``VideoDatapoint`` (frames and objects at S x S)."""
    frames = []
    for frame_index in window.frame_indices:
        objects = [
            Object(
                object_id=oid, frame_index=frame_index, segment=mask_to_tensor(clip.masks[oid][frame_index], image_size)
            )
            for oid in window.object_ids
        ]
        frames.append(Frame(data=frame_to_tensor(clip.frames[frame_index], image_size), objects=objects))
    return VideoDatapoint(frames=frames, video_id=video_id, size=clip.size)


def to_batch(
    clips: Sequence[Clip], windows: Sequence[Window], image_size: int, device: torch.device | str = "cpu"
) -> BatchedVideoDatapoint:
    """Windows of clips -> one ``BatchedVideoDatapoint`` on ``device`` (B = len(clips)).

    Shapes: ``img_batch`` [T, B, 3, S, S], ``masks`` [T, O, S, S], ``obj_to_frame_idx`` [T, O, 2]
    where O is the total object count over the batch. All windows must have the same length.
    """
    datapoints = [
        to_datapoint(c, w, image_size, video_id=i) for i, (c, w) in enumerate(zip(clips, windows, strict=True))
    ]
    return collate_fn(datapoints, dict_key=BATCH_KEY).to(device)
