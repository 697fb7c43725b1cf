"""The multi-GPU path on CPU: torchrun starts 2 processes, gloo backend, DistributedDataParallel.

``segmentation.training.distributed.launch`` is what a training run uses when a machine has more
than one GPU; here the same launcher runs at world size 2 on CPU. Each rank draws different clips
and prompts, so equal weights on both ranks at the end show that DDP averaged the gradients.
"""

from __future__ import annotations

import threading

import pytest
import torch

from segmentation import sam2_model
from segmentation.training.distributed import launch
from tests.segmentation.test_training import make_clip, small_config

pytestmark = pytest.mark.slow


def test_torchrun_ddp_with_gloo_at_world_size_2(tmp_path):
    clips = [make_clip(num_frames=3, seed=s, start=(40 + 10 * s, 50)) for s in range(4)]
    config = small_config(steps=2, image_size=64)
    steps = []
    result = launch(clips, config, None, tmp_path / "ddp.pt", nproc=2, backend="gloo", job_dir=tmp_path / "job",
                    on_step=lambda step, loss, metrics: steps.append((step, loss)))
    assert result.steps_done == 2 and not result.cancelled
    assert [s for s, _ in steps] == [1, 2]  # rank 0's progress, streamed back
    digests = [(tmp_path / "job" / f"digest-{rank}.txt").read_text() for rank in (0, 1)]
    assert digests[0] and digests[0] == digests[1]  # DDP kept both ranks' weights identical
    torch.manual_seed(0)
    model = sam2_model.build_model("sam2.1_hiera_t", checkpoint=result.checkpoint, image_size=64, device="cpu")
    assert model is not None  # rank 0's checkpoint loads strictly into the inference model


def test_cancel_reaches_every_rank(tmp_path):
    clips = [make_clip(num_frames=3)]
    cancel = threading.Event()
    result = launch(clips, small_config(steps=50, image_size=64), None, tmp_path / "c.pt", nproc=2,
                    backend="gloo", job_dir=tmp_path / "job", cancel=cancel,
                    on_step=lambda step, loss, metrics: cancel.set())
    assert result.cancelled and result.steps_done < 50 and result.checkpoint is None
    assert not (tmp_path / "c.pt").exists()
