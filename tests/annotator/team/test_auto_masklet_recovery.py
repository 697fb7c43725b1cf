"""Auto-masklet runs whose worker died, and runs that fail midway: nothing half-stored, the video freed.

A worker "dies" here by raising ``WorkerKilled`` (a ``BaseException``, which no ``except
Exception`` in the run catches) from inside propagation: the run row is left ``running``, as a
SIGKILL leaves it. Then whoever notices fails it: the periodic tick (no heartbeat for
``LOOP_RUN_STALE_S``), the same ``gpu`` node starting again (``worker_ready``), or the task's
message delivered again (``acks_late``).
"""

from __future__ import annotations

import pytest
from celery.signals import worker_ready
from django.test import Client
from django.urls import reverse
from django.utils import timezone

import annotator.automasks.tasks as auto_tasks
from annotator.automasks import generate, runs
from annotator.automasks.runs import execute, recover_lost_runs, scheduled_tick, start_run
from annotator.models import AutoMaskletRun, MaskFrame, MaskFrameRevision, Masklet
from annotator.services.annotation import EditRefused
from engine import heartbeat, liveness, workers
from fixtures.synthetic import SyntheticSpec

SMALL = SyntheticSpec(seed=5, width=160, height=96, num_frames=12, num_objects=3)  # 3 objects, ~1 s
#: Grid clicks per side of the runs that generate here (the default is 12, 144 graph cuts a run): these tests
#: are about how a run ends, and a 6 x 6 grid still finds the scene's objects (two or more masklets a run).
GRID = 6


class WorkerKilled(BaseException):
    """The process ending under the run: nothing in the run's code gets to handle it."""


def _dies_after(frames: int):
    """A ``generate.propagate`` that yields ``frames`` real frames, then the worker dies."""
    real = generate.propagate

    def propagate(*args, **kwargs):
        for number, result in enumerate(real(*args, **kwargs)):
            if number == frames:
                raise WorkerKilled
            yield result

    return propagate


def _nothing_stored(video) -> bool:
    return not (Masklet.objects.filter(video=video).exists() or MaskFrame.objects.filter(masklet__video=video).exists()
                or MaskFrameRevision.objects.filter(masklet__video=video).exists())


def _killed_midway(video, admin, monkeypatch) -> AutoMaskletRun:
    run = start_run(video, admin, points_per_side=GRID)
    with monkeypatch.context() as patch:
        patch.setattr(generate, "propagate", _dies_after(2))
        with pytest.raises(WorkerKilled):
            execute(run.pk)
    run.refresh_from_db()
    assert run.status == "running" and run.progress > 0.4 and run.heartbeat_at is not None  # nobody could end it
    assert _nothing_stored(video)
    return run


def test_a_silent_run_is_failed_by_the_tick_with_its_reason_and_the_video_runs_again(team, synthetic_video,
                                                                                     monkeypatch, later, settings):
    video, _ = synthetic_video(team.project, spec=SMALL)
    run = _killed_midway(video, team.admin, monkeypatch)
    assert scheduled_tick()["recovered"] == []  # its heartbeat is fresh: it may be working
    with pytest.raises(EditRefused, match="already being generated"):
        start_run(video, team.admin, points_per_side=GRID)

    later(settings.LOOP_RUN_STALE_S + 1)
    assert scheduled_tick()["recovered"] == [run.pk]
    run.refresh_from_db()
    reason = f"the run was lost: no sign of life from worker {run.worker} for {settings.LOOP_RUN_STALE_S:.0f} s"
    assert (run.status, run.error, run.created_count) == ("failed", reason, 0)
    assert run.finished_at is not None and _nothing_stored(video)
    admin = Client()
    admin.force_login(team.admin)
    page = admin.get(reverse("team", kwargs={"slug": team.project.slug})).content.decode()
    assert f'data-run="{run.pk}" data-status="failed"' in page and reason in page  # the admin sees why

    again = execute(start_run(video, team.admin, points_per_side=GRID).pk)  # the video is free again
    assert again.status == "done", again.error
    assert Masklet.objects.filter(video=video, type="auto").count() == again.created_count >= 1
    assert scheduled_tick()["recovered"] == []  # ended runs are left alone
    assert AutoMaskletRun.objects.get(pk=run.pk).error == reason


