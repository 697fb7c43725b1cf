"""HTML pages: sign in, projects, videos, the frame viewer and the annotation page.

Thin views: each declares its permission rule (``annotator.permissions``), parses input and
calls one selector or service. The upload form posts here when JavaScript is off; with
JavaScript, ``frontend/src/upload.ts`` sends the same form to the JSON API with a progress bar.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.generic import RedirectView

from annotator import selectors
from annotator.models import Project, Video
from annotator.permissions import (
    Action,
    has_permission,
    login_required_rule,
    project_permission,
    public,
    role_of,
    roles_by_project,
    staff_required,
)
from annotator.services import projects as project_service
from annotator.services.projects import create_project, parse_labels
from annotator.services.videos import (
    DuplicateVideo,
    VideoRejected,
    create_video_from_upload,
    delete_video,
    retry_ingest,
)

#: How many thumbnails the filmstrip shows around the current frame (long videos have thousands).
FILMSTRIP_SIZE = 48

login = public(auth_views.LoginView.as_view(template_name="annotator/login.html", redirect_authenticated_user=True))
logout = public(auth_views.LogoutView.as_view())
#: Pages link the SVG icon; this answers clients that ask for /favicon.ico anyway (JSON, files, old browsers).
favicon = public(RedirectView.as_view(url=static("annotator/favicon.svg"), permanent=True))


class ProjectForm(forms.Form):
    name = forms.CharField(max_length=200)
    slug = forms.SlugField(max_length=100, help_text="Used in URLs and exports, e.g. street-scenes.")
    annotation_fps = forms.IntegerField(
        min_value=1, max_value=120, initial=6, label="Annotation fps",
        help_text="Frames per second that people annotate (SA-V: 6).",
    )
    labels = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}),
        help_text="The label set: one per line or separated by commas.",
    )
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def clean_slug(self) -> str:
        slug = self.cleaned_data["slug"]
        if Project.objects.filter(slug=slug).exists():
            raise ValidationError("A project with this slug already exists.")
        return slug


class ProjectEditForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    annotation_fps = forms.IntegerField(
        min_value=1, max_value=120, label="Annotation fps",
        help_text="Frames per second that people annotate; videos uploaded from now on use it.",
    )
    auto_approve_confident = forms.BooleanField(
        required=False, label="Approve confident masklets automatically",
        help_text=f"A submitted masklet whose model frames all scored at least {selectors.CONFIDENT_QUALITY:.2f} is "
                  "approved without a reviewer (its review says it was automatic). Off: reviewers see a "
                  "“confident” mark and sample it.",
    )


class UploadForm(forms.Form):
    file = forms.FileField(label="Video file", widget=forms.ClearableFileInput(attrs={"accept": "video/*"}))
    name = forms.CharField(
        required=False, max_length=255, help_text="Optional video id for exports; defaults to the file name."
    )
    allow_duplicate = forms.BooleanField(required=False, label="Upload even if the project has this file already")


@require_GET
@login_required_rule
def project_list(request: HttpRequest) -> HttpResponse:
    """The projects the user belongs to (superusers: all)."""
    roles = roles_by_project(request.user)
    projects = [(project, roles.get(project.id)) for project in selectors.projects_for_user(request.user)]
    return render(request, "annotator/project_list.html", {"projects": projects})


@require_http_methods(["GET", "POST"])
@staff_required
def project_create(request: HttpRequest) -> HttpResponse:
    form = ProjectForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            project = create_project(
                creator=request.user, name=data["name"], slug=data["slug"], annotation_fps=data["annotation_fps"],
                labels=parse_labels(data["labels"]), description=data["description"],
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, f"Project {project.name} created. You are its admin.")
            return redirect("project-detail", slug=project.slug)
    return render(request, "annotator/project_form.html", {"form": form})


@require_GET
@project_permission(Action.VIEW_PROJECT)
def project_detail(request: HttpRequest, project: Project) -> HttpResponse:
    can_upload = has_permission(request.user, project, Action.UPLOAD_VIDEO)
    return render(request, "annotator/project_detail.html", {
        "project": project,
        "role": role_of(request.user, project),
        "videos": selectors.videos_with_progress(project),
        "can_upload": can_upload,
        "can_manage": has_permission(request.user, project, Action.MANAGE_PROJECT),
        "upload_form": UploadForm() if can_upload else None,
    })


@require_http_methods(["GET", "POST"])
@project_permission(Action.MANAGE_PROJECT)
def video_delete(request: HttpRequest, project: Project, video_id: int) -> HttpResponse:
    """GET: what deleting the video takes with it, and a confirm button; POST: delete it."""
    video = selectors.video_in_project(project, video_id)
    if video is None:
        raise Http404("No such video in this project.")
    if request.method == "POST":
        try:
            name = delete_video(video)
        except VideoRejected as refused:
            messages.error(request, " ".join(refused.messages))
        else:
            messages.success(request, f"{name} is deleted with its masklets, masks and frames. Exports made "
                                      "before stay as they are.")
        return redirect("project-detail", slug=project.slug)
    return render(request, "annotator/video_delete.html", {"project": project, "video": video,
                                                           "counts": selectors.video_contents(video)})


@require_POST
@project_permission(Action.UPLOAD_VIDEO)
def video_retry(request: HttpRequest, project: Project, video_id: int) -> HttpResponse:
    """Ingest a failed video again from its stored file."""
    video = selectors.video_in_project(project, video_id)
    if video is None:
        raise Http404("No such video in this project.")
    try:
        retry_ingest(video)
    except VideoRejected as refused:
        messages.error(request, " ".join(refused.messages))
    else:
        messages.success(request, f"Ingest of {video.name} started again.")
    return redirect("project-detail", slug=project.slug)


#: project_edit's label actions: POST ``action`` -> (service, the form fields it takes, what to say).
_LABEL_ACTIONS = {
    "add_label": (project_service.add_label, ("new_label", "colour"), "Label “{0}” added."),
    "rename_label": (project_service.rename_label, ("label", "new_name"), "“{0}” is now “{1}”."),
    "recolour_label": (project_service.recolour_label, ("label", "colour"), "“{0}” has a new colour."),
    "retire_label": (project_service.retire_label, ("label",),
                     "“{0}” is retired: new objects cannot take it; objects that have it keep it."),
    "restore_label": (project_service.restore_label, ("label",), "“{0}” is offered again."),
}


@require_http_methods(["GET", "POST"])
@project_permission(Action.MANAGE_PROJECT)
def project_edit(request: HttpRequest, project: Project) -> HttpResponse:
    """Name, description, annotation fps, and the label set (add, rename, recolour, retire, restore)."""
    action = request.POST.get("action", "details") if request.method == "POST" else None
    form = ProjectEditForm(request.POST if action == "details" else None, initial={
        "name": project.name, "description": project.description, "annotation_fps": project.annotation_fps,
        "auto_approve_confident": project.auto_approve_confident})
    if action == "details" and form.is_valid():
        try:
            project_service.update_project(project, **form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, "Project saved.")
            return redirect("project-edit", slug=project.slug)
    elif action in _LABEL_ACTIONS:
        service, fields, said = _LABEL_ACTIONS[action]
        values = [request.POST.get(field, "").strip() for field in fields]
        try:
            service(project, *values)
        except ValidationError as error:
            messages.error(request, " ".join(error.messages))
        else:
            messages.success(request, said.format(*values))
        return redirect(reverse("project-edit", kwargs={"slug": project.slug}) + "#labels")
    elif action is not None and action != "details":
        messages.error(request, "Unknown action.")
    project.refresh_from_db()
    in_use = selectors.label_use(project)
    return render(request, "annotator/project_edit.html", {
        "project": project, "form": form,
        "labels": [(label, project_service.label_colour(project, label), in_use.get(label, 0))
                   for label in project.labels or []],
        "retired": [(label, project_service.label_colour(project, label), in_use.get(label, 0))
                    for label in project.retired_labels or []],
    })


@require_POST
@project_permission(Action.UPLOAD_VIDEO)
def video_upload(request: HttpRequest, project: Project) -> HttpResponse:
    """The no-JavaScript upload: store the file, start ingest, back to the project page."""
    form = UploadForm(request.POST, request.FILES)
    if not form.is_valid():
        messages.error(request, " ".join(" ".join(errors) for errors in form.errors.values()))
        return redirect("project-detail", slug=project.slug)
    try:
        video = create_video_from_upload(
            project, form.cleaned_data["file"], request.user, name=form.cleaned_data["name"] or None,
            allow_duplicate=form.cleaned_data["allow_duplicate"],
        )
    except DuplicateVideo as duplicate:
        messages.error(request, f"{duplicate.message} Nothing was stored; tick “upload even if the project has this "
                                "file already” to keep both.")
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, f"Uploaded {video.name}; ingest has started.")
    return redirect("project-detail", slug=project.slug)


@require_GET
@project_permission(Action.VIEW_PROJECT)
def video_detail(request: HttpRequest, project: Project, video_id: int) -> HttpResponse:
    """Metadata and the frame viewer; ``?frame=N`` picks the large frame (a native index)."""
    video = selectors.video_in_project(project, video_id)
    if video is None:
        raise Http404("No such video in this project.")
    indices = video.annotated_frame_indices() if video.status == Video.Status.READY else []
    current = _requested_frame(request, indices)
    position = indices.index(current) if current is not None else 0
    start = max(0, min(position - FILMSTRIP_SIZE // 2, len(indices) - FILMSTRIP_SIZE))
    return render(request, "annotator/video_detail.html", {
        "project": project,
        "video": video,
        "frame_indices": indices,
        "filmstrip": indices[start:start + FILMSTRIP_SIZE],
        "current": current,
        "position": position,
        "previous": indices[position - 1] if current is not None and position > 0 else None,
        "next": indices[position + 1] if current is not None and position + 1 < len(indices) else None,
        "missed": selectors.missed_objects(video) if has_permission(request.user, project, Action.REVIEW) else None,
    })


def _requested_frame(request: HttpRequest, indices: list[int]) -> int | None:
    """The annotated frame asked for in ``?frame=``, or the first one; bad values fall back."""
    if not indices:
        return None
    try:
        wanted = int(request.GET.get("frame", indices[0]))
    except ValueError:
        return indices[0]
    return wanted if wanted in set(indices) else indices[0]


@require_GET
@project_permission(Action.VIEW_PROJECT)
def video_frame(request: HttpRequest, project: Project, video_id: int, frame_index: int) -> HttpResponse:
    """One annotated frame as JPEG, after the permission check (frames are never served raw)."""
    video = selectors.video_in_project(project, video_id)
    path = selectors.frame_path(video, frame_index) if video is not None else None
    if path is None:
        raise Http404("No such frame.")
    response = FileResponse(path.open("rb"), content_type="image/jpeg")
    response["Cache-Control"] = "private, max-age=3600"
    return response


@require_GET
@project_permission(Action.VIEW_PROJECT)
def video_annotate(request: HttpRequest, project: Project, video_id: int) -> HttpResponse:
    """The annotation page; everyone in the project may open it, only annotators and admins edit."""
    video = selectors.video_in_project(project, video_id)
    if video is None or video.status != Video.Status.READY:
        raise Http404("No such video ready for annotation in this project.")
    return render(request, "annotator/annotate.html", {
        "project": project,
        "video": video,
        "can_edit": has_permission(request.user, project, Action.ANNOTATE),
        "can_manage": has_permission(request.user, project, Action.MANAGE_PROJECT),
        "ws_path": f"/ws/projects/{project.slug}/videos/{video.id}/annotate/",
        "frames": video.annotated_frame_indices(),
        "frame_url_template": reverse("video-frame", kwargs={"slug": project.slug, "video_id": video.id,
                                                             "frame_index": 0}),
        "masks_url": reverse("api-video-masks", kwargs={"slug": project.slug, "video_id": video.id}),
        "seen_url": reverse("api-video-seen", kwargs={"slug": project.slug, "video_id": video.id}),
        "masklets_url": reverse("api-video-masklets", kwargs={"slug": project.slug, "video_id": video.id}),
        "labels": list(project.labels or []),
    })
