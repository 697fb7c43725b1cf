"""Work queues (fairness under concurrency, lock expiry, never one's own) and review round trips.

The concurrency tests start real threads, each with its own database connection, released
together by a barrier: on Postgres (services mode) they exercise SKIP LOCKED and the
compare-and-set claim; on SQLite the IMMEDIATE write lock serialises them.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from annotator.models import Masklet, Review, Role, VideoAssignment
from annotator.services.annotation import EditRefused, create_masklet, reopen_masklet, submit_masklet
from annotator.services.queues import next_review, next_work
from annotator.services.reviews import review_history, review_masklet


def _race(workers: list, call) -> list:
    barrier = threading.Barrier(len(workers))
    results: list = [None] * len(workers)
    errors: list = []

    def run(number: int, person) -> None:
        try:
            barrier.wait(timeout=10)
            results[number] = call(person)
        except Exception as error:  # surfaced below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n, p)) for n, p in enumerate(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


@pytest.mark.django_db(transaction=True)
def test_annotators_asking_at_once_never_get_the_same_video(make_user, make_project, make_videos):
    people = [make_user(f"a{i}") for i in range(6)]
    project = make_project(members={p: Role.ANNOTATOR for p in people})
    make_videos(project, 3)
    items = _race(people, lambda person: next_work(project, person))
    claimed = [item.video.id for item in items if item is not None]
    assert len(claimed) == 3 and len(set(claimed)) == 3  # every video once, the other three get nothing
    holders = VideoAssignment.objects.filter(holder__isnull=False).values_list("holder_id", flat=True)
    assert len(set(holders)) == 3


@pytest.mark.django_db(transaction=True)
def test_reviewers_asking_at_once_never_get_the_same_masklet(make_user, make_project, make_videos, make_submitted):
    annotator = make_user("ann")
    reviewers = [make_user(f"r{i}") for i in range(4)]
    project = make_project(members={annotator: Role.ANNOTATOR, **{r: Role.REVIEWER for r in reviewers}})
    video = make_videos(project, 1)[0]
    for _ in range(2):
        make_submitted(video, annotator)
    got = [m.pk for m in _race(reviewers, lambda person: next_review(project, person)) if m is not None]
    assert len(got) == 2 and len(set(got)) == 2


def test_a_held_video_comes_back_to_its_holder_and_to_others_once_the_lock_expires(team, make_videos):
    video = make_videos(team.project, 1)[0]
    first = next_work(team.project, team.annotator)
    assert first.video == video and first.reason == "video"
    assert next_work(team.project, team.annotator2) is None  # held by someone else
    assert next_work(team.project, team.annotator).video == video  # the holder resumes it
    VideoAssignment.objects.filter(video=video).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert next_work(team.project, team.annotator2).video == video  # abandoned: back in the queue


def test_a_video_someone_is_editing_is_not_handed_out(team, make_videos):
    video, other = make_videos(team.project, 2)
    create_masklet(video, team.annotator)  # a live masklet lock on v0
    assert next_work(team.project, team.annotator2).video == other


def test_done_videos_leave_the_queue(team, make_videos):
    from annotator.services.queues import finish_video

    video = make_videos(team.project, 1)[0]
    finish_video(video, team.annotator)
    assert next_work(team.project, team.annotator2) is None


def test_reviewers_never_get_their_own_masklet(team, make_videos, make_submitted):
    video = make_videos(team.project, 1)[0]
    make_submitted(video, team.admin)  # the admin annotated it
    assert next_review(team.project, team.admin) is None
    mine = next_review(team.project, team.reviewer)
    assert mine is not None and mine.lock_holder == team.reviewer
    assert next_review(team.project, team.reviewer2) is None  # claimed
    with pytest.raises(EditRefused):
        review_masklet(mine, team.admin, verdict="satisfactory")  # their own
    with pytest.raises(EditRefused):
        review_masklet(mine, team.reviewer2, verdict="satisfactory")  # held by another reviewer
    with pytest.raises(EditRefused):
        next_review(team.project, team.annotator)  # annotators have no review queue


def test_review_round_trip_reject_fix_resubmit_approve(team, make_videos, make_submitted):
    video = make_videos(team.project, 1)[0]
    masklet = make_submitted(video, team.annotator)
    claimed = next_review(team.project, team.reviewer)
    with pytest.raises(EditRefused):
        review_masklet(claimed, team.reviewer, verdict="unsatisfactory")  # a reason is required
    review_masklet(claimed, team.reviewer, verdict="unsatisfactory", reason="missing_frames", comment="frame 4")
    masklet.refresh_from_db()
    assert masklet.status == Masklet.Status.REJECTED and masklet.lock_holder is None
    item = next_work(team.project, team.annotator)  # the rejected masklet comes first, reopened
    assert (item.reason, item.masklet.pk, item.masklet.status) == ("rejected", masklet.pk, Masklet.Status.DRAFT)
    submit_masklet(item.masklet, team.annotator)
    again = next_review(team.project, team.reviewer2)
    assert again.pk == masklet.pk
    review_masklet(again, team.reviewer2, verdict="satisfactory")
    masklet.refresh_from_db()
    assert masklet.status == Masklet.Status.APPROVED
    history = review_history(masklet)
    assert [(h["verdict"], h["reason"], h["reviewer"]) for h in history] == [
        ("unsatisfactory", "missing_frames", "rev"), ("satisfactory", "", "rev2")]
    assert history[0]["reason_label"] == "Object missing on some frames" and history[0]["comment"] == "frame 4"


def test_a_rejected_auto_masklet_goes_to_the_first_annotator_who_asks(team, make_videos):
    video = make_videos(team.project, 1)[0]
    auto = Masklet.objects.create(video=video, object_id=1, type="auto", status=Masklet.Status.SUBMITTED)
    review_masklet(next_review(team.project, team.reviewer), team.reviewer, verdict="unsatisfactory",
                   reason="leak")
    item = next_work(team.project, team.annotator)
    assert (item.reason, item.masklet.pk, item.masklet.status) == ("rejected", auto.pk, Masklet.Status.DRAFT)
    auto.refresh_from_db()
    assert auto.assignee == team.annotator and auto.lock_holder == team.annotator
    assert next_work(team.project, team.annotator2) is None  # not handed out twice (and its video is busy)


def test_rejected_for_good_is_never_reopened(team, make_videos, make_submitted):
    video = make_videos(team.project, 1)[0]
    masklet = make_submitted(video, team.annotator)
    review_masklet(next_review(team.project, team.reviewer), team.reviewer, verdict="unsatisfactory", final=True)
    masklet.refresh_from_db()
    assert masklet.status == Masklet.Status.DISCARDED
    assert Review.objects.get(masklet=masklet).reason == "no_clear_boundary"
    with pytest.raises(EditRefused):
        reopen_masklet(masklet, team.annotator)
    assert next_work(team.project, team.annotator).reason == "video"  # not handed back


def test_team_changes_keep_an_admin_and_release_locks(team, make_videos):
    from annotator.services import team as team_service

    with pytest.raises(team_service.TeamError):
        team_service.set_role(team.project, team.admin.pk, "annotator")  # the only admin
    video = make_videos(team.project, 1)[0]
    next_work(team.project, team.annotator)
    team_service.remove_member(team.project, team.annotator.pk)
    assert VideoAssignment.objects.get(video=video).holder is None
    member = team_service.add_member(team.project, "ann", "reviewer")
    assert member.role == Role.REVIEWER
    with pytest.raises(team_service.TeamError):
        team_service.add_member(team.project, "ann", "reviewer")
    work = {m.username: m for m in team_service.who_works_on_what(team.project)}
    assert work["ann"].role == "reviewer"
