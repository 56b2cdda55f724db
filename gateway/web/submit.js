// Submitting a task (roles submit and admin; the section does not exist for a reader): a kernel
// picker with each kernel's parameter form from GET /api/v1/kernels, or the request body as JSON;
// the tasks submitted from this page with their status and a Cancel button while pending.

import { api } from "./api.js";
import { clear, el, setText, shortId } from "./dom.js";

const PENDING = new Set(["submitted", "published"]);
const MINE = 20;

class FieldError extends Error {
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}

/** The text a param's input starts with: its example for a required param (the form submits as it
 *  is), nothing for an optional one (its default applies). */
function initial(param) {
  if (!param.required || param.example === undefined) return "";
  return typeof param.example === "object" ? JSON.stringify(param.example) : String(param.example);
}

function placeholder(param) {
  if (param.default !== undefined) return `default ${JSON.stringify(param.default)}`;
  if (param.example !== undefined) return `e.g. ${JSON.stringify(param.example)}`;
  if (param.kind === "ndarray") return param.ndim === 2 ? "[[1, 2], [3, 4]]" : "[1, 2, 3] or 1, 2, 3";
  return param.kind === "range" ? "[lo, hi]" : "";
}

function describe(param) {
  const kind = param.kind === "ndarray" && param.ndim ? `${param.ndim}-D array` : param.kind;
  const bounds = [];
  if (param.minimum !== undefined) bounds.push(`>= ${param.minimum}`);
  if (param.exclusive_minimum !== undefined) bounds.push(`> ${param.exclusive_minimum}`);
  if (param.maximum !== undefined) bounds.push(`<= ${param.maximum}`);
  return [kind, bounds.join(", "), param.doc].filter(Boolean).join("; ");
}

function parseArray(text) {
  const trimmed = text.trim();
  if (trimmed.startsWith("[")) return JSON.parse(trimmed);
  const numbers = trimmed.split(/[\s,;]+/).filter(Boolean).map(Number);
  if (numbers.some(Number.isNaN)) throw new Error("give a JSON array or numbers separated by commas");
  return numbers;
}

function parseValue(param, input) {
  const text = input.type === "checkbox" ? null : input.value;
  if (input.type === "checkbox") return input.checked;
  if (text.trim() === "") {
    if (param.required) throw new FieldError(param.name, `${param.name} is required`);
    return undefined;
  }
  try {
    switch (param.kind) {
      case "ndarray":
        return parseArray(text);
      case "int": {
        const value = Number(text);
        if (!Number.isInteger(value)) throw new Error("must be a whole number");
        return value;
      }
      case "float": {
        const value = Number(text);
        if (Number.isNaN(value)) throw new Error("must be a number");
        return value;
      }
      default:
        try {
          return JSON.parse(text);
        } catch {
          return text;
        }
    }
  } catch (exc) {
    throw new FieldError(param.name, `${param.name}: ${exc.message}`);
  }
}

export class SubmitPanel {
  constructor(parts, { clock, onOpen }) {
    this.p = parts; // {section, form, kernel, kernelDoc, params, jsonMode, formMode, json, target, priority, delay, message, mine, noMine, button}
    this.clock = clock; // () => epoch s in the gateway's clock
    this.onOpen = onOpen;
    this.kernels = [];
    this.inputs = new Map();
    this.mine = new Map();
    parts.kernel.addEventListener("change", () => this.showKernel());
    parts.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    for (const radio of parts.form.querySelectorAll("input[name=mode]")) {
      radio.addEventListener("change", () => this.setMode(radio.value));
    }
    parts.mine.addEventListener("click", (event) => this.mineClick(event));
  }

  async load() {
    try {
      const answer = await api("GET", "/api/v1/kernels");
      this.kernels = answer.kernels || [];
    } catch (exc) {
      setText(this.p.message, `The kernel list did not load (${exc.message}): use JSON.`);
      this.kernels = [];
    }
    const select = this.p.kernel;
    select.replaceChildren(...this.kernels.map((k) => el("option", { value: k.name }, k.name)));
    this.showKernel();
  }

  kernel() {
    return this.kernels.find((k) => k.name === this.p.kernel.value) || null;
  }

  showKernel() {
    const kernel = this.kernel();
    const box = this.p.params;
    clear(box);
    this.inputs.clear();
    setText(this.p.kernelDoc, kernel?.doc || "");
    if (!kernel) return;
    for (const param of kernel.params) box.append(this.field(kernel, param));
  }

  field(kernel, param) {
    const id = `param-${param.name}`;
    const hintId = `${id}-hint`;
    const errorId = `${id}-error`;
    let input;
    if (param.kind === "ndarray") {
      input = el("textarea", { id, rows: param.ndim === 2 ? 3 : 2, spellcheck: "false" });
    } else if (param.kind === "int" || param.kind === "float") {
      input = el("input", {
        id, type: "number", step: param.kind === "int" ? "1" : "any", inputmode: "decimal",
        min: param.minimum ?? param.exclusive_minimum, max: param.maximum,
      });
    } else if (param.kind === "bool") {
      input = el("input", { id, type: "checkbox" });
    } else {
      input = el("input", { id, type: "text", spellcheck: "false" });
    }
    if (input.type !== "checkbox") {
      input.value = initial(param);
      input.placeholder = placeholder(param);
    }
    input.setAttribute("aria-describedby", `${hintId} ${errorId}`);
    if (param.required) input.setAttribute("aria-required", "true");
    this.inputs.set(param.name, { param, input, error: null });
    const label = el("label", { for: id }, param.name, param.required ? "" : el("span", { class: "muted" }, " (optional)"));
    const hint = el("p", { id: hintId, class: "hint" }, describe(param));
    const error = el("p", { id: errorId, class: "field-error" });
    this.inputs.get(param.name).error = error;
    return el("div", { class: "param", "data-param": param.name }, label, input, hint, error);
  }

