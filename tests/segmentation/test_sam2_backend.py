"""SAM 2 building and the SAM 2 session, on the real architecture with random weights.

The tiny SAM 2.1 config on CPU, built once per module at image_size 128 (the architecture runs
at any multiple of 32; 128 costs a quarter of 256 on the 2 shared cores, while the loader is
checked against Meta's at 256). Sessions use 4-5 small frames. Masks from random weights are
meaningless as segmentations, but they are deterministic, which is what these tests check:
shapes, bookkeeping, replay, and equality with Meta's own ``init_state`` path.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from segmentation import sam2_model
from segmentation.frames import ArrayFrames, JpegFolderFrames
from segmentation.sam2_backend import (
    PREDICTOR_OVERRIDES,
    LazyVideoFrames,
    Sam2Segmenter,
    Sam2Session,
    build_inference_state,
    describe,
    sam2_quality,
)
from segmentation.segmenter import Box, MaskPrompt, Points, PromptRecord, SegmentationError

IMAGE_SIZE = 128
LOADER_SIZE = 256
TINY = "configs/sam2.1/sam2.1_hiera_t.yaml"


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Run this module's model on one thread, then restore the setting.

    The 2 cores are shared with other test runs: with torch's default 2 OpenMP threads each
    propagated frame took ~1.8 s under that load against ~0.22 s on one thread (measured).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def segmenter() -> Sam2Segmenter:
    torch.manual_seed(0)
    return Sam2Segmenter("sam2.1_hiera_t", image_size=IMAGE_SIZE, device="cpu", frame_cache_size=4)


def synthetic_frames(n: int = 6, h: int = 96, w: int = 128) -> list[np.ndarray]:
    """A red disc moving right and a green box moving down over a fixed noisy background."""
    rng = np.random.default_rng(0)
    background = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (7, 7), 0)
    frames = []
    for t in range(n):
        frame = background.copy()
        cv2.circle(frame, (30 + 6 * t, 48), 16, (230, 40, 40), -1)
        cv2.rectangle(frame, (84, 14 + 4 * t), (112, 40 + 4 * t), (40, 200, 60), -1)
        frames.append(frame)
    return frames


def write_jpegs(frames: list[np.ndarray], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture
def davis_folder(davis_root: Path, tmp_path: Path) -> Path:
    """The first 6 frames of DAVIS ``blackswan`` (854x480), copied byte for byte."""
    source = davis_root / "JPEGImages" / "480p" / "blackswan"
    folder = tmp_path / "blackswan"
    folder.mkdir()
    for path in sorted(source.glob("*.jpg"))[:6]:
        shutil.copy(path, folder / path.name)
    return folder


# Prompts on the synthetic clip: two clicks on the disc, a box on the green rectangle.
SYNTHETIC_PROMPTS = [
    PromptRecord(0, 1, Points(((30.0, 48.0),), (1,))),
    PromptRecord(0, 1, Points(((5.0, 5.0),), (0,))),
    PromptRecord(1, 2, Box(80.0, 14.0, 116.0, 48.0)),
]


# -- sam2_model: names, overrides, devices ----------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [
        ("sam2.1_hiera_t", TINY),
        ("sam2.1_hiera_tiny", TINY),
        ("tiny", TINY),
        ("configs/sam2.1/sam2.1_hiera_t.yaml", TINY),
        ("facebook/sam2.1-hiera-tiny", TINY),
        ("sam2_hiera_s", "configs/sam2/sam2_hiera_s.yaml"),
        ("sam2_hiera_small", "configs/sam2/sam2_hiera_s.yaml"),
        ("sam2.1_hiera_b+", "configs/sam2.1/sam2.1_hiera_b+.yaml"),
        ("base_plus", "configs/sam2.1/sam2.1_hiera_b+.yaml"),
        ("sam2_hiera_large", "configs/sam2/sam2_hiera_l.yaml"),
    ],
)
def test_resolve_config_accepts_every_spelling(name: str, expected: str) -> None:
    assert sam2_model.resolve_config(name) == expected


@pytest.mark.parametrize("name", ["huge", "sam3_hiera_t", "sam2.1_hiera_x", ""])
def test_resolve_config_rejects_unknown_names_listing_choices(name: str) -> None:
    with pytest.raises(ValueError, match="choose one of .*sam2.1_hiera_t"):
        sam2_model.resolve_config(name)


def test_image_size_overrides() -> None:
    overrides = sam2_model.image_size_overrides(256)
    assert "++model.image_size=256" in overrides
    assert "++model.memory_attention.layer.self_attention.feat_sizes=[16,16]" in overrides
    assert "++model.memory_attention.layer.cross_attention.feat_sizes=[16,16]" in overrides
    assert ("++model.fill_hole_area=0" in overrides) == (not sam2_model.has_compiled_extension())
    assert not any("fill_hole_area" in o for o in sam2_model.image_size_overrides(256, video=False))
    with pytest.raises(ValueError, match="multiple of 32"):
        sam2_model.image_size_overrides(250)


def test_select_device() -> None:
    assert sam2_model.select_device("cpu") == torch.device("cpu")
    assert sam2_model.select_device().type in ("cuda", "mps", "cpu")
    if not torch.cuda.is_available():
        assert sam2_model.select_device() != torch.device("cuda")
        with pytest.raises(ValueError, match="CUDA is not available"):
            sam2_model.select_device("cuda")


def test_segmenter_builds_the_float_memory_predictor(segmenter: Sam2Segmenter) -> None:
    predictor = segmenter.predictor
    assert isinstance(predictor, sam2_model.FloatMemoryVideoPredictor)
    assert predictor.image_size == IMAGE_SIZE
    assert predictor.add_all_frames_to_correct_as_cond
    assert predictor.fill_hole_area == (8 if sam2_model.has_compiled_extension() else 0)
    assert segmenter.name == "SAM 2.1 hiera-t @128 (random weights)"
    assert describe(TINY, 1024, Path("/m/sam2.1_hiera_tiny.pt")) == "SAM 2.1 hiera-t @1024 (sam2.1_hiera_tiny.pt)"
    assert describe("configs/sam2/sam2_hiera_b+.yaml", 512, None) == "SAM 2 hiera-b+ @512 (random weights)"


# -- sam2_model: checkpoints ------------------------------------------------------------------


def test_checkpoint_from_another_config_fails_naming_both(segmenter: Sam2Segmenter, tmp_path: Path) -> None:
    path = tmp_path / "tiny21.pt"
    torch.save({"model": segmenter.predictor.state_dict()}, path)
    # SAM 2.0 tiny lacks 2.1's spatial no-object embedding and pointer projection.
    with pytest.raises(sam2_model.CheckpointMismatchError) as info:
        sam2_model.build_model("sam2_hiera_t", checkpoint=path, image_size=IMAGE_SIZE, device="cpu")
    message = str(info.value)
    assert str(path) in message and "configs/sam2/sam2_hiera_t.yaml" in message
    assert "unexpected keys" in message and "no_obj_embed_spatial" in message


def test_checkpoint_without_weights_or_missing_is_refused(tmp_path: Path, segmenter: Sam2Segmenter) -> None:
    empty = tmp_path / "empty.pt"
    torch.save({"epoch": 3}, empty)
    with pytest.raises(sam2_model.CheckpointMismatchError, match="no weights under the 'model' key"):
        sam2_model.load_checkpoint(segmenter.predictor, empty, TINY)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        sam2_model.load_checkpoint(segmenter.predictor, tmp_path / "nope.pt", TINY)


def test_checkpoint_round_trip_gives_identical_outputs(segmenter: Sam2Segmenter, tmp_path: Path) -> None:
    path = tmp_path / "trained.pt"
    # The layout this project's fine-tuning writes: weights under "model", metadata beside them.
    torch.save({"model": segmenter.predictor.state_dict(), "masklet": {"steps": 1}}, path)
    torch.manual_seed(123)  # a different random init, overwritten by the checkpoint
    loaded = sam2_model.build_model("tiny", checkpoint=path, image_size=IMAGE_SIZE, device="cpu")
    for key, value in segmenter.predictor.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    image = torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ours = segmenter.predictor.forward_image(image)["backbone_fpn"]
        theirs = loaded.forward_image(image)["backbone_fpn"]
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))


# -- the lazy frame loader --------------------------------------------------------------------


def test_lazy_frames_equal_metas_loader_and_stay_bounded(tmp_path: Path) -> None:
    from sam2.utils.misc import load_video_frames

    folder = write_jpegs(synthetic_frames(8), tmp_path / "clip")
    metas, height, width = load_video_frames(str(folder), LOADER_SIZE, offload_video_to_cpu=True)
    lazy = LazyVideoFrames(JpegFolderFrames(folder), LOADER_SIZE, cache_size=3)
    assert len(lazy) == 8 and (height, width) == (96, 128)
    for i in range(8):
        assert lazy[i].shape == (3, LOADER_SIZE, LOADER_SIZE) and lazy[i].dtype == torch.float32
        assert torch.equal(lazy[i], metas[i]), f"frame {i} differs from Meta's loader"
        assert lazy.cached <= 3
    assert lazy.peak_cached == 3 and lazy.loads == 8
    assert lazy.prefetched == 6  # frames 2..7 were started while the previous one was used
    lazy[7]  # most recent: a cache hit
    assert lazy.loads == 8
    with pytest.raises(IndexError):
        lazy[8]
    # Backwards, and without prefetching: same tensors.
    plain = LazyVideoFrames(JpegFolderFrames(folder), LOADER_SIZE, cache_size=2, prefetch=False)
    for i in reversed(range(8)):
        assert torch.equal(plain[i], metas[i]) and torch.equal(lazy[i], metas[i])
    assert plain.prefetched == 0 and plain.peak_cached == 2 and lazy.prefetched > 6


def test_inference_state_has_the_keys_init_state_makes(segmenter: Sam2Segmenter, tmp_path: Path) -> None:
    folder = write_jpegs(synthetic_frames(2), tmp_path / "clip")
    metas = segmenter.predictor.init_state(video_path=str(folder))
    ours = build_inference_state(segmenter.predictor, LazyVideoFrames(JpegFolderFrames(folder), IMAGE_SIZE), 96, 128)
    assert set(ours) == set(metas)
    for key in ("num_frames", "video_height", "video_width", "device", "storage_device"):
        assert ours[key] == metas[key], key


# -- sessions ---------------------------------------------------------------------------------


def test_add_prompts_return_bool_masks_of_frame_shape(segmenter: Sam2Segmenter) -> None:
    with segmenter.open_session(ArrayFrames(synthetic_frames(3))) as session:
        mask = session.add_points(0, 7, [(30, 48)], [1])
        assert mask.shape == (96, 128) and mask.dtype == bool
        box_mask = session.add_box(0, 8, (80, 14, 116, 48))
        assert box_mask.shape == (96, 128) and box_mask.dtype == bool
        brush = np.zeros((96, 128), bool)
        brush[30:60, 10:50] = True
        assert session.add_mask(2, 9, brush).shape == (96, 128)
        assert session.object_ids == [7, 8, 9]
        assert session.first_prompted_frame() == 0
        with pytest.raises(SegmentationError, match="outside"):
            session.add_points(0, 7, [(200, 48)], [1])


def test_propagate_visits_every_frame_once_with_every_object(segmenter: Sam2Segmenter) -> None:
    session = Sam2Session(segmenter.predictor, ArrayFrames(synthetic_frames(4)), frame_cache_size=2)
    session.add_points(1, 1, [(36, 48)], [1])
    session.add_box(2, 2, (80, 22, 116, 52))

    both = list(session.propagate(1, "both"))
    assert [r.frame_index for r in both] == [1, 2, 3, 0]
    assert [r.frame_index for r in session.propagate(2, "backward")] == [2, 1, 0]
    assert [r.frame_index for r in session.propagate(1, "forward", max_frames=2)] == [1, 2]
    assert [r.frame_index for r in session.propagate(0, "backward")] == [0]
    for result in both:
        assert set(result.masks) == {1, 2}
        assert all(m.shape == (96, 128) and m.dtype == bool for m in result.masks.values())
    # Every tracked mask is rated from the decoder's predicted IoU and object score; a prompted one is not.
    assert {(r.frame_index, obj) for r in both for obj in r.quality} == {
        (frame, obj) for frame in range(4) for obj in (1, 2)} - {(1, 1), (2, 2)}
    for result in both:
        for obj, rating in result.quality.items():
            assert 0.0 <= rating.score <= 1.0
            assert rating == sam2_quality(rating.features["predicted_iou"], rating.features["object_score_logit"],
                                          bool(result.masks[obj].any()))
    # The frame tensors held never exceed the bound, however many frames were visited.
    assert session.images.peak_cached <= 2 and session.images.loads >= 4


def test_sam2_quality_is_predicted_iou_times_presence_or_confidence_in_absence() -> None:
    assert sam2_quality(0.9, 0.0, True).score == pytest.approx(0.45)  # unsure the object is there at all
    assert sam2_quality(0.9, 20.0, True).score == pytest.approx(0.9)
    assert sam2_quality(1.3, 20.0, True).score == pytest.approx(1.0)  # the IoU head is not bounded
    assert sam2_quality(0.9, -20.0, False).score == pytest.approx(1.0)  # sure it is gone, and the mask is empty
    assert sam2_quality(0.9, -20.0, True).score == pytest.approx(0.0, abs=1e-6)
    assert sam2_quality(0.5, 1e6, True).score == pytest.approx(0.5)  # no overflow


def test_cancel_and_close_stop_propagation(segmenter: Sam2Segmenter) -> None:
    session = segmenter.open_session(ArrayFrames(synthetic_frames(4)))
    session.add_points(0, 1, [(30, 48)], [1])
    cancel = threading.Event()
    seen = []
    for result in session.propagate(0, "forward", cancel=cancel):
        seen.append(result.frame_index)
        cancel.set()
    assert seen == [0]
    stream = session.propagate(0, "forward")
    assert next(stream).frame_index == 0
    stream.close()
    # The session stays usable after a stopped propagation.
    assert [r.frame_index for r in session.propagate(0, "forward", max_frames=2)] == [0, 1]


def test_replay_reproduces_the_masks(segmenter: Sam2Segmenter) -> None:
    frames = ArrayFrames(synthetic_frames(4))
    brush = np.zeros((96, 128), bool)
    brush[60:90, 20:60] = True
    records = [*SYNTHETIC_PROMPTS, PromptRecord(2, 3, MaskPrompt(brush))]

    def run() -> tuple[list[np.ndarray], dict[int, dict[int, np.ndarray]]]:
        session = segmenter.open_session(frames)
        prompt_masks = [session.apply(record) for record in records]
        tracked = {r.frame_index: r.masks for r in session.propagate(0, "forward")}
        return prompt_masks, tracked

    first_prompts, first = run()
    second_prompts, second = run()
    assert all(np.array_equal(a, b) for a, b in zip(first_prompts, second_prompts, strict=True))
    assert sorted(first) == list(range(4))
    for frame, masks in first.items():
        assert masks.keys() == {1, 2, 3} == second[frame].keys()
        assert all(np.array_equal(masks[o], second[frame][o]) for o in masks), frame
    # A mask prompt is fed straight through as the output on its frame (via the S/4 logits).
    out = first[2][3]
    assert (out & brush).sum() / (out | brush).sum() > 0.8


def meta_direct(predictor, folder: Path, records: list[PromptRecord], start: int):
    """The same prompts through Meta's own ``init_state`` (reads every JPEG of ``folder``)."""
    state = predictor.init_state(video_path=str(folder))
    prompt_masks = []
    for record in records:
        prompt = record.prompt
        if isinstance(prompt, Points):
            _, ids, masks = predictor.add_new_points_or_box(
                state,
                record.frame_index,
                record.object_id,
                points=np.asarray(prompt.coords, np.float32),
                labels=np.asarray(prompt.labels, np.int32),
                clear_old_points=False,
            )
        else:
            box = np.asarray([prompt.x0, prompt.y0, prompt.x1, prompt.y1], np.float32)
            _, ids, masks = predictor.add_new_points_or_box(state, record.frame_index, record.object_id, box=box)
        prompt_masks.append((masks[ids.index(record.object_id), 0] > 0).numpy())
    tracked = {
        frame: {obj: (masks[i, 0] > 0).numpy() for i, obj in enumerate(ids)}
        for frame, ids, masks in predictor.propagate_in_video(state, start_frame_idx=start)
    }
    return prompt_masks, tracked


