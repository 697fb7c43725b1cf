"""Dataset pages: export for admins and reviewers, import for admins; both run as jobs on the ``cpu`` queue.

Thin views (see ``annotator.views``): each declares its permission rule, parses a form and
calls one service in ``annotator.datasets.jobs``. The page refreshes itself while a job runs;
``annotator.api.datasets`` serves the same jobs as JSON. Downloads are checked twice: the job must
belong to the URL's project (404 otherwise), and its file must be under ``exports/`` in the media storage.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotator import selectors
from annotator.datasets import EXPORTERS, READERS, DatasetError, ExportFilters
from annotator.datasets.importing import DEFAULT_STATUS
from annotator.datasets.jobs import open_archive, start_export, start_import
from annotator.models import DatasetJob, Masklet, MaskletType, Project, Split, Video
from annotator.permissions import Action, has_permission, project_permission

RECENT_JOBS = 20
FORMAT_LABELS = {
    "sav": "SA-V train JSON (manual + auto per video)",
    "sav-folders": "SA-V val/test folders (24 fps frames, per-object PNGs)",
    "coco": "COCO instances (RLE, one image per annotated frame)",
    "ytvis": "YouTube-VIS (per-masklet RLE lists)",
    "davis": "DAVIS (palette PNGs; overlaps: the higher object id wins)",
}


class ExportForm(forms.Form):
    format = forms.ChoiceField(choices=[(name, FORMAT_LABELS[name]) for name in EXPORTERS])
    statuses = forms.MultipleChoiceField(choices=Masklet.Status.choices, initial=[Masklet.Status.APPROVED],
                                         widget=forms.CheckboxSelectMultiple, label="Masklet statuses")
    split = forms.ChoiceField(choices=[("", "All splits"), *Split.choices], required=False)
    type = forms.ChoiceField(choices=[("", "Manual and auto"), *MaskletType.choices], required=False)
    videos = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple,
                                       help_text="None ticked: every video.")
    media = forms.BooleanField(required=False, initial=True, label="Include frames and videos")

    def __init__(self, project: Project, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["videos"].choices = [(name, name) for name in
                                         Video.objects.filter(project=project).order_by("name")
                                         .values_list("name", flat=True)]

    def filters(self) -> ExportFilters:
        data = self.cleaned_data
        return ExportFilters(statuses=tuple(data["statuses"]), split=data["split"] or None, type=data["type"] or None,
                             videos=tuple(data["videos"]))


def _last_export_choices(project: Project, user) -> dict:
    """The form as this person last sent it (format, statuses, split, type, media): the page remembers."""
    last = DatasetJob.objects.filter(project=project, kind=DatasetJob.Kind.EXPORT, created_by=user).first()
    if last is None:
        return {}
    filters = (last.options or {}).get("filters", {})
    return {"format": last.format, "media": (last.options or {}).get("media", True),
            "statuses": filters.get("statuses") or [Masklet.Status.APPROVED], "split": filters.get("split") or "",
            "type": filters.get("type") or ""}


class ImportForm(forms.Form):
    format = forms.ChoiceField(choices=[(name, FORMAT_LABELS[name].split(" (")[0]) for name in READERS])
    file = forms.FileField(help_text="A .zip holding the dataset and its videos (or frame folders), or one .json "
                                     "for videos already in the project.")
    status = forms.ChoiceField(choices=Masklet.Status.choices, initial=DEFAULT_STATUS,
                               label="Status of imported masklets")


def _jobs(project: Project):
    return selectors.dataset_jobs(project)[:RECENT_JOBS]


@require_http_methods(["GET", "POST"])
@project_permission(Action.EXPORT)
def datasets(request: HttpRequest, project: Project) -> HttpResponse:
    """Choose a format and filters; POST queues the export. Lists recent jobs with progress and downloads."""
    form = ExportForm(project, request.POST or None, initial=_last_export_choices(project, request.user))
    if request.method == "POST":
        if form.is_valid():
            try:
                job = start_export(project, request.user, form.cleaned_data["format"], form.filters(),
                                   media=form.cleaned_data["media"])
            except (DatasetError, ValueError) as error:
                messages.error(request, str(error))
            else:
                messages.success(request, f"Export {job.id} ({job.format}) queued.")
                return redirect("datasets", slug=project.slug)
        else:
            messages.error(request, " ".join(" ".join(errors) for errors in form.errors.values()))
    jobs = list(_jobs(project))
    can_import = has_permission(request.user, project, Action.MANAGE_PROJECT)
    return render(request, "annotator/datasets.html", {
        "project": project,
        "form": form,
        "import_form": ImportForm() if can_import else None,
        "jobs": jobs,
        "running": any(job.status in (DatasetJob.Status.QUEUED, DatasetJob.Status.RUNNING) for job in jobs),
    })


@require_POST
@project_permission(Action.MANAGE_PROJECT)
def dataset_import(request: HttpRequest, project: Project) -> HttpResponse:
    """Store the upload and queue its import (admins only)."""
    form = ImportForm(request.POST, request.FILES)
    if not form.is_valid():
        messages.error(request, " ".join(" ".join(errors) for errors in form.errors.values()))
        return redirect("datasets", slug=project.slug)
    try:
        job = start_import(project, request.user, form.cleaned_data["format"], form.cleaned_data["file"],
                           status=form.cleaned_data["status"])
    except DatasetError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"Import {job.id} ({job.format}) queued.")
    return redirect("datasets", slug=project.slug)


@require_GET
@project_permission(Action.EXPORT)
def dataset_download(request: HttpRequest, project: Project, job_id: int) -> HttpResponse:
    """The finished export's zip, as an attachment."""
    job = DatasetJob.objects.filter(pk=job_id, project=project).first()
    archive = open_archive(job) if job is not None else None
    if archive is None:
        raise Http404("No finished export with this id in this project.")
    stream, filename = archive
    return FileResponse(stream, as_attachment=True, filename=filename, content_type="application/zip")
