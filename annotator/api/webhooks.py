"""The API of a project's webhooks (admins): register, list, remove, and read their deliveries."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from rest_framework import serializers

from annotator import webhooks
from annotator.api.framework import endpoint, paginated, validated
from annotator.models import Project, Webhook, WebhookDelivery
from annotator.permissions import Action, project_permission
from engine.input import error_response


class WebhookIn(serializers.Serializer):
    url = serializers.URLField(max_length=500)
    events = serializers.ListField(child=serializers.ChoiceField(choices=list(webhooks.EVENTS.items())),
                                   min_length=1, max_length=len(webhooks.EVENTS))


def _webhook_json(hook: Webhook) -> dict[str, Any]:
    return {"id": hook.id, "url": hook.url, "events": hook.events, "active": hook.active,
            "created_at": hook.created_at.isoformat()}


def _delivery_json(delivery: WebhookDelivery) -> dict[str, Any]:
    return {"id": delivery.id, "event": delivery.event, "status": delivery.status, "attempts": delivery.attempts,
            "response_status": delivery.response_status, "error": delivery.error,
            "next_attempt_at": delivery.next_attempt_at.isoformat(), "created_at": delivery.created_at.isoformat(),
            "delivered_at": delivery.delivered_at.isoformat() if delivery.delivered_at else None,
            "payload": delivery.payload}


@endpoint("GET", "POST", request=WebhookIn)
@project_permission(Action.MANAGE_PROJECT, api=True)
def webhook_list(request: HttpRequest, project: Project) -> JsonResponse:
    """GET: the project's webhooks. POST ``{url, events}``: a new one; the response's ``secret`` (shown this once)
    signs every payload: ``X-Masklet-Signature: sha256=<HMAC-SHA256 of the body, hex>``."""
    if request.method == "POST":
        data = validated(WebhookIn, request)
        try:
            hook = webhooks.register(project, data["url"], data["events"], request.user)
        except webhooks.WebhookRefused as error:
            return error_response(str(error), field=error.field)
        return JsonResponse({**_webhook_json(hook), "secret": hook.secret}, status=201)
    return paginated(request, Webhook.objects.filter(project=project), _webhook_json)


def _hook_or_none(project: Project, webhook_id: int) -> Webhook | None:
    return Webhook.objects.filter(project=project, pk=webhook_id).first()


@endpoint("DELETE")
@project_permission(Action.MANAGE_PROJECT, api=True)
def webhook_detail(request: HttpRequest, project: Project, webhook_id: int) -> JsonResponse:
    """Remove a webhook (its pending deliveries go with it)."""
    hook = _hook_or_none(project, webhook_id)
    if hook is None:
        return error_response("No webhook with this id in this project.", 404)
    hook.delete()
    return JsonResponse({"deleted": webhook_id})


@endpoint("GET")
@project_permission(Action.MANAGE_PROJECT, api=True)
def webhook_deliveries(request: HttpRequest, project: Project, webhook_id: int) -> JsonResponse:
    """The webhook's deliveries, newest first: status, tries, the receiver's answer."""
    hook = _hook_or_none(project, webhook_id)
    if hook is None:
        return error_response("No webhook with this id in this project.", 404)
    return paginated(request, hook.deliveries.all(), _delivery_json)
