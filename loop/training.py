"""Training runs: snapshot the approved masklets, fine-tune, evaluate, register a candidate.

A ``TrainingRun`` goes queued -> running -> done | failed | cancelled. The database
allows one queued-or-running run per project (``one_active_training_run_per_project``), so a
scheduled start and an admin's click can never both win. ``execute_run`` (the ``train``-queue
task body) is written so that a run killed at any instant ends ``failed`` with its log and
leaves no version behind:

- the checkpoint is written atomically, then loaded and evaluated, and only then are the
  version, its evaluations and the run's success committed in ONE transaction;
- a heartbeat thread stamps ``heartbeat_at``; ``recover_orphaned_runs`` (run when a train worker
  starts, and by the periodic job) fails runs whose worker restarted or went silent, and
  deletes checkpoints no version points to (the rules are ``engine.liveness``, shared with
  auto-masklet runs);
- a task redelivered after its worker died (``acks_late``) finds its run already ``running`` and
  fails it instead of training twice; a duplicate delivery while the run's worker is alive
  (fresh heartbeat) is dropped and leaves the run alone;
- a cancel is honoured while fine-tuning (every step), while evaluating (every measured
  object) and under the run's row lock in the registering transaction: a cancelled run ends
  ``cancelled`` with no version and its checkpoint deleted, whenever the cancel came.

Progress, the loss of every step and the log are stored on the run and broadcast to the
dashboard's socket group (``engine.dashboard_consumer``) as they happen.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from annotator import webhooks
from annotator.models import MaskFrame, MaskFrameRevision, Masklet, Project, Split, Video
from engine import channel_bridge, dispatch, jobs, liveness, protocol, storage
from engine.heartbeat import JobHeartbeat
from engine.models import Evaluation, LoopSettings, ModelVersion, TrainingRun
from engine.segmenters import serving_model
from loop import checkpoint_check, evaluation, registry
from segmentation.backends import build_segmenter
from segmentation.masks import decode_rle

logger = logging.getLogger(__name__)

Status = TrainingRun.Status
#: Share of a run's progress bar that fine-tuning takes; evaluation and registration take the rest.
TRAIN_SHARE = 0.8


#: Objects per training window (``FineTuneConfig.max_objects``).
MAX_OBJECTS = 3


class RunRefused(Exception):
    """A run cannot start (one is active, nothing to train on); the message is for people."""


class RunCancelled(Exception):
    """Raised inside a running run when its cancel flag is seen; the message says where it stopped."""


def training_group(project_id: int) -> str:
    """The channel-layer group of a project's dashboard sockets."""
    return f"project-{project_id}-training"


def broadcast(project_id: int, **fields: Any) -> None:
    """Tell open dashboards about a run (a ``protocol.RunEvent`` of ``fields``), and the project's webhooks
    when the run ended."""
    event = protocol.RunEvent(type="run", **fields)
    if event.status in (Status.DONE, Status.FAILED, Status.CANCELLED):
        webhooks.emit(project_id, "training_run.finished", {"run": event.run, "status": event.status,
                                                             "version": event.version, "error": event.error or ""})
    notify_dashboards(project_id, event)


def notify_dashboards(project_id: int, message: protocol.ServerPart) -> None:
    """Send a ``protocol.DashboardMessage`` to the project's open models pages (never raises: a missed update
    only waits for the next); runs, verifier trainings and downloads all tell them this way."""
    try:
        channel_bridge.group_send_soon(training_group(project_id), {"type": "dashboard.message",
                                                                    "message": protocol.dashboard_message(message)})
    except Exception:
        logger.debug("could not tell the models pages", exc_info=True)


def loop_settings(project: Project) -> LoopSettings:
    """The project's loop settings, created from the ``MASKLET_LOOP_*`` defaults on first use."""
    defaults = {
        "enabled": settings.LOOP_ENABLED,
        "min_new_masklets": settings.LOOP_MIN_NEW_MASKLETS,
        "min_hours": settings.LOOP_MIN_HOURS,
        "auto_promote": settings.LOOP_AUTO_PROMOTE,
        "promote_margin": settings.LOOP_PROMOTE_MARGIN,
        "steps": settings.LOOP_TRAIN_STEPS,
        "image_size": settings.LOOP_IMAGE_SIZE,
        "model_config": settings.SAM2_CONFIG,
        "lr": settings.LOOP_LR,
        "clip_length": settings.LOOP_CLIP_LENGTH,
    }
    return LoopSettings.objects.get_or_create(project=project, defaults=defaults)[0]


