"""The masklet status transition table (annotator.masklet_status), tried over every (status, action):
declared pairs move the masklet through the real services, every other pair is refused in words and
leaves it as it was; and no module assigns a masklet status by itself."""

from __future__ import annotations

import itertools
import re
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.utils import timezone

from annotator.masklet_status import TRANSITIONS, MaskletAction, TransitionRefused, transition
from annotator.models import MaskFrame, Masklet, Review, Role, Video
from annotator.services import annotation, reviews
from annotator.services.annotation import EditRefused
from annotator.services.masks import MaskWrite, save_mask_frames
from segmentation.masks import encode_rle

PAIRS = list(itertools.product(Masklet.Status, MaskletAction))


@pytest.mark.parametrize("status, action", PAIRS, ids=[f"{s.value}-{a.value}" for s, a in PAIRS])
def test_the_table_moves_declared_pairs_and_refuses_the_rest(status, action):
    masklet = Masklet(status=status)
    if (status, action) in TRANSITIONS:
        assert transition(masklet, action) == TRANSITIONS[status, action] == masklet.status
    else:
        with pytest.raises(TransitionRefused, match=f"is {status.label.lower()}: it cannot be"):
            transition(masklet, action)
        assert masklet.status == status


def _act(masklet: Masklet, action: MaskletAction, annotator, reviewer) -> None:
    """Ask the service that performs ``action``, as someone allowed to."""
    if action == MaskletAction.SUBMIT:
        annotation.submit_masklet(masklet, annotator)
    elif action == MaskletAction.REOPEN:
        annotation.reopen_masklet(masklet, annotator)
    else:
        verdict = Review.Verdict.SATISFACTORY if action == MaskletAction.APPROVE else Review.Verdict.UNSATISFACTORY
        final = action == MaskletAction.DISCARD
        reviews.review_masklet(masklet, reviewer, verdict=verdict, final=final,
                               reason="no_clear_boundary" if final else "inaccurate_boundary")


@pytest.mark.django_db
def test_every_status_change_of_the_services_follows_the_table(make_user, make_project):
    ann, rev = make_user("status-ann"), make_user("status-rev")
    project = make_project(members={ann: Role.ANNOTATOR, rev: Role.REVIEWER})
    video = Video.objects.create(project=project, name="v", status=Video.Status.READY, frame_count=8, stride=4,
                                 height=12, width=16, fps=24)
    mask = np.zeros((12, 16), bool)
    mask[2:6, 3:9] = True
    for object_id, (status, action) in enumerate(PAIRS, start=1):
        held = status == Masklet.Status.DRAFT  # a draft is edited (and submitted) under its annotator's lock
        masklet = Masklet.objects.create(video=video, object_id=object_id, status=status, assignee=ann,
                                         lock_holder=ann if held else None,
                                         lock_expires_at=timezone.now() + timedelta(minutes=5) if held else None)
        save_mask_frames(masklet, [MaskWrite(0, encode_rle(mask))], source="human", author=ann)
        declared = TRANSITIONS.get((status, action))
        if declared is not None:
            _act(masklet, action, ann, rev)
            masklet.refresh_from_db()
            assert masklet.status == declared, (status, action)
            continue
        with pytest.raises(EditRefused) as refused:
            _act(masklet, action, ann, rev)
        assert refused.value.code == "read_only", (status, action, refused.value.message)
        assert refused.value.message, (status, action)
        masklet.refresh_from_db()
        assert masklet.status == status, (status, action)
    assert MaskFrame.objects.filter(masklet__video=video).count() == len(PAIRS)


def test_no_module_assigns_a_masklet_status_outside_the_table():
    """Like the URLconf walk of the permission table: a status set by hand would bypass the table."""
    assignment = re.compile(r"\.status\s*=\s*Masklet\.Status\.|update\([^)]*status\s*=\s*Masklet\.Status\.")
    root = Path(settings.BASE_DIR)
    offenders = [str(path.relative_to(root)) for app in ("annotator", "engine")
                 for path in (root / app).rglob("*.py")
                 if "migrations" not in path.parts and assignment.search(path.read_text())]
    assert offenders == []
