"""Effort metrics from the interaction log: the numbers of the SAM 2 paper's Table 1, for our teams.

Public API (helper dashboards import these; every function reads the database only):

- ``effort_by_annotator(project: Project) -> dict[str, Effort]``: username -> that person's effort.
- ``project_effort(project: Project) -> Effort``: everyone's effort in the project.
- ``effort_by_model_version(project: Project | None = None) -> dict[int | None, Effort]``: model
  version id (``None``: the settings model, no registered version) -> effort on masklets that
  version tracked; every project when ``project`` is None.
- ``masklet_model_versions(masklet_ids: Iterable[int]) -> dict[int, int | None]``: which version
  each masklet is attributed to.
- ``Effort``: the raw counts plus the five ratios as properties (``None`` when undefined) and
  ``as_dict()`` for JSON/templates.

Definitions (``docs/DECISIONS.md`` repeats them):

- **Interaction**: one ``Prompt`` row with an author (click, box, brush, mask, clear, restore).
- **Active seconds**: per person, their interactions in one project sorted by time; each gap
  between consecutive interactions counts, capped at ``ACTIVE_GAP_CAP_SECONDS`` (60 s): a longer
  gap is a break, of which only the cap counts (the time to look at the frame again before the
  next click). The person's first interaction counts 0. Each gap belongs to the *later*
  interaction's masklet, so active time adds up exactly across masklets, versions and people.
- **Annotated frames**: frames with a stored mask (empty or not) of the masklets in scope, each
  masklet counted once however many people worked on it.
- **Active seconds per annotated frame** = active seconds / annotated frames.
- **Clicks per clicked frame** = point prompts / distinct (masklet, frame) with a point prompt.
- **Edited frames** = distinct (masklet, frame) with any interaction; **% of frames edited** =
  edited frames / annotated frames (a person's share counts only their own edits).
- **Masklets per hour** = masklets in scope now submitted or approved / active hours.
- **Review rejection rate** = unsatisfactory reviews / all reviews of the masklets in scope.
- **Scope**: per annotator, the masklets the person interacted with; per project, every masklet
  with an interaction; per model version, the masklets attributed to the version, i.e. the
  version that wrote most of the masklet's model-made mask revisions (ties: the later one);
  masklets without a versioned model revision belong to ``None``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, Q

from annotator.models import MaskFrame, MaskFrameRevision, Masklet, MaskSource, Project, Prompt, Review
from engine.models import ModelVersion

ACTIVE_GAP_CAP_SECONDS = 60.0
DONE_STATUSES = (Masklet.Status.SUBMITTED, Masklet.Status.APPROVED)


@dataclass(frozen=True)
class Effort:
    """Counts over one scope; the ratios are derived so that sums of scopes stay meaningful."""

    interactions: int = 0
    clicks: int = 0
    clicked_frames: int = 0
    edited_frames: int = 0
    annotated_frames: int = 0
    active_seconds: float = 0.0
    masklets: int = 0
    masklets_done: int = 0
    reviews: int = 0
    rejections: int = 0

    @property
    def active_seconds_per_frame(self) -> float | None:
        return self.active_seconds / self.annotated_frames if self.annotated_frames else None

    @property
    def clicks_per_clicked_frame(self) -> float | None:
        return self.clicks / self.clicked_frames if self.clicked_frames else None

    @property
    def edited_frame_share(self) -> float | None:
        """0..1 (multiply by 100 for Table 1's percentage)."""
        return self.edited_frames / self.annotated_frames if self.annotated_frames else None

    @property
    def masklets_per_hour(self) -> float | None:
        return self.masklets_done / (self.active_seconds / 3600.0) if self.active_seconds else None

    @property
    def rejection_rate(self) -> float | None:
        return self.rejections / self.reviews if self.reviews else None

    def as_dict(self) -> dict[str, Any]:
        """Counts and ratios, for JSON and templates."""
        return {**asdict(self), "active_seconds_per_frame": self.active_seconds_per_frame,
                "clicks_per_clicked_frame": self.clicks_per_clicked_frame,
                "edited_frame_share": self.edited_frame_share, "masklets_per_hour": self.masklets_per_hour,
                "rejection_rate": self.rejection_rate}


@dataclass
class _Contribution:
    """One person's interactions with one masklet."""

    interactions: int = 0
    clicks: int = 0
    active_seconds: float = 0.0
    clicked: set[int] = field(default_factory=set)
    edited: set[int] = field(default_factory=set)


@dataclass
class _Log:
    """The interaction log of a set of masklets, digested once; scopes are subsets of its keys."""

    contributions: dict[tuple[int, int], _Contribution]  # (author id, masklet id)
    frames: dict[int, int]  # masklet id -> annotated frames
    done: set[int]
    reviews: dict[int, tuple[int, int]]  # masklet id -> (reviews, unsatisfactory)

    def effort(self, keys: Iterable[tuple[int, int]]) -> Effort:
        keys = list(keys)
        masklets = {masklet for _, masklet in keys}
        clicked: set[tuple[int, int]] = set()
        edited: set[tuple[int, int]] = set()
        for author, masklet in keys:
            part = self.contributions[(author, masklet)]
            clicked.update((masklet, frame) for frame in part.clicked)
            edited.update((masklet, frame) for frame in part.edited)
        parts = [self.contributions[key] for key in keys]
        return Effort(
            interactions=sum(p.interactions for p in parts), clicks=sum(p.clicks for p in parts),
            clicked_frames=len(clicked), edited_frames=len(edited),
            annotated_frames=sum(self.frames.get(m, 0) for m in masklets),
            active_seconds=round(sum(p.active_seconds for p in parts), 6),
            masklets=len(masklets), masklets_done=len(masklets & self.done),
            reviews=sum(self.reviews.get(m, (0, 0))[0] for m in masklets),
            rejections=sum(self.reviews.get(m, (0, 0))[1] for m in masklets),
        )


def _read_log(prompts: Any) -> _Log:
    """Walk each person's prompts in time order, crediting capped gaps to the later prompt's masklet."""
    contributions: dict[tuple[int, int], _Contribution] = defaultdict(_Contribution)
    previous: dict[int, Any] = {}
    rows = prompts.filter(author__isnull=False).order_by("author_id", "created_at", "id").values_list(
        "author_id", "masklet_id", "frame_index", "kind", "created_at")
    for author, masklet, frame, kind, at in rows.iterator(chunk_size=5000):
        part = contributions[(author, masklet)]
        part.interactions += 1
        part.edited.add(frame)
        if kind == Prompt.Kind.POINT:
            part.clicks += 1
            part.clicked.add(frame)
        if author in previous:
            part.active_seconds += min((at - previous[author]).total_seconds(), ACTIVE_GAP_CAP_SECONDS)
        previous[author] = at
    masklet_ids = {masklet for _, masklet in contributions}
    frames = dict(MaskFrame.objects.filter(masklet_id__in=masklet_ids).values("masklet_id").annotate(
        n=Count("id")).values_list("masklet_id", "n"))
    done = set(Masklet.objects.filter(pk__in=masklet_ids, status__in=DONE_STATUSES).values_list("pk", flat=True))
    reviews = {row["masklet_id"]: (row["n"], row["bad"]) for row in Review.objects.filter(
        masklet_id__in=masklet_ids).values("masklet_id").annotate(
        n=Count("id"), bad=Count("id", filter=Q(verdict=Review.Verdict.UNSATISFACTORY)))}
    return _Log(dict(contributions), frames, done, reviews)


def _project_log(project: Project | None) -> _Log:
    prompts = Prompt.objects.all() if project is None else Prompt.objects.filter(masklet__video__project=project)
    return _read_log(prompts)


def effort_by_annotator(project: Project) -> dict[str, Effort]:
    """Each person who interacted with the project's masklets -> their effort (by username)."""
    log = _project_log(project)
    keys: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for key in log.contributions:
        keys[key[0]].append(key)
    names = dict(get_user_model().objects.filter(pk__in=keys).values_list("pk", "username"))
    return {names[author]: log.effort(author_keys) for author, author_keys in
            sorted(keys.items(), key=lambda item: names[item[0]])}


def project_effort(project: Project) -> Effort:
    """The whole team's effort in the project."""
    log = _project_log(project)
    return log.effort(log.contributions)


def masklet_model_versions(masklet_ids: Iterable[int]) -> dict[int, int | None]:
    """Masklet -> the model version that wrote most of its model-made revisions (None: no version)."""
    ids = list(masklet_ids)
    counts: dict[int, Counter] = defaultdict(Counter)
    rows = MaskFrameRevision.objects.filter(masklet_id__in=ids, source=MaskSource.MODEL,
                                            model_version__isnull=False).values("masklet_id", "model_version_id")
    for row in rows.annotate(n=Count("id")):
        counts[row["masklet_id"]][row["model_version_id"]] = row["n"]
    return {masklet: (max(counts[masklet].items(), key=lambda item: (item[1], item[0]))[0]
                      if counts.get(masklet) else None) for masklet in ids}


def effort_by_model_version(project: Project | None = None) -> dict[int | None, Effort]:
    """Model version id -> effort on the masklets it tracked (``None``: the settings model)."""
    log = _project_log(project)
    version_of = masklet_model_versions({masklet for _, masklet in log.contributions})
    keys: dict[int | None, list[tuple[int, int]]] = defaultdict(list)
    for key in log.contributions:
        keys[version_of[key[1]]].append(key)
    return {version: log.effort(version_keys) for version, version_keys in keys.items()}


def effort_by_version(project: Project) -> list[dict[str, Any]]:
    """Table 1's columns per model version, named, the fallback model (no version) first."""
    names = dict(ModelVersion.objects.values_list("id", "name"))
    rows = []
    for version_id, effort in effort_by_model_version(project).items():
        rows.append({"version": version_id, "name": names.get(version_id, "fallback model (no version)"),
                     **effort.as_dict()})
    return sorted(rows, key=lambda row: (row["version"] is not None, row["version"] or 0))
