from django.contrib import admin
from django.urls import include, path

from config import views
from loop.views import fetch_model_help

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("help/sam2/", fetch_model_help, name="help-models"),
    path("", include("loop.urls")),
    path("", include("annotator.urls")),
]
