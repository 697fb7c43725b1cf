"""Ingest through ``engine.dispatch.submit`` in both modes, with the real machinery.

Embedded (no REDIS_URL): the task runs on the in-process ``cpu`` thread pool. Services (REDIS_URL
set): a real ``celery -A config worker -Q cpu --pool solo`` subprocess, pointed at this run's test
database and the same data dir, consumes the task from Redis. Each test skips in the other mode.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection

from annotator.models import IngestJob, Video
from annotator.services.videos import create_video_from_path, create_video_from_upload
from annotator.tasks import ingest_video as ingest_task
from engine.dispatch import submit
from fixtures.synthetic import PRESETS, write_video

REPO_ROOT = Path(__file__).resolve().parents[2]
DONE = (Video.Status.READY, Video.Status.FAILED)

embedded_only = pytest.mark.skipif(not django_settings.EMBEDDED, reason="embedded mode only (REDIS_URL is set)")
services_only = pytest.mark.skipif(django_settings.EMBEDDED,
                                   reason="needs REDIS_URL (services mode): starts a real Celery worker")


@pytest.fixture
def data_dir(settings, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    settings.DATA_DIR = data
    settings.MEDIA_ROOT = data / "media"
    settings.FRAMES_ROOT = data / "frames"
    data.mkdir()
    return data


@pytest.fixture
def tiny_video(tmp_path: Path) -> Path:
    return write_video(PRESETS["tiny"], tmp_path / "tiny.mp4")


def wait_until_done(video: Video, timeout: float, worker: subprocess.Popen | None = None) -> Video:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        video.refresh_from_db()
        if video.status in DONE:
            return video
        if worker is not None and worker.poll() is not None:
            pytest.fail(f"the celery worker exited with code {worker.returncode}")
        time.sleep(0.1)
    pytest.fail(f"video {video.id} still {video.status} after {timeout} s")


@embedded_only
@pytest.mark.django_db(transaction=True)
def test_embedded_submit_runs_ingest_on_the_in_process_pool(project, data_dir, tiny_video, caplog):
    video = create_video_from_path(project, tiny_video, schedule_ingest=False)
    caplog.set_level(logging.INFO, logger="annotator.services.videos")

    job = IngestJob.objects.create(video=video)
    future = submit(ingest_task, job.pk, queue="cpu")

    assert future.result(timeout=60) == Video.Status.READY
    video.refresh_from_db()
    assert (video.status, video.stride, video.annotated_frame_count) == (Video.Status.READY, 4, 6)
    job.refresh_from_db()
    assert (job.status, job.progress) == (IngestJob.Status.DONE, 1.0) and job.worker and job.finished_at
    ready_logs = [r for r in caplog.records if "ready" in r.getMessage()]
    assert ready_logs and ready_logs[0].threadName.startswith("masklet-cpu")


@embedded_only
@pytest.mark.django_db(transaction=True)
def test_embedded_upload_is_ingested_after_commit(project, user, data_dir, tiny_video):
    """The web path: upload -> on_commit -> submit -> ready, no test hooks in between."""
    video = create_video_from_upload(project, SimpleUploadedFile("clip.mp4", tiny_video.read_bytes()), user)
    video = wait_until_done(video, timeout=60)
    assert video.status == Video.Status.READY, video.failure_reason
    assert sorted(p.name for p in video.frames_dir.iterdir())[:2] == ["00000.jpg", "00004.jpg"]


@embedded_only
@pytest.mark.django_db
def test_embedded_import_video_ingests_in_the_command_process(project, data_dir, tiny_video):
    """No separate worker exists in embedded mode, so the CLI ingests itself even without --sync."""
    call_command("import_video", "--project", project.slug, str(tiny_video), verbosity=0)
    assert Video.objects.get().status == Video.Status.READY


def _test_database_url() -> str:
    db = connection.settings_dict
    auth = quote(db["USER"] or "postgres", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@services_only
@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_services_celery_worker_ingests_from_the_cpu_queue(project, data_dir, tiny_video, tmp_path):
    env = {**os.environ, "DATABASE_URL": _test_database_url(), "REDIS_URL": django_settings.REDIS_URL,
           "MASKLET_DATA_DIR": str(data_dir), "DJANGO_SETTINGS_MODULE": "config.settings"}
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "cpu", "--pool", "solo",
             "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
             "--hostname", f"ingest-test-{uuid.uuid4().hex[:8]}@%h"],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        video = create_video_from_path(project, tiny_video, schedule_ingest=False)
        job = IngestJob.objects.create(video=video)
        result = submit(ingest_task, job.pk, queue="cpu")
        video = wait_until_done(video, timeout=120, worker=worker)
        assert video.status == Video.Status.READY, video.failure_reason
        assert result.get(timeout=30) == Video.Status.READY
        # The worker wrote into the shared data dir, under this video's frames folder.
        frames = data_dir / "frames" / str(video.id)
        assert sorted(p.name for p in frames.iterdir()) == [f"{i:05d}.jpg" for i in range(0, 24, 4)]
        assert "annotator.ingest_video" in log_path.read_text()

        # The CLI's services path: queue on commit, then --wait follows the worker to the end.
        call_command("import_video", "--project", project.slug, "--wait", "--timeout", "120", str(tiny_video),
                     verbosity=0)
        imported = Video.objects.get(project=project, name="tiny-2")
        assert (imported.status, imported.annotated_frame_count) == (Video.Status.READY, 6)
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        _wait_for_other_sessions_to_close()


def _wait_for_other_sessions_to_close(timeout: float = 10.0) -> None:
    """The worker's Postgres backends end a moment after the process: let them, so the test
    database can be dropped at the end of the run."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND pid <> pg_backend_pid()")
            if cursor.fetchone()[0] == 0:
                return
            time.sleep(0.1)


@pytest.mark.django_db(transaction=True)
def test_an_unreachable_queue_marks_the_upload_failed_instead_of_raising(project, user, data_dir, tiny_video,
                                                                           monkeypatch):
    """The row is committed before the ingest is queued: a broker outage must not leave it 'uploaded' forever."""
    from engine import dispatch

    def broker_down(*args, **kwargs):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(dispatch, "submit", broker_down)
    video = create_video_from_upload(project, SimpleUploadedFile("clip.mp4", tiny_video.read_bytes()), user)
    video.refresh_from_db()
    assert video.status == Video.Status.FAILED
    assert video.failure_reason.startswith("the ingest could not be queued")
