"""Fixtures for team tests: a project with one person per role and a READY synthetic video on disk."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import cv2
import numpy as np
import pytest
from django.utils import timezone

from annotator.models import Masklet, Role, Video
from annotator.services.annotation import create_masklet, submit_masklet
from annotator.services.masks import MaskWrite, save_mask_frames
from fixtures.synthetic import SyntheticFrames, SyntheticSpec
from segmentation.masks import encode_rle


@dataclass
class Team:
    project: Any
    admin: Any
    annotator: Any
    annotator2: Any
    reviewer: Any
    reviewer2: Any


@pytest.fixture
def team(make_user, make_project) -> Team:
    people = {name: make_user(name) for name in ("boss", "ann", "ann2", "rev", "rev2")}
    project = make_project(members={people["boss"]: Role.ADMIN, people["ann"]: Role.ANNOTATOR,
                                    people["ann2"]: Role.ANNOTATOR, people["rev"]: Role.REVIEWER,
                                    people["rev2"]: Role.REVIEWER})
    return Team(project, people["boss"], people["ann"], people["ann2"], people["rev"], people["rev2"])


@pytest.fixture
def synthetic_video(settings, tmp_path) -> Callable[..., tuple[Video, SyntheticFrames]]:
    """``synthetic_video(project, spec=None, stride=4)``: a READY video whose frames are a synthetic scene."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.FRAMES_ROOT = tmp_path / "frames"

    def make(project, spec: SyntheticSpec | None = None, stride: int = 4, name: str = "synth") -> tuple[Video, Any]:
        spec = spec or SyntheticSpec(seed=3, width=320, height=180, num_frames=24, num_objects=4)
        frames = SyntheticFrames(spec, stride=stride)
        video = Video.objects.create(project=project, name=name, status=Video.Status.READY, fps=spec.fps,
                                     frame_count=spec.num_frames, stride=stride, width=spec.width,
                                     height=spec.height, annotated_frame_count=len(frames))
        video.frames_dir.mkdir(parents=True)
        for index in range(len(frames)):
            cv2.imwrite(str(video.frames_dir / f"{frames.native_index(index):05d}.jpg"),
                        cv2.cvtColor(frames[index], cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        return video, frames

    return make


@pytest.fixture
def later(monkeypatch) -> Callable[[float], Any]:
    """``later(seconds)``: from now on the clock reads that many seconds after the test began; returns that time."""
    start = timezone.now()

    def shift(seconds: float):
        moment = start + timedelta(seconds=seconds)
        monkeypatch.setattr(timezone, "now", lambda: moment)
        return moment

    return shift


def _videos(project, count: int, prefix: str = "v", status: str = Video.Status.READY) -> list[Video]:
    return [Video.objects.create(project=project, name=f"{prefix}{i}", status=status, frame_count=8, stride=4,
                                 width=16, height=12, annotated_frame_count=2) for i in range(count)]


def _submitted(video: Video, user) -> Masklet:
    masklet = create_masklet(video, user)
    mask = np.zeros((12, 16), bool)
    mask[2:8, 3:9] = True
    save_mask_frames(masklet, [MaskWrite(0, encode_rle(mask))], source="human", author=user)
    return submit_masklet(masklet, user)


@pytest.fixture
def make_videos() -> Callable[..., list[Video]]:
    """``make_videos(project, count, prefix="v", status=READY)``: 16x12 videos ``v0, v1, ...`` of two
    annotated frames (no frame files)."""
    return _videos


@pytest.fixture
def make_submitted() -> Callable[[Video, Any], Masklet]:
    """``make_submitted(video, user)``: a masklet the user made (one human mask on frame 0) and submitted."""
    return _submitted
