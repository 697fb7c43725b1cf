"""``manage.py export_dataset --project SLUG --format FORMAT --out DIR [filters]``: write a dataset to a folder.

Formats: ``sav`` (SA-V train JSON per video and type), ``sav-folders`` (SA-V val/test layout,
every native frame decoded from the original video), ``coco``, ``ytvis`` and ``davis`` (palette
label maps: where masks overlap, the higher object id wins). Default: approved masklets only.
The dataset is written beside ``--out`` and moved into place when complete, so a failed export
leaves ``--out`` as it was. Exit status 0 on success, 1 with a plain message on any error.
"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from annotator.datasets import EXPORTERS, DatasetError, ExportFilters, export_dataset
from annotator.datasets.common import MASKLET_STATUSES
from annotator.models import MaskletType, Project, Split


class Command(BaseCommand):
    help = ("Export a project's masklets as a dataset. Formats: sav, sav-folders, coco, ytvis, davis "
            "(DAVIS label maps hold one object per pixel: where masks overlap, the higher object id wins).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", required=True, metavar="SLUG", help="the project's slug")
        parser.add_argument("--format", required=True, choices=list(EXPORTERS), dest="fmt")
        parser.add_argument("--out", required=True, metavar="DIR", help="a new or empty folder")
        parser.add_argument("--status", nargs="+", default=["approved"], choices=[*MASKLET_STATUSES, "all"],
                            help="masklet statuses to export (default: approved; 'all' for every status)")
        parser.add_argument("--split", choices=Split.values, help="only videos of this split")
        parser.add_argument("--type", choices=MaskletType.values, dest="kind", help="only manual or auto masklets")
        parser.add_argument("--videos", nargs="+", metavar="NAME", help="only these videos (by name)")
        parser.add_argument("--no-media", action="store_true",
                            help="annotations only: no frames or original videos")

    def handle(self, *args, project: str, fmt: str, out: str, status: list[str], split: str | None,
               kind: str | None, videos: list[str] | None, no_media: bool, **options) -> None:
        target = project_or_error(project)
        filters = ExportFilters(statuses=() if "all" in status else tuple(status), split=split, type=kind,
                                videos=tuple(videos or ()))
        bar_file = getattr(self.stderr, "_out", sys.stderr)  # tqdm wants the raw stream
        with tqdm(desc=f"export {fmt}", unit="video", file=bar_file, disable=options["verbosity"] == 0 or None) as bar:
            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            try:
                stats = export_dataset(target, fmt, out, filters, media=not no_media, progress=progress)
            except (DatasetError, ValueError, OSError) as exc:
                raise CommandError(str(exc)) from None
        if stats.videos == 0:
            self.stderr.write(self.style.WARNING("nothing exported: no ready video has masklets passing the filters "
                                                 f"(statuses: {', '.join(filters.statuses) or 'all'})"))
        if options["verbosity"] > 0:
            self.stdout.write(f"exported {stats.summary()} to {out}")


def project_or_error(slug: str) -> Project:
    """The project with this slug, or a CommandError that lists the existing ones."""
    try:
        return Project.objects.get(slug=slug)
    except Project.DoesNotExist:
        known = ", ".join(Project.objects.values_list("slug", flat=True)) or "none yet"
        raise CommandError(f"unknown project {slug!r} (existing projects: {known})") from None
