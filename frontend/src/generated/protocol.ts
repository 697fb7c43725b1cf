/* Generated from engine/protocol.py (its JSON Schema, protocol.schema.json) by npm run protocol: do not edit. */

/**
 * The Masklet WebSocket protocols (engine/protocol.py): annotation v1, the project page's video status and the models page.
 */
export type Message = ClientMessage | ServerMessage | VideoStatusMessage | DashboardMessage | Refresh;
/**
 * A frame the annotation page sends.
 */
export type ClientMessage =
  | Ping
  | AddObject
  | UpdateObject
  | DeleteObject
  | Lock
  | Unlock
  | Submit
  | Reopen
  | Cancel
  | Click
  | Box
  | Paint
  | Clear
  | Restore
  | Track;
/**
 * A frame the annotation socket sends.
 */
export type ServerMessage =
  | Hello
  | Mask
  | TrackStarted
  | TrackProgress
  | TrackDone
  | ObjectChanged
  | ObjectDeleted
  | Pong
  | WorkerState
  | ServerError;
/**
 * A frame the project page's video-status socket sends (it sends `refresh`).
 */
export type VideoStatusMessage = VideoSnapshot | VideoChanged | VideoRemoved | SocketError;
/**
 * A frame the models page's socket sends (the page sends nothing).
 */
export type DashboardMessage = DashboardHello | RunEvent | VerifierEvent | DownloadEvent | SocketError;

/**
 * (C) Renews my locks; answered by `pong`.
 */
export interface Ping {
  /**
   * Chosen by the client; every reply to it carries it as `re`.
   */
  id?: string | number | null;
  type: "ping";
  v: 1;
}
/**
 * (C) A new object, locked to me; answered by `object`.
 */
export interface AddObject {
  /**
   * Chosen by the client; every reply to it carries it as `re`.
   */
  id?: string | number | null;
  label?: string;
  type: "add_object";
  v: 1;
}
/**
 * (C) Renames an object; answered by `object`.
 */
export interface UpdateObject {
  /**
   * Chosen by the client; every reply to it carries it as `re`.
   */
  id?: string | number | null;
  label: string;
  object_id: number;
  type: "update_object";
  v: 1;
}
/**
 * (C) Answered by `object_deleted`.
 */
export interface DeleteObject {
  /**
   * Chosen by the client; every reply to it carries it as `re`.
   */
  id?: string | number | null;
  object_id: number;
  type: "delete_object";
  v: 1;
}
/**
 * (C) Answered by `object`, or error `locked`.
 */
export interface Lock {
  /**
   * Chosen by the client; every reply to it carries it as `re`.
   */
  id?: string | number | null;
  object_id: number;
  type: "lock";
  v: 1;
}
/**
 * (C) Answered by `object`.
 */
export interface Unlock {
  /**
   * Chosen by the client; every reply to it carries it as `re`.
   */
  id?: string | number | null;
  object_id: number;
  type: "unlock";
  v: 1;
}
/**
 * (C) Sends the object to review; answered by `object`, or error `empty`.
 */
export interface Submit {
  /**
   * Chosen by the client; every reply to it carries it as `re`.
   */
  id?: string | number | null;
  object_id: number;
  type: "submit";
  v: 1;
}
/**
 * (C) Answered by `object`.
 */
export interface Reopen {
  /**
   * Chosen by the client; every reply to it carries it as `re`.
   */
  id?: string | number | null;
  object_id: number;
  type: "reopen";
  v: 1;
}
/**
 * (C) Stops my running track `op` (its `track_done` says cancelled).
 */
export interface Cancel {
  /**
   * Chosen by the client; every reply to it carries it as `re`.
   */
  id?: string | number | null;
  op: string;
  type: "cancel";
  v: 1;
}
/**
 * (W) A point prompt in pixels; answered by `mask`.
 */
export interface Click {
  frame: number;
  /**
   * Chosen by the client; every reply to it carries it as `re`.
   */
  id?: string | number | null;
  object_id: number;
  positive: boolean;
  type: "click";
  v: 1;
  x: number;
  y: number;
}
/**
 * (W) A box prompt; answered by `mask`.
 */
