"""``manage.py import_dataset --project SLUG --format sav|coco|ytvis|davis PATH [--video-dir DIR]``.

Creates videos (a project video of the same name is reused; else ``{name}.<ext>`` or a frame
folder ``{name}/`` from ``--video-dir``; DAVIS brings its own frames), masklets and masks with
source ``imported``. Each video is imported all or nothing; a failing video is reported with
the file and field at fault and the others carry on. Exit status 1 if any video failed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from annotator.datasets import READERS, DatasetError, ImportOptions, import_dataset
from annotator.datasets.importing import DEFAULT_STATUS
from annotator.management.commands.export_dataset import project_or_error
from annotator.models import Masklet


class Command(BaseCommand):
    help = "Import a dataset (SA-V JSON, COCO, YouTube-VIS or DAVIS) into a project."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", metavar="PATH", help="a dataset file, or a folder (SA-V JSONs, DAVIS root)")
        parser.add_argument("--project", required=True, metavar="SLUG", help="the project's slug")
        parser.add_argument("--format", required=True, choices=list(READERS), dest="fmt")
        parser.add_argument("--video-dir", metavar="DIR",
                            help="where the videos are: {name}.mp4 (any video type) or {name}/ frame folders")
        parser.add_argument("--status", default=DEFAULT_STATUS, choices=Masklet.Status.values,
                            help=f"status of the imported masklets (default: {DEFAULT_STATUS}, the review queue)")
        parser.add_argument("--fps", type=float, default=24.0,
                            help="frame rate of videos built from frame folders (default 24, as DAVIS and SA-V)")
        parser.add_argument("--user", metavar="USERNAME", help="record this user as the importer")

    def handle(self, *args, path: str, project: str, fmt: str, video_dir: str | None, status: str, fps: float,
               user: str | None, **options) -> None:
        target = project_or_error(project)
        if video_dir and not Path(video_dir).is_dir():
            raise CommandError(f"--video-dir {video_dir}: no such folder")
        importer = None
        if user:
            try:
                importer = get_user_model().objects.get_by_natural_key(user)
            except get_user_model().DoesNotExist:
                raise CommandError(f"unknown user {user!r}") from None
        import_options = ImportOptions(video_dir=Path(video_dir) if video_dir else None, user=importer,
                                       status=status, fps=fps)
        bar_file = getattr(self.stderr, "_out", sys.stderr)
        with tqdm(desc=f"import {fmt}", unit="video", file=bar_file, disable=options["verbosity"] == 0 or None) as bar:
            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            try:
                report = import_dataset(target, fmt, path, import_options, progress=progress)
            except (DatasetError, ValueError) as exc:
                raise CommandError(str(exc)) from None
        if options["verbosity"] > 0:
            self.stdout.write(report.summary())
        for error in report.errors:
            self.stderr.write(self.style.ERROR(error))
        if report.errors:
            raise CommandError(f"{len(report.errors)} video(s) were not imported (nothing of them was stored)")
