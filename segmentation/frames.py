"""Frame sources: the frames a segmentation session runs on, read lazily.

A session indexes frames 0..N-1 in the order of the source. For an ingested video these are
the frames at the annotation stride (JPEG files written by ingest); mapping session indices to
native video frame numbers is the caller's business.

Sources never hold the whole video in memory: ``JpegFolderFrames`` decodes on demand and keeps
a small LRU cache, so memory stays bounded whatever the video length.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np


@runtime_checkable
class FrameSource(Protocol):
    """Random access to a video's frames as RGB uint8 arrays of shape (H, W, 3)."""

    height: int
    width: int

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> np.ndarray: ...


class ArrayFrames:
    """Frames already in memory (tests, synthetic clips): a sequence of (H, W, 3) uint8 RGB."""

    def __init__(self, frames: Sequence[np.ndarray] | np.ndarray):
        if len(frames) == 0:
            raise ValueError("ArrayFrames needs at least one frame")
        first = np.asarray(frames[0])
        if first.ndim != 3 or first.shape[2] != 3 or first.dtype != np.uint8:
            raise ValueError(f"frames must be (H, W, 3) uint8 RGB, got {first.shape} {first.dtype}")
        self._frames = frames
        self.height, self.width = int(first.shape[0]), int(first.shape[1])

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, index: int) -> np.ndarray:
        return np.asarray(self._frames[_check_index(index, len(self))])


class JpegFolderFrames:
    """The ``*.jpg`` files of one folder, in name order, decoded on demand.

    ``cache_size`` bounds how many decoded frames are kept (least recently used first out).
    """

    def __init__(self, folder: str | Path, cache_size: int = 16):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"frame folder {self.folder} does not exist")
        self.paths = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
        if not self.paths:
            raise ValueError(f"frame folder {self.folder} holds no .jpg files")
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_size = max(1, cache_size)
        first = self[0]
        self.height, self.width = int(first.shape[0]), int(first.shape[1])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        index = _check_index(index, len(self))
        frame = self._cache.get(index)
        if frame is not None:
            self._cache.move_to_end(index)
            return frame
        bgr = cv2.imread(str(self.paths[index]), cv2.IMREAD_COLOR)
        if bgr is None:
            raise OSError(f"cannot decode frame {self.paths[index]}")
        frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        self._cache[index] = frame
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return frame


def _check_index(index: int, length: int) -> int:
    if not 0 <= index < length:
        raise IndexError(f"frame index {index} out of range 0..{length - 1}")
    return int(index)
