"""COCO instance segmentation, one image per annotated frame, read by pycocotools without an adapter.

``annotations.json``::

    videos       [{id, name, width, height, fps, frame_count, stride}]
    images       [{id, file_name: "{video}/{frame:05d}.jpg", width, height, video_id, frame_index}]
    annotations  [{id, image_id, video_id, category_id, segmentation: {size, counts}, area, bbox,
                   iscrowd: 0, track_id, object_id, masklet_type, score?}]
    categories   [{id, name, supercategory}]

``track_id`` is the masklet's id (unique in the export), ``object_id`` its id within the video.
Categories are the project's labels in order from 1, then any other label masklets carry
("object" for unlabelled ones). Segmentations are the stored compressed RLE, copied; area and
bbox are the stored ones. ``score`` (a model's mask only) is its stored quality score in [0, 1],
the field COCO results use for confidence; people's masks have none. With ``media`` the frames
go to ``images/{video}/{frame:05d}.jpg``.

Import reads the same file (and plain COCO: ``video_id``/``frame_index`` may be missing, then
the video is the folder of ``file_name`` and the frame its number; uncompressed RLE and polygons
are encoded once; annotations without ``track_id`` are one object each).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

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
from annotator.datasets.importing import (
    ImportedObject,
    ImportedVideo,
    PendingVideo,
    compressed_rle,
    empty_mask,
    frame_number,
    parse_json,
)
from annotator.models import MaskletType, Project
from engine.safe_paths import safe_join

FILE_NAME = "annotations.json"


def export(project: Project, videos: Iterable[VideoData], out: Path, *, media: bool = True) -> ExportStats:
    stats = ExportStats()
    categories = category_ids(project)
    image_id = annotation_id = 0
    with json_document(out / FILE_NAME, ("videos", "images", "annotations"), project, categories) as arrays:
        for video_id, video in enumerate(videos, start=1):
            images, annotations = [], []  # this video's entries, written with one dumps each
            for frame in video.frame_indices:
                image_id += 1
                images.append({"id": image_id, "file_name": f"{video.name}/{frame:05d}.jpg",
                               "width": video.width, "height": video.height, "video_id": video_id,
                               "frame_index": frame})
                for masklet in video.masklets:
                    mask = masklet.visible(frame)
                    if mask is None:
                        continue
                    annotation_id += 1
                    annotation = {
                        "id": annotation_id, "image_id": image_id, "video_id": video_id,
                        "category_id": category_id(categories, label_of(masklet)),
                        "segmentation": {"size": video.size, "counts": mask.counts},
                        "area": mask.area, "bbox": mask.bbox, "iscrowd": 0, "track_id": masklet.pk,
                        "object_id": masklet.object_id, "masklet_type": masklet.type,
                    }
                    if mask.quality is not None:  # a model's mask: COCO results' confidence field
                        annotation["score"] = mask.quality
                    annotations.append(annotation)
            arrays.add("videos", [video_entry(video, video_id)])
            arrays.add("images", images)
            arrays.add("annotations", annotations)
            stats.masks += len(annotations)
            stats.masklets += len(video.masklets)
            if media:
                copy_frames(video, safe_join(out, "images", video.name), stats)
            stats.videos += 1
    stats.files += 1
    return stats


def video_entry(video: VideoData, video_id: int) -> dict:
    return {"id": video_id, "name": video.name, "width": video.width, "height": video.height, "fps": video.fps,
            "frame_count": video.frame_count, "stride": video.stride}


# -- import ---------------------------------------------------------------------------------------


def read(path: Path) -> list[PendingVideo]:
    """Parse and check the whole file first: a wrong annotation anywhere imports nothing of it."""
    file = path / FILE_NAME if path.is_dir() else path
    data = load_json(file, ("images", "annotations"))
    categories = category_names(file, data)
    video_names = {v.get("id"): v.get("name") for v in data.get("videos") or [] if isinstance(v, dict)}
    images: dict[int, tuple[str, int, int, int]] = {}  # id -> (video, frame, height, width)
    for i, image in enumerate(data["images"]):
        where = f"images[{i}]"
        image_id = _int(file, image, "id", where)
        if image_id in images:
            raise DatasetError(file, f"{where}.id", f"duplicate ids {image_id}")
        file_name = str(image.get("file_name") or "")
        video = video_names.get(image.get("video_id")) or image.get("video_name") or Path(file_name).parent.name
        frame = image.get("frame_index", frame_number(file_name))
        if not video:
            raise DatasetError(file, f"{where}.video_id", "no video: give video_id (with a videos entry) or a "
                               "file_name inside a video folder")
        if not isinstance(frame, int) or frame < 0:
            raise DatasetError(file, f"{where}.frame_index", f"unknown frame index {frame!r}: give frame_index or "
                               "a file_name numbered by frame (00012.jpg)")
        images[image_id] = (str(video), frame, _int(file, image, "height", where), _int(file, image, "width", where))
    videos: dict[str, ImportedVideo] = {}
    tracks: dict[tuple[str, object], ImportedObject] = {}
    seen_ids: set[int] = set()
    for k, annotation in enumerate(data["annotations"]):
        where = f"annotations[{k}]"
        annotation_id = _int(file, annotation, "id", where)
        if annotation_id in seen_ids:
            raise DatasetError(file, f"{where}.id", f"duplicate ids {annotation_id}")
        seen_ids.add(annotation_id)
        image_id = annotation.get("image_id")
        if image_id not in images:
            raise DatasetError(file, f"{where}.image_id", f"unknown image id {image_id!r}")
        video_name, frame, height, width = images[image_id]
        track = annotation.get("track_id", f"annotation {annotation_id}")
        obj = tracks.get((video_name, track))
        if obj is None:
            obj = new_object(file, where, annotation, categories, str(track))
            tracks[video_name, track] = obj
            video = videos.setdefault(video_name, ImportedVideo(name=video_name, file=str(file), objects=[]))
            video.objects.append(obj)
        if frame in obj.masks:
            raise DatasetError(file, f"{where}.image_id", f"track {track} already has a mask on frame {frame} of "
                               f"{video_name} ({obj.masks[frame][1]})")
        rle = compressed_rle(annotation.get("segmentation"), height, width, str(file), f"{where}.segmentation")
        if not empty_mask(rle):
            obj.masks[frame] = (rle, where)
    for video in videos.values():
        check_object_ids(file, video)
    return [PendingVideo(name, lambda video=video: video) for name, video in videos.items()]


def load_json(file: Path, lists: tuple[str, ...]) -> dict:
    """Parse a COCO-like file whose ``lists`` must be lists of objects."""
    data = parse_json(file)
    for name in lists:
        if not isinstance(data.get(name), list):
            raise DatasetError(file, name, "missing" if name not in data else "expected a list")
        for i, item in enumerate(data[name]):
            if not isinstance(item, dict):
                raise DatasetError(file, f"{name}[{i}]", "expected an object")
    return data


def category_names(file: Path, data: dict) -> dict[object, str]:
    names = {}
    for i, category in enumerate(data.get("categories") or []):
        if not isinstance(category, dict) or "id" not in category:
            raise DatasetError(file, f"categories[{i}]", "expected an object with an id")
        if category["id"] in names:
            raise DatasetError(file, f"categories[{i}].id", f"duplicate ids {category['id']}")
        names[category["id"]] = str(category.get("name") or "")
    return names


def new_object(file: Path, where: str, annotation: dict, categories: dict, source_id: str) -> ImportedObject:
    """An object from its first annotation: label from the category, id and type when the file has them."""
    category = annotation.get("category_id")
    if categories and category not in categories:
        raise DatasetError(file, f"{where}.category_id", f"unknown category id {category!r}")
    object_id = annotation.get("object_id")
    kind = annotation.get("masklet_type")
    return ImportedObject(
        file=str(file), source_id=source_id,
        object_id=object_id if isinstance(object_id, int) and object_id >= 0 else None,
        type=kind if kind in MaskletType.values else MaskletType.MANUAL,
        label="" if categories.get(category) in (None, "object") else categories[category], masks={},
    )


def check_object_ids(file: Path, video: ImportedVideo) -> None:
    ids = [o.object_id for o in video.objects if o.object_id is not None]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise DatasetError(file, "object_id", f"duplicate ids {duplicates} in video {video.name}")


def _int(file: Path, item: dict, name: str, where: str) -> int:
    value = item.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise DatasetError(file, f"{where}.{name}", "missing" if value is None else f"expected an int, got {value!r}")
    return value
