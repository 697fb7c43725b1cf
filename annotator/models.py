"""Projects, people, videos, masklets and the interaction log.

Frame indices are native video frame numbers everywhere (SA-V names 00000, 00004, ...).
Masks are stored as COCO compressed RLE (``rle_counts`` is the ``counts`` string; the size is
the video's height and width). Nothing is updated in place without a revision row: every
change to a ``MaskFrame`` appends a ``MaskFrameRevision`` (see ``annotator.services.masks``).
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from engine.models import Job
from engine.safe_paths import validate_video_name
from engine.storage import VideoFrames


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    ANNOTATOR = "annotator", "Annotator"
    REVIEWER = "reviewer", "Reviewer"


class Project(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    annotation_fps = models.PositiveSmallIntegerField(
        default=6, validators=[MinValueValidator(1), MaxValueValidator(120)],
        help_text="Frames per second that people annotate (SA-V: 6, i.e. every 4th frame at 24 fps).",
    )
    labels = models.JSONField(default=list, blank=True, help_text="The label set, a list of names.")
    retired_labels = models.JSONField(
        default=list, blank=True,
        help_text="Labels no longer offered for new objects; masklets and exports that have them keep them.")
    label_colours = models.JSONField(default=dict, blank=True, help_text="Label name -> #rrggbb.")
    auto_masklets_since = models.DateTimeField(
        null=True, blank=True,
        help_text="Opt-in: videos uploaded from this time on get auto masklets once ready (the periodic job, "
                  "annotator.automasks.runs.scheduled_tick); empty: only when an admin asks.")
    auto_approve_confident = models.BooleanField(
        default=False,
        help_text="Approve a submitted masklet by itself when every model frame of it is confidently good "
                  "(annotator.selectors.CONFIDENT_QUALITY); off: reviewers see a mark and sample it.")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def all_labels(self) -> list[str]:
        """The active labels, then the retired ones (exports number categories in this order)."""
        return [*(self.labels or []), *(self.retired_labels or [])]


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="one_membership_per_user")]

    def __str__(self) -> str:
        return f"{self.user} is {self.role} of {self.project}"


class Split(models.TextChoices):
    TRAIN = "train", "Train"
    VAL = "val", "Validation"
    TEST = "test", "Test"


class Video(models.Model):
    class Status(models.TextChoices):
        UPLOADED = "uploaded", "Uploaded"
        INGESTING = "ingesting", "Ingesting"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="videos")
    name = models.CharField(max_length=255, validators=[validate_video_name],
                            help_text="Video id used in exports (e.g. sav_000001): a safe file name.")
    original = models.FileField(upload_to="videos/%Y/%m/", max_length=500, blank=True)
    file_size = models.BigIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.UPLOADED)
    failure_reason = models.TextField(blank=True)
    progress = models.FloatField(default=0.0, help_text="Ingest progress, 0..1.")
    fps = models.FloatField(null=True, blank=True)
    frame_count = models.PositiveIntegerField(null=True, blank=True, help_text="Native frames.")
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    duration = models.FloatField(null=True, blank=True, help_text="Seconds.")
    stride = models.PositiveSmallIntegerField(null=True, blank=True,
                                              help_text="Native frames between annotated frames.")
    annotated_frame_count = models.PositiveIntegerField(null=True, blank=True)
    split = models.CharField(max_length=8, choices=Split.choices, default=Split.TRAIN)
    environment = models.CharField(max_length=32, blank=True, help_text='SA-V "Indoor" / "Outdoor".')
    content_sha256 = models.CharField(max_length=64, blank=True, db_index=True,
                                      help_text="SHA-256 of the original file: the same upload twice is noticed.")
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["project", "name"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="unique_video_name_per_project")]

    def __str__(self) -> str:
        return self.name

    @property
    def frames(self) -> VideoFrames:
        """The ingested frames, ``{native_index:05d}.jpg``, wherever the storage keeps them (``engine.storage``)."""
        return VideoFrames(self.id)

    @property
    def frames_dir(self) -> Path | None:
        """The frames' local folder with ``file://`` storage (tools and tests write there); None on S3."""
        return self.frames.folder

    def annotated_frame_indices(self) -> list[int]:
        """Native indices of the annotated frames: 0, stride, 2*stride, ..."""
        if not self.stride or not self.frame_count:
            return []
        return list(range(0, self.frame_count, self.stride))


