"""``manage.py seed_demo``: the demo project with a few synthetic videos, ready to annotate.

Idempotent: the project, each video and each membership is created only when missing, so it
can run on every start. Videos are generated with ``fixtures.synthetic`` (exact ground truth
next to them under ``$MASKLET_DATA_DIR/demo/``) and ingested in this process, not through the
queue, so the demo is ready when the command returns. A demo video left unfinished by an
interrupted run is ingested again. Users are not created here (see ``bootstrap_admin``);
every superuser becomes an admin of the demo project.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from annotator.models import Membership, Project, Role, Video
from annotator.services.videos import create_video_from_path, ingest_video
from fixtures.synthetic import KIND_LABELS, PRESETS, SyntheticSpec, generate, object_labels

DEMO_SLUG = "demo"
DEMO_VIDEOS = 3


def demo_specs(preset_name: str = "demo", count: int = DEMO_VIDEOS) -> list[SyntheticSpec]:
    """The demo videos: one preset, different seeds (different scenes), names demo_01, demo_02, ..."""
    # dataclasses.replace, not preset(): preset()'s first parameter is also called ``name``.
    return [replace(PRESETS[preset_name], seed=seed, name=f"demo_{seed:02d}") for seed in range(1, count + 1)]


class Command(BaseCommand):
    help = "Create the demo project with synthetic videos (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--preset", default="demo", choices=sorted(PRESETS),
                            help="synthetic preset of the demo videos (default: demo, 640x360)")
        parser.add_argument("--videos", type=int, default=DEMO_VIDEOS, help="how many demo videos")

    def handle(self, *args, preset: str, videos: int, **options) -> None:
        if not 1 <= videos <= 20:
            raise CommandError("--videos must be between 1 and 20")
        specs = demo_specs(preset, videos)
        project = self._project(specs)
        out_dir = Path(settings.DATA_DIR) / "demo"
        for spec in specs:
            self._video(project, spec, out_dir)
        self._memberships(project)

    def _project(self, specs: list[SyntheticSpec]) -> Project:
        labels = sorted({label for spec in specs for label in object_labels(spec).values()},
                        key=list(KIND_LABELS.values()).index)
        project, created = Project.objects.get_or_create(
            slug=DEMO_SLUG,
            defaults={"name": "Demo", "labels": labels, "annotation_fps": 6,
                      "description": "Synthetic videos with exact ground truth, made by seed_demo."},
        )
        if not created:
            missing = [label for label in labels if label not in project.labels]
            if missing:
                project.labels = [*project.labels, *missing]
                project.save(update_fields=["labels"])
        self._say(f"{'created' if created else 'found'} project {project.slug!r}")
        return project

    def _video(self, project: Project, spec: SyntheticSpec, out_dir: Path) -> None:
        video = Video.objects.filter(project=project, name=spec.video_id).first()
        if video is not None and video.status == Video.Status.READY and video.frames_dir.is_dir():
            self._say(f"video {video.name} is ready already")
            return
        if video is None:
            path = out_dir / f"{spec.video_id}.mp4"
            # generate() writes the JSON metadata last: without it, an earlier run was interrupted.
            if not (path.is_file() and (out_dir / f"{spec.video_id}.json").is_file()):
                self._say(f"generating {path}")
                generate(spec, out_dir, layout="sav", stride=4, frames=False)
            with transaction.atomic():
                video = create_video_from_path(project, path, None, spec.video_id, schedule_ingest=False)
        self._say(f"ingesting {video.name}")
        video = ingest_video(video.id)
        if video.status != Video.Status.READY:
            raise CommandError(f"demo video {video.name} failed to ingest: {video.failure_reason}")

    def _memberships(self, project: Project) -> None:
        for user in get_user_model().objects.filter(is_superuser=True, is_active=True):
            membership, created = Membership.objects.get_or_create(project=project, user=user,
                                                                   defaults={"role": Role.ADMIN})
            if not created and membership.role != Role.ADMIN:
                membership.role = Role.ADMIN
                membership.save(update_fields=["role"])
            if created:
                self._say(f"{user} is now admin of {project.slug!r}")

    def _say(self, message: str) -> None:
        if self.verbosity > 0:
            self.stdout.write(message)

    def execute(self, *args, **options):
        self.verbosity = options.get("verbosity", 1)
        return super().execute(*args, **options)
