// The annotation page: wires the canvas, tools, objects panel, timeline and the WebSocket.
//
// Every edit goes to the server and the view shows what the server stored (the `mask` reply);
// only brush strokes are shown before the reply, and put back if the server refuses them.
//
// Besides what renderer.ts publishes, the page state is on the canvas as data-* attributes (the
// read-only hook of the browser tests): connection, model, model-version (the registered version
// the edits use, "none" for the settings' model), can-edit, busy (requests waiting for
// a reply), error / error-code (the error shown), selected, objects, read-only, tool,
// masks-loaded (stored-mask loads done), last-edit ("object frame revision area" of the last
// edit, undo or redo the server confirmed), undo / redo (history depth), tracking ("1" while a
// track runs), tracked (tracks finished), track-end (how the last track ended: done, cancelled,
// error, or lost with the connection), playing ("1" while the video plays).

import { BrushStroke } from "./brush";
import { Colours } from "./colours";
import { Connection, type ConnectionState, type Outgoing } from "./connection";
import { FrameCache } from "./frames";
import { History, type Edit } from "./history";
import { OverlayCache } from "./overlays";
import { ObjectsPanel, objectName } from "./panel";
import type { Hello, ServerMessage, TrackedObject } from "../generated/protocol";
import { ERROR_WORDS, errorWords, type Direction, type MaskFields } from "./protocol";
import { Radar } from "./radar";
import { Renderer, type Scene } from "./renderer";
import { commandFor, renderHelp } from "./shortcuts";
import { Store } from "./store";
import { Timeline } from "./timeline";
import { Viewport } from "./viewport";

type Tool = "click" | "box" | "brush" | "eraser";
type Reply = ServerMessage;
/** How the last track of this page ended (published as the canvas's `data-track-end`). */
type TrackEnd = "done" | "cancelled" | "error" | "lost";

/** This page's track, from the request until it ends. `op` is null until `track_started` names it. */
interface TrackState {
  request: string;
  op: string | null;
  done: number;
  total: number;
  cancel: boolean;
}

const PRELOAD_AHEAD = 8;
const PRELOAD_BEHIND = 4;
const OVERLAY_PREFETCH = 3;
const FRAME_BUDGET_PIXELS = 120_000_000;

function el<T extends HTMLElement>(root: ParentNode, selector: string): T {
  const element = root.querySelector<T>(selector);
  if (!element) throw new Error(`missing element ${selector}`);
  return element;
}

function jsonScript<T>(id: string, fallback: T): T {
  const node = document.getElementById(id);
  if (!node?.textContent) return fallback;
  return JSON.parse(node.textContent) as T;
}

export class AnnotateApp {
  private readonly store: Store;
  private readonly colours: Colours;
  private readonly frames: FrameCache;
  private readonly overlays: OverlayCache;
  private readonly viewport: Viewport;
  private readonly renderer: Renderer;
  private readonly timeline: Timeline;
  private readonly radar: Radar;
  private readonly panel: ObjectsPanel;
  private readonly connection: Connection;
  private readonly history = new History();
  private readonly canvas: HTMLCanvasElement;

  private labels: string[];
  private position = 0;
  private selected: number | null = null;
  private readonly hidden = new Set<number>();
  private tool: Tool = "click";
  private brushRadius = 12;
  private readonly points = new Map<string, { x: number; y: number; positive: boolean }[]>();
  private stroke: BrushStroke | null = null;
  private box: [number, number, number, number] | null = null;
  private cursor: { x: number; y: number } | null = null;
  private pan: { x: number; y: number } | null = null;
  private spaceDown = false;
  private busy = 0;
  private trackState: TrackState | null = null;
  private fetchSeq = 0;
  private liveDuringFetch: MaskFields[] | null = null;
  private creating: Promise<number | null> | null = null;
  /** The play timer while the video plays (one annotated frame per tick at the project's annotation fps). */
  private playTimer: number | null = null;
  private readonly fps: number;

