"""``manage.py fetch_model`` against a real HTTP server on 127.0.0.1 serving a random-weight SAM 2.1
tiny checkpoint in Meta's format (``{"model": state_dict}``): right and wrong sha256, a connection
dropped halfway (resumed with Range), one that keeps dropping, a 404, a server announcing more
than the disk holds, a config that does not fit, and Meta's address by name without a network."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from annotator.models import Project
from engine.models import ModelVersion
from engine.segmenters import serving_model
from loop.fetch import OFFICIAL
from loop.loop_demo import random_checkpoint
from tests.checkpoint_server import checkpoint_server

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parents[2]
SIZE = 64


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory) -> bytes:
    path = random_checkpoint("sam2.1_hiera_t", SIZE, 0, tmp_path_factory.mktemp("ckpt") / "tiny.pt")
    return path.read_bytes()


@pytest.fixture
def server(checkpoint_bytes):
    with checkpoint_server() as httpd:
        httpd.files["/sam2/tiny.pt"] = checkpoint_bytes
        yield httpd


@pytest.fixture
def models_dir(settings, tmp_path) -> Path:
    settings.MODELS_ROOT = tmp_path / "models"
    return settings.MODELS_ROOT


def fetch(*args: str) -> None:
    call_command("fetch_model", *args, "--image-size", str(SIZE), "--timeout", "10", verbosity=0)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_nothing_left(models_dir: Path) -> None:
    assert not models_dir.exists() or list(models_dir.iterdir()) == []
    assert not ModelVersion.objects.exists()


@pytest.mark.slow  # loads the model (or runs manage.py four times)
def test_right_sha256_downloads_checks_registers_and_promotes(server, models_dir, checkpoint_bytes):
    project = Project.objects.create(name="p", slug="p")
    fetch("--url", server.url("/sam2/tiny.pt"), "--sha256", sha(checkpoint_bytes).upper(), "--config", "sam2.1_hiera_t",
          "--name", "tiny-test", "--project", "p", "--promote")
    version = ModelVersion.objects.get()
    assert (version.name, version.project, version.status) == ("tiny-test", project, "production")
    assert version.sha256 == sha(checkpoint_bytes) and version.image_size == SIZE
    assert [p.name for p in models_dir.iterdir()] == ["tiny-test.pt"]
    assert (models_dir / "tiny-test.pt").read_bytes() == checkpoint_bytes
    assert serving_model(project).model_version_id == version.pk  # new sessions get it
    assert server.requests == [("/sam2/tiny.pt", None)]


def test_wrong_sha256_exits_with_the_digests_and_leaves_nothing(server, models_dir, checkpoint_bytes):
    with pytest.raises(CommandError) as refused:
        fetch("--url", server.url("/sam2/tiny.pt"), "--sha256", "0" * 64, "--config", "sam2.1_hiera_t")
    message = str(refused.value)
    assert "wrong checksum" in message and sha(checkpoint_bytes) in message and "0" * 64 in message
    assert "MASKLET_DATA_DIR/models/tiny.pt" in message  # how to place it by hand
    assert_nothing_left(models_dir)


@pytest.mark.slow  # loads the model (or runs manage.py four times)
def test_a_connection_dropped_halfway_is_resumed_with_range(server, models_dir, checkpoint_bytes):
    server.drops["/sam2/tiny.pt"] = 1
    fetch("--url", server.url("/sam2/tiny.pt"), "--sha256", sha(checkpoint_bytes), "--config", "sam2.1_hiera_t")
    half = len(checkpoint_bytes) // 2
    assert server.requests == [("/sam2/tiny.pt", None), ("/sam2/tiny.pt", f"bytes={half}-")]
    version = ModelVersion.objects.get()
    assert version.project is None and version.status == "candidate"  # shared, not promoted
    assert (models_dir / "tiny.pt").read_bytes() == checkpoint_bytes


def test_a_connection_that_keeps_dropping_leaves_no_partial_file(server, models_dir, checkpoint_bytes):
    server.drops["/sam2/tiny.pt"] = 100
    with pytest.raises(CommandError, match="truncated"):
        fetch("--url", server.url("/sam2/tiny.pt"), "--sha256", sha(checkpoint_bytes), "--config", "sam2.1_hiera_t")
    assert len(server.requests) == 4  # the first request and three resumptions
    assert_nothing_left(models_dir)


def test_404_says_so_and_how_to_place_the_file(server, models_dir):
    with pytest.raises(CommandError) as refused:
        fetch("--url", server.url("/sam2/gone.pt"), "--sha256", "a" * 64, "--config", "sam2.1_hiera_t")
    assert "HTTP 404" in str(refused.value) and "To place it by hand" in str(refused.value)
    assert_nothing_left(models_dir)


def test_more_than_the_disk_holds_is_refused_before_writing(server, models_dir, checkpoint_bytes):
    server.announce["/sam2/tiny.pt"] = 10**18
    with pytest.raises(CommandError, match="not enough disk space"):
        fetch("--url", server.url("/sam2/tiny.pt"), "--sha256", sha(checkpoint_bytes), "--config", "sam2.1_hiera_t")
    assert_nothing_left(models_dir)


@pytest.mark.slow  # loads the model (or runs manage.py four times)
def test_a_checkpoint_of_another_size_names_both_and_is_removed(server, models_dir, checkpoint_bytes):
    with pytest.raises(CommandError) as refused:
        fetch("--url", server.url("/sam2/tiny.pt"), "--sha256", sha(checkpoint_bytes), "--config", "sam2.1_hiera_s")
    assert re.search(r"checkpoint \S*tiny\.pt does not match config configs/sam2\.1/sam2\.1_hiera_s\.yaml",
                     str(refused.value))
    assert_nothing_left(models_dir)


def test_bad_arguments_are_refused():
    for args, words in ((["sam2.1_hiera_huge"], "unknown checkpoint"), ([], "name a checkpoint"),
                        (["--url", "http://x/y.pt", "--config", "sam2.1_hiera_t"], "--url needs --sha256"),
                        (["--url", "ftp://x/y.pt", "--sha256", "a" * 64, "--config", "t"], "http:// or https://"),
                        (["--url", "http://x/y.pt", "--sha256", "xyz", "--config", "t"], "64 hexadecimal"),
                        (["--url", "http://x/y.pt", "--sha256", "a" * 64, "--config", "t", "--name", "../up"],
                         "invalid checkpoint name"),
                        (["sam2.1_hiera_tiny", "--project", "nope"], "no project 'nope'")):
        with pytest.raises(CommandError, match=words):
            fetch(*args)


def _offline_env(tmp_path: Path) -> dict[str, str]:
    """No network for Python's HTTP client: every request goes to a proxy port where nothing listens."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "http_proxy", "https_proxy")}
    env.update(https_proxy="http://127.0.0.1:9", http_proxy="http://127.0.0.1:9", MASKLET_DATA_DIR=str(tmp_path),
               MASKLET_SAM2_IMAGE_SIZE=str(SIZE))
    env.pop("DATABASE_URL", None)
    return env


