"""Bad input gets a 4xx that says what was wrong: the one JSON body parser, the text rule, API errors.

- ``json_body(request)``: every view that reads a JSON body reads it here. The body is refused
  (``BadInput``, a 4xx) when it is larger than ``MAX_JSON_BYTES`` (413), not UTF-8, not JSON,
  nested deeper than ``MAX_JSON_DEPTH``, or when any key or string holds a character the
  database cannot store (below).
- ``text_problem(value)``: the text rule. NUL characters (PostgreSQL refuses them in text) and
  lone UTF-16 surrogates (not encodable as UTF-8) are refused wherever text comes in: JSON
  bodies here, every form and query string in ``InputMiddleware``, the annotation socket in
  ``engine.protocol``.
- ``error_response``: the JSON error of the HTTP API, ``{"error": {"code": "<code>", "message":
  "<words>", "field": "<field or null>"}}`` (DRF's own errors are put in the same shape by
  ``annotator.api.framework.exception_handler``).
- ``InputMiddleware``: refuses a form or query string that breaks the text rule (400, naming the
  field) before any view sees it, turns a ``BadInput`` raised by a view into its response, and
  makes every error under ``/api/`` JSON (Django's own 404, 405, 400 and 500 included).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.core.handlers.exception import response_for_exception
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

from engine.storage import StorageError

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"

#: Codes of the API's errors by status (a view may give a more precise one).
STATUS_CODES = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
                405: "method_not_allowed", 409: "conflict", 413: "too_large", 429: "too_many_attempts",
                500: "server_error", 503: "unavailable"}

_FORBIDDEN_CHARACTERS = re.compile("[\x00\ud800-\udfff]")


class BadInput(Exception):
    """Input refused with a 4xx: ``message`` in words, ``field`` when one field is to blame."""

    def __init__(self, message: str, *, field: str | None = None, code: str = "bad_input", status: int = 400):
        super().__init__(message)
        self.message, self.field, self.code, self.status = message, field, code, status


def error_response(message: str, status: int = 400, *, code: str | None = None,
                   field: str | None = None, **extra: Any) -> JsonResponse:
    """The API's error: ``{"error": {"code", "message", "field"}, **extra}`` with a 4xx/5xx status."""
    error = {"code": code or STATUS_CODES.get(status, "error"), "message": message, "field": field}
    return JsonResponse({"error": error, **extra}, status=status)


def text_problem(value: str) -> str | None:
    """What makes ``value`` unstorable text, in words, or None when it is fine."""
    found = _FORBIDDEN_CHARACTERS.search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return "contains a NUL character (\\u0000), which text cannot hold"
    return f"contains a lone surrogate (\\u{ord(found.group()):04x}), which is not a character"


def check_text(value: str, field: str) -> str:
    """``value`` when it follows the text rule; ``BadInput`` naming ``field`` otherwise."""
    problem = text_problem(value)
    if problem:
        raise BadInput(f"“{field}” {problem}.", field=field, code="bad_text")
    return value


