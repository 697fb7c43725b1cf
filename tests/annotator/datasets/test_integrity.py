"""Nothing escapes its folder, every file error is named, exports are copies, and Meta's tools can read our SA-V.

Attack cases: names and splits with ``../``, absolute paths, NUL, newlines and very long names,
symlinks out of an import folder; a stored unsafe name (from before the validators) at export.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from annotator.datasets import EXPORTERS, DatasetError, ExportFilters, ImportOptions, export_dataset, import_dataset
from annotator.datasets.davis import frame_numbering
from annotator.datasets.jobs import run_job
from annotator.datasets.sav import STRIDE_FIELD
from annotator.models import DatasetJob, MaskFrame, Masklet, Membership, Role, Video
from segmentation.masks import empty_rle, read_palette_png
from tests.annotator.datasets.test_bad_inputs import make_davis, nothing_imported, sav_doc, square, videos, write

pytestmark = pytest.mark.django_db

ALL = ExportFilters(statuses=())
__all__ = ["videos"]  # the fixture, shared with test_bad_inputs
NAME_ATTACKS = ["../../x", "/tmp/abs", "a/b", "a\x00b", "a\nb", "x" * 300, ".."]


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")} if folder.exists() else set()


# -- names and splits from dataset files ------------------------------------------------------


@pytest.mark.parametrize("split", ["../../x", "/abs", "train\x00", "x" * 100])
def test_a_sav_split_that_is_not_a_split_is_refused(project, videos, isolated_files, tmp_path, split):
    path = write(tmp_path, "clip_manual.json", sav_doc(video_split=split))
    report = import_dataset(project, "sav", path, ImportOptions(video_dir=videos))
    assert report.videos == 0 and report.errors[0].startswith(f"{path}: video_split: unknown split")
    nothing_imported(project)


@pytest.mark.parametrize("name", NAME_ATTACKS)
def test_a_sav_video_id_that_is_not_a_safe_name_is_refused_before_any_file_is_read(project, videos, isolated_files,
                                                                                  tmp_path, name):
    before = files_under(tmp_path)
    path = write(tmp_path, "clip_manual.json", sav_doc(video_id=name))
    report = import_dataset(project, "sav", path, ImportOptions(video_dir=videos))
    assert report.videos == 0 and f"{path}: video: invalid video name" in report.errors[0]
    nothing_imported(project)
    assert files_under(tmp_path) - before == {path}


def test_a_coco_video_name_pointing_at_another_folder_reads_nothing_and_leaves_nothing(project, isolated_files,
                                                                                      tmp_path):
    """The name ``../other/frames`` used to pack another project's frame folder into ``<folder>.mkv``."""
    other = tmp_path / "other" / "frames"
    other.mkdir(parents=True)
    for index in range(3):
        cv2.imwrite(str(other / f"{index:05d}.jpg"), np.full((48, 64, 3), 90, np.uint8))
    video_dir = tmp_path / "dataset"
    video_dir.mkdir()
    doc = {"images": [{"id": 1, "file_name": "../other/frames/00000.jpg", "video_name": "../other/frames",
                       "frame_index": 0, "height": 48, "width": 64}],
           "annotations": [{"id": 1, "image_id": 1, "segmentation": square(), "track_id": 1}]}
    path = write(video_dir, "annotations.json", doc)
    before = files_under(tmp_path)
    report = import_dataset(project, "coco", path, ImportOptions(video_dir=video_dir))
    assert report.videos == 0 and "video: invalid video name '../other/frames'" in report.errors[0]
    assert files_under(tmp_path) == before
    nothing_imported(project)


