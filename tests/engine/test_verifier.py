"""The learned verifier: labels from people's work, one retraining on simulated reviews that beats
the backends' own score, the active version scoring new model frames, and the job's life."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from annotator.models import MaskFrame, Masklet, Membership, Project, Role, Video
from annotator.services import annotation
from annotator.services.masks import MaskWrite, save_mask_frames
from engine.models import VerifierVersion
from engine.verifier import predict, rescore
from fixtures.reviews import ReviewedObject, reviewed_objects, write_reviewed_project
from loop import verifier
from segmentation.masks import encode_rle
from segmentation.segmenter import FrameQuality

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def reviewed() -> list[ReviewedObject]:
    """12 objects of 4 synthetic videos, tracked by the classical backend (~10 s, computed once)."""
    return reviewed_objects(range(4))


SQUARE = encode_rle(np.ones((8, 8), bool))


def admin_project(slug: str = "radar") -> tuple[Project, object]:
    project = Project.objects.create(name=slug, slug=slug)
    person = get_user_model().objects.create_user(username=f"{slug}-admin", password="x")
    Membership.objects.create(project=project, user=person, role=Role.ADMIN)
    return project, person


def small_video(project: Project, frames: int = 4) -> Video:
    return Video.objects.create(project=project, name="v", status=Video.Status.READY, fps=24, frame_count=frames,
                                stride=1, width=8, height=8)


def reviewed_project(objects: list[ReviewedObject], slug: str = "radar") -> Project:
    admin = get_user_model().objects.create_user(username=f"{slug}-admin", password="x")
    return write_reviewed_project(objects, slug, admin)


@pytest.fixture
def run_now(monkeypatch) -> list[tuple]:
    """Commit hooks run at once and the job's dispatch is recorded, not run: the test runs it."""
    submitted: list[tuple] = []
    monkeypatch.setattr(transaction, "on_commit", lambda fn, using=None: fn())
    monkeypatch.setattr("engine.dispatch.submit", lambda task, *a, **k: submitted.append((task, a, k)))
    return submitted


def test_people_s_work_labels_model_frames():
    project, person = admin_project()
    video = small_video(project)
    square = SQUARE
    rated = FrameQuality(0.5, {"presence": 0.9})
    approved = Masklet.objects.create(video=video, object_id=1, status=Masklet.Status.APPROVED)
    draft = Masklet.objects.create(video=video, object_id=2)
    for masklet in (approved, draft):
        save_mask_frames(masklet, [MaskWrite(f, square, rated) for f in range(4)], source="model")
    save_mask_frames(approved, [MaskWrite(1, square)], source="human", author=person)  # frame 1: fixed -> bad
    save_mask_frames(approved, [MaskWrite(2, square, rated)], source="model")  # frame 2: tracked again
    save_mask_frames(draft, [MaskWrite(3, square)], source="human", author=person)
    labels = sorted((row.masklet_id, row.good) for row in verifier.labelled_frames(project))
    # approved: frame 1 bad; frames 0 and 3 good; frame 2's first revision was replaced by the model (no
    # label) and its second is current in an approved masklet (good). Draft: frame 3 bad, the rest unreviewed.
    assert labels == sorted([(approved.pk, False), (approved.pk, True), (approved.pk, True), (approved.pk, True),
                             (draft.pk, False)])
    assert {tuple(sorted(row.features)) for row in verifier.labelled_frames(project)} == {("presence",)}


