"""The HTTP API's framework: Django REST framework, set up once for every ``/api/`` endpoint.

- ``endpoint(*methods)``: makes a function view (already carrying its permission rule from
  ``annotator.permissions``) a DRF view, with its OpenAPI description (drf-spectacular).
- Authentication, parsing, throttles and pagination: ``annotator.api.policies``.
- ``exception_handler``: every error (DRF's validation, 401, 403, 404, 405, 429, parse errors
  and ``engine.input.BadInput``) comes out as ``{"error": {"code", "message", "field"}}``.
- ``paginated``: a list as ``{"count", "next", "previous", "results"}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpResponse
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions
from rest_framework.decorators import api_view
from rest_framework.views import exception_handler as drf_exception_handler

from annotator.api.policies import BearerToken, Pagination, Session
from annotator.permissions import RULE_ATTRIBUTE, rule_of
from engine.input import STATUS_CODES, BadInput, error_response


class Schema(AutoSchema):
    """Operation ids from the view's name and the method (``get_video_list``), unique and stable for clients."""

    def get_operation_id(self) -> str:
        return f"{self.method.lower()}_{self.view.__class__.__name__}"


class SessionScheme(OpenApiAuthenticationExtension):
    target_class = Session
    name = "cookieAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "cookie", "name": "sessionid",
                "description": "The browser's session; writes also need the X-CSRFToken header."}


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Names the token in the OpenAPI schema (the docs page's Authorize button)."""

    target_class = BearerToken
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "An API token from /account/ or "
                                                                   "`manage.py api_token USERNAME`."}


# -- errors ---------------------------------------------------------------------------------------


def _first_problem(detail: Any, path: str = "") -> tuple[str | None, str, str]:
    """(field, message, code) of the first error in a DRF error detail (dicts by field, lists, strings)."""
    if isinstance(detail, dict) and detail:
        key, value = next(iter(detail.items()))
        if isinstance(key, int):  # an item of a list field: ``labels[2]``, as engine.input names them
            name = f"{path}[{key}]"
        else:
            name = path if key in ("non_field_errors", "detail") else f"{path}.{key}" if path else str(key)
        return _first_problem(value, name)
    if isinstance(detail, list) and detail:
        first = detail[0]
        if isinstance(first, (dict, list)):
            return _first_problem(first, f"{path}[0]" if path else "")
        return _first_problem(first, path)
    return path or None, str(detail), getattr(detail, "code", None) or "invalid"


def exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponse | None:
    """DRF's errors, Django's ``Http404`` / ``PermissionDenied`` and ``BadInput``, in the API's error shape."""
    if isinstance(exc, BadInput):
        return error_response(exc.message, exc.status, code=exc.code, field=exc.field)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    field, message, code = _first_problem(exc.detail)
    if isinstance(exc, exceptions.MethodNotAllowed):
        allowed = [m.upper() for m in getattr(context.get("view"), "http_method_names", ()) if m != "options"]
        message = f"{context['request'].method} is not allowed here; use {' or '.join(allowed)}."
    if isinstance(exc, exceptions.ValidationError):
        message = f"{field}: {message}" if field and not message.startswith(field) else message
    elif code in (exc.default_code, "invalid", "error") and not isinstance(exc, exceptions.Throttled):
        code = STATUS_CODES.get(response.status_code, code)
    shaped = error_response(message, response.status_code, code=code, field=field)
    for header in ("WWW-Authenticate", "Retry-After", "Allow"):
        if response.has_header(header):
            shaped[header] = response[header]
    return shaped


def paginated(request: Any, items: Any, to_json: Callable[[Any], Any]) -> HttpResponse:
    """One page of ``items`` (a queryset or list) as ``{"count", "next", "previous", "results"}``."""
    paginator = Pagination()
    page = paginator.paginate_queryset(items, request)
    return paginator.get_paginated_response([to_json(item) for item in page])


# -- the view decorator ----------------------------------------------------------------------


def endpoint(*methods: str, **schema: Any) -> Callable[[Callable], Callable]:
    """Make ``view`` (decorated with its permission rule) a DRF view for ``methods``, described in the schema.

    ``schema`` goes to drf-spectacular's ``extend_schema`` (``request``, ``responses``, ``parameters``,
    ``summary``...); responses default to a JSON object."""

    def decorate(view: Callable) -> Callable:
        rule = rule_of(view)
        if rule is None:
            raise TypeError(f"{view.__name__}: declare its permission rule before @endpoint")
        drf_view = extend_schema(**{"responses": OpenApiTypes.OBJECT, **schema})(api_view(list(methods))(view))
        drf_view.cls.http_method_names = [method.lower() for method in methods] + ["options"]  # Allow's order
        setattr(drf_view, RULE_ATTRIBUTE, rule)
        return drf_view

    return decorate


#: HTTP status of each ``EditRefused`` code (``annotator.services.annotation``).
REFUSAL_STATUS = {"bad_message": 400, "forbidden": 403, "not_found": 404, "locked": 409, "read_only": 409,
                  "empty": 409}


def refused(error: Any, status: int | None = None) -> HttpResponse:
    """A service's refusal (``EditRefused``, or any error whose text is for people) as an API error."""
    code = getattr(error, "code", None)
    message = getattr(error, "message", None) or " ".join(getattr(error, "messages", [])) or str(error)
    status = status or REFUSAL_STATUS.get(code, 400)
    return error_response(message, status, code=code if code in REFUSAL_STATUS else None)


def validated(serializer_class: type, request: Any, **kwargs: Any) -> dict[str, Any]:
    """The request's data checked by ``serializer_class`` (a 400 naming the field otherwise)."""
    if not isinstance(request.data, dict):
        raise BadInput("The body must be a JSON object.", code="bad_json")
    serializer = serializer_class(data=request.data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
