"""The one RLE check (segmentation.rle): valid masks round-trip unchanged, malformed ones are refused
with the same words by every entry point that takes a mask from outside (property-based)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from annotator import sessions
from annotator.datasets.common import DatasetError
from annotator.datasets.importing import compressed_rle
from engine import protocol
from segmentation.masks import encode_rle
from segmentation.rle import RLEError, check_counts, decode_checked, valid_rle

PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, database=None)

masks = st.tuples(st.integers(1, 12), st.integers(1, 12)).flatmap(
    lambda shape: arrays(bool, shape, elements=st.booleans()))


@PROPERTY
@given(masks)
def test_a_valid_rle_round_trips_unchanged(mask):
    rle = encode_rle(mask)
    height, width = mask.shape
    assert valid_rle(rle, height, width) == rle
    assert np.array_equal(decode_checked(rle["counts"], height, width), mask)
    uncompressed = {"size": [height, width], "counts": _runs(mask)}
    assert valid_rle(uncompressed, height, width) == rle  # COCO's other form, same canonical string


def _runs(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE: run lengths in column-major order, starting with background."""
    flat, runs, value, length = mask.flatten(order="F"), [], False, 0
    for pixel in flat:
        if bool(pixel) != value:
            runs.append(length)
            value, length = not value, 0
        length += 1
    return runs + [length]


@st.composite
def malformed(draw) -> tuple[str, int, int]:
    """A counts string that is not an RLE of (height, width): cut short, run past, or not RLE text."""
    mask = draw(masks)
    height, width = mask.shape
    counts = encode_rle(mask)["counts"]
    how = draw(st.sampled_from(["short", "long", "other-size", "characters"]))
    if how == "short":
        counts = counts[:draw(st.integers(0, len(counts) - 1))]
    elif how == "long":
        counts += draw(st.text(alphabet="123456789:;<=>?", min_size=1, max_size=4))
    elif how == "other-size":
        height += draw(st.integers(1, 5))
    else:
        counts += draw(st.sampled_from(["p", "z", " ", "~", "\u00e9", "/"]))
    return counts, height, width


@PROPERTY
@given(malformed())
def test_malformed_rle_gets_the_same_words_everywhere(case):
    counts, height, width = case
    with pytest.raises(RLEError) as caught:
        valid_rle({"size": [height, width], "counts": counts}, height, width)
    words = str(caught.value)

    with pytest.raises(DatasetError) as imported:  # dataset import
        compressed_rle({"size": [height, width], "counts": counts}, height, width, "f.json", "masklet[0][0]")
    assert str(imported.value).endswith(f"masklet[0][0].counts: {words}")

    with pytest.raises(protocol.ProtocolError) as painted:  # a live session's painted mask
        sessions.decode_painted(counts, height, width)
    assert painted.value.code == "bad_message" and words in painted.value.message

    try:  # the socket protocol knows no size: it refuses what is not RLE text, in the same words
        check_counts(counts)
    except RLEError as error:
        text = protocol.json.dumps({"v": 1, "type": "paint", "object_id": 1, "frame": 0, "counts": counts})
        with pytest.raises(protocol.ProtocolError) as parsed:
            protocol.parse_client_message(text)
        assert parsed.value.message == str(error)


@pytest.mark.parametrize("rle, words", [
    ({"counts": "0"}, "a mask must be a COCO RLE with 'size' and 'counts'"),
    ({"size": [4], "counts": "0"}, "an RLE size is [height, width]"),
    ({"size": [0, 3], "counts": ""}, "a positive height and width"),
    ({"size": [2, 2], "counts": 7}, "RLE counts must be a string (compressed) or a list of non-negative ints"),
    ({"size": [2, 2], "counts": [1, -1, 4]}, "RLE counts must be a string (compressed) or a list of non-negative"),
    ({"size": [2, 2], "counts": [1, 1]}, "RLE counts cover 2 pixels, not 4"),
    ({"size": [3, 2], "counts": "6"}, "RLE size [3, 2] does not match the frame's 2x2"),
])
def test_refusals_name_what_is_wrong(rle, words):
    with pytest.raises(RLEError) as caught:
        valid_rle(rle, 2, 2)
    assert words in str(caught.value)


def test_the_size_limit():
    with pytest.raises(RLEError, match="larger than the 100 pixels allowed") as caught:
        valid_rle({"size": [11, 10], "counts": "`1"}, max_pixels=100)
    assert caught.value.field == "size"
    assert valid_rle({"size": [10, 10], "counts": "T3"}, max_pixels=100) == encode_rle(np.zeros((10, 10), bool))


def test_a_non_canonical_but_exact_rle_comes_back_canonical():
    # runs [1, 0]: a trailing empty run covers the same single background pixel as "1"
    assert valid_rle({"size": [1, 1], "counts": "10"}) == {"size": [1, 1], "counts": "1"}
