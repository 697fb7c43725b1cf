"""Videos in, frames out: accepting a file (upload or server-side path) and ingesting it.

Flow (ARCHITECTURE.md, flow 1): ``create_video_from_upload`` / ``create_video_from_path`` check
the size, store the original in the media storage (``engine.storage``) with a generated name and
create the ``Video`` with an ``IngestJob``; after the transaction commits, ``run_ingest`` runs that job on the ``cpu``
queue (``ingest_video`` runs one in this process: the CLI, the demo, dataset import): probe, then decode the stream once
and write every ``stride``-th native frame as ``{native_index:05d}.jpg``.

Rules, one place each:

- **Stride**: ``max(1, round(fps / project.annotation_fps))`` native frames between annotated
  frames: 24 fps at 6 fps -> every 4th frame (SA-V), 29.97 or 30 fps -> every 5th, 60 fps -> 10th.
- **Frame count**: containers can lie (``CAP_PROP_FRAME_COUNT`` is an estimate from the duration
  for Matroska/WebM and some MP4 edit lists). The decode is trusted: ``frame_count`` of a ready
  video is the number of frames actually decoded. A decode that ends clearly short of the
  container's claim (more than ``TRUNCATION_TOLERANCE`` of it, at least 2 frames) means a
  truncated or corrupt file and fails; a decode that runs past the duration limit fails too, so
  lying metadata cannot smuggle in a 10-hour video.
- **Failures** end ``failed`` with a one-line reason meant for the person who uploaded the file;
  the traceback goes to the log, never into the reason, and the worker carries on.
- **Files**: stored originals get a random name (never the client's) in the storage
  (``engine.storage``); ingest reads the original (a local copy where the storage is a bucket),
  decodes to a temporary folder and publishes it as a whole (``VideoFrames.publish``), so
  readers see either the old frames or the new ones, never half a set. A failed re-ingest leaves
  the previous frames where they were (the video is ``failed`` with the reason); a killed
  worker's temporary folder is removed by the next ingest of that video.
- **Lifecycle**: each attempt is an ``IngestJob`` run through ``engine.liveness`` like every job
  (claim, heartbeat, finish, recovery of lost ones by ``recover_lost_ingests`` and, in embedded mode,
  ``recover_ingests_after_restart``). The video's ``status`` is the people-facing view of its latest
  job, set only from the job's transitions: queued -> uploaded, claimed -> ingesting, ended ->
  ready or failed (``_end_ingest``, which writes nothing when the job had already ended).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import cv2
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction

from annotator import webhooks
from annotator.models import AutoMaskletRun, IngestJob, Project, Video
from engine import dispatch, liveness, storage
from engine.heartbeat import JobHeartbeat
from engine.models import JobStatus
from engine.safe_paths import MAX_NAME_LENGTH, UnsafePath, check_name, clean_name, public_text
from engine.storage import VideoFrames

logger = logging.getLogger(__name__)

JPEG_QUALITY = 90
# A decode may end this fraction of the container's claimed frame count early before we call the
# file truncated: counts are estimates for some containers; what we keep is what decoded.
TRUNCATION_TOLERANCE = 0.05
# Progress goes to the database every 2 %, but at most every half second: each write is a commit
# (an fsync on SQLite), which on short clips would otherwise cost more than the decode.
PROGRESS_STEP = 0.02
PROGRESS_MIN_INTERVAL_S = 0.5
WRITE_QUEUE = 2  # decoded frames waiting for the JPEG thread, at most
STALE_TEMP_S = 3600  # a temporary frames folder untouched this long belongs to a dead worker
VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg",
                    ".flv", ".ogv", ".ogg", ".3gp"}

ProgressCallback = Callable[[int, int], None]  # (frames decoded, frames expected)


class VideoRejected(ValidationError):
    """The file was refused before anything was stored (too large, empty, not a regular file, bad name)."""


class DuplicateVideo(VideoRejected):
    """The same file (by content hash) is in the project already; ``existing`` names it. Nothing stored."""

    def __init__(self, existing: Video):
        super().__init__(f"This file is the same as “{existing.name}”, already in this project.")
        self.existing = existing


class VideoInvalid(Exception):
    """The file is not an acceptable video; ``str(exc)`` is the reason shown to people."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container claims, checked against the limits. ``frame_count`` is a claim, see module doc."""

    container: str
    codec: str
    fps: float
    frame_count: int
    width: int
    height: int

    @property
    def duration(self) -> float:
        return self.frame_count / self.fps


