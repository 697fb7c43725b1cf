// Small SVG charts for the retraining dashboard: lines and bars with axes, ticks and a legend.
// Drawn with DOM calls (no innerHTML), so labels from the server are never parsed as markup.

const SVG = "http://www.w3.org/2000/svg";
export const PALETTE = ["#2f5bea", "#d9480f", "#1f7a4d", "#9c36b5", "#e67700", "#0b7285", "#c2255c", "#5c940d"];

export interface Series {
  name: string;
  points: Array<[number, number]>;
  color?: string;
}

export interface Bar {
  label: string;
  value: number | null;
  color?: string;
}

interface Frame {
  width: number;
  height: number;
  left: number;
  right: number;
  top: number;
  bottom: number;
}

// The plot area sits inside these margins: the y label above it, tick labels, the x label and the
// legend in three rows below it.
const FRAME: Frame = { width: 520, height: 262, left: 48, right: 16, top: 26, bottom: 58 };
const BAR_MAX_WIDTH = 72;

function el(name: string, attrs: Record<string, string | number>, parent?: Element): SVGElement {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (parent) parent.appendChild(node);
  return node;
}

function text(parent: Element, x: number, y: number, content: string, attrs: Record<string, string | number> = {}) {
  const node = el("text", { x, y, "font-size": 11, fill: "#6b7385", ...attrs }, parent);
  node.textContent = content;
  return node;
}

function niceTicks(min: number, max: number, count = 5): number[] {
  if (!(max > min)) return [min];
  const raw = (max - min) / count;
  const magnitude = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? raw;
  const ticks: number[] = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) ticks.push(Number(v.toFixed(10)));
  return ticks;
}

/** The range rounded out to whole tick steps: the top and bottom gridlines hold every point. */
function niceRange(min: number, max: number): [number, number] {
  const ticks = niceTicks(min, max);
  if (ticks.length < 2) return [min, max];
  const step = ticks[1] - ticks[0];
  const low = ticks[0] > min + step * 1e-9 ? ticks[0] - step : Math.min(min, ticks[0]);
  const high = ticks[ticks.length - 1] < max - step * 1e-9 ? ticks[ticks.length - 1] + step : max;
  return [Number(low.toFixed(10)), Number(high.toFixed(10))];
}

function format(value: number): string {
  if (Math.abs(value) >= 1000) return value.toFixed(0);
  if (Number.isInteger(value)) return String(value);
  return Math.abs(value) >= 10 ? value.toFixed(1) : value.toFixed(2);
}

function empty(host: HTMLElement, message: string): void {
  host.replaceChildren();
  const p = document.createElement("p");
  p.className = "muted";
  p.textContent = message;
  host.appendChild(p);
}

function canvas(host: HTMLElement, label: string): SVGElement {
  host.replaceChildren();
  const svg = el("svg", { viewBox: `0 0 ${FRAME.width} ${FRAME.height}`, role: "img", "aria-label": label,
    class: "chart" });
  host.appendChild(svg);
  return svg;
}

function yAxis(svg: SVGElement, lo: number, hi: number, y: (v: number) => number, label?: string): void {
  for (const tick of niceTicks(lo, hi)) {
    el("line", { x1: FRAME.left, x2: FRAME.width - FRAME.right, y1: y(tick), y2: y(tick), stroke: "#e2e5eb" }, svg);
    text(svg, FRAME.left - 6, y(tick) + 4, format(tick), { "text-anchor": "end" });
  }
  if (label) text(svg, 4, FRAME.top - 12, label, { "text-anchor": "start" });
}

function legend(svg: SVGElement, names: Array<[string, string]>): void {
  let x = FRAME.left;
  const y = FRAME.height - 6;
  for (const [name, color] of names) {
    el("rect", { x, y: y - 9, width: 10, height: 10, fill: color }, svg);
    const label = text(svg, x + 14, y, name);
    x += 24 + Math.max(40, name.length * 6.2);
    void label;
  }
}

export interface LineOptions {
  xLabels?: string[];
  yMin?: number;
  yMax?: number;
  yLabel?: string;
  xLabel?: string;
}

