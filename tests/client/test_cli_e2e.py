"""Issue 15's "done when": a live server driven only through the ``masklet`` command and the Python
client, in embedded mode (runserver, in-process workers) and in services mode (Daphne + a Celery
worker over PostgreSQL and a private Redis).

A staff account and a member each get a token from ``manage.py api_token`` (how a team bootstraps
one); everything after that goes over HTTP: a project and a member, a real video uploaded and waited
for, a masklet's masks written as COCO RLE and submitted by the member, approved by the admin, an
SA-V export read back (the masks written come back), a checkpoint in Meta's format registered and
promoted, a training run started and cancelled. The video is stored at 1 annotated frame a second.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from masklet_client import Client
from masklet_client.cli import EXIT_JOB_FAILED, EXIT_REFUSED
from pycocotools import mask as mask_utils

from loop.loop_demo import random_checkpoint
from tests.client.conftest import REPO_ROOT, Masklet, masklet_runner
from tests.conftest import shared_path

pytestmark = pytest.mark.slow

VIDEO = "bedroom.mp4"  # 200 frames at 30 fps, 960x540: the shortest of ../shared/data/videos
SLUG = "e2e"


@dataclass
class Stack:
    """A running Masklet (one mode) and how to run ``manage.py`` against its database."""

    url: str
    env: dict[str, str]
    logs: list[Path]

    def manage(self, *args: str) -> str:
        result = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO_ROOT, env=self.env, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}"
        return result.stdout

    def token(self, username: str) -> str:
        """A new API token: ``api_token`` prints it as the last word of its output."""
        return self.manage("api_token", username, "--name", "e2e").split()[-1]

    def ok(self, result: subprocess.CompletedProcess) -> Any:
        """The JSON a successful ``masklet ... --json`` printed; on failure, with the servers' log tails."""
        if result.returncode != 0:
            logs = "\n".join(f"--- {log.name}:\n{log.read_text(errors='replace')[-3000:]}" for log in self.logs
                             if log.exists())
            raise AssertionError(f"{result.args[1:]} exited {result.returncode}:\n{result.stderr[-3000:]}\n{logs}")
        return json.loads(result.stdout)


def rectangle_rle(height: int, width: int, top: int, left: int, bottom: int, right: int) -> dict[str, Any]:
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[top:bottom, left:right] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": [height, width], "counts": rle["counts"].decode()}


def decoded(rle: dict[str, Any]) -> np.ndarray:
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})


def drive(stack: Stack, work: Path) -> None:
    video_file = shared_path("videos", VIDEO)
    with ThreadPoolExecutor(1) as background:
        # Built while the servers work on the steps before it needs it (torch frees the GIL).
        checkpoint = background.submit(random_checkpoint, "sam2.1_hiera_t", 64, 0, work / "tiny.pt")
        drive_steps(stack, work, video_file, checkpoint)


