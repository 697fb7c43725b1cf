"""ASGI entry point of a server process (``runserver``, ``daphne config.asgi:application``).

Importing it builds the application (``config.routing.build_application``) and, in embedded mode,
fails the runs its previous process left queued or running (``config.startup.recover_after_restart``)
and starts the beat: there is no ``celery beat`` process there, so the server sends
``CELERY_BEAT_SCHEDULE`` itself. Code that only needs the routing (tests) uses ``build_application``.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)

from django.conf import settings  # noqa: E402  (after setup: the routing imports consumers and models)

from config.routing import build_application  # noqa: E402

application = build_application()

if settings.EMBEDDED:
    from config.startup import recover_after_restart, start_embedded_beat  # noqa: E402

    recover_after_restart()  # this server's jobs ran in its children and its queues in its memory
    start_embedded_beat()
