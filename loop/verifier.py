"""The learned verifier: a per-project model of which model frames are wrong, retrained from reviews.

Every model frame stores its backend's quality score and the signals behind it
(``MaskFrame.quality_features``, kept on each ``MaskFrameRevision``). People's work labels them:

- a model frame a person then edited (the frame's next revision is ``human``) is **bad**;
- a model frame still current in an **approved** masklet is **good**;
- anything else (superseded by the model again, or not reviewed yet) is unlabelled.

A training (``VerifierVersion``, queued -> running -> done | failed) fits a logistic regression
(scikit-learn, standardised features, balanced classes) on the labelled frames of a random 70 % of
the masklets and measures it on the frames of the other 30 % (held out by masklet, so frames of
one object never sit on both sides): its AUROC, next to the AUROC of the backends' own score on
the same frames. Logistic regression, not boosting: a few linear weights on a handful of signals
are what a few hundred reviewed frames can support, and they are stored as plain JSON.

The newest version whose AUROC beats the backends' score becomes ``active`` and **replaces** the
score of new model frames (``engine.verifier.rescore``); the backend's score stays in the frame's features as
``backend_score``, which is itself one of the verifier's inputs, so replacing never discards it.
Replace rather than blend: the verifier already weighs the backend score against the other
signals, on this project's own reviews, and was measured better; blending would only dilute it.
Trainings run as jobs (``loop.train_verifier``: a child process under the job memory
budget in embedded mode), started from the models dashboard or by the periodic job.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from annotator.models import MaskFrameRevision, Masklet, MaskSource, Project, Review
from engine import dispatch, jobs, liveness, protocol
from engine.heartbeat import JobHeartbeat
from engine.models import VerifierVersion
from engine.verifier import NOT_SIGNALS, vector
from loop.training import notify_dashboards

logger = logging.getLogger(__name__)

Status = VerifierVersion.Status
#: Share of masklets whose frames are held out to measure a version.
HELDOUT_SHARE = 0.3
#: Labelled frames needed before a training is worth starting.
MIN_LABELLED = 20
#: Peak memory of a training (MB): a process with Django, numpy and scikit-learn loaded (~200 MB,
#: ``ru_maxrss``), plus the labelled frames (a few hundred bytes each).
BASE_MB = 250.0
BYTES_PER_FRAME = 600.0


class VerifierRefused(Exception):
    """A training cannot start or cannot produce a version; the message is for people."""


@dataclass(frozen=True)
class Labelled:
    """One reviewed model frame: its masklet (the held-out unit), signals, the backend's score and label."""

    masklet_id: int
    features: dict[str, float]
    backend_score: float
    good: bool


def _broadcast(version: VerifierVersion) -> None:
    notify_dashboards(version.project_id, protocol.VerifierEvent(type="verifier", verifier=version.number,
                                                                 status=version.status, error=version.error))


# -- labels ---------------------------------------------------------------------------------------


def labelled_frames(project: Project) -> list[Labelled]:
    """Every model frame of ``project`` that people's work labels (see the module docstring)."""
    history: dict[tuple[int, int], dict[int, str]] = defaultdict(dict)
    revisions = MaskFrameRevision.objects.filter(masklet__video__project=project)
    for masklet_id, frame, number, source in revisions.values_list("masklet_id", "frame_index", "revision",
                                                                    "source").iterator():
        history[(masklet_id, frame)][number] = source
    approved = set(Masklet.objects.filter(video__project=project, status=Masklet.Status.APPROVED)
                   .values_list("pk", flat=True))
    rated = revisions.filter(source=MaskSource.MODEL, quality__isnull=False)
    out = []
    for masklet_id, frame, number, quality, features in rated.values_list(
            "masklet_id", "frame_index", "revision", "quality", "quality_features").iterator():
        later = history[(masklet_id, frame)].get(number + 1)
        if later == MaskSource.HUMAN:
            good = False
        elif later is None and masklet_id in approved:
            good = True
        else:
            continue
        features = features or {}
        out.append(Labelled(masklet_id, {k: float(v) for k, v in features.items() if _number(v)},
                            float(features.get("backend_score", quality)), good))
    return out


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# -- the model ------------------------------------------------------------------------------------


