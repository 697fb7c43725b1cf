// Draws the current frame and its mask overlays on the canvas, once per animation frame
// when something changed. Also publishes what is on screen as data-* attributes on the
// canvas (the read-only hook the browser tests and the benchmark assert on):
//   data-frame          native index of the frame the view shows
//   data-frame-ready    "1" once that frame's image is drawn (else a neighbour is shown)
//   data-masks          overlays drawn on this frame (visible objects with a non-empty mask)
//   data-masks-expected visible objects with a non-empty stored mask on this frame
//   data-renders        how many times the canvas was drawn (benchmarks count it)
//   data-view           "scale tx ty": canvas CSS px = video px * scale + (tx, ty) (zoom and pan)

import type { FrameCache } from "./frames";
import type { OverlayCache } from "./overlays";
import type { Store } from "./store";
import type { Viewport } from "./viewport";

export interface SceneObject {
  id: number;
  colour: string;
  visible: boolean;
  selected: boolean;
}

export interface Scene {
  frame: number;
  objects: SceneObject[];
  /** The selected object's mask while a brush stroke is in progress (drawn instead of its overlay). */
  preview: { objectId: number; canvas: HTMLCanvasElement } | null;
  points: { x: number; y: number; positive: boolean }[];
  box: [number, number, number, number] | null;
  cursor: { x: number; y: number; radius: number; erase: boolean } | null;
}

export class Renderer {
  private readonly ctx: CanvasRenderingContext2D;
  private scheduled = false;
  private renders = 0;
  private shownFrame: number | null = null;
  private cssWidth = 0;
  private cssHeight = 0;
  private dpr = 1;
  afterDraw: (() => void) | null = null;

  constructor(
    readonly canvas: HTMLCanvasElement,
    private readonly viewport: Viewport,
    private readonly frames: FrameCache,
    private readonly overlays: OverlayCache,
    private readonly store: Store,
    private readonly scene: () => Scene,
  ) {
    const ctx = canvas.getContext("2d", { alpha: false });
    if (!ctx) throw new Error("no 2D canvas context");
    this.ctx = ctx;
    new ResizeObserver(() => this.resize()).observe(canvas);
    this.resize();
  }

  /** Ask for a redraw at the next animation frame (many calls, one draw). */
  invalidate(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      this.draw();
    });
  }

  get size(): [number, number] {
    return [this.cssWidth, this.cssHeight];
  }

  private resize(): void {
    const rect = this.canvas.getBoundingClientRect();
    this.dpr = window.devicePixelRatio || 1;
    this.cssWidth = Math.max(1, rect.width);
    this.cssHeight = Math.max(1, rect.height);
    this.canvas.width = Math.round(this.cssWidth * this.dpr);
    this.canvas.height = Math.round(this.cssHeight * this.dpr);
    this.viewport.resized(this.cssWidth, this.cssHeight);
    this.invalidate();
  }

  private draw(): void {
    const scene = this.scene();
    const { ctx, viewport: vp } = this;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#10131a";
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    ctx.setTransform(this.dpr * vp.scale, 0, 0, this.dpr * vp.scale, this.dpr * vp.tx, this.dpr * vp.ty);
    ctx.imageSmoothingEnabled = vp.scale < 2;

    const bitmap = this.frames.get(scene.frame);
    let ready = false;
    if (bitmap) {
      ctx.drawImage(bitmap, 0, 0, this.store.width, this.store.height);
      this.shownFrame = scene.frame;
      ready = true;
    } else if (this.shownFrame !== null && this.frames.has(this.shownFrame)) {
      ctx.drawImage(this.frames.get(this.shownFrame) as ImageBitmap, 0, 0, this.store.width, this.store.height);
    }

    let drawn = 0;
    let expected = 0;
    let missingOverlay = false;
    for (const object of scene.objects) {
      if (!object.visible) continue;
      if (scene.preview && scene.preview.objectId === object.id) {
        ctx.globalAlpha = 1;
        ctx.drawImage(scene.preview.canvas, 0, 0);
        drawn += 1;
        expected += 1;
        continue;
      }
      const mask = this.store.get(object.id, scene.frame);
      if (!mask || mask.area === 0) continue;
      expected += 1;
      const overlay = this.overlays.get(object.id, scene.frame, mask.counts, object.colour);
      if (!overlay) {
        missingOverlay = true;
        continue;
      }
      if (!overlay.bitmap) continue;
      ctx.globalAlpha = object.selected || !scene.objects.some((o) => o.selected) ? 1 : 0.75;
      ctx.drawImage(overlay.bitmap, overlay.x, overlay.y);
      drawn += 1;
    }
    ctx.globalAlpha = 1;
    this.drawMarks(scene);

    const data = this.canvas.dataset;
    data.frame = String(scene.frame);
    data.frameReady = ready ? "1" : "0";
    data.masks = String(drawn);
    data.masksExpected = String(expected);
    data.view = `${vp.scale} ${vp.tx} ${vp.ty}`;
    this.renders += 1;
    data.renders = String(this.renders);
    // Not everything is ready: draw again when the missing frame or overlay arrives.
    this.pendingRedraw = !ready || missingOverlay;
    this.afterDraw?.();
  }

  /** Set when the last draw lacked something; the loaders call `invalidate` when it arrives. */
  pendingRedraw = false;

  private drawMarks(scene: Scene): void {
    const { ctx, viewport: vp } = this;
    const px = 1 / vp.scale; // one CSS pixel in video units
    for (const point of scene.points) {
      ctx.beginPath();
      ctx.arc(point.x, point.y, 5 * px, 0, Math.PI * 2);
      ctx.fillStyle = point.positive ? "#22c55e" : "#ef4444";
      ctx.fill();
      ctx.lineWidth = 1.5 * px;
      ctx.strokeStyle = "#fff";
      ctx.stroke();
    }
    if (scene.box) {
      const [x0, y0, x1, y1] = scene.box;
      ctx.lineWidth = 2 * px;
      ctx.setLineDash([6 * px, 4 * px]);
      ctx.strokeStyle = "#fff";
      ctx.strokeRect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
      ctx.setLineDash([]);
    }
    if (scene.cursor) {
      ctx.beginPath();
      ctx.arc(scene.cursor.x, scene.cursor.y, scene.cursor.radius, 0, Math.PI * 2);
      ctx.lineWidth = 1.5 * px;
      ctx.strokeStyle = scene.cursor.erase ? "#fca5a5" : "#fff";
      ctx.stroke();
    }
  }
}
