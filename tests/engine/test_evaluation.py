"""How versions are measured and compared: ``loop.evaluation`` on the val split, against numbers
worked out by hand from the simulated annotator and the paper's time model (1 s to locate a
frame, 1.5 s per click, 30 s to examine 300 frames; ``docs/DATA_ENGINE.md``)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from annotator.models import Masklet, Project, Split, Video
from annotator.services.masks import MaskWrite, save_mask_frames
from loop.evaluation import EvalSettings, beats, evaluate_segmenter, val_records
from segmentation.masks import encode_rle
from tests.segmentation.test_clicker import GT, SIZE, DiscSegmenter

# -- beats: when a candidate replaces production ------------------------------------------------


def summary(jf: float | None, clicks: float | None) -> dict:
    return {"jf": jf, "clicks_to_target": clicks}


def test_a_candidate_better_by_the_margin_with_no_more_clicks_beats_production():
    better, why = beats(summary(0.70, 3.0), summary(0.60, 3.0), margin=0.05)
    assert better and why == "J&F 0.700 vs 0.600 (margin 0.050)"
    assert beats(summary(0.75, 2.0), summary(0.50, 4.0), margin=0.25)[0]  # exactly the margin is enough


def test_a_candidate_below_the_margin_does_not_beat_production():
    better, why = beats(summary(0.64, 2.0), summary(0.60, 4.0), margin=0.05)
    assert not better and why == "J&F 0.640 is not 0.050 above production's 0.600"
    assert not beats(summary(0.55, 2.0), summary(0.60, 4.0), margin=0.0)[0]  # worse J&F, even with no margin


def test_a_candidate_with_better_jf_but_more_clicks_to_target_does_not_beat_production():
    better, why = beats(summary(0.80, 5.0), summary(0.60, 4.0), margin=0.01)
    assert not better and why == "needs more clicks to target (5.0 > 4.0)"


def test_without_a_production_evaluation_promotion_is_left_to_an_admin():
    assert beats(summary(0.99, 1.0), None, margin=0.0) == (False, "no production version to compare with")
    assert beats(summary(0.99, 1.0), {}, margin=0.0)[0] is False
    assert beats(summary(None, 1.0), summary(0.5, 2.0), margin=0.0) == (False, "missing J&F")


# -- evaluate_segmenter on the project's val split ------------------------------------------------


@pytest.mark.django_db
def test_val_split_evaluation_counts_clicks_and_annotation_seconds_as_the_time_model_says(settings, tmp_path):
    """One val object that sits at A on frames 0-1, at B on 2-3 and is gone on 4 (stride 1, 32x32),
    measured with the disc oracle whose every answer is known (tests/segmentation/test_clicker.py)."""
    settings.FRAMES_ROOT = tmp_path / "frames"
    project = Project.objects.create(name="eval", slug="eval")
    video = Video.objects.create(project=project, name="ab", status=Video.Status.READY, fps=24, frame_count=5,
                                 stride=1, width=SIZE, height=SIZE, annotated_frame_count=5, split=Split.VAL)
    video.frames_dir.mkdir(parents=True)
    for index in range(5):
        cv2.imwrite(str(video.frames_dir / f"{index:05d}.jpg"), np.zeros((SIZE, SIZE, 3), np.uint8))
    masklet = Masklet.objects.create(video=video, object_id=1, status=Masklet.Status.APPROVED)
    save_mask_frames(masklet, [MaskWrite(f, encode_rle(GT[f])) for f in range(4)], source="human")
    Masklet.objects.create(video=video, object_id=2, status=Masklet.Status.SUBMITTED)  # not ground truth yet

    records, key = val_records(project)
    assert [r.object_ids for r in records] == [[1]] and len(key) == 16
    assert all((records[0].gt_masks(1)[f] == GT[f]).all() for f in range(5))
    progress = []
    result = evaluate_segmenter(DiscSegmenter(GT), records,
                                EvalSettings(clicks=3, max_frames=3, target=0.9, click_budget=20),
                                on_object=lambda done, total: progress.append((done, total)))
    assert progress == [(1, 1)]
    # Offline protocol, 3 clicks per prompted frame: frame 0 (+A), frame 2 (+B, -A), frame 4 (-B):
    # 3 frames located, 4 clicks, 3 propagations of the 5-frame video watched.
    assert result["jf_after"] == pytest.approx([0.4, 0.8, 1.0])
    assert result["jf"] == pytest.approx(1.0)
    assert result["annotation_seconds"] == pytest.approx(3 * 1.0 + 4 * 1.5 + 3 * 30.0 * 5 / 300)  # 10.5 s
    # Clicks to J&F >= 0.9, one click a round: 5 clicks, 4 changes of the clicked frame, 5 propagations.
    assert result["clicks_to_target"] == 5 and result["target_reached"] == 1.0
    assert result["target_seconds"] == pytest.approx(4 * 1.0 + 5 * 1.5 + 5 * 30.0 * 5 / 300)  # 14.0 s
    assert (result["num_objects"], result["clicks_per_frame"], result["click_budget"]) == (1, 3, 20)

    # The same ground truth gives the same key (a production evaluation is reused); an edit changes it.
    assert val_records(project)[1] == key
    save_mask_frames(masklet, [MaskWrite(0, encode_rle(GT[2]))], source="human")
    assert val_records(project)[1] != key
