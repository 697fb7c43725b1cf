// Web Worker: COCO RLE -> coloured ImageBitmap, off the main thread.
//
// The one overlay renderer of the annotation and review pages. Each request names one (object,
// frame) mask. The worker decodes the runs, crops to the mask's bounding box (most objects cover a
// small part of a 1080p frame, and the cache holds many bitmaps), fills the object with its colour
// at `fill` alpha (0: outline only) and its one-pixel outline opaque in `edge`, and transfers the
// bitmap back. Empty masks answer with no bitmap.

import { countsToRuns } from "./rle";

export interface OverlayRequest {
  id: number;
  counts: string;
  height: number;
  width: number;
  rgb: [number, number, number];
  edge: [number, number, number];
  fill: number; // 0..255
}

export interface OverlayReply {
  id: number;
  bitmap: ImageBitmap | null;
  x: number;
  y: number;
  error?: string;
}

interface WorkerScope {
  onmessage: ((event: MessageEvent<OverlayRequest>) => void) | null;
  postMessage(message: OverlayReply, transfer: Transferable[]): void;
}

const scope = self as unknown as WorkerScope;

async function render(request: OverlayRequest): Promise<OverlayReply> {
  const { height: h, width: w } = request;
  const runs = countsToRuns(request.counts);
  // Bounding box from the runs alone (column-major: column = position / h).
  let x0 = w, x1 = -1, y0 = h, y1 = -1;
  let p = 0;
  for (let r = 0; r < runs.length; r++) {
    const len = runs[r];
    if (r % 2 === 1 && len > 0) {
      const first = p, last = p + len - 1;
      const cf = (first / h) | 0, cl = (last / h) | 0;
      if (cf < x0) x0 = cf;
      if (cl > x1) x1 = cl;
      if (cl > cf) { y0 = 0; y1 = h - 1; }
      else {
        const yf = first - cf * h, yl = last - cl * h;
        if (yf < y0) y0 = yf;
        if (yl > y1) y1 = yl;
      }
    }
    p += len;
  }
  if (x1 < 0) return { id: request.id, bitmap: null, x: 0, y: 0 };
  const bw = x1 - x0 + 1, bh = y1 - y0 + 1;
  // Crop-local 0/1 mask with a one-pixel border so the outline test needs no bounds checks.
  const stride = bw + 2;
  const local = new Uint8Array((bw + 2) * (bh + 2));
  p = 0;
  for (let r = 0; r < runs.length; r++) {
    const len = runs[r];
    if (r % 2 === 1) {
      for (let q = p; q < p + len; q++) {
        const x = (q / h) | 0;
        const y = q - x * h;
        local[(y - y0 + 1) * stride + (x - x0 + 1)] = 1;
      }
    }
    p += len;
  }
  const pixels = new Uint32Array(bw * bh);
  // ImageData is RGBA in memory; on little-endian machines that is ABGR as a uint32.
  const abgr = ([r, g, b]: [number, number, number], alpha: number) => ((alpha & 255) << 24) | (b << 16) | (g << 8) | r;
  const fill = request.fill === 0 ? 0 : abgr(request.rgb, request.fill);
  const edge = abgr(request.edge, 255);
  for (let y = 0; y < bh; y++) {
    const row = (y + 1) * stride + 1;
    for (let x = 0; x < bw; x++) {
      const i = row + x;
      if (local[i] === 0) continue;
      const inner = local[i - 1] & local[i + 1] & local[i - stride] & local[i + stride];
      pixels[y * bw + x] = inner ? fill : edge;
    }
  }
  const image = new ImageData(new Uint8ClampedArray(pixels.buffer), bw, bh);
  const bitmap = await createImageBitmap(image, { premultiplyAlpha: "premultiply" });
  return { id: request.id, bitmap, x: x0, y: y0 };
}

scope.onmessage = (event) => {
  render(event.data).then(
    (reply) => scope.postMessage(reply, reply.bitmap ? [reply.bitmap] : []),
    (error: unknown) => scope.postMessage({ id: event.data.id, bitmap: null, x: 0, y: 0, error: String(error) }, []),
  );
};
