// Alerts: what failed verification at the gateway (`forged`: never shown as the fleet's) and what
// agents refused (`reject` reports), with counts by code and the newest first. Forged messages
// also light a badge in the page's header.

import { el, fmtTime, setClass, setText } from "./dom.js";
import { invalidate } from "./schedule.js";

const RECENT = 50;

function total(counts) {
  return Object.values(counts).reduce((a, b) => a + b, 0);
}

export class Alerts {
  constructor(parts) {
    this.p = parts; // {forgedTotal, forgedCodes, forgedBox, rejectsTotal, rejectCodes, list, empty, badge, badgeLink}
    this.forged = {};
    this.rejects = {};
    this.recent = [];
    this.fresh = [];
    this.reload = true;
    this.render = () => this.flush();
  }

  load(alerts) {
    this.forged = { ...(alerts?.forged || {}) };
    this.rejects = { ...(alerts?.rejects || {}) };
    this.recent = (alerts?.recent || []).slice(0, RECENT);
    this.fresh = [];
    this.reload = true;
    invalidate(this.render);
  }

  add(alert) {
    const counts = alert.kind === "forged" ? this.forged : this.rejects;
    counts[alert.code] = Math.max(alert.count ?? 0, (counts[alert.code] || 0) + 1);
    this.recent.unshift(alert);
    if (this.recent.length > RECENT) this.recent.pop();
    this.fresh.unshift(alert);
    if (this.fresh.length > RECENT) this.fresh.pop();
    invalidate(this.render);
  }

  flush() {
    const p = this.p;
    const forged = total(this.forged);
    setText(p.forgedTotal, forged.toLocaleString());
    setText(p.rejectsTotal, total(this.rejects).toLocaleString());
    setClass(p.forgedBox, "alarm", forged > 0);
    this.codes(p.forgedCodes, this.forged, "forged");
    this.codes(p.rejectCodes, this.rejects, "reject");
    p.badge.hidden = forged === 0;
    setText(p.badgeLink, `⚠ ${forged.toLocaleString()} forged`);
    if (this.reload) {
      p.list.replaceChildren(...this.recent.map((a) => this.item(a)));
      this.reload = false;
    } else if (this.fresh.length) {
      p.list.prepend(...this.fresh.map((a) => this.item(a)));
      while (p.list.childElementCount > RECENT) p.list.lastElementChild.remove();
    }
    this.fresh = [];
    p.empty.hidden = this.recent.length > 0;
  }

  codes(list, counts, kind) {
    const entries = Object.entries(counts).sort((a, b) => b[1] - a[1]);
    list.replaceChildren(
      ...entries.map(([code, n]) =>
        el("li", { "data-kind": kind, "data-code": code }, el("code", {}, code), " ", el("span", { class: "count" }, n.toLocaleString())),
      ),
    );
  }

  item(a) {
    const where = [a.node, a.topic].filter(Boolean).join(" · ");
    return el("li", { class: `alert ${a.kind}`, "data-kind": a.kind, "data-code": a.code },
      el("span", { class: `badge ${a.kind}` }, a.kind === "forged" ? "FORGED" : "rejected"), " ",
      el("time", {}, fmtTime(a.at)), " ", el("code", {}, a.code), where ? ` ${where}` : "",
      a.message ? el("span", { class: "alert-message" }, ` — ${a.message}`) : "");
  }
}
