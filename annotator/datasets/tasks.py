"""Celery tasks of dataset jobs: thin wrappers over ``annotator.datasets.jobs``."""

from __future__ import annotations

import logging

from celery import shared_task

from annotator.datasets import jobs
from annotator.models import DatasetJob

logger = logging.getLogger(__name__)


@shared_task(name="annotator.run_dataset_job")
def run_dataset_job(job_id: int) -> str:
    """Run one export or import; returns its final status. Sent with ``submit(..., queue="cpu")``."""
    try:
        return jobs.run_job(job_id).status
    except DatasetJob.DoesNotExist:
        logger.warning("dataset job %s skipped: it no longer exists", job_id)
        return "missing"


@shared_task(name="annotator.recover_dataset_jobs")
def recover_dataset_jobs() -> list[int]:
    """The periodic job: fail dataset jobs whose worker is gone (``jobs.recover_lost_jobs``)."""
    failed = jobs.recover_lost_jobs()
    if failed:
        logger.warning("dataset jobs lost with their worker, marked failed: %s", failed)
    return failed
