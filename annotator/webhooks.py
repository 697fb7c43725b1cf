"""Webhooks: a project's URLs told by a signed POST when a video is ready (or failed), a dataset job ends
or a training run ends.

- ``emit(project_id, event, data)`` is called where the thing happens (``services.videos``,
  ``datasets.jobs``, ``loop.training.broadcast``), inside the caller's transaction: it stores one
  ``WebhookDelivery`` per subscribed webhook and queues its sending after the commit, so an event
  that is rolled back is never announced.
- ``deliver(delivery_id)`` (the ``cpu`` queue, never the web request) claims the row, POSTs the JSON
  payload with ``X-Masklet-Event``, ``X-Masklet-Delivery`` and ``X-Masklet-Signature: sha256=<hex>``
  (HMAC-SHA256 of the exact body with the webhook's secret), and records the answer. A non-2xx
  answer or no answer is tried again after ``WEBHOOK_BACKOFF_S`` x 2^(tries-1) seconds, up to
  ``MAX_ATTEMPTS`` tries, by the periodic ``tick`` (``celery beat``, or the embedded server's beat).
  A worker lost while sending leaves the row ``sending`` until its claim expires; the tick then
  tries it again (a receiver may see a delivery twice: ``X-Masklet-Delivery`` tells).
- A webhook is a request the server makes where a project admin says: so only to public addresses
  (``receiver_refusal``, at registration and again before every send, as DNS can change), and no
  redirects are followed, unless ``MASKLET_WEBHOOK_ALLOW_PRIVATE=1`` (receivers on one's own network).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotator.models import Project, Webhook, WebhookDelivery
from engine.dispatch import submit

logger = logging.getLogger(__name__)

EVENTS = {
    "video.ready": "a video's frames are ready to annotate",
    "video.failed": "a video's ingest failed (the reason is in the payload)",
    "dataset_job.finished": "an export or import ended, done or failed",
    "training_run.finished": "a training run ended: done, failed or cancelled",
}
MAX_ATTEMPTS = 6
TIMEOUT_S = 5.0
#: How long a claimed delivery may stay ``sending`` before the tick takes it for lost.
CLAIM_S = TIMEOUT_S + 60
MAX_WEBHOOKS = 20


class WebhookRefused(ValueError):
    """A webhook that cannot be registered; the message says why, ``field`` names the field."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


