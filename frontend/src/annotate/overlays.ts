// Mask overlays as ImageBitmaps, decoded by Web Workers and kept in an LRU cache.
//
// Keyed by (object, frame); an entry is valid while its counts string and look (a colour, or a
// `Look`) match what is asked. The cache is bounded by pixels (bitmaps are cropped to the mask's box), so long
// 1080p videos do not exhaust memory. `want` is called by the renderer for what it needs now
// (served first) and by the prefetcher for neighbouring frames.

import type { OverlayReply, OverlayRequest } from "./overlay_worker";

/** How a mask is drawn: `colour` filled at `fillAlpha` (0: outline only), its edge opaque in `edge` (default: `colour`). */
export interface Look {
  colour: string;
  edge?: string;
  fillAlpha?: number;
}

export interface Overlay {
  bitmap: ImageBitmap | null; // null: empty mask, nothing to draw
  x: number;
  y: number;
}

interface Entry extends Overlay {
  counts: string;
  look: string;
  pixels: number;
}

interface Job {
  key: string;
  counts: string;
  look: string;
  paint: Look;
  urgent: boolean;
}

const FILL_ALPHA = 110;

export class OverlayCache {
  private readonly entries = new Map<string, Entry>(); // insertion order = LRU order
  private readonly queued = new Map<string, Job>();
  private readonly running = new Map<number, Job>();
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private nextId = 1;
  private pixels = 0;
  onReady: (() => void) | null = null;

  constructor(workerUrl: string, private readonly height: number, private readonly width: number,
              private readonly budgetPixels = 120_000_000, workers = 2) {
    for (let i = 0; i < workers; i++) {
      const worker = new Worker(workerUrl);
      worker.onmessage = (event: MessageEvent<OverlayReply>) => this.done(worker, event.data);
      this.workers.push(worker);
      this.idle.push(worker);
    }
  }

  /** The overlay if it is decoded and current; otherwise queue it and return undefined. */
  get(objectId: number, frame: number, counts: string, look: string | Look, urgent = true): Overlay | undefined {
    const key = `${objectId}:${frame}`;
    const paint = asLook(look);
    const name = lookName(paint);
    const entry = this.entries.get(key);
    if (entry && entry.counts === counts && entry.look === name) {
      this.entries.delete(key);
      this.entries.set(key, entry);
      return entry;
    }
    this.want({ key, counts, look: name, paint, urgent });
    return undefined;
  }

  /** Whether a current overlay is cached (does not queue). */
  has(objectId: number, frame: number, counts: string, look: string | Look): boolean {
    const entry = this.entries.get(`${objectId}:${frame}`);
    return Boolean(entry && entry.counts === counts && entry.look === lookName(asLook(look)));
  }

  /** Jobs queued or running: 0 means every requested overlay is decoded. */
  get pending(): number {
    return this.queued.size + this.running.size;
  }

  /** Drop queued prefetches (the person moved on); urgent jobs stay. */
  dropPrefetches(): void {
    for (const [key, job] of this.queued) if (!job.urgent) this.queued.delete(key);
  }

  forgetObject(objectId: number): void {
    for (const [key, entry] of this.entries) {
      if (key.startsWith(`${objectId}:`)) this.evict(key, entry);
    }
  }

  private want(job: Job): void {
    const { key, counts, look, urgent } = job;
    const queued = this.queued.get(key);
    if (queued && queued.counts === counts && queued.look === look) {
      if (urgent && !queued.urgent) {
        // Move to the front: Map iteration order is insertion order, so re-insert first.
        this.queued.delete(key);
        const rest = [...this.queued];
        this.queued.clear();
        this.queued.set(key, { ...queued, urgent: true });
        for (const [k, j] of rest) this.queued.set(k, j);
      }
      return;
    }
    for (const running of this.running.values()) {
      if (running.key === key && running.counts === counts && running.look === look) return;
    }
    this.queued.set(key, job);
    this.pump();
  }

  private pump(): void {
    while (this.idle.length > 0 && this.queued.size > 0) {
      // Urgent jobs first, then prefetches in the order asked.
      let chosen: Job | undefined;
      for (const job of this.queued.values()) {
        if (job.urgent) { chosen = job; break; }
        chosen ??= job;
      }
      if (!chosen) return;
      this.queued.delete(chosen.key);
      const worker = this.idle.pop() as Worker;
      const id = this.nextId++;
      this.running.set(id, chosen);
      const request: OverlayRequest = {
        id, counts: chosen.counts, height: this.height, width: this.width, rgb: hexToRgb(chosen.paint.colour),
        edge: hexToRgb(chosen.paint.edge ?? chosen.paint.colour), fill: chosen.paint.fillAlpha ?? FILL_ALPHA,
      };
      worker.postMessage(request);
    }
  }

  private done(worker: Worker, reply: OverlayReply): void {
    this.idle.push(worker);
    const job = this.running.get(reply.id);
    this.running.delete(reply.id);
    if (job && !reply.error) {
      const old = this.entries.get(job.key);
      if (old) this.evict(job.key, old);
      const pixels = reply.bitmap ? reply.bitmap.width * reply.bitmap.height : 0;
      this.entries.set(job.key, { bitmap: reply.bitmap, x: reply.x, y: reply.y, counts: job.counts,
        look: job.look, pixels });
      this.pixels += pixels;
      for (const [key, entry] of this.entries) {
        if (this.pixels <= this.budgetPixels) break;
        this.evict(key, entry);
      }
    } else if (reply.error) {
      console.warn("overlay decode failed", reply.error);
    }
    this.pump();
    this.onReady?.();
  }

  private evict(key: string, entry: Entry): void {
    entry.bitmap?.close();
    this.pixels -= entry.pixels;
    this.entries.delete(key);
  }
}

function asLook(look: string | Look): Look {
  return typeof look === "string" ? { colour: look } : look;
}

function lookName(look: Look): string {
  return `${look.colour}/${look.edge ?? look.colour}/${look.fillAlpha ?? FILL_ALPHA}`;
}

export function hexToRgb(colour: string): [number, number, number] {
  const value = parseInt(colour.replace("#", ""), 16);
  return [(value >> 16) & 255, (value >> 8) & 255, value & 255];
}
