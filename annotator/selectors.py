"""Read-side queries shared by pages, the JSON API and the WebSocket consumers.

Views never build querysets themselves; they ask here, so "which projects does this user see"
has one answer everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from django.db.models import Count, F, Min, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.urls import reverse

from annotator.models import (
    AutoMaskletRun,
    DatasetJob,
    MaskFrame,
    Masklet,
    MissedObject,
    Project,
    Prompt,
    Review,
    Role,
    SeenFrame,
    Video,
)
from annotator.permissions import User
from annotator.services.masks import ACCEPTED_SOURCES
from annotator.verdicts import reason_label, verdict_words


def projects_for_user(user: User) -> QuerySet[Project]:
    """Projects the user is a member of; superusers see every project."""
    if not user.is_authenticated:
        return Project.objects.none()
    projects = Project.objects.annotate(video_count=Count("videos", distinct=True))
    if user.is_superuser:
        return projects
    return projects.filter(memberships__user=user)


def videos_for_project(project: Project) -> QuerySet[Video]:
    return Video.objects.filter(project=project).order_by("-created_at", "-id")


def video_in_project(project: Project, video_id: int) -> Video | None:
    """The video, only if it belongs to ``project`` (ids are never trusted across projects)."""
    return Video.objects.filter(project=project, pk=video_id).first()


def frame_path(video: Video, frame_index: int) -> Path | None:
    """The JPEG of an annotated frame, or None when the index is not one or the file is absent.

    The index must be one of ``video.annotated_frame_indices()``: the file name is built from
    an integer, never from user text, so there is no path to traverse.
    """
    if video.status != Video.Status.READY or frame_index < 0:
        return None
    if not video.stride or frame_index % video.stride or frame_index >= (video.frame_count or 0):
        return None
    return video.frames.path(f"{frame_index:05d}.jpg")


def video_snapshot(project: Project) -> list[dict[str, Any]]:
    """The live fields of every video in the project, as the status WebSocket sends them."""
    return [video_to_dict(video) for video in videos_for_project(project)]


def video_to_dict(video: Video) -> dict[str, Any]:
    """The JSON shape of a video, shared by the API and the WebSocket."""
    return {
        "id": video.id,
        "name": video.name,
        "status": video.status,
        "status_label": video.get_status_display(),
        "progress": round(float(video.progress or 0.0), 4),
        "failure_reason": video.failure_reason,
        "split": video.split,
        "split_label": video.get_split_display(),
        "file_size": video.file_size,
        "fps": video.fps,
        "frame_count": video.frame_count,
        "width": video.width,
        "height": video.height,
        "duration": video.duration,
        "stride": video.stride,
        "annotated_frame_count": video.annotated_frame_count,
        "created_at": video.created_at.isoformat() if video.created_at else None,
        "updated_at": video.updated_at.isoformat() if video.updated_at else None,
    }


def project_to_dict(project: Project, role: str | None) -> dict[str, Any]:
    return {
        "slug": project.slug,
        "name": project.name,
        "description": project.description,
        "annotation_fps": project.annotation_fps,
        "labels": list(project.labels or []),
        "role": role,
        "created_at": project.created_at.isoformat() if project.created_at else None,
    }


def role_label(role: str | None) -> str:
    return Role(role).label if role else "Superuser"


# -- masklets and masks (the annotation page, its socket and the session rebuild) -------------


def masklets_for_video(video: Video) -> QuerySet[Masklet]:
    """The video's masklets by object id, with lock holders and reviews loaded (no query per row)."""
    reviews = Prefetch("reviews", queryset=Review.objects.select_related("reviewer").order_by("created_at", "id"))
    return Masklet.objects.filter(video=video).select_related("lock_holder", "assignee").prefetch_related(
        reviews).order_by(
        "object_id")


