from django.contrib import admin
from django.urls import include, path

from engine import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("help/sam2/", views.fetch_model_help, name="help-models"),
    path("", include("engine.dashboard_urls")),
    path("", include("annotator.urls")),
]
