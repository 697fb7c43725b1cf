"""Browser tests: a real Masklet server in a subprocess and a real Chromium driven by Playwright.

Fixtures, reusable by every browser test:

- ``masklet_server`` (session): ``manage.py runserver`` (Daphne: HTTP + WebSockets) on a free
  port, in embedded mode (SQLite, in-process worker, in-memory channel layer) with its own
  fresh data directory, so it never touches the developer's or CI's database. It exposes
  ``url`` and ``shell(code)`` to seed rows through the Django shell.
- ``masklet_server_factory`` (module): ``start(name, extra_env)`` for servers with their own
  settings (the annotation test runs one per segmenter backend); they stop with the module.
- Every server starts from a copy of one migrated SQLite file per test process (``migrated_database``).
- ``browser`` (session) and ``page`` (per test): headless Chromium from Debian
  (``/usr/bin/chromium``; CI installs it with ``apt-get install -y chromium``). Without it the
  tests skip with that reason.

Pages opened through ``page`` or ``sign_in`` must cause no Content-Security-Policy violation
(``csp_violations`` fails the test after it ends).

The frontend bundle must be built (``make frontend``: ``npm ci && npm run build``); a missing
``frontend/dist`` fails the tests rather than silently testing pages without their scripts.
Set ``MASKLET_E2E_ARTIFACTS=<dir>`` to keep screenshots and the server log.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.zygote import Zygote

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("MASKLET_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
STARTUP_TIMEOUT_S = 60
SHELL_TIMEOUT_S = 120
STOP_TIMEOUT_S = 10
#: Daphne's last line when it stops (N requests were still running and are abandoned).
_KILLED = re.compile(rb"Killed \d+ pending application instances")


@dataclass
class MaskletServer:
    url: str
    data_dir: Path
    log_path: Path
    env: dict[str, str]
    _shell: Zygote | None = field(default=None, repr=False)

    def shell(self, code: str) -> str:
        """Run Python in ``manage.py shell -c`` against the server's database; returns stdout.

        Each call is a process forked from one that set Django up once for this server
        (``tests/zygote.py``) rather than a new interpreter (1-3 s each)."""
        if self._shell is None or not self._shell.alive():
            self._shell = Zygote(_SHELL_PRELOAD, self.env)
        result = self._shell.run(["manage.py", "shell", "-c", code], SHELL_TIMEOUT_S)
        if result.returncode != 0:
            raise RuntimeError(f"manage.py shell failed:\n{result.stderr[-4000:]}")
        return result.stdout

    def stop_shell(self) -> None:
        if self._shell is not None:
            self._shell.close()
            self._shell = None

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


#: What a server's ``shell`` calls fork from: Django set up with the server's settings, the shell's
#: auto-imported models loaded, and no database connection left open for the children to share.
_SHELL_PRELOAD = """
import django
django.setup()
from django.core.management.commands.shell import Command
from django.db import connections
Command().get_namespace(verbosity=0)
connections.close_all()
"""


@pytest.fixture(scope="session")
def artifacts_dir(tmp_path_factory) -> Path:
    configured = os.environ.get("MASKLET_E2E_ARTIFACTS")
    path = Path(configured) if configured else tmp_path_factory.mktemp("e2e-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def frontend_built() -> Path:
    dist = REPO_ROOT / "frontend" / "dist"
    if not (dist / "upload.js").is_file():
        pytest.fail(f"{dist} has no upload.js: build the frontend first with `make frontend` "
                    "(cd frontend && npm ci && npm run build)")
    return dist


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(url: str, process: subprocess.Popen, server: MaskletServer) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server did not answer {url} within {STARTUP_TIMEOUT_S} s:\n{server.log_tail()}")


def _server_env(data_dir: Path, extra_env: dict[str, str] | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("DATABASE_URL", "REDIS_URL", "MASKLET_PRODUCTION", "DJANGO_SETTINGS_MODULE")}
    env.update({
        "MASKLET_DATA_DIR": str(data_dir),
        "MASKLET_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "MASKLET_SECRET_KEY": "e2e-only-secret-key-not-for-production-0123456789",
        "MASKLET_EMBEDDED_WORKERS": "1",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra_env or {})
    return env


def _migrate(data_dir: Path, extra_env: dict[str, str] | None = None) -> None:
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=REPO_ROOT,
                   env=_server_env(data_dir, extra_env), check=True, timeout=300)


def copy_test_database(target: Path) -> bool:
    """Write this process's SQLite test database, as committed, to ``target`` (SQLite's backup), and say
    whether it did. pytest-django has migrated it for the database tests and no test leaves rows in it,
    so the copy is a migrated, empty embedded database without a ``manage.py migrate`` (5 CPU s). False
    (nothing written) when the test database is not a SQLite file set up in this process: PostgreSQL in
    the services pass, or no database test collected."""
    import sqlite3

    from django.db import connection

    test_database = connection.settings_dict.get("TEST", {}).get("NAME")
    if connection.vendor != "sqlite" or not test_database or str(connection.settings_dict["NAME"]) != str(
            test_database) or not Path(test_database).is_file():
        return False
    source, copy = sqlite3.connect(test_database), sqlite3.connect(target)
    try:
        source.backup(copy)
    finally:
        source.close()
        copy.close()
    return True


@contextlib.contextmanager
def run_masklet_server(data_dir: Path, log_path: Path, extra_env: dict[str, str] | None = None,
                       migrated: Path | None = None, preload_shell: bool = False) -> Iterator[MaskletServer]:
    """A migrated embedded-mode server on a free port with its own data directory, stopped on exit.

    ``migrated``: a freshly migrated SQLite file to start from (a copy), instead of migrating here.
    ``preload_shell``: start ``shell``'s zygote with the server (its imports overlap the server's
    start) rather than at the first ``shell`` call.
    """
    env = _server_env(data_dir, extra_env)
    port = _free_port()
    server = MaskletServer(url=f"http://127.0.0.1:{port}", data_dir=data_dir, log_path=log_path, env=env)
    if migrated is None:
        _migrate(data_dir, extra_env)
    else:
        shutil.copyfile(migrated, data_dir / "masklet.sqlite3")
    with server.log_path.open("w") as log:
        # --insecure: serve static files (the bundle) without collectstatic, as `make run` would after it.
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", "--insecure", f"127.0.0.1:{port}"],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        if preload_shell:
            server._shell = Zygote(_SHELL_PRELOAD, env)
        try:
            _wait_until_up(f"{server.url}/login/", process, server)
            yield server
        finally:
            server.stop_shell()
            _stop(process, server.log_path, port)


def _stop(process: subprocess.Popen, log_path: Path, port: int) -> None:
    """SIGTERM, then wait until the server exits or Daphne is done with it: Daphne's last line
    ("Killed N pending application instances") is written when it cancels what still runs, and
    its port closes once those are finished. What Python's exit would still wait for then are
    threads that never end by themselves: a request thread whose request Daphne killed (it waits
    for the stopped event loop forever) and a job's supervisor waiting for its child to finish the
    job (the child exits when its server is gone). That was the 10 s timeout in a third of the
    modules; the server is killed at that point instead."""
    process.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while process.poll() is None:
        if time.monotonic() > deadline or (_daphne_stopped(log_path) and not _listening(port)):
            process.kill()
            break
        time.sleep(0.05)
    process.wait()


def _daphne_stopped(log_path: Path) -> bool:
    with log_path.open("rb") as log:
        log.seek(max(0, log_path.stat().st_size - 65536))
        return _KILLED.search(log.read()) is not None


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory) -> Path:
    """An empty embedded database with every migration applied, once per test process: each server
    starts from a copy of it instead of migrating its own (~10 s each on the shared 2-core machine)."""
    data_dir = tmp_path_factory.mktemp("masklet-e2e-migrated")
    _migrate(data_dir)
    return data_dir / "masklet.sqlite3"


@pytest.fixture(scope="session")
def masklet_server(tmp_path_factory, frontend_built, artifacts_dir, migrated_database) -> Iterator[MaskletServer]:
    with run_masklet_server(tmp_path_factory.mktemp("masklet-e2e"), artifacts_dir / "server.log",
                            migrated=migrated_database, preload_shell=True) as server:
        yield server


@pytest.fixture(scope="module")
def masklet_server_factory(tmp_path_factory, frontend_built, artifacts_dir, migrated_database):
    """Start extra servers with their own environment (e.g. another segmenter); they stop when the
    test module ends (a module's idle servers would otherwise hold their memory to the session's end).

    ``start(name, {"MASKLET_SEGMENTER": "sam2"})`` returns a running ``MaskletServer`` whose log is
    ``<artifacts>/server-<name>.log``.
    """
    with contextlib.ExitStack() as stack:
        def start(name: str, extra_env: dict[str, str] | None = None) -> MaskletServer:
            return stack.enter_context(run_masklet_server(tmp_path_factory.mktemp(f"masklet-e2e-{name}"),
                                                          artifacts_dir / f"server-{name}.log", extra_env,
                                                          migrated=migrated_database, preload_shell=True))

        yield start


@pytest.fixture(scope="module")
def browser():
    """One Chromium per test module. Playwright's sync API keeps an event loop on the main thread
    while it is started, and Django refuses ORM calls from a thread with a running loop
    (SynchronousOnlyOperation): a session-wide browser broke every database test that a pytest
    process ran after a browser test. Stopping it with the module ends the loop (~1 s a launch)."""
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}: install it (apt-get install -y chromium) to run browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


_FUNCTION = re.compile(r"\s*(async\s+)?(function\b|\(\s*[\w\s,]*\)\s*=>|\w+\s*=>)")


def _arrow_predicates() -> None:
    """Playwright polls a ``wait_for_function`` predicate given as a plain expression with ``eval``,
    which the site's Content-Security-Policy (no 'unsafe-eval') blocks; a function it calls
    directly. So expressions are wrapped in an arrow function (``"x === 1"`` -> ``"() => (x === 1)"``)."""
    from playwright.sync_api import Page

    original = Page.wait_for_function
    if getattr(original, "arrow_predicates", False):
        return

    def wait_for_function(self, expression: str, *args, **kwargs):
        if not _FUNCTION.match(expression):
            expression = f"() => ({expression})"
        return original(self, expression, *args, **kwargs)

    wait_for_function.arrow_predicates = True
    Page.wait_for_function = wait_for_function


_arrow_predicates()


def watch_csp(context, seen: list[str]) -> None:
    """Collect the Content-Security-Policy violations Chromium reports on the context's pages."""
    context.on("console", lambda message: seen.append(f"{message.location.get('url')}: {message.text}")
               if "Content Security Policy" in message.text else None)


