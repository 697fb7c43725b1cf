"""Build a segmenter by backend name: the one factory workers, the CLI and benchmarks use."""

from __future__ import annotations

from typing import Any

from segmentation.classical import ClassicalSegmenter
from segmentation.segmenter import Segmenter

BACKENDS = ("classical", "sam2")


def build_segmenter(backend: str, **options: Any) -> Segmenter:
    """``classical`` takes no options; ``sam2`` takes ``Sam2Segmenter``'s keyword arguments.

    """
    if backend == "classical":
        return ClassicalSegmenter(**options)
    if backend == "sam2":
        from segmentation.sam2_backend import Sam2Segmenter  # torch: loaded only when SAM 2 is asked for

        return Sam2Segmenter(**options)
    raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
