"""The Django project and the data engine (Celery app, workers, training, model registry)."""

from engine.celery import app as celery_app

__all__ = ["celery_app"]
