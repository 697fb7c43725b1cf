"""Annotation services: locks between people, atomic edits, tracked writes that spare human
frames, undo chains and the review round trip (real database, no segmenter needed)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from django.utils import timezone

from annotator import selectors
from annotator.models import MaskFrame, MaskFrameRevision, Masklet, Prompt, Review, Role, Video
from annotator.services import annotation, queues
from annotator.services.annotation import EditRefused
from segmentation.masks import decode_rle, encode_rle
from segmentation.segmenter import FrameQuality

pytestmark = pytest.mark.django_db

H, W = 24, 32


@dataclass
class World:
    video: Video
    ann: Any
    bob: Any
    rev: Any
    root: Any


@pytest.fixture
def world(make_user, make_project) -> World:
    ann, bob, rev, root = make_user("ann"), make_user("bob"), make_user("rev"), make_user("root", superuser=True)
    project = make_project(members={ann: Role.ANNOTATOR, bob: Role.ANNOTATOR, rev: Role.REVIEWER},
                           labels=["car", "person"])
    video = Video.objects.create(project=project, name="v", status=Video.Status.READY, frame_count=20, stride=4,
                                 height=H, width=W, fps=24)
    return World(video, ann, bob, rev, root)


def square(x0: int, y0: int, size: int) -> dict:
    mask = np.zeros((H, W), bool)
    mask[y0:y0 + size, x0:x0 + size] = True
    return encode_rle(mask)


def click(masklet, user, frame: int, rle: dict, **extra) -> annotation.SavedMask:
    return annotation.record_edit(masklet, user, frame_index=frame, kind="click",
                                  payload={"x": 3, "y": 3, "positive": True}, rle=rle, session_id="s1", **extra)


def refused(code: str, call, *args, **kwargs) -> str:
    with pytest.raises(EditRefused) as caught:
        call(*args, **kwargs)
    assert caught.value.code == code, caught.value.message
    return caught.value.message


@pytest.fixture
def later(monkeypatch):
    """``later(seconds)``: from now on the clock reads that many seconds ahead."""
    start = timezone.now()

    def shift(seconds: float) -> None:
        monkeypatch.setattr(timezone, "now", lambda: start + timedelta(seconds=seconds))

    return shift


# -- objects --------------------------------------------------------------------------------


def test_objects_count_up_per_video_and_start_locked_to_their_creator(world):
    first = annotation.create_masklet(world.video, world.ann, label="car")
    second = annotation.create_masklet(world.video, world.bob)
    assert (first.object_id, second.object_id) == (1, 2)
    assert first.is_locked_by(world.ann) and second.is_locked_by(world.bob)
    assert (first.label, second.label, first.status) == ("car", "", Masklet.Status.DRAFT)


def test_labels_must_come_from_the_project_label_set(world):
    message = refused("bad_message", annotation.create_masklet, world.video, world.ann, label="boat")
    assert "car, person" in message
    masklet = annotation.create_masklet(world.video, world.ann)
    assert annotation.update_masklet(masklet, world.ann, label=" person ").label == "person"
    world.video.project.labels = []
    world.video.project.save()
    assert annotation.update_masklet(masklet, world.ann, label="boat").label == "boat"  # no set: any label


def test_reviewers_and_outsiders_cannot_edit(world, make_user):
    refused("read_only", annotation.create_masklet, world.video, world.rev)
    refused("forbidden", annotation.create_masklet, world.video, make_user("stranger"))
    masklet = annotation.create_masklet(world.video, world.ann)
    annotation.release_lock(masklet, world.ann)
    assert "reviewer" in refused("read_only", annotation.acquire_lock, masklet, world.rev)
    refused("read_only", click, masklet, world.rev, 4, square(0, 0, 3))
    refused("read_only", annotation.delete_masklet, masklet, world.rev)
    assert not Prompt.objects.exists() and not MaskFrame.objects.exists()


def test_video_must_be_ready(world):
    world.video.status = Video.Status.INGESTING
    world.video.save()
    refused("not_found", annotation.create_masklet, world.video, world.ann)


# -- locks ----------------------------------------------------------------------------------


def test_a_masklet_being_edited_is_read_only_for_everyone_else(world):
    masklet = annotation.create_masklet(world.video, world.ann)
    assert "ann is editing object 1" in refused("locked", annotation.acquire_lock, masklet, world.bob)
    refused("locked", click, masklet, world.bob, 4, square(0, 0, 3))
    refused("locked", annotation.delete_masklet, masklet, world.bob)
    refused("locked", annotation.acquire_lock, masklet, world.root)  # superusers obey locks too
    assert "ann is editing object 1" in refused("locked", annotation.release_lock, masklet, world.bob)  # not theirs
    assert Masklet.objects.get().is_locked_by(world.ann)
    annotation.release_lock(masklet, world.ann)
    assert annotation.acquire_lock(masklet, world.bob).is_locked_by(world.bob)
    refused("locked", click, masklet, world.ann, 4, square(0, 0, 3))


def test_locks_expire_unless_renewed_and_an_expired_lock_may_be_taken(world, later, settings):
    settings.LOCK_SECONDS = 100
    masklet = annotation.create_masklet(world.video, world.ann)
    later(60)
    assert queues.renew_locks(world.video, world.ann) == 1  # the page's ping
    later(150)
    annotation.check_editable(Masklet.objects.get(), world.ann)  # renewed at 60 s: good until 160 s
    later(161)
    assert "expired" in refused("locked", annotation.check_editable, Masklet.objects.get(), world.ann)
    assert queues.renew_locks(world.video, world.ann) == 0  # an expired lock is not revived by a ping
    assert selectors.masklet_to_dict(Masklet.objects.get(), world.ann)["lock_holder"] is None
    taken = annotation.acquire_lock(masklet, world.bob)
    assert taken.is_locked_by(world.bob)
    assert "bob is editing" in refused("locked", click, masklet, world.ann, 4, square(0, 0, 3))


def test_every_write_renews_the_editors_lock(world, later, settings):
    settings.LOCK_SECONDS = 100
    masklet = annotation.create_masklet(world.video, world.ann)
    later(90)
    click(masklet, world.ann, 4, square(0, 0, 3))
    later(180)
    annotation.save_tracked(world.video, world.ann, [(8, {1: square(1, 1, 3)})])
    later(270)
    annotation.check_editable(Masklet.objects.get(), world.ann)


# -- edits ----------------------------------------------------------------------------------


def test_an_edit_stores_prompt_mask_and_revision_together(world):
    masklet = annotation.create_masklet(world.video, world.ann)
    saved = click(masklet, world.ann, 4, square(2, 2, 4))
    assert saved.to_message() == {"object_id": 1, "frame": 4, "counts": square(2, 2, 4)["counts"],
                                  "source": "human", "revision": 1, "previous_revision": 0, "area": 16,
                                  "quality": None}
    prompt = Prompt.objects.get()
    assert (prompt.kind, prompt.payload, prompt.author, prompt.session_id) == (
        Prompt.Kind.POINT, {"x": 3.0, "y": 3.0, "positive": True}, world.ann, "s1")
    frame = MaskFrame.objects.get()
    assert (frame.frame_index, frame.source, frame.updated_by, frame.revision) == (4, "human", world.ann, 1)
    assert MaskFrameRevision.objects.get().author == world.ann


def test_a_failure_inside_the_edit_leaves_nothing_behind(world, monkeypatch):
    masklet = annotation.create_masklet(world.video, world.ann)
    expires = Masklet.objects.get().lock_expires_at
    real = annotation.save_mask_frames

    def write_then_fail(*args, **kwargs):
        real(*args, **kwargs)
        assert MaskFrame.objects.exists() and Prompt.objects.exists()  # written, not yet committed
        raise RuntimeError("database went away")

    monkeypatch.setattr(annotation, "save_mask_frames", write_then_fail)
    with pytest.raises(RuntimeError):
        click(masklet, world.ann, 4, square(2, 2, 4))
    assert not Prompt.objects.exists()
    assert not MaskFrame.objects.exists() and not MaskFrameRevision.objects.exists()
    assert Masklet.objects.get().lock_expires_at == expires


@pytest.mark.parametrize(
    ("kind", "payload", "frame", "rle", "words"),
    [
        ("click", {"x": 3, "y": 3, "positive": True}, 2, square(0, 0, 2), "Frame 2 is not one of"),
        ("click", {"x": 3, "y": 3, "positive": True}, 4, encode_rle(np.ones((H + 1, W), bool)), "not the video size"),
        ("click", {"x": 99, "y": 3}, 4, square(0, 0, 2), "outside the 32×24 frame"),
        ("click", {"x": "3", "y": 3}, 4, square(0, 0, 2), "must be a number"),
        ("box", {"x0": 5, "y0": 5, "x1": 5, "y1": 9}, 4, square(0, 0, 2), "needs a width and a height"),
        ("box", {"x0": 5, "y0": 5, "x1": 1e308, "y1": 9}, 4, square(0, 0, 2), "does not fit the 32×24 frame"),
        ("box", {"x0": -1, "y0": 5, "x1": 8, "y1": 9}, 4, square(0, 0, 2), "does not fit the 32×24 frame"),
        ("click", {"x": float("nan"), "y": 3}, 4, square(0, 0, 2), "must be a number"),
        ("paint", {}, 4, square(0, 0, 2), "RLE counts"),
        ("wave", {}, 4, square(0, 0, 2), "Unknown kind"),
    ],
    ids=["not-annotated-frame", "wrong-size", "outside", "not-a-number", "flat-box", "huge-box", "negative-box",
         "nan", "no-counts", "unknown"],
)
def test_bad_edits_are_refused_in_words_and_store_nothing(world, kind, payload, frame, rle, words):
    masklet = annotation.create_masklet(world.video, world.ann)
    message = refused("bad_message", annotation.record_edit, masklet, world.ann, frame_index=frame, kind=kind,
                      payload=payload, rle=rle, session_id="s")
    assert words in message
    assert not Prompt.objects.exists() and not MaskFrame.objects.exists()


def test_box_and_paint_are_logged_with_their_payloads(world):
    masklet = annotation.create_masklet(world.video, world.ann)
    annotation.record_edit(masklet, world.ann, frame_index=0, kind="box",
                           payload={"x0": 1, "y0": 2, "x1": 9, "y1": 8, "extra": 1}, rle=square(1, 2, 6),
                           session_id="s")
    painted = square(4, 4, 5)
    saved = annotation.record_edit(masklet, world.ann, frame_index=0, kind="paint",
                                   payload={"counts": painted["counts"]}, rle=painted, session_id="s")
    assert (saved.revision, saved.previous_revision, saved.area) == (2, 1, 25)
    assert list(Prompt.objects.values_list("kind", "payload")) == [
        ("box", {"x0": 1.0, "y0": 2.0, "x1": 9.0, "y1": 8.0}), ("brush", {"counts": painted["counts"]})]


def test_clear_restore_and_undo_chains(world):
    masklet = annotation.create_masklet(world.video, world.ann)
    first, second = square(1, 1, 3), square(8, 8, 6)
    click(masklet, world.ann, 4, first)
    click(masklet, world.ann, 4, second)
    cleared = annotation.clear_frame(masklet, world.ann, frame_index=4, session_id="s")
    assert (cleared.revision, cleared.previous_revision, cleared.source, cleared.area) == (3, 2, "model", 0)
    undo = annotation.restore_frame(masklet, world.ann, frame_index=4, revision=2, session_id="s")
    assert (undo.revision, undo.source, undo.counts) == (4, "human", second["counts"])
    undo_again = annotation.restore_frame(masklet, world.ann, frame_index=4, revision=1, session_id="s")
    assert undo_again.counts == first["counts"]
    to_nothing = annotation.restore_frame(masklet, world.ann, frame_index=4, revision=0, session_id="s")
    assert (to_nothing.revision, to_nothing.source, to_nothing.area) == (6, "model", 0)
    assert not decode_rle({"size": [H, W], "counts": to_nothing.counts}).any()
    assert "no revision 9" in refused("not_found", annotation.restore_frame, masklet, world.ann, frame_index=4,
                                      revision=9, session_id="s")
    refused("bad_message", annotation.restore_frame, masklet, world.ann, frame_index=4, revision=-1, session_id="s")
    assert list(Prompt.objects.values_list("kind", "payload")) == [
        ("point", {"x": 3.0, "y": 3.0, "positive": True}), ("point", {"x": 3.0, "y": 3.0, "positive": True}),
        ("clear", {}), ("restore", {"revision": 2}), ("restore", {"revision": 1}), ("restore", {"revision": 0})]
    assert MaskFrameRevision.objects.filter(frame_index=4).count() == 6


# -- propagation ----------------------------------------------------------------------------


def test_tracked_masks_never_replace_human_frames_unless_asked(world):
    masklet = annotation.create_masklet(world.video, world.ann)
    human = square(0, 0, 3)
    click(masklet, world.ann, 4, human)
    tracked = square(10, 10, 5)
    saved, skipped = annotation.save_tracked(world.video, world.ann, [(0, {1: tracked}), (4, {1: tracked}),
                                                                      (8, {1: tracked})])
    assert [(s.frame_index, s.source, s.revision) for s in saved] == [(0, "model", 1), (8, "model", 1)]
    assert skipped == [(1, 4)]
    assert MaskFrame.objects.get(frame_index=4).rle_counts == human["counts"]
    saved, skipped = annotation.save_tracked(world.video, world.ann, [(4, {1: tracked})], overwrite_human=True)
    assert [(s.frame_index, s.source, s.revision, s.previous_revision) for s in saved] == [(4, "model", 2, 1)]
    assert skipped == []


def test_a_models_quality_is_stored_with_its_mask_and_kept_in_the_history(world):
    masklet = annotation.create_masklet(world.video, world.ann)
    rating = FrameQuality(0.25, {"area_change": 0.5})
    saved, _ = annotation.save_tracked(world.video, world.ann, [(0, {1: square(0, 0, 3)}), (4, {1: square(0, 0, 3)})],
                                       quality={(1, 0): rating})
    assert [s.to_message()["quality"] for s in saved] == [0.25, None]  # frame 4: the backend gave no rating
    assert (MaskFrame.objects.get(frame_index=0).quality, MaskFrame.objects.get(frame_index=0).quality_features) == (
        0.25, {"area_change": 0.5})
    assert selectors.video_masks(world.video)[0]["quality"] == 0.25
    assert click(masklet, world.ann, 0, square(1, 1, 3)).quality is None  # a person's mask is not rated
    frame = MaskFrame.objects.get(frame_index=0)
    assert (frame.quality, frame.quality_features) == (None, None)
    model_revision = MaskFrameRevision.objects.get(frame_index=0, revision=1)  # what the verifier learns from
    assert (model_revision.quality, model_revision.quality_features) == (0.25, {"area_change": 0.5})
    restored = annotation.restore_frame(masklet, world.ann, frame_index=0, revision=1, session_id="s")
    assert (restored.source, restored.quality) == ("model", 0.25)


def test_a_quality_outside_0_to_1_is_refused(world):
    annotation.create_masklet(world.video, world.ann)
    refused("bad_message", annotation.save_tracked, world.video, world.ann, [(0, {1: square(0, 0, 3)})],
            quality={(1, 0): FrameQuality(1.5)})
    assert not MaskFrame.objects.exists()


def test_tracked_writes_only_touch_masklets_the_user_is_editing(world):
    mine = annotation.create_masklet(world.video, world.ann)
    annotation.create_masklet(world.video, world.bob)
    submitted = annotation.create_masklet(world.video, world.ann)
    click(submitted, world.ann, 0, square(0, 0, 2))
    annotation.submit_masklet(submitted, world.ann)
    saved, _ = annotation.save_tracked(world.video, world.ann, [(8, {1: square(0, 0, 4), 2: square(0, 0, 4),
                                                                     3: square(0, 0, 4)})])
    assert [s.object_id for s in saved] == [mine.object_id]
    assert list(MaskFrame.objects.filter(frame_index=8).values_list("masklet__object_id", flat=True)) == [1]
    assert annotation.save_tracked(world.video, world.rev, [(8, {1: square(0, 0, 4)})]) == ([], [])


def test_a_tracked_batch_is_one_transaction(world):
    annotation.create_masklet(world.video, world.ann)
    annotation.create_masklet(world.video, world.ann)
    refused("bad_message", annotation.save_tracked, world.video, world.ann,
            [(0, {1: square(0, 0, 3), 2: square(0, 0, 3)}), (6, {2: square(0, 0, 3)})])
    assert not MaskFrame.objects.exists() and not MaskFrameRevision.objects.exists()


def test_human_masks_are_the_rebuild_input(world):
    masklet = annotation.create_masklet(world.video, world.ann)
    other = annotation.create_masklet(world.video, world.ann)
    click(masklet, world.ann, 8, square(0, 0, 3))
    click(masklet, world.ann, 4, square(1, 1, 3))
    click(masklet, world.ann, 12, square(1, 1, 3))
    annotation.clear_frame(masklet, world.ann, frame_index=12, session_id="s")  # withdrawn: not a prompt any more
    annotation.save_tracked(world.video, world.ann, [(0, {1: square(5, 5, 3), 2: square(5, 5, 3)})])
    rebuilt = selectors.human_masks(world.video, [masklet.object_id, other.object_id])
    assert rebuilt == {1: [(4, square(1, 1, 3)), (8, square(0, 0, 3))], 2: []}


# -- review round trip ----------------------------------------------------------------------


def test_submit_needs_a_mask_and_hands_the_object_to_review(world):
    masklet = annotation.create_masklet(world.video, world.ann)
    assert "no mask on any frame" in refused("empty", annotation.submit_masklet, masklet, world.ann)
    annotation.save_tracked(world.video, world.ann, [(0, {1: encode_rle(np.zeros((H, W), bool))})])
    refused("empty", annotation.submit_masklet, masklet, world.ann)  # an empty mask is no mask
    click(masklet, world.ann, 4, square(0, 0, 3))
    refused("locked", annotation.submit_masklet, masklet, world.bob)
    submitted = annotation.submit_masklet(masklet, world.ann)
    assert (submitted.status, submitted.lock_holder, submitted.lock_expires_at) == ("submitted", None, None)
    assert "submitted for review" in refused("read_only", click, masklet, world.ann, 4, square(0, 0, 4))
    refused("read_only", annotation.acquire_lock, masklet, world.ann)
    refused("read_only", annotation.reopen_masklet, masklet, world.ann)
    refused("read_only", annotation.delete_masklet, masklet, world.ann)


def test_a_rejected_object_shows_the_reason_and_can_be_reopened(world):
    masklet = annotation.create_masklet(world.video, world.ann)
    click(masklet, world.ann, 4, square(0, 0, 3))
    annotation.submit_masklet(masklet, world.ann)
    Review.objects.create(masklet=masklet, reviewer=world.rev, verdict=Review.Verdict.UNSATISFACTORY,
                          reason="drifts", comment="Loses the car after frame 8.")
    Masklet.objects.filter(pk=masklet.pk).update(status=Masklet.Status.REJECTED)
    shown = selectors.masklet_to_dict(selectors.masklets_for_video(world.video).get(), world.bob)
    assert shown["status"] == "rejected" and shown["lock_holder"] is None
    assert shown["review"]["verdict"] == "unsatisfactory"
    assert (shown["review"]["reason"], shown["review"]["comment"], shown["review"]["reviewer"]) == (
        "drifts", "Loses the car after frame 8.", "rev")
    assert "reopen it" in refused("read_only", click, masklet, world.ann, 4, square(0, 0, 4))
    refused("read_only", annotation.reopen_masklet, masklet, world.rev)
    # Sent back to ann: another annotator may not take it (a project admin may, see below).
    assert "sent back to ann" in refused("forbidden", annotation.reopen_masklet, masklet, world.bob)
    assert shown["assignee"] == "ann"
    reopened = annotation.reopen_masklet(masklet, world.ann)
    assert reopened.status == "draft" and reopened.is_locked_by(world.ann)
    click(masklet, world.ann, 4, square(0, 0, 4))
    mine = selectors.masklet_to_dict(Masklet.objects.get(), world.ann)
    assert (mine["lock_holder"], mine["locked_by_me"]) == ("ann", True)
    assert mine["review"]["reason"] == "drifts"  # the reason stays visible while it is fixed


def test_a_project_admin_may_reopen_what_was_sent_back_to_someone_else(world, make_membership):
    boss = type(world.ann).objects.create_user("boss")
    make_membership(world.video.project, boss, Role.ADMIN)
    masklet = annotation.create_masklet(world.video, world.ann)
    click(masklet, world.ann, 4, square(0, 0, 3))
    annotation.submit_masklet(masklet, world.ann)
    Masklet.objects.filter(pk=masklet.pk).update(status=Masklet.Status.REJECTED)
    for who in (boss, world.root):
        Masklet.objects.filter(pk=masklet.pk).update(status=Masklet.Status.REJECTED, lock_holder=None)
        assert annotation.reopen_masklet(masklet, who).is_locked_by(who)


def test_delete_takes_masks_and_history_with_it(world):
    masklet = annotation.create_masklet(world.video, world.ann)
    click(masklet, world.ann, 4, square(0, 0, 3))
    annotation.delete_masklet(masklet, world.ann)
    assert not Masklet.objects.exists() and not MaskFrame.objects.exists() and not Prompt.objects.exists()
    refused("not_found", annotation.acquire_lock, masklet, world.ann)


# -- selectors ------------------------------------------------------------------------------


def test_masklet_list_costs_two_queries_whatever_its_length(world, django_assert_num_queries):
    for user in (world.ann, world.bob, world.ann, world.bob):
        masklet = annotation.create_masklet(world.video, user)
        Review.objects.create(masklet=masklet, reviewer=world.rev, verdict=Review.Verdict.SATISFACTORY)
    with django_assert_num_queries(2):  # masklets with lock holders, reviews with reviewers
        shown = [selectors.masklet_to_dict(m, world.ann) for m in selectors.masklets_for_video(world.video)]
    assert [(m["object_id"], m["lock_holder"], m["locked_by_me"]) for m in shown] == [
        (1, "ann", True), (2, "bob", False), (3, "ann", True), (4, "bob", False)]
    assert all(m["review"]["reviewer"] == "rev" for m in shown)


def test_video_masks_by_frame_range(world):
    first = annotation.create_masklet(world.video, world.ann)
    annotation.create_masklet(world.video, world.ann)
    click(first, world.ann, 4, square(0, 0, 3))
    annotation.save_tracked(world.video, world.ann, [(index, {1: square(1, 1, 2), 2: square(2, 2, 2)})
                                                     for index in (0, 8, 12, 16)])
    everything = selectors.video_masks(world.video)
    assert [(m["frame"], m["object_id"]) for m in everything] == [
        (0, 1), (0, 2), (4, 1), (8, 1), (8, 2), (12, 1), (12, 2), (16, 1), (16, 2)]
    assert everything[2] == {"object_id": 1, "frame": 4, "counts": square(0, 0, 3)["counts"], "source": "human",
                             "revision": 1, "area": 9, "quality": None}
    assert [(m["frame"], m["object_id"]) for m in selectors.video_masks(world.video, 4, 8)] == [(4, 1), (8, 1),
                                                                                               (8, 2)]
    assert [m["frame"] for m in selectors.video_masks(world.video, start=13)] == [16, 16]
    assert [m["frame"] for m in selectors.video_masks(world.video, end=0)] == [0, 0]
