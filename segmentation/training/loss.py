"""Meta's training loss, built with the weights of Meta's SAM 2.1 fine-tuning config.

``MultiStepMultiMasksAndIous`` (``training/loss_fns.py``) sums, over every correction step of
every frame: focal (x20) + dice (x1) on the best of the multi-mask outputs, L1 between the
predicted and the actual IoU of *all* outputs (``supervise_all_iou``), and the object-score
loss (x1); mask terms are skipped where the ground truth is empty. The weights below are the
``loss`` block of ``sam2.1_training/sam2.1_hiera_b+_MOSE_finetune.yaml``.
"""

from __future__ import annotations

import torch
from training.loss_fns import MultiStepMultiMasksAndIous
from training.trainer import CORE_LOSS_KEY  # the key of the weighted total in the loss's output

__all__ = ["CORE_LOSS_KEY", "LOSS_WEIGHTS", "build_loss"]

LOSS_WEIGHTS = {"loss_mask": 20.0, "loss_dice": 1.0, "loss_iou": 1.0, "loss_class": 1.0}


def build_loss() -> torch.nn.Module:
    """Meta's multi-step loss with its fine-tuning weights and options.

    Called as ``loss(outputs, batch.masks)`` with ``outputs`` = ``SAM2Train(batch)`` (one dict
    per frame) and ``batch.masks`` [T, O, S, S]; returns a dict with ``loss_mask``,
    ``loss_dice``, ``loss_iou``, ``loss_class`` (unweighted, summed over frames and steps)
    and ``core_loss`` (the weighted total to back-propagate).
    """
    return MultiStepMultiMasksAndIous(
        weight_dict=dict(LOSS_WEIGHTS),
        supervise_all_iou=True,
        iou_use_l1_loss=True,
        pred_obj_scores=True,
        focal_gamma_obj_score=0.0,
        focal_alpha_obj_score=-1.0,
    )
