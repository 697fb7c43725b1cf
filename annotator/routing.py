"""WebSocket routes. Every consumer authenticates and checks project membership (``annotator.permissions``)."""

from django.urls import path

from annotator import consumers

websocket_urlpatterns: list = [
    path("ws/projects/<slug:slug>/videos/", consumers.VideoStatusConsumer.as_asgi(), name="ws-video-status"),
    path("ws/projects/<slug:slug>/videos/<int:video_id>/annotate/", consumers.AnnotationConsumer.as_asgi(),
         name="ws-video-annotate"),
]