  constructor(private readonly root: HTMLElement) {
    const data = root.dataset;
    const frames = jsonScript<number[]>("annotate-frames", []);
    const width = Number(data.videoWidth), height = Number(data.videoHeight);
    this.labels = jsonScript<string[]>("annotate-labels", []);
    this.fps = Math.max(1, Number(data.annotationFps) || 6);
    this.store = new Store(frames, width, height);
    this.store.canEdit = data.canEdit === "true";
    this.store.canManage = data.canManage === "true";
    this.colours = new Colours(`masklet-colours-${data.videoId}`);
    const maxFrames = Math.max(16, Math.min(400, Math.floor(FRAME_BUDGET_PIXELS / Math.max(1, width * height))));
    this.frames = new FrameCache(data.frameUrl ?? "", maxFrames);
    const workers = Math.min(2, Math.max(1, (navigator.hardwareConcurrency || 2) - 1));
    this.overlays = new OverlayCache(data.workerUrl ?? "", height, width, 120_000_000, workers);
    this.viewport = new Viewport(width, height);
    this.canvas = el<HTMLCanvasElement>(root, "#frame-canvas");
    this.renderer = new Renderer(this.canvas, this.viewport, this.frames, this.overlays, this.store, () => this.scene());
    this.frames.onLoaded = (frame) => {
      if (frame === this.frame || this.renderer.pendingRedraw) this.renderer.invalidate();
    };
    this.overlays.onReady = () => {
      if (this.renderer.pendingRedraw) this.renderer.invalidate();
    };
    this.timeline = new Timeline(el(root, "#timeline"), el<HTMLInputElement>(root, "#scrubber"), this.store,
      () => this.store.objectIds().filter((id) => !this.hidden.has(id)).map((id) => ({
        id, name: objectName(this.store.masklets.get(id)!), colour: this.colours.get(id), selected: id === this.selected,
      })), (position) => this.seek(position));
    this.radar = new Radar(this.store, data.seenUrl ?? "", data.csrf ?? "", (text) => this.say(text));
    this.panel = new ObjectsPanel(el(root, "#object-list"), el(root, "#object-details"), this.store, {
      select: (id) => void this.select(id),
      label: (id, label) => void this.updateLabel(id, label),
      colour: (id, colour) => this.setColour(id, colour),
      visible: (id, visible) => this.setVisible(id, visible),
      remove: (id) => void this.removeObject(id),
      submit: (id) => void this.objectCommand("submit", id),
      reopen: (id) => void this.objectCommand("reopen", id),
    }, (id) => this.colours.get(id), (id) => !this.hidden.has(id));
    this.store.onChange((objectId, frame) => {
      if (frame === null || frame === this.frame) this.renderer.invalidate();
      this.timeline.invalidate();
      if (frame === null || objectId === this.selected) this.refreshPanel();
    });
    this.connection = new Connection(data.wsPath ?? "", {
      state: (state, detail) => this.showConnection(state, detail),
      hello: (hello, reconnected) => this.hello(hello, reconnected),
      message: (message) => this.message(message),
    });
    renderHelp(el<HTMLTableElement>(root, "#shortcut-table"));
    this.bindControls();
    this.bindCanvas();
    this.bindKeys();
    this.setTool("click");
    this.refreshPanel();
    const params = new URLSearchParams(location.search);
    const initial = Number(params.get("frame"));
    this.seek(Math.max(0, frames.indexOf(initial)));
    // The work queue links here with ?object=N: that object is selected (and so locked) on hello.
    const wanted = Number(params.get("object"));
    if (Number.isInteger(wanted) && wanted > 0) this.selected = wanted;
    void this.fetchMasks();
    void this.radar.load();
    this.connection.open();
  }

  private get frame(): number {
    return this.store.frames[this.position] ?? 0;
  }

  // -- view ----------------------------------------------------------------------------------

  private scene(): Scene {
    const frame = this.frame;
    const objects = this.store.objectIds().map((id) => ({
      id, colour: this.colours.get(id), visible: !this.hidden.has(id), selected: id === this.selected,
    }));
    const preview = this.stroke && this.stroke.frame === frame ? { objectId: this.stroke.objectId, canvas: this.stroke.canvas } : null;
    const points = this.selected !== null ? this.points.get(`${this.selected}:${frame}`) ?? [] : [];
    const brushing = (this.tool === "brush" || this.tool === "eraser") && this.cursor && !this.pan;
    return {
      frame, objects, preview, points, box: this.box,
      cursor: brushing && this.cursor ? { ...this.cursor, radius: this.brushRadius, erase: this.tool === "eraser" } : null,
    };
  }

  seek(position: number): void {
    const n = this.store.frames.length;
    if (n === 0) return;
    position = Math.max(0, Math.min(n - 1, position));
    const moved = position !== this.position;
    this.position = position;
    if (this.stroke && this.stroke.frame !== this.frame) this.endStroke();
    const frames = this.store.frames;
    const wanted = [frames[position]];
    for (let d = 1; d <= PRELOAD_AHEAD; d++) {
      if (position + d < n) wanted.push(frames[position + d]);
      if (d <= PRELOAD_BEHIND && position - d >= 0) wanted.push(frames[position - d]);
    }
    this.frames.want(wanted);
    this.overlays.dropPrefetches();
    for (let d = 1; d <= OVERLAY_PREFETCH; d++) {
      for (const p of [position + d, position - d]) {
        if (p < 0 || p >= n) continue;
        for (const id of this.store.objectIds()) {
          if (this.hidden.has(id)) continue;
          const mask = this.store.get(id, frames[p]);
          if (mask && mask.area > 0) this.overlays.get(id, frames[p], mask.counts, this.colours.get(id), false);
        }
      }
    }
    this.renderer.invalidate();
    this.timeline.setPosition(position);
    el(this.root, "#frame-caption").textContent =
      `Frame ${String(this.frame).padStart(5, "0")} · ${position + 1} of ${n}`;
    (el<HTMLButtonElement>(this.root, "#frame-prev")).disabled = position === 0;
    (el<HTMLButtonElement>(this.root, "#frame-next")).disabled = position === n - 1;
    if (moved) history.replaceState(null, "", `?frame=${this.frame}`);
    if (this.playTimer === null) this.radar.viewing(this.selected, this.frame);
  }

  /** J: show the selected object's lowest-scored frame nobody has looked at yet (it counts as looked at). */
  private async jumpToSuspect(): Promise<void> {
    const selected = this.selected;
    if (selected === null) {
      this.say("Select an object first: J jumps to its lowest-scored frame nobody has looked at.");
      return;
    }
    await this.radar.loaded;
    if (this.selected !== selected || !this.store.masklets.has(selected)) return; // another object since
    const frame = this.radar.nextSuspect(selected);
    const name = objectName(this.store.masklets.get(selected)!);
    if (frame === null) {
      this.say(`${name}: every scored frame has been looked at.`);
      return;
    }
    if (this.playTimer !== null) this.togglePlay(false);
    const score = this.store.get(selected, frame)?.quality ?? 0;
    this.seek(this.store.frames.indexOf(frame));
    this.radar.viewing(selected, frame, true);
    this.canvas.dataset.suspect = String(frame);
    this.say(`${name}: suspect frame ${frame} (score ${score.toFixed(2)}).`);
  }

