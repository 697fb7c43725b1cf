"""The learned quality verifier at serving time: an active ``VerifierVersion`` rescores new model frames.

Training it from people's reviews is the model loop's (``loop.verifier``); what every process that
stores model frames needs is only this: the stored weights, applied without scikit-learn.
"""

from __future__ import annotations

import math
from typing import Any

from engine.models import VerifierVersion
from segmentation.segmenter import FrameQuality

#: Feature keys that say where a score came from, not what the backend saw.
NOT_SIGNALS = frozenset({"backend_score", "verifier_version"})


def vector(names: list[str], features: dict[str, float], backend_score: float) -> list[float]:
    """The model's input row: each named signal (a missing one counts 0), the backend's score by name."""
    return [backend_score if name == "backend_score" else float(features.get(name, 0.0)) for name in names]


def predict(model: dict[str, Any], features: dict[str, float], backend_score: float) -> float:
    """The probability that a mask is right, from a stored model (no scikit-learn needed)."""
    logit = model["intercept"]
    for value, mean, scale, weight in zip(vector(model["features"], features, backend_score), model["mean"],
                                          model["scale"], model["coef"], strict=True):
        logit += weight * (value - mean) / (scale or 1.0)
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, logit))))


def rescore(project_id: int, quality: dict[Any, FrameQuality]) -> dict[Any, FrameQuality]:
    """The project's active verifier's scores for new model frames (as they are when none is active)."""
    if not quality:
        return quality
    version = VerifierVersion.objects.filter(project_id=project_id, active=True).only("number", "model").first()
    if version is None:
        return quality
    return {key: FrameQuality(round(predict(version.model, rating.features, rating.score), 4),
                              {**rating.features, "backend_score": rating.score, "verifier_version": version.number})
            for key, rating in quality.items()}
