"""Work queues: the next thing an annotator should annotate, the next masklet a reviewer should check.

Both hand out work under a lock with an expiry, so abandoned work returns to the queue by
itself, and two people asking at the same moment never get the same item:

- candidates are read with ``SELECT ... FOR UPDATE SKIP LOCKED`` where the database has it
  (Postgres), so a concurrent request skips rows another request is claiming instead of waiting;
- the claim itself is a compare-and-set ``UPDATE ... WHERE <still free>``: only one request's
  update matches a row, whatever the database (on Postgres the WHERE is re-checked after a row
  lock wait; SQLite runs the whole transaction under its one write lock, ``IMMEDIATE`` mode).

Annotators, in order: a masklet of theirs that a reviewer sent back (reopened for them), an auto
masklet a reviewer sent back (nobody's yet: it becomes theirs), a draft of theirs nobody holds,
then a ready video that is not done and that nobody else holds (their own held video first). A held
video stays held while its annotation page is open (the page's ping renews it, ``renew_video_hold``).
Reviewers: the submitted masklet they already hold, else the oldest submitted masklet that is not
their own (they are not its assignee and never edited it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from annotator.automasks.runs import check_for_missed
from annotator.models import Masklet, Project, Prompt, Video, VideoAssignment
from annotator.permissions import Action, User, has_permission
from annotator.selectors import ordered
from annotator.services.annotation import EditRefused, acquire_lock, lock_until, reopen_masklet

#: How long a video handed out by the queue stays with its annotator without them asking again.
WORK_LOCK_SECONDS = 15 * 60
#: How long a reviewer keeps a masklet they were handed.
REVIEW_LOCK_SECONDS = 10 * 60
_CANDIDATES = 8


@dataclass(frozen=True)
class WorkItem:
    """What an annotator should do next: a video, and the masklet to start with (if any)."""

    video: Video
    masklet: Masklet | None
    reason: str  # "rejected", "draft" or "video"
    expires_at: datetime | None


def _work_lock_seconds() -> float:
    return float(getattr(settings, "WORK_LOCK_SECONDS", WORK_LOCK_SECONDS))


def _for_update(queryset: QuerySet) -> QuerySet:
    """Row locks that skip rows others are claiming, where the database supports it."""
    if connection.features.has_select_for_update_skip_locked:
        return queryset.select_for_update(skip_locked=True, of=("self",))
    return queryset


def _free(now: datetime, holder: str, expires: str, user: User) -> Q:
    return Q(**{f"{holder}__isnull": True}) | Q(**{f"{expires}__lte": now}) | Q(**{holder: user})


def _check(project: Project, user: User, action: Action) -> None:
    if not has_permission(user, project, action):
        raise EditRefused("forbidden", "Your role in this project does not give you this queue.")


def own_masklets(user: User) -> Q:
    """Masklets that count as the user's own work: they are its assignee or edited it."""
    return Q(assignee=user) | Q(Exists(Prompt.objects.filter(masklet=OuterRef("pk"), author=user)))


def next_work(project: Project, user: User) -> WorkItem | None:
    """Claim the annotator's next item (see the module docstring); None when the queue is empty."""
    _check(project, user, Action.ANNOTATE)
    now = timezone.now()
    mine = Masklet.objects.filter(video__project=project, video__status=Video.Status.READY, assignee=user)
    # Sent back by a reviewer: one's own first, then auto masklets nobody annotated yet (whoever
    # reopens one first becomes its assignee; a claimer who loses that race falls through).
    unowned = Masklet.objects.filter(video__project=project, video__status=Video.Status.READY, assignee__isnull=True)
    rejected = mine.filter(status=Masklet.Status.REJECTED).order_by("updated_at", "id").first() or \
        unowned.filter(status=Masklet.Status.REJECTED).order_by("updated_at", "id").first()
    if rejected is not None:
        try:
            masklet = reopen_masklet(rejected, user)
            Masklet.objects.filter(pk=masklet.pk, assignee__isnull=True).update(assignee=user)
            return WorkItem(rejected.video, masklet, "rejected", masklet.lock_expires_at)
        except EditRefused:
            pass
    draft = mine.filter(status=Masklet.Status.DRAFT).filter(_free(now, "lock_holder", "lock_expires_at", user)) \
        .select_related("video").order_by("updated_at", "id").first()
    if draft is not None:
        try:
            masklet = acquire_lock(draft, user)
            return WorkItem(draft.video, masklet, "draft", masklet.lock_expires_at)
        except EditRefused:
            pass  # taken in the meantime: fall through to a video
    return _claim_video(project, user, now)


