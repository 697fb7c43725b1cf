"""Mask quality scores: how likely a propagated mask is right, in [0, 1], from what a backend knows.

Each backend rates every mask it propagates (``FrameResult.quality``); the score is stored with
the mask frame so people look at the frames most likely wrong first (the "quality radar"), and its
named signals (``FrameQuality.features``) are what a project's learned verifier trains on.
"""

from __future__ import annotations

import math

from segmentation.segmenter import FrameQuality

#: The classical backend's per-frame signals (``ClassicalSession._signals``), each about the mask
#: carried from the frame before into this one.
SIGNALS = ("presence", "flow_agreement", "area_change", "fb_error", "edge_agreement", "separation")
#: Area change between neighbouring frames (log units) at which that signal falls to 1/e.
AREA_CHANGE_SCALE = 0.25


def _clip(value: float) -> float:
    return min(1.0, max(0.0, float(value)))


def classical_quality(signals: dict[str, float]) -> FrameQuality:
    """The classical backend's score: its weakest signal, each mapped to [0, 1] (1 = looks right).

    - ``separation``: share of the mask with the object's colours (the anchor frame's colour model)
      minus that share in a ring around it; doubled, so a mask at least half better than its
      surroundings counts as fully separated. A mask that does not stand out from what surrounds
      it in the object's own colours has leaked into background or lost part of the object.
    - ``presence``: how much of the mask still has the object's colours, relative to the anchor.
    - ``1 - fb_error``: share of the mask's pixels whose forward and backward flow agree.
    - ``flow_agreement``: IoU of the flow-warped previous mask and this one (GrabCut changed
      little): disagreement means the flow or the cut went somewhere else.
    - ``exp(-area_change / AREA_CHANGE_SCALE)``: the area jumped between neighbouring frames.

    The minimum, not a weighted mean: any one signal failing is reason enough to look, and there
    are no weights to fit (measured in bench/README.md "Quality radar"). Boundary-edge agreement is
    kept as a feature for the learned verifier but not in the minimum: on DAVIS dev it barely moved
    between right and wrong masks. A frame whose object was lost (empty mask) has presence 0.
    """
    score = min(
        _clip(2.0 * signals["separation"]),
        _clip(signals["presence"]),
        _clip(1.0 - signals["fb_error"]),
        _clip(signals["flow_agreement"]),
        math.exp(-max(0.0, signals["area_change"]) / AREA_CHANGE_SCALE),
    )
    return FrameQuality(round(score, 4), {key: round(float(value), 4) for key, value in signals.items()})


def carried(previous: FrameQuality) -> FrameQuality:
    """A frame where the object stays lost: nothing new was seen, the rating at the loss stands."""
    return FrameQuality(previous.score, {**previous.features, "lost": 1.0})
