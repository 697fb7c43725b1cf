"""The periodic auto-masklet job: opted-in projects, newly ready videos, never two runs for one video.

The logic tests read what the tick queued (their on-commit task submissions never fire inside a
test transaction). The transactional tests run it for real in embedded mode: the embedded beat
sends the tick to the cpu pool, the tick queues the run, the gpu pool generates the masklets on a
synthetic video; and admins and ticks racing for the same video leave exactly one run.
"""

from __future__ import annotations

import threading
import time

import pytest
from celery.signals import task_postrun
from django.conf import settings as django_settings
from django.db import IntegrityError, connection, transaction
from django.test import Client
from django.urls import reverse

from annotator.automasks import runs
from annotator.automasks.runs import scheduled_tick, set_schedule, start_run
from annotator.models import AutoMaskletRun, Masklet, Video
from annotator.services.annotation import EditRefused
from config.celery import app as celery_app
from fixtures.synthetic import SyntheticSpec

#: The transactional tests let the real pools run the job; in services mode nothing would consume the queues here.
embedded_only = pytest.mark.skipif(not django_settings.EMBEDDED, reason="embedded mode runs the job in-process")
SMALL = SyntheticSpec(seed=5, width=160, height=96, num_frames=12, num_objects=3)  # 3 auto masklets, ~1 s


def _runs(video) -> list[tuple[str, str]]:
    return list(AutoMaskletRun.objects.filter(video=video).values_list("trigger", "status"))


def test_only_new_ready_videos_of_opted_in_projects_get_a_scheduled_run(team, make_videos, make_project, later):
    (before,) = make_videos(team.project, 1, prefix="before")
    assert scheduled_tick()["started"] == []  # not opted in
    later(60)
    with pytest.raises(EditRefused):
        set_schedule(team.project, team.annotator, enabled=True)
    set_schedule(team.project, team.admin, enabled=True)
    (other_project_video,) = make_videos(make_project(), 1)  # a project that did not opt in
    later(120)
    (ready,) = make_videos(team.project, 1, prefix="ready")
    (ingesting,) = make_videos(team.project, 1, prefix="ingesting", status=Video.Status.INGESTING)
    (asked,) = make_videos(team.project, 1, prefix="asked")
    manual = start_run(asked, team.admin)  # an admin already asked for this one

    first = scheduled_tick()
    run = AutoMaskletRun.objects.get(pk__in=first["started"])
    assert (run.video, run.trigger, run.created_by, run.frame_index, run.status) == (
        ready, "schedule", None, 0, "queued")
    assert _runs(before) == _runs(ingesting) == _runs(other_project_video) == []
    assert _runs(asked) == [("manual", "queued")] and manual.trigger == "manual"

    assert scheduled_tick()["started"] == []  # the ready video has its run now
    AutoMaskletRun.objects.filter(pk=run.pk).update(status="failed")
    assert scheduled_tick()["started"] == []  # a failed run is not retried (an admin can)
    Video.objects.filter(pk=ingesting.pk).update(status=Video.Status.READY)  # ingest finished
    later(180)
    started = scheduled_tick()["started"]
    assert [AutoMaskletRun.objects.get(pk=pk).video for pk in started] == [ingesting]

    set_schedule(team.project, team.admin, enabled=False)
    make_videos(team.project, 1, prefix="after_off")
    assert scheduled_tick()["started"] == []


def test_the_tick_keeps_a_projects_active_runs_bounded(team, make_videos):
    set_schedule(team.project, team.admin, enabled=True)
    videos = make_videos(team.project, runs.SCHEDULED_ACTIVE_PER_PROJECT + 1)
    started = scheduled_tick()["started"]
    assert len(started) == runs.SCHEDULED_ACTIVE_PER_PROJECT
    assert [AutoMaskletRun.objects.get(pk=pk).video for pk in started] == videos[:-1]  # oldest first
    assert scheduled_tick()["started"] == []
    AutoMaskletRun.objects.filter(pk=started[0]).update(status="done")
    assert [AutoMaskletRun.objects.get(pk=pk).video for pk in scheduled_tick()["started"]] == videos[-1:]


def test_one_active_run_per_video_is_enforced_by_the_database(team, make_videos):
    set_schedule(team.project, team.admin, enabled=True)
    video = make_videos(team.project, 1)[0]
    (pk,) = scheduled_tick()["started"]
    with pytest.raises(EditRefused, match="already being generated"):
        start_run(video, team.admin)  # the scheduled run is still queued
    with pytest.raises(IntegrityError), transaction.atomic():
        AutoMaskletRun.objects.create(video=video, frame_index=0, status="running")
    AutoMaskletRun.objects.filter(pk=pk).update(status="running")
    with pytest.raises(EditRefused, match="already being generated"):
        start_run(video, team.admin)
    AutoMaskletRun.objects.filter(pk=pk).update(status="done")
    assert start_run(video, team.admin).trigger == "manual"  # once it ended, an admin may run it again


