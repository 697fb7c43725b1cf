"""SA-V val/test folders: ``{split}.txt``, ``JPEGImages_24fps/`` (every native frame) and ``Annotations_6fps/``.

Layout (``../shared/docs/SAV_FORMAT.md``)::

    {split}.txt                                   video names, one a line (one file per split exported)
    JPEGImages_24fps/{video}/{frame:05d}.jpg      EVERY native frame, decoded from the original video now
    Annotations_6fps/{video}/{obj:03d}/{frame:05d}.png   one PNG per object and annotated frame

Frames are decoded from the stored original at export time (ingest keeps only the annotated
frames), streaming with OpenCV: one frame in memory at a time. Each object has a PNG for every
annotated frame, all zeros where it is not visible, so Meta's evaluator (which skips each
object's first and last PNG) sees the same frames for every object. An object visible only on
the first or last annotated frame makes that evaluator fail, so it is left out and named in the
export's notes (``evaluable``).

The PNGs are palette images holding 0 and 1 with the DAVIS palette, as Meta's
``tools/vos_inference.py --per_obj_png_file`` writes SA-V predictions (see docs/DECISIONS.md);
every reader here and Meta's evaluator and loaders read any non-zero value as the object.
Masks are decoded from RLE here: a PNG needs pixels.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from annotator.datasets.common import DatasetError, ExportStats, VideoData, native_frames
from annotator.models import Project
from engine.safe_paths import safe_join
from segmentation.masks import decode_rle, write_palette_png

JPEG_QUALITY = 95


def export(project: Project, videos: Iterable[VideoData], out: Path, *, media: bool = True) -> ExportStats:
    """Write the folders; ``media=False`` leaves out the 24 fps frames (annotations only)."""
    stats = ExportStats()
    splits: dict[str, list[str]] = {}
    for video in videos:
        video = evaluable(video, stats)
        if video is None:
            continue
        splits.setdefault(video.split, []).append(video.name)
        if media:
            stats.files += write_native_frames(video, safe_join(out, "JPEGImages_24fps", video.name))
        stats.files += write_object_pngs(video, safe_join(out, "Annotations_6fps", video.name), stats)
        stats.videos += 1
    for split, names in splits.items():
        safe_join(out, f"{split}.txt").write_text("".join(f"{name}\n" for name in names))
        stats.files += 1
    return stats


def evaluable(video: VideoData, stats: ExportStats) -> VideoData | None:
    """The video with only the objects Meta's ``sav_evaluator`` can score, the others named in a note.

    The evaluator skips each object's first and last annotated frame and fails (AssertionError
    in ``consolidate``) on an object visible on none of the frames in between; such objects are
    left out, and a video left with none is left out whole.
    """
    inner = video.frame_indices[1:-1]
    kept = [m for m in video.masklets if any(m.visible(frame) is not None for frame in inner)]
    if len(kept) == len(video.masklets):
        return video
    kept_ids = {m.pk for m in kept}
    left_out = ", ".join(str(m.object_id) for m in video.masklets if m.pk not in kept_ids)
    stats.notes.append(f"{video.name}: object(s) {left_out} left out, visible only on the first or last annotated "
                       "frame, which Meta's sav_evaluator skips (it fails on an object it never sees)"
                       + ("; no object left, so the video is left out" if not kept else ""))
    return replace(video, masklets=kept) if kept else None


def write_native_frames(video: VideoData, folder: Path) -> int:
    """Decode every frame of the original video and write it as ``{index:05d}.jpg``; returns the count."""
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for written, frame in enumerate(native_frames(video), start=1):
        if not cv2.imwrite(str(folder / f"{written - 1:05d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            raise DatasetError(video.name, "frames", f"could not write frame {written - 1:05d}.jpg of the export")
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

