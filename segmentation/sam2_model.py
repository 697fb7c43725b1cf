"""The one place that knows how to build SAM 2: config names, input size, device, checkpoints.

Inference (``segmentation.sam2_backend``), fine-tuning and benchmarks all build the model here, so
a checkpoint trained by this project loads the same way Meta's released ones do, and a reduced
``image_size`` (e.g. 256 on CPU) means the same hydra overrides everywhere.

Meta's ``build_sam2*`` functions do the composing and instantiating; what this module adds is
name resolution, the size overrides, and strict checkpoint loading with an error that says which
checkpoint and which config disagree (Meta's loader only logs the keys and raises a bare
``RuntimeError``).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import sam2.sam2_video_predictor
import torch
from sam2.sam2_video_predictor import SAM2VideoPredictor
from tqdm import tqdm

from segmentation.sam2_configs import resolve_config

# Meta's ``propagate_in_video`` draws a tqdm bar of its own on every call. Callers here report
# progress themselves (the evaluation CLI's bar, the worker's progress messages), so that
# inner bar would only flood terminals and worker logs: make it a silent one.
sam2.sam2_video_predictor.tqdm = functools.partial(tqdm, disable=True)

# What ``build_sam2_video_predictor(apply_postprocessing=True)`` adds, minus ``fill_hole_area``
# which depends on the compiled extension (see ``image_size_overrides``).
_VIDEO_POSTPROCESSING = (
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
    "++model.binarize_mask_from_pts_for_mem_enc=true",
)
# Meta's default hole filling for the video predictor (pixels, on the low-res masks).
_FILL_HOLE_AREA = 8


class FloatMemoryVideoPredictor(SAM2VideoPredictor):
    """Meta's ``SAM2VideoPredictor`` whose stored memories also work without autocast (CPU, MPS).

    Meta stores each frame's ``maskmem_features`` as bfloat16 (to halve GPU memory) and relies
    on CUDA bf16 autocast when reading them back. Without autocast, a frame whose memory holds
    no object pointer (tracking backwards, or an object whose first prompt lies ahead) feeds
    bf16 memory into float32 attention weights and fails with "mat1 and mat2 must have the same
    dtype" (facebookresearch/sam2 issues 308 and 577). Here, when autocast is off on the model's
    device, the stored features are cast back to float32 after Meta's bf16 rounding, so the
    numbers are the ones the GPU path uses. With autocast on, nothing changes.
    """

    def _run_single_frame_inference(self, *args: Any, **kwargs: Any) -> tuple[dict[str, Any], torch.Tensor]:
        compact_out, pred_masks = super()._run_single_frame_inference(*args, **kwargs)
        compact_out["maskmem_features"] = self._usable_memory(compact_out["maskmem_features"])
        return compact_out, pred_masks

    def _run_memory_encoder(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, Any]:
        maskmem_features, maskmem_pos_enc = super()._run_memory_encoder(*args, **kwargs)
        return self._usable_memory(maskmem_features), maskmem_pos_enc

    def _usable_memory(self, features: torch.Tensor | None) -> torch.Tensor | None:
        if features is None or torch.is_autocast_enabled(self.device.type):
            return features
        return features.float()


_VIDEO_PREDICTOR_TARGET = f"++model._target_={FloatMemoryVideoPredictor.__module__}.FloatMemoryVideoPredictor"


def has_compiled_extension() -> bool:
    """Whether ``sam2._C`` (CUDA connected components, used for hole filling) is importable."""
    try:
        return importlib.util.find_spec("sam2._C") is not None
    except (ImportError, ValueError):
        return False


def image_size_overrides(image_size: int, video: bool = True) -> list[str]:
    """Hydra overrides to run the model at ``image_size`` x ``image_size`` input.

    The memory attention's RoPE tables are sized for the stride-16 feature map, so
    ``feat_sizes`` becomes ``[S/16, S/16]`` for both its self- and cross-attention. Hole
    filling needs ``sam2._C``; without it Meta's code warns on every frame and skips it, so it
    is switched off here (``fill_hole_area=0``). Only the video predictor takes
    ``fill_hole_area``: pass ``video=False`` for ``SAM2Base`` / ``SAM2Train`` builds.
    """
    size = int(image_size)
    if size <= 0 or size % 32:
        raise ValueError(f"image_size must be a positive multiple of 32 (the backbone's stride), got {image_size}")
    feat = size // 16
    overrides = [
        f"++model.image_size={size}",
        f"++model.memory_attention.layer.self_attention.feat_sizes=[{feat},{feat}]",
        f"++model.memory_attention.layer.cross_attention.feat_sizes=[{feat},{feat}]",
    ]
    if video and not has_compiled_extension():
        overrides.append("++model.fill_hole_area=0")
    return overrides


def select_device(preferred: str | torch.device | None = None) -> torch.device:
    """The device to run on: ``preferred`` if given (and usable), else cuda, then mps, then cpu."""
    if preferred is not None:
        device = torch.device(preferred)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {preferred!r} requested but CUDA is not available")
        if device.type == "mps" and not _mps_available():
            raise ValueError(f"device {preferred!r} requested but MPS is not available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


class CheckpointMismatchError(RuntimeError):
    """A checkpoint's weights do not fit the model built from a config."""


