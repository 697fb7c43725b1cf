"""The live sessions a worker process holds, one per (video, user), bounded and aged.

A live session keeps a segmenter session (SAM 2 memory of a video) warm between the messages of
one person's page. It is only a cache of the database (the data app rebuilds it from stored masks),
so the registry may close any session nobody is using: the least recently used beyond
``settings.WORKER_SESSIONS``, and those idle longer than ``settings.SESSION_IDLE_SECONDS`` (on the
worker's heartbeat thread too, not only when a message arrives).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from django.conf import settings

from engine.segmenters import ServingModel


class HeldSession:
    """What the registry keeps of a live session: the model it runs, when it was last used, how many
    messages use it now; ``close`` releases its memory."""

    def __init__(self, serving: ServingModel):
        self.serving = serving
        self.last_used = time.monotonic()
        #: Messages being served with this session right now (the idle sweep leaves it alone).
        self.busy = 0

    def close(self) -> None:  # noqa: B027  (optional hook: a session holding nothing closes as it is)
        """Release the session's memory."""


Session = TypeVar("Session", bound=HeldSession)


class SessionRegistry(Generic[Session]):
    """The live sessions of this process, keyed by (video_id, user_id).

    ``checkout`` / ``get`` mark a session busy until ``release``: the idle sweep (on the worker's
    heartbeat thread) and the bound never close a session a task is using.
    """

    def __init__(self) -> None:
        self._sessions: OrderedDict[tuple[int, int], Session] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def keys(self) -> list[tuple[int, int]]:
        with self._lock:
            return list(self._sessions)

    def _use(self, key: tuple[int, int], live: Session) -> Session:
        """Mark ``live`` in use and most recently used (call holding the lock)."""
        self._sessions.move_to_end(key)
        live.last_used = time.monotonic()
        live.busy += 1
        return live

    def checkout(self, video_id: int, user_id: int) -> Session | None:
        """The live session if this process holds one, marked busy (``release`` it)."""
        with self._lock:
            live = self._sessions.get((video_id, user_id))
            return self._use((video_id, user_id), live) if live is not None else None

    def release(self, live: Session) -> None:
        with self._lock:
            live.busy = max(0, live.busy - 1)
            live.last_used = time.monotonic()

    def get(self, video_id: int, user_id: int, serving: ServingModel,
            open_session: Callable[[], Session]) -> tuple[Session, bool]:
        """The live session marked busy (``release`` it), and whether it is new: opened with
        ``open_session()`` when absent or when it runs another model than ``serving``."""
        key = (video_id, user_id)
        with self._lock:
            live = self._sessions.get(key)
            if live is not None and live.serving != serving:
                self._sessions.pop(key).close()
                live = None
            if live is not None:
                return self._use(key, live), False
        live = open_session()
        closing = []
        with self._lock:
            self._sessions[key] = live
            self._use(key, live)
            limit = max(1, settings.WORKER_SESSIONS)
            for other_key, other in list(self._sessions.items()):
                if len(self._sessions) <= limit:
                    break
                if not other.busy:
                    closing.append(self._sessions.pop(other_key))
        for evicted in closing:
            evicted.close()
        return live, True

    def evict_idle(self) -> int:
        """Close sessions idle longer than ``SESSION_IDLE_SECONDS`` (not in use); returns how many."""
        limit = time.monotonic() - settings.SESSION_IDLE_SECONDS
        with self._lock:
            idle = [key for key, live in self._sessions.items() if live.last_used < limit and not live.busy]
            closing = [self._sessions.pop(key) for key in idle]
        for live in closing:
            live.close()
        return len(closing)

    def drop(self, video_id: int, user_id: int) -> None:
        with self._lock:
            live = self._sessions.pop((video_id, user_id), None)
        if live is not None:
            live.close()

    def clear(self) -> None:
        with self._lock:
            closing = list(self._sessions.values())
            self._sessions.clear()
        for live in closing:
            live.close()
