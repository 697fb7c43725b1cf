"""Celery task of dataset jobs: a thin wrapper over ``annotator.datasets.jobs.run_job``."""

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
