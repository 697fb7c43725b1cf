// What the page knows: the masklets and every stored mask, keyed by object and native frame.
//
// The store is a mirror of the database: it is filled from the HTTP masks endpoint and kept
// current by `mask` / `track_progress` messages (this page's and other people's). Listeners are
// told which (object, frame) changed so the overlay cache and the timeline redraw only that.

import type { Masklet } from "../generated/protocol";
import type { MaskFields } from "./protocol";

export interface StoredMask {
  counts: string;
  source: MaskFields["source"];
  revision: number;
  area: number;
  /** The model's score of its mask (null: a person's mask, or a backend that does not rate). */
  quality: number | null;
  /** True while a brush edit is shown before the server has stored it. */
  local?: boolean;
}

/** A frame of one object on the timeline: no mask, a model's mask (to review), one a person made
 *  here, or one imported with a dataset (accepted annotation too: tracking leaves both alone); or
 *  lost: the model was asked (a track, or a clear) and stored an empty mask. */
export type FrameState = "missing" | "lost" | "present" | "human" | "imported";

type Listener = (objectId: number | null, frame: number | null) => void;

export class Store {
  readonly masklets = new Map<number, Masklet>();
  private readonly masks = new Map<number, Map<number, StoredMask>>();
  private readonly listeners: Listener[] = [];
  username = "";
  canEdit = false;
  /** A project admin (or superuser): may reopen an object sent back to someone else. */
  canManage = false;

  constructor(readonly frames: number[], readonly width: number, readonly height: number) {}

  onChange(listener: Listener): void {
    this.listeners.push(listener);
  }

  private changed(objectId: number | null, frame: number | null): void {
    for (const listener of this.listeners) listener(objectId, frame);
  }

  setMasklets(masklets: Masklet[]): void {
    this.masklets.clear();
    for (const masklet of masklets) this.masklets.set(masklet.object_id, this.own(masklet));
    for (const objectId of [...this.masks.keys()]) if (!this.masklets.has(objectId)) this.masks.delete(objectId);
    this.changed(null, null);
  }

  putMasklet(masklet: Masklet): void {
    this.masklets.set(masklet.object_id, this.own(masklet));
    this.changed(masklet.object_id, null);
  }

  removeMasklet(objectId: number): void {
    this.masklets.delete(objectId);
    this.masks.delete(objectId);
    this.changed(objectId, null);
  }

  /** Replace every mask with what the server stores (after load and after a reconnect). */
  replaceMasks(masks: MaskFields[]): void {
    this.masks.clear();
    for (const mask of masks) this.frameMap(mask.object_id).set(mask.frame, toStored(mask));
    this.changed(null, null);
  }

  /** A stored mask arrived. Older revisions than what is shown are ignored (out-of-order replies). */
  putMask(mask: MaskFields): void {
    const frames = this.frameMap(mask.object_id);
    const current = frames.get(mask.frame);
    if (current && !current.local && current.revision > mask.revision) return;
    frames.set(mask.frame, toStored(mask));
    this.changed(mask.object_id, mask.frame);
  }

  /** Show a mask edited here before the server confirms it (brush/eraser). */
  putLocal(objectId: number, frame: number, counts: string, area: number): void {
    const current = this.get(objectId, frame);
    this.frameMap(objectId).set(frame, { counts, area, source: "human", quality: null, revision: current?.revision ?? 0,
      local: true });
    this.changed(objectId, frame);
  }

  /** Put back what was there before a local edit the server refused. */
  revertLocal(objectId: number, frame: number, previous: StoredMask | undefined): void {
    const frames = this.frameMap(objectId);
    if (previous) frames.set(frame, previous);
    else frames.delete(frame);
    this.changed(objectId, frame);
  }

  get(objectId: number, frame: number): StoredMask | undefined {
    return this.masks.get(objectId)?.get(frame);
  }

  state(objectId: number, frame: number): FrameState {
    const mask = this.get(objectId, frame);
    if (!mask) return "missing";
    if (mask.area === 0) return mask.source === "model" ? "lost" : "missing";
    return mask.source === "model" ? "present" : mask.source;
  }

  /** The object's lowest model-frame score, or null when no frame of it is scored. */
  lowestQuality(objectId: number): number | null {
    let lowest: number | null = null;
    for (const mask of this.masks.get(objectId)?.values() ?? []) {
      if (mask.quality !== null && (lowest === null || mask.quality < lowest)) lowest = mask.quality;
    }
    return lowest;
  }

  /** How many frames hold a non-empty mask of this object. */
  presentCount(objectId: number): number {
    let count = 0;
    for (const mask of this.masks.get(objectId)?.values() ?? []) if (mask.area > 0) count += 1;
    return count;
  }

  /** Frames (native) without a mask between the object's first and last frame with one. */
  gaps(objectId: number): number[] {
    const frames = this.frames;
    const has = frames.map((frame) => (this.get(objectId, frame)?.area ?? 0) > 0);
    const first = has.indexOf(true), last = has.lastIndexOf(true);
    if (first < 0) return [];
    return frames.slice(first, last + 1).filter((_, i) => !has[first + i]);
  }

  objectIds(): number[] {
    return [...this.masklets.keys()].sort((a, b) => a - b);
  }

  /** Whether this user may edit the object now (draft, locked by them, role allows editing). */
  editable(objectId: number): boolean {
    const masklet = this.masklets.get(objectId);
    return Boolean(this.canEdit && masklet && masklet.status === "draft" && masklet.locked_by_me);
  }

  /** `locked_by_me` as seen by this user: broadcasts carry the sender's view of it. */
  private own(masklet: Masklet): Masklet {
    if (!this.username) return masklet;
    return { ...masklet, locked_by_me: masklet.lock_holder === this.username };
  }

  private frameMap(objectId: number): Map<number, StoredMask> {
    let frames = this.masks.get(objectId);
    if (!frames) {
      frames = new Map();
      this.masks.set(objectId, frames);
    }
    return frames;
  }
}

function toStored(mask: MaskFields): StoredMask {
  return { counts: mask.counts, source: mask.source, revision: mask.revision, area: mask.area,
    quality: mask.source === "model" ? mask.quality ?? null : null };
}
