"""``python -m engine.serve [daphne options] config.asgi:application``: the daphne command line with the
WebSocket limits of the settings (``DAPHNE_WEBSOCKET_MAX_*``, which ``runserver`` reads but the
``daphne`` command does not), and a frame over them ends with a close frame (1009, message too
big) instead of a dropped TCP connection, so the page can say why.
"""

from __future__ import annotations

import os
import sys

import daphne.server
from daphne.cli import CommandLineInterface
from daphne.ws_protocol import WebSocketFactory


class ClosingWebSocketFactory(WebSocketFactory):
    """Fails a connection (a frame over the limit, a protocol error) with a close frame."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.setProtocolOptions(failByDrop=False)


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.conf import settings

    daphne.server.WebSocketFactory = ClosingWebSocketFactory
    CommandLineInterface().run([
        "--websocket-max-message-size", str(settings.DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE),
        "--websocket-max-frame-size", str(settings.DAPHNE_WEBSOCKET_MAX_FRAME_SIZE), *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