def masklet_to_dict(masklet: Masklet, viewer: User) -> dict[str, Any]:
    """The JSON shape of a masklet as ``viewer`` sees it; an expired lock shows as no lock."""
    locked = masklet.lock_is_active()
    reviews = list(masklet.reviews.all())
    latest = reviews[-1] if reviews else None
    return {
        "id": masklet.id,
        "object_id": masklet.object_id,
        "label": masklet.label,
        "type": masklet.type,
        "status": masklet.status,
        "lock_holder": masklet.lock_holder.get_username() if locked and masklet.lock_holder else None,
        "locked_by_me": locked and masklet.lock_holder_id == getattr(viewer, "pk", None),
        "lock_expires_at": masklet.lock_expires_at.isoformat() if locked else None,
        "assignee": masklet.assignee.get_username() if masklet.assignee else None,
        "review": {
            "verdict": latest.verdict,
            "reason": latest.reason,
            "reason_label": reason_label(latest.reason) if latest.reason else "",
            "comment": latest.comment,
            "reviewer": latest.reviewer.get_username() if latest.reviewer else None,
            "at": latest.created_at.isoformat(),
        } if latest else None,
    }


def video_masks(video: Video, start: int | None = None, end: int | None = None) -> list[dict[str, Any]]:
    """Every stored mask of the video with ``start <= frame <= end`` (either bound optional), by frame.

    Long videos have thousands of rows: read as plain values, no model instances.
    """
    rows = MaskFrame.objects.filter(masklet__video=video)
    if start is not None:
        rows = rows.filter(frame_index__gte=start)
    if end is not None:
        rows = rows.filter(frame_index__lte=end)
    return [
        {"object_id": row["masklet__object_id"], "frame": row["frame_index"], "counts": row["rle_counts"],
         "source": row["source"], "revision": row["revision"], "area": row["area"], "quality": row["quality"]}
        for row in rows.order_by("frame_index", "masklet__object_id").values(
            "masklet__object_id", "frame_index", "rle_counts", "source", "revision", "area", "quality")
    ]


def human_masks(video: Video, object_ids: Iterable[int]) -> dict[int, list[tuple[int, dict]]]:
    """What a live session is rebuilt from: per object, the non-empty masks a person made (here or
    imported, see ``ACCEPTED_SOURCES``), by frame."""
    size = [video.height, video.width]
    result: dict[int, list[tuple[int, dict]]] = {int(object_id): [] for object_id in object_ids}
    rows = MaskFrame.objects.filter(masklet__video=video, masklet__object_id__in=list(result),
                                    source__in=ACCEPTED_SOURCES, area__gt=0)
    for object_id, frame_index, counts in rows.order_by("masklet__object_id", "frame_index").values_list(
            "masklet__object_id", "frame_index", "rle_counts"):
        result[object_id].append((frame_index, {"size": size, "counts": counts}))
    return result


def accounts() -> QuerySet[Any]:
    """Every account for the site admins' people page, with how many projects each is in."""
    from django.contrib.auth import get_user_model

    return get_user_model().objects.annotate(project_count=Count("memberships", distinct=True)).order_by(
        "-is_active", "username")


def masklet_story(masklet: Masklet) -> dict[str, Any]:
    """Who annotated the masklet and what happened to it, oldest first, for the review page: its
    creation, each person's edits (count, first and last), each verdict (``verdict_words``)."""
    from django.db.models import Max, Min

    edits = list(Prompt.objects.filter(masklet=masklet).values("author__username").annotate(
        count=Count("id"), first=Min("created_at"), last=Max("created_at")).order_by("first"))
    annotators = [row["author__username"] for row in edits if row["author__username"]]
    if not annotators and masklet.assignee is not None:
        annotators = [masklet.assignee.get_username()]
    events = [{"at": masklet.created_at, "who": "", "what": "generated automatically"
               if masklet.type == "auto" else "created"}]
    events += [{"at": row["first"], "who": row["author__username"] or "a former member",
                "what": f"{row['count']} edit{'s' if row['count'] != 1 else ''}",
                "until": row["last"] if row["last"] != row["first"] else None} for row in edits]
    for review in masklet.reviews.select_related("reviewer").order_by("created_at", "id"):
        what = verdict_words(review)
        if review.reason:
            what += f": {reason_label(review.reason)}"
        if review.comment:
            what += f" — “{review.comment}”"
        events.append({"at": review.created_at, "who": review.reviewer.get_username() if review.reviewer else
                       "a former reviewer", "what": what})
    return {"annotators": annotators, "events": sorted(events, key=lambda e: e["at"])}


