"""Every way to set a video's name checks it with the one name rule (engine.safe_paths): the model field, the
admin's forms, and the data migration that renamed what was stored before the rule existed."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.core.exceptions import ValidationError
from django.urls import reverse

from annotator.models import Video
from tests.engine.test_safe_paths import ATTACKS


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
