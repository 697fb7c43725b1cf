"""Where a model is named, the classical backend is called a low-quality fallback with a link to
getting SAM 2 (review page, models dashboard, the annotation socket's hello); a SAM 2 version is
named with its size and image size, and nothing calls it a fallback."""

from __future__ import annotations

import pytest
from django.test import Client

from annotator.models import Masklet, Membership, Role
from engine.models import ModelVersion
from loop import registry
from tests.engine.conftest import add_synthetic_video

pytestmark = pytest.mark.django_db

NOTE = "a low-quality fallback"


@pytest.fixture
def admin(loop_project):
    project = loop_project(train=0, val=0, slug="lbl")
    user = Membership.objects.get(project=project, role=Role.ADMIN).user
    video = add_synthetic_video(project, 3, "train", status=Masklet.Status.SUBMITTED)
    client = Client()
    client.force_login(user)
    return project, client, video.masklets.first()


def test_the_fallback_is_labelled_until_a_sam2_version_serves(admin):
    project, client, masklet = admin
    review_url = f"/projects/{project.slug}/masklets/{masklet.pk}/review/"
    pages = (review_url, f"/projects/{project.slug}/models/")
    for url in pages:
        html = client.get(url).content.decode()
        assert "classical (OpenCV)" in html and NOTE in html and 'href="/help/sam2/"' in html, url
    assert client.get(f"/api/projects/{project.slug}/models/").json()["serving_fallback"] is True
    help_page = client.get("/help/sam2/").content.decode()
    assert "fetch_model sam2.1_hiera_tiny --promote" in help_page
    assert "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_large.pt" in help_page

    version = ModelVersion.objects.create(project=project, name="v1", checkpoint="",
                                          sam2_config="configs/sam2.1/sam2.1_hiera_s.yaml", image_size=512)
    registry.promote(version)
    for url in pages:
        html = client.get(url).content.decode()
        assert "v1 — SAM 2.1 hiera-s @512" in html, url  # its size and its image size
        assert f'data-fallback-note hidden> — {NOTE}' in html, url  # present for the page script, not shown
    assert client.get(f"/api/projects/{project.slug}/models/").json()["serving_fallback"] is False
