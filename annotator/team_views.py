"""Team pages: members and splits, work queues, verification, auto masklets and effort charts.

Thin views (see ``annotator.views``): each declares its permission rule and calls one service
(``annotator.services.team`` / ``queues`` / ``reviews``, ``annotator.automasks.runs``,
``annotator.metrics``). Refusals from services come back as messages on the page.
"""

from __future__ import annotations

import cv2
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotator import metrics, selectors
from annotator.automasks.runs import set_schedule, start_run
from annotator.charts import bar_chart
from annotator.models import Masklet, Project, Role, Split, Video
from annotator.permissions import Action, project_permission
from annotator.selectors import (
    CONFIDENT_QUALITY,
    ORDERS,
    frame_path,
    masklet_quality,
    masklet_story,
    masklet_to_dict,
    missed_object_in_video,
    pending_missed_count,
    video_in_project,
)
from annotator.selectors import review_queue as review_queue_rows
from annotator.services import missed_objects, queues, reviews, team
from annotator.services.annotation import EditRefused
from annotator.services.reviews import review_masklet
from annotator.verdicts import FINAL_REASONS, REASONS
from engine.segmenters import serving_model
from segmentation.masks import decode_rle, overlay_jpeg

#: Meta's Phase 3 figures (SAM 2 paper, Table 1; ``docs/DATA_ENGINE.md``), drawn as reference lines.
PHASE3 = {"seconds": 4.5, "clicks": 2.68, "edited": 19.04}


def _effort_charts(rows: list[tuple[str, dict]], by: str) -> list:
    """The five effort charts over ``(label, Effort.as_dict())`` rows, e.g. one per annotator or per version."""
    def column(key: str, scale: float = 1.0) -> list[tuple[str, float | None]]:
        return [(label, e[key] * scale if e[key] is not None else None) for label, e in rows]

    return [
        bar_chart(f"Active seconds per annotated frame, {by}", column("active_seconds_per_frame"), "{:.1f} s",
                  reference=("Phase 3: 4.5 s", PHASE3["seconds"])),
        bar_chart(f"Clicks per clicked frame, {by}", column("clicks_per_clicked_frame"),
                  reference=("Phase 3: 2.68", PHASE3["clicks"])),
        bar_chart(f"% of frames edited, {by}", column("edited_frame_share", 100), "{:.1f} %",
                  reference=("Phase 3: 19 %", PHASE3["edited"])),
        bar_chart(f"Masklets per active hour, {by}", column("masklets_per_hour"), "{:.1f}"),
        bar_chart(f"Review rejection rate, {by}", column("rejection_rate", 100), "{:.0f} %"),
    ]


def _versions(project: Project) -> list[dict]:
    """Effort per model version (``metrics.effort_by_version``: named, fallback model first)."""
    return [{**row, "label": row["name"] if row["version"] is not None else "fallback model"}
            for row in metrics.effort_by_version(project)]


@require_http_methods(["GET", "POST"])
@project_permission(Action.MANAGE_MEMBERS)
def team_page(request: HttpRequest, project: Project) -> HttpResponse:
    """Members (add, role, remove), who works on what, splits, queues, auto masklets and effort charts."""
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "add":
                membership = team.add_member(project, request.POST.get("user", ""), request.POST.get("role", ""))
                messages.success(request, f"{membership.user.get_username()} joined as {membership.role}.")
            elif action == "role":
                membership = team.set_role(project, int(request.POST.get("user_id", 0)), request.POST.get("role", ""))
                messages.success(request, f"{membership.user.get_username()} is now {membership.role}.")
            elif action == "remove":
                team.remove_member(project, int(request.POST.get("user_id", 0)))
                messages.success(request, "Member removed; their locks went back to the queue.")
            else:
                messages.error(request, "Unknown team action.")
        except (team.TeamError, ValueError) as error:
            messages.error(request, str(error))
        return redirect("team", slug=project.slug)
    people = {name: e.as_dict() for name, e in metrics.effort_by_annotator(project).items()}
    versions = _versions(project)
    return render(request, "annotator/team.html", {
        "project": project, "members": team.who_works_on_what(project), "roles": Role.choices,
        "splits": Split.choices, "videos": Video.objects.filter(project=project).order_by("name"),
        "counts": queues.queue_counts(project), "runs": selectors.auto_masklet_runs(project),
        "charts": _effort_charts(list(people.items()), "by annotator"),
        "version_charts": _effort_charts([(row["label"], row) for row in versions], "by model version"),
        "effort": metrics.project_effort(project).as_dict(), "people": people, "versions": versions,
        "gap_cap": metrics.ACTIVE_GAP_CAP_SECONDS,
    })


