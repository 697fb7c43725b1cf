"""Pages and the JSON API. Every view declares a permission rule (see ``annotator.permissions``)."""

from django.urls import path

from annotator import account_views, api, dataset_views, team_views, views

urlpatterns = [
    path("login/", views.login, name="login"),
    path("logout/", views.logout, name="logout"),
    path("people/", account_views.people, name="people"),
    path("invite/<uidb64>/<token>/", account_views.invite, name="invite"),
    path("", views.project_list, name="project-list"),
    path("projects/new/", views.project_create, name="project-create"),
    path("projects/<slug:slug>/", views.project_detail, name="project-detail"),
    path("projects/<slug:slug>/videos/upload/", views.video_upload, name="video-upload"),
    path("projects/<slug:slug>/videos/<int:video_id>/", views.video_detail, name="video-detail"),
    path("projects/<slug:slug>/videos/<int:video_id>/frames/<int:frame_index>.jpg", views.video_frame,
         name="video-frame"),
    path("projects/<slug:slug>/videos/<int:video_id>/annotate/", views.video_annotate, name="video-annotate"),
    path("projects/<slug:slug>/datasets/", dataset_views.datasets, name="datasets"),
    path("projects/<slug:slug>/datasets/import/", dataset_views.dataset_import, name="dataset-import"),
    path("projects/<slug:slug>/datasets/<int:job_id>/download/", dataset_views.dataset_download,
         name="dataset-download"),
    path("projects/<slug:slug>/team/", team_views.team_page, name="team"),
    path("projects/<slug:slug>/team/splits/", team_views.team_splits, name="team-splits"),
    path("projects/<slug:slug>/auto-masklets/", team_views.auto_masklets, name="auto-masklets"),
    path("projects/<slug:slug>/work/next/", team_views.work_next, name="work-next"),
    path("projects/<slug:slug>/videos/<int:video_id>/finish/", team_views.video_finish, name="video-finish"),
    path("projects/<slug:slug>/review/next/", team_views.review_next, name="review-next"),
    path("projects/<slug:slug>/masklets/<int:masklet_id>/review/", team_views.masklet_review, name="masklet-review"),
    path("api/projects/<slug:slug>/auto-masklets/", team_views.api_auto_masklet_runs, name="api-auto-masklet-runs"),
    path("api/projects/<slug:slug>/effort/", team_views.api_effort, name="api-effort"),
    path("api/session/", api.session, name="api-session"),
    path("api/projects/", api.project_list, name="api-project-list"),
    path("api/projects/<slug:slug>/", api.project_detail, name="api-project-detail"),
    path("api/projects/<slug:slug>/videos/", api.video_list, name="api-video-list"),
    path("api/projects/<slug:slug>/videos/<int:video_id>/", api.video_detail, name="api-video-detail"),
    path("api/projects/<slug:slug>/videos/<int:video_id>/frames/<int:frame_index>/", api.video_frame,
         name="api-video-frame"),
    path("api/projects/<slug:slug>/videos/<int:video_id>/masklets/", api.video_masklets, name="api-video-masklets"),
    path("api/projects/<slug:slug>/videos/<int:video_id>/masks/", api.video_masks, name="api-video-masks"),
    path("api/projects/<slug:slug>/datasets/jobs/", dataset_views.api_dataset_jobs, name="api-dataset-jobs"),
]
