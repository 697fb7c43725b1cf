// The page's side of the annotation protocol. The message shapes are generated from engine/protocol.py
// (src/generated/protocol.ts, `npm run protocol`); this module only adds what the page needs on top.

import type { Hello, ServerError, StoredMask, Track } from "../generated/protocol";

export const PROTOCOL_VERSION: Hello["v"] = 1;

export type ErrorCode = ServerError["code"];
export type Direction = Track["direction"];
/** A mask's fields the page keeps: what `mask`, `track_progress` and the masks endpoint all carry
 *  (`quality` is left out of a `mask` that has none, and null in the others). */
export type MaskFields = Omit<StoredMask, "quality"> & { quality?: StoredMask["quality"] };

/** Plain-words fallbacks for error codes whose message the server left empty (every code has one). */
export const ERROR_WORDS: Record<ErrorCode, string> = {
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
  model_changed: "The model this page started with is no longer available; edits now use the one shown.",
};

/** The words for a code: a server's error code, or one of the page's own ("offline", "closed"). */
export function errorWords(code: string): string | undefined {
  return (ERROR_WORDS as Record<string, string>)[code];
}
