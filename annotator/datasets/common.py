"""What every dataset format reads from the database, once per video, and the errors formats raise.

Exports stream: ``iter_videos`` yields one ``VideoData`` at a time (the video's fields, its
selected masklets and their current masks as plain tuples read with ``values_list().iterator()``);
a writer writes it and drops it, so memory is bounded by the largest video, never the dataset.
RLE counts are the stored strings: nothing here decodes a mask, and area and bbox are the
stored ones.

Which masklets an export holds: those of ready videos matching ``ExportFilters`` (approved
only by default) that are visible on at least one annotated frame. A masklet with no visible
mask is not an object of the dataset (SA-V has no size, bucket or first appearance for it).
"""

from __future__ import annotations

import fcntl
import json
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from django.db.models import Count

from annotator.models import (
    MaskFrame,
    MaskFrameRevision,
    Masklet,
    MaskletOrigin,
    MaskletType,
    MaskSource,
    Project,
    Split,
    Video,
)
from engine import storage
from engine.safe_paths import NAME_RULE, is_safe_name
from engine.storage import VideoFrames
from segmentation.masks import empty_rle

#: Bytes per read when a copy cannot be a reflink.
COPY_BUFFER = 1024 * 1024
#: (videos done, videos in all) after each video.
Progress = Callable[[int, int], None]

MASKLET_STATUSES = tuple(Masklet.Status.values)


class DatasetError(ValueError):
    """A dataset file (or export request) is wrong; the message names the file and the field."""

    def __init__(self, file: str | Path, field: str, problem: str):
        self.file, self.field, self.problem = str(file), field, problem
        where = f"{self.file}: {field}" if field else self.file
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class ExportFilters:
    """Which masklets an export holds. ``statuses`` empty means every status."""

    statuses: tuple[str, ...] = (Masklet.Status.APPROVED,)
    split: str | None = None
    type: str | None = None
    videos: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.statuses) - set(MASKLET_STATUSES)
        if unknown:
            raise ValueError(f"unknown status {', '.join(sorted(unknown))}: choose from {', '.join(MASKLET_STATUSES)}")
        if self.type not in (None, *MaskletType.values):
            raise ValueError(f"unknown masklet type {self.type!r}: choose manual or auto")
        if self.split not in (None, *Split.values):
            raise ValueError(f"unknown split {self.split!r}: choose {', '.join(Split.values)}")

    def to_json(self) -> dict:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict) -> ExportFilters:
        return cls(statuses=tuple(data.get("statuses", (Masklet.Status.APPROVED,))), split=data.get("split"),
                   type=data.get("type"), videos=tuple(data.get("videos", ())))


class Mask(NamedTuple):
    """One stored mask: the RLE ``counts`` string as stored, its area, source, the model's quality score
    (None for people's masks) and (when asked) bbox."""

    counts: str
    area: int
    source: str
    quality: float | None
    bbox: list | None = None


@dataclass
class MaskletData:
    pk: int
    object_id: int
    label: str
    type: str
    masks: dict[int, Mask] = field(default_factory=dict)  # native frame index -> mask
    edited_frames: int = 0  # frames with a human revision here
    origin_edited_frames: int = 0  # edited before an import (SA-V), see MaskletOrigin
    stability_scores: list | None = None  # per annotated frame, as imported (SA-V auto)
    stability_score: float | None = None  # the masklet's own (auto masklets this engine generated)

    def visible(self, frame_index: int) -> Mask | None:
        """The mask on ``frame_index`` when the object is visible there (area > 0), else None."""
        mask = self.masks.get(frame_index)
        return mask if mask is not None and mask.area > 0 else None


@dataclass
class VideoData:
    pk: int
    name: str
    width: int
    height: int
    fps: float
    frame_count: int
    stride: int
    split: str
    environment: str
    original: str  # storage name of the original video file ("" when none)
    frames: VideoFrames
    masklets: list[MaskletData]

    @property
    def frame_indices(self) -> list[int]:
        """Native indices of the annotated frames: 0, stride, 2*stride, ..."""
        return list(range(0, self.frame_count, self.stride))

    @property
    def size(self) -> list[int]:
        """The RLE ``size`` of this video's masks: [height, width]."""
        return [self.height, self.width]

    def empty(self) -> dict:
        """The EMPTY RLE of this video's size (computed once per size)."""
        return {"size": self.size, "counts": empty_counts(self.height, self.width)}


@dataclass
class ExportStats:
    videos: int = 0
    masklets: int = 0
    masks: int = 0  # visible mask frames written
    files: int = 0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{self.videos} video(s), {self.masklets} masklet(s), {self.masks} mask(s), {self.files} file(s)"
        return "; ".join([text, *self.notes])


