"""Starting and running auto-masklet generation for a video, and storing what it finds.

``start_run`` (web process, admins) records an ``AutoMaskletRun`` and submits the ``gpu`` task
after commit; ``scheduled_tick`` (the periodic job: Celery beat, or the embedded server's beat)
does the same, on the first annotated frame, for every video of an opted-in project
(``Project.auto_masklets_since``, set by ``set_schedule``) that became ready without a run yet.
One queued-or-running run per video is a database constraint, so an admin's click and the
periodic job never both generate for one video.

``execute`` (the task) loads the serving segmenter, makes and selects proposals on the chosen
frame (``annotator.automasks.generate``), propagates them and stores each as a masklet of type
``auto``, status ``submitted`` (so it enters the review queue like a manual one), its masks with
source ``model``, and its seed stability score. Progress goes to the run row; a failure deletes
the run's half-written masklets and says why in ``error``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from django.db import IntegrityError, transaction
from django.db.models import F, Max, QuerySet
from django.utils import timezone

from annotator.automasks import generate
from annotator.models import AutoMaskletRun, MaskFrame, Masklet, MaskletType, MaskSource, Project, Video
from annotator.permissions import Action, User, has_permission
from annotator.services.annotation import EditRefused
from annotator.services.masks import MaskWrite, save_mask_frames
from segmentation.frames import JpegFolderFrames
from segmentation.masks import decode_rle, encode_rle

logger = logging.getLogger(__name__)
#: Propagated frames are written in batches of this many frames (one transaction each).
WRITE_BATCH = 8
#: The periodic job keeps at most this many runs of one project queued or running, so a batch of
#: uploads does not fill the ``gpu`` queue ahead of people's clicks; the rest wait for later ticks.
SCHEDULED_ACTIVE_PER_PROJECT = 2


def start_run(video: Video, user: User, *, frame_index: int = 0, points_per_side: int | None = None) -> AutoMaskletRun:
    """Queue generation on ``frame_index`` (a native annotated frame) of a ready video (admins)."""
    if not has_permission(user, video.project, Action.MANAGE_PROJECT):
        raise EditRefused("forbidden", "Only project admins can generate auto masklets.")
    return _queue(video, frame_index=frame_index, points_per_side=points_per_side, created_by=user,
                  trigger=AutoMaskletRun.Trigger.MANUAL)


def _queue(video: Video, *, frame_index: int, points_per_side: int | None, created_by: Any,
           trigger: str) -> AutoMaskletRun:
    from annotator.automasks.tasks import run_auto_masklets
    from engine.dispatch import submit

    if video.status != Video.Status.READY:
        raise EditRefused("not_found", "The video is not ready yet.")
    if frame_index not in video.annotated_frame_indices():
        raise EditRefused("bad_message", f"Frame {frame_index} is not one of this video's annotated frames.")
    if points_per_side is not None and not 2 <= points_per_side <= 64:
        raise EditRefused("bad_message", "The point grid has 2 to 64 points per side.")
    try:
        with transaction.atomic():
            run = AutoMaskletRun.objects.create(video=video, frame_index=frame_index, created_by=created_by,
                                                points_per_side=points_per_side or 0, trigger=trigger)
            transaction.on_commit(lambda: submit(run_auto_masklets, run.pk, queue="gpu"))
    except IntegrityError:  # one_active_auto_masklet_run_per_video
        raise EditRefused("busy", "Auto masklets are already being generated for this video.") from None
    return run


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
    return Video.objects.filter(status=Video.Status.READY, project__auto_masklets_since__isnull=False,
                                created_at__gte=F("project__auto_masklets_since"),
                                auto_runs__isnull=True).select_related("project").order_by("created_at", "id")


def scheduled_tick() -> dict[str, list[int]]:
    """What the periodic job runs: queue a run on frame 0 for each due video, within each project's
    ``SCHEDULED_ACTIVE_PER_PROJECT``. A video whose run failed is not retried (an admin can)."""
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
    return {"started": started}


def _update(run: AutoMaskletRun, **fields) -> None:
    for name, value in fields.items():
        setattr(run, name, value)
    AutoMaskletRun.objects.filter(pk=run.pk).update(**fields)


def _existing_masks(video: Video, frame_index: int) -> list[np.ndarray]:
    size = [video.height, video.width]
    return [decode_rle({"size": size, "counts": counts}).astype(bool) for counts in MaskFrame.objects.filter(
        masklet__video=video, frame_index=frame_index, area__gt=0).exclude(
        masklet__status=Masklet.Status.DISCARDED).values_list("rle_counts", flat=True)]


def execute(run_id: int) -> AutoMaskletRun:
    """The task body: never raises for a bad video or model; the run row says what happened."""
    from engine.segmenters import get_segmenter, serving_model

    run = AutoMaskletRun.objects.select_related("video__project").get(pk=run_id)
    video = run.video
    created: list[int] = []
    try:
        serving = serving_model(video.project)
        _update(run, status=AutoMaskletRun.Status.RUNNING, model_name=serving.name, progress=0.0)
        segmenter = get_segmenter(serving)
        native = video.annotated_frame_indices()
        frames = JpegFolderFrames(video.frames_dir)
        if len(frames) != len(native):
            raise RuntimeError(f"the video has {len(frames)} frame files but {len(native)} annotated frames")
        seed = native.index(run.frame_index)
        session = segmenter.open_session(frames)
        try:
            if serving.backend == "sam2":
                per_side = run.points_per_side or generate.SAM2_POINTS_PER_SIDE
                proposals = generate.sam2_proposals(segmenter, frames[seed], per_side)
            else:
                per_side = run.points_per_side or generate.CLASSICAL_POINTS_PER_SIDE
                proposals = generate.classical_proposals(
                    session, seed, per_side, progress=lambda share: _progress(run, 0.4 * share))
            kept, stats = generate.select(proposals, _existing_masks(video, run.frame_index))
            stats["points_per_side"] = per_side
            _update(run, stats=stats, points_per_side=per_side, progress=0.4)
            created = _create_masklets(video, kept)
            _update(run, stats={**stats, "masklet_ids": created})
            if kept:
                _store_tracks(run, session, seed, native, dict(zip(created, kept, strict=True)), serving)
        finally:
            session.close()
        with transaction.atomic():
            Masklet.objects.filter(pk__in=created).update(status=Masklet.Status.SUBMITTED, updated_at=timezone.now())
            _update(run, status=AutoMaskletRun.Status.DONE, progress=1.0, created_count=len(created),
                    finished_at=timezone.now())
    except Exception as error:  # the admin sees why; the half-made masklets go
        logger.exception("auto masklets run %s failed", run_id)
        Masklet.objects.filter(pk__in=created).delete()
        _update(run, status=AutoMaskletRun.Status.FAILED, error=f"{type(error).__name__}: {error}"[:2000],
                finished_at=timezone.now(), created_count=0)
    return run


def _progress(run: AutoMaskletRun, value: float) -> None:
    if value - run.progress >= 0.02 or value >= 1.0:
        _update(run, progress=round(value, 4))


def _create_masklets(video: Video, kept: list[generate.Proposal]) -> list[int]:
    """Draft auto masklets, unlocked and unassigned, numbered after the video's existing objects."""
    with transaction.atomic():
        Video.objects.select_for_update().filter(pk=video.pk).first()
        top = Masklet.objects.filter(video=video).aggregate(top=Max("object_id"))["top"] or 0
        rows = [Masklet.objects.create(video=video, object_id=top + number, type=MaskletType.AUTO,
                                       stability_score=round(p.stability, 4))
                for number, p in enumerate(kept, start=1)]
    return [row.pk for row in rows]


def _store_tracks(run: AutoMaskletRun, session, seed: int, native: list[int], kept: dict[int, generate.Proposal],
                  serving) -> None:
    masklets = {m.pk: m for m in Masklet.objects.filter(pk__in=list(kept)).select_related("video")}
    version = serving.model_version()
    pending: dict[int, list[MaskWrite]] = {pk: [] for pk in kept}
    done = 0

    def flush() -> None:
        with transaction.atomic():
            for pk, writes in pending.items():
                if writes:
                    save_mask_frames(masklets[pk], writes, source=MaskSource.MODEL, model_version=version)
                    writes.clear()

    for frame, masks in generate.propagate(session, seed, {pk: p.mask for pk, p in kept.items()}):
        for pk in kept:
            # The seed frame keeps the selected proposal itself: it is what was cleaned and deduplicated
            # (against the others and the stored masks), where the model's echo of it may drift.
            mask = kept[pk].mask if frame == seed else masks.get(pk)
            if mask is None:
                mask = np.zeros((session.height, session.width), bool)
            pending[pk].append(MaskWrite(native[frame], encode_rle(mask)))
        done += 1
        if done % WRITE_BATCH == 0:
            flush()
        _progress(run, 0.4 + 0.6 * done / len(native))
    flush()
