"""The datasets page end to end: export as a background job, progress, the zip download, and admin imports."""

from __future__ import annotations

import io
import json
import time
import zipfile

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse
from pycocotools.coco import COCO

from annotator.datasets.jobs import open_archive, run_job
from annotator.models import DatasetJob, Masklet, Membership, Role, Video

embedded_only = pytest.mark.skipif(not django_settings.EMBEDDED, reason="embedded mode runs jobs in-process")


def wait_for(job_id: int, timeout: float = 120) -> DatasetJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = DatasetJob.objects.get(pk=job_id)
        if job.status in (DatasetJob.Status.DONE, DatasetJob.Status.FAILED):
            return job
        time.sleep(0.1)
    pytest.fail(f"dataset job {job_id} still {job.status} after {timeout} s")


@embedded_only
@pytest.mark.django_db(transaction=True)
def test_export_from_the_page_runs_as_a_job_and_downloads(synthetic_project, make_user, tmp_path):
    project = synthetic_project()
    reviewer = make_user("rita")
    Membership.objects.create(project=project, user=reviewer, role=Role.REVIEWER)
    client = Client()
    client.force_login(reviewer)
    page = client.get(reverse("datasets", args=[project.slug]))
    assert page.status_code == 200 and b"Start export" in page.content
    assert b"Upload and import" not in page.content, "import is for admins only"

    response = client.post(reverse("datasets", args=[project.slug]),
                           {"format": "coco", "statuses": ["approved"], "media": "on"})
    assert response.status_code == 302
    job = DatasetJob.objects.get(project=project)
    assert (job.kind, job.created_by, job.options["filters"]["statuses"]) == ("export", reviewer, ["approved"])
    job = wait_for(job.id)
    assert job.status == DatasetJob.Status.DONE, job.error
    assert job.progress == 1.0 and "3 masklet(s)" in job.message

    listing = client.get(reverse("api-dataset-jobs", args=[project.slug])).json()["jobs"]
    assert listing[0]["status"] == "done" and listing[0]["download"].endswith(f"/{job.id}/download/")
    assert listing[0]["download"] == reverse("api-dataset-job-download", args=[project.slug, job.id])
    page = client.get(reverse("datasets", args=[project.slug]))
    assert reverse("dataset-download", args=[project.slug, job.id]).encode() in page.content

    download = client.get(listing[0]["download"])
    assert download.status_code == 200
    assert download["Content-Disposition"] == f'attachment; filename="{project.slug}-coco-{job.id}.zip"'
    with zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content))) as bundle:
        names = bundle.namelist()
        assert "annotations.json" in names and "images/synth_tiny/00000.jpg" in names
        kinds = {info.filename.rsplit(".", 1)[-1]: info.compress_type for info in bundle.infolist()}
        assert kinds == {"json": zipfile.ZIP_DEFLATED, "jpg": zipfile.ZIP_STORED}, "JPEGs are stored, not deflated"
        bundle.extract("annotations.json", tmp_path)
    coco = COCO(str(tmp_path / "annotations.json"))
    assert len(coco.getImgIds()) == 6


@pytest.mark.django_db
def test_download_is_checked(project, make_user, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    (tmp_path / "secret.txt").write_text("no")
    admin = make_user("ada")
    Membership.objects.create(project=project, user=admin, role=Role.ADMIN)
    other = type(project).objects.create(name="Other", slug="other")
    client = Client()
    client.force_login(admin)
    escaping = DatasetJob.objects.create(project=project, kind="export", format="coco", status="done",
                                         file="exports/../../secret.txt")
    foreign = DatasetJob.objects.create(project=other, kind="export", format="coco", status="done",
                                        file="exports/1/x.zip")
    running = DatasetJob.objects.create(project=project, kind="export", format="coco", status="running")
    for job in (escaping, running):
        assert open_archive(job) is None
        assert client.get(reverse("dataset-download", args=[project.slug, job.id])).status_code == 404
    assert client.get(reverse("dataset-download", args=[project.slug, foreign.id])).status_code == 404


@pytest.mark.django_db
def test_admin_imports_the_sav_example_as_a_zip(sav_example, sav_video_dir, project, make_user, isolated_files):
    admin = make_user("ada")
    Membership.objects.create(project=project, user=admin, role=Role.ADMIN)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.write(sav_example / "sav_000001_manual.json", "sav/sav_000001_manual.json")
        bundle.write(sav_video_dir / "sav_000001.mp4", "sav/sav_000001.mp4")
    buffer.name = "sav.zip"
    client = Client()
    client.force_login(admin)
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("sav.zip", buffer.getvalue(), "application/zip")
    response = client.post(reverse("dataset-import", args=[project.slug]),
                           {"format": "sav", "status": "approved", "file": upload})
    assert response.status_code == 302
    job = DatasetJob.objects.get(project=project, kind="import")
    job = run_job(job.id)  # the worker's part (no commit happens inside this test's transaction)
    assert job.status == DatasetJob.Status.DONE, job.error
    assert Video.objects.get(project=project).name == "sav_000001"
    assert Masklet.objects.filter(video__project=project, status="approved").count() == 5


@pytest.mark.django_db
def test_bad_uploads_fail_the_job_with_a_reason(project, make_user, isolated_files):
    from django.core.files.uploadedfile import SimpleUploadedFile

    admin = make_user("ada")
    Membership.objects.create(project=project, user=admin, role=Role.ADMIN)
    client = Client()
    client.force_login(admin)
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as bundle:
        bundle.writestr("../escape.json", "{}")
    cases = [("annotations.json", b"{not json", "malformed JSON"), ("evil.zip", evil.getvalue(), "unsafe path")]
    for name, content, reason in cases:
        client.post(reverse("dataset-import", args=[project.slug]),
                    {"format": "coco", "status": "submitted", "file": SimpleUploadedFile(name, content)})
        job = run_job(DatasetJob.objects.filter(project=project).latest("id").id)
        assert job.status == DatasetJob.Status.FAILED and reason in job.error, job.error
    response = client.post(reverse("dataset-import", args=[project.slug]),
                           {"format": "coco", "status": "submitted", "file": SimpleUploadedFile("x.exe", b"MZ")},
                           follow=True)
    assert b"upload a .zip" in response.content
    assert json.loads(client.get(reverse("api-dataset-jobs", args=[project.slug])).content)["jobs"][0]["error"]
