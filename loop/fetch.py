"""Fetch Meta's released SAM 2 checkpoints (or any checkpoint URL), check them, register them.

``fetch_model`` (the management command) and the models dashboard's download job both call
``fetch_and_register``:

1. download into ``MODELS_ROOT`` (``MASKLET_DATA_DIR/models/``) under a temporary ``.part``
   name, resuming with an HTTP ``Range`` request when the connection drops midway, and rename
   to ``<name>.pt`` only when the whole file is there and its sha256 matches (``--sha256``;
   Meta publishes none, so otherwise the digest is recorded on the ``ModelVersion``);
2. load it strictly into the model its config builds (``loop.registry.check_loadable``);
3. register a ``ModelVersion`` (for a project, or shared) and, when asked, promote it.

Every failure (404, no network, a truncated or wrong file, a full disk) raises ``FetchError``
with what happened and how to place the file by hand, and leaves neither a partial file nor a
registered version. A file already at ``<name>.pt`` (placed by hand, or a finished earlier
download) is checked and registered without downloading.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import logging
import os
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from django.conf import settings

from annotator.models import Project
from engine import safe_paths, storage
from engine.models import ModelVersion
from loop import registry
from segmentation.sam2_configs import resolve_config

logger = logging.getLogger(__name__)

#: Meta's release folders (``checkpoints/download_ckpts.sh`` in facebookresearch/sam2).
SAM2_1_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
SAM2_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/072824/"
CHUNK = 1 << 20
#: Tries per download: the first request and this many resumptions after a dropped connection.
ATTEMPTS = 4
#: Seconds one network operation (connecting, one read) may take before it counts as failed.
DEFAULT_TIMEOUT = 30.0

Progress = Callable[[int, int | None], None]  # (bytes so far, total bytes or None)


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint to fetch: where from, which config builds its model, about how big it is."""

    name: str
    url: str
    config: str
    approx_mb: int = 0

    @property
    def label(self) -> str:
        """E.g. "SAM 2.1 tiny (≈150 MB)", for buttons and messages."""
        version, _, size = self.name.partition("_hiera_")
        words = f"SAM {version.removeprefix('sam')} {size.replace('_', ' ')}"
        return f"{words} (≈{self.approx_mb} MB)" if self.approx_mb else words

    @property
    def filename(self) -> str:
        return f"{self.name}.pt"


def _official(version: str, base: str) -> dict[str, Checkpoint]:
    sizes = (("tiny", "t", 150), ("small", "s", 185), ("base_plus", "b+", 325), ("large", "l", 900))
    return {f"{version}_hiera_{size}": Checkpoint(f"{version}_hiera_{size}", f"{base}{version}_hiera_{size}.pt",
                                                  f"{version}_hiera_{short}", mb)
            for size, short, mb in sizes}


#: Meta's eight released checkpoints by name, with their official address and config.
OFFICIAL: dict[str, Checkpoint] = {**_official("sam2.1", SAM2_1_BASE_URL), **_official("sam2", SAM2_BASE_URL)}

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class FetchError(Exception):
    """A fetch that failed; the message says what happened and what to do, for people."""


def official(name: str) -> Checkpoint:
    try:
        return OFFICIAL[name]
    except KeyError:
        raise FetchError(f"unknown checkpoint {name!r}: choose one of {', '.join(OFFICIAL)}, "
                         "or give --url, --sha256 and --config") from None


def custom(url: str, config: str, name: str = "") -> Checkpoint:
    """A checkpoint at any http(s) ``url``; ``name`` (default: the URL's file name) names the file and version."""
    if not re.match(r"^https?://", url):
        raise FetchError(f"--url must be an http:// or https:// address, not {url!r}")
    try:
        resolve_config(config)
    except ValueError as error:
        raise FetchError(str(error)) from None
    name = name or Path(urllib.request.url2pathname(url.split("?", 1)[0].rsplit("/", 1)[-1])).stem
    try:
        safe_paths.check_name(name, "checkpoint name (give one with --name)")
    except safe_paths.UnsafePath as error:
        raise FetchError(str(error)) from None
    return Checkpoint(name, url, config)