# -- the data ---------------------------------------------------------------------------------


def snapshot_training_data(project: Project) -> dict[str, Any]:
    """Exactly which masks a run trains on: approved masklets of ready train videos, with revisions.

    ``masklets`` lists ``{"id", "video_id", "object_id", "frames": [[frame_index, revision], ...]}``;
    the run later reads those revisions from ``MaskFrameRevision``, so edits made while it runs
    (or after) never change what it trained on.
    """
    masklets = list(Masklet.objects.filter(video__project=project, video__split=Split.TRAIN,
                                           video__status=Video.Status.READY, status=Masklet.Status.APPROVED)
                    .order_by("video_id", "object_id").values("id", "video_id", "object_id"))
    frames: dict[int, list[list[int]]] = {m["id"]: [] for m in masklets}
    for masklet_id, frame_index, revision in (MaskFrame.objects.filter(masklet_id__in=list(frames))
                                              .order_by("frame_index").values_list("masklet_id", "frame_index",
                                                                                   "revision")):
        frames[masklet_id].append([frame_index, revision])
    entries = [{**m, "frames": frames[m["id"]]} for m in masklets if frames[m["id"]]]
    return {
        "taken_at": timezone.now().isoformat(),
        "masklets": entries,
        "masklet_count": len(entries),
        "video_count": len({m["video_id"] for m in entries}),
        "frame_count": sum(len(m["frames"]) for m in entries),
    }


def trained_masklet_ids(project: Project) -> set[int]:
    """Masklets some earlier run of the project trained on (any status: a failed run still saw them)."""
    seen: set[int] = set()
    for snapshot in TrainingRun.objects.filter(project=project).values_list("data_snapshot", flat=True):
        seen.update(m["id"] for m in (snapshot or {}).get("masklets", []))
    return seen


def new_approved_masklets(project: Project) -> int:
    """Approved train masklets no run of the project has trained on yet."""
    approved = set(Masklet.objects.filter(video__project=project, video__split=Split.TRAIN,
                                          status=Masklet.Status.APPROVED).values_list("id", flat=True))
    return len(approved - trained_masklet_ids(project))


def load_clips(snapshot: dict[str, Any], max_side: int) -> list[Any]:
    """The snapshot as training clips, one per video: its annotated frames and the snapshotted masks.

    Frames and masks are shrunk to at most ``max_side`` pixels on the longer side (the model
    resizes to its input size anyway), so a long 1080p video does not sit in memory at full size.
    An object without a mask on a frame is absent there.
    """
    from segmentation.training.clips import Clip  # torch: in the job's child process only

    by_video: dict[int, list[dict[str, Any]]] = {}
    for entry in snapshot.get("masklets", []):
        by_video.setdefault(entry["video_id"], []).append(entry)
    clips = []
    for video in Video.objects.filter(pk__in=list(by_video)).order_by("id"):
        indices = video.annotated_frame_indices()
        height, width = int(video.height), int(video.width)
        scale = min(1.0, max_side / max(height, width))
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        stored = video.frames.source()  # read in place, or streamed through the cache with prefetch
        if len(stored) != len(indices):
            raise FileNotFoundError(f"video {video.name} has {len(stored)} stored frames for {len(indices)} "
                                    "annotated ones: ingest it again")
        frames = [cv2.resize(stored[i], size, interpolation=cv2.INTER_AREA) for i in range(len(indices))]
        position = {index: i for i, index in enumerate(indices)}
        masks: dict[int, list[np.ndarray]] = {}
        for entry in by_video[video.pk]:
            wanted = {(f, r) for f, r in entry["frames"]}
            object_masks = [np.zeros((size[1], size[0]), dtype=bool) for _ in indices]
            rows = MaskFrameRevision.objects.filter(masklet_id=entry["id"],
                                                    frame_index__in=[f for f, _ in wanted])
            for frame_index, revision, counts in rows.values_list("frame_index", "revision", "rle_counts"):
                if (frame_index, revision) in wanted and frame_index in position:
                    mask = decode_rle({"size": [height, width], "counts": counts}).astype(np.uint8)
                    object_masks[position[frame_index]] = cv2.resize(mask, size,
                                                                     interpolation=cv2.INTER_NEAREST) > 0
            if any(m.any() for m in object_masks):
                masks[int(entry["object_id"])] = object_masks
        if masks and frames:
            clips.append(Clip(frames, masks))
    return clips


