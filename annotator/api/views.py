"""The HTTP API of people and data: session, projects, videos, masklets and masks.

Scripts authenticate with ``Authorization: Bearer <token>`` (``annotator.api.framework``); the
browser's pages use the session cookie with CSRF. Signing in through the API is for scripts
without a token::

    GET  /api/session/                      -> {"authenticated": false, "csrf_token": "..."} (+ cookie)
    POST /api/session/  {"username", "password"} with header X-CSRFToken -> {"authenticated": true, ...}
    DELETE /api/session/                    -> signs out

Every view declares its permission rule (``annotator.permissions``) and calls one service; every
error is ``{"error": {"code", "message", "field"}}`` with a 4xx status.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth import login as auth_login
from django.contrib.auth import logout as auth_logout
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpRequest, JsonResponse
from django.middleware.csrf import get_token
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter

from annotator import selectors
from annotator.api import serializers as shapes
from annotator.api.framework import endpoint, refused, validated
from annotator.api.policies import Session
from annotator.models import Masklet, Project, Video
from annotator.permissions import Action, login_required_rule, project_permission, public, role_of, roles_by_project
from annotator.services import annotation, projects
from annotator.services.annotation import EditRefused
from annotator.services.seen import mark_seen
from annotator.services.videos import (
    DuplicateVideo,
    VideoRejected,
    create_video_from_upload,
    delete_video,
    retry_ingest,
)
from engine.input import BadInput, error_response


def _session_state(request: HttpRequest) -> dict[str, Any]:
    user = request.user
    return {
        "authenticated": user.is_authenticated,
        "username": user.get_username() if user.is_authenticated else None,
        "csrf_token": get_token(request),
    }


@endpoint("GET", "POST", "DELETE", request=shapes.Credentials)
@public
def session(request: HttpRequest) -> JsonResponse:
    """Sign in (POST), sign out (DELETE) or read the session state and a CSRF token (GET)."""
    if request.method in ("POST", "DELETE"):
        Session().enforce_csrf(request)  # signing in and out is CSRF-checked even without a session (login CSRF)
    if request.method == "POST":
        credentials = validated(shapes.Credentials, request)
        user = authenticate(request._request, username=credentials["username"], password=credentials["password"])
        if user is None:
            return error_response("Wrong username or password.", 401)
        auth_login(request._request, user)
        request.user = user
    elif request.method == "DELETE":
        auth_logout(request._request)
        request.user = request._request.user
    return JsonResponse(_session_state(request))


# -- projects ------------------------------------------------------------------------------


def _project_json(request: HttpRequest, project: Project) -> dict[str, Any]:
    data = selectors.project_to_dict(project, role_of(request.user, project))
    data["retired_labels"] = list(project.retired_labels or [])
    data["video_count"] = selectors.videos_for_project(project).count()
    return data


@endpoint("GET", "POST", request=shapes.ProjectCreate)
@login_required_rule(api=True)
def project_list(request: HttpRequest) -> JsonResponse:
    """GET: the projects you are a member of. POST (staff): create one; you become its admin."""
    if request.method == "POST":
        data = validated(shapes.ProjectCreate, request)
        if Project.objects.filter(slug=data["slug"]).exists():
            return error_response(f"A project with the slug {data['slug']!r} exists already.", 409, field="slug")
        try:
            project = projects.create_project(creator=request.user, **data)
        except ValidationError as invalid:
            status = 400 if request.user.is_staff or request.user.is_superuser else 403
            return error_response(" ".join(invalid.messages), status)
        return JsonResponse(_project_json(request, project), status=201)
    roles = roles_by_project(request.user)
    projects_ = selectors.projects_for_user(request.user)
    return JsonResponse({"projects": [selectors.project_to_dict(p, roles.get(p.id)) for p in projects_]})


@endpoint("GET", "PATCH", request=shapes.ProjectEdit)
@project_permission(Action.VIEW_PROJECT, api=True, PATCH=Action.MANAGE_PROJECT)
def project_detail(request: HttpRequest, project: Project) -> JsonResponse:
    """GET: the project. PATCH (admins): name, description, annotation_fps, labels (the active set, in order:
    new names are added, left-out ones retired)."""
    if request.method == "PATCH":
        data = validated(shapes.ProjectEdit, request)
        try:
            if {"name", "description", "annotation_fps"} & set(data):
                project = projects.update_project(project, name=data.get("name", project.name),
                                                  description=data.get("description", project.description),
                                                  annotation_fps=data.get("annotation_fps", project.annotation_fps))
            if "labels" in data:
                project = projects.set_labels(project, data["labels"])
        except ValidationError as invalid:
            return error_response(" ".join(invalid.messages), 400)
    return JsonResponse(_project_json(request, project))


# -- videos --------------------------------------------------------------------------------


def _video_or_404(project: Project, video_id: int) -> Video:
    video = selectors.video_in_project(project, video_id)
    if video is None:
        raise Http404("No such video in this project.")
    return video


@endpoint("GET", "POST", request={"multipart/form-data": shapes.VideoUpload},
          parameters=[OpenApiParameter("status", str, enum=Video.Status.values, description="only videos in it")])
@project_permission(Action.VIEW_PROJECT, api=True, POST=Action.UPLOAD_VIDEO)
def video_list(request: HttpRequest, project: Project) -> JsonResponse:
    """GET: the project's videos (``?status=``). POST (multipart, field ``file``, optional ``name`` and
    ``allow_duplicate``): upload one; it is ingested in the background (poll its ``status``)."""
    if request.method == "GET":
        videos = selectors.videos_for_project(project)
        status = request.GET.get("status")
        if status is not None:
            if status not in Video.Status.values:
                return error_response(f"status is one of {', '.join(Video.Status.values)}.", field="status")
            videos = videos.filter(status=status)
        return JsonResponse({"videos": [selectors.video_to_dict(v) for v in videos]})
    uploaded = request.FILES.get("file")
    if uploaded is None:
        return error_response("Send the video as multipart/form-data in a field named 'file'.", field="file")
    name = str(request.data.get("name", "")).strip() or None
    allow_duplicate = str(request.data.get("allow_duplicate", "")).lower() in ("1", "true", "yes", "on")
    try:
        video = create_video_from_upload(project, uploaded, request.user, name=name, allow_duplicate=allow_duplicate)
    except DuplicateVideo as duplicate:  # the page asks the uploader, who may send it again with allow_duplicate=1
        return error_response(" ".join(duplicate.messages) + " Send allow_duplicate=1 to keep both.", 409,
                              code="duplicate", field="file",
                              duplicate_of={"id": duplicate.existing.id, "name": duplicate.existing.name})
    except VideoRejected as rejected:
        too_large = uploaded.size > settings.MAX_UPLOAD_BYTES
        return error_response(" ".join(rejected.messages), 413 if too_large else 400, field="file")
    except ValidationError as invalid:
        return error_response(" ".join(invalid.messages), field="name")
    return JsonResponse(selectors.video_to_dict(video), status=201)


@endpoint("GET", "DELETE")
@project_permission(Action.VIEW_PROJECT, api=True, DELETE=Action.MANAGE_PROJECT)
def video_detail(request: HttpRequest, project: Project, video_id: int) -> JsonResponse:
    """GET: one video. DELETE: the video with its masklets, masks, frames and file (exports stay)."""
    video = _video_or_404(project, video_id)
    if request.method == "DELETE":
        try:
            name = delete_video(video)
        except VideoRejected as refusal:
            return error_response(" ".join(refusal.messages), 409)
        return JsonResponse({"deleted": video_id, "name": name})
    data = selectors.video_to_dict(video)
    data["frame_indices"] = video.annotated_frame_indices() if video.status == video.Status.READY else []
    return JsonResponse(data)


@endpoint("POST", request=None)
@project_permission(Action.UPLOAD_VIDEO, api=True)
def video_retry(request: HttpRequest, project: Project, video_id: int) -> JsonResponse:
    """Ingest a failed video again from its stored file (409 unless it failed)."""
    try:
        video = retry_ingest(_video_or_404(project, video_id))
    except VideoRejected as refusal:
        return error_response(" ".join(refusal.messages), 409)
    return JsonResponse(selectors.video_to_dict(video), status=202)


@endpoint("GET", responses={(200, "image/jpeg"): OpenApiTypes.BINARY})
@project_permission(Action.VIEW_PROJECT, api=True)
def video_frame(request: HttpRequest, project: Project, video_id: int, frame_index: int) -> FileResponse:
    """One annotated frame as JPEG; 404 JSON for an index that is not an annotated frame."""
    video = _video_or_404(project, video_id)
    path = selectors.frame_path(video, frame_index)
    if path is None:
        return error_response(f"Frame {frame_index} is not an annotated frame of this video (or it is not ready).",
                              404, field="frame_index")
    response = FileResponse(path.open("rb"), content_type="image/jpeg")
    response["Cache-Control"] = "private, max-age=3600"
    return response


# -- masklets and masks ---------------------------------------------------------------------


def _masklet_json(masklet: Masklet, viewer: Any) -> dict[str, Any]:
    data = selectors.masklet_to_dict(masklet, viewer)
    data["video_id"] = masklet.video_id
    return data


@endpoint("GET", "POST", request=shapes.MaskletCreate,
          parameters=[OpenApiParameter("order", str, enum=["object", *selectors.ORDERS])])
@project_permission(Action.VIEW_PROJECT, api=True, POST=Action.ANNOTATE)
def video_masklets(request: HttpRequest, project: Project, video_id: int) -> JsonResponse:
    """GET: the video's objects as the viewer sees them (lock holder, review verdict and reason), each with
    its lowest model-frame score and the confident mark; ``?order=score`` lists the lowest-scored first.
    POST ``{label}``: a new draft object, locked to you (write its masks with PUT .../masks/)."""
    video = _video_or_404(project, video_id)
    if request.method == "POST":
        data = validated(shapes.MaskletCreate, request)
        try:
            masklet = annotation.create_masklet(video, request.user, label=data["label"])
        except EditRefused as error:
            return refused(error, 409 if error.code == "not_found" else None)
        return JsonResponse(_masklet_json(masklet, request.user), status=201)
    order = request.GET.get("order", "object")
    if order not in ("object", *selectors.ORDERS):
        raise BadInput(f"'order' is one of object, {', '.join(selectors.ORDERS)}.", field="order")
    masklets = selectors.with_quality(selectors.masklets_for_video(video))
    if order != "object":
        masklets = selectors.ordered(masklets, order)
    return JsonResponse({"masklets": [
        {**selectors.masklet_to_dict(m, request.user), "lowest_quality": m.lowest_quality,
         "confident": selectors.is_confident(m)} for m in masklets]})


@endpoint("GET", "POST", request=shapes.SeenFrames)
@project_permission(Action.VIEW_PROJECT, api=True)
def video_seen(request: HttpRequest, project: Project, video_id: int) -> JsonResponse:
    """Frames people looked at or edited, per object (the annotation page's jump key skips them).
    POST ``{"object_id": N, "frames": [native, ...]}`` records a look (``annotator.services.seen``)."""
    video = _video_or_404(project, video_id)
    if request.method == "POST":
        data = validated(shapes.SeenFrames, request)
        try:
            mark_seen(video, request.user, data["object_id"], data["frames"])
        except EditRefused as error:
            return refused(error)
    return JsonResponse({"seen": {str(k): v for k, v in selectors.seen_frames(video).items()}})


def _frame_bounds(request: HttpRequest) -> tuple[int | None, int | None]:
    bounds: dict[str, int | None] = {}
    for name in ("start", "end"):
        raw = request.GET.get(name, "").strip()
        if not raw:
            bounds[name] = None
            continue
        try:
            bounds[name] = int(raw)
        except ValueError:
            raise BadInput(f"'{name}' must be a frame number (a whole number, 0 or more), not {raw[:40]!r}.",
                           field=name) from None
        if bounds[name] < 0:
            raise BadInput(f"'{name}' must be 0 or more.", field=name)
    if bounds["start"] is not None and bounds["end"] is not None and bounds["start"] > bounds["end"]:
        raise BadInput(f"'start' ({bounds['start']}) is after 'end' ({bounds['end']}).", field="start")
    return bounds["start"], bounds["end"]


@endpoint("GET", parameters=[OpenApiParameter("start", int), OpenApiParameter("end", int)])
@project_permission(Action.VIEW_PROJECT, api=True)
def video_masks(request: HttpRequest, project: Project, video_id: int) -> JsonResponse:
    """Stored masks (COCO RLE counts; ``size`` is the video's) for frames ``start``..``end``, both optional."""
    video = _video_or_404(project, video_id)
    start, end = _frame_bounds(request)
    return JsonResponse({"size": [video.height, video.width], "masks": selectors.video_masks(video, start, end)})


def _masklet_or_404(project: Project, masklet_id: int) -> Masklet:
    masklet = (Masklet.objects.filter(pk=masklet_id, video__project=project).select_related("video__project")
               .first())
    if masklet is None:
        raise Http404("No such masklet in this project.")
    return masklet


@endpoint("GET")
@project_permission(Action.VIEW_PROJECT, api=True)
def masklet_detail(request: HttpRequest, project: Project, masklet_id: int) -> JsonResponse:
    """One masklet: label, status, lock, latest review, and the frames it has a mask on."""
    masklet = _masklet_or_404(project, masklet_id)
    data = _masklet_json(masklet, request.user)
    data["frames"] = list(masklet.frames.order_by("frame_index").values_list("frame_index", flat=True))
    return JsonResponse(data)


@endpoint("GET", "PUT", request=shapes.MasksPut)
@project_permission(Action.VIEW_PROJECT, api=True, PUT=Action.ANNOTATE)
def masklet_masks(request: HttpRequest, project: Project, masklet_id: int) -> JsonResponse:
    """GET: the masklet's masks as COCO RLE, by frame. PUT ``{"frames": [{"frame_index", "rle": {"size", "counts"}}]}``:
    store them as a person's edit (source ``human``, one revision each, all or nothing), as the page does."""
    masklet = _masklet_or_404(project, masklet_id)
    video = masklet.video
    if request.method == "PUT":
        data = validated(shapes.MasksPut, request)
        try:
            saved = annotation.write_masks(masklet, request.user,
                                           [(f["frame_index"], dict(f["rle"])) for f in data["frames"]],
                                           session_id="api")
        except EditRefused as error:
            return refused(error)
        return JsonResponse({"saved": [{"frame_index": s.frame_index, "revision": s.revision, "area": s.area}
                                       for s in saved]})
    rows = masklet.frames.order_by("frame_index").values("frame_index", "rle_counts", "source", "revision", "area")
    size = [video.height, video.width]
    return JsonResponse({"masklet": masklet.id, "object_id": masklet.object_id, "size": size,
                         "frames": [{"frame_index": r["frame_index"], "rle": {"size": size, "counts": r["rle_counts"]},
                                     "source": r["source"], "revision": r["revision"], "area": r["area"]}
                                    for r in rows]})


@endpoint("POST", request=None)
@project_permission(Action.ANNOTATE, api=True)
def masklet_submit(request: HttpRequest, project: Project, masklet_id: int) -> JsonResponse:
    """Hand a draft to review (draft -> submitted; refused when it has no mask)."""
    try:
        masklet = annotation.submit_masklet(_masklet_or_404(project, masklet_id), request.user)
    except EditRefused as error:
        return refused(error)
    return JsonResponse(_masklet_json(masklet, request.user))
