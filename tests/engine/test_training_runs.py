"""Training runs end to end on CPU (tiny SAM 2 at 64 px, 2 steps): snapshot, fine-tune, evaluate, register.

Also: one active run per project (database), cancel, crashes, lost workers, and the periodic job.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotator.models import MaskFrame, Masklet, MaskSource
from annotator.services.masks import MaskWrite, save_mask_frames
from engine.models import Evaluation, ModelVersion, TrainingRun
from loop import training
from segmentation.masks import empty_rle
from tests.engine.conftest import add_synthetic_video

pytestmark = pytest.mark.django_db


def test_a_run_snapshots_trains_evaluates_and_registers_a_candidate(loop_project):
    project = loop_project(train=2, val=1)
    run = training.start_run(project)
    assert run.status == "queued" and run.base_version is None
    snapshot = run.data_snapshot
    assert snapshot["masklet_count"] == 2 and snapshot["video_count"] == 2
    assert all(revision == 1 for m in snapshot["masklets"] for _, revision in m["frames"])

    # An edit after the snapshot does not change what the run trains on.
    masklet = Masklet.objects.get(pk=snapshot["masklets"][0]["id"])
    first_frame = snapshot["masklets"][0]["frames"][0][0]
    save_mask_frames(masklet, [MaskWrite(first_frame, empty_rle(48, 64))], source=MaskSource.HUMAN)
    clips = training.load_clips(snapshot, max_side=256)
    assert any(m.any() for m in clips[0].masks[masklet.object_id][:1])

    assert training.execute_run(run.pk) == "done"
    run.refresh_from_db()
    assert run.progress == 1.0 and [s for s, _ in run.loss_curve] == [1, 2]
    version = run.produced_version
    assert version.status == "candidate" and version.parent is None
    assert version.checkpoint.endswith(f"run-{run.pk}.pt")
    evaluation = Evaluation.objects.get(model_version=version)
    assert evaluation.details["num_objects"] == 1 and len(evaluation.details["jf_after"]) == 2
    assert evaluation.clicks_to_target is not None
    assert "registered candidate" in run.log and "left as a candidate" in run.log  # nothing to beat yet
    assert training.new_approved_masklets(project) == 0


def test_the_next_run_starts_from_production_and_auto_promotes_only_past_the_margin(loop_project):
    project = loop_project(train=1, val=1)
    run = training.start_run(project)
    training.execute_run(run.pk)
    first = TrainingRun.objects.get(pk=run.pk).produced_version
    from loop import registry

    registry.promote(first)
    knobs = training.loop_settings(project)
    knobs.promote_margin = -10.0  # any candidate "beats" production
    knobs.save()
    second = training.start_run(project)
    assert second.base_version == first and second.parameters["image_size"] == first.image_size
    assert training.execute_run(second.pk) == "done"
    second.refresh_from_db()
    assert second.produced_version.parent == first
    assert second.produced_version.status == "production"
    assert ModelVersion.objects.get(pk=first.pk).status == "retired"
    assert Evaluation.objects.filter(model_version=first).count() == 1  # production measured on the same val set
    assert "promoted to production automatically" in second.log


def test_one_active_run_per_project_is_enforced_by_the_database(loop_project):
    project = loop_project(train=1, val=0)
    training.start_run(project)
    with pytest.raises(training.RunRefused, match="already queued or running"):
        training.start_run(project)
    with pytest.raises(IntegrityError), transaction.atomic():
        TrainingRun.objects.create(project=project, status="running")


def test_nothing_approved_means_no_run(loop_project):
    project = loop_project(train=0, val=0)
    add_synthetic_video(project, 3, "train", status=Masklet.Status.SUBMITTED)
    with pytest.raises(training.RunRefused, match="nothing to train on"):
        training.start_run(project)


def test_cancel_a_queued_and_a_running_run(loop_project, monkeypatch, settings):
    project = loop_project(train=1, val=0)
    queued = training.start_run(project)
    assert training.cancel_run(queued).status == "cancelled"
    assert training.execute_run(queued.pk) == "cancelled"  # a late message does nothing

    settings.LOOP_TRAIN_STEPS = 5
    run = training.start_run(project)
    real = training.fine_tune_here_or_distributed

    def cancel_after_first_step(clips, config, init, out, on_step, cancel):
        def step(*args):
            if args[0] == 1:
                training.cancel_run(TrainingRun.objects.get(pk=run.pk))
            on_step(*args)
        return real(clips, config, init, out, step, cancel)

    monkeypatch.setattr(training, "fine_tune_here_or_distributed", cancel_after_first_step)
    assert training.execute_run(run.pk) == "cancelled"
    run.refresh_from_db()
    assert run.produced_version is None and len(run.loss_curve) == 1
    assert not training.checkpoint_path(run).exists()
    assert not ModelVersion.objects.exists()


def test_a_crash_fails_the_run_with_its_traceback_and_no_version(loop_project, monkeypatch):
    project = loop_project(train=1, val=1)
    run = training.start_run(project)

    def explode(*args, **kwargs):
        raise RuntimeError("evaluation blew up")

    monkeypatch.setattr("loop.evaluation.evaluate_segmenter", explode)
    assert training.execute_run(run.pk) == "failed"
    run.refresh_from_db()
    assert run.error == "RuntimeError: evaluation blew up"
    assert "Traceback" in run.log and "step 2/2" in run.log
    assert not ModelVersion.objects.exists()
    assert not training.checkpoint_path(run).exists()  # written, then removed: no version points to it


def test_lost_runs_are_failed_by_node_restart_by_silence_and_on_redelivery(loop_project):
    project = loop_project(train=1, val=0)
    run = training.start_run(project)
    TrainingRun.objects.filter(pk=run.pk).update(status="running", worker="train@host", started_at=timezone.now(),
                                                 heartbeat_at=timezone.now())
    assert training.recover_orphaned_runs(stale_after=600) == []
    assert training.recover_orphaned_runs(worker="other@host") == []
    assert training.recover_orphaned_runs(worker="train@host") == [run.pk]
    run.refresh_from_db()
    assert run.status == "failed" and "restarted" in run.error

    silent = training.start_run(project)
    TrainingRun.objects.filter(pk=silent.pk).update(status="running", worker="w@h",
                                                    heartbeat_at=timezone.now() - timedelta(hours=1))
    assert training.recover_orphaned_runs(stale_after=60) == [silent.pk]

    redelivered = training.start_run(project)
    TrainingRun.objects.filter(pk=redelivered.pk).update(status="running", worker="dead@h")
    assert training.execute_run(redelivered.pk) == "failed"
    assert "delivered again" in TrainingRun.objects.get(pk=redelivered.pk).error


def test_the_periodic_job_starts_runs_when_enough_is_new_and_enough_time_passed(loop_project, monkeypatch):
    submitted = []
    monkeypatch.setattr("engine.dispatch.submit", lambda task, *a, **k: submitted.append((task, a, k)))
    project = loop_project(train=2, val=0)
    knobs = training.loop_settings(project)
    knobs.min_new_masklets, knobs.min_hours = 3, 1.0
    knobs.save()
    assert training.due_projects() == []  # 2 new < 3
    add_synthetic_video(project, 30, "train")
    assert [p for p, _ in training.due_projects()] == [project]
    with pytest.MonkeyPatch.context() as m:
        m.setattr(transaction, "on_commit", lambda fn, using=None: fn())
        result = training.periodic_tick()
    run = TrainingRun.objects.get(pk=result["started"][0])
    assert run.trigger == "schedule" and "started by the schedule: 3 newly approved" in run.log
    assert submitted == [("loop.train_model", (run.pk,), {"queue": "train"})]
    assert training.due_projects() == []  # a run is active
    TrainingRun.objects.filter(pk=run.pk).update(status="done")
    for seed in (31, 32, 33):
        add_synthetic_video(project, seed, "train")
    assert training.due_projects() == []  # 3 new, but the last run started < 1 h ago
    TrainingRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(hours=2))
    assert [p for p, _ in training.due_projects()] == [project]
    knobs.enabled = False
    knobs.save()
    assert training.due_projects() == []
    assert MaskFrame.objects.exists()


def production_version(project, tmp_path):
    """A registered random-weight tiny SAM 2 at 64 px in production: the base the next run starts from."""
    from loop import registry
    from loop.loop_demo import random_checkpoint

    checkpoint = random_checkpoint("sam2.1_hiera_t", 64, 0, tmp_path / "v0.pt")
    version = registry.register_version(project, name="v0", checkpoint=checkpoint, config="tiny", image_size=64,
                                        check=False)  # written just now; registry tests check loading
    return registry.promote(version)


def cancel_at(run, stage, seen):
    """An ``execute_run`` progress hook that cancels the run the first time ``stage`` reports."""

    def hook(reported, progress):
        seen.append((reported, progress))
        current = TrainingRun.objects.get(pk=run.pk)
        if reported == stage and not current.cancel_requested:
            assert training.checkpoint_path(run).exists()  # fine-tuning wrote it: the cancel must delete it
            training.cancel_run(current)

    return hook


def test_a_cancel_during_evaluation_ends_the_run_cancelled_at_the_next_object(loop_project):
    project = loop_project(train=1, val=2)
    run = training.start_run(project)
    seen = []
    assert training.execute_run(run.pk, on_progress=cancel_at(run, "evaluate", seen)) == "cancelled"
    run.refresh_from_db()
    assert run.status == "cancelled" and run.finished_at is not None and run.produced_version is None
    # Stopped after the first of the two val objects: the second was never measured.
    assert [stage for stage, _ in seen] == ["train", "train", "evaluate"]
    assert seen[-1][1] == pytest.approx((training.TRAIN_SHARE + training.CANDIDATE_EVALUATED) / 2)
    assert "cancelled while evaluating the candidate (1 of 2 objects measured); nothing registered" in run.log
    assert not ModelVersion.objects.exists() and not Evaluation.objects.exists()
    assert not training.checkpoint_path(run).exists()
    with pytest.raises(training.RunRefused, match="already ended"):
        training.cancel_run(run)


def test_a_cancel_just_before_registering_leaves_production_alone(loop_project, tmp_path):
    """The candidate would auto-promote (any margin wins), but the cancel seen under the row lock
    in the registering transaction stops it: no version, no evaluation, production unchanged."""
    project = loop_project(train=1, val=1)
    base = production_version(project, tmp_path)
    knobs = training.loop_settings(project)
    knobs.promote_margin = -10.0
    knobs.save()
    run = training.start_run(project)
    seen = []
    assert training.execute_run(run.pk, on_progress=cancel_at(run, "register", seen)) == "cancelled"
    assert [stage for stage, _ in seen][-3:] == ["evaluate", "evaluate", "register"]  # candidate, then base
    run.refresh_from_db()
    assert run.status == "cancelled" and run.produced_version is None
    assert "cancelled before registering its version; nothing registered" in run.log
    assert list(ModelVersion.objects.values_list("pk", "status")) == [(base.pk, "production")]
    assert not Evaluation.objects.exists()
    assert not training.checkpoint_path(run).exists()


def test_a_candidate_that_does_not_beat_production_stays_a_candidate(loop_project, tmp_path):
    project = loop_project(train=1, val=1)
    base = production_version(project, tmp_path)
    knobs = training.loop_settings(project)
    assert knobs.auto_promote
    knobs.promote_margin = 2.0  # J&F is at most 1: nothing can be 2 above production
    knobs.save()
    run = training.start_run(project)
    assert run.base_version == base
    assert training.execute_run(run.pk) == "done"
    run.refresh_from_db()
    candidate = run.produced_version
    assert candidate.status == "candidate" and candidate.parent == base
    assert ModelVersion.objects.get(pk=base.pk).status == "production"
    assert Evaluation.objects.filter(model_version=base).count() == 1  # measured on the same val set
    assert "left as a candidate for an admin: J&F" in run.log and "is not 2.000 above production's" in run.log
    assert "promoted" not in run.log


def test_a_duplicate_delivery_leaves_a_live_run_alone(loop_project, settings):
    """acks_late on Redis: a message still unacked past the visibility timeout is delivered again;
    while the run's worker keeps its heartbeat, the second delivery must not fail the healthy run."""
    project = loop_project(train=1, val=0)
    run = training.start_run(project)
    TrainingRun.objects.filter(pk=run.pk).update(status="running", worker="train@other", started_at=timezone.now(),
                                                 heartbeat_at=timezone.now())
    assert training.execute_run(run.pk) == "running"
    assert TrainingRun.objects.get(pk=run.pk).status == "running"
    settings.LOOP_RUN_STALE_S = 0  # the same delivery once the worker has gone silent: lost, failed
    assert training.execute_run(run.pk) == "failed"


def test_the_broker_redelivers_unacked_messages_only_after_a_run_could_have_ended(settings):
    """Celery reads the visibility timeout, and session messages' "abandoned" flags outlive it."""
    from config.celery import app
    from engine import session_flags

    assert app.conf.broker_transport_options["visibility_timeout"] == settings.BROKER_VISIBILITY_SECONDS
    assert settings.BROKER_VISIBILITY_SECONDS >= 24 * 3600
    assert session_flags.abandoned_flag_seconds() > settings.BROKER_VISIBILITY_SECONDS
