// Brush and eraser: edit one object's mask on one frame, on the client, at video resolution.
//
// A stroke starts from the stored mask (decoded here), stamps discs along the pointer path
// into a row-major 0/1 array, and mirrors them on a preview canvas the renderer draws instead
// of the object's overlay. When the stroke ends the whole new mask is encoded as COCO RLE and
// sent as one `paint` message.

import { hexToRgb } from "./overlays";
import { decodeMask, encodeMask } from "./rle";

export class BrushStroke {
  readonly mask: Uint8Array;
  readonly canvas: HTMLCanvasElement;
  private readonly ctx: CanvasRenderingContext2D;
  private last: [number, number] | null = null;
  private changed = false;
  private readonly colour: string;

  constructor(
    readonly objectId: number,
    readonly frame: number,
    private readonly width: number,
    private readonly height: number,
    counts: string | undefined,
    colour: string,
    readonly erase: boolean,
    readonly radius: number,
  ) {
    this.mask = counts ? decodeMask(counts, height, width) : new Uint8Array(width * height);
    this.canvas = document.createElement("canvas");
    this.canvas.width = width;
    this.canvas.height = height;
    const ctx = this.canvas.getContext("2d");
    if (!ctx) throw new Error("no 2D canvas context");
    this.ctx = ctx;
    const [r, g, b] = hexToRgb(colour);
    this.colour = `rgba(${r}, ${g}, ${b}, 0.55)`;
    // The starting mask, as the overlay shows it (fill only: the outline returns after the stroke).
    const image = ctx.createImageData(width, height);
    const pixels = new Uint32Array(image.data.buffer);
    const fill = (140 << 24) | (b << 16) | (g << 8) | r;
    for (let i = 0; i < this.mask.length; i++) if (this.mask[i]) pixels[i] = fill;
    ctx.putImageData(image, 0, 0);
    ctx.fillStyle = this.colour;
  }

  /** Extend the stroke to video point (x, y): discs every radius/3 along the segment. */
  to(x: number, y: number): void {
    const [lx, ly] = this.last ?? [x, y];
    const distance = Math.hypot(x - lx, y - ly);
    const steps = Math.max(1, Math.ceil(distance / Math.max(1, this.radius / 3)));
    for (let s = 1; s <= steps; s++) {
      this.stamp(lx + ((x - lx) * s) / steps, ly + ((y - ly) * s) / steps);
    }
    this.last = [x, y];
  }

  private stamp(cx: number, cy: number): void {
    const r = this.radius;
    const value = this.erase ? 0 : 1;
    const y0 = Math.max(0, Math.floor(cy - r)), y1 = Math.min(this.height - 1, Math.ceil(cy + r));
    for (let y = y0; y <= y1; y++) {
      const dy = y + 0.5 - cy;
      const half = Math.sqrt(Math.max(0, r * r - dy * dy));
      const x0 = Math.max(0, Math.ceil(cx - half - 0.5)), x1 = Math.min(this.width - 1, Math.floor(cx + half - 0.5));
      if (x1 < x0) continue;
      const row = y * this.width;
      for (let x = x0; x <= x1; x++) {
        if (this.mask[row + x] !== value) {
          this.mask[row + x] = value;
          this.changed = true;
        }
      }
    }
    const ctx = this.ctx;
    ctx.beginPath();
    ctx.arc(cx, cy, r, 0, Math.PI * 2);
    if (this.erase) {
      ctx.save();
      ctx.globalCompositeOperation = "destination-out";
      ctx.fillStyle = "#000";
      ctx.fill();
      ctx.restore();
    } else {
      ctx.save();
      ctx.globalCompositeOperation = "copy";
      ctx.clip();
      ctx.fillStyle = this.colour;
      ctx.fillRect(cx - r - 1, cy - r - 1, 2 * r + 2, 2 * r + 2);
      ctx.restore();
    }
  }

  /** The finished mask as COCO counts and its area, or null when the stroke changed nothing. */
  finish(): { counts: string; area: number } | null {
    if (!this.changed) return null;
    let area = 0;
    for (let i = 0; i < this.mask.length; i++) area += this.mask[i];
    return { counts: encodeMask(this.mask, this.height, this.width), area };
  }
}
