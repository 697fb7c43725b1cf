"""masklet: the Masklet API from a shell. Reads MASKLET_URL and MASKLET_TOKEN.

Exit codes (scripts can rely on them):

    0  done
    1  the server refused (4xx): the message on stderr says why, with the error code and field
    2  usage: a bad command line, a missing file, MASKLET_URL / MASKLET_TOKEN not set
    3  the server could not be reached, a transfer broke off, or --wait ran out of time
    4  a job waited for failed or was cancelled (video ingest, export, import, training run)
    5  the server failed (5xx)

Listings print a table, or JSON with --json; commands that create or change something print
the new state (JSON with --json). Messages and progress bars go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from masklet_client.client import Client
from masklet_client.errors import JobFailed, MaskletConnectionError, MaskletError, WaitTimedOut

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_CONNECTION, EXIT_JOB_FAILED, EXIT_SERVER = 0, 1, 2, 3, 4, 5
EXPORT_FORMATS = ("sav", "sav-folders", "coco", "ytvis", "davis")


class UsageError(Exception):
    """A command line that parses but cannot be carried out (a missing file, a bad value)."""


# -- output ------------------------------------------------------------------------------------


def emit(args: argparse.Namespace, data: Any, columns: Sequence[str] = ()) -> None:
    """JSON with ``--json``; otherwise a table of ``columns`` for a list, ``key: value`` lines for one item."""
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
    elif isinstance(data, list):
        rows = [[_cell(item.get(column)) for column in columns] for item in data]
        widths = [max([len(column)] + [len(row[i]) for row in rows]) for i, column in enumerate(columns)]
        for row in [list(columns)] + rows:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    elif isinstance(data, dict):
        for key in columns or data:
            if key in data:
                print(f"{key}: {_cell(data[key])}")
    elif data is not None:
        print(data)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def progress_bar(description: str, unit: str = "B") -> tuple[tqdm, Callable[[int, int], None]]:
    """A stderr progress bar and the ``progress(done, total)`` callback that moves it. Bars show on a
    terminal only (``disable=None``), so a script's log holds the messages, not redrawn bars."""
    bar = tqdm(desc=description, unit=unit, unit_scale=unit == "B", unit_divisor=1024, file=sys.stderr, leave=False,
               disable=None)

    def update(done: int, total: int) -> None:
        if total and bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    return bar, update


