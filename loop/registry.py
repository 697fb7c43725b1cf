"""The model registry: register SAM 2 checkpoints, promote and roll back, every change audited.

A version is registered only after its checkpoint has really been loaded into the model its
config builds (``segmentation.sam2_model.build_model``, strict): a file that is missing, not a
checkpoint, or made for another model size is refused with the reason, so workers never meet a
version that cannot serve. Promotion swaps production in one transaction (the database allows
one production version per project); workers read ``engine.segmenters.serving_model`` when a
session starts, so new sessions get the new version without a restart while open sessions keep
theirs. Every change writes a ``ModelVersionEvent``; rolling back returns to the version that
served before the current one, per that trail.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils.text import slugify

from annotator.models import Project
from engine import jobs, storage
from engine.models import ModelVersion, ModelVersionEvent
from engine.safe_paths import safe_join
from loop.checkpoint_check import RegistryError, models_dir, shown
from segmentation.sam2_configs import resolve_config

logger = logging.getLogger(__name__)

Status = ModelVersion.Status
Action = ModelVersionEvent.Action


def allowed_checkpoint(path: str) -> Path:
    """The checkpoint file ``path`` names inside ``models_dir()`` (relative to it, or absolute), else RegistryError.

    A path that leads anywhere else (``..``, another absolute path, a link out of the folder, a
    NUL) is refused with the same words whether or not something is there, and nothing outside
    the folder is opened: registering must not let a project admin probe the server's files.
    """
    root = models_dir().resolve()
    refusal = RegistryError("a checkpoint path must name a .pt file inside the models folder "
                            "(MASKLET_DATA_DIR/models/, e.g. uploads/my-model.pt); or upload the file")
    if not path or "\x00" in path:
        raise refusal
    candidate = (root / path).resolve()
    if not candidate.is_relative_to(root) or candidate == root:
        raise refusal
    try:
        found = candidate.is_file()
    except OSError:  # a name too long for the file system, a permission problem inside the folder
        found = False
    if not found:
        raise RegistryError(f"no checkpoint file {candidate.relative_to(root).as_posix()[:200]} in the models folder")
    return candidate


def check_loadable(checkpoint: str | Path, config: str, image_size: int) -> None:
    """``load_check`` in a child process under the job memory budget (``engine.jobs``), so the web
    process that asks never holds a model; raises ``RegistryError`` with the reason.

    The child loads no Django app (``apps=False``: ``loop.checkpoint_check`` needs only settings)."""
    try:
        jobs.check_budget(f"loading {config} at {image_size} px", jobs.estimate_inference_mb(config, image_size),
                          "register it at a smaller image size, or raise the budget")
        jobs.call_in_child("loop.checkpoint_check.load_check", str(checkpoint), config, image_size, apps=False)
    except (jobs.OverBudget, jobs.ChildFailed) as error:
        raise RegistryError(f"the checkpoint was not loaded: {error}") from None


def save_upload(upload: UploadedFile) -> Path:
    """Store an uploaded checkpoint under ``models_dir()/uploads`` (written whole, then renamed)."""
    folder = models_dir() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    stem = slugify(Path(upload.name or "checkpoint").stem) or "checkpoint"
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=".tmp", dir=folder)
    with os.fdopen(fd, "wb") as handle:
        for chunk in upload.chunks():
            handle.write(chunk)
    target = safe_join(folder, f"{stem}.pt")
    counter = 1
    while target.exists():
        counter += 1
        target = safe_join(folder, f"{stem}-{counter}.pt")
    os.replace(tmp, target)
    return target


def register_version(project: Project, *, name: str, checkpoint: str | Path, config: str, image_size: int,
                     user: Any = None, parent: ModelVersion | None = None, metrics: dict | None = None,
                     check: bool = True, note: str = "", sha256: str = "") -> ModelVersion:
    """Register a candidate version of ``project`` (``None``: shared by every project) after loading it.

    ``check=False`` is for checkpoints this engine has just written and loaded itself (a
    training run evaluates its checkpoint before registering it).
    """
    name = (name or "").strip() or Path(str(checkpoint)).stem
    path = Path(checkpoint).expanduser()
    if check:
        check_loadable(path, config, image_size)
    with transaction.atomic():
        version = ModelVersion.objects.create(
            project=project, name=name[:200], parent=parent, checkpoint=storage.publish_checkpoint(path),
            sam2_config=resolve_config(config), image_size=image_size, sha256=sha256,
            status=Status.CANDIDATE,
            metrics=metrics or {}, created_by=user)
        ModelVersionEvent.objects.create(project=project, version=version, action=Action.REGISTERED, actor=user,
                                         note=note or f"registered from {shown(path)}")
    return version


def production_of(project: Project) -> ModelVersion | None:
    """The project's own production version (not the shared fallback)."""
    return ModelVersion.objects.filter(project=project, status=Status.PRODUCTION).first()


