"""One storage layer for what Masklet stores: originals, ingested frames, dataset files, checkpoints.

Where: ``settings.STORAGE_URL`` (``MASKLET_STORAGE_URL``). ``file:///folder`` (the default: the
data dir) keeps folders ``media/``, ``frames/`` and ``models/`` in it, as always; ``s3://bucket/prefix``
keeps them as objects under ``prefix/media/``, ``prefix/frames/``, ``prefix/models/`` of an
S3-compatible bucket (django-storages' S3 backend over boto3), so the web server and workers on
other machines share only the bucket, PostgreSQL and Redis.

- **Areas**: ``area("media")`` is Django's default storage (``Video.original``, dataset imports
  and exports), ``area("frames")`` the ingested JPEGs, ``area("models")`` published checkpoints.
  Names inside an area come from ``key()``, which joins checked names only.
- **Atomic writes**: ``put_file`` stores a local file whole: on disk written beside the target,
  then renamed; on S3 one PUT or a multipart upload, which the server shows only once complete.
- **Frames** of a video are published as a whole (``VideoFrames.publish``): on disk a folder
  renamed into place; on S3, which has no rename, uploaded under a fresh generation prefix and
  then named by the video's ``manifest.json``. Readers go through the manifest, so they see the
  old frames or the new ones, never a mix, and never a half-uploaded set.
- **Reading** where the storage is not a local folder goes through the machine's bounded cache
  (``engine.cache``); ``CachedFrames`` fetches ahead of a propagation. ``file://`` storage is read
  in place, with no copy.
- **Failures** of the storage server become ``StorageError`` with words for people; ``verify``
  is the start-up check (wrong credentials, a missing bucket, no server: one clear error).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from django.conf import settings
from django.core.files.storage import FileSystemStorage, Storage, storages

from engine.cache import object_cache
from engine.safe_paths import check_name, safe_join
from segmentation.frames import JpegFolderFrames

logger = logging.getLogger(__name__)

AREAS = ("media", "frames", "models")
MANIFEST = "manifest.json"
#: Frames fetched ahead of the one a session reads, in the direction it moves.
PREFETCH = 8
#: Parallel uploads of one ingest's frames and parallel prefetches of one process.
TRANSFER_THREADS = 8
#: How long a process trusts a video's manifest it read (a re-ingest publishes a new one).
MANIFEST_TTL_S = 5.0


class StorageError(OSError):
    """The storage refused an operation or could not be reached; the message is for people."""


class MissingObject(StorageError, FileNotFoundError):
    """The object is not in the storage."""


def is_remote() -> bool:
    """Whether stored objects live in a bucket (read through the cache) rather than a local folder."""
    return bool(settings.S3_BUCKET)


def area(name: str) -> Storage:
    """The Django storage of one area (``AREAS``); ``media`` is the default storage ``FileField`` uses."""
    if name not in AREAS:
        raise ValueError(f"unknown storage area {name!r}")
    if name == "media":
        return storages["default"]
    if not is_remote():  # FRAMES_ROOT, MODELS_ROOT
        return FileSystemStorage(location=getattr(settings, f"{name.upper()}_ROOT"))
    return _bucket_area(name, settings.S3_BUCKET, settings.S3_PREFIX, settings.S3_ENDPOINT_URL)


@lru_cache(maxsize=8)
def _bucket_area(name: str, bucket: str, prefix: str, endpoint: str | None) -> Storage:
    from storages.backends.s3 import S3Storage  # boto3 loads only where the storage is S3

    options = {**settings.STORAGES["default"]["OPTIONS"], "file_overwrite": True,
               "location": "/".join(filter(None, [settings.S3_PREFIX, name]))}
    return S3Storage(**options)


def key(*parts: str | int) -> str:
    """A name inside an area from parts or keys, every segment a checked name (``engine.safe_paths.check_name``):
    ``key(12, "00004.jpg") == "12/00004.jpg"``; nothing else can make a key, so none leaves its area."""
    return "/".join(check_name(segment, "storage key part") for part in parts for segment in str(part).split("/"))


def _is_local(storage: Storage) -> bool:
    return isinstance(storage, FileSystemStorage)


def _object_key(storage: Storage, name: str) -> str:
    return "/".join(filter(None, [storage.location.strip("/"), name]))


@contextmanager
def errors(what: str) -> Iterator[None]:
    """S3 client errors as ``StorageError`` (``MissingObject`` for a missing key) saying ``what`` failed."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NotFound"):
            raise MissingObject(f"{what}: not in the storage") from None
        raise StorageError(f"{what}: the storage refused it ({code or error})") from None
    except BotoCoreError as error:
        logger.warning("%s: %s", what, error)  # the endpoint and the cause, for the log only
        raise StorageError(f"{what}: the storage cannot be reached") from None


