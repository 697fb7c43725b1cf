"""Locks over time (the page's ping keeps a video held, a review claim expires), who works on what,
and the review page's verdicts through the real view (send back, "other" without a comment,
reject for good), including the reason the annotator reads when the queue hands the masklet back.

``later(seconds)`` moves the clock; every expiry is checked just before and just after it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from annotator.models import Masklet, Review, VideoAssignment
from annotator.services.annotation import acquire_lock, create_masklet
from annotator.services.queues import (
    REVIEW_LOCK_SECONDS,
    WORK_LOCK_SECONDS,
    finish_video,
    next_review,
    next_work,
    renew_locks,
)
from annotator.services.reviews import review_masklet
from annotator.services.team import who_works_on_what


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# -- the video hold and the page's ping ------------------------------------------------------------


def test_the_pages_ping_keeps_the_video_held_and_an_abandoned_video_goes_back(team, make_videos, later, settings):
    settings.LOCK_SECONDS = 120
    video, other = make_videos(team.project, 2)
    assert next_work(team.project, team.annotator).video == video
    masklet = create_masklet(video, team.annotator)  # a draft being edited on the held video
    hold = VideoAssignment.objects.get(video=video)
    assert hold.holder == team.annotator

    pinged_at = later(WORK_LOCK_SECONDS - 60)  # 14 min in: the page pings
    assert renew_locks(video, team.annotator) == 0  # the masklet lock (2 min) expired long ago: not revived
    hold.refresh_from_db()
    assert hold.expires_at == pinged_at + timedelta(seconds=WORK_LOCK_SECONDS)

    later(WORK_LOCK_SECONDS + 30)
    acquire_lock(masklet, team.annotator)  # back to editing: a masklet lock until 17:30
    later(WORK_LOCK_SECONDS + 60)  # 16 min in: the video is held only thanks to the ping
    assert renew_locks(video, team.annotator) == 1  # the masklet lock too, both in one ping
    assert next_work(team.project, team.annotator2).video == other  # not the held video
    assert renew_locks(video, team.annotator2) == 0  # someone else's ping on the video takes nothing
    hold.refresh_from_db()
    assert hold.holder == team.annotator

    later(2 * WORK_LOCK_SECONDS + 120)  # the page was closed: no ping for over 15 min
    assert renew_locks(video, team.annotator) == 0  # an expired hold is not revived by a late ping
    hold.refresh_from_db()
    assert hold.expires_at < later(2 * WORK_LOCK_SECONDS + 120)
    VideoAssignment.objects.filter(video=other).update(done_at=hold.expires_at)  # leave only the abandoned one
    assert next_work(team.project, team.annotator2).video == video


def test_a_ping_does_not_renew_a_finished_video(team, make_videos, later):
    video = make_videos(team.project, 1)[0]
    next_work(team.project, team.annotator)
    finish_video(video, team.annotator)
    later(60)
    renew_locks(video, team.annotator)
    hold = VideoAssignment.objects.get(video=video)
    assert (hold.holder, hold.expires_at, hold.done_by) == (None, None, team.annotator)


# -- the review claim ---------------------------------------------------------------------------


def test_a_review_claim_expires_after_ten_minutes(team, make_videos, make_submitted, later):
    video = make_videos(team.project, 1)[0]
    masklet = make_submitted(video, team.annotator)
    assert next_review(team.project, team.reviewer).pk == masklet.pk
    later(REVIEW_LOCK_SECONDS - 1)
    assert next_review(team.project, team.reviewer2) is None  # still claimed
    assert next_review(team.project, team.reviewer).pk == masklet.pk  # its holder resumes it
    later(REVIEW_LOCK_SECONDS + 1)
    taken = next_review(team.project, team.reviewer2)  # abandoned: back in the queue
    assert taken.pk == masklet.pk and taken.lock_holder == team.reviewer2
    with pytest.raises(Exception, match="Another reviewer"):
        review_masklet(masklet, team.reviewer, verdict="satisfactory")  # the first claim is gone
    assert next_review(team.project, team.reviewer) is None
    review_masklet(taken, team.reviewer2, verdict="satisfactory")
    assert Review.objects.get(masklet=masklet).reviewer == team.reviewer2


# -- who works on what --------------------------------------------------------------------------


def test_who_works_on_what_lists_live_holds_drafts_and_review_claims(team, make_videos, make_submitted, later):
    v0, v1, v2 = make_videos(team.project, 3)
    submitted = make_submitted(v2, team.annotator2)  # object 1 of v2, waiting for review
    later(1)
    assert next_work(team.project, team.annotator).video == v0
    assert next_work(team.project, team.annotator2).video == v1
    draft = create_masklet(v1, team.annotator2)  # ann2 edits object 1 of v1
    create_masklet(v0, team.admin)  # the admin edits object 1 of v0 (no video hold of their own)
    assert next_review(team.project, team.reviewer).pk == submitted.pk
    stale = create_masklet(v2, team.annotator)  # object 2 of v2: its lock will have expired
    Masklet.objects.filter(pk=stale.pk).update(lock_expires_at=later(1))

    work = {m.username: m for m in who_works_on_what(team.project)}
    assert list(work) == ["boss", "ann", "ann2", "rev", "rev2"]  # by role, then name
    assert [(m.role, m.videos, m.masklets, m.reviewing) for m in work.values()] == [
        ("admin", [], ["v0 #1"], []),
        ("annotator", ["v0"], [], []),  # the stale draft lock of v2 #2 is not shown
        ("annotator", ["v1"], ["v1 #1"], []),
        ("reviewer", [], [], ["v2 #1"]),
        ("reviewer", [], [], []),
    ]

    finish_video(v0, team.annotator)  # done: no longer held
    review_masklet(submitted, team.reviewer, verdict="satisfactory")  # judged: the claim is released
    Masklet.objects.filter(pk=draft.pk).update(lock_expires_at=None, lock_holder=None)
    work = {m.username: m for m in who_works_on_what(team.project)}
    assert (work["ann"].videos, work["ann2"].masklets, work["rev"].reviewing) == ([], [], [])
    assert work["ann2"].videos == ["v1"]


# -- verdicts through the review page -----------------------------------------------------------


def _review_url(team, masklet) -> str:
    return reverse("masklet-review", kwargs={"slug": team.project.slug, "masklet_id": masklet.id})


def test_reject_for_good_through_the_review_page(team, make_videos, make_submitted):
    video = make_videos(team.project, 1)[0]
    masklet = make_submitted(video, team.annotator)
    client = _client(team.reviewer)
    page = client.get(_review_url(team, masklet))
    assert b'name="final_reason" value="no_clear_boundary"' in page.content and b'id="verdict-discard"' in page.content

    refused = client.post(_review_url(team, masklet), {"verdict": "discard", "final_reason": "leak"})
    assert refused.status_code == 302 and refused["Location"] == _review_url(team, masklet)
    assert "only for objects without a clear boundary" in " ".join(_messages(refused))
    masklet.refresh_from_db()
    assert masklet.status == Masklet.Status.SUBMITTED and not Review.objects.exists()

    response = client.post(_review_url(team, masklet), {"verdict": "discard", "final_reason": "no_clear_boundary",
                                                         "comment": "Smoke, no edge anywhere"})
    assert response.status_code == 302
    masklet.refresh_from_db()
    assert (masklet.status, masklet.lock_holder) == (Masklet.Status.DISCARDED, None)
    review = Review.objects.get(masklet=masklet)
    assert (review.verdict, review.reason, review.final, review.comment, review.reviewer) == (
        "unsatisfactory", "no_clear_boundary", True, "Smoke, no edge anywhere", team.reviewer)
    assert "rejected for good" in " ".join(_messages(response))
    shown = client.get(_review_url(team, masklet)).content.decode()
    assert 'id="verdict-form"' not in shown and "rejected for good: Object has no clear boundary" in shown
    # Never back to an annotator: the queue hands out the video itself, not the masklet.
    item = next_work(team.project, team.annotator)
    assert item.reason == "video" and item.masklet is None


def test_other_needs_a_comment_and_the_annotator_reads_the_reason_when_it_comes_back(team, make_videos,
                                                                                      make_submitted):
    video = make_videos(team.project, 1)[0]
    masklet = make_submitted(video, team.annotator)
    client = _client(team.reviewer)
    for data in ({"verdict": "unsatisfactory", "reason": "other", "comment": "   "},
                 {"verdict": "unsatisfactory", "reason": ""},
                 {"verdict": "unsatisfactory", "reason": "made_up"}):
        response = client.post(_review_url(team, masklet), data)
        assert response.status_code == 302 and response["Location"] == _review_url(team, masklet), data
        assert _messages(response), data
        masklet.refresh_from_db()
        assert masklet.status == Masklet.Status.SUBMITTED and not Review.objects.exists(), data
    assert "Say what is wrong in the comment" in " ".join(_messages(
        client.post(_review_url(team, masklet), {"verdict": "unsatisfactory", "reason": "other"})))

    client.post(_review_url(team, masklet), {"verdict": "unsatisfactory", "reason": "other",
                                             "comment": "Label says dog, it is a cat"})
    masklet.refresh_from_db()
    assert masklet.status == Masklet.Status.REJECTED
    assert Review.objects.get(masklet=masklet).reason == "other"

    annotator = _client(team.annotator)
    response = annotator.post(reverse("work-next", kwargs={"slug": team.project.slug}))
    assert response["Location"].endswith(f"/annotate/?object={masklet.object_id}")
    assert _messages(response) == [f"Object {masklet.object_id} came back from review — Other (see comment): "
                                   "“Label says dog, it is a cat” (rev). Fix it and submit it again."]
    masklet.refresh_from_db()
    assert (masklet.status, masklet.lock_holder) == (Masklet.Status.DRAFT, team.annotator)
    # Left unfinished and handed out again as a draft: the reason is still said.
    Masklet.objects.filter(pk=masklet.pk).update(lock_holder=None, lock_expires_at=None)
    again = annotator.post(reverse("work-next", kwargs={"slug": team.project.slug}))
    assert "came back from review — Other (see comment)" in _messages(again)[0]
    listed = annotator.get(reverse("api-video-masklets", kwargs={"slug": team.project.slug,
                                                                 "video_id": video.id})).json()["masklets"]
    assert listed[0]["review"] | {"at": None} == {
        "verdict": "unsatisfactory", "reason": "other", "reason_label": "Other (see comment)",
        "comment": "Label says dog, it is a cat", "reviewer": "rev", "at": None}