/** Lines over a numeric x axis (steps, prompted frames, day index). */
export function lineChart(host: HTMLElement, series: Series[], options: LineOptions = {}): void {
  const drawn = series.filter((s) => s.points.length > 0);
  if (drawn.length === 0) return empty(host, "Nothing to draw yet.");
  const svg = canvas(host, drawn.map((s) => s.name).join(", "));
  const xs = drawn.flatMap((s) => s.points.map((p) => p[0]));
  const ys = drawn.flatMap((s) => s.points.map((p) => p[1]));
  const x0 = Math.min(...xs);
  const x1 = Math.max(...xs) === x0 ? x0 + 1 : Math.max(...xs);
  // A fixed range (J&F: 0..1) still widens for a point outside it, and the ends round out to ticks,
  // so no point is drawn above the axis' top gridline or below its bottom.
  let [y0, y1] = niceRange(Math.min(options.yMin ?? 0, ...ys), Math.max(options.yMax ?? -Infinity, ...ys));
  if (y1 <= y0) y1 = y0 + 1;
  const x = (v: number) => FRAME.left + ((v - x0) / (x1 - x0)) * (FRAME.width - FRAME.left - FRAME.right);
  const y = (v: number) => FRAME.height - FRAME.bottom - ((v - y0) / (y1 - y0)) * (FRAME.height - FRAME.top - FRAME.bottom);
  yAxis(svg, y0, y1, y, options.yLabel);
  // Steps, prompted frames and days are whole numbers: no tick between two of them.
  const whole = xs.every((v) => Number.isInteger(v));
  const xTicks = options.xLabels ? options.xLabels.map((_, i) => i + x0)
    : niceTicks(x0, x1, 6).filter((tick) => !whole || Number.isInteger(tick));
  xTicks.forEach((tick, i) => {
    // The first and last labels stay inside the chart.
    const anchor = xTicks.length > 1 && i === 0 ? "start" : xTicks.length > 1 && i === xTicks.length - 1 ? "end"
      : "middle";
    text(svg, x(tick), FRAME.height - FRAME.bottom + 14, options.xLabels ? options.xLabels[i] : format(tick),
      { "text-anchor": options.xLabels ? anchor : "middle" });
  });
  if (options.xLabel) text(svg, FRAME.width - FRAME.right, FRAME.height - FRAME.bottom + 30, options.xLabel,
    { "text-anchor": "end" });
  drawn.forEach((s, i) => {
    const color = s.color ?? PALETTE[i % PALETTE.length];
    const d = s.points.map((p, j) => `${j ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
    el("path", { d, fill: "none", stroke: color, "stroke-width": 2, class: "series", "data-series": s.name }, svg);
    if (s.points.length <= 30) {
      for (const p of s.points) {
        const dot = el("circle", { cx: x(p[0]), cy: y(p[1]), r: 3, fill: color, class: "point" }, svg);
        const title = el("title", {}, dot);
        title.textContent = `${s.name}: ${format(p[1])}`;
      }
    }
  });
  legend(svg, drawn.map((s, i) => [s.name, s.color ?? PALETTE[i % PALETTE.length]]));
}

/** One bar per label (missing values are drawn as a gap with "–"). */
export function barChart(host: HTMLElement, bars: Bar[], options: { yLabel?: string; yMax?: number } = {}): void {
  if (bars.length === 0) return empty(host, "Nothing to draw yet.");
  const svg = canvas(host, bars.map((b) => `${b.label} ${b.value ?? "–"}`).join(", "));
  const values = bars.map((b) => b.value ?? 0);
  const y0 = 0;
  const y1 = options.yMax ?? Math.max(1, ...values) * 1.1;
  const y = (v: number) => FRAME.height - FRAME.bottom - ((v - y0) / (y1 - y0)) * (FRAME.height - FRAME.top - FRAME.bottom);
  yAxis(svg, y0, y1, y, options.yLabel);
  const slot = (FRAME.width - FRAME.left - FRAME.right) / bars.length;
  bars.forEach((bar, i) => {
    const width = Math.min(slot * 0.7, BAR_MAX_WIDTH);
    const left = FRAME.left + i * slot + (slot - width) / 2;
    if (bar.value !== null) {
      const rect = el("rect", { x: left, y: y(bar.value), width, height: y(0) - y(bar.value),
        fill: bar.color ?? PALETTE[0], class: "bar", "data-label": bar.label, "data-value": bar.value }, svg);
      const title = el("title", {}, rect);
      title.textContent = `${bar.label}: ${format(bar.value)}`;
      text(svg, left + width / 2, y(bar.value) - 4, format(bar.value), { "text-anchor": "middle", fill: "#1d2330" });
    } else {
      text(svg, left + width / 2, y(0) - 4, "–", { "text-anchor": "middle" });
    }
    text(svg, left + width / 2, FRAME.height - FRAME.bottom + 14, bar.label.slice(0, 14), { "text-anchor": "middle" });
  });
}

/** Stacked bars: one bar per group, segments per key. */
export function stackedBars(host: HTMLElement, groups: string[], keys: string[],
  value: (group: string, key: string) => number): void {
  if (groups.length === 0) return empty(host, "Nothing to draw yet.");
  const svg = canvas(host, "stacked bars");
  const totals = groups.map((g) => keys.reduce((sum, k) => sum + value(g, k), 0));
  const y1 = Math.max(1, ...totals) * 1.1;
  const y = (v: number) => FRAME.height - FRAME.bottom - (v / y1) * (FRAME.height - FRAME.top - FRAME.bottom);
  yAxis(svg, 0, y1, y);
  const slot = (FRAME.width - FRAME.left - FRAME.right) / groups.length;
  const width = Math.min(slot * 0.6, BAR_MAX_WIDTH);
  groups.forEach((group, i) => {
    let base = 0;
    const left = FRAME.left + i * slot + (slot - width) / 2;
    keys.forEach((key, k) => {
      const v = value(group, key);
      if (v > 0) {
        const rect = el("rect", { x: left, y: y(base + v), width, height: y(base) - y(base + v),
          fill: PALETTE[k % PALETTE.length], class: "segment", "data-value": v }, svg);
        const title = el("title", {}, rect);
        title.textContent = `${group} ${key}: ${v}`;
      }
      base += v;
    });
    text(svg, left + width / 2, FRAME.height - FRAME.bottom + 14, group, { "text-anchor": "middle" });
  });
  legend(svg, keys.map((k, i) => [k, PALETTE[i % PALETTE.length]]));
}
