"""``Client``: one method per Masklet API operation, over ``requests`` with a bearer token.

Every method is declared with ``@operation(METHOD, PATH)``; ``OPERATIONS`` is that table, which
tests check against the server's OpenAPI schema (``/api/schema/?format=json``), so a renamed or
missing endpoint fails a test instead of a user's script.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import requests

from masklet_client.errors import JobFailed, MaskletConnectionError, MaskletError, WaitTimedOut
from masklet_client.resources import (
    DatasetJob,
    Masklet,
    MaskletMasks,
    Member,
    ModelVersion,
    Project,
    Review,
    Token,
    TrainingRun,
    User,
    Video,
)
from masklet_client.upload import ProgressCallback, multipart_stream

F = TypeVar("F", bound=Callable[..., Any])

#: Job states after which nothing changes any more, per resource (the first set: success).
VIDEO_ENDS = ({"ready"}, {"failed"})
DATASET_JOB_ENDS = ({"done", "succeeded"}, {"failed", "cancelled"})
TRAINING_RUN_ENDS = ({"succeeded", "done"}, {"failed", "cancelled"})


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # an OpenAPI path template, e.g. /api/projects/{slug}/


#: ``Client`` method name -> the API operation it calls.
OPERATIONS: dict[str, Operation] = {}


def operation(method: str, path: str) -> Callable[[F], F]:
    def register(function: F) -> F:
        OPERATIONS[function.__name__] = Operation(method, path)
        return function

    return register


def _segment(value: Any) -> str:
    """A URL path segment from a slug, id or username: quoted, so nothing can add a segment."""
    return quote(str(value), safe="")


class Client:
    """The Masklet HTTP API. ``Client.from_env()`` reads ``MASKLET_URL`` and ``MASKLET_TOKEN``.

    Failures raise ``MaskletError`` (``status``, ``code``, ``message``, ``field``);
    ``MaskletConnectionError`` when the server cannot be reached. A 429 is retried after its
    ``Retry-After`` up to ``rate_limit_retries`` times. Lists are read whole, ``page_size`` items a
    request (None: the server's default).
    """

    def __init__(self, url: str, token: str | None, *, timeout: float = 60.0, rate_limit_retries: int = 3,
                 page_size: int | None = None, session: requests.Session | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.rate_limit_retries = rate_limit_retries
        self.page_size = page_size
        self.session = session or requests.Session()
        self.session.headers["Accept"] = "application/json"
        self.session.headers["User-Agent"] = "masklet-client/0.1"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    @classmethod
    def from_env(cls, **kwargs: Any) -> Client:
        url = os.environ.get("MASKLET_URL", "").strip()
        if not url:
            raise MaskletError(None, "configuration", "Set MASKLET_URL to the server's address "
                                                      "(e.g. http://127.0.0.1:8000).")
        token = os.environ.get("MASKLET_TOKEN", "").strip()
        if not token:
            raise MaskletError(None, "configuration", "Set MASKLET_TOKEN to an API token (make one on your "
                                                      "account page or with `manage.py api_token USERNAME`).")
        return cls(url, token, **kwargs)

    # -- transport ---------------------------------------------------------------------------

    def request(self, method: str, path: str, *, stream: bool = False, **kwargs: Any) -> requests.Response:
        """One call to ``path`` (``/api/...``, always on ``self.url``: the token goes nowhere else);
        returns the response of a 2xx, raises ``MaskletError`` for anything else."""
        url = self.url + path
        kwargs.setdefault("timeout", self.timeout)
        retries = 0
        while True:
            try:
                response = self.session.request(method, url, stream=stream, **kwargs)
            except requests.Timeout as error:
                raise MaskletConnectionError(f"{method} {url} timed out after {kwargs['timeout']} s.") from error
            except requests.ConnectionError as error:
                raise MaskletConnectionError(f"Cannot reach {self.url}: {_reason(error)}") from error
            if response.ok:
                return response
            if response.status_code != 429 or retries >= self.rate_limit_retries:
                raise MaskletError.from_response(response)
            retries += 1
            time.sleep(_retry_after(response))
            if hasattr(kwargs.get("data"), "seek"):
                kwargs["data"].seek(0)  # a streamed upload is sent again from its start

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as error:
            raise MaskletError(response.status_code, "bad_response",
                               f"{method} {path} answered {response.headers.get('Content-Type')}, not JSON.") from error

    def _upload(self, path: str, fields: dict[str, str], file_field: str, file_path: Path,
                progress: ProgressCallback | None) -> Any:
        """POST ``fields`` and the file as multipart, streamed from disk."""
        with file_path.open("rb") as file:
            body, content_type = multipart_stream(fields, file_field, file_path.name, file, progress)
            return self._json("POST", path, data=body, headers={"Content-Type": content_type})

    def _list(self, path: str, key: str, params: dict[str, Any] | None = None) -> list[Any]:
        """Every item of a list endpoint: follows ``next`` of paginated lists; older lists are
        ``{key: [...]}`` in one page."""
        items: list[Any] = []
        params = {**(params or {}), **({"page_size": self.page_size} if self.page_size else {})}
        url: str | None = path
        while url:
            page = self._json("GET", url, params=params or None)
            params = {}  # ``next`` carries the query
            if isinstance(page, list):
                return items + page
            if "results" not in page:
                return items + list(page.get(key, []))
            items.extend(page["results"])
            url = _path_of(page["next"]) if page.get("next") else None
        return items

    # -- session and tokens --------------------------------------------------------------------

    @operation("GET", "/api/session/")
    def session_info(self) -> dict[str, Any]:
        return self._json("GET", "/api/session/")

    @operation("GET", "/api/tokens/")
    def list_tokens(self) -> list[Token]:
        return self._list("/api/tokens/", "tokens")

    @operation("POST", "/api/tokens/")
    def create_token(self, name: str, *, expires_days: float | None = None) -> Token:
        """A new token for the caller; the answer's ``token`` is the secret, shown this once."""
        body: dict[str, Any] = {"name": name}
        if expires_days is not None:
            body["expires_days"] = expires_days
        return self._json("POST", "/api/tokens/", json=body)

    @operation("DELETE", "/api/tokens/{token_id}/")
    def revoke_token(self, token_id: int) -> Token:
        """Revoke one of your tokens: it stops working at once (the row stays, listed as revoked)."""
        return self._json("DELETE", f"/api/tokens/{_segment(token_id)}/")

    @operation("GET", "/api/users/")
    def list_users(self) -> list[User]:
        return self._list("/api/users/", "users")

    @operation("POST", "/api/users/")
    def create_user(self, username: str, email: str = "", password: str | None = None, *, staff: bool = False) -> User:
        """Site admins: a new account; without a password the answer's ``invite`` link lets the person pick one."""
        body: dict[str, Any] = {"username": username, "email": email, "staff": staff}
        if password is not None:
            body["password"] = password
        return self._json("POST", "/api/users/", json=body)

    # -- projects and members ------------------------------------------------------------------

    @operation("GET", "/api/projects/")
    def list_projects(self) -> list[Project]:
        return self._list("/api/projects/", "projects")

    @operation("POST", "/api/projects/")
    def create_project(self, slug: str, name: str, labels: list[str] | None = None,
                       annotation_fps: int | None = None) -> Project:
        body: dict[str, Any] = {"slug": slug, "name": name, "labels": labels or []}
        if annotation_fps is not None:
            body["annotation_fps"] = annotation_fps
        return self._json("POST", "/api/projects/", json=body)

    @operation("GET", "/api/projects/{slug}/")
    def get_project(self, slug: str) -> Project:
        return self._json("GET", f"/api/projects/{_segment(slug)}/")

    @operation("PATCH", "/api/projects/{slug}/")
    def update_project(self, slug: str, **fields: Any) -> Project:
        return self._json("PATCH", f"/api/projects/{_segment(slug)}/", json=fields)

    @operation("GET", "/api/projects/{slug}/members/")
    def list_members(self, slug: str) -> list[Member]:
        return self._list(f"/api/projects/{_segment(slug)}/members/", "members")

    @operation("POST", "/api/projects/{slug}/members/")
    def add_member(self, slug: str, username: str, role: str) -> Member:
        return self._json("POST", f"/api/projects/{_segment(slug)}/members/", json={"username": username, "role": role})

    @operation("PATCH", "/api/projects/{slug}/members/{username}/")
    def set_member_role(self, slug: str, username: str, role: str) -> Member:
        return self._json("PATCH", f"/api/projects/{_segment(slug)}/members/{_segment(username)}/",
                          json={"role": role})

    @operation("DELETE", "/api/projects/{slug}/members/{username}/")
    def remove_member(self, slug: str, username: str) -> dict[str, Any]:
        return self._json("DELETE", f"/api/projects/{_segment(slug)}/members/{_segment(username)}/")

    # -- videos --------------------------------------------------------------------------------

    @operation("GET", "/api/projects/{slug}/videos/")
    def list_videos(self, slug: str, status: str | None = None) -> list[Video]:
        return self._list(f"/api/projects/{_segment(slug)}/videos/", "videos", {"status": status} if status else None)

    @operation("POST", "/api/projects/{slug}/videos/")
    def upload_video(self, slug: str, path: str | Path, *, name: str | None = None, allow_duplicate: bool = False,
                     progress: ProgressCallback | None = None) -> Video:
        """Stream the file (never read whole into memory); ``progress(sent, total)`` after each chunk."""
        path = Path(path)
        fields = {"allow_duplicate": "1"} if allow_duplicate else {}
        if name:
            fields["name"] = name
        return self._upload(f"/api/projects/{_segment(slug)}/videos/", fields, "file", path, progress)

    @operation("GET", "/api/projects/{slug}/videos/{video_id}/")
    def get_video(self, slug: str, video_id: int) -> Video:
        return self._json("GET", f"/api/projects/{_segment(slug)}/videos/{_segment(video_id)}/")

    @operation("DELETE", "/api/projects/{slug}/videos/{video_id}/")
    def delete_video(self, slug: str, video_id: int) -> dict[str, Any]:
        return self._json("DELETE", f"/api/projects/{_segment(slug)}/videos/{_segment(video_id)}/")

    @operation("POST", "/api/projects/{slug}/videos/{video_id}/retry/")
    def retry_video(self, slug: str, video_id: int) -> Video:
        return self._json("POST", f"/api/projects/{_segment(slug)}/videos/{_segment(video_id)}/retry/")

    def wait_video(self, slug: str, video_id: int, *, timeout: float = 600.0, on_poll: Callable[[Video], None]
                   | None = None) -> Video:
        """Poll until the video is ready; ``JobFailed`` when ingest fails (with its reason)."""
        return self._wait(lambda: self.get_video(slug, video_id), VIDEO_ENDS, f"video {video_id}", timeout, on_poll,
                          reason_key="failure_reason")

    # -- masklets, masks, reviews --------------------------------------------------------------

    @operation("GET", "/api/projects/{slug}/videos/{video_id}/masklets/")
    def list_masklets(self, slug: str, video_id: int) -> list[Masklet]:
        return self._list(f"/api/projects/{_segment(slug)}/videos/{_segment(video_id)}/masklets/", "masklets")

    @operation("POST", "/api/projects/{slug}/videos/{video_id}/masklets/")
    def create_masklet(self, slug: str, video_id: int, label: str) -> Masklet:
        return self._json("POST", f"/api/projects/{_segment(slug)}/videos/{_segment(video_id)}/masklets/",
                          json={"label": label})

    @operation("GET", "/api/projects/{slug}/videos/{video_id}/masks/")
    def get_video_masks(self, slug: str, video_id: int, *, start: int | None = None,
                        end: int | None = None) -> dict[str, Any]:
        """Every stored mask of the video (frames ``start``..``end``), as the annotation page reads them."""
        params = {key: value for key, value in (("start", start), ("end", end)) if value is not None}
        return self._json("GET", f"/api/projects/{_segment(slug)}/videos/{_segment(video_id)}/masks/",
                          params=params or None)

    @operation("GET", "/api/projects/{slug}/videos/{video_id}/frames/{frame_index}/")
    def get_frame(self, slug: str, video_id: int, frame_index: int) -> bytes:
        """One annotated frame as JPEG bytes."""
        return self.request("GET", f"/api/projects/{_segment(slug)}/videos/{_segment(video_id)}/frames/"
                                   f"{_segment(frame_index)}/").content

    @operation("GET", "/api/projects/{slug}/masklets/{masklet_id}/")
    def get_masklet(self, slug: str, masklet_id: int) -> Masklet:
        return self._json("GET", f"/api/projects/{_segment(slug)}/masklets/{_segment(masklet_id)}/")

    @operation("GET", "/api/projects/{slug}/masklets/{masklet_id}/masks/")
    def get_masks(self, slug: str, masklet_id: int) -> MaskletMasks:
        return self._json("GET", f"/api/projects/{_segment(slug)}/masklets/{_segment(masklet_id)}/masks/")

    @operation("PUT", "/api/projects/{slug}/masklets/{masklet_id}/masks/")
    def put_masks(self, slug: str, masklet_id: int, frames: list[dict[str, Any]]) -> dict[str, Any]:
        """Write frames ``[{"frame_index": i, "rle": {"size": [h, w], "counts": "..."}}]`` (COCO RLE) as a
        person's edit, all or nothing; answers ``{"saved": [{"frame_index", "revision", "area"}]}``."""
        return self._json("PUT", f"/api/projects/{_segment(slug)}/masklets/{_segment(masklet_id)}/masks/",
                          json={"frames": frames})

    @operation("POST", "/api/projects/{slug}/masklets/{masklet_id}/submit/")
    def submit_masklet(self, slug: str, masklet_id: int) -> Masklet:
        """Hand a draft to review (refused while it has no mask)."""
        return self._json("POST", f"/api/projects/{_segment(slug)}/masklets/{_segment(masklet_id)}/submit/")

    @operation("POST", "/api/projects/{slug}/masklets/{masklet_id}/review/")
    def review_masklet(self, slug: str, masklet_id: int, verdict: str, *, reason: str = "",
                       comment: str = "") -> Review:
        """``verdict``: ``approve``, ``send_back`` (with a ``reason`` from the pick list) or ``reject`` (for good)."""
        return self._json("POST", f"/api/projects/{_segment(slug)}/masklets/{_segment(masklet_id)}/review/",
                          json={"verdict": verdict, "reason": reason, "comment": comment})

    @operation("GET", "/api/projects/{slug}/reviews/")
    def list_reviews(self, slug: str, *, verdict: str | None = None, masklet_id: int | None = None) -> list[Review]:
        params = {key: value for key, value in (("verdict", verdict), ("masklet", masklet_id)) if value is not None}
        return self._list(f"/api/projects/{_segment(slug)}/reviews/", "reviews", params or None)

    # -- datasets ------------------------------------------------------------------------------

    @operation("GET", "/api/projects/{slug}/datasets/jobs/")
    def list_dataset_jobs(self, slug: str) -> list[DatasetJob]:
        return self._list(f"/api/projects/{_segment(slug)}/datasets/jobs/", "jobs")

    @operation("POST", "/api/projects/{slug}/datasets/jobs/")
    def start_export(self, slug: str, fmt: str, *, statuses: list[str] | None = None, **options: Any) -> DatasetJob:
        """Start an export; ``statuses`` picks masklets by status (the server's default: approved)."""
        body: dict[str, Any] = {"kind": "export", "format": fmt, **options}
        if statuses:
            body["statuses"] = statuses
        return self._json("POST", f"/api/projects/{_segment(slug)}/datasets/jobs/", json=body)

    @operation("POST", "/api/projects/{slug}/datasets/jobs/")
    def start_import(self, slug: str, fmt: str, path: str | Path, *, progress: ProgressCallback | None = None,
                     **options: Any) -> DatasetJob:
        fields = {"kind": "import", "format": fmt, **{key: str(value) for key, value in options.items()}}
        return self._upload(f"/api/projects/{_segment(slug)}/datasets/jobs/", fields, "file", Path(path), progress)

    @operation("GET", "/api/projects/{slug}/datasets/jobs/{job_id}/")
    def get_dataset_job(self, slug: str, job_id: int) -> DatasetJob:
        return self._json("GET", f"/api/projects/{_segment(slug)}/datasets/jobs/{_segment(job_id)}/")

    def wait_dataset_job(self, slug: str, job_id: int, *, timeout: float = 1800.0,
                         on_poll: Callable[[DatasetJob], None] | None = None) -> DatasetJob:
        return self._wait(lambda: self.get_dataset_job(slug, job_id), DATASET_JOB_ENDS, f"dataset job {job_id}",
                          timeout, on_poll)

    @operation("GET", "/api/projects/{slug}/datasets/jobs/{job_id}/download/")
    def download_dataset_job(self, slug: str, job_id: int, destination: str | Path, *,
                             progress: ProgressCallback | None = None) -> Path:
        """Stream the export's file to ``destination`` (written as ``.part``, renamed when complete)."""
        destination = Path(destination)
        partial = destination.with_name(destination.name + ".part")
        response = self.request("GET", f"/api/projects/{_segment(slug)}/datasets/jobs/{_segment(job_id)}/download/",
                                stream=True)
        total = int(response.headers.get("Content-Length") or 0)
        received = 0
        try:
            with response, partial.open("wb") as out:
                for chunk in response.iter_content(1 << 20):
                    out.write(chunk)
                    received += len(chunk)
                    if progress:
                        progress(received, total)
        except requests.RequestException as error:
            partial.unlink(missing_ok=True)
            raise MaskletConnectionError(f"The download of dataset job {job_id} broke off: {error}") from error
        if total and received != total:
            partial.unlink(missing_ok=True)
            raise MaskletConnectionError(f"The download of dataset job {job_id} ended at {received} of {total} bytes.")
        partial.replace(destination)
        return destination

    # -- models and training -------------------------------------------------------------------

    @operation("GET", "/api/projects/{slug}/models/")
    def list_models(self, slug: str) -> list[ModelVersion]:
        """The project's model versions (the models page's state holds them under ``versions``)."""
        return self._list(f"/api/projects/{_segment(slug)}/models/", "versions")

    def get_model(self, slug: str, version_id: int) -> ModelVersion:
        """One version, from the list (``MaskletError`` 404 when the project has none with this id)."""
        for version in self.list_models(slug):
            if version.get("id") == version_id:
                return version
        raise MaskletError(404, "not_found", f"No model version {version_id} in project {slug}.")

    @operation("POST", "/api/projects/{slug}/models/")
    def register_model(self, slug: str, checkpoint: str | Path, config: str, *, name: str | None = None,
                       image_size: int | None = None, progress: ProgressCallback | None = None) -> dict[str, Any]:
        """Upload a checkpoint in Meta's format (weights under ``model``) with its SAM 2 config name; the
        server loads it for real before it answers ``{"version": id, "name"}`` (a candidate)."""
        fields = {"config": config}
        if name:
            fields["name"] = name
        if image_size:
            fields["image_size"] = str(image_size)
        return self._upload(f"/api/projects/{_segment(slug)}/models/", fields, "checkpoint", Path(checkpoint), progress)

    @operation("POST", "/api/projects/{slug}/models/{version_id}/promote/")
    def promote_model(self, slug: str, version_id: int) -> dict[str, Any]:
        """Serve this version in new annotation sessions; answers ``{"version", "serving"}``."""
        return self._json("POST", f"/api/projects/{_segment(slug)}/models/{_segment(version_id)}/promote/")

    @operation("POST", "/api/projects/{slug}/models/rollback/")
    def rollback_model(self, slug: str) -> dict[str, Any]:
        """Serve the previous production version again; answers ``{"restored", "serving"}``."""
        return self._json("POST", f"/api/projects/{_segment(slug)}/models/rollback/")

    @operation("POST", "/api/projects/{slug}/models/downloads/")
    def fetch_model(self, slug: str, name: str, *, promote: bool = False) -> dict[str, Any]:
        """Have the server download Meta's checkpoint ``name`` (e.g. ``sam2.1_hiera_tiny``), checked by its
        SHA-256 and registered; ``promote`` serves it once checked. Answers ``{"download": {...}}``."""
        return self._json("POST", f"/api/projects/{_segment(slug)}/models/downloads/",
                          json={"name": name, "promote": promote})

    @operation("POST", "/api/projects/{slug}/models/verifiers/")
    def train_verifier(self, slug: str) -> dict[str, Any]:
        """Train the project's mask quality verifier on its people's edits; answers ``{"verifier": {...}}``."""
        return self._json("POST", f"/api/projects/{_segment(slug)}/models/verifiers/")

    @operation("GET", "/api/projects/{slug}/training-runs/")
    def list_training_runs(self, slug: str) -> list[TrainingRun]:
        return self._list(f"/api/projects/{_segment(slug)}/training-runs/", "runs")

    @operation("POST", "/api/projects/{slug}/training-runs/")
    def start_training_run(self, slug: str, **parameters: Any) -> TrainingRun:
        return _run(self._json("POST", f"/api/projects/{_segment(slug)}/training-runs/", json=parameters))

    @operation("GET", "/api/projects/{slug}/training-runs/{run_id}/")
    def get_training_run(self, slug: str, run_id: int) -> TrainingRun:
        return self._json("GET", f"/api/projects/{_segment(slug)}/training-runs/{_segment(run_id)}/")

    @operation("POST", "/api/projects/{slug}/training-runs/{run_id}/cancel/")
    def cancel_training_run(self, slug: str, run_id: int) -> TrainingRun:
        return _run(self._json("POST", f"/api/projects/{_segment(slug)}/training-runs/{_segment(run_id)}/cancel/"))

    def wait_training_run(self, slug: str, run_id: int, *, timeout: float = 24 * 3600.0,
                          on_poll: Callable[[TrainingRun], None] | None = None) -> TrainingRun:
        return self._wait(lambda: self.get_training_run(slug, run_id), TRAINING_RUN_ENDS, f"training run {run_id}",
                          timeout, on_poll)

    # -- team ----------------------------------------------------------------------------------

    @operation("GET", "/api/projects/{slug}/auto-masklets/")
    def list_auto_masklet_runs(self, slug: str) -> list[dict[str, Any]]:
        return self._list(f"/api/projects/{_segment(slug)}/auto-masklets/", "runs")

    @operation("POST", "/api/projects/{slug}/auto-masklets/")
    def start_auto_masklet_run(self, slug: str, video_id: int, *, frame: int = 0,
                               points_per_side: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"video": video_id, "frame": frame}
        if points_per_side is not None:
            body["points_per_side"] = points_per_side
        return self._json("POST", f"/api/projects/{_segment(slug)}/auto-masklets/", json=body)

    @operation("GET", "/api/projects/{slug}/effort/")
    def effort(self, slug: str) -> dict[str, Any]:
        return self._json("GET", f"/api/projects/{_segment(slug)}/effort/")

    # -- webhooks ------------------------------------------------------------------------------

    @operation("GET", "/api/projects/{slug}/webhooks/")
    def list_webhooks(self, slug: str) -> list[dict[str, Any]]:
        return self._list(f"/api/projects/{_segment(slug)}/webhooks/", "webhooks")

    @operation("POST", "/api/projects/{slug}/webhooks/")
    def create_webhook(self, slug: str, url: str, events: list[str]) -> dict[str, Any]:
        """Tell ``url`` about ``events``; the answer's ``secret`` (shown this once) signs every payload
        (``X-Masklet-Signature: sha256=<HMAC-SHA256 of the body>``)."""
        return self._json("POST", f"/api/projects/{_segment(slug)}/webhooks/", json={"url": url, "events": events})

    @operation("DELETE", "/api/projects/{slug}/webhooks/{webhook_id}/")
    def delete_webhook(self, slug: str, webhook_id: int) -> dict[str, Any]:
        return self._json("DELETE", f"/api/projects/{_segment(slug)}/webhooks/{_segment(webhook_id)}/")

    @operation("GET", "/api/projects/{slug}/webhooks/{webhook_id}/deliveries/")
    def list_webhook_deliveries(self, slug: str, webhook_id: int) -> list[dict[str, Any]]:
        return self._list(f"/api/projects/{_segment(slug)}/webhooks/{_segment(webhook_id)}/deliveries/", "deliveries")

    # -- waiting -------------------------------------------------------------------------------

    def _wait(self, read: Callable[[], Any], ends: tuple[set[str], set[str]], what: str, timeout: float,
              on_poll: Callable[[Any], None] | None, reason_key: str = "error") -> Any:
        """Poll ``read()`` (0.2 s, growing to 5 s) until its status is in ``ends``."""
        succeeded, failed = ends
        deadline = time.monotonic() + timeout
        delay = 0.2
        while True:
            item = read()
            if on_poll:
                on_poll(item)
            status = item.get("status")
            if status in succeeded:
                return item
            if status in failed:
                raise JobFailed(what, status, item.get(reason_key) or item.get("error") or "", item)
            if time.monotonic() + delay > deadline:
                raise WaitTimedOut(f"{what} is still {status} after {timeout:g} s.")
            time.sleep(delay)
            delay = min(delay * 1.5, 5.0)


def _run(answer: dict[str, Any]) -> TrainingRun:
    """Starting and cancelling answer ``{"run": {...}}``; the run itself is what callers want."""
    return answer.get("run", answer) if isinstance(answer, dict) else answer


def _path_of(link: str) -> str:
    """The path and query of a ``next`` link: followed on ``self.url`` whatever host the server named
    (behind a proxy it may name another), and the token is never sent elsewhere."""
    parts = urlsplit(link)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _reason(error: Exception) -> str:
    """The operating system's words for a failed connection, without urllib3's wrapping."""
    match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(error))
    return match.group(1) if match else str(error)


def _retry_after(response: requests.Response) -> float:
    try:
        return max(0.0, min(float(response.headers.get("Retry-After", "1")), 60.0))
    except ValueError:
        return 1.0