  private refreshPanel(): void {
    this.panel.render(this.selected, this.labels);
    const data = this.canvas.dataset;
    data.selected = this.selected === null ? "" : String(this.selected);
    data.objects = String(this.store.masklets.size);
    const editable = this.selected !== null && this.store.editable(this.selected);
    const banner = el(this.root, "#readonly-banner");
    const masklet = this.selected !== null ? this.store.masklets.get(this.selected) : undefined;
    let text = "";
    if (!this.store.canEdit) text = "Read only: your role in this project can look but not edit.";
    else if (masklet && !editable) {
      if (masklet.lock_holder && !masklet.locked_by_me) text = `${objectName(masklet)} is being edited by ${masklet.lock_holder}: read only.`;
      else if (masklet.status !== "draft") text = `${objectName(masklet)} is ${masklet.status}: read only.`;
    }
    banner.textContent = text;
    banner.hidden = !text;
    data.readOnly = text ? "1" : "0";
    for (const button of this.root.querySelectorAll<HTMLButtonElement>("[data-needs-edit]")) {
      button.disabled = !this.store.canEdit;
    }
    data.undo = String(this.history.undoDepth);
    data.redo = String(this.history.redoDepth);
    (el<HTMLButtonElement>(this.root, "#undo")).disabled = !this.history.canUndo || !this.store.canEdit;
    (el<HTMLButtonElement>(this.root, "#redo")).disabled = !this.history.canRedo || !this.store.canEdit;
    this.timeline.invalidate();
    this.renderer.invalidate();
  }

  private setBusy(delta: number): void {
    this.busy += delta;
    this.canvas.dataset.busy = String(this.busy);
    el(this.root, "#status-busy").hidden = this.busy === 0;
  }

  private showError(code: string, message: string): void {
    const text = message || errorWords(code) || "Something went wrong.";
    const box = el(this.root, "#status-error");
    el(box, ".text").textContent = text;
    box.hidden = false;
    this.canvas.dataset.error = text;
    this.canvas.dataset.errorCode = code;
  }

  private clearError(): void {
    el(this.root, "#status-error").hidden = true;
    this.canvas.dataset.error = "";
    this.canvas.dataset.errorCode = "";
  }

  private say(text: string): void {
    const note = el(this.root, "#status-note");
    note.textContent = text;
    note.title = text; // the status line keeps its height: a message longer than it shows is whole here
    note.classList.remove("warn");
  }

  private showConnection(state: ConnectionState, detail: string): void {
    const pill = el(this.root, "#status-connection");
    pill.dataset.state = state;
    const words: Record<ConnectionState, string> = {
      connecting: "Connecting…", connected: "Connected", reconnecting: "Reconnecting…", closed: "Disconnected",
    };
    pill.textContent = words[state] + (detail && state !== "closed" ? ` (${detail})` : "");
    this.canvas.dataset.connection = state;
    if (state === "closed") this.showError("closed", detail);
    // The server stops a socket's track when the socket goes: no track_done will come for it.
    if (state !== "connected" && this.trackState) {
      this.trackEnded("lost");
      this.say("The connection was lost while tracking, so tracking stopped. The frames it reached are stored; "
        + "track again once the page has reconnected.");
    }
  }

  // -- server --------------------------------------------------------------------------------

  private hello(hello: Hello, reconnected: boolean): void {
    this.store.username = hello.user.username;
    this.store.canEdit = hello.can_edit;
    this.labels = hello.labels;
    this.root.classList.toggle("read-only", !hello.can_edit);
    this.canvas.dataset.canEdit = hello.can_edit ? "1" : "0";
    this.setModel(hello.model, hello.model_version, hello.model_fallback);
    this.fillNewLabel();
    this.store.setMasklets(hello.masklets);
    this.connection.keepAlive(Math.max(5, hello.lock_seconds / 3));
    if (this.selected !== null && !this.store.masklets.has(this.selected)) this.selected = null;
    if (this.selected === null) {
      const mine = hello.masklets.find((m) => m.locked_by_me && m.status === "draft");
      if (mine) this.selected = mine.object_id;
    }
    if (reconnected) {
      if (this.trackState) this.trackEnded("lost"); // the old socket's track was stopped with it
      void this.fetchMasks();
      this.say("Reconnected: showing what the server stored.");
    }
    if (this.selected !== null) void this.select(this.selected);
    this.refreshPanel();
  }

  private setModel(model: string, version?: number | null, fallback?: boolean): void {
    el(this.root, "#status-model").textContent = model;
    if (fallback !== undefined) el(this.root, "#status-fallback").hidden = !fallback;
    this.canvas.dataset.model = model;
    if (version !== undefined) this.canvas.dataset.modelVersion = String(version ?? "none");
  }

