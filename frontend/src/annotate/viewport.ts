// Zoom and pan of the frame canvas: the mapping between canvas (CSS) pixels and video pixels.

export class Viewport {
  scale = 1;
  tx = 0; // canvas px of video x = 0
  ty = 0;
  private fitted = true; // start fitted; the first resize fits the frame

  constructor(readonly videoWidth: number, readonly videoHeight: number) {}

  /** Whole frame visible and centred. */
  fit(canvasWidth: number, canvasHeight: number): void {
    this.scale = Math.min(canvasWidth / this.videoWidth, canvasHeight / this.videoHeight);
    this.tx = (canvasWidth - this.videoWidth * this.scale) / 2;
    this.ty = (canvasHeight - this.videoHeight * this.scale) / 2;
    this.fitted = true;
  }

  /** Keep fitting on resize until the person zooms or pans. */
  resized(canvasWidth: number, canvasHeight: number): void {
    if (this.fitted) this.fit(canvasWidth, canvasHeight);
  }

  /** Zoom by `factor` keeping the video point under (cx, cy) in place. */
  zoomAt(factor: number, cx: number, cy: number): void {
    const next = Math.max(0.05, Math.min(40, this.scale * factor));
    const k = next / this.scale;
    this.tx = cx - (cx - this.tx) * k;
    this.ty = cy - (cy - this.ty) * k;
    this.scale = next;
    this.fitted = false;
  }

  pan(dx: number, dy: number): void {
    this.tx += dx;
    this.ty += dy;
    this.fitted = false;
  }

  toVideo(cx: number, cy: number): [number, number] {
    return [(cx - this.tx) / this.scale, (cy - this.ty) / this.scale];
  }

  toCanvas(vx: number, vy: number): [number, number] {
    return [vx * this.scale + this.tx, vy * this.scale + this.ty];
  }
}
