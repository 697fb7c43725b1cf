"""The admin retraining dashboard: one page, a JSON state, the actions, all admin-only (MANAGE_MODELS).

Views are thin: each declares its rule and calls one function of ``loop.registry`` /
``loop.training``. ``dashboard_state`` is everything the page draws (the TypeScript in
``frontend/src/dashboard.ts`` renders the charts); live run progress arrives on the socket of
``loop.consumers.TrainingConsumer`` and the page re-reads this state when a run ends.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Count, Min
from django.db.models.functions import TruncDate
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET
from drf_spectacular.types import OpenApiTypes

from annotator.api.framework import endpoint, paginated
from annotator.metrics import effort_by_version
from annotator.models import MaskFrameRevision, Masklet, Project, Review
from annotator.permissions import Action, project_permission
from engine import protocol
from engine.input import BadInput, error_response
from engine.models import Evaluation, ModelDownload, ModelVersion, ModelVersionEvent, TrainingRun, VerifierVersion
from engine.segmenters import serving_model
from loop import downloads, fetch, registry, training, verifier

RECENT_RUNS = 20
RECENT_EVENTS = 30
RECENT_DOWNLOADS = 5
RECENT_VERIFIERS = 10


# -- what each button may do: one rule, read by the page (disabled + title) and by the endpoint (refusal) --------


@dataclass(frozen=True)
class Allowed:
    """Whether an action can be done now, and if not, why (in words, shown on hover and as the refusal)."""

    possible: bool
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"possible": self.possible, "reason": self.reason}


YES = Allowed(True)


def can_start_run(active_run: TrainingRun | None) -> Allowed:
    if active_run is not None:
        return Allowed(False, f"run {active_run.pk} is already {active_run.status}: one run at a time")
    return YES


def can_cancel_run(active_run: TrainingRun | None) -> Allowed:
    if active_run is None:
        return Allowed(False, "no training run of this project is queued or running")
    if active_run.cancel_requested:
        return Allowed(False, f"run {active_run.pk} is already being cancelled")
    return YES


def can_roll_back(production: ModelVersion | None) -> Allowed:
    if production is None:
        return Allowed(False, "nothing to roll back: no version of this project is in production")
    return YES


def can_promote(version: ModelVersion) -> Allowed:
    if version.status == ModelVersion.Status.PRODUCTION:
        return Allowed(False, f"{version.name} is already in production")
    return YES


def can_download(checkpoint: fetch.Checkpoint, active: ModelDownload | None) -> Allowed:
    if active is not None:
        return Allowed(False, f"{checkpoint.label} is already being downloaded ({active.status})")
    return YES


def _live_downloads(project: Project) -> dict[str, ModelDownload]:
    """Queued or running downloads by checkpoint name; a silent one (its job died) does not block a new one,
    which ``loop.downloads.start_download`` fails first."""
    live = ModelDownload.objects.filter(project=project, status__in=ModelDownload.ACTIVE,
                                        updated_at__gte=timezone.now() - downloads.STALE_AFTER)
    return {d.name: d for d in live}


def _active_run(project: Project) -> TrainingRun | None:
    return TrainingRun.objects.filter(project=project, status__in=TrainingRun.ACTIVE).order_by("-created_at").first()


def can_train_verifier(project: Project) -> Allowed:
    if VerifierVersion.objects.filter(project=project, status__in=VerifierVersion.ACTIVE).exists():
        return Allowed(False, "a verifier training is already queued or running")
    return Allowed(True)


def allowed_actions(project: Project, versions: list[ModelVersion], active_run: TrainingRun | None) -> dict[str, Any]:
    """Every button's rule for the page: start, cancel, roll back, promote per version id, download per
    checkpoint, train the quality verifier."""
    production = next((v for v in versions if v.status == ModelVersion.Status.PRODUCTION), None)
    downloading = _live_downloads(project)
    return {"download": {name: can_download(c, downloading.get(name)).as_dict() for name, c in fetch.OFFICIAL.items()},
            "start": can_start_run(active_run).as_dict(), "cancel": can_cancel_run(active_run).as_dict(),
            "rollback": can_roll_back(production).as_dict(),
            "promote": {str(v.pk): can_promote(v).as_dict() for v in versions},
            "train_verifier": can_train_verifier(project).as_dict()}


def _version(version: ModelVersion, evaluations: dict[int, list[Evaluation]]) -> dict[str, Any]:
    evals = evaluations.get(version.pk, [])
    latest = evals[0] if evals else None
    return {
        "id": version.pk, "name": version.name, "status": version.status, "config": version.sam2_config,
        "image_size": version.image_size, "checkpoint": version.checkpoint, "parent": version.parent_id,
        "sha256": version.sha256,
        "shared": version.project_id is None, "created_at": version.created_at.isoformat(),
        "evaluation": None if latest is None else {
            "j": latest.j, "f": latest.f, "jf": latest.j_and_f, "clicks_to_target": latest.clicks_to_target,
            "jf_after": latest.details.get("jf_after", []), "target_reached": latest.details.get("target_reached"),
            "target_seconds": latest.details.get("target_seconds"), "num_objects": latest.details.get("num_objects"),
            "created_at": latest.created_at.isoformat(),
        },
    }


def _run(run: TrainingRun) -> dict[str, Any]:
    """The run as the models page shows it (a ``protocol.TrainingRunRow``)."""
    return protocol.TrainingRunRow(**{
        "id": run.pk, "status": run.status, "trigger": run.trigger, "progress": run.progress,
        "loss_curve": run.loss_curve, "log": run.log[-6000:], "error": run.error,
        "base_version": run.base_version_id, "produced_version": run.produced_version_id,
        "parameters": run.parameters, "masklets": run.data_snapshot.get("masklet_count"),
        "frames": run.data_snapshot.get("frame_count"), "cancel_requested": run.cancel_requested,
        "created_at": run.created_at.isoformat(),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }).model_dump(mode="json")


def _verifier(version: VerifierVersion) -> dict[str, Any]:
    return {
        "number": version.number, "status": version.status, "trigger": version.trigger, "active": version.active,
        "auroc": version.auroc, "backend_auroc": version.backend_auroc, "trained_frames": version.trained_frames,
        "heldout_frames": version.heldout_frames, "bad_frames": version.bad_frames, "error": version.error,
        "created_at": version.created_at.isoformat(),
        "finished_at": version.finished_at.isoformat() if version.finished_at else None,
    }


def dataset_growth(project: Project) -> dict[str, Any]:
    """Masklets by status and type now, and day by day: masklets created (manual/auto), approved, frames annotated."""
    masklets = Masklet.objects.filter(video__project=project)
    by_status_type = [{"status": row["status"], "type": row["type"], "count": row["n"]}
                      for row in masklets.values("status", "type").annotate(n=Count("id")).order_by()]
    created: dict[str, Counter] = defaultdict(Counter)
    for row in masklets.annotate(day=TruncDate("created_at")).values("day", "type").annotate(n=Count("id")).order_by():
        created[row["type"]][row["day"].isoformat()] += row["n"]
    # Approval day: the first satisfactory review, else (imported, or approved without a review) the last update.
    approved_days: Counter = Counter()
    first_review = dict(Review.objects.filter(masklet__video__project=project, verdict="satisfactory")
                        .values("masklet_id").annotate(at=Min("created_at")).values_list("masklet_id", "at"))
    for masklet_id, updated in masklets.filter(status=Masklet.Status.APPROVED).values_list("id", "updated_at"):
        approved_days[(first_review.get(masklet_id) or updated).date().isoformat()] += 1
    frames: Counter = Counter()
    for row in (MaskFrameRevision.objects.filter(masklet__video__project=project, revision=1)
                .annotate(day=TruncDate("created_at")).values("day").annotate(n=Count("id")).order_by()):
        frames[row["day"].isoformat()] += row["n"]
    days = sorted(set(approved_days) | set(frames) | {d for c in created.values() for d in c})
    series: dict[str, list[int]] = {"manual": [], "auto": [], "approved": [], "frames": []}
    totals = Counter()
    for day in days:
        totals["manual"] += created["manual"][day]
        totals["auto"] += created["auto"][day]
        totals["approved"] += approved_days[day]
        totals["frames"] += frames[day]
        for key in series:
            series[key].append(totals[key])
    return {"by_status_type": by_status_type, "days": days, "cumulative": series}


def dashboard_state(project: Project) -> dict[str, Any]:
    """Everything the dashboard draws."""
    versions = list(ModelVersion.objects.filter(project=project).order_by("created_at", "id"))
    evaluations: dict[int, list[Evaluation]] = defaultdict(list)
    for evaluation in Evaluation.objects.filter(model_version__in=versions, split="val").order_by("-created_at"):
        evaluations[evaluation.model_version_id].append(evaluation)
    runs = list(TrainingRun.objects.filter(project=project).order_by("-created_at")[:RECENT_RUNS])
    knobs = training.loop_settings(project)
    events = (ModelVersionEvent.objects.filter(project=project).select_related("version", "actor")
              .order_by("-created_at", "-id")[:RECENT_EVENTS])
    serving = serving_model(project)
    active = next((r for r in runs if r.is_active), None) or _active_run(project)
    actions = allowed_actions(project, versions, active)
    return {
        "project": {"slug": project.slug, "name": project.name},
        "serving": serving.name,
        "serving_fallback": serving.fallback,
        "checkpoints": [{"name": c.name, "label": c.label, "allowed": actions["download"][c.name]}
                        for c in fetch.OFFICIAL.values()],
        "downloads": [downloads.as_dict(d) for d in ModelDownload.objects.filter(project=project)[:RECENT_DOWNLOADS]],
        "versions": [_version(v, evaluations) for v in versions],
        "runs": [_run(r) for r in runs],
        "active_run": _run(active) if active else None,
        "actions": actions,
        "events": [{"action": e.action, "version": e.version.name, "actor": e.actor.get_username() if e.actor else
                    "engine", "note": e.note, "at": e.created_at.isoformat()} for e in events],
        "verifiers": [_verifier(v) for v in VerifierVersion.objects.filter(project=project)[:RECENT_VERIFIERS]],
        "growth": dataset_growth(project),
        "effort": effort_by_version(project),
        "loop": {"enabled": knobs.enabled, "min_new_masklets": knobs.min_new_masklets, "min_hours": knobs.min_hours,
                 "auto_promote": knobs.auto_promote, "promote_margin": knobs.promote_margin, "steps": knobs.steps,
                 "new_masklets": training.new_approved_masklets(project)},
    }


# -- views ---------------------------------------------------------------------------------------


def _refused(message: str, status: int = 409) -> JsonResponse:
    return error_response(message, status)


def _body(request: HttpRequest) -> dict[str, Any]:
    """The JSON object or form a DRF request carries (``engine.input`` checked a JSON body)."""
    data = request.data
    if hasattr(data, "dict"):
        return data.dict()
    if not isinstance(data, dict):
        raise BadInput("The body must be a JSON object.", code="bad_json")
    return data


@require_GET
@project_permission(Action.MANAGE_MODELS)
def models_page(request: HttpRequest, project: Project) -> HttpResponse:
    return render(request, "loop/models_dashboard.html", {"project": project, "state": dashboard_state(project),
                                                            "serving": serving_model(project),
                                                            "image_size": settings.SAM2_IMAGE_SIZE})


@endpoint("GET", "POST", request={"multipart/form-data": OpenApiTypes.OBJECT})
@project_permission(Action.MANAGE_MODELS, api=True)
def api_models(request: HttpRequest, project: Project) -> JsonResponse:
    """GET: everything the models page draws (versions, runs, serving model, actions). POST: register a
    checkpoint, as ``versions/`` (multipart ``checkpoint`` file, or ``path`` in the models folder; ``config``,
    ``image_size``, ``name``)."""
    if request.method == "POST":
        return _register(request, project)
    return JsonResponse(dashboard_state(project))


@endpoint("POST", request=None)
@project_permission(Action.MANAGE_MODELS, api=True)
def api_start_run(request: HttpRequest, project: Project) -> JsonResponse:
    return _start(request, project)


def _start(request: HttpRequest, project: Project) -> JsonResponse:
    """Start a training run (202 ``{"run": ...}``), refused (409) with the start button's reason."""
    allowed = can_start_run(_active_run(project))
    if not allowed.possible:
        return _refused(allowed.reason)
    try:
        run = training.start_run(project, request.user)
    except training.RunRefused as error:
        return _refused(str(error))
    return JsonResponse({"run": _run(run)}, status=202)