def _claim_video(project: Project, user: User, now: datetime) -> WorkItem | None:
    ready = Video.objects.filter(project=project, status=Video.Status.READY)
    missing = ready.exclude(assignment__isnull=False).values_list("pk", flat=True)
    VideoAssignment.objects.bulk_create([VideoAssignment(video_id=pk) for pk in missing], ignore_conflicts=True)
    expires = now + timedelta(seconds=_work_lock_seconds())
    locked_by_other = Masklet.objects.filter(video=OuterRef("video"), lock_expires_at__gt=now) \
        .exclude(lock_holder=user)
    free = VideoAssignment.objects.filter(video__project=project, video__status=Video.Status.READY,
                                          done_at__isnull=True).filter(_free(now, "holder", "expires_at", user))
    pool = free.exclude(Exists(locked_by_other))
    held = pool.filter(holder=user).values_list("pk", flat=True).first()
    pk = _claim(pool.order_by("video__name", "video_id"), held,
                lambda pk: free.filter(pk=pk).update(holder=user, expires_at=expires, updated_at=now))
    if pk is None:
        return None
    return WorkItem(Video.objects.get(assignment__pk=pk), None, "video", expires)


def _claim(pool: QuerySet, first: int | None, take) -> int | None:
    """Lock one candidate row at a time (SKIP LOCKED: rows others are claiming are passed over, and
    each claimer holds only the row it is taking) and take it with a compare-and-set ``take(pk)``."""
    tried: list[int] = []
    for _ in range(_CANDIDATES):
        with transaction.atomic():
            pk = first if first is not None and not tried else \
                _for_update(pool.exclude(pk__in=tried)).values_list("pk", flat=True).first()
            if pk is None:
                return None
            if take(pk):
                return pk
        tried.append(pk)
    return None


def finish_video(video: Video, user: User) -> VideoAssignment:
    """The annotator says every object of the video is annotated: it leaves the queue, and the
    exhaustivity check looks for objects nobody annotated (``annotator.automasks.runs.check_for_missed``)."""
    _check(video.project, user, Action.ANNOTATE)
    with transaction.atomic():
        assignment, _ = VideoAssignment.objects.get_or_create(video=video)
        assignment.done_at, assignment.done_by = timezone.now(), user
        assignment.holder, assignment.expires_at = None, None
        assignment.save()
        check_for_missed(video, user)
    return assignment


def renew_video_hold(video: Video, user: User) -> bool:
    """Extend the user's live hold on the video (the annotation page's ping, through
    ``renew_locks``): a page left open keeps its video, an abandoned one lets it go.
    An expired hold is not revived, as with masklet locks; returns whether one was renewed."""
    now = timezone.now()
    return bool(VideoAssignment.objects.filter(video=video, holder=user, expires_at__gt=now, done_at__isnull=True)
                .update(expires_at=now + timedelta(seconds=_work_lock_seconds()), updated_at=now))


def renew_locks(video: Video, user: User) -> int:
    """Extend the user's live locks on the video (the page's ``ping``): their draft masklets' locks and
    their work-queue hold on the video itself; returns how many masklet locks were renewed."""
    now = timezone.now()
    renew_video_hold(video, user)
    return Masklet.objects.filter(video=video, lock_holder=user, lock_expires_at__gt=now,
                                  status=Masklet.Status.DRAFT).update(lock_expires_at=lock_until())


def release_video(video: Video, user: User) -> None:
    """Give a held video back to the queue (a no-op when someone else holds it)."""
    VideoAssignment.objects.filter(video=video, holder=user).update(holder=None, expires_at=None)


def next_review(project: Project, user: User, order: str = "oldest") -> Masklet | None:
    """Claim the reviewer's next submitted masklet (never their own); None when nothing waits.
    ``order`` is ``oldest`` (longest waiting first) or ``score`` (lowest-scored first,
    ``annotator.selectors.ordered``)."""
    _check(project, user, Action.REVIEW)
    now = timezone.now()
    held = Masklet.objects.filter(video__project=project, status=Masklet.Status.SUBMITTED, lock_holder=user,
                                  lock_expires_at__gt=now).order_by("updated_at", "id").first()
    if held is not None:
        return held
    free = Masklet.objects.filter(video__project=project, status=Masklet.Status.SUBMITTED) \
        .filter(_free(now, "lock_holder", "lock_expires_at", user)).exclude(own_masklets(user))
    expires = now + timedelta(seconds=REVIEW_LOCK_SECONDS)
    pk = _claim(ordered(free, order), None,
                lambda pk: free.filter(pk=pk).update(lock_holder=user, lock_expires_at=expires))
    return Masklet.objects.select_related("video").get(pk=pk) if pk is not None else None


def queue_counts(project: Project) -> dict[str, int]:
    """How much work waits, for the team page."""
    now = timezone.now()
    masklets = Masklet.objects.filter(video__project=project)
    ready = Video.objects.filter(project=project, status=Video.Status.READY)
    return {
        "videos_open": ready.exclude(assignment__done_at__isnull=False).count(),
        "videos_held": ready.filter(assignment__expires_at__gt=now, assignment__done_at__isnull=True).count(),
        "videos_done": ready.filter(assignment__done_at__isnull=False).count(),
        **{f"masklets_{status}": masklets.filter(status=status).count() for status in Masklet.Status.values},
    }
