"""How a worker answers the socket whose session message it serves, and tells the video's other sockets.

Replies go through ``engine.channel_bridge`` to the asking socket's channel as a ``SessionReply``
that names this worker's own queue and incarnation (the consumer routes the session's next
messages there, and notices when that process is gone); broadcasts go to the Channels group of
every annotation socket open on the video.
"""

from __future__ import annotations

from typing import Any

from engine import channel_bridge, heartbeat, protocol, workers
from engine.envelope import SessionEnvelope, SessionReply
from engine.segmenters import ServingModel


def annotation_group(video_id: int) -> str:
    """The Channels group of every annotation socket open on a video."""
    return f"annotate-video-{video_id}"


def track_stopped(reason: str, done: int, total: int, *, reported: bool = False) -> str:
    """The words of an error that ends a track after ``track_started``: why, and how much of it is
    stored and kept. ``reported``: ``done`` counts the progress the socket saw (the consumer's
    view when the channel layer dropped), so more may be stored; otherwise it is exact."""
    if done:
        frames = f"{'at least ' if reported else ''}{done} of {total} frame{'' if total == 1 else 's'}"
        one = done == 1 and not reported
        kept = f"{frames} {'was' if one else 'were'} tracked and stored before it and {'is' if one else 'are'} kept"
    else:
        kept = "any frames it stored are kept" if reported else "no frame had been stored yet"
    return f"{reason.rstrip('. ')}; {kept}. Track again to continue."


class Replier:
    """Sends replies to the asking socket and broadcasts to the others on the video."""

    def __init__(self, envelope: SessionEnvelope):
        self.envelope = envelope
        self.re = envelope.message.get("id")

    def reply(self, msg: dict[str, Any], *, final: bool, **event_fields: Any) -> None:
        reply = SessionReply(op=self.envelope.op, attempt=self.envelope.attempt, worker=workers.own_queue(),
                             incarnation=heartbeat.worker_incarnation(), final=final, message=msg, **event_fields)
        channel_bridge.send(self.envelope.reply_channel, reply.event())

    def model_changed(self, serving: ServingModel, text: str) -> None:
        """The page's version is gone: show the model now serving it, say why, re-pin the consumer."""
        # ``model_version`` (null: the settings' model) is what the page asks for when it reconnects.
        worker = protocol.message("worker", state="ready", model=serving.name, model_fallback=serving.fallback) | {
            "model_version": serving.model_version_id}
        for msg in (worker, protocol.error("model_changed", text)):
            self.reply(msg, final=False, model_version=serving.model_version_id)

    def answer(self, type_: str, **fields: Any) -> None:
        """The final reply to the message (carries ``re``)."""
        self.reply(protocol.message(type_, re=self.re, **fields), final=True)

    def error(self, code: str, text: str) -> None:
        self.reply(protocol.error(code, text, re=self.re) | {"op": self.envelope.op}, final=True)

    def broadcast(self, type_: str, **fields: Any) -> None:
        msg = protocol.message(type_, by=self.envelope.username, **fields)
        channel_bridge.group_send_soon(annotation_group(self.envelope.video_id),
                                       {"type": "annotate.broadcast", "message": msg,
                                        "exclude": self.envelope.reply_channel})
