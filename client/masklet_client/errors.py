"""What can go wrong, as exceptions a script can tell apart (the CLI maps each to an exit code)."""

from __future__ import annotations

from typing import Any

import requests


class MaskletError(Exception):
    """The server refused (``status`` 4xx/5xx) or the client was not configured (``status`` None).

    ``code``, ``message`` and ``field`` come from the server's ``{"error": {...}}`` body.
    """

    def __init__(self, status: int | None, code: str, message: str, field: str | None = None,
                 body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.body = body

    def __str__(self) -> str:
        where = f" (field {self.field})" if self.field else ""
        return f"{self.status} {self.code}: {self.message}{where}" if self.status else f"{self.message}{where}"

    @classmethod
    def from_response(cls, response: requests.Response) -> MaskletError:
        """Read ``{"error": {"code", "message", "field"}}`` (or the older flat ``{"error": str, "code", "field"}``)."""
        try:
            body = response.json()
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            return cls(response.status_code, str(error.get("code") or response.reason), str(error.get("message") or ""),
                       error.get("field"), body)
        if isinstance(error, str):
            return cls(response.status_code, str(body.get("code") or response.reason), error, body.get("field"), body)
        text = " ".join(response.text.split())[:200]
        return cls(response.status_code, (response.reason or "error").lower().replace(" ", "_"),
                   f"{response.request.method} {response.url} answered {response.status_code} "
                   f"{response.reason}{': ' + text if text else ''}", None, body)


class MaskletConnectionError(MaskletError):
    """The server could not be reached, or a transfer broke off or timed out."""

    def __init__(self, message: str) -> None:
        super().__init__(None, "connection", message)


class JobFailed(MaskletError):
    """A job waited for ended without success (a video's ingest, an export, a training run)."""

    def __init__(self, what: str, status: str, reason: str, item: Any) -> None:
        super().__init__(None, status, f"{what} {status}{': ' + reason if reason else ''}")
        self.item = item


class WaitTimedOut(MaskletError):
    """A job waited for did not end within the time given."""

    def __init__(self, message: str) -> None:
        super().__init__(None, "wait_timeout", message)