class IngestJob(Job):
    """One attempt to ingest a video, run on the ``cpu`` queue (or in the CLI) through ``engine.liveness``.

    The video's ``status`` is the view people see; ``annotator.services.videos`` sets it from this
    job's transitions (claimed: ingesting; ended: ready or failed), so a lost ingest is recovered by
    the same routines as every other job and its video is failed with the reason.
    """

    video = models.ForeignKey(Video, on_delete=models.CASCADE, related_name="ingest_jobs")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"ingest of video {self.video_id} ({self.status})"


class MaskletType(models.TextChoices):
    MANUAL = "manual", "Manual"
    AUTO = "auto", "Auto"


class Masklet(models.Model):
    """One object's masks across one video."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        SUBMITTED = "submitted", "Submitted"
        APPROVED = "approved", "Approved"
        #: A reviewer's "send back": the annotator fixes it and submits it again.
        REJECTED = "rejected", "Sent back"
        #: A reviewer's final "no": the object has no clear boundary; it never returns to annotation.
        DISCARDED = "discarded", "Rejected for good"

    video = models.ForeignKey(Video, on_delete=models.CASCADE, related_name="masklets")
    object_id = models.PositiveIntegerField(help_text="Object id within the video (SA-V masklet_id).")
    label = models.CharField(max_length=100, blank=True)
    type = models.CharField(max_length=8, choices=MaskletType.choices, default=MaskletType.MANUAL)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    assignee = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="assigned_masklets")
    lock_holder = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="locked_masklets")
    lock_expires_at = models.DateTimeField(null=True, blank=True)
    stability_score = models.FloatField(null=True, blank=True,
                                        help_text="Auto masklets: the seed mask's stability score (0..1).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["video", "object_id"]
        constraints = [models.UniqueConstraint(fields=["video", "object_id"], name="unique_object_per_video")]
        indexes = [models.Index(fields=["status", "type"])]

    def __str__(self) -> str:
        return f"{self.video} object {self.object_id}"

    def lock_is_active(self, now=None) -> bool:
        """True while someone holds an unexpired lock (an expired lock is as good as none)."""
        return (self.lock_holder_id is not None and self.lock_expires_at is not None
                and self.lock_expires_at > (now or timezone.now()))

    def is_locked_by(self, user, now=None) -> bool:
        """True when ``user`` holds this masklet's lock and it has not expired."""
        return self.lock_is_active(now) and self.lock_holder_id == getattr(user, "pk", None)


class MaskSource(models.TextChoices):
    MODEL = "model", "Model"
    HUMAN = "human", "Human"
    IMPORTED = "imported", "Imported"


QUALITY_HELP = "Model frames: how likely the mask is right, in [0, 1] (higher = better); null for people's masks."
QUALITY_FEATURES_HELP = "The named signals the quality score came from (what the learned verifier trains on)."


class MaskFrame(models.Model):
    """The current mask of one masklet on one native frame."""

    masklet = models.ForeignKey(Masklet, on_delete=models.CASCADE, related_name="frames")
    frame_index = models.PositiveIntegerField(help_text="Native video frame number.")
    rle_counts = models.TextField(help_text="COCO compressed RLE counts; size is the video's (height, width).")
    area = models.PositiveIntegerField()
    bbox = models.JSONField(help_text="[x, y, width, height] in pixels, COCO style.")
    source = models.CharField(max_length=10, choices=MaskSource.choices)
    model_version = models.ForeignKey("engine.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+")
    revision = models.PositiveIntegerField(default=1)
    quality = models.FloatField(null=True, blank=True, help_text=QUALITY_HELP)
    quality_features = models.JSONField(null=True, blank=True, help_text=QUALITY_FEATURES_HELP)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["masklet", "frame_index"]
        constraints = [models.UniqueConstraint(fields=["masklet", "frame_index"], name="one_mask_per_frame")]


