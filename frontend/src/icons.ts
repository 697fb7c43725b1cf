// Small SVG icons drawn in the page's text colour: glyphs such as ⏸ or 🔒 are missing from many
// system fonts and rendered as empty boxes.

const PATHS: Record<string, string> = {
  play: "M4 2.5v11l9-5.5z",
  pause: "M4 2.5h3v11H4zM9 2.5h3v11H9z",
  lock: "M3 7h10v8H3zM5 7V5a3 3 0 0 1 6 0v2h-1.6V5a1.4 1.4 0 0 0-2.8 0v2z",
};

export function icon(name: keyof typeof PATHS | string): SVGSVGElement {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("width", "14");
  svg.setAttribute("height", "14");
  svg.setAttribute("aria-hidden", "true");
  svg.classList.add("icon");
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", PATHS[name] ?? "");
  path.setAttribute("fill", "currentColor");
  svg.append(path);
  return svg;
}

/** Set a button's content to an icon followed by words. */
export function labelWithIcon(target: HTMLElement, name: string, words: string): void {
  target.replaceChildren(icon(name), ` ${words}`);
}