def test_one_retraining_on_reviewed_frames_beats_the_backends_score(reviewed, run_now):
    project = reviewed_project(reviewed)
    edited = sum(sum(obj.edited) for obj in reviewed)
    assert 0 < edited < sum(len(obj.frames) for obj in reviewed)  # the fixture has both kinds
    version = verifier.start_training(project)
    assert run_now == [("loop.train_verifier", (version.pk,), {"queue": "cpu"})]
    assert verifier.execute(version.pk) == "done"
    version.refresh_from_db()
    print(f"verifier AUROC {version.auroc:.3f} vs the classical score's {version.backend_auroc:.3f} on "
          f"{version.heldout_frames} held-out frames")
    assert version.status == "done" and version.number == 1 and version.bad_frames == edited
    assert version.worker and version.started_at <= version.heartbeat_at <= version.finished_at  # one lifecycle
    assert version.heldout_frames > 0 and version.trained_frames > version.heldout_frames
    assert version.auroc > version.backend_auroc
    assert version.active and version.model["features"][-1] == "backend_score"

    # The active version now scores new model frames; the backend's score is kept beside it.
    masklet = Masklet.objects.filter(video__project=project).first()
    masklet.status, masklet.lock_holder = Masklet.Status.DRAFT, get_user_model().objects.get()
    masklet.lock_expires_at = timezone.now() + timedelta(minutes=5)
    masklet.save()
    obj = reviewed[0]
    backend = obj.quality[0]
    saved, _ = annotation.save_tracked(masklet.video, masklet.lock_holder, [(obj.frames[0], {
        masklet.object_id: encode_rle(obj.masks[0])})], quality={(masklet.object_id, obj.frames[0]): backend})
    stored = MaskFrame.objects.get(masklet=masklet, frame_index=obj.frames[0])
    expected = round(predict(version.model, backend.features, backend.score), 4)
    assert stored.quality == saved[0].quality == expected
    assert stored.quality_features["backend_score"] == backend.score
    assert stored.quality_features["verifier_version"] == 1


def test_a_version_that_does_not_beat_the_backend_is_kept_but_not_active(run_now, monkeypatch):
    project, _ = admin_project()
    masklet = Masklet.objects.create(video=small_video(project), object_id=1, status=Masklet.Status.APPROVED)
    save_mask_frames(masklet, [MaskWrite(0, SQUARE, FrameQuality(0.9))], source="model")
    model = {"features": ["backend_score"], "mean": [0.5], "scale": [0.1], "coef": [1.0], "intercept": 0.0}
    monkeypatch.setattr(verifier, "fit", lambda frames: {"model": model, "auroc": 0.5, "backend_auroc": 0.9,
                                                         "trained_frames": 1, "heldout_frames": 1, "bad_frames": 0})
    version = verifier.start_training(project)
    verifier.execute(version.pk)
    version.refresh_from_db()
    assert version.status == "done" and not version.active
    assert rescore(project.pk, {1: FrameQuality(0.3, {})}) == {1: FrameQuality(0.3, {})}


def test_trainings_refuse_clearly(run_now):
    project, _ = admin_project()
    with pytest.raises(verifier.VerifierRefused, match="no model frame of this project has a quality score"):
        verifier.start_training(project)
    masklet = Masklet.objects.create(video=small_video(project), object_id=1, status=Masklet.Status.APPROVED)
    save_mask_frames(masklet, [MaskWrite(0, SQUARE, FrameQuality(0.9))], source="model")
    version = verifier.start_training(project)
    with pytest.raises(verifier.VerifierRefused, match="already queued or running"):
        verifier.start_training(project)
    assert verifier.execute(version.pk) == "failed"
    version.refresh_from_db()
    assert version.status == "failed" and "1 reviewed model frames (0 edited by a person)" in version.error
    assert verifier.start_training(project).number == 2  # a failed training does not block the next


def test_lost_and_stale_trainings_end_failed(run_now):
    project, _ = admin_project()
    version = VerifierVersion.objects.create(project=project, number=1, status="running")
    assert verifier.lost_in_child(version.pk, "its process was killed (SIGKILL: out of memory, or stopped by hand)")
    version.refresh_from_db()
    assert version.status == "failed" and "SIGKILL" in version.error
    assert not verifier.lost_in_child(version.pk, "again")  # it had ended
    queued = VerifierVersion.objects.create(project=project, number=2)
    assert verifier.recover_stale(older_than_s=3600) == []
    assert verifier.recover_stale(older_than_s=0) == [queued.pk]