def test_a_link_in_the_video_folder_that_leads_elsewhere_is_refused(project, isolated_files, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cv2.imwrite(str(elsewhere / "00000.jpg"), np.full((48, 64, 3), 90, np.uint8))
    video_dir = tmp_path / "dataset"
    video_dir.mkdir()
    (video_dir / "clip").symlink_to(elsewhere)
    path = write(video_dir, "clip_manual.json", sav_doc())
    report = import_dataset(project, "sav", path, ImportOptions(video_dir=video_dir))
    assert report.videos == 0 and report.errors == ["clip: clip leads outside its folder (a link points elsewhere)"]
    nothing_imported(project)


# -- stored unsafe names at export ------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../x", "/tmp/masklet-abs", "a/b", "a\nb"])
def test_no_exporter_writes_outside_its_folder_for_a_stored_unsafe_name(synthetic_project, tmp_path, name):
    project = synthetic_project("tiny")
    Video.objects.filter(project=project).update(name=name)  # stored before names were checked
    base = tmp_path / "exports"
    before = files_under(tmp_path)
    for fmt in EXPORTERS:
        with pytest.raises(DatasetError, match="cannot be a file name: rename the video"):
            export_dataset(project, fmt, base / "deep" / fmt, ALL)
    assert {p for p in files_under(tmp_path) - before if not p.is_dir()} == set()
    assert not list(Path("/tmp").glob("masklet-abs*"))


def test_a_web_export_of_a_project_whose_slug_starts_with_a_dash(synthetic_project, make_user):
    project = synthetic_project("tiny")
    project.slug = "-lead"
    project.save()
    job = DatasetJob.objects.create(project=project, kind=DatasetJob.Kind.EXPORT, format="coco",
                                    created_by=make_user("ada"), options={"filters": ALL.to_json(), "media": False})
    job = run_job(job.id)
    assert job.status == DatasetJob.Status.DONE, job.error
    assert job.file == f"exports/{job.id}/lead-coco-{job.id}.zip"


# -- errors name files, never server folders --------------------------------------------------


def test_web_import_errors_show_no_server_paths(project, make_user, isolated_files):
    admin = make_user("ada")
    Membership.objects.create(project=project, user=admin, role=Role.ADMIN)
    client = Client()
    client.force_login(admin)
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("data/clip_manual.json", json.dumps(sav_doc(masklet_num="two")))
        archive.writestr("data/other_manual.json", "{broken")
    uploads = [("sav.zip", bundle.getvalue()), ("..json", b"{broken"),
               ("clip_manual.json", json.dumps(sav_doc()).encode())]
    for name, content in uploads:
        client.post(reverse("dataset-import", args=[project.slug]),
                    {"format": "sav", "status": "submitted", "file": SimpleUploadedFile(name, content)})
        job = run_job(DatasetJob.objects.filter(project=project).latest("id").id)
        shown = job.error + job.message
        assert job.status == DatasetJob.Status.FAILED and shown, name
        for folder in (tempfile.gettempdir(), str(settings.DATA_DIR), str(settings.MEDIA_ROOT)):
            assert folder not in shown, (name, shown)
    assert "data/clip_manual.json: masklet_num: expected int" in DatasetJob.objects.filter(
        project=project).earliest("id").error


# -- DAVIS: every file error caught and named, the other sequences go on ----------------------


def test_davis_sequence_with_an_empty_first_jpeg_fails_alone_and_names_it(project, isolated_files, tmp_path, settings):
    root = tmp_path / "davis"
    for name in ("a", "b", "c"):
        make_davis(root, sequence=name)
    (root / "JPEGImages" / "480p" / "b" / "00000.jpg").write_bytes(b"")
    report = import_dataset(project, "davis", root)
    assert report.videos == 2 and len(report.errors) == 1
    assert "JPEGImages/480p/b: unreadable frames" in report.errors[0] and "00000.jpg" in report.errors[0]
    assert sorted(Video.objects.filter(project=project).values_list("name", flat=True)) == ["a", "c"]
    stored = {p.name for p in Path(settings.FRAMES_ROOT).iterdir()}
    assert stored == {str(v.pk) for v in Video.objects.filter(project=project)}, "nothing left of b"


def test_davis_sequence_with_a_broken_middle_jpeg_fails_alone(project, isolated_files, tmp_path):
    root = tmp_path / "davis"
    for name in ("a", "b"):
        make_davis(root, sequence=name)
    (root / "JPEGImages" / "480p" / "a" / "00005.jpg").write_bytes(b"\xff\xd8 broken")
    report = import_dataset(project, "davis", root)
    assert report.videos == 1 and "a/00005.jpg is not a readable" in report.errors[0]
    assert list(Video.objects.filter(project=project).values_list("name", flat=True)) == ["b"]


def test_frame_numbering_finds_the_step_and_the_gaps():
    assert frame_numbering([f"{i:05d}" for i in range(5)]) == (1, [])
    assert frame_numbering([f"{i:05d}" for i in range(0, 40, 4)]) == (4, [])
    step, warnings = frame_numbering(["00000", "00001", "00002", "00006", "00007", "00009"])
    assert step == 1 and "(00003-00005, 00008)" in warnings[0] and "6 frames present" in warnings[0]
    assert frame_numbering(["a", "b"]) == (1, [])


def test_reimporting_the_projects_own_davis_export_says_which_fps_keeps_every_mask(make_project, isolated_files,
                                                                                    tmp_path):
    first = make_project(slug="first")  # 6 fps at 24 fps: every 4th frame
    report = import_dataset(first, "davis", make_davis(tmp_path / "davis", frames=16))
    assert report.masks == 4 and report.skipped_masks == 12
    assert "12 of 16 masks" in report.warnings[0] and "--fps 6" in report.warnings[0]
    export_dataset(first, "davis", tmp_path / "export", ALL)
    assert sorted(p.name for p in (tmp_path / "export" / "JPEGImages" / "480p" / "seq").iterdir()) == [
        "00000.jpg", "00004.jpg", "00008.jpg", "00012.jpg"]

    again = make_project(slug="again")
    report = import_dataset(again, "davis", tmp_path / "export")  # default --fps 24
    assert report.masks == 1 and report.skipped_masks == 3
    assert report.warnings == [
        "3 of 4 masks are on frames the project does not annotate (video seq: 24 fps, annotated every 4th): the "
        "frames were packed at --fps 24; import again with --fps 6 to keep every mask (its frames are numbered "
        "every 4 (the annotated frames of an export), so they are 6 fps)"]
    assert "--fps 6" in report.summary()

    kept = make_project(slug="kept")
    report = import_dataset(kept, "davis", tmp_path / "export", ImportOptions(fps=6))
    assert (report.masks, report.skipped_masks, report.warnings) == (4, 0, [])


def test_davis_gaps_are_warned(project, isolated_files, tmp_path):
    root = make_davis(tmp_path / "davis", frames=12)
    for index in (5, 6):
        (root / "JPEGImages" / "480p" / "seq" / f"{index:05d}.jpg").unlink()
        (root / "Annotations" / "480p" / "seq" / f"{index:05d}.png").unlink()
    report = import_dataset(project, "davis", root)
    assert report.videos == 1 and report.warnings[0].startswith("seq: frames missing between the numbered frames "
                                                                "(00005-00006)")


# -- exports are copies -----------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "folder"), [("coco", "images"), ("ytvis", "JPEGImages"),
                                             ("davis", "JPEGImages/480p")])