# -- accepting a file ---------------------------------------------------------------------


def create_video_from_upload(project: Project, uploaded_file: UploadedFile, user, name: str | None = None, *,
                             allow_duplicate: bool = False) -> Video:
    """Store an uploaded file and create its ``Video``; ingest starts after the transaction commits.

    The client's file name only supplies the default video name (its stem, sanitised); it is
    never used as a path. Raises ``VideoRejected`` (nothing stored) for a file that is too large
    or empty, or an invalid ``name``; ``DuplicateVideo`` when the project has the same file already,
    unless ``allow_duplicate`` (the uploader was asked and chose to keep both).
    """
    _check_size(uploaded_file.size, uploaded_file.name or "upload")
    client_name = uploaded_file.name or ""
    return _create_video(project, uploaded_file, size=uploaded_file.size, user=user,
                         name=_clean_explicit_name(name) if name else _name_from_filename(client_name),
                         extension=_safe_extension(client_name), schedule_ingest=True,
                         allow_duplicate=allow_duplicate)


def create_video_from_path(project: Project, path: str | os.PathLike, user=None, name: str | None = None, *,
                           schedule_ingest: bool = True) -> Video:
    """Copy a server-side file into storage and create its ``Video`` (CLI imports, seeding).

    ``path`` must resolve to a regular file (no directories, devices or FIFOs). With
    ``schedule_ingest=False`` the caller ingests itself (``seed_demo`` and the embedded CLI run
    ``ingest_video`` synchronously). Raises ``VideoRejected`` with nothing stored on refusal.
    """
    resolved = Path(path).expanduser().resolve()
    if not resolved.exists():
        raise VideoRejected(f"{path}: no such file")
    if not resolved.is_file():
        raise VideoRejected(f"{path}: not a regular file")
    size = resolved.stat().st_size
    _check_size(size, str(path))
    with resolved.open("rb") as handle:
        return _create_video(project, File(handle), size=size, user=user,
                             name=_clean_explicit_name(name) if name else _name_from_filename(resolved.name),
                             extension=_safe_extension(resolved.name), schedule_ingest=schedule_ingest)


def _check_size(size: int | None, label: str) -> None:
    limit = settings.MAX_UPLOAD_BYTES
    if size is None:
        raise VideoRejected(f"{label}: the file size is unknown")
    if size == 0:
        raise VideoRejected(f"{label}: the file is empty (the video has no frames)")
    if size > limit:
        raise VideoRejected(f"{label}: the file is {_megabytes(size)}, larger than the limit of {_megabytes(limit)}")


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def _create_video(project: Project, content: File, *, size: int, user, name: str, extension: str,
                  schedule_ingest: bool, allow_duplicate: bool = True) -> Video:
    # Random file name: the client's name never becomes a path (no traversal, no clashes, no
    # '%' that OpenCV would read as an image-sequence pattern).
    stored_name = f"{uuid.uuid4().hex}{extension}"
    video = Video(project=project, file_size=size, uploaded_by=user if getattr(user, "pk", None) else None)
    content.seek(0)
    video.content_sha256 = hashlib.file_digest(content, "sha256").hexdigest()
    existing = Video.objects.filter(project=project, content_sha256=video.content_sha256).first()
    if existing is not None and not allow_duplicate:
        raise DuplicateVideo(existing)
    with storage.errors("storing the uploaded video"):  # the storage down: a 503, nothing stored
        video.original.save(stored_name, content, save=False)
    try:
        with transaction.atomic():
            _save_with_unique_name(video, name)
            if schedule_ingest:
                _queue_ingest(video)
    except BaseException:
        try:
            video.original.delete(save=False)
        except Exception:  # the refusal is what the caller must see; the orphan is only logged
            logger.exception("could not remove the stored upload %s after a refusal", stored_name)
        raise
    return video


