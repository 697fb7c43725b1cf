"""The model registry, training runs and evaluations of the data engine."""

from __future__ import annotations

from django.conf import settings
from django.db import models


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


class TrainingRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    project = models.ForeignKey("annotator.Project", on_delete=models.CASCADE, related_name="training_runs")
    base_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    produced_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL,
                                         related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    parameters = models.JSONField(default=dict, blank=True)
    data_snapshot = models.JSONField(default=dict, blank=True,
                                     help_text="Exactly which masklet revisions the run trained on.")
    progress = models.FloatField(default=0.0)
    loss_curve = models.JSONField(default=list, blank=True)
    log = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]


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