def videos_with_progress(project: Project) -> list[Video]:
    """The project's videos for its page, each with ``progress_counts`` (masklets by status),
    ``masked_frames`` (annotated frames where some object has a mask), and its assignment (done,
    who holds it): three queries, whatever the number of videos."""
    from django.db.models import OuterRef, Subquery

    masked = (MaskFrame.objects.filter(masklet__video=OuterRef("pk"), area__gt=0).order_by()
              .values("masklet__video").annotate(n=Count("frame_index", distinct=True)).values("n"))
    videos = list(videos_for_project(project).select_related("assignment__holder", "assignment__done_by")
                  .annotate(masked_frames=Subquery(masked)))
    counts: dict[int, dict[str, int]] = {}
    for video_id, status, n in (Masklet.objects.filter(video__project=project).order_by()
                                .values_list("video_id", "status").annotate(n=Count("id"))):
        counts.setdefault(video_id, {})[status] = n
    labels = dict(Masklet.Status.choices)
    for video in videos:
        mine = counts.get(video.id, {})
        video.progress_counts = [(status, labels[status], mine[status]) for status in labels if mine.get(status)]
        video.masked_frames = video.masked_frames or 0
        assignment = getattr(video, "assignment", None)  # a video nobody took yet has none
        video.done = assignment is not None and assignment.done_at is not None
        video.holder = assignment.holder.get_username() if assignment and assignment.is_held() and \
            assignment.holder else None
    return videos


def video_contents(video: Video) -> dict[str, int]:
    """What deleting the video takes with it: masklets, stored masks, reviews."""
    return {"masklets": Masklet.objects.filter(video=video).count(),
            "masks": MaskFrame.objects.filter(masklet__video=video).count(),
            "reviews": Review.objects.filter(masklet__video=video).count()}


def label_use(project: Project) -> dict[str, int]:
    """How many masklets of the project carry each label."""
    return dict(Masklet.objects.filter(video__project=project).exclude(label="").order_by().values_list("label")
                .annotate(n=Count("id")).values_list("label", "n"))


