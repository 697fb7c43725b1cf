// The scrubber and one filmstrip row per object: where its mask is present (model), where a
// person edited it (human: marked above and below), where it was imported with a dataset
// (accepted like a person's: marked above only), where it is missing, and where it is lost (the
// model stored an empty mask: a red band, with a full-height red mark where the object was lost,
// i.e. a lost frame next to one with a mask). Click or drag a row to seek. Under each row a heat
// band colours every model frame by its quality score (red: likely wrong, green: likely right;
// grey: not scored, or a person's mask), so a glance finds where to look.

import { heatColour } from "./radar";
import type { Store } from "./store";

/** The colour of frames where the model lost the object (also the legend's). */
const LOST = "#d1343b";
/** Heights of a row's strip: the mask marks, a gap, the heat band. */
const MARKS_H = 14, HEAT_H = 5, STRIP_H = MARKS_H + 1 + HEAT_H;
/** The heat band's colour where there is no score. */
const UNSCORED = "#d5d9e1";

export interface TimelineObject {
  id: number;
  name: string;
  colour: string;
  selected: boolean;
}

export class Timeline {
  private scheduled = false;
  private position = 0;
  private dragging = false;

  constructor(
    private readonly root: HTMLElement,
    private readonly scrubber: HTMLInputElement,
    private readonly store: Store,
    private readonly objects: () => TimelineObject[],
    private readonly seek: (position: number) => void,
  ) {
    scrubber.min = "0";
    scrubber.max = String(Math.max(0, store.frames.length - 1));
    scrubber.step = "1";
    scrubber.addEventListener("input", () => seek(Number(scrubber.value)));
    root.addEventListener("pointerdown", (event) => {
      const strip = (event.target as HTMLElement).closest("canvas");
      if (!strip) return;
      this.dragging = true;
      strip.setPointerCapture(event.pointerId);
      this.seekFrom(strip, event);
    });
    root.addEventListener("pointermove", (event) => {
      const strip = (event.target as HTMLElement).closest("canvas");
      if (this.dragging && strip) this.seekFrom(strip, event);
    });
    root.addEventListener("pointerup", () => { this.dragging = false; });
    new ResizeObserver(() => this.invalidate()).observe(root);
  }

  private seekFrom(strip: HTMLCanvasElement, event: PointerEvent): void {
    const rect = strip.getBoundingClientRect();
    const n = this.store.frames.length;
    const position = Math.floor(((event.clientX - rect.left) / rect.width) * n);
    this.seek(Math.max(0, Math.min(n - 1, position)));
  }

  setPosition(position: number): void {
    this.position = position;
    this.scrubber.value = String(position);
    this.invalidate();
  }

