"""Dataset exports and imports from the web: a ``DatasetJob`` row, run as a ``cpu`` task, never in the web process.

``start_export`` / ``start_import`` create the job and queue ``run_job`` after the transaction
commits (``engine.dispatch.submit``). The task writes the export to a scratch folder and zips
it in the scratch folder, then stores the zip whole as ``exports/{job}/{project}-{format}-{job}.zip``
in the media storage (``engine.storage``: a folder or a bucket; a failure leaves no partial zip);
an import unpacks the uploaded zip (or reads the JSON) stored as ``dataset-imports/...`` and
imports it all or nothing per video. Progress goes to the row; failures end ``failed`` with a reason for people (the
traceback goes to the log), and the worker carries on.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import uuid
import zipfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from annotator import webhooks
from annotator.datasets import EXPORTERS, READERS, DatasetError, ExportFilters, export_dataset, import_dataset
from annotator.datasets.common import Progress, check_video_names
from annotator.datasets.importing import DEFAULT_STATUS, ImportOptions
from annotator.models import DatasetJob, Masklet, Project
from engine import dispatch, liveness, storage
from engine.heartbeat import JobHeartbeat
from engine.safe_paths import UnsafePath, clean_name, public_text, safe_join

logger = logging.getLogger(__name__)

EXPORTS_DIR = "exports"
IMPORTS_DIR = "dataset-imports"
UPLOAD_EXTENSIONS = (".zip", ".json")
#: An uploaded zip may unpack to at most this many times the upload limit (zip bombs).
UNPACK_FACTOR = 4
#: Files stored in an export zip as they are (already compressed).
COMPRESSED_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".zip"})
#: Progress of an export up to the zip; the zip takes the rest.
EXPORT_SHARE = 0.9


def start_export(project: Project, user, fmt: str, filters: ExportFilters, *, media: bool = True) -> DatasetJob:
    """Queue an export of ``project``; the job row is returned at once. Named videos are checked now
    (one query), so a typo is answered on the page rather than by a failed job."""
    if fmt not in EXPORTERS:
        raise DatasetError("format", "", f"unknown export format {fmt!r}")
    check_video_names(project, filters.videos)
    with transaction.atomic():
        job = DatasetJob.objects.create(project=project, kind=DatasetJob.Kind.EXPORT, format=fmt, created_by=user,
                                        options={"filters": filters.to_json(), "media": media})
        transaction.on_commit(lambda: _submit(job.id))
    return job


def start_import(project: Project, user, fmt: str, upload: UploadedFile, *,
                 status: str = DEFAULT_STATUS) -> DatasetJob:
    """Store the uploaded zip or JSON under a random name and queue its import."""
    if fmt not in READERS:
        raise DatasetError("format", "", f"unknown import format {fmt!r}")
    if status not in Masklet.Status.values:
        raise DatasetError("status", "", f"unknown masklet status {status!r}")
    suffix = PurePosixPath(upload.name or "").suffix.lower()
    if suffix not in UPLOAD_EXTENSIONS:
        raise DatasetError(upload.name or "upload", "", "upload a .zip (dataset with its videos) or a .json file")
    if upload.size is not None and upload.size > settings.MAX_UPLOAD_BYTES:
        raise DatasetError(upload.name or "upload", "", "the file is larger than the upload limit")
    relative = storage.key(IMPORTS_DIR, f"{uuid.uuid4().hex}{suffix}")
    with tempfile.NamedTemporaryFile(suffix=suffix) as handle:
        for chunk in upload.chunks():
            handle.write(chunk)
        handle.flush()
        storage.put_file(storage.area("media"), relative, handle.name)
    with transaction.atomic():
        job = DatasetJob.objects.create(project=project, kind=DatasetJob.Kind.IMPORT, format=fmt, created_by=user,
                                        file=relative, options={"status": status, "upload": upload.name or ""})
        transaction.on_commit(lambda: _submit(job.id))
    return job


def _submit(job_id: int) -> None:
    try:
        dispatch.submit("annotator.run_dataset_job", job_id, queue="cpu")
    except Exception:
        logger.exception("could not queue dataset job %s", job_id)
        _finish(job_id, DatasetJob.Status.FAILED, error="the job could not be queued (the task queue is "
                "unavailable); try again later")


def run_job(job_id: int) -> DatasetJob:
    """The task body: claim the job, run the export or import under a heartbeat; never raises for bad
    data (the reason is stored). A job another worker runs is left to it, one whose worker is gone is
    failed (a redelivered message, ``engine.liveness``)."""
    outcome, job = liveness.claim(DatasetJob, job_id, stale_after=settings.LOOP_RUN_STALE_S)
    if job is None:
        raise DatasetJob.DoesNotExist(f"dataset job {job_id}")
    if outcome is liveness.Claim.LOST:
        _finish(job_id, DatasetJob.Status.FAILED, error=f"the {job.kind} was lost: its worker stopped")
    if outcome is not liveness.Claim.CLAIMED:
        return DatasetJob.objects.get(pk=job_id)
    job = DatasetJob.objects.select_related("project", "created_by").get(pk=job_id)
    with JobHeartbeat(DatasetJob.objects.filter(pk=job_id, status=DatasetJob.Status.RUNNING),
                      settings.LOOP_HEARTBEAT_S, f"dataset-job-{job_id}"):
        return _run_claimed(job)


def _run_claimed(job: DatasetJob) -> DatasetJob:
    job_id = job.pk
    with tempfile.TemporaryDirectory(prefix=f"masklet-{job.kind}-") as scratch:
        try:
            if job.kind == DatasetJob.Kind.EXPORT:
                _run_export(job, Path(scratch))
            else:
                _run_import(job, Path(scratch))
        except JobCancelled:
            _finish(job_id, DatasetJob.Status.CANCELLED, message=f"the {job.kind} was cancelled")
            return DatasetJob.objects.get(pk=job_id)
        except (DatasetError, ValueError) as exc:  # UnsafePath is a ValueError
            error = str(exc)
        except storage.StorageError as exc:  # the storage server down or refusing: nothing stored, run it again
            logger.warning("dataset job %s: %s", job_id, exc)
            error = f"the storage failed, try again: {exc}"
        except Exception as exc:  # the worker must survive any input; details go to the log
            logger.exception("dataset job %s failed", job_id)
            error = f"the {job.kind} failed ({exc.__class__.__name__}); see the worker log"
        else:
            return DatasetJob.objects.get(pk=job_id)
    _finish(job_id, DatasetJob.Status.FAILED, error=public_text(error, [(scratch, "")]))
    return DatasetJob.objects.get(pk=job_id)


class JobCancelled(Exception):
    """Someone asked the running job to stop (``cancel_job``); raised at its next progress report."""


def cancel_job(job: DatasetJob) -> bool:
    """Ask a dataset job to stop: a queued one ends at once, a running one at its next progress report
    (between videos; nothing half-written is kept: its scratch folder goes). False when it had ended."""
    return liveness.request_cancel(DatasetJob, job.pk)


def _progress(job_id: int, share: float) -> Progress:
    def report(done: int, total: int) -> None:
        DatasetJob.objects.filter(pk=job_id).update(progress=share * done / max(1, total))
        if liveness.cancel_requested(DatasetJob, job_id):
            raise JobCancelled(job_id)

    return report


def _run_export(job: DatasetJob, scratch: Path) -> None:
    filters = ExportFilters.from_json(job.options.get("filters", {}))
    name = storage.key(EXPORTS_DIR, job.id, clean_name(f"{job.project.slug}-{job.format}-{job.id}.zip"))  # slug "-x"
    folder = scratch / "dataset"
    stats = export_dataset(job.project, job.format, folder, filters, media=job.options.get("media", True),
                           progress=_progress(job.id, EXPORT_SHARE))
    archive = scratch / "dataset.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                bundle.write(path, path.relative_to(folder).as_posix(), compress_type=compression(path))
    storage.put_file(storage.area("media"), name, archive)
    _finish(job.id, DatasetJob.Status.DONE, file=name, message=public_text(stats.summary()))


def compression(path: Path) -> int:
    """STORE what is compressed already (deflating JPEG, PNG or video costs time and gains nothing), else DEFLATE."""
    return zipfile.ZIP_STORED if path.suffix.lower() in COMPRESSED_SUFFIXES else zipfile.ZIP_DEFLATED


def _run_import(job: DatasetJob, scratch: Path) -> None:
    try:
        with storage.local_file(storage.area("media"), storage.key(*PurePosixPath(job.file).parts)) as upload:
            _import_file(job, upload, scratch)
    except storage.MissingObject:
        raise DatasetError("upload", "", "the uploaded file is gone from the storage; upload it again") from None


def _import_file(job: DatasetJob, upload: Path, scratch: Path) -> None:
    options = ImportOptions(user=job.created_by, status=job.options.get("status", DEFAULT_STATUS))
    label = PurePosixPath(job.options.get("upload") or upload.name).name
    if upload.suffix == ".zip":
        root = unpack(upload, scratch, label)
        dataset = find_dataset(root, job.format)
        options = ImportOptions(video_dir=dataset if dataset.is_dir() else dataset.parent, user=options.user,
                                status=options.status)
    else:
        # named as uploaded (SA-V file names say manual or auto), made a safe name
        dataset = safe_join(scratch, clean_name(label, default="dataset.json"))
        shutil.copyfile(upload, dataset)
    report = import_dataset(job.project, job.format, dataset, options, progress=_progress(job.id, 1.0))
    failed = bool(report.errors) and report.videos == 0
    hide = [(scratch, "")]
    _finish(job.id, DatasetJob.Status.FAILED if failed else DatasetJob.Status.DONE,
            message=public_text(report.summary(), hide), error=public_text("\n".join(report.errors), hide))


def unpack(archive: Path, target: Path, label: str) -> Path:
    """Unzip safely: no absolute paths, no ``..``, no links, and a bound on the unpacked size."""
    limit = settings.MAX_UPLOAD_BYTES * UNPACK_FACTOR
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            if sum(member.file_size for member in members) > limit:
                raise DatasetError(label, "", "the zip unpacks to more than the limit")
            for member in members:
                parts = PurePosixPath(member.filename).parts
                if member.filename.startswith("/") or ".." in parts or "\\" in member.filename:
                    raise DatasetError(label, member.filename, "unsafe path in the zip")
                if (member.external_attr >> 16) & 0o170000 == 0o120000:
                    raise DatasetError(label, member.filename, "links are not allowed in the zip")
            bundle.extractall(target)
    except zipfile.BadZipFile:
        raise DatasetError(label, "", "not a valid zip file") from None
    return target


def find_dataset(root: Path, fmt: str) -> Path:
    """Where the dataset lies in an unpacked zip: the DAVIS root, the SA-V JSON folder, the COCO/YTVIS file."""
    if fmt == "davis":
        found = sorted(p.parent for p in root.rglob("JPEGImages") if (p.parent / "Annotations").is_dir())
    elif fmt == "sav":
        found = sorted({p.parent for p in root.rglob("*.json")})
    else:
        name = "annotations.json" if fmt == "coco" else "instances.json"
        found = sorted(root.rglob(name)) or sorted(root.rglob("*.json"))
    if not found:
        raise DatasetError("upload", "", f"no {fmt} dataset in the zip")
    return min(found, key=lambda p: len(p.parts))


def _finish(job_id: int, status: str, **fields) -> bool:
    """End the job (if it is still active) and tell the project's webhooks; True when this call ended it."""
    finished = liveness.finish(DatasetJob, job_id, status, progress=1.0 if status == DatasetJob.Status.DONE else 0.0,
                               **fields)
    job = DatasetJob.objects.filter(pk=job_id).values("project_id", "kind", "format", "error", "message").first()
    if finished and job is not None:
        webhooks.emit(job.pop("project_id"), "dataset_job.finished", {"job": job_id, "status": status, **job})
    return finished


