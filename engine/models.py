"""The model registry, training runs and evaluations of the data engine."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class JobStatus(models.TextChoices):
    """The one set of job statuses: queued -> running -> done | failed | cancelled (``engine.liveness``)."""

    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class Job(models.Model):
    """What every background job row shares: its status, progress and signs of life.

    ``engine.liveness`` runs the lifecycle on these fields: ``claim`` (queued -> running, naming the
    ``worker``), ``JobHeartbeat`` (``heartbeat_at`` while running), ``request_cancel`` /
    ``cancel_requested`` (asked to stop / seen by the job), ``finish`` (an active job ends, once), and
    the recovery of jobs whose worker is gone.
    """

    Status = JobStatus
    #: Statuses of a job that has not ended.
    ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)

    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    progress = models.FloatField(default=0.0, help_text="0..1.")
    error = models.TextField(blank=True, help_text="Why it failed, for people (no traceback).")
    worker = models.CharField(max_length=200, blank=True, help_text="Celery node (or process) running it.")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="Last sign of life from the worker.")
    finished_at = models.DateTimeField(null=True, blank=True)
    #: Someone asked it to stop (``liveness.request_cancel``); a running job sees it and ends cancelled.
    cancel_requested = models.BooleanField(default=False)

    class Meta:
        abstract = True

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE


class ModelVersion(models.Model):
    """A SAM 2 checkpoint registered for a project (or shared when ``project`` is empty)."""

    class Status(models.TextChoices):
        CANDIDATE = "candidate", "Candidate"
        PRODUCTION = "production", "Production"
        RETIRED = "retired", "Retired"

    project = models.ForeignKey("annotator.Project", null=True, blank=True, on_delete=models.CASCADE,
                                related_name="model_versions")
    name = models.CharField(max_length=200)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    checkpoint = models.CharField(max_length=500, blank=True,
                                  help_text="Checkpoint path (weights under the 'model' key); empty = random init.")
    sam2_config = models.CharField(max_length=200, default="configs/sam2.1/sam2.1_hiera_t.yaml")
    image_size = models.PositiveIntegerField(default=1024)
    sha256 = models.CharField(max_length=64, blank=True,
                              help_text="Digest of the checkpoint file as fetched (manage.py fetch_model).")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CANDIDATE)
    metrics = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["project"], condition=models.Q(status="production"),
                                    name="one_production_version_per_project")
        ]

    def __str__(self) -> str:
        return self.name


class ModelVersionEvent(models.Model):
    """The audit trail of the registry: who registered, promoted, retired or rolled back what, and when."""

    class Action(models.TextChoices):
        REGISTERED = "registered", "Registered"
        PROMOTED = "promoted", "Promoted"
        AUTO_PROMOTED = "auto_promoted", "Promoted automatically"
        RETIRED = "retired", "Retired"
        ROLLED_BACK = "rolled_back", "Rolled back"

    project = models.ForeignKey("annotator.Project", null=True, blank=True, on_delete=models.CASCADE,
                                related_name="model_events")
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="events")
    action = models.CharField(max_length=16, choices=Action.choices)
    previous_production = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL,
                                            related_name="+", help_text="What served before this change.")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+", help_text="Empty: the engine itself (auto-promotion).")
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]


class TrainingRun(Job):
    """One fine-tuning run (``engine.training``); at most one active run per project (DB constraint)."""

    project = models.ForeignKey("annotator.Project", on_delete=models.CASCADE, related_name="training_runs")
    base_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    produced_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL,
                                         related_name="+")
    parameters = models.JSONField(default=dict, blank=True)
    data_snapshot = models.JSONField(default=dict, blank=True,
                                     help_text="Exactly which masklet revisions the run trained on.")
    loss_curve = models.JSONField(default=list, blank=True)
    log = models.TextField(blank=True)
    trigger = models.CharField(max_length=16, default="manual", help_text="manual or schedule.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["project"], condition=models.Q(status__in=("queued", "running")),
                                    name="one_active_training_run_per_project")
        ]


class LoopSettings(models.Model):
    """Per-project knobs of the periodic retraining job; created from the MASKLET_LOOP_* defaults."""

    project = models.OneToOneField("annotator.Project", on_delete=models.CASCADE, related_name="loop_settings")
    enabled = models.BooleanField(default=True, help_text="Let the periodic job start runs for this project.")
    min_new_masklets = models.PositiveIntegerField(default=20,
                                                   help_text="Newly approved train masklets since the last run.")
    min_hours = models.FloatField(default=24.0, help_text="Hours since the last run started.")
    auto_promote = models.BooleanField(default=True)
    promote_margin = models.FloatField(default=0.01, help_text="J&F a candidate must gain over production.")
    steps = models.PositiveIntegerField(default=200)
    image_size = models.PositiveIntegerField(default=1024)
    model_config = models.CharField(max_length=200, default="sam2.1_hiera_t",
                                    help_text="Config of a first run (later runs use production's).")
    lr = models.FloatField(default=5e-6)
    clip_length = models.PositiveIntegerField(default=8)

    class Meta:
        verbose_name_plural = "loop settings"

    def __str__(self) -> str:
        return f"loop settings of {self.project}"


class Evaluation(models.Model):
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="evaluations")
    split = models.CharField(max_length=8, default="val")
    j = models.FloatField()
    f = models.FloatField()
    j_and_f = models.FloatField()
    clicks_to_target = models.FloatField(null=True, blank=True, help_text="Clicks per masklet to J&F >= 0.9.")
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]


class ModelDownload(Job):
    """A checkpoint download started on the models dashboard (``loop.downloads``, a ``cpu`` job)."""

    project = models.ForeignKey("annotator.Project", on_delete=models.CASCADE, related_name="model_downloads")
    name = models.CharField(max_length=100, help_text="One of engine.fetch.OFFICIAL.")
    bytes_done = models.BigIntegerField(default=0)
    bytes_total = models.BigIntegerField(null=True, blank=True)
    stage = models.CharField(max_length=200, blank=True, help_text="What the job is doing now, for people.")
    error = models.TextField(blank=True, help_text="Why it failed and how to place the file by hand.")
    version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    promote = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    updated_at = models.DateTimeField(auto_now=True, help_text="Last progress; a silent active download was lost.")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], condition=models.Q(status__in=("queued", "running")),
                                    name="one_active_download_per_project_and_name")
        ]


class VerifierVersion(Job):
    """One training of a project's learned mask-quality verifier (``loop.verifier`` trains it,
    ``engine.verifier`` applies it): a logistic regression on the backends' quality signals, labelled by
    what people did with model frames."""

    project = models.ForeignKey("annotator.Project", on_delete=models.CASCADE, related_name="verifier_versions")
    number = models.PositiveIntegerField(help_text="1, 2, ... per project.")
    trigger = models.CharField(max_length=16, default="manual", help_text="manual or schedule.")
    trained_frames = models.PositiveIntegerField(default=0)
    heldout_frames = models.PositiveIntegerField(default=0, help_text="Reviewed frames of held-out masklets.")
    bad_frames = models.PositiveIntegerField(default=0, help_text="Labelled bad (a person edited them), in all.")
    auroc = models.FloatField(null=True, blank=True, help_text="The verifier's AUROC on the held-out frames.")
    backend_auroc = models.FloatField(null=True, blank=True,
                                      help_text="The backends' own (hand-combined) score's AUROC on the same frames.")
    active = models.BooleanField(default=False, help_text="Scores new model frames (it beat the backends' score).")
    model = models.JSONField(default=dict, blank=True, help_text="Feature names, scaling and coefficients.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="unique_verifier_number"),
            models.UniqueConstraint(fields=["project"], condition=models.Q(status__in=("queued", "running")),
                                    name="one_active_verifier_training_per_project"),
            models.UniqueConstraint(fields=["project"], condition=models.Q(active=True),
                                    name="one_active_verifier_per_project"),
        ]
