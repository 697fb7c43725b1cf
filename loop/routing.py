"""The model loop's socket route: the retraining dashboard's live run state (admins only)."""

from django.urls import path

from loop.consumers import TrainingConsumer

websocket_urlpatterns: list = [
    path("ws/projects/<slug:slug>/models/", TrainingConsumer.as_asgi(), name="ws-models"),
]
