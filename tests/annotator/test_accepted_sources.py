"""Imported masks are accepted human annotation: tracking leaves them alone and a rebuilt live session
uses them as prompts, exactly as it does masks a person drew here (``services.masks.ACCEPTED_SOURCES``)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from annotator import selectors
from annotator.models import MaskFrame, Masklet, MaskSource, Role, Video
from annotator.services import annotation
from annotator.services.masks import ACCEPTED_SOURCES, MaskWrite, save_mask_frames
from annotator.services.videos import create_video_from_path, ingest_video
from annotator.sessions import LiveSession
from engine.segmenters import ServingModel, get_segmenter
from segmentation.frames import JpegFolderFrames
from segmentation.masks import decode_rle, encode_rle

pytestmark = pytest.mark.django_db

H, W = 48, 64  # make_mp4's frames; 12 frames at 24 fps, annotated every 4th: 0, 4, 8


def square(x0: int, y0: int, size: int) -> dict:
    mask = np.zeros((H, W), bool)
    mask[y0:y0 + size, x0:x0 + size] = True
    return encode_rle(mask)


@pytest.fixture
def ann(make_user):
    return make_user("ann")


@pytest.fixture
def video(make_project, ann, make_mp4, isolated_files, tmp_path) -> Video:
    project = make_project(members={ann: Role.ANNOTATOR})
    make_mp4(tmp_path / "clip.mp4", frames=12)
    video = ingest_video(create_video_from_path(project, tmp_path / "clip.mp4", name="clip",
                                                schedule_ingest=False).id)
    assert video.status == Video.Status.READY, video.failure_reason
    return video


@pytest.fixture
def imported(video, ann) -> Masklet:
    """An imported masklet (masks on frames 0 and 4) that ann now corrects: draft, locked to ann."""
    masklet = Masklet.objects.create(video=video, object_id=1, status=Masklet.Status.DRAFT, lock_holder=ann,
                                     lock_expires_at=timezone.now() + timedelta(hours=1))
    save_mask_frames(masklet, [MaskWrite(0, square(4, 4, 10)), MaskWrite(4, square(8, 6, 12))],
                     source=MaskSource.IMPORTED)
    return masklet


def test_imported_and_human_are_the_accepted_sources():
    assert ACCEPTED_SOURCES == {MaskSource.HUMAN, MaskSource.IMPORTED}
    assert MaskSource.MODEL not in ACCEPTED_SOURCES


def test_tracking_never_overwrites_imported_masks_unless_asked(video, ann, imported):
    tracked = square(30, 20, 8)
    saved, skipped = annotation.save_tracked(video, ann, [(0, {1: tracked}), (4, {1: tracked}), (8, {1: tracked})])
    assert [(s.object_id, s.frame_index, s.source) for s in saved] == [(1, 8, MaskSource.MODEL)]
    assert skipped == [(1, 0), (1, 4)]
    kept = dict(MaskFrame.objects.filter(masklet=imported).values_list("frame_index", "rle_counts"))
    assert kept == {0: square(4, 4, 10)["counts"], 4: square(8, 6, 12)["counts"], 8: tracked["counts"]}
    # the model-made frame 8 is not protected; an explicit overwrite replaces the imported frame 4
    written = save_mask_frames(imported, [MaskWrite(8, square(0, 0, 4))], source=MaskSource.MODEL,
                               overwrite_human=False)
    assert [r.frame_index for r in written] == [8]
    saved, skipped = annotation.save_tracked(video, ann, [(4, {1: tracked})], overwrite_human=True)
    assert [(s.frame_index, s.source) for s in saved] == [(4, MaskSource.MODEL)] and skipped == []


def test_a_rebuilt_session_uses_imported_masks_as_prompts(video, ann, imported):
    other = Masklet.objects.create(video=video, object_id=2, status=Masklet.Status.DRAFT)
    save_mask_frames(other, [MaskWrite(0, square(40, 30, 6))], source=MaskSource.MODEL)  # model-made: no prompt
    save_mask_frames(other, [MaskWrite(8, square(40, 30, 5))], source=MaskSource.HUMAN, author=ann)
    assert selectors.human_masks(video, [1, 2]) == {
        1: [(0, square(4, 4, 10)), (4, square(8, 6, 12))],
        2: [(8, square(40, 30, 5))],
    }

    # a worker that lost the session rebuilds it from the database: the imported masks are its prompts
    serving = ServingModel(backend="classical")
    live = LiveSession(video, ann.pk, serving, get_segmenter(serving).open_session(JpegFolderFrames(video.frames_dir)))
    live.ensure_objects(video, {1: (imported.pk, None)})
    assert live.segmenter.object_ids == [1] and live.loaded == {1: (imported.pk, None)}
    assert live.segmenter.first_prompted_frame() == 0
    result = next(iter(live.segmenter.propagate(start_frame=1, max_frames=1)))
    np.testing.assert_array_equal(result.masks[1], decode_rle(square(8, 6, 12)))
