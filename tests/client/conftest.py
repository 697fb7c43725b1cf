"""The API client and the ``masklet`` command against live servers.

The tests import this checkout's ``client/`` (not whichever checkout the shared ``.venv`` was
installed from) and run the ``masklet`` console script that ``make install`` puts in the venv, with
``PYTHONPATH`` pointing at the same package.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIENT_ROOT = REPO_ROOT / "client"
sys.path.insert(0, str(CLIENT_ROOT))

MASKLET = Path(sys.executable).parent / "masklet"

Masklet = Callable[..., subprocess.CompletedProcess]


def masklet_runner(url: str | None, token: str | None) -> Masklet:
    """``run(*args, token=..., stdin=None, timeout=...)``: the ``masklet`` command as a script runs it."""
    if not MASKLET.exists():
        pytest.fail(f"{MASKLET} is missing: `make install` installs the client (pip install -e client)")

    def run(*args: str, token: str | None = token, stdin: str | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
        env = {key: value for key, value in os.environ.items() if key not in ("MASKLET_URL", "MASKLET_TOKEN")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CLIENT_ROOT), env.get("PYTHONPATH")]))
        if url is not None:
            env["MASKLET_URL"] = url
        if token is not None:
            env["MASKLET_TOKEN"] = token
        return subprocess.run([str(MASKLET), *map(str, args)], env=env, input=stdin, capture_output=True, text=True,
                              timeout=timeout)

    return run


@pytest.fixture(scope="session")
def client_migrated_database(tmp_path_factory, request) -> Path:
    """A migrated embedded database, once per test process; each server starts from a copy: this
    process's test database (``copy_test_database``), else migrated here."""
    from django.db import connection

    from tests.e2e.conftest import _migrate, copy_test_database

    data_dir = tmp_path_factory.mktemp("masklet-client-migrated")
    if connection.vendor == "sqlite":
        request.getfixturevalue("django_db_setup")  # made only when a collected test uses the database
    if not copy_test_database(data_dir / "masklet.sqlite3"):
        _migrate(data_dir)
    return data_dir / "masklet.sqlite3"


#: The embedded server's rate limit per token. Low enough that the rate-limit test reaches it with a
#: burst of ``2 * TOKEN_RATE_PER_SECOND`` concurrent requests (all in one second even on a loaded
#: machine), high enough that the other tests' calls in a row (a command line each, or a page of a
#: list) seldom wait a second for a 429's ``Retry-After``: at one a second every call after the
#: first did (webhooks 8.4 s, pagination 6.2 s in CI).
TOKEN_RATE_PER_SECOND = 5


@pytest.fixture(scope="module")
def embedded_server(tmp_path_factory, client_migrated_database) -> Iterator:
    """An embedded-mode server (runserver, SQLite, in-process workers) with its own data directory,
    allowing each token ``TOKEN_RATE_PER_SECOND`` requests a second."""
    from tests.e2e.conftest import run_masklet_server

    data_dir = tmp_path_factory.mktemp("masklet-client")
    with run_masklet_server(data_dir, data_dir / "server.log", {"MASKLET_API_RATE_TOKEN": f"{TOKEN_RATE_PER_SECOND}/s"},
                            migrated=client_migrated_database) as server:
        yield server