def test_by_name_without_network_exits_non_zero_and_says_what_to_do(tmp_path):
    result = subprocess.run([sys.executable, "manage.py", "fetch_model", "sam2.1_hiera_tiny", "--promote"], cwd=REPO,
                            env=_offline_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "could not reach dl.fbaipublicfiles.com" in result.stderr
    assert OFFICIAL["sam2.1_hiera_tiny"].url in result.stderr
    assert "MASKLET_DATA_DIR/models/sam2.1_hiera_tiny.pt" in result.stderr
    assert not (tmp_path / "models").exists() or list((tmp_path / "models").iterdir()) == []


@pytest.mark.slow  # loads the model (or runs manage.py four times)
def test_a_file_placed_by_hand_is_checked_and_registered_without_network(models_dir, checkpoint_bytes, tmp_path,
                                                                          monkeypatch):
    for key, value in _offline_env(tmp_path).items():
        if "proxy" in key:
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    models_dir.mkdir(parents=True)
    (models_dir / "sam2.1_hiera_tiny.pt").write_bytes(checkpoint_bytes)
    fetch("sam2.1_hiera_tiny", "--promote")
    version = ModelVersion.objects.get()
    assert (version.name, version.status, version.sha256) == ("sam2.1_hiera_tiny", "production", sha(checkpoint_bytes))
    assert version.sam2_config == "configs/sam2.1/sam2.1_hiera_t.yaml"
    fetch("sam2.1_hiera_tiny", "--promote")  # again: the same version, not a second one
    assert ModelVersion.objects.count() == 1


def _migrated_database(data_dir: Path, env: dict[str, str]) -> None:
    """The database ``make run`` migrates first, at ``data_dir/masklet.sqlite3``: a copy of this process's
    test database on SQLite (``copy_test_database``); in the services pass migrated as ``make run`` does."""
    from tests.e2e.conftest import copy_test_database

    if not copy_test_database(data_dir / "masklet.sqlite3"):
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=REPO, env=env,
                       check=True)


