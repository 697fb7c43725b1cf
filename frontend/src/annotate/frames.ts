// Frame images: fetched and decoded off the main thread (createImageBitmap), LRU-cached,
// with the neighbours of the current frame preloaded so stepping never waits on the network.

export class FrameCache {
  private readonly bitmaps = new Map<number, ImageBitmap>(); // insertion order = LRU order
  private readonly loading = new Map<number, Promise<void>>();
  private readonly queue: number[] = [];
  private active = 0;
  onLoaded: ((frame: number) => void) | null = null;
  failures = 0;

  constructor(private readonly urlTemplate: string, private readonly maxFrames: number, private readonly parallel = 4) {}

  url(frame: number): string {
    return this.urlTemplate.replace(/\/0\.jpg$/, `/${frame}.jpg`);
  }

  get(frame: number): ImageBitmap | undefined {
    const bitmap = this.bitmaps.get(frame);
    if (bitmap) {
      this.bitmaps.delete(frame);
      this.bitmaps.set(frame, bitmap);
    }
    return bitmap;
  }

  has(frame: number): boolean {
    return this.bitmaps.has(frame);
  }

  /** Load these frames, the first ones first; earlier queued preloads not in the list are dropped. */
  want(frames: number[]): void {
    const wanted = frames.filter((frame) => !this.bitmaps.has(frame) && !this.loading.has(frame));
    this.queue.length = 0;
    this.queue.push(...wanted.slice(0, this.maxFrames - 2));
    this.pump();
  }

  private pump(): void {
    while (this.active < this.parallel && this.queue.length > 0) {
      const frame = this.queue.shift() as number;
      if (this.bitmaps.has(frame) || this.loading.has(frame)) continue;
      this.active += 1;
      const job = this.load(frame).finally(() => {
        this.active -= 1;
        this.loading.delete(frame);
        this.pump();
      });
      this.loading.set(frame, job);
    }
  }

  private async load(frame: number): Promise<void> {
    try {
      const response = await fetch(this.url(frame), { credentials: "same-origin" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const bitmap = await createImageBitmap(await response.blob());
      this.bitmaps.set(frame, bitmap);
      while (this.bitmaps.size > this.maxFrames) {
        const [oldest, old] = this.bitmaps.entries().next().value as [number, ImageBitmap];
        old.close();
        this.bitmaps.delete(oldest);
      }
      this.onLoaded?.(frame);
    } catch {
      this.failures += 1;
    }
  }
}
