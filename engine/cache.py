"""A bounded on-disk cache of stored objects on one machine, shared by its processes (``MASKLET_DATA_DIR/cache/``).

A web server or worker that does not hold the storage itself (``s3://`` storage) reads frames,
originals and checkpoints through it. Entries are whole files named by their storage key (keys are
built from checked names only, ``engine.storage.key``). A new entry is downloaded to a temporary
name beside its place and renamed there, so no reader sees half a file, and several processes that
fetch the same object at once only race to rename identical files.

Least recently used out: reading an entry bumps its modification time; when this process's count
of the cache's size (a scan, plus what it added since; rescanned every ``RESCAN_SHARE`` of the
limit it adds) passes ``limit_bytes``, it takes an exclusive ``flock`` on ``.lock`` (waiting while
another process evicts), scans the cache and deletes the oldest entries until it is under
``LOW_WATER`` of the limit. Waiting rather than skipping keeps the bound: a process that skipped
left what it added to an eviction whose scan was taken before it, and a slow evictor on a loaded
machine let three processes fill a 20 kB cache to 51 kB. A reader holding a deleted file open keeps
reading it (POSIX); a reader that finds its entry gone between the lookup and the open fetches it again.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from django.conf import settings

logger = logging.getLogger(__name__)

#: Eviction stops once the cache holds at most this share of its limit (room for the next few entries).
LOW_WATER = 0.8
#: A process scans the cache again once it has added this share of the limit (its own count misses what the
#: other processes add): the cache stays within about the limit plus this share per process.
RESCAN_SHARE = 0.05
#: A temporary download untouched this long belongs to a killed process.
STALE_PART_S = 3600
PART = ".part"

Fetch = Callable[[Path], None]  # writes the object's bytes to the given (new) file


class ObjectCache:
    """Files by key under ``root``, at most about ``limit_bytes`` in all (see the module doc)."""

    def __init__(self, root: str | os.PathLike, limit_bytes: int):
        self.root = Path(root)
        self.limit_bytes = max(0, int(limit_bytes))
        self._size: int | None = None  # this process's count, from the last scan plus what it added since
        self._since_scan = 0
        self._lock = threading.Lock()

    def path(self, key: str, fetch: Fetch) -> Path:
        """The local file of ``key``, fetched with ``fetch`` when absent; marks it recently used."""
        target = self.root / key
        try:
            os.utime(target)
            return target
        except FileNotFoundError:
            pass
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}{PART}")
        try:
            fetch(part)
            size = part.stat().st_size
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)
        self._added(size)
        return target

    def read_bytes(self, key: str, fetch: Fetch) -> bytes:
        """The bytes of ``key`` (fetched when absent); an entry evicted between lookup and open is fetched again."""
        for _ in range(2):
            try:
                return self.path(key, fetch).read_bytes()
            except FileNotFoundError:
                pass
        return self.path(key, fetch).read_bytes()

    def contains(self, key: str) -> bool:
        return (self.root / key).is_file()

    def size(self) -> int:
        """Bytes held now (a scan)."""
        return sum(size for _, size, _ in self._entries())

    def _added(self, size: int) -> None:
        with self._lock:
            self._since_scan += size
            if self._size is None or self._since_scan >= self.limit_bytes * RESCAN_SHARE:
                self._size, self._since_scan = self.size(), 0  # a scan counts what the other processes added
            else:
                self._size += size
            over = self._size > self.limit_bytes
        if over:
            self.evict()

    def evict(self) -> int:
        """Delete the least recently used entries down to ``LOW_WATER`` of the limit; returns how many.

        One process at a time, each after the one before it (its scan then sees what that one left).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                return self._evict_locked()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _evict_locked(self) -> int:
        entries = sorted(self._entries(), key=lambda entry: entry[2])  # oldest use first
        total = sum(size for _, size, _ in entries)
        goal = int(self.limit_bytes * LOW_WATER)
        removed = 0
        for path, size, _ in entries:
            if total <= goal:
                break
            try:
                path.unlink()
            except FileNotFoundError:  # another process took it
                pass
            total -= size
            removed += 1
        with self._lock:
            self._size = total
        if removed:
            logger.info("cache %s: %d entries out, %.1f MB left", self.root, removed, total / 2**20)
        return removed

    def _entries(self) -> list[tuple[Path, int, float]]:
        """(path, size, last use) of every entry; removes temporary files a killed process left."""
        found = []
        stale = time.time() - STALE_PART_S
        for folder, _, files in os.walk(self.root):
            for name in files:
                path = Path(folder, name)
                try:
                    info = path.stat()
                except FileNotFoundError:
                    continue
                if name.endswith(PART) or name == ".lock":
                    if name != ".lock" and info.st_mtime < stale:
                        path.unlink(missing_ok=True)
                    continue
                found.append((path, info.st_size, info.st_mtime))
        return found


@lru_cache(maxsize=4)
def _cache_at(root: str, limit_bytes: int) -> ObjectCache:
    return ObjectCache(root, limit_bytes)


def object_cache() -> ObjectCache:
    """This process's view of the machine's cache (``settings.CACHE_ROOT``, ``CACHE_BYTES``)."""
    return _cache_at(str(settings.CACHE_ROOT), settings.CACHE_BYTES)