def test_exported_frames_are_copies_not_links(synthetic_project, tmp_path, fmt, folder):
    project = synthetic_project("tiny")
    video = Video.objects.get(project=project)
    export_dataset(project, fmt, tmp_path / fmt, ALL)
    exported = tmp_path / fmt / folder / video.name / "00004.jpg"
    stored = video.frames_dir / "00004.jpg"
    original = stored.read_bytes()
    assert exported.read_bytes() == original
    assert exported.stat().st_nlink == 1 and exported.stat().st_ino != stored.stat().st_ino
    exported.write_bytes(b"edited by the receiver")
    assert stored.read_bytes() == original


# -- SA-V: {video}.mp4 and the stride ---------------------------------------------------------


def test_sav_export_of_an_mkv_original_writes_a_readable_mp4_and_the_stride(make_project, isolated_files, tmp_path):
    project = make_project()
    import_dataset(project, "davis", make_davis(tmp_path / "davis", frames=13))  # packed into an FFV1 .mkv
    video = Video.objects.get(project=project)
    assert video.original.name.endswith(".mkv")
    export_dataset(project, "sav", tmp_path / "sav", ALL)
    assert sorted(p.name for p in (tmp_path / "sav").iterdir()) == ["seq.mp4", "seq_manual.json"]
    capture = cv2.VideoCapture(str(tmp_path / "sav" / "seq.mp4"))  # as Meta's SAVDataset reads it
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert (frames, capture.get(cv2.CAP_PROP_FPS)) == (13, 24.0)
    capture.release()
    document = json.loads((tmp_path / "sav" / "seq_manual.json").read_text())
    assert document[STRIDE_FIELD] == 4 == video.stride


