// The live results stream: newest first, at most CAP rows, pausable.
//
// `add()` only queues the summary; the frame's render builds the new rows from a <template> in one
// fragment, prepends it and drops the rows past CAP. Rows are CSS grid rows with ARIA table roles
// (not a <table>): a row out of view is skipped by style, layout and paint (content-visibility),
// which table rows cannot be. While paused nothing is drawn and the newest
// CAP arrivals wait (older ones are counted, not kept). Duplicates (results are delivered at least
// once: the same node, id, run and attempt again) are dropped. Rows also hold still while the
// pointer or the keyboard focus is in the list, so the row one aims at does not move away.

import { fmtMs, fmtTime, setText, shortId } from "./dom.js";
import { invalidate } from "./schedule.js";

export const CAP = 200;
const DRAW_EVERY_MS = 250; // new rows at most 4 times a second: nobody reads 200 rows/s, layout costs
const REMEMBER = 1000; // summaries kept for the detail view, by task id

export class Stream {
  constructor({ rows, count, empty, pause, template }, { onOpen }) {
    this.rows = rows;
    this.count = count;
    this.empty = empty;
    this.pauseButton = pause;
    this.template = template.content.firstElementChild;
    this.onOpen = onOpen;
    this.pending = [];
    this.recent = new Map();
    this.paused = false;
    this.force = false;
    this.waiting = 0;
    this.received = 0;
    this.selected = null;
    this.timer = null;
    this.drawnAt = -Infinity;
    this.render = () => this.flush();
    rows.addEventListener("click", (event) => {
      const row = event.target.closest("[role=row]");
      if (row && row.dataset.task) this.onOpen(row.dataset.task);
    });
    pause.addEventListener("click", () => this.setPaused(!this.paused));
    this.held = { pointer: false, focus: false };
    const hold = (why, on) => {
      this.held[why] = on;
      if (!on) invalidate(this.render);
    };
    rows.addEventListener("pointerenter", () => hold("pointer", true));
    rows.addEventListener("pointerleave", () => hold("pointer", false));
    rows.addEventListener("focusin", () => hold("focus", true));
    rows.addEventListener("focusout", (event) => hold("focus", rows.contains(event.relatedTarget)));
    this.counter = setInterval(() => this.renderCount(), 1000);
  }

  load(results) {
    this.rows.replaceChildren();
    this.pending = [];
    this.recent.clear();
    this.waiting = 0;
    for (let i = results.length - 1; i >= 0; i--) this.add(results[i], false);
    this.waiting = 0;
    this.force = true; // drawn even while paused: the rows were all replaced
    invalidate(this.render);
  }

  /** A result summary (newest last); `count` false for the snapshot's backlog. */
  add(result, count = true) {
    const known = this.recent.get(result.id);
    if (
      known &&
      known.node === result.node &&
      known.run === result.run &&
      known.attempt === result.attempt &&
      known.status === result.status
    ) {
      return false;
    }
    this.remember(result);
    if (count) this.received += 1;
    this.pending.push(result);
    if (this.pending.length > CAP) this.pending.shift();
    if (this.paused) this.waiting += 1;
    else this.schedule();
    return true;
  }

  /** The next frame after DRAW_EVERY_MS since the last draw (at once after a quiet spell). */
  schedule() {
    if (this.timer !== null) return;
    const wait = Math.max(0, this.drawnAt + DRAW_EVERY_MS - performance.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      invalidate(this.render);
    }, wait);
  }

  remember(result) {
    this.recent.delete(result.id);
    this.recent.set(result.id, result);
    if (this.recent.size > REMEMBER) this.recent.delete(this.recent.keys().next().value);
  }

  summary(taskId) {
    return this.recent.get(taskId) || null;
  }

  setPaused(paused) {
    this.paused = paused;
    this.pauseButton.setAttribute("aria-pressed", String(paused));
    setText(this.pauseButton, paused ? "Resume" : "Pause");
    if (!paused) {
      this.waiting = 0;
      invalidate(this.render);
    }
    this.renderCount();
  }

  flush() {
    const force = this.force;
    this.force = false;
    const holding = this.paused || this.held.pointer || this.held.focus;
    if ((holding && !force) || this.pending.length === 0) return;
    this.drawnAt = performance.now();
    const fresh = this.pending;
    this.pending = [];
    const fragment = document.createDocumentFragment();
    for (let i = fresh.length - 1; i >= 0; i--) fragment.append(this.row(fresh[i]));
    this.rows.prepend(fragment);
    while (this.rows.childElementCount > CAP) this.rows.lastElementChild.remove();
    this.empty.hidden = true;
  }

  row(r) {
    const tr = this.template.cloneNode(true);
    const cells = tr.children;
    cells[0].textContent = fmtTime(r.finished_at ?? r.received_at);
    cells[1].textContent = r.node;
    const link = cells[2].firstElementChild;
    link.textContent = shortId(r.id);
    link.title = r.id;
    link.setAttribute("aria-label", `task ${r.id}, ${r.status}: open its detail`);
    cells[3].textContent = r.kernel;
    const status = cells[4].firstElementChild;
    status.textContent = r.status;
    status.className = `status ${r.status}`;
    if (r.error) status.title = `${r.error.code}: ${r.error.message}`;
    cells[5].textContent = fmtMs(r.duration_ms);
    cells[6].textContent = r.priority ?? "-";
    tr.dataset.task = r.id;
    tr.dataset.node = r.node;
    tr.dataset.status = r.status;
    if (r.id === this.selected) tr.classList.add("selected");
    return tr;
  }

  select(taskId) {
    this.selected = taskId;
    for (const row of this.rows.querySelectorAll(".selected")) row.classList.remove("selected");
    if (taskId === null) return;
    for (const row of this.rows.children) if (row.dataset.task === taskId) row.classList.add("selected");
  }

  renderCount() {
    const shown = Math.min(CAP, this.rows.childElementCount + (this.paused ? 0 : this.pending.length));
    const text = this.paused
      ? `Paused: ${this.waiting.toLocaleString()} new result${this.waiting === 1 ? "" : "s"} waiting`
      : `${this.received.toLocaleString()} result${this.received === 1 ? "" : "s"} since the page opened; ` +
        `the newest ${shown} shown`;
    setText(this.count, text);
    this.count.dataset.received = String(this.received);
  }
}
