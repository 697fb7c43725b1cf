"""Mask writes keep an append-only history, never overwrite a human edit unasked, and validate input."""

from __future__ import annotations

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from annotator.models import MaskFrame, MaskFrameRevision, Masklet, MaskSource, Project, Video
from annotator.services.masks import MaskWrite, restore_revision, save_mask_frames
from segmentation.masks import decode_rle, encode_rle

pytestmark = pytest.mark.django_db

H, W = 24, 32


@pytest.fixture
def masklet() -> Masklet:
    project = Project.objects.create(name="P", slug="p")
    video = Video.objects.create(project=project, name="v", status=Video.Status.READY, frame_count=20, stride=4,
                                 height=H, width=W, fps=24)
    return Masklet.objects.create(video=video, object_id=1)


def square(x0: int, y0: int, size: int) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[y0:y0 + size, x0:x0 + size] = True
    return mask


def test_writes_store_area_bbox_and_one_revision_per_change(masklet):
    written = save_mask_frames(masklet, [MaskWrite(0, encode_rle(square(2, 3, 5))),
                                         MaskWrite(4, encode_rle(square(6, 1, 4)))], source=MaskSource.MODEL)
    assert [(r.frame_index, r.revision) for r in written] == [(0, 1), (4, 1)]
    frame0 = MaskFrame.objects.get(masklet=masklet, frame_index=0)
    assert (frame0.area, frame0.bbox, frame0.revision) == (25, [2, 3, 5, 5], 1)
    save_mask_frames(masklet, [MaskWrite(0, encode_rle(square(2, 3, 6)))], source=MaskSource.HUMAN)
    frame0.refresh_from_db()
    assert (frame0.area, frame0.revision, frame0.source) == (36, 2, MaskSource.HUMAN)
    history = list(MaskFrameRevision.objects.filter(masklet=masklet, frame_index=0).values_list("revision", "area"))
    assert history == [(1, 25), (2, 36)]


def test_model_writes_skip_human_edits_unless_asked(masklet):
    user = get_user_model().objects.create_user("ann")
    save_mask_frames(masklet, [MaskWrite(8, encode_rle(square(0, 0, 3)))], source=MaskSource.HUMAN, author=user)
    written = save_mask_frames(masklet, [MaskWrite(8, encode_rle(square(10, 10, 8))),
                                         MaskWrite(12, encode_rle(square(10, 10, 8)))],
                               source=MaskSource.MODEL, overwrite_human=False)
    assert [r.frame_index for r in written] == [12]
    kept = MaskFrame.objects.get(masklet=masklet, frame_index=8)
    assert (kept.area, kept.source, kept.updated_by) == (9, MaskSource.HUMAN, user)
    save_mask_frames(masklet, [MaskWrite(8, encode_rle(square(10, 10, 8)))], source=MaskSource.MODEL)
    assert MaskFrame.objects.get(masklet=masklet, frame_index=8).area == 64


def test_restore_makes_an_old_revision_current_as_a_new_revision(masklet):
    first = square(1, 1, 4)
    save_mask_frames(masklet, [MaskWrite(0, encode_rle(first))], source=MaskSource.MODEL)
    save_mask_frames(masklet, [MaskWrite(0, encode_rle(square(5, 5, 9)))], source=MaskSource.HUMAN)
    restored = restore_revision(masklet, 0, 1)
    assert restored.revision == 3 and restored.source == MaskSource.MODEL
    current = MaskFrame.objects.get(masklet=masklet, frame_index=0)
    assert (current.revision, current.source, current.rle_counts) == (3, MaskSource.MODEL, restored.rle_counts)
    rle = {"size": [H, W], "counts": restored.rle_counts}
    assert np.array_equal(decode_rle(rle), first)
    assert MaskFrameRevision.objects.filter(masklet=masklet, frame_index=0).count() == 3
    with pytest.raises(ValidationError, match="no revision 7 of frame 0"):
        restore_revision(masklet, 0, 7)


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (MaskWrite(0, encode_rle(np.zeros((H + 1, W), bool))), "is not the video size"),
        (MaskWrite(2, encode_rle(square(0, 0, 2))), "frame 2 is not an annotated frame"),
        (MaskWrite(0, {"counts": "abc"}), "must be a COCO RLE"),
    ],
    ids=["wrong-size", "not-annotated-frame", "not-rle"],
)
def test_bad_writes_are_refused_and_store_nothing(masklet, write, message):
    save_mask_frames(masklet, [MaskWrite(4, encode_rle(square(0, 0, 2)))], source=MaskSource.MODEL)
    with pytest.raises(ValidationError, match=message):
        save_mask_frames(masklet, [MaskWrite(8, encode_rle(square(0, 0, 3))), write], source=MaskSource.MODEL)
    assert list(MaskFrame.objects.values_list("frame_index", flat=True)) == [4]
    assert MaskFrameRevision.objects.count() == 1