@require_POST
@project_permission(Action.MANAGE_PROJECT)
def team_splits(request: HttpRequest, project: Project) -> HttpResponse:
    """Assign videos to train/val/test (checkboxes + one split)."""
    try:
        ids = [int(pk) for pk in request.POST.getlist("videos")]
        changed = team.set_split(project, ids, request.POST.get("split", ""))
        messages.success(request, f"{changed} video(s) moved to {request.POST.get('split')}.")
    except (team.TeamError, ValueError) as error:
        messages.error(request, str(error))
    return redirect(reverse("team", kwargs={"slug": project.slug}) + "#splits")


@require_POST
@project_permission(Action.MANAGE_PROJECT)
def auto_masklets(request: HttpRequest, project: Project) -> HttpResponse:
    """Queue automatic masklet generation for a video on a chosen frame; ``action=schedule`` turns the
    periodic job on (``enabled=1``: every video uploaded from now on) or off for the project."""
    if request.POST.get("action") == "schedule":
        enabled = request.POST.get("enabled") == "1"
        set_schedule(project, request.user, enabled=enabled)
        messages.success(request, "Every video uploaded from now on gets auto masklets once it is ready."
                         if enabled else "New videos no longer get auto masklets by themselves.")
        return redirect(reverse("team", kwargs={"slug": project.slug}) + "#auto")
    video = video_in_project(project, int(request.POST.get("video", 0) or 0))
    if video is None:
        messages.error(request, "Choose a video of this project.")
        return redirect(reverse("team", kwargs={"slug": project.slug}) + "#auto")
    try:
        per_side = int(request.POST["points_per_side"]) if request.POST.get("points_per_side") else None
        run = start_run(video, request.user, frame_index=int(request.POST.get("frame", 0) or 0),
                        points_per_side=per_side)
        messages.success(request, f"Auto masklets for {video.name} queued (run {run.id}).")
    except EditRefused as error:
        messages.error(request, error.message)
    except ValueError:
        messages.error(request, "The frame and grid size are whole numbers.")
    return redirect(reverse("team", kwargs={"slug": project.slug}) + "#auto")


# -- queues ------------------------------------------------------------------------------


@require_POST
@project_permission(Action.ANNOTATE)
def work_next(request: HttpRequest, project: Project) -> HttpResponse:
    """Claim the next work item and open it on the annotation page."""
    try:
        item = queues.next_work(project, request.user)
    except EditRefused as error:
        messages.error(request, error.message)
        return redirect("project-detail", slug=project.slug)
    if item is None:
        messages.info(request, "Nothing left to annotate in this project right now.")
        return redirect("project-detail", slug=project.slug)
    url = reverse("video-annotate", kwargs={"slug": project.slug, "video_id": item.video.id})
    if item.masklet is not None:
        url += f"?object={item.masklet.object_id}"
        review = reviews.open_review(item.masklet)  # sent back now, or earlier and not yet resubmitted
        if review is not None:
            messages.info(request, f"Object {item.masklet.object_id} came back from review — "
                                   f"{reviews.describe_review(review)}. Fix it and submit it again.")
    return redirect(url)


@require_POST
@project_permission(Action.ANNOTATE)
def video_finish(request: HttpRequest, project: Project, video_id: int) -> HttpResponse:
    """Mark a video's objects all annotated (it leaves the annotators' queue)."""
    video = video_in_project(project, video_id)
    if video is None:
        raise Http404("No such video in this project.")
    queues.finish_video(video, request.user)
    messages.success(request, f"{video.name} is done.")
    return redirect("project-detail", slug=project.slug)


@require_POST
@project_permission(Action.REVIEW)
def review_next(request: HttpRequest, project: Project) -> HttpResponse:
    """Claim the next submitted masklet (never one's own), in the chosen ``order``, and open the review page."""
    order = _order(request.POST.get("order"))
    masklet = queues.next_review(project, request.user, order)
    if masklet is None:
        messages.info(request, "No masklet is waiting for review.")
        return redirect("project-detail", slug=project.slug)
    return _review_page(project, masklet.id, order)


def _order(value: str | None) -> str:
    return value if value in ORDERS else "oldest"


def _review_page(project: Project, masklet_id: int, order: str) -> HttpResponse:
    url = reverse("masklet-review", kwargs={"slug": project.slug, "masklet_id": masklet_id})
    return redirect(url + (f"?order={order}" if order != "oldest" else ""))


@require_GET
@project_permission(Action.REVIEW)
def review_queue(request: HttpRequest, project: Project) -> HttpResponse:
    """Every submitted masklet, oldest or lowest score first, marked when all its frames are confidently good."""
    order = _order(request.GET.get("order"))
    return render(request, "annotator/review_queue.html", {
        "project": project, "masklets": review_queue_rows(project, order), "order": order, "orders": ORDERS,
        "order_words": ORDERS[order],
        "confident": CONFIDENT_QUALITY,
    })


