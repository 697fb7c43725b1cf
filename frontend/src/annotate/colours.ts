// Object colours: a fixed palette by object id, changeable per video (kept in localStorage).

const PALETTE = ["#ff6b6b", "#4dabf7", "#51cf66", "#fcc419", "#cc5de8", "#ff922b", "#22b8cf", "#f06595",
  "#94d82d", "#845ef7", "#20c997", "#fab005"];

export class Colours {
  private readonly chosen: Record<string, string>;

  constructor(private readonly key: string) {
    let stored: Record<string, string> = {};
    try {
      stored = JSON.parse(localStorage.getItem(key) ?? "{}") as Record<string, string>;
    } catch {
      stored = {};
    }
    this.chosen = stored;
  }

  get(objectId: number): string {
    return this.chosen[objectId] ?? PALETTE[(objectId - 1 + PALETTE.length) % PALETTE.length];
  }

  set(objectId: number, colour: string): void {
    this.chosen[objectId] = colour;
    try {
      localStorage.setItem(this.key, JSON.stringify(this.chosen));
    } catch {
      // Storage full or disabled: the colour holds for this page only.
    }
  }
}
