"""Editing a project and its label set: add, rename (objects follow), recolour, retire (objects and
exports keep it; new objects cannot take it), restore; the page refuses bad input in words."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from annotator.datasets.common import category_ids
from annotator.models import Masklet, Project, Role, Video
from annotator.services import annotation, projects
from annotator.services.annotation import EditRefused


@pytest.fixture
def world(make_user, make_project):
    boss, ann = make_user("boss"), make_user("ann")
    project = make_project("Pets", slug="pets", members={boss: Role.ADMIN, ann: Role.ANNOTATOR},
                           labels=["ball", "dog"])
    video = Video.objects.create(project=project, name="v", status=Video.Status.READY, frame_count=8, stride=4,
                                 width=8, height=6)
    return project, video, boss, ann


def test_the_label_set_changes_and_objects_follow(world):
    project, video, _, ann = world
    dog = annotation.create_masklet(video, ann, label="dog")
    projects.add_label(project, "woman", "#00AA00")
    assert projects.rename_label(project, "dog", "puppy") == 1
    dog.refresh_from_db()
    project.refresh_from_db()
    assert dog.label == "puppy" and project.labels == ["ball", "puppy", "woman"]
    assert projects.label_colour(project, "woman") == "#00aa00"
    assert projects.label_colour(project, "ball") == projects.PALETTE[0]
    projects.recolour_label(project, "ball", "#123456")
    projects.retire_label(project, "puppy")
    project.refresh_from_db()
    assert project.labels == ["ball", "woman"] and project.retired_labels == ["puppy"]
    dog.refresh_from_db()
    assert dog.label == "puppy"  # kept on the object
    assert category_ids(project) == {"ball": 1, "woman": 2, "puppy": 3}  # and in exports
    video.project = project
    with pytest.raises(EditRefused, match="retired"):
        annotation.create_masklet(video, ann, label="puppy")
    annotation.update_masklet(dog, ann, label="puppy")  # an object keeps its retired label when edited
    projects.restore_label(project, "puppy")
    project.refresh_from_db()
    assert project.labels == ["ball", "woman", "puppy"] and project.retired_labels == []


@pytest.mark.parametrize(("call", "message"), [
    (lambda p: projects.add_label(p, "dog"), "already"),
    (lambda p: projects.add_label(p, " "), "name"),
    (lambda p: projects.add_label(p, "a,b"), "comma"),
    (lambda p: projects.add_label(p, "x" * 101), "100 characters"),
    (lambda p: projects.add_label(p, "cat", "red"), "#rrggbb"),
    (lambda p: projects.rename_label(p, "cat", "kitten"), "not a label"),
    (lambda p: projects.rename_label(p, "dog", "ball"), "already"),
    (lambda p: projects.retire_label(p, "cat"), "not an active label"),
    (lambda p: projects.restore_label(p, "dog"), "not a retired label"),
])
def test_bad_label_changes_are_refused_with_the_reason(world, call, message):
    project = world[0]
    with pytest.raises(ValidationError, match=message):
        call(project)
    project.refresh_from_db()
    assert project.labels == ["ball", "dog"]


def test_the_edit_page_saves_the_project_and_says_what_went_wrong(world):
    project, _, boss, ann = world
    client = Client()
    client.force_login(boss)
    url = reverse("project-edit", args=[project.slug])
    saved = client.post(url, {"action": "details", "name": "Pets 2", "description": "Park videos",
                              "annotation_fps": "8"}, follow=True)
    assert "Project saved." in saved.content.decode()
    project.refresh_from_db()
    assert (project.name, project.description, project.annotation_fps) == ("Pets 2", "Park videos", 8)
    bad = client.post(url, {"action": "details", "name": "Pets 2", "annotation_fps": "0"})
    assert bad.status_code == 200 and "greater than or equal to 1" in bad.content.decode()
    refused = client.post(url, {"action": "add_label", "new_label": "dog"}, follow=True)
    assert "“dog” is a label of this project already." in refused.content.decode()
    client.post(url, {"action": "retire_label", "label": "dog"})
    page = client.get(url).content.decode()
    assert 'id="retired-table"' in page and 'data-label="dog"' in page
    annotator = Client()
    annotator.force_login(ann)
    assert annotator.get(url).status_code == 403
    assert Project.objects.get(pk=project.pk).retired_labels == ["dog"]
    assert Masklet.objects.count() == 0
