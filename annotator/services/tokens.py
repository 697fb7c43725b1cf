"""API tokens: issued to a person, stored as a hash, named, revocable, with an optional expiry.

A token reads ``mkt_<prefix>_<secret>``: ``prefix`` (8 hex characters, stored and shown on the
account page) finds the row, and the SHA-256 of the whole token is compared in constant time with
the stored digest. The token itself is shown once, when it is made, and never stored. A token
authenticates its person only while it is unrevoked, unexpired and the account is active.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from annotator.models import ApiToken
from engine.input import check_text

PREFIX = "mkt_"
#: ``last_used_at`` is written at most this often per token (not one write per request).
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_NAME = 100


class TokenRefused(Exception):
    """The token does not authenticate anyone; the message says why (for a 401)."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(user: Any, name: str, *, expires_days: float | None = None) -> tuple[ApiToken, str]:
    """A new token for ``user``: the row and the token itself (show it once; only its hash is kept)."""
    name = check_text((name or "").strip(), "name")
    if not name or len(name) > MAX_NAME:
        raise ValueError(f"Give the token a name of 1 to {MAX_NAME} characters.")
    if expires_days is not None and not 0 < expires_days <= 3650:
        raise ValueError("A token expires after 1 day to 10 years (or never).")
    expires_at = timezone.now() + timedelta(days=expires_days) if expires_days is not None else None
    for _ in range(3):  # a prefix clash (1 in 4 billion) draws again
        prefix = secrets.token_hex(4)
        token = f"{PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        try:
            with transaction.atomic():
                row = ApiToken.objects.create(user=user, name=name, prefix=prefix, digest=_digest(token),
                                              expires_at=expires_at)
        except IntegrityError:
            continue
        return row, token
    raise RuntimeError("could not draw a unique token prefix")


def revoke_token(user: Any, token_id: int) -> ApiToken:
    """Revoke one of ``user``'s tokens (``ApiToken.DoesNotExist`` for anyone else's); revoking twice is fine."""
    row = ApiToken.objects.get(pk=token_id, user=user)
    if row.revoked_at is None:
        row.revoked_at = timezone.now()
        row.save(update_fields=["revoked_at"])
    return row


def tokens_of(user: Any):
    return ApiToken.objects.filter(user=user)


def authenticate(token: str) -> ApiToken:
    """The live token row for ``token`` (its ``user`` loaded), or ``TokenRefused`` saying why not."""
    body = token[len(PREFIX):] if token.startswith(PREFIX) else ""
    prefix, _, secret = body.partition("_")
    row = (ApiToken.objects.select_related("user").filter(prefix=prefix).first()
           if prefix and secret and prefix.isascii() and prefix.isalnum() else None)
    if row is None or not hmac.compare_digest(row.digest, _digest(token)):
        raise TokenRefused("The API token is not valid.")
    if row.revoked_at is not None:
        raise TokenRefused("The API token was revoked.")
    if row.is_expired:
        raise TokenRefused("The API token has expired.")
    if not row.user.is_active:
        raise TokenRefused("The account of this API token is deactivated.")
    now = timezone.now()
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
        row.last_used_at = now
    return row