def assert_same_as_meta(segmenter: Sam2Segmenter, folder: Path, records: list[PromptRecord], start: int) -> None:
    session = segmenter.open_session(JpegFolderFrames(folder))
    ours_prompts = [session.apply(record) for record in records]
    ours = {r.frame_index: r.masks for r in session.propagate(start, "forward")}
    theirs_prompts, theirs = meta_direct(segmenter.predictor, folder, records, start)
    assert all(np.array_equal(a, b) for a, b in zip(ours_prompts, theirs_prompts, strict=True))
    assert ours.keys() == theirs.keys()
    for frame in ours:
        assert ours[frame].keys() == theirs[frame].keys()
        for obj in ours[frame]:
            assert np.array_equal(ours[frame][obj], theirs[frame][obj]), (frame, obj)
    # Not a vacuous comparison: some tracked mask is neither empty nor full.
    assert any(0 < m.mean() < 1 for masks in ours.values() for m in masks.values())


def test_session_equals_meta_init_state_on_synthetic_jpegs(segmenter: Sam2Segmenter, tmp_path: Path) -> None:
    folder = write_jpegs(synthetic_frames(4), tmp_path / "clip")
    assert_same_as_meta(segmenter, folder, SYNTHETIC_PROMPTS, start=0)


def test_session_equals_meta_init_state_on_davis(segmenter: Sam2Segmenter, davis_folder: Path) -> None:
    records = [
        PromptRecord(0, 1, Points(((420.0, 230.0), (480.0, 260.0)), (1, 1))),  # the swan
        PromptRecord(1, 2, Box(0.0, 300.0, 300.0, 479.0)),  # water, bottom left
    ]
    assert_same_as_meta(segmenter, davis_folder, records, start=0)