def missed_objects(video: Video) -> dict[str, Any]:
    """The video's possibly missed objects for reviewers: pending ones in full, the decided ones counted."""
    rows = MissedObject.objects.filter(video=video)
    counts = dict(rows.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    return {"pending": list(rows.filter(status=MissedObject.Status.PENDING)),
            "accepted": counts.get(MissedObject.Status.ACCEPTED, 0),
            "dismissed": counts.get(MissedObject.Status.DISMISSED, 0)}


def missed_object_in_video(video: Video, missed_id: int) -> MissedObject | None:
    return MissedObject.objects.filter(pk=missed_id, video=video).select_related("video__project").first()


def pending_missed_count(video: Video) -> int:
    return MissedObject.objects.filter(video=video, status=MissedObject.Status.PENDING).count()


def auto_masklet_runs(project: Project, limit: int = 20) -> list[dict[str, Any]]:
    """The project's latest auto-masklet runs with progress (the team page and the API)."""
    runs = AutoMaskletRun.objects.filter(video__project=project).select_related("video")[:limit]
    return [{"id": r.id, "video": r.video.name, "video_id": r.video_id, "frame": r.frame_index, "status": r.status,
             "trigger": r.trigger, "kind": r.kind,
             "progress": round(r.progress, 3), "created": r.created_count, "model": r.model_name, "error": r.error,
             "stats": {k: v for k, v in r.stats.items() if k != "masklet_ids"}} for r in runs]


def dataset_jobs(project: Project) -> QuerySet[DatasetJob]:
    """The project's dataset jobs, newest first."""
    return DatasetJob.objects.filter(project=project).select_related("created_by")


def dataset_job_to_dict(project: Project, job: DatasetJob) -> dict[str, Any]:
    """A dataset job as the datasets page's script and the API read it (``download``: the finished zip's URL)."""
    done_export = job.kind == DatasetJob.Kind.EXPORT and job.status == DatasetJob.Status.DONE
    return {
        "id": job.id, "kind": job.kind, "format": job.format, "status": job.status, "progress": job.progress,
        "message": job.message, "error": job.error, "options": job.options,
        "created_by": job.created_by.get_username() if job.created_by else None,
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "download": reverse("api-dataset-job-download", args=[project.slug, job.id]) if done_export else None,
    }


# -- where to look (the quality radar) ------------------------------------------------------------

#: A model frame scored at least this is "confidently good"; a masklet whose model frames all are
#: gets the reviewers' "sample it" mark and, where the project allows it, is approved by itself.
CONFIDENT_QUALITY = 0.9
#: Review-queue and masklet-list orders: ``?order=`` value -> what the page says.
ORDERS = {"oldest": "oldest first", "score": "lowest score first"}


def with_quality(masklets: QuerySet[Masklet]) -> QuerySet[Masklet]:
    """Masklets annotated with ``lowest_quality`` (their worst-scored model frame, None when none is
    scored), ``scored_frames`` and ``unscored_frames`` (model frames with and without a score)."""
    model = Q(frames__source="model")
    return masklets.annotate(lowest_quality=Min("frames__quality", filter=model),
                             scored_frames=Count("frames", filter=model & Q(frames__quality__isnull=False)),
                             unscored_frames=Count("frames", filter=model & Q(frames__quality__isnull=True)))


def is_confident(masklet: Masklet) -> bool:
    """Every model frame scored and at least ``CONFIDENT_QUALITY`` (needs ``with_quality``'s fields)."""
    return bool(masklet.scored_frames and not masklet.unscored_frames
                and masklet.lowest_quality >= CONFIDENT_QUALITY)


def ordered(masklets: QuerySet[Masklet], order: str) -> QuerySet[Masklet]:
    """Masklets in an ``ORDERS`` order: ``score`` puts the lowest-scored first (unscored last), ``oldest``
    the longest waiting first. A subquery, not an aggregate, so the queue can still lock rows with it."""
    if order == "score":
        worst = MaskFrame.objects.filter(masklet=OuterRef("pk"), source="model", quality__isnull=False) \
            .order_by("quality").values("quality")[:1]
        return masklets.annotate(worst_quality=Subquery(worst)).order_by(
            F("worst_quality").asc(nulls_last=True), "updated_at", "id")
    return masklets.order_by("updated_at", "id")


def masklet_quality(masklet: Masklet) -> dict[str, Any]:
    """One masklet's lowest model-frame score and confident mark (the review page's header)."""
    row = with_quality(Masklet.objects.filter(pk=masklet.pk)).first()
    return {"lowest": row.lowest_quality, "confident": is_confident(row), "threshold": CONFIDENT_QUALITY}


def review_queue(project: Project, order: str) -> list[Masklet]:
    """The submitted masklets of the project, with their quality and whether they are confident."""
    rows = ordered(with_quality(Masklet.objects.filter(video__project=project, status=Masklet.Status.SUBMITTED)
                                .select_related("video", "assignee", "lock_holder")), order)
    for masklet in rows:
        masklet.confident = is_confident(masklet)
    return list(rows)


def seen_frames(video: Video) -> dict[int, list[int]]:
    """Object id -> frames a person looked at (``SeenFrame``) or edited (a ``Prompt``), sorted."""
    seen: dict[int, set[int]] = {}
    for rows in (SeenFrame.objects.filter(masklet__video=video), Prompt.objects.filter(masklet__video=video)):
        for object_id, frame in rows.values_list("masklet__object_id", "frame_index"):
            seen.setdefault(object_id, set()).add(frame)
    return {object_id: sorted(frames) for object_id, frames in seen.items()}
