// Keyboard shortcuts: ONE table, SHORTCUTS, both binds the keys and fills the help overlay ("?"),
// so what the overlay says is what the keys do. Each row is one line of help and the bindings it
// describes. Letters match on `event.code` so they work on every keyboard layout and with Alt held.

export interface Binding {
  command: string;
  match: (event: KeyboardEvent) => boolean;
}

export interface Shortcut {
  /** The keys as the help overlay shows them. */
  keys: string;
  /** What they do, in plain words. */
  help: string;
  /** The bindings this help line describes (none: handled by the page itself, e.g. Space held to pan). */
  bindings: Binding[];
}

interface Mods { shift?: boolean; ctrl?: boolean; alt?: boolean }

const mods = (event: KeyboardEvent, m: Mods): boolean =>
  Boolean(m.shift) === event.shiftKey && Boolean(m.ctrl) === (event.ctrlKey || event.metaKey) && Boolean(m.alt) === event.altKey;
const letter = (l: string, m: Mods = {}) => (event: KeyboardEvent): boolean =>
  event.code === `Key${l.toUpperCase()}` && mods(event, m);
const named = (k: string, m: Mods = {}) => (event: KeyboardEvent): boolean => event.key === k && mods(event, m);
/** Printable keys whose Shift state depends on the layout ("?", "+", "[" ...): ignore Shift. */
const printable = (...keys: string[]) => (event: KeyboardEvent): boolean =>
  keys.includes(event.key) && !event.ctrlKey && !event.metaKey && !event.altKey;
const bind = (command: string, match: Binding["match"]): Binding => ({ command, match });

export const SHORTCUTS: Shortcut[] = [
  { keys: "← / →", help: "Previous / next annotated frame",
    bindings: [bind("prev", named("ArrowLeft")), bind("next", named("ArrowRight"))] },
  { keys: "Shift + ← / →", help: "Jump 10 frames back / forward",
    bindings: [bind("prev10", named("ArrowLeft", { shift: true })), bind("next10", named("ArrowRight", { shift: true }))] },
  { keys: "K", help: "Play / pause at the project's annotation fps", bindings: [bind("play", letter("k"))] },
  { keys: "J", help: "Jump to the next suspect frame: the selected object's lowest-scored frame nobody has looked at yet",
    bindings: [bind("suspect", letter("j"))] },
  { keys: "V", help: "Point tool: click adds the object, Shift+click or right click removes",
    bindings: [bind("tool-click", letter("v"))] },
  { keys: "B", help: "Box tool: drag a box around the object", bindings: [bind("tool-box", letter("b"))] },
  { keys: "P", help: "Brush: paint the mask", bindings: [bind("tool-brush", letter("p"))] },
  { keys: "E", help: "Eraser: erase from the mask", bindings: [bind("tool-eraser", letter("e"))] },
  { keys: "[ / ]", help: "Smaller / larger brush",
    bindings: [bind("brush-smaller", printable("[")), bind("brush-larger", printable("]"))] },
  { keys: "N", help: "New object", bindings: [bind("new-object", letter("n"))] },
  { keys: "1 … 9", help: "Select object 1 to 9",
    bindings: [bind("select-n", (e) => /^Digit[1-9]$/.test(e.code) && mods(e, {}))] },
  { keys: "Shift + 1 … 9", help: "Give the selected object label 1 to 9 (new objects then start with it)",
    bindings: [bind("label-n", (e) => /^Digit[1-9]$/.test(e.code) && mods(e, { shift: true }))] },
  { keys: "H", help: "Hide / show the selected object", bindings: [bind("toggle-visible", letter("h"))] },
  { keys: "C", help: "Clear the selected object on this frame", bindings: [bind("clear", letter("c"))] },
  { keys: "Ctrl+Z / Ctrl+Shift+Z", help: "Undo / redo",
    bindings: [bind("undo", letter("z", { ctrl: true })), bind("redo", letter("z", { ctrl: true, shift: true }))] },
  { keys: "T / Shift+T / Alt+T", help: "Track forward / backward / both ways from this frame",
    bindings: [bind("track-forward", letter("t")), bind("track-backward", letter("t", { shift: true })),
      bind("track-both", letter("t", { alt: true }))] },
  { keys: "Esc", help: "Close this help, drop the current drag, or cancel tracking",
    bindings: [bind("escape", named("Escape"))] },
  { keys: "+ / − / 0", help: "Zoom in / out / fit the frame",
    bindings: [bind("zoom-in", printable("+", "=")), bind("zoom-out", printable("-", "−", "_")),
      bind("fit", (e) => e.code === "Digit0" && mods(e, {}))] },
  { keys: "Space + drag, middle drag", help: "Pan the frame; the mouse wheel zooms", bindings: [] },
  { keys: "?", help: "Show or hide this help", bindings: [bind("help", printable("?"))] },
];

export const BINDINGS: Binding[] = SHORTCUTS.flatMap((shortcut) => shortcut.bindings);

/** The matching command, or null. Typing in a form field is never a shortcut (the scrubber excepted). */
export function commandFor(event: KeyboardEvent): string | null {
  const target = event.target as HTMLElement | null;
  if (target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))) {
    if (!(target instanceof HTMLInputElement && target.type === "range")) return null;
  }
  for (const binding of BINDINGS) if (binding.match(event)) return binding.command;
  return null;
}

/** Fill the help overlay's table from SHORTCUTS (one row per line; `data-commands` names what it binds). */
export function renderHelp(table: HTMLTableElement): void {
  const body = document.createElement("tbody");
  for (const shortcut of SHORTCUTS) {
    const row = body.insertRow();
    row.dataset.commands = shortcut.bindings.map((b) => b.command).join(" ");
    const keys = document.createElement("kbd");
    keys.textContent = shortcut.keys;
    row.insertCell().append(keys);
    row.insertCell().textContent = shortcut.help;
  }
  table.replaceChildren(body);
}
