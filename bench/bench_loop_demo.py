"""The data engine's loop at full demo size: does each fine-tuned version need fewer clicks than the one before?

    .venv/bin/python bench/bench_loop_demo.py                       # the defaults: v0 -> v1 -> v2 (~10 min on 2 cores)
    .venv/bin/python bench/bench_loop_demo.py --steps 100,200,200 --lrs 1e-3,3e-4,1e-4   # one more version

Runs ``manage.py loop_demo`` (any of its options can be passed) in a throwaway embedded-mode data
dir: a random-weight tiny SAM 2 (v0, the baseline measured in the same run) annotates batch 1
through simulated annotators, v1 is fine-tuned on it, annotates batch 2, v2 is fine-tuned on both;
every version is measured on the same held-out synthetic videos. Prints the table (clicks per
masklet to J&F >= 0.9, J&F after 1 and 3 clicks) and exits 1 unless each version needs fewer clicks
than the one before. The test suite runs one version at smoke size (tests/engine/test_loop_demo.py).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="masklet-bench-loop-") as data_dir:
        os.environ["MASKLET_DATA_DIR"] = data_dir
        os.environ.pop("DATABASE_URL", None)
        os.environ.pop("REDIS_URL", None)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        sys.path.insert(0, str(REPO_ROOT))
        import django
        from django.core.management import call_command
        from django.core.management.base import CommandError

        django.setup()
        try:
            call_command("loop_demo", *argv)
        except CommandError as error:
            print(f"FAIL: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
