"""The one check of a COCO compressed RLE that came from outside (a file, a socket, a browser).

Every entry point (dataset import, the socket protocol, live sessions, stored edits) calls
``check_counts`` or ``valid_rle`` and turns ``RLEError`` into its own refusal, so a malformed
mask gets the same words everywhere. Decoding is pycocotools'; it raises for runs that go past
the mask but fills a mask the runs do not reach from uninitialised memory, so "covers exactly
n pixels" is checked as "decodes at n pixels and not at n - 1".
"""

from __future__ import annotations

import re

import numpy as np
from pycocotools import mask as mask_utils

from segmentation.masks import RLE, decode_rle, encode_rle

#: Compressed RLE writes each count in characters 48..111 ('0'..'o').
_COUNTS_TEXT = re.compile(r"[0-o]*")


class RLEError(ValueError):
    """A mask that is not a valid RLE of its size; the message is for people, ``field`` names the
    part at fault (``size`` or ``counts``, or ``""`` for the whole)."""

    def __init__(self, message: str, field: str = "counts"):
        super().__init__(message)
        self.field = field


def check_counts(counts: object) -> str:
    """``counts`` as text when it is written in compressed-RLE characters (size not yet known)."""
    if isinstance(counts, bytes):
        counts = counts.decode("latin-1")
    if not isinstance(counts, str):
        raise RLEError("RLE counts must be a string (compressed) or a list of non-negative ints")
    if not _COUNTS_TEXT.fullmatch(counts):
        raise RLEError("RLE counts must be a COCO compressed RLE string (characters 0 to o)")
    return counts


def check_size(size: object, max_pixels: int | None = None) -> tuple[int, int]:
    """``[height, width]`` as two positive ints, at most ``max_pixels`` pixels when given."""
    if not (isinstance(size, list | tuple) and len(size) == 2
            and all(isinstance(v, int | float) and not isinstance(v, bool) and v == int(v) for v in size)):
        raise RLEError(f"an RLE size is [height, width], got {size!r}", "size")
    height, width = int(size[0]), int(size[1])
    if height < 1 or width < 1:
        raise RLEError(f"an RLE size has a positive height and width, got {[height, width]}", "size")
    if max_pixels is not None and height * width > max_pixels:
        raise RLEError(f"an RLE of {width}x{height} is larger than the {max_pixels} pixels allowed", "size")
    return height, width


def decode_checked(counts: object, height: int, width: int) -> np.ndarray:
    """The (height, width) boolean mask of ``counts``; ``RLEError`` unless its runs cover exactly it."""
    text = check_counts(counts)
    try:
        mask = decode_rle({"size": [height, width], "counts": text})
    except ValueError:
        raise RLEError(f"RLE counts are malformed or cover more than the {width}x{height} mask") from None
    try:
        decode_rle({"size": [height * width - 1, 1], "counts": text})
    except ValueError:
        return mask  # the runs go past pixel n - 1 and stop at n: exactly the mask
    raise RLEError(f"RLE counts cover fewer pixels than the {width}x{height} mask")


def valid_rle(rle: object, height: int | None = None, width: int | None = None, *,
              max_pixels: int | None = None) -> RLE:
    """``rle`` as the canonical ``{"size": [H, W], "counts": str}`` pycocotools writes, or ``RLEError``.

    ``counts`` may be compressed (a string, as SA-V and this project store it) or uncompressed
    (a list of run lengths, COCO's other RLE form).
    ``height``/``width``: the size the mask must have (a video's). The result is what
    ``encode_rle`` gives for the decoded mask, so a stored mask always round-trips unchanged.
    """
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise RLEError("a mask must be a COCO RLE with 'size' and 'counts'", "")
    size = check_size(rle["size"], max_pixels)
    if height is not None and list(size) != [height, width]:
        raise RLEError(f"RLE size {list(size)} does not match the frame's {height}x{width} (height x width)",
                       "size")
    if isinstance(rle["counts"], list):
        return encode_rle(_decode_runs(rle["counts"], *size))
    return encode_rle(decode_checked(rle["counts"], *size))


def _decode_runs(runs: list, height: int, width: int) -> np.ndarray:
    """COCO's uncompressed RLE (counts a list of run lengths), checked to cover the mask exactly."""
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in runs):
        raise RLEError("RLE counts must be a string (compressed) or a list of non-negative ints")
    if sum(runs) != height * width:
        raise RLEError(f"RLE counts cover {sum(runs)} pixels, not {height * width}")
    return decode_rle(mask_utils.frPyObjects({"size": [height, width], "counts": runs}, height, width))
