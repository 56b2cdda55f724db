// A result's value, shown small: numbers as they are, maps key by key, arrays as their shape,
// dtype, first numbers, range and a plot of up to 64 evenly spaced values (never megabytes).
//
// The gateway sends a preview with each `result` event (contract: `{shape, dtype, head, plot, min,
// max}` for an array); a task read with GET /api/v1/task carries the whole value, which
// `previewOf` reduces to the same shape here.

import { plot } from "./charts.js";
import { el, fmtNumber } from "./dom.js";

const HEAD = 8;
const PLOT = 64;
const KEYS = 20;
const MOST = 1_000_000; // numbers looked at in a whole value

export function isArrayPreview(value) {
  return (
    value !== null &&
    typeof value === "object" &&
    !Array.isArray(value) &&
    Array.isArray(value.shape) &&
    "dtype" in value
  );
}

function shapeOf(list) {
  const shape = [];
  let level = list;
  while (Array.isArray(level)) {
    shape.push(level.length);
    level = level[0];
  }
  return shape;
}

function flatten(list) {
  const out = [];
  const stack = [list];
  while (stack.length && out.length < MOST) {
    const item = stack.pop();
    if (Array.isArray(item)) for (let i = item.length - 1; i >= 0; i--) stack.push(item[i]);
    else out.push(typeof item === "number" ? item : item === null ? NaN : Number(item));
  }
  return out;
}

/** The preview of a whole value (as GET /api/v1/task returns it). */
export function previewOf(value) {
  if (Array.isArray(value)) {
    const flat = flatten(value);
    const finite = flat.filter(Number.isFinite);
    const step = flat.length > PLOT ? flat.length / PLOT : 1;
    const sampled = [];
    for (let i = 0; i < Math.min(PLOT, flat.length); i++) sampled.push(flat[Math.floor(i * step)]);
    return {
      shape: shapeOf(value),
      dtype: flat.every(Number.isInteger) ? "int" : "float64",
      head: flat.slice(0, HEAD),
      plot: flat.length ? sampled : null,
      min: finite.length ? finite.reduce((a, b) => (b < a ? b : a)) : null,
      max: finite.length ? finite.reduce((a, b) => (b > a ? b : a)) : null,
    };
  }
  if (value !== null && typeof value === "object") {
    const out = {};
    for (const key of Object.keys(value).slice(0, KEYS)) out[key] = previewOf(value[key]);
    return out;
  }
  return value;
}

function arrayView(p, label) {
  const size = p.shape.length ? p.shape.join(" × ") : "scalar";
  const box = el("div", { class: "array-preview" });
  box.append(
    el("p", {}, el("code", {}, `${p.dtype} [${size}]`),
      p.min === null || p.min === undefined ? "" : ` min ${fmtNumber(p.min)}, max ${fmtNumber(p.max)}`),
  );
  const total = p.shape.reduce((a, b) => a * b, 1);
  const head = (p.head || []).map(fmtNumber).join(", ");
  box.append(el("p", { class: "head" }, `${head}${total > (p.head || []).length ? ", …" : ""}`));
  if (Array.isArray(p.plot) && p.plot.length > 1) {
    box.append(plot(p.plot.map((v) => (v === null ? NaN : v)), p.min, p.max, `plot of ${label}`));
  }
  return box;
}

/** A node showing `preview` (a preview as above, or a scalar). */
export function renderPreview(preview, label = "the result", depth = 0) {
  if (preview === null || preview === undefined) return el("span", { class: "muted" }, "none");
  if (isArrayPreview(preview)) return arrayView(preview, label);
  if (Array.isArray(preview)) return renderPreview(previewOf(preview), label, depth);
  if (typeof preview === "object") {
    if (depth > 3) return el("code", {}, JSON.stringify(preview).slice(0, 200));
    const list = el("dl", { class: "preview-map" });
    for (const [key, value] of Object.entries(preview)) {
      list.append(el("div", { "data-key": key }, el("dt", {}, key), el("dd", {}, renderPreview(value, key, depth + 1))));
    }
    return list;
  }
  return el("code", { class: "scalar" }, typeof preview === "number" ? fmtNumber(preview) : String(preview));
}

/** A parameter summary: `{name: {shape, dtype} | scalar}` recorded by the gateway at submit. */
export function renderParams(summary) {
  if (summary === null || summary === undefined) {
    return el("p", { class: "muted" }, "Not known here: the gateway did not submit this task.");
  }
  const list = el("dl", { class: "preview-map" });
  for (const [key, value] of Object.entries(summary)) {
    let shown;
    if (isArrayPreview(value) || (value && Array.isArray(value.shape))) {
      shown = el("code", {}, `${value.dtype || "array"} [${value.shape.join(" × ")}]`);
    } else if (value !== null && typeof value === "object") {
      shown = el("code", {}, JSON.stringify(value).slice(0, 200));
    } else {
      shown = el("code", {}, typeof value === "number" ? fmtNumber(value) : String(value));
    }
    list.append(el("div", { "data-key": key }, el("dt", {}, key), el("dd", {}, shown)));
  }
  if (!list.firstChild) list.append(el("div", {}, el("dt", {}, "(none)"), el("dd", {}, "")));
  return list;
}
