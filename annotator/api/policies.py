"""The policies ``settings.REST_FRAMEWORK`` names: authentication, JSON parsing, throttles, pagination.

Kept apart from ``annotator.api.framework`` because DRF imports them while ``rest_framework.views``
is still loading (a module importing DRF's views here would be a circular import).

- ``BearerToken``: ``Authorization: Bearer <token>`` (``annotator.services.tokens``); ``Session``:
  the browser's session cookie, whose writes need the CSRF token. CSRF is checked for the cookie
  only, since a token is never sent by a browser on its own. A bad, revoked or expired token is a
  401 even where the endpoint is public: a script must not silently run as nobody.
- ``CheckedJSONParser``: JSON bodies go through ``engine.input.parse_json`` (size, depth, text).
- Throttles: per token (``token``) and per client address (``ip``), rates from
  ``settings.API_RATES`` read at each request (so tests and operators can change them).
- ``Pagination``: ``{"count", "next", "previous", "results"}``, ``?page=`` and ``?page_size=``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, SessionAuthentication, get_authorization_header
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import JSONParser
from rest_framework.throttling import SimpleRateThrottle

from annotator.models import ApiToken
from annotator.services import tokens
from engine.input import parse_json
from engine.security import client_ip

# -- authentication -----------------------------------------------------------------------------


class BearerToken(BaseAuthentication):
    """``Authorization: Bearer mkt_…``: the token's person, or a 401 saying what is wrong with it."""

    keyword = b"bearer"

    def authenticate(self, request: Any) -> tuple[Any, ApiToken] | None:
        words = get_authorization_header(request).split()
        if not words or words[0].lower() != self.keyword:
            return None
        if len(words) != 2:
            raise exceptions.AuthenticationFailed("Send the token as 'Authorization: Bearer <token>'.")
        try:
            row = tokens.authenticate(words[1].decode("ascii"))
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("The API token is not valid.") from None
        except tokens.TokenRefused as refused:
            raise exceptions.AuthenticationFailed(str(refused)) from None
        return row.user, row

    def authenticate_header(self, request: Any) -> str:
        return 'Bearer realm="api"'


class Session(SessionAuthentication):
    """The browser's session cookie; a write needs the CSRF token (``X-CSRFToken``), as on the pages."""

    def enforce_csrf(self, request: Any) -> None:
        try:
            super().enforce_csrf(request)
        except exceptions.PermissionDenied as refused:
            reason = str(refused.detail).removeprefix("CSRF Failed: ").rstrip(".")
            raise exceptions.PermissionDenied(
                f"CSRF check failed ({reason}). Send the csrftoken cookie's value in an X-CSRFToken header "
                "(GET /api/session/ returns one), or authenticate with 'Authorization: Bearer <token>'.",
                code="csrf") from None


class CheckedJSONParser(JSONParser):
    """DRF's JSON parser, reading through ``engine.input.parse_json`` (size, encoding, depth, the text rule)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        body = stream.read(settings.MAX_JSON_BYTES + 1) if stream is not None else b""
        return parse_json(body) if body.strip() else {}



# -- throttles, pagination -------------------------------------------------------------------


class _SettingsRate(SimpleRateThrottle):
    """A throttle whose rate (``"600/min"``, or None for no limit) is ``settings.API_RATES[scope]`` now."""

    def get_rate(self) -> str | None:
        return settings.API_RATES.get(self.scope)

    def throttle_failure(self) -> bool:
        return False

    def wait(self) -> float | None:
        wait = super().wait()
        return None if wait is None else max(1.0, wait)


class TokenThrottle(_SettingsRate):
    """Requests per API token."""

    scope = "token"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        if not isinstance(request.auth, ApiToken):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}


class AddressThrottle(_SettingsRate):
    """Requests per client address (``engine.security.client_ip``, as for sign-in throttling)."""

    scope = "ip"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": client_ip(request) or "unknown"}


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
