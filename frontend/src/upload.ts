// Project page: upload a video with a progress bar, then follow its ingest live.
//
// The upload goes to the JSON API with XMLHttpRequest (fetch cannot report upload progress).
// Ingest status comes over the project's video WebSocket; if the socket cannot open or drops,
// the page polls the API instead. The video table updates from the same messages.

import { type ApiError, csrfToken, fileSize, isFinal, percent, required, type StatusMessage, type VideoJSON } from "./api";
import type { Refresh } from "./generated/protocol";
import { ReconnectingSocket } from "./socket";

const POLL_MS = 1000;

class VideoTable {
  constructor(private readonly table: HTMLTableElement) {}

  private videoUrl(id: number): string {
    return (this.table.dataset.videoUrl ?? "").replace(/\/0\/$/, `/${id}/`);
  }

  update(video: VideoJSON): void {
    const body = this.table.tBodies[0];
    let row = body.querySelector<HTMLTableRowElement>(`tr[data-video-id="${video.id}"]`);
    if (!row) {
      body.querySelector("tr.empty-row")?.remove();
      row = body.insertRow(0);
      row.dataset.videoId = String(video.id);
      // Columns: thumbnail, name, status, split, progress, frames, size, notes, actions (a reload fills them all).
      for (let i = 0; i < 9; i++) row.insertCell();
      const link = document.createElement("a");
      link.href = this.videoUrl(video.id);
      link.textContent = video.name;
      row.cells[1].append(link);
      row.cells[3].textContent = video.split_label;
      row.cells[5].dataset.role = "frames";
      row.cells[5].className = "num";
      row.cells[6].className = "num";
      row.cells[6].textContent = fileSize(video.file_size);
      row.cells[7].dataset.role = "reason";
      row.cells[7].className = "reason";
      const badge = document.createElement("span");
      badge.dataset.role = "status";
      row.cells[2].append(badge);
    }
    const badge = row.querySelector<HTMLElement>("[data-role=status]");
    if (badge) {
      badge.className = `badge status-${video.status}`;
      badge.textContent = video.status === "ingesting"
        ? `${video.status_label} ${percent(video.progress)}` : video.status_label;
    }
    const frames = row.querySelector<HTMLElement>("[data-role=frames]");
    if (frames && video.annotated_frame_count) {
      frames.textContent = `${video.annotated_frame_count} of ${video.frame_count ?? "?"}`;
    }
    const reason = row.querySelector<HTMLElement>("[data-role=reason]");
    if (reason) reason.textContent = video.failure_reason;
  }

  remove(id: number): void {
    this.table.querySelector(`tr[data-video-id="${id}"]`)?.remove();
  }
}

/** One source of video updates: the WebSocket while it works, API polling when it does not. */
class VideoFeed {
  private readonly socket: ReconnectingSocket;
  private pollTimer: number | null = null;
  private readonly watched = new Set<number>();

  constructor(
    wsPath: string,
    private readonly apiUrl: string,
    private readonly onVideo: (video: VideoJSON) => void,
    private readonly onRemoved: (id: number) => void,
  ) {
    this.socket = new ReconnectingSocket(() => wsPath, {
      message: (data) => this.handle(data as StatusMessage),
      state: (state) => {
        if (state !== "open") this.startPolling();
      },
    });
  }

  start(): void {
    this.socket.open();
  }

  /** Follow this video closely (after an upload): ask the socket for a fresh snapshot. */
  watch(id: number): void {
    this.watched.add(id);
    const refresh: Refresh = { type: "refresh" };
    if (!this.socket.send(refresh)) this.startPolling();
  }

  private handle(message: StatusMessage): void {
    if (message.type === "snapshot") message.videos.forEach((video) => this.deliver(video));
    else if (message.type === "video") this.deliver(message.video);
    else if (message.type === "removed") this.onRemoved(message.id);
  }

  private deliver(video: VideoJSON): void {
    this.onVideo(video);
    if (isFinal(video.status)) this.watched.delete(video.id);
  }

