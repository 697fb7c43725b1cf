"""DAVIS layout: ``JPEGImages/480p/{video}/{frame:05d}.jpg`` and ``Annotations/480p/{video}/{frame:05d}.png``.

Export: one palette PNG (DAVIS palette) per annotated frame, pixel value k = the video's k-th
exported object in object-id order (1, 2, ...; 0 is background), and the annotated frames
beside them. The folder keeps DAVIS's name ``480p`` whatever the video's size (frames are
written at the video's own resolution). At most 255 objects a video.

Overlaps: a DAVIS label map holds one object per pixel, while masklets may overlap. Objects
are painted in object-id order, so where masks overlap THE HIGHER OBJECT ID WINS (the later
object covers the earlier one). Use ``sav-folders`` for overlapping objects: it keeps one PNG
per object.

Import: each sequence of ``JPEGImages/480p`` with annotations becomes a video (a project video
of the same name is reused, else the JPEGs are packed into a lossless video at ``--fps``,
default 24 as DAVIS). Pixel value k is object k (a sequence whose only value is 255, DAVIS 2016
style, is object 1). DAVIS annotates every frame; the project annotates every stride-th frame,
so masks on frames in between are left out and counted in the report.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from annotator.datasets.common import DatasetError, ExportStats, VideoData, copy_frames
from annotator.datasets.importing import ImportedObject, ImportedVideo, PendingVideo
from annotator.models import MaskletType, Project
from segmentation.datasets import VideoRecord, load_davis
from segmentation.masks import decode_rle, encode_rle, write_palette_png

RESOLUTION = "480p"
MAX_OBJECTS = 255


def export(project: Project, videos: Iterable[VideoData], out: Path, *, media: bool = True) -> ExportStats:
    stats = ExportStats()
    for video in videos:
        if len(video.masklets) > MAX_OBJECTS:
            raise DatasetError(video.name, "masklets", f"{len(video.masklets)} objects do not fit a DAVIS label map "
                               f"(at most {MAX_OBJECTS}); export sav-folders instead")
        folder = out / "Annotations" / RESOLUTION / video.name
        folder.mkdir(parents=True, exist_ok=True)
        for frame in video.frame_indices:
            write_palette_png(folder / f"{frame:05d}.png", label_map(video, frame, stats))
            stats.files += 1
        if media:
            copy_frames(video, out / "JPEGImages" / RESOLUTION / video.name, stats)
        stats.masklets += len(video.masklets)
        stats.videos += 1
    return stats


def label_map(video: VideoData, frame: int, stats: ExportStats) -> np.ndarray:
    """Value k = k-th object (object-id order); painted in that order, so the higher id wins an overlap."""
    labels = np.zeros((video.height, video.width), np.uint8)
    for value, masklet in enumerate(video.masklets, start=1):
        mask = masklet.visible(frame)
        if mask is not None:
            labels[decode_rle({"size": video.size, "counts": mask.counts})] = value
            stats.masks += 1
    return labels


def read(path: Path) -> list[PendingVideo]:
    """Every DAVIS sequence under ``path`` with frames and annotations."""
    try:
        records = load_davis(path, resolution=RESOLUTION)
    except FileNotFoundError as exc:
        raise DatasetError(path, "", str(exc)) from None
    return [PendingVideo(record.name, lambda record=record: _load(record)) for record in records]


def _load(record: VideoRecord) -> ImportedVideo:
    annotations = record.annotation_folder  # type: ignore[attr-defined]
    objects = []
    for object_id in record.object_ids:
        masks = {}
        for index, mask in record.gt_masks(object_id).items():
            if mask.any():
                masks[index] = (encode_rle(mask), f"{record.frame_names[index]}.png")
        objects.append(ImportedObject(file=str(annotations), source_id=str(object_id), object_id=object_id,
                                      type=MaskletType.MANUAL, label="", masks=masks))
    if not objects:
        raise DatasetError(annotations, "", "no object in any annotation PNG")
    return ImportedVideo(name=record.name, file=str(annotations), objects=objects, skip_unannotated=True,
                         frames_folder=record.frame_folder)
