"""``manage.py seed_demo``: the demo project with a few synthetic videos, ready to annotate.

Idempotent: the project, each video and each membership is created only when missing, so it
can run on every start. Videos are generated with ``fixtures.synthetic`` (exact ground truth
next to them under ``$MASKLET_DATA_DIR/demo/``) and ingested in this process, not through the
queue, so the demo is ready when the command returns. A demo video left unfinished by an
interrupted run is ingested again. Users are not created here (see ``bootstrap_admin``);
every superuser becomes an admin of the demo project.

When there is more than one demo video, the last one also gets its exact ground truth as
approved masklets (source ``imported``): a finished example to look at, and data for export,
review and training from the start. The others are left for people to annotate.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from annotator.models import Masklet, MaskSource, Membership, Project, Role, Video
from annotator.services.masks import MaskWrite, save_mask_frames
from annotator.services.videos import create_video_from_path, ingest_video
from fixtures.synthetic import KIND_LABELS, PRESETS, SyntheticFrames, SyntheticSpec, generate, object_labels
from segmentation.masks import encode_rle

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
        for position, spec in enumerate(specs, start=1):
            video = self._video(project, spec, out_dir)
            if position == len(specs) > 1:
                self._ground_truth(video, spec)
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

    def _video(self, project: Project, spec: SyntheticSpec, out_dir: Path) -> Video:
        video = Video.objects.filter(project=project, name=spec.video_id).first()
        if video is not None and video.status == Video.Status.READY and video.frames.exists():
            self._say(f"video {video.name} is ready already")
            return video
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
        return video

    @transaction.atomic
    def _ground_truth(self, video: Video, spec: SyntheticSpec) -> None:
        """Store the video's exact masks as approved masklets, once (a video with masklets is left alone)."""
        if video.masklets.exists():
            return
        frames = SyntheticFrames(spec, stride=video.stride)
        writes: dict[int, list[MaskWrite]] = {object_id: [] for object_id in object_labels(spec)}
        for position, native in enumerate(video.annotated_frame_indices()):
            for object_id, mask in frames.masks(position).items():
                if mask.any():
                    writes[object_id].append(MaskWrite(native, encode_rle(mask)))
        labels = object_labels(spec)
        for object_id, object_writes in writes.items():
            if not object_writes:
                continue
            masklet = Masklet.objects.create(video=video, object_id=object_id, label=labels[object_id],
                                             status=Masklet.Status.APPROVED)
            save_mask_frames(masklet, object_writes, source=MaskSource.IMPORTED)
        self._say(f"stored the ground truth of {video.name} as approved masklets")

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