def test_the_runs_of_a_gpu_node_starting_again_are_failed_on_worker_ready(team, synthetic_video, monkeypatch):
    assert auto_tasks.recover_runs_of_node in workers._ready_hooks
    video, _ = synthetic_video(team.project, spec=SMALL, name="held by gpu0")
    other, _ = synthetic_video(team.project, spec=SMALL, name="held by gpu1")
    queued_video, _ = synthetic_video(team.project, spec=SMALL, name="queued")
    monkeypatch.setattr("engine.liveness.nodename", "gpu0@host")
    lost = _killed_midway(video, team.admin, monkeypatch)
    assert lost.worker == "gpu0@host"
    monkeypatch.setattr("engine.liveness.nodename", "gpu1@host")
    alive = start_run(other, team.admin)
    assert liveness.claim(AutoMaskletRun, alive.pk, stale_after=600)[0] is liveness.Claim.CLAIMED
    queued = start_run(queued_video, team.admin)

    # gpu0 starts again: Celery sends worker_ready once it consumes gpu and its own queue gpu.gpu0@host.
    beating = []
    monkeypatch.setattr(workers, "_own_queue", workers.queue_for_node("gpu0@host"))
    monkeypatch.setattr(heartbeat, "start_worker_heartbeat", beating.append)
    worker_ready.send(sender=None)
    assert beating == ["gpu.gpu0@host"]
    lost.refresh_from_db()
    assert lost.status == "failed"
    assert lost.error == "the run was lost: worker gpu0@host restarted while the run was running"
    assert AutoMaskletRun.objects.get(pk=alive.pk).status == "running"  # another node's run
    assert AutoMaskletRun.objects.get(pk=queued.pk).status == "queued"  # not taken by anyone yet
    assert _nothing_stored(video)
    assert start_run(video, team.admin).status == "queued"


def test_a_redelivered_message_fails_a_lost_run_and_is_dropped_while_its_worker_lives(team, make_videos,
                                                                                      settings, later):
    video = make_videos(team.project, 1)[0]
    run = start_run(video, team.admin)
    AutoMaskletRun.objects.filter(pk=run.pk).update(status="running", worker="gpu0@host", started_at=timezone.now(),
                                                    heartbeat_at=timezone.now())
    assert execute(run.pk).status == "running"  # gpu0 still beats for it: a duplicate delivery, dropped
    later(settings.LOOP_RUN_STALE_S + 1)
    failed = execute(run.pk)  # the same message once gpu0 has gone silent
    assert failed.status == "failed" and "(gpu0@host) was lost; the task was delivered again" in failed.error
    assert execute(run.pk).error == failed.error  # a late message for an ended run does nothing


def test_a_run_nobody_started_is_failed_after_queued_lost_s(team, make_videos, later):
    old, young = make_videos(team.project, 2)
    stuck = start_run(old, team.admin)
    later(liveness.QUEUED_LOST_S - 60)
    waiting = start_run(young, team.admin)
    later(liveness.QUEUED_LOST_S + 1)
    assert recover_lost_runs() == [stuck.pk]
    stuck.refresh_from_db()
    assert stuck.status == "failed" and stuck.error == (
        f"the run was lost: no gpu worker started it within {liveness.QUEUED_LOST_S:.0f} s")
    assert AutoMaskletRun.objects.get(pk=waiting.pk).status == "queued"
    assert execute(stuck.pk).status == "failed"  # its message arriving after all is dropped by the claim
    assert _nothing_stored(old)


def test_a_run_that_fails_while_storing_leaves_nothing_half_stored(team, synthetic_video, monkeypatch):
    video, _ = synthetic_video(team.project, spec=SMALL)
    real, stored = runs.save_mask_frames, []

    def fails_on_the_second_masklet(masklet, writes, **kwargs):
        if stored:
            raise OSError("disk full")
        stored.append(real(masklet, writes, **kwargs))  # the first masklet's masks were written
        return stored[-1]

    monkeypatch.setattr(runs, "save_mask_frames", fails_on_the_second_masklet)
    run = execute(start_run(video, team.admin, points_per_side=GRID).pk)
    assert stored and len(stored[0]) == len(video.annotated_frame_indices())
    assert (run.status, run.error, run.created_count) == ("failed", "OSError: disk full", 0)
    assert _nothing_stored(video)  # the first masklet went with the rest


def test_a_run_that_raises_during_propagation_or_is_taken_for_lost_stores_nothing(team, synthetic_video,
                                                                                  monkeypatch):
    video, _ = synthetic_video(team.project, spec=SMALL)
    real = generate.propagate

    def raises(*args, **kwargs):
        yield next(real(*args, **kwargs))
        raise RuntimeError("propagation failed")

    with monkeypatch.context() as patch:
        patch.setattr(generate, "propagate", raises)
        run = execute(start_run(video, team.admin, points_per_side=GRID).pk)
    assert (run.status, run.error) == ("failed", "RuntimeError: propagation failed") and _nothing_stored(video)

    def taken_for_lost(*args, **kwargs):  # the worker lives on, but someone failed its run meanwhile
        for number, result in enumerate(real(*args, **kwargs)):
            if number == 1:
                assert recover_lost_runs(worker=liveness.worker_name()) == [run.pk]
            yield result

    run = start_run(video, team.admin, points_per_side=GRID)
    with monkeypatch.context() as patch:
        patch.setattr(generate, "propagate", taken_for_lost)
        run = execute(run.pk)
    assert run.status == "failed" and "restarted while the run was running" in run.error
    assert _nothing_stored(video)  # it stopped at its next progress write, and its commit would refuse too