# -- starting, cancelling, recovering -----------------------------------------------------------


def start_run(project: Project, user: Any = None, *, trigger: str = "manual",
              parameters: dict[str, Any] | None = None) -> TrainingRun:
    """Queue a run of ``project`` on the ``train`` queue; refuses when one is active or nothing is approved."""
    snapshot = snapshot_training_data(project)
    if not snapshot["masklet_count"]:
        raise RunRefused("no approved masklets on ready train-split videos: nothing to train on")
    knobs = loop_settings(project)
    base = serving_model(project).model_version()
    params = {
        "steps": knobs.steps,
        "lr": knobs.lr,
        "clip_length": knobs.clip_length,
        "image_size": base.image_size if base else knobs.image_size,
        "model_config": base.sam2_config if base else knobs.model_config,
        "max_objects": MAX_OBJECTS,
    }
    params.update(device_limits(params["image_size"], params["clip_length"]))
    params.update(parameters or {})
    check_memory(params)
    try:
        with transaction.atomic():
            run = TrainingRun.objects.create(project=project, base_version=base, parameters=params,
                                             data_snapshot=snapshot, created_by=user, trigger=trigger,
                                             log=_line(f"queued ({trigger}): {snapshot['masklet_count']} masklets, "
                                                       f"{snapshot['frame_count']} masks on "
                                                       f"{snapshot['video_count']} videos; base "
                                                       f"{base.name if base else 'random weights'}"))
            transaction.on_commit(lambda: dispatch.submit("loop.train_model", run.pk, queue="train"))
    except IntegrityError:
        raise RunRefused("a training run of this project is already queued or running") from None
    broadcast(project.pk, run=run.pk, status=run.status)
    return run


def device_limits(image_size: int, clip_length: int) -> dict[str, Any]:
    """Defaults follow the device: without CUDA, a run trains at no more than ``MASKLET_LOOP_CPU_IMAGE_SIZE``
    px on windows of no more than ``MASKLET_LOOP_CPU_CLIP_LENGTH`` frames, sizes that fit a CPU machine."""
    if jobs.training_device() == "cuda":
        return {}
    return {"image_size": min(image_size, settings.LOOP_CPU_IMAGE_SIZE),
            "clip_length": min(clip_length, settings.LOOP_CPU_CLIP_LENGTH)}


def check_memory(params: dict[str, Any]) -> None:
    """Refuse (``RunRefused``, in words) a run whose estimated peak memory exceeds the job budget."""
    estimate = jobs.estimate_training_mb(params["model_config"], int(params["image_size"]),
                                         int(params["clip_length"]), int(params.get("max_objects", MAX_OBJECTS)),
                                         device=jobs.training_device())
    try:
        jobs.check_budget(f"fine-tuning {params['model_config']} at {params['image_size']} px on "
                          f"{params['clip_length']}-frame windows", estimate,
                          "lower the image size or the clip length, or raise the budget")
    except jobs.OverBudget as error:
        raise RunRefused(str(error)) from None


def cancel_run(run: TrainingRun) -> TrainingRun:
    """Ask a run to stop: a queued run ends at once; a running one at its next training step or
    evaluated object, and at the latest when it would register its version (the registering
    transaction re-reads the flag under the same row lock as this one)."""
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().get(pk=run.pk)
        if not run.is_active:
            raise RunRefused(f"run {run.pk} has already ended ({run.status})")
        liveness.request_cancel(TrainingRun, run.pk)
        run.refresh_from_db()
        if run.status == Status.CANCELLED:
            run.log += _line("cancelled before it started")
            run.save(update_fields=["log"])
    broadcast(run.project_id, run=run.pk, status=run.status, cancel_requested=True)
    if run.status == Status.RUNNING:
        dispatch.stop("loop.train_model", run.pk)  # embedded mode: its child process is killed, ending the run now
    return run