def load_checkpoint(model: torch.nn.Module, path: str | Path, config_name: str) -> None:
    """Load weights strictly into ``model`` (built from ``config_name``).

    Takes Meta's released ``.pt`` files and this project's fine-tuned ones: both keep the
    weights under the ``model`` key (a bare state dict is accepted too). Any missing,
    unexpected or wrongly shaped key raises ``CheckpointMismatchError`` naming the checkpoint
    and the config, because a half-loaded model silently produces garbage masks.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SAM 2 checkpoint {path} does not exist")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in several types
        raise CheckpointMismatchError(f"cannot read SAM 2 checkpoint {path}: {exc}") from exc
    state_dict = _state_dict_of(blob, path)
    problem = describe_mismatch(model, state_dict)
    if problem:
        raise CheckpointMismatchError(
            f"checkpoint {path} does not match config {config_name}: {problem}. "
            "Was it saved from another model size or SAM version?"
        )
    model.load_state_dict(state_dict, strict=True)


def _state_dict_of(blob: Any, path: Path) -> Mapping[str, torch.Tensor]:
    if isinstance(blob, Mapping) and isinstance(blob.get("model"), Mapping):
        return blob["model"]
    if isinstance(blob, Mapping) and blob and all(isinstance(v, torch.Tensor) for v in blob.values()):
        return blob
    keys = list(blob)[:5] if isinstance(blob, Mapping) else type(blob).__name__
    raise CheckpointMismatchError(f"checkpoint {path} holds no weights under the 'model' key (found {keys})")


def describe_mismatch(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> str:
    """Empty when ``state_dict`` fits ``model`` exactly; else counts and a few example keys."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong-shape", wrong_shape)):
        if keys:
            examples = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
            parts.append(f"{len(keys)} {label} keys (e.g. {examples})")
    return "; ".join(parts)


def build_model(
    config: str,
    checkpoint: str | Path | None = None,
    image_size: int | None = None,
    device: str | torch.device | None = None,
    mode: str = "eval",
    extra_overrides: Sequence[str] = (),
    video: bool = True,
) -> torch.nn.Module:
    """Build SAM 2 from a config name, optionally at a reduced ``image_size``, and load weights.

    - ``mode="eval"``, ``video=True``: a ``SAM2VideoPredictor`` (``FloatMemoryVideoPredictor``,
      which also runs without autocast) with the video post-processing Meta's builder applies
      (dynamic multimask, binarized click masks for memory, hole filling when ``sam2._C`` exists).
    - ``mode="eval"``, ``video=False``: ``SAM2Base`` as ``build_sam2`` makes it (for the image
      predictor / automatic mask generator).
    - ``mode="train"``: ``build_sam2(mode="train")`` without post-processing; pass
      ``"++model._target_=training.model.sam2.SAM2Train"`` (and prompt settings) in
      ``extra_overrides`` to get the training model.

    ``checkpoint=None`` leaves the random init (seed it with ``torch.manual_seed`` first).
    """
    from sam2.build_sam import build_sam2, build_sam2_video_predictor  # also initializes hydra

    if mode not in ("eval", "train"):
        raise ValueError(f"mode must be 'eval' or 'train', got {mode!r}")
    config_name = resolve_config(config)
    torch_device = select_device(device)
    overrides: list[str] = []
    video_predictor = mode == "eval" and video
    if image_size is not None:
        overrides += image_size_overrides(image_size, video=video_predictor)
    if video_predictor:
        overrides.append(_VIDEO_PREDICTOR_TARGET)
        overrides += _VIDEO_POSTPROCESSING
        if has_compiled_extension():
            overrides.append(f"++model.fill_hole_area={_FILL_HOLE_AREA}")
        elif not any(o.startswith("++model.fill_hole_area=") for o in overrides):
            overrides.append("++model.fill_hole_area=0")
    overrides += list(extra_overrides)

    if video_predictor:
        # Post-processing is passed explicitly above, so Meta's builder must not append its own
        # (its ``fill_hole_area=8`` would come after ours and win).
        model = build_sam2_video_predictor(
            config_name, None, device=torch_device, mode=mode,
            hydra_overrides_extra=overrides, apply_postprocessing=False,
        )  # fmt: skip
    else:
        model = build_sam2(
            config_name, None, device=torch_device, mode=mode,
            hydra_overrides_extra=overrides, apply_postprocessing=(mode == "eval"),
        )  # fmt: skip
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, config_name)
    return model
