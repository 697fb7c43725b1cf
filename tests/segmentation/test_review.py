"""The quality radar's measurement: review metrics on hand-made cases, the classical backend's
quality score on a scene where tracking is known to fail, and the review protocol end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from segmentation.classical import ClassicalSegmenter
from segmentation.clicker import review_protocol
from segmentation.evaluate import format_table, main
from segmentation.frames import ArrayFrames
from segmentation.metrics import frames_to_find, review_metrics
from segmentation.quality import SIGNALS, classical_quality

# -- metrics on hand-made cases ---------------------------------------------------------------

# Object A: frames 1 and 3 are bad (J&F < 0.7) and scored lowest; object B: frame 0 is bad, but
# frame 2 (good) is scored lower than it.
A = ([0.9, 0.2, 0.8, 0.1], [0.9, 0.3, 0.8, 0.5])
B = ([0.5, 0.6, 0.4], [0.6, 0.95, 0.85])


def test_frames_to_find_counts_frames_examined_until_90_percent_of_the_bad_ones():
    bad = [False, True, False, True, True]
    assert frames_to_find(range(5), bad) == 5  # ceil(0.9 * 3) = 3 bad frames: the last is frame 4
    assert frames_to_find([4, 3, 1, 0, 2], bad) == 3
    assert frames_to_find([0, 2, 1, 3, 4], bad) == 5
    assert frames_to_find(range(3), [False] * 3) == 0
    assert frames_to_find(range(10), [True] * 10) == 9  # 90 % of 10
    with pytest.raises(ValueError, match="does not visit"):
        frames_to_find([0], [False, True])


def test_review_metrics_on_known_scores():
    review = review_metrics([A, B])
    # Good frames scored 0.9, 0.8, 0.6, 0.4; bad ones 0.2, 0.1, 0.5: 11 of the 12 (good, bad) pairs are
    # ordered right (0.4 < 0.5 is not).
    assert review["auroc"] == pytest.approx(11 / 12)
    # Score ranks 7 2 6 1 4 5 3, J&F ranks 6 1 4 2 3 7 5: sum of squared differences 16 over 7 frames.
    assert review["spearman"] == pytest.approx(1 - 6 * 16 / (7 * (7**2 - 1)))
    # A: 2 bad, both needed; lowest first finds them after 2 frames, in order after 4.
    # B: 1 bad; lowest first looks at frame 2 before frame 0 (2 frames), in order it is the first.
    assert review["frames_to_find_90pct_bad"] == {"radar": 2 + 2, "sequential": 4 + 1}
    assert (review["frames"], review["bad_frames"]) == (7, 3)


def test_review_metrics_when_nothing_separates():
    flat = review_metrics([([0.5, 0.5, 0.5], [0.9, 0.2, 0.95])])
    assert flat["auroc"] == pytest.approx(0.5) and flat["spearman"] is None
    assert flat["frames_to_find_90pct_bad"] == {"radar": 2, "sequential": 2}  # ties in frame order
    all_good = review_metrics([([0.1, 0.9], [0.8, 0.9])])
    assert all_good["auroc"] is None and all_good["frames_to_find_90pct_bad"] == {"radar": 0, "sequential": 0}
    with pytest.raises(ValueError, match="2 scores but 1"):
        review_metrics([([0.1, 0.2], [0.5])])


def test_the_classical_score_is_its_weakest_signal():
    fine = {"presence": 1.0, "flow_agreement": 0.95, "area_change": 0.0, "fb_error": 0.0, "edge_agreement": 0.7,
            "separation": 0.6}
    assert classical_quality(fine).score == pytest.approx(0.95)
    assert set(classical_quality(fine).features) == set(SIGNALS)
    assert classical_quality({**fine, "separation": 0.1}).score == pytest.approx(0.2)
    assert classical_quality({**fine, "fb_error": 0.4}).score == pytest.approx(0.6)
    assert classical_quality({**fine, "area_change": 0.5}).score == pytest.approx(np.exp(-2), abs=1e-4)
    assert classical_quality({**fine, "presence": 0.0}).score == 0.0


# -- the classical backend on a scene where tracking fails halfway ----------------------------

H, W, N, JUMP = 96, 128, 10, 5


def jumping_square() -> tuple[ArrayFrames, dict[int, np.ndarray]]:
    """A red square drifting right on a textured background, that jumps across the frame at frame
    ``JUMP``: flow cannot follow a jump, so the tracked mask is wrong from there on."""
    rng = np.random.default_rng(0)
    background = rng.integers(40, 140, (H, W, 3), dtype=np.uint8)
    frames, gt = [], {}
    for t in range(N):
        x, y = (10 + 2 * t, 20) if t < JUMP else (80 + 2 * (t - JUMP), 60)
        frame = background.copy()
        frame[y:y + 24, x:x + 24] = (230, 30, 30)
        mask = np.zeros((H, W), bool)
        mask[y:y + 24, x:x + 24] = True
        frames.append(frame)
        gt[t] = mask
    return ArrayFrames(np.stack(frames)), gt


def test_the_review_protocol_scores_every_frame_and_the_lost_ones_lowest():
    frames, gt = jumping_square()
    with ClassicalSegmenter().open_session(frames) as session:
        review = review_protocol(session, gt, object_id=1, clicks_per_frame=3)
    assert review.prompted_frame == 0 and 1 <= review.clicks <= 3
    assert review.frames == list(range(1, N)) and review.unrated == 0
    assert all(0.0 <= score <= 1.0 for score in review.scores)
    assert all(set(SIGNALS) <= set(features) for features in review.features)
    before, after = review.scores[: JUMP - 1], review.scores[JUMP - 1:]
    assert min(review.jf[: JUMP - 1]) >= 0.7 and max(review.jf[JUMP - 1:]) < 0.7  # the scene does what it says
    assert min(before) > max(after), review.scores
    metrics = review_metrics([(review.scores, review.jf)])
    assert metrics["auroc"] == 1.0
    assert metrics["frames_to_find_90pct_bad"]["radar"] < metrics["frames_to_find_90pct_bad"]["sequential"]


def test_review_protocol_from_the_command_line(davis_root, tmp_path, capsys):
    out = tmp_path / "review.json"
    args = ["--data", str(davis_root), "--layout", "davis", "--backend", "classical", "--sequences", "blackswan",
            "--limit-frames", "6", "--protocol", "review", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "AUROC" in printed and "sequential" in printed and "all (pooled)" in printed
    results = json.loads(out.read_text())
    (entry,) = results["videos"][0]["objects"]
    assert entry["review"]["frames"] == [1, 2, 3, 4, 5] and len(entry["review"]["scores"]) == 5
    review = results["summary"]["review"]
    assert set(review) == {"auroc", "spearman", "frames_to_find_90pct_bad", "frames", "bad_frames"}
    assert review["frames"] == 5 and set(review["frames_to_find_90pct_bad"]) == {"radar", "sequential"}
    assert format_table(results).splitlines()[-1].startswith("all (pooled)")
