"""Webhooks against a local receiver: registered through the API, emitted where things end (video ready, dataset
job finished, training run ended), signed, tried again with backoff until 2xx or the tries run out."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotator import webhooks
from annotator.datasets.jobs import run_job
from annotator.models import Role, Webhook, WebhookDelivery
from annotator.services.tokens import issue_token
from annotator.services.videos import create_video_from_path, ingest_video
from engine.models import TrainingRun
from fixtures.synthetic import PRESETS, write_video

pytestmark = pytest.mark.django_db


class Receiver:
    """An HTTP server on a free local port that records each POST and answers the next queued status (200)."""

    def __init__(self):
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.answers: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                self.send_response(receiver.answers.pop(0) if receiver.answers else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    running = Receiver()
    yield running
    running.close()


@pytest.fixture
def world(make_user, make_project, settings, tmp_path):
    settings.WEBHOOK_ALLOW_PRIVATE = True  # the test receiver listens on 127.0.0.1
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.FRAMES_ROOT = tmp_path / "frames"
    boss, ann = make_user("boss"), make_user("ann")
    project = make_project("Street", slug="street", members={boss: Role.ADMIN, ann: Role.ANNOTATOR}, labels=["car"])
    return project, issue_token(boss, "t")[1], issue_token(ann, "t")[1]


def _api(token: str, method: str, url: str, body=None):
    return Client().generic(method, url, json.dumps(body) if body is not None else "",
                            content_type="application/json", headers={"Authorization": f"Bearer {token}"})


def _register(world, url: str, events: list[str]) -> dict:
    project, boss, _ = world
    response = _api(boss, "POST", reverse("api-webhooks", args=[project.slug]), {"url": url, "events": events})
    assert response.status_code == 201, response.content
    return response.json()


def test_registering_checks_the_url_and_events_and_shows_the_secret_once(world, receiver):
    project, boss, ann = world
    url = reverse("api-webhooks", args=[project.slug])
    for body, field in (({"url": "ftp://example.org/x", "events": ["video.ready"]}, "url"),
                        ({"url": receiver.url, "events": []}, "events"),
                        ({"url": receiver.url, "events": ["video.exploded"]}, "events[0]"),
                        ({"url": "not a url", "events": ["video.ready"]}, "url")):
        refused = _api(boss, "POST", url, body)
        assert refused.status_code == 400 and refused.json()["error"]["field"] == field, (body, refused.content)
    assert _api(ann, "POST", url, {"url": receiver.url, "events": ["video.ready"]}).status_code == 403
    hook = _register(world, receiver.url, ["video.ready", "dataset_job.finished"])
    assert len(hook["secret"]) == 64 and hook["events"] == ["dataset_job.finished", "video.ready"]
    listed = _api(boss, "GET", url).json()
    assert listed["count"] == 1 and "secret" not in listed["results"][0]
    assert _api(boss, "DELETE", reverse("api-webhook-detail", args=[project.slug, hook["id"]])).status_code == 200
    assert not Webhook.objects.exists()


def test_a_finished_export_is_posted_signed_to_the_receiver(world, receiver):
    project, boss, _ = world
    hook = _register(world, receiver.url, ["dataset_job.finished"])
    _register(world, receiver.url, ["video.ready"])  # not subscribed to this event: nothing for it
    job = _api(boss, "POST", reverse("api-dataset-jobs", args=[project.slug]), {"format": "coco", "media": False})
    run_job(job.json()["id"])  # the test transaction never commits: run what the commit would have queued
    [delivery] = WebhookDelivery.objects.all()
    assert (delivery.webhook_id, delivery.event, delivery.status) == (hook["id"], "dataset_job.finished", "pending")

    assert webhooks.deliver(delivery.pk) == "delivered"
    [(headers, body)] = receiver.received
    expected = "sha256=" + hmac.new(hook["secret"].encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Masklet-Signature"] == expected
    assert (headers["X-Masklet-Event"], headers["X-Masklet-Delivery"]) == ("dataset_job.finished", str(delivery.pk))
    payload = json.loads(body)
    assert (payload["event"], payload["project"], payload["attempt"]) == ("dataset_job.finished", "street", 1)
    assert payload["data"]["job"] == job.json()["id"] and payload["data"]["status"] == "done"
    assert webhooks.deliver(delivery.pk) == "delivered" and len(receiver.received) == 1  # sent once

    shown = _api(boss, "GET", reverse("api-webhook-deliveries", args=[project.slug, hook["id"]])).json()
    assert shown["results"][0]["status"] == "delivered" and shown["results"][0]["response_status"] == 200


def test_refused_deliveries_are_tried_again_with_backoff_until_the_tries_run_out(world, receiver, settings):
    project, _, _ = world
    _register(world, receiver.url, ["video.failed"])
    settings.WEBHOOK_BACKOFF_S = 60
    [delivery_id] = webhooks.emit(project.pk, "video.failed", {"video": 1})
    receiver.answers = [503, 500]
    assert webhooks.deliver(delivery_id) == "pending"
    row = WebhookDelivery.objects.get(pk=delivery_id)
    assert (row.attempts, row.response_status, row.error) == (1, 503, "the receiver answered 503")
    assert timedelta(seconds=55) < row.next_attempt_at - timezone.now() <= timedelta(seconds=60)
    assert webhooks.deliver(delivery_id) == "pending" and len(receiver.received) == 1  # not due yet
    assert webhooks.due_deliveries() == []
    WebhookDelivery.objects.filter(pk=delivery_id).update(next_attempt_at=timezone.now())
    assert webhooks.due_deliveries() == [delivery_id]
    assert webhooks.deliver(delivery_id) == "pending"
    row.refresh_from_db()
    assert row.attempts == 2 and row.next_attempt_at - timezone.now() > timedelta(seconds=110)  # doubled
    WebhookDelivery.objects.filter(pk=delivery_id).update(next_attempt_at=timezone.now())
    assert webhooks.deliver(delivery_id) == "delivered"
    assert [json.loads(body)["attempt"] for _, body in receiver.received] == [1, 2, 3]

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}/"
    Webhook.objects.update(url=dead)
    settings.WEBHOOK_BACKOFF_S = 0
    [lost] = webhooks.emit(project.pk, "video.failed", {"video": 2})
    statuses = [webhooks.deliver(lost) for _ in range(webhooks.MAX_ATTEMPTS)]
    assert statuses == ["pending"] * (webhooks.MAX_ATTEMPTS - 1) + ["failed"]
    row = WebhookDelivery.objects.get(pk=lost)
    assert row.attempts == webhooks.MAX_ATTEMPTS and row.error.startswith("no answer")
    assert lost not in webhooks.due_deliveries()


def test_a_delivery_whose_sender_was_lost_is_tried_again(world, receiver):
    project, _, _ = world
    _register(world, receiver.url, ["video.ready"])
    [delivery_id] = webhooks.emit(project.pk, "video.ready", {"video": 1})
    WebhookDelivery.objects.filter(pk=delivery_id).update(status="sending", attempts=1,
                                                          next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert webhooks.due_deliveries() == [delivery_id]
    assert webhooks.deliver(delivery_id) == "delivered" and json.loads(receiver.received[0][1])["attempt"] == 2


def test_videos_and_training_runs_emit_their_events(world, receiver, tmp_path, make_project):
    project, boss, _ = world
    _register(world, receiver.url, ["video.ready", "training_run.finished"])
    other = make_project("Elsewhere", slug="elsewhere")
    Webhook.objects.create(project=other, url=receiver.url, events=["video.ready"], secret="x")
    video = create_video_from_path(project, write_video(PRESETS["tiny"], tmp_path / "tiny.mp4"),
                                   schedule_ingest=False)
    ingest_video(video.id)
    [ready] = WebhookDelivery.objects.filter(event="video.ready")
    assert ready.payload["data"] == {"video": video.id, "name": video.name, "status": "ready", "failure_reason": ""}
    assert ready.webhook.project_id == project.id

    run = TrainingRun.objects.create(project=project, parameters={}, data_snapshot={})
    cancelled = _api(boss, "POST", reverse("api-training-run-cancel", args=[project.slug, run.id]))
    assert cancelled.status_code == 200, cancelled.content
    [ended] = WebhookDelivery.objects.filter(event="training_run.finished")
    assert ended.payload["data"] == {"run": run.id, "status": "cancelled", "version": None, "error": ""}


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "http://localhost/hook", "http://10.1.2.3/",
                                 "http://169.254.169.254/latest/meta-data/", "http://[::1]:8000/",
                                 "http://192.168.0.7/"])
def test_webhooks_to_private_addresses_are_refused_unless_allowed(world, settings, url):
    """A project admin cannot make the server call its own network (cloud metadata, localhost services)."""
    project, boss, _ = world
    settings.WEBHOOK_ALLOW_PRIVATE = False
    refused = _api(boss, "POST", reverse("api-webhooks", args=[project.slug]), {"url": url, "events": ["video.ready"]})
    assert refused.status_code == 400, refused.content
    assert refused.json()["error"]["field"] == "url" and "private address" in refused.json()["error"]["message"]
    assert not Webhook.objects.exists()


def test_a_receiver_that_turned_private_or_redirects_is_not_called(world, receiver, settings):
    """Checked again before each send (DNS can change after registration), and a redirect is not followed."""
    _register(world, receiver.url, ["dataset_job.finished"])
    settings.WEBHOOK_ALLOW_PRIVATE = False
    [delivery_id] = webhooks.emit(world[0].id, "dataset_job.finished", {"job": 1})
    assert webhooks.deliver(delivery_id) == WebhookDelivery.Status.PENDING
    assert receiver.received == []
    assert "private address" in WebhookDelivery.objects.get(pk=delivery_id).error
    settings.WEBHOOK_ALLOW_PRIVATE = True
    receiver.answers = [302]
    WebhookDelivery.objects.filter(pk=delivery_id).update(next_attempt_at=timezone.now())
    assert webhooks.deliver(delivery_id) == WebhookDelivery.Status.PENDING
    assert len(receiver.received) == 1 and WebhookDelivery.objects.get(pk=delivery_id).response_status == 302
