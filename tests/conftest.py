"""Shared test fixtures. Real data from ``../shared/data`` is used when present, skipped cleanly when not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("MASKLET_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def shared_path(*parts: str) -> Path:
    """A path under ``../shared/data``; skips the calling test when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data {path} is not on this machine")
    return path


@pytest.fixture
def davis_root() -> Path:
    return shared_path("davis-dev")


@pytest.fixture
def shared_videos() -> Path:
    return shared_path("videos")


@pytest.fixture
def sav_example() -> Path:
    return shared_path("sav-example")
