"""SA-V train format: ``{video}_manual.json`` and ``{video}_auto.json``, every field as Meta's files hold it.

Facts from ``../shared/docs/SAV_FORMAT.md`` (checked against the real example files):

- ``masklet`` is a list over ANNOTATED frames (entry i = native frame stride*i) of lists over
  objects, every entry holding exactly ``masklet_num`` RLEs; an object that is not visible is
  the EMPTY RLE of the frame size, never None (Meta's loader reads None as "not annotated").
- Stored RLE counts are copied as they are; sizes, first appearance and visibility changes
  come from the stored areas (no mask is decoded).
- Types as in the real files: video numbers are floats; ``masklet_first_appeared_frame`` is a
  float in manual files and an int in auto files; manual sizes are rounded to 10 decimals (as
  Meta's manual files are), auto sizes are not; ``masklet_stability_score`` is
  ``[None] * masklet_num`` for manual, frames x objects of floats for auto (1.0 where invisible).
- ``masklet_edited_frame_count``: frames with a human revision in our history, plus the count
  an imported SA-V file carried (SA-V does not say which frames, so a frame edited both
  before and after the import counts twice; capped at the frame count).
- Auto stability scores, where the object is visible: the imported per-frame score while the
  mask is still the imported one (``MaskletOrigin``), else the masklet's own ``stability_score``
  (what auto-masklet generation measured on its seed mask, ``annotator.automasks``), else 1.0
  (a mask with no model estimate: one a person made). Never None: Meta's files hold a float in
  every entry.

``masklet_id`` is the masklet's object id in the video. SA-V numbers manual and auto masklets
from 0 in separate files; one video here has one id space, so an imported auto file's ids are
shifted past the manual ones (``annotator.datasets.importing``) and come back shifted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import cv2

from annotator.datasets.common import (
    DatasetError,
    ExportStats,
    MaskletData,
    VideoData,
    copy_file,
    native_frames,
    original_file,
)
from annotator.datasets.importing import (
    ImportedObject,
    ImportedVideo,
    PendingVideo,
    compressed_rle,
    empty_mask,
    parse_json,
)
from annotator.models import MaskletType, MaskSource, Project
from engine.safe_paths import safe_join

SMALL, LARGE = 32 ** 2, 96 ** 2
#: Auto stability score where the object is not visible (as in Meta's files), and of a visible mask no
#: model scored (a person's).
INVISIBLE_SCORE = UNKNOWN_SCORE = 1.0
MANUAL_DECIMALS = 10
TYPES = (MaskletType.MANUAL, MaskletType.AUTO)
#: Originals in these containers are copied as ``{video}.mp4``; others are transcoded.
MP4_SUFFIXES = (".mp4", ".m4v")
MP4_CODEC = "mp4v"  # what pip's OpenCV can write to MP4 (its FFmpeg has no H.264 encoder)
#: Not in Meta's files: native frames between annotated frames (``SAVDataset(annot_sample_rate=...)``).
STRIDE_FIELD = "video_annotation_stride"


def export(project: Project, videos: Iterable[VideoData], out: Path, *, media: bool = True) -> ExportStats:
    """Write each video's manual and auto JSON (only types it has); with ``media``, its original video too."""
    stats = ExportStats()
    for video in videos:
        for kind in TYPES:
            masklets = [m for m in video.masklets if m.type == kind]
            if not masklets:
                continue
            # dumps, not dump: json.dump encodes in Python chunk by chunk, dumps in C (several times faster)
            safe_join(out, f"{video.name}_{kind}.json").write_text(json.dumps(document(video, masklets, kind)))
            stats.files += 1
            stats.masklets += len(masklets)
            stats.masks += sum(1 for m in masklets for mask in m.masks.values() if mask.area > 0)
        if media and video.original:
            write_mp4(video, safe_join(out, f"{video.name}.mp4"))
            stats.files += 1
        stats.videos += 1
    return stats


def write_mp4(video: VideoData, target: Path) -> None:
    """The original as ``{video}.mp4``, the name Meta's ``SAVDataset`` opens: copied when it is MP4 already,
    else transcoded with OpenCV (MPEG-4 Part 2, every native frame at the video's frame rate)."""
    if PurePosixPath(video.original).suffix.lower() in MP4_SUFFIXES:
        with original_file(video) as original:
            copy_file(original, target)
        return
    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*MP4_CODEC), video.fps, (video.width, video.height))
    if not writer.isOpened():
        raise DatasetError(video.name, "original", "this OpenCV cannot write MP4 video, so the original cannot be "
                           "exported as {video}.mp4; export without media")
    try:
        for frame in native_frames(video):
            writer.write(frame)
    finally:
        writer.release()