def promote(version: ModelVersion, user: Any = None, *, automatic: bool = False, note: str = "") -> ModelVersion:
    """Make ``version`` the production version of its project; the previous one is retired."""
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if version.status == Status.PRODUCTION:
            raise RegistryError(f"{version.name} is already in production")
        previous = (ModelVersion.objects.select_for_update()
                    .filter(project=version.project_id, status=Status.PRODUCTION).first())
        if previous is not None:
            previous.status = Status.RETIRED
            previous.save(update_fields=["status"])
        version.status = Status.PRODUCTION
        version.save(update_fields=["status"])
        ModelVersionEvent.objects.create(project=version.project, version=version, previous_production=previous,
                                         action=Action.AUTO_PROMOTED if automatic else Action.PROMOTED, actor=user,
                                         note=note)
    logger.info("model version %s (%s) is now in production", version.pk, version.name)
    return version


def retire(version: ModelVersion, user: Any = None, note: str = "") -> ModelVersion:
    """Take a candidate (or production, leaving the project on the fallback model) out of use."""
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if version.status == Status.RETIRED:
            raise RegistryError(f"{version.name} is already retired")
        version.status = Status.RETIRED
        version.save(update_fields=["status"])
        ModelVersionEvent.objects.create(project=version.project, version=version, action=Action.RETIRED,
                                         actor=user, note=note)
    return version


def roll_back(project: Project, user: Any = None) -> ModelVersion | None:
    """Retire the production version and restore the one that served before it (None: the fallback).

    "Before it" is read from the audit trail: the ``previous_production`` of the latest event
    that promoted the current version (a version restored by a roll-back keeps the predecessor
    of its own promotion, so rolling back again goes further back). Returns the version now in
    production.
    """
    with transaction.atomic():
        current = (ModelVersion.objects.select_for_update()
                   .filter(project=project, status=Status.PRODUCTION).first())
        if current is None:
            raise RegistryError("no version of this project is in production: nothing to roll back")
        previous = _predecessor(current)
        current.status = Status.RETIRED
        current.save(update_fields=["status"])
        if previous is None:
            ModelVersionEvent.objects.create(project=project, version=current, action=Action.ROLLED_BACK,
                                             actor=user, previous_production=current,
                                             note="rolled back to the fallback model")
            return None
        previous = ModelVersion.objects.select_for_update().get(pk=previous.pk)
        previous.status = Status.PRODUCTION
        previous.save(update_fields=["status"])
        ModelVersionEvent.objects.create(project=project, version=previous, action=Action.ROLLED_BACK, actor=user,
                                         previous_production=current, note=f"restored in place of {current.name}")
    return previous


def _predecessor(version: ModelVersion) -> ModelVersion | None:
    promoted = (ModelVersionEvent.objects.filter(version=version, action__in=[Action.PROMOTED, Action.AUTO_PROMOTED])
                .order_by("-created_at", "-id").select_related("previous_production").first())
    previous = promoted.previous_production if promoted is not None else None
    return None if previous is None or previous.pk == version.pk else previous


def remove_checkpoint_copy(path: str | Path) -> None:
    """Delete a checkpoint this engine wrote that no version points to (a failed run's leftovers)."""
    path = Path(path)
    if path.is_file() and models_dir() in path.resolve().parents:
        if not ModelVersion.objects.filter(checkpoint=str(path.resolve())).exists():
            path.unlink(missing_ok=True)
    elif path.is_dir() and models_dir() in path.resolve().parents:
        shutil.rmtree(path, ignore_errors=True)
