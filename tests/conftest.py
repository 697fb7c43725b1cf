"""Shared test fixtures and the suite's markers (see tests/README.md).

Real data from ``../shared/data`` is used when present, skipped cleanly when not.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import override_settings

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("MASKLET_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))

# One OpenMP thread per test process, and in the servers and workers tests start (they copy the
# environment). Torch's default, a thread per core, spins at every barrier when the 2 cores are
# shared (two xdist workers, Chromium, other jobs): the loop-demo smoke test took 300 s with 2
# threads and 41 s with 1 on the loaded build machine, with the same numbers.
os.environ.setdefault("OMP_NUM_THREADS", "1")

#: Fixtures through which a test reaches the configured database (pytest-django's).
DATABASE_FIXTURES = {"db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback",
                     "live_server"}


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by these marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Derive the markers CI's passes select on, so a new test lands in the right pass by what it uses:

    - ``db_engine``: the test reaches the database (a ``django_db`` mark or a database fixture), so it
      runs in both passes: on SQLite in the embedded pass, on PostgreSQL in the services pass;
    - ``services``: skipped in embedded mode (no ``REDIS_URL``), with the reason.

    Do not reorder the items: pytest-django runs database tests before the others, and a browser
    test's Playwright loop (session-scoped) makes every later ORM call in that process fail with
    "You cannot call this from an async context". ``make test``'s xdist workers take whole files in
    this order (``--dist loadfile --no-loadscope-reorder``), so that holds in each worker too.
    """
    for item in items:
        if item.get_closest_marker("django_db") or DATABASE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.db_engine)
        if item.get_closest_marker("services") and django_settings.EMBEDDED:
            item.add_marker(pytest.mark.skip(reason="needs REDIS_URL (services mode: Postgres + Redis)"))


class BrowserTestsLast:
    """Browser tests last: they may only follow the database tests (see above), and a file that is not
    one of them (the real-video segmentation tests take two minutes) should not wait behind them: with
    ``--dist loadfile`` a long file scheduled last is a tail one xdist worker runs alone."""

    @pytest.hookimpl(trylast=True)  # after pytest-django has put the database tests first
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(BrowserTestsLast(), "masklet-browser-tests-last")


@pytest.fixture(scope="session", autouse=True)
def unthrottled_api():
    """No API rate limits while testing: a test process makes thousands of API calls a minute from one
    address. The throttling tests set their own rates (``settings.API_RATES``)."""
    with override_settings(API_RATES={"token": None, "ip": None}):
        yield


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> None:
    """``OMP_NUM_THREADS`` is read when torch loads: set it too if torch was loaded before this file."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


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


@pytest.fixture(scope="session")
def s3_server() -> Iterator[object]:
    """moto's S3 server on 127.0.0.1 for the object-storage tests, one per test process (``tests/s3_server.py``).

    Its test credentials go into the environment, so servers and workers a test starts use them too.
    """
    from tests.s3_server import CREDENTIALS, S3Server

    with pytest.MonkeyPatch.context() as patch:
        for name, value in CREDENTIALS.items():
            patch.setenv(name, value)
        server = S3Server()
        yield server
        server.close()


@pytest.fixture
def s3_storage(s3_server, settings, tmp_path) -> str:
    """This test stores into a new bucket on ``s3_server`` (``s3://<bucket>/team``), read through a cache
    in ``tmp_path``; returns the bucket's name."""
    from config.settings import storage_settings

    bucket = f"masklet-{uuid.uuid4().hex[:16]}"
    s3_server.client().create_bucket(Bucket=bucket)
    for name, value in storage_settings(f"s3://{bucket}/team", s3_server.url, tmp_path / "data").items():
        setattr(settings, name, value)
    settings.CACHE_ROOT = tmp_path / "cache"
    return bucket
