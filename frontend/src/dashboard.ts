// The admin retraining dashboard: versions, evaluations, loss curves, dataset growth, effort per
// model version, and the live progress of the running training run (WebSocket). State comes from
// loop.dashboard.dashboard_state (embedded in the page, then re-read from the JSON API).

import { barChart, lineChart, PALETTE, Series, stackedBars } from "./dashboard/charts";
import { type ApiError, formatWhen } from "./api";
import type { DashboardMessage, DownloadEvent, RunEvent, TrainingRunRow } from "./generated/protocol";
import { ReconnectingSocket } from "./socket";

interface Evaluation {
  j: number; f: number; jf: number; clicks_to_target: number | null; jf_after: Array<number | null>;
  target_reached: number | null; target_seconds: number | null; num_objects: number | null;
}
interface Version {
  id: number; name: string; status: string; config: string; image_size: number; checkpoint: string;
  parent: number | null; created_at: string; evaluation: Evaluation | null;
}
// Runs and downloads are what the socket sends too (engine/protocol.py).
type Run = TrainingRunRow;
type Download = Omit<DownloadEvent, "type">;
interface EffortRow {
  version: number | null; name: string; active_seconds_per_frame: number | null;
  clicks_per_clicked_frame: number | null; edited_frame_share: number | null; annotated_frames: number;
  masklets: number;
}
// A training of the learned quality verifier (loop.verifier): AUROC on held-out reviewed frames, next to
// the backend's own score's on the same frames.
interface Verifier {
  number: number; status: string; trigger: string; active: boolean; auroc: number | null;
  backend_auroc: number | null; trained_frames: number; heldout_frames: number; bad_frames: number; error: string;
  created_at: string; finished_at: string | null;
}
// Whether a button's action is possible now and, if not, why: loop.dashboard.allowed_actions, the same
// rule the endpoint refuses by.
interface Rule { possible: boolean; reason: string }
interface State {
  actions: { start: Rule; cancel: Rule; rollback: Rule; promote: Record<string, Rule>; download: Record<string, Rule>;
    train_verifier: Rule };
  serving: string;
  serving_fallback: boolean;
  downloads: Download[];
  versions: Version[];
  runs: Run[];
  active_run: Run | null;
  events: Array<{ action: string; version: string; actor: string; note: string; at: string }>;
  growth: { by_status_type: Array<{ status: string; type: string; count: number }>; days: string[];
    cumulative: Record<string, number[]> };
  effort: EffortRow[];
  verifiers: Verifier[];
  loop: { enabled: boolean; min_new_masklets: number; min_hours: number; auto_promote: boolean;
    promote_margin: number; steps: number; new_masklets: number };
}

const root = document.getElementById("dashboard") as HTMLElement;
const csrf = (root.querySelector("input[name=csrfmiddlewaretoken]") as HTMLInputElement).value;
let state = JSON.parse((document.getElementById("dashboard-state") as HTMLElement).textContent || "{}") as State;
let liveLoss: Array<[number, number]> = [];
// The active run's latest progress event: the live panel is drawn again from it when a log line arrives.
let lastProgress: RunEvent | undefined;

function $(id: string): HTMLElement {
  return document.getElementById(id) as HTMLElement;
}

function cell(row: HTMLTableRowElement, content: string | Node, tag: "td" | "th" = "td"): HTMLElement {
  const node = document.createElement(tag);
  if (typeof content === "string") node.textContent = content;
  else node.appendChild(content);
  row.appendChild(node);
  return node;
}

function table(host: HTMLElement, headers: string[], rows: Array<Array<string | Node>>): void {
  const t = document.createElement("table");
  t.className = "table";
  const head = t.createTHead().insertRow();
  headers.forEach((h) => cell(head, h, "th"));
  const body = t.createTBody();
  rows.forEach((r) => { const tr = body.insertRow(); r.forEach((c) => cell(tr, c)); });
  host.replaceChildren(t);
}

const num = (v: number | null | undefined, digits = 2) => (v === null || v === undefined ? "–" : v.toFixed(digits));

// Errors appear next to the control that caused them: each action names the box it writes to.
type ShowError = (message: string | null, field?: string | null) => void;

function errorIn(box: HTMLElement): ShowError {
  return (message) => {
    box.hidden = !message;
    box.textContent = message || "";
    if (message) box.scrollIntoView({ block: "nearest" });
  };
}

function applyRule(button: HTMLButtonElement, rule: Rule | undefined): void {
  button.disabled = !!rule && !rule.possible;
  if (rule && !rule.possible) button.title = rule.reason;
  else button.removeAttribute("title");
}

