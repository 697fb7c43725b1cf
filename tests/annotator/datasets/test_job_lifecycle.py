"""Dataset jobs follow the one job lifecycle (engine.liveness): claimed with a worker name, beating
while they run, ended once, and failed in words when their worker is gone."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotator.datasets import jobs
from annotator.datasets.jobs import recover_after_restart, recover_lost_jobs, run_job
from annotator.models import AutoMaskletRun, DatasetJob
from engine import liveness
from engine.models import JobStatus, TrainingRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def export_job(make_project, isolated_files):
    """An export job of an empty project (COCO, no media): quick to run for real."""
    project = make_project()

    def make(**fields) -> DatasetJob:
        return DatasetJob.objects.create(project=project, kind=DatasetJob.Kind.EXPORT, format="coco",
                                         options={"filters": {}, "media": False}, **fields)

    return make


def test_every_job_kind_shares_one_status_set():
    assert AutoMaskletRun.Status is DatasetJob.Status is JobStatus
    assert AutoMaskletRun.ACTIVE == DatasetJob.ACTIVE == (JobStatus.QUEUED, JobStatus.RUNNING)
    assert TrainingRun.ACTIVE == ("queued", "running")


def test_a_job_is_claimed_by_its_worker_and_ended_once(export_job):
    job = run_job(export_job().pk)
    assert job.status == DatasetJob.Status.DONE, job.error
    assert job.worker == liveness.worker_name() and job.started_at <= job.heartbeat_at <= job.finished_at
    assert not liveness.finish(DatasetJob, job.pk, DatasetJob.Status.FAILED, error="late")  # an end stays
    assert DatasetJob.objects.get(pk=job.pk).status == DatasetJob.Status.DONE
    with pytest.raises(ValueError, match="a job ends done, failed or cancelled"):
        liveness.finish(DatasetJob, job.pk, DatasetJob.Status.RUNNING)


def test_a_redelivered_job_is_left_to_a_live_worker_and_failed_when_its_worker_is_gone(export_job, settings):
    now = timezone.now()
    busy = export_job(status="running", worker="cpu1@elsewhere", started_at=now, heartbeat_at=now)
    assert run_job(busy.pk).status == DatasetJob.Status.RUNNING  # another worker beats for it: not run twice
    silent_since = now - timedelta(seconds=settings.LOOP_RUN_STALE_S + 5)
    lost = export_job(status="running", worker="cpu1@elsewhere", started_at=silent_since, heartbeat_at=silent_since)
    lost = run_job(lost.pk)
    assert (lost.status, lost.error) == (DatasetJob.Status.FAILED, "the export was lost: its worker stopped")


def test_the_periodic_recovery_fails_silent_and_forgotten_jobs_only(export_job, settings):
    now = timezone.now()
    silent_since = now - timedelta(seconds=settings.LOOP_RUN_STALE_S + 5)
    silent = export_job(status="running", worker="cpu1@h", started_at=silent_since, heartbeat_at=silent_since)
    beating = export_job(status="running", worker="cpu1@h", started_at=silent_since, heartbeat_at=now)
    forgotten = export_job()
    DatasetJob.objects.filter(pk=forgotten.pk).update(created_at=now - timedelta(seconds=liveness.QUEUED_LOST_S + 1))
    waiting = export_job()
    assert sorted(recover_lost_jobs()) == sorted([silent.pk, forgotten.pk])
    errors = dict(DatasetJob.objects.filter(status="failed").values_list("pk", "error"))
    assert errors == {silent.pk: f"the export was lost: no sign of life from worker cpu1@h for "
                                 f"{settings.LOOP_RUN_STALE_S:.0f} s",
                      forgotten.pk: f"the export was lost: no cpu worker started it within "
                                    f"{liveness.QUEUED_LOST_S:.0f} s"}
    assert {j.status for j in DatasetJob.objects.filter(pk__in=[beating.pk, waiting.pk])} == {"running", "queued"}


def test_a_restarted_embedded_server_fails_what_its_previous_process_left(export_job):
    gone = export_job(status="running", worker="nohost-that-exists:1", started_at=timezone.now())
    dead_here = export_job(status="running", worker=f"{liveness.socket.gethostname()}:99999999",
                           started_at=timezone.now())
    queued_before = export_job()
    DatasetJob.objects.filter(pk=queued_before.pk).update(created_at=timezone.now() - timedelta(days=1))
    assert sorted(recover_after_restart()) == sorted([dead_here.pk, queued_before.pk])
    assert DatasetJob.objects.get(pk=gone.pk).status == "running"  # another machine's worker: not ours to judge
    assert DatasetJob.objects.get(pk=dead_here.pk).error.startswith("the export was lost: worker restarted")


def test_cancel_ends_a_queued_job_at_once_and_a_running_one_at_its_next_report(export_job, monkeypatch):
    queued = export_job()
    assert jobs.cancel_job(queued)
    queued.refresh_from_db()
    assert (queued.status, queued.cancel_requested) == ("cancelled", True) and queued.finished_at
    assert run_job(queued.pk).status == "cancelled"  # its message arriving late runs nothing
    assert not jobs.cancel_job(queued)  # an ended job stays as it ended

    running = export_job()
    real_export = jobs.export_dataset

    def cancelled_while_running(*args, **kwargs):
        assert DatasetJob.objects.get(pk=running.pk).status == "running"
        assert jobs.cancel_job(running)
        return real_export(*args, **kwargs)

    monkeypatch.setattr(jobs, "export_dataset", cancelled_while_running)
    ended = run_job(running.pk)
    assert (ended.status, ended.message, ended.file) == ("cancelled", "the export was cancelled", "")
    assert not liveness.finish(DatasetJob, running.pk, "done")  # the cancel stays


def test_every_job_kind_is_cancelled_through_the_one_lifecycle_function(export_job):
    job = export_job(status="running", worker="w", started_at=timezone.now())
    assert not liveness.cancel_requested(DatasetJob, job.pk)
    assert liveness.request_cancel(DatasetJob, job.pk)
    assert liveness.cancel_requested(DatasetJob, job.pk)
    assert DatasetJob.objects.get(pk=job.pk).status == "running"  # the job itself ends, at a safe point