def job_bar(description: str) -> tuple[tqdm, Callable[[dict[str, Any]], None]]:
    """A percent bar for a polled job (``progress`` 0..1) with its status."""
    bar = tqdm(desc=description, total=100, unit="%", file=sys.stderr, leave=False, disable=None,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")

    def update(item: dict[str, Any]) -> None:
        bar.update(round(100 * float(item.get("progress") or 0)) - bar.n)
        bar.set_postfix_str(str(item.get("status", "")))

    return bar, update


def info(message: str) -> None:
    print(message, file=sys.stderr)


# -- commands ----------------------------------------------------------------------------------

PROJECT_COLUMNS = ("slug", "name", "role", "video_count", "labels")
VIDEO_COLUMNS = ("id", "name", "status", "frame_count", "width", "height", "failure_reason")
MEMBER_COLUMNS = ("username", "role")
TOKEN_COLUMNS = ("id", "name", "prefix", "active", "created_at", "expires_at", "last_used_at")
JOB_COLUMNS = ("id", "kind", "format", "status", "progress", "created_at", "error")
MODEL_COLUMNS = ("id", "name", "status", "config", "image_size", "created_at")
RUN_COLUMNS = ("id", "status", "progress", "created_at", "error")
MASKLET_COLUMNS = ("id", "object_id", "label", "status")
REVIEW_COLUMNS = ("id", "masklet", "words", "reason", "reviewer", "comment", "at")


def cmd_projects_list(client: Client, args: argparse.Namespace) -> None:
    emit(args, client.list_projects(), PROJECT_COLUMNS)


def cmd_projects_create(client: Client, args: argparse.Namespace) -> None:
    labels = [label.strip() for label in (args.labels or "").split(",") if label.strip()]
    emit(args, client.create_project(args.slug, args.name, labels, annotation_fps=args.annotation_fps))


def cmd_projects_show(client: Client, args: argparse.Namespace) -> None:
    emit(args, client.get_project(args.slug))


def cmd_members_list(client: Client, args: argparse.Namespace) -> None:
    emit(args, client.list_members(args.slug), MEMBER_COLUMNS)


def cmd_members_add(client: Client, args: argparse.Namespace) -> None:
    emit(args, client.add_member(args.slug, args.username, args.role))


def cmd_members_set_role(client: Client, args: argparse.Namespace) -> None:
    emit(args, client.set_member_role(args.slug, args.username, args.role))


def cmd_members_remove(client: Client, args: argparse.Namespace) -> None:
    emit(args, client.remove_member(args.slug, args.username))


def cmd_users_list(client: Client, args: argparse.Namespace) -> None:
    emit(args, client.list_users(), ("id", "username", "email"))


def cmd_users_create(client: Client, args: argparse.Namespace) -> None:
    emit(args, client.create_user(args.username, args.email or "", args.password, staff=args.staff))


def cmd_tokens_list(client: Client, args: argparse.Namespace) -> None:
    emit(args, client.list_tokens(), TOKEN_COLUMNS)


def cmd_tokens_create(client: Client, args: argparse.Namespace) -> None:
    emit(args, client.create_token(args.name, expires_days=args.expires_days))


def cmd_tokens_revoke(client: Client, args: argparse.Namespace) -> None:
    emit(args, client.revoke_token(args.id), TOKEN_COLUMNS)


def cmd_videos_list(client: Client, args: argparse.Namespace) -> None:
    emit(args, client.list_videos(args.slug, status=args.status), VIDEO_COLUMNS)


def cmd_videos_upload(client: Client, args: argparse.Namespace) -> None:
    """Upload each file in turn; with ``--wait``, then wait for each until ready (exit 4 if one failed)."""
    files = [Path(name) for name in args.files]
    for path in files:
        if not path.is_file():
            raise UsageError(f"{path}: no such file")
    uploaded = []
    for path in files:
        bar, progress = progress_bar(f"upload {path.name}")
        try:
            with bar:
                uploaded.append(client.upload_video(args.slug, path, allow_duplicate=args.allow_duplicate,
                                                    progress=progress))
        except MaskletError as refused:
            if refused.code == "duplicate":
                refused.message = f"{path.name}: {refused.message} (here: --allow-duplicate)"
            raise
        info(f"{path.name}: uploaded as video {uploaded[-1]['id']}")
    failures = []
    if args.wait:
        for index, video in enumerate(uploaded):
            bar, update = job_bar(f"ingest {video['name']}")
            try:
                with bar:
                    uploaded[index] = client.wait_video(args.slug, video["id"], timeout=args.timeout, on_poll=update)
            except JobFailed as failed:
                uploaded[index] = failed.item
                failures.append(failed)
                info(f"error: {failed.message}")
    emit(args, uploaded, VIDEO_COLUMNS)
    if failures:
        raise failures[0]


def cmd_videos_show(client: Client, args: argparse.Namespace) -> None:
    emit(args, client.get_video(args.slug, args.id))


def cmd_videos_delete(client: Client, args: argparse.Namespace) -> None:
    emit(args, client.delete_video(args.slug, args.id))


def cmd_videos_retry(client: Client, args: argparse.Namespace) -> None:
    emit(args, client.retry_video(args.slug, args.id))


def cmd_masklets_list(client: Client, args: argparse.Namespace) -> None:
    emit(args, client.list_masklets(args.slug, args.video), MASKLET_COLUMNS)


def cmd_masklets_create(client: Client, args: argparse.Namespace) -> None:
    emit(args, client.create_masklet(args.slug, args.video, args.label))


def cmd_masklets_submit(client: Client, args: argparse.Namespace) -> None:
    emit(args, client.submit_masklet(args.slug, args.masklet), MASKLET_COLUMNS)


def cmd_masks_get(client: Client, args: argparse.Namespace) -> None:
    masks = client.get_masks(args.slug, args.masklet)
    if args.out:
        Path(args.out).write_text(json.dumps(masks))
        info(f"{len(masks.get('frames', []))} frames written to {args.out}")
    else:
        print(json.dumps(masks))


def cmd_masks_put(client: Client, args: argparse.Namespace) -> None:
    """FILE holds ``{"frames": [{"frame_index", "rle": {"size", "counts"}}]}`` (or just the list); ``-`` is stdin."""
    text = sys.stdin.read() if args.file == "-" else _read_text(args.file)
    try:
        data = json.loads(text)
    except ValueError as error:
        raise UsageError(f"{args.file} is not JSON: {error}") from error
    frames = data.get("frames") if isinstance(data, dict) else data
    if not isinstance(frames, list):
        raise UsageError(f'{args.file} must hold {{"frames": [...]}} or a list of frames')
    saved = client.put_masks(args.slug, args.masklet, frames)
    emit(args, saved if args.json else saved.get("saved", []), ("frame_index", "revision", "area"))


def cmd_review(client: Client, args: argparse.Namespace) -> None:
    emit(args, client.review_masklet(args.slug, args.masklet, args.verdict, reason=args.reason or "",
                                     comment=args.comment), REVIEW_COLUMNS)


def cmd_reviews_list(client: Client, args: argparse.Namespace) -> None:
    emit(args, client.list_reviews(args.slug, verdict=args.verdict, masklet_id=args.masklet), REVIEW_COLUMNS)


def cmd_jobs_list(client: Client, args: argparse.Namespace) -> None:
    emit(args, client.list_dataset_jobs(args.slug), JOB_COLUMNS)


def cmd_export(client: Client, args: argparse.Namespace) -> None:
    """Start an export, wait for it, download the zip and unpack it into ``--out``."""
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out} must be an empty or new folder")
    statuses = [s.strip() for s in (args.status or "").split(",") if s.strip()]
    options: dict[str, Any] = {}
    if args.split:
        options["split"] = args.split
    if args.no_media:
        options["media"] = False
    job = client.start_export(args.slug, args.format, statuses=statuses or None, **options)
    info(f"export job {job['id']} started")
    bar, update = job_bar(f"export {args.format}")
    with bar:
        job = client.wait_dataset_job(args.slug, job["id"], timeout=args.timeout, on_poll=update)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="masklet-export-") as scratch:
        archive = Path(scratch) / "export.zip"
        bar, progress = progress_bar("download")
        with bar:
            client.download_dataset_job(args.slug, job["id"], archive, progress=progress)
        count = unpack(archive, out)
    info(f"export job {job['id']}: {count} files in {out}")
    emit(args, {**job, "out": str(out), "files": count} if args.json else str(out))