async function post(url: string, body: BodyInit | null, show: ShowError): Promise<void> {
  show(null);
  let failure: { error?: string; field?: string | null } | null = null;
  try {
    const response = await fetch(url, { method: "POST", body, headers: { "X-CSRFToken": csrf },
      credentials: "same-origin" });
    const data = (await response.json().catch(() => ({}))) as ApiError;
    if (!response.ok) {
      failure = { error: data.error?.message || `The server refused (${response.status} ${response.statusText}).`,
        field: data.error?.field };
    }
  } catch {
    failure = { error: "The server could not be reached; try again." };
  }
  await refresh();
  if (failure) show(failure.error ?? null, failure.field);
}

const runError = errorIn($("run-error"));
const verifierError = errorIn($("verifier-error"));
const downloadError = errorIn($("download-error"));
// The register form's error goes under the field the server blames (else under the button).
const registerError: ShowError = (message, field) => {
  const box = $("register-error");
  const form = $("register") as HTMLFormElement;
  form.querySelectorAll("[aria-invalid]").forEach((input) => input.removeAttribute("aria-invalid"));
  const input = field ? form.querySelector<HTMLElement>(`[name="${field}"]`) : null;
  (input ?? form.querySelector("button[type=submit]") as HTMLElement).after(box);
  if (message && input) input.setAttribute("aria-invalid", "true");
  errorIn(box)(message);
};
// A promote error is drawn in its version's row, which is redrawn with every refresh.
let versionError: { id: number; message: string } | null = null;

async function refresh(): Promise<void> {
  const response = await fetch(root.dataset.api as string, { credentials: "same-origin" });
  if (!response.ok) return;
  const fresh = (await response.json()) as State;
  fresh.downloads = fresh.downloads.map((d) => newerDownload(d, state.downloads.find((known) => known.id === d.id)));
  state = fresh;
  render();
}

// A refresh is read before the socket's later progress events can arrive: it must not take a running
// download's progress back (the page would show "0 MB" until the next event, or for good while it stalls).
function newerDownload(fetched: Download, live: Download | undefined): Download {
  return live && live.status === fetched.status && live.bytes_done > fetched.bytes_done ? live : fetched;
}

function promoteButton(version: Version): Node {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = "Promote";
  applyRule(button, state.actions.promote[String(version.id)]);
  button.addEventListener("click", () => {
    const body = new FormData();
    body.append("version", String(version.id));
    void post(root.dataset.promote as string, body, (message) => {
      versionError = message ? { id: version.id, message } : null;
      renderVersions();
    });
  });
  if (versionError?.id !== version.id) return button;
  const cell = document.createElement("span");
  const error = document.createElement("span");
  error.className = "message error field-error";
  error.textContent = ` ${versionError.message}`;
  cell.append(button, error);
  return cell;
}

function renderVersions(): void {
  const rows = state.versions.map((v) => [
    v.name, v.status, `${v.config.split("/").pop()?.replace(".yaml", "")} @${v.image_size}`,
    num(v.evaluation?.jf, 3), num(v.evaluation?.jf_after?.[0] ?? null, 3), num(v.evaluation?.clicks_to_target, 2),
    num(v.evaluation?.target_reached ?? null, 2), num(v.evaluation?.target_seconds ?? null, 1), promoteButton(v),
  ]);
  if (rows.length === 0) {
    $("versions").textContent = "No version registered: the classical backend (or the settings' model) serves.";
  } else {
    table($("versions"), ["version", "status", "model", "J&F", "J&F@1 frame", "clicks to 0.9", "reached",
      "est. seconds", ""], rows);
  }
  const evaluated = state.versions.filter((v) => v.evaluation);
  const jfSeries: Series[] = evaluated.map((v, i) => ({
    name: v.name, color: PALETTE[i % PALETTE.length],
    points: (v.evaluation?.jf_after || []).map((value, k) => [k + 1, value ?? 0] as [number, number]),
  }));
  lineChart($("chart-jf"), jfSeries, { yMin: 0, yMax: 1, xLabel: "prompted frames", yLabel: "J&F" });
  barChart($("chart-clicks"), evaluated.map((v, i) => ({ label: v.name, value: v.evaluation?.clicks_to_target ?? null,
    color: PALETTE[i % PALETTE.length] })), { yLabel: "clicks" });
}

