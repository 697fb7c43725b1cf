// The review page: plays one masklet over its video (scrub, play/pause at the project's fps).
// Frames come through the annotation page's FrameCache and masks through its RLE codec, so
// the two pages decode and draw exactly the same pixels.

import { FrameCache } from "./annotate/frames";
import { decodeMask } from "./annotate/rle";
import { hexToRgb } from "./annotate/overlays";
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

interface StoredMask {
  object_id: number;
  frame: number;
  counts: string;
  area: number;
}

const COLOUR = hexToRgb("#ff3d7f");
const EDGE = hexToRgb("#fff200");

function outline(mask: Uint8Array, width: number, height: number): Uint8Array {
  const edge = new Uint8Array(mask.length);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      if (!mask[i]) continue;
      if (x === 0 || y === 0 || x === width - 1 || y === height - 1 || !mask[i - 1] || !mask[i + 1] || !mask[i - width] || !mask[i + width]) edge[i] = 1;
    }
  }
  return edge;
}

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
  const decoded = new Map<string, ImageData>();
  let index = 0;
  let timer: number | null = null;

  function overlay(frame: number): ImageData | null {
    const rle = counts.get(frame);
    if (!rle) return null;
    const key = `${frame}:${outlineBox.checked}`;
    let image = decoded.get(key);
    if (!image) {
      // A translucent fill (unless "outline only") and an opaque edge in a second colour: the fill
      // alone vanishes over an object of a similar colour, the edge is what the boundary is judged by.
      const mask = decodeMask(rle, height, width);
      const edge = outline(mask, width, height);
      image = new ImageData(width, height);
      for (let i = 0; i < mask.length; i++) {
        const colour = edge[i] ? EDGE : mask[i] && !outlineBox.checked ? COLOUR : null;
        if (!colour) continue;
        image.data[4 * i] = colour[0];
        image.data[4 * i + 1] = colour[1];
        image.data[4 * i + 2] = colour[2];
        image.data[4 * i + 3] = edge[i] ? 255 : 110;
      }
      decoded.set(key, image);
    }
    return image;
  }

  const layer = document.createElement("canvas");
  layer.width = width;
  layer.height = height;
  const layerContext = layer.getContext("2d")!;

  function draw(): void {
    const frame = frames[index];
    const bitmap = cache.get(frame);
    context.clearRect(0, 0, width, height);
    if (bitmap) context.drawImage(bitmap, 0, 0, width, height);
    const image = overlay(frame);
    if (image) {
      layerContext.putImageData(image, 0, 0);
      context.drawImage(layer, 0, 0);
    }
    label.textContent = `frame ${frame} (${index + 1} of ${frames.length})${counts.has(frame) ? "" : " · no mask"}`;
    canvas.dataset.frame = String(frame);
    canvas.dataset.drawn = bitmap ? "true" : "false";
  }

  function show(next: number): void {
    index = Math.max(0, Math.min(frames.length - 1, next));
    scrub.value = String(index);
    cache.want(frames.slice(index, index + 6));
    draw();
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
  scrub.addEventListener("input", () => show(Number(scrub.value)));
  play.addEventListener("click", toggle);
  outlineBox.addEventListener("change", draw);
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