@endpoint("POST", request=None)
@project_permission(Action.MANAGE_MODELS, api=True)
def api_cancel_run(request: HttpRequest, project: Project) -> JsonResponse:
    return _cancel(_active_run(project))


def _cancel(run: TrainingRun | None) -> JsonResponse:
    """Cancel ``run`` (``{"run": ...}``), refused (409) with the cancel button's reason."""
    allowed = can_cancel_run(run)
    if not allowed.possible:
        return _refused(allowed.reason)
    try:
        run = training.cancel_run(run)
    except training.RunRefused as error:
        return _refused(str(error))
    return JsonResponse({"run": _run(run)})


@endpoint("POST", request=None)
@project_permission(Action.MANAGE_MODELS, api=True)
def api_train_verifier(request: HttpRequest, project: Project) -> JsonResponse:
    """Train the project's quality verifier (202 ``{"verifier": ...}``), refused (409) with the button's reason."""
    allowed = can_train_verifier(project)
    if not allowed.possible:
        return _refused(allowed.reason)
    try:
        version = verifier.start_training(project, request.user)
    except verifier.VerifierRefused as error:
        return _refused(str(error))
    return JsonResponse({"verifier": _verifier(version)}, status=202)


@endpoint("POST", request=None)
@project_permission(Action.MANAGE_MODELS, api=True)
def api_promote(request: HttpRequest, project: Project) -> JsonResponse:
    version_id = _body(request).get("version")
    version = ModelVersion.objects.filter(project=project, pk=version_id).first() if str(version_id).isdigit() else None
    if version is None:
        return _refused("name a version of this project to promote", 400)
    return _promote(request, project, version)


