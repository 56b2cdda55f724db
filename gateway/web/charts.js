// Plain SVG charts: a node's sparkline, the fleet's throughput chart, a small plot of an array.
// Each chart is made once and updated by changing attributes (no library, no inline style).

const SVG = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
}

function pointsOf(values, width, height, lo, hi, pad = 1) {
  const span = hi - lo || 1;
  const step = values.length > 1 ? width / (values.length - 1) : 0;
  const parts = new Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = Number.isFinite(values[i]) ? values[i] : lo;
    const y = pad + (height - 2 * pad) * (1 - (v - lo) / span);
    parts[i] = `${(i * step).toFixed(1)},${y.toFixed(1)}`;
  }
  return parts.join(" ");
}

/** A sparkline: `update(values)` redraws the line and the area under it, scaled to its maximum. */
export class Sparkline {
  constructor(label, width = 120, height = 28) {
    this.width = width;
    this.height = height;
    this.svg = svgEl("svg", {
      class: "spark",
      viewBox: `0 0 ${width} ${height}`,
      preserveAspectRatio: "none",
      role: "img",
      "aria-label": label,
    });
    this.area = svgEl("polygon", { class: "spark-area" });
    this.line = svgEl("polyline", { class: "spark-line" });
    this.svg.append(this.area, this.line);
    this.last = "";
  }

  update(values) {
    const hi = Math.max(1e-9, ...values);
    const points = pointsOf(values, this.width, this.height, 0, hi);
    if (points === this.last) return;
    this.last = points;
    this.line.setAttribute("points", points);
    this.area.setAttribute("points", `0,${this.height} ${points} ${this.width},${this.height}`);
  }
}

/** The fleet's throughput: an area chart with its maximum, zero and time labels. */
export class RateChart {
  constructor(container, spanLabel) {
    this.width = 600;
    this.height = 120;
    this.svg = svgEl("svg", {
      class: "rate-chart",
      viewBox: `0 0 ${this.width} ${this.height + 16}`,
      preserveAspectRatio: "none",
      role: "img",
      "aria-label": "fleet throughput",
    });
    this.grid = svgEl("line", { class: "grid", x1: 0, x2: this.width, y1: 1, y2: 1 });
    this.base = svgEl("line", { class: "grid", x1: 0, x2: this.width, y1: this.height, y2: this.height });
    this.area = svgEl("polygon", { class: "spark-area" });
    this.line = svgEl("polyline", { class: "spark-line" });
    this.svg.append(this.grid, this.base, this.area, this.line);
    container.append(this.svg);
    this.labels = document.createElement("div");
    this.labels.className = "chart-labels";
    this.maxLabel = document.createElement("span");
    this.leftLabel = document.createElement("span");
    this.leftLabel.textContent = `-${spanLabel}`;
    this.nowLabel = document.createElement("span");
    this.nowLabel.textContent = "now";
    this.labels.append(this.leftLabel, this.maxLabel, this.nowLabel);
    container.append(this.labels);
    this.last = "";
  }

  update(values, describe) {
    const hi = Math.max(1, ...values);
    const points = pointsOf(values, this.width, this.height, 0, hi);
    if (points !== this.last) {
      this.last = points;
      this.line.setAttribute("points", points);
      this.area.setAttribute("points", `0,${this.height} ${points} ${this.width},${this.height}`);
    }
    this.maxLabel.textContent = `peak ${hi < 10 ? hi.toFixed(1) : Math.round(hi)}/s`;
    this.svg.setAttribute("aria-label", describe);
  }
}

/** A small line plot of an array's values (a result preview's `plot`), min and max marked. */
export function plot(values, lo, hi, label) {
  const width = 320;
  const height = 90;
  const svg = svgEl("svg", {
    class: "plot",
    viewBox: `0 0 ${width} ${height}`,
    preserveAspectRatio: "none",
    role: "img",
    "aria-label": label,
  });
  const finite = values.filter(Number.isFinite);
  const min = Number.isFinite(lo) ? lo : Math.min(...finite);
  const max = Number.isFinite(hi) ? hi : Math.max(...finite);
  const points = pointsOf(values, width, height, min, max, 4);
  svg.append(
    svgEl("line", { class: "grid", x1: 0, x2: width, y1: 4, y2: 4 }),
    svgEl("line", { class: "grid", x1: 0, x2: width, y1: height - 4, y2: height - 4 }),
  );
  if (values.length === 1) {
    svg.append(svgEl("circle", { class: "plot-dot", cx: width / 2, cy: height / 2, r: 3 }));
  } else {
    svg.append(svgEl("polyline", { class: "spark-line", points }));
  }
  return svg;
}