def test_sav_file_recording_another_stride_is_refused(project, videos, isolated_files, tmp_path):
    path = write(tmp_path, "clip_manual.json", sav_doc(**{STRIDE_FIELD: 2}))
    report = import_dataset(project, "sav", path, ImportOptions(video_dir=videos))
    assert report.videos == 0 and "video_annotation_stride: the file annotates every 2nd, but video clip" in \
        report.errors[0]
    nothing_imported(project)
    path = write(tmp_path, "clip_manual.json", sav_doc(**{STRIDE_FIELD: 4}))
    assert import_dataset(project, "sav", path, ImportOptions(video_dir=videos)).videos == 1


# -- sav-folders and Meta's evaluator ---------------------------------------------------------


def test_sav_folders_leaves_out_and_names_objects_the_evaluator_cannot_score(make_project, videos, isolated_files,
                                                                             tmp_path):
    """Meta's sav_evaluator skips each object's first and last annotated frame and fails (AssertionError) on an
    object visible on none of the others; such objects are left out and the export says which."""
    project = make_project()
    empty = empty_rle(48, 64)
    # annotated frames 0, 4, 8; objects 0 and 2 are visible on frame 4, object 1 only on frame 0
    doc = sav_doc(masklet_num=3, masklet_id=[0, 1, 2], masklet_type=["manual"] * 3,
                  masklet=[[empty, square(), empty], [square(), empty, square()], [square(), empty, empty]])
    import_dataset(project, "sav", write(tmp_path, "clip_manual.json", doc), ImportOptions(video_dir=videos))
    assert Masklet.objects.filter(video__project=project).count() == 3
    stats = export_dataset(project, "sav-folders", tmp_path / "folders", ALL)
    assert stats.notes == ["clip: object(s) 1 left out, visible only on the first or last annotated frame, which "
                           "Meta's sav_evaluator skips (it fails on an object it never sees)"]
    annotations = tmp_path / "folders" / "Annotations_6fps" / "clip"
    assert sorted(p.name for p in annotations.iterdir()) == ["000", "002"]
    for folder in annotations.iterdir():  # the evaluator's condition: an object in the frames it scores
        pngs = sorted(folder.iterdir())[1:-1]
        assert any(read_palette_png(png).any() for png in pngs), folder.name


def test_sav_folders_leaves_out_a_video_with_no_scorable_object(make_project, videos, isolated_files, tmp_path):
    project = make_project()
    empty = empty_rle(48, 64)
    doc = sav_doc(masklet=[[square(), empty], [empty, empty], [empty, square()]])
    import_dataset(project, "sav", write(tmp_path, "clip_manual.json", doc), ImportOptions(video_dir=videos))
    stats = export_dataset(project, "sav-folders", tmp_path / "folders", ALL, media=False)
    assert stats.videos == 0 and "no object left, so the video is left out" in stats.notes[0]
    assert "0, 1 left out" in stats.notes[0]
    assert not (tmp_path / "folders" / "Annotations_6fps").exists()
    assert MaskFrame.objects.count() == 2 and os.listdir(tmp_path / "folders") == []