def put_file(storage: Storage, name: str, source: str | os.PathLike) -> None:
    """Store the local file ``source`` as ``name``, whole or not at all (replacing what was there)."""
    if _is_local(storage):
        target = safe_join(storage.location, *name.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.part")
        try:
            shutil.copyfile(source, part)
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)
        return
    with errors(f"storing {name}"):
        storage.bucket.upload_file(str(source), _object_key(storage, name))


def put_bytes(storage: Storage, name: str, data: bytes) -> None:
    """``put_file`` for bytes in memory (small objects: manifests)."""
    if _is_local(storage):
        with tempfile.NamedTemporaryFile(delete=False) as handle:
            handle.write(data)
        try:
            put_file(storage, name, handle.name)
        finally:
            os.unlink(handle.name)
        return
    with errors(f"storing {name}"):
        storage.bucket.put_object(Key=_object_key(storage, name), Body=data)


def fetch_to(storage: Storage, name: str, target: str | os.PathLike) -> None:
    """Copy the object ``name`` into the local file ``target``; ``MissingObject`` when it is absent."""
    if _is_local(storage):
        try:
            shutil.copyfile(storage.path(name), target)
        except FileNotFoundError:
            raise MissingObject(f"reading {name}: not in the storage") from None
        return
    with errors(f"reading {name}"):
        storage.bucket.download_file(_object_key(storage, name), str(target))


def open_stream(storage: Storage, name: str) -> BinaryIO:
    """The object ``name`` opened for reading as a stream (large files: served without a full copy)."""
    if _is_local(storage):
        try:
            return open(storage.path(name), "rb")
        except FileNotFoundError:
            raise MissingObject(f"reading {name}: not in the storage") from None
    with errors(f"reading {name}"):
        return storage.bucket.Object(_object_key(storage, name)).get()["Body"]


def read_bytes(storage: Storage, name: str) -> bytes:
    if _is_local(storage):
        try:
            return Path(storage.path(name)).read_bytes()
        except FileNotFoundError:
            raise MissingObject(f"reading {name}: not in the storage") from None
    with errors(f"reading {name}"):
        return storage.bucket.Object(_object_key(storage, name)).get()["Body"].read()


@contextmanager
def local_file(storage: Storage, name: str) -> Iterator[Path]:
    """A local path holding the object ``name`` while the block runs: the file itself on disk, else a
    temporary copy (in the cache folder's disk, removed afterwards)."""
    if _is_local(storage):
        path = Path(storage.path(name))
        if not path.is_file():
            raise MissingObject(f"reading {name}: not in the storage")
        yield path
        return
    scratch = Path(settings.CACHE_ROOT) / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as folder:
        path = Path(folder) / Path(name).name
        fetch_to(storage, name, path)
        yield path


def cached_file(storage: Storage, name: str) -> Path:
    """A local path of the object ``name`` that stays (large, reused files: checkpoints): the file itself
    on disk, else the machine's cache entry."""
    if _is_local(storage):
        path = Path(storage.path(name))
        if not path.is_file():
            raise MissingObject(f"reading {name}: not in the storage")
        return path
    return object_cache().path(key(_area_name(storage), name), lambda target: fetch_to(storage, name, target))