def document(video: VideoData, masklets: list[MaskletData], kind: str) -> dict:
    """The SA-V JSON of one video and type, keys in the order of Meta's files."""
    frames = video.frame_indices
    size, empty = video.size, video.empty()
    resolution = video.height * video.width
    manual = kind == MaskletType.MANUAL
    rows, visible = [], []
    for masklet in masklets:
        masks = [masklet.visible(frame) for frame in frames]
        visible.append([mask is not None for mask in masks])
        rows.append(masks)
    masklet_field = [
        [{"size": size, "counts": column[i].counts} if column[i] is not None else empty for column in rows]
        for i in range(len(frames))
    ]
    sizes = [sum(m.area for m in column if m is not None) / max(1, sum(seen))
             for column, seen in zip(rows, visible, strict=True)]
    firsts = [seen.index(True) for seen in visible]
    size_rel = [value / resolution for value in sizes]
    if manual:
        sizes = [round(value, MANUAL_DECIMALS) for value in sizes]
        size_rel = [round(value, MANUAL_DECIMALS) for value in size_rel]
    return {
        "video_id": video.name,
        "video_duration": float(video.frame_count / video.fps),
        "video_frame_count": float(video.frame_count),
        "video_height": float(video.height),
        "video_width": float(video.width),
        "video_resolution": float(resolution),
        "video_environment": video.environment,
        "video_split": video.split,
        "masklet": masklet_field,
        "masklet_id": [m.object_id for m in masklets],
        "masklet_size_rel": size_rel,
        "masklet_size_abs": sizes,
        "masklet_size_bucket": [bucket(value) for value in sizes],
        "masklet_visibility_changes": [visibility_changes(seen, first)
                                       for seen, first in zip(visible, firsts, strict=True)],
        "masklet_first_appeared_frame": [float(first) if manual else first for first in firsts],
        "masklet_frame_count": [len(frames)] * len(masklets),
        "masklet_edited_frame_count": [min(len(frames), m.edited_frames + m.origin_edited_frames) for m in masklets],
        "masklet_type": [kind] * len(masklets),
        "masklet_stability_score": [None] * len(masklets) if manual else stability(masklets, rows),
        "masklet_num": len(masklets),
        STRIDE_FIELD: video.stride,
    }


def bucket(area: float) -> str:
    """SA-V's size bucket of a mean area: small below 32², medium below 96², large from 96²."""
    return "small" if area < SMALL else "medium" if area < LARGE else "large"


def visibility_changes(seen: list[bool], first: int) -> int:
    """Visible <-> invisible transitions after the first appearance."""
    return sum(1 for before, after in zip(seen[first:], seen[first + 1:], strict=False) if before != after)


def stability(masklets: list[MaskletData], rows: list[list]) -> list[list[float]]:
    """Frames x objects, a float in every entry as in Meta's auto files (see the module docstring)."""
    table = []
    for i in range(len(rows[0]) if rows else 0):
        line = []
        for masklet, column in zip(masklets, rows, strict=True):
            mask = column[i]
            imported = masklet.stability_scores[i] if masklet.stability_scores and i < len(
                masklet.stability_scores) else None
            if mask is None:
                line.append(INVISIBLE_SCORE)
            elif mask.source == MaskSource.IMPORTED and _is_score(imported):
                line.append(float(imported))
            elif _is_score(masklet.stability_score):
                line.append(float(masklet.stability_score))
            else:
                line.append(UNKNOWN_SCORE)
        table.append(line)
    return table


