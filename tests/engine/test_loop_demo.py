"""The loop works: ``manage.py loop_demo`` trains v1 and v2 on CPU and each needs fewer clicks than the one before.

The whole demo at its defaults (tiny SAM 2 from random weights at 128 px, 128x96 synthetic
videos of 3 annotated frames, real fine-tuning steps); see the README for its wall time.
"""

from __future__ import annotations

import io

import pytest
from django.conf import settings
from django.core.management import call_command

# About 12 minutes on a 2-core CPU, and nothing in it depends on the mode: CI's embedded pass runs it,
# the Postgres + Redis pass skips it.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not settings.EMBEDDED, reason="mode-independent and slow: runs in the embedded pass"),
]


def test_loop_demo_cuts_the_clicks_version_after_version(tmp_path):
    out = io.StringIO()
    call_command("loop_demo", "--out", str(tmp_path), stdout=out)
    text = out.getvalue()
    assert "the loop works" in text, text
    for version in ("v0 (random init)", "v1", "v2"):
        assert version in text
    assert (tmp_path / "v2.pt").is_file()
