"""The HTTP JSON API: session authentication + CSRF, for the browser and for scripts alike.

Scripts sign in the same way the browser does::

    GET  /api/session/                      -> {"authenticated": false, "csrf_token": "..."} (+ cookie)
    POST /api/session/  {"username", "password"} with header X-CSRFToken -> {"authenticated": true, ...}
    then any call with the session cookie (+ X-CSRFToken on POST/DELETE)
    DELETE /api/session/                    -> signs out

Every error is ``{"error": "<what went wrong, in words>", "code": "<code>", "field": <field or null>}``
with a 4xx status (``engine.input``; bodies are read by its ``json_body``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth import login as auth_login
from django.contrib.auth import logout as auth_logout
from django.core.exceptions import ValidationError
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.views.csrf import csrf_failure as django_csrf_failure

from annotator import selectors
from annotator.models import Project
from annotator.permissions import Action, login_required_rule, project_permission, public, role_of, roles_by_project
from annotator.services.videos import DuplicateVideo, VideoRejected, create_video_from_upload, delete_video
from engine.input import error_response, json_object


def error(message: str, status: int = 400, *, code: str | None = None, field: str | None = None) -> JsonResponse:
    return error_response(message, status, code=code, field=field)


def allow(*methods: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Like ``require_http_methods`` but the 405 is JSON, as everything else in the API."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            if request.method not in methods:
                response = error(f"{request.method} is not allowed here; use {' or '.join(methods)}.", 405)
                response["Allow"] = ", ".join(methods)
                return response
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """``CSRF_FAILURE_VIEW``: a JSON error under ``/api/`` (scripts can act on it), Django's page elsewhere."""
    if request.path_info.startswith("/api/"):
        return error(f"CSRF check failed ({reason}). Send the csrftoken cookie's value in an X-CSRFToken "
                     "header; GET /api/session/ returns one.", 403, code="csrf")
    return django_csrf_failure(request, reason=reason)


def _session_state(request: HttpRequest) -> dict[str, Any]:
    user = request.user
    return {
        "authenticated": user.is_authenticated,
        "username": user.get_username() if user.is_authenticated else None,
        "csrf_token": get_token(request),
    }


@allow("GET", "POST", "DELETE")
@public
def session(request: HttpRequest) -> JsonResponse:
    """Sign in (POST), sign out (DELETE) or read the session state and a CSRF token (GET)."""
    if request.method == "POST":
        credentials = json_object(request)
        username, password = credentials.get("username"), credentials.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            return error("Give both username and password as strings.",
                         field="password" if isinstance(username, str) else "username")
        user = authenticate(request, username=username, password=password)
        if user is None:
            return error("Wrong username or password.", 401)
        auth_login(request, user)
    elif request.method == "DELETE":
        auth_logout(request)
    return JsonResponse(_session_state(request))


@allow("GET")
@login_required_rule(api=True)
def project_list(request: HttpRequest) -> JsonResponse:
    roles = roles_by_project(request.user)
    projects = selectors.projects_for_user(request.user)
    return JsonResponse({"projects": [selectors.project_to_dict(p, roles.get(p.id)) for p in projects]})


@allow("GET")
@project_permission(Action.VIEW_PROJECT, api=True)
def project_detail(request: HttpRequest, project: Project) -> JsonResponse:
    data = selectors.project_to_dict(project, role_of(request.user, project))
    data["video_count"] = selectors.videos_for_project(project).count()
    return JsonResponse(data)


