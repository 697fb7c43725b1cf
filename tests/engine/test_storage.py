"""The storage layer's local side and the machine's object cache (``engine.storage``, ``engine.cache``).

The bucket side runs against a real S3 API in ``tests/annotator/test_object_storage.py``.
"""

from __future__ import annotations

import pytest

from engine import storage


@pytest.mark.parametrize("exchange", ["renameat2", "fallback"])
def test_swap_into_place_leaves_exactly_the_new_folder(tmp_path, monkeypatch, exchange):
    if exchange == "fallback":
        monkeypatch.setattr(storage, "_exchange", None)  # non-Linux path: move aside, rename, delete
    elif storage._exchange is None:
        pytest.skip("renameat2 is not available on this platform")
    root = tmp_path / "frames"
    root.mkdir()
    target, new = root / "7", root / ".ingest-7-x"
    target.mkdir()
    (target / "00000.jpg").write_text("old")
    (target / "00004.jpg").write_text("old")
    new.mkdir()
    (new / "00000.jpg").write_text("new")
    storage.swap_into_place(new, target)
    assert sorted(p.name for p in root.iterdir()) == ["7"]
    assert [(p.name, p.read_text()) for p in target.iterdir()] == [("00000.jpg", "new")]