export interface Box {
  /**
   * [x0, y0, x1, y1] in pixels, inside the frame: x0 < x1 <= width, y0 < y1 <= height.
   *
   * @minItems 4
   * @maxItems 4
   */
  box: [number, number, number, number];
  frame: number;
  /**
   * Chosen by the client; every reply to it carries it as `re`.
   */
  id?: string | number | null;
  object_id: number;
  type: "box";
  v: 1;
}
/**
 * (W) The whole new mask of the frame, painted; answered by `mask`.
 */
export interface Paint {
  counts: string;
  frame: number;
  /**
   * Chosen by the client; every reply to it carries it as `re`.
   */
  id?: string | number | null;
  object_id: number;
  type: "paint";
  v: 1;
}
/**
 * (W) Removes the frame's mask; answered by `mask` (empty, model).
 */
export interface Clear {
  frame: number;
  /**
   * Chosen by the client; every reply to it carries it as `re`.
   */
  id?: string | number | null;
  object_id: number;
  type: "clear";
  v: 1;
}
/**
 * (W) Puts back an earlier revision (0: no mask); answered by `mask`.
 */
export interface Restore {
  frame: number;
  /**
   * Chosen by the client; every reply to it carries it as `re`.
   */
  id?: string | number | null;
  object_id: number;
  revision: number;
  type: "restore";
  v: 1;
}
/**
 * (W) Propagates the objects' masks from `frame`: `track_started`, `track_progress`*, `track_done`.
 */
export interface Track {
  direction: "forward" | "backward" | "both";
  frame: number;
  /**
   * Chosen by the client; every reply to it carries it as `re`.
   */
  id?: string | number | null;
  /**
   * Default: every object locked by me.
   */
  object_ids?: [number, ...number[]] | null;
  /**
   * Replace masks a person made (default: leave them, listed as skipped).
   */
  overwrite_human?: boolean;
  type: "track";
  v: 1;
}
/**
 * Sent on connect. `model` / `model_version` name the model this socket's edits use: the project's
 * serving model, or the one a reconnecting page asks to keep with `?model_version=<id>` (`none`: the
 * settings' model) when it is a version of the project (or a shared one) that has served and can still
 * be loaded; otherwise error `model_changed` (or `bad_message` for a value that is not a version id)
 * follows.
 */
export interface Hello {
  /**
   * Who made the change, on copies sent to the video's other sockets.
   */
  by?: string;
  can_edit: boolean;
  labels: string[];
  lock_seconds: number;
  masklets: Masklet[];
  model: string;
  /**
   * The classical backend, labelled a low-quality fallback.
   */
  model_fallback: boolean;
  /**
   * The registered version's id; null for the settings' model.
   */
  model_version: number | null;
  protocol: number;
  /**
   * The `id` of the message this answers.
   */
  re?: string | number;
  session: string;
  type: "hello";
  user: User;
  v: 1;
  video: VideoInfo;
}
export interface Masklet {
  /**
   * The annotator it belongs to (whom it is sent back to); null for a masklet nobody took yet.
   */
  assignee: string | null;
  id: number;
  label: string;
  lock_expires_at: string | null;
  lock_holder: string | null;
  locked_by_me: boolean;
  object_id: number;
  review: ReviewInfo | null;
  status: "draft" | "submitted" | "approved" | "rejected" | "discarded";
  type: "manual" | "auto";
}
export interface ReviewInfo {
  at: string;
  comment: string;
  reason: string;
  /**
   * The reason as people read it (the pick list's words).
   */
  reason_label: string;
  /**
   * Null when the reviewer's account is gone.
   */
  reviewer: string | null;
  verdict: "satisfactory" | "unsatisfactory";
}
export interface User {
  id: number;
  username: string;
}
export interface VideoInfo {
  /**
   * The annotated frames' native numbers.
   */
  frames: number[];
  height: number;
  id: number;
  name: string;
  width: number;
}
/**
 * The answer to click, box, paint, clear and restore.
 */
