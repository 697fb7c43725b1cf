"""Names and paths: one builder refuses anything that could leave its root; every way to set a name checks it."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError
from django.urls import reverse

from annotator.models import Video
from engine.safe_paths import UnsafePath, check_name, clean_name, public_text, safe_join

ATTACKS = ["../x", "..", ".", "/etc/passwd", "a/b", "a\\b", "a\x00b", "clip\n", "a\nb", "x" * 201, "", " x", ".hidden",
           "C:\\x"]


@pytest.mark.parametrize("name", ["sav_000001", "clip.v2", "a-b_c", "été", "x" * 200, "0"])
def test_safe_names_pass(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", [*ATTACKS, None, 7])
def test_unsafe_names_are_refused_with_the_rule(name):
    with pytest.raises(UnsafePath, match="letters, digits"):
        check_name(name, "video name")


@pytest.mark.parametrize("text", ATTACKS)
def test_clean_name_always_gives_a_safe_name(text):
    assert check_name(clean_name(text)) == clean_name(text)
    assert clean_name("../../x") == "x"


def test_safe_join_stays_inside_and_refuses_links_out(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "in").mkdir(parents=True)
    outside.mkdir()
    assert safe_join(root, "in", "f.json") == root.resolve() / "in" / "f.json"
    (root / "in" / "inner").symlink_to(root / "in")  # a link that stays inside is fine
    assert safe_join(root, "in", "inner", "f.json").parent.name == "inner"
    (root / "escape").symlink_to(outside)
    with pytest.raises(UnsafePath, match="outside its folder"):
        safe_join(root, "escape", "f.json")
    (root / "file-link").symlink_to(outside / "f.json")
    with pytest.raises(UnsafePath, match="outside its folder"):
        safe_join(root, "file-link")
    for attack in ATTACKS:
        with pytest.raises(UnsafePath):
            safe_join(root, "in", attack)
    assert sorted(os.listdir(outside)) == []


def test_public_text_hides_server_folders(tmp_path):
    scratch = tmp_path / "scratch"
    text = (f"{scratch}/sav/x.json: bad; {settings.DATA_DIR}/media/v.mp4 missing; "
            f"{Path(settings.DATA_DIR).parent}/other")
    shown = public_text(text, [(scratch, "")])
    assert shown.startswith("sav/x.json: bad; <data>/media/v.mp4 missing")
    assert str(scratch) not in shown and str(settings.DATA_DIR) not in shown


@pytest.mark.django_db
def test_the_model_field_refuses_unsafe_names_as_admin_forms_do(project):
    for name in ATTACKS[:10]:
        video = Video(project=project, name=name)
        with pytest.raises(ValidationError) as error:
            video.full_clean(exclude=["original"])
        assert "name" in error.value.message_dict


@pytest.mark.django_db
def test_the_admin_change_form_refuses_a_path_as_name(admin_client, project):
    video = Video.objects.create(project=project, name="ok")
    url = reverse("admin:annotator_video_change", args=[video.pk])
    response = admin_client.post(url, {"project": project.pk, "name": "../../x", "file_size": 0, "split": "train",
                                       "environment": ""})
    assert response.status_code == 200 and "letters, digits" in response.content.decode()
    assert Video.objects.get(pk=video.pk).name == "ok"


@pytest.mark.django_db
def test_the_data_migration_renames_and_flags_unsafe_names(project, capsys):
    migration = importlib.import_module("annotator.migrations.0008_safe_video_names")
    safe = Video.objects.create(project=project, name="x")
    bad = [Video.objects.create(project=project, name=f"tmp{i}") for i in range(4)]
    for video, name in zip(bad, ["../../x", "/abs/clip", "a\nb", "y" * 250], strict=True):  # (Postgres holds no NUL)
        Video.objects.filter(pk=video.pk).update(name=name)  # as stored before the validators existed
    migration.rename_unsafe_names(apps, None)
    names = dict(Video.objects.values_list("pk", "name"))
    assert names[safe.pk] == "x"
    assert [names[v.pk] for v in bad] == ["x-2", "abs_clip", "a_b", "y" * 192]
    assert "renamed from '../../x'" in Video.objects.get(pk=bad[0].pk).failure_reason
    assert "../../x" in capsys.readouterr().out