class Dialogs:
    """Answers a page's ``confirm()`` dialogs one at a time, keeping each question asked."""

    def __init__(self, page):
        self.page = page
        self.questions: list[str] = []

    def answer_next(self, accept: bool) -> None:
        def handle(dialog) -> None:
            self.questions.append(dialog.message)
            dialog.accept() if accept else dialog.dismiss()

        self.page.once("dialog", handle)


@pytest.fixture
def csp_violations() -> Iterator[list[str]]:
    """Every browser test's pages must pass the site's Content-Security-Policy."""
    seen: list[str] = []
    yield seen
    assert not seen, f"Content-Security-Policy violations: {seen}"


@pytest.fixture
def page(browser, masklet_server, csp_violations):
    context = browser.new_context(base_url=masklet_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    watch_csp(context, csp_violations)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def sign_in(browser, csp_violations):
    """``sign_in(server, username, password) -> (context, page)``: one person's own browser context,
    signed in through the login page (several people can work side by side in one test)."""

    def open_as(server: MaskletServer, username: str, password: str):
        context = browser.new_context(base_url=server.url, viewport={"width": 1400, "height": 950})
        context.set_default_timeout(30_000)
        watch_csp(context, csp_violations)
        page = context.new_page()
        page.goto("/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        page.click("button[type=submit]")
        page.wait_for_url("**/")
        return context, page

    return open_as
