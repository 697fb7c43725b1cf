"""Masks on disk and in JSON: COCO compressed RLE (as SA-V stores them) and PNG files.

RLE is done by ``pycocotools`` only, never by hand: SA-V's ``masklet`` entries are exactly what
``pycocotools.mask.encode`` produces on a Fortran-ordered uint8 mask, and reproducing them byte
for byte is what lets an export be read by Meta's loader unchanged.

PNG conventions:

- ``write_palette_png`` writes label maps (mode ``P``, pixel value k = object k, DAVIS palette).
  DAVIS annotations are such maps; SA-V's ``Annotations_6fps/{video}/{obj:03d}/*.png`` hold one
  object per file (objects may overlap) and are written the way Meta's ``vos_inference`` writes
  them: the same palette PNG with values 0 and 1 (``docs/DECISIONS.md``).
- ``write_mask_png`` writes ONE object as a mode-``L`` PNG holding 0 and 255, viewable in any
  image viewer; other tools' prediction folders often look like this.
- Readers accept both: ``read_mask_png`` treats any non-zero value as the object (mode L 0/255,
  0/1, palette or RGB files alike), ``read_palette_png`` returns the raw label indices.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

RLE = dict  # {"size": [H, W], "counts": str}


def encode_rle(mask: np.ndarray) -> RLE:
    """Encode a boolean (H, W) mask as SA-V/COCO compressed RLE with ``counts`` as str (JSON-ready)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask is 2-D (H, W), got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(bool).astype(np.uint8)))
    counts = rle["counts"]
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts.decode("ascii")}


def _coco(rle: RLE) -> dict:
    """The form pycocotools wants: counts as bytes, size as two ints."""
    if "size" not in rle or "counts" not in rle:
        raise ValueError(f"an RLE needs 'size' and 'counts', got keys {sorted(rle)}")
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    elif not isinstance(counts, bytes):
        raise ValueError(f"RLE counts must be str or bytes (compressed RLE), got {type(counts).__name__}")
    height, width = (int(v) for v in rle["size"])
    return {"size": [height, width], "counts": counts}


def decode_rle(rle: RLE) -> np.ndarray:
    """Decode a compressed RLE (counts str or bytes) to a boolean (H, W) array."""
    with warnings.catch_warnings():  # pycocotools 2.0.x's own NumPy 2 copy-keyword notice, harmless here
        warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)
        return mask_utils.decode(_coco(rle)).astype(bool)


def rle_area(rle: RLE) -> int:
    """Number of foreground pixels, without decoding."""
    return int(mask_utils.area(_coco(rle)))


def rle_bbox(rle: RLE) -> list[int]:
    """COCO-style ``[x, y, w, h]`` of the foreground, as ints (pixel masks have integer boxes).

    ``w``/``h`` count pixels, so a single pixel at (x, y) is ``[x, y, 1, 1]``; an empty mask is
    ``[0, 0, 0, 0]`` (pycocotools' answer too).
    """
    return [int(round(v)) for v in mask_utils.toBbox(_coco(rle)).tolist()]


def empty_rle(height: int, width: int) -> RLE:
    """The RLE of an all-background frame: how SA-V marks an object that is not visible (never None)."""
    return encode_rle(np.zeros((int(height), int(width)), dtype=bool))


def read_mask_png(path: str | Path) -> np.ndarray:
    """Read one object's mask: any non-zero pixel is the object (L 0/255, 0/1, palette, RGB)."""
    with Image.open(path) as image:
        array = np.asarray(image)
    if array.ndim == 3:
        array = array.any(axis=2)
    return array != 0


def read_palette_png(path: str | Path) -> np.ndarray:
    """Read a DAVIS-style label map as uint8 (H, W): palette indices for mode P, gray values for L."""
    with Image.open(path) as image:
        if image.mode not in ("P", "L", "1"):
            raise ValueError(f"{path}: a label map must be a palette or gray PNG, got mode {image.mode}")
        array = np.asarray(image)
    return array.astype(np.uint8)


def write_mask_png(path: str | Path, mask: np.ndarray) -> None:
    """Write one object's mask as a binary mode-L PNG (0 background, 255 object), viewable anywhere."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask is 2-D (H, W), got shape {mask.shape}")
    Image.fromarray(np.where(mask.astype(bool), 255, 0).astype(np.uint8)).save(path)


def davis_palette() -> list[int]:
    """The DAVIS/PASCAL VOC colour map (768 values): index 0 black, 1 red, 2 green, 3 yellow, ..."""
    palette = []
    for index in range(256):
        r = g = b = 0
        value = index
        for shift in range(7, -1, -1):
            r |= ((value >> 0) & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        palette.extend((r, g, b))
    return palette


def write_palette_png(path: str | Path, labels: np.ndarray, palette: list[int] | None = None) -> None:
    """Write a label map (value k = object k) as a mode-P PNG with the DAVIS palette unless one is given."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"a label map is 2-D (H, W), got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError("palette PNG labels must lie in 0..255")
    image = Image.fromarray(labels.astype(np.uint8))  # mode L; putpalette turns it into P, values kept
    image.putpalette(davis_palette() if palette is None else list(palette))
    image.save(path)


def overlay_jpeg(image_bgr: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int] = (0, 200, 255),
                 max_width: int = 480) -> bytes:
    """A frame with ``mask`` tinted and outlined (BGR ``colour``), scaled to at most ``max_width``, as
    JPEG bytes: how a single mask is shown to people without the annotation page (reviewers' lists)."""
    out = image_bgr.copy()
    region = mask.astype(bool)
    out[region] = (0.55 * out[region] + 0.45 * np.array(colour)).astype(np.uint8)
    contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, colour, max(1, out.shape[1] // 240))
    if out.shape[1] > max_width:
        out = cv2.resize(out, (max_width, round(out.shape[0] * max_width / out.shape[1])),
                         interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise ValueError("the frame could not be encoded as JPEG")
    return data.tobytes()