class MaskFrameRevision(models.Model):
    """Append-only history: one row per change of a ``MaskFrame`` (restorable)."""

    masklet = models.ForeignKey(Masklet, on_delete=models.CASCADE, related_name="revisions")
    frame_index = models.PositiveIntegerField()
    revision = models.PositiveIntegerField()
    rle_counts = models.TextField()
    area = models.PositiveIntegerField()
    bbox = models.JSONField()
    source = models.CharField(max_length=10, choices=MaskSource.choices)
    model_version = models.ForeignKey("engine.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+")
    quality = models.FloatField(null=True, blank=True, help_text=QUALITY_HELP)
    quality_features = models.JSONField(null=True, blank=True, help_text=QUALITY_FEATURES_HELP)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["masklet", "frame_index", "revision"]
        constraints = [
            models.UniqueConstraint(fields=["masklet", "frame_index", "revision"], name="unique_revision")
        ]


class Prompt(models.Model):
    """The interaction log: every click, box, brush stroke a person made, in order."""

    class Kind(models.TextChoices):
        POINT = "point", "Point"
        BOX = "box", "Box"
        MASK = "mask", "Mask"
        BRUSH = "brush", "Brush"
        CLEAR = "clear", "Clear"
        RESTORE = "restore", "Restore"

    masklet = models.ForeignKey(Masklet, on_delete=models.CASCADE, related_name="prompts")
    frame_index = models.PositiveIntegerField(help_text="Native video frame number.")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    payload = models.JSONField(help_text="point: {x, y, positive}; box: {x0, y0, x1, y1}; brush: {counts}; "
                                         "clear: {}; restore: {revision}.")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="+")
    session_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["masklet", "created_at", "id"]


class SeenFrame(models.Model):
    """A person looked at one object on one frame (the annotation page) -- the radar's jump key skips it.

    The first look is kept; frames a person edited count as seen through their ``Prompt`` rows.
    """

    masklet = models.ForeignKey(Masklet, on_delete=models.CASCADE, related_name="seen_frames")
    frame_index = models.PositiveIntegerField(help_text="Native video frame number.")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+")
    seen_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["masklet", "frame_index"], name="one_seen_row_per_frame")]


class Review(models.Model):
    class Verdict(models.TextChoices):
        SATISFACTORY = "satisfactory", "Approved"
        UNSATISFACTORY = "unsatisfactory", "Sent back"

    masklet = models.ForeignKey(Masklet, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    verdict = models.CharField(max_length=16, choices=Verdict.choices)
    reason = models.CharField(max_length=100, blank=True)
    comment = models.TextField(blank=True)
    final = models.BooleanField(default=False, help_text="Rejected for good (no clear boundary): never reopened.")
    automatic = models.BooleanField(
        default=False, help_text="Approved by the project's auto-approve setting, not by a person (no reviewer).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["masklet", "created_at"]


class VideoAssignment(models.Model):
    """Who is annotating a video (a lock with expiry, like a masklet's), and whether it is done.

    The annotators' work queue hands out videos through these rows (``annotator.services.queues``).
    """

    video = models.OneToOneField(Video, on_delete=models.CASCADE, related_name="assignment")
    holder = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="+")
    expires_at = models.DateTimeField(null=True, blank=True)
    done_at = models.DateTimeField(null=True, blank=True, help_text="Every object of the video is annotated.")
    done_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    def is_held(self, now=None) -> bool:
        return self.holder_id is not None and self.expires_at is not None and self.expires_at > (now or timezone.now())


class AutoMaskletRun(Job):
    """One automatic masklet generation on a video (a ``gpu`` task), with progress for the admin page.

    At most one queued-or-running run per video (a partial unique constraint), so an admin's click
    and the periodic job can never both generate for the same video at once. ``worker`` and
    ``heartbeat_at`` let others fail a run whose worker died (``engine.liveness``), so a lost run
    does not hold its video for ever.
    """

    class Trigger(models.TextChoices):
        MANUAL = "manual", "An admin"
        SCHEDULE = "schedule", "The periodic job"
        FINISHED = "finished", "A video marked done"

    class Kind(models.TextChoices):
        MASKLETS = "masklets", "Auto masklets"
        #: The exhaustivity check: proposals no masklet explains become ``MissedObject`` suggestions.
        MISSED = "missed", "Missed-object check"

    video = models.ForeignKey(Video, on_delete=models.CASCADE, related_name="auto_runs")
    frame_index = models.PositiveIntegerField(help_text="Native frame the point grid is placed on.")
    points_per_side = models.PositiveSmallIntegerField(default=32)
    created_count = models.PositiveIntegerField(default=0, help_text="Auto masklets stored.")
    stats = models.JSONField(default=dict, blank=True, help_text="Candidates, kept, dropped as duplicates, ...")
    model_name = models.CharField(max_length=200, blank=True)
    trigger = models.CharField(max_length=8, choices=Trigger.choices, default=Trigger.MANUAL)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.MASKLETS)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["video"], condition=models.Q(status__in=["queued", "running"]),
                                               name="one_active_auto_masklet_run_per_video")]