def feature_names(frames: list[Labelled]) -> list[str]:
    """The inputs: every signal any labelled frame has (a missing one counts 0), then the backend's score."""
    return sorted({key for frame in frames for key in frame.features} - NOT_SIGNALS) + ["backend_score"]


def fit(frames: list[Labelled], seed: int = 0) -> dict[str, Any]:
    """Train on a random ``1 - HELDOUT_SHARE`` of the masklets, measure on the rest.

    Returns ``{"model": {...}, "auroc", "backend_auroc", "trained_frames", "heldout_frames",
    "bad_frames"}``; raises ``VerifierRefused`` when the labels cannot support a measured model.
    """
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupShuffleSplit
    from sklearn.preprocessing import StandardScaler

    bad = sum(not frame.good for frame in frames)
    if len(frames) < MIN_LABELLED or bad == 0 or bad == len(frames):
        raise VerifierRefused(f"{len(frames)} reviewed model frames ({bad} edited by a person): at least "
                              f"{MIN_LABELLED}, some edited and some approved, are needed")
    names = feature_names(frames)
    x = np.array([vector(names, frame.features, frame.backend_score) for frame in frames])
    y = np.array([frame.good for frame in frames])
    groups = np.array([frame.masklet_id for frame in frames])
    splitter = GroupShuffleSplit(n_splits=20, test_size=HELDOUT_SHARE, random_state=seed)
    for train, test in splitter.split(x, y, groups):
        if len(set(y[train])) == 2 and len(set(y[test])) == 2:
            break
    else:
        raise VerifierRefused("the reviewed frames cannot be split into held-out masklets with both edited and "
                              "approved frames on each side yet: review more masklets")
    scaler = StandardScaler().fit(x[train])
    model = LogisticRegression(class_weight="balanced", max_iter=1000).fit(scaler.transform(x[train]), y[train])
    predicted = model.predict_proba(scaler.transform(x[test]))[:, 1]
    return {
        "model": {"features": names, "mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(),
                  "coef": model.coef_[0].tolist(), "intercept": float(model.intercept_[0])},
        "auroc": float(roc_auc_score(y[test], predicted)),
        "backend_auroc": float(roc_auc_score(y[test], x[test, -1])),
        "trained_frames": int(len(train)),
        "heldout_frames": int(len(test)),
        "bad_frames": int(bad),
    }


# -- the job --------------------------------------------------------------------------------------


def estimate_mb(project: Project) -> float:
    return BASE_MB + BYTES_PER_FRAME * MaskFrameRevision.objects.filter(masklet__video__project=project).count() / 2**20


def start_training(project: Project, user: Any = None, *, trigger: str = "manual") -> VerifierVersion:
    """Queue a training of ``project``'s verifier; refuses when one is under way, nothing is rated, or
    the estimate exceeds the job memory budget."""
    if not MaskFrameRevision.objects.filter(masklet__video__project=project, source=MaskSource.MODEL,
                                            quality__isnull=False).exists():
        raise VerifierRefused("no model frame of this project has a quality score yet: track some objects first")
    try:
        jobs.check_budget("training the quality verifier", estimate_mb(project), "raise the budget")
    except jobs.OverBudget as error:
        raise VerifierRefused(str(error)) from None
    try:
        with transaction.atomic():
            last = VerifierVersion.objects.filter(project=project).aggregate(n=Max("number"))["n"] or 0
            version = VerifierVersion.objects.create(project=project, number=last + 1, trigger=trigger,
                                                     created_by=user)
            transaction.on_commit(lambda: dispatch.submit("loop.train_verifier", version.pk, queue="cpu"))
    except IntegrityError:
        raise VerifierRefused("a verifier training of this project is already queued or running") from None
    _broadcast(version)
    return version


