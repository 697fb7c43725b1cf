"""The one interface every backend implements and everything above calls.

A ``Segmenter`` is built once per model version and kept warm (weights loaded). It opens a
``SegmenterSession`` on one video's frames. A session holds the per-video state (prompts,
memory of past frames) and answers:

- ``add_points`` / ``add_box`` / ``add_mask`` on any frame for any object -> that frame's
  mask for the object, at once;
- ``propagate`` forward, backward or both from a frame -> a generator yielding each frame's
  masks as they are computed; closing the generator or setting ``cancel`` stops it;
- ``remove_object``, ``clear_prompts``, ``reset``;
- ``replay`` of stored prompts (accepted masks are replayed as ``MaskPrompt``): the path that
  rebuilds a session lost with its worker.

Object ids are the caller's integers. Frame indices are session indices 0..N-1 into the
frame source. Masks are boolean arrays of shape (H, W) at the frame source's resolution.

Backends subclass ``SegmenterSession`` and implement the ``_``-prefixed hooks; input checks
live here, once, so every backend rejects bad prompts with the same clear messages.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from segmentation.frames import FrameSource


class SegmentationError(ValueError):
    """A prompt or request the session cannot serve; the message says what was wrong."""


class Direction(StrEnum):
    FORWARD = "forward"
    BACKWARD = "backward"
    BOTH = "both"


@dataclass(frozen=True)
class Points:
    """Clicks in frame pixel coordinates: ``coords`` are (x, y); ``labels`` 1 = positive, 0 = negative."""

    coords: tuple[tuple[float, float], ...]
    labels: tuple[int, ...]


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in frame pixel coordinates (x0, y0) top-left, (x1, y1) bottom-right."""

    x0: float
    y0: float
    x1: float
    y1: float


@dataclass(frozen=True, eq=False)
class MaskPrompt:
    """A mask drawn or accepted by a person (brush/eraser, or a stored mask on rebuild)."""

    mask: np.ndarray


Prompt = Points | Box | MaskPrompt


@dataclass(frozen=True)
class PromptRecord:
    """One stored interaction, replayed in order to rebuild a session."""

    frame_index: int
    object_id: int
    prompt: Prompt


@dataclass(frozen=True)
class FrameQuality:
    """How likely a propagated mask is right: ``score`` in [0, 1] (higher = more likely right) and
    the named signals it was computed from (``features``), which the learned verifier trains on."""

    score: float
    features: dict[str, float] = field(default_factory=dict)


@dataclass
class FrameResult:
    """The masks of every tracked object on one frame, as propagation yields them.

    ``scores`` is each object's presence score in [0, 1] where the backend gives one: 0 with an
    empty mask says the backend lost the object (it left, or tracking failed) rather than that
    it segmented nothing by mistake; an object without a score is not scored.
    ``quality`` is each object's mask quality (``FrameQuality``) where the backend rates it.
    """

    frame_index: int
    masks: dict[int, np.ndarray] = field(default_factory=dict)
    scores: dict[int, float] = field(default_factory=dict)
    quality: dict[int, FrameQuality] = field(default_factory=dict)


