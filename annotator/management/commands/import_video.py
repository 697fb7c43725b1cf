"""``manage.py import_video --project SLUG PATH [PATH...] [--wait] [--sync]``: import server-side video files.

Each file is copied into storage and ingested. Services mode queues the ingest on the ``cpu``
queue (``--wait`` follows it to the end); embedded mode, or ``--sync``, ingests in this process,
since no separate worker would pick the work up. A bad file is reported by name and the other
files carry on; the command exits non-zero if any file was refused or failed.
"""

from __future__ import annotations

import sys
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from tqdm import tqdm

from annotator.models import Project, Video
from annotator.services.videos import VideoRejected, create_video_from_path, ingest_video

POLL_SECONDS = 0.25


class Command(BaseCommand):
    help = "Import video files from this machine into a project and ingest them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", metavar="PATH", help="video files on this machine")
        parser.add_argument("--project", required=True, metavar="SLUG", help="the project's slug")
        parser.add_argument("--user", metavar="USERNAME", help="record this user as the uploader")
        parser.add_argument("--name", help="video name (one PATH only; default: the file name's stem)")
        parser.add_argument("--wait", action="store_true", help="wait until every queued ingest has finished")
        parser.add_argument("--sync", action="store_true",
                            help="ingest in this process instead of the cpu queue (always so in embedded mode)")
        parser.add_argument("--timeout", type=float, default=3600.0, help="seconds --wait waits per video")

    def handle(self, *args, paths: list[str], project: str, user: str | None, name: str | None, wait: bool,
               sync: bool, timeout: float, **options) -> None:
        try:
            target = Project.objects.get(slug=project)
        except Project.DoesNotExist:
            known = ", ".join(Project.objects.values_list("slug", flat=True)) or "none yet"
            raise CommandError(f"unknown project {project!r} (existing projects: {known})") from None
        uploader = self._user(user)
        if name and len(paths) > 1:
            raise CommandError("--name needs exactly one PATH")
        inline = sync or settings.EMBEDDED
        show = options["verbosity"] > 0
        errors: list[str] = []
        queued: list[tuple[str, Video]] = []
        for path in tqdm(paths, desc="files", unit="file", file=self._bar_file, disable=not show or None, position=0):
            try:
                with transaction.atomic():
                    video = create_video_from_path(target, path, uploader, name, schedule_ingest=not inline)
            except VideoRejected as exc:
                errors.append(self._error("; ".join(exc.messages)))
                continue
            if inline:
                video = self._ingest_here(video, path, show)
                self._report(video, path, errors)
            else:
                queued.append((path, video))
                self._note(f"{path}: queued as video {video.id} ({video.name})")
        if wait and not inline:
            for path, video in queued:
                self._report(self._wait_for(video, path, show, timeout), path, errors)
        if errors:
            raise CommandError(f"{len(errors)} of {len(paths)} file(s) failed:\n  " + "\n  ".join(errors))

    def _user(self, username: str | None):
        if not username:
            return None
        try:
            return get_user_model().objects.get_by_natural_key(username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"unknown user {username!r}") from None

    def _ingest_here(self, video: Video, path: str, show: bool) -> Video:
        with tqdm(desc=video.name, unit="frame", file=self._bar_file, disable=not show or None, leave=False,
                  position=1) as bar:
            def progress(decoded: int, expected: int) -> None:
                bar.total = max(expected, decoded)
                bar.update(decoded - bar.n)

            return ingest_video(video.id, progress_callback=progress)

    def _wait_for(self, video: Video, path: str, show: bool, timeout: float) -> Video:
        deadline = time.monotonic() + timeout
        with tqdm(desc=video.name, unit="frame", file=self._bar_file, disable=not show or None, leave=False,
                  position=1) as bar:
            while True:
                video.refresh_from_db()
                if video.frame_count:
                    bar.total = video.frame_count
                    bar.update(int(video.progress * video.frame_count) - bar.n)
                if video.status in (Video.Status.READY, Video.Status.FAILED):
                    return video
                if time.monotonic() > deadline:
                    raise CommandError(f"{path}: still {video.status} after {timeout:g} s (is a cpu worker running?)")
                time.sleep(POLL_SECONDS)

    def _report(self, video: Video, path: str, errors: list[str]) -> None:
        if video.status == Video.Status.FAILED:
            errors.append(self._error(f"{path}: {video.failure_reason}"))
        elif video.status == Video.Status.READY:
            self._note(f"{path}: ready as video {video.id} ({video.name}): {video.frame_count} frames, "
                       f"{video.annotated_frame_count} annotated (every {video.stride})")

    def _error(self, message: str) -> str:
        self.stderr.write(self.style.ERROR(message))
        return message

    def _note(self, message: str) -> None:
        if self.verbosity > 0:
            self.stdout.write(message)

    def execute(self, *args, **options):
        self.verbosity = options.get("verbosity", 1)
        # tqdm writes carriage returns: give it the raw stream, not Django's newline-adding wrapper.
        self._bar_file = getattr(self.stderr, "_out", sys.stderr)
        return super().execute(*args, **options)
