"""A project with synthetic train and val videos whose approved masklets are the exact ground truth."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import pytest
from django.contrib.auth import get_user_model

from annotator.models import Masklet, Membership, Project, Role, Video
from annotator.services.masks import MaskWrite, save_mask_frames
from fixtures.synthetic import SyntheticSpec, render_frame
from segmentation.masks import encode_rle

#: Small enough that a run + evaluation takes seconds on CPU.
TINY = {"width": 64, "height": 48, "num_frames": 9, "num_objects": 1}
STRIDE = 3


def add_synthetic_video(project: Project, seed: int, split: str, status: str = Masklet.Status.APPROVED) -> Video:
    """A ready video (frames on disk at stride 3) with each object as a masklet of ``status``."""
    spec = SyntheticSpec(seed=seed, noise=0, pan=0, name=f"synth{seed}", **TINY)
    video = Video.objects.create(project=project, name=spec.name, status=Video.Status.READY, fps=24,
                                 frame_count=spec.num_frames, stride=STRIDE, width=spec.width, height=spec.height,
                                 annotated_frame_count=len(range(0, spec.num_frames, STRIDE)), split=split)
    Path(video.frames_dir).mkdir(parents=True, exist_ok=True)
    masks: dict[int, list[MaskWrite]] = {}
    for index in video.annotated_frame_indices():
        rgb, visible = render_frame(spec, index)
        cv2.imwrite(str(video.frames_dir / f"{index:05d}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        for oid, mask in visible.items():
            masks.setdefault(oid, []).append(MaskWrite(index, encode_rle(mask)))
    for oid, writes in masks.items():
        masklet = Masklet.objects.create(video=video, object_id=oid, status=status)
        save_mask_frames(masklet, writes, source="human")
    return video


@pytest.fixture
def loop_settings_small(settings, tmp_path):
    """Tiny, fast training and evaluation; files under tmp_path."""
    settings.MODELS_ROOT = tmp_path / "models"
    settings.FRAMES_ROOT = tmp_path / "frames"
    settings.LOOP_TRAIN_STEPS = 2
    settings.LOOP_IMAGE_SIZE = 64
    settings.LOOP_LR = 1e-3
    settings.LOOP_CLIP_LENGTH = 2
    settings.LOOP_EVAL_CLICKS = 1
    settings.LOOP_EVAL_PROMPTED_FRAMES = 2
    settings.LOOP_EVAL_CLICK_BUDGET = 2
    settings.LOOP_PROGRESS_EVERY_S = 0
    settings.DEVICE = "cpu"
    return settings


@pytest.fixture
def loop_project(db, loop_settings_small) -> Callable[..., Project]:
    """``loop_project(train=2, val=1)``: an admin-owned project with approved synthetic masklets."""

    def make(train: int = 2, val: int = 1, slug: str = "loop") -> Project:
        admin = get_user_model().objects.create_user(username=f"{slug}-admin", password="x")
        project = Project.objects.create(name=slug, slug=slug)
        Membership.objects.create(project=project, user=admin, role=Role.ADMIN)
        for i in range(train):
            add_synthetic_video(project, 10 + i, "train")
        for i in range(val):
            add_synthetic_video(project, 50 + i, "val")
        return project

    return make
