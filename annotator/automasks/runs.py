"""Starting and running auto-masklet generation for a video, and storing what it finds.

``start_run`` (web process, admins) records an ``AutoMaskletRun`` and submits the ``gpu`` task
after commit; ``scheduled_tick`` (the periodic job: Celery beat, or the embedded server's beat)
fails lost runs, then does the same, on the first annotated frame, for every video of an opted-in
project (``Project.auto_masklets_since``, set by ``set_schedule``) that became ready without a run
yet. One queued-or-running run per video is a database constraint, so an admin's click and the
periodic job never both generate for one video.

``execute`` (the task) claims the run for its worker, loads the serving segmenter, makes and
selects proposals on the chosen frame (``annotator.automasks.generate``) and propagates them,
keeping every mask in memory (RLE). Nothing is stored until the run's last step: ONE transaction
creates the masklets (type ``auto``, status ``submitted``, so they enter the review queue like
manual ones, with their seed stability score), all their masks (source ``model``) and marks the
run done, under the run's row lock and only if it is still running. So a run is all or nothing:
one that fails, is killed at any instant or is taken for lost leaves no masklet behind, and its
``error`` says why (shown on the team page).

A ``missed`` run (``check_for_missed``, queued when an annotator marks a video done) is the
exhaustivity check: the same proposals, with the annotated masks cut out of them, minus those
overlapping an annotated mask or an earlier suggestion (``annotator.automasks.missed``), stored as
``MissedObject`` suggestions for reviewers in the same one-transaction way, without propagation.

A dead worker cannot end its run, so others do (``engine.liveness``, the rules training runs
follow too): a ``gpu`` worker starting under the same node name fails the runs its predecessor
held (``engine.workers`` ready hook), the periodic job fails runs without a heartbeat for
``MASKLET_LOOP_RUN_STALE_S`` and runs still queued after ``liveness.QUEUED_LOST_S``, and a redelivered
message (``acks_late``) finds its run running and fails it (or drops itself while the run's worker
is alive). Either way the video is free for a new run; the periodic job does not retry a failed
run by itself (an admin can).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, Max, OuterRef, QuerySet
from django.utils import timezone

from annotator.automasks import generate, missed
from annotator.models import AutoMaskletRun, MaskFrame, Masklet, MaskletType, MaskSource, MissedObject, Project, Video
from annotator.permissions import Action, User, has_permission
from annotator.services.annotation import EditRefused
from annotator.services.masks import MaskWrite, save_mask_frames
from engine import dispatch, jobs, liveness
from engine.heartbeat import JobHeartbeat
from engine.segmenters import get_segmenter, serving_model
from segmentation.masks import decode_rle, encode_rle, rle_area, rle_bbox

logger = logging.getLogger(__name__)
Status = AutoMaskletRun.Status
#: The periodic job keeps at most this many runs of one project queued or running, so a batch of
#: uploads does not fill the ``gpu`` queue ahead of people's clicks; the rest wait for later ticks.
SCHEDULED_ACTIVE_PER_PROJECT = 2


class RunEnded(Exception):
    """The run stopped being ``running`` under its worker (someone took it for lost): stop, store nothing."""


class RunCancelled(Exception):
    """Someone asked the run to stop (``cancel_run``): it ends ``cancelled`` and stores nothing."""


def start_run(video: Video, user: User, *, frame_index: int = 0, points_per_side: int | None = None) -> AutoMaskletRun:
    """Queue generation on ``frame_index`` (a native annotated frame) of a ready video (admins)."""
    if not has_permission(user, video.project, Action.MANAGE_PROJECT):
        raise EditRefused("forbidden", "Only project admins can generate auto masklets.")
    return _queue(video, frame_index=frame_index, points_per_side=points_per_side, created_by=user,
                  trigger=AutoMaskletRun.Trigger.MANUAL)


def cancel_run(run: AutoMaskletRun, user: User) -> bool:
    """Ask a run to stop (admins): a queued one ends at once, a running one at its next write (progress
    or the store, whose transaction it then rolls back), storing nothing. False when it had ended."""
    if not has_permission(user, run.video.project, Action.MANAGE_PROJECT):
        raise EditRefused("forbidden", "Only project admins can cancel auto masklets.")
    return liveness.request_cancel(AutoMaskletRun, run.pk)


def check_for_missed(video: Video, user: User) -> AutoMaskletRun | None:
    """The exhaustivity check when a video is marked done: queue a ``missed`` run on its first annotated
    frame. None (logged) when it cannot start now: another run of the video is active, or it would not
    fit the memory budget; marking the video done never fails for it."""
    frames = video.annotated_frame_indices()
    if not frames:
        return None
    try:
        return _queue(video, frame_index=frames[0], points_per_side=None, created_by=user,
                      trigger=AutoMaskletRun.Trigger.FINISHED, kind=AutoMaskletRun.Kind.MISSED)
    except EditRefused as refused:
        logger.info("missed-object check for video %s not started: %s", video.pk, refused.message)
        return None


def _queue(video: Video, *, frame_index: int, points_per_side: int | None, created_by: Any,
           trigger: str, kind: str = AutoMaskletRun.Kind.MASKLETS) -> AutoMaskletRun:
    if video.status != Video.Status.READY:
        raise EditRefused("not_found", "The video is not ready yet.")
    if frame_index not in video.annotated_frame_indices():
        raise EditRefused("bad_message", f"Frame {frame_index} is not one of this video's annotated frames.")
    if points_per_side is not None and not 2 <= points_per_side <= 64:
        raise EditRefused("bad_message", "The point grid has 2 to 64 points per side.")
    _check_memory(video)
    try:
        with transaction.atomic():
            run = AutoMaskletRun.objects.create(video=video, frame_index=frame_index, created_by=created_by,
                                                points_per_side=points_per_side or 0, trigger=trigger, kind=kind)
            transaction.on_commit(lambda: dispatch.submit("annotator.auto_masklets", run.pk, queue="gpu"))
    except IntegrityError:  # one_active_auto_masklet_run_per_video
        raise EditRefused("busy", "Auto masklets are already being generated for this video.") from None
    return run


#: Objects an estimate assumes a run tracks at once (kept proposals of one frame, rarely more).
ESTIMATED_OBJECTS = 10


def _check_memory(video: Video) -> None:
    """Refuse a run whose SAM 2 model, tracking the video's frames, would exceed the job memory budget."""
    serving = serving_model(video.project)
    if serving.backend != "sam2":
        return
    frames = len(video.annotated_frame_indices())
    estimate = jobs.estimate_inference_mb(serving.config, serving.image_size or settings.SAM2_IMAGE_SIZE,
                                          frames=frames, objects=ESTIMATED_OBJECTS)
    try:
        jobs.check_budget(f"auto masklets over {frames} frames with {serving.name}", estimate,
                          "serve a model at a smaller image size, or raise the budget")
    except jobs.OverBudget as error:
        raise EditRefused("too_large", str(error)) from None


