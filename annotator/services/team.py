"""Team management for project admins: members and their roles, video splits, who works on what.

Views call these after the permission check (``Action.MANAGE_MEMBERS`` / ``MANAGE_PROJECT``);
the rules kept here are the ones a permission table cannot express: a project never loses its
last admin, and a person is a member once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from annotator.models import Masklet, Membership, Project, Role, Split, Video, VideoAssignment


class TeamError(ValueError):
    """A team change that cannot be made; the message is shown to the admin as is."""


def _user(identifier: str) -> Any:
    User = get_user_model()
    identifier = (identifier or "").strip()
    user = User.objects.filter(Q(username__iexact=identifier) | Q(email__iexact=identifier)).first() \
        if identifier else None
    if user is None or not user.is_active:
        raise TeamError(f"No active account is called “{identifier}” (give a username or an e-mail address; "
                        "a site admin creates accounts on the People page).")
    return user


def _role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise TeamError(f"“{role}” is not a role: choose admin, annotator or reviewer.") from None


def add_member(project: Project, identifier: str, role: str) -> Membership:
    """Add an existing account to the project with a role."""
    user, role = _user(identifier), _role(role)
    if Membership.objects.filter(project=project, user=user).exists():
        raise TeamError(f"{user.get_username()} is already a member; change their role instead.")
    return Membership.objects.create(project=project, user=user, role=role)


def _keeps_an_admin(project: Project, membership: Membership) -> None:
    others = Membership.objects.filter(project=project, role=Role.ADMIN).exclude(pk=membership.pk)
    if membership.role == Role.ADMIN and not others.exists():
        raise TeamError("A project needs at least one admin: make someone else admin first.")


def set_role(project: Project, user_id: int, role: str) -> Membership:
    """Change a member's role (the last admin stays admin)."""
    role = _role(role)
    with transaction.atomic():
        membership = Membership.objects.select_for_update().filter(project=project, user_id=user_id).first()
        if membership is None:
            raise TeamError("That person is not a member of this project.")
        if role != Role.ADMIN:
            _keeps_an_admin(project, membership)
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


def remove_member(project: Project, user_id: int) -> None:
    """Remove a member; their live locks in the project are released so their work goes back to the queue."""
    with transaction.atomic():
        membership = Membership.objects.select_for_update().filter(project=project, user_id=user_id).first()
        if membership is None:
            raise TeamError("That person is not a member of this project.")
        _keeps_an_admin(project, membership)
        membership.delete()
        Masklet.objects.filter(video__project=project, lock_holder_id=user_id).update(lock_holder=None,
                                                                                     lock_expires_at=None)
        VideoAssignment.objects.filter(video__project=project, holder_id=user_id).update(holder=None,
                                                                                        expires_at=None)


def set_split(project: Project, video_ids: list[int], split: str) -> int:
    """Put videos of the project into train/val/test; returns how many changed."""
    if split not in Split.values:
        raise TeamError(f"“{split}” is not a split: choose train, val or test.")
    return Video.objects.filter(project=project, pk__in=video_ids).update(split=split)


@dataclass(frozen=True)
class MemberWork:
    """One member and what they hold right now."""

    user_id: int
    username: str
    role: str
    videos: list[str]
    masklets: list[str]
    reviewing: list[str]


def who_works_on_what(project: Project) -> list[MemberWork]:
    """Every member with the videos and masklets they hold a live lock on (drafts: editing; submitted: reviewing)."""
    now = timezone.now()
    videos: dict[int, list[str]] = {}
    for holder, name in VideoAssignment.objects.filter(video__project=project, expires_at__gt=now,
                                                       done_at__isnull=True).values_list("holder_id", "video__name"):
        videos.setdefault(holder, []).append(name)
    editing: dict[int, list[str]] = {}
    reviewing: dict[int, list[str]] = {}
    for holder, status, video, object_id in Masklet.objects.filter(
            video__project=project, lock_expires_at__gt=now).values_list(
            "lock_holder_id", "status", "video__name", "object_id").order_by("video__name", "object_id"):
        target = reviewing if status == Masklet.Status.SUBMITTED else editing
        target.setdefault(holder, []).append(f"{video} #{object_id}")
    members = Membership.objects.filter(project=project).select_related("user").order_by("role", "user__username")
    return [MemberWork(m.user_id, m.user.get_username(), m.role, videos.get(m.user_id, []),
                       editing.get(m.user_id, []), reviewing.get(m.user_id, [])) for m in members]
