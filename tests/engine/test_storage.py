"""The storage layer's local side and the machine's object cache (``engine.storage``, ``engine.cache``).

The bucket side runs against a real S3 API in ``tests/annotator/test_object_storage.py``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine import storage
from engine.cache import ObjectCache, object_cache


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


def fill(path: Path, size: int, byte: bytes = b"x") -> None:
    path.write_bytes(byte * size)


def test_the_cache_fetches_once_and_evicts_the_least_recently_used(tmp_path):
    cache = ObjectCache(tmp_path / "cache", limit_bytes=1000)
    fetched = []

    def fetcher(size):
        def fetch(target: Path) -> None:
            fetched.append(target.name)
            fill(target, size)
        return fetch

    for index in range(4):
        cache.path(f"frames/1/{index}.jpg", fetcher(200))
        os.utime(cache.root / f"frames/1/{index}.jpg", (index, index))  # older entries: less recently used
    assert len(fetched) == 4 and cache.size() == 800
    assert cache.path("frames/1/0.jpg", fetcher(200)).read_bytes() == b"x" * 200  # a hit bumps it
    assert len(fetched) == 4
    cache.path("frames/1/4.jpg", fetcher(300))  # 1100 > 1000: out down to 80 % (800), oldest first
    assert not cache.contains("frames/1/1.jpg") and not cache.contains("frames/1/2.jpg")
    assert all(cache.contains(f"frames/1/{index}.jpg") for index in (0, 3, 4))
    assert cache.size() <= 800
    assert not [p for p in cache.root.rglob("*.part")]  # no temporary files left


def test_a_failed_fetch_leaves_nothing(tmp_path):
    cache = ObjectCache(tmp_path / "cache", limit_bytes=1000)

    def broken(target: Path) -> None:
        fill(target, 50)
        raise storage.StorageError("the storage cannot be reached")

    with pytest.raises(storage.StorageError):
        cache.path("frames/1/0.jpg", broken)
    assert not cache.contains("frames/1/0.jpg") and not [p for p in cache.root.rglob("*") if p.is_file()]


def _hammer(root: str, worker: int, rounds: int) -> int:
    """Another process using the same cache: fetch and re-read many keys while others evict."""
    cache = ObjectCache(root, limit_bytes=20_000)
    wrong = 0
    for step in range(rounds):
        key = f"frames/{step % 40}.jpg"
        data = cache.read_bytes(key, lambda target, k=key: target.write_bytes(k.encode() * 100))
        wrong += data != key.encode() * 100
    return wrong


def test_several_processes_share_one_bounded_cache(tmp_path):
    root = tmp_path / "cache"
    context = multiprocessing.get_context("spawn")
    with context.Pool(3) as pool:
        results = pool.starmap(_hammer, [(str(root), worker, 300) for worker in range(3)])
    assert results == [0, 0, 0]  # every read saw a whole, right file
    cache = ObjectCache(root, limit_bytes=20_000)
    # over the limit by at most what each process adds between its scans (RESCAN_SHARE of it, one entry here)
    assert cache.size() <= 20_000 + 3 * 1_500
    assert not [p for p in root.rglob("*.part")]


def test_cached_frames_fetch_ahead_in_the_direction_of_travel(tmp_path, settings, monkeypatch):
    """A session over frames that are not on this machine: reading frame i fetches the next ones in the background."""
    settings.CACHE_ROOT = tmp_path / "cache"
    source = tmp_path / "stored"
    source.mkdir()
    for index in range(20):
        cv2.imwrite(str(source / f"{index * 4:05d}.jpg"), np.full((24, 32, 3), index * 10, np.uint8))
    frames = storage.VideoFrames(7)
    monkeypatch.setattr(storage, "fetch_to",
                        lambda area, name, target: shutil.copyfile(source / name.rsplit("/", 1)[-1], target))
    names = sorted(path.name for path in source.iterdir())
    cached = storage.CachedFrames(frames, "g1", names)
    cache = object_cache()

    def on_disk(index: int) -> bool:
        return cache.contains(f"frames/7/g1/{names[index]}")

    assert len(cached) == 20 and (cached.height, cached.width) == (24, 32)
    assert cached[0][0, 0, 0] == 0
    wait_for(lambda: all(on_disk(i) for i in range(1, 1 + storage.PREFETCH)))
    assert not on_disk(1 + storage.PREFETCH + 1)
    assert cached[15][0, 0, 0] == 150
    cached[14]  # moving backwards now: the frames before it come next
    wait_for(lambda: all(on_disk(i) for i in range(14 - storage.PREFETCH, 14)))
    assert int(cached[19][0, 0, 0]) == 190


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_the_storage_benchmark_runs(tmp_path):
    """``bench/bench_storage.py --quick``: every case reads and tracks every frame (the numbers are the bench's)."""
    out = tmp_path / "storage.json"
    result = subprocess.run([sys.executable, "bench/bench_storage.py", "--quick", "--out", str(out)],
                            cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(row["what"], row["case"]) for row in rows] == [
        (what, case) for what in ("read", "track") for case in ("local", "s3 cold", "s3 warm")]
    assert all(row["fps"] > 0 for row in rows) and "warm track vs local" in result.stdout
