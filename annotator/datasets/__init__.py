"""Datasets out and in: SA-V (train JSON and val/test folders), COCO, YouTube-VIS and DAVIS.

One module per format (``sav``, ``sav_folders``, ``coco``, ``ytvis``, ``davis``), each with an
``export(project, videos, out, media=...)`` writing a stream of ``common.VideoData`` (one video
in memory at a time) and, where the format can be imported, a ``read(path)`` that checks the
files and returns the videos found. ``export_dataset`` and ``import_dataset`` are what the CLI
and the web jobs (``annotator.datasets.jobs``) call.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from annotator.datasets import coco, davis, sav, sav_folders, ytvis
from annotator.datasets.common import (
    DatasetError,
    ExportFilters,
    ExportStats,
    Progress,
    iter_videos,
    select_video_ids,
)
from annotator.datasets.importing import ImportOptions, ImportReport, import_videos
from annotator.models import Project

EXPORTERS: dict[str, Callable[..., ExportStats]] = {
    "sav": sav.export,
    "sav-folders": sav_folders.export,
    "coco": coco.export,
    "ytvis": ytvis.export,
    "davis": davis.export,
}
READERS = {"sav": sav.read, "coco": coco.read, "ytvis": ytvis.read, "davis": davis.read}
#: Formats that write boxes: only they read the stored bbox (a JSON column, the costliest to load).
WITH_BBOX = {"coco", "ytvis"}

__all__ = ["EXPORTERS", "READERS", "DatasetError", "ExportFilters", "ExportStats", "ImportOptions", "ImportReport",
           "export_dataset", "import_dataset"]


def export_dataset(project: Project, fmt: str, out: str | Path, filters: ExportFilters | None = None, *,
                   media: bool = True, progress: Progress | None = None) -> ExportStats:
    """Export the project's masklets passing ``filters`` to the empty or new folder ``out``.

    ``media`` adds the pixels each format ships (frames, original videos); without it only the
    annotations are written. ``progress(videos done, videos in all)`` is called after each video.
    The export is written to a hidden folder beside ``out`` and renamed to ``out`` only when it
    is complete: a failed export leaves ``out`` as it was, never a partial dataset that looks whole.
    """
    if fmt not in EXPORTERS:
        raise ValueError(f"unknown export format {fmt!r}: choose one of {', '.join(EXPORTERS)}")
    out = Path(os.path.abspath(out))  # "." and "x/.." get a real name and parent
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetError(out, "", "the output folder must be new or empty")
    filters = filters or ExportFilters()
    video_ids = select_video_ids(project, filters)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:12]}"
    partial.mkdir()  # not mkdtemp: the export is an ordinary folder (umask), not a private one
    try:
        if progress is not None:
            progress(0, len(video_ids))
        videos = iter_videos(video_ids, filters, with_bbox=fmt in WITH_BBOX, progress=progress)
        stats = EXPORTERS[fmt](project, videos, partial, media=media)
        if out.is_dir():
            out.rmdir()  # empty (checked above); if something was put there since, this fails and nothing moves
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return stats


def import_dataset(project: Project, fmt: str, path: str | Path, options: ImportOptions | None = None, *,
                   progress: Progress | None = None) -> ImportReport:
    """Import a dataset file or folder; each video all or nothing (see ``annotator.datasets.importing``)."""
    if fmt not in READERS:
        raise ValueError(f"unknown import format {fmt!r}: choose one of {', '.join(READERS)}")
    path = Path(path)
    if not path.exists():
        raise DatasetError(path, "", "no such file or folder")
    pending = READERS[fmt](path)
    return import_videos(project, pending, replace(options or ImportOptions(), format=fmt), progress)
