"""Which model serves a project's annotation sessions, and the warm segmenters of this process.

``serving_model(project)`` answers from the database and settings only (no weights are read):
the project's production ``ModelVersion``, else a shared production version (no project), else
the ``SEGMENTER`` / ``SAM2_*`` settings. The web process uses it for the name the page shows;
workers pass it to ``get_segmenter``, which builds each model once and keeps a few warm.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from engine import storage
from engine.models import ModelVersion
from segmentation.backends import build_segmenter
from segmentation.classical import ClassicalSegmenter
from segmentation.sam2_configs import describe, resolve_config
from segmentation.segmenter import Segmenter

#: Models kept loaded per process; a GPU worker normally serves one or two.
WARM_SEGMENTERS = 2


@dataclass(frozen=True)
class ServingModel:
    """A model as workers build it; equal values mean the same weights."""

    backend: str  # "classical" or "sam2"
    config: str = ""
    checkpoint: str = ""
    image_size: int = 0
    model_version_id: int | None = None
    version_name: str = ""

    @property
    def fallback(self) -> bool:
        """The classical backend: what serves without SAM 2, labelled a low-quality fallback in the UI."""
        return self.backend == "classical"

    @property
    def name(self) -> str:
        """What the page shows, computed without loading the model."""
        if self.backend == "classical":
            return ClassicalSegmenter.name
        described = _describe_sam2(self.config, self.image_size, self.checkpoint)
        return f"{self.version_name} — {described}" if self.version_name else described

    def model_version(self) -> ModelVersion | None:
        """The registered version (for ``MaskFrame.model_version``), None for settings models."""
        if self.model_version_id is None:
            return None
        return ModelVersion.objects.filter(pk=self.model_version_id).first()


@functools.lru_cache(maxsize=32)
def _describe_sam2(config: str, image_size: int, checkpoint: str) -> str:
    return describe(resolve_config(config), image_size, Path(checkpoint) if checkpoint else None)


def serving_model(project) -> ServingModel:
    """The production version of ``project``, else the shared one, else the settings' model."""
    versions = ModelVersion.objects.filter(status=ModelVersion.Status.PRODUCTION)
    version = versions.filter(project=project).first() or versions.filter(project__isnull=True).first()
    return version_model(version) if version is not None else settings_model()


def version_model(version: ModelVersion) -> ServingModel:
    """A registered version as workers build it (whatever its status: an open page may keep a retired one)."""
    return ServingModel(backend="sam2", config=version.sam2_config, checkpoint=version.checkpoint,
                        image_size=version.image_size, model_version_id=version.pk, version_name=version.name)


def settings_model() -> ServingModel:
    """The ``SEGMENTER`` / ``SAM2_*`` settings' model: what serves when no version is in production."""
    if settings.SEGMENTER == "classical":
        return ServingModel(backend="classical")
    return ServingModel(backend="sam2", config=settings.SAM2_CONFIG, checkpoint=settings.SAM2_CHECKPOINT,
                        image_size=settings.SAM2_IMAGE_SIZE)


_warm: OrderedDict[ServingModel, Segmenter] = OrderedDict()
_warm_lock = threading.Lock()


def get_segmenter(serving: ServingModel) -> Segmenter:
    """The segmenter for ``serving``, built on first use and kept warm (least recently used out)."""
    with _warm_lock:
        segmenter = _warm.get(serving)
        if segmenter is not None:
            _warm.move_to_end(serving)
            return segmenter
        if serving.backend == "classical":
            segmenter = build_segmenter("classical")
        else:
            checkpoint = str(storage.checkpoint_file(serving.checkpoint)) if serving.checkpoint else None
            segmenter = build_segmenter("sam2", config=serving.config, checkpoint=checkpoint,
                                        image_size=serving.image_size or None, device=settings.DEVICE or None)
        _warm[serving] = segmenter
        while len(_warm) > WARM_SEGMENTERS:
            _warm.popitem(last=False)
        return segmenter


def forget_segmenters() -> None:
    """Drop every warm model (tests; a worker told its models changed)."""
    with _warm_lock:
        _warm.clear()