def _area_name(storage: Storage) -> str:
    return storage.location.strip("/").rsplit("/", 1)[-1]


def delete_tree(storage: Storage, prefix: str) -> None:
    """Remove every object under ``prefix/`` (a video's frames); absent: nothing to do."""
    if _is_local(storage):
        shutil.rmtree(safe_join(storage.location, *prefix.split("/")), ignore_errors=True)
        return
    with errors(f"deleting {prefix}/"):
        storage.bucket.objects.filter(Prefix=_object_key(storage, prefix) + "/").delete()


def verify() -> None:
    """The start-up check: the bucket answers to these credentials (nothing to check for a folder).

    Raises ``StorageError`` saying what is wrong and which setting to fix.
    """
    if not is_remote():
        return
    from botocore.exceptions import BotoCoreError, ClientError

    storage = area("media")
    where = f"bucket {settings.S3_BUCKET!r}" + (f" at {settings.S3_ENDPOINT_URL}" if settings.S3_ENDPOINT_URL else "")
    try:
        storage.connection.meta.client.head_bucket(Bucket=settings.S3_BUCKET)
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise StorageError(f"MASKLET_STORAGE_URL: there is no {where}; create it first") from None
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise StorageError(f"MASKLET_STORAGE_URL: the storage refused these credentials for {where} "
                               "(check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)") from None
        raise StorageError(f"MASKLET_STORAGE_URL: {where} answered {code or error}") from None
    except BotoCoreError as error:
        raise StorageError(f"MASKLET_STORAGE_URL: cannot reach {where} ({error}); check "
                           "MASKLET_S3_ENDPOINT_URL and that the storage server runs") from None


# -- checkpoints ------------------------------------------------------------------------------


def publish_checkpoint(path: str | os.PathLike) -> str:
    """Where a registered checkpoint is found from any machine, storing it first where the storage is a bucket.

    A file inside ``MODELS_ROOT`` goes to the models area under its path there and is named by its
    URL (``s3://bucket/prefix/models/uploads/x.pt``); on ``file://`` storage, or for a file outside
    ``MODELS_ROOT`` (``MASKLET_SAM2_CHECKPOINT``, which every machine must have), it is its own path.
    """
    resolved = Path(path).resolve()
    root = Path(settings.MODELS_ROOT).resolve()
    if not is_remote() or not resolved.is_relative_to(root):
        return str(resolved)
    name = key(resolved.relative_to(root).as_posix())
    put_file(area("models"), name, resolved)
    return _models_url() + name


def _models_url() -> str:
    return settings.STORAGE_URL.rstrip("/") + "/models/"


def _stored_checkpoint(reference: str) -> str | None:
    """The models-area name of a published checkpoint's URL, else None (a local path)."""
    prefix = _models_url()
    return key(reference[len(prefix):]) if is_remote() and reference.startswith(prefix) else None


def checkpoint_file(reference: str) -> Path:
    """A local file of the checkpoint ``publish_checkpoint`` named: the path itself, or the cache's copy."""
    name = _stored_checkpoint(reference)
    return cached_file(area("models"), name) if name is not None else Path(reference)


def checkpoint_available(reference: str) -> bool:
    """Whether the checkpoint can be loaded here: the file exists, or the object does in the bucket."""
    name = _stored_checkpoint(reference)
    if name is None:
        return Path(reference).is_file()
    with errors(f"looking for {name}"):
        return area("models").exists(name)


# -- the frames of one video ----------------------------------------------------------------