@pytest.mark.slow  # loads the model (or runs manage.py four times)
def test_make_run_mode_is_one_line_offline_and_nothing_when_a_version_exists(tmp_path):
    env = _offline_env(tmp_path)
    _migrated_database(tmp_path, env)
    auto = [sys.executable, "manage.py", "fetch_model", "sam2.1_hiera_tiny", "--promote", "--auto", "--timeout", "5",
            "-v", "0"]
    result = subprocess.run(auto, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "the classical fallback (low quality) serves" in lines[0] and "fetch_model sam2.1_hiera_tiny" in lines[0]
    subprocess.run([sys.executable, "manage.py", "shell", "-c",
                    "from engine.models import ModelVersion; ModelVersion.objects.create(name='mine')"],
                   cwd=REPO, env=env, check=True)
    again = subprocess.run(auto, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")


# -- the models dashboard's download job ---------------------------------------------------------


@pytest.fixture
def admin_client(django_user_model):
    from django.test import Client

    from annotator.models import Membership, Role

    project = Project.objects.create(name="d", slug="d")
    admin = django_user_model.objects.create_user("boss")
    Membership.objects.create(project=project, user=admin, role=Role.ADMIN)
    client = Client()
    client.force_login(admin)
    return project, client


@pytest.mark.slow  # loads the model (or runs manage.py four times)
def test_the_dashboard_downloads_from_the_mirror_checks_registers_and_serves(
        admin_client, server, models_dir, checkpoint_bytes, settings, django_capture_on_commit_callbacks):
    from engine.models import ModelDownload
    from loop.downloads import execute_download

    project, client = admin_client
    settings.CHECKPOINT_MIRROR, settings.SAM2_IMAGE_SIZE = server.url("/mirror/"), SIZE
    server.files["/mirror/sam2.1_hiera_tiny.pt"] = checkpoint_bytes
    page = client.get(f"/projects/{project.slug}/models/").content.decode()
    assert "Download SAM 2.1 tiny (≈150 MB)" in page and "Download SAM 2.1 large (≈900 MB)" in page
    assert "a low-quality fallback" in page and "/help/sam2/" in page
    url = f"/api/projects/{project.slug}/models/downloads/"
    assert client.post(url, {"name": "sam2.1_hiera_huge"}).status_code == 400
    with django_capture_on_commit_callbacks() as queued:
        started = client.post(url, {"name": "sam2.1_hiera_tiny", "promote": "1"})
    assert started.status_code == 202 and len(queued) == 1  # the job is submitted once the row is committed
    again = client.post(url, {"name": "sam2.1_hiera_tiny"})
    assert again.status_code == 409 and "already being downloaded" in again.json()["error"]["message"]
    download = ModelDownload.objects.get()
    assert execute_download(download.pk) == "done"  # what the cpu job runs
    download.refresh_from_db()
    assert download.bytes_done == download.bytes_total == len(checkpoint_bytes)
    assert download.version.project == project and download.version.status == "production"
    assert download.version.sha256 == sha(checkpoint_bytes)
    state = client.get(f"/api/projects/{project.slug}/models/").json()
    assert state["serving_fallback"] is False and state["serving"].startswith("sam2.1_hiera_tiny — SAM 2.1 hiera-t @64")
    assert state["downloads"][0]["status"] == "done"
    assert server.requests == [("/mirror/sam2.1_hiera_tiny.pt", None)]


def test_a_failed_dashboard_download_says_why_and_a_lost_one_does_not_block(admin_client, server, models_dir,
                                                                               settings):
    from datetime import timedelta

    from django.utils import timezone

    from engine.models import ModelDownload
    from loop.downloads import execute_download, start_download

    project, _ = admin_client
    settings.CHECKPOINT_MIRROR = server.url("/empty/")
    download = start_download(project, "sam2.1_hiera_small")
    assert execute_download(download.pk) == "failed"
    download.refresh_from_db()
    assert "HTTP 404" in download.error and "MASKLET_DATA_DIR/models/sam2.1_hiera_small.pt" in download.error
    assert_nothing_left(models_dir)
    lost = start_download(project, "sam2.1_hiera_base_plus")
    an_hour_ago = timezone.now() - timedelta(hours=1)
    ModelDownload.objects.filter(pk=lost.pk).update(status="running", worker="cpu1@gone", started_at=an_hour_ago,
                                                    heartbeat_at=an_hour_ago)
    fresh = start_download(project, "sam2.1_hiera_base_plus")  # the lost one no longer blocks it
    lost.refresh_from_db()
    assert lost.status == "failed" and "stopped without finishing" in lost.error and fresh.status == "queued"
    ModelDownload.objects.filter(pk=fresh.pk).update(status="running", worker="cpu1@busy", started_at=timezone.now(),
                                                     heartbeat_at=timezone.now())
    assert execute_download(fresh.pk) == "running"  # a redelivery while its worker beats: not fetched twice
