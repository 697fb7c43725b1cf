// The annotation WebSocket protocol v1 (documented in annotator/protocol.py): message shapes.

export const PROTOCOL_VERSION = 1;

export type MaskSource = "human" | "model" | "imported";
export type MaskletStatus = "draft" | "submitted" | "approved" | "rejected" | "discarded";
export type Direction = "forward" | "backward" | "both";

export interface ReviewJSON {
  verdict: string;
  reason: string;
  /** The reason as people read it (the pick list's words). */
  reason_label: string;
  comment: string;
  reviewer: string;
  at: string;
}

export interface MaskletJSON {
  id: number;
  object_id: number;
  label: string;
  type: string;
  status: MaskletStatus;
  lock_holder: string | null;
  locked_by_me: boolean;
  lock_expires_at: string | null;
  /** The annotator it belongs to (who it is sent back to); null for a masklet nobody took yet. */
  assignee: string | null;
  review: ReviewJSON | null;
}

/** One stored mask, as the HTTP masks endpoint and `mask` / `track_progress` carry it. */
export interface MaskJSON {
  object_id: number;
  frame: number;
  counts: string;
  source: MaskSource;
  revision: number;
  area: number;
}

/** What a track found for one object: of the `frames` it visited, `with_mask` where the object has a
 *  mask, and the first frame (in visiting order) where the model found nothing (null: never lost). */
export interface TrackedObject {
  object_id: number;
  frames: number;
  with_mask: number;
  lost_at: number | null;
}

export interface Hello {
  type: "hello";
  session: string;
  protocol: number;
  user: { id: number; username: string };
  can_edit: boolean;
  video: { id: number; name: string; width: number; height: number; frames: number[] };
  labels: string[];
  model: string;
  /** The registered version this socket's edits use (null: the settings' model); the page asks
   *  to keep it when it reconnects (`?model_version=`). */
  model_version: number | null;
  /** The classical backend: labelled a low-quality fallback, with a link to getting SAM 2. */
  model_fallback: boolean;
  lock_seconds: number;
  masklets: MaskletJSON[];
}

export type ServerMessage = { v?: number; re?: string | number; by?: string } & (
  | Hello
  | { type: "pong" }
  | { type: "object"; masklet: MaskletJSON }
  | { type: "object_deleted"; object_id: number }
  | ({ type: "mask"; previous_revision: number; model_ms?: number } & MaskJSON)
  | { type: "track_started"; op: string; total: number; object_ids: number[] }
  | { type: "track_progress"; op: string; done: number; total: number; masks: MaskJSON[];
      skipped: { object_id: number; frame: number }[] }
  | { type: "track_done"; op: string; done: number; total: number; cancelled: boolean; written: number;
      skipped: number; objects: TrackedObject[] }
  | { type: "error"; code: string; error: string }
  | { type: "worker"; state: "assigning" | "ready" | "rebuilding" | "lost"; model?: string; model_fallback?: boolean;
      /** Only when the page's version could not be kept (before error `model_changed`): the new one. */
      model_version?: number | null }
);

export type ServerMessageOf<T extends ServerMessage["type"]> = Extract<ServerMessage, { type: T }>;

/** Plain-words fallbacks for error codes whose message the server left empty. */
export const ERROR_WORDS: Record<string, string> = {
  bad_message: "The server did not understand a message from this page.",
  too_large: "That edit is too large to send.",
  forbidden: "You are not allowed to do that in this project.",
  read_only: "This object is read-only for you.",
  locked: "Someone else is editing this object.",
  not_found: "That object or frame no longer exists.",
  segmentation: "The model could not segment that.",
  worker_lost: "The model worker was lost; the last edit was not applied. Please try again.",
  empty: "This object has no mask yet.",
  busy: "The model is busy; please try again in a moment.",
};
