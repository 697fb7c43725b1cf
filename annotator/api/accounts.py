"""The API's accounts: your tokens, and people (site admins make accounts, as on ``/people/``)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse

from annotator import selectors
from annotator.api import serializers as shapes
from annotator.api.framework import endpoint, paginated, validated
from annotator.models import ApiToken
from annotator.permissions import login_required_rule, staff_required
from annotator.services import accounts, tokens
from engine.input import error_response


def token_json(row: ApiToken) -> dict[str, Any]:
    """A token as its owner sees it: never the token itself, only its prefix."""
    return {"id": row.id, "name": row.name, "prefix": f"{tokens.PREFIX}{row.prefix}",
            "created_at": row.created_at.isoformat(),
            "last_used_at": row.last_used_at.isoformat() if row.last_used_at else None,
            "expires_at": row.expires_at.isoformat() if row.expires_at else None,
            "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
            "active": row.revoked_at is None and not row.is_expired}


@endpoint("GET", "POST", request=shapes.TokenCreate)
@login_required_rule(api=True)
def token_list(request: HttpRequest) -> JsonResponse:
    """GET: your API tokens. POST ``{name, expires_days?}``: a new one; the response's ``token`` is shown
    this once (only its hash is kept)."""
    if request.method == "POST":
        data = validated(shapes.TokenCreate, request)
        try:
            row, token = tokens.issue_token(request.user, data["name"], expires_days=data.get("expires_days"))
        except ValueError as error:
            return error_response(str(error), field="name")
        return JsonResponse({**token_json(row), "token": token}, status=201)
    return paginated(request, tokens.tokens_of(request.user), token_json)


@endpoint("DELETE")
@login_required_rule(api=True)
def token_detail(request: HttpRequest, token_id: int) -> JsonResponse:
    """Revoke one of your tokens (it stops working at once; the row stays, listed as revoked)."""
    try:
        row = tokens.revoke_token(request.user, token_id)
    except ApiToken.DoesNotExist:
        return error_response("You have no token with this id.", 404)
    return JsonResponse(token_json(row))


def _user_json(user: Any) -> dict[str, Any]:
    return {"id": user.id, "username": user.get_username(), "email": user.email, "is_active": user.is_active,
            "is_staff": user.is_staff, "is_superuser": user.is_superuser,
            "has_password": user.has_usable_password(),
            "project_count": getattr(user, "project_count", None)}


@endpoint("GET", "POST", request=shapes.UserCreate)
@staff_required(api=True)
def user_list(request: HttpRequest) -> JsonResponse:
    """Site admins: GET every account. POST ``{username, email?, password?, staff?}``: a new account; without
    a password the response's ``invite`` is the one-time link where the person chooses one."""
    if request.method == "POST":
        data = validated(shapes.UserCreate, request)
        try:
            user = accounts.create_account(request.user, data["username"], data["email"], staff=data["staff"],
                                           password=data["password"])
        except accounts.AccountError as error:
            status = 409 if "exists already" in str(error) else 403 if "Only a superuser" in str(error) else 400
            return error_response(str(error), status)
        invite = None if user.has_usable_password() else request.build_absolute_uri(accounts.invite_path(user))
        return JsonResponse({**_user_json(user), "invite": invite}, status=201)
    return paginated(request, selectors.accounts(), _user_json)