def set_schedule(project: Project, user: User, *, enabled: bool) -> Project:
    """Opt the project in (videos uploaded from now on get auto masklets once ready) or out."""
    if not has_permission(user, project, Action.MANAGE_PROJECT):
        raise EditRefused("forbidden", "Only project admins can schedule auto masklets.")
    since = (project.auto_masklets_since or timezone.now()) if enabled else None
    Project.objects.filter(pk=project.pk).update(auto_masklets_since=since)
    project.auto_masklets_since = since
    return project


def due_videos() -> QuerySet[Video]:
    """Ready videos of opted-in projects, uploaded since the opt-in, that never had an auto-masklet run."""
    generated = AutoMaskletRun.objects.filter(video=OuterRef("pk"), kind=AutoMaskletRun.Kind.MASKLETS)
    return Video.objects.filter(status=Video.Status.READY, project__auto_masklets_since__isnull=False,
                                created_at__gte=F("project__auto_masklets_since")).exclude(
        Exists(generated)).select_related("project").order_by("created_at", "id")


def recover_lost_runs(*, worker: str | None = None, stale_after: float | None = None,
                      queued_after: float = liveness.QUEUED_LOST_S) -> list[int]:
    """Fail the runs whose worker is gone; returns their ids. With ``worker``: the running runs of that
    node (it is starting again). Without: running runs with no heartbeat for ``stale_after`` s
    (``MASKLET_LOOP_RUN_STALE_S``) and runs queued for more than ``queued_after`` s."""
    stale_after = settings.LOOP_RUN_STALE_S if stale_after is None else stale_after
    lost = liveness.lost_runs(AutoMaskletRun.objects.filter(status=Status.RUNNING), worker=worker,
                              stale_after=stale_after)
    failed = [run.pk for run, reason in lost if _fail(run.pk, f"the run was lost: {reason}", expect=Status.RUNNING)]
    if worker is None:
        failed += [run.pk for run, reason in liveness.lost_queued(AutoMaskletRun.objects.all(), "gpu", queued_after)
                   if _fail(run.pk, f"the run was lost: {reason}", expect=Status.QUEUED)]
    return failed


