"""Masklet's ASGI routing: HTTP through Django, WebSockets through Channels (authenticated sessions).

The engine's own WebSocket routes (the admin dashboard) live here next to ``build_application``,
which joins them with annotator's. ``config.asgi`` serves what it builds; tests build it
in-process, without what only a server process starts (the embedded beat).
"""

from typing import Any

from django.urls import path

from engine.consumers import TrainingConsumer

websocket_urlpatterns: list = [
    path("ws/projects/<slug:slug>/models/", TrainingConsumer.as_asgi(), name="ws-models"),
]


def build_application() -> Any:
    """The ASGI application: Django for HTTP, the origin-checked, authenticated socket routes."""
    from channels.auth import AuthMiddlewareStack
    from channels.routing import ProtocolTypeRouter, URLRouter
    from django.core.asgi import get_asgi_application

    from annotator.routing import websocket_urlpatterns as annotator_websocket_urlpatterns
    from engine.security import SameOriginValidator

    return ProtocolTypeRouter(
        {
            "http": get_asgi_application(),
            "websocket": SameOriginValidator(
                AuthMiddlewareStack(URLRouter(annotator_websocket_urlpatterns + websocket_urlpatterns))
            ),
        }
    )
