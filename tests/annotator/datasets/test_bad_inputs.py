"""Bad dataset files: a clear error naming the file and the field, and nothing half-imported."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from annotator.datasets import DatasetError, ImportOptions, import_dataset
from annotator.datasets import importing as importing_module
from annotator.datasets.jobs import run_job
from annotator.models import DatasetJob, MaskFrame, Masklet, Video
from fixtures.synthetic import PRESETS
from segmentation.masks import empty_rle, encode_rle, write_palette_png
from tests.annotator.datasets.conftest import add_synthetic_video

pytestmark = pytest.mark.django_db

H, W, FRAMES = 48, 64, 12  # make_mp4's default size; 24 fps -> annotated frames 0, 4, 8


def square() -> dict:
    mask = np.zeros((H, W), bool)
    mask[10:20, 5:30] = True
    return encode_rle(mask)


def sav_doc(**changes) -> dict:
    doc = {"video_id": "clip", "video_height": float(H), "video_width": float(W), "masklet_num": 2,
           "masklet_id": [0, 1], "masklet": [[square(), empty_rle(H, W)] for _ in range(3)],
           "masklet_type": ["manual", "manual"]}
    doc.update(changes)
    return doc


@pytest.fixture
def videos(tmp_path, make_mp4) -> Path:
    folder = tmp_path / "videos"
    folder.mkdir()
    make_mp4(folder / "clip.mp4", frames=FRAMES)
    return folder


def write(tmp_path: Path, name: str, content) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def nothing_imported(project) -> None:
    assert not Video.objects.filter(project=project).exists()
    assert not Masklet.objects.exists() and not MaskFrame.objects.exists()


def run(project, fmt: str, path: Path, videos: Path | None) -> str:
    report = import_dataset(project, fmt, path, ImportOptions(video_dir=videos))
    assert report.videos == 0 and len(report.errors) == 1, report
    return report.errors[0]


def test_a_good_file_imports(project, videos, isolated_files, tmp_path):
    report = import_dataset(project, "sav", write(tmp_path, "clip_manual.json", sav_doc()),
                            ImportOptions(video_dir=videos))
    assert report.errors == [] and report.masks == 3


def test_malformed_json(project, videos, isolated_files, tmp_path):
    path = write(tmp_path, "clip_manual.json", '{"video_id": "clip", "masklet": [')
    assert f"{path}: malformed JSON" in run(project, "sav", path, videos)
    nothing_imported(project)


def test_missing_field(project, videos, isolated_files, tmp_path):
    doc = sav_doc()
    del doc["masklet_num"]
    path = write(tmp_path, "clip_manual.json", doc)
    assert run(project, "sav", path, videos) == f"{path}: masklet_num: missing"


def test_rle_size_does_not_match_the_video(project, videos, isolated_files, tmp_path, settings):
    wrong = encode_rle(np.ones((H, W + 2), bool))
    doc = sav_doc(video_width=float(W + 2), masklet=[[wrong, wrong]] * 3)
    path = write(tmp_path, "clip_manual.json", doc)
    message = run(project, "sav", path, videos)
    assert message.startswith(f"{path}: masklet[0][0]: RLE size [48, 66] does not match video clip")
    nothing_imported(project)  # the video created for this import is gone again, with its files
    assert not list(Path(settings.FRAMES_ROOT).glob("*"))
    assert not [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()]


def test_rle_size_does_not_match_the_declared_size(project, videos, isolated_files, tmp_path):
    doc = sav_doc(masklet=[[square(), encode_rle(np.zeros((H, 10), bool))]] * 3)
    path = write(tmp_path, "clip_manual.json", doc)
    assert "masklet[0][1].size: RLE size [48, 10] does not match the frame's 48x64" in run(project, "sav", path, videos)


def test_rle_counts_that_do_not_cover_the_frame(project, videos, isolated_files, tmp_path):
    bad = {"size": [H, W], "counts": square()["counts"][:-3]}
    path = write(tmp_path, "clip_manual.json", sav_doc(masklet=[[square(), bad]] * 3))
    assert "masklet[0][1].counts: RLE counts cover" in run(project, "sav", path, videos)


def test_unknown_frame_indices(project, videos, isolated_files, tmp_path, settings):
    path = write(tmp_path, "clip_manual.json", sav_doc(masklet=[[square(), square()]] * 5))
    message = run(project, "sav", path, videos)
    assert message.startswith(f"{path}: masklet[3][0]: unknown frame index: entry 3 is past the last of the 3 "
                              "annotated frames of video clip")
    nothing_imported(project)
    assert not list(Path(settings.FRAMES_ROOT).glob("*")), "the created video's frames are removed"


def test_sav_file_of_another_stride(make_project, videos, isolated_files, tmp_path):
    project = make_project(annotation_fps=24)  # every frame annotated: 12, the file has 3 (every 4th)
    path = write(tmp_path, "clip_manual.json", sav_doc())
    assert run(project, "sav", path, videos) == (
        f"{path}: masklet: 3 annotated frames, but video clip has 12 (12 frames, every frame annotated): the file "
        "was annotated at another frame rate than the project's (SA-V: 6 fps, every 4th frame at 24 fps)")
    nothing_imported(project)


def test_unknown_frame_index_in_coco(project, videos, isolated_files, tmp_path):
    doc = {"images": [{"id": 1, "file_name": "clip/00003.jpg", "width": W, "height": H}],
           "annotations": [{"id": 1, "image_id": 1, "segmentation": square(), "track_id": 1}]}
    path = write(tmp_path, "annotations.json", doc)
    assert run(project, "coco", path, videos) == (f"{path}: annotations[0]: unknown frame index 3: video clip has 12 "
                                                  "frames and annotates every 4th (0, 4, 8, ...)")
    nothing_imported(project)


def test_missing_video(project, isolated_files, tmp_path):
    path = write(tmp_path, "clip_manual.json", sav_doc())
    message = run(project, "sav", path, tmp_path)
    assert message == (f"{path}: video: missing video 'clip': project {project.slug} has no video of that name and "
                       f"neither clip.<ext> nor a frame folder clip/ is in {tmp_path}")
    assert "give the folder holding it with --video-dir" in run(project, "sav", path, None)


def test_duplicate_ids(project, videos, isolated_files, tmp_path):
    path = write(tmp_path, "clip_manual.json", sav_doc(masklet_id=[4, 4]))
    assert run(project, "sav", path, videos) == f"{path}: masklet_id: duplicate ids [4]"
    coco = {"images": [{"id": 1, "file_name": "clip/00000.jpg", "width": W, "height": H},
                       {"id": 1, "file_name": "clip/00004.jpg", "width": W, "height": H}], "annotations": []}
    path = write(tmp_path, "annotations.json", coco)
    with pytest.raises(DatasetError, match=r"annotations.json: images\[1\].id: duplicate ids 1"):
        import_dataset(project, "coco", path, ImportOptions(video_dir=videos))
    ytvis = {"videos": [{"id": 1, "file_names": ["clip/00000.jpg"], "width": W, "height": H}],
             "annotations": [{"id": 7, "video_id": 1, "segmentations": [square()]},
                             {"id": 7, "video_id": 1, "segmentations": [square()]}]}
    path = write(tmp_path, "instances.json", ytvis)
    with pytest.raises(DatasetError, match=r"instances.json: annotations\[1\].id: duplicate ids 7"):
        import_dataset(project, "ytvis", path, ImportOptions(video_dir=videos))
    nothing_imported(project)


def test_a_failure_while_writing_rolls_the_whole_video_back(project, videos, isolated_files, tmp_path, monkeypatch):
    calls = []
    real = importing_module.save_mask_frames

    def fail_on_second(masklet, writes, **kwargs):
        calls.append(masklet.object_id)
        if len(calls) == 2:
            raise DatasetError("test", "masklet", "disk full")
        return real(masklet, writes, **kwargs)

    monkeypatch.setattr(importing_module, "save_mask_frames", fail_on_second)
    doc = sav_doc(masklet=[[square(), square()]] * 3)
    message = run(project, "sav", write(tmp_path, "clip_manual.json", doc), videos)
    assert message == "test: masklet: disk full" and calls == [0, 1]
    nothing_imported(project)


def test_cli_exit_status_and_plain_errors(project, videos, isolated_files, tmp_path, capsys):
    path = write(tmp_path, "clip_manual.json", sav_doc(masklet_id=[1, 1]))
    with pytest.raises(CommandError, match="1 video"):
        call_command("import_dataset", str(path), project=project.slug, fmt="sav", video_dir=str(videos))
    assert "masklet_id: duplicate ids [1]" in capsys.readouterr().err
    with pytest.raises(CommandError, match="unknown project 'nope'"):
        call_command("import_dataset", str(path), project="nope", fmt="sav")
    with pytest.raises(CommandError, match="no such file or folder"):
        call_command("import_dataset", str(tmp_path / "absent.json"), project=project.slug, fmt="sav")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(CommandError, match="the output folder must be new or empty"):
        call_command("export_dataset", project=project.slug, fmt="coco", out=str(out))
    with pytest.raises(CommandError, match="no ready video named ghost"):
        call_command("export_dataset", project=project.slug, fmt="coco", out=str(tmp_path / "o2"), videos=["ghost"])


def test_unknown_frame_index_in_ytvis(project, videos, isolated_files, tmp_path):
    doc = {"videos": [{"id": 1, "name": "clip", "file_names": ["clip/00000.jpg", "clip/00003.jpg"], "width": W,
                       "height": H}],
           "annotations": [{"id": 1, "video_id": 1, "segmentations": [square(), square()]}]}
    path = write(tmp_path, "instances.json", doc)
    assert run(project, "ytvis", path, videos) == (
        f"{path}: annotations[0].segmentations[1]: unknown frame index 3: video clip has 12 frames and annotates "
        "every 4th (0, 4, 8, ...)")
    nothing_imported(project)
    doc["videos"][0]["file_names"][1] = "clip/last.jpg"
    with pytest.raises(DatasetError, match=r"instances.json: videos\[0\].file_names: unknown frame index: "
                                           r"'clip/last.jpg' is not numbered by frame"):
        import_dataset(project, "ytvis", write(tmp_path, "instances.json", doc), ImportOptions(video_dir=videos))
    nothing_imported(project)


def test_missing_video_in_coco_and_ytvis(project, videos, isolated_files, tmp_path):
    coco = {"images": [{"id": 1, "file_name": "ghost/00000.jpg", "width": W, "height": H}],
            "annotations": [{"id": 1, "image_id": 1, "segmentation": square(), "track_id": 1}]}
    ytvis = {"videos": [{"id": 1, "name": "ghost", "file_names": ["ghost/00000.jpg"], "width": W, "height": H}],
             "annotations": [{"id": 1, "video_id": 1, "segmentations": [square()]}]}
    for fmt, name, doc in (("coco", "annotations.json", coco), ("ytvis", "instances.json", ytvis)):
        path = write(tmp_path, name, doc)
        assert run(project, fmt, path, videos) == (
            f"{path}: video: missing video 'ghost': project {project.slug} has no video of that name and neither "
            f"ghost.<ext> nor a frame folder ghost/ is in {videos}")
        nothing_imported(project)
    # an annotation naming a video the file does not list
    ytvis["annotations"][0]["video_id"] = 2
    with pytest.raises(DatasetError, match=r"instances.json: annotations\[0\].video_id: unknown video id 2"):
        import_dataset(project, "ytvis", write(tmp_path, "instances.json", ytvis), ImportOptions(video_dir=videos))
    nothing_imported(project)


@pytest.mark.parametrize(("fmt", "name"), [("coco", "annotations.json"), ("ytvis", "instances.json")])
def test_malformed_json_from_the_cli(project, videos, isolated_files, tmp_path, fmt, name):
    path = write(tmp_path, name, '{"images": [{"id": 1,, }]')
    with pytest.raises(CommandError) as caught:
        call_command("import_dataset", str(path), project=project.slug, fmt=fmt, video_dir=str(videos))
    assert str(caught.value).startswith(f"{path}: malformed JSON: Expecting")
    assert "line 1 column" in str(caught.value)
    path = write(tmp_path, name, '[1, 2]')
    with pytest.raises(CommandError, match=f"{name}: expected a JSON object"):
        call_command("import_dataset", str(path), project=project.slug, fmt=fmt, video_dir=str(videos))
    path = write(tmp_path, name, {"images": {}, "videos": {}, "annotations": []})
    field = "images" if fmt == "coco" else "videos"
    with pytest.raises(CommandError, match=f"{name}: {field}: expected a list"):
        call_command("import_dataset", str(path), project=project.slug, fmt=fmt, video_dir=str(videos))
    nothing_imported(project)


# -- DAVIS ------------------------------------------------------------------------------------


def make_davis(root: Path, sequence: str = "seq", frames: int = FRAMES, size: tuple[int, int] = (W, H)) -> Path:
    """A small DAVIS folder: ``frames`` JPEGs and one palette PNG (object 1) per frame."""
    jpegs, pngs = root / "JPEGImages" / "480p" / sequence, root / "Annotations" / "480p" / sequence
    jpegs.mkdir(parents=True)
    pngs.mkdir(parents=True)
    for index in range(frames):
        cv2.imwrite(str(jpegs / f"{index:05d}.jpg"), np.full((size[1], size[0], 3), 90, np.uint8))
        labels = np.zeros((size[1], size[0]), np.uint8)
        labels[10:20, 5 + index:30 + index] = 1
        write_palette_png(pngs / f"{index:05d}.png", labels)
    return root


def test_a_good_davis_folder_imports(project, isolated_files, tmp_path):
    report = import_dataset(project, "davis", make_davis(tmp_path / "davis"))
    assert report.errors == [] and (report.videos, report.masklets, report.masks) == (1, 1, 3)


def test_davis_png_size_differs_from_the_frames(project, isolated_files, tmp_path, settings):
    root = make_davis(tmp_path / "davis")
    png = root / "Annotations" / "480p" / "seq" / "00004.png"
    write_palette_png(png, np.ones((H // 2, W // 2), np.uint8))
    assert run(project, "davis", root, None) == (f"{png}: size: the PNG is 32x24 but the frames of seq are 64x48 "
                                                 "(width x height)")
    nothing_imported(project)
    assert not [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()], "no video was made for it"


def test_davis_pngs_that_are_not_label_maps_or_name_no_frame(project, isolated_files, tmp_path):
    root = make_davis(tmp_path / "davis")
    png = root / "Annotations" / "480p" / "seq" / "00002.png"
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(png)
    assert run(project, "davis", root, None) == (f"{png}: mode: a DAVIS annotation is a palette (or gray) PNG "
                                                 "whose pixel value k is object k, got mode RGB")
    png.write_bytes(b"not a png")
    assert run(project, "davis", root, None) == f"{png}: not a readable PNG (UnidentifiedImageError)"
    png.unlink()
    extra = root / "Annotations" / "480p" / "seq" / "00012.png"
    write_palette_png(extra, np.ones((H, W), np.uint8))
    assert run(project, "davis", root, None) == (f"{extra}: frame: unknown frame index: 00012 is not one of the 12 "
                                                 f"frames of {root / 'JPEGImages' / '480p' / 'seq'} (00000 .. 00011)")
    nothing_imported(project)


def test_davis_without_annotations(project, isolated_files, tmp_path):
    root = make_davis(tmp_path / "davis")
    annotations = root / "Annotations" / "480p" / "seq"
    for png in annotations.iterdir():
        write_palette_png(png, np.zeros((H, W), np.uint8))
    assert run(project, "davis", root, None) == (f"{annotations}: every annotation PNG is all background (0): no "
                                                 "object to import")
    for png in list(annotations.iterdir()):
        png.unlink()
    assert run(project, "davis", root, None) == (f"{annotations}: no annotation PNG (expected 00000.png, ... named "
                                                 "like the frames)")
    annotations.rmdir()
    with pytest.raises(DatasetError) as caught:
        import_dataset(project, "davis", root)
    assert str(caught.value) == (f"{annotations.parent}: no sequence has both frames (1 in "
                                 f"{root / 'JPEGImages' / '480p'}) and annotations (0 here)")
    nothing_imported(project)


def test_davis_sequence_missing_its_annotations_fails_alone(project, isolated_files, tmp_path):
    root = make_davis(tmp_path / "davis")
    make_davis(tmp_path / "other", sequence="lonely")
    (tmp_path / "other" / "JPEGImages" / "480p" / "lonely").rename(root / "JPEGImages" / "480p" / "lonely")
    report = import_dataset(project, "davis", root)
    assert report.videos == 1 and report.errors == [
        f"{root / 'Annotations' / '480p' / 'lonely'}: missing: sequence lonely has frames in "
        f"{root / 'JPEGImages' / '480p' / 'lonely'} but no annotation folder"]
    assert list(Video.objects.filter(project=project).values_list("name", flat=True)) == ["seq"]


def test_davis_missing_jpegimages(project, isolated_files, tmp_path):
    root = make_davis(tmp_path / "davis")
    shutil.rmtree(root / "JPEGImages")
    message = ("JPEGImages/480p: missing folder: a DAVIS dataset holds JPEGImages/480p/{sequence}/00000.jpg, ... "
               "and Annotations/480p/{sequence}/00000.png, ...")
    with pytest.raises(DatasetError) as caught:
        import_dataset(project, "davis", root)
    assert str(caught.value) == f"{root}: {message}"
    with pytest.raises(CommandError) as caught:
        call_command("import_dataset", str(root), project=project.slug, fmt="davis")
    assert str(caught.value) == f"{root}: {message}"
    nothing_imported(project)


# -- failed exports -----------------------------------------------------------------------------


def test_a_failed_export_leaves_no_partial_dataset(synthetic_project, tmp_path, settings):
    project = synthetic_project()
    second = add_synthetic_video(project, replace(PRESETS["tiny"], seed=7, name="synth_two"), tmp_path)
    shutil.rmtree(second.frames_dir)  # the second video fails after the first was written
    exports = tmp_path / "exports"
    for out, existed in ((exports / "new", False), (exports / "empty", True)):
        if existed:
            out.mkdir(parents=True)
        with pytest.raises(CommandError, match=r"synth_two: frames: frame 00000.jpg is missing"):
            call_command("export_dataset", project=project.slug, fmt="coco", out=str(out), verbosity=0)
        assert out.is_dir() == existed and (not existed or not any(out.iterdir())), "left as it was"
    assert sorted(p.name for p in exports.iterdir()) == ["empty"], "no hidden partial folder left behind"
    call_command("export_dataset", project=project.slug, fmt="coco", out=str(exports / "empty"), no_media=True,
                 verbosity=0)
    assert sorted(p.name for p in (exports / "empty").iterdir()) == ["annotations.json"]
    assert sorted(p.name for p in exports.iterdir()) == ["empty"]

    job = DatasetJob.objects.create(project=project, kind="export", format="davis", options={"filters": {}})
    job = run_job(job.id)
    assert job.status == DatasetJob.Status.FAILED and "synth_two: frames: frame 00000.jpg is missing" in job.error
    assert not [p for p in (Path(settings.MEDIA_ROOT) / "exports").rglob("*") if p.is_file()], "no zip, no .part"