  setMode(mode) {
    const json = mode === "json";
    if (json) {
      try {
        this.p.json.value = JSON.stringify(this.formBody(), null, 2);
      } catch {
        if (!this.p.json.value) this.p.json.value = JSON.stringify({ algorithm: this.p.kernel.value, parameters: {} }, null, 2);
      }
    }
    this.p.jsonMode.hidden = !json;
    this.p.formMode.hidden = json;
  }

  mode() {
    return this.p.form.querySelector("input[name=mode]:checked").value;
  }

  formBody() {
    const kernel = this.kernel();
    if (!kernel) throw new FieldError("kernel", "no kernel chosen");
    const parameters = {};
    for (const { param, input } of this.inputs.values()) {
      const value = parseValue(param, input);
      if (value !== undefined) parameters[param.name] = value;
    }
    return { algorithm: kernel.name, parameters };
  }

  body() {
    let body;
    if (this.mode() === "json") {
      try {
        body = JSON.parse(this.p.json.value);
      } catch (exc) {
        throw new FieldError("json", `the JSON does not parse: ${exc.message}`);
      }
    } else {
      body = this.formBody();
    }
    const target = this.p.target.value;
    if (target && body.node === undefined && body.pool === undefined && body.all === undefined) body.node = target;
    const priority = this.p.priority.value.trim();
    if (priority !== "" && body.priority === undefined) body.priority = Number(priority);
    const delay = Number(this.p.delay.value);
    if (this.p.delay.value.trim() !== "" && delay > 0 && body.run_at === undefined) body.run_at = this.clock() + delay;
    return body;
  }

  clearErrors() {
    for (const { input, error } of this.inputs.values()) {
      input.removeAttribute("aria-invalid");
      setText(error, "");
    }
    this.p.json.removeAttribute("aria-invalid");
  }

  showError(field, message) {
    const name = (field || "").replace(/^parameters\./, "");
    const entry = this.inputs.get(name);
    if (entry && this.mode() === "form") {
      entry.input.setAttribute("aria-invalid", "true");
      setText(entry.error, message);
      entry.input.focus();
    } else if (this.mode() === "json") {
      this.p.json.setAttribute("aria-invalid", "true");
    }
    setText(this.p.message, message);
    this.p.message.className = "message error";
  }

  async submit() {
    this.clearErrors();
    let body;
    try {
      body = this.body();
    } catch (exc) {
      this.showError(exc.field, exc.message);
      return;
    }
    this.p.button.disabled = true;
    setText(this.p.message, "Submitting ...");
    this.p.message.className = "message";
    try {
      const task = await api("POST", "/api/v1/compute", body);
      setText(this.p.message, `Task ${task.task_id} accepted: ${task.status}.`);
      this.remember(task);
    } catch (exc) {
      this.showError(exc.field, `Refused (${exc.status} ${exc.code}): ${exc.message}`);
    } finally {
      this.p.button.disabled = false;
    }
  }

  remember(task) {
    const item = el("li", { "data-task": task.task_id });
    const status = el("span", { class: `status ${task.status}`, "data-field": "status" }, task.status);
    const open = el("button", { type: "button", class: "link", "data-action": "open" }, shortId(task.task_id));
    open.title = task.task_id;
    open.setAttribute("aria-label", `task ${task.task_id}: open its detail`);
    const cancel = el("button", { type: "button", class: "danger small", "data-action": "cancel" }, "Cancel");
    cancel.hidden = !PENDING.has(task.status);
    const note = el("span", { class: "note", role: "status" });
    item.append(open, " ", el("span", {}, task.algorithm), " ", status, " ", cancel, note);
    this.p.mine.prepend(item);
    this.mine.set(task.task_id, { item, status, cancel, note });
    while (this.mine.size > MINE) {
      const [oldest, entry] = this.mine.entries().next().value;
      entry.item.remove();
      this.mine.delete(oldest);
    }
    this.p.noMine.hidden = true;
  }

  async mineClick(event) {
    const button = event.target.closest("button");
    const item = event.target.closest("li");
    if (!button || !item) return;
    const taskId = item.dataset.task;
    if (button.dataset.action === "open") {
      this.onOpen(taskId);
      return;
    }
    const entry = this.mine.get(taskId);
    button.disabled = true;
    try {
      await api("DELETE", `/api/v1/task/${encodeURIComponent(taskId)}`);
      setText(entry.note, " cancel sent");
    } catch (exc) {
      setText(entry.note, ` cancel refused: ${exc.message}`);
      button.disabled = false;
    }
  }

  /** A result came in: a task of ours ended (or ran again). */
  result(summary) {
    const entry = this.mine.get(summary.id);
    if (!entry) return;
    setText(entry.status, summary.status);
    entry.status.className = `status ${summary.status}`;
    entry.cancel.hidden = true;
  }

  setNodes(names) {
    const select = this.p.target;
    const have = [...select.options].map((o) => o.value).filter(Boolean);
    if (have.join("\n") === names.join("\n")) return;
    const chosen = select.value;
    select.replaceChildren(el("option", { value: "" }, "the gateway's default"), ...names.map((n) => el("option", { value: n }, n)));
    select.value = names.includes(chosen) ? chosen : "";
  }
}
