// Video page: step through the annotated frames without reloading (buttons, filmstrip, arrow
// keys). Without JavaScript the same links reload the page with ?frame=N. While the video is
// still ingesting, the page follows its progress and reloads once it is ready or failed.

import { isFinal, percent, type VideoJSON } from "./api";

const STATUS_POLL_MS = 1500;

function followIngest(viewer: HTMLElement): void {
  const url = viewer.dataset.statusUrl;
  const note = document.getElementById("ingest-note");
  if (!url) return;
  const tick = async (): Promise<void> => {
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      if (response.ok) {
        const video = (await response.json()) as VideoJSON;
        if (isFinal(video.status)) {
          location.reload();
          return;
        }
        if (note) {
          const progress = video.status === "ingesting" ? `, ${percent(video.progress)}` : "";
          note.textContent = `Frames appear here when ingest has finished (${video.status_label.toLowerCase()}${progress}).`;
        }
      }
    } catch {
      // Network hiccup: try again at the next tick.
    }
    window.setTimeout(tick, STATUS_POLL_MS);
  };
  window.setTimeout(tick, STATUS_POLL_MS);
}

function stepper(viewer: HTMLElement): void {
  const image = document.getElementById("frame-image") as HTMLImageElement | null;
  const caption = document.getElementById("frame-caption");
  if (!image || !caption) return;
  const frames = (viewer.dataset.frames ?? "").split(",").filter(Boolean).map(Number);
  const frameUrl = (index: number): string => (viewer.dataset.frameUrl ?? "").replace(/\/0\.jpg$/, `/${index}.jpg`);
  const pad = (index: number): string => String(index).padStart(5, "0");
  const initial = Number(new URLSearchParams(location.search).get("frame") ?? frames[0]);
  let position = Math.max(0, frames.indexOf(initial));

  const setButton = (id: string, target: number | undefined): void => {
    const button = document.getElementById(id);
    if (!button) return;
    button.classList.toggle("disabled", target === undefined);
    if (button instanceof HTMLAnchorElement) {
      if (target === undefined) button.removeAttribute("href");
      else button.href = `?frame=${target}`;
    }
  };

  const show = (next: number): void => {
    if (next < 0 || next >= frames.length) return;
    position = next;
    const index = frames[position];
    image.src = frameUrl(index);
    image.alt = `Frame ${index}`;
    caption.textContent = `Frame ${pad(index)} · ${position + 1} of ${frames.length}`;
    setButton("frame-prev", frames[position - 1]);
    setButton("frame-next", frames[position + 1]);
    viewer.querySelectorAll<HTMLElement>(".thumb").forEach((thumb) => {
      thumb.classList.toggle("current", Number(thumb.dataset.frame) === index);
    });
    history.replaceState(null, "", `?frame=${index}`);
  };

  viewer.addEventListener("click", (event) => {
    const target = (event.target as HTMLElement).closest<HTMLElement>("#frame-prev, #frame-next, .thumb");
    if (!target) return;
    event.preventDefault();
    if (target.id === "frame-prev") show(position - 1);
    else if (target.id === "frame-next") show(position + 1);
    else show(frames.indexOf(Number(target.dataset.frame)));
  });
  document.addEventListener("keydown", (event) => {
    if (event.target instanceof HTMLInputElement || event.target instanceof HTMLTextAreaElement) return;
    if (event.key === "ArrowLeft") show(position - 1);
    if (event.key === "ArrowRight") show(position + 1);
  });
}

function main(): void {
  const viewer = document.getElementById("viewer");
  if (!viewer) return;
  stepper(viewer);
  followIngest(viewer);
}

main();
