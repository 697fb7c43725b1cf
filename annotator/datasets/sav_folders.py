"""SA-V val/test folders: ``{split}.txt``, ``JPEGImages_24fps/`` (every native frame) and ``Annotations_6fps/``.

Layout (``../shared/docs/SAV_FORMAT.md``)::

    {split}.txt                                   video names, one a line (one file per split exported)
    JPEGImages_24fps/{video}/{frame:05d}.jpg      EVERY native frame, decoded from the original video now
    Annotations_6fps/{video}/{obj:03d}/{frame:05d}.png   one PNG per object and annotated frame

Frames are decoded from the stored original at export time (ingest keeps only the annotated
frames), streaming with OpenCV: one frame in memory at a time. Each object has a PNG for every
annotated frame, all zeros where it is not visible, so Meta's evaluator (which skips each
object's first and last PNG) sees the same frames for every object.

The PNGs are palette images holding 0 and 1 with the DAVIS palette, as Meta's
``tools/vos_inference.py --per_obj_png_file`` writes SA-V predictions (see docs/DECISIONS.md);
every reader here and Meta's evaluator and loaders read any non-zero value as the object.
Masks are decoded from RLE here: a PNG needs pixels.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from annotator.datasets.common import DatasetError, ExportStats, VideoData
from annotator.models import Project
from segmentation.masks import decode_rle, write_palette_png

JPEG_QUALITY = 95


def export(project: Project, videos: Iterable[VideoData], out: Path, *, media: bool = True) -> ExportStats:
    """Write the folders; ``media=False`` leaves out the 24 fps frames (annotations only)."""
    stats = ExportStats()
    splits: dict[str, list[str]] = {}
    for video in videos:
        splits.setdefault(video.split, []).append(video.name)
        if media:
            stats.files += write_native_frames(video, out / "JPEGImages_24fps" / video.name)
        stats.files += write_object_pngs(video, out / "Annotations_6fps" / video.name, stats)
        stats.videos += 1
    for split, names in splits.items():
        (out / f"{split}.txt").write_text("".join(f"{name}\n" for name in names))
        stats.files += 1
    return stats


def write_native_frames(video: VideoData, folder: Path) -> int:
    """Decode every frame of the original video and write it as ``{index:05d}.jpg``; returns the count."""
    if not video.original or not Path(video.original).is_file():
        raise DatasetError(video.name, "original", "the original video file is missing, so its 24 fps frames "
                           "cannot be exported")
    folder.mkdir(parents=True, exist_ok=True)
    capture = cv2.VideoCapture(video.original, cv2.CAP_FFMPEG)
    written = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if not cv2.imwrite(str(folder / f"{written:05d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
                raise OSError(f"could not write {folder / f'{written:05d}.jpg'}")
            written += 1
    finally:
        capture.release()
    if written != video.frame_count:
        raise DatasetError(video.name, "original", f"decoded {written} frames, but ingest counted "
                           f"{video.frame_count}: the original file changed or is damaged")
    return written


def write_object_pngs(video: VideoData, folder: Path, stats: ExportStats) -> int:
    """One palette PNG (0/1) per object and annotated frame; absent frames share one encoded empty PNG."""
    empty: bytes | None = None  # the all-zero PNG, encoded once per video
    written = 0
    for masklet in video.masklets:
        target = folder / f"{masklet.object_id:03d}"
        target.mkdir(parents=True, exist_ok=True)
        for frame in video.frame_indices:
            mask = masklet.visible(frame)
            path = target / f"{frame:05d}.png"
            if mask is None and empty is not None:
                path.write_bytes(empty)
            elif mask is None:
                write_palette_png(path, np.zeros((video.height, video.width), np.uint8))
                empty = path.read_bytes()
            else:
                pixels = decode_rle({"size": video.size, "counts": mask.counts})
                write_palette_png(path, pixels.astype(np.uint8))
                stats.masks += 1
            written += 1
        stats.masklets += 1
    return written

