"""Masklet's ASGI routing: HTTP through Django, WebSockets through Channels (authenticated sessions).

``build_application`` joins the socket routes of annotator (videos, annotation) and of the model
loop (its dashboard). ``config.asgi`` serves what it builds (after ``django.setup()``: the routes
import consumers and models); tests build it in-process, without what only a server process starts
(the embedded beat).
"""

from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from django.core.asgi import get_asgi_application

from annotator.routing import websocket_urlpatterns as annotator_websocket_urlpatterns
from engine.security import SameOriginValidator
from loop.routing import websocket_urlpatterns as loop_websocket_urlpatterns

websocket_urlpatterns: list = annotator_websocket_urlpatterns + loop_websocket_urlpatterns


def build_application() -> Any:
    """The ASGI application: Django for HTTP, the origin-checked, authenticated socket routes."""
    return ProtocolTypeRouter(
        {
            "http": get_asgi_application(),
            "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        }
    )