@lru_cache(maxsize=64)
def empty_counts(height: int, width: int) -> str:
    """The counts string of an all-background mask of this size (SA-V's EMPTY RLE)."""
    return empty_rle(height, width)["counts"]


def select_video_ids(project: Project, filters: ExportFilters) -> list[int]:
    """Ready videos of ``project`` with at least one masklet passing ``filters``, by name."""
    videos = Video.objects.filter(project=project, status=Video.Status.READY)
    if filters.videos:
        check_video_names(project, filters.videos)
        videos = videos.filter(name__in=filters.videos)
    if filters.split:
        videos = videos.filter(split=filters.split)
    masklets = _masklet_filter(filters, prefix="masklets__")
    return list(videos.filter(**masklets).distinct().order_by("name").values_list("id", flat=True))


def check_video_names(project: Project, names: Iterable[str]) -> None:
    """Every name must be a ready video of ``project`` (a typo must not silently export less)."""
    names = list(names)
    known = set(Video.objects.filter(project=project, status=Video.Status.READY, name__in=names)
                .values_list("name", flat=True))
    missing = [name for name in names if name not in known]
    if missing:
        raise DatasetError("--videos", "", f"no ready video named {', '.join(missing)} in project {project.slug}")


def _masklet_filter(filters: ExportFilters, prefix: str = "") -> dict:
    conditions: dict = {}
    if filters.statuses:
        conditions[f"{prefix}status__in"] = list(filters.statuses)
    if filters.type:
        conditions[f"{prefix}type"] = filters.type
    return conditions


def iter_videos(video_ids: Iterable[int], filters: ExportFilters, *, with_bbox: bool = False,
                progress: Progress | None = None) -> Iterator[VideoData]:
    """Yield each video's data in turn (four queries a video); ``progress`` is called after each."""
    video_ids = list(video_ids)
    for done, video_id in enumerate(video_ids, start=1):
        data = read_video(video_id, filters, with_bbox=with_bbox)
        if data.masklets:
            yield data
        if progress is not None:
            progress(done, len(video_ids))


def read_video(video_id: int, filters: ExportFilters, *, with_bbox: bool = False) -> VideoData:
    """One video's fields, selected masklets and current masks, straight from ``values_list``."""
    video = Video.objects.get(pk=video_id)
    if not is_safe_name(video.name) or video.split not in Split.values:
        # stored before names were checked (migration 0008 renames them): never a path from it
        raise DatasetError(f"video {video.pk}", "name", f"{video.name!r} (split {video.split!r}) cannot be a file "
                           f"name: rename the video ({NAME_RULE})")
    masklets = {
        pk: MaskletData(pk=pk, object_id=object_id, label=label, type=kind, stability_score=score)
        for pk, object_id, label, kind, score in Masklet.objects.filter(video_id=video_id, **_masklet_filter(filters))
        .order_by("object_id").values_list("id", "object_id", "label", "type", "stability_score")
    }
    fields = ["masklet_id", "frame_index", "rle_counts", "area", "source", "quality"] + (["bbox"] if with_bbox else [])
    rows = (MaskFrame.objects.filter(masklet__video_id=video_id, **_masklet_filter(filters, prefix="masklet__"))
            .values_list(*fields).iterator(chunk_size=4000))
    for masklet_id, frame_index, *mask in rows:
        masklets[masklet_id].masks[frame_index] = Mask(*mask)
    edited = (MaskFrameRevision.objects.filter(masklet_id__in=masklets, source=MaskSource.HUMAN)
              .values("masklet_id").annotate(frames=Count("frame_index", distinct=True)))
    for row in edited:
        masklets[row["masklet_id"]].edited_frames = row["frames"]
    for masklet_id, edited_count, scores in MaskletOrigin.objects.filter(masklet_id__in=masklets).values_list(
            "masklet_id", "edited_frame_count", "stability_scores"):
        masklets[masklet_id].origin_edited_frames = edited_count
        masklets[masklet_id].stability_scores = scores
    return VideoData(
        pk=video.pk, name=video.name, width=video.width, height=video.height, fps=video.fps,
        frame_count=video.frame_count, stride=video.stride, split=video.split, environment=video.environment,
        original=video.original.name if video.original else "", frames=video.frames,
        masklets=[m for m in masklets.values() if any(mask.area > 0 for mask in m.masks.values())],
    )


def category_ids(project: Project) -> dict[str, int]:
    """Label -> COCO category id: the project's labels (active, then retired) in order from 1; unlabelled
    masklets are "object"."""
    return {label: index for index, label in enumerate(project.all_labels(), start=1)}