def _missed_object(project: Project, video_id: int, missed_id: int):
    video = video_in_project(project, video_id)
    suggestion = missed_object_in_video(video, missed_id) if video is not None else None
    if suggestion is None:
        raise Http404("No such suggestion for this video.")
    return suggestion


@require_POST
@project_permission(Action.REVIEW)
def missed_object(request: HttpRequest, project: Project, video_id: int, missed_id: int) -> HttpResponse:
    """Accept (a draft masklet to annotate) or dismiss (remembered) a possibly missed object."""
    suggestion = _missed_object(project, video_id, missed_id)
    action = request.POST.get("action")
    try:
        if action == "accept":
            masklet = missed_objects.accept(suggestion, request.user)
            who = masklet.assignee.get_username() if masklet.assignee else "the annotators' queue"
            messages.success(request, f"Object {masklet.object_id} added as a draft to annotate ({who}).")
        elif action == "dismiss":
            missed_objects.dismiss(suggestion, request.user)
            messages.success(request, "Suggestion dismissed: the check will not offer that object again.")
        else:
            messages.error(request, "Choose accept or dismiss.")
    except EditRefused as error:
        messages.error(request, error.message)
    return redirect(reverse("video-detail", kwargs={"slug": project.slug, "video_id": video_id}) + "#missed")


@require_GET
@project_permission(Action.REVIEW)
def missed_object_image(request: HttpRequest, project: Project, video_id: int, missed_id: int) -> HttpResponse:
    """The suggestion's frame with its mask tinted and outlined (JPEG), for the video page's list."""
    suggestion = _missed_object(project, video_id, missed_id)
    path = frame_path(suggestion.video, suggestion.frame_index)
    if path is None:
        raise Http404("The frame is gone.")
    mask = decode_rle({"size": [suggestion.video.height, suggestion.video.width], "counts": suggestion.rle_counts})
    response = HttpResponse(overlay_jpeg(cv2.imread(str(path)), mask), content_type="image/jpeg")
    response["Cache-Control"] = "private, max-age=3600"
    return response


def _masklet(project: Project, masklet_id: int) -> Masklet:
    masklet = Masklet.objects.filter(pk=masklet_id, video__project=project).select_related("video").first()
    if masklet is None:
        raise Http404("No such masklet in this project.")
    return masklet


@require_http_methods(["GET", "POST"])
@project_permission(Action.REVIEW)
def masklet_review(request: HttpRequest, project: Project, masklet_id: int) -> HttpResponse:
    """Play the masklet over its video and give a verdict; POST records it and opens the next one."""
    masklet = _masklet(project, masklet_id)
    if request.method == "POST":
        verdict = request.POST.get("verdict", "")
        final = verdict == "discard"
        try:
            review_masklet(masklet, request.user, verdict="unsatisfactory" if final else verdict,
                           reason=request.POST.get("final_reason" if final else "reason", ""),
                           comment=request.POST.get("comment", ""), final=final)
        except EditRefused as error:
            messages.error(request, error.message)
            return redirect("masklet-review", slug=project.slug, masklet_id=masklet.id)
        masklet.refresh_from_db()
        messages.success(request, f"{masklet.video.name} object {masklet.object_id}: "
                                  f"{masklet.get_status_display().lower()}.")
        order = _order(request.POST.get("order"))
        following = queues.next_review(project, request.user, order)
        if following is None:
            messages.info(request, "No more masklets waiting for review.")
            return redirect("project-detail", slug=project.slug)
        return _review_page(project, following.id, order)
    video = masklet.video
    return render(request, "annotator/review.html", {
        "project": project, "video": video, "masklet": masklet, "story": masklet_story(masklet),
        "serving": serving_model(project),
        "reasons": REASONS, "final_reasons": FINAL_REASONS,
        "can_judge": masklet.status == Masklet.Status.SUBMITTED, "order": _order(request.GET.get("order")),
        "missed_pending": pending_missed_count(video), "quality": masklet_quality(masklet),
        "config": {
            "objectId": masklet.object_id, "width": video.width, "height": video.height,
            "frames": video.annotated_frame_indices(), "fps": float(project.annotation_fps or 6),
            "frameUrl": reverse("video-frame", kwargs={"slug": project.slug, "video_id": video.id, "frame_index": 0}),
            "masksUrl": reverse("api-video-masks", kwargs={"slug": project.slug, "video_id": video.id}),
            "masklet": masklet_to_dict(masklet, request.user),
        },
    })
