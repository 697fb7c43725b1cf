"""ASGI entry point: HTTP through Django, WebSockets through Channels (authenticated sessions)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "engine.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs the app registry loaded)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from annotator.routing import websocket_urlpatterns  # noqa: E402
from engine.routing import websocket_urlpatterns as engine_websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns + engine_websocket_urlpatterns))
        ),
    }
)

from django.conf import settings  # noqa: E402

if settings.EMBEDDED:  # no celery beat process in embedded mode: the server sends CELERY_BEAT_SCHEDULE itself
    from engine.tasks import start_embedded_beat  # noqa: E402

    start_embedded_beat()