def _promote(request: HttpRequest, project: Project, version: ModelVersion) -> JsonResponse:
    """Promote ``version`` (``{"version", "serving"}``), refused (409) with the promote button's reason."""
    allowed = can_promote(version)
    if not allowed.possible:
        return _refused(allowed.reason)
    try:
        registry.promote(version, request.user)
    except registry.RegistryError as error:
        return _refused(str(error))
    return JsonResponse({"version": version.pk, "serving": serving_model(project).name})


@endpoint("POST", request=None)
@project_permission(Action.MANAGE_MODELS, api=True)
def api_rollback(request: HttpRequest, project: Project) -> JsonResponse:
    allowed = can_roll_back(registry.production_of(project))
    if not allowed.possible:
        return _refused(allowed.reason)
    try:
        restored = registry.roll_back(project, request.user)
    except registry.RegistryError as error:
        return _refused(str(error))
    return JsonResponse({"restored": restored.pk if restored else None, "serving": serving_model(project).name})


@endpoint("POST", request={"multipart/form-data": OpenApiTypes.OBJECT})
@project_permission(Action.MANAGE_MODELS, api=True)
def api_register(request: HttpRequest, project: Project) -> JsonResponse:
    """Register from a server-side ``path`` or an uploaded ``file``, with ``config`` and ``image_size``."""
    return _register(request, project)


