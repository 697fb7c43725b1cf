"""Meta's training loss, built with the weights of Meta's SAM 2.1 fine-tuning config.

``MultiStepMultiMasksAndIous`` (``training/loss_fns.py``) sums, over every correction step of
every frame: focal (x20) + dice (x1) on the best of the multi-mask outputs, L1 between the
predicted and the actual IoU of *all* outputs (``supervise_all_iou``), and the object-score
loss (x1); mask terms are skipped where the ground truth is empty. The weights below are the
``loss`` block of ``sam2.1_training/sam2.1_hiera_b+_MOSE_finetune.yaml``.
"""

from __future__ import annotations

import sys
import types

import torch

#: The key under which Meta's loss returns the weighted total (``training.trainer.CORE_LOSS_KEY``).
CORE_LOSS_KEY = "core_loss"

LOSS_WEIGHTS = {"loss_mask": 20.0, "loss_dice": 1.0, "loss_iou": 1.0, "loss_class": 1.0}


def _meta_loss_class() -> type[torch.nn.Module]:
    """Import ``MultiStepMultiMasksAndIous`` without needing tensorboard.

    ``training.loss_fns`` imports one constant (``CORE_LOSS_KEY``) from ``training.trainer``,
    which in turn imports Meta's TensorBoard logger; tensorboard is not a dependency of
    Masklet (we log through our own callback). When only that import fails, a stand-in
    ``training.trainer`` holding just the constant is registered for the duration of the
    import and removed again, so a later real import of the trainer behaves as before.
    """
    try:
        from training.loss_fns import MultiStepMultiMasksAndIous
    except ModuleNotFoundError as exc:
        if exc.name != "tensorboard":
            raise
        stand_in = types.ModuleType("training.trainer")
        stand_in.CORE_LOSS_KEY = CORE_LOSS_KEY  # type: ignore[attr-defined]
        sys.modules["training.trainer"] = stand_in
        try:
            from training.loss_fns import MultiStepMultiMasksAndIous
        finally:
            if sys.modules.get("training.trainer") is stand_in:
                del sys.modules["training.trainer"]
    return MultiStepMultiMasksAndIous


def build_loss() -> torch.nn.Module:
    """Meta's multi-step loss with its fine-tuning weights and options.

    Called as ``loss(outputs, batch.masks)`` with ``outputs`` = ``SAM2Train(batch)`` (one dict
    per frame) and ``batch.masks`` [T, O, S, S]; returns a dict with ``loss_mask``,
    ``loss_dice``, ``loss_iou``, ``loss_class`` (unweighted, summed over frames and steps)
    and ``core_loss`` (the weighted total to back-propagate).
    """
    loss_class = _meta_loss_class()
    return loss_class(
        weight_dict=dict(LOSS_WEIGHTS),
        supervise_all_iou=True,
        iou_use_l1_loss=True,
        pred_obj_scores=True,
        focal_gamma_obj_score=0.0,
        focal_alpha_obj_score=-1.0,
    )
