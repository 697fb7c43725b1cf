"""COCO, YouTube-VIS, SA-V folders and DAVIS: readable by their own tools, exact, and importable again."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from annotator.datasets import ExportFilters, ImportOptions, export_dataset, import_dataset
from annotator.models import MaskFrame, Masklet, Video
from fixtures.synthetic import PRESETS, SyntheticFrames, preset
from segmentation.datasets import load_davis, load_sav_folders
from segmentation.masks import decode_rle, read_palette_png
from tests.annotator.datasets.conftest import add_synthetic_video

pytestmark = pytest.mark.django_db


def stored_masks(project) -> dict[tuple[str, int, int], str]:
    """(video name, object id, frame) -> RLE counts of every visible stored mask."""
    return {(video, obj, frame): counts for video, obj, frame, counts in MaskFrame.objects.filter(
        masklet__video__project=project, area__gt=0).values_list(
        "masklet__video__name", "masklet__object_id", "frame_index", "rle_counts")}


def test_coco_loads_scores_ap_1_and_reimports_the_same_masks(synthetic_project, make_project, tmp_path):
    project = synthetic_project()
    stats = export_dataset(project, "coco", tmp_path / "coco")
    coco = COCO(str(tmp_path / "coco" / "annotations.json"))
    assert len(coco.getImgIds()) == 6 and len(coco.getAnnIds()) == stats.masks > 0
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())][:2] == ["ball", "box"]
    annotation = coco.loadAnns(coco.getAnnIds())[0]
    assert annotation["iscrowd"] == 0 and isinstance(annotation["segmentation"]["counts"], str)
    image = coco.loadImgs(annotation["image_id"])[0]
    assert (tmp_path / "coco" / "images" / image["file_name"]).is_file()
    results = [{**a, "score": 1.0} for a in coco.loadAnns(coco.getAnnIds())]
    evaluation = COCOeval(coco, coco.loadRes(results), "segm")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)

    again = make_project()
    video_dir = tmp_path / "originals"
    video_dir.mkdir()
    original = Video.objects.get(project=project)
    (video_dir / f"{original.name}.mp4").write_bytes(original.original.read())
    report = import_dataset(again, "coco", tmp_path / "coco", ImportOptions(video_dir=video_dir))
    assert report.errors == []
    assert stored_masks(again) == stored_masks(project)
    assert sorted(Masklet.objects.filter(video__project=again).values_list("label", flat=True)) == sorted(
        Masklet.objects.filter(video__project=project).values_list("label", flat=True))


def test_coco_carries_a_model_mask_s_quality_as_its_score(synthetic_project, tmp_path):
    project = synthetic_project()
    rated = MaskFrame.objects.filter(masklet__video__project=project, area__gt=0).order_by("id").first()
    MaskFrame.objects.filter(pk=rated.pk).update(source="model", quality=0.42)
    export_dataset(project, "coco", tmp_path / "coco", media=False)
    annotations = json.loads((tmp_path / "coco" / "annotations.json").read_text())["annotations"]
    scored = [a for a in annotations if "score" in a]
    assert len(scored) == 1 and scored[0]["score"] == 0.42
    assert (scored[0]["track_id"], scored[0]["segmentation"]["counts"]) == (rated.masklet_id, rated.rle_counts)
    assert len(annotations) > 1  # people's masks carry no score


def pycocotools_bbox(segmentation: dict) -> list[float]:
    """The box of the DECODED mask, re-encoded and measured by pycocotools (not the stored bbox)."""
    pixels = decode_rle(segmentation)
    box = mask_utils.toBbox(mask_utils.encode(np.asfortranarray(pixels.astype(np.uint8)))).tolist()
    ys, xs = np.nonzero(pixels)
    assert box == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1], "pycocotools agrees"
    return box


@pytest.fixture
def two_videos(synthetic_project, tmp_path):
    project = synthetic_project()
    add_synthetic_video(project, replace(PRESETS["tiny"], seed=7, name="synth_two"), tmp_path)
    return project


def test_coco_images_annotations_boxes_and_tracks(two_videos, tmp_path):
    project = two_videos
    export_dataset(project, "coco", tmp_path / "coco", media=False)
    data = json.loads((tmp_path / "coco" / "annotations.json").read_text())
    videos = {video["id"]: video for video in data["videos"]}
    assert sorted(v["name"] for v in videos.values()) == ["synth_tiny", "synth_two"] and len(videos) == 2
    images = {image["id"]: image for image in data["images"]}
    assert len(images) == len(data["images"]) == 12
    for image in images.values():
        video = videos[image["video_id"]]
        assert image["file_name"] == f"{video['name']}/{image['frame_index']:05d}.jpg"
        assert (image["width"], image["height"]) == (160, 96)
    assert {(videos[i["video_id"]]["name"], i["frame_index"]) for i in images.values()} == {
        (name, frame) for name in ("synth_tiny", "synth_two") for frame in range(0, 24, 4)}
    categories = {category["id"]: category["name"] for category in data["categories"]}
    assert [categories[1], categories[2]] == ["ball", "box"], "the project's labels first, in order"
    stored = stored_masks(project)
    tracks: dict[int, tuple[str, int]] = {}
    seen = set()
    for annotation in data["annotations"]:
        image = images[annotation["image_id"]]
        assert annotation["video_id"] == image["video_id"]
        name = videos[image["video_id"]]["name"]
        masklet = Masklet.objects.get(video__project=project, video__name=name, object_id=annotation["object_id"])
        assert annotation["track_id"] == masklet.pk, "the masklet id is the track id"
        assert tracks.setdefault(annotation["track_id"], (name, masklet.object_id)) == (name, masklet.object_id)
        key = (name, masklet.object_id, image["frame_index"])
        assert annotation["segmentation"] == {"size": [96, 160], "counts": stored[key]}
        assert annotation["bbox"] == pycocotools_bbox(annotation["segmentation"])
        assert annotation["area"] == int(decode_rle(annotation["segmentation"]).sum())
        assert categories[annotation["category_id"]] == (masklet.label or "object")
        seen.add(key)
    assert seen == set(stored), "one annotation per visible stored mask, no more"
    assert len(tracks) == Masklet.objects.filter(video__project=project).count() == 6


def test_ytvis_videos_frames_boxes(two_videos, tmp_path):
    project = two_videos
    export_dataset(project, "ytvis", tmp_path / "ytvis", media=False)
    data = json.loads((tmp_path / "ytvis" / "instances.json").read_text())
    videos = {video["id"]: video for video in data["videos"]}
    for video in videos.values():
        assert video["file_names"] == [f"{video['name']}/{i:05d}.jpg" for i in range(0, 24, 4)]
        assert (video["length"], video["width"], video["height"]) == (6, 160, 96)
    stored = stored_masks(project)
    seen = set()
    for annotation in data["annotations"]:
        name = videos[annotation["video_id"]]["name"]
        for frame, segmentation, area, box in zip(range(0, 24, 4), annotation["segmentations"], annotation["areas"],
                                                  annotation["bboxes"], strict=True):
            key = (name, annotation["object_id"], frame)
            if segmentation is None:
                assert key not in stored and area is None and box is None
                continue
            assert segmentation["counts"] == stored[key]
            assert box == pycocotools_bbox(segmentation)
            assert area == int(decode_rle(segmentation).sum())
            seen.add(key)
    assert seen == set(stored)
    assert len(data["annotations"]) == 6


def test_ytvis_loads_as_plain_json_and_reimports(synthetic_project, tmp_path):
    project = synthetic_project()
    export_dataset(project, "ytvis", tmp_path / "ytvis")
    data = json.loads((tmp_path / "ytvis" / "instances.json").read_text())
    video = data["videos"][0]
    assert video["file_names"] == [f"synth_tiny/{i:05d}.jpg" for i in range(0, 24, 4)]
    assert all((tmp_path / "ytvis" / "JPEGImages" / name).is_file() for name in video["file_names"])
    stored = stored_masks(project)
    for annotation in data["annotations"]:
        assert len(annotation["segmentations"]) == len(annotation["areas"]) == len(annotation["bboxes"]) == 6
        for frame, segmentation, area in zip(range(0, 24, 4), annotation["segmentations"], annotation["areas"],
                                             strict=True):
            key = ("synth_tiny", annotation["object_id"], frame)
            if segmentation is None:
                assert key not in stored and area is None
            else:
                assert segmentation["counts"] == stored[key]
                assert area == int(decode_rle(segmentation).sum())
    # re-import onto the same video (it exists in the project): new ids past the existing ones, same masks
    Masklet.objects.filter(video__project=project).delete()
    report = import_dataset(project, "ytvis", tmp_path / "ytvis" / "instances.json")
    assert report.errors == [] and stored_masks(project) == stored


def test_sav_folders_layout_names_and_pixels(synthetic_project, tmp_path):
    project = synthetic_project(split="val")
    export_dataset(project, "sav-folders", tmp_path / "sav")
    root = tmp_path / "sav"
    spec = preset("tiny")
    assert (root / "val.txt").read_text() == "synth_tiny\n"
    assert sorted(p.name for p in root.iterdir()) == ["Annotations_6fps", "JPEGImages_24fps", "val.txt"]
    jpegs = sorted(p.name for p in (root / "JPEGImages_24fps" / "synth_tiny").iterdir())
    assert jpegs == [f"{i:05d}.jpg" for i in range(spec.num_frames)]
    objects = sorted(p.name for p in (root / "Annotations_6fps" / "synth_tiny").iterdir())
    assert objects == ["001", "002", "003"]
    truth = SyntheticFrames(spec)
    for name in objects:
        pngs = sorted(p.name for p in (root / "Annotations_6fps" / "synth_tiny" / name).iterdir())
        assert pngs == [f"{i:05d}.png" for i in range(0, spec.num_frames, 4)]
        for frame in range(0, spec.num_frames, 4):
            path = root / "Annotations_6fps" / "synth_tiny" / name / f"{frame:05d}.png"
            with Image.open(path) as image:
                assert image.mode == "P"
                pixels = np.asarray(image)
            assert set(np.unique(pixels)) <= {0, 1}
            np.testing.assert_array_equal(pixels == 1, truth.masks(frame)[int(name)])
    records = load_sav_folders(root, split="val")
    assert records[0].object_ids == [1, 2, 3] and records[0].num_frames == 6


def davis_subset(davis_root, folder, names: tuple[str, ...]):
    """A DAVIS folder holding only the named sequences of ``davis_root`` (linked, not copied).

    Each imported sequence is packed into a lossless video and decoded again, frame by frame at 854x480:
    these tests take the sequences their checks need (the whole DAVIS import is test_demo's).
    """
    for kind in ("JPEGImages", "Annotations"):
        (folder / kind / "480p").mkdir(parents=True)
        for name in names:
            (folder / kind / "480p" / name).symlink_to(davis_root / kind / "480p" / name, target_is_directory=True)
    return folder


def test_davis_import_then_export_reproduces_the_masks(davis_root, make_project, isolated_files, tmp_path):
    project = make_project(annotation_fps=24)  # DAVIS annotates every frame: stride 1 keeps them all
    source_root = davis_subset(davis_root, tmp_path / "source", ("blackswan", "car-shadow"))  # two: 90 frames
    report = import_dataset(project, "davis", source_root)
    assert report.errors == [] and report.videos == 2 and report.skipped_masks == 0
    export_dataset(project, "davis", tmp_path / "davis", ExportFilters(statuses=()))
    for source, exported in zip(load_davis(source_root), load_davis(tmp_path / "davis"), strict=True):
        assert (exported.name, exported.frame_names) == (source.name, source.frame_names)
        assert exported.object_ids == [1]
        truth, masks = source.gt_masks(1), exported.gt_masks(1)
        assert masks.keys() == truth.keys()
        for index in truth:
            np.testing.assert_array_equal(masks[index], truth[index])
        with Image.open(tmp_path / "davis" / "Annotations" / "480p" / source.name / "00000.png") as image:
            assert image.mode == "P"


def test_davis_import_keeps_the_projects_annotated_frames(davis_root, make_project, isolated_files, tmp_path):
    project = make_project()  # 6 fps at 24 fps: every 4th frame
    report = import_dataset(project, "davis", davis_subset(davis_root, tmp_path / "source", ("blackswan",)))
    assert report.errors == [] and report.skipped_masks > 0
    video = Video.objects.get(project=project, name="blackswan")
    assert (video.frame_count, video.stride) == (50, 4)
    frames = sorted(MaskFrame.objects.filter(masklet__video=video).values_list("frame_index", flat=True))
    assert frames == list(range(0, 50, 4))


def test_davis_overlap_higher_object_id_wins(synthetic_project, tmp_path):
    project = synthetic_project()
    video = Video.objects.get(project=project)
    first, second = Masklet.objects.filter(video=video).order_by("object_id")[:2]
    # give object 1 object 2's mask on frame 0 as well: they overlap everywhere object 2 is
    from annotator.models import MaskSource
    from annotator.services.masks import MaskWrite, save_mask_frames

    frame2 = MaskFrame.objects.get(masklet=second, frame_index=0)
    save_mask_frames(first, [MaskWrite(0, {"size": [96, 160], "counts": frame2.rle_counts})], source=MaskSource.HUMAN)
    export_dataset(project, "davis", tmp_path / "davis", media=False)
    labels = read_palette_png(tmp_path / "davis" / "Annotations" / "480p" / "synth_tiny" / "00000.png")
    overlap = decode_rle({"size": [96, 160], "counts": frame2.rle_counts})
    assert (labels[overlap] == 2).all()
