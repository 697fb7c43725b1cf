"""Small, generic factories for annotator tests: users, projects, memberships.

Each factory is a fixture returning a function, so tests create exactly the rows they need:

    def test_x(make_user, make_project, make_membership):
        alice = make_user("alice")
        project = make_project(members={alice: Role.ANNOTATOR})

They depend on ``db``; a ``@pytest.mark.django_db(transaction=True)`` test still gets its
transactional database (the marker wins).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from django.contrib.auth import get_user_model

from annotator.models import Membership, Project, Role

PASSWORD = "correct-horse-battery-staple"
_counter = itertools.count(1)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    """Tests create many users: the production hasher costs ~0.5 s per password on these machines."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def isolated_files(settings, tmp_path) -> None:
    """Uploaded videos and ingested frames go to this test's own folder."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.FRAMES_ROOT = tmp_path / "frames"


def _write_mp4(path: Path, frames: int = 12, fps: float = 24.0, size: tuple[int, int] = (64, 48)) -> bytes:
    """A small real MP4 (mp4v) with a moving square, so decoders have something to chew on."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for index in range(frames):
        frame = np.full((size[1], size[0], 3), 40, np.uint8)
        cv2.rectangle(frame, (index * 3, 10), (index * 3 + 12, 22), (0, 200, 255), -1)
        writer.write(frame)
    writer.release()
    return path.read_bytes()


@pytest.fixture
def make_mp4() -> Callable[..., bytes]:
    """``make_mp4(path, frames=12, fps=24.0, size=(64, 48)) -> bytes`` writes a tiny real MP4."""
    return _write_mp4


@pytest.fixture
def password() -> str:
    """The password every ``make_user`` account has unless given another."""
    return PASSWORD


@pytest.fixture
def make_user(db) -> Callable[..., object]:
    """``make_user(username=None, *, superuser=False, staff=False, password=PASSWORD, **fields)``."""

    def make(username: str | None = None, *, superuser: bool = False, staff: bool = False,
             password: str = PASSWORD, **fields):
        User = get_user_model()
        username = username or f"user{next(_counter)}"
        fields.setdefault("email", f"{username}@example.com")
        if superuser:
            return User.objects.create_superuser(username=username, password=password, **fields)
        return User.objects.create_user(username=username, password=password, is_staff=staff, **fields)

    return make


@pytest.fixture
def make_membership(db) -> Callable[..., Membership]:
    """``make_membership(project, user, role=Role.ANNOTATOR)``."""

    def make(project: Project, user, role: str = Role.ANNOTATOR) -> Membership:
        return Membership.objects.create(project=project, user=user, role=role)

    return make


@pytest.fixture
def make_project(db, make_membership) -> Callable[..., Project]:
    """``make_project(name=None, *, slug=None, members=None, **fields)``; ``members`` maps user -> role."""

    def make(name: str | None = None, *, slug: str | None = None, members: dict | None = None,
             **fields) -> Project:
        n = next(_counter)
        project = Project.objects.create(name=name or f"Project {n}", slug=slug or f"project-{n}", **fields)
        for user, role in (members or {}).items():
            make_membership(project, user, role)
        return project

    return make


@pytest.fixture
def user(make_user):
    return make_user()


@pytest.fixture
def project(make_project) -> Project:
    return make_project()