def scheduled_tick() -> dict[str, list[int]]:
    """What the periodic job runs: fail lost runs (``recover_lost_runs``), then queue a run on frame 0
    for each due video, within each project's ``SCHEDULED_ACTIVE_PER_PROJECT``. A video whose run
    failed is not retried (an admin can)."""
    recovered = recover_lost_runs()
    active: dict[int, int] = {}
    started: list[int] = []
    for video in due_videos():
        if video.project_id not in active:
            active[video.project_id] = AutoMaskletRun.objects.filter(
                video__project_id=video.project_id, status__in=AutoMaskletRun.ACTIVE).count()
        if active[video.project_id] >= SCHEDULED_ACTIVE_PER_PROJECT:
            continue
        try:
            run = _queue(video, frame_index=0, points_per_side=None, created_by=None,
                         trigger=AutoMaskletRun.Trigger.SCHEDULE)
        except EditRefused as refused:  # an admin's run started in the meantime, or no frame 0
            logger.info("scheduled auto masklets for video %s not started: %s", video.pk, refused.message)
            continue
        active[video.project_id] += 1
        started.append(run.pk)
    return {"recovered": recovered, "started": started}


def _update(run: AutoMaskletRun, **fields) -> None:
    """Write ``fields`` while the run is still running under this worker and not asked to stop; else it
    was cancelled (``RunCancelled``) or taken for lost (``RunEnded``)."""
    if not AutoMaskletRun.objects.filter(pk=run.pk, status=Status.RUNNING, cancel_requested=False).update(**fields):
        if liveness.cancel_requested(AutoMaskletRun, run.pk):
            raise RunCancelled(run.pk)
        raise RunEnded(f"run {run.pk} is no longer running")
    for name, value in fields.items():
        setattr(run, name, value)


def _fail(run_id: int, error: str, *, expect: str | None = None) -> bool:
    """Mark a run failed with why, if it is still ``expect`` (else still active); False when it had ended."""
    statuses = [expect] if expect else list(AutoMaskletRun.ACTIVE)
    return bool(AutoMaskletRun.objects.filter(pk=run_id, status__in=statuses).update(
        status=Status.FAILED, error=error[:2000], finished_at=timezone.now(), created_count=0))


def lost_in_child(run_id: int, reason: str) -> bool:
    """Embedded mode: the run's child process ended without finishing it (``engine.jobs``): fail it with why."""
    return _fail(run_id, f"the run was lost: {reason}")


def recover_after_restart() -> list[int]:
    """Embedded mode, when the server starts: fail at once the runs its previous process left behind."""
    active = AutoMaskletRun.objects.filter(status__in=AutoMaskletRun.ACTIVE)
    return [run.pk for run, reason in liveness.orphans_at_start(active)
            if _fail(run.pk, f"the run was lost: {reason}", expect=run.status)]