def register(project: Project, url: str, events: list[str], user: Any) -> Webhook:
    """A new active webhook with a fresh secret (shown to its admin, who gives it to the receiver)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRefused("The URL must be an http:// or https:// address.", "url")
    if refusal := receiver_refusal(url):
        raise WebhookRefused(refusal, "url")
    unknown = sorted(set(events) - set(EVENTS))
    if not events or unknown:
        raise WebhookRefused(f"Choose events from {', '.join(EVENTS)}" + (f" (not {', '.join(unknown)})."
                                                                          if unknown else "."), "events")
    if Webhook.objects.filter(project=project).count() >= MAX_WEBHOOKS:
        raise WebhookRefused(f"A project has at most {MAX_WEBHOOKS} webhooks.", "url")
    return Webhook.objects.create(project=project, url=url, events=sorted(set(events)),
                                  secret=secrets.token_hex(32), created_by=user)


def emit(project_id: int, event: str, data: dict[str, Any]) -> list[int]:
    """Store the event's deliveries for the project's subscribed webhooks; they are sent after the commit."""
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    hooks = [hook for hook in Webhook.objects.filter(project_id=project_id, active=True) if event in hook.events]
    if not hooks:
        return []
    slug = Project.objects.filter(pk=project_id).values_list("slug", flat=True).first()
    at = timezone.now()
    deliveries = WebhookDelivery.objects.bulk_create([WebhookDelivery(
        webhook=hook, event=event, next_attempt_at=at,
        payload={"event": event, "project": slug, "at": at.isoformat(), "data": data}) for hook in hooks])
    ids = [delivery.pk for delivery in deliveries]
    transaction.on_commit(lambda: _send_later(ids))
    return ids


def _send_later(ids: list[int]) -> None:
    for delivery_id in ids:
        try:
            submit(deliver_webhook, delivery_id, queue="cpu")
        except Exception:  # the queue is down: the tick sends it once it is back
            logger.warning("could not queue webhook delivery %s", delivery_id, exc_info=True)


def receiver_refusal(url: str) -> str | None:
    """Why the server will not POST to ``url`` (its host resolves to a loopback, private, link-local or
    otherwise non-public address, or not at all), or None."""
    if settings.WEBHOOK_ALLOW_PRIVATE:
        return None
    host = urlsplit(url).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except (socket.gaierror, UnicodeError):
        return f"{host} does not resolve to an address."
    for address in sorted(addresses):
        if not ipaddress.ip_address(address.split("%")[0]).is_global:
            return (f"{host} is a private address ({address}): webhooks go to public addresses only "
                    "(MASKLET_WEBHOOK_ALLOW_PRIVATE=1 allows receivers on your own network).")
    return None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is the receiver's answer, not a second address to call (it could point inside)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex>``: what a receiver recomputes from the raw body and its copy of the secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(delivery_id: int) -> str:
    """Send one delivery if it is due and not being sent; returns its status afterwards."""
    now = timezone.now()
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id, status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now).update(
        status=WebhookDelivery.Status.SENDING, attempts=F("attempts") + 1,
        next_attempt_at=now + timedelta(seconds=CLAIM_S))
    delivery = WebhookDelivery.objects.select_related("webhook").filter(pk=delivery_id).first()
    if delivery is None or not claimed:
        return delivery.status if delivery is not None else "missing"
    body = json.dumps({**delivery.payload, "delivery": delivery.pk, "attempt": delivery.attempts}).encode()
    request = urllib.request.Request(delivery.webhook.url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "Masklet-Webhooks/1",
        "X-Masklet-Event": delivery.event, "X-Masklet-Delivery": str(delivery.pk),
        "X-Masklet-Signature": signature(delivery.webhook.secret, body)})
    status_code, error = None, ""
    try:
        if refusal := receiver_refusal(delivery.webhook.url):
            raise ValueError(refusal)
        with urllib.request.build_opener(_NoRedirects).open(request, timeout=TIMEOUT_S) as response:
            status_code = response.status
    except urllib.error.HTTPError as refused:
        status_code, error = refused.code, f"the receiver answered {refused.code}"
    except (urllib.error.URLError, OSError, ValueError) as unreachable:
        error = (f"not sent: {unreachable}" if isinstance(unreachable, ValueError)
                 else f"no answer: {getattr(unreachable, 'reason', unreachable)}")[:300]
    fields: dict[str, Any] = {"response_status": status_code, "error": error}
    if status_code is not None and 200 <= status_code < 300:
        fields.update(status=WebhookDelivery.Status.DELIVERED, delivered_at=timezone.now(), error="")
    elif delivery.attempts >= MAX_ATTEMPTS:
        fields.update(status=WebhookDelivery.Status.FAILED)
    else:
        backoff = timedelta(seconds=settings.WEBHOOK_BACKOFF_S * 2 ** (delivery.attempts - 1))
        fields.update(status=WebhookDelivery.Status.PENDING, next_attempt_at=timezone.now() + backoff)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(**fields)
    return fields["status"]


def due_deliveries() -> list[int]:
    """Deliveries to send now: pending ones whose time came, and ``sending`` ones whose claim expired."""
    now = timezone.now()
    WebhookDelivery.objects.filter(status=WebhookDelivery.Status.SENDING, next_attempt_at__lte=now).update(
        status=WebhookDelivery.Status.PENDING)
    return list(WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now)
                .order_by("next_attempt_at").values_list("pk", flat=True)[:500])


@shared_task(name="annotator.deliver_webhook", ignore_result=True)
def deliver_webhook(delivery_id: int) -> str:
    return deliver(delivery_id)


@shared_task(name="annotator.webhooks_tick", ignore_result=True)
def webhooks_tick() -> int:
    """Queue the deliveries that are due again (the beat runs this every ``WEBHOOK_TICK_S``)."""
    due = due_deliveries()
    _send_later(due)
    return len(due)
