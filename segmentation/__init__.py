"""Masklet's model layer: segmenters, masks, metrics, the simulated annotator, fine-tuning.

Pure Python + numpy/OpenCV/torch. Nothing here imports Django, so benchmarks and the
evaluation CLI can measure the raw model cost on their own.
"""