class SegmenterSession(ABC):
    """Per-video interactive state. Not thread-safe: one caller at a time."""

    def __init__(self, frames: FrameSource):
        self.frames = frames
        self.num_frames = len(frames)
        self.height = frames.height
        self.width = frames.width

    # -- public API (checks input, then calls the backend hook) -------------------------

    def add_points(
        self, frame_index: int, object_id: int, coords: Sequence[Sequence[float]], labels: Sequence[int]
    ) -> np.ndarray:
        """Add clicks for an object on a frame (kept with that frame's earlier clicks)."""
        self._check_frame(frame_index)
        points = self._check_points(coords, labels)
        return self._add_points(frame_index, int(object_id), points)

    def add_box(self, frame_index: int, object_id: int, box: Sequence[float]) -> np.ndarray:
        """Prompt an object with a box; replaces that object's earlier prompts on the frame."""
        self._check_frame(frame_index)
        return self._add_box(frame_index, int(object_id), self._check_box(box))

    def add_mask(self, frame_index: int, object_id: int, mask: np.ndarray) -> np.ndarray:
        """Set an object's mask on a frame (brush edit); replaces its prompts on that frame."""
        self._check_frame(frame_index)
        return self._add_mask(frame_index, int(object_id), self._check_mask(mask))

    def apply(self, record: PromptRecord) -> np.ndarray:
        """Apply one stored prompt; the shared dispatch used by ``replay``."""
        prompt = record.prompt
        if isinstance(prompt, Points):
            return self.add_points(record.frame_index, record.object_id, prompt.coords, prompt.labels)
        if isinstance(prompt, Box):
            return self.add_box(record.frame_index, record.object_id, (prompt.x0, prompt.y0, prompt.x1, prompt.y1))
        if isinstance(prompt, MaskPrompt):
            return self.add_mask(record.frame_index, record.object_id, prompt.mask)
        raise SegmentationError(f"unknown prompt type {type(prompt).__name__}")

    def replay(self, records: Iterable[PromptRecord]) -> None:
        """Rebuild state from stored prompts, in the order they were made."""
        for record in records:
            self.apply(record)

    def propagate(
        self,
        start_frame: int | None = None,
        direction: Direction | str = Direction.FORWARD,
        max_frames: int | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[FrameResult]:
        """Track every prompted object from ``start_frame`` (default: the earliest prompted frame).

        Yields one ``FrameResult`` per frame as soon as it is computed, the start frame once
        even for ``both`` (forward pass first, then backward). ``max_frames`` bounds how many
        frames each pass visits. Stops early when ``cancel`` is set or the generator is closed.
        """
        direction = Direction(direction)
        if not self.object_ids:
            raise SegmentationError("nothing to propagate: add a prompt for at least one object first")
        if start_frame is None:
            start_frame = self.first_prompted_frame()
        self._check_frame(start_frame)
        passes = {
            Direction.FORWARD: [False],
            Direction.BACKWARD: [True],
            Direction.BOTH: [False, True],
        }[direction]
        seen: set[int] = set()
        for reverse in passes:
            for result in self._propagate(start_frame, reverse, max_frames):
                if cancel is not None and cancel.is_set():
                    return
                if result.frame_index in seen:
                    continue
                seen.add(result.frame_index)
                yield result

    def remove_object(self, object_id: int) -> None:
        if object_id not in self.object_ids:
            raise SegmentationError(f"object {object_id} is not in this session")
        self._remove_object(int(object_id))

    def clear_prompts(self, frame_index: int, object_id: int) -> None:
        """Forget an object's prompts on one frame (its other frames keep theirs)."""
        self._check_frame(frame_index)
        self._clear_prompts(frame_index, int(object_id))

    @contextmanager
    def reusing_work(self) -> Iterator[None]:
        """Inside, many prompts on one frame may share work kept between them (the auto-masklet
        generator's grid clicks); the default keeps nothing, the classical session its cut graphs."""
        yield

    def close(self) -> None:  # noqa: B027  (optional hook: most sessions hold nothing extra)
        """Release memory held by the session; the default keeps nothing to release."""

    def __enter__(self) -> SegmenterSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- backend hooks --------------------------------------------------------------------

    @property
    @abstractmethod
    def object_ids(self) -> list[int]:
        """Ids of the objects that have at least one prompt, in insertion order."""

    @abstractmethod
    def first_prompted_frame(self) -> int:
        """The earliest frame holding a prompt (for any object)."""

    @abstractmethod
    def _add_points(self, frame_index: int, object_id: int, points: Points) -> np.ndarray: ...

    @abstractmethod
    def _add_box(self, frame_index: int, object_id: int, box: Box) -> np.ndarray: ...

    @abstractmethod
    def _add_mask(self, frame_index: int, object_id: int, mask: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _propagate(self, start_frame: int, reverse: bool, max_frames: int | None) -> Iterator[FrameResult]: ...

    @abstractmethod
    def _remove_object(self, object_id: int) -> None: ...

    @abstractmethod
    def _clear_prompts(self, frame_index: int, object_id: int) -> None: ...

    @abstractmethod
    def reset(self) -> None:
        """Drop every prompt and tracked object; the frames stay open."""

    # -- input checks -------------------------------------------------------------------

    def _check_frame(self, frame_index: int) -> None:
        if not isinstance(frame_index, (int, np.integer)) or not 0 <= frame_index < self.num_frames:
            raise SegmentationError(f"frame index {frame_index!r} is outside 0..{self.num_frames - 1}")

    def _check_points(self, coords: Sequence[Sequence[float]], labels: Sequence[int]) -> Points:
        if len(coords) == 0:
            raise SegmentationError("at least one point is needed")
        if len(coords) != len(labels):
            raise SegmentationError(f"{len(coords)} points but {len(labels)} labels")
        checked = []
        for x, y in coords:
            if not (0 <= x < self.width and 0 <= y < self.height):
                raise SegmentationError(f"point ({x}, {y}) is outside the {self.width}x{self.height} frame")
            checked.append((float(x), float(y)))
        if any(label not in (0, 1) for label in labels):
            raise SegmentationError(f"point labels must be 1 (positive) or 0 (negative), got {list(labels)}")
        return Points(tuple(checked), tuple(int(label) for label in labels))

    def _check_box(self, box: Sequence[float]) -> Box:
        if len(box) != 4:
            raise SegmentationError(f"a box is (x0, y0, x1, y1), got {len(box)} numbers")
        x0, y0, x1, y1 = (float(v) for v in box)
        x0, x1 = max(0.0, min(x0, x1)), min(float(self.width), max(x0, x1))
        y0, y1 = max(0.0, min(y0, y1)), min(float(self.height), max(y0, y1))
        if x1 - x0 < 1 or y1 - y0 < 1:
            raise SegmentationError(f"box {tuple(box)} is empty inside the {self.width}x{self.height} frame")
        return Box(x0, y0, x1, y1)

    def _check_mask(self, mask: np.ndarray) -> np.ndarray:
        mask = np.asarray(mask)
        if mask.shape != (self.height, self.width):
            raise SegmentationError(
                f"mask of shape {mask.shape} does not match the frame size {(self.height, self.width)}"
            )
        return mask.astype(bool)


class Segmenter(ABC):
    """A model kept warm; opens sessions on videos."""

    #: What serves, in words the UI shows (e.g. ``"SAM 2.1 hiera-tiny @256"`` or ``"classical (OpenCV)"``).
    name: str

    @abstractmethod
    def open_session(self, frames: FrameSource) -> SegmenterSession: ...