def _register(request: HttpRequest, project: Project) -> JsonResponse:
    """Load the checkpoint for real (in a child process) and register it as a candidate; 201 ``{version, name}``."""
    data = _body(request)
    for name in ("path", "config", "name"):
        if not isinstance(data.get(name) or "", str):
            raise BadInput(f"{name} must be a string", field=name)
    upload = request.FILES.get("file") or request.FILES.get("checkpoint")
    path = (data.get("path") or "").strip()
    source = "file" if upload else "path"
    if not upload and not path:
        return error_response("give the name of a checkpoint in the models folder or upload a checkpoint file",
                              field="path")
    try:
        image_size = int(data.get("image_size") or settings.SAM2_IMAGE_SIZE)
    except (TypeError, ValueError):
        return error_response("the image size must be a whole number of pixels, e.g. 512", field="image_size")
    config = (data.get("config") or "sam2.1_hiera_t").strip()
    try:
        checkpoint = registry.save_upload(upload) if upload else registry.allowed_checkpoint(path)
    except registry.RegistryError as error:
        return error_response(f"not registered: {error}", field=source)
    saved = checkpoint if upload else None
    try:
        version = registry.register_version(project, name=data.get("name") or "", checkpoint=checkpoint,
                                            config=config, image_size=image_size, user=request.user)
    except registry.RegistryError as error:
        if saved is not None:
            saved.unlink(missing_ok=True)
        return error_response(f"not registered: {error}", field=source)
    return JsonResponse({"version": version.pk, "name": version.name}, status=201)