function renderRuns(): void {
  const series: Series[] = state.runs.slice(0, 8).reverse().map((run) => ({
    name: `run ${run.id}`,
    points: run.status === "running" && liveLoss.length > run.loss_curve.length ? liveLoss : run.loss_curve,
  }));
  lineChart($("chart-loss"), series, { xLabel: "step", yLabel: "loss" });
  const versionName = (id: number | null) => state.versions.find((v) => v.id === id)?.name ?? (id ? `#${id}` : "–");
  table($("runs"), ["run", "status", "trigger", "masklets", "steps", "version", "finished", "error"],
    state.runs.map((r) => [String(r.id), r.status, r.trigger, String(r.masklets ?? "–"),
      String(r.parameters.steps ?? "–"), versionName(r.produced_version),
      r.finished_at ? formatWhen(r.finished_at) : "–", r.error || ""]));
}

function renderLive(event?: RunEvent): void {
  const run = state.active_run;
  const host = $("run-live");
  if (!run) {
    host.replaceChildren();
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = "No run is queued or running.";
    host.appendChild(p);
    return;
  }
  const progress = event?.progress ?? run.progress;
  host.replaceChildren();
  const title = document.createElement("p");
  const step = event?.step ? ` — step ${event.step}/${event.steps}, loss ${num(event.loss ?? null, 3)}`
    : event?.stage ? ` — ${event.stage}: ${event.done}/${event.total} objects` : "";
  title.textContent = `Run ${run.id}: ${event?.status ?? run.status}${run.cancel_requested ? " (cancelling)" : ""}` +
    ` — ${Math.round(progress * 100)} %${step}`;
  const bar = document.createElement("progress");
  bar.max = 1;
  bar.value = progress;
  const log = document.createElement("pre");
  log.className = "log";
  log.textContent = run.log.split("\n").slice(-8).join("\n");
  host.append(title, bar, log);
}

function renderGrowth(): void {
  const g = state.growth;
  const labels = g.days.map((d) => d.slice(5));
  const series: Series[] = ["manual", "auto", "approved", "frames"].map((key) => ({
    name: key === "frames" ? "frames annotated" : `${key} masklets`,
    points: (g.cumulative[key] || []).map((v, i) => [i, v] as [number, number]),
  }));
  lineChart($("chart-growth"), series, { xLabels: labels.length <= 12 ? labels : undefined, xLabel: "day" });
  const statuses = [...new Set(g.by_status_type.map((r) => r.status))];
  const types = [...new Set(g.by_status_type.map((r) => r.type))];
  stackedBars($("chart-status"), statuses, types,
    (status, type) => g.by_status_type.find((r) => r.status === status && r.type === type)?.count ?? 0);
}

function renderEffort(): void {
  table($("effort"), ["model version", "s per frame", "clicks per clicked frame", "% frames edited",
    "annotated frames", "masklets"], state.effort.map((e) => [e.name, num(e.active_seconds_per_frame, 1),
    num(e.clicks_per_clicked_frame, 2), e.edited_frame_share === null ? "–" : `${(e.edited_frame_share * 100).toFixed(1)} %`,
    String(e.annotated_frames), String(e.masklets)]));
  barChart($("chart-effort"), state.effort.map((e) => ({ label: e.name, value: e.active_seconds_per_frame })),
    { yLabel: "s/frame" });
}

const megabytes = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

// Checkpoint downloads (loop.downloads): the latest of each checkpoint, live from the socket.
function renderDownloads(): void {
  const host = $("downloads");
  host.replaceChildren();
  const seen = new Set<string>();
  for (const d of state.downloads) {
    if (seen.has(d.name)) continue;
    seen.add(d.name);
    const item = document.createElement("div");
    item.className = "download-item";
    item.dataset.status = d.status;
    const title = document.createElement("p");
    const amount = d.bytes_total ? `${megabytes(d.bytes_done)} of ${megabytes(d.bytes_total)}`
      : d.bytes_done ? megabytes(d.bytes_done) : "";
    title.textContent = `${d.label}: ${d.status}${amount ? ` — ${amount}` : ""}${d.stage ? ` — ${d.stage}` : ""}`;
    item.appendChild(title);
    if (d.status === "queued" || d.status === "running") {
      const bar = document.createElement("progress");
      bar.max = 1;
      if (d.bytes_total) bar.value = d.bytes_done / d.bytes_total;
      item.appendChild(bar);
    }
    if (d.error) {
      const error = document.createElement("p");
      error.className = "message error";
      error.textContent = d.error;
      item.appendChild(error);
    }
    host.appendChild(item);
  }
  root.querySelectorAll<HTMLButtonElement>("button.download").forEach((button) => {
    applyRule(button, state.actions.download[button.dataset.name ?? ""]);
  });
}

function onDownload(event: DownloadEvent): void {
  const known = state.downloads.findIndex((d) => d.id === event.id);
  const before = known >= 0 ? state.downloads[known].status : undefined;
  if (known >= 0) state.downloads[known] = event;
  else state.downloads.unshift(event);
  renderDownloads();
  // A new status: the buttons' rules change, and a finished download is a new version, maybe serving.
  if (event.status !== before) void refresh();
}

