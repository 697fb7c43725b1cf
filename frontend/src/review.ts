// The review page: plays one masklet over its video (scrub, play/pause at the project's fps).
// Frames come through the annotation page's FrameCache and overlays through its renderer (the
// Web Worker behind OverlayCache), so the two pages decode and draw exactly the same pixels, and
// decoding stays off the main thread while the video plays.

import type { StoredMask } from "./generated/protocol";
import { FrameCache } from "./annotate/frames";
import { OverlayCache, type Look } from "./annotate/overlays";
import { labelWithIcon } from "./icons";

interface ReviewConfig {
  objectId: number;
  width: number;
  height: number;
  frames: number[];
  fps: number;
  frameUrl: string;
  masksUrl: string;
}

// A translucent fill (unless "outline only") and an opaque edge in a second colour: the fill alone
// vanishes over an object of a similar colour, the edge is what the boundary is judged by.
const FILLED: Look = { colour: "#ff3d7f", edge: "#fff200" };
const OUTLINED: Look = { ...FILLED, fillAlpha: 0 };
/** Frames whose overlays are decoded ahead of the one shown, for smooth playing. */
const AHEAD = 6;

async function main(): Promise<void> {
  const element = document.getElementById("review-config");
  const found = document.getElementById("review-canvas") as HTMLCanvasElement | null;
  if (!element || !found) return;
  const canvas: HTMLCanvasElement = found;
  const config = JSON.parse(element.textContent || "{}") as ReviewConfig;
  const context = canvas.getContext("2d")!;
  const scrub = document.getElementById("review-scrub") as HTMLInputElement;
  const play = document.getElementById("review-play") as HTMLButtonElement;
  const label = document.getElementById("review-frame")!;
  const note = document.getElementById("review-note")!;
  const outlineBox = document.getElementById("review-outline") as HTMLInputElement;
  const { width, height, frames } = config;
  scrub.max = String(Math.max(0, frames.length - 1));
  const cache = new FrameCache(config.frameUrl, 64);
  const counts = new Map<number, string>();
  const overlays = new OverlayCache(canvas.dataset.workerUrl ?? "", height, width, 60_000_000, 1);
  let index = 0;
  let timer: number | null = null;

  const look = (): Look => (outlineBox.checked ? OUTLINED : FILLED);

  function draw(): void {
    const frame = frames[index];
    const bitmap = cache.get(frame);
    context.clearRect(0, 0, width, height);
    if (bitmap) context.drawImage(bitmap, 0, 0, width, height);
    const rle = counts.get(frame);
    const overlay = rle === undefined ? undefined : overlays.get(config.objectId, frame, rle, look());
    if (overlay?.bitmap) context.drawImage(overlay.bitmap, overlay.x, overlay.y);
    label.textContent = `frame ${frame} (${index + 1} of ${frames.length})${counts.has(frame) ? "" : " · no mask"}`;
    canvas.dataset.frame = String(frame);
    canvas.dataset.drawn = bitmap ? "true" : "false";
    // Which overlay is on the canvas ("<frame> filled|outlined"), empty while it is being decoded.
    canvas.dataset.overlay = overlay ? `${frame} ${outlineBox.checked ? "outlined" : "filled"}` : "";
  }

  function prefetch(): void {
    for (const frame of frames.slice(index + 1, index + 1 + AHEAD)) {
      const rle = counts.get(frame);
      if (rle !== undefined) overlays.get(config.objectId, frame, rle, look(), false);
    }
  }

  function show(next: number): void {
    index = Math.max(0, Math.min(frames.length - 1, next));
    scrub.value = String(index);
    cache.want(frames.slice(index, index + AHEAD));
    overlays.dropPrefetches();
    draw();
    prefetch();
  }

  function toggle(): void {
    if (timer !== null) {
      window.clearInterval(timer);
      timer = null;
      labelWithIcon(play, "play", "Play");
      return;
    }
    if (index >= frames.length - 1) show(0);
    labelWithIcon(play, "pause", "Pause");
    timer = window.setInterval(() => {
      if (index >= frames.length - 1) toggle();
      else show(index + 1);
    }, 1000 / Math.max(1, config.fps));
  }

  cache.onLoaded = (frame) => {
    if (frame === frames[index]) draw();
  };
  overlays.onReady = () => {
    if (canvas.dataset.overlay === "" && counts.has(frames[index])) draw();
  };
  scrub.addEventListener("input", () => show(Number(scrub.value)));
  play.addEventListener("click", toggle);
  outlineBox.addEventListener("change", () => show(index));
  document.addEventListener("keydown", (event) => {
    if ((event.target as HTMLElement).closest("input, textarea, select")) return;
    if (event.key === " ") { event.preventDefault(); toggle(); }
    else if (event.key === "ArrowRight") show(index + 1);
    else if (event.key === "ArrowLeft") show(index - 1);
  });

  // The irreversible verdict asks first (no inline handler: the page's CSP forbids them).
  document.getElementById("verdict-discard")?.addEventListener("click", (event) => {
    const button = event.currentTarget as HTMLButtonElement;
    if (!window.confirm(button.dataset.confirm || "Reject for good?")) event.preventDefault();
  });

  show(0);
  const response = await fetch(config.masksUrl, { credentials: "same-origin" });
  if (!response.ok) {
    note.textContent = `Masks could not be loaded (${response.status}).`;
    return;
  }
  const body = (await response.json()) as { masks: StoredMask[] };
  let visible = 0;
  for (const mask of body.masks) {
    if (mask.object_id !== config.objectId) continue;
    counts.set(mask.frame, mask.counts);
    if (mask.area > 0) visible++;
  }
  note.textContent = `Object visible on ${visible} of ${frames.length} annotated frames. Space plays, ← → step.`;
  const first = frames.findIndex((frame) => (body.masks.find((m) => m.object_id === config.objectId && m.frame === frame)?.area ?? 0) > 0);
  show(first >= 0 ? first : 0);
  document.body.dataset.reviewReady = "true";
}

void main();
