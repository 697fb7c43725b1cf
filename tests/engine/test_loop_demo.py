"""``manage.py loop_demo`` at smoke size: one version, v0 -> annotate a batch -> fine-tune v1 -> measure both.

Whether each version needs fewer clicks than the one before is a measurement, not a smoke test:
the full demo (v0 -> v1 -> v2 at its defaults, ~10 min on 2 cores) is ``make bench``
(``bench/bench_loop_demo.py``; its table is in bench/README.md). Fine-tuning, evaluation and the
simulated clicker each have their own tests (tests/segmentation/test_training.py,
tests/engine/test_evaluation.py, tests/segmentation/test_clicker.py); this one checks they chain.
"""

from __future__ import annotations

import pytest
import torch
from django.core.management import call_command
from django.core.management.base import CommandError

from loop.loop_demo import DemoConfig, VersionRow, format_rows, loop_works, run_demo

#: One batch of one video, one held-out video, 2 annotated frames at 64 px, 2 fine-tuning steps.
SMOKE = DemoConfig(batches=1, steps=(2,), lrs=(1e-3,), videos_per_batch=1, heldout_videos=1, num_frames=8,
                   click_budget=3, image_size=64)


@pytest.mark.slow
def test_one_version_of_the_loop_is_annotated_fine_tuned_and_measured(tmp_path):
    lines: list[str] = []
    rows = run_demo(SMOKE, tmp_path, log=lines.append)

    assert [row.name for row in rows] == ["v0 (random init)", "v1"]
    v0, v1 = rows
    assert v0.checkpoint == str(tmp_path / "v0.pt") and v1.checkpoint == str(tmp_path / "v1.pt")
    assert 1 <= v0.annotation_clicks <= SMOKE.click_budget  # v0 annotated batch 1
    assert v1.annotation_clicks is None and v1.train_seconds > 0
    assert any(line.startswith("v1: 2 steps on 1 clips") for line in lines), lines
    for row in rows:
        assert row.summary["num_objects"] >= 1
        assert 1 <= row.clicks_to_target <= SMOKE.click_budget
        assert 0 <= row.jf_after(1) <= 1 and 0 <= row.jf_after(3) <= 1
    weights = [torch.load(tmp_path / f"v{n}.pt", map_location="cpu", weights_only=False)["model"] for n in (0, 1)]
    assert any(not torch.equal(weights[0][name], weights[1][name]) for name in weights[0]), "v1 is v0's weights"

    table = format_rows(rows).splitlines()
    assert table[0].split()[:2] == ["version", "clicks/masklet"]
    assert table[1].startswith("v0 (random init)") and table[2].startswith("v1 ")


def _row(name: str, clicks: float) -> VersionRow:
    return VersionRow(name, {"clicks_to_target": clicks, "jf_after": [0.5, 0.5, 0.5], "target_reached": 0.0}, "")


def test_the_loop_works_only_when_every_version_needs_fewer_clicks_than_the_one_before():
    assert loop_works([_row("v0", 12), _row("v1", 10.9), _row("v2", 9.8)])
    assert not loop_works([_row("v0", 12), _row("v1", 10.9), _row("v2", 10.9)])
    assert not loop_works([_row("v0", 12), _row("v1", 12.5)])


def test_the_command_refuses_a_learning_rate_list_that_does_not_match_the_steps():
    with pytest.raises(CommandError, match=r"steps and lrs need one entry per batch \(2\)"):
        call_command("loop_demo", "--steps", "100,200", "--lrs", "1e-3")
