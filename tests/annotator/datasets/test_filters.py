"""Export filters select exactly the right masklets and videos, from the CLI and from the web export form."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from annotator.datasets.jobs import open_archive, run_job
from annotator.models import DatasetJob, Masklet, MaskSource, Membership, Role, Video
from annotator.services.masks import MaskWrite, save_mask_frames
from segmentation.masks import encode_rle

pytestmark = pytest.mark.django_db

H, W = 6, 8
#: video -> (split, status, [(object id, type, masklet status)])
LAYOUT = {
    "a": ("train", Video.Status.READY, [(1, "manual", "approved"), (2, "auto", "approved"), (3, "manual", "rejected"),
                                        (4, "manual", "draft"), (5, "manual", "discarded")]),
    "b": ("val", Video.Status.READY, [(1, "manual", "approved"), (2, "auto", "rejected")]),
    "c": ("test", Video.Status.READY, [(1, "auto", "approved"), (2, "manual", "submitted")]),
    "e": ("train", Video.Status.INGESTING, [(1, "manual", "approved")]),  # not ready: never exported
}
EVERYTHING = {(name, oid) for name, (_, status, objects) in LAYOUT.items() if status == Video.Status.READY
              for oid, _, _ in objects}


@pytest.fixture
def filtered_project(make_project, isolated_files):
    """Three ready videos of different splits and one still ingesting, masklets of every type and status,
    each visible on one annotated frame."""
    project = make_project(slug="filters")
    mask = np.zeros((H, W), bool)
    mask[1:4, 2:6] = True
    for name, (split, status, objects) in LAYOUT.items():
        video = Video.objects.create(project=project, name=name, status=status, split=split, fps=24, frame_count=9,
                                     stride=4, width=W, height=H, annotated_frame_count=3)
        for object_id, kind, masklet_status in objects:
            masklet = Masklet.objects.create(video=video, object_id=object_id, type=kind, status=masklet_status)
            save_mask_frames(masklet, [MaskWrite(4, encode_rle(mask))], source=MaskSource.MODEL)
    return project


def exported(annotations: dict) -> set[tuple[str, int]]:
    """(video name, object id) of every masklet in a COCO export; checks each is one masklet of the right type."""
    names = {video["id"]: video["name"] for video in annotations["videos"]}
    kinds = {(names[a["video_id"]], a["object_id"]): a["masklet_type"] for a in annotations["annotations"]}
    for (name, object_id), kind in kinds.items():
        assert Masklet.objects.get(video__name=name, object_id=object_id).type == kind
    assert set(names.values()) == {name for name, _ in kinds}, "a video is listed only when it has masklets"
    return set(kinds)


def cli_export(tmp_path: Path, **options) -> set[tuple[str, int]]:
    out = tmp_path / "out"
    call_command("export_dataset", project="filters", fmt="coco", out=str(out), no_media=True, verbosity=0,
                 **options)
    return exported(json.loads((out / "annotations.json").read_text()))


@pytest.mark.parametrize(("options", "expected"), [
    ({}, {("a", 1), ("a", 2), ("b", 1), ("c", 1)}),  # approved only by default
    ({"status": ["all"]}, EVERYTHING),
    ({"status": ["rejected"]}, {("a", 3), ("b", 2)}),
    ({"status": ["draft", "submitted", "discarded"]}, {("a", 4), ("a", 5), ("c", 2)}),
    ({"split": "val"}, {("b", 1)}),
    ({"split": "train", "status": ["all"]}, {("a", 1), ("a", 2), ("a", 3), ("a", 4), ("a", 5)}),
    ({"split": "test", "status": ["all"]}, {("c", 1), ("c", 2)}),
    ({"kind": "auto"}, {("a", 2), ("c", 1)}),
    ({"kind": "auto", "status": ["all"]}, {("a", 2), ("b", 2), ("c", 1)}),
    ({"kind": "manual", "status": ["approved", "rejected"]}, {("a", 1), ("a", 3), ("b", 1)}),
    ({"videos": ["b", "c"]}, {("b", 1), ("c", 1)}),
    ({"videos": ["b", "c"], "status": ["all"]}, {("b", 1), ("b", 2), ("c", 1), ("c", 2)}),
    ({"videos": ["a", "b"], "split": "train", "kind": "auto"}, {("a", 2)}),
])
def test_cli_filters_select_exactly_these_masklets(filtered_project, tmp_path, options, expected):
    assert cli_export(tmp_path, **options) == expected


def test_cli_filters_parsed_from_the_command_line(filtered_project, tmp_path):
    """The same filters as typed in a shell (argparse: --status all, --type, --videos NAME ...)."""
    out = tmp_path / "sav"
    call_command("export_dataset", "--project", "filters", "--format", "sav", "--out", str(out), "--status", "all",
                 "--videos", "b", "--type", "auto", "--no-media", verbosity=0)
    assert sorted(p.name for p in out.iterdir()) == ["b_auto.json"]
    data = json.loads((out / "b_auto.json").read_text())
    assert (data["masklet_id"], data["masklet_type"]) == ([2], ["auto"])
    out = tmp_path / "split"
    call_command("export_dataset", "--project", "filters", "--format", "sav", "--out", str(out), "--split", "test",
                 "--status", "approved", "submitted", "--no-media", verbosity=0)
    assert sorted(p.name for p in out.iterdir()) == ["c_auto.json", "c_manual.json"]


def test_cli_filters_that_match_nothing_or_are_wrong(filtered_project, tmp_path, capsys):
    out = tmp_path / "none"
    call_command("export_dataset", project="filters", fmt="coco", out=str(out), no_media=True, split="val",
                 kind="auto")
    assert "nothing exported" in capsys.readouterr().err
    assert json.loads((out / "annotations.json").read_text())["videos"] == []
    with pytest.raises(CommandError, match="no ready video named e, ghost in project filters"):
        call_command("export_dataset", project="filters", fmt="coco", out=str(tmp_path / "x"), videos=["a", "e",
                                                                                                          "ghost"])
    with pytest.raises(CommandError, match="invalid choice: 'holdout'"):
        call_command("export_dataset", "--project", "filters", "--format", "coco", "--out", str(tmp_path / "y"),
                     "--split", "holdout")


@pytest.fixture
def admin_client(filtered_project, make_user) -> Client:
    admin = make_user("ada")
    Membership.objects.create(project=filtered_project, user=admin, role=Role.ADMIN)
    client = Client()
    client.force_login(admin)
    return client


def web_export(client: Client, tmp_path: Path, form: dict) -> DatasetJob:
    """Post the export form (media left unchecked) and run the queued job as the worker would."""
    response = client.post(reverse("datasets", args=["filters"]), {"format": "coco", **form})
    assert response.status_code == 302, response.content
    job = DatasetJob.objects.filter(project__slug="filters").latest("id")
    return run_job(job.id)  # the worker's part (no commit happens inside this test's transaction)


def web_exported(job: DatasetJob, tmp_path: Path) -> set[tuple[str, int]]:
    assert job.status == DatasetJob.Status.DONE, job.error
    with zipfile.ZipFile(open_archive(job)[0]) as bundle:
        assert bundle.namelist() == ["annotations.json"], "media unchecked: annotations only"
        return exported(json.loads(bundle.read("annotations.json")))


@pytest.mark.parametrize(("form", "filters", "expected"), [
    ({"statuses": ["approved"]}, {"statuses": ["approved"], "split": None, "type": None, "videos": []},
     {("a", 1), ("a", 2), ("b", 1), ("c", 1)}),
    ({"statuses": ["approved", "rejected"], "split": "train", "type": "manual", "videos": ["a", "b"]},
     {"statuses": ["approved", "rejected"], "split": "train", "type": "manual", "videos": ["a", "b"]},
     {("a", 1), ("a", 3)}),
    ({"statuses": ["rejected"], "type": "auto"}, {"statuses": ["rejected"], "split": None, "type": "auto",
                                                   "videos": []}, {("b", 2)}),
    ({"statuses": list(Masklet.Status.values), "split": "test"},
     {"statuses": list(Masklet.Status.values), "split": "test", "type": None, "videos": []}, {("c", 1), ("c", 2)}),
    ({"statuses": list(Masklet.Status.values), "videos": ["b", "c"]},
     {"statuses": list(Masklet.Status.values), "split": None, "type": None, "videos": ["b", "c"]},
     {("b", 1), ("b", 2), ("c", 1), ("c", 2)}),
])
def test_web_export_form_filters(admin_client, tmp_path, form, filters, expected):
    job = web_export(admin_client, tmp_path, form)
    assert job.options == {"filters": filters, "media": False}
    assert web_exported(job, tmp_path) == expected


def test_web_export_form_refuses_bad_filters(admin_client, tmp_path):
    page = admin_client.get(reverse("datasets", args=["filters"])).content.decode()
    for field in ('name="split"', 'name="type"', 'name="videos"', 'name="statuses"', 'value="rejected"'):
        assert field in page
    response = admin_client.post(reverse("datasets", args=["filters"]),
                                 {"format": "coco", "statuses": ["approved"], "videos": ["a", "ghost"]}, follow=True)
    assert b"ghost is not one of the available choices" in response.content  # the picker offers only real videos
    response = admin_client.post(reverse("datasets", args=["filters"]), {"format": "coco", "statuses": ["approved"],
                                                                         "split": "holdout", "type": "robot"})
    assert response.status_code == 200
    assert b"holdout is not one of the available choices" in response.content
    assert b"robot is not one of the available choices" in response.content
    assert not DatasetJob.objects.exists(), "nothing queued"


def test_the_export_form_remembers_what_this_person_chose_last(admin_client):
    admin_client.post(reverse("datasets", args=["filters"]), {"format": "ytvis", "statuses": ["approved", "rejected"],
                                                               "split": "val", "type": "auto"})
    page = admin_client.get(reverse("datasets", args=["filters"])).content.decode()
    assert '<option value="ytvis" selected>' in page
    assert '<option value="val" selected>' in page and '<option value="auto" selected>' in page
    assert re.search(r'value="rejected"[^>]*checked', page) and not re.search(r'value="draft"[^>]*checked', page)
