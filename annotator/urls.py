"""Pages and the JSON API. Every view declares a permission rule (see ``annotator.permissions``)."""

from django.urls import include, path

from annotator import account_views, dataset_views, team_views, views

urlpatterns = [
    path("favicon.ico", views.favicon, name="favicon"),
    path("login/", views.login, name="login"),
    path("logout/", views.logout, name="logout"),
    path("people/", account_views.people, name="people"),
    path("account/", account_views.account, name="account"),
    path("invite/<uidb64>/<token>/", account_views.invite, name="invite"),
    path("", views.project_list, name="project-list"),
    path("projects/new/", views.project_create, name="project-create"),
    path("projects/<slug:slug>/", views.project_detail, name="project-detail"),
    path("projects/<slug:slug>/edit/", views.project_edit, name="project-edit"),
    path("projects/<slug:slug>/videos/upload/", views.video_upload, name="video-upload"),
    path("projects/<slug:slug>/videos/<int:video_id>/", views.video_detail, name="video-detail"),
    path("projects/<slug:slug>/videos/<int:video_id>/frames/<int:frame_index>.jpg", views.video_frame,
         name="video-frame"),
    path("projects/<slug:slug>/videos/<int:video_id>/annotate/", views.video_annotate, name="video-annotate"),
    path("projects/<slug:slug>/videos/<int:video_id>/delete/", views.video_delete, name="video-delete"),
    path("projects/<slug:slug>/videos/<int:video_id>/retry/", views.video_retry, name="video-retry"),
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
    path("projects/<slug:slug>/review/", team_views.review_queue, name="review-queue"),
    path("projects/<slug:slug>/videos/<int:video_id>/missed/<int:missed_id>/", team_views.missed_object,
         name="missed-object"),
    path("projects/<slug:slug>/videos/<int:video_id>/missed/<int:missed_id>.jpg", team_views.missed_object_image,
         name="missed-object-image"),
    path("projects/<slug:slug>/masklets/<int:masklet_id>/review/", team_views.masklet_review, name="masklet-review"),
    path("", include("annotator.api.urls")),
]
