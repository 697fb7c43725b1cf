"""YouTube-VIS style: one entry per video with its frame files, one annotation per masklet.

``instances.json``::

    videos       [{id, name, width, height, length, file_names: ["{video}/{frame:05d}.jpg", ...]}]
    annotations  [{id, video_id, category_id, iscrowd: 0, height, width, length: 1, object_id, masklet_type,
                   segmentations: [RLE or null per frame], areas: [int or null], bboxes: [[x, y, w, h] or null]}]
    categories   [{id, name, supercategory}]

Frames are the annotated frames (``file_names`` are named by native frame number); null where
the object is not visible, as YouTube-VIS does. RLE is the stored compressed RLE, copied.
With ``media`` the frames go to ``JPEGImages/{video}/{frame:05d}.jpg``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from annotator.datasets.coco import category_names as read_categories
from annotator.datasets.coco import check_object_ids, load_json, new_object
from annotator.datasets.common import (
    DatasetError,
    ExportStats,
    VideoData,
    category_id,
    category_ids,
    copy_frames,
    json_document,
    label_of,
)
from annotator.datasets.importing import ImportedVideo, PendingVideo, compressed_rle, empty_mask, frame_number
from annotator.models import Project
from engine.safe_paths import safe_join

FILE_NAME = "instances.json"


def export(project: Project, videos: Iterable[VideoData], out: Path, *, media: bool = True) -> ExportStats:
    stats = ExportStats()
    categories = category_ids(project)
    annotation_id = 0
    with json_document(out / FILE_NAME, ("videos", "annotations"), project, categories) as arrays:
        for video_id, video in enumerate(videos, start=1):
            frames = video.frame_indices
            arrays.add("videos", [{"id": video_id, "name": video.name, "width": video.width,
                                   "height": video.height, "length": len(frames),
                                   "file_names": [f"{video.name}/{frame:05d}.jpg" for frame in frames]}])
            annotations = []
            for masklet in video.masklets:
                masks = [masklet.visible(frame) for frame in frames]
                annotation_id += 1
                annotations.append({
                    "id": annotation_id, "video_id": video_id,
                    "category_id": category_id(categories, label_of(masklet)), "iscrowd": 0,
                    "height": video.height, "width": video.width, "length": 1,
                    "object_id": masklet.object_id, "masklet_type": masklet.type,
                    "segmentations": [None if m is None else {"size": video.size, "counts": m.counts}
                                      for m in masks],
                    "areas": [None if m is None else m.area for m in masks],
                    "bboxes": [None if m is None else m.bbox for m in masks],
                })
                stats.masks += sum(1 for m in masks if m is not None)
            arrays.add("annotations", annotations)
            stats.masklets += len(video.masklets)
            if media:
                copy_frames(video, safe_join(out, "JPEGImages", video.name), stats)
            stats.videos += 1
    stats.files += 1
    return stats


def read(path: Path) -> list[PendingVideo]:
    """Parse and check the whole file first: a wrong annotation anywhere imports nothing of it."""
    file = path / FILE_NAME if path.is_dir() else path
    data = load_json(file, ("videos", "annotations"))
    categories = read_categories(file, data)
    videos: dict[object, tuple[ImportedVideo, list[int], int, int]] = {}
    for i, entry in enumerate(data["videos"]):
        where = f"videos[{i}]"
        if entry.get("id") in videos:
            raise DatasetError(file, f"{where}.id", f"duplicate ids {entry.get('id')}")
        names = entry.get("file_names")
        if not isinstance(names, list) or not names:
            raise DatasetError(file, f"{where}.file_names", "expected a list of frame file names")
        frames = [frame_number(str(name)) for name in names]
        if None in frames:
            bad = names[frames.index(None)]
            raise DatasetError(file, f"{where}.file_names", f"unknown frame index: {bad!r} is not numbered by frame")
        name = entry.get("name") or Path(str(names[0])).parent.name
        height, width = entry.get("height"), entry.get("width")
        if not (isinstance(height, int) and isinstance(width, int)):
            raise DatasetError(file, f"{where}.height", "height and width must be ints")
        videos[entry.get("id")] = (ImportedVideo(name=str(name), file=str(file), objects=[]), frames, height, width)
    seen: set[object] = set()
    for k, annotation in enumerate(data["annotations"]):
        where = f"annotations[{k}]"
        if annotation.get("id") in seen:
            raise DatasetError(file, f"{where}.id", f"duplicate ids {annotation.get('id')}")
        seen.add(annotation.get("id"))
        if annotation.get("video_id") not in videos:
            raise DatasetError(file, f"{where}.video_id", f"unknown video id {annotation.get('video_id')!r}")
        video, frames, height, width = videos[annotation["video_id"]]
        segmentations = annotation.get("segmentations")
        if not isinstance(segmentations, list) or len(segmentations) != len(frames):
            raise DatasetError(file, f"{where}.segmentations", f"expected a list of {len(frames)} entries (one per "
                               "file name of the video)")
        obj = new_object(file, where, annotation, categories, str(annotation.get("id")))
        for index, (frame, segmentation) in enumerate(zip(frames, segmentations, strict=True)):
            if segmentation is None:
                continue
            rle = compressed_rle(segmentation, height, width, str(file), f"{where}.segmentations[{index}]")
            if not empty_mask(rle):
                obj.masks[frame] = (rle, f"{where}.segmentations[{index}]")
        video.objects.append(obj)
    for video, *_ in videos.values():
        check_object_ids(file, video)
    return [PendingVideo(video.name, lambda video=video: video) for video, *_ in videos.values() if video.objects]
