"""The worker envelope: what the annotation socket sends a GPU worker with each model message, and
the reply event the worker sends back over the channel layer. Both sides build and read these two
models, so a field renamed on one side fails at once on the other instead of being read as missing.

The envelope travels as a Celery task's only argument (JSON: ``SessionEnvelope.wire()``), the reply
as a channel-layer event (``SessionReply.event()``, dispatched to the consumer's ``session_reply``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class SessionEnvelope(BaseModel):
    """One model message (click, box, paint, clear, restore, track) of one socket, for a worker."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The socket's session id (abandon flags, the socket-alive key, cancel flags hang on it).
    session: str
    #: The consumer's channel: where replies go.
    reply_channel: str
    user_id: int
    username: str = ""
    video_id: int
    #: This message's id across deliveries; ``attempt`` counts re-deliveries after a worker was lost.
    op: str
    attempt: int = 0
    #: The client message as ``engine.protocol`` parsed it.
    message: dict[str, Any]
    #: The consumer does not know which worker holds the session yet: name yourself first.
    assign: bool = False
    #: The page's model version (None: the settings' model). An envelope without the field follows
    #: the project's serving model (``pinned`` False).
    model_version: int | None = None
    #: The socket renews its socket-alive key while this runs (a track, services mode): when it
    #: stops doing so, nobody hears this track any more and it stops.
    watched: bool = False

    @property
    def pinned(self) -> bool:
        """Whether the page named its model version (even None, the settings' model)."""
        return "model_version" in self.model_fields_set

    def wire(self) -> dict[str, Any]:
        """The JSON-ready dict a task carries (fields never set stay out, so ``pinned`` survives)."""
        return self.model_dump(exclude_unset=True)

    def again(self, **changes: Any) -> SessionEnvelope:
        """A copy with ``changes`` (the next attempt, ``assign``), keeping which fields were set."""
        return self.model_copy(update=changes)


class SessionReply(BaseModel):
    """A worker's message for the asking socket, with what the consumer needs to route it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["session.reply"] = "session.reply"
    op: str
    attempt: int = 0
    #: The queue of the worker that answered, and its process's incarnation (``engine.workers``).
    worker: str | None = None
    incarnation: str | None = None
    #: The last reply to this op: the consumer stops watching it.
    final: bool
    #: The protocol message for the page.
    message: dict[str, Any]
    #: Set when the page's version is gone: the model the worker fell back to (None: the settings').
    model_version: int | None = None

    @property
    def repins(self) -> bool:
        """Whether the consumer must pin the page to ``model_version`` from now on."""
        return "model_version" in self.model_fields_set

    def event(self) -> dict[str, Any]:
        """The channel-layer event (fields never set stay out)."""
        return self.model_dump(exclude_unset=True) | {"type": self.type}
