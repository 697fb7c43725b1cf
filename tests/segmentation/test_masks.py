"""RLE and PNG round trips; RLE counts byte for byte against the real SA-V file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from segmentation.masks import (
    davis_palette,
    decode_rle,
    empty_rle,
    encode_rle,
    read_mask_png,
    read_palette_png,
    rle_area,
    rle_bbox,
    write_mask_png,
    write_palette_png,
)


def test_reencoding_the_real_sav_masklets_reproduces_their_counts(sav_example):
    data = json.loads((sav_example / "sav_000001_manual.json").read_text())
    checked = visible = 0
    for frame in data["masklet"][::10]:  # every 10th annotated frame keeps this fast; all 5 objects each
        for rle in frame:
            mask = decode_rle(rle)
            assert mask.dtype == bool and mask.shape == tuple(rle["size"])
            again = encode_rle(mask)
            assert again == {"size": rle["size"], "counts": rle["counts"]}
            assert rle_area(rle) == int(mask.sum())
            checked += 1
            visible += bool(mask.any())
    assert checked == 13 * 5 and visible > 0


def test_area_and_bbox_of_a_hand_made_mask():
    mask = np.zeros((7, 9), dtype=bool)
    mask[2:5, 3:8] = True  # rows 2..4, cols 3..7
    mask[6, 0] = True
    rle = encode_rle(mask)
    assert rle["size"] == [7, 9] and isinstance(rle["counts"], str)
    assert rle_area(rle) == 16
    assert rle_bbox(rle) == [0, 2, 8, 5]  # x from 0 to 7, y from 2 to 6
    single = np.zeros((4, 4), dtype=bool)
    single[1, 2] = True
    assert rle_bbox(encode_rle(single)) == [2, 1, 1, 1]
    assert all(isinstance(v, int) for v in rle_bbox(rle))


def test_counts_are_column_major():
    # One pixel at row 0, col 1 of a 2x2 mask: column-major order is (0,0), (1,0), (0,1), (1,1),
    # so the runs are 2 zeros, 1 one, 1 zero (uncompressed [2, 1, 1]).
    mask = np.array([[0, 1], [0, 0]], dtype=bool)
    rle = encode_rle(mask)
    assert decode_rle(rle).tolist() == mask.tolist()
    from pycocotools import mask as mask_utils

    assert rle["counts"] == mask_utils.frPyObjects({"size": [2, 2], "counts": [2, 1, 1]}, 2, 2)["counts"].decode()


def test_decode_accepts_bytes_and_str():
    mask = np.eye(5, dtype=bool)
    rle = encode_rle(mask)
    as_bytes = {"size": rle["size"], "counts": rle["counts"].encode()}
    assert np.array_equal(decode_rle(rle), mask)
    assert np.array_equal(decode_rle(as_bytes), mask)
    assert rle_area(as_bytes) == 5


def test_empty_rle():
    rle = empty_rle(480, 848)
    assert rle["size"] == [480, 848]
    assert rle_area(rle) == 0 and rle_bbox(rle) == [0, 0, 0, 0]
    assert not decode_rle(rle).any()
    assert rle == encode_rle(np.zeros((480, 848), dtype=bool))


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="2-D"):
        encode_rle(np.zeros((2, 2, 2), dtype=bool))
    with pytest.raises(ValueError, match="size"):
        decode_rle({"counts": "abc"})
    with pytest.raises(ValueError, match="str or bytes"):
        decode_rle({"size": [2, 2], "counts": [4]})


def test_mask_png_round_trip_is_binary_0_255(tmp_path):
    mask = np.zeros((6, 10), dtype=bool)
    mask[1:4, 2:9] = True
    path = tmp_path / "00000.png"
    write_mask_png(path, mask)
    with Image.open(path) as image:
        assert image.mode == "L" and image.size == (10, 6)
        assert sorted(np.unique(np.asarray(image)).tolist()) == [0, 255]
    assert np.array_equal(read_mask_png(path), mask)


def test_read_mask_png_treats_any_nonzero_as_the_object(tmp_path):
    labels = np.array([[0, 1, 2], [0, 0, 255]], dtype=np.uint8)
    write_palette_png(tmp_path / "p.png", labels)
    Image.fromarray(labels).save(tmp_path / "l.png")
    expected = labels != 0
    assert np.array_equal(read_mask_png(tmp_path / "p.png"), expected)
    assert np.array_equal(read_mask_png(tmp_path / "l.png"), expected)


def test_palette_png_round_trip_keeps_labels_and_davis_colours(tmp_path):
    labels = np.array([[0, 1, 1, 2], [3, 0, 2, 2]], dtype=np.uint8)
    path = tmp_path / "00000.png"
    write_palette_png(path, labels)
    with Image.open(path) as image:
        assert image.mode == "P"
        palette = image.getpalette()
    assert palette[:12] == [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0]  # DAVIS: black, red, green, yellow
    assert np.array_equal(read_palette_png(path), labels)
    assert len(davis_palette()) == 768


def test_real_davis_annotation_reads_as_one_object(davis_root):
    path = davis_root / "Annotations" / "480p" / "blackswan" / "00000.png"
    mask = read_mask_png(path)
    labels = read_palette_png(path)
    assert mask.shape == (480, 854) and mask.any()
    assert np.array_equal(mask, labels == 255)
