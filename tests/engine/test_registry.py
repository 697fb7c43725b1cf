"""The model registry: checkpoints are really loaded before registration; promote and roll back are audited."""

from __future__ import annotations

import pytest
import torch
from django.db import IntegrityError, transaction
from django.urls import reverse

from annotator.models import Project
from engine.models import ModelVersion, ModelVersionEvent
from engine.segmenters import serving_model
from loop import registry
from loop.loop_demo import random_checkpoint

pytestmark = pytest.mark.django_db

SIZE = 64


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return random_checkpoint("sam2.1_hiera_t", SIZE, 0, tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture
def project():
    return Project.objects.create(name="p", slug="p")


def register(project, checkpoint, name="v", config="sam2.1_hiera_t", check=True):
    """Registration loads the checkpoint in a child process (seconds): tests of other things skip that."""
    return registry.register_version(project, name=name, checkpoint=checkpoint, config=config, image_size=SIZE,
                                     check=check)


def test_a_loadable_checkpoint_registers_as_a_candidate_with_an_event(project, tiny_checkpoint):
    version = register(project, tiny_checkpoint)
    assert version.status == ModelVersion.Status.CANDIDATE
    assert version.sam2_config == "configs/sam2.1/sam2.1_hiera_t.yaml"
    assert [e.action for e in version.events.all()] == ["registered"]


def test_unloadable_checkpoints_are_refused_with_the_reason(project, tiny_checkpoint, tmp_path):
    with pytest.raises(registry.RegistryError, match="does not exist"):
        register(project, tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(registry.RegistryError, match="cannot read"):
        register(project, garbage)
    with pytest.raises(registry.RegistryError, match="does not match config"):
        register(project, tiny_checkpoint, config="sam2.1_hiera_s")  # another model size
    bare = tmp_path / "bare.pt"
    torch.save({"optimizer": {}}, bare)
    with pytest.raises(registry.RegistryError):
        register(project, bare)
    assert not ModelVersion.objects.exists()


def test_promote_and_roll_back_follow_the_audit_trail(project, tiny_checkpoint, django_user_model):
    admin = django_user_model.objects.create_user("boss")
    v1, v2, v3 = (register(project, tiny_checkpoint, name=f"v{i}", check=False) for i in (1, 2, 3))
    assert serving_model(project).backend == "classical"
    registry.promote(v1, admin)
    registry.promote(v2, admin)
    registry.promote(v3, automatic=True)
    assert serving_model(project).model_version_id == v3.pk  # new sessions get it, no restart
    assert registry.roll_back(project, admin) == v2
    assert registry.roll_back(project, admin) == v1
    assert registry.roll_back(project, admin) is None  # back to the fallback model
    assert serving_model(project).backend == "classical"
    with pytest.raises(registry.RegistryError, match="nothing to roll back"):
        registry.roll_back(project, admin)
    events = ModelVersionEvent.objects.filter(project=project).order_by("id")
    actions = list(events.values_list("action", "version__name"))
    assert actions[3:6] == [("promoted", "v1"), ("promoted", "v2"), ("auto_promoted", "v3")]
    assert actions[6:] == [("rolled_back", "v2"), ("rolled_back", "v1"), ("rolled_back", "v1")]
    assert ModelVersionEvent.objects.filter(actor=admin).count() == 5


def test_the_database_allows_one_production_version_per_project(project, tiny_checkpoint):
    v1, v2 = register(project, tiny_checkpoint, "a", check=False), register(project, tiny_checkpoint, "b", check=False)
    ModelVersion.objects.filter(pk=v1.pk).update(status="production")
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=v2.pk).update(status="production")


def test_the_admin_cannot_add_a_version_or_repoint_its_checkpoint(admin_client, loop_project, tmp_path):
    project = loop_project(train=0, val=0, slug="adm")
    version = ModelVersion.objects.create(project=project, name="v", checkpoint="uploads/v.pt", image_size=64,
                                          sam2_config="configs/sam2.1/sam2.1_hiera_t.yaml")
    assert admin_client.get(reverse("admin:engine_modelversion_add")).status_code == 403
    url = reverse("admin:engine_modelversion_change", args=[version.pk])
    response = admin_client.post(url, {"name": "renamed", "project": project.pk, "status": version.status,
                                       "checkpoint": "/etc/passwd", "metrics": "{}", "image_size": 64})
    assert response.status_code == 302, response.context["adminform"].form.errors  # saved...
    version.refresh_from_db()
    assert (version.name, version.checkpoint) == ("renamed", "uploads/v.pt")  # ...but not the checkpoint
