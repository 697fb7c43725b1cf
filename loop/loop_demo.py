"""Prove the loop: simulated annotators, fine-tuning and evaluation, version after version, on CPU.

``run_demo`` is what ``python manage.py loop_demo`` and the slow test run. It starts from a
random-weight tiny SAM 2 at a small input size (v0), then repeats what the data engine does:

1. simulated annotators annotate the next batch of synthetic videos with the current version
   (clicks until J&F >= 0.9 on every frame, or the budget; the exact ground truth stands in for
   the brush corrections a person would finish with), so the batch's masklets are "approved";
2. a training run fine-tunes the current version on every approved masklet so far
   (``segmentation.training.fine_tune``, the same step the ``train`` queue runs);
3. the new version is measured on held-out synthetic videos with ``loop.evaluation``.

The loop works when each version needs fewer clicks per masklet than the one before.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fixtures.synthetic import SyntheticFrames, SyntheticSpec
from loop.evaluation import EvalSettings, evaluate_segmenter
from segmentation.backends import build_segmenter
from segmentation.clicker import clicks_to_target
from segmentation.datasets import VideoRecord
from segmentation.frames import ArrayFrames, FrameSource
from segmentation.training.clips import Clip
from segmentation.training.loop import FineTuneConfig, fine_tune
from segmentation.training.model import build_train_model, save_checkpoint, training_overrides


@dataclass
class DemoConfig:
    """Small enough for a 2-core CPU: tiny config at ``image_size``, short synthetic videos."""

    image_size: int = 128
    width: int = 128
    height: int = 96
    num_frames: int = 12
    stride: int = 4
    num_objects: int = 2
    kinds: tuple[str, ...] = ("ellipse", "rectangle")
    noise: float = 0.0
    pan: float = 0.0
    batches: int = 2
    videos_per_batch: int = 4
    heldout_videos: int = 5
    steps: tuple[int, ...] = (100, 200)
    #: Learning rate per version: high from random weights, lower when refining the previous version.
    lrs: tuple[float, ...] = (1e-3, 3e-4)
    #: First prompts of the simulated training prompts (mask, box, click); the annotators here click.
    prompt_mix: tuple[float, float, float] = (0.5, 0.25, 0.25)
    clip_length: int = 3
    click_budget: int = 12
    seed: int = 0
    model_config: str = "sam2.1_hiera_t"

    def __post_init__(self) -> None:
        if len(self.steps) != self.batches or len(self.lrs) != self.batches:
            raise ValueError(f"steps and lrs need one entry per batch ({self.batches}), got {self.steps}, {self.lrs}")


@dataclass
class VersionRow:
    """One version's numbers on the held-out videos (and the effort of the batch it annotated)."""

    name: str
    summary: dict[str, Any]
    checkpoint: str
    annotation_clicks: float | None = None
    train_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def clicks_to_target(self) -> float:
        return float(self.summary["clicks_to_target"])

    def jf_after(self, clicks: int) -> float:
        return float(self.summary["jf_after"][clicks - 1])


class SyntheticRecord(VideoRecord):
    """A synthetic video as an evaluation record: rendered frames and exact ground truth, no files."""

    def __init__(self, spec: SyntheticSpec, stride: int):
        self.source = SyntheticFrames(spec, stride)
        self._frames = [self.source[i] for i in range(len(self.source))]
        self._gt = [self.source.masks(i) for i in range(len(self.source))]
        super().__init__(spec.video_id, Path("."), [str(i) for i in range(len(self._frames))])

    def open_frames(self) -> FrameSource:
        return ArrayFrames(self._frames[: self.num_frames])

    @property
    def object_ids(self) -> list[int]:
        return [oid for oid in sorted(self._gt[0]) if any(gt[oid].any() for gt in self._gt)]

    def gt_masks(self, object_id: int) -> dict[int, np.ndarray]:
        return {i: self._gt[i][object_id] for i in range(self.num_frames)}

    def clip(self) -> Clip:
        """The video as a training clip: every session frame, every object's approved masks."""
        return Clip(list(self._frames), {oid: [gt[oid] for gt in self._gt] for oid in self.object_ids})


def _videos(config: DemoConfig, first_seed: int, count: int) -> list[SyntheticRecord]:
    return [
        SyntheticRecord(SyntheticSpec(seed=first_seed + i, width=config.width, height=config.height,
                                      num_frames=config.num_frames, num_objects=config.num_objects,
                                      kinds=config.kinds, noise=config.noise, pan=config.pan,
                                      name=f"loop_s{first_seed + i}"), config.stride)
        for i in range(count)
    ]


#: (config, image size, seed) -> (the checkpoint built in this process, torch's random state after building it).
_random_inits: dict[tuple[str, int, int], tuple[Path, torch.Tensor]] = {}


