from django.contrib import admin

from engine import models


@admin.register(models.ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    """Versions are registered by ``loop.registry`` (checkpoint loaded first, path inside the models folder):
    the admin cannot add one or point one at another file."""

    list_display = ["name", "project", "status", "sam2_config", "image_size", "created_at"]
    list_filter = ["status"]
    readonly_fields = ["checkpoint", "sam2_config", "image_size"]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(models.TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "status", "trigger", "progress", "worker", "created_at", "finished_at"]
    list_filter = ["status", "trigger"]


@admin.register(models.Evaluation)
class EvaluationAdmin(admin.ModelAdmin):
    list_display = ["model_version", "split", "j_and_f", "clicks_to_target", "created_at"]


@admin.register(models.ModelVersionEvent)
class ModelVersionEventAdmin(admin.ModelAdmin):
    """The registry's audit trail: read-only here, it is written by ``loop.registry`` only."""

    list_display = ["created_at", "project", "action", "version", "previous_production", "actor", "note"]
    list_filter = ["action"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(models.LoopSettings)
class LoopSettingsAdmin(admin.ModelAdmin):
    """Per-project retraining schedule and training knobs (defaults from ``MASKLET_LOOP_*``)."""

    list_display = ["project", "enabled", "min_new_masklets", "min_hours", "auto_promote", "promote_margin", "steps"]