function renderVerifiers(): void {
  if (state.verifiers.length === 0) {
    $("verifiers").textContent = "Not trained yet: model frames are scored by their backend alone.";
    return;
  }
  table($("verifiers"), ["version", "status", "scores new frames", "AUROC (held out)", "backend's AUROC",
    "trained on", "held out", "edited (bad)", "trigger", "finished", "error"], state.verifiers.map((v) => [
    `v${v.number}`, v.status, v.active ? "yes" : "no", num(v.auroc, 3), num(v.backend_auroc, 3),
    String(v.trained_frames), String(v.heldout_frames), String(v.bad_frames), v.trigger,
    v.finished_at ? formatWhen(v.finished_at) : "–", v.error]));
}

function render(event?: RunEvent): void {
  $("serving").textContent = state.serving;
  (root.ownerDocument.querySelector("[data-fallback-note]") as HTMLElement).hidden = !state.serving_fallback;
  const loop = state.loop;
  $("loop-status").textContent = `Schedule ${loop.enabled ? "on" : "off"}: a run starts after ${loop.min_new_masklets} ` +
    `newly approved masklets (now ${loop.new_masklets}) and ${loop.min_hours} h; auto-promote ` +
    `${loop.auto_promote ? `when J&F gains ≥ ${loop.promote_margin}` : "off"}.`;
  applyRule($("start-run") as HTMLButtonElement, state.actions.start);
  applyRule($("cancel-run") as HTMLButtonElement, state.actions.cancel);
  applyRule($("rollback") as HTMLButtonElement, state.actions.rollback);
  applyRule($("train-verifier") as HTMLButtonElement, state.actions.train_verifier);
  renderLive(event);
  renderDownloads();
  renderVersions();
  renderRuns();
  renderGrowth();
  renderEffort();
  renderVerifiers();
  table($("events"), ["when", "who", "what", "version", "note"], state.events.map((e) =>
    [formatWhen(e.at), e.actor, e.action.replace("_", " "), e.version, e.note]));
}

function onEvent(event: unknown): void {
  const data = event as DashboardMessage;
  if (data.type === "hello") root.dataset.live = "1";  // following runs and downloads from now on
  if (data.type === "download") { onDownload(data); return; }
  if (data.type === "verifier") { void refresh(); return; }  // a verifier training changed status
  if (data.type !== "run") return;
  if (data.log !== undefined) {  // one line of the run's log, as it is stored
    if (state.active_run && state.active_run.id === data.run) {
      state.active_run.log += data.log;
      renderLive(lastProgress);
    }
    return;
  }
  if (data.step !== undefined && data.loss !== undefined) {
    liveLoss = state.active_run && state.active_run.id === data.run ? [...liveLoss, [data.step, data.loss]] : [];
    if (state.active_run) state.active_run.progress = data.progress ?? state.active_run.progress;
    lastProgress = data;
    renderLive(data);
    renderRuns();
  } else if (data.stage) {  // evaluating: one event per measured val object
    if (state.active_run) state.active_run.progress = data.progress ?? state.active_run.progress;
    lastProgress = data;
    renderLive(data);
    return;
  }
  if (data.status && data.status !== "running" || data.promoted || (data.status === "running" && !data.step)) {
    liveLoss = [];
    lastProgress = undefined;
    void refresh();
  }
}

const socket = new ReconnectingSocket(() => root.dataset.socket as string, {
  message: onEvent,
  state: (state) => {
    if (state !== "open") root.dataset.live = "0";
  },
});

$("start-run").addEventListener("click", () => void post(root.dataset.start as string, null, runError));
$("cancel-run").addEventListener("click", () => void post(root.dataset.cancel as string, null, runError));
$("train-verifier").addEventListener("click", () => void post(root.dataset.verifier as string, null, verifierError));
$("rollback").addEventListener("click", () => {
  if (window.confirm("Retire the production version and restore the one before it?")) {
    void post(root.dataset.rollback as string, null, runError);
  }
});
$("register").addEventListener("submit", (event) => {
  event.preventDefault();
  void post(root.dataset.register as string, new FormData(event.target as HTMLFormElement), registerError);
});
root.querySelectorAll<HTMLButtonElement>("button.download").forEach((button) => {
  button.addEventListener("click", () => {
    const body = new FormData();
    body.append("name", button.dataset.name ?? "");
    body.append("promote", ($("download-promote") as HTMLInputElement).checked ? "1" : "0");
    void post(root.dataset.download as string, body, downloadError);
  });
});
render();
socket.open();
