from django.contrib import admin

from engine import models


@admin.register(models.ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "status", "sam2_config", "image_size", "created_at"]
    list_filter = ["status"]


@admin.register(models.TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "status", "progress", "created_at", "finished_at"]
    list_filter = ["status"]


@admin.register(models.Evaluation)
class EvaluationAdmin(admin.ModelAdmin):
    list_display = ["model_version", "split", "j_and_f", "clicks_to_target", "created_at"]
