"""The help page on getting SAM 2 instead of the classical fallback."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from annotator.permissions import login_required_rule
from loop.fetch import OFFICIAL


@login_required_rule
@require_GET
def fetch_model_help(request: HttpRequest) -> HttpResponse:
    """How to get SAM 2 instead of the classical fallback: the command, the dashboard, by hand."""
    return render(request, "loop/fetch_model_help.html", {
        "checkpoints": OFFICIAL.values(), "image_size": settings.SAM2_IMAGE_SIZE,
        "cpu_image_size": settings.SAM2_CPU_IMAGE_SIZE,
    })
