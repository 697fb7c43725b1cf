"""The browser's COCO RLE codec (frontend/src/annotate/rle.ts) against pycocotools, both directions.

The page encodes brush edits in TypeScript and the server stores them as they come, so the
counts strings must be byte-identical to ``pycocotools.mask.encode`` (what SA-V and every
exporter read). The TypeScript module is bundled for Node with the project's own esbuild and
run on random masks: blobs, noise, stripes, borders, empty and full, odd sizes down to 1x1.

- encode: the browser's counts for a row-major mask == pycocotools' counts of its Fortran copy;
- decode: the browser's mask from pycocotools' counts == the original mask; area agrees too.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

REPO_ROOT = Path(__file__).resolve().parents[2]
FRONTEND = REPO_ROOT / "frontend"
ESBUILD = FRONTEND / "node_modules" / ".bin" / "esbuild"

HARNESS = """
import { countsArea, decodeMask, encodeMask } from %(rle)s;
import { readFileSync } from "node:fs";

const cases = JSON.parse(readFileSync(0, "utf8"));
const out = cases.map((c) => {
  const mask = Uint8Array.from(Buffer.from(c.mask, "base64"));
  const decoded = decodeMask(c.counts, c.h, c.w);
  return {
    counts: encodeMask(mask, c.h, c.w),
    decoded: Buffer.from(decoded).toString("base64"),
    area: countsArea(c.counts),
  };
});
process.stdout.write(JSON.stringify(out));
"""


@pytest.fixture(scope="module")
def codec(tmp_path_factory) -> Path:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    if not ESBUILD.exists():
        pytest.fail(f"{ESBUILD} is missing: run `make frontend` (npm ci) first")
    work = tmp_path_factory.mktemp("rle-codec")
    entry = work / "harness.ts"
    entry.write_text(HARNESS % {"rle": json.dumps(str(FRONTEND / "src" / "annotate" / "rle.ts"))})
    bundle = work / "harness.cjs"
    subprocess.run([str(ESBUILD), str(entry), "--bundle", "--platform=node", "--format=cjs", f"--outfile={bundle}"],
                   check=True, capture_output=True, timeout=60)
    return bundle


def random_masks(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    masks = [np.zeros((1, 1), bool), np.ones((1, 1), bool), np.zeros((7, 5), bool), np.ones((5, 7), bool),
             np.eye(9, 13, dtype=bool)]
    for _ in range(40):
        h, w = int(rng.integers(1, 90)), int(rng.integers(1, 120))
        kind = rng.integers(0, 4)
        if kind == 0:  # noise: many short runs, big and negative deltas between runs
            mask = rng.random((h, w)) < rng.random()
        elif kind == 1:  # blobs: a few discs
            yy, xx = np.mgrid[:h, :w]
            mask = np.zeros((h, w), bool)
            for _ in range(int(rng.integers(1, 5))):
                cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(1, max(2, min(h, w)))
                mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        elif kind == 2:  # stripes along rows (runs across columns in Fortran order)
            mask = np.zeros((h, w), bool)
            mask[rng.integers(0, h)::max(1, int(rng.integers(1, 6))), :] = True
        else:  # touching the borders
            mask = np.zeros((h, w), bool)
            mask[0, :] = mask[-1, :] = mask[:, 0] = mask[:, -1] = True
        masks.append(mask)
    # A frame-sized mask: run lengths above 2^20 need five 5-bit groups.
    big = np.zeros((1080, 1920), bool)
    big[200:900, 300:1500] = True
    big[500:520, :] = False
    masks.append(big)
    return masks


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_browser_codec_matches_pycocotools_both_ways(codec, seed):
    masks = random_masks(seed)
    cases = []
    for mask in masks:
        counts = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode("ascii")
        cases.append({"h": mask.shape[0], "w": mask.shape[1], "counts": counts,
                      "mask": base64.b64encode(np.ascontiguousarray(mask, dtype=np.uint8).tobytes()).decode()})
    result = subprocess.run(["node", str(codec)], input=json.dumps(cases), capture_output=True, text=True,
                            timeout=120, check=True)
    answers = json.loads(result.stdout)
    assert len(answers) == len(masks)
    for mask, case, answer in zip(masks, cases, answers, strict=True):
        shape = mask.shape
        assert answer["counts"] == case["counts"], f"encode differs for a {shape} mask"
        decoded = np.frombuffer(base64.b64decode(answer["decoded"]), np.uint8).reshape(shape).astype(bool)
        assert np.array_equal(decoded, mask), f"decode differs for a {shape} mask"
        assert answer["area"] == int(mask.sum())