@allow("GET", "POST")
@project_permission(Action.VIEW_PROJECT, api=True, POST=Action.UPLOAD_VIDEO)
def video_list(request: HttpRequest, project: Project) -> JsonResponse:
    """GET: the project's videos. POST (multipart, field ``file``, optional ``name``): upload one."""
    if request.method == "GET":
        return JsonResponse({"videos": [selectors.video_to_dict(v) for v in selectors.videos_for_project(project)]})
    uploaded = request.FILES.get("file")
    if uploaded is None:
        return error("Send the video as multipart/form-data in a field named 'file'.")
    name = request.POST.get("name", "").strip() or None
    try:
        video = create_video_from_upload(project, uploaded, request.user, name=name,
                                         allow_duplicate=request.POST.get("allow_duplicate") == "1")
    except DuplicateVideo as duplicate:  # the page asks the uploader, who may send it again with allow_duplicate=1
        return JsonResponse({"error": " ".join(duplicate.messages) + " Send allow_duplicate=1 to keep both.",
                             "code": "duplicate", "field": "file",
                             "duplicate_of": {"id": duplicate.existing.id, "name": duplicate.existing.name}},
                            status=409)
    except VideoRejected as rejected:
        too_large = uploaded.size > settings.MAX_UPLOAD_BYTES
        return error(" ".join(rejected.messages), 413 if too_large else 400)
    except ValidationError as invalid:
        return error(" ".join(invalid.messages))
    return JsonResponse(selectors.video_to_dict(video), status=201)


@allow("GET", "DELETE")
@project_permission(Action.VIEW_PROJECT, api=True, DELETE=Action.MANAGE_PROJECT)
def video_detail(request: HttpRequest, project: Project, video_id: int) -> JsonResponse:
    """GET: one video. DELETE: the video with its masklets, masks, frames and file (exports stay)."""
    video = selectors.video_in_project(project, video_id)
    if video is None:
        return error("No such video in this project.", 404)
    if request.method == "DELETE":
        try:
            name = delete_video(video)
        except VideoRejected as refused:
            return error(" ".join(refused.messages), 409)
        return JsonResponse({"deleted": video_id, "name": name})
    data = selectors.video_to_dict(video)
    data["frame_indices"] = video.annotated_frame_indices() if video.status == video.Status.READY else []
    return JsonResponse(data)


@allow("GET")
@project_permission(Action.VIEW_PROJECT, api=True)
def video_frame(request: HttpRequest, project: Project, video_id: int, frame_index: int) -> FileResponse | JsonResponse:
    """One annotated frame as JPEG; 404 JSON for an index that is not an annotated frame."""
    video = selectors.video_in_project(project, video_id)
    if video is None:
        return error("No such video in this project.", 404)
    path = selectors.frame_path(video, frame_index)
    if path is None:
        return error(f"Frame {frame_index} is not an annotated frame of this video (or it is not ready).", 404)
    response = FileResponse(path.open("rb"), content_type="image/jpeg")
    response["Cache-Control"] = "private, max-age=3600"
    return response


@allow("GET")
@project_permission(Action.VIEW_PROJECT, api=True)
def video_masklets(request: HttpRequest, project: Project, video_id: int) -> JsonResponse:
    """The video's objects as the viewer sees them (lock holder, review verdict and reason)."""
    video = selectors.video_in_project(project, video_id)
    if video is None:
        return error("No such video in this project.", 404)
    return JsonResponse({"masklets": [selectors.masklet_to_dict(m, request.user)
                                      for m in selectors.masklets_for_video(video)]})


@allow("GET")
@project_permission(Action.VIEW_PROJECT, api=True)
def video_masks(request: HttpRequest, project: Project, video_id: int) -> JsonResponse:
    """Stored masks (COCO RLE counts; ``size`` is the video's) for frames ``start``..``end``, both optional."""
    video = selectors.video_in_project(project, video_id)
    if video is None:
        return error("No such video in this project.", 404)
    bounds: dict[str, int | None] = {}
    for name in ("start", "end"):
        raw = request.GET.get(name, "").strip()
        if not raw:
            bounds[name] = None
            continue
        try:
            bounds[name] = int(raw)
        except ValueError:
            return error(f"'{name}' must be a frame number (a whole number, 0 or more), not {raw[:40]!r}.")
        if bounds[name] < 0:
            return error(f"'{name}' must be 0 or more.")
    if bounds["start"] is not None and bounds["end"] is not None and bounds["start"] > bounds["end"]:
        return error(f"'start' ({bounds['start']}) is after 'end' ({bounds['end']}).")
    return JsonResponse({"size": [video.height, video.width],
                         "masks": selectors.video_masks(video, bounds["start"], bounds["end"])})