class MissedObject(models.Model):
    """A possibly missed object: a proposal of the exhaustivity check (``annotator.automasks.missed``)
    that overlaps no masklet of its video, offered to reviewers on one frame.

    Accepting makes it a draft masklet for the video's annotator (``annotator.services.missed_objects``);
    a dismissed one is kept, so later checks do not offer the same object again.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACCEPTED = "accepted", "Accepted"
        DISMISSED = "dismissed", "Dismissed"

    video = models.ForeignKey(Video, on_delete=models.CASCADE, related_name="missed_objects")
    run = models.ForeignKey(AutoMaskletRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    frame_index = models.PositiveIntegerField(help_text="Native frame the object was found on.")
    rle_counts = models.TextField(help_text="COCO compressed RLE counts; size is the video's (height, width).")
    area = models.PositiveIntegerField()
    bbox = models.JSONField(help_text="[x, y, width, height] in pixels, COCO style.")
    score = models.FloatField(help_text="The proposal's stability score (0..1).")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    masklet = models.ForeignKey(Masklet, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                help_text="Accepted: the masklet it became.")
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["video", "frame_index", "-score", "id"]
        indexes = [models.Index(fields=["video", "status"])]


class MaskletOrigin(models.Model):
    """Where an imported masklet came from, and what its source said that our own history cannot.

    SA-V files carry a per-masklet count of human-edited frames (not which frames) and, for auto
    masklets, a stability score per frame; neither can be recomputed here, so the import keeps
    them and the SA-V export writes them back (``annotator.datasets.sav``).
    """

    masklet = models.OneToOneField(Masklet, on_delete=models.CASCADE, related_name="origin")
    format = models.CharField(max_length=16)
    source_file = models.CharField(max_length=500, help_text="The imported file's name.")
    source_id = models.CharField(max_length=64, blank=True, help_text="The object's id in the source.")
    edited_frame_count = models.PositiveIntegerField(
        default=0, help_text="Frames a person edited before the import (SA-V masklet_edited_frame_count).")
    stability_scores = models.JSONField(null=True, blank=True,
                                        help_text="SA-V auto: one score per annotated frame, as imported.")
    imported_at = models.DateTimeField(auto_now_add=True)


class DatasetJob(Job):
    """One dataset export or import, run as a ``cpu`` task (never in the web process)."""

    class Kind(models.TextChoices):
        EXPORT = "export", "Export"
        IMPORT = "import", "Import"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="dataset_jobs")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    format = models.CharField(max_length=16)
    options = models.JSONField(default=dict, blank=True, help_text="Export filters, or the import's settings.")
    message = models.TextField(blank=True, help_text="What the job did, once done.")
    file = models.CharField(max_length=500, blank=True,
                            help_text="Under MEDIA_ROOT: the export's zip, or the uploaded import file.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.format} of {self.project} ({self.status})"


class ApiToken(models.Model):
    """A person's named key to the HTTP API (``Authorization: Bearer <token>``; ``annotator.services.tokens``).

    Only the SHA-256 of the token is stored; ``prefix`` (its first characters, shown on the account
    page) finds the row, the digest is then compared in constant time."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64, help_text="SHA-256 of the whole token, hex.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…) of {self.user}"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()


class Webhook(models.Model):
    """A URL told, by a signed POST, when something of the project ends (``annotator.webhooks``)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=500)
    events = models.JSONField(default=list, help_text="Event names it is sent (annotator.webhooks.EVENTS).")
    secret = models.CharField(max_length=64, help_text="Key of the payload's HMAC-SHA256 signature.")
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.url} ({', '.join(self.events)}) of {self.project}"


class WebhookDelivery(models.Model):
    """One event sent to one webhook, tried until the receiver answers 2xx or the tries run out."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=40)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now, db_index=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