def unpack(archive: Path, out: Path) -> int:
    """Extract every member inside ``out``; a member naming a path outside it is refused (zip slip)."""
    root = out.resolve()
    with zipfile.ZipFile(archive) as zipped:
        members = zipped.infolist()
        for member in members:
            target = (root / member.filename).resolve()
            if not target.is_relative_to(root):
                raise MaskletError(None, "bad_archive", f"The export holds {member.filename!r}, outside its folder.")
        zipped.extractall(root)
    return sum(1 for member in members if not member.is_dir())


def cmd_import(client: Client, args: argparse.Namespace) -> None:
    path = Path(args.path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file (give the dataset as a .zip or .json)")
    options = {"status": args.status} if args.status else {}
    bar, progress = progress_bar(f"upload {path.name}")
    with bar:
        job = client.start_import(args.slug, args.format, path, progress=progress, **options)
    info(f"import job {job['id']} started")
    if not args.no_wait:
        bar, update = job_bar(f"import {args.format}")
        with bar:
            job = client.wait_dataset_job(args.slug, job["id"], timeout=args.timeout, on_poll=update)
        if job.get("message"):
            info(job["message"])
    emit(args, job, JOB_COLUMNS)


def cmd_models_list(client: Client, args: argparse.Namespace) -> None:
    emit(args, client.list_models(args.slug), MODEL_COLUMNS)


def cmd_models_register(client: Client, args: argparse.Namespace) -> None:
    checkpoint = Path(args.checkpoint)
    if not checkpoint.is_file():
        raise UsageError(f"{checkpoint}: no such file")
    bar, progress = progress_bar(f"upload {checkpoint.name}")
    with bar:
        answer = client.register_model(args.slug, checkpoint, args.config, name=args.name,
                                       image_size=args.image_size, progress=progress)
    emit(args, client.get_model(args.slug, answer["version"]), MODEL_COLUMNS)


def resolve_version(client: Client, slug: str, version: str) -> int:
    """A version id, or the id of the version with that name (names are what people see)."""
    if version.isdigit():
        return int(version)
    matches = [v["id"] for v in client.list_models(slug) if v.get("name") == version]
    if len(matches) != 1:
        raise UsageError(f"{len(matches) or 'no'} model versions of {slug} are named {version!r}; give the id "
                         "(`masklet models list SLUG`)")
    return matches[0]


def cmd_models_promote(client: Client, args: argparse.Namespace) -> None:
    answer = client.promote_model(args.slug, resolve_version(client, args.slug, args.version))
    emit(args, client.get_model(args.slug, answer["version"]), MODEL_COLUMNS)


def cmd_models_rollback(client: Client, args: argparse.Namespace) -> None:
    emit(args, client.rollback_model(args.slug))


def cmd_models_fetch(client: Client, args: argparse.Namespace) -> None:
    emit(args, client.fetch_model(args.slug, args.name, promote=args.promote).get("download"))


def cmd_models_train_verifier(client: Client, args: argparse.Namespace) -> None:
    emit(args, client.train_verifier(args.slug).get("verifier"))


def cmd_models_train(client: Client, args: argparse.Namespace) -> None:
    parameters: dict[str, Any] = {}
    for pair in args.param or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--param {pair!r}: write it as NAME=VALUE")
        try:
            parameters[key] = json.loads(value)
        except ValueError:
            parameters[key] = value
    run = client.start_training_run(args.slug, **parameters)
    info(f"training run {run['id']} started")
    if args.wait:
        bar, update = job_bar("training")
        with bar:
            run = client.wait_training_run(args.slug, run["id"], timeout=args.timeout, on_poll=update)
    emit(args, run, RUN_COLUMNS)


def cmd_models_runs(client: Client, args: argparse.Namespace) -> None:
    emit(args, client.list_training_runs(args.slug), RUN_COLUMNS)


def cmd_models_run(client: Client, args: argparse.Namespace) -> None:
    emit(args, client.get_training_run(args.slug, args.run), RUN_COLUMNS)


def cmd_models_cancel(client: Client, args: argparse.Namespace) -> None:
    """Cancel; with ``--wait``, until the run has stopped (a running run stops at its next step)."""
    run = client.cancel_training_run(args.slug, args.run)
    if args.wait:
        try:
            run = client.wait_training_run(args.slug, args.run, timeout=args.timeout)
        except JobFailed as ended:
            if ended.code != "cancelled":
                raise
            run = ended.item
    emit(args, run, RUN_COLUMNS)


def cmd_auto_masklets_list(client: Client, args: argparse.Namespace) -> None:
    emit(args, client.list_auto_masklet_runs(args.slug), ("id", "video", "frame", "status", "progress", "created"))


def cmd_auto_masklets_start(client: Client, args: argparse.Namespace) -> None:
    emit(args, client.start_auto_masklet_run(args.slug, args.video, frame=args.frame,
                                             points_per_side=args.points_per_side))


def cmd_webhooks_list(client: Client, args: argparse.Namespace) -> None:
    emit(args, client.list_webhooks(args.slug), ("id", "url", "events", "active", "created_at"))


def cmd_webhooks_add(client: Client, args: argparse.Namespace) -> None:
    events = [event.strip() for event in args.events.split(",") if event.strip()]
    emit(args, client.create_webhook(args.slug, args.url, events))


def cmd_webhooks_delete(client: Client, args: argparse.Namespace) -> None:
    emit(args, client.delete_webhook(args.slug, args.id))


def cmd_webhooks_deliveries(client: Client, args: argparse.Namespace) -> None:
    emit(args, client.list_webhook_deliveries(args.slug, args.id),
         ("id", "event", "status", "attempts", "response_status", "created_at", "error"))


def cmd_effort(client: Client, args: argparse.Namespace) -> None:
    data = client.effort(args.slug)
    emit(args, data if args.json else data.get("project", data))


def _read_text(name: str) -> str:
    try:
        return Path(name).read_text()
    except OSError as error:
        raise UsageError(f"{name}: {error.strerror or error}") from error


# -- the parser ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a subcommand's default must not undo --json given before it (masklet --json projects list).
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON instead of a table")
    parser = argparse.ArgumentParser(prog="masklet", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], parents=[common],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def group(name: str, help_text: str) -> argparse._SubParsersAction:
        sub = commands.add_parser(name, help=help_text, parents=[common])
        return sub.add_subparsers(dest="action", required=True, metavar="ACTION")

    def command(parent: argparse._SubParsersAction, name: str, function: Callable, help_text: str,
                *arguments: tuple[tuple[str, ...], dict[str, Any]]) -> argparse.ArgumentParser:
        sub = parent.add_parser(name, help=help_text, description=help_text, parents=[common])
        for flags, options in arguments:
            sub.add_argument(*flags, **options)
        sub.set_defaults(function=function)
        return sub

    slug = (("slug",), {"metavar": "SLUG", "help": "the project's slug"})
    wait_timeout = (("--timeout",), {"type": float, "default": 3600.0, "help": "seconds to wait (default 3600)"})

    projects = group("projects", "list, create and show projects")
    command(projects, "list", cmd_projects_list, "projects you are a member of")
    command(projects, "create", cmd_projects_create, "create a project (staff)", slug,
            (("--name",), {"required": True}), (("--labels",), {"help": "comma-separated labels: a,b,c"}),
            (("--annotation-fps",), {"type": int, "help": "frames per second stored for annotation"}))
    command(projects, "show", cmd_projects_show, "one project", slug)

    members = group("members", "a project's members and their roles")
    command(members, "list", cmd_members_list, "members of a project", slug)
    role = (("--role",), {"required": True, "help": "annotator, reviewer or admin"})
    command(members, "add", cmd_members_add, "add a user to a project", slug, (("username",), {}), role)
    command(members, "set-role", cmd_members_set_role, "change a member's role", slug, (("username",), {}), role)
    command(members, "remove", cmd_members_remove, "remove a member", slug, (("username",), {}))

    users = group("users", "accounts (staff)")
    command(users, "list", cmd_users_list, "every account")
    command(users, "create", cmd_users_create, "create an account", (("username",), {}), (("--email",), {}),
            (("--password",), {"help": "without it the answer holds an invitation link"}),
            (("--staff",), {"action": "store_true", "help": "a site admin"}))

    tokens = group("tokens", "your API tokens")
    command(tokens, "list", cmd_tokens_list, "your tokens (never their secrets)")
    command(tokens, "create", cmd_tokens_create, "a new token; its secret is printed once",
            (("--name",), {"required": True}), (("--expires-days",), {"type": int}))
    command(tokens, "revoke", cmd_tokens_revoke, "revoke a token", (("id",), {"type": int}))

    videos = group("videos", "upload, list, delete and retry videos")
    command(videos, "list", cmd_videos_list, "a project's videos", slug,
            (("--status",), {"help": "only videos in this status (uploaded, ingesting, ready, failed)"}))
    command(videos, "upload", cmd_videos_upload, "upload video files, one after another", slug,
            (("files",), {"nargs": "+", "metavar": "FILE"}),
            (("--wait",), {"action": "store_true", "help": "wait until each is ready or failed"}),
            (("--allow-duplicate",), {"action": "store_true", "help": "keep a file the project already has"}),
            wait_timeout)
    video_id = (("id",), {"type": int, "metavar": "VIDEO"})
    command(videos, "show", cmd_videos_show, "one video", slug, video_id)
    command(videos, "delete", cmd_videos_delete, "delete a video with its masklets (admin)", slug, video_id)
    command(videos, "retry", cmd_videos_retry, "ingest a failed video again", slug, video_id)

    masklets = group("masklets", "a video's objects")
    video = (("video",), {"type": int, "metavar": "VIDEO"})
    command(masklets, "list", cmd_masklets_list, "a video's masklets", slug, video)
    command(masklets, "create", cmd_masklets_create, "a new masklet", slug, video, (("--label",), {"required": True}))
    masklet = (("masklet",), {"type": int, "metavar": "MASKLET"})
    command(masklets, "submit", cmd_masklets_submit, "hand a masklet to review", slug, masklet)

    masks = group("masks", "a masklet's masks as COCO RLE")
    command(masks, "get", cmd_masks_get, "a masklet's stored masks", slug, masklet, (("--out",), {}))
    command(masks, "put", cmd_masks_put, 'write masks: FILE holds {"frames": [{"frame_index", "rle"}]} ("-": stdin)',
            slug, masklet, (("file",), {"metavar": "FILE"}))

    review = group("review", "review a submitted masklet (not one you worked on)")
    comment = (("--comment",), {"default": ""})
    command(review, "approve", cmd_review, "approve a masklet", slug, masklet, comment).set_defaults(
        verdict="approve", reason="")
    command(review, "send-back", cmd_review, "send a masklet back to its annotator", slug, masklet, comment,
            (("--reason",), {"required": True, "help": "a reason code from the review pick list"})).set_defaults(
        verdict="send_back")
    command(review, "reject", cmd_review, "reject a masklet for good (no clear boundary)", slug, masklet, comment,
            (("--reason",), {"default": "no_clear_boundary"})).set_defaults(verdict="reject")
    command(review, "list", cmd_reviews_list, "a project's reviews, newest first", slug,
            (("--verdict",), {"choices": ("satisfactory", "unsatisfactory")}), (("--masklet",), {"type": int}))

    command(commands, "export", cmd_export, "export a dataset: waits, downloads and unpacks it", slug,
                     (("--format",), {"required": True, "choices": EXPORT_FORMATS}),
                     (("--status",), {"help": "masklet statuses to include, comma-separated (default: approved)"}),
                     (("--split",), {"help": "only videos of this split"}),
                     (("--no-media",), {"action": "store_true", "help": "annotations only, without videos"}),
                     (("--out",), {"required": True, "help": "an empty or new folder"}), wait_timeout)
    command(commands, "import", cmd_import, "import a dataset (.zip or .json)", slug,
            (("--format",), {"required": True, "choices": EXPORT_FORMATS}), (("path",), {"metavar": "PATH"}),
            (("--status",), {"help": "status of the imported masklets"}),
            (("--no-wait",), {"action": "store_true", "help": "print the job and return at once"}), wait_timeout)

    jobs = group("jobs", "dataset export and import jobs")
    command(jobs, "list", cmd_jobs_list, "a project's dataset jobs", slug)

    models = group("models", "model versions and training runs")
    command(models, "list", cmd_models_list, "a project's model versions", slug)
    command(models, "register", cmd_models_register, "register a SAM 2 checkpoint (Meta's format)", slug,
            (("checkpoint",), {"metavar": "CHECKPOINT"}),
            (("--config",), {"required": True, "help": "SAM 2 config name, e.g. sam2.1_hiera_t"}),
            (("--name",), {}), (("--image-size",), {"type": int}))
    command(models, "promote", cmd_models_promote, "make a version the one that serves", slug,
            (("version",), {"metavar": "VERSION", "help": "id or name"}))
    command(models, "rollback", cmd_models_rollback, "serve the previous production version again", slug)
    command(models, "fetch", cmd_models_fetch, "have the server download one of Meta's SAM 2 checkpoints", slug,
            (("name",), {"metavar": "NAME", "help": "e.g. sam2.1_hiera_tiny"}),
            (("--promote",), {"action": "store_true", "help": "serve it once it is checked"}))
    command(models, "train", cmd_models_train, "start a training run", slug,
            (("--wait",), {"action": "store_true", "help": "wait until it ends"}),
            (("--param",), {"action": "append", "metavar": "NAME=VALUE", "help": "a training parameter"}),
            wait_timeout)
    command(models, "train-verifier", cmd_models_train_verifier, "train the mask quality verifier", slug)
    run = (("run",), {"type": int, "metavar": "RUN"})
    command(models, "runs", cmd_models_runs, "a project's training runs", slug)
    command(models, "run", cmd_models_run, "one training run", slug, run)
    command(models, "cancel", cmd_models_cancel, "cancel a training run", slug, run,
            (("--wait",), {"action": "store_true", "help": "wait until it has stopped"}), wait_timeout)

    auto = group("auto-masklets", "automatic masklet runs")
    command(auto, "list", cmd_auto_masklets_list, "a project's auto-masklet runs", slug)
    command(auto, "start", cmd_auto_masklets_start, "propose masklets on a video (admin)", slug, video,
            (("--frame",), {"type": int, "default": 0}), (("--points-per-side",), {"type": int}))
    webhooks = group("webhooks", "URLs told when a video is ready, an export ends or a training run ends (admin)")
    command(webhooks, "list", cmd_webhooks_list, "a project's webhooks", slug)
    command(webhooks, "add", cmd_webhooks_add, "a new webhook; its signing secret is printed once", slug,
            (("url",), {"metavar": "URL"}),
            (("--events",), {"required": True, "help": "comma-separated: video.ready, video.failed, "
                                                       "dataset_job.finished, training_run.finished"}))
    hook = (("id",), {"type": int, "metavar": "WEBHOOK"})
    command(webhooks, "delete", cmd_webhooks_delete, "delete a webhook", slug, hook)
    command(webhooks, "deliveries", cmd_webhooks_deliveries, "a webhook's deliveries and their outcome", slug, hook)
    command(commands, "effort", cmd_effort, "annotation effort metrics (admin)", slug)
    return parser


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (exits 2 with the usage when it is bad); ``--json`` counts wherever it is."""
    args = build_parser().parse_args(argv)
    args.json = getattr(args, "json", False)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    try:
        client = Client.from_env()
        args.function(client, args)
    except UsageError as error:
        info(f"masklet: error: {error}")
        return EXIT_USAGE
    except (MaskletConnectionError, WaitTimedOut) as error:
        info(f"masklet: error: {error}")
        return EXIT_CONNECTION
    except JobFailed as error:
        info(f"masklet: error: {error}")
        return EXIT_JOB_FAILED
    except MaskletError as error:
        info(f"masklet: error: {error}")
        if error.status is None:
            return EXIT_USAGE if error.code == "configuration" else EXIT_REFUSED
        return EXIT_SERVER if error.status >= 500 else EXIT_REFUSED
    except KeyboardInterrupt:
        info("masklet: interrupted")
        return 130
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