  private startPolling(): void {
    if (this.pollTimer !== null || this.socket.isOpen) return;
    const tick = async (): Promise<void> => {
      for (const id of [...this.watched]) {
        try {
          const response = await fetch(`${this.apiUrl}${id}/`, { credentials: "same-origin" });
          if (response.ok) this.deliver((await response.json()) as VideoJSON);
        } catch {
          // Network hiccup: try again at the next tick.
        }
      }
      this.pollTimer = this.watched.size > 0 && !this.socket.isOpen ? window.setTimeout(tick, POLL_MS) : null;
    };
    this.pollTimer = window.setTimeout(tick, POLL_MS);
  }
}

function describeError(xhr: XMLHttpRequest): string {
  try {
    const body = JSON.parse(xhr.responseText) as ApiError;
    if (body.error?.message) return body.error.message;
  } catch {
    // Not JSON (a proxy's error page, say): fall through to the status text.
  }
  if (xhr.status === 413) return "The file is too large.";
  if (xhr.status === 403) return "The server refused the upload (are you still signed in?).";
  return xhr.status ? `Upload failed (HTTP ${xhr.status}).` : "Upload failed: the connection was lost.";
}

function main(): void {
  const panel = document.getElementById("upload");
  const tableElement = document.getElementById("video-table") as HTMLTableElement | null;
  const table = tableElement ? new VideoTable(tableElement) : null;
  const apiUrl = panel?.dataset.apiUrl ?? "";
  const wsPath = panel?.dataset.wsPath ?? tableElement?.dataset.wsPath ?? "";
  let current: number | null = null;

  const status = panel ? required<HTMLElement>("#upload-status", panel) : null;
  const ingestBar = panel ? required<HTMLProgressElement>("#ingest-progress", panel) : null;
  const ingestLabel = panel ? required<HTMLElement>("#ingest-label", panel) : null;
  const ingestPercent = panel ? required<HTMLElement>("#ingest-percent", panel) : null;
  const result = panel ? required<HTMLElement>("#upload-result", panel) : null;

  const showIngest = (video: VideoJSON): void => {
    if (!ingestBar || !ingestLabel || !ingestPercent || !result || video.id !== current) return;
    const done = video.status === "ready";
    ingestBar.value = done ? 100 : Math.round(video.progress * 100);
    ingestPercent.textContent = done ? percent(1) : percent(video.progress);
    ingestLabel.textContent = `Ingest: ${video.status_label}`;
    ingestBar.dataset.status = video.status;
    if (video.status === "ready") {
      result.className = "result ok";
      result.replaceChildren("Ready: ");
      const link = document.createElement("a");
      link.href = (panel?.dataset.videoUrl ?? "").replace(/\/0\/$/, `/${video.id}/`);
      link.id = "open-video";
      link.textContent = `open ${video.name}`;
      result.append(link);
    } else if (video.status === "failed") {
      result.className = "result bad";
      result.textContent = `Failed: ${video.failure_reason || "no reason was recorded."}`;
    }
  };

  const feed = wsPath && apiUrl
    ? new VideoFeed(wsPath, apiUrl, (video) => { table?.update(video); showIngest(video); }, (id) => table?.remove(id))
    : null;
  feed?.start();

  const form = document.getElementById("upload-form") as HTMLFormElement | null;
  if (!panel || !form || !status || !result) return;
  const uploadBar = required<HTMLProgressElement>("#upload-progress", panel);
  const uploadPercent = required<HTMLElement>("#upload-percent", panel);
  const uploadLabel = required<HTMLElement>("#upload-label", panel);
  const button = required<HTMLButtonElement>("button[type=submit]", form);

  const queueList = required<HTMLOListElement>("#upload-queue", panel);
  const nameInput = form.querySelector<HTMLInputElement>("input[name=name]");
  const allowDuplicate = form.querySelector<HTMLInputElement>("input[name=allow_duplicate]");
  const queue: { file: File; item: HTMLLIElement }[] = [];
  let busy = false;

  const mark = (item: HTMLLIElement, state: string, text: string): void => {
    item.dataset.state = state;
    item.textContent = text;
  };

  /** Upload one file; resolves with the HTTP status and the answer's JSON (or null). */
  const send = (file: File, name: string, allow: boolean): Promise<{ xhr: XMLHttpRequest }> => new Promise((resolve) => {
    const data = new FormData();
    data.append("file", file);
    if (name) data.append("name", name);
    if (allow) data.append("allow_duplicate", "1");
    const xhr = new XMLHttpRequest();
    xhr.open("POST", apiUrl);
    xhr.setRequestHeader("X-CSRFToken", csrfToken(form));
    xhr.setRequestHeader("Accept", "application/json");
    uploadBar.value = 0;
    uploadPercent.textContent = percent(0);
    uploadLabel.textContent = `Uploading ${file.name}…`;
    xhr.upload.addEventListener("progress", (progress) => {
      if (!progress.lengthComputable) return;
      uploadBar.value = Math.round((progress.loaded / progress.total) * 100);
      uploadPercent.textContent = percent(progress.loaded / progress.total);
    });
    xhr.addEventListener("load", () => resolve({ xhr }));
    xhr.addEventListener("error", () => resolve({ xhr }));
    xhr.send(data);
  });

  /** Files go one after another (a batch does not flood the server); each has a line in the queue. */
  const drain = async (): Promise<void> => {
    if (busy) return;
    busy = true;
    button.disabled = true;
    while (queue.length) {
      const { file, item } = queue.shift()!;
      const name = queue.length === 0 && nameInput && !item.dataset.batch ? nameInput.value.trim() : "";
      status.hidden = false;
      current = null;
      result.className = "result";
      result.textContent = "";
      required<HTMLProgressElement>("#ingest-progress", panel).value = 0;
      required<HTMLElement>("#ingest-label", panel).textContent = "Waiting for the upload to finish";
      required<HTMLElement>("#ingest-percent", panel).textContent = "";
      mark(item, "uploading", `${file.name}: uploading…`);
      let { xhr } = await send(file, name, Boolean(allowDuplicate?.checked));
      if (xhr.status === 409) {
        // The same file is in the project already: the uploader decides.
        const body = JSON.parse(xhr.responseText) as { duplicate_of?: { name: string } };
        const other = body.duplicate_of?.name ?? "another video";
        if (window.confirm(`${file.name} is the same file as “${other}”, already in this project. Upload it anyway?`)) {
          ({ xhr } = await send(file, name, true));
        } else {
          mark(item, "skipped", `${file.name}: skipped, the same file as ${other} is in the project already`);
          uploadLabel.textContent = "Upload skipped";
          continue;
        }
      }
      if (xhr.status !== 201) {
        uploadLabel.textContent = "Upload refused";
        result.className = "result bad";
        result.textContent = describeError(xhr);
        mark(item, "refused", `${file.name}: ${describeError(xhr)}`);
        continue;
      }
      const video = JSON.parse(xhr.responseText) as VideoJSON;
      uploadBar.value = 100;
      uploadPercent.textContent = percent(1);
      uploadLabel.textContent = `Uploaded ${video.name}`;
      mark(item, "uploaded", `${file.name}: uploaded as ${video.name}`);
      current = video.id;
      table?.update(video);
      showIngest(video);
      if (!isFinal(video.status)) feed?.watch(video.id);
    }
    form.reset();
    button.disabled = false;
    busy = false;
  };

  const enqueue = (files: File[]): void => {
    if (!files.length) {
      result.className = "result bad";
      result.textContent = "Choose a video file first.";
      status.hidden = false;
      return;
    }
    queueList.hidden = false;
    for (const file of files) {
      const item = document.createElement("li");
      if (files.length > 1) item.dataset.batch = "1";  // a typed name is for one file, not a batch
      mark(item, "waiting", `${file.name}: waiting`);
      queueList.append(item);
      queue.push({ file, item });
    }
    void drain();
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    enqueue([...(required<HTMLInputElement>("input[type=file]", form).files ?? [])]);
  });
  // Drag and drop anywhere on the upload card.
  panel.addEventListener("dragover", (event) => {
    event.preventDefault();
    form.classList.add("dragging");
  });
  panel.addEventListener("dragleave", () => form.classList.remove("dragging"));
  panel.addEventListener("drop", (event) => {
    event.preventDefault();
    form.classList.remove("dragging");
    enqueue([...(event.dataTransfer?.files ?? [])]);
  });
}

main();
