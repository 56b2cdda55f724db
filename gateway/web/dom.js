// Small DOM and formatting helpers shared by the page's modules (no framework, no build step).

export const $ = (id) => document.getElementById(id);

/** An element: el("td", {class: "x", "data-node": n}, "text", child, ...). Attributes only:
 *  never a style attribute (the page's CSP has no 'unsafe-inline'). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** Set text only when it changed: most updates change nothing, and an unchanged write still costs
 *  a style recalculation. */
export function setText(node, text) {
  const value = String(text);
  if (node.textContent !== value) node.textContent = value;
}

export function setClass(node, name, on) {
  if (node.classList.contains(name) !== on) node.classList.toggle(name, on);
}

export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
}

export function fmtTime(epochS) {
  if (epochS === null || epochS === undefined) return "-";
  const d = new Date(epochS * 1000);
  return d.toLocaleTimeString([], { hour12: false });
}

export function fmtDateTime(epochS) {
  if (epochS === null || epochS === undefined) return "-";
  const d = new Date(epochS * 1000);
  const ms = String(d.getMilliseconds()).padStart(3, "0");
  return `${d.toLocaleDateString()} ${d.toLocaleTimeString([], { hour12: false })}.${ms}`;
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined) return "-";
  if (ms >= 10000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms >= 100) return `${Math.round(ms)} ms`;
  return `${Number(ms).toFixed(ms >= 10 ? 1 : 2)} ms`;
}

export function fmtAge(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "never";
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.floor(seconds % 60)} s ago`;
  return `${(seconds / 3600).toFixed(1)} h ago`;
}

export function fmtBytes(bytes) {
  if (bytes === null || bytes === undefined) return "-";
  if (bytes >= 1 << 30) return `${(bytes / (1 << 30)).toFixed(2)} GiB`;
  if (bytes >= 1 << 20) return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
  return `${Math.round(bytes / 1024)} KiB`;
}

export function fmtNumber(value) {
  if (value === null || value === undefined) return "-";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return value.toLocaleString();
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) return value.toExponential(3);
  return String(Number(value.toPrecision(6)));
}

export function fmtRate(perSecond) {
  if (perSecond >= 100) return `${Math.round(perSecond)}/s`;
  if (perSecond >= 10) return `${perSecond.toFixed(1)}/s`;
  return `${perSecond.toFixed(2)}/s`;
}

/** The id shown in a narrow cell: long generated ids keep their start and end. */
export function shortId(id) {
  return id.length > 24 ? `${id.slice(0, 10)}…${id.slice(-6)}` : id;
}
