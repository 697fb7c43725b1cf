"""``python manage.py loop_demo``: the data engine's loop on synthetic videos, on CPU, version after version."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from loop.loop_demo import DemoConfig, format_rows, loop_works, run_demo


class Command(BaseCommand):
    help = ("Random-weight tiny SAM 2 -> simulated annotators annotate a batch -> fine-tune v1 -> annotate the next "
            "batch with v1 -> v2 ...; prints clicks per masklet to J&F >= 0.9 and J&F after 1 and 3 clicks on "
            "held-out synthetic videos per version. Exits 1 when a version does not need fewer clicks.")

    def add_arguments(self, parser: Any) -> None:
        defaults = DemoConfig()
        parser.add_argument("--steps", default=",".join(map(str, defaults.steps)),
                            help="fine-tuning steps per version, comma-separated (one entry per batch)")
        parser.add_argument("--lrs", default=",".join(map(str, defaults.lrs)),
                            help="learning rate per version, comma-separated")
        parser.add_argument("--image-size", type=int, default=defaults.image_size)
        parser.add_argument("--videos-per-batch", type=int, default=defaults.videos_per_batch)
        parser.add_argument("--heldout-videos", type=int, default=defaults.heldout_videos)
        parser.add_argument("--frames", type=int, default=defaults.num_frames, help="native frames per video")
        parser.add_argument("--click-budget", type=int, default=defaults.click_budget)
        parser.add_argument("--seed", type=int, default=defaults.seed)
        parser.add_argument("--out", type=Path, help="keep the checkpoints here (default: a temporary folder)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            steps = tuple(int(s) for s in str(options["steps"]).split(",") if s.strip())
            lrs = tuple(float(s) for s in str(options["lrs"]).split(",") if s.strip())
            config = DemoConfig(steps=steps, lrs=lrs, batches=len(steps), image_size=options["image_size"],
                                videos_per_batch=options["videos_per_batch"],
                                heldout_videos=options["heldout_videos"], num_frames=options["frames"],
                                click_budget=options["click_budget"], seed=options["seed"])
        except ValueError as error:
            raise CommandError(str(error)) from None
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="masklet-loop-") as scratch:
            out = options["out"] or Path(scratch)
            rows = run_demo(config, out, log=lambda line: self.stdout.write(line))
        wall = time.perf_counter() - started
        self.stdout.write("")
        self.stdout.write(format_rows(rows))
        self.stdout.write(f"\nwall time {wall:.0f} s")
        if loop_works(rows):
            self.stdout.write(self.style.SUCCESS("the loop works: each version needs fewer clicks than the one before"))
        else:
            raise CommandError("the loop did not cut the clicks from version to version")
