"""How well the inference predictor segments a clip: the number fine-tuning should raise.

``clip_iou`` runs Meta's ``SAM2VideoPredictor`` exactly as the SAM 2 backend builds it
(``sam2_model.build_model(mode="eval")``, JPEG frames read by ``init_state``), prompts every
object on the clip's first frame where it is visible, propagates forward and compares the
masks with the ground truth at the clip's resolution.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

from segmentation import sam2_model
from segmentation.clicker import first_click
from segmentation.metrics import jaccard
from segmentation.training.clips import Clip

PROMPTS = ("mask", "click")


@torch.inference_mode()
def clip_iou(
    model_or_checkpoint: torch.nn.Module | str | Path | None,
    clip: Clip,
    config_name: str = "sam2.1_hiera_t",
    image_size: int | None = None,
    prompt: str = "mask",
    device: str | torch.device | None = None,
) -> float:
    """Mean IoU of the predictor's masks with the clip's ground truth (objects x frames).

    ``model_or_checkpoint``: a ``SAM2VideoPredictor`` already built, or a checkpoint path
    (``None``: the random init of the current torch RNG) built with ``config_name`` and
    ``image_size`` through ``sam2_model.build_model`` -- so a checkpoint that does not fit the
    config fails here exactly as it would in the backend.

    ``prompt="mask"``: each object gets its ground-truth mask on its first visible frame and
    is scored on the *later* frames only (the prompted frame would be a free 1.0): this
    measures propagation, i.e. memory plus appearance. ``prompt="click"``: one centre click
    instead, scored on every frame from the prompted one on (the prompted frame included,
    since turning one click into the mask is itself learned). Frames where an object is
    absent count 1.0 if the prediction is empty too.
    """
    if prompt not in PROMPTS:
        raise ValueError(f"prompt must be one of {PROMPTS}, got {prompt!r}")
    if isinstance(model_or_checkpoint, torch.nn.Module):
        predictor = model_or_checkpoint
    else:
        predictor = sam2_model.build_model(
            config_name, checkpoint=model_or_checkpoint, image_size=image_size, device=device, mode="eval"
        )
    first_seen = {oid: next((t for t, m in enumerate(masks) if m.any()), None) for oid, masks in clip.masks.items()}
    prompted = {oid: t for oid, t in first_seen.items() if t is not None}
    if not prompted:
        raise ValueError("no object is visible on any frame of the clip")
    start = min(prompted.values())

    with tempfile.TemporaryDirectory(prefix="masklet-clip-") as folder:
        for index, frame in enumerate(clip.frames):
            path = str(Path(folder) / f"{index:05d}.jpg")
            cv2.imwrite(path, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100])
        state = predictor.init_state(video_path=folder)
    for oid, t in prompted.items():
        gt = clip.masks[oid][t]
        if prompt == "mask":
            predictor.add_new_mask(state, frame_idx=t, obj_id=oid, mask=gt)
        else:
            click = first_click(gt)  # the simulated annotator's first click: centre of the object
            predictor.add_new_points_or_box(
                state, frame_idx=t, obj_id=oid, points=np.array([[click.x, click.y]], np.float32), labels=np.array([1])
            )

    scores: list[float] = []
    for frame_index, obj_ids, logits in predictor.propagate_in_video(state, start_frame_idx=start):
        for oid, frame_logits in zip(obj_ids, logits, strict=True):
            t0 = prompted[oid]
            if frame_index < t0 or (prompt == "mask" and frame_index == t0):
                continue
            pred = (frame_logits[0] > 0).cpu().numpy()
            scores.append(jaccard(clip.masks[oid][frame_index], pred))
    if not scores:
        raise ValueError("nothing to score: with a mask prompt the clip needs frames after the prompted one")
    return float(np.mean(scores))
