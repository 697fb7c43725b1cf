"""What a new user does first: export the demo project in every format from the CLI and the web page, and
import the SA-V example and DAVIS sequences and open them in the annotation page."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from pycocotools.coco import COCO

from annotator.datasets import EXPORTERS, ImportOptions, import_dataset
from annotator.datasets.jobs import open_archive, run_job
from annotator.models import DatasetJob, MaskFrame, Masklet, Role, Video
from segmentation.datasets import load_davis, load_sav_folders
from segmentation.masks import decode_rle, rle_area

pytestmark = pytest.mark.django_db

DEMO = "demo_03"  # seed_demo stores the last demo video's ground truth as approved masklets
FRAMES, ANNOTATED, H, W = 96, list(range(0, 96, 4)), 360, 640


@pytest.fixture
def demo(settings, tmp_path, isolated_files, make_user):
    """``manage.py seed_demo`` as ``make run`` does it, with a superuser (who becomes the demo's admin)."""
    settings.DATA_DIR = tmp_path / "data"
    admin = make_user("admin", superuser=True)
    call_command("seed_demo", verbosity=0)
    assert demo_masks(), "the demo has approved masks to export"
    return admin


def demo_masks() -> dict[tuple[int, int], str]:
    """(object id, frame) -> RLE counts of the demo's approved visible masks: what every export must hold."""
    return {(o, f): c for o, f, c in MaskFrame.objects.filter(
        masklet__video__name=DEMO, masklet__status="approved", area__gt=0).values_list(
        "masklet__object_id", "frame_index", "rle_counts")}


def check_export(fmt: str, root: Path) -> None:
    """The export in ``root`` is complete and well formed, read by the format's own reader where there is one."""
    truth = demo_masks()
    objects = sorted({o for o, _ in truth})
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files and all(p.stat().st_size > 0 for p in files), "no empty file"
    found: dict[tuple[int, int], np.ndarray] = {}
    if fmt == "sav":
        assert sorted(p.name for p in root.iterdir()) == [f"{DEMO}.mp4", f"{DEMO}_manual.json"]
        data = json.loads((root / f"{DEMO}_manual.json").read_text())
        assert data["masklet_num"] == len(objects) and data["masklet_id"] == objects
        assert len(data["masklet"]) == len(ANNOTATED) and all(len(row) == len(objects) for row in data["masklet"])
        for i, row in enumerate(data["masklet"]):
            for object_id, rle in zip(objects, row, strict=True):
                assert rle["size"] == [H, W] and isinstance(rle["counts"], str)
                if rle_area(rle) > 0:
                    assert rle["counts"] == truth[object_id, ANNOTATED[i]]
                    found[object_id, ANNOTATED[i]] = decode_rle(rle)
    elif fmt == "sav-folders":
        split = Video.objects.get(name=DEMO).split
        assert (root / f"{split}.txt").read_text() == f"{DEMO}\n"
        assert len(list((root / "JPEGImages_24fps" / DEMO).glob("*.jpg"))) == FRAMES
        record = load_sav_folders(root, split=split)[0]
        assert record.object_ids == objects and record.frame_names == [f"{f:05d}" for f in ANNOTATED]
        for object_id in objects:
            for index, mask in record.gt_masks(object_id).items():
                if mask.any():
                    found[object_id, ANNOTATED[index]] = mask
    elif fmt == "coco":
        coco = COCO(str(root / "annotations.json"))
        assert len(coco.getImgIds()) == len(ANNOTATED)
        for annotation in coco.loadAnns(coco.getAnnIds()):
            image = coco.loadImgs(annotation["image_id"])[0]
            assert (root / "images" / image["file_name"]).is_file()
            found[annotation["object_id"], image["frame_index"]] = coco.annToMask(annotation).astype(bool)
    elif fmt == "ytvis":
        data = json.loads((root / "instances.json").read_text())
        (video,) = data["videos"]
        assert video["file_names"] == [f"{DEMO}/{f:05d}.jpg" for f in ANNOTATED]
        assert all((root / "JPEGImages" / name).is_file() for name in video["file_names"])
        for annotation in data["annotations"]:
            for frame, segmentation in zip(ANNOTATED, annotation["segmentations"], strict=True):
                if segmentation is not None:
                    found[annotation["object_id"], frame] = decode_rle(segmentation)
    elif fmt == "davis":
        record = load_davis(root)[0]
        assert record.name == DEMO and record.frame_names == [f"{f:05d}" for f in ANNOTATED]
        assert record.object_ids == list(range(1, len(objects) + 1))  # k-th object in object-id order
        for value, object_id in zip(record.object_ids, objects, strict=True):
            for index, mask in record.gt_masks(value).items():
                if mask.any():
                    found[object_id, ANNOTATED[index]] = mask
    else:
        raise AssertionError(f"no check for format {fmt}")
    assert found.keys() == truth.keys(), f"{fmt}: every approved mask, no other"
    if fmt != "davis":  # DAVIS label maps resolve overlaps (the higher id wins): exact only where none overlap
        for key, mask in found.items():
            np.testing.assert_array_equal(mask, decode_rle({"size": [H, W], "counts": truth[key]}), err_msg=str(key))


def test_export_the_demo_in_every_format_from_the_cli_and_the_page(demo, tmp_path):
    client = Client()
    client.force_login(demo)
    assert client.get(reverse("datasets", args=["demo"])).status_code == 200
    for fmt in EXPORTERS:
        out = tmp_path / "cli" / fmt
        call_command("export_dataset", project="demo", fmt=fmt, out=str(out), verbosity=0)
        check_export(fmt, out)

        response = client.post(reverse("datasets", args=["demo"]),
                               {"format": fmt, "statuses": ["approved"], "media": "on"})
        assert response.status_code == 302
        job = run_job(DatasetJob.objects.filter(project__slug="demo").latest("id").id)  # the cpu worker's part
        assert job.status == DatasetJob.Status.DONE, job.error
        assert job.message.startswith("1 video(s), 5 masklet(s)")
        download = client.get(reverse("dataset-download", args=["demo", job.id]))
        assert download.status_code == 200 and download["Content-Type"] == "application/zip"
        with zipfile.ZipFile(open_archive(job)[0]) as bundle:
            assert bundle.testzip() is None
            bundle.extractall(tmp_path / "web" / fmt)
        check_export(fmt, tmp_path / "web" / fmt)
        web_files = sorted(p.relative_to(tmp_path / "web" / fmt) for p in (tmp_path / "web" / fmt).rglob("*"))
        assert web_files == sorted(p.relative_to(out) for p in out.rglob("*")), "the page's zip = the CLI's folder"


def test_imported_datasets_show_in_the_annotation_page(sav_example, sav_video_dir, davis_root, make_project,
                                                       make_user, isolated_files):
    annotator = make_user("ann")
    project = make_project(members={annotator: Role.ANNOTATOR})
    for fmt, path, options in (("sav", sav_example, ImportOptions(video_dir=sav_video_dir)),
                               ("davis", davis_root, ImportOptions())):
        report = import_dataset(project, fmt, path, options)
        assert report.errors == [], report.errors
    client = Client()
    client.force_login(annotator)
    for video in Video.objects.filter(project=project):
        page = client.get(reverse("video-annotate", args=[project.slug, video.id]))
        masks_url = reverse("api-video-masks", args=[project.slug, video.id])
        assert page.status_code == 200 and f'data-masks-url="{masks_url}"'.encode() in page.content
        masklets = client.get(reverse("api-video-masklets", args=[project.slug, video.id])).json()["masklets"]
        stored = Masklet.objects.filter(video=video).order_by("object_id")
        assert [(m["object_id"], m["type"], m["status"]) for m in masklets] == [
            (m.object_id, m.type, "submitted") for m in stored] and masklets
        body = client.get(masks_url).json()
        assert body["size"] == [video.height, video.width]
        assert {(m["object_id"], m["frame"], m["counts"], m["source"]) for m in body["masks"]} == {
            (o, f, c, "imported") for o, f, c in MaskFrame.objects.filter(masklet__video=video).values_list(
                "masklet__object_id", "frame_index", "rle_counts")} and body["masks"]
        frame = client.get(reverse("video-frame", args=[project.slug, video.id, 0]))
        assert frame.status_code == 200 and frame["Content-Type"] == "image/jpeg"

    sav = Video.objects.get(project=project, name="sav_000001")
    body = client.get(reverse("api-video-masks", args=[project.slug, sav.id])).json()
    manual = json.loads((sav_example / "sav_000001_manual.json").read_text())
    shown = {(m["object_id"], m["frame"]): m["counts"] for m in body["masks"]}
    for i, row in enumerate(manual["masklet"]):  # the page gets the file's own RLE strings
        for object_id, rle in zip(manual["masklet_id"], row, strict=True):
            if rle_area(rle) > 0:
                assert shown[object_id, 4 * i] == rle["counts"]
    assert {name for name in Video.objects.filter(project=project).values_list("name", flat=True)} == {
        "sav_000001", "blackswan", "car-shadow", "dog", "libby"}