@endpoint("POST", request=None)
@project_permission(Action.MANAGE_MODELS, api=True)
def api_download(request: HttpRequest, project: Project) -> JsonResponse:
    """Start downloading Meta's checkpoint ``name`` for this project (``promote``: serve it when checked)."""
    data = _body(request)
    name = str(data.get("name") or "")
    if name not in fetch.OFFICIAL:
        return _refused(f"name one of Meta's checkpoints: {', '.join(fetch.OFFICIAL)}", 400)
    allowed = can_download(fetch.OFFICIAL[name], _live_downloads(project).get(name))
    if not allowed.possible:
        return _refused(allowed.reason)
    try:
        download = downloads.start_download(project, name, request.user,
                                            promote=str(data.get("promote", "1")).lower() not in ("0", "false", ""))
    except downloads.DownloadRefused as error:
        return _refused(str(error))
    return JsonResponse({"download": downloads.as_dict(download)}, status=202)


@endpoint("POST", request=None)
@project_permission(Action.MANAGE_MODELS, api=True)
def api_promote_version(request: HttpRequest, project: Project, version_id: int) -> JsonResponse:
    """Make this version of the project serve new annotation sessions (as ``promote/`` with ``{version}``)."""
    version = ModelVersion.objects.filter(project=project, pk=version_id).first()
    if version is None:
        return _refused("No model version with this id in this project.", 404)
    return _promote(request, project, version)


@endpoint("GET", "POST", request=None)
@project_permission(Action.MANAGE_MODELS, api=True)
def api_training_runs(request: HttpRequest, project: Project) -> JsonResponse:
    """GET: the project's training runs, newest first (paginated). POST: start one (409 while one is active)."""
    if request.method == "POST":
        return _start(request, project)
    return paginated(request, TrainingRun.objects.filter(project=project).order_by("-created_at", "-id"), _run)


def _run_or_none(project: Project, run_id: int) -> TrainingRun | None:
    return TrainingRun.objects.filter(project=project, pk=run_id).first()


@endpoint("GET")
@project_permission(Action.MANAGE_MODELS, api=True)
def api_training_run(request: HttpRequest, project: Project, run_id: int) -> JsonResponse:
    """One run: status, progress, loss curve, log tail, error, the version it produced."""
    run = _run_or_none(project, run_id)
    if run is None:
        return _refused("No training run with this id in this project.", 404)
    return JsonResponse(_run(run))


@endpoint("POST", request=None)
@project_permission(Action.MANAGE_MODELS, api=True)
def api_training_run_cancel(request: HttpRequest, project: Project, run_id: int) -> JsonResponse:
    """Cancel this run (409 when it has ended); a cancelled run registers nothing."""
    run = _run_or_none(project, run_id)
    if run is None:
        return _refused("No training run with this id in this project.", 404)
    return _cancel(run)
