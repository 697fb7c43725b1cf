"""Operational endpoints of the deployment itself (not project data), and the help on getting SAM 2."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from annotator.permissions import login_required_rule, public


@public
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness + database reachability for load balancers and the compose health check.

    Public on purpose: it reveals nothing but "up" or "database unreachable".
    """
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:  # any database failure means "not healthy", whatever the driver raises
        return JsonResponse({"status": "error", "database": "unreachable"}, status=503)
    return JsonResponse({"status": "ok"})


@login_required_rule
@require_GET
def fetch_model_help(request: HttpRequest) -> HttpResponse:
    """How to get SAM 2 instead of the classical fallback: the command, the dashboard, by hand."""
    from django.conf import settings

    from engine.fetch import OFFICIAL

    return render(request, "engine/fetch_model_help.html", {
        "checkpoints": OFFICIAL.values(), "image_size": settings.SAM2_IMAGE_SIZE,
        "cpu_image_size": settings.SAM2_CPU_IMAGE_SIZE,
    })
