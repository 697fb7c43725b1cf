"""SA-V train JSON: the real example survives import -> export with the same fields, types, values and RLE."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command

from annotator.datasets import ExportFilters, ImportOptions, export_dataset, import_dataset
from annotator.datasets.sav import STRIDE_FIELD
from annotator.models import MaskFrame, Masklet, MaskletOrigin, MaskSource, Video
from annotator.services.masks import MaskWrite, save_mask_frames
from segmentation.masks import empty_rle, encode_rle

pytestmark = pytest.mark.django_db

ALL = ExportFilters(statuses=())
#: SA-V numbers the auto file's masklets from 0 too; one video here has one id space.
AUTO_SHIFT = 5


def test_sav_example_round_trip(sav_example, sav_video_dir, make_project, isolated_files, tmp_path):
    project = make_project()
    report = import_dataset(project, "sav", sav_example, ImportOptions(video_dir=sav_video_dir))
    assert report.errors == []
    assert (report.videos, report.created_videos, report.masklets) == (1, 1, 14)
    video = Video.objects.get(project=project, name="sav_000001")
    assert (video.frame_count, video.height, video.width, video.stride) == (483, 848, 480, 4)
    assert set(MaskFrame.objects.filter(masklet__video=video).values_list("source", flat=True)) == {"imported"}

    stats = export_dataset(project, "sav", tmp_path / "out", ALL, media=False)
    assert stats.files == 2
    for kind in ("manual", "auto"):
        original = json.loads((sav_example / f"sav_000001_{kind}.json").read_text())
        exported = json.loads((tmp_path / "out" / f"sav_000001_{kind}.json").read_text())
        assert list(exported) == [*original, STRIDE_FIELD], "Meta's fields in their order, then the stride"
        assert exported[STRIDE_FIELD] == 4
        shift = AUTO_SHIFT if kind == "auto" else 0
        assert exported["masklet_id"] == [i + shift for i in original["masklet_id"]]
        for name, value in original.items():
            if name == "masklet_id":
                continue
            assert exported[name] == value, name
            assert _types(exported[name]) == _types(value), f"{name}: same JSON types"


def _types(value):
    """The JSON type structure of a value (int vs float vs str vs null), lists walked."""
    if isinstance(value, list):
        return [_types(v) for v in value]
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    return type(value).__name__


@pytest.fixture
def small_video(project, isolated_files):
    return Video.objects.create(project=project, name="clip", status=Video.Status.READY, fps=24, frame_count=17,
                                stride=4, width=8, height=6, annotated_frame_count=5, environment="Outdoor")


def _mask(x0: int, x1: int):
    import numpy as np

    mask = np.zeros((6, 8), bool)
    mask[1:5, x0:x1] = True
    return encode_rle(mask)


def test_sav_fields_from_our_own_data(small_video, user, tmp_path):
    manual = Masklet.objects.create(video=small_video, object_id=3, status=Masklet.Status.APPROVED)
    # visible on annotated frames 1, 2 and 4 (native 4, 8, 16): first appearance 1, changes 2 (2->3 off, 3->4 on)
    save_mask_frames(manual, [MaskWrite(4, _mask(0, 2)), MaskWrite(8, _mask(0, 4)), MaskWrite(16, _mask(2, 8))],
                     source=MaskSource.MODEL)
    save_mask_frames(manual, [MaskWrite(8, _mask(0, 3))], source=MaskSource.HUMAN, author=user)
    save_mask_frames(manual, [MaskWrite(8, _mask(0, 4)), MaskWrite(16, _mask(2, 8))], source=MaskSource.HUMAN,
                     author=user)
    # an auto masklet generated here: its seed stability score (annotator.automasks) on every visible frame
    auto = Masklet.objects.create(video=small_video, object_id=7, type="auto", status=Masklet.Status.APPROVED,
                                  stability_score=0.9375)
    save_mask_frames(auto, [MaskWrite(0, _mask(6, 8)), MaskWrite(4, _mask(5, 8))], source=MaskSource.MODEL)
    # an imported SA-V auto masklet: its per-frame scores while a mask is the imported one; frame 8 is
    # changed here, and a masklet without a score of its own gets 1.0 there
    imported = Masklet.objects.create(video=small_video, object_id=8, type="auto", status=Masklet.Status.APPROVED)
    save_mask_frames(imported, [MaskWrite(4, _mask(1, 3)), MaskWrite(8, _mask(1, 3)), MaskWrite(12, _mask(1, 3))],
                     source=MaskSource.IMPORTED)
    MaskletOrigin.objects.create(masklet=imported, format="sav", source_file="clip_auto.json", source_id="0",
                                 stability_scores=[1.0, 0.5, 0.625, 0.75, 0.875])
    save_mask_frames(imported, [MaskWrite(8, _mask(1, 4))], source=MaskSource.HUMAN, author=user)
    Masklet.objects.create(video=small_video, object_id=9, status=Masklet.Status.DRAFT)  # not approved: left out

    export_dataset(small_video.project, "sav", tmp_path / "out", media=False)
    data = json.loads((tmp_path / "out" / "clip_manual.json").read_text())
    empty = empty_rle(6, 8)
    assert data["masklet_num"] == 1 and data["masklet_id"] == [3]
    assert len(data["masklet"]) == 5 and all(len(entry) == 1 for entry in data["masklet"])
    assert data["masklet"][0] == [empty] and data["masklet"][3] == [empty]
    assert data["masklet"][1] == [_mask(0, 2)] and data["masklet"][2] == [_mask(0, 4)]
    assert data["masklet_first_appeared_frame"] == [1.0]
    assert data["masklet_visibility_changes"] == [2]
    assert data["masklet_size_abs"] == [round((8 + 16 + 24) / 3, 10)]
    assert data["masklet_size_bucket"] == ["small"]
    assert data["masklet_edited_frame_count"] == [2]  # frames 8 and 16 had human revisions
    assert data["masklet_frame_count"] == [5]
    assert (data["video_frame_count"], data["video_duration"], data["video_resolution"]) == (17.0, 17 / 24, 48.0)
    assert data["video_environment"] == "Outdoor" and data["video_split"] == "train"
    assert data["masklet_stability_score"] == [None]
    auto_data = json.loads((tmp_path / "out" / "clip_auto.json").read_text())
    assert auto_data["masklet_id"] == [7, 8] and auto_data["masklet_first_appeared_frame"] == [0, 1]
    # frames x objects; 1.0 where the object is not visible, as in Meta's auto files
    assert auto_data["masklet_stability_score"] == [[0.9375, 1.0], [0.9375, 0.5], [1.0, 1.0], [1.0, 0.75],
                                                    [1.0, 1.0]]
    assert _types(auto_data["masklet_stability_score"]) == [["float", "float"]] * 5
    assert auto_data["masklet_edited_frame_count"] == [0, 1]


def test_cli_export_and_import(sav_example, sav_video_dir, make_project, isolated_files, tmp_path, capsys):
    project = make_project(slug="cli")
    call_command("import_dataset", str(sav_example / "sav_000001_manual.json"), project="cli", fmt="sav",
                 video_dir=str(sav_video_dir), status="approved")
    assert Masklet.objects.filter(video__project=project, status="approved").count() == 5
    assert MaskletOrigin.objects.filter(masklet__video__project=project).count() == 5
    call_command("export_dataset", project="cli", fmt="sav", out=str(tmp_path / "out"))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["sav_000001.mp4", "sav_000001_manual.json"]
    assert "exported 1 video(s), 5 masklet(s)" in capsys.readouterr().out
