"""Ingest: files in, stride-sampled JPEG frames out; every bad input ends failed or refused, with a reason.

Videos are generated with ``fixtures.synthetic`` (tiny: 160x96, 24 frames) so the suite stays fast;
the real clips in ``../shared/data/videos`` are ingested too when present. Nothing is mocked: real
files, real OpenCV decode, the real database of the run (SQLite or PostgreSQL).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from annotator.models import MaskFrame, Masklet, MaskSource, Membership, Project, Role, Video
from annotator.services.videos import (
    VideoInvalid,
    VideoRejected,
    annotation_stride,
    create_video_from_path,
    create_video_from_upload,
    ingest_video,
    probe_video,
)
from fixtures.synthetic import PRESETS, SyntheticFrames, object_labels, render_frame, write_video
from segmentation.masks import decode_rle

pytestmark = pytest.mark.django_db

TINY = PRESETS["tiny"]  # 160x96, 24 frames at 24 fps
SHARED_VIDEOS = Path(os.environ.get("MASKLET_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
SHARED_VIDEOS = SHARED_VIDEOS / "videos"
REAL_VIDEOS = sorted(p.name for p in SHARED_VIDEOS.glob("*.mp4")) if SHARED_VIDEOS.is_dir() else []


@pytest.fixture(autouse=True)
def storage(settings, tmp_path: Path) -> Path:
    """Per-test MEDIA_ROOT / FRAMES_ROOT / DATA_DIR, so tests never touch var/ or each other."""
    settings.DATA_DIR = tmp_path / "data"
    settings.MEDIA_ROOT = tmp_path / "data" / "media"
    settings.FRAMES_ROOT = tmp_path / "data" / "frames"
    settings.DATA_DIR.mkdir()
    return tmp_path


@pytest.fixture(scope="session")
def videos(tmp_path_factory) -> Path:
    """Generated once per session: tiny at 24 fps and at 30 fps, and a tiny MJPG AVI."""
    folder = tmp_path_factory.mktemp("videos")
    write_video(TINY, folder / "tiny24.mp4")
    write_video(replace(TINY, fps=30.0, num_frames=30), folder / "tiny30.mp4")
    write_video(TINY, folder / "tiny24.avi", fourcc="MJPG")
    return folder


def frames_root_entries(settings) -> list[str]:
    root = Path(settings.FRAMES_ROOT)
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def decode_all(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame.astype(np.int16))


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def ingest_path(project: Project, path: Path, **kwargs) -> Video:
    video = create_video_from_path(project, path, schedule_ingest=False, **kwargs)
    ingest_video(video.id)
    video.refresh_from_db()
    return video


def assert_failed_cleanly(video: Video, settings, reason_part: str) -> None:
    video.refresh_from_db()
    assert video.status == Video.Status.FAILED
    assert reason_part in video.failure_reason
    assert "Traceback" not in video.failure_reason and "\n" not in video.failure_reason
    # No half-written frames folder and no leftover temporary folder.
    assert not video.frames_dir.exists()
    assert frames_root_entries(settings) == []


# -- the good path -------------------------------------------------------------------------


@pytest.mark.parametrize(("fps", "annotation_fps", "stride"), [
    (24, 6, 4), (23.976, 6, 4), (25, 6, 4), (29.97, 6, 5), (30, 6, 5), (60, 6, 10), (5, 6, 1), (24, 24, 1),
])
def test_stride_rounds_fps_over_annotation_fps(fps, annotation_fps, stride):
    assert annotation_stride(fps, annotation_fps) == stride


def test_ingest_writes_every_stride_th_frame_with_native_names(project, videos, settings):
    video = ingest_path(project, videos / "tiny24.mp4")

    assert video.status == Video.Status.READY, video.failure_reason
    assert (video.fps, video.frame_count, video.width, video.height) == (24.0, 24, 160, 96)
    assert video.duration == pytest.approx(1.0)
    assert video.stride == 4
    assert video.annotated_frame_count == 6
    assert video.progress == 1.0 and video.failure_reason == ""
    names = sorted(p.name for p in video.frames_dir.iterdir())
    assert names == ["00000.jpg", "00004.jpg", "00008.jpg", "00012.jpg", "00016.jpg", "00020.jpg"]
    assert names == [f"{i:05d}.jpg" for i in video.annotated_frame_indices()]
    assert frames_root_entries(settings) == [str(video.id)]  # no temporary folders left


def test_ingested_frames_are_the_source_frames_at_those_indices(project, videos):
    video = ingest_path(project, videos / "tiny24.mp4")
    source = decode_all(videos / "tiny24.mp4")
    assert len(source) == video.frame_count
    for index in video.annotated_frame_indices():
        jpeg = cv2.imread(str(video.frames_dir / f"{index:05d}.jpg"))
        assert jpeg.shape == (96, 160, 3)
        here = mean_abs_diff(jpeg, source[index])
        assert here < 3.0  # JPEG quality 90 of the same frame
        # ... and it is that frame, not a neighbour (the scene moves every frame).
        for other in (index - 1, index + 1):
            if 0 <= other < len(source):
                assert here < mean_abs_diff(jpeg, source[other])
        # The ground truth rendering agrees too (mp4v + JPEG are lossy, so loosely).
        truth_bgr = cv2.cvtColor(render_frame(TINY, index)[0], cv2.COLOR_RGB2BGR)
        assert mean_abs_diff(jpeg, truth_bgr) < 8.0


def test_progress_is_reported_while_decoding(project, videos):
    video = create_video_from_path(project, videos / "tiny24.mp4", schedule_ingest=False)
    seen: list[tuple[int, int]] = []
    ingest_video(video.id, progress_callback=lambda decoded, expected: seen.append((decoded, expected)))
    assert seen == [(n, 24) for n in range(1, 25)]


def test_30_fps_video_is_sampled_every_5th_frame(project, videos):
    video = ingest_path(project, videos / "tiny30.mp4")
    assert (video.status, video.fps, video.frame_count, video.stride) == (Video.Status.READY, 30.0, 30, 5)
    assert sorted(p.name for p in video.frames_dir.iterdir()) == [f"{i:05d}.jpg" for i in range(0, 30, 5)]


def test_avi_container_is_accepted(project, videos):
    video = ingest_path(project, videos / "tiny24.avi")
    assert (video.status, video.frame_count, video.stride) == (Video.Status.READY, 24, 4)


def test_reingest_replaces_the_frames_atomically(project, videos, settings):
    video = ingest_path(project, videos / "tiny24.mp4")
    assert video.annotated_frame_count == 6
    project.annotation_fps = 12  # stride 2 now
    project.save()
    ingest_video(video.id)
    video.refresh_from_db()
    assert (video.status, video.stride, video.annotated_frame_count) == (Video.Status.READY, 2, 12)
    # Exactly the new set: nothing of the old folder mixed in, no temporary or old folders left.
    assert sorted(p.name for p in video.frames_dir.iterdir()) == [f"{i:05d}.jpg" for i in range(0, 24, 2)]
    assert frames_root_entries(settings) == [str(video.id)]


def test_ingest_removes_what_a_killed_worker_left_behind(project, videos, settings):
    video = create_video_from_path(project, videos / "tiny24.mp4", schedule_ingest=False)
    root = Path(settings.FRAMES_ROOT)
    stale, live, other = root / f".ingest-{video.id}-dead", root / f".ingest-{video.id}-live", root / ".ingest-999-x"
    for folder in (stale, live, other):
        folder.mkdir(parents=True)
        (folder / "00000.jpg").write_text("partial")
    os.utime(stale, (0, 0))
    os.utime(other, (0, 0))
    ingest_video(video.id)
    # Only this video's stale folder goes; a recent one may belong to a running ingest.
    assert sorted(p.name for p in root.iterdir()) == sorted([str(video.id), live.name, other.name])


def test_probe_reports_the_container_and_codec(videos):
    info = probe_video(videos / "tiny24.mp4")
    assert (info.container, info.codec, info.fps, info.frame_count, info.width, info.height) == (
        "MP4/QuickTime", "FMP4", 24.0, 24, 160, 96)  # OpenCV names mpeg4 part 2 FMP4


# -- creating videos: storage, names, scheduling ---------------------------------------------


def test_upload_is_stored_under_a_generated_name_and_ingest_is_scheduled_on_commit(
        project, user, videos, settings, django_capture_on_commit_callbacks):
    upload = SimpleUploadedFile("../../../etc/evil clip.mp4", (videos / "tiny24.mp4").read_bytes(), "video/mp4")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        video = create_video_from_upload(project, upload, user)
    assert len(callbacks) == 1  # the ingest, submitted only once the row is committed
    assert video.status == Video.Status.UPLOADED and video.uploaded_by == user
    assert video.name == "evil_clip"
    stored = Path(video.original.path).resolve()
    assert stored.is_relative_to(Path(settings.MEDIA_ROOT).resolve())
    assert "evil" not in stored.name and stored.suffix == ".mp4"
    assert stored.read_bytes() == (videos / "tiny24.mp4").read_bytes()
    assert video.file_size == stored.stat().st_size


@pytest.mark.parametrize(("client_name", "expected"), [
    ("..\\..\\Windows\\clip.mp4", "clip"),
    ("C:\\Users\\me\\My Video.MOV", "My_Video"),
    ("/etc/passwd", "passwd"),
    ("...", "video"),
    ("%02d.mp4", "02d"),
])
def test_client_file_names_only_give_a_sanitised_video_name(project, user, videos, client_name, expected):
    upload = SimpleUploadedFile(client_name, (videos / "tiny24.mp4").read_bytes())
    video = create_video_from_upload(project, upload, user)
    assert video.name == expected
    assert Path(video.original.path).parent.parent.parent == Path(video.original.storage.location) / "videos"


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".hidden", " ", "a\\b", "x" * 300, "/etc/passwd", "a\x00b",
                                  "a\nb"])
def test_an_explicit_name_with_path_parts_is_refused_and_nothing_stored(project, user, videos, settings, name):
    upload = SimpleUploadedFile("clip.mp4", (videos / "tiny24.mp4").read_bytes())
    with pytest.raises(VideoRejected, match="invalid video name"):
        create_video_from_upload(project, upload, user, name=name)
    assert Video.objects.count() == 0
    assert not Path(settings.MEDIA_ROOT).exists() or not any(p.is_file() for p in Path(settings.MEDIA_ROOT).rglob("*"))


def test_names_are_made_unique_within_the_project(project, make_project, videos):
    first = create_video_from_path(project, videos / "tiny24.mp4", schedule_ingest=False)
    second = create_video_from_path(project, videos / "tiny24.mp4", schedule_ingest=False)
    third = create_video_from_path(project, videos / "tiny24.mp4", schedule_ingest=False)
    elsewhere = create_video_from_path(make_project(), videos / "tiny24.mp4", schedule_ingest=False)
    assert [first.name, second.name, third.name, elsewhere.name] == ["tiny24", "tiny24-2", "tiny24-3", "tiny24"]
    assert len({first.original.name, second.original.name, third.original.name}) == 3


def test_path_must_be_an_existing_regular_file(project, tmp_path, settings):
    with pytest.raises(VideoRejected, match="no such file"):
        create_video_from_path(project, tmp_path / "missing.mp4")
    with pytest.raises(VideoRejected, match="not a regular file"):
        create_video_from_path(project, tmp_path)
    with pytest.raises(VideoRejected, match="not a regular file"):
        create_video_from_path(project, "/dev/null")
    assert Video.objects.count() == 0


def test_a_symlink_to_a_video_is_imported_under_the_link_target(project, videos, tmp_path):
    link = tmp_path / "link.mp4"
    link.symlink_to(videos / "tiny24.mp4")
    video = create_video_from_path(project, link, schedule_ingest=False)
    assert video.name == "tiny24" and Path(video.original.path).stat().st_size == video.file_size


# -- every bad input -------------------------------------------------------------------------


def test_too_large_a_file_is_refused_before_anything_is_stored(project, user, videos, settings):
    settings.MAX_UPLOAD_BYTES = 1000
    upload = SimpleUploadedFile("clip.mp4", (videos / "tiny24.mp4").read_bytes())
    with pytest.raises(VideoRejected, match="larger than the limit"):
        create_video_from_upload(project, upload, user)
    with pytest.raises(VideoRejected, match=r"tiny24\.mp4: the file is .* larger than the limit"):
        create_video_from_path(project, videos / "tiny24.mp4")
    assert Video.objects.count() == 0
    assert not Path(settings.MEDIA_ROOT).exists() or not any(p.is_file() for p in Path(settings.MEDIA_ROOT).rglob("*"))


def test_an_empty_file_is_refused(project, user, tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(VideoRejected, match="the file is empty"):
        create_video_from_upload(project, SimpleUploadedFile("empty.mp4", b""), user)
    with pytest.raises(VideoRejected, match="the file is empty"):
        create_video_from_path(project, tmp_path / "empty.mp4")
    assert Video.objects.count() == 0


@pytest.mark.parametrize(("content", "reason"), [
    (bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8)), "not a video file"),
    (b"just some notes, renamed to .mp4\n" * 100, "not a video file"),
    (b"\x00\x00\x00\x18ftypisom" + bytes(5000), "not a video file: the container could not be opened"),
    (b"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:10,\nhttp://127.0.0.1:1/x.ts\n", "not a video file"),
])
def test_not_a_video_ends_failed_with_a_reason(project, tmp_path, settings, content, reason):
    path = tmp_path / "upload.mp4"
    path.write_bytes(content)
    video = ingest_path(project, path)
    assert_failed_cleanly(video, settings, reason)


def test_an_image_is_not_a_video(project, tmp_path, settings):
    path = tmp_path / "still.mp4"
    cv2.imwrite(str(tmp_path / "still.png"), np.zeros((32, 32, 3), np.uint8))
    path.write_bytes((tmp_path / "still.png").read_bytes())
    assert_failed_cleanly(ingest_path(project, path), settings, "not a video file")


def test_mp4_cut_in_half_ends_failed(project, videos, tmp_path, settings):
    data = (videos / "tiny24.mp4").read_bytes()
    (tmp_path / "half.mp4").write_bytes(data[: len(data) // 2])
    # mp4v files keep their index (moov) at the end: half a file cannot even be opened.
    assert_failed_cleanly(ingest_path(project, tmp_path / "half.mp4"), settings, "truncated or corrupt")


def test_truncated_stream_that_still_opens_ends_failed(project, videos, tmp_path, settings):
    data = (videos / "tiny24.avi").read_bytes()
    (tmp_path / "half.avi").write_bytes(data[: len(data) // 2])
    # The header claims 24 frames; about half decode. The decode is what we trust.
    video = ingest_path(project, tmp_path / "half.avi")
    assert_failed_cleanly(video, settings, "the video is truncated or corrupt: only")
    assert "of 24 frames could be decoded" in video.failure_reason


def test_a_container_with_zero_frames_ends_failed(project, tmp_path, settings):
    writer = cv2.VideoWriter(str(tmp_path / "zero.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 24, (64, 48))
    writer.release()
    assert_failed_cleanly(ingest_path(project, tmp_path / "zero.avi"), settings, "the video has no frames")


def test_a_stored_file_that_became_empty_or_vanished_ends_failed(project, videos, settings):
    video = create_video_from_path(project, videos / "tiny24.mp4", schedule_ingest=False)
    Path(video.original.path).write_bytes(b"")
    ingest_video(video.id)
    assert_failed_cleanly(video, settings, "the video has no frames")
    Path(video.original.path).unlink()
    ingest_video(video.id)
    assert_failed_cleanly(video, settings, "missing from storage")


def test_too_many_pixels_ends_failed(project, videos, settings):
    settings.MAX_VIDEO_PIXELS = 100 * 90
    video = ingest_path(project, videos / "tiny24.mp4")
    assert_failed_cleanly(video, settings, "frame size 160x96 exceeds the limit of 9,000 pixels")


def test_too_long_ends_failed(project, videos, settings):
    settings.MAX_VIDEO_DURATION_S = 0.5
    video = ingest_path(project, videos / "tiny24.mp4")
    assert_failed_cleanly(video, settings, "the video is 1.0 s long, longer than the limit of 0.5 s")


def test_a_failed_reingest_keeps_the_worker_and_reports(project, videos, settings):
    """A ready video whose file is later corrupted fails on re-ingest without raising."""
    video = ingest_path(project, videos / "tiny24.mp4")
    Path(video.original.path).write_bytes(b"garbage" * 100)
    result = ingest_video(video.id)  # does not raise
    assert result.status == Video.Status.FAILED and "not a video file" in result.failure_reason
    assert [p.name for p in Path(settings.FRAMES_ROOT).iterdir() if p.name.startswith(".")] == []


# -- real videos ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", REAL_VIDEOS or ["(none)"])
def test_real_videos_ingest_at_the_sa_v_stride(project, shared_videos, name):
    path = shared_videos / name
    if not path.exists():
        pytest.skip(f"{path} is not on this machine")
    capture = cv2.VideoCapture(str(path))
    fps, claimed = capture.get(cv2.CAP_PROP_FPS), int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    video = ingest_path(project, path)
    assert video.status == Video.Status.READY, video.failure_reason
    assert video.fps == pytest.approx(fps)
    expected_stride = 4 if abs(fps - 24) < 0.1 else 5  # 24 fps -> 4; 29.97 / 30 fps -> 5
    assert video.stride == expected_stride
    assert video.frame_count == claimed  # these mp4s carry exact counts; the decode agrees
    names = sorted(p.name for p in video.frames_dir.iterdir())
    assert names == [f"{i:05d}.jpg" for i in range(0, video.frame_count, expected_stride)]
    assert video.annotated_frame_count == len(names)
    first = cv2.imread(str(video.frames_dir / names[1]))
    assert first.shape == (video.height, video.width, 3)


# -- management commands -----------------------------------------------------------------


def test_import_video_ingests_each_file_and_names_the_bad_ones(project, videos, tmp_path, capsys):
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(CommandError) as failure:
        call_command("import_video", "--project", project.slug, "--sync", str(videos / "tiny24.mp4"),
                     str(tmp_path / "missing.mp4"), str(tmp_path / "notes.mp4"), str(videos / "tiny30.mp4"))
    message = str(failure.value)
    assert "2 of 4 file(s) failed" in message
    assert "missing.mp4: no such file" in message and "notes.mp4: not a video file" in message
    ready = Video.objects.filter(project=project, status=Video.Status.READY).order_by("name")
    assert [(v.name, v.stride) for v in ready] == [("tiny24", 4), ("tiny30", 5)]
    assert Video.objects.get(name="notes").status == Video.Status.FAILED
    assert "tiny24.mp4: ready" in capsys.readouterr().out


def test_import_video_refuses_an_unknown_project(project, videos):
    with pytest.raises(CommandError, match="unknown project 'nope'"):
        call_command("import_video", "--project", "nope", str(videos / "tiny24.mp4"))
    assert Video.objects.count() == 0


def test_import_video_with_a_name_and_user(project, user, videos):
    call_command("import_video", "--project", project.slug, "--sync", "--name", "sav_000001",
                 "--user", user.username, str(videos / "tiny24.mp4"))
    video = Video.objects.get()
    assert (video.name, video.uploaded_by, video.status) == ("sav_000001", user, Video.Status.READY)
    with pytest.raises(CommandError, match="unknown user"):
        call_command("import_video", "--project", project.slug, "--user", "ghost", str(videos / "tiny24.mp4"))


def test_seed_demo_is_idempotent(make_user, settings):
    admin = make_user("root", superuser=True)
    make_user("someone")
    call_command("seed_demo", "--preset", "tiny", "--videos", "2", verbosity=0)
    project = Project.objects.get(slug="demo")
    videos = list(project.videos.order_by("name"))
    assert [v.name for v in videos] == ["demo_01", "demo_02"]
    assert all(v.status == Video.Status.READY and v.stride == 4 and v.frames_dir.is_dir() for v in videos)
    assert set(project.labels) == set(object_labels(PRESETS["tiny"]).values())
    assert list(Membership.objects.values_list("user__username", "role")) == [("root", Role.ADMIN)]
    stored = sorted(p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file())
    frame_dirs = [(v.id, sorted(v.frames_dir.iterdir())) for v in videos]
    # The last video comes annotated with its exact ground truth; the first is left to annotate.
    assert not videos[0].masklets.exists()
    spec = replace(PRESETS["tiny"], seed=2, name="demo_02")
    masklets = list(videos[1].masklets.order_by("object_id"))
    assert {m.object_id: m.label for m in masklets} == object_labels(spec)
    assert {m.status for m in masklets} == {Masklet.Status.APPROVED}
    frames = SyntheticFrames(spec, stride=4)
    for masklet in masklets:
        stored_masks = {f.frame_index: f for f in masklet.frames.all()}
        for position, native in enumerate(videos[1].annotated_frame_indices()):
            truth = frames.masks(position).get(masklet.object_id)
            if truth is None or not truth.any():
                assert native not in stored_masks
            else:
                mask = decode_rle({"size": [spec.height, spec.width], "counts": stored_masks[native].rle_counts})
                assert np.array_equal(mask, truth) and stored_masks[native].source == MaskSource.IMPORTED
    mask_rows = MaskFrame.objects.count()

    call_command("seed_demo", "--preset", "tiny", "--videos", "2", verbosity=0)
    assert MaskFrame.objects.count() == mask_rows
    assert Project.objects.filter(slug="demo").count() == 1
    assert list(project.videos.order_by("name")) == videos
    assert sorted(p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()) == stored
    assert [(v.id, sorted(v.frames_dir.iterdir())) for v in videos] == frame_dirs
    assert Membership.objects.filter(user=admin).count() == 1


def test_seed_demo_finishes_a_video_an_interrupted_run_left_behind(make_user, settings):
    call_command("seed_demo", "--preset", "tiny", "--videos", "1", verbosity=0)
    video = Video.objects.get()
    Video.objects.filter(pk=video.pk).update(status=Video.Status.INGESTING)
    call_command("seed_demo", "--preset", "tiny", "--videos", "1", verbosity=0)
    video.refresh_from_db()
    assert video.status == Video.Status.READY and Video.objects.count() == 1


def test_probe_errors_are_video_invalid(tmp_path):
    (tmp_path / "x.mp4").write_bytes(b"nonsense" * 10)
    with pytest.raises(VideoInvalid, match="not a video file"):
        probe_video(tmp_path / "x.mp4")