def check_json_value(data: Any, *, max_depth: int | None = None) -> Any:
    """Refuse JSON nested deeper than ``max_depth`` or holding unstorable text (keys included).

    Walks without recursion, so no nesting can exhaust the stack; fields are named by their path
    (``labels[2]``, ``meta.note``)."""
    limit = settings.MAX_JSON_DEPTH if max_depth is None else max_depth
    stack: list[tuple[Any, str, int]] = [(data, "", 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            check_text(value, path or "body")
            continue
        if not isinstance(value, (dict, list)):
            continue
        if depth > limit:
            raise BadInput(f"The JSON is nested more than {limit} levels deep.", field=path or None,
                           code="too_deep")
        items: Iterable[tuple[str, Any]]
        if isinstance(value, dict):
            for key in value:
                check_text(key, f"{path}.{key}" if path else key)
            items = ((f"{path}.{key}" if path else key, item) for key, item in value.items())
        else:
            items = ((f"{path}[{index}]", item) for index, item in enumerate(value))
        stack.extend((item, name, depth + 1) for name, item in items)
    return data


def json_body(request: HttpRequest, *, default: Any = None) -> Any:
    """The request's JSON body, checked (size, encoding, syntax, depth, text); ``default`` when empty."""
    check_json_size(request.META.get("CONTENT_LENGTH") or "0")
    body = request.body
    if not body.strip():
        return default
    return parse_json(body)


def check_json_size(declared: str | int) -> None:
    """Refuse (413) a JSON body declared or found larger than ``MAX_JSON_BYTES``."""
    limit = settings.MAX_JSON_BYTES
    if str(declared).isdigit() and int(declared) > limit:
        raise BadInput(f"The body is {int(declared)} bytes; JSON bodies are limited to {limit}.", code="too_large",
                       status=413)


def parse_json(body: bytes) -> Any:
    """``body`` as JSON, checked (size, encoding, syntax, depth, text): the one JSON reader of the API."""
    check_json_size(len(body))
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadInput(f"The body is not UTF-8 (byte {error.start}).", code="bad_json") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise BadInput(f"The JSON is nested more than {settings.MAX_JSON_DEPTH} levels deep.",
                       code="too_deep") from None
    except ValueError as error:
        where = f" at line {error.lineno}, column {error.colno}" if isinstance(error, json.JSONDecodeError) else ""
        raise BadInput(f"The body is not valid JSON{where}.", code="bad_json") from None
    return check_json_value(data)


def json_object(request: HttpRequest) -> dict[str, Any]:
    """``json_body`` that must be an object (an empty body is ``{}``)."""
    data = json_body(request, default={})
    if not isinstance(data, dict):
        raise BadInput("The body must be a JSON object.", code="bad_json")
    return data


# -- the middleware ----------------------------------------------------------------------------


def is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIX)


def bad_input_response(request: HttpRequest, refused: BadInput) -> HttpResponse:
    if is_api(request):
        return error_response(refused.message, refused.status, code=refused.code, field=refused.field)
    return HttpResponse(render_to_string("400.html", {"message": refused.message}, request=request),
                        status=refused.status)


def _form_problem(request: HttpRequest) -> BadInput | None:
    """The first query or form field (name or value, uploaded file names too) that breaks the text rule."""
    sources: list[tuple[str, Callable[[], Any]]] = [("query", lambda: request.GET)]
    if request.method not in ("GET", "HEAD", "OPTIONS") and request.content_type in (
            "application/x-www-form-urlencoded", "multipart/form-data"):
        sources += [("form", lambda: request.POST), ("file", lambda: request.FILES)]
    for kind, read in sources:
        for name, values in read().lists():
            problem = text_problem(name)
            if problem:
                return BadInput(f"A {kind} field name {problem}.", field=name.replace("\x00", ""), code="bad_text")
            for value in values:
                text = value if isinstance(value, str) else (getattr(value, "name", "") or "")
                problem = text_problem(text)
                if problem:
                    what = "The uploaded file's name" if kind == "file" else f"“{name}”"
                    return BadInput(f"{what} {problem}.", field=name, code="bad_text")
    return None


class InputMiddleware:
    """Every form and query string follows the text rule; every error under ``/api/`` is JSON."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            refused = _form_problem(request)
        except Exception as error:  # a body Django itself refuses (too large, malformed multipart): its 4xx
            response = response_for_exception(request, error)
        else:
            response = bad_input_response(request, refused) if refused else self.get_response(request)
        if is_api(request) and response.status_code >= 400 and not _is_json(response):
            status = response.status_code
            words = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
            if status == 405 and response.has_header("Allow"):
                words = f"{request.method} is not allowed here; use {response['Allow']}"
            elif status == 404:
                words = "There is nothing at this address, or it belongs to a project you are not a member of"
            elif status >= 500:
                words = "The server failed to handle this request (the error is in its log)"
            converted = error_response(f"{words}.", status)
            for header in ("Allow", "Retry-After"):
                if response.has_header(header):
                    converted[header] = response[header]
            response = converted
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, BadInput):
            return bad_input_response(request, exception)
        if isinstance(exception, StorageError):  # the storage server is down or refused: later may work
            logger.warning("%s %s: %s", request.method, request.path, exception)
            words = "The storage cannot be reached right now; try again in a moment."
            response = (error_response(words, 503, code="storage_unavailable") if is_api(request)
                        else HttpResponse(words, status=503, content_type="text/plain; charset=utf-8"))
            response["Retry-After"] = "5"
            return response
        return None


def _is_json(response: HttpResponse) -> bool:
    return response.get("Content-Type", "").startswith("application/json")
