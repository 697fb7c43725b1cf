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
so masks on frames in between are left out and counted in the report. Every PNG must name a
frame, be a palette or gray label map and have the frames' size; a sequence with frames but no
annotations (or the reverse) fails with the folder named, and the other sequences carry on.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from annotator.datasets.common import DatasetError, ExportStats, VideoData, copy_frames
from annotator.datasets.importing import ImportedObject, ImportedVideo, PendingVideo
from annotator.models import MaskletType, Project
from engine.safe_paths import safe_join
from segmentation.datasets import VideoRecord, load_davis
from segmentation.frames import JpegFolderFrames
from segmentation.masks import decode_rle, encode_rle, write_palette_png

RESOLUTION = "480p"
MAX_OBJECTS = 255
LABEL_MODES = ("P", "L", "1")  # what segmentation.masks.read_palette_png reads


def export(project: Project, videos: Iterable[VideoData], out: Path, *, media: bool = True) -> ExportStats:
    stats = ExportStats()
    for video in videos:
        if len(video.masklets) > MAX_OBJECTS:
            raise DatasetError(video.name, "masklets", f"{len(video.masklets)} objects do not fit a DAVIS label map "
                               f"(at most {MAX_OBJECTS}); export sav-folders instead")
        folder = safe_join(out, "Annotations", RESOLUTION, video.name)
        folder.mkdir(parents=True, exist_ok=True)
        for frame in video.frame_indices:
            write_palette_png(folder / f"{frame:05d}.png", label_map(video, frame, stats))
            stats.files += 1
        if media:
            copy_frames(video, safe_join(out, "JPEGImages", RESOLUTION, video.name), stats)
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
    """Every DAVIS sequence under ``path``; each is checked when it is imported (one failing sequence
    is reported, the others carry on). A sequence with frames but no annotations, or the reverse, fails."""
    frames_root, annotations_root = path / "JPEGImages" / RESOLUTION, path / "Annotations" / RESOLUTION
    for folder in (frames_root, annotations_root):
        if not folder.is_dir():
            raise DatasetError(path, folder.relative_to(path).as_posix(), "missing folder: a DAVIS dataset holds "
                               f"JPEGImages/{RESOLUTION}/{{sequence}}/00000.jpg, ... and "
                               f"Annotations/{RESOLUTION}/{{sequence}}/00000.png, ...")
    framed = {p.name for p in frames_root.iterdir() if p.is_dir()}
    annotated = {p.name for p in annotations_root.iterdir() if p.is_dir()}
    if not framed & annotated:
        raise DatasetError(annotations_root, "", f"no sequence has both frames ({len(framed)} in {frames_root}) and "
                           f"annotations ({len(annotated)} here)")
    return [PendingVideo(name, lambda name=name: _load(path, name, name in framed, name in annotated))
            for name in sorted(framed | annotated)]


def _load(root: Path, name: str, framed: bool, annotated: bool) -> ImportedVideo:
    frames_folder, annotations = root / "JPEGImages" / RESOLUTION / name, root / "Annotations" / RESOLUTION / name
    if not annotated:
        raise DatasetError(annotations, "", f"missing: sequence {name} has frames in {frames_folder} but no "
                           "annotation folder")
    if not framed:
        raise DatasetError(frames_folder, "", f"missing: sequence {name} has annotations in {annotations} but no "
                           "frames folder")
    try:
        record = load_davis(root, [name], resolution=RESOLUTION)[0]
        first = JpegFolderFrames(frames_folder)
    except OSError as exc:  # missing folder, an empty or broken JPEG
        problem = f"{Path(exc.filename).name}: {exc.strerror}" if exc.filename else str(exc)
        raise DatasetError(frames_folder, "", f"unreadable frames ({problem})") from None
    except ValueError as exc:
        raise DatasetError(frames_folder, "", str(exc)) from None
    check_pngs(record, annotations, (first.width, first.height))
    step, warnings = frame_numbering(record.frame_names)
    objects = []
    for object_id in record.object_ids:
        masks = {}
        for index, mask in record.gt_masks(object_id).items():
            if mask.any():
                masks[index] = (encode_rle(mask), f"{record.frame_names[index]}.png")
        objects.append(ImportedObject(file=str(annotations), source_id=str(object_id), object_id=object_id,
                                      type=MaskletType.MANUAL, label="", masks=masks))
    if not objects:
        raise DatasetError(annotations, "", "every annotation PNG is all background (0): no object to import")
    return ImportedVideo(name=record.name, file=str(annotations), objects=objects, skip_unannotated=True,
                         frames_folder=record.frame_folder, frame_step=step, warnings=warnings)


def frame_numbering(names: list[str]) -> tuple[int, list[str]]:
    """The step between the frames' numbers (4 for 00000, 00004, ...: an export's annotated frames) and
    warnings about gaps. The video is packed from the files present, so a gap shifts later frames in time."""
    numbers = [int(name) for name in names if name.isdigit()]
    if len(numbers) != len(names) or len(numbers) < 2:
        return 1, []
    steps = sorted({b - a for a, b in zip(numbers, numbers[1:], strict=False)})
    if len(steps) == 1:
        return steps[0], []
    step = min(steps)
    gaps = [f"{a + step:05d}-{b - step:05d}" if b - a > 2 * step else f"{a + step:05d}"
            for a, b in zip(numbers, numbers[1:], strict=False) if b - a != step]
    shown = ", ".join(gaps[:5]) + (f" and {len(gaps) - 5} more" if len(gaps) > 5 else "")
    return step, [f"frames missing between the numbered frames ({shown}): the video is packed from the "
                  f"{len(numbers)} frames present, so frames after a gap play earlier than numbered"]


def check_pngs(record: VideoRecord, annotations: Path, frame_size: tuple[int, int]) -> None:
    """Every PNG names a frame, is a label map (palette or gray) and has the frames' size."""
    pngs = sorted(annotations.glob("*.png"))
    if not pngs:
        raise DatasetError(annotations, "", "no annotation PNG (expected 00000.png, ... named like the frames)")
    stems = set(record.frame_names)
    for png in pngs:
        if png.stem not in stems:
            raise DatasetError(png, "frame", f"unknown frame index: {png.stem} is not one of the {len(stems)} "
                               f"frames of {record.frame_folder} ({record.frame_names[0]} .. {record.frame_names[-1]})")
        try:
            with Image.open(png) as image:
                mode, size = image.mode, image.size
        except OSError as exc:
            raise DatasetError(png, "", f"not a readable PNG ({exc.__class__.__name__})") from None
        if mode not in LABEL_MODES:
            raise DatasetError(png, "mode", f"a DAVIS annotation is a palette (or gray) PNG whose pixel value k is "
                               f"object k, got mode {mode}")
        if size != frame_size:
            raise DatasetError(png, "size", f"the PNG is {size[0]}x{size[1]} but the frames of {record.name} are "
                               f"{frame_size[0]}x{frame_size[1]} (width x height)")