def check_sha256(value: str) -> str:
    value = value.strip().lower()
    if not _SHA256.match(value):
        raise FetchError(f"--sha256 must be 64 hexadecimal digits, not {value!r}")
    return value


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def by_hand(checkpoint: Checkpoint) -> str:
    """How to do by hand what the fetch could not."""
    return (f"To place it by hand: download {checkpoint.url} on a machine that can reach it, copy it to "
            f"MASKLET_DATA_DIR/models/{checkpoint.filename}, then run `manage.py fetch_model {checkpoint.name}"
            f"{'' if checkpoint.name in OFFICIAL else f' --url {checkpoint.url} --config {checkpoint.config}'}"
            "` again: it checks and registers a file already there.")


# -- download ----------------------------------------------------------------------------------


class _Dropped(Exception):
    """The connection ended before the whole file arrived (resumable)."""


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _open(url: str, offset: int, timeout: float) -> tuple[Any, int, int | None]:
    """The response, the offset it starts at (0 when the server ignored ``Range``), and the file's size."""
    headers = {"User-Agent": "masklet-fetch-model"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    # A fresh opener per request: it reads the proxy settings (``https_proxy``…) as they are now.
    response = urllib.request.build_opener().open(urllib.request.Request(url, headers=headers), timeout=timeout)
    if response.status == 206:
        match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", ""))
        if match is None or int(match.group(1)) != offset:
            response.close()
            raise _Dropped(f"the server resumed at the wrong place ({response.headers.get('Content-Range')!r})")
        return response, offset, None if match.group(2) == "*" else int(match.group(2))
    length = response.headers.get("Content-Length")
    return response, 0, int(length) if length and length.isdigit() else None


def _write(out: Any, block: bytes) -> None:
    try:
        out.write(block)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise FetchError("the disk is full: no room left in MASKLET_DATA_DIR/models") from None
        raise


def _check_room(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise FetchError(f"not enough disk space: the file needs {_mb(needed)} more and MASKLET_DATA_DIR/models has "
                         f"{_mb(free)} free")


def download(url: str, dest: Path, *, sha256: str = "", progress: Progress | None = None,
             timeout: float = DEFAULT_TIMEOUT, attempts: int = ATTEMPTS) -> str:
    """Download ``url`` to ``dest`` and return its sha256; resumes a dropped connection with ``Range``.

    The bytes go to ``.<dest name>.part`` in the same folder, renamed to ``dest`` only when the
    whole file is there (its length as announced) and its digest equals ``sha256`` (when given);
    on any failure the part file is removed and ``FetchError`` raised.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f".{dest.name}.part")
    done, total, host = 0, None, urllib.request.urlparse(url).netloc
    try:
        with part.open("wb") as out:
            for attempt in range(attempts):
                try:
                    response, start, size = _open(url, done, timeout)
                except urllib.error.HTTPError as error:
                    if error.code == 416 and done:  # the range is wrong: start again from zero
                        done = 0
                        out.seek(0)
                        out.truncate()
                        continue
                    raise FetchError(f"{url} answered HTTP {error.code} ({error.reason}): the file is not there "
                                     "(moved, or a wrong address)") from None
                except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as error:
                    if done:  # it was reachable a moment ago: resume
                        logger.info("resuming %s at %s after: %s", url, done, error)
                        continue
                    reason = getattr(error, "reason", error)
                    raise FetchError(f"could not reach {host} ({reason}): no network, or the address is blocked"
                                     ) from None
                except _Dropped as error:
                    logger.info("restarting %s: %s", url, error)
                    done = 0
                    out.seek(0)
                    out.truncate()
                    continue
                with response:
                    if start != done:  # the server sent the whole file again
                        done = 0
                        out.seek(0)
                        out.truncate()
                    total = size if size is not None else total
                    if total is not None:
                        _check_room(part.parent, total - done)
                    try:
                        while block := response.read(CHUNK):
                            _write(out, block)
                            done += len(block)
                            if progress is not None:
                                progress(done, total)
                    except (http.client.IncompleteRead, TimeoutError, ConnectionError) as error:
                        logger.info("connection to %s dropped at %s of %s bytes (%s), attempt %s",
                                    host, done, total, error, attempt + 1)
                        continue
                if total is None or done >= total:
                    break
            if total is not None and done < total:
                raise FetchError(f"the download stopped at {_mb(done)} of {_mb(total)}: the connection to {host} "
                                 f"dropped {attempts} times (the file is truncated)")
            if done == 0:
                raise FetchError(f"{url} sent an empty file")
            out.flush()
            os.fsync(out.fileno())
        digest = file_sha256(part)
        if sha256 and digest != sha256:
            raise FetchError(f"wrong checksum: the file from {url} has sha256 {digest}, expected {sha256} "
                             "(a corrupted download, or another file at that address)")
        os.replace(part, dest)
        return digest
    finally:
        part.unlink(missing_ok=True)


# -- fetch, check, register -------------------------------------------------------------------


def _loaded_before(project: Project | None, digest: str, config: str, image_size: int) -> bool:
    """Whether a version in use holds these very bytes (``digest``) for ``config`` at ``image_size``: it
    was loaded into that model when it was registered, so loading it again (a child process that
    imports torch, seconds) would only say the same."""
    return (ModelVersion.objects.filter(project=project, sha256=digest, sam2_config=resolve_config(config),
                                        image_size=image_size)
            .exclude(status=ModelVersion.Status.RETIRED).exists())


def fetch_and_register(checkpoint: Checkpoint, *, project: Project | None = None, promote: bool = False,
                       sha256: str = "", image_size: int | None = None, user: Any = None,
                       progress: Progress | None = None, timeout: float = DEFAULT_TIMEOUT,
                       say: Callable[[str], None] = logger.info) -> ModelVersion:
    """Download (unless already there), check, register and maybe promote ``checkpoint``; the version.

    ``image_size`` defaults to ``MASKLET_SAM2_IMAGE_SIZE`` (1024 with a GPU, the CPU default
    without). Raises ``FetchError``; nothing is left behind then.
    """
    sha256 = check_sha256(sha256) if sha256 else ""
    image_size = image_size or settings.SAM2_IMAGE_SIZE
    if settings.CHECKPOINT_MIRROR and OFFICIAL.get(checkpoint.name) == checkpoint:
        checkpoint = replace(checkpoint, url=f"{settings.CHECKPOINT_MIRROR.rstrip('/')}/{checkpoint.filename}")
    dest = safe_paths.safe_join(registry.models_dir(), checkpoint.filename)
    fetched = not dest.is_file()
    if fetched:
        say(f"Downloading {checkpoint.label} from {checkpoint.url}")
        try:
            digest = download(checkpoint.url, dest, sha256=sha256, progress=progress, timeout=timeout)
        except FetchError as error:
            raise FetchError(f"{error}. {by_hand(checkpoint)}") from None
    else:
        say(f"{dest.name} is already in MASKLET_DATA_DIR/models: checking it instead of downloading")
        digest = file_sha256(dest)
        if sha256 and digest != sha256:
            raise FetchError(f"wrong checksum: MASKLET_DATA_DIR/models/{dest.name} has sha256 {digest}, expected "
                             f"{sha256}. Delete it to download it again. {by_hand(checkpoint)}")
    if _loaded_before(project, digest, checkpoint.config, image_size):
        say(f"sha256 {digest}; already loaded into {checkpoint.config} @{image_size} when it was registered")
    else:
        say(f"sha256 {digest}; loading it into {checkpoint.config} @{image_size} to check it")
        try:
            registry.check_loadable(dest, checkpoint.config, image_size)
        except registry.RegistryError as error:
            if fetched:
                dest.unlink(missing_ok=True)
            raise FetchError(f"{error}. {'The download was removed. ' if fetched else ''}"
                             f"{by_hand(checkpoint)}") from None
    version = ModelVersion.objects.filter(project=project, checkpoint=storage.publish_checkpoint(dest), sha256=digest,
                                          image_size=image_size).exclude(status=ModelVersion.Status.RETIRED).first()
    if version is None:
        version = registry.register_version(project, name=checkpoint.name, checkpoint=dest, config=checkpoint.config,
                                            image_size=image_size, user=user, check=False, sha256=digest,
                                            note=f"fetched from {checkpoint.url}")
        say(f"registered as version {version.pk} ({'shared' if project is None else project.slug})")
    else:
        say(f"already registered as version {version.pk}")
    if promote and version.status != ModelVersion.Status.PRODUCTION:
        registry.promote(version, user, note="fetch_model --promote")
        say(f"{version.name} now serves new sessions")
    return version
