"""Many machines, one engine (issue 17): the web server, a GPU worker and a CPU worker in separate
processes, each with its own empty data dir; they share only PostgreSQL, Redis and an S3 server
(moto, ``s3_server``). Through the web server's HTTP API and socket: upload and ingest, a session
served by the GPU worker from an empty cache, a track, an export downloaded and imported again, and
a video deleted with its objects.
"""

from __future__ import annotations

import io
import sys
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
import requests
from django.contrib.auth.hashers import PBKDF2PasswordHasher

from annotator.models import DatasetJob, MaskFrame, Masklet, Project, Role, Video
from annotator.services.tokens import issue_token
from fixtures.synthetic import PRESETS, write_video

from .conftest import _wait_for_other_db_sessions_to_close, run, services_only, worker_database_url
from .fault_kit import click_points
from .live_stack import RedisServer, _spawn, _wait, sign_in, stack_env, start_server, start_worker

pytestmark = [services_only, pytest.mark.services, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PASSWORD = "storage-password-0123"


def cpu_worker(env: dict[str, str], log_path: Path):
    return _spawn([sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "cpu", "-P", "solo", "-n",
                   f"cpu-{uuid.uuid4().hex[:6]}@%h", "--loglevel", "INFO", "--without-gossip", "--without-mingle",
                   "--without-heartbeat"], env, log_path, "cpu worker")


def files_under(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()] if folder.exists() else []


def poll(what: str, read: Any, done: Any, services: list, timeout: float = 120) -> Any:
    """``read()`` until ``done(value)``; fails early, with the logs, when a process died."""
    result = {}

    def ready() -> bool:
        result["value"] = read()
        return done(result["value"])

    for service in services:
        if not service.alive():
            raise AssertionError(f"{service.name} exited:\n{service.log()[-3000:]}")
    _wait(what, ready, services[0], timeout)
    return result["value"]


def register_and_promote_checkpoint(settings, tmp_path: Path, bucket: str, endpoint: str, user) -> None:
    from config.settings import storage_settings
    from loop import registry
    from loop.loop_demo import random_checkpoint

    for name, value in storage_settings(f"s3://{bucket}/team", endpoint, tmp_path / "registrar").items():
        setattr(settings, name, value)
    settings.MODELS_ROOT = tmp_path / "registrar" / "models"
    checkpoint = random_checkpoint("sam2.1_hiera_t", 64, 0, settings.MODELS_ROOT / "uploads" / "tiny.pt")
    project = Project.objects.get(slug="team")
    version = registry.register_version(project, name="tiny", checkpoint=checkpoint, config="sam2.1_hiera_t",
                                        image_size=64, user=user, check=False)
    assert version.checkpoint == f"s3://{bucket}/team/models/uploads/tiny.pt"
    registry.promote(version, user)


def test_web_and_workers_share_only_database_redis_and_the_bucket(s3_server, tmp_path, make_user, make_project,
                                                                  tmp_path_factory, settings):
    bucket = f"masklet-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=bucket)
    redis = RedisServer(tmp_path / "redis.log").start()
    user = make_user("boss")
    user.password = PBKDF2PasswordHasher().encode(PASSWORD, "storagesalt01234", iterations=1000)
    user.save(update_fields=["password"])
    make_project(members={user: Role.ADMIN}, slug="team")
    copies = make_project(members={user: Role.ADMIN}, slug="copies")
    _, token = issue_token(user, "storage test")
    mp4 = write_video(PRESETS["tiny"], tmp_path_factory.mktemp("videos") / "street.mp4")

    dirs = {name: tmp_path / name for name in ("web", "gpu", "cpu")}

    def env(name: str) -> dict[str, str]:
        return stack_env(database_url=worker_database_url(), redis_url=redis.url(0), data_dir=dirs[name],
                         MASKLET_SEGMENTER="classical", MASKLET_STORAGE_URL=f"s3://{bucket}/team",
                         MASKLET_S3_ENDPOINT_URL=s3_server.url)

    services = []
    try:
        web, url = start_server(env("web"), tmp_path / "web.log")
        services.append(web)
        services.append(start_worker(env("gpu"), "gpu0", tmp_path / "gpu.log"))
        services.append(cpu_worker(env("cpu"), tmp_path / "cpu.log"))
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {token}"

        # Upload to the web server; the CPU worker ingests from the bucket.
        with mp4.open("rb") as handle:
            created = api.post(f"{url}/api/projects/team/videos/", files={"file": ("street.mp4", handle)}, timeout=30)
        assert created.status_code == 201, created.text
        video = poll("the ingest", lambda: Video.objects.get(pk=created.json()["id"]),
                     lambda v: v.status in (Video.Status.READY, Video.Status.FAILED), services)
        assert video.status == Video.Status.READY, video.failure_reason
        listing = s3_server.client().list_objects_v2(Bucket=bucket, Prefix=f"team/frames/{video.id}/")
        assert len(listing["Contents"]) == 7  # six frames and the manifest
        assert not files_under(dirs["gpu"] / "cache")  # the GPU worker has read nothing yet

        # A session served by the GPU worker (empty cache): a click, then a track through the video.
        frame = api.get(f"{url}/api/projects/team/videos/{video.id}/frames/4/", timeout=30)
        assert frame.status_code == 200 and frame.content[:2] == b"\xff\xd8"

        async def annotate() -> dict[str, Any]:
            from .live_stack import LiveSocket

            socket = await LiveSocket.connect(url, f"/ws/projects/team/videos/{video.id}/annotate/",
                                              sign_in(url, "boss", PASSWORD))
            try:
                object_id = (await socket.request("add_object"))["masklet"]["object_id"]
                point = click_points(PRESETS["tiny"], [0])[0]
                mask = await socket.request("click", object_id=object_id, positive=True, **point)
                assert mask["type"] == "mask", mask
                done = await socket.request("track", timeout=120, frame=0, direction="forward")
                assert done["type"] == "track_done" and not done["cancelled"], done
                return done
            finally:
                await socket.close()

        run(annotate)
        masklet = Masklet.objects.get(video=video)
        assert MaskFrame.objects.filter(masklet=masklet).count() == 6  # every annotated frame tracked, stored
        assert len([p for p in files_under(dirs["gpu"] / "cache") if p.suffix == ".jpg"]) == 6
        Masklet.objects.filter(pk=masklet.pk).update(status=Masklet.Status.APPROVED)

        # Export on the CPU worker, download from the web server, import it again.
        job = api.post(f"{url}/api/projects/team/datasets/jobs/", json={"kind": "export", "format": "davis"},
                       timeout=30)
        assert job.status_code == 202, job.text
        finished = poll("the export", lambda: DatasetJob.objects.get(pk=job.json()["id"]),
                        lambda j: j.status in (DatasetJob.Status.DONE, DatasetJob.Status.FAILED), services)
        assert finished.status == DatasetJob.Status.DONE, finished.error
        archive = api.get(f"{url}/api/projects/team/datasets/jobs/{finished.id}/download/", timeout=30)
        assert archive.status_code == 200
        with zipfile.ZipFile(io.BytesIO(archive.content)) as bundle:
            assert len([name for name in bundle.namelist() if name.endswith(".jpg")]) == 6
        imported = api.post(f"{url}/api/projects/copies/datasets/jobs/",
                            data={"kind": "import", "format": "davis"},
                            files={"file": ("export.zip", archive.content)}, timeout=30)
        assert imported.status_code == 202, imported.text
        finished = poll("the import", lambda: DatasetJob.objects.get(pk=imported.json()["id"]),
                        lambda j: j.status in (DatasetJob.Status.DONE, DatasetJob.Status.FAILED), services,
                        timeout=180)
        assert finished.status == DatasetJob.Status.DONE, finished.error
        copy = Video.objects.get(project=copies)
        assert copy.status == Video.Status.READY and copy.masklets.count() == 1

        # A checkpoint registered here (as the web server would: published to the bucket) and promoted:
        # the GPU worker, which never had it, loads it through its cache to serve the next session.
        register_and_promote_checkpoint(settings, tmp_path, bucket, s3_server.url, user)
        run(annotate)
        assert [p.name for p in files_under(dirs["gpu"] / "cache") if p.suffix == ".pt"] == ["tiny.pt"]

        # Delete: the rows and the objects go.
        assert api.delete(f"{url}/api/projects/team/videos/{video.id}/", timeout=30).status_code in (200, 204)
        deadline = time.monotonic() + 30
        while s3_server.client().list_objects_v2(Bucket=bucket, Prefix=f"team/frames/{video.id}/")["KeyCount"]:
            assert time.monotonic() < deadline, "the deleted video's frames are still in the bucket"
            time.sleep(0.1)
        assert not files_under(dirs["web"] / "frames") and not files_under(dirs["web"] / "media")
        assert all(service.alive() for service in services), [s.log()[-2000:] for s in services]
    finally:
        for service in services:
            service.stop()
        redis.stop()
        _wait_for_other_db_sessions_to_close()
