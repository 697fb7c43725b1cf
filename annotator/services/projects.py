"""Creating projects: the creator becomes the project's first admin, in the same transaction."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.db import transaction

from annotator.models import Masklet, Membership, Project, Role
from annotator.permissions import User, can_create_project


def parse_labels(text: str) -> list[str]:
    """Split a label list typed as commas or one per line; trims, drops blanks and repeats."""
    labels: list[str] = []
    for item in re.split(r"[,\n]", text or ""):
        label = item.strip()
        if label and label not in labels:
            labels.append(label)
    return labels


@transaction.atomic
def create_project(
    *, creator: User, name: str, slug: str, annotation_fps: int = 6, labels: list[str] | None = None,
    description: str = "",
) -> Project:
    """Create a project and make ``creator`` its admin. Raises ValidationError on bad input."""
    if not can_create_project(creator):
        raise ValidationError("Only staff can create projects.")
    project = Project(
        name=name.strip(), slug=slug.strip(), annotation_fps=annotation_fps, labels=list(labels or []),
        description=description.strip(), created_by=creator,
    )
    project.full_clean()
    project.save()
    Membership.objects.create(project=project, user=creator, role=Role.ADMIN)
    return project


#: Colours a label gets until someone picks one (by its place in the set).
PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#fabed4",
           "#469990", "#9a6324", "#800000")
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")


def label_colour(project: Project, label: str) -> str:
    """The label's chosen colour, or its palette colour by its place among all the project's labels."""
    chosen = (project.label_colours or {}).get(label)
    if chosen:
        return chosen
    names = project.all_labels()
    return PALETTE[names.index(label) % len(PALETTE)] if label in names else "#888888"


@transaction.atomic
def update_project(project: Project, *, name: str, description: str, annotation_fps: int,
                   auto_approve_confident: bool = False) -> Project:
    """Name, description, annotation fps (videos ingested from now on use the new fps) and whether
    confident masklets are approved by themselves (``services.annotation.approve_if_confident``)."""
    row = Project.objects.select_for_update().get(pk=project.pk)
    row.name, row.description, row.annotation_fps = name.strip(), description.strip(), annotation_fps
    row.auto_approve_confident = auto_approve_confident
    row.full_clean()
    row.save(update_fields=["name", "description", "annotation_fps", "auto_approve_confident"])
    return row


def _label_name(text: str) -> str:
    label = (text or "").strip()
    if not label:
        raise ValidationError("Give the label a name.")
    if len(label) > Masklet._meta.get_field("label").max_length:
        raise ValidationError("A label has 100 characters at most.")
    if re.search(r"[,\n\r]", label):
        raise ValidationError("A label cannot contain a comma or a line break.")
    return label


def _locked(project: Project) -> Project:
    return Project.objects.select_for_update().get(pk=project.pk)


def _unused(row: Project, label: str) -> None:
    if label in row.all_labels():
        state = "a retired label" if label in (row.retired_labels or []) else "a label"
        raise ValidationError(f"“{label}” is {state} of this project already.")


@transaction.atomic
def add_label(project: Project, text: str, colour: str = "") -> Project:
    row, label = _locked(project), _label_name(text)
    _unused(row, label)
    row.labels = [*(row.labels or []), label]
    if colour:
        _set_colour(row, label, colour)
    row.save(update_fields=["labels", "label_colours"])
    return row


@transaction.atomic
def rename_label(project: Project, old: str, text: str) -> int:
    """Rename a label (active or retired) in the set and on every masklet that has it; returns how many changed."""
    row, new = _locked(project), _label_name(text)
    if old not in row.all_labels():
        raise ValidationError(f"“{old}” is not a label of this project.")
    if new == old:
        return 0
    _unused(row, new)
    row.labels = [new if label == old else label for label in row.labels or []]
    row.retired_labels = [new if label == old else label for label in row.retired_labels or []]
    colours = dict(row.label_colours or {})
    if old in colours:
        colours[new] = colours.pop(old)
    row.label_colours = colours
    row.save(update_fields=["labels", "retired_labels", "label_colours"])
    return Masklet.objects.filter(video__project=row, label=old).update(label=new)


def _set_colour(row: Project, label: str, colour: str) -> None:
    if not _COLOUR.match(colour or ""):
        raise ValidationError(f"“{colour}” is not a colour: use #rrggbb.")
    row.label_colours = {**(row.label_colours or {}), label: colour.lower()}


@transaction.atomic
def recolour_label(project: Project, label: str, colour: str) -> Project:
    row = _locked(project)
    if label not in row.all_labels():
        raise ValidationError(f"“{label}” is not a label of this project.")
    _set_colour(row, label, colour)
    row.save(update_fields=["label_colours"])
    return row


@transaction.atomic
def retire_label(project: Project, label: str) -> Project:
    """No longer offered for new objects; masklets that have it keep it, and exports still name it."""
    row = _locked(project)
    if label not in (row.labels or []):
        raise ValidationError(f"“{label}” is not an active label of this project.")
    row.labels = [name for name in row.labels if name != label]
    row.retired_labels = [*(row.retired_labels or []), label]
    row.save(update_fields=["labels", "retired_labels"])
    return row


@transaction.atomic
def restore_label(project: Project, label: str) -> Project:
    row = _locked(project)
    if label not in (row.retired_labels or []):
        raise ValidationError(f"“{label}” is not a retired label of this project.")
    row.retired_labels = [name for name in row.retired_labels if name != label]
    row.labels = [*(row.labels or []), label]
    row.save(update_fields=["labels", "retired_labels"])
    return row


@transaction.atomic
def set_labels(project: Project, labels: list[str]) -> Project:
    """Make ``labels`` the active set, in this order (the API's PATCH): a new name is added, a retired one
    offered again, an active one left out is retired (masklets keep it, exports still name it)."""
    row = _locked(project)
    wanted = [_label_name(text) for text in labels]
    if len(set(wanted)) != len(wanted):
        raise ValidationError("A label appears twice in the list.")
    dropped = [label for label in row.labels or [] if label not in wanted]
    row.retired_labels = [label for label in row.retired_labels or [] if label not in wanted] + dropped
    row.labels = wanted
    row.save(update_fields=["labels", "retired_labels"])
    return row