def _queue_ingest(video: Video) -> IngestJob:
    """In the caller's transaction: a queued ingest job for ``video`` (which shows ``uploaded``), sent
    to the ``cpu`` queue once the transaction commits."""
    job = IngestJob.objects.create(video=video)
    _update(video, status=Video.Status.UPLOADED, progress=0.0, failure_reason="")
    transaction.on_commit(lambda: _schedule_ingest(job))
    return job


def _schedule_ingest(job: IngestJob) -> None:
    """Queue the ingest. If the broker is down the rows are committed already: fail the job, don't raise."""
    try:
        dispatch.submit("annotator.ingest_video", job.pk, queue="cpu")
    except Exception:
        logger.exception("could not queue the ingest of video %s", job.video_id)
        _end_ingest(job, JobStatus.FAILED,
                    "the ingest could not be queued (the task queue is unavailable); upload it again later")


def _save_with_unique_name(video: Video, base: str) -> None:
    """Save under ``base``, or ``base-2``, ``base-3``… if the project already has that name.

    The unique constraint decides (a concurrent upload of the same name retries the next suffix).
    """
    taken = set(Video.objects.filter(project=video.project, name__startswith=base).values_list("name", flat=True))
    for attempt in range(1, 1000):
        suffix = "" if attempt == 1 else f"-{attempt}"
        candidate = base[: MAX_NAME_LENGTH - len(suffix)] + suffix
        if candidate in taken:
            continue
        video.name = candidate
        try:
            with transaction.atomic():
                video.save()
            return
        except IntegrityError:
            if not Video.objects.filter(project=video.project, name=candidate).exists():
                raise
            taken.add(candidate)
    raise VideoRejected(f"too many videos named {base!r} in this project")




def _name_from_filename(filename: str) -> str:
    """A video name from a client's file name: the base name's stem, reduced to ``[\\w.-]``.

    Handles POSIX and Windows paths (browsers and scripts send both); ``../../etc/passwd``
    becomes ``passwd``. Names are used as file names in exports, hence the character set.
    """
    base = PureWindowsPath(PurePosixPath(filename).name).name
    stem = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    return clean_name(stem)


def _clean_explicit_name(name: str) -> str:
    """An explicitly chosen name is checked, not silently rewritten (``engine.safe_paths.check_name``)."""
    try:
        return check_name(name.strip(), "video name")
    except UnsafePath as exc:
        raise VideoRejected(str(exc)) from None


def _safe_extension(filename: str) -> str:
    suffix = PureWindowsPath(PurePosixPath(filename).name).suffix.lower()
    return suffix if suffix in VIDEO_EXTENSIONS else ""


# -- probing ------------------------------------------------------------------------------

