"""Evaluating model versions the way the paper does: the simulated annotator on held-out videos.

Every number the data engine compares versions by comes from here: J&F after 1..N prompted
frames (offline protocol, ``clicks`` clicks per prompted frame), clicks per masklet to reach
J&F >= 0.9 on every annotated frame, and the paper's estimated annotation seconds. The
training task, the periodic job, ``loop_demo`` and the dashboard all read ``summarize``'s keys,
so one place decides what "better" means (``beats``).

The held-out data is the project's ``val`` split: ready videos and their approved masklets,
read from the database into ``segmentation.datasets.VideoRecord`` objects so that
``segmentation.evaluate.run_evaluation`` runs on them unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings

from annotator.models import MaskFrame, Masklet, Project, Split, Video
from engine.storage import VideoFrames
from segmentation.datasets import VideoRecord
from segmentation.evaluate import run_evaluation
from segmentation.frames import FrameSource
from segmentation.masks import decode_rle
from segmentation.segmenter import Segmenter

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalSettings:
    """How a version is measured. ``max_frames`` prompted frames (offline protocol) of ``clicks``
    clicks each; ``target`` J&F reached with at most ``click_budget`` clicks; ``max_video_frames``
    session frames per val video (0: all) bounds the cost on long videos."""

    clicks: int = 3
    max_frames: int = 3
    target: float = 0.9
    click_budget: int = 20
    max_video_frames: int = 0

    @classmethod
    def from_settings(cls) -> EvalSettings:
        return cls(clicks=settings.LOOP_EVAL_CLICKS, max_frames=settings.LOOP_EVAL_PROMPTED_FRAMES,
                   click_budget=settings.LOOP_EVAL_CLICK_BUDGET, max_video_frames=settings.LOOP_EVAL_MAX_FRAMES)


def evaluate_segmenter(segmenter: Segmenter, records: list[VideoRecord], config: EvalSettings,
                       on_object: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run the simulated annotator on ``records`` and return ``summarize``'s dict.

    ``on_object(done, total)`` is called after each measured object (objects of all records):
    a training run reports progress there and stops there when it is cancelled, by raising.
    """
    if config.max_video_frames:
        records = [r.truncated(min(config.max_video_frames, r.num_frames)) for r in records]
    total = sum(len(r.object_ids) for r in records)
    done = 0

    def measured(entry: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        if on_object is not None:
            on_object(done, total)

    results = run_evaluation(segmenter, records, protocol="offline", clicks=config.clicks,
                             max_frames=config.max_frames, progress=False, target=config.target,
                             target_clicks=config.click_budget, on_object=measured)
    return summarize(results, config)


def summarize(results: dict[str, Any], config: EvalSettings) -> dict[str, Any]:
    """The numbers versions are compared by, from ``run_evaluation``'s output (JSON-ready)."""
    summary = results["summary"]
    return {
        "num_objects": summary["num_objects"],
        "j": summary.get("j"),
        "f": summary.get("f"),
        "jf": summary.get("jf"),
        "jf_after": summary.get("jf_after", []),
        "j_after": summary.get("j_after", []),
        "f_after": summary.get("f_after", []),
        "clicks_to_target": summary.get("clicks_to_target"),
        "target_reached": summary.get("target_reached"),
        "target_seconds": summary.get("target_seconds"),
        "annotation_seconds": summary.get("annotation_seconds"),
        "clicks_per_frame": config.clicks,
        "click_budget": config.click_budget,
        "target": config.target,
        "seconds": results.get("seconds"),
    }


def beats(candidate: dict[str, Any], production: dict[str, Any] | None, margin: float) -> tuple[bool, str]:
    """Whether a candidate should replace production: J&F higher by ``margin`` and no more clicks to target.

    Without a production evaluation there is nothing to beat: promotion is then left to an
    admin (a random-weight start may be worse than the classical backend that serves).
    """
    if not production:
        return False, "no production version to compare with"
    cand_jf, prod_jf = candidate.get("jf"), production.get("jf")
    if cand_jf is None or prod_jf is None:
        return False, "missing J&F"
    cand_clicks = candidate.get("clicks_to_target")
    prod_clicks = production.get("clicks_to_target")
    if cand_jf < prod_jf + margin:
        return False, f"J&F {cand_jf:.3f} is not {margin:.3f} above production's {prod_jf:.3f}"
    if cand_clicks is not None and prod_clicks is not None and cand_clicks > prod_clicks:
        return False, f"needs more clicks to target ({cand_clicks:.1f} > {prod_clicks:.1f})"
    return True, f"J&F {cand_jf:.3f} vs {prod_jf:.3f} (margin {margin:.3f})"


# -- the val split from the database --------------------------------------------------------


class MaskletRecord(VideoRecord):
    """A ready video of the project with its approved masklets as ground truth (frames from ingest)."""

    def __init__(self, name: str, frames: VideoFrames, frame_indices: list[int], size: tuple[int, int],
                 masks: dict[int, dict[int, str]]):
        super().__init__(name, frames.folder, [f"{index:05d}" for index in frame_indices])
        self._stored = frames
        self._native = list(frame_indices)
        self._size = size
        self._masks = masks  # object id -> {native frame: rle counts}

    def open_frames(self) -> FrameSource:
        """The stored frames: in place on disk, else through the cache (a worker with no copy of the storage)."""
        return self._stored.source()

    @property
    def object_ids(self) -> list[int]:
        return sorted(self._masks)

    def gt_masks(self, object_id: int) -> dict[int, np.ndarray]:
        height, width = self._size
        stored = self._masks[object_id]
        empty = np.zeros((height, width), dtype=bool)
        return {
            index: decode_rle({"size": [height, width], "counts": stored[native]}).astype(bool)
            if native in stored else empty
            for index, native in enumerate(self._native[: self.num_frames])
        }


def val_records(project: Project) -> tuple[list[VideoRecord], str]:
    """The project's val videos with approved masklets, and a key naming exactly those masks.

    Two evaluations with the same key ran on the same ground truth, so a production version's
    earlier evaluation can be reused instead of run again.
    """
    videos = Video.objects.filter(project=project, split=Split.VAL, status=Video.Status.READY).order_by("id")
    records: list[VideoRecord] = []
    key_parts: list[Any] = []
    for video in videos:
        masklets = {m.pk: m.object_id for m in Masklet.objects.filter(video=video, status=Masklet.Status.APPROVED)}
        if not masklets:
            continue
        masks: dict[int, dict[int, str]] = {oid: {} for oid in masklets.values()}
        for masklet_id, frame_index, counts, revision in MaskFrame.objects.filter(
                masklet_id__in=list(masklets)).values_list("masklet_id", "frame_index", "rle_counts", "revision"):
            masks[masklets[masklet_id]][frame_index] = counts
            key_parts.append((masklet_id, frame_index, revision))
        records.append(MaskletRecord(video.name, video.frames, video.annotated_frame_indices(),
                                     (video.height, video.width), masks))
    key = hashlib.sha1(json.dumps(sorted(key_parts)).encode()).hexdigest()[:16]
    return records, key
