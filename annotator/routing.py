"""WebSocket routes. Every consumer authenticates and checks project membership (``annotator.permissions``)."""

websocket_urlpatterns: list = []