def test_davis_session_masks_are_frame_sized(segmenter: Sam2Segmenter, davis_folder: Path) -> None:
    session = segmenter.open_session(JpegFolderFrames(davis_folder))
    assert (session.height, session.width) == (480, 854)
    mask = session.add_points(3, 1, [(430, 240)], [1])
    assert mask.shape == (480, 854) and mask.dtype == bool
    results = list(session.propagate(3, "both", max_frames=2))
    assert [r.frame_index for r in results] == [3, 4, 2]
    assert all(r.masks[1].shape == (480, 854) for r in results)


def test_new_object_after_tracking_and_corrections_that_stick(segmenter: Sam2Segmenter) -> None:
    session = segmenter.open_session(ArrayFrames(synthetic_frames(4)))
    session.add_points(0, 1, [(30, 48)], [1])
    list(session.propagate(0, "forward"))
    # A new object once tracking has started (sam2 1.1.0 allows it).
    session.add_box(2, 2, (80, 18, 116, 52))
    assert session.object_ids == [1, 2]
    # A correction on a tracked frame: with add_all_frames_to_correct_as_cond it becomes a
    # conditioning frame, so the next propagation returns the corrected mask unchanged.
    corrected = session.add_points(3, 1, [(48, 48)], [0])
    results = {r.frame_index: r.masks for r in session.propagate(0, "forward")}
    assert sorted(results) == [0, 1, 2, 3]
    assert all(masks.keys() == {1, 2} for masks in results.values())
    assert np.array_equal(results[3][1], corrected)


