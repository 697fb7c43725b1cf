"""Read-side queries shared by pages, the JSON API and the WebSocket consumers.

Views never build querysets themselves; they ask here, so "which projects does this user see"
has one answer everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.db.models import Count, QuerySet

from annotator.models import Membership, Project, Role, Video
from annotator.permissions import User


def projects_for_user(user: User) -> QuerySet[Project]:
    """Projects the user is a member of; superusers see every project."""
    if not user.is_authenticated:
        return Project.objects.none()
    projects = Project.objects.annotate(video_count=Count("videos", distinct=True))
    if user.is_superuser:
        return projects
    return projects.filter(memberships__user=user)


def roles_by_project(user: User) -> dict[int, str]:
    """``{project_id: role}`` for the user's memberships (to label the project list)."""
    if not user.is_authenticated:
        return {}
    return dict(Membership.objects.filter(user=user).values_list("project_id", "role"))


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
    path = video.frames_dir / f"{frame_index:05d}.jpg"
    return path if path.is_file() else None


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