export interface Mask {
  area: number;
  /**
   * Who made the change, on copies sent to the video's other sockets.
   */
  by?: string;
  counts: string;
  frame: number;
  /**
   * Model time; on the reply to the sender only.
   */
  model_ms?: number;
  object_id: number;
  previous_revision: number;
  /**
   * The model's rating of its mask in [0, 1]; left out for people's and unrated masks.
   */
  quality?: number;
  /**
   * The `id` of the message this answers.
   */
  re?: string | number;
  revision: number;
  source: "human" | "model" | "imported";
  type: "mask";
  v: 1;
}
export interface TrackStarted {
  /**
   * Who made the change, on copies sent to the video's other sockets.
   */
  by?: string;
  object_ids: number[];
  op: string;
  /**
   * The `id` of the message this answers.
   */
  re?: string | number;
  total: number;
  type: "track_started";
  v: 1;
}
export interface TrackProgress {
  /**
   * Who made the change, on copies sent to the video's other sockets.
   */
  by?: string;
  done: number;
  masks: StoredMask[];
  model_ms?: number;
  op: string;
  /**
   * The `id` of the message this answers.
   */
  re?: string | number;
  /**
   * Frames a person made, left alone.
   */
  skipped: SkippedFrame[];
  total: number;
  type: "track_progress";
  v: 1;
}
/**
 * One stored mask, as `track_progress` (and the HTTP masks endpoint) carry it.
 */
export interface StoredMask {
  area: number;
  counts: string;
  frame: number;
  object_id: number;
  /**
   * The model's rating of its mask in [0, 1] (higher: more likely right); null for people's and unrated masks.
   */
  quality: number | null;
  revision: number;
  source: "human" | "model" | "imported";
}
export interface SkippedFrame {
  frame: number;
  object_id: number;
}
export interface TrackDone {
  /**
   * Who made the change, on copies sent to the video's other sockets.
   */
  by?: string;
  cancelled: boolean;
  done: number;
  model_ms: number;
  objects: TrackedObject[];
  op: string;
  /**
   * The `id` of the message this answers.
   */
  re?: string | number;
  skipped: number;
  total: number;
  type: "track_done";
  v: 1;
  written: number;
}
/**
 * What a track found for one object: of the `frames` it visited, `with_mask` where the model found it,
 * and the first frame (in visiting order) where it found nothing (null: never lost).
 */
export interface TrackedObject {
  frames: number;
  lost_at: number | null;
  object_id: number;
  with_mask: number;
}
export interface ObjectChanged {
  /**
   * Who made the change, on copies sent to the video's other sockets.
   */
  by?: string;
  masklet: Masklet;
  /**
   * The `id` of the message this answers.
   */
  re?: string | number;
  type: "object";
  v: 1;
}
export interface ObjectDeleted {
  /**
   * Who made the change, on copies sent to the video's other sockets.
   */
  by?: string;
  object_id: number;
  /**
   * The `id` of the message this answers.
   */
  re?: string | number;
  type: "object_deleted";
  v: 1;
}
export interface Pong {
  /**
   * Who made the change, on copies sent to the video's other sockets.
   */
  by?: string;
  /**
   * The `id` of the message this answers.
   */
  re?: string | number;
  /**
   * How many of my locks were renewed.
   */
  renewed: number;
  type: "pong";
  v: 1;
}
/**
 * The GPU worker serving this socket's edits.
 */
export interface WorkerState {
  /**
   * Who made the change, on copies sent to the video's other sockets.
   */
  by?: string;
  model?: string;
  model_fallback?: boolean;
  /**
   * Only when the page's version could not be kept (before error `model_changed`): the one now used (null: the settings' model).
   */
  model_version?: number | null;
  /**
   * The `id` of the message this answers.
   */
  re?: string | number;
  state: "assigning" | "ready" | "rebuilding" | "lost";
  type: "worker";
  v: 1;
}
/**
 * A refusal or failure in plain words. `model_changed` has no `re`: the model version the page started
 * with cannot be kept, so its edits now use the model named by the `worker` or `hello` message just before
 * it. An error ending a `track` after `track_started` says how many frames were stored (they are kept).
 */