def test_clear_remove_reset_and_close(segmenter: Sam2Segmenter) -> None:
    session = segmenter.open_session(ArrayFrames(synthetic_frames(3)))
    session.add_points(0, 1, [(30, 48)], [1])
    session.add_points(1, 1, [(36, 48)], [1])
    session.add_box(1, 2, (80, 18, 116, 48))
    session.clear_prompts(2, 1)  # nothing there: no-op
    session.clear_prompts(0, 99)  # unknown object: no-op, and it is not created
    assert session.object_ids == [1, 2] and 99 not in session.state["obj_id_to_idx"]
    session.clear_prompts(0, 1)
    assert session.object_ids == [1, 2] and session.first_prompted_frame() == 1
    session.clear_prompts(1, 2)  # object 2's only prompt: it leaves the session
    assert session.object_ids == [1]
    assert [r.frame_index for r in session.propagate(1, "forward")] == [1, 2]
    session.add_points(0, 3, [(30, 48)], [1])
    session.remove_object(1)
    assert session.object_ids == [3]
    with pytest.raises(SegmentationError, match="not in this session"):
        session.remove_object(1)
    session.reset()
    assert session.object_ids == []
    with pytest.raises(SegmentationError, match="nothing to propagate"):
        list(session.propagate(0))
    session.close()
    with pytest.raises(SegmentationError, match="closed"):
        session.add_points(0, 1, [(30, 48)], [1])


def test_offload_options_reach_the_state(segmenter: Sam2Segmenter) -> None:
    session = Sam2Session(
        segmenter.predictor, ArrayFrames(synthetic_frames(2)), offload_video_to_cpu=True, offload_state_to_cpu=True
    )
    assert session.state["offload_video_to_cpu"] and session.state["offload_state_to_cpu"]
    assert session.state["storage_device"] == torch.device("cpu")
    assert session.images.device == torch.device("cpu")
    assert "++model.add_all_frames_to_correct_as_cond=true" in PREDICTOR_OVERRIDES