def _existing_masks(video: Video, frame_index: int) -> list[np.ndarray]:
    size = [video.height, video.width]
    return [decode_rle({"size": size, "counts": counts}).astype(bool) for counts in MaskFrame.objects.filter(
        masklet__video=video, frame_index=frame_index, area__gt=0).exclude(
        masklet__status=Masklet.Status.DISCARDED).values_list("rle_counts", flat=True)]


def _suggested_masks(video: Video, frame_index: int) -> list[np.ndarray]:
    """Masks of the video's earlier suggestions on the frame, whatever became of them: a dismissed object
    is not offered again, a pending one not twice (an accepted one is a masklet by now)."""
    size = [video.height, video.width]
    return [decode_rle({"size": size, "counts": counts}).astype(bool) for counts in MissedObject.objects.filter(
        video=video, frame_index=frame_index).values_list("rle_counts", flat=True)]


def execute(run_id: int) -> AutoMaskletRun | None:
    """The task body: never raises for a bad video or model; the run row says what happened (None: no row)."""
    outcome, run = liveness.claim(AutoMaskletRun, run_id, stale_after=settings.LOOP_RUN_STALE_S)
    if outcome is liveness.Claim.DUPLICATE:  # the broker delivered it again while its worker still runs it
        logger.warning("auto masklets run %s: duplicate delivery ignored, %s is still running it", run_id, run.worker)
    elif outcome is liveness.Claim.LOST:
        _fail(run_id, f"the run was lost: the worker running it ({run.worker}) was lost; the task was delivered "
                      "again", expect=Status.RUNNING)
    elif outcome is liveness.Claim.CLAIMED:
        with JobHeartbeat(AutoMaskletRun.objects.filter(pk=run_id, status=Status.RUNNING),
                                settings.LOOP_HEARTBEAT_S, f"auto-masklets-run-{run_id}"):
            try:
                _generate(run)
            except RunCancelled:
                liveness.finish(AutoMaskletRun, run_id, Status.CANCELLED, created_count=0)
            except RunEnded:
                logger.warning("auto masklets run %s was ended while it ran; nothing stored", run_id)
            except Exception as error:  # the admin sees why; nothing was stored
                logger.exception("auto masklets run %s failed", run_id)
                _fail(run_id, f"{type(error).__name__}: {error}")
    return AutoMaskletRun.objects.select_related("video").filter(pk=run_id).first()


def _generate(run: AutoMaskletRun) -> None:
    video = Video.objects.select_related("project").get(pk=run.video_id)
    serving = serving_model(video.project)
    _update(run, model_name=serving.name, progress=0.0)
    segmenter = get_segmenter(serving)
    native = video.annotated_frame_indices()
    frames = video.frames.source()
    if len(frames) != len(native):
        raise RuntimeError(f"the video has {len(frames)} frame files but {len(native)} annotated frames")
    seed = native.index(run.frame_index)
    existing = _existing_masks(video, run.frame_index)
    checking = run.kind == AutoMaskletRun.Kind.MISSED
    suggested = _suggested_masks(video, run.frame_index) if checking else []
    session = segmenter.open_session(frames)
    try:
        if serving.backend == "sam2":
            per_side = run.points_per_side or generate.SAM2_POINTS_PER_SIDE
            proposals = generate.sam2_proposals(segmenter, frames[seed], per_side)
        else:
            per_side = run.points_per_side or generate.CLASSICAL_POINTS_PER_SIDE
            known = np.logical_or.reduce(existing + suggested) if checking and existing + suggested else None
            proposals = generate.classical_proposals(
                session, seed, per_side, progress=lambda share: _progress(run, (0.9 if checking else 0.4) * share),
                known=known)
        kept, stats = generate.select(proposals, existing)
        stats["points_per_side"] = per_side
        if checking:
            kept, counts = missed.unexplained(kept, existing, suggested)
            stats.update(counts)
            _store_missed(run, video, kept, stats)
            return
        _update(run, stats=stats, points_per_side=per_side, progress=0.4)
        tracks = _tracks(run, session, seed, native, kept) if kept else []
    finally:
        session.close()
    _store(run, video, kept, tracks, stats, serving.model_version())


