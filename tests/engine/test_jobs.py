"""Heavy jobs outside the web process, within the machine's means (``engine.jobs``, ``engine.dispatch``).

Real processes throughout: a run started from the dashboard endpoint in embedded mode trains in a
child process of this (server) process; cancel and ``kill -9`` end it; a child that outgrows its
budget is stopped; a run estimated over budget is refused in words; a restarted server fails the
runs its previous process left at once.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from datetime import timedelta

import psutil
import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotator.models import AutoMaskletRun, Membership, Role
from config import startup
from engine import jobs
from engine.models import TrainingRun
from loop import training

embedded_only = pytest.mark.skipif(not django_settings.EMBEDDED,
                                   reason="embedded mode: the server's own pools start the child processes")
#: Generous: a child imports Django and torch and builds SAM 2 on a loaded 2-core machine.
START_TIMEOUT = 180


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


@pytest.fixture
def admin_client(loop_project, settings):
    settings.LOOP_TRAIN_STEPS = 10_000  # runs until it is stopped
    project = loop_project(train=1, val=0, slug="jobs")
    client = Client()
    client.force_login(Membership.objects.get(project=project, role=Role.ADMIN).user)
    return project, client


def running_child(project, *, stepped: bool = True) -> tuple[TrainingRun, psutil.Process]:
    """Wait until the project's run is training (``stepped``: a step stored, the model built; else as
    soon as its child has claimed it) and return it with its process."""
    runs = TrainingRun.objects.filter(project=project, status="running")
    run = wait_for(lambda: runs.filter(progress__gt=0).first() if stepped else runs.exclude(worker="").first(),
                   START_TIMEOUT, "the run's first step" if stepped else "the run's child to claim it")
    pid = int(run.worker.rpartition(":")[2])
    return run, psutil.Process(pid)


@pytest.mark.slow
@embedded_only
@pytest.mark.django_db(transaction=True)
def test_a_run_started_from_the_dashboard_trains_in_a_child_and_cancel_kills_it(admin_client):
    project, client = admin_client
    before = rss_mb()
    start = client.post(reverse("api-models-start", args=[project.slug]))
    assert start.status_code == 202, start.content
    run, child = running_child(project)
    assert run.worker == f"{socket.gethostname()}:{child.pid}" and child.pid != os.getpid()
    assert child.ppid() == os.getpid()  # a child of the server, not a thread in it
    assert child.memory_info().rss > 300 * 2**20  # the child holds the model...
    assert rss_mb() - before < 150  # ...the server does not
    assert client.get(reverse("api-models", args=[project.slug])).status_code == 200  # and still answers

    asked = time.monotonic()
    cancel = client.post(reverse("api-models-cancel", args=[project.slug]))
    assert cancel.status_code == 200
    wait_for(lambda: TrainingRun.objects.get(pk=run.pk).status == "cancelled", 10, "the run to end cancelled")
    assert time.monotonic() - asked < 10
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    run.refresh_from_db()
    assert "cancelled while running (its process was stopped)" in run.log and run.produced_version is None
    assert not training.checkpoint_path(run).exists()
    assert client.post(reverse("api-models-start", args=[project.slug])).status_code == 202  # Start is free


@pytest.mark.slow
@embedded_only
@pytest.mark.django_db(transaction=True)
def test_a_child_killed_with_sigkill_fails_its_run_with_the_reason(admin_client):
    project, client = admin_client
    assert client.post(reverse("api-models-start", args=[project.slug])).status_code == 202
    run, child = running_child(project, stepped=False)  # killed while it starts: no need to wait for a step
    assert child.ppid() == os.getpid()
    child.send_signal(signal.SIGKILL)
    wait_for(lambda: TrainingRun.objects.get(pk=run.pk).status == "failed", 10, "the run to fail")
    run.refresh_from_db()
    assert run.error == "the run was lost: its process was killed (SIGKILL: out of memory, or stopped by hand)"
    state = client.get(reverse("api-models", args=[project.slug])).json()
    assert state["active_run"] is None and state["runs"][0]["error"] == run.error


@pytest.mark.django_db
def test_a_run_estimated_over_the_budget_is_refused_in_words(admin_client, settings):
    project, client = admin_client
    settings.JOB_MEMORY_MB = 1000
    refused = client.post(reverse("api-models-start", args=[project.slug]))
    assert refused.status_code == 409
    error = refused.json()["error"]["message"]
    assert error.startswith("fine-tuning sam2.1_hiera_t at 64 px on 2-frame windows would need about ")
    assert "more than the job budget of 1,000 MB (MASKLET_JOB_MEMORY_MB)" in error
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_on_cpu_a_run_defaults_to_a_small_image_size_and_clip_length(admin_client, settings, monkeypatch):
    monkeypatch.setattr("engine.dispatch.submit", lambda *a, **k: None)
    project, _ = admin_client
    settings.LOOP_IMAGE_SIZE, settings.LOOP_CLIP_LENGTH = 1024, 8
    settings.LOOP_CPU_IMAGE_SIZE, settings.LOOP_CPU_CLIP_LENGTH = 256, 4
    run = training.start_run(project)
    assert (run.parameters["image_size"], run.parameters["clip_length"]) == (256, 4)
    # what the machine died of: 1024 px on 8-frame windows, estimated far above half of 24 GB
    assert jobs.estimate_training_mb("sam2.1_hiera_t", 1024, 8) > 24 * 1024
    settings.TRAIN_ON_GPU = True  # a GPU holds the activations: the admin's sizes stand
    TrainingRun.objects.all().delete()
    assert training.start_run(project).parameters["image_size"] == 1024


@pytest.mark.django_db
def test_auto_masklets_and_registration_are_refused_in_words_over_the_budget(admin_client, settings, tmp_path):
    from annotator.automasks.runs import start_run as start_auto_masklets
    from annotator.services.annotation import EditRefused
    from loop import registry

    project, _ = admin_client
    settings.SEGMENTER, settings.SAM2_IMAGE_SIZE, settings.JOB_MEMORY_MB = "sam2", 1024, 800
    admin = Membership.objects.get(project=project, role=Role.ADMIN).user
    with pytest.raises(EditRefused, match=r"^auto masklets over 3 frames with .* would need about [\d,]+ MB of "
                                          r"memory, more than the job budget of 800 MB \(MASKLET_JOB_MEMORY_MB\)"):
        start_auto_masklets(project.videos.get(), admin)
    assert not AutoMaskletRun.objects.exists()
    with pytest.raises(registry.RegistryError, match=r"^the checkpoint was not loaded: loading sam2.1_hiera_t at "
                                                     r"1024 px would need about"):
        registry.check_loadable(tmp_path / "any.pt", "sam2.1_hiera_t", 1024)


def test_a_child_that_outgrows_its_budget_is_stopped_with_the_reason(settings):
    settings.JOB_MEMORY_MB = 400
    with pytest.raises(jobs.ChildFailed, match=r"its process used [\d,]+ MB, more than the job memory budget of "
                                               r"400 MB \(MASKLET_JOB_MEMORY_MB\), and was stopped"):
        # 1.6 GB; a child without Django apps, as a checkpoint check starts (settings only: it starts sooner)
        jobs.call_in_child("numpy.ones", 400 * 2**20 // 8 * 4, apps=False)


@pytest.mark.django_db
def test_a_restarted_server_fails_the_runs_its_previous_process_left_at_once(admin_client):
    project, client = admin_client
    dead = psutil.Popen(["true"])
    dead.wait()
    lost = TrainingRun.objects.create(project=project, status="running", worker=f"{socket.gethostname()}:{dead.pid}",
                                      started_at=timezone.now(), heartbeat_at=timezone.now(), cancel_requested=True)
    alive = TrainingRun.objects.create(project=loop_other(project), status="running",
                                       worker=f"{socket.gethostname()}:{os.getpid()}", started_at=timezone.now(),
                                       heartbeat_at=timezone.now())
    video = project.videos.first()
    queued = AutoMaskletRun.objects.create(video=video, frame_index=0)
    AutoMaskletRun.objects.filter(pk=queued.pk).update(created_at=timezone.now() - timedelta(days=1))

    failed = startup.recover_after_restart()
    assert failed == {"training": [lost.pk], "auto_masklets": [queued.pk], "verifiers": [], "dataset_jobs": [],
                      "ingests": []}
    lost.refresh_from_db()
    assert lost.status == "failed"
    assert lost.error == f"the run was lost: worker restarted: its process ({lost.worker}) is gone"
    assert TrainingRun.objects.get(pk=alive.pk).status == "running"  # its process still runs
    assert AutoMaskletRun.objects.get(pk=queued.pk).error == ("the run was lost: worker restarted: the server "
                                                              "stopped before the run started")
    state = client.get(reverse("api-models", args=[project.slug])).json()
    assert state["active_run"] is None and state["runs"][0]["error"] == lost.error
    assert client.post(reverse("api-models-start", args=[project.slug])).status_code != 409  # Start is free


def loop_other(project):
    from annotator.models import Project

    return Project.objects.create(name="other", slug="other")


def test_a_stopping_server_kills_its_children_instead_of_waiting_for_their_jobs(monkeypatch):
    """Python joins the pool threads that supervise children before it exits, and a child's job can run
    for hours: the exit hook, run before that join, kills the children, so the server exits at once and
    each job ends lost with the reason."""
    from concurrent.futures import thread as pool_threads

    hooks = [getattr(hook, "func", hook) for hook in threading._threading_atexits]  # type: ignore[attr-defined]
    assert hooks.index(jobs._stop_children_at_exit) > hooks.index(pool_threads._python_exit)  # runs first
    monkeypatch.setattr(jobs, "_exiting", False)  # what the hook sets, undone after the test
    ended: list[str] = []

    def job() -> None:
        try:
            jobs.call_in_child("time.sleep", 600, apps=False)
        except jobs.ChildFailed as error:
            ended.append(str(error))

    supervisor = threading.Thread(target=job)
    supervisor.start()
    [child] = wait_for(lambda: list(jobs._live), START_TIMEOUT, "the child to start")
    asked = time.monotonic()
    jobs._stop_children_at_exit()  # what Python runs when the server's main thread ends
    supervisor.join(30)
    assert ended == ["its process was stopped with the server"] and time.monotonic() - asked < 10
    assert child.poll() is not None and not jobs._live
