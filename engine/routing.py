"""WebSocket routes of the engine (the admin dashboard); ``engine.asgi`` serves them with annotator's."""

from django.urls import path

from engine.consumers import TrainingConsumer

websocket_urlpatterns: list = [
    path("ws/projects/<slug:slug>/models/", TrainingConsumer.as_asgi(), name="ws-models"),
]