  invalidate(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      this.draw();
    });
  }

  private draw(): void {
    const objects = this.objects();
    const rows = new Map<string, HTMLElement>();
    for (const row of this.root.querySelectorAll<HTMLElement>(".track-row")) rows.set(row.dataset.objectId ?? "", row);
    const keep = new Set<string>();
    for (const object of objects) {
      const key = String(object.id);
      keep.add(key);
      let row = rows.get(key);
      if (!row) {
        row = document.createElement("div");
        row.className = "track-row";
        row.dataset.objectId = key;
        const name = document.createElement("span");
        name.className = "track-name";
        const strip = document.createElement("canvas");
        strip.className = "track-strip";
        strip.height = STRIP_H;
        row.append(name, strip);
        this.root.append(row);
      }
      if (object.selected && !row.classList.contains("selected")) this.reveal(row);
      row.classList.toggle("selected", object.selected);
      const name = row.querySelector(".track-name") as HTMLElement;
      name.textContent = object.name;
      name.style.borderLeftColor = object.colour;
      this.drawStrip(row.querySelector("canvas") as HTMLCanvasElement, object);
    }
    for (const [key, row] of rows) if (!keep.has(key)) row.remove();
    this.root.classList.toggle("empty", objects.length === 0);
  }

  /** Scroll the timeline (it scrolls by itself when there are many objects) to show the selected row. */
  private reveal(row: HTMLElement): void {
    const r = row.getBoundingClientRect(), view = this.root.getBoundingClientRect();
    if (r.top < view.top) this.root.scrollTop -= view.top - r.top;
    else if (r.bottom > view.bottom) this.root.scrollTop += r.bottom - view.bottom;
  }

  private drawStrip(strip: HTMLCanvasElement, object: TimelineObject): void {
    const width = Math.max(1, Math.round(strip.getBoundingClientRect().width));
    if (strip.width !== width) strip.width = width;
    const ctx = strip.getContext("2d");
    if (!ctx) return;
    const frames = this.store.frames;
    const n = frames.length;
    const h = MARKS_H;
    ctx.clearRect(0, 0, width, STRIP_H);
    ctx.fillStyle = "#eceff4";
    ctx.fillRect(0, 0, width, h);
    const cell = width / n;
    let present = 0, human = 0, imported = 0;
    const states = frames.map((frame) => this.store.state(object.id, frame));
    const masked = (i: number) => i >= 0 && i < n && states[i] !== "missing" && states[i] !== "lost";
    const lostAt: number[] = [];
    for (let i = 0; i < n; i++) {
      const state = states[i];
      if (state === "missing") continue;
      const x0 = Math.floor(i * cell), x1 = Math.max(x0 + 1, Math.floor((i + 1) * cell));
      if (state === "lost") {
        ctx.fillStyle = LOST;
        ctx.fillRect(x0, h - 5, x1 - x0, 5);
        if (masked(i - 1) || masked(i + 1)) {
          lostAt.push(frames[i]);
          ctx.fillRect(x0, 0, Math.max(2, x1 - x0), h);
        }
        continue;
      }
      ctx.fillStyle = object.colour;
      ctx.globalAlpha = state === "present" ? 0.55 : 1;
      ctx.fillRect(x0, 2, x1 - x0, h - 4);
      ctx.globalAlpha = 1;
      if (state !== "present") {
        ctx.fillStyle = "#151a26";
        ctx.fillRect(x0, 0, x1 - x0, 3);
        if (state === "human") ctx.fillRect(x0, h - 3, x1 - x0, 3);
      }
      if (state === "human") human += 1;
      if (state === "imported") imported += 1;
      present += 1;
    }
    const scores = this.drawHeat(ctx, object.id, cell);
    const cx = Math.floor((this.position + 0.5) * cell);
    ctx.fillStyle = "#2f5bea";
    ctx.fillRect(cx - 1, 0, 2, STRIP_H);
    const lost = states.filter((state) => state === "lost").length;
    strip.title = `${object.name}: mask on ${present} of ${n} frames, ${human} edited by a person`
      + (imported ? `, ${imported} imported` : "")
      + (lostAt.length ? `; lost at frame ${lostAt.join(", ")} (empty on ${lost} frames)` : "");
    strip.dataset.lost = String(lost);
    strip.dataset.lostAt = lostAt.join(" ");
    strip.dataset.present = String(present);
    strip.dataset.human = String(human);
    strip.dataset.imported = String(imported);
    strip.dataset.frames = String(n);
    strip.dataset.scored = String(scores.length);
    strip.dataset.lowest = scores.length ? Math.min(...scores).toFixed(2) : "";
    if (scores.length) strip.title += `; lowest score ${Math.min(...scores).toFixed(2)} (J jumps to the next suspect)`;
  }

  /** The heat band under the marks: one colour per frame from its score; returns the scores drawn. */
  private drawHeat(ctx: CanvasRenderingContext2D, objectId: number, cell: number): number[] {
    const scores: number[] = [];
    this.store.frames.forEach((frame, i) => {
      const quality = this.store.get(objectId, frame)?.quality;
      const x0 = Math.floor(i * cell), x1 = Math.max(x0 + 1, Math.floor((i + 1) * cell));
      ctx.fillStyle = quality === null || quality === undefined ? UNSCORED : heatColour(quality);
      ctx.fillRect(x0, MARKS_H + 1, x1 - x0, HEAT_H);
      if (quality !== null && quality !== undefined) scores.push(quality);
    });
    return scores;
  }
}
