"""Which frames of an object a person has looked at: the radar's jump key goes to the lowest-scored
frame nobody has seen yet (``annotator.selectors.seen_frames`` reads it back).

The annotation page reports the frames it showed for the selected object (after a short dwell, not
while playing); edited frames count as seen through their prompts, so nothing is written for them.
"""

from __future__ import annotations

from annotator.models import Masklet, SeenFrame, Video
from annotator.permissions import Action, User, has_permission
from annotator.services.annotation import EditRefused


def mark_seen(video: Video, user: User, object_id: int, frames: list[int]) -> int:
    """Record that ``user`` looked at ``object_id`` on ``frames`` (native, annotated); returns how many
    frames were new. The first look is kept; looking again changes nothing."""
    if not has_permission(user, video.project, Action.VIEW_PROJECT):
        raise EditRefused("forbidden", "You are not a member of this project.")
    masklet = Masklet.objects.filter(video=video, object_id=object_id).first()
    if masklet is None:
        raise EditRefused("not_found", f"Object {object_id} does not exist in this video.")
    annotated = set(video.annotated_frame_indices())
    wrong = [frame for frame in frames if frame not in annotated]
    if wrong:
        raise EditRefused("bad_message", f"Frame {wrong[0]} is not one of this video's annotated frames.")
    before = SeenFrame.objects.filter(masklet=masklet).count()
    SeenFrame.objects.bulk_create([SeenFrame(masklet=masklet, frame_index=frame, user=user) for frame in set(frames)],
                                  ignore_conflicts=True)
    return SeenFrame.objects.filter(masklet=masklet).count() - before
