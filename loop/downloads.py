"""Checkpoint downloads started on the models dashboard: a ``cpu`` job running ``loop.fetch``.

``start_download`` records a ``ModelDownload`` and submits ``loop.fetch_checkpoint``
(``engine.dispatch.submit``, after commit); the job downloads, checks (the model load runs in
the worker, never in the web process) and registers the checkpoint for the dashboard's project,
promoting it when asked. Progress is written to the row at most every ``PROGRESS_EVERY_S`` and
sent to the dashboard's socket (``{"type": "download", ...}``); the page also reads the rows.
It is a job of the one lifecycle (``engine.liveness``): claimed, beating while it runs, ended once;
one without a heartbeat (or still queued) for ``STALE_AFTER`` (its process died) is failed when the
next one starts.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from annotator.models import Project
from engine import dispatch, liveness, protocol
from engine.heartbeat import JobHeartbeat
from engine.models import ModelDownload
from loop import fetch
from loop.training import notify_dashboards

logger = logging.getLogger(__name__)

PROGRESS_EVERY_S = 0.5
STALE_AFTER = timedelta(minutes=10)
Status = ModelDownload.Status


class DownloadRefused(Exception):
    """A download that cannot start; the message is for people."""


def as_dict(download: ModelDownload) -> dict[str, Any]:
    """The download as the models page shows it (a ``protocol.DownloadRow``)."""
    return protocol.DownloadRow(**{
        "id": download.pk, "name": download.name, "label": fetch.OFFICIAL[download.name].label
        if download.name in fetch.OFFICIAL else download.name, "status": download.status,
        "bytes_done": download.bytes_done, "bytes_total": download.bytes_total, "stage": download.stage,
        "error": download.error, "version": download.version_id, "promote": download.promote,
        "created_at": download.created_at.isoformat(),
        "finished_at": download.finished_at.isoformat() if download.finished_at else None,
    }).model_dump(mode="json")


def broadcast(download: ModelDownload) -> None:
    """Tell the project's open models pages (never raises: a missed update only waits for the next)."""
    notify_dashboards(download.project_id, protocol.DownloadEvent(type="download", **as_dict(download)))


def fail_lost_downloads(project: Project) -> int:
    """Fail the project's downloads silent (running) or waiting (queued) for ``STALE_AFTER``: their job died."""
    downloads = ModelDownload.objects.filter(project=project)
    stale = STALE_AFTER.total_seconds()
    lost = (liveness.lost_runs(downloads.filter(status=Status.RUNNING), stale_after=stale)
            + liveness.lost_queued(downloads, "cpu", stale))
    return sum(liveness.finish(ModelDownload, download.pk, Status.FAILED, stage="failed", error=(
        f"the download job stopped without finishing ({reason}; the server or its worker restarted): start it again"))
        for download, reason in lost)


def start_download(project: Project, name: str, user: Any = None, *, promote: bool = True) -> ModelDownload:
    """Queue a download of Meta's checkpoint ``name`` for ``project``; one at a time per checkpoint."""
    if name not in fetch.OFFICIAL:
        raise DownloadRefused(f"unknown checkpoint {name!r}: choose one of {', '.join(fetch.OFFICIAL)}")
    fail_lost_downloads(project)
    try:
        with transaction.atomic():
            download = ModelDownload.objects.create(project=project, name=name, promote=promote, created_by=user,
                                                    stage="queued")
            transaction.on_commit(lambda: dispatch.submit("loop.fetch_checkpoint", download.pk, queue="cpu"))
    except IntegrityError:
        raise DownloadRefused(f"{fetch.OFFICIAL[name].label} is already being downloaded") from None
    return download


def execute_download(download_id: int) -> str:
    """The job: claim the queued download, fetch, check, register (and promote) under a heartbeat;
    the final status. A redelivered download another worker runs is left to it; one whose worker is
    gone is failed."""
    outcome, download = liveness.claim(ModelDownload, download_id, stale_after=STALE_AFTER.total_seconds())
    if outcome is liveness.Claim.LOST:
        liveness.finish(ModelDownload, download_id, Status.FAILED, stage="failed",
                        error="the download job stopped without finishing (its worker is gone): start it again")
    if outcome is not liveness.Claim.CLAIMED:
        return ModelDownload.objects.get(pk=download_id).status
    with JobHeartbeat(ModelDownload.objects.filter(pk=download_id, status=Status.RUNNING), settings.LOOP_HEARTBEAT_S,
                      f"download-{download_id}"):
        return _fetch(ModelDownload.objects.select_related("project", "created_by").get(pk=download_id))


def _fetch(download: ModelDownload) -> str:
    download.stage = "connecting"
    download.save(update_fields=["stage", "updated_at"])
    broadcast(download)
    last = 0.0

    def progress(done: int, total: int | None) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < PROGRESS_EVERY_S and done != total:
            return
        last = now
        download.bytes_done, download.bytes_total, download.stage = done, total, "downloading"
        download.progress = done / total if total else 0.0
        download.save(update_fields=["bytes_done", "bytes_total", "progress", "stage", "updated_at"])
        broadcast(download)

    def say(line: str) -> None:
        download.stage = line[:200]
        download.save(update_fields=["stage", "updated_at"])
        broadcast(download)

    try:
        version = fetch.fetch_and_register(fetch.OFFICIAL[download.name], project=download.project,
                                           promote=download.promote, user=download.created_by, progress=progress,
                                           say=say)
    except fetch.FetchError as error:
        download.status, download.error, download.stage = Status.FAILED, str(error), "failed"
    except Exception as error:  # a bug or an unexpected library error: still end the row, for people
        logger.exception("download %s failed", download.pk)
        download.status, download.error, download.stage = Status.FAILED, f"unexpected error: {error}", "failed"
    else:
        download.status, download.version, download.stage = Status.DONE, version, (
            "serving new sessions" if download.promote else "registered: promote it to serve")
    liveness.finish(ModelDownload, download.pk, download.status, progress=1.0 if download.version else 0.0,
                    error=download.error, stage=download.stage, version=download.version)
    download.refresh_from_db()
    broadcast(download)
    return download.status
