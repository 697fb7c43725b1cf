// Keyboard shortcuts. The help overlay ("?") is rendered by the server from
// annotator.views.HELP_SHORTCUTS; this table binds exactly those keys (keep the two in step).
// Letters match on `event.code` so they work on every keyboard layout and with Alt held.

export interface Binding {
  command: string;
  match: (event: KeyboardEvent) => boolean;
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

export const BINDINGS: Binding[] = [
  { command: "next", match: named("ArrowRight") },
  { command: "prev", match: named("ArrowLeft") },
  { command: "next10", match: named("ArrowRight", { shift: true }) },
  { command: "prev10", match: named("ArrowLeft", { shift: true }) },
  { command: "tool-click", match: letter("v") },
  { command: "tool-box", match: letter("b") },
  { command: "tool-brush", match: letter("p") },
  { command: "tool-eraser", match: letter("e") },
  { command: "brush-smaller", match: printable("[") },
  { command: "brush-larger", match: printable("]") },
  { command: "new-object", match: letter("n") },
  { command: "select-n", match: (e) => /^Digit[1-9]$/.test(e.code) && mods(e, {}) },
  { command: "toggle-visible", match: letter("h") },
  { command: "clear", match: letter("c") },
  { command: "undo", match: letter("z", { ctrl: true }) },
  { command: "redo", match: letter("z", { ctrl: true, shift: true }) },
  { command: "track-forward", match: letter("t") },
  { command: "track-backward", match: letter("t", { shift: true }) },
  { command: "track-both", match: letter("t", { alt: true }) },
  { command: "escape", match: named("Escape") },
  { command: "zoom-in", match: printable("+", "=") },
  { command: "zoom-out", match: printable("-", "−", "_") },
  { command: "fit", match: (e) => e.code === "Digit0" && mods(e, {}) },
  { command: "help", match: printable("?") },
];

/** The matching command, or null. Typing in a form field is never a shortcut (the scrubber excepted). */
export function commandFor(event: KeyboardEvent): string | null {
  const target = event.target as HTMLElement | null;
  if (target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName))) {
    if (!(target instanceof HTMLInputElement && target.type === "range")) return null;
  }
  for (const binding of BINDINGS) if (binding.match(event)) return binding.command;
  return null;
}