def test_admins_switch_the_schedule_on_the_team_page(team):
    url = reverse("auto-masklets", kwargs={"slug": team.project.slug})
    page = reverse("team", kwargs={"slug": team.project.slug})
    admin = Client()
    admin.force_login(team.admin)
    assert b'id="auto-schedule" data-enabled="0"' in admin.get(page).content
    admin.post(url, {"action": "schedule", "enabled": "1"})
    team.project.refresh_from_db()
    since = team.project.auto_masklets_since
    assert since is not None
    admin.post(url, {"action": "schedule", "enabled": "1"})  # already on: the opt-in time stays
    team.project.refresh_from_db()
    assert team.project.auto_masklets_since == since
    assert b'data-enabled="1"' in admin.get(page).content
    annotator = Client()
    annotator.force_login(team.annotator)
    assert annotator.post(url, {"action": "schedule", "enabled": "0"}).status_code == 403
    admin.post(url, {"action": "schedule", "enabled": "0"})
    team.project.refresh_from_db()
    assert team.project.auto_masklets_since is None


def test_beat_sends_the_tick_to_the_cpu_queue():
    entry = django_settings.CELERY_BEAT_SCHEDULE["masklet-auto-masklets-tick"]
    assert celery_app.tasks[entry["task"]].name == "annotator.auto_masklets_tick"
    assert entry["options"]["queue"] == "cpu" and entry["schedule"] == django_settings.LOOP_TICK_SECONDS


def _wait_until_ended(video, timeout: float = 120.0) -> AutoMaskletRun:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = AutoMaskletRun.objects.filter(video=video).first()
        if run is not None and run.status not in AutoMaskletRun.ACTIVE:
            return run
        time.sleep(0.1)
    raise AssertionError(f"no run of {video} ended within {timeout} s: {_runs(video)}")


@embedded_only
@pytest.mark.django_db(transaction=True)
def test_the_embedded_beat_generates_auto_masklets_for_a_new_video(team, synthetic_video):
    from config.startup import start_embedded_beat

    set_schedule(team.project, team.admin, enabled=True)
    video, _ = synthetic_video(team.project, spec=SMALL)
    ticks = threading.Semaphore(0)

    def count_tick(sender=None, **_) -> None:
        if sender.name == "annotator.auto_masklets_tick":
            ticks.release()

    task_postrun.connect(count_tick, weak=False)
    stop = start_embedded_beat({"auto": {"task": "annotator.auto_masklets_tick", "schedule": 0.2,
                                         "options": {"queue": "cpu"}}})
    assert stop is not None, "another embedded beat is running in this process"
    try:
        run = _wait_until_ended(video)
        while ticks.acquire(blocking=False):  # forget the ticks before the run ended
            pass
        for _ in range(3):  # three more ticks end (two begun after the run ended): the video has had its run
            assert ticks.acquire(timeout=30), "the embedded beat stopped ticking"
    finally:
        stop.set()
        task_postrun.disconnect(count_tick)
    assert run.status == "done", run.error
    assert _runs(video) == [("schedule", "done")]
    auto = Masklet.objects.filter(video=video, type="auto")
    assert auto.count() == run.created_count > 0
    assert set(auto.values_list("status", flat=True)) == {Masklet.Status.SUBMITTED}


@embedded_only
@pytest.mark.django_db(transaction=True)
def test_admins_and_ticks_racing_for_a_video_start_one_run(team, synthetic_video):
    set_schedule(team.project, team.admin, enabled=True)
    video, _ = synthetic_video(team.project, spec=SMALL)
    calls = [lambda: start_run(video, team.admin), scheduled_tick, lambda: start_run(video, team.admin),
             scheduled_tick]
    barrier = threading.Barrier(len(calls))
    outcomes: list = [None] * len(calls)

    def race(number: int) -> None:
        try:
            barrier.wait(timeout=10)
            outcomes[number] = calls[number]()
        except EditRefused as refused:
            outcomes[number] = refused.code
        finally:
            connection.close()

    threads = [threading.Thread(target=race, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    run = _wait_until_ended(video)
    assert AutoMaskletRun.objects.filter(video=video).count() == 1, outcomes
    winners = [o for o in outcomes if isinstance(o, AutoMaskletRun) or (isinstance(o, dict) and o["started"])]
    assert len(winners) == 1, outcomes
    assert all(o == "busy" or o == {"recovered": [], "started": []} for o in outcomes if o not in winners), outcomes
    assert run.status == "done", run.error
