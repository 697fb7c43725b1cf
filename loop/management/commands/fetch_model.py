"""Download a SAM 2 checkpoint, check it, register it (and with ``--promote`` serve it).

    manage.py fetch_model NAME [--project SLUG] [--promote]
    manage.py fetch_model --url URL --sha256 HEX --config CONFIG [--name NAME] [--project SLUG] [--promote]

``NAME`` is one of Meta's released checkpoints (``loop.fetch.OFFICIAL``). See ``loop.fetch``
for what is checked; every failure exits non-zero with what happened and how to place the file
by hand. ``--auto`` is what ``make run`` uses: nothing happens when a version is registered
already, and a failure is one line saying that the classical fallback serves.
"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotator.models import Project
from engine.models import ModelVersion
from loop import fetch


class Command(BaseCommand):
    help = "Download Meta's SAM 2 checkpoint NAME (or --url), check it, register it, and with --promote serve it."

    def add_arguments(self, parser):
        parser.add_argument("name", nargs="?", help=f"one of {', '.join(fetch.OFFICIAL)}")
        parser.add_argument("--url", help="any checkpoint address instead of NAME (needs --sha256 and --config)")
        parser.add_argument("--sha256", default="", help="expected sha256 of the file (required with --url)")
        parser.add_argument("--config", help="the SAM 2 config that builds the model (with --url)")
        parser.add_argument("--name", dest="version_name", default="",
                            help="file and version name with --url (default: the URL's file name)")
        parser.add_argument("--project", help="register for this project (slug); default: shared by every project")
        parser.add_argument("--promote", action="store_true", help="make it serve new sessions")
        parser.add_argument("--image-size", type=int, default=None,
                            help="input size to serve at (default MASKLET_SAM2_IMAGE_SIZE: 1024 on a GPU, less on CPU)")
        parser.add_argument("--timeout", type=float, default=fetch.DEFAULT_TIMEOUT,
                            help="seconds a connection or a read may take (default %(default)s)")
        parser.add_argument("--auto", action="store_true",
                            help="make run's mode: skip when a version is registered, fail in one line")

    def handle(self, *args, name, url, sha256, config, version_name, project, promote, image_size, timeout, auto,
               **options):
        if auto and ModelVersion.objects.exclude(status=ModelVersion.Status.RETIRED).exists():
            return
        quiet = options["verbosity"] == 0
        # make run's offline message is one line: lines wait until bytes arrive, and go if none do.
        self._held: list[str] | None = [] if auto else None
        self._quiet = quiet
        try:
            checkpoint = self._checkpoint(name, url, sha256, config, version_name)
            target = self._project(project)
            version = fetch.fetch_and_register(
                checkpoint, project=target, promote=promote, sha256=sha256, image_size=image_size,
                progress=None if quiet else self._bar(checkpoint), timeout=timeout, say=self._say)
        except fetch.FetchError as error:
            if auto:
                raise CommandError(
                    f"No SAM 2 model ({str(error).split('. To place it by hand')[0]}): the classical fallback "
                    "(low quality) serves. Fetch SAM 2 later: `.venv/bin/python manage.py fetch_model "
                    "sam2.1_hiera_tiny --promote`, or Download on a project's Models page.") from None
            raise CommandError(str(error)) from None
        finally:
            self._close_bar()
        self._release()
        if not quiet:
            self.stdout.write(self.style.SUCCESS(
                f"{version.name}: version {version.pk}, {version.status}, sha256 {version.sha256}"))

    @staticmethod
    def _checkpoint(name, url, sha256, config, version_name) -> fetch.Checkpoint:
        if url:
            if name:
                raise fetch.FetchError("give either a NAME or --url, not both")
            if not sha256 or not config:
                raise fetch.FetchError("--url needs --sha256 (the file's expected digest) and --config "
                                       "(e.g. sam2.1_hiera_t)")
            return fetch.custom(url, config, version_name)
        if not name:
            raise fetch.FetchError(f"name a checkpoint ({', '.join(fetch.OFFICIAL)}) or give --url")
        return fetch.official(name)

    @staticmethod
    def _project(slug):
        if slug is None:
            return None
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise fetch.FetchError(f"no project {slug!r}")
        return project

    _progress_bar: tqdm | None = None

    def _say(self, line: str) -> None:
        if self._quiet:
            return
        if self._held is not None:
            self._held.append(line)
            return
        self.stdout.write(line)

    def _release(self) -> None:
        held, self._held = self._held or [], None
        for line in held:
            self._say(line)

    def _bar(self, checkpoint: fetch.Checkpoint):
        def update(done: int, total: int | None) -> None:
            if self._progress_bar is None:
                self._release()
                self._progress_bar = tqdm(desc=checkpoint.filename, unit="B", unit_scale=True, unit_divisor=1024,
                                          file=getattr(self.stderr, "_out", sys.stderr))
            bar = self._progress_bar
            if total is not None and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        return update

    def _close_bar(self) -> None:
        if self._progress_bar is not None:
            self._progress_bar.close()
            self._progress_bar = None
