"""Celery tasks of the annotator app: thin wrappers over services (business rules live there)."""

from __future__ import annotations

import logging

from celery import shared_task

from annotator.models import Video
from annotator.services import videos

logger = logging.getLogger(__name__)


@shared_task(name="annotator.ingest_video", queue="cpu", ignore_result=False)
def ingest_video(video_id: int) -> str:
    """Ingest one video on the ``cpu`` queue; returns its final status.

    The service never raises for a bad file (it stores the reason), so a retry would not help and
    none is configured. A video deleted before the task ran is logged and skipped.
    """
    try:
        return videos.ingest_video(video_id).status
    except Video.DoesNotExist:
        logger.warning("ingest of video %s skipped: it no longer exists", video_id)
        return "missing"