def _progress(run: AutoMaskletRun, value: float) -> None:
    if value - run.progress >= 0.02 or value >= 1.0:
        _update(run, progress=round(value, 4))


def _tracks(run: AutoMaskletRun, session, seed: int, native: list[int],
            kept: list[generate.Proposal]) -> list[list[MaskWrite]]:
    """Propagate the kept proposals through the video: each one's masks as RLE writes, in memory only."""
    tracks: list[list[MaskWrite]] = [[] for _ in kept]
    done = 0
    seeds = {number: proposal.mask for number, proposal in enumerate(kept, start=1)}  # object ids 1..n
    for frame, masks in generate.propagate(session, seed, seeds):
        for number, proposal in enumerate(kept, start=1):
            # The seed frame keeps the selected proposal itself: it is what was cleaned and deduplicated
            # (against the others and the stored masks), where the model's echo of it may drift.
            mask = proposal.mask if frame == seed else masks.get(number)
            if mask is None:
                mask = np.zeros((session.height, session.width), bool)
            tracks[number - 1].append(MaskWrite(native[frame], encode_rle(mask)))
        done += 1
        _progress(run, 0.4 + 0.59 * done / len(native))
    return tracks


def _store(run: AutoMaskletRun, video: Video, kept: list[generate.Proposal], tracks: list[list[MaskWrite]],
           stats: dict[str, Any], version: Any) -> None:
    """The run's only write of results, in ONE transaction: its masklets, their masks, the run done.

    Under the run's row lock and only while it is still running, so a run failed meanwhile (taken for
    lost) stores nothing, and a run killed or failing here leaves nothing half-stored.
    """
    with transaction.atomic():
        if AutoMaskletRun.objects.select_for_update().filter(pk=run.pk, status=Status.RUNNING).first() is None:
            raise RunEnded(f"run {run.pk} is no longer running")
        Video.objects.select_for_update().filter(pk=video.pk).first()  # object ids: one writer at a time
        top = Masklet.objects.filter(video=video).aggregate(top=Max("object_id"))["top"] or 0
        created = []
        for number, (proposal, writes) in enumerate(zip(kept, tracks, strict=True), start=1):
            masklet = Masklet.objects.create(video=video, object_id=top + number, type=MaskletType.AUTO,
                                             status=Masklet.Status.SUBMITTED,
                                             stability_score=round(proposal.stability, 4))
            save_mask_frames(masklet, writes, source=MaskSource.MODEL, model_version=version)
            created.append(masklet.pk)
        _update(run, status=Status.DONE, progress=1.0, created_count=len(created),
                stats={**stats, "masklet_ids": created}, finished_at=timezone.now())


def _store_missed(run: AutoMaskletRun, video: Video, found: list[generate.Proposal], stats: dict[str, Any]) -> None:
    """A ``missed`` run's only write, in ONE transaction: its suggestions and the run done (as ``_store``)."""
    with transaction.atomic():
        if AutoMaskletRun.objects.select_for_update().filter(pk=run.pk, status=Status.RUNNING).first() is None:
            raise RunEnded(f"run {run.pk} is no longer running")
        rles = [encode_rle(proposal.mask) for proposal in found]
        MissedObject.objects.bulk_create([
            MissedObject(video=video, run=run, frame_index=run.frame_index, rle_counts=rle["counts"],
                         area=rle_area(rle), bbox=rle_bbox(rle), score=round(proposal.stability, 4))
            for proposal, rle in zip(found, rles, strict=True)])
        _update(run, status=Status.DONE, progress=1.0, created_count=len(found), stats=stats,
                points_per_side=stats["points_per_side"], finished_at=timezone.now())
