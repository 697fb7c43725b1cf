"""Fine-tuning: Meta's training pieces driven by ``segmentation.training``, on a synthetic clip, on CPU.

The learning test trains the tiny config from random init at image_size 64 on one 3-frame
clip for 12 steps at lr 1e-3 (~0.55 s of CPU a step, 0.9 s at 128 px; the predictor's IoU on the
later frames goes 0.05 -> 0.82, with seed 1 0.07 -> 0.87; at 128 px it went 0.08 -> 0.84).
A single-clip overfit shows that data, prompts, loss, optimiser and saving are wired right;
it does not show that tracking generalises.
"""

from __future__ import annotations

import math
import threading

import cv2
import numpy as np
import pytest
import torch

from segmentation import sam2_model
from segmentation.training.clips import IMG_MEAN, IMG_STD, Clip, sample_window, to_batch
from segmentation.training.evaluate import clip_iou
from segmentation.training.loop import FineTuneConfig, fine_tune
from segmentation.training.model import save_checkpoint, training_overrides

IMAGE_SIZE = 64
STEPS = 12
SUB_LOSSES = ("loss_mask", "loss_dice", "loss_iou", "loss_class")


def make_clip(
    num_frames: int = 3,
    height: int = 120,
    width: int = 160,
    start: tuple[int, int] = (50, 60),
    step: tuple[int, int] = (6, 2),
    seed: int = 0,
) -> Clip:
    """A striped disc moving a few pixels per frame over a blocky random background."""
    rng = np.random.default_rng(seed)
    background = (rng.random((height // 8, width // 8, 3)) * 255).astype(np.uint8)
    background = cv2.resize(background, (width, height), interpolation=cv2.INTER_NEAREST)
    texture = np.zeros((height, width, 3), np.uint8)
    texture[::4] = (230, 40, 40)
    texture[2::4] = (250, 220, 30)
    frames, masks = [], []
    for t in range(num_frames):
        mask = np.zeros((height, width), np.uint8)
        cv2.circle(mask, (start[0] + step[0] * t, start[1] + step[1] * t), 25, 1, -1)
        frame = background.copy()
        frame[mask > 0] = texture[mask > 0]
        frames.append(frame)
        masks.append(mask > 0)
    return Clip(frames, {1: masks})


def small_config(**changes) -> FineTuneConfig:
    """Meta's recipe, shrunk for CPU: 64 px, 3 frames, 1 object, a much higher lr (random init)."""
    settings = dict(
        model_config="sam2.1_hiera_t",
        image_size=IMAGE_SIZE,
        steps=STEPS,
        lr=1e-3,
        vision_lr=1e-3,
        clip_length=3,
        max_objects=1,
        device="cpu",
        seed=0,
    )
    settings.update(changes)
    return FineTuneConfig(**settings)


# -- data ------------------------------------------------------------------------------------


def test_batch_layout_and_normalisation_match_meta_and_inference(tmp_path):
    clip = make_clip(num_frames=4)
    clip.masks[2] = [np.zeros((120, 160), bool)] * 4  # present nowhere: never sampled
    window = sample_window(clip, num_frames=3, max_objects=3, rng=np.random.default_rng(0))
    assert window.object_ids == (1,) and len(window.frame_indices) == 3

    batch = to_batch([clip], [window], image_size=64)
    assert tuple(batch.img_batch.shape) == (3, 1, 3, 64, 64)  # T x B x C x S x S
    assert tuple(batch.masks.shape) == (3, 1, 64, 64)  # T x O x S x S
    assert batch.masks.dtype == torch.bool and batch.masks.any()
    assert tuple(batch.obj_to_frame_idx.shape) == (3, 1, 2)

    # The predictor reads frames with sam2.utils.misc._load_img_as_tensor, then normalises.
    from sam2.utils.misc import _load_img_as_tensor

    path = tmp_path / "frame.png"  # lossless, so both paths see the same pixels
    first = clip.frames[window.frame_indices[0]]
    cv2.imwrite(str(path), cv2.cvtColor(first, cv2.COLOR_RGB2BGR))
    reference, _, _ = _load_img_as_tensor(str(path), 64)
    reference = (reference.float() - torch.tensor(IMG_MEAN)[:, None, None]) / torch.tensor(IMG_STD)[:, None, None]
    torch.testing.assert_close(batch.img_batch[0, 0], reference)


def test_window_keeps_at_most_max_objects_visible_on_its_first_frame():
    clip = make_clip(num_frames=3)
    full = clip.masks[1]
    clip.masks[2] = [full[0], full[1], full[2]]
    clip.masks[3] = [np.zeros_like(full[0]), full[1], full[2]]  # appears on frame 1
    rng = np.random.default_rng(1)
    windows = [sample_window(clip, num_frames=2, max_objects=1, rng=rng) for _ in range(20)]
    assert all(len(w.object_ids) == 1 for w in windows)
    for w in windows:
        assert clip.masks[w.object_ids[0]][w.frame_indices[0]].any()

    both = sample_window(clip, num_frames=3, max_objects=3, rng=rng)
    assert both.frame_indices == (0, 1, 2) and both.object_ids == (1, 2)  # object 3 is not on frame 0
    batch = to_batch([clip], [both], image_size=64)
    assert tuple(batch.masks.shape) == (3, 2, 64, 64)
    assert batch.obj_to_frame_idx[:, :, 0].tolist() == [[0, 0], [1, 1], [2, 2]]


def test_clip_rejects_inconsistent_input():
    clip = make_clip(num_frames=2)
    with pytest.raises(ValueError, match="2 masks for 3 frames"):
        Clip(clip.frames + clip.frames[:1], clip.masks)
    with pytest.raises(ValueError, match="uint8 RGB"):
        Clip([f.astype(np.float32) for f in clip.frames], clip.masks)
    with pytest.raises(ValueError, match="at least one object"):
        Clip(clip.frames, {})


def test_prompt_probabilities_map_to_meta_parametrisation():
    overrides = training_overrides(0.5, 0.25, 0.25, 2, 2, 7, 0.1)
    assert "++model._target_=training.model.sam2.SAM2Train" in overrides
    assert "++model.prob_to_use_pt_input_for_train=0.5" in overrides  # box or click
    assert "++model.prob_to_use_box_input_for_train=0.5" in overrides  # box given not-mask
    with pytest.raises(ValueError, match="sum to 1"):
        training_overrides(0.5, 0.5, 0.5, 2, 2, 7, 0.1)


def test_loss_has_metas_fine_tuning_weights_and_options():
    from segmentation.training.loss import LOSS_WEIGHTS, build_loss

    loss = build_loss()
    assert loss.weight_dict == LOSS_WEIGHTS and loss.supervise_all_iou and loss.iou_use_l1_loss


def test_save_is_atomic(tmp_path):
    model = torch.nn.Linear(2, 2)
    path = save_checkpoint(model, tmp_path / "ckpt.pt", {"steps": 1})
    before = path.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - pickling a lambda fails inside torch.save
        save_checkpoint(torch.nn.Linear(2, 2), path, {"bad": lambda: None})
    assert path.read_bytes() == before  # the old checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # and no temp file is left


# -- training ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One training run shared by the tests below (it is the expensive part)."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    clip = make_clip()
    out = tmp_path_factory.mktemp("ft") / "masklet-ft.pt"
    torch.manual_seed(0)
    before = clip_iou(None, clip, image_size=IMAGE_SIZE)  # the random init fine_tune starts from (seed 0)
    seen: list[tuple[int, float, dict[str, float]]] = []
    result = fine_tune([clip], small_config(), out_checkpoint=out, on_step=lambda s, loss, m: seen.append((s, loss, m)))
    return clip, before, result, seen


@pytest.mark.slow
def test_fine_tuning_raises_clip_iou(trained):
    clip, before, result, _ = trained
    after = clip_iou(result.checkpoint, clip, image_size=IMAGE_SIZE)
    print(f"clip IoU {before:.3f} -> {after:.3f} in {result.steps_done} steps, {result.seconds_per_step:.2f} s/step")
    assert before < 0.3
    assert after > 0.7


@pytest.mark.slow
def test_callback_sees_every_step_with_finite_losses(trained):
    _, _, result, seen = trained
    assert [s for s, _, _ in seen] == list(range(1, STEPS + 1))
    for _, loss, metrics in seen:
        assert math.isfinite(loss)
        assert all(math.isfinite(metrics[k]) for k in SUB_LOSSES)
        assert metrics["lr"] > 0 and metrics["vision_lr"] > 0
    first, last = np.mean([x for _, x, _ in seen[:5]]), np.mean([x for _, x, _ in seen[-5:]])
    assert last < first
    assert len(result.history) == STEPS and not result.cancelled


@pytest.mark.slow
def test_checkpoint_loads_strictly_into_the_inference_predictor(trained):
    _, _, result, _ = trained
    blob = torch.load(result.checkpoint, map_location="cpu", weights_only=True)
    assert set(blob) == {"model", "masklet"}
    assert blob["masklet"]["image_size"] == IMAGE_SIZE
    predictor = sam2_model.build_model("sam2.1_hiera_t", checkpoint=result.checkpoint, image_size=IMAGE_SIZE)
    from sam2.sam2_video_predictor import SAM2VideoPredictor

    assert isinstance(predictor, SAM2VideoPredictor)
    weights = predictor.state_dict()
    assert set(weights) == set(blob["model"])
    assert all(torch.equal(weights[k].cpu(), v) for k, v in blob["model"].items())


@pytest.mark.slow
def test_checkpoint_for_another_config_fails_clearly(trained):
    _, _, result, _ = trained
    with pytest.raises(sam2_model.CheckpointMismatchError, match=r"does not match config .*sam2\.1_hiera_s"):
        sam2_model.build_model("sam2.1_hiera_s", checkpoint=result.checkpoint, image_size=IMAGE_SIZE)


@pytest.mark.slow
def test_cancel_stops_between_steps_and_writes_nothing(tmp_path):
    cancel = threading.Event()
    steps: list[int] = []

    def on_step(step, loss, metrics):
        steps.append(step)
        if step == 2:
            cancel.set()

    out = tmp_path / "never.pt"
    result = fine_tune(
        [make_clip(2)], small_config(steps=50, clip_length=2), out_checkpoint=out, on_step=on_step, cancel=cancel
    )
    assert result.cancelled and result.steps_done == 2 and steps == [1, 2]
    assert result.checkpoint is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_fine_tunes_on_a_multi_object_synthetic_video_with_absent_objects(tmp_path):
    """The fixtures' scene: 3 objects, occlusions, object 1 leaves the frame (empty masks) and returns."""
    from fixtures.synthetic import iter_frames, preset

    rendered = list(iter_frames(preset("tiny", num_frames=8), start=2, stop=5))  # object 1 leaves after frame 2
    clip = Clip([f.rgb for f in rendered], {oid: [f.masks[oid] for f in rendered] for oid in rendered[0].masks})
    assert clip.visible_objects(0) == [1, 2, 3]  # so the one 3-frame window trains all three
    assert [m.any() for m in clip.masks[1]] == [True, False, False]

    seen: list[dict[str, float]] = []
    result = fine_tune(
        [clip],
        small_config(steps=2, clip_length=3, max_objects=3, seed=3),
        out_checkpoint=tmp_path / "synthetic.pt",
        on_step=lambda step, loss, metrics: seen.append({"loss": loss, **metrics}),
    )
    assert len(seen) == 2 and all(math.isfinite(v) for row in seen for v in row.values())
    assert sam2_model.build_model("tiny", checkpoint=result.checkpoint, image_size=IMAGE_SIZE) is not None
