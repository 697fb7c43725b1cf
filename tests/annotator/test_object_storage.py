"""Media in S3-compatible object storage (issue 17), against a real S3 API: moto's server (``s3_storage``).

Ingest stores the original and publishes the frames in the bucket; the web server reads them
through its cache; delete removes the objects; exports are stored whole. Faults: the storage
server goes away mid-ingest and mid-export (a clean failure, nothing half-visible, a retry
works), an object is missing, the credentials are wrong (one clear error at start-up).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from django.urls import reverse

from annotator.datasets import ExportFilters
from annotator.datasets.jobs import open_archive, run_job, start_export
from annotator.models import DatasetJob, Masklet, Role, Video
from annotator.services.masks import MaskWrite, save_mask_frames
from annotator.services.videos import create_video_from_path, delete_video, ingest_video, retry_ingest
from engine import storage
from fixtures.synthetic import PRESETS, write_video
from segmentation.masks import encode_rle
from tests.s3_server import CREDENTIALS, S3Server

pytestmark = pytest.mark.django_db

TINY = PRESETS["tiny"]  # 160x96, 24 frames at 24 fps: 6 annotated frames at stride 4
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_mp4(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("videos") / "tiny.mp4"
    write_video(TINY, path)
    return path


def keys(s3_server, bucket: str, prefix: str = "") -> list[str]:
    listing = s3_server.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def ready_video(project, tiny_mp4) -> Video:
    video = create_video_from_path(project, tiny_mp4, schedule_ingest=False)
    ingest_video(video.id)
    video.refresh_from_db()
    assert video.status == Video.Status.READY, video.failure_reason
    return video


def test_ingest_stores_original_and_frames_in_the_bucket_and_delete_removes_them(
        s3_server, s3_storage, make_user, make_project, tiny_mp4, client, django_capture_on_commit_callbacks,
        settings):
    admin = make_user("boss")
    project = make_project(members={admin: Role.ADMIN})
    video = ready_video(project, tiny_mp4)

    assert keys(s3_server, s3_storage, f"team/media/{video.original.name}") == [f"team/media/{video.original.name}"]
    frames = keys(s3_server, s3_storage, f"team/frames/{video.id}/")
    manifest = json.loads(s3_server.client().get_object(
        Bucket=s3_storage, Key=f"team/frames/{video.id}/manifest.json")["Body"].read())
    names = [f"{index:05d}.jpg" for index in video.annotated_frame_indices()]
    assert manifest["frames"] == names
    assert frames == sorted([f"team/frames/{video.id}/manifest.json",
                             *(f"team/frames/{video.id}/{manifest['generation']}/{name}" for name in names)])
    assert not Path(settings.FRAMES_ROOT).exists() and not Path(settings.MEDIA_ROOT).exists()  # nothing local

    # The web server reads a frame through its cache: the bytes stored, now also on its disk.
    client.force_login(admin)
    response = client.get(reverse("video-frame", args=[project.slug, video.id, 4]))
    stored = s3_server.client().get_object(Bucket=s3_storage,
                                           Key=f"team/frames/{video.id}/{manifest['generation']}/00004.jpg")
    assert response.status_code == 200 and b"".join(response.streaming_content) == stored["Body"].read()
    assert any(Path(settings.CACHE_ROOT).rglob("00004.jpg"))

    # A session's frame source: every frame through the cache, the same pixels as the stored JPEGs.
    source = video.frames.source()
    assert len(source) == len(names) and (source.height, source.width) == (video.height, video.width)
    local = cv2.cvtColor(cv2.imread(str(video.frames.path("00020.jpg"))), cv2.COLOR_BGR2RGB)
    assert np.array_equal(source[5], local)

    with django_capture_on_commit_callbacks(execute=True):
        delete_video(video)
    assert keys(s3_server, s3_storage, f"team/frames/{video.id}/") == []
    assert keys(s3_server, s3_storage, "team/media/") == []


def test_a_reingest_publishes_a_new_generation_and_removes_the_old(s3_server, s3_storage, project, tiny_mp4):
    video = ready_video(project, tiny_mp4)
    first = storage.VideoFrames(video.id)._manifest(fresh=True)["generation"]
    ingest_video(video.id)
    second = storage.VideoFrames(video.id)._manifest(fresh=True)["generation"]
    assert second != first
    left = keys(s3_server, s3_storage, f"team/frames/{video.id}/")
    assert left and all(key.endswith("manifest.json") or f"/{second}/" in key for key in left)


def test_storage_gone_mid_ingest_fails_cleanly_and_a_retry_works(s3_server, s3_storage, project, tiny_mp4,
                                                                 monkeypatch, django_capture_on_commit_callbacks):
    video = create_video_from_path(project, tiny_mp4, schedule_ingest=False)
    real_put, uploads = storage.put_file, []

    def put_then_lose_the_server(target, name, source):
        uploads.append(name)
        if len(uploads) == 3:  # the third frame's upload: the storage server goes away
            s3_server.stop()
        return real_put(target, name, source)

    monkeypatch.setattr(storage, "put_file", put_then_lose_the_server)
    try:
        ingest_video(video.id)
    finally:
        s3_server.start()
    video.refresh_from_db()
    assert video.status == Video.Status.FAILED and "storage" in video.failure_reason
    assert "Traceback" not in video.failure_reason and len(video.failure_reason.splitlines()) == 1
    assert not video.frames.exists()  # no manifest: nothing half-visible
    assert keys(s3_server, s3_storage, f"team/frames/{video.id}/manifest.json") == []

    monkeypatch.setattr(storage, "put_file", real_put)
    with django_capture_on_commit_callbacks(execute=False):
        retry_ingest(video)
    ingest_video(video.id)
    video.refresh_from_db()
    assert video.status == Video.Status.READY and len(video.frames.names()) == 6
    generation = video.frames._manifest(fresh=True)["generation"]
    left = keys(s3_server, s3_storage, f"team/frames/{video.id}/")
    assert len(left) == 7 and all(key.endswith("manifest.json") or f"/{generation}/" in key for key in left)


def annotated(project, tiny_mp4) -> Video:
    video = ready_video(project, tiny_mp4)
    masklet = Masklet.objects.create(video=video, object_id=1, status=Masklet.Status.APPROVED)
    mask = np.zeros((video.height, video.width), bool)
    mask[10:40, 20:60] = True
    save_mask_frames(masklet, [MaskWrite(index, encode_rle(mask)) for index in video.annotated_frame_indices()],
                     source="human", author=None)
    return video


def test_storage_gone_mid_export_leaves_no_zip_and_a_new_export_works(s3_server, s3_storage, make_user,
                                                                      make_project, tiny_mp4, monkeypatch,
                                                                      django_capture_on_commit_callbacks):
    admin = make_user("boss")
    project = make_project(members={admin: Role.ADMIN})
    annotated(project, tiny_mp4)
    real_put = storage.put_file

    def lose_the_server_then_put(target, name, source):
        s3_server.stop()  # the zip is built; the storage server goes away as it is stored
        return real_put(target, name, source)

    monkeypatch.setattr(storage, "put_file", lose_the_server_then_put)
    with django_capture_on_commit_callbacks(execute=False):
        job = start_export(project, admin, "coco", ExportFilters())
    try:
        job = run_job(job.id)
    finally:
        s3_server.start()
    assert job.status == DatasetJob.Status.FAILED and "storage" in job.error, job.error
    assert open_archive(job) is None and keys(s3_server, s3_storage, "team/media/exports/") == []

    monkeypatch.setattr(storage, "put_file", real_put)
    with django_capture_on_commit_callbacks(execute=False):
        job = start_export(project, admin, "coco", ExportFilters())
    job = run_job(job.id)
    assert job.status == DatasetJob.Status.DONE, job.error
    stream, _ = open_archive(job)
    with zipfile.ZipFile(io.BytesIO(stream.read())) as bundle:
        names = bundle.namelist()
    assert "annotations.json" in names and len([name for name in names if name.endswith(".jpg")]) == 6


def test_missing_objects_are_clear_errors_not_500s(s3_server, s3_storage, make_user, make_project, tiny_mp4,
                                                   client, django_capture_on_commit_callbacks):
    admin = make_user("boss")
    project = make_project(members={admin: Role.ADMIN})
    video = annotated(project, tiny_mp4)
    generation = video.frames._manifest(fresh=True)["generation"]
    s3_server.client().delete_object(Bucket=s3_storage, Key=f"team/frames/{video.id}/{generation}/00008.jpg")
    client.force_login(admin)
    assert client.get(reverse("video-frame", args=[project.slug, video.id, 8])).status_code == 404
    assert client.get(reverse("api-video-frame", args=[project.slug, video.id, 8])).status_code == 404
    with django_capture_on_commit_callbacks(execute=False):
        job = start_export(project, admin, "coco", ExportFilters())
    job = run_job(job.id)
    assert job.status == DatasetJob.Status.FAILED and "00008.jpg is missing" in job.error

    # The original gone: ingesting again says so.
    s3_server.client().delete_object(Bucket=s3_storage, Key=f"team/media/{video.original.name}")
    ingest_video(video.id)
    video.refresh_from_db()
    assert video.status == Video.Status.FAILED and video.failure_reason == "the video file is missing from storage"


def test_storage_down_while_serving_a_frame_is_a_503(s3_server, s3_storage, make_user, make_project, tiny_mp4,
                                                      client):
    admin = make_user("boss")
    project = make_project(members={admin: Role.ADMIN})
    video = ready_video(project, tiny_mp4)
    client.force_login(admin)
    s3_server.stop()
    try:
        page = client.get(reverse("video-frame", args=[project.slug, video.id, 12]))
        api = client.get(reverse("api-video-frame", args=[project.slug, video.id, 12]))
    finally:
        s3_server.start()
    assert page.status_code == 503 and api.status_code == 503
    assert api.json()["error"]["code"] == "storage_unavailable"
    assert client.get(reverse("video-frame", args=[project.slug, video.id, 12])).status_code == 200


def test_an_upload_while_the_storage_is_down_is_a_503_with_nothing_stored(s3_server, s3_storage, make_user,
                                                                         make_project, tiny_mp4, client):
    admin = make_user("boss")
    project = make_project(members={admin: Role.ADMIN})
    client.force_login(admin)
    s3_server.stop()
    try:
        with tiny_mp4.open("rb") as handle:
            refused = client.post(reverse("api-video-list", args=[project.slug]), {"file": handle})
    finally:
        s3_server.start()
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "storage_unavailable"
    assert not Video.objects.exists() and keys(s3_server, s3_storage) == []
    with tiny_mp4.open("rb") as handle:
        assert client.post(reverse("api-video-list", args=[project.slug]), {"file": handle}).status_code == 201


@pytest.fixture(scope="module")
def locked_s3_server(s3_server) -> S3Server:
    """A second S3 server that checks credentials: every key the test uses is unknown to it."""
    server = S3Server(auth=True)
    yield server
    server.close()


def test_wrong_credentials_are_one_clear_error_at_start(locked_s3_server, s3_server, settings, tmp_path):
    from config.settings import storage_settings

    for name, value in storage_settings("s3://masklet-team/x", locked_s3_server.url, tmp_path).items():
        setattr(settings, name, value)
    with pytest.raises(storage.StorageError, match="refused these credentials"):
        storage.verify()
    for name, value in storage_settings("s3://masklet-team/x", s3_server.url, tmp_path).items():
        setattr(settings, name, value)
    with pytest.raises(storage.StorageError, match="there is no bucket 'masklet-team'"):
        storage.verify()  # the same keys where the bucket does not exist

    # A process that starts with them (a worker here; the web server and manage.py run the same check)
    # stops at once with the one line, not a traceback per task.
    env = {**os.environ, **CREDENTIALS, "MASKLET_STORAGE_URL": "s3://masklet-team/x",
           "MASKLET_S3_ENDPOINT_URL": locked_s3_server.url, "MASKLET_DATA_DIR": str(tmp_path / "data")}
    env.pop("DATABASE_URL", None), env.pop("REDIS_URL", None)
    result = subprocess.run([sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "-Q", "cpu"],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "Masklet cannot start: MASKLET_STORAGE_URL: the storage refused these credentials" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-2000:]


@pytest.mark.slow  # builds SAM 2 twice (random weights, then the fetched ones)
def test_a_registered_checkpoint_is_published_and_loads_on_a_machine_without_it(s3_server, s3_storage, settings,
                                                                              tmp_path, project):
    from engine.segmenters import get_segmenter, version_model
    from loop import registry
    from loop.loop_demo import random_checkpoint

    settings.MODELS_ROOT = tmp_path / "web" / "models"
    local = random_checkpoint("sam2.1_hiera_t", 64, 0, settings.MODELS_ROOT / "uploads" / "tiny.pt")
    version = registry.register_version(project, name="tiny", checkpoint=local, config="sam2.1_hiera_t",
                                        image_size=64, check=False)
    assert version.checkpoint == f"s3://{s3_storage}/team/models/uploads/tiny.pt"
    assert keys(s3_server, s3_storage, "team/models/") == ["team/models/uploads/tiny.pt"]

    # Another machine: its own data dir, no models folder, an empty cache.
    settings.MODELS_ROOT, settings.CACHE_ROOT = tmp_path / "worker" / "models", tmp_path / "worker" / "cache"
    assert storage.checkpoint_available(version.checkpoint)
    fetched = storage.checkpoint_file(version.checkpoint)
    assert fetched.is_relative_to(settings.CACHE_ROOT) and fetched.read_bytes() == local.read_bytes()
    segmenter = get_segmenter(version_model(version))  # SAM 2 built with the fetched weights
    assert segmenter.open_session is not None

    s3_server.client().delete_object(Bucket=s3_storage, Key="team/models/uploads/tiny.pt")
    assert not storage.checkpoint_available(version.checkpoint)
