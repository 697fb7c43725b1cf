"""Fixtures for dataset tests: a stand-in for SA-V's missing video, a synthetic project, exports to folders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from annotator.models import Masklet, MaskSource, Project, Video
from annotator.services.masks import MaskWrite, save_mask_frames
from annotator.services.videos import create_video_from_path, ingest_video
from fixtures.synthetic import SyntheticFrames, SyntheticSpec, object_labels, preset, write_video
from segmentation.masks import encode_rle

SAV_FRAMES, SAV_HEIGHT, SAV_WIDTH = 483, 848, 480  # sav_000001: 20.125 s at 24 fps, portrait


@pytest.fixture(scope="session")
def sav_video_dir(tmp_path_factory) -> Path:
    """``sav_000001.mp4``: a generated 483-frame 848x480 (height x width) 24 fps video for the example JSONs."""
    folder = tmp_path_factory.mktemp("sav-videos")
    writer = cv2.VideoWriter(str(folder / "sav_000001.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 24.0,
                             (SAV_WIDTH, SAV_HEIGHT))
    frame = np.zeros((SAV_HEIGHT, SAV_WIDTH, 3), np.uint8)
    for index in range(SAV_FRAMES):
        frame[:] = (index % 200, 60, 120)
        writer.write(frame)
    writer.release()
    return folder


@pytest.fixture
def synthetic_project(make_project, isolated_files, tmp_path) -> Callable[..., Project]:
    """``synthetic_project(preset="...", **spec overrides)``: a project with one ingested synthetic video whose
    ground-truth masks are stored as approved manual masklets (object id = synthetic object id)."""

    def make(name: str = "tiny", *, status: str = Masklet.Status.APPROVED, split: str = "val",
             **overrides) -> Project:
        project = make_project(labels=["ball", "box"])
        add_synthetic_video(project, preset(name, **overrides), tmp_path, status=status, split=split)
        return project

    return make


def add_synthetic_video(project: Project, spec: SyntheticSpec, folder: Path, *,
                        status: str = Masklet.Status.APPROVED, split: str = "val") -> Video:
    """Render ``spec`` to ``folder``, ingest it into ``project`` and store its ground truth as masklets."""
    path = folder / f"{spec.video_id}.mp4"
    write_video(spec, path)
    video = create_video_from_path(project, path, name=spec.video_id, schedule_ingest=False)
    video = ingest_video(video.id)
    assert video.status == Video.Status.READY, video.failure_reason
    Video.objects.filter(pk=video.pk).update(split=split)
    store_ground_truth(video, spec, status)
    return video


def store_ground_truth(video: Video, spec: SyntheticSpec, status: str) -> None:
    """The spec's exact visible masks on the video's annotated frames, one masklet per object."""
    frames = SyntheticFrames(spec)
    labels = object_labels(spec)
    writes: dict[int, list[MaskWrite]] = {}
    for index in video.annotated_frame_indices():
        for object_id, mask in frames.masks(index).items():
            if mask.any():
                writes.setdefault(object_id, []).append(MaskWrite(index, encode_rle(mask)))
    for object_id, object_writes in writes.items():
        masklet = Masklet.objects.create(video=video, object_id=object_id, label=labels[object_id], status=status)
        save_mask_frames(masklet, object_writes, source=MaskSource.MODEL)
