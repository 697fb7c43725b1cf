"""Fine-tune SAM 2 on the data engine's clips the way Meta's trainer does, in one process.

One step = sample a clip and a window of it, simulate prompts (``SAM2Train``), track through
the window, Meta's multi-step loss, AdamW with gradient clipping. What Meta's trainer adds on
top (distributed data parallel, TensorBoard, dataset mixing, checkpoint resume) the data
engine does not need: it fine-tunes a few hundred clips on one device between annotation
rounds, reports progress through a callback and must be cancellable.

Several GPUs: run ``fine_tune`` in every process of a ``torch.distributed`` group (torchrun;
``segmentation.training.distributed`` launches it). It then wraps the model in
``DistributedDataParallel``: every rank starts from the same weights, draws its own clips and
prompts, gradients are averaged at each step, rank 0 saves the checkpoint.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from segmentation import sam2_model
from segmentation.training.clips import Clip, sample_window, to_batch
from segmentation.training.loss import CORE_LOSS_KEY, build_loss
from segmentation.training.model import build_train_model, save_checkpoint, training_overrides

#: ``on_step(step, loss, metrics)``: ``step`` counts from 1, ``loss`` is the weighted total.
StepCallback = Callable[[int, float, dict[str, float]], None]


@dataclass
class FineTuneConfig:
    """Everything a fine-tuning run needs besides the data. Defaults are Meta's (MOSE fine-tune).

    ``lr`` applies to the memory modules and SAM heads, ``vision_lr`` to the image encoder;
    both decay with a cosine to a tenth over ``steps``. ``weight_decay`` spares biases and
    LayerNorms. ``grad_clip`` is the max global L2 norm. ``clip_length`` frames per training
    window, ``max_objects`` per window. The first prompt on a conditioning frame is a mask,
    a (noised) box or a click with the given probabilities; ``max_cond_frames`` initial
    conditioning frames (1..N), ``max_frames_to_correct`` frames (1..M) receive
    ``correction_clicks`` clicks sampled from the error (or, with
    ``prob_correction_from_gt``, from the ground truth). ``bf16`` autocasts on CUDA only.
    """

    model_config: str = "sam2.1_hiera_t"
    image_size: int = 1024
    steps: int = 1000
    lr: float = 5e-6
    vision_lr: float = 3e-6
    weight_decay: float = 0.1
    grad_clip: float = 0.1
    clip_length: int = 8
    max_objects: int = 3
    prob_mask_prompt: float = 0.5
    prob_box_prompt: float = 0.25
    prob_click_prompt: float = 0.25
    max_cond_frames: int = 2
    max_frames_to_correct: int = 2
    correction_clicks: int = 7
    prob_correction_from_gt: float = 0.1
    seed: int = 0
    device: str | None = None
    bf16: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.clip_length < 1 or self.max_objects < 1:
            raise ValueError("clip_length and max_objects must be >= 1")


@dataclass
class FineTuneResult:
    """What a run did. ``checkpoint`` is None when the run was cancelled (nothing is written then).

    ``history`` holds one dict per step: ``loss`` and the metrics passed to ``on_step``.
    """

    steps_done: int
    cancelled: bool
    checkpoint: Path | None
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    #: The trained ``SAM2Train`` (unwrapped from DDP), for callers that check or reuse the weights.
    model: torch.nn.Module | None = field(default=None, repr=False)

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / max(1, self.steps_done)


def fine_tune(
    clips: Sequence[Clip],
    config: FineTuneConfig,
    init_checkpoint: str | Path | None = None,
    out_checkpoint: str | Path | None = None,
    on_step: StepCallback | None = None,
    cancel: threading.Event | None = None,
) -> FineTuneResult:
    """Train ``SAM2Train`` on ``clips`` for ``config.steps`` steps and save it for inference.

    Starts from ``init_checkpoint`` (loaded strictly) or, without one, from a random init
    seeded by ``config.seed``. Each step draws a clip uniformly, then a window of it
    (``sample_window``). ``on_step`` gets every step's total loss and metrics: the four
    unweighted sub-losses, ``lr`` / ``vision_lr``, ``learned`` (0.0 when every frame of the window
    was a mask-prompted conditioning frame, so the loss had no gradient and the update was
    skipped), ``train_iou`` (IoU of the final predicted masks with the
    ground truth over the window, objects present only) and ``seconds``. Setting ``cancel``
    stops before the next step and writes nothing. A non-finite loss raises (as Meta's
    trainer does) instead of saving corrupted weights. On completion the weights are saved
    atomically to ``out_checkpoint`` (when given) as ``{"model": state_dict, "masklet": {...}}``.
    """
    if not clips:
        raise ValueError("fine_tune needs at least one clip")
    device = sam2_model.select_device(config.device)
    distributed = dist.is_available() and dist.is_initialized()
    rank = dist.get_rank() if distributed else 0
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    overrides = training_overrides(
        config.prob_mask_prompt,
        config.prob_box_prompt,
        config.prob_click_prompt,
        config.max_cond_frames,
        config.max_frames_to_correct,
        config.correction_clicks,
        config.prob_correction_from_gt,
    )
    model = build_train_model(config.model_config, config.image_size, device, overrides, init_checkpoint)
    # SAM2Train's prompt sampler (Meta fixes it to 42); each rank samples its own prompts and clips.
    model.rng = np.random.default_rng(config.seed + 1000 * rank)
    loss_fn = build_loss()
    optimizer = _build_optimizer(model, config)
    rng = np.random.default_rng(config.seed + 1 + 1000 * rank)
    forward = model
    params = [p for p in model.parameters() if p.requires_grad]
    if distributed:
        forward = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    autocast = device.type == "cuda" and config.bf16

    history: list[dict[str, float]] = []
    started = time.perf_counter()
    for step in range(1, config.steps + 1):
        if _stop_requested(cancel, distributed, device):
            return FineTuneResult(step - 1, True, None, time.perf_counter() - started, history)
        step_started = time.perf_counter()
        lrs = _set_lr(optimizer, config, step - 1)
        clip = clips[int(rng.integers(len(clips)))]
        window = sample_window(clip, config.clip_length, config.max_objects, rng)
        batch = to_batch([clip], [window], config.image_size, device)

        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
            outputs = forward(batch)
            losses = loss_fn(outputs, batch.masks)
        total = losses[CORE_LOSS_KEY]
        if not math.isfinite(total.item()):
            raise FloatingPointError(f"fine-tuning loss is {total.item()} at step {step}; stopping")
        optimizer.zero_grad(set_to_none=True)
        # Every frame of a short window can be a mask-prompted conditioning frame, whose output
        # is the input mask itself (``use_mask_input_as_output_without_sam``): then nothing in
        # the loss depends on the weights and there is nothing to learn from this sample.
        learned = total.requires_grad
        if distributed:
            # Every rank must reduce every parameter's gradient at every step, or DDP waits forever:
            # a zero-weighted sum touches them all (also on a rank whose sample had nothing to learn).
            (total + 0.0 * sum(p.sum() for p in params)).backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
        elif learned:
            total.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()

        metrics = {k: float(torch.as_tensor(v).detach()) for k, v in losses.items() if k != CORE_LOSS_KEY}
        metrics.update(lrs)
        metrics["learned"] = float(learned)
        metrics["train_iou"] = _train_iou(outputs, batch.masks)
        metrics["seconds"] = time.perf_counter() - step_started
        history.append({"loss": float(total.item()), **metrics})
        if on_step is not None:
            on_step(step, float(total.item()), metrics)

    seconds = time.perf_counter() - started
    path = None
    if out_checkpoint is not None and rank == 0:
        meta = {
            "config": sam2_model.resolve_config(config.model_config),
            "image_size": int(config.image_size),
            "steps": int(config.steps),
            "init_checkpoint": str(init_checkpoint) if init_checkpoint else "",
            "fine_tune_config": {k: v for k, v in asdict(config).items() if v is not None},
        }
        path = save_checkpoint(model, out_checkpoint, meta)
    if distributed:
        dist.barrier()  # nobody reports success before the checkpoint exists
    return FineTuneResult(config.steps, False, path, seconds, history, model=model)


def _stop_requested(cancel: threading.Event | None, distributed: bool, device: torch.device) -> bool:
    """Whether to stop before this step; under DDP every rank stops if any rank was asked to."""
    asked = cancel is not None and cancel.is_set()
    if not distributed:
        return asked
    flag = torch.tensor([1.0 if asked else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def _build_optimizer(model: torch.nn.Module, config: FineTuneConfig) -> torch.optim.Optimizer:
    """AdamW with Meta's parameter groups: vision vs the rest, no weight decay on biases / LayerNorm."""
    no_decay: set[str] = set()
    for module_name, module in model.named_modules():
        if isinstance(module, torch.nn.LayerNorm):
            no_decay.update(f"{module_name}.{p}" if module_name else p for p, _ in module.named_parameters())
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        vision = name.startswith("image_encoder.")
        decay = not (name.endswith("bias") or name in no_decay)
        groups.setdefault((vision, decay), []).append(param)
    param_groups = [
        {
            "params": params,
            "base_lr": config.vision_lr if vision else config.lr,
            "weight_decay": config.weight_decay if decay else 0.0,
            "vision": vision,
        }
        for (vision, decay), params in sorted(groups.items())
    ]
    return torch.optim.AdamW(param_groups, lr=config.lr)