def drive_steps(stack: Stack, work: Path, video_file: Path, checkpoint: Future[Path]) -> None:
    ok = stack.ok
    stack.manage("createsuperuser", "--noinput", "--username", "boss", "--email", "boss@example.org")
    boss_token = stack.token("boss")
    boss = masklet_runner(stack.url, boss_token)

    # A project and a member.
    project = ok(boss("projects", "create", SLUG, "--name", "End to end", "--labels", "lamp,bed",
                      "--annotation-fps", "1", "--json"))
    assert (project["slug"], project["labels"]) == (SLUG, ["lamp", "bed"])
    assert ok(boss("users", "create", "ann", "--email", "ann@example.org", "--json"))["invite"]
    assert ok(boss("members", "add", SLUG, "ann", "--role", "annotator", "--json"))["role"] == "annotator"
    assert {m["username"]: m["role"] for m in ok(boss("members", "list", SLUG, "--json"))}["ann"] == "annotator"
    ann_token = stack.token("ann")
    ann: Masklet = masklet_runner(stack.url, ann_token)
    refused = ann("projects", "create", "mine", "--name", "Not staff")
    assert refused.returncode == EXIT_REFUSED and "403" in refused.stderr, refused.stderr

    # The member's own token, made with the first one, works until it is revoked.
    laptop = ok(ann("tokens", "create", "--name", "laptop", "--json"))
    assert [p["slug"] for p in ok(masklet_runner(stack.url, laptop["token"])("projects", "list", "--json"))] == [SLUG]
    assert ok(ann("tokens", "revoke", laptop["id"], "--json"))["active"] is False
    revoked = masklet_runner(stack.url, laptop["token"])("projects", "list")
    assert revoked.returncode == EXIT_REFUSED and "401" in revoked.stderr, revoked.stderr

    # A real video and a file that is not one, uploaded and waited for: exit 4 names the failed one.
    junk = work / "notes.mp4"
    junk.write_bytes(b"not a video " * 100)
    upload = boss("videos", "upload", SLUG, video_file, junk, "--wait", "--json")
    assert upload.returncode == EXIT_JOB_FAILED, upload.stderr
    video, broken = json.loads(upload.stdout)
    assert (video["status"], video["width"], video["height"]) == ("ready", 960, 540)
    assert broken["status"] == "failed" and f"video {broken['id']} failed: " in upload.stderr
    assert ok(boss("videos", "delete", SLUG, broken["id"], "--json"))["deleted"] == broken["id"]
    again = boss("videos", "upload", SLUG, video_file)
    assert again.returncode == EXIT_REFUSED and "409 duplicate: " in again.stderr, again.stderr
    assert f"{video_file.name}: " in again.stderr and "--allow-duplicate" in again.stderr
    assert ok(boss("videos", "list", SLUG, "--status", "ready", "--json"))[0]["id"] == video["id"]

    # The member writes a masklet's masks (COCO RLE) and submits it; the admin approves it.
    client = Client(stack.url, ann_token)
    indices = client.get_video(SLUG, video["id"])["frame_indices"]
    masklet = client.create_masklet(SLUG, video["id"], "lamp")
    written = {indices[0]: rectangle_rle(540, 960, 100, 200, 300, 420),
               indices[2]: rectangle_rle(540, 960, 120, 210, 330, 440)}
    frames = [{"frame_index": index, "rle": rle} for index, rle in written.items()]
    saved = ok(ann("masks", "put", SLUG, masklet["id"], "-", "--json", stdin=json.dumps({"frames": frames})))
    assert sorted(s["frame_index"] for s in saved["saved"]) == sorted(written)
    stored = {f["frame_index"]: f["rle"] for f in client.get_masks(SLUG, masklet["id"])["frames"]}
    assert {index: stored[index]["counts"] for index in written} == {i: r["counts"] for i, r in written.items()}
    assert client.submit_masklet(SLUG, masklet["id"])["status"] == "submitted"
    review = ok(boss("review", "approve", SLUG, masklet["id"], "--comment", "clean edges", "--json"))
    assert review["status"] == "approved"

    # SA-V export, downloaded and unpacked: the masks written come back on their annotated frames.
    out = work / "sav"
    export = ok(boss("export", SLUG, "--format", "sav", "--out", out, "--json"))
    assert export["status"] == "done" and export["files"] >= 2
    [manual] = out.glob("*_manual.json")
    document = json.loads(manual.read_text())
    assert document["masklet_num"] == 1 and len(document["masklet"]) == len(indices)
    for position, index in enumerate(indices):
        mask = decoded(document["masklet"][position][0])
        if index in written:
            assert np.array_equal(mask, decoded(written[index])), f"frame {index} came back changed"
        else:
            assert not mask.any(), f"frame {index} had no mask but came back with one"
    assert (out / f"{manual.name.removesuffix('_manual.json')}.mp4").is_file()

    # The export imported into a new project (the video travels in it) brings the same masks.
    ok(boss("projects", "create", "copy", "--name", "Copy", "--annotation-fps", "1", "--json"))
    archive = shutil.make_archive(str(work / "sav"), "zip", out)
    assert ok(boss("import", "copy", "--format", "sav", archive, "--json"))["status"] == "done"
    boss_client = Client(stack.url, boss_token)
    [copied] = boss_client.list_videos("copy")
    [twin] = boss_client.list_masklets("copy", copied["id"])
    brought = {f["frame_index"]: f["rle"]["counts"] for f in boss_client.get_masks("copy", twin["id"])["frames"]}
    assert brought == {index: rle["counts"] for index, rle in written.items()}

    # A checkpoint in Meta's format: registered, promoted; a training run started and cancelled.
    version = ok(boss("models", "register", SLUG, checkpoint.result(), "--config", "sam2.1_hiera_t", "--name", "tiny",
                      "--image-size", "64", "--json"))
    assert version["status"] == "candidate"
    assert ok(boss("models", "promote", SLUG, "tiny", "--json"))["status"] == "production"
    assert [v["id"] for v in ok(boss("models", "list", SLUG, "--json")) if v["status"] == "production"] == \
        [version["id"]]
    run = ok(boss("models", "train", SLUG, "--json"))
    assert run["status"] in ("queued", "running")
    cancelled = ok(boss("models", "cancel", SLUG, run["id"], "--wait", "--json"))
    assert cancelled["status"] == "cancelled"
    assert ok(boss("models", "run", SLUG, run["id"], "--json"))["status"] == "cancelled"


@pytest.fixture
def embedded_stack(tmp_path: Path, client_migrated_database: Path) -> Iterator[Stack]:
    from tests.e2e.conftest import run_masklet_server

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with run_masklet_server(data_dir, tmp_path / "server.log", migrated=client_migrated_database) as server:
        yield Stack(server.url, server.env, [server.log_path])


def test_a_team_script_drives_an_embedded_server(embedded_stack, tmp_path):
    drive(embedded_stack, tmp_path)


@pytest.fixture
def services_stack(tmp_path: Path, transactional_db) -> Iterator[Stack]:
    """Daphne and one Celery worker for every queue over this run's PostgreSQL test database and a
    private Redis (nothing shared with other tests' queues)."""
    from tests.annotator.sessions.conftest import _wait_for_other_db_sessions_to_close, worker_database_url
    from tests.annotator.sessions.live_stack import (
        RedisServer,
        Service,
        _wait,
        heartbeat,
        stack_env,
        start_server,
        worker_command,
    )

    redis = RedisServer(tmp_path / "redis.log").start()
    env = stack_env(database_url=worker_database_url(), redis_url=redis.url(0), data_dir=tmp_path / "data")
    services: list[Service] = []
    try:
        server, url = start_server(env, tmp_path / "daphne.log")
        services.append(server)
        nodename = f"e2e@{os.uname().nodename}"
        command = worker_command(nodename)
        command[command.index("-Q") + 1] = "gpu,cpu,train"
        with (tmp_path / "worker.log").open("w") as log:
            worker = Service(subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT),
                             tmp_path / "worker.log", nodename)
        services.append(worker)
        _wait(f"worker {nodename}", lambda: heartbeat(env["REDIS_URL"], nodename)["pid"] == worker.process.pid,
              worker, 90)
        yield Stack(url, env, [server.log_path, worker.log_path])
    finally:
        for service in reversed(services):
            service.stop()
        redis.stop()
        _wait_for_other_db_sessions_to_close()


@pytest.mark.services
def test_a_team_script_drives_a_services_deployment(services_stack, tmp_path):
    drive(services_stack, tmp_path)