def _is_score(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# -- import ---------------------------------------------------------------------------------------


def read(path: Path) -> list[PendingVideo]:
    """SA-V JSON files: one file, or a folder of ``*_manual.json`` / ``*_auto.json``, grouped by video."""
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not files:
        raise DatasetError(path, "", "no SA-V .json files here")
    by_video: dict[str, list[Path]] = {}
    for file in files:
        name = file.stem.removesuffix("_manual").removesuffix("_auto")
        by_video.setdefault(name, []).append(file)
    return [PendingVideo(name, lambda group=group: _load_video(group)) for name, group in by_video.items()]


def _load_video(files: list[Path]) -> ImportedVideo:
    objects, names, first = [], set(), None
    files = sorted(files, key=lambda f: f.stem.endswith("_auto"))  # manual first: its ids stay
    for file in files:
        data = load_json(file)
        first = first or data
        names.add(data["video_id"])
        if len(data["masklet"]) != len(first["masklet"]):
            raise DatasetError(file, "masklet", f"{len(data['masklet'])} annotated frames, but "
                               f"{files[0].name} has {len(first['masklet'])}")
        objects.extend(_objects(file, data))
    if len(names) > 1:
        raise DatasetError(files[0], "video_id", f"files of one video name different videos: {sorted(names)}")
    return ImportedVideo(name=first["video_id"], file=str(files[0]), objects=objects, keys="annotated",
                         annotated_frames=len(first["masklet"]),
                         environment=str(first.get("video_environment") or ""),
                         split=str(first.get("video_split") or ""), stride=_stride(files[0], first))


def _stride(file: Path, data: dict) -> int | None:
    """The annotation stride a file of ours records (Meta's files do not: None)."""
    stride = data.get(STRIDE_FIELD)
    if stride is None:
        return None
    if not isinstance(stride, int) or isinstance(stride, bool) or stride < 1:
        raise DatasetError(file, STRIDE_FIELD, f"expected a positive int, got {stride!r}")
    return stride


def load_json(file: Path) -> dict:
    """Parse one SA-V file and check its top-level fields."""
    data = parse_json(file)
    for name, kind in (("video_id", str), ("masklet", list), ("masklet_id", list), ("masklet_num", int),
                       ("video_height", int | float), ("video_width", int | float)):
        if name not in data:
            raise DatasetError(file, name, "missing")
        if not isinstance(data[name], kind) or isinstance(data[name], bool):
            raise DatasetError(file, name, f"expected {getattr(kind, '__name__', 'a number')}, got "
                               f"{type(data[name]).__name__}")
    return data


def _objects(file: Path, data: dict) -> list[ImportedObject]:
    count = data["masklet_num"]
    ids = data["masklet_id"]
    height, width = int(data["video_height"]), int(data["video_width"])
    if len(ids) != count or not all(isinstance(i, int) and i >= 0 for i in ids):
        raise DatasetError(file, "masklet_id", f"expected {count} non-negative ints (masklet_num), got {ids!r}")
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise DatasetError(file, "masklet_id", f"duplicate ids {duplicates}")
    kind = MaskletType.AUTO if file.stem.endswith("_auto") else MaskletType.MANUAL
    types = _per_object(file, data, "masklet_type", count, None)
    edited = _per_object(file, data, "masklet_edited_frame_count", count, 0)
    scores = data.get("masklet_stability_score")
    objects = [
        ImportedObject(file=str(file), source_id=str(oid), object_id=oid,
                       type=types[j] if types[j] in MaskletType.values else kind, label="", masks={},
                       edited_frame_count=int(edited[j] or 0))
        for j, oid in enumerate(ids)
    ]
    for i, entry in enumerate(data["masklet"]):
        if not isinstance(entry, list) or len(entry) != count:
            raise DatasetError(file, f"masklet[{i}]", f"expected a list of {count} RLEs (masklet_num), got "
                               f"{len(entry) if isinstance(entry, list) else type(entry).__name__}")
        for j, segmentation in enumerate(entry):
            if segmentation is None:  # "not annotated" in Meta's loader: nothing to store
                continue
            where = f"masklet[{i}][{j}]"
            rle = compressed_rle(segmentation, height, width, str(file), where)
            if not empty_mask(rle):
                objects[j].masks[i] = (rle, where)
    if isinstance(scores, list) and kind == MaskletType.AUTO:
        for j, obj in enumerate(objects):
            obj.stability_scores = [row[j] if isinstance(row, list) and j < len(row) else None for row in scores]
    return objects


def _per_object(file: Path, data: dict, name: str, count: int, default: object) -> list:
    values = data.get(name)
    if values is None:
        return [default] * count
    if not isinstance(values, list) or len(values) != count:
        raise DatasetError(file, name, f"expected a list of {count} values (masklet_num)")
    return values