def lost_in_child(run_id: int, reason: str) -> bool:
    """Embedded mode: the run's child process ended before the run did (``engine.jobs``). A run whose
    cancel was asked ends cancelled; otherwise it fails with ``reason``. False when it had ended."""
    run = TrainingRun.objects.filter(pk=run_id).first()
    if run is None or not run.is_active:
        return False
    if run.cancel_requested and run.status == Status.RUNNING:
        return _end_cancelled(run, "while running (its process was stopped)")
    return _fail(run_id, f"the run was lost: {reason}")


def recover_after_restart() -> list[int]:
    """Embedded mode, when the server starts: fail at once the runs its previous process left behind."""
    active = TrainingRun.objects.filter(status__in=TrainingRun.ACTIVE)
    return [run.pk for run, reason in liveness.orphans_at_start(active)
            if _fail(run.pk, f"the run was lost: {reason}", expect=run.status)]


def recover_orphaned_runs(*, worker: str | None = None, stale_after: float | None = None) -> list[int]:
    """Fail running runs whose worker is gone: the node ``worker`` restarting, or no heartbeat for ``stale_after`` s.

    Returns the ids of the runs it failed. Their checkpoints (if one was written) are deleted:
    no version points to them, since registration is the run's last, atomic step.
    """
    stale_after = settings.LOOP_RUN_STALE_S if stale_after is None else stale_after
    lost = liveness.lost_runs(TrainingRun.objects.filter(status=Status.RUNNING), worker=worker,
                              stale_after=stale_after)
    return [run.pk for run, reason in lost if _fail(run.pk, f"the run was lost: {reason}", expect=Status.RUNNING)]


# -- the task body -------------------------------------------------------------------------------


def _line(text: str) -> str:
    return f"{timezone.now():%Y-%m-%d %H:%M:%S} {text}\n"


def _append_log(run: TrainingRun, text: str, **fields: Any) -> None:
    """Store a log line on the run and send it to open dashboards, which show the log as it grows."""
    line = _line(text)
    TrainingRun.objects.filter(pk=run.pk).update(log=Concat(F("log"), Value(line)), **fields)
    broadcast(run.project_id, run=run.pk, log=line)


def _fail(run_id: int, error: str, *, expect: str | None = None, detail: str = "") -> bool:
    """Mark a run failed (only if it is still ``expect``/active), log why, drop its checkpoint file."""
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or not run.is_active or (expect is not None and run.status != expect):
            return False
        run.status, run.error, run.finished_at = Status.FAILED, error[:2000], timezone.now()
        run.log += _line(f"FAILED: {error}") + detail
        run.save(update_fields=["status", "error", "finished_at", "log"])
    registry.remove_checkpoint_copy(checkpoint_path(run))
    broadcast(run.project_id, run=run.pk, status=run.status, error=run.error)
    return True


def checkpoint_path(run: TrainingRun) -> Path:
    return registry.models_dir() / f"project-{run.project_id}" / f"run-{run.pk}.pt"


def _claim(run_id: int) -> TrainingRun | None:
    """queued -> running for this worker, atomically; a redelivered message finds it running and fails it."""
    outcome, run = liveness.claim(TrainingRun, run_id, stale_after=settings.LOOP_RUN_STALE_S, cancel_requested=False)
    if outcome is liveness.Claim.CLAIMED:
        _append_log(run, f"started on {run.worker}")
        broadcast(run.project_id, run=run_id, status=Status.RUNNING, progress=0.0)
        return run
    if outcome is liveness.Claim.DUPLICATE:
        # The broker delivered the message again (visibility timeout) while its worker still runs it.
        logger.warning("run %s: duplicate delivery ignored, %s is still running it", run_id, run.worker)
    elif outcome is liveness.Claim.LOST:
        _fail(run_id, f"the worker running it ({run.worker}) was lost; the task was delivered again",
              expect=Status.RUNNING)
    return None


#: ``on_progress(stage, progress)``: told after each stored progress step, stage "train",
#: "evaluate" or "register" (just before the registering transaction); for observers (tests, demos).
ProgressHook = Callable[[str, float], None]


