"""``/api/``: every endpoint of people and data, the OpenAPI schema and its docs page (the model loop's
endpoints are in ``loop.urls``). Each view declares its permission rule."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from annotator.api import accounts, datasets, team, views, webhooks
from annotator.permissions import public

P = "api/projects/<slug:slug>/"

urlpatterns = [
    path("api/schema/", public(SpectacularAPIView.as_view()), name="api-schema"),
    # GET only: DRF would answer OPTIONS by rendering its metadata through the page's HTML template (a 500).
    path("api/docs/", public(SpectacularSwaggerSplitView.as_view(
        url_name="api-schema", template_name="api/docs.html", title="Masklet API", http_method_names=["get", "head"])),
        name="api-docs"),
    path("api/session/", views.session, name="api-session"),
    path("api/tokens/", accounts.token_list, name="api-tokens"),
    path("api/tokens/<int:token_id>/", accounts.token_detail, name="api-token-detail"),
    path("api/users/", accounts.user_list, name="api-users"),
    path("api/projects/", views.project_list, name="api-project-list"),
    path(P, views.project_detail, name="api-project-detail"),
    path(P + "members/", team.member_list, name="api-members"),
    path(P + "members/<str:username>/", team.member_detail, name="api-member-detail"),
    path(P + "videos/", views.video_list, name="api-video-list"),
    path(P + "videos/<int:video_id>/", views.video_detail, name="api-video-detail"),
    path(P + "videos/<int:video_id>/retry/", views.video_retry, name="api-video-retry"),
    path(P + "videos/<int:video_id>/frames/<int:frame_index>/", views.video_frame, name="api-video-frame"),
    path(P + "videos/<int:video_id>/masklets/", views.video_masklets, name="api-video-masklets"),
    path(P + "videos/<int:video_id>/masks/", views.video_masks, name="api-video-masks"),
    path(P + "videos/<int:video_id>/seen/", views.video_seen, name="api-video-seen"),
    path(P + "masklets/<int:masklet_id>/", views.masklet_detail, name="api-masklet-detail"),
    path(P + "masklets/<int:masklet_id>/masks/", views.masklet_masks, name="api-masklet-masks"),
    path(P + "masklets/<int:masklet_id>/submit/", views.masklet_submit, name="api-masklet-submit"),
    path(P + "masklets/<int:masklet_id>/review/", team.masklet_review, name="api-masklet-review"),
    path(P + "reviews/", team.review_list, name="api-reviews"),
    path(P + "auto-masklets/", team.auto_masklet_runs, name="api-auto-masklet-runs"),
    path(P + "effort/", team.effort, name="api-effort"),
    path(P + "datasets/jobs/", datasets.job_list, name="api-dataset-jobs"),
    path(P + "datasets/jobs/<int:job_id>/", datasets.job_detail, name="api-dataset-job-detail"),
    path(P + "datasets/jobs/<int:job_id>/download/", datasets.job_download, name="api-dataset-job-download"),
    path(P + "webhooks/", webhooks.webhook_list, name="api-webhooks"),
    path(P + "webhooks/<int:webhook_id>/", webhooks.webhook_detail, name="api-webhook-detail"),
    path(P + "webhooks/<int:webhook_id>/deliveries/", webhooks.webhook_deliveries, name="api-webhook-deliveries"),
]
