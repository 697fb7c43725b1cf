"""A training run whose Celery ``train`` worker is SIGKILLed halfway ends failed, with its log, and no version.

Services mode only (Postgres + Redis): a real ``celery -A config worker -Q train`` subprocess
takes the run; once it has stored a few steps it is killed with SIGKILL (no clean shutdown,
nothing can run in it). The run is then still ``running`` with a stale heartbeat. Recovery:
the same node starting again fails the runs its dead predecessor held (``worker_ready``),
and the periodic job fails any run silent for ``MASKLET_LOOP_RUN_STALE_S``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from engine.models import ModelVersion, TrainingRun
from loop import training
from tests.engine.conftest import add_synthetic_video

pytestmark = [
    pytest.mark.skipif(django_settings.EMBEDDED, reason="needs REDIS_URL (services mode): starts a real Celery worker"),
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
]

REPO_ROOT = Path(__file__).resolve().parents[2]


def start_train_worker(nodename: str, data_dir: Path, log_path: Path) -> subprocess.Popen:
    from tests.annotator.sessions.conftest import worker_database_url

    env = {**os.environ, "DATABASE_URL": worker_database_url(), "REDIS_URL": django_settings.REDIS_URL,
           "MASKLET_DATA_DIR": str(data_dir), "DJANGO_SETTINGS_MODULE": "config.settings",
           "MASKLET_LOOP_PROGRESS_S": "0", "MASKLET_LOOP_HEARTBEAT_S": "1", "MASKLET_DEVICE": "cpu"}
    with log_path.open("a") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "train", "-P", "solo", "-n", nodename,
             "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_for(condition, timeout: float, what: str, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:\n{log_path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)


def test_sigkilled_train_worker_leaves_a_failed_run_with_logs_and_no_version(settings, tmp_path):
    data_dir = tmp_path / "data"
    settings.DATA_DIR, settings.FRAMES_ROOT, settings.MODELS_ROOT = data_dir, data_dir / "frames", data_dir / "models"
    settings.LOOP_TRAIN_STEPS, settings.LOOP_IMAGE_SIZE, settings.LOOP_CLIP_LENGTH = 400, 64, 2
    settings.LOOP_LR = 1e-3
    from annotator.models import Project

    project = Project.objects.create(name="kill", slug="kill")
    add_synthetic_video(project, 7, "train")
    run = training.start_run(project)  # queued on "train"; nothing consumes it yet
    nodename = f"trainer-{uuid.uuid4().hex[:6]}@{os.uname().nodename}"
    log_path = tmp_path / "worker.log"
    worker = start_train_worker(nodename, data_dir, log_path)
    try:
        def halfway() -> bool:
            fresh = TrainingRun.objects.get(pk=run.pk)
            return fresh.status == "running" and len(fresh.loss_curve) >= 3

        wait_for(halfway, 240, "the run to train a few steps", log_path)
        worker.kill()  # SIGKILL
        worker.wait(timeout=30)
        killed = TrainingRun.objects.get(pk=run.pk)
        assert killed.status == "running" and killed.worker == nodename  # nothing could clean up
        steps_stored = len(killed.loss_curve)
        assert 3 <= steps_stored < 400

        # The same node starting again fails what its dead predecessor held.
        worker = start_train_worker(nodename, data_dir, log_path)
        wait_for(lambda: TrainingRun.objects.get(pk=run.pk).status == "failed", 120, "recovery on start", log_path)
    finally:
        if worker.poll() is None:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
        from tests.annotator.sessions.conftest import _wait_for_other_db_sessions_to_close

        _wait_for_other_db_sessions_to_close()  # the worker's connection ends a moment after it: let the DB drop
    failed = TrainingRun.objects.get(pk=run.pk)
    assert "restarted while the run was running" in failed.error
    assert len(failed.loss_curve) >= steps_stored  # the loss curve and the log survive
    assert f"started on {nodename}" in failed.log and "step 1/400" in failed.log and "FAILED" in failed.log
    assert failed.finished_at is not None and failed.produced_version is None
    assert not ModelVersion.objects.exists()
    assert not training.checkpoint_path(failed).exists()
    # A new run can start: the failed one no longer holds the project's one active slot.
    settings.LOOP_TRAIN_STEPS = 1
    assert training.start_run(project).status == "queued"


def test_the_periodic_job_fails_a_run_whose_worker_went_silent(settings, tmp_path):
    from datetime import timedelta

    from django.utils import timezone

    from annotator.models import Project

    settings.FRAMES_ROOT = tmp_path / "frames"
    project = Project.objects.create(name="silent", slug="silent")
    add_synthetic_video(project, 8, "train")
    run = TrainingRun.objects.create(project=project, status="running", worker="gone@nowhere",
                                     started_at=timezone.now(), heartbeat_at=timezone.now() - timedelta(hours=1))
    settings.LOOP_MIN_NEW_MASKLETS = 10**6  # recover only; start nothing
    result = training.periodic_tick()
    assert result["recovered"] == [run.pk]
    assert "no sign of life" in TrainingRun.objects.get(pk=run.pk).error
