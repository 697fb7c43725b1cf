// COCO compressed RLE, byte for byte what pycocotools writes (SA-V's mask format).
//
// A mask of H rows and W columns is flattened in column-major (Fortran) order: pixel (x, y)
// is at x * H + y. The runs alternate background / foreground and always start with a
// background run (possibly 0 long). The counts string stores each run (after the first two,
// as the difference to the run two before it) in 5-bit groups, least significant first, the
// 0x20 bit meaning "more groups follow", each group offset by 48 into printable ASCII.
//
// Masks on the client are row-major Uint8Array (index y * W + x, 0 or 1) because that is what
// drawing wants; encode/decode convert. Counts fit 32-bit integers (masks below 2^31 pixels).

/** Decode a counts string into the run lengths. */
export function countsToRuns(counts: string): Int32Array {
  const runs: number[] = [];
  let p = 0;
  const n = counts.length;
  while (p < n) {
    let x = 0;
    let k = 0;
    let more = true;
    while (more) {
      const c = counts.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = (c & 0x20) !== 0;
      p += 1;
      k += 1;
      if (!more && (c & 0x10) !== 0) x |= -1 << (5 * k);
    }
    if (runs.length > 2) x += runs[runs.length - 2];
    runs.push(x);
  }
  return Int32Array.from(runs);
}

/** Encode run lengths as a counts string. */
export function runsToCounts(runs: ArrayLike<number>): string {
  let out = "";
  for (let i = 0; i < runs.length; i++) {
    let x = runs[i];
    if (i > 2) x -= runs[i - 2];
    let more = true;
    while (more) {
      let c = x & 0x1f;
      x >>= 5;
      more = (c & 0x10) !== 0 ? x !== -1 : x !== 0;
      if (more) c |= 0x20;
      out += String.fromCharCode(c + 48);
    }
  }
  return out;
}

/** Run lengths (column-major) of a row-major 0/1 mask. */
export function maskToRuns(mask: Uint8Array, height: number, width: number): Int32Array {
  const runs: number[] = [];
  let current = 0;
  let length = 0;
  for (let x = 0; x < width; x++) {
    for (let i = x; i < x + height * width; i += width) {
      const v = mask[i] !== 0 ? 1 : 0;
      if (v !== current) {
        runs.push(length);
        length = 0;
        current = v;
      }
      length += 1;
    }
  }
  runs.push(length);
  return Int32Array.from(runs);
}

/** COCO compressed counts of a row-major 0/1 mask (pycocotools.mask.encode of its Fortran copy). */
export function encodeMask(mask: Uint8Array, height: number, width: number): string {
  if (mask.length !== height * width) throw new Error(`mask has ${mask.length} pixels, expected ${height}x${width}`);
  return runsToCounts(maskToRuns(mask, height, width));
}

/** Decode compressed counts into a row-major 0/1 mask of height x width. */
export function decodeMask(counts: string, height: number, width: number): Uint8Array {
  const mask = new Uint8Array(height * width);
  const runs = countsToRuns(counts);
  let p = 0;
  const total = height * width;
  for (let r = 0; r < runs.length; r++) {
    const end = Math.min(total, p + runs[r]);
    if (r % 2 === 1) {
      for (let q = p; q < end; q++) {
        const x = (q / height) | 0;
        mask[(q - x * height) * width + x] = 1;
      }
    }
    p = end;
  }
  if (p !== total && runs.length > 0) throw new Error(`RLE covers ${p} pixels, the mask has ${total}`);
  return mask;
}

/** Foreground pixel count without building the mask. */
export function countsArea(counts: string): number {
  const runs = countsToRuns(counts);
  let area = 0;
  for (let r = 1; r < runs.length; r += 2) area += runs[r];
  return area;
}

/** The counts of an all-background mask. */
export function emptyCounts(height: number, width: number): string {
  return runsToCounts([height * width]);
}
