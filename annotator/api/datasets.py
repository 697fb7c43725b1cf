"""The API of dataset jobs: start an export or an import, follow it, download the export's zip.

The jobs run on the ``cpu`` queue (``annotator.datasets.jobs``), never in the web process, exactly
as the datasets page's; this only parses the request and calls the same services.
"""

from __future__ import annotations

from django.http import FileResponse, HttpRequest, JsonResponse
from drf_spectacular.types import OpenApiTypes
from rest_framework import serializers

from annotator import selectors
from annotator.api.framework import endpoint, validated
from annotator.datasets import EXPORTERS, READERS, DatasetError, ExportFilters
from annotator.datasets.importing import DEFAULT_STATUS
from annotator.datasets.jobs import open_archive, start_export, start_import
from annotator.models import DatasetJob, Masklet, MaskletType, Project, Split
from annotator.permissions import Action, has_permission, project_permission
from engine.input import error_response

RECENT_JOBS = 20


class DatasetJobIn(serializers.Serializer):
    kind = serializers.ChoiceField(choices=DatasetJob.Kind.choices, default=DatasetJob.Kind.EXPORT)
    format = serializers.ChoiceField(choices=sorted(set(EXPORTERS) | set(READERS)))
    statuses = serializers.ListField(child=serializers.ChoiceField(choices=Masklet.Status.choices),
                                     default=[Masklet.Status.APPROVED], max_length=10,
                                     help_text="export: masklet statuses to include (empty: every status)")
    split = serializers.ChoiceField(choices=Split.choices, required=False, allow_null=True)
    type = serializers.ChoiceField(choices=MaskletType.choices, required=False, allow_null=True)
    videos = serializers.ListField(child=serializers.CharField(max_length=200), default=list, max_length=10000,
                                   help_text="export: video names (empty: every video)")
    media = serializers.BooleanField(default=True, help_text="export: include frames and videos")
    file = serializers.FileField(required=False, help_text="import: a .zip (dataset and videos) or a .json")
    status = serializers.ChoiceField(choices=Masklet.Status.choices, default=DEFAULT_STATUS,
                                     help_text="import: status of the imported masklets")


def _job_json(project: Project, job: DatasetJob) -> dict:
    return selectors.dataset_job_to_dict(project, job)


@endpoint("GET", "POST", request={"application/json": DatasetJobIn, "multipart/form-data": DatasetJobIn})
@project_permission(Action.EXPORT, api=True)
def job_list(request: HttpRequest, project: Project) -> JsonResponse:
    """GET: recent jobs with status and progress (what the datasets page shows). POST: start an export
    (``{kind: "export", format, statuses, split, type, videos, media}``) or, admins, an import
    (multipart ``kind=import``, ``format``, ``file``, ``status``); poll the job until ``done`` or ``failed``."""
    if request.method == "GET":
        recent = selectors.dataset_jobs(project)[:RECENT_JOBS]
        return JsonResponse({"jobs": [_job_json(project, job) for job in recent]})
    data = validated(DatasetJobIn, request)
    try:
        if data["kind"] == DatasetJob.Kind.IMPORT:
            if not has_permission(request.user, project, Action.MANAGE_PROJECT):
                return error_response("Only project admins can import datasets.", 403)
            if data["format"] not in READERS or "file" not in data:
                field = "file" if data["format"] in READERS else "format"
                return error_response(f"An import needs a file and one of the formats {', '.join(READERS)}.",
                                      field=field)
            job = start_import(project, request.user, data["format"], data["file"], status=data["status"])
        else:
            if data["format"] not in EXPORTERS:
                return error_response(f"Export formats: {', '.join(EXPORTERS)}.", field="format")
            filters = ExportFilters(statuses=tuple(data["statuses"]), split=data.get("split") or None,
                                    type=data.get("type") or None, videos=tuple(data["videos"]))
            job = start_export(project, request.user, data["format"], filters, media=data["media"])
    except DatasetError as error:
        return error_response(str(error), field=error.field or None)
    except ValueError as error:
        return error_response(str(error))
    return JsonResponse(_job_json(project, job), status=202)


def _job_or_none(project: Project, job_id: int) -> DatasetJob | None:
    return selectors.dataset_jobs(project).filter(pk=job_id).first()


@endpoint("GET")
@project_permission(Action.EXPORT, api=True)
def job_detail(request: HttpRequest, project: Project, job_id: int) -> JsonResponse:
    """One dataset job: status, progress, message or error, and its ``download`` URL once an export is done."""
    job = _job_or_none(project, job_id)
    if job is None:
        return error_response("No dataset job with this id in this project.", 404)
    return JsonResponse(_job_json(project, job))


@endpoint("GET", responses={(200, "application/zip"): OpenApiTypes.BINARY})
@project_permission(Action.EXPORT, api=True)
def job_download(request: HttpRequest, project: Project, job_id: int) -> FileResponse | JsonResponse:
    """The finished export's zip (404 while it runs, when it failed, or for an import)."""
    job = _job_or_none(project, job_id)
    archive = open_archive(job) if job is not None else None
    if archive is None:
        return error_response("No finished export with this id in this project.", 404)
    stream, filename = archive
    return FileResponse(stream, as_attachment=True, filename=filename, content_type="application/zip")
