"""Celery tasks of the annotator app: thin wrappers over services (business rules live there)."""

from __future__ import annotations

import logging

from celery import shared_task

from annotator import sessions
from annotator.models import IngestJob, Video
from annotator.services import videos
from engine import workers  # noqa: F401  (connects the GPU workers' own-queue and heartbeat signals)

logger = logging.getLogger(__name__)


@shared_task(name="annotator.ingest_video")
def ingest_video(job_id: int) -> str:
    """Run one ``IngestJob``; returns its video's status. Sent with ``submit(ingest_video, job_id, queue="cpu")``.

    The queue is chosen by the sender (``cpu``, also the default queue): the task-level ``queue``
    attribute is deprecated in Celery 5 in favour of ``task_routes``.

    The service never raises for a bad file (it stores the reason), so a retry would not help and
    none is configured. A video deleted before the task ran (its job with it) is logged and skipped.
    """
    try:
        return videos.run_ingest(job_id).status
    except (IngestJob.DoesNotExist, Video.DoesNotExist):
        logger.warning("ingest job %s skipped: its video no longer exists", job_id)
        return "missing"


@shared_task(name="annotator.recover_ingests")
def recover_ingests() -> list[int]:
    """The periodic job: fail the ingests whose worker is gone (``videos.recover_lost_ingests``)."""
    failed = videos.recover_lost_ingests()
    if failed:
        logger.warning("ingest jobs lost with their worker, marked failed: %s", failed)
    return failed


@shared_task(name="annotator.session_message", acks_late=True, ignore_result=True)
def session_message(envelope: dict) -> None:
    """Serve one model message of a live annotation session (see ``annotator.sessions``).

    Sent by ``AnnotationConsumer`` to the ``gpu`` queue, or to ``gpu.<worker>`` once a worker
    holds the session. Never raises: every outcome, errors included, is a reply to the socket.
    ``ignore_result``: the reply travels over the channel layer; a result backend entry would cost a
    subscribe on every publish and a write on every message, on the click's critical path.
    """
    sessions.handle_envelope(envelope)
