"""Auto masklets on a synthetic video whose objects are known: most found, no duplicates, into review.

The seed frame's masks are matched to the ground truth (IoU >= 0.5): a ground-truth object with
a match is found, a second match of the same object is a duplicate, and a masklet matching
nothing is spurious (a background region). The numbers are printed (``-s``) for the report.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
import pytest
import torch

from annotator.automasks import generate, runs
from annotator.automasks.runs import cancel_run, execute, start_run
from annotator.models import AutoMaskletRun, MaskFrame, Masklet
from annotator.services.annotation import EditRefused
from annotator.services.queues import next_review
from fixtures.synthetic import SyntheticSpec
from segmentation.masks import decode_rle

MATCH_IOU = 0.5


def _score(video, frames, run) -> dict[str, int]:
    truth = {oid: m for oid, m in frames.masks(0).items() if m.sum() >= generate.MIN_REGION_AREA}
    found: dict[int, int] = {}
    spurious = duplicates = 0
    size = [video.height, video.width]
    for masklet in Masklet.objects.filter(video=video, type="auto"):
        counts = MaskFrame.objects.get(masklet=masklet, frame_index=run.frame_index).rle_counts
        mask = decode_rle({"size": size, "counts": counts}).astype(bool)
        best = max(truth, key=lambda oid: generate.iou(mask, truth[oid]))
        if generate.iou(mask, truth[best]) < MATCH_IOU:
            spurious += 1
        elif best in found:
            duplicates += 1
        else:
            found[best] = masklet.pk
    return {"objects": len(truth), "found": len(found), "missed": len(truth) - len(found),
            "duplicates": duplicates, "spurious": spurious}


def _check_stored_tracks(video, auto: list[Masklet]) -> None:
    """Every auto masklet is propagated through the whole video, with no component or hole under 200 px."""
    frames = len(video.annotated_frame_indices())
    assert all(m.frames.count() == frames for m in auto)
    rows = MaskFrame.objects.filter(masklet__in=auto, area__gt=0).values_list("rle_counts", flat=True)[:40]
    for counts in rows:
        mask = decode_rle({"size": [video.height, video.width], "counts": counts}).astype(bool)
        assert generate.clean_mask(mask).sum() == mask.sum()


def test_classical_auto_masklets_on_a_synthetic_video(team, synthetic_video, capsys):
    video, frames = synthetic_video(team.project)
    run = start_run(video, team.admin, frame_index=0)
    run = execute(run.pk)
    assert run.status == AutoMaskletRun.Status.DONE, run.error
    score = _score(video, frames, run)
    with capsys.disabled():
        print(f"\nauto masklets (classical, {run.stats}): {score}")
    assert score["found"] >= score["objects"] - 1  # most objects found
    assert score["duplicates"] == 0
    assert score["spurious"] == 0  # background patches fail the edge-support filter
    auto = Masklet.objects.filter(video=video, type="auto")
    assert auto.count() == run.created_count > 0
    assert set(auto.values_list("status", flat=True)) == {Masklet.Status.SUBMITTED}
    assert all(0 <= m.stability_score <= 1 for m in auto)
    _check_stored_tracks(video, list(auto))
    assert next_review(team.project, team.reviewer).type == "auto"  # into verification like manual ones
    again = execute(start_run(video, team.admin, frame_index=0).pk)
    assert again.created_count == 0 and again.stats["existing"] >= run.created_count  # no duplicates of itself


def test_only_admins_start_runs_and_bad_frames_are_refused(team, synthetic_video):
    video, _ = synthetic_video(team.project)
    for person in (team.annotator, team.reviewer):
        with pytest.raises(EditRefused):
            start_run(video, person)
    with pytest.raises(EditRefused):
        start_run(video, team.admin, frame_index=3)


def test_clean_mask_removes_small_components_and_holes():
    mask = np.zeros((60, 60), bool)
    mask[5:45, 5:45] = True
    mask[20:25, 20:25] = False  # a 25 px hole
    mask[50:55, 50:55] = True  # a 25 px island
    cleaned = generate.clean_mask(mask)
    assert cleaned[22, 22] and not cleaned[52, 52] and cleaned.sum() == 40 * 40


def test_clean_mask_on_the_window_around_the_mask_is_the_same_as_on_the_whole_frame():
    """``clean_mask`` labels only the mask's bounding box (plus a pixel): the same result as the whole frame,
    with a background region cut by the window (a bay, a frame filled by the mask) taken for what it is."""
    rng = np.random.default_rng(0)
    cases = [np.zeros((40, 50), bool), np.ones((40, 50), bool)]
    bay = np.zeros((40, 60), bool)
    bay[5:35, 5:55] = True
    bay[5:12, 20:30] = False  # a 70 px bay reaching the window's edge: not a hole
    cases.append(bay)
    for _ in range(400):
        h, w = rng.integers(4, 50, 2)
        mask = rng.random((h, w)) < rng.random()
        if rng.random() < 0.5:
            mask = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        cases.append(~mask if rng.random() < 0.3 else mask)
    for mask in cases:
        for min_area in (1, 5, 30, generate.MIN_REGION_AREA):
            before = mask.copy()
            assert np.array_equal(generate.clean_mask(mask, min_area), generate._clean_whole_frame(mask, min_area))
            assert np.array_equal(mask, before)


def test_edge_support_tells_an_outlined_object_from_a_background_patch():
    image = np.full((80, 120, 3), 90, np.uint8)
    image[20:50, 30:70] = (200, 40, 40)  # an object with a hard edge
    strong = generate.strong_edges(
        generate.gradient_magnitude(image + np.random.default_rng(0).integers(0, 6, image.shape, np.uint8)))
    object_mask = np.zeros((80, 120), bool)
    object_mask[20:50, 30:70] = True
    patch = np.zeros_like(object_mask)
    patch[50:75, 75:115] = True  # even background all round
    assert generate.edge_support(strong, object_mask) > 0.95 > 0.1 > generate.edge_support(strong, patch)
    kept, stats = generate.select([generate.Proposal(object_mask, 0.95, edge_support=1.0),
                                   generate.Proposal(patch, 0.99, edge_support=0.05)])
    assert [p.edge_support for p in kept] == [1.0] and stats["weak_edges"] == 1


def test_select_drops_near_duplicates_and_existing_masks():
    a = np.zeros((100, 100), bool)
    a[10:40, 10:40] = True
    b = np.roll(a, 1, axis=1)  # IoU ~0.94 with a
    c = np.zeros_like(a)
    c[60:90, 60:90] = True
    kept, stats = generate.select([generate.Proposal(a, 0.9), generate.Proposal(b, 0.88), generate.Proposal(c, 0.95)],
                                  existing=[c])
    assert [p.stability for p in kept] == [0.9]
    assert (stats["duplicates"], stats["existing"]) == (1, 1)


@pytest.mark.slow
def test_sam2_auto_masklets_with_a_small_random_weight_model(team, synthetic_video, settings, monkeypatch):
    """The SAM 2 path end to end (automatic mask generator on the serving model at 256 px, on CPU).
    Random weights find nothing in particular, so this checks the plumbing and the invariants."""
    from engine.segmenters import forget_segmenters

    settings.SEGMENTER, settings.SAM2_IMAGE_SIZE, settings.SAM2_CHECKPOINT, settings.DEVICE = "sam2", 256, "", "cpu"
    # Random weights predict low IoUs: let the generator's own filters pass everything, and ours
    # keep anything, so masks reach cleanup, dedup, propagation and storage.
    from sam2 import automatic_mask_generator as amg

    class Permissive(amg.SAM2AutomaticMaskGenerator):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0,
                                               "box_nms_thresh": 1.0})

    monkeypatch.setattr(amg, "SAM2AutomaticMaskGenerator", Permissive)
    monkeypatch.setattr(generate, "select", functools.partial(generate.select, min_stability=0.0))
    spec = SyntheticSpec(seed=5, width=160, height=96, num_frames=12, num_objects=3)
    video, _ = synthetic_video(team.project, spec=spec)
    torch.manual_seed(2)  # the random weights, and so what they find (3 masklets with this seed)
    try:
        run = execute(start_run(video, team.admin, frame_index=0, points_per_side=8).pk)
        assert run.status == AutoMaskletRun.Status.DONE, run.error
        assert run.model_name.startswith("SAM 2.1 hiera-t @256") and run.progress == 1.0
        assert run.stats["proposals"] == sum(v for k, v in run.stats.items()
                                             if k in ("too_small", "too_large", "unstable", "weak_edges",
                                                      "duplicates", "existing", "kept"))
        auto = list(Masklet.objects.filter(video=video, type="auto"))
        assert len(auto) == run.created_count == run.stats["kept"] >= 1
        assert {m.status for m in auto} == {Masklet.Status.SUBMITTED}
        assert all(0 <= m.stability_score <= 1 for m in auto)
        _check_stored_tracks(video, auto)
        seeds = [decode_rle({"size": [video.height, video.width], "counts": m.frames.get(frame_index=0).rle_counts})
                 .astype(bool) for m in auto]
        assert not any(generate.is_duplicate(mask, seeds[:i]) for i, mask in enumerate(seeds))
        again = execute(start_run(video, team.admin, frame_index=0, points_per_side=8).pk)
        assert again.status == AutoMaskletRun.Status.DONE and again.created_count == 0, again.stats
    finally:
        forget_segmenters()


def test_a_cancelled_run_ends_cancelled_and_stores_nothing(team, synthetic_video, monkeypatch):
    video, _ = synthetic_video(team.project)
    queued = start_run(video, team.admin, frame_index=0)
    with pytest.raises(EditRefused):
        cancel_run(queued, team.reviewer)  # admins only
    assert cancel_run(queued, team.admin)
    assert execute(queued.pk).status == AutoMaskletRun.Status.CANCELLED  # its late message runs nothing
    assert not cancel_run(queued, team.admin)  # an ended run stays as it ended

    running = start_run(video, team.admin, frame_index=0)
    real_segmenter = runs.get_segmenter

    def cancelled_while_running(*args, **kwargs):
        assert cancel_run(AutoMaskletRun.objects.get(pk=running.pk), team.admin)
        return real_segmenter(*args, **kwargs)

    monkeypatch.setattr(runs, "get_segmenter", cancelled_while_running)
    ended = execute(running.pk)
    assert (ended.status, ended.created_count) == (AutoMaskletRun.Status.CANCELLED, 0) and ended.finished_at
    assert not Masklet.objects.filter(video=video).exists()