def execute_run(run_id: int, on_progress: ProgressHook | None = None) -> str:
    """Run a queued training run to its end; returns the final status. Never raises for the run's own failures."""
    run = _claim(run_id)
    if run is None:
        return TrainingRun.objects.filter(pk=run_id).values_list("status", flat=True).first() or "missing"
    with JobHeartbeat(TrainingRun.objects.filter(pk=run_id, status=Status.RUNNING), settings.LOOP_HEARTBEAT_S,
                            f"training-run-{run_id}"):
        try:
            return _execute(run, on_progress or (lambda stage, progress: None))
        except RunCancelled as where:
            _end_cancelled(run, str(where))
            return TrainingRun.objects.filter(pk=run_id).values_list("status", flat=True).first() or "missing"
        except Exception as error:
            logger.exception("training run %s failed", run_id)
            _fail(run_id, f"{type(error).__name__}: {error}", detail=traceback.format_exc())
            return Status.FAILED


def _stop_if_cancelled(run_id: int, where: str) -> None:
    if liveness.cancel_requested(TrainingRun, run_id):
        raise RunCancelled(where)


def _end_cancelled(run: TrainingRun, where: str) -> bool:
    """running -> cancelled under the row lock; its checkpoint (no version points to it) is deleted."""
    with transaction.atomic():
        locked = TrainingRun.objects.select_for_update().filter(pk=run.pk, status=Status.RUNNING).first()
        if locked is None:
            return False
        locked.status, locked.finished_at = Status.CANCELLED, timezone.now()
        locked.log += _line(f"cancelled {where}; nothing registered")
        locked.save(update_fields=["status", "finished_at", "log"])
    registry.remove_checkpoint_copy(checkpoint_path(run))
    broadcast(run.project_id, run=run.pk, status=Status.CANCELLED)
    return True


