"""The API of a project's team: members, reviews, auto-masklet runs and effort metrics."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.http import HttpRequest, JsonResponse
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

from annotator import metrics, selectors, verdicts
from annotator.api import serializers as shapes
from annotator.api.framework import endpoint, paginated, refused, validated
from annotator.automasks.runs import start_run
from annotator.models import Masklet, Membership, Project, Review
from annotator.permissions import Action, project_permission
from annotator.services import reviews, team
from annotator.services.annotation import EditRefused
from engine.input import error_response


def _member_json(membership: Membership) -> dict[str, Any]:
    return {"username": membership.user.get_username(), "user_id": membership.user_id, "role": membership.role}


@endpoint("GET", "POST", request=shapes.MemberAdd)
@project_permission(Action.VIEW_PROJECT, api=True, POST=Action.MANAGE_MEMBERS)
def member_list(request: HttpRequest, project: Project) -> JsonResponse:
    """GET: the members and their roles. POST ``{username, role}`` (admins): add an existing account."""
    if request.method == "POST":
        data = validated(shapes.MemberAdd, request)
        try:
            membership = team.add_member(project, data["username"], data["role"])
        except team.TeamError as error:
            status = 409 if "already a member" in str(error) else 400
            return error_response(str(error), status, field="username")
        return JsonResponse(_member_json(membership), status=201)
    members = Membership.objects.filter(project=project).select_related("user").order_by("user__username")
    return paginated(request, members, _member_json)


@endpoint("PATCH", "DELETE", request=shapes.MemberEdit)
@project_permission(Action.MANAGE_MEMBERS, api=True)
def member_detail(request: HttpRequest, project: Project, username: str) -> JsonResponse:
    """PATCH ``{role}``: change a member's role. DELETE: remove them (their locks go back to the queues).
    A project keeps at least one admin (409)."""
    user = get_user_model().objects.filter(username=username).first()
    if user is None or not Membership.objects.filter(project=project, user=user).exists():
        return error_response(f"{username} is not a member of this project.", 404)
    try:
        if request.method == "DELETE":
            team.remove_member(project, user.pk)
            return JsonResponse({"removed": username})
        membership = team.set_role(project, user.pk, validated(shapes.MemberEdit, request)["role"])
    except team.TeamError as error:
        return error_response(str(error), 409)
    return JsonResponse(_member_json(membership))


# -- reviews ---------------------------------------------------------------------------------


def _review_json(review: Review) -> dict[str, Any]:
    return {"id": review.id, "masklet": review.masklet_id, "video_id": review.masklet.video_id,
            "object_id": review.masklet.object_id, "verdict": review.verdict,
            "words": verdicts.verdict_words(review), "reason": review.reason,
            "reason_label": verdicts.reason_label(review.reason) if review.reason else "", "comment": review.comment,
            "final": review.final, "reviewer": review.reviewer.get_username() if review.reviewer else None,
            "status": review.masklet.status, "at": review.created_at.isoformat()}


@endpoint("POST", request=shapes.ReviewIn, summary="Approve, send back or reject a submitted masklet")
@project_permission(Action.REVIEW, api=True)
def masklet_review(request: HttpRequest, project: Project, masklet_id: int) -> JsonResponse:
    """``{verdict: approve | send_back | reject, reason, comment}``: approve (-> approved), send back with a reason
    from the pick list (-> rejected, back to its annotator), or reject for good (no clear boundary -> discarded).
    Nobody reviews a masklet they worked on (403)."""
    masklet = Masklet.objects.filter(pk=masklet_id, video__project=project).first()
    if masklet is None:
        return error_response("No such masklet in this project.", 404)
    data = validated(shapes.ReviewIn, request)
    final = data["verdict"] == "reject"
    try:
        review = reviews.review_masklet(masklet, request.user,
                                        verdict="satisfactory" if data["verdict"] == "approve" else "unsatisfactory",
                                        reason=data["reason"], comment=data["comment"], final=final)
    except EditRefused as error:
        return refused(error)
    return JsonResponse(_review_json(Review.objects.select_related("masklet", "reviewer").get(pk=review.pk)),
                        status=201)


class _ReviewFilter(serializers.Serializer):
    verdict = serializers.ChoiceField(choices=Review.Verdict.choices, required=False)
    masklet = serializers.IntegerField(required=False, min_value=1)


@endpoint("GET", parameters=[_ReviewFilter])
@project_permission(Action.VIEW_PROJECT, api=True)
def review_list(request: HttpRequest, project: Project) -> JsonResponse:
    """Every verdict in the project, newest first (``?verdict=``, ``?masklet=``)."""
    filters = _ReviewFilter(data=request.GET)
    filters.is_valid(raise_exception=True)
    rows = Review.objects.filter(masklet__video__project=project).select_related("masklet", "reviewer")
    if "verdict" in filters.validated_data:
        rows = rows.filter(verdict=filters.validated_data["verdict"])
    if "masklet" in filters.validated_data:
        rows = rows.filter(masklet_id=filters.validated_data["masklet"])
    return paginated(request, rows.order_by("-created_at", "-id"), _review_json)


# -- auto masklets, effort -------------------------------------------------------------------------


class _AutoRunIn(serializers.Serializer):
    video = serializers.IntegerField(min_value=1)
    frame = serializers.IntegerField(min_value=0, default=0)
    points_per_side = serializers.IntegerField(min_value=2, max_value=64, required=False, allow_null=True)


@endpoint("GET", "POST", request=_AutoRunIn)
@project_permission(Action.MANAGE_PROJECT, api=True)
def auto_masklet_runs(request: HttpRequest, project: Project) -> JsonResponse:
    """GET: recent runs with progress (the team page polls this). POST ``{video, frame?, points_per_side?}``:
    queue automatic masklets for a ready video (they go to review as type ``auto``)."""
    if request.method == "POST":
        data = validated(_AutoRunIn, request)
        video = selectors.video_in_project(project, data["video"])
        if video is None:
            return error_response("No such video in this project.", 404, field="video")
        try:
            run = start_run(video, request.user, frame_index=data["frame"], points_per_side=data.get("points_per_side"))
        except EditRefused as error:
            return refused(error, 409 if error.code != "bad_message" else 400)
        return JsonResponse({"id": run.id, "status": run.status, "video_id": video.id}, status=202)
    return JsonResponse({"runs": selectors.auto_masklet_runs(project)})


@endpoint("GET", parameters=[OpenApiParameter("format", str, enum=["json"], required=False)])
@project_permission(Action.MANAGE_MEMBERS, api=True)
def effort(request: HttpRequest, project: Project) -> JsonResponse:
    """The effort metrics: project, per annotator and per model version (``annotator.metrics``)."""
    return JsonResponse({
        "project": metrics.project_effort(project).as_dict(),
        "annotators": {name: e.as_dict() for name, e in metrics.effort_by_annotator(project).items()},
        "model_versions": {str(k): e.as_dict() for k, e in metrics.effort_by_model_version(project).items()},
        "active_gap_cap_seconds": metrics.ACTIVE_GAP_CAP_SECONDS,
    })
