"""Video ingest follows the one job lifecycle (engine.liveness): each attempt is an ``IngestJob``,
claimed, beating and ended once; a lost one is failed by the same recovery routines as every job, and
the video's status (what people see) follows the job's transitions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from annotator.models import IngestJob, Video
from annotator.services.videos import (
    create_video_from_path,
    delete_video,
    recover_ingests_after_restart,
    recover_lost_ingests,
    retry_ingest,
    run_ingest,
)
from annotator.tasks import recover_ingests
from config import startup
from config.celery import app as celery_app
from engine import liveness

pytestmark = pytest.mark.django_db


@pytest.fixture
def video(project, isolated_files, make_mp4, tmp_path) -> Video:
    """A stored video whose ingest has not been queued (the tests make its jobs)."""
    path = tmp_path / "walk.mp4"
    make_mp4(path)
    return create_video_from_path(project, path, schedule_ingest=False)


def _silent_job(video: Video, worker: str = "cpu1@elsewhere") -> IngestJob:
    """An ingest running on a worker that stopped beating long ago (killed mid-decode)."""
    silent_since = timezone.now() - timedelta(seconds=django_settings.LOOP_RUN_STALE_S + 5)
    Video.objects.filter(pk=video.pk).update(status=Video.Status.INGESTING, progress=0.4)
    return IngestJob.objects.create(video=video, status="running", worker=worker, started_at=silent_since,
                                    heartbeat_at=silent_since)


def test_an_ingest_is_claimed_beats_and_ends_once_and_the_video_shows_its_end(video):
    job = IngestJob.objects.create(video=video)
    assert run_ingest(job.pk).status == Video.Status.READY
    job.refresh_from_db()
    assert (job.status, job.progress, job.worker) == ("done", 1.0, liveness.worker_name())
    assert job.started_at <= job.heartbeat_at <= job.finished_at
    assert run_ingest(job.pk).status == Video.Status.READY  # a second delivery finds it ended: nothing runs
    assert IngestJob.objects.get(pk=job.pk).finished_at == job.finished_at


def test_a_lost_ingest_is_failed_by_the_periodic_recovery_and_can_be_retried(video, django_capture_on_commit_callbacks):
    lost = _silent_job(video)
    beating = IngestJob.objects.create(video=video, status="running", worker="cpu2@h",
                                       started_at=lost.started_at, heartbeat_at=timezone.now())
    with pytest.raises(Exception, match="being ingested"):
        delete_video(video)  # while it ingests, nothing is deleted under the worker
    assert recover_lost_ingests() == [lost.pk]
    assert recover_ingests() == []  # the periodic task runs the same routine; nothing is lost twice
    entry = django_settings.CELERY_BEAT_SCHEDULE["masklet-ingests-tick"]
    assert celery_app.tasks[entry["task"]].name == recover_ingests.name and entry["options"]["queue"] == "cpu"
    lost.refresh_from_db()
    video.refresh_from_db()
    reason = (f"the ingest was lost (no sign of life from worker cpu1@elsewhere for "
              f"{django_settings.LOOP_RUN_STALE_S:.0f} s); retry it")
    assert (lost.status, lost.error) == ("failed", reason)
    assert (video.status, video.failure_reason, video.progress) == (Video.Status.FAILED, reason, 0.0)
    assert IngestJob.objects.get(pk=beating.pk).status == "running"  # a worker that beats is left alone
    IngestJob.objects.filter(pk=beating.pk).delete()

    with django_capture_on_commit_callbacks(execute=False):
        retry_ingest(video)
    retried = video.ingest_jobs.get(status="queued")
    assert Video.objects.get(pk=video.pk).status == Video.Status.UPLOADED
    assert run_ingest(retried.pk).status == Video.Status.READY


def test_a_forgotten_queued_ingest_is_failed_after_the_queue_timeout(video):
    forgotten = IngestJob.objects.create(video=video)
    IngestJob.objects.filter(pk=forgotten.pk).update(created_at=timezone.now() - timedelta(
        seconds=liveness.QUEUED_LOST_S + 1))
    assert recover_lost_ingests() == [forgotten.pk]
    assert Video.objects.get(pk=video.pk).failure_reason.startswith("the ingest was lost (no cpu worker started it")
    assert run_ingest(forgotten.pk).status == Video.Status.FAILED  # its message arriving late: dropped


def test_a_redelivered_ingest_is_left_to_a_live_worker_and_failed_when_its_worker_is_gone(video):
    busy = IngestJob.objects.create(video=video, status="running", worker="cpu1@elsewhere",
                                    started_at=timezone.now(), heartbeat_at=timezone.now())
    assert run_ingest(busy.pk).status == Video.Status.UPLOADED  # another worker beats for it: not run twice
    IngestJob.objects.filter(pk=busy.pk).delete()
    lost = _silent_job(video)
    assert run_ingest(lost.pk).status == Video.Status.FAILED
    assert IngestJob.objects.get(pk=lost.pk).error == "the ingest was lost: its worker stopped; retry it"


def test_a_late_end_does_not_overwrite_the_recovery(video):
    """A worker still decoding when its ingest was failed as lost does not turn the video ready after."""
    job = IngestJob.objects.create(video=video)
    recovered: list[int] = []

    def recover_mid_decode(decoded: int, expected: int) -> None:
        if not recovered:  # the periodic tick, with the worker's beat taken for stale
            recovered.extend(recover_lost_ingests(stale_after=0))

    assert run_ingest(job.pk, recover_mid_decode).status == Video.Status.FAILED
    assert recovered == [job.pk]
    assert IngestJob.objects.get(pk=job.pk).error.startswith("the ingest was lost")


def test_a_restarted_embedded_server_fails_the_ingests_its_previous_process_left(video, project, make_mp4, tmp_path):
    dead_here = _silent_job(video, worker=f"{liveness.socket.gethostname()}:99999999")
    make_mp4(tmp_path / "other.mp4")
    other = create_video_from_path(project, tmp_path / "other.mp4", schedule_ingest=False)
    queued_before = IngestJob.objects.create(video=other)
    IngestJob.objects.filter(pk=queued_before.pk).update(created_at=timezone.now() - timedelta(days=1))
    assert sorted(recover_ingests_after_restart()) == sorted([dead_here.pk, queued_before.pk])
    assert Video.objects.get(pk=other.pk).failure_reason == ("the ingest was lost (worker restarted: the server "
                                                             "stopped before the run started); retry it")
    assert startup.recover_after_restart()["ingests"] == []  # the start-up routine includes ingests