def _execute(run: TrainingRun, on_progress: ProgressHook) -> str:
    from segmentation.training.loop import FineTuneConfig  # torch: in the job's child process only

    params = run.parameters
    clips = load_clips(run.data_snapshot, max_side=max(int(params["image_size"]), 256))
    if not clips:
        raise RunRefused("the snapshot holds no readable masks")
    _append_log(run, f"{len(clips)} clips loaded ({sum(c.num_frames for c in clips)} frames)")
    config = FineTuneConfig(model_config=params["model_config"], image_size=int(params["image_size"]),
                            steps=int(params["steps"]), lr=float(params["lr"]),
                            vision_lr=float(params.get("vision_lr", params["lr"] * 0.6)),
                            clip_length=int(params["clip_length"]),
                            max_objects=int(params.get("max_objects", MAX_OBJECTS)),
                            seed=int(params.get("seed", run.pk)), device=settings.DEVICE or None)
    init = (storage.checkpoint_file(run.base_version.checkpoint)
            if run.base_version and run.base_version.checkpoint else None)
    out = checkpoint_path(run)
    cancel = threading.Event()
    losses: list[list[float]] = []
    flushed = {"at": 0.0}

    def on_step(step: int, loss: float, metrics: dict[str, float]) -> None:
        losses.append([step, round(loss, 5)])
        now = time.monotonic()
        last = step == config.steps
        if now - flushed["at"] < settings.LOOP_PROGRESS_EVERY_S and not last:
            return
        flushed["at"] = now
        progress = TRAIN_SHARE * step / config.steps
        TrainingRun.objects.filter(pk=run.pk).update(progress=progress, loss_curve=list(losses),
                                                     heartbeat_at=timezone.now())
        if step == 1 or last or step % max(1, config.steps // 10) == 0:
            _append_log(run, f"step {step}/{config.steps} loss {loss:.4f} "
                                f"train IoU {metrics.get('train_iou', float('nan')):.3f} "
                                f"({metrics.get('seconds', 0):.1f} s/step)")
        broadcast(run.project_id, run=run.pk, status=Status.RUNNING, progress=progress, step=step, steps=config.steps,
                  loss=loss)
        on_progress("train", progress)
        if liveness.cancel_requested(TrainingRun, run.pk):
            cancel.set()

    _append_log(run, f"fine-tuning {config.model_config} @{config.image_size} for {config.steps} steps from "
                        f"{init or 'random weights'}")
    result = fine_tune_here_or_distributed(clips, config, init, out, on_step, cancel)
    TrainingRun.objects.filter(pk=run.pk).update(loss_curve=list(losses))
    if result.cancelled:
        raise RunCancelled(f"after {result.steps_done} of {config.steps} steps")
    TrainingRun.objects.filter(pk=run.pk).update(progress=TRAIN_SHARE)
    _append_log(run, f"checkpoint written: {out} ({result.seconds:.0f} s, {result.seconds_per_step:.2f} s/step)")
    return _evaluate_and_register(run, config, out, on_progress)


def fine_tune_here_or_distributed(clips: list[Any], config: Any, init: str | None, out: Path,
                                  on_step: Callable[..., None], cancel: threading.Event) -> Any:
    """In this process on one device; with several GPUs, under torchrun with DistributedDataParallel."""
    from segmentation.training import distributed  # torch: in the job's child process only
    from segmentation.training.loop import fine_tune  # torch, as above

    gpus = distributed.gpu_count()
    if gpus > 1 and settings.LOOP_DDP:
        return distributed.launch(clips, config, init, out, nproc=gpus, on_step=on_step, cancel=cancel)
    return fine_tune(clips, config, init_checkpoint=init, out_checkpoint=out, on_step=on_step, cancel=cancel)


#: Share of the progress bar at which the candidate's evaluation ends (the base version's follows).
CANDIDATE_EVALUATED = 0.9


def _evaluate_and_register(run: TrainingRun, config: Any, checkpoint: Path, on_progress: ProgressHook) -> str:
    _stop_if_cancelled(run.pk, "after fine-tuning")
    records, val_key = evaluation.val_records(run.project)
    eval_settings = evaluation.EvalSettings.from_settings()
    candidate_summary: dict[str, Any] | None = None
    production_summary: dict[str, Any] | None = None
    base = run.base_version
    progress = TRAIN_SHARE

    def evaluated(what: str, start: float, end: float) -> Callable[[int, int], None]:
        """Progress after each measured object; the cancel flag is read there too."""
        def on_object(done: int, total: int) -> None:
            nonlocal progress
            progress = start + (end - start) * done / max(1, total)
            TrainingRun.objects.filter(pk=run.pk).update(progress=progress, heartbeat_at=timezone.now())
            broadcast(run.project_id, run=run.pk, status=Status.RUNNING, progress=progress, stage=f"evaluating {what}",
                      done=done, total=total)
            on_progress("evaluate", progress)
            _stop_if_cancelled(run.pk, f"while evaluating {what} ({done} of {total} objects measured)")
        return on_object

    if records:
        _append_log(run, f"evaluating on {len(records)} val videos")
        segmenter = build_segmenter("sam2", config=config.model_config, checkpoint=checkpoint,
                                    image_size=config.image_size, device=settings.DEVICE or None)
        candidate_summary = {**evaluation.evaluate_segmenter(segmenter, records, eval_settings,
                                                             evaluated("the candidate", TRAIN_SHARE,
                                                                       CANDIDATE_EVALUATED)),
                             "val_key": val_key}
        if base is not None:
            production_summary = reusable_evaluation(base, val_key)
            if production_summary is None:
                base_checkpoint = storage.checkpoint_file(base.checkpoint) if base.checkpoint else None
                segmenter = build_segmenter("sam2", config=base.sam2_config, checkpoint=base_checkpoint,
                                            image_size=base.image_size, device=settings.DEVICE or None)
                production_summary = {**evaluation.evaluate_segmenter(
                    segmenter, records, eval_settings, evaluated(base.name, CANDIDATE_EVALUATED, 0.98)),
                                      "val_key": val_key}
        _append_log(run, "candidate: " + describe_summary(candidate_summary))
    else:
        checkpoint_check.load_check(checkpoint, config.model_config, config.image_size)
        _append_log(run, "no approved masklets on val videos: registered without an evaluation")
    on_progress("register", progress)
    with transaction.atomic():
        locked = TrainingRun.objects.select_for_update().get(pk=run.pk)
        if locked.status != Status.RUNNING:
            raise RunRefused(f"the run became {locked.status} while it was finishing")
        if locked.cancel_requested:  # cancel_run takes this lock too: either it waits for us, or we see it
            raise RunCancelled("before registering its version")
        version = registry.register_version(
            run.project, name=f"run {run.pk}", checkpoint=checkpoint, config=config.model_config,
            image_size=config.image_size, parent=base, check=False, user=run.created_by,
            metrics={"training_run": run.pk, "steps": config.steps}, note=f"trained by run {run.pk}")
        if candidate_summary is not None:
            save_evaluation(version, candidate_summary)
            if base is not None and production_summary is not None and reusable_evaluation(base, val_key) is None:
                save_evaluation(base, production_summary)
        locked.status, locked.produced_version, locked.progress = Status.DONE, version, 1.0
        locked.finished_at = timezone.now()
        locked.log += _line(f"registered candidate {version.name} (version {version.pk})")
        locked.save(update_fields=["status", "produced_version", "progress", "finished_at", "log"])
    broadcast(run.project_id, run=run.pk, status=Status.DONE, progress=1.0, version=version.pk)
    if candidate_summary is not None:
        maybe_auto_promote(version, candidate_summary, production_summary, run)
    return Status.DONE


def reusable_evaluation(version: ModelVersion, val_key: str) -> dict[str, Any] | None:
    """A stored val evaluation of ``version`` on exactly the same ground truth, if there is one."""
    for details in Evaluation.objects.filter(model_version=version, split="val").values_list("details", flat=True):
        if details.get("val_key") == val_key:
            return details
    return None


def save_evaluation(version: ModelVersion, summary: dict[str, Any]) -> Evaluation:
    return Evaluation.objects.create(model_version=version, split="val", j=summary.get("j") or 0.0,
                                     f=summary.get("f") or 0.0, j_and_f=summary.get("jf") or 0.0,
                                     clicks_to_target=summary.get("clicks_to_target"), details=summary)


def describe_summary(summary: dict[str, Any]) -> str:
    after = ", ".join(f"{v:.3f}" for v in summary.get("jf_after") or [] if v is not None)
    clicks = summary.get("clicks_to_target")
    return (f"J&F {summary.get('jf') or 0:.3f} (after 1..N prompted frames: {after}); clicks to J&F>=0.9 "
            f"{'-' if clicks is None else f'{clicks:.2f}'}; {summary.get('num_objects')} objects")


def maybe_auto_promote(version: ModelVersion, candidate: dict[str, Any], production: dict[str, Any] | None,
                       run: TrainingRun) -> bool:
    """Promote when the project allows it and the candidate beats production by the margin."""
    knobs = loop_settings(run.project)
    better, why = evaluation.beats(candidate, production, knobs.promote_margin)
    if not knobs.auto_promote or not better:
        _append_log(run, f"left as a candidate for an admin: {why if knobs.auto_promote else 'auto-promote off'}")
        return False
    try:
        registry.promote(version, automatic=True, note=why)
    except registry.RegistryError as error:
        _append_log(run, f"not promoted: {error}")
        return False
    _append_log(run, f"promoted to production automatically: {why}")
    broadcast(run.project_id, run=run.pk, promoted=version.pk)
    return True


# -- the periodic job ----------------------------------------------------------------------------


def due_projects(now: Any = None) -> list[tuple[Any, str]]:
    """Projects the periodic job should train now, with why: enough new masklets and enough time passed."""
    now = now or timezone.now()
    due = []
    for project in Project.objects.all():
        knobs = loop_settings(project)
        if not knobs.enabled:
            continue
        if TrainingRun.objects.filter(project=project, status__in=TrainingRun.ACTIVE).exists():
            continue
        last = TrainingRun.objects.filter(project=project).order_by("-created_at").first()
        if last is not None and now - last.created_at < timedelta(hours=knobs.min_hours):
            continue
        new = new_approved_masklets(project)
        if new >= max(1, knobs.min_new_masklets):
            due.append((project, f"{new} newly approved masklets"))
    return due


def scheduled_projects() -> list[Project]:
    """The projects whose retraining schedule is on (``LoopSettings.enabled``)."""
    return [project for project in Project.objects.all() if loop_settings(project).enabled]


def periodic_tick() -> dict[str, Any]:
    """Recover lost runs, then start the runs that are due (Celery beat's ``loop.tick``, with the verifier's)."""
    recovered = recover_orphaned_runs()
    started = []
    for project, why in due_projects():
        try:
            run = start_run(project, trigger="schedule")
        except RunRefused as error:
            logger.info("scheduled run of %s not started: %s", project.slug, error)
            continue
        _append_log(run, f"started by the schedule: {why}")
        started.append(run.pk)
    return {"recovered": recovered, "started": started}
