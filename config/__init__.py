"""The Django project: settings, ASGI/WSGI entry points, the Celery app, root URLs and socket routing."""

from config.celery import app as celery_app

__all__ = ["celery_app"]
