"""Flags between an annotation socket and the worker serving its session, kept in the shared cache.

The socket's consumer and the worker that serves its model messages may be different processes
on different machines: they agree through cache keys, read by the worker once per message (and
once per frame of a track). A socket asks a running track to stop (``request_cancel``), says it is
gone (``abandon_session``: its queued messages are skipped, a running track stops), or gives up on
one delivery whose worker died (``abandon_op``: should the broker deliver it again, it is skipped).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.cache import cache

from engine import heartbeat, workers
from engine.envelope import SessionEnvelope

logger = logging.getLogger(__name__)

#: Cache keys live this long: long enough for any propagation, short enough to clean themselves up.
FLAG_SECONDS = 3600


def cancel_key(op: str) -> str:
    return f"masklet:cancel:{op}"


def abandoned_session_key(session_id: str) -> str:
    return f"masklet:abandoned-session:{session_id}"


def abandoned_op_key(op: str, attempt: int) -> str:
    return f"masklet:abandoned-op:{op}:{attempt}"


def request_cancel(op: str) -> None:
    """Ask the worker running ``op`` (a track) to stop after the frame it is on."""
    cache.set(cancel_key(op), True, timeout=FLAG_SECONDS)


def abandoned_flag_seconds() -> float:
    """How long "abandoned" flags live: past the broker's visibility timeout, after which Redis
    delivers a killed worker's unacked message again; it must still find its flag and be skipped."""
    return settings.BROKER_VISIBILITY_SECONDS + FLAG_SECONDS


def abandon_session(session_id: str) -> None:
    """The socket is gone: queued messages of its session are skipped, a running track stops."""
    cache.set(abandoned_session_key(session_id), True, timeout=abandoned_flag_seconds())


def abandon_op(op: str, attempt: int) -> None:
    """The consumer gave up on this delivery (its worker died): never run it if it resurfaces."""
    cache.set(abandoned_op_key(op, attempt), True, timeout=abandoned_flag_seconds())


def read_state(envelope: SessionEnvelope) -> tuple[bool, str | None]:
    """(abandoned, the session's current owner queue): one cache round trip per message."""
    owner = workers.owner_key(envelope.video_id, envelope.user_id)
    found = cache.get_many([abandoned_session_key(envelope.session), abandoned_op_key(envelope.op, envelope.attempt),
                            owner])
    return bool(found.keys() - {owner}), found.get(owner)


def stop_requested(envelope: SessionEnvelope) -> bool:
    """A track stops when cancelled, when its socket or its delivery was abandoned, or (watched)
    when its socket stopped saying it is alive."""
    alive = heartbeat.socket_alive_key(envelope.session)
    found = cache.get_many([cancel_key(envelope.op), abandoned_session_key(envelope.session),
                            abandoned_op_key(envelope.op, envelope.attempt), *([alive] if envelope.watched else [])])
    if envelope.watched and alive not in found:
        logger.warning("op %s of session %s stops: its socket is gone", envelope.op, envelope.session)
        return True
    return bool(found.keys() - {alive})
