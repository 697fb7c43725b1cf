"""Build Meta's ``SAM2Train`` through ``segmentation.sam2_model`` and save what it learned.

The training model is the same architecture as the inference predictor (both subclass
``SAM2Base``, neither adds weights), so its ``state_dict`` saved under the ``model`` key is a
checkpoint ``sam2_model.build_model(..., checkpoint=path)`` loads strictly, unchanged.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from segmentation import sam2_model

SAM2_TRAIN_TARGET = "training.model.sam2.SAM2Train"


def training_overrides(
    prob_mask: float,
    prob_box: float,
    prob_click: float,
    max_cond_frames: int,
    max_frames_to_correct: int,
    correction_clicks: int,
    prob_correction_from_gt: float,
) -> list[str]:
    """Hydra overrides that turn a SAM 2 config into ``SAM2Train`` with Meta's prompt simulation.

    Meta parametrises the first prompt as P(points) and P(box | points); we take the three
    probabilities people reason about (mask / box / click, summing to 1) and convert. The
    other values mirror the ``model`` block of Meta's fine-tuning config: 1..N initial
    conditioning frames, correction clicks on 1..M frames that then become conditioning
    frames, a share of correction clicks sampled from the ground truth instead of the error.
    """
    total = prob_mask + prob_box + prob_click
    if min(prob_mask, prob_box, prob_click) < 0 or abs(total - 1.0) > 1e-6:
        raise ValueError(f"prompt probabilities must be >= 0 and sum to 1, got {prob_mask}, {prob_box}, {prob_click}")
    if max_cond_frames < 1 or max_frames_to_correct < max_cond_frames:
        raise ValueError("need 1 <= max_cond_frames <= max_frames_to_correct")
    prob_points = prob_box + prob_click
    prob_box_given_points = prob_box / prob_points if prob_points > 0 else 0.0
    return [
        f"++model._target_={SAM2_TRAIN_TARGET}",
        f"++model.prob_to_use_pt_input_for_train={prob_points}",
        f"++model.prob_to_use_box_input_for_train={prob_box_given_points}",
        f"++model.prob_to_sample_from_gt_for_train={prob_correction_from_gt}",
        f"++model.num_init_cond_frames_for_train={max_cond_frames}",
        "++model.rand_init_cond_frames_for_train=true",
        f"++model.num_frames_to_correct_for_train={max_frames_to_correct}",
        "++model.rand_frames_to_correct_for_train=true",
        "++model.add_all_frames_to_correct_as_cond=true",
        f"++model.num_correction_pt_per_frame={correction_clicks}",
        "++model.use_act_ckpt_iterative_pt_sampling=false",
        "++model.prob_to_use_pt_input_for_eval=0.0",
        "++model.num_init_cond_frames_for_eval=1",
        "++model.forward_backbone_per_frame_for_eval=true",
    ]


def build_train_model(
    config_name: str,
    image_size: int,
    device: torch.device,
    overrides: list[str],
    init_checkpoint: str | Path | None = None,
) -> torch.nn.Module:
    """``SAM2Train`` in train mode, from ``init_checkpoint`` (strict) or the current torch RNG's random init."""
    model = sam2_model.build_model(
        config_name,
        checkpoint=init_checkpoint,
        image_size=image_size,
        device=device,
        mode="train",
        extra_overrides=overrides,
        video=False,
    )
    model.train()
    return model


def save_checkpoint(model: torch.nn.Module, path: str | Path, meta: Mapping[str, Any] | None = None) -> Path:
    """Write ``{"model": state_dict, "masklet": meta}`` atomically and return the path.

    The weights go to a temporary file in the destination folder, are fsynced, and only then
    renamed over ``path``: a run killed mid-write leaves the previous file (or none), never a
    truncated checkpoint a worker would later fail to load. Tensors are moved to CPU so the
    file loads on any device.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
    blob: dict[str, Any] = {"model": state}
    if meta:
        blob["masklet"] = dict(meta)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(blob, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path
