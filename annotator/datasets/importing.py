"""Bringing datasets in: one video at a time, all or nothing, with errors that name the file and field.

A format's reader (``sav.read``, ``coco.read``, ...) checks the file's structure and returns one
``PendingVideo`` per video; ``import_videos`` then, for each video in turn:

1. finds the video: a ready video of the project with that name, else ``{name}.<ext>`` or a
   folder of frames ``{name}/`` in the video folder (DAVIS: the sequence's own JPEG folder),
   which is stored and ingested like any upload (a frame folder is first packed losslessly
   into an FFV1 Matroska file at ``fps``, so the original is a real video as everywhere else);
2. checks every mask against the real video: RLE size, frame index (an annotated frame of the
   project's stride), RLE counts that really cover height x width pixels;
3. writes masklets, masks (``save_mask_frames``, source ``imported``, with revisions) and each
   masklet's ``MaskletOrigin`` in ONE transaction.

Any error rolls that video back, and a video this import created is deleted with its files:
nothing is half-imported. Other videos of the same import carry on; the report lists failures.

Object ids are kept when they are free in the video. When a file's ids collide with existing
masklets (SA-V numbers manual and auto masklets from 0 in separate files), that file's ids are
all shifted past the largest id in use, keeping their order.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import cv2
from django.db import transaction
from pycocotools import mask as mask_utils

from annotator.datasets.common import DatasetError, Progress
from annotator.models import Masklet, MaskletOrigin, MaskSource, Project, Split, Video
from annotator.services.masks import MaskWrite, save_mask_frames
from annotator.services.videos import VIDEO_EXTENSIONS, VideoRejected, create_video_from_path, ingest_video
from engine.safe_paths import UnsafePath, check_name, safe_join
from segmentation.masks import rle_area
from segmentation.rle import RLEError, valid_rle

FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png")
#: Masklet status of imported masklets unless the caller says otherwise: they enter the review queue.
DEFAULT_STATUS = Masklet.Status.SUBMITTED


@dataclass
class ImportedObject:
    """One object of a source file: its masks keyed by frame (see ``ImportedVideo.keys``)."""

    file: str
    source_id: str
    object_id: int | None
    type: str
    label: str
    masks: dict[int, tuple[dict, str]]  # frame key -> (RLE {"size", "counts": str}, field for messages)
    edited_frame_count: int = 0
    stability_scores: list | None = None


@dataclass
class ImportedVideo:
    name: str
    file: str  # the file that named this video, for messages
    objects: list[ImportedObject]
    #: "native": keys are native frame numbers; "annotated": key i is the i-th annotated frame (SA-V).
    keys: str = "native"
    #: With ``keys="annotated"``: how many annotated frames the file has (to catch a stride mismatch).
    annotated_frames: int | None = None
    #: DAVIS annotates every frame: masks between the project's annotated frames are left out, not refused.
    skip_unannotated: bool = False
    frames_folder: Path | None = None
    environment: str = ""
    split: str = ""
    #: With ``keys="annotated"``: the native frames between annotated frames the file says it used (SA-V exports).
    stride: int | None = None
    #: A frame folder whose files are numbered every ``frame_step``-th frame (00000, 00004, ...: the
    #: annotated frames of an export): the suggested ``--fps`` divides by it.
    frame_step: int = 1
    warnings: list[str] = field(default_factory=list)


class PendingVideo(NamedTuple):
    """A video a reader found; ``load`` parses and checks its files (raising ``DatasetError``)."""

    name: str
    load: Callable[[], ImportedVideo]


@dataclass
class ImportReport:
    videos: int = 0
    created_videos: int = 0
    masklets: int = 0
    masks: int = 0
    skipped_masks: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"{self.videos} video(s) imported ({self.created_videos} new), {self.masklets} masklet(s), "
                f"{self.masks} mask(s)")
        if self.skipped_masks:
            text += f"; {self.skipped_masks} mask(s) on frames between the project's annotated frames left out"
        if self.errors:
            text += f"; {len(self.errors)} video(s) failed"
        return "\n".join([text, *(f"warning: {warning}" for warning in self.warnings)])


@dataclass(frozen=True)
class ImportOptions:
    video_dir: Path | None = None
    user: object = None
    status: str = DEFAULT_STATUS
    fps: float = 24.0  # frame rate given to videos built from frame folders (DAVIS and SA-V are 24 fps)
    format: str = ""


def import_videos(project: Project, pending: Iterable[PendingVideo], options: ImportOptions,
                  progress: Progress | None = None) -> ImportReport:
    """Import each video all or nothing; failures are collected in the report, others carry on."""
    pending = list(pending)
    report = ImportReport()
    for done, item in enumerate(pending, start=1):
        try:
            store_video(project, item.load(), options, report)
        except DatasetError as exc:
            report.errors.append(str(exc))
        except (UnsafePath, OSError) as exc:  # a file that cannot be read, a name that cannot be a file name
            report.errors.append(str(DatasetError(item.name, "", file_problem(exc))))
        if progress is not None:
            progress(done, len(pending))
    return report


def store_video(project: Project, item: ImportedVideo, options: ImportOptions, report: ImportReport) -> Video:
    """Find or create the video, check every mask against it, then write everything in one transaction."""
    check_video_fields(item)
    video, created = resolve_video(project, item, options)
    try:
        planned, skipped = _plan(video, item)
        with transaction.atomic():
            masks = 0
            for obj, object_id, writes in planned:
                masklet = Masklet.objects.create(video=video, object_id=object_id, label=obj.label, type=obj.type,
                                                 status=options.status)
                masks += len(save_mask_frames(masklet, writes, source=MaskSource.IMPORTED, author=options.user))
                MaskletOrigin.objects.create(masklet=masklet, format=options.format, source_file=Path(obj.file).name,
                                             source_id=obj.source_id, edited_frame_count=obj.edited_frame_count,
                                             stability_scores=obj.stability_scores)
            if created and (item.environment or item.split):
                Video.objects.filter(pk=video.pk).update(environment=item.environment[:32] or video.environment,
                                                         split=item.split or video.split)
    except BaseException:
        if created:
            delete_video(video)
        raise
    report.videos += 1
    report.created_videos += int(created)
    report.masklets += len(planned)
    report.masks += masks
    report.skipped_masks += skipped
    report.warnings.extend(f"{item.name}: {warning}" for warning in item.warnings)
    if skipped:
        report.warnings.append(skipped_warning(video, item, options, skipped, created))
    return video


def check_video_fields(item: ImportedVideo) -> None:
    """The name becomes a file name and the split one too (``{split}.txt``): both checked before anything is read."""
    try:
        check_name(item.name, "video name")
    except UnsafePath as exc:
        raise DatasetError(item.file, "video", str(exc)) from None
    if item.split and item.split not in Split.values:
        raise DatasetError(item.file, "video_split", f"unknown split {item.split[:40]!r}: choose "
                           f"{', '.join(Split.values)}")


def skipped_warning(video: Video, item: ImportedVideo, options: ImportOptions, skipped: int, created: bool) -> str:
    """Why masks were left out, and the ``--fps`` that keeps them (a video this import built from frames)."""
    total = sum(len(obj.masks) for obj in item.objects)
    text = (f"{skipped} of {total} masks are on frames the project does not annotate (video {video.name}: "
            f"{video.fps:g} fps, annotated {every(video.stride)})")
    if not created or not item.frames_folder:
        return text + "; they were left out"
    if item.frame_step > 1:
        suggested = options.fps / item.frame_step
        return (f"{text}: the frames were packed at --fps {options.fps:g}; import again with --fps {suggested:g} to "
                f"keep every mask (its frames are numbered every {item.frame_step} (the annotated frames of an "
                f"export), so they are {suggested:g} fps)")
    rate = video.project.annotation_fps
    return (f"{text}: the frames were packed at --fps {options.fps:g}; if they are really {rate:g} fps, import "
            f"again with --fps {rate:g} to keep every mask")


def file_problem(exc: OSError | UnsafePath) -> str:
    """An error on reading files, in words: which file (by name, never the server folder) and what."""
    if isinstance(exc, UnsafePath):
        return str(exc)
    name = Path(exc.filename).name if getattr(exc, "filename", None) else ""
    what = exc.strerror or str(exc) or exc.__class__.__name__
    return f"cannot read {name}: {what}" if name else f"cannot read a file: {what}"


def _plan(video: Video, item: ImportedVideo) -> tuple[list[tuple[ImportedObject, int, list[MaskWrite]]], int]:
    """Check every mask against the real video and choose object ids; nothing is written yet."""
    annotated = video.annotated_frame_indices()
    valid = set(annotated)
    expected_size = [video.height, video.width]
    taken = set(Masklet.objects.filter(video=video).values_list("object_id", flat=True))
    planned, skipped = [], 0
    shifts: dict[str, int] = {}
    if item.stride is not None and item.stride != video.stride:
        raise DatasetError(item.file, "video_annotation_stride", f"the file annotates {every(item.stride)}, "
                           f"but video {video.name} of this project {every(video.stride)}: import it into a project "
                           "with the same annotation frame rate")
    if item.keys == "annotated" and item.annotated_frames is not None and item.annotated_frames < len(annotated):
        # entry i is the i-th annotated frame: fewer entries than the video has means another stride
        raise DatasetError(item.file, "masklet", f"{item.annotated_frames} annotated frames, but video "
                           f"{video.name} has {len(annotated)} ({video.frame_count} frames, {every(video.stride)} "
                           "annotated): the file was annotated at another frame rate than the project's "
                           "(SA-V: 6 fps, every 4th frame at 24 fps)")
    for obj in item.objects:
        if obj.file not in shifts:
            wanted = {o.object_id for o in item.objects if o.file == obj.file and o.object_id is not None}
            shifts[obj.file] = max(taken) + 1 if wanted & taken else 0
        if obj.object_id is not None:
            object_id = obj.object_id + shifts[obj.file]
        else:
            object_id = max(taken, default=-1) + 1
        taken.add(object_id)
        writes = []
        for key, (rle, where) in sorted(obj.masks.items()):
            if item.keys == "annotated":
                if key >= len(annotated):
                    raise DatasetError(obj.file, where, f"unknown frame index: entry {key} is past the last of the "
                                       f"{len(annotated)} annotated frames of video {video.name} "
                                       f"({video.frame_count} frames, {every(video.stride)} annotated)")
                native = annotated[key]
            else:
                native = key
            if native not in valid:
                if item.skip_unannotated and 0 <= native < (video.frame_count or 0):
                    skipped += 1
                    continue
                raise DatasetError(obj.file, where, f"unknown frame index {native}: video {video.name} has "
                                   f"{video.frame_count} frames and annotates {every(video.stride)} "
                                   f"(0, {video.stride}, {2 * video.stride}, ...)")
            if list(rle["size"]) != expected_size:
                raise DatasetError(obj.file, where, f"RLE size {list(rle['size'])} does not match video "
                                   f"{video.name}, which is {video.height}x{video.width} (height x width)")
            writes.append(MaskWrite(native, rle))
        planned.append((obj, object_id, writes))
    return planned, skipped


def every(stride: int) -> str:
    """``every 4th`` frame, for messages (``every frame`` at stride 1)."""
    if stride == 1:
        return "every frame"
    suffix = "th" if 10 <= stride % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(stride % 10, "th")
    return f"every {stride}{suffix}"


# -- videos ---------------------------------------------------------------------------------


def resolve_video(project: Project, item: ImportedVideo, options: ImportOptions) -> tuple[Video, bool]:
    """The project's ready video named ``item.name``, or one created from a file or frame folder.

    Returns ``(video, created)``. A created video is ingested here (the import already runs on a
    worker or in the CLI); if ingest fails it is deleted and the reason raised.
    """
    video = Video.objects.filter(project=project, name=item.name).first()
    if video is not None:
        if video.status != Video.Status.READY:
            raise DatasetError(item.file, "video", f"video {item.name} of project {project.slug} is {video.status}, "
                               "not ready")
        return video, False
    source = find_video_source(item.name, options.video_dir) or item.frames_folder
    if source is None:
        where = (f"neither {item.name}.<ext> nor a frame folder {item.name}/ is in {options.video_dir}"
                 if options.video_dir else "give the folder holding it with --video-dir")
        raise DatasetError(item.file, "video", f"missing video {item.name!r}: project {project.slug} has no video "
                           f"of that name and {where}")
    with tempfile.TemporaryDirectory(prefix="masklet-import-") as scratch:
        path = encode_frame_folder(source, safe_join(scratch, f"{item.name}.mkv"), options.fps, item.file) \
            if source.is_dir() else source
        try:
            video = create_video_from_path(project, path, options.user, name=item.name, schedule_ingest=False)
        except VideoRejected as exc:
            raise DatasetError(item.file, "video", f"{source.name}: {'; '.join(exc.messages)}") from None
    video = ingest_video(video.id)
    if video.status != Video.Status.READY:
        reason = video.failure_reason
        delete_video(video)
        raise DatasetError(item.file, "video", f"{source.name}: {reason}")
    return video, True


def find_video_source(name: str, video_dir: Path | None) -> Path | None:
    """``{name}.<video ext>`` or a folder ``{name}/`` of frames in ``video_dir``, if there is one."""
    if video_dir is None:
        return None
    for extension in sorted(VIDEO_EXTENSIONS):
        candidate = safe_join(video_dir, f"{name}{extension}")
        if candidate.is_file():
            return candidate
    folder = safe_join(video_dir, name)
    return folder if folder.is_dir() else None


def encode_frame_folder(folder: Path, target: Path, fps: float, file: str) -> Path:
    """Pack a folder of frames (sorted by name, one per native frame) into a lossless FFV1 video."""
    frames = sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_EXTENSIONS)
    if not frames:
        raise DatasetError(file, "video", f"{folder.name}/ holds no frames (.jpg or .png)")
    first = cv2.imread(str(frames[0]))
    if first is None:
        raise DatasetError(file, "video", f"{folder.name}/{frames[0].name} is not a readable image")
    height, width = first.shape[:2]
    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"FFV1"), fps, (width, height))
    if not writer.isOpened():
        raise DatasetError(file, "video", "this OpenCV cannot write FFV1 video, so frame folders cannot be imported")
    try:
        for path in frames:
            frame = first if path == frames[0] else cv2.imread(str(path))
            if frame is None or frame.shape[:2] != (height, width):
                raise DatasetError(file, "video", f"{folder.name}/{path.name} is not a readable {width}x{height} "
                                   f"image like {frames[0].name}")
            writer.write(frame)
    finally:
        writer.release()
    return target


def delete_video(video: Video) -> None:
    """Remove a video this import created: its row (masklets cascade), original and frames."""
    video.frames.delete()
    if video.original:
        video.original.delete(save=False)
    video.delete()


def parse_json(file: Path) -> dict:
    """Read a dataset JSON file that must hold an object; errors name the file."""
    try:
        with file.open() as handle:
            data = json.load(handle)
    except json.JSONDecodeError as exc:
        raise DatasetError(file, "", f"malformed JSON: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(file, "", f"cannot read the file: {getattr(exc, 'strerror', None) or exc}") from None
    if not isinstance(data, dict):
        raise DatasetError(file, "", "expected a JSON object")
    return data


# -- masks -------------------------------------------------------------------------------------


def compressed_rle(segmentation: object, height: int, width: int, file: str, where: str) -> dict:
    """A segmentation as compressed RLE with str counts, checked to be a ``height`` x ``width`` mask.

    RLE (compressed or not) goes through ``segmentation.rle.valid_rle``, which gives the canonical
    string (a pycocotools-written one, as SA-V files hold, comes back unchanged); polygons (COCO's
    other form) are encoded with pycocotools.
    """
    if isinstance(segmentation, dict):
        try:
            return valid_rle(segmentation, height, width)
        except RLEError as error:
            raise DatasetError(file, f"{where}.{error.field}" if error.field else where, str(error)) from None
    if isinstance(segmentation, list) and segmentation and all(
            isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 for p in segmentation):
        return _as_str(mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width)))
    raise DatasetError(file, where, "a segmentation must be an RLE {size, counts} or a list of polygons")


def _as_str(rle: dict) -> dict:
    counts = rle["counts"]
    return {"size": [int(rle["size"][0]), int(rle["size"][1])],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def empty_mask(rle: dict) -> bool:
    """True for an RLE with no foreground pixel (not stored: a missing mask exports as EMPTY)."""
    return rle_area(rle) == 0


def frame_number(name: str) -> int | None:
    """The native frame number a frame file is named by (``00012.jpg`` -> 12), or None."""
    stem = Path(name).stem
    return int(stem) if stem.isdigit() else None