export interface ServerError {
  /**
   * Who made the change, on copies sent to the video's other sockets.
   */
  by?: string;
  code:
    | "bad_message"
    | "too_large"
    | "forbidden"
    | "read_only"
    | "locked"
    | "not_found"
    | "segmentation"
    | "worker_lost"
    | "empty"
    | "busy"
    | "model_changed";
  error: string;
  op?: string;
  /**
   * The `id` of the message this answers.
   */
  re?: string | number;
  type: "error";
  v: 1;
}
/**
 * Every video of the project: on connect, and in answer to `refresh`.
 */
export interface VideoSnapshot {
  type: "snapshot";
  videos: VideoRow[];
}
/**
 * A video as the project page lists it (``annotator.selectors.video_to_dict``).
 */
export interface VideoRow {
  annotated_frame_count: number | null;
  created_at: string | null;
  /**
   * Seconds.
   */
  duration: number | null;
  failure_reason: string;
  file_size: number;
  fps: number | null;
  /**
   * Native frames.
   */
  frame_count: number | null;
  height: number | null;
  id: number;
  name: string;
  /**
   * Of the ingest, 0 to 1.
   */
  progress: number;
  split: string;
  split_label: string;
  status: "uploaded" | "ingesting" | "ready" | "failed";
  status_label: string;
  stride: number | null;
  updated_at: string | null;
  width: number | null;
}
export interface VideoChanged {
  type: "video";
  video: VideoRow;
}
export interface VideoRemoved {
  id: number;
  type: "removed";
}
/**
 * A per-project socket's refusal of a message (the annotation socket's errors are `ServerError`).
 */
export interface SocketError {
  error: string;
  type: "error";
}
/**
 * On connect: the project's active training run, if any.
 */
export interface DashboardHello {
  run: TrainingRunRow | null;
  type: "hello";
}
/**
 * A training run as the models page shows it (``loop.dashboard._run``).
 */
export interface TrainingRunRow {
  base_version: number | null;
  cancel_requested: boolean;
  created_at: string;
  error: string;
  finished_at: string | null;
  frames: number | null;
  id: number;
  /**
   * The log's tail.
   */
  log: string;
  /**
   * [step, loss] pairs.
   */
  loss_curve: [number, number][];
  masklets: number | null;
  parameters: {
    [k: string]: unknown;
  };
  produced_version: number | null;
  /**
   * 0 to 1.
   */
  progress: number;
  started_at: string | null;
  status: "queued" | "running" | "done" | "failed" | "cancelled";
  trigger: string;
}
/**
 * A training run changed (``loop.training.broadcast``): a status, a training step, an evaluated object,
 * a log line or a promotion. Fields that do not apply are left out.
 */
export interface RunEvent {
  cancel_requested?: boolean;
  /**
   * Objects evaluated so far in `stage`.
   */
  done?: number;
  error?: string;
  /**
   * One line appended to the run's log.
   */
  log?: string;
  loss?: number;
  progress?: number;
  /**
   * The version promoted after the run.
   */
  promoted?: number;
  run: number;
  /**
   * What the run is doing, e.g. `evaluating val`.
   */
  stage?: string;
  status?: "queued" | "running" | "done" | "failed" | "cancelled";
  step?: number;
  steps?: number;
  total?: number;
  type: "run";
  /**
   * The version the run registered.
   */
  version?: number;
}
/**
 * A training of the quality verifier changed status (``loop.verifier``).
 */
export interface VerifierEvent {
  error: string;
  status: "queued" | "running" | "done" | "failed" | "cancelled";
  type: "verifier";
  /**
   * The verifier version's number.
   */
  verifier: number;
}
/**
 * A step of a checkpoint download (``loop.downloads.broadcast``): the whole row.
 */
export interface DownloadEvent {
  bytes_done: number;
  bytes_total: number | null;
  created_at: string;
  error: string;
  finished_at: string | null;
  id: number;
  label: string;
  name: string;
  promote: boolean;
  stage: string;
  status: "queued" | "running" | "done" | "failed" | "cancelled";
  type: "download";
  version: number | null;
}
/**
 * Client -> server: send a new snapshot.
 */
export interface Refresh {
  type: "refresh";
}