  private async fetchMasks(): Promise<void> {
    const seq = ++this.fetchSeq;
    this.liveDuringFetch = [];
    try {
      const response = await fetch(this.root.dataset.masksUrl ?? "", { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const body = (await response.json()) as { masks: MaskFields[] };
      if (seq !== this.fetchSeq) return;
      const live = this.liveDuringFetch ?? [];
      this.liveDuringFetch = null;
      this.store.replaceMasks(body.masks);
      for (const mask of live) this.store.putMask(mask);
      this.canvas.dataset.masksLoaded = String(Number(this.canvas.dataset.masksLoaded ?? "0") + 1);
      this.seek(this.position);
    } catch (error) {
      if (seq === this.fetchSeq) {
        this.liveDuringFetch = null;
        this.showError("load", `Could not load the stored masks (${String(error)}). Reload the page to try again.`);
      }
    }
  }

  private putMask(mask: MaskFields): void {
    this.liveDuringFetch?.push(mask);
    this.store.putMask(mask);
  }

  private message(message: ServerMessage): void {
    switch (message.type) {
      case "object":
        this.store.putMasklet(message.masklet);
        this.refreshPanel();
        break;
      case "object_deleted":
        this.forgetObject(message.object_id);
        break;
      case "mask":
        this.putMask(message);
        break;
      case "track_started":
        if (!message.by && this.trackState && String(message.re) === this.trackState.request) {
          this.trackState.op = message.op;
          this.trackProgress(0, message.total);
          if (this.trackState.cancel) this.sendCancel(message.op);
        }
        break;
      case "track_progress":
        for (const mask of message.masks) this.putMask(mask);
        if (!message.by && message.op === this.trackState?.op) this.trackProgress(message.done, message.total);
        break;
      case "track_done":
        if (!message.by && message.op === this.trackState?.op) this.trackDone(message);
        break;
      case "worker": {
        const words = { assigning: "starting a model session…", ready: "", rebuilding: "rebuilding the session from stored masks…", lost: "model worker lost, moving to another…" };
        el(this.root, "#status-worker").textContent = words[message.state] ?? "";
        if (message.model) this.setModel(message.model, message.model_version, message.model_fallback);
        break;
      }
      case "error":
        if (message.re === undefined || message.re === null) this.showError(message.code, message.error);
        else if (this.trackState?.op && String(message.re) === this.trackState.request) this.trackFailed(message.code, message.error);
        // Other errors with `re` answer a request, whose caller shows them.
        break;
      default:
        break;
    }
  }

  private forgetObject(objectId: number): void {
    this.store.removeMasklet(objectId);
    this.overlays.forgetObject(objectId);
    this.history.dropObject(objectId);
    if (this.selected === objectId) this.selected = null;
    this.refreshPanel();
  }

  /** Send a request; error replies are shown in plain words and returned as null. */
  private async ask(message: Outgoing, id?: string): Promise<Reply | null> {
    this.setBusy(1);
    try {
      const reply = await this.connection.request(message, id);
      if (reply.type === "error") {
        this.showError(reply.code, reply.error);
        return null;
      }
      this.clearError();
      return reply;
    } finally {
      this.setBusy(-1);
    }
  }

  // -- objects -------------------------------------------------------------------------------

  /** New objects start with the label used last in this project (kept per browser), else none. */
  private get lastLabelKey(): string {
    return `masklet-last-label-${this.root.dataset.projectSlug ?? ""}`;
  }

  private rememberLabel(label: string): void {
    try {
      localStorage.setItem(this.lastLabelKey, label);
    } catch {
      // Storage full or disabled: the choice lasts for this page only.
    }
    const select = el<HTMLSelectElement>(this.root, "#new-object-label");
    select.dataset.chosen = label;
    if (this.labels.includes(label) || label === "") select.value = label;
  }

  private fillNewLabel(): void {
    const select = el<HTMLSelectElement>(this.root, "#new-object-label");
    let last = select.dataset.chosen ?? "";
    try {
      last = localStorage.getItem(this.lastLabelKey) ?? last;
    } catch {
      // No storage: the choice made on this page, if any.
    }
    if (!select.dataset.listening) {
      select.dataset.listening = "1";
      select.addEventListener("change", () => this.rememberLabel(select.value));
    }
    select.replaceChildren(...["", ...this.labels].map((label, index) => {
      const option = document.createElement("option");
      option.value = label;
      option.textContent = label ? (index <= 9 ? `${index} ${label}` : label) : "(no label)";
      return option;
    }));
    select.value = this.labels.includes(last) ? last : "";
  }

  private async addObject(): Promise<number | null> {
    if (!this.store.canEdit) {
      this.showError("read_only", ERROR_WORDS.read_only);
      return null;
    }
    const label = el<HTMLSelectElement>(this.root, "#new-object-label").value;
    const reply = await this.ask({ type: "add_object", ...(label ? { label } : {}) });
    if (!reply || reply.type !== "object") return null;
    this.store.putMasklet(reply.masklet);
    this.selected = reply.masklet.object_id;
    this.refreshPanel();
    return this.selected;
  }

  async select(objectId: number): Promise<void> {
    this.selected = objectId;
    this.refreshPanel();
    if (this.playTimer === null) this.radar.viewing(objectId, this.frame);
    const masklet = this.store.masklets.get(objectId);
    if (!masklet || !this.store.canEdit || masklet.status !== "draft") return;
    if (masklet.lock_holder && !masklet.locked_by_me) return; // read-only: shown with who holds it
    const reply = await this.connection.request({ type: "lock", object_id: objectId });
    if (reply.type === "object") this.store.putMasklet(reply.masklet);
    else if (reply.type === "error" && reply.code !== "offline") this.showError(reply.code, reply.error);
    this.refreshPanel();
  }

  private async updateLabel(objectId: number, label: string): Promise<void> {
    const reply = await this.ask({ type: "update_object", object_id: objectId, label });
    if (reply?.type === "object") {
      this.store.putMasklet(reply.masklet);
      this.rememberLabel(label);
    }
    this.refreshPanel();
  }

  private setColour(objectId: number, colour: string): void {
    this.colours.set(objectId, colour);
    this.refreshPanel();
  }

  private setVisible(objectId: number, visible: boolean): void {
    if (visible) this.hidden.delete(objectId);
    else this.hidden.add(objectId);
    this.refreshPanel();
  }

  private async removeObject(objectId: number): Promise<void> {
    const masklet = this.store.masklets.get(objectId);
    if (!masklet) return;
    const frames = this.store.presentCount(objectId);
    if (!window.confirm(`Delete object ${objectName(masklet)} and its masks on ${frames} frame${frames === 1 ? "" : "s"}? This cannot be undone.`)) return;
    const reply = await this.ask({ type: "delete_object", object_id: objectId });
    if (reply?.type === "object_deleted") this.forgetObject(objectId);
  }

  private async objectCommand(type: "submit" | "reopen", objectId: number): Promise<void> {
    const masklet = this.store.masklets.get(objectId);
    const gaps = this.store.gaps(objectId);
    if (type === "submit" && masklet && gaps.length && !window.confirm(this.gapsQuestion(masklet.object_id, gaps))) {
      this.say(`${objectName(masklet)} not submitted: it has no mask on ${gaps.length} frame${gaps.length === 1 ? "" : "s"} `
        + `(first at frame ${gaps[0]}).`);
      return;
    }
    const reply = await this.ask({ type, object_id: objectId });
    if (reply?.type === "object") {
      this.store.putMasklet(reply.masklet);
      this.say(type === "submit" ? `${objectName(reply.masklet)} submitted for review.` : `${objectName(reply.masklet)} reopened: you can edit it again.`);
    }
    this.refreshPanel();
  }

  /** What Submit asks when the object has frames without a mask between its first and last masked frame. */
  private gapsQuestion(objectId: number, gaps: number[]): string {
    const masklet = this.store.masklets.get(objectId)!;
    const frames = this.store.frames;
    const masked = frames.filter((frame) => (this.store.get(objectId, frame)?.area ?? 0) > 0);
    const span = frames.indexOf(masked[masked.length - 1]) - frames.indexOf(masked[0]) + 1;
    const shown = gaps.slice(0, 8).join(", ") + (gaps.length > 8 ? ", …" : "");
    return `${objectName(masklet)} has no mask on ${gaps.length} of the ${span} frames from frame ${masked[0]} `
      + `to frame ${masked[masked.length - 1]} (frames ${shown}). Submit anyway?`;
  }

  /** The object an edit applies to: the selected one if editable, else a new one. */
  private async editTarget(): Promise<number | null> {
    if (!this.store.canEdit) {
      this.showError("read_only", "Read only: your role in this project cannot edit masks.");
      return null;
    }
    if (this.selected === null) {
      this.creating ??= this.addObject().finally(() => { this.creating = null; });
      return this.creating;
    }
    if (this.store.editable(this.selected)) return this.selected;
    const masklet = this.store.masklets.get(this.selected);
    if (masklet && masklet.status === "draft" && !masklet.lock_holder) {
      await this.select(this.selected);
      if (this.store.editable(this.selected)) return this.selected;
    }
    if (masklet?.lock_holder && !masklet.locked_by_me) this.showError("locked", `${masklet.lock_holder} is editing ${objectName(masklet)}; it is read only for you. Press N for a new object.`);
    else if (masklet && masklet.status !== "draft") this.showError("read_only", `${objectName(masklet)} is ${masklet.status}; it is read only. Press N for a new object.`);
    return null;
  }

  // -- edits ---------------------------------------------------------------------------------

  private async edit(message: Extract<Outgoing, { type: "click" | "box" | "paint" | "clear" }>): Promise<boolean> {
    const { object_id: objectId, frame } = message;
    const reply = await this.ask(message);
    if (!reply || reply.type !== "mask") return false;
    this.putMask(reply);
    this.showEdit(reply);
    this.history.record({ objectId, frame, before: reply.previous_revision, after: reply.revision });
    this.refreshPanel();
    return true;
  }

  /** Publish the stored mask an edit's reply carried: `data-last-edit` = "object frame revision area". */
  private showEdit(mask: MaskFields): void {
    this.canvas.dataset.lastEdit = `${mask.object_id} ${mask.frame} ${mask.revision} ${mask.area}`;
  }

  private async click(vx: number, vy: number, positive: boolean): Promise<void> {
    const frame = this.frame;
    const objectId = await this.editTarget();
    if (objectId === null) return;
    const x = Math.round(Math.max(0, Math.min(this.store.width - 1, vx)));
    const y = Math.round(Math.max(0, Math.min(this.store.height - 1, vy)));
    const key = `${objectId}:${frame}`;
    const points = this.points.get(key) ?? [];
    points.push({ x, y, positive });
    this.points.set(key, points);
    this.renderer.invalidate();
    await this.edit({ type: "click", object_id: objectId, frame, x, y, positive });
  }

  private async sendBox(box: [number, number, number, number]): Promise<void> {
    const frame = this.frame;
    const objectId = await this.editTarget();
    if (objectId === null) return;
    const clampX = (v: number) => Math.round(Math.max(0, Math.min(this.store.width - 1, v)));
    const clampY = (v: number) => Math.round(Math.max(0, Math.min(this.store.height - 1, v)));
    const [x0, y0, x1, y1] = box;
    await this.edit({
      type: "box", object_id: objectId, frame,
      box: [clampX(Math.min(x0, x1)), clampY(Math.min(y0, y1)), clampX(Math.max(x0, x1)), clampY(Math.max(y0, y1))],
    });
  }

  private async startStroke(vx: number, vy: number): Promise<void> {
    const objectId = this.selected !== null && this.store.editable(this.selected) ? this.selected : await this.editTarget();
    if (objectId === null) return;
    const frame = this.frame;
    const stored = this.store.get(objectId, frame);
    this.stroke = new BrushStroke(objectId, frame, this.store.width, this.store.height,
      stored && stored.area > 0 ? stored.counts : undefined, this.colours.get(objectId), this.tool === "eraser", this.brushRadius);
    this.stroke.to(vx, vy);
    this.renderer.invalidate();
  }

  private endStroke(): void {
    const stroke = this.stroke;
    this.stroke = null;
    this.renderer.invalidate();
    if (!stroke) return;
    const result = stroke.finish();
    if (!result) return;
    const previous = this.store.get(stroke.objectId, stroke.frame);
    this.store.putLocal(stroke.objectId, stroke.frame, result.counts, result.area);
    void this.edit({ type: "paint", object_id: stroke.objectId, frame: stroke.frame, counts: result.counts }).then((ok) => {
      const now = this.store.get(stroke.objectId, stroke.frame);
      if (!ok && now?.local && now.counts === result.counts) this.store.revertLocal(stroke.objectId, stroke.frame, previous);
    });
  }

  private async clearFrame(): Promise<void> {
    const objectId = await this.editTarget();
    if (objectId === null) return;
    this.points.delete(`${objectId}:${this.frame}`);
    await this.edit({ type: "clear", object_id: objectId, frame: this.frame });
  }

  private async undoRedo(redo: boolean): Promise<void> {
    const edit: Edit | undefined = redo ? this.history.peekRedo() : this.history.peekUndo();
    if (!edit) {
      this.say(redo ? "Nothing to redo." : "Nothing to undo.");
      return;
    }
    const position = this.store.frames.indexOf(edit.frame);
    if (position >= 0 && position !== this.position) this.seek(position);
    const reply = await this.ask({ type: "restore", object_id: edit.objectId, frame: edit.frame, revision: redo ? edit.after : edit.before });
    if (!reply || reply.type !== "mask") return;
    this.putMask(reply);
    this.showEdit(reply);
    this.points.delete(`${edit.objectId}:${edit.frame}`);
    if (redo) this.history.markRedone(edit);
    else this.history.markUndone(edit);
    this.say(`${redo ? "Redone" : "Undone"}: object #${edit.objectId} on frame ${edit.frame}.`);
    this.refreshPanel();
  }

  // -- tracking ------------------------------------------------------------------------------

  private async track(direction: Direction): Promise<void> {
    if (this.trackState) {
      this.say("Tracking is already running.");
      return;
    }
    if (!this.store.canEdit) {
      this.showError("read_only", "Read only: your role in this project cannot track.");
      return;
    }
    const overwrite = el<HTMLInputElement>(this.root, "#track-overwrite").checked;
    // "selected": only the selected object; "all": every object I hold (the server's default).
    const scope = el<HTMLSelectElement>(this.root, "#track-scope").value;
    if (scope === "selected" && this.selected === null) {
      this.showError("empty", "Select an object to track, or choose to track all your objects.");
      return;
    }
    const only: [number] | null = scope === "selected" && this.selected !== null ? [this.selected] : null;
    const objects = only ? { object_ids: only } : {};
    const state: TrackState = { request: this.connection.newId(), op: null, done: 0, total: 0, cancel: false };
    this.trackState = state;
    this.canvas.dataset.trackEnd = "";
    this.trackProgress(0, 0);
    // `track_started`, progress, `track_done` and a later error are followed in `message`; this
    // reply is the first of them, or the refusal (nothing to track, offline ...) shown by `ask`.
    const reply = await this.ask({ type: "track", frame: this.frame, direction, overwrite_human: overwrite, ...objects },
      state.request);
    if (this.trackState === state && reply?.type !== "track_started") this.trackEnded("error");
  }

  private trackProgress(done: number, total: number): void {
    if (this.trackState) Object.assign(this.trackState, { done, total });
    const box = el(this.root, "#track-status");
    box.hidden = false;
    const bar = el<HTMLProgressElement>(box, "progress");
    bar.max = Math.max(1, total);
    bar.value = done;
    el(box, ".track-label").textContent = this.trackState?.cancel ? "Cancelling…"
      : total ? `Tracking: ${done} of ${total} frames` : "Starting tracking…";
    this.canvas.dataset.tracking = "1";
  }

  private trackDone(message: { cancelled: boolean; skipped: number; objects: TrackedObject[] }): void {
    this.trackEnded(message.cancelled ? "cancelled" : "done");
    const kept = message.skipped ? ` (${message.skipped} frame${message.skipped === 1 ? "" : "s"} edited by a person kept)` : "";
    // Frames WITH a mask, and where each object was lost: an empty mask is stored but is no annotation.
    const found = message.objects.map((o) => {
      const masklet = this.store.masklets.get(o.object_id);
      const name = masklet ? objectName(masklet) : `#${o.object_id}`;
      return `${name} has a mask on ${o.with_mask} of ${o.frames} frame${o.frames === 1 ? "" : "s"}`
        + (o.lost_at === null ? "" : `, lost at frame ${o.lost_at}`);
    });
    this.say(`${message.cancelled ? "Tracking cancelled" : "Tracking done"}: ${found.join("; ")}${kept}.`);
    el(this.root, "#status-note").classList.toggle("warn", message.objects.some((o) => o.lost_at !== null));
    this.canvas.dataset.tracked = String(Number(this.canvas.dataset.tracked ?? "0") + 1);
  }

  /** An error after `track_started` (the model failed, the worker or the channel layer was lost): the
   *  track is over. Say so, and re-read what is stored (progress messages may have been lost too).
   *  The worker's words say how many frames it stored; without words, the page counts what it was told. */
  private trackFailed(code: string, text: string): void {
    const state = this.trackState;
    this.trackEnded("error");
    const reached = state && state.total ? ` after ${state.done} of ${state.total} frames` : "";
    this.showError(code, text ? `Tracking stopped: ${text}` : `Tracking stopped${reached}: ${errorWords(code) || "the model worker failed."}`);
    this.say("Frames tracked before the error are stored; you can track again.");
    void this.fetchMasks();
  }

  private trackEnded(how: TrackEnd): void {
    this.trackState = null;
    el(this.root, "#track-status").hidden = true;
    this.canvas.dataset.tracking = "0";
    this.canvas.dataset.trackEnd = how;
  }

  /** Cancel this page's track; before `track_started` names it, the cancel goes out as soon as it does. */
  private cancelTrack(): void {
    const state = this.trackState;
    if (!state) return;
    state.cancel = true;
    if (state.op) this.sendCancel(state.op);
    el(this.root, ".track-label").textContent = "Cancelling…";
  }

  private sendCancel(op: string): void {
    // With an id, so the "no such op" answer of a track that just ended is recognised as a reply (and not shown).
    this.connection.send({ type: "cancel", op }, this.connection.newId());
  }

  // -- input ---------------------------------------------------------------------------------

  private setTool(tool: Tool): void {
    this.tool = tool;
    for (const button of this.root.querySelectorAll<HTMLElement>("[data-tool]")) {
      button.classList.toggle("active", button.dataset.tool === tool);
      button.setAttribute("aria-pressed", String(button.dataset.tool === tool));
    }
    this.canvas.dataset.tool = tool;
    this.canvas.classList.toggle("brushing", tool === "brush" || tool === "eraser");
    el(this.root, "#brush-size-box").hidden = !(tool === "brush" || tool === "eraser");
    this.renderer.invalidate();
  }

  private setBrush(radius: number): void {
    this.brushRadius = Math.max(1, Math.min(200, Math.round(radius)));
    el<HTMLInputElement>(this.root, "#brush-size").value = String(this.brushRadius);
    this.renderer.invalidate();
  }

  private bindControls(): void {
    const on = (selector: string, handler: () => void) => el(this.root, selector).addEventListener("click", handler);
    for (const button of this.root.querySelectorAll<HTMLElement>("[data-tool]")) {
      button.addEventListener("click", () => this.setTool(button.dataset.tool as Tool));
    }
    const order = el<HTMLSelectElement>(this.root, "#object-order");
    order.addEventListener("change", () => {
      this.panel.order = order.value === "score" ? "score" : "object";
      this.refreshPanel();
    });
    on("#frame-prev", () => this.seek(this.position - 1));
    on("#frame-next", () => this.seek(this.position + 1));
    on("#play", () => this.togglePlay());
    on("#undo", () => void this.undoRedo(false));
    on("#redo", () => void this.undoRedo(true));
    on("#clear-frame", () => void this.clearFrame());
    on("#add-object", () => void this.addObject());
    on("#track-forward", () => void this.track("forward"));
    on("#track-backward", () => void this.track("backward"));
    on("#track-both", () => void this.track("both"));
    on("#track-cancel", () => this.cancelTrack());
    on("#zoom-in", () => this.zoom(1.25));
    on("#zoom-out", () => this.zoom(0.8));
    on("#zoom-fit", () => this.fit());
    on("#help-open", () => this.toggleHelp());
    on("#help-close", () => this.toggleHelp(false));
    on("#status-error .dismiss", () => this.clearError());
    this.root.querySelector<HTMLFormElement>("#video-finish-form")?.addEventListener("submit", (event) => {
      if (!window.confirm(this.finishQuestion())) event.preventDefault();
    });
    el<HTMLInputElement>(this.root, "#brush-size").addEventListener("input", (event) =>
      this.setBrush(Number((event.target as HTMLInputElement).value)));
  }

  /** What "Video done" asks, naming the objects that are still drafts (they would not reach review). */
  private finishQuestion(): string {
    const drafts = [...this.store.masklets.values()].filter((m) => m.status === "draft" || m.status === "rejected");
    const open = drafts.length
      ? `\n\n${drafts.length} object${drafts.length === 1 ? " is" : "s are"} not submitted: ${drafts.map((m) => objectName(m)).join(", ")}.`
      : "";
    return `Mark this video done? It leaves the work queue; submitted objects still go to review.${open}`;
  }

  /** Play from this frame (from the start when at the end) at the annotation fps, or pause. */
  private togglePlay(play = this.playTimer === null): void {
    if (this.playTimer !== null) window.clearInterval(this.playTimer);
    this.playTimer = null;
    const n = this.store.frames.length;
    if (play && n > 1) {
      if (this.position >= n - 1) this.seek(0);
      this.playTimer = window.setInterval(() => {
        this.seek(this.position + 1);
        if (this.position >= n - 1) this.togglePlay(false);
      }, 1000 / this.fps);
      this.radar.pause();
    }
    const playing = this.playTimer !== null;
    const button = el<HTMLButtonElement>(this.root, "#play");
    button.textContent = playing ? "❚❚ Pause" : "▶ Play";
    button.setAttribute("aria-pressed", String(playing));
    this.canvas.dataset.playing = playing ? "1" : "0";
  }

  private zoom(factor: number): void {
    const [w, h] = this.renderer.size;
    this.viewport.zoomAt(factor, w / 2, h / 2);
    this.renderer.invalidate();
  }

  private fit(): void {
    const [w, h] = this.renderer.size;
    this.viewport.fit(w, h);
    this.renderer.invalidate();
  }

  private toggleHelp(show?: boolean): void {
    const help = el(this.root, "#help-overlay");
    help.hidden = show === undefined ? !help.hidden : !show;
  }

  private local(event: MouseEvent): [number, number] {
    const rect = this.canvas.getBoundingClientRect();
    return [event.clientX - rect.left, event.clientY - rect.top];
  }

  private bindCanvas(): void {
    const canvas = this.canvas;
    canvas.addEventListener("contextmenu", (event) => event.preventDefault());
    canvas.addEventListener("wheel", (event) => {
      event.preventDefault();
      const [cx, cy] = this.local(event);
      this.viewport.zoomAt(Math.exp(-event.deltaY * 0.0015), cx, cy);
      this.renderer.invalidate();
    }, { passive: false });
    canvas.addEventListener("pointerdown", (event) => {
      if (this.playTimer !== null) this.togglePlay(false); // work on the frame in view
      const [cx, cy] = this.local(event);
      const [vx, vy] = this.viewport.toVideo(cx, cy);
      if (event.button === 1 || (event.button === 0 && this.spaceDown)) {
        event.preventDefault();
        this.pan = { x: event.clientX, y: event.clientY };
        canvas.setPointerCapture(event.pointerId);
        canvas.classList.add("panning");
        return;
      }
      if (!this.store.canEdit) {
        this.showError("read_only", "Read only: your role in this project can look but not edit.");
        return;
      }
      const inside = vx >= 0 && vy >= 0 && vx < this.store.width && vy < this.store.height;
      if (this.tool === "click" && (event.button === 0 || event.button === 2)) {
        if (inside) void this.click(vx, vy, !(event.button === 2 || event.shiftKey));
      } else if (this.tool === "box" && event.button === 0) {
        this.box = [vx, vy, vx, vy];
        canvas.setPointerCapture(event.pointerId);
      } else if ((this.tool === "brush" || this.tool === "eraser") && event.button === 0) {
        canvas.setPointerCapture(event.pointerId);
        void this.startStroke(vx, vy);
      }
    });
    canvas.addEventListener("pointermove", (event) => {
      const [cx, cy] = this.local(event);
      const [vx, vy] = this.viewport.toVideo(cx, cy);
      if (this.pan) {
        this.viewport.pan(event.clientX - this.pan.x, event.clientY - this.pan.y);
        this.pan = { x: event.clientX, y: event.clientY };
        this.renderer.invalidate();
        return;
      }
      this.cursor = { x: vx, y: vy };
      if (this.box) {
        this.box = [this.box[0], this.box[1], vx, vy];
      } else if (this.stroke && (event.buttons & 1)) {
        // Coalesced events keep fast strokes continuous.
        const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
        for (const e of events.length ? events : [event]) {
          const [ex, ey] = this.viewport.toVideo(...this.local(e));
          this.stroke.to(ex, ey);
        }
      }
      if (this.box || this.stroke || this.tool === "brush" || this.tool === "eraser") this.renderer.invalidate();
    });
    const finish = (event: PointerEvent) => {
      if (this.pan) {
        this.pan = null;
        canvas.classList.remove("panning");
        return;
      }
      if (this.box) {
        const box = this.box;
        this.box = null;
        this.renderer.invalidate();
        const minSide = 4 / this.viewport.scale;
        if (Math.abs(box[2] - box[0]) >= minSide && Math.abs(box[3] - box[1]) >= minSide) void this.sendBox(box);
        else if (event.type === "pointerup") void this.click(box[0], box[1], !event.shiftKey);
      }
      if (this.stroke) this.endStroke();
    };
    canvas.addEventListener("pointerup", finish);
    canvas.addEventListener("pointercancel", finish);
    canvas.addEventListener("pointerleave", () => {
      this.cursor = null;
      this.renderer.invalidate();
    });
  }

  private bindKeys(): void {
    document.addEventListener("keyup", (event) => {
      if (event.key === " ") {
        this.spaceDown = false;
        this.canvas.classList.remove("pan-ready");
      }
    });
    document.addEventListener("keydown", (event) => {
      const target = event.target as HTMLElement | null;
      const typing = target && ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName)
        && !(target instanceof HTMLInputElement && target.type === "range");
      if (event.key === " " && !typing) {
        event.preventDefault();
        this.spaceDown = true;
        this.canvas.classList.add("pan-ready");
        return;
      }
      const command = commandFor(event);
      if (!command) return;
      event.preventDefault();
      this.run(command, event);
    });
  }

  /** Esc during a box drag or brush stroke: drop it, send nothing. */
  private cancelDrag(): void {
    this.box = null;
    this.stroke = null;
    this.renderer.invalidate();
  }

  private run(command: string, event: KeyboardEvent): void {
    switch (command) {
      case "next": this.seek(this.position + 1); break;
      case "prev": this.seek(this.position - 1); break;
      case "next10": this.seek(this.position + 10); break;
      case "prev10": this.seek(this.position - 10); break;
      case "tool-click": this.setTool("click"); break;
      case "tool-box": this.setTool("box"); break;
      case "tool-brush": this.setTool("brush"); break;
      case "tool-eraser": this.setTool("eraser"); break;
      case "brush-smaller": this.setBrush(Math.min(this.brushRadius - 1, this.brushRadius * 0.8)); break;
      case "brush-larger": this.setBrush(Math.max(this.brushRadius + 1, this.brushRadius * 1.25)); break;
      case "clear": void this.clearFrame(); break;
      case "undo": void this.undoRedo(false); break;
      case "redo": void this.undoRedo(true); break;
      case "track-forward": void this.track("forward"); break;
      case "track-backward": void this.track("backward"); break;
      case "track-both": void this.track("both"); break;
      case "play": this.togglePlay(); break;
      case "suspect": void this.jumpToSuspect(); break;
      case "escape":
        if (!el(this.root, "#help-overlay").hidden) this.toggleHelp(false);
        else if (this.box || this.stroke) this.cancelDrag();
        else if (this.trackState) this.cancelTrack();
        break;
      case "new-object": void this.addObject(); break;
      case "select-n": {
        const id = this.store.objectIds()[Number(event.code.slice(-1)) - 1];
        if (id !== undefined) void this.select(id);
        break;
      }
      case "label-n": {
        const label = this.labels[Number(event.code.slice(-1)) - 1];
        if (label === undefined) break;
        if (this.selected !== null && this.store.editable(this.selected)) void this.updateLabel(this.selected, label);
        else this.rememberLabel(label); // nothing to relabel: the next new object takes it
        break;
      }
      case "toggle-visible":
        if (this.selected !== null) this.setVisible(this.selected, this.hidden.has(this.selected));
        break;
      case "zoom-in": this.zoom(1.25); break;
      case "zoom-out": this.zoom(0.8); break;
      case "fit": this.fit(); break;
      case "help": this.toggleHelp(); break;
      default: break;
    }
  }
}