class VideoFrames:
    """The published frames of one video (``frames/<video id>/``), named ``{native index:05d}.jpg``."""

    def __init__(self, video_id: int):
        self.video_id = int(video_id)
        self.storage = area("frames")
        self.prefix = key(self.video_id)
        self._memo_key = (settings.STORAGE_URL, self.video_id)

    @property
    def folder(self) -> Path | None:
        """The local folder of the frames (``file://`` storage), else None."""
        return safe_join(self.storage.location, self.prefix) if _is_local(self.storage) else None

    def publish(self, source: Path) -> None:
        """Make the JPEGs of the local folder ``source`` this video's frames, all at once (``source`` is used up).

        On disk the folder is renamed into place (an atomic exchange on a re-ingest). On S3 the files
        go to a new generation prefix first; the manifest that names them is written last and the
        previous generation deleted after it, so a failure before the manifest changes nothing.
        """
        if self.folder is not None:
            self.folder.parent.mkdir(parents=True, exist_ok=True)
            swap_into_place(source, self.folder)
            return
        generation = uuid.uuid4().hex[:16]
        names = sorted(path.name for path in source.glob("*.jpg"))
        with ThreadPoolExecutor(TRANSFER_THREADS, thread_name_prefix="masklet-upload") as pool:
            for done in pool.map(lambda name: put_file(self.storage, key(self.prefix, generation, name),
                                                       source / name), names):
                del done
        put_bytes(self.storage, key(self.prefix, MANIFEST),
                  json.dumps({"generation": generation, "frames": names}).encode())
        _manifests.pop(self._memo_key, None)
        self._delete_generations(keep=generation)
        shutil.rmtree(source, ignore_errors=True)

    def _delete_generations(self, keep: str) -> None:
        prefix = _object_key(self.storage, self.prefix) + "/"
        with errors(f"deleting old frames of video {self.video_id}"):
            old = [{"Key": item.key} for item in self.storage.bucket.objects.filter(Prefix=prefix)
                   if not item.key[len(prefix):].startswith((f"{keep}/", MANIFEST))]
            for start in range(0, len(old), 1000):
                self.storage.bucket.delete_objects(Delete={"Objects": old[start:start + 1000], "Quiet": True})

    def delete(self) -> None:
        """Remove every frame of the video (and its manifest)."""
        delete_tree(self.storage, self.prefix)
        _manifests.pop(self._memo_key, None)

    def _manifest(self, fresh: bool = False) -> dict | None:
        now = time.monotonic()
        memo = _manifests.get(self._memo_key)
        if memo is not None and not fresh and now - memo[0] < MANIFEST_TTL_S:
            return memo[1]
        try:
            manifest = json.loads(read_bytes(self.storage, key(self.prefix, MANIFEST)))
        except MissingObject:
            manifest = None
        _manifests[self._memo_key] = (now, manifest)
        return manifest

    def names(self) -> list[str]:
        """The frame files' names in order; empty when the video has no published frames."""
        if self.folder is not None:
            if not self.folder.is_dir():
                return []
            return sorted(path.name for path in self.folder.iterdir() if path.suffix.lower() in (".jpg", ".jpeg"))
        manifest = self._manifest()
        return list(manifest["frames"]) if manifest else []

    def exists(self) -> bool:
        return bool(self.names())

    def path(self, name: str) -> Path | None:
        """A local file holding the frame ``name`` (the stored file on disk, else the cache's copy), or None."""
        check_name(name, "frame name")
        if self.folder is not None:
            path = self.folder / name
            return path if path.is_file() else None
        for fresh in (False, True):  # a re-ingest since the manifest was read: its frames are gone, read it again
            manifest = self._manifest(fresh)
            if manifest is None or name not in manifest["frames"]:
                return None
            try:
                return self._cached(manifest["generation"], name)
            except MissingObject:
                continue
        return None

    def _cached(self, generation: str, name: str) -> Path:
        stored = key(self.prefix, generation, name)
        return object_cache().path(key("frames", stored), lambda target: fetch_to(self.storage, stored, target))

    def source(self) -> JpegFolderFrames | CachedFrames:
        """The frames as a ``FrameSource``: read in place on disk, else through the cache with prefetch."""
        if self.folder is not None:
            return JpegFolderFrames(self.folder)
        manifest = self._manifest(fresh=True)
        if not manifest or not manifest["frames"]:
            raise MissingObject(f"video {self.video_id} has no frames in the storage")
        return CachedFrames(self, manifest["generation"], manifest["frames"])