def recover_lost_jobs(*, stale_after: float | None = None, queued_after: float = liveness.QUEUED_LOST_S) -> list[int]:
    """Fail the jobs whose worker is gone (the periodic tick); returns their ids: running jobs with no
    heartbeat for ``stale_after`` s (``MASKLET_LOOP_RUN_STALE_S``), queued ones older than ``queued_after``."""
    stale_after = settings.LOOP_RUN_STALE_S if stale_after is None else stale_after
    lost = liveness.lost_runs(DatasetJob.objects.filter(status=DatasetJob.Status.RUNNING), stale_after=stale_after)
    return _fail_lost(lost + liveness.lost_queued(DatasetJob.objects.all(), "cpu", queued_after))


def recover_after_restart() -> list[int]:
    """Embedded mode, when the server starts: fail the jobs its previous process left behind."""
    return _fail_lost(liveness.orphans_at_start(DatasetJob.objects.filter(status__in=DatasetJob.ACTIVE)))


def _fail_lost(lost: list[tuple[DatasetJob, str]]) -> list[int]:
    return [job.pk for job, reason in lost
            if _finish(job.pk, DatasetJob.Status.FAILED, error=f"the {job.kind} was lost: {reason}")]


def open_archive(job: DatasetJob) -> tuple[BinaryIO, str] | None:
    """The finished export's zip, streamed from the storage, and its file name; None when there is none."""
    name = archive_name(job)
    if name is None:
        return None
    try:
        return storage.open_stream(storage.area("media"), name), PurePosixPath(name).name
    except storage.MissingObject:
        return None


def archive_name(job: DatasetJob) -> str | None:
    """The finished export's zip in the media storage, or None; never a name outside ``exports/``."""
    if job.kind != DatasetJob.Kind.EXPORT or job.status != DatasetJob.Status.DONE or not job.file:
        return None
    parts = PurePosixPath(job.file).parts
    if parts[:1] != (EXPORTS_DIR,):
        return None
    try:
        return storage.key(*parts)
    except UnsafePath:
        return None
