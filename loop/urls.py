"""URLs of the admin retraining dashboard and the model loop's API; every view requires MANAGE_MODELS
(``loop.dashboard``)."""

from django.urls import path

from loop import dashboard

P = "api/projects/<slug:slug>/"

urlpatterns = [
    path("projects/<slug:slug>/models/", dashboard.models_page, name="models"),
    path(P + "models/", dashboard.api_models, name="api-models"),
    path(P + "models/runs/", dashboard.api_start_run, name="api-models-start"),
    path(P + "models/runs/cancel/", dashboard.api_cancel_run, name="api-models-cancel"),
    path(P + "models/promote/", dashboard.api_promote, name="api-models-promote"),
    path(P + "models/rollback/", dashboard.api_rollback, name="api-models-rollback"),
    path(P + "models/versions/", dashboard.api_register, name="api-models-register"),
    path(P + "models/downloads/", dashboard.api_download, name="api-models-download"),
    path(P + "models/verifiers/", dashboard.api_train_verifier, name="api-models-verifier"),
    path(P + "models/<int:version_id>/promote/", dashboard.api_promote_version, name="api-model-promote"),
    path(P + "training-runs/", dashboard.api_training_runs, name="api-training-runs"),
    path(P + "training-runs/<int:run_id>/", dashboard.api_training_run, name="api-training-run"),
    path(P + "training-runs/<int:run_id>/cancel/", dashboard.api_training_run_cancel, name="api-training-run-cancel"),
]