_manifests: dict[tuple[str, int], tuple[float, dict | None]] = {}  # (storage, video id) -> (read at, manifest)


class CachedFrames:
    """A video's frames read through the machine's cache, decoded on demand (``segmentation.frames.FrameSource``).

    Each read schedules the next ``PREFETCH`` frames in the direction of travel on a shared pool of
    ``TRANSFER_THREADS``, so a propagation finds its frames on disk; the last ``memory`` decoded
    frames stay in memory.
    """

    def __init__(self, frames: VideoFrames, generation: str, names: list[str], memory: int = 16):
        self._frames, self._generation, self.names = frames, generation, list(names)
        self._decoded: OrderedDict[int, np.ndarray] = OrderedDict()
        self._memory = max(1, memory)
        self._pending: dict[int, Future] = {}
        self._last = 0
        self._lock = threading.Lock()
        first = self[0]
        self.height, self.width = int(first.shape[0]), int(first.shape[1])

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self):
            raise IndexError(f"frame index {index} out of range 0..{len(self) - 1}")
        index = int(index)
        with self._lock:
            frame = self._decoded.get(index)
            if frame is not None:
                self._decoded.move_to_end(index)
            pending = self._pending.pop(index, None)
            step = -1 if index < self._last else 1
            self._last = index
        if frame is not None:
            return frame
        if pending is not None:
            pending.exception()  # wait; a failed prefetch is retried below and raises there
        data = self._fetch(index).read_bytes()
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise OSError(f"cannot decode frame {self.names[index]} of video {self._frames.video_id}")
        frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        with self._lock:
            self._decoded[index] = frame
            while len(self._decoded) > self._memory:
                self._decoded.popitem(last=False)
        self._prefetch(index, step)
        return frame

    def _fetch(self, index: int) -> Path:
        return self._frames._cached(self._generation, self.names[index])

    def _prefetch(self, index: int, step: int) -> None:
        with self._lock:
            self._pending = {i: future for i, future in self._pending.items() if not future.done()}
            for ahead in range(index + step, index + step * (PREFETCH + 1), step):
                if 0 <= ahead < len(self) and ahead not in self._pending and ahead not in self._decoded:
                    self._pending[ahead] = _prefetch_pool().submit(self._fetch, ahead)


@lru_cache(maxsize=1)
def _prefetch_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(TRANSFER_THREADS, thread_name_prefix="masklet-prefetch")


# -- atomic folder replacement (``file://`` frames) ---------------------------------------------

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _renameat2_exchange() -> Callable[[Path, Path], bool] | None:
    """Linux ``renameat2(RENAME_EXCHANGE)`` swaps two paths atomically; None where unavailable."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        func = libc.renameat2
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int

    def exchange(a: Path, b: Path) -> bool:
        return func(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0

    return exchange


_exchange = _renameat2_exchange()



def swap_into_place(new_dir: Path, target: Path) -> None:
    """Make ``new_dir`` the content of ``target``; old frames (if any) are removed afterwards.

    First ingest: one ``rename`` (atomic). Re-ingest: an atomic exchange on Linux; elsewhere
    the old folder is moved aside first, leaving a moment with no folder (never a mixed one).
    """
    if not target.exists():
        new_dir.rename(target)
        return
    if _exchange is not None and _exchange(new_dir, target):
        shutil.rmtree(new_dir, ignore_errors=True)  # new_dir now holds the old frames
        return
    aside = target.with_name(f".old-{target.name}-{uuid.uuid4().hex[:12]}")
    target.rename(aside)
    new_dir.rename(target)
    shutil.rmtree(aside, ignore_errors=True)
