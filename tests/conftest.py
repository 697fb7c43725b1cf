"""Shared test fixtures and the suite's markers (see tests/README.md).

Real data from ``../shared/data`` is used when present, skipped cleanly when not.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections import Counter
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

#: Seconds each test file took in the last measured embedded run: the order ``make test`` sends files in.
FILE_DURATIONS = Path(__file__).with_name("file_durations.json")
#: What a file not in it yet counts as when it has browser or slow tests.
UNMEASURED_HEAVY_S = 30.0
#: Fixtures through which a test reaches the configured database (pytest-django's).
DATABASE_FIXTURES = {"db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback",
                     "live_server"}


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by these marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Derive the markers CI's passes select on, so a new test lands in the right pass by what it uses:

    - ``db_engine``: the test reaches the database (a ``django_db`` mark or a database fixture), so it
      runs in both passes: on SQLite in the embedded pass, on PostgreSQL in the services pass;
    - ``services``: skipped in embedded mode (no ``REDIS_URL``), with the reason.

    The order of files is ``HeaviestFilesFirst``'s (below); within a file pytest-django's order stays
    (database tests first).
    """
    for item in items:
        if item.get_closest_marker("django_db") or DATABASE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.db_engine)
        if item.get_closest_marker("services") and django_settings.EMBEDDED:
            item.add_marker(pytest.mark.skip(reason="needs REDIS_URL (services mode: Postgres + Redis)"))


class HeaviestFilesFirst:
    """The files that took longest in the last measured run first (``FILE_DURATIONS``).

    ``make test``'s xdist workers take whole files (``--dist loadfile --no-loadscope-reorder``), each
    the next in this order as it finishes one: sending the longest first (LPT scheduling) leaves a
    tail of short files that ends the workers within seconds of each other, where a two-minute file
    sent last would run alone on one worker. A file not measured yet counts as long when it has
    browser (``e2e``) or ``slow`` tests. Within a file pytest-django's order stays (database tests
    first); the browser fixture is per module, so a database test may follow a browser test in a
    process (tests/e2e/conftest.py, ``browser``). ``--write-file-durations`` updates the table with
    the files a run measured.
    """

    def __init__(self, write: bool):
        self.write = write
        self.measured: Counter[str] = Counter()

    @pytest.hookimpl(trylast=True)  # after pytest-django's database-first order, which stays within a file
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        known = json.loads(FILE_DURATIONS.read_text()) if FILE_DURATIONS.exists() else {}
        heavy = {_file_of(item) for item in items if item.get_closest_marker("e2e") or item.get_closest_marker("slow")}
        items.sort(key=lambda item: -known.get(_file_of(item), UNMEASURED_HEAVY_S if _file_of(item) in heavy else 0))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.measured[report.nodeid.split("::")[0]] += report.duration  # setup, call and teardown

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.write and not hasattr(session.config, "workerinput"):  # the xdist controller, or no xdist
            known = json.loads(FILE_DURATIONS.read_text()) if FILE_DURATIONS.exists() else {}
            table = {**known, **{name: round(seconds, 1) for name, seconds in self.measured.items()}}
            table = {name: table[name] for name in sorted(table) if (REPO_ROOT / name).exists()}
            FILE_DURATIONS.write_text(json.dumps(table, indent=1) + "\n")


def _file_of(item: pytest.Item) -> str:
    return item.nodeid.split("::")[0]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--write-file-durations", action="store_true",
                     help=f"after the run, write the seconds of each test file to {FILE_DURATIONS.name}")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(HeaviestFilesFirst(config.getoption("--write-file-durations")),
                                  "masklet-heaviest-files-first")


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
