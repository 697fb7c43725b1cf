"""A track's two sides: the model computes frames while one thread commits the ones before.

``TrackWriter`` takes the propagated frames in batches and stores each on a thread of its own, in
order, so the database no longer stalls the segmenter; ``TrackSummary`` counts, per tracked
object, what the model found on the frames visited, for the track's final answer.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from django.db import connections

from segmentation.segmenter import FrameQuality

#: One propagated frame on its way to the database: native frame, RLE by object id, quality by object id.
TrackedFrame = tuple[int, dict[int, dict], dict[int, FrameQuality]]


class TrackSummary:
    """Per tracked object, what the model found on the frames a track visited: on how many it has a
    mask, and the first frame (in the order visited) where it found nothing, i.e. where the object
    was lost. ``track_done`` carries it so the page can say "mask on 1 of 58 frames, lost at 4"
    rather than counting stored (possibly empty) masks."""

    def __init__(self, object_ids: list[int]):
        self._ids = list(object_ids)
        self._frames = 0
        self._with_mask = dict.fromkeys(self._ids, 0)
        self._lost_at: dict[int, int | None] = dict.fromkeys(self._ids)

    def add(self, frame: int, masks: dict[int, Any]) -> None:
        self._frames += 1
        for object_id in self._ids:
            mask = masks.get(object_id)
            if mask is not None and mask.any():
                self._with_mask[object_id] += 1
            elif self._lost_at[object_id] is None:
                self._lost_at[object_id] = frame

    def objects(self) -> list[dict[str, int | None]]:
        return [{"object_id": object_id, "frames": self._frames, "with_mask": self._with_mask[object_id],
                 "lost_at": self._lost_at[object_id]} for object_id in self._ids]


class TrackWriter:
    """Commits propagation batches on one thread of its own, in order, while the model computes
    the next frames (the database no longer stalls the segmenter); ``store`` sends each batch's
    ``track_progress`` after its commit. At most ``MAX_PENDING`` batches wait, so a slow database
    slows the model down instead of filling memory; a failed commit stops the track."""

    MAX_PENDING = 4

    def __init__(self, store: Callable[[list[TrackedFrame], float], None]):
        self._store = store
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="masklet-track-writer")
        self._pending: deque[Future] = deque()

    def _collect(self, keep: int) -> None:
        """Wait until at most ``keep`` batches are pending; raises the first failed commit."""
        while self._pending and (len(self._pending) > keep or self._pending[0].done()):
            self._pending.popleft().result()

    def idle(self) -> bool:
        """No batch is committing now."""
        return all(future.done() for future in self._pending)

    def submit(self, frames: list[TrackedFrame], model_ms: float) -> None:
        self._collect(self.MAX_PENDING - 1)
        self._pending.append(self._executor.submit(self._store, frames, model_ms))

    def finish(self) -> None:
        try:
            self._collect(0)
        finally:
            for future in self._pending:  # after a failure: let the rest finish, then stop
                future.exception()
            self._executor.submit(connections.close_all).result()  # the writer thread's connection
            self._executor.shutdown(wait=True)