def _set_lr(optimizer: torch.optim.Optimizer, config: FineTuneConfig, step_index: int) -> dict[str, float]:
    """Cosine from ``base_lr`` to ``base_lr / 10`` over the run (Meta's ``CosineParamScheduler``)."""
    progress = step_index / max(1, config.steps)
    factor = 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))
    current: dict[str, float] = {}
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
        current["vision_lr" if group["vision"] else "lr"] = group["lr"]
    return current


@torch.no_grad()
def _train_iou(outputs: list[dict], gt_masks: torch.Tensor) -> float:
    """Mean IoU of the final masks (``pred_masks_high_res``, [O, 1, S, S] per frame) with the GT.

    Objects present on a frame only. Mask-prompted frames count too (their output is the
    input mask), so this runs above what inference achieves; it is a progress signal, not
    the evaluation (see ``segmentation.training.evaluate.clip_iou``).
    """
    ious = []
    for frame_out, frame_gt in zip(outputs, gt_masks, strict=True):
        pred = frame_out["pred_masks_high_res"][:, 0] > 0
        for obj_pred, obj_gt in zip(pred, frame_gt, strict=True):
            if obj_gt.any():
                union = (obj_pred | obj_gt).sum().item()
                ious.append((obj_pred & obj_gt).sum().item() / union)
    return float(np.mean(ious)) if ious else float("nan")