def label_of(masklet: MaskletData) -> str:
    return masklet.label or "object"


def category_id(categories: dict[str, int], label: str) -> int:
    """The id of ``label``, adding it after the project's labels when it is not one of them."""
    if label not in categories:
        categories[label] = len(categories) + 1
    return categories[label]


def categories_json(categories: dict[str, int]) -> list[dict]:
    return [{"id": cid, "name": name, "supercategory": "object"} for name, cid in categories.items()]


class JsonArrays:
    """Stream several top-level JSON arrays to scratch files, then join them into one JSON object.

    COCO and YouTube-VIS hold every video's images and annotations in one file; writing the
    arrays item by item keeps memory at one video while the file grows to any size.
    """

    def __init__(self, scratch: Path, names: Iterable[str]):
        self._files = {name: (scratch / f"{name}.part").open("w") for name in names}
        self._counts = dict.fromkeys(self._files, 0)

    def add(self, name: str, items: list[dict]) -> None:
        """Append ``items`` to the array ``name`` (one ``json.dumps`` per call: the C encoder, unlike ``dump``)."""
        if not items:
            return
        handle = self._files[name]
        if self._counts[name]:
            handle.write(", ")
        handle.write(json.dumps(items)[1:-1])
        self._counts[name] += len(items)

    def write(self, target: Path, head: dict, tail: dict) -> None:
        """``target`` = ``{**head, <the arrays in order>, **tail}`` as one JSON object."""
        with target.open("w") as out:
            out.write(json.dumps(head)[:-1] + (", " if head else ""))
            for index, (name, handle) in enumerate(self._files.items()):
                handle.close()
                out.write(("" if index == 0 else ", ") + json.dumps(name) + ": [")
                with open(handle.name) as part:
                    shutil.copyfileobj(part, out)
                out.write("]")
            out.write((", " + json.dumps(tail)[1:]) if tail else "}")

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()


@contextmanager
def json_document(target: Path, arrays: tuple[str, ...], project: Project,
                  categories: dict[str, int]) -> Iterator[JsonArrays]:
    """A COCO-like file: ``info`` and ``licenses``, the streamed ``arrays``, then the categories met on the way."""
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".parts-") as scratch:
        parts = JsonArrays(Path(scratch), arrays)
        try:
            yield parts
            parts.write(target, {"info": {"description": f"{project.name} (Masklet export)", "version": "1.0"},
                                 "licenses": []}, {"categories": categories_json(categories)})
        finally:
            parts.close()


#: ioctl FICLONE (linux/fs.h): share the source's blocks copy-on-write (btrfs, XFS, bcachefs).
FICLONE = 0x40049409


def copy_file(source: str | Path, target: Path) -> None:
    """Copy a stored file into an export: a reflink where the file system has them, else a plain copy.

    Never a hard link: an export is the receiver's to change, and editing a hard-linked JPEG
    would edit the project's stored frame. A reflink is a copy that shares blocks until written.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(source, "rb") as src, open(target, "wb") as dst:
        try:
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
            return
        except OSError:
            pass  # no reflinks here (ext4, tmpfs, another file system): copy the bytes
        shutil.copyfileobj(src, dst, COPY_BUFFER)


@contextmanager
def original_file(video: VideoData) -> Iterator[Path]:
    """A local path of the stored original while the block runs (a temporary copy when the storage is a bucket)."""
    missing = DatasetError(video.name, "original", "the original video file is missing, so its frames cannot be "
                           "exported")
    if not video.original:
        raise missing
    try:
        with storage.local_file(storage.area("media"), video.original) as path:
            yield path
    except storage.MissingObject:
        raise missing from None


def native_frames(video: VideoData) -> Iterator[np.ndarray]:
    """Every frame of the stored original, decoded one at a time (BGR); the count must be ingest's."""
    decoded = 0
    with original_file(video) as path:
        capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                decoded += 1
                yield frame
        finally:
            capture.release()
    if decoded != video.frame_count:
        raise DatasetError(video.name, "original", f"decoded {decoded} frames, but ingest counted "
                           f"{video.frame_count}: the original file changed or is damaged")


def copy_frames(video: VideoData, folder: Path, stats: ExportStats) -> None:
    """The video's annotated frames (ingested JPEGs) into ``folder`` as ``{frame:05d}.jpg``."""
    for frame in video.frame_indices:
        name = f"{frame:05d}.jpg"
        source = video.frames.path(name)
        if source is None:
            raise DatasetError(video.name, "frames", f"frame {name} is missing from the stored frames; "
                               "ingest the video again")
        copy_file(source, folder / name)
        stats.files += 1