def random_checkpoint(config_name: str, image_size: int, seed: int, path: Path) -> Path:
    """Save the random init of ``seed`` as a checkpoint: v0 of a project that has no weights yet.

    The same config, size and seed always give the same file (byte for byte), so a process builds
    each one once (a model built and ~150 MB written: seconds) into a folder of its own, and every
    call copies it to ``path`` (written whole, then renamed), leaving torch's random state as the
    build did.
    """
    key = (config_name, int(image_size), int(seed))
    if key not in _random_inits:
        torch.manual_seed(seed)
        overrides = training_overrides(0.5, 0.25, 0.25, 1, 1, 7, 0.1)
        model = build_train_model(config_name, image_size, torch.device("cpu"), overrides)
        folder = Path(tempfile.mkdtemp(prefix="masklet-random-init-"))
        atexit.register(shutil.rmtree, folder, True)
        built = save_checkpoint(model, folder / "random.pt",
                                {"config": config_name, "image_size": image_size, "random_init_seed": seed})
        _random_inits[key] = (built, torch.get_rng_state())
    built, rng_state = _random_inits[key]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        shutil.copyfile(built, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    torch.set_rng_state(rng_state)
    return path


def annotate_batch(segmenter: Any, records: list[SyntheticRecord], budget: int) -> float:
    """Simulated annotators click each object until J&F >= 0.9 (or ``budget``); mean clicks per masklet."""
    clicks = []
    for record in records:
        with segmenter.open_session(record.open_frames()) as session:
            for oid in record.object_ids:
                clicks.append(clicks_to_target(session, record.gt_masks(oid), oid, 0.9, budget).clicks)
    return float(np.mean(clicks))


def run_demo(config: DemoConfig, out_dir: Path, log: Callable[[str], None] = print) -> list[VersionRow]:
    """v0 (random) -> annotate batch 1 -> v1 -> annotate batch 2 -> v2 ...; one row per version."""
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    eval_settings = EvalSettings(clicks=1, max_frames=3, click_budget=config.click_budget)
    heldout = _videos(config, 1000 + config.seed, config.heldout_videos)
    batches = [_videos(config, 100 * (b + 1) + config.seed, config.videos_per_batch) for b in range(config.batches)]

    def measure(name: str, checkpoint: Path) -> VersionRow:
        started = time.perf_counter()
        segmenter = build_segmenter("sam2", config=config.model_config, checkpoint=checkpoint,
                                    image_size=config.image_size, device="cpu")
        summary = evaluate_segmenter(segmenter, heldout, eval_settings)
        log(f"{name}: clicks to J&F>=0.9 {summary['clicks_to_target']:.2f}, J&F after 1/3 clicks "
            f"{summary['jf_after'][0]:.3f}/{summary['jf_after'][2]:.3f} ({time.perf_counter() - started:.0f} s)")
        return VersionRow(name, summary, str(checkpoint))

    checkpoint = random_checkpoint(config.model_config, config.image_size, config.seed, out_dir / "v0.pt")
    rows = [measure("v0 (random init)", checkpoint)]
    approved: list[Clip] = []
    for index, batch in enumerate(batches):
        segmenter = build_segmenter("sam2", config=config.model_config, checkpoint=checkpoint,
                                    image_size=config.image_size, device="cpu")
        spent = annotate_batch(segmenter, batch, config.click_budget)
        rows[-1].annotation_clicks = spent
        log(f"batch {index + 1}: {len(batch)} videos annotated with v{index}, {spent:.2f} clicks per masklet")
        approved += [record.clip() for record in batch]
        tune = FineTuneConfig(model_config=config.model_config, image_size=config.image_size,
                              steps=config.steps[index], lr=config.lrs[index], vision_lr=config.lrs[index],
                              prob_mask_prompt=config.prompt_mix[0], prob_box_prompt=config.prompt_mix[1],
                              prob_click_prompt=config.prompt_mix[2],
                              clip_length=config.clip_length, max_objects=config.num_objects, device="cpu",
                              seed=config.seed + index)
        result = fine_tune(approved, tune, init_checkpoint=checkpoint, out_checkpoint=out_dir / f"v{index + 1}.pt")
        assert result.checkpoint is not None
        checkpoint = result.checkpoint
        losses = [h["loss"] for h in result.history]
        log(f"v{index + 1}: {result.steps_done} steps on {len(approved)} clips in {result.seconds:.0f} s, "
            f"loss {np.mean(losses[:5]):.2f} -> {np.mean(losses[-5:]):.2f}")
        row = measure(f"v{index + 1}", checkpoint)
        row.train_seconds = result.seconds
        rows.append(row)
    return rows


def format_rows(rows: list[VersionRow]) -> str:
    """The table the command prints: per version, effort on held-out videos (and on the batch it annotated)."""
    lines = [f"{'version':<18} {'clicks/masklet to J&F>=0.9':>27} {'reached':>8} {'J&F@1 click':>12} "
             f"{'J&F@3 clicks':>13} {'batch clicks':>13}"]
    for row in rows:
        batch = "-" if row.annotation_clicks is None else f"{row.annotation_clicks:.2f}"
        lines.append(f"{row.name:<18} {row.clicks_to_target:>27.2f} {row.summary['target_reached']:>8.2f} "
                     f"{row.jf_after(1):>12.3f} {row.jf_after(3):>13.3f} {batch:>13}")
    return "\n".join(lines)


def loop_works(rows: list[VersionRow]) -> bool:
    """Each version needs fewer clicks per masklet than the one before."""
    return all(b.clicks_to_target < a.clicks_to_target for a, b in zip(rows, rows[1:], strict=False))
