// One task in detail: GET /api/v1/task/{id} (the gateway's record, or its ring of results seen on
// the fleet), else the summary the live stream carried. Parameters as shapes, the result as a
// preview, timings, every run and attempt with its error, the trace id; Cancel while it is pending
// (for the roles that may submit).

import { api } from "./api.js";
import { clear, el, fmtDateTime, fmtMs, setText } from "./dom.js";
import { previewOf, renderParams, renderPreview } from "./preview.js";

const PENDING = new Set(["submitted", "published"]);
const SOURCES = {
  record: "submitted through this gateway",
  seen: "seen on the fleet by the gateway",
  stream: "from the live stream",
};

function facts(rows) {
  const list = el("dl", { class: "facts" });
  for (const [label, value, field] of rows) {
    if (value === null || value === undefined || value === "") continue;
    list.append(el("div", {}, el("dt", {}, label), el("dd", { "data-field": field }, value)));
  }
  return list;
}

function timingsOf(view, last) {
  const t = view.timings || {};
  return {
    submitted_at: t.submitted_at ?? view.submitted_at ?? null,
    received_at: t.received_at ?? last?.received_at ?? null,
    started_at: t.started_at ?? last?.started_at ?? null,
    finished_at: t.finished_at ?? last?.finished_at ?? null,
    latency_ms: t.latency_ms ?? last?.latency_ms ?? null,
    duration_ms: last?.duration_ms ?? view.duration_ms ?? null,
  };
}

function runsTable(runs) {
  const body = el("tbody");
  for (const r of runs) {
    const error = r.error ? `${r.error.code}: ${r.error.message}` : "";
    body.append(
      el("tr", {},
        el("td", {}, r.node ?? "-"), el("td", { class: "c-num" }, r.run ?? "-"),
        el("td", { class: "c-num" }, r.attempt ?? "-"),
        el("td", {}, el("span", { class: `status ${r.status}` }, r.status)),
        el("td", { class: "c-num" }, fmtMs(r.duration_ms)), el("td", { class: "error-text" }, error)),
    );
  }
  return el("div", { class: "table-wrap" },
    el("table", { class: "runs" },
      el("caption", { class: "sr-only" }, "Runs and attempts"),
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Node"), el("th", { scope: "col", class: "c-num" }, "Run"),
        el("th", { scope: "col", class: "c-num" }, "Attempt"), el("th", { scope: "col" }, "Status"),
        el("th", { scope: "col", class: "c-num" }, "Duration"), el("th", { scope: "col" }, "Error"))),
      body));
}

/** The task view (GET /api/v1/task) in one shape, whatever answered: the record, the ring, or only
 *  the stream's summary. */
function normalise(view, summary) {
  if (!view) {
    return {
      task_id: summary.id, status: summary.status, algorithm: summary.kernel, node: summary.node,
      priority: summary.priority, trace: summary.trace, attempts: summary.attempt,
      error: summary.error, results: [summary], params_summary: null, preview: summary.preview,
      source: "stream",
    };
  }
  const runs = view.results || [];
  const preview =
    view.preview ?? (view.result !== undefined && view.result !== null ? previewOf(view.result) : summary?.preview);
  return { ...view, results: runs, preview, source: view.source || "record" };
}

