// Where to look: each model frame's quality score (stored with the mask, higher = more likely right)
// drawn as a heat colour on the timeline, and the suspect jump (J): the selected object's
// lowest-scored frame that no person has looked at or edited yet. Looks are remembered on the
// server (api/.../seen/), so the next person's jump skips them too: a frame counts as looked at
// when it stayed on screen for DWELL_MS with the object selected (not while playing), or when the
// jump showed it.

import type { Store } from "./store";

/** How long a frame must stay on screen to count as looked at. */
const DWELL_MS = 400;

/** Red (0) through yellow to green (1): the heat strip's colour of a score. */
export function heatColour(score: number): string {
  const hue = Math.round(Math.max(0, Math.min(1, score)) * 120);
  return `hsl(${hue}, 78%, 46%)`;
}

export class Radar {
  private readonly seen = new Map<number, Set<number>>();
  private readonly unsent = new Map<number, Set<number>>();
  private dwell: number | null = null;

  constructor(private readonly store: Store, private readonly url: string, private readonly csrf: string,
              private readonly onError: (text: string) => void) {}

  /** Settles once ``load`` has read what people looked at (or failed): a jump waits for it, so J pressed
   * while the page opens does not land on a frame someone has seen. */
  loaded: Promise<void> = Promise.resolve();

  /** Read what people have looked at (a failure leaves every frame unseen: the jump still works). */
  load(): Promise<void> {
    this.loaded = this.read();
    return this.loaded;
  }

  private async read(): Promise<void> {
    if (!this.url) return;
    try {
      const response = await fetch(this.url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) return;
      const body = (await response.json()) as { seen: Record<string, number[]> };
      for (const [objectId, frames] of Object.entries(body.seen)) {
        for (const frame of frames) this.remember(Number(objectId), frame);
      }
    } catch {
      // Offline for a moment: looks made from now on are still sent.
    }
  }

  hasSeen(objectId: number, frame: number): boolean {
    return this.seen.get(objectId)?.has(frame) ?? false;
  }

  /** The object's unseen scored frame with the lowest score (the earliest of equals), or null. */
  nextSuspect(objectId: number): number | null {
    let best: number | null = null, bestScore = Infinity;
    for (const frame of this.store.frames) {
      const score = this.store.get(objectId, frame)?.quality;
      if (score === null || score === undefined || this.hasSeen(objectId, frame)) continue;
      if (score < bestScore) {
        best = frame;
        bestScore = score;
      }
    }
    return best;
  }

  /** The frame on screen changed: count it as looked at once it stays for DWELL_MS (``now``: at once). */
  viewing(objectId: number | null, frame: number, now = false): void {
    if (this.dwell !== null) window.clearTimeout(this.dwell);
    this.dwell = null;
    if (objectId === null || !this.store.get(objectId, frame)) return;
    if (now) this.look(objectId, frame);
    else this.dwell = window.setTimeout(() => this.look(objectId, frame), DWELL_MS);
  }

  /** Stop counting the frame on screen (playback started). */
  pause(): void {
    if (this.dwell !== null) window.clearTimeout(this.dwell);
    this.dwell = null;
  }

  private look(objectId: number, frame: number): void {
    if (this.hasSeen(objectId, frame)) return;
    this.remember(objectId, frame);
    let frames = this.unsent.get(objectId);
    if (!frames) this.unsent.set(objectId, (frames = new Set()));
    frames.add(frame);
    void this.send();
  }

  private remember(objectId: number, frame: number): void {
    let frames = this.seen.get(objectId);
    if (!frames) this.seen.set(objectId, (frames = new Set()));
    frames.add(frame);
  }

  private async send(): Promise<void> {
    const batches = [...this.unsent.entries()];
    this.unsent.clear();
    for (const [objectId, frames] of batches) {
      try {
        const response = await fetch(this.url, {
          method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": this.csrf },
          body: JSON.stringify({ object_id: objectId, frames: [...frames] }),
        });
        if (!response.ok && response.status !== 404) this.onError(`Could not record the frames you looked at (HTTP ${response.status}).`);
      } catch {
        for (const frame of frames) this.seen.get(objectId)?.delete(frame); // not stored: still a suspect
      }
    }
  }
}
