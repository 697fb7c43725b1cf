"""Operational endpoints of the deployment itself (not project data)."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from annotator.permissions import public


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