export class Detail {
  constructor({ panel, title, body, close }, { canSubmit, onClose }) {
    this.panel = panel;
    this.title = title;
    this.body = body;
    this.canSubmit = canSubmit;
    this.onClose = onClose;
    this.taskId = null;
    this.loading = 0;
    close.addEventListener("click", () => this.close());
    panel.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.close();
    });
  }

  async open(taskId, summary) {
    this.taskId = taskId;
    this.panel.hidden = false;
    setText(this.title, `Task ${taskId}`);
    if (!this.body.firstChild || this.body.dataset.task !== taskId) {
      clear(this.body);
      this.body.append(el("p", { class: "muted" }, "Loading ..."));
    }
    this.panel.focus({ preventScroll: true });
    this.panel.scrollIntoView({ block: "nearest" });
    await this.refresh(summary);
  }

  async refresh(summary) {
    const taskId = this.taskId;
    const ticket = ++this.loading;
    let view = null;
    let note = null;
    try {
      view = await api("GET", `/api/v1/task/${encodeURIComponent(taskId)}`);
    } catch (exc) {
      if (exc.status !== 404 && exc.status !== 403) note = `The gateway did not answer for this task: ${exc.message}`;
    }
    if (ticket !== this.loading || taskId !== this.taskId) return; // a newer request won
    if (!view && !summary) {
      clear(this.body);
      this.body.append(el("p", { class: "error" }, note || "The gateway knows nothing of this task."));
      return;
    }
    this.show(normalise(view, summary), note);
  }

  show(task, note) {
    const runs = task.results;
    const last = runs.length ? runs[runs.length - 1] : null;
    const t = timingsOf(task, last);
    const parts = [];
    parts.push(
      el("p", { class: "detail-badges" },
        el("span", { class: `status ${task.status}`, "data-field": "status" }, task.status),
        " ", el("span", { class: "verified-chip" }, "✔ verified by the gateway")),
    );
    if (note) parts.push(el("p", { class: "error" }, note));
    parts.push(facts([
      ["Node", task.node ?? task.target, "node"],
      ["Kernel", task.algorithm, "kernel"],
      ["Client", task.client, "client"],
      ["Priority", task.priority, "priority"],
      ["Attempts", task.attempts, "attempts"],
      ["Trace id", task.trace ? el("code", {}, task.trace) : null, "trace"],
      ["Source", SOURCES[task.source] || task.source, "source"],
    ]));
    parts.push(el("h3", {}, "Parameters"), el("div", { "data-section": "params" }, renderParams(task.params_summary)));
    const result = task.status === "completed" ? renderPreview(task.preview) : el("p", { class: "muted" }, "none");
    parts.push(el("h3", {}, "Result"), el("div", { "data-section": "result" }, result));
    if (task.error || last?.error) {
      const error = task.error || last.error;
      parts.push(el("h3", {}, "Error"), el("p", { class: "error", "data-field": "error" }, el("code", {}, error.code), ` ${error.message}`));
    }
    parts.push(el("h3", {}, "Timings"), facts([
      ["Submitted", t.submitted_at === null ? null : fmtDateTime(t.submitted_at), "submitted_at"],
      ["Received", fmtDateTime(t.received_at), "received_at"],
      ["Started", fmtDateTime(t.started_at), "started_at"],
      ["Finished", fmtDateTime(t.finished_at), "finished_at"],
      ["Latency", fmtMs(t.latency_ms), "latency_ms"],
      ["Kernel time", fmtMs(t.duration_ms), "duration_ms"],
    ]));
    if (runs.length) parts.push(el("h3", {}, "Runs and attempts"), runsTable(runs));
    if (this.canSubmit && PENDING.has(task.status)) parts.push(this.cancelButton(task.task_id));
    clear(this.body);
    this.body.dataset.task = task.task_id;
    this.body.append(...parts);
  }

  cancelButton(taskId) {
    const message = el("p", { class: "message", role: "status" });
    const button = el("button", { type: "button", class: "danger", "data-action": "cancel" }, "Cancel task");
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await api("DELETE", `/api/v1/task/${encodeURIComponent(taskId)}`);
        setText(message, "Cancel sent to the node.");
      } catch (exc) {
        setText(message, `Cancel refused: ${exc.message}`);
        button.disabled = false;
      }
    });
    return el("div", { class: "actions" }, button, message);
  }

  /** A result for the open task came in: read it again. */
  changed(taskId, summary) {
    if (taskId === this.taskId && !this.panel.hidden) this.refresh(summary);
  }

  close() {
    if (this.panel.hidden) return;
    this.panel.hidden = true;
    const taskId = this.taskId;
    this.taskId = null;
    this.onClose(taskId);
  }
}