# Containers accepted, by magic bytes. Sniffing first keeps FFmpeg away from playlists, images
# and other formats that can open as "video" (an HLS playlist can make FFmpeg read URLs).
_CONTAINERS: tuple[tuple[str, Callable[[bytes], bool]], ...] = (
    ("MP4/QuickTime", lambda h: h[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")),
    ("Matroska/WebM", lambda h: h[:4] == b"\x1a\x45\xdf\xa3"),
    ("AVI", lambda h: h[:4] == b"RIFF" and h[8:12] == b"AVI "),
    ("MPEG-TS", lambda h: len(h) > 376 and h[0] == h[188] == h[376] == 0x47),
    ("MPEG-TS (M2TS)", lambda h: len(h) > 388 and h[4] == h[196] == h[388] == 0x47),  # AVCHD .mts/.m2ts
    ("MPEG-PS", lambda h: h[:4] == b"\x00\x00\x01\xba"),
    ("FLV", lambda h: h[:3] == b"FLV"),
    ("Ogg", lambda h: h[:4] == b"OggS"),
)


def _sniff_container(path: Path) -> str:
    with path.open("rb") as handle:
        head = handle.read(512)
    if not head:
        raise VideoInvalid("the video has no frames (the file is empty)")
    for container, matches in _CONTAINERS:
        if matches(head):
            return container
    raise VideoInvalid("not a video file: the data is not in a known video container "
                       "(MP4/MOV, Matroska/WebM, AVI, MPEG-TS/PS, FLV or Ogg)")


def _open_capture(path: Path) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        capture.release()
        raise VideoInvalid("not a video file: the container could not be opened (the file may be truncated "
                           "or corrupt)")
    return capture


def _fourcc(capture: cv2.VideoCapture) -> str:
    code = int(capture.get(cv2.CAP_PROP_FOURCC)) & 0xFFFFFFFF
    text = code.to_bytes(4, "little").decode("latin-1")
    return text.strip("\x00 ") if text.isprintable() else f"0x{code:08x}"


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Open the file and check container, codec, fps, frame count, size and duration against the limits.

    Raises ``VideoInvalid`` with a readable reason. Cheap: reads headers, decodes nothing.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoInvalid("the video file is missing from storage")
    container = _sniff_container(path)
    capture = _open_capture(path)
    try:
        return _check_info(container, capture)
    finally:
        capture.release()


def _check_info(container: str, capture: cv2.VideoCapture) -> VideoInfo:
    codec = _fourcc(capture)
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
    if not codec or codec == "0x00000000":
        raise VideoInvalid(f"not a video file: no video stream with a known codec in the {container} container")
    if not (fps > 0 and fps < 1000):
        raise VideoInvalid(f"the video has no usable frame rate (reported {fps:g} fps)")
    if not (count and 0 < count < 2**31):
        raise VideoInvalid("the video has no frames")
    if width <= 0 or height <= 0:
        raise VideoInvalid("the video has no frame size")
    pixels_limit = settings.MAX_VIDEO_PIXELS
    if width * height > pixels_limit:
        raise VideoInvalid(f"frame size {width}x{height} exceeds the limit of {pixels_limit:,} pixels")
    info = VideoInfo(container=container, codec=codec, fps=fps, frame_count=int(count), width=width, height=height)
    _check_duration(info.duration)
    return info


def _check_duration(seconds: float) -> None:
    limit = settings.MAX_VIDEO_DURATION_S
    if seconds > limit:
        raise VideoInvalid(f"the video is {seconds:.1f} s long, longer than the limit of {limit:g} s")


def annotation_stride(fps: float, annotation_fps: int) -> int:
    """Native frames between annotated frames: ``round(fps / annotation_fps)``, at least 1."""
    return max(1, round(fps / max(1, annotation_fps)))


# -- ingest -------------------------------------------------------------------------------


def ingest_video(video_id: int, progress_callback: ProgressCallback | None = None) -> Video:
    """Ingest the video in this process (the CLI, the demo, dataset import): a new job, claimed at once.

    Never raises for a bad file or an I/O error (the reason is stored); ``Video.DoesNotExist`` propagates.
    """
    job = IngestJob.objects.create(video=Video.objects.get(pk=video_id))
    return run_ingest(job.pk, progress_callback)


def run_ingest(job_id: int, progress_callback: ProgressCallback | None = None) -> Video:
    """Claim ingest job ``job_id`` and decode its video's frames under a heartbeat; the video ends ready,
    or failed with a reason.

    Never raises for a bad file or an I/O error (the reason is stored, the traceback logged), so a
    worker survives any input; ``IngestJob.DoesNotExist`` propagates (the video was deleted). A job
    another worker runs is left to it; one whose worker is gone (a redelivery) is failed. Re-ingesting
    a ready video replaces its frames atomically. While ingesting, ``fps``/``width``/``height``/
    ``stride``/``frame_count`` hold the container's claim (so progress can be shown in frames); once
    ready, ``frame_count`` is the number of frames decoded.
    """
    outcome, job = liveness.claim(IngestJob, job_id, stale_after=settings.LOOP_RUN_STALE_S)
    if job is None:
        raise IngestJob.DoesNotExist(f"ingest job {job_id}")
    if outcome is liveness.Claim.LOST:
        _end_ingest(job, JobStatus.FAILED, "the ingest was lost: its worker stopped; retry it")
    if outcome is not liveness.Claim.CLAIMED:
        return Video.objects.get(pk=job.video_id)
    job = IngestJob.objects.select_related("video__project").get(pk=job_id)
    _update(job.video, status=Video.Status.INGESTING, progress=0.0, failure_reason="")
    with JobHeartbeat(IngestJob.objects.filter(pk=job_id, status=JobStatus.RUNNING), settings.LOOP_HEARTBEAT_S,
                      f"ingest-{job_id}"):
        try:
            _end_ingest(job, JobStatus.DONE, **_ingest(job.video, progress_callback))
        except IngestFailed as exc:
            _end_ingest(job, JobStatus.FAILED, str(exc))
    return Video.objects.get(pk=job.video_id)


class IngestFailed(Exception):
    """Why an ingest failed, for the person who uploaded the file (no traceback, no server paths)."""


def _ingest(video: Video, progress_callback: ProgressCallback | None) -> dict:
    """Probe, decode and publish the frames; returns the ready video's fields or raises ``IngestFailed``."""
    frames = VideoFrames(video.id)
    # Decoded next to the frames folder (one file system: the publish is a rename), or on the cache's disk.
    scratch = frames.folder.parent if frames.folder is not None else Path(settings.CACHE_ROOT) / "ingest"
    scratch.mkdir(parents=True, exist_ok=True)
    _remove_stale_temp_dirs(scratch, video.id)
    temp_dir = scratch / f".ingest-{video.id}-{uuid.uuid4().hex[:12]}"
    try:
        if not video.original:
            _missing()
        with storage.local_file(video.original.storage, video.original.name) as original:
            info = probe_video(original)
            stride = annotation_stride(info.fps, video.project.annotation_fps)
            _update(video, fps=info.fps, frame_count=info.frame_count, width=info.width, height=info.height,
                    duration=info.duration, stride=stride)
            temp_dir.mkdir()
            decoded, written, (height, width) = _decode_to_folder(video, original, info, stride, temp_dir,
                                                                  progress_callback)
        frames.publish(temp_dir)
    except VideoInvalid as exc:
        logger.info("video %s (%s) rejected: %s", video.id, video.name, exc)
        raise IngestFailed(str(exc)) from None
    except storage.MissingObject:
        raise IngestFailed("the video file is missing from storage") from None
    except storage.StorageError as exc:
        logger.warning("ingest of video %s failed on the storage: %s", video.id, exc)
        raise IngestFailed(f"the storage failed, try again: {exc}") from None
    except OSError as exc:
        logger.exception("ingest of video %s failed on a file operation", video.id)
        raise IngestFailed(f"could not write the frames: {exc.strerror or exc}") from None
    except Exception as exc:  # the worker must survive any input; details go to the log
        logger.exception("ingest of video %s failed", video.id)
        raise IngestFailed(f"the video could not be decoded ({exc.__class__.__name__}); see the worker log") from None
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    logger.info("video %s (%s) ready: %d frames, %d annotated (stride %d)", video.id, video.name, decoded, written,
                stride)
    return {"frame_count": decoded, "duration": decoded / info.fps, "width": width, "height": height,
            "annotated_frame_count": written}


def _end_ingest(job: IngestJob, status: str, reason: str = "", **ready: object) -> bool:
    """End the ingest job and show its end on the video (ready, or failed with ``reason``), once.

    The one place a video's ingest ends: when the job had ended already (recovered as lost while this
    worker still ran, say) the video keeps what that end said and False is returned.
    """
    reason = " ".join(public_text(reason).split())[:500]  # one line, bounded, no server folders
    video = Video.objects.select_related("project").get(pk=job.video_id)
    if not liveness.finish(IngestJob, job.pk, status, progress=1.0 if status == JobStatus.DONE else 0.0,
                           error=reason):
        return False
    if status == JobStatus.DONE:
        _update(video, status=Video.Status.READY, progress=1.0, failure_reason="", **ready)
    else:
        _update(video, status=Video.Status.FAILED, failure_reason=reason, progress=0.0, annotated_frame_count=None)
    return True


def recover_lost_ingests(*, stale_after: float | None = None,
                         queued_after: float = liveness.QUEUED_LOST_S) -> list[int]:
    """Fail the ingests whose worker is gone (the periodic tick); returns their job ids: running ones
    with no heartbeat for ``stale_after`` s (``MASKLET_LOOP_RUN_STALE_S``), queued ones older than ``queued_after``."""
    stale_after = settings.LOOP_RUN_STALE_S if stale_after is None else stale_after
    lost = liveness.lost_runs(IngestJob.objects.filter(status=JobStatus.RUNNING), stale_after=stale_after)
    return _fail_lost(lost + liveness.lost_queued(IngestJob.objects.all(), "cpu", queued_after))


def recover_ingests_after_restart() -> list[int]:
    """Embedded mode, when the server starts: fail the ingests its previous process left behind."""
    return _fail_lost(liveness.orphans_at_start(IngestJob.objects.filter(status__in=IngestJob.ACTIVE)))


def _fail_lost(lost: list[tuple[IngestJob, str]]) -> list[int]:
    return [job.pk for job, reason in lost
            if _end_ingest(job, JobStatus.FAILED, f"the ingest was lost ({reason}); retry it")]


def _remove_stale_temp_dirs(frames_root: Path, video_id: int) -> None:
    """Remove this video's temporary folders left by a killed worker (untouched for STALE_TEMP_S).

    A live ingest adds a file every few frames, which keeps its folder's mtime fresh.
    """
    cutoff = time.time() - STALE_TEMP_S
    for pattern in (f".ingest-{video_id}-*", f".old-{video_id}-*"):
        for stale in frames_root.glob(pattern):
            if stale.is_dir() and stale.stat().st_mtime < cutoff:
                logger.info("removing stale ingest folder %s", stale)
                shutil.rmtree(stale, ignore_errors=True)


def _missing() -> VideoInfo:
    raise VideoInvalid("the video file is missing from storage")


def _decode_to_folder(video: Video, original: Path, info: VideoInfo, stride: int, folder: Path,
                      progress_callback: ProgressCallback | None) -> tuple[int, int, tuple[int, int]]:
    """Stream-decode once; keep every ``stride``-th frame as JPEG. Returns (decoded, written, (h, w)).

    Skipped frames are only ``grab()``-ed (decoded, not converted to BGR). JPEG encoding runs on
    one helper thread (OpenCV releases the GIL) so it overlaps the decode; at most
    ``WRITE_QUEUE`` frames wait for it, so memory stays flat whatever the video's length.
    """
    capture = _open_capture(original)
    max_frames = int(settings.MAX_VIDEO_DURATION_S * info.fps) + 1
    expected = info.frame_count
    decoded = written = 0
    shape: tuple[int, int] | None = None
    next_progress = PROGRESS_STEP
    last_write = time.monotonic()
    pending: deque[Future] = deque()
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="masklet-jpeg") as writer:
            while capture.grab():
                index = decoded
                decoded += 1
                if decoded > max_frames:
                    _check_duration(decoded / info.fps)
                if index % stride == 0:
                    ok, frame = capture.retrieve()
                    if not ok or frame is None:
                        raise VideoInvalid(f"frame {index} could not be decoded (the file may be corrupt)")
                    if shape is None:
                        shape = frame.shape[:2]
                        if shape[0] * shape[1] > settings.MAX_VIDEO_PIXELS:
                            raise VideoInvalid(f"frame size {shape[1]}x{shape[0]} exceeds the limit of "
                                               f"{settings.MAX_VIDEO_PIXELS:,} pixels")
                    elif frame.shape[:2] != shape:
                        raise VideoInvalid(f"the frame size changes within the video (frame {index} is "
                                           f"{frame.shape[1]}x{frame.shape[0]}, the first {shape[1]}x{shape[0]})")
                    pending.append(writer.submit(_write_jpeg, folder / f"{index:05d}.jpg", frame))
                    while len(pending) > WRITE_QUEUE:
                        pending.popleft().result()
                    written += 1
                fraction = decoded / max(expected, decoded)
                if fraction >= next_progress and time.monotonic() - last_write >= PROGRESS_MIN_INTERVAL_S:
                    next_progress = fraction + PROGRESS_STEP
                    last_write = time.monotonic()
                    Video.objects.filter(pk=video.pk).update(progress=min(fraction, 0.99))
                if progress_callback is not None:
                    progress_callback(decoded, expected)
            while pending:
                pending.popleft().result()
    finally:
        # Leaving the executor waited for queued writes, so nothing writes into the folder later.
        capture.release()
    if decoded == 0 or shape is None:
        raise VideoInvalid("the video has no frames")
    shortfall = expected - decoded
    if shortfall > max(2, TRUNCATION_TOLERANCE * expected):
        raise VideoInvalid(f"the video is truncated or corrupt: only {decoded} of {expected} frames could be "
                           "decoded")
    return decoded, written, shape


def _write_jpeg(path: Path, frame) -> None:
    if not cv2.imwrite(str(path), frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
        raise OSError(f"could not write {path.name}")


def _update(video: Video, **fields) -> None:
    for key, value in fields.items():
        setattr(video, key, value)
    video.save(update_fields=[*fields, "updated_at"])
    if fields.get("status") in (Video.Status.READY, Video.Status.FAILED):
        webhooks.emit(video.project_id, f"video.{video.status}", {
            "video": video.pk, "name": video.name, "status": video.status, "failure_reason": video.failure_reason})


# -- deleting and retrying ----------------------------------------------------------------------


def delete_video(video: Video) -> str:
    """Delete a video with its masklets, masks, history and reviews, then its frames and original file.

    Refused (``VideoRejected``) while it is being ingested or an auto-masklet run works on it. Files
    go after the transaction commits, so a failed delete leaves everything; exports already made are
    separate zips and stay. Returns the deleted video's name.
    """
    with transaction.atomic():
        row = Video.objects.select_for_update().filter(pk=video.pk).first()
        if row is None:
            raise VideoRejected("That video was deleted already.")
        if row.status in (Video.Status.UPLOADED, Video.Status.INGESTING):
            raise VideoRejected(f"{row.name} is being ingested: delete it once it is ready or has failed.")
        if AutoMaskletRun.objects.filter(video=row, status__in=AutoMaskletRun.ACTIVE).exists():
            raise VideoRejected(f"Auto masklets are being generated for {row.name}: delete it when the run ends.")
        original, video_id, name = row.original.name, row.pk, row.name
        row.delete()
        transaction.on_commit(lambda: _remove_files(original, video_id))
    return name


def _remove_files(original: str, video_id: int) -> None:
    """The deleted video's objects; the rows are gone already, so a storage failure is logged, not raised."""
    try:
        if original:
            Video._meta.get_field("original").storage.delete(original)
        VideoFrames(video_id).delete()
    except Exception:
        logger.exception("video %s was deleted but its stored files could not all be removed", video_id)


def retry_ingest(video: Video) -> Video:
    """Ingest a failed video again from its stored original (a worker lost, a queue down, a bug fixed)."""
    with transaction.atomic():
        row = Video.objects.select_for_update().filter(pk=video.pk).first()
        if row is None or row.status != Video.Status.FAILED:
            raise VideoRejected("Only a video whose ingest failed can be retried.")
        with storage.errors(f"looking for the original of {row.name}"):
            stored = bool(row.original) and row.original.storage.exists(row.original.name)
        if not stored:
            raise VideoRejected(f"The uploaded file of {row.name} is gone: delete it and upload the file again.")
        _queue_ingest(row)
    return row
