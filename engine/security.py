"""Production hardening that is code rather than settings (the settings are in ``config.settings``).

- ``ThrottledBackend``: django-axes' backend, for sign-ins that come with a request (every page and
  API sign-in); server-side code without one (a management command, a test) is not throttled.
- ``client_ip``: the address login throttling (django-axes) counts failures for: ``REMOTE_ADDR``,
  or behind a trusted proxy (``MASKLET_BEHIND_PROXY``) the address that proxy appended to
  ``X-Forwarded-For`` (its last entry; entries before it are the client's to invent).
- ``lockout_response``: what a locked-out sign-in gets: JSON under ``/api/``, the login page with
  the reason elsewhere (429 both).
- ``SameOriginValidator``: WebSocket handshakes must come from a page of this site: the Origin's
  scheme, host and port equal the socket's own (``wss`` pairs with ``https``; behind a TLS proxy
  its ``X-Forwarded-Proto``), with a Host in ``ALLOWED_HOSTS``, or the Origin is one of
  ``CSRF_TRUSTED_ORIGINS`` (``MASKLET_TRUSTED_ORIGINS``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from axes.backends import AxesStandaloneBackend
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse
from django.http.request import validate_host
from django.shortcuts import render

from engine.input import error_response, is_api


class ThrottledBackend(AxesStandaloneBackend):
    def authenticate(self, request: HttpRequest | None, username: str | None = None, password: str | None = None,
                     **kwargs: Any) -> None:
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)


def client_ip(request: HttpRequest) -> str | None:
    """The client's address for login throttling (see the module docstring)."""
    if settings.BEHIND_PROXY:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if forwarded:
            return forwarded[-1]
    return request.META.get("REMOTE_ADDR")


def lockout_response(request: HttpRequest, original_response: HttpResponse | None = None,
                     credentials: dict | None = None) -> HttpResponse:
    minutes = round(settings.AXES_COOLOFF_TIME.total_seconds() / 60)
    words = (f"Too many failed sign-ins for this account or from this address: signing in is blocked for "
             f"{minutes} minutes. An administrator can lift it sooner (manage.py axes_reset).")
    if is_api(request):
        response: HttpResponse = error_response(words, 429, code="too_many_attempts")
    else:
        form = AuthenticationForm(request, initial={"username": request.POST.get("username", "")})
        response = render(request, "annotator/login.html", {"form": form, "lockout": words,
                                                            "next": request.POST.get("next", "")}, status=429)
    response["Retry-After"] = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    return response


# -- WebSocket origins --------------------------------------------------------------------------


def _origin(scheme: str, host: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) with the default port filled in, or None for something unparsable."""
    try:
        parts = urlsplit(f"{scheme}://{host}")
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return scheme, parts.hostname, port


def socket_origin_allowed(headers: dict[bytes, bytes], scheme: str) -> bool:
    """Whether a handshake with these headers may open a socket (see ``SameOriginValidator``)."""
    try:
        origin_text = headers[b"origin"].decode("ascii")
        host = headers[b"host"].decode("ascii")
    except (KeyError, UnicodeDecodeError):
        return False
    parts = urlsplit(origin_text)
    try:
        origin = _origin(parts.scheme, parts.netloc) if parts.scheme in ("http", "https") else None
    except ValueError:
        origin = None
    if origin is None:
        return False
    trusted = {_origin(urlsplit(o).scheme, urlsplit(o).netloc) for o in settings.CSRF_TRUSTED_ORIGINS}
    if origin in trusted:
        return True
    page_scheme = "https" if scheme == "wss" else "http"
    if settings.SECURE_PROXY_SSL_HEADER:
        header, value = settings.SECURE_PROXY_SSL_HEADER
        name = header.removeprefix("HTTP_").lower().replace("_", "-").encode("ascii")
        if headers.get(name, b"").split(b",")[0].strip().decode("ascii", "replace") == value:
            page_scheme = "https"
    own = _origin(page_scheme, host)
    return own is not None and own == origin and validate_host(own[1], settings.ALLOWED_HOSTS)


class SameOriginValidator:
    """ASGI middleware for socket routes: refuses (403) a handshake from another origin."""

    def __init__(self, application: Any):
        self.application = application

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket":
            raise ValueError("SameOriginValidator is for WebSocket connections")
        headers = dict(scope.get("headers", []))
        if socket_origin_allowed(headers, scope.get("scheme", "ws")):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)
