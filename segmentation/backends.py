"""Build a segmenter by backend name: the one factory workers, the CLI and benchmarks use."""

from __future__ import annotations

from typing import Any

from segmentation.segmenter import Segmenter

BACKENDS = ("classical", "sam2")


def build_segmenter(backend: str, **options: Any) -> Segmenter:
    """``classical`` takes no options; ``sam2`` takes ``Sam2Segmenter``'s keyword arguments.

    Imports are local so that the classical backend never loads torch.
    """
    if backend == "classical":
        from segmentation.classical import ClassicalSegmenter

        return ClassicalSegmenter(**options)
    if backend == "sam2":
        from segmentation.sam2_backend import Sam2Segmenter

        return Sam2Segmenter(**options)
    raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