def execute(version_id: int) -> str:
    """The job: claim it, label, fit, measure under a heartbeat, and store the version (active when it
    beats the backends' score). A redelivery is left to a live worker, or fails a training whose worker is gone."""
    outcome, version = liveness.claim(VerifierVersion, version_id, stale_after=settings.LOOP_RUN_STALE_S)
    if outcome is liveness.Claim.LOST:
        _fail(version_id, "the training was lost: its worker stopped")
        return "failed"
    if outcome is not liveness.Claim.CLAIMED:
        return "not queued"
    _broadcast(version)
    try:
        with JobHeartbeat(VerifierVersion.objects.filter(pk=version_id, status=Status.RUNNING),
                          settings.LOOP_HEARTBEAT_S, f"verifier-{version_id}"):
            result = fit(labelled_frames(version.project))
    except VerifierRefused as error:
        _fail(version.pk, str(error))
        return "failed"
    except Exception as error:
        logger.exception("verifier training %s failed", version.pk)
        _fail(version.pk, f"the training failed: {error}")
        return "failed"
    with transaction.atomic():
        version = VerifierVersion.objects.select_for_update().get(pk=version.pk)
        if version.status != Status.RUNNING:
            return "lost"
        better = result["auroc"] > result["backend_auroc"]
        if better:
            VerifierVersion.objects.filter(project_id=version.project_id, active=True).update(active=False)
        for name in ("auroc", "backend_auroc", "trained_frames", "heldout_frames", "bad_frames", "model"):
            setattr(version, name, result[name])
        version.status, version.active, version.finished_at = Status.DONE, better, timezone.now()
        version.save()
    _broadcast(version)
    return "done"


def _fail(version_id: int, error: str) -> bool:
    with transaction.atomic():
        version = VerifierVersion.objects.select_for_update().filter(pk=version_id).first()
        if version is None or not version.is_active:
            return False
        version.status, version.error, version.finished_at = Status.FAILED, error[:2000], timezone.now()
        version.save(update_fields=["status", "error", "finished_at"])
    _broadcast(version)
    return True


def lost_in_child(version_id: int, reason: str) -> bool:
    """Embedded mode: the training's child process ended before it did (``engine.jobs``)."""
    return _fail(version_id, f"the training was lost: {reason}")


def recover_stale(older_than_s: float | None = None) -> list[int]:
    """Fail trainings silent (running, no heartbeat) or left queued longer than ``older_than_s`` (their worker is gone);
    ``0`` fails every one (a server starting in embedded mode: its children died with it)."""
    older_than_s = settings.LOOP_RUN_STALE_S if older_than_s is None else older_than_s
    versions = VerifierVersion.objects.all()
    lost = (liveness.lost_runs(versions.filter(status=Status.RUNNING), stale_after=older_than_s)
            + liveness.lost_queued(versions, "cpu", older_than_s))
    return [version.pk for version, reason in lost if _fail(version.pk, f"the training was lost: {reason}")]


# -- the schedule ---------------------------------------------------------------------------------


def new_evidence(project: Project) -> int:
    """People's edits of model frames and approvals since the project's last verifier training."""
    last = VerifierVersion.objects.filter(project=project).order_by("-created_at").first()
    edits = MaskFrameRevision.objects.filter(masklet__video__project=project, source=MaskSource.HUMAN)
    approvals = Review.objects.filter(masklet__video__project=project, verdict=Review.Verdict.SATISFACTORY)
    if last is not None:
        edits = edits.filter(created_at__gt=last.created_at)
        approvals = approvals.filter(created_at__gt=last.created_at)
    return edits.count() + approvals.count()


def start_due(projects: list[Any]) -> list[int]:
    """The periodic job's part: start a training for each project with enough new reviews since its last."""
    started = []
    for project in projects:
        if VerifierVersion.objects.filter(project=project, status__in=VerifierVersion.ACTIVE).exists():
            continue
        if new_evidence(project) < settings.VERIFIER_MIN_NEW_EVIDENCE:
            continue
        try:
            started.append(start_training(project, trigger="schedule").pk)
        except VerifierRefused as error:
            logger.info("scheduled verifier training of %s not started: %s", project.slug, error)
    return started
