"""URLs of the admin retraining dashboard; every view requires MANAGE_MODELS (``engine.dashboard``)."""

from django.urls import path

from engine import dashboard

urlpatterns = [
    path("projects/<slug:slug>/models/", dashboard.models_page, name="models"),
    path("api/projects/<slug:slug>/models/", dashboard.api_models, name="api-models"),
    path("api/projects/<slug:slug>/models/runs/", dashboard.api_start_run, name="api-models-start"),
    path("api/projects/<slug:slug>/models/runs/cancel/", dashboard.api_cancel_run, name="api-models-cancel"),
    path("api/projects/<slug:slug>/models/promote/", dashboard.api_promote, name="api-models-promote"),
    path("api/projects/<slug:slug>/models/rollback/", dashboard.api_rollback, name="api-models-rollback"),
    path("api/projects/<slug:slug>/models/versions/", dashboard.api_register, name="api-models-register"),
    path("api/projects/<slug:slug>/models/downloads/", dashboard.api_download, name="api-models-download"),
]
