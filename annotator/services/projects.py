"""Creating projects: the creator becomes the project's first admin, in the same transaction."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.db import transaction

from annotator.models import Membership, Project, Role
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
