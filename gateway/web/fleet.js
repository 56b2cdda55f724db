// The fleet: one card per node, updated in place from `node` events, and the fleet's throughput.
//
// A card's heartbeat age counts up between heartbeats (ticked once a second) and turns amber, then
// red, when the next heartbeat is late: the node's interval is learned from the gaps between the
// heartbeats seen (the smallest of the last few), 10 s (the protocol's default) until then.

import { RateChart, Sparkline } from "./charts.js";
import { el, fmtAge, fmtBytes, fmtNumber, fmtRate, setClass, setText } from "./dom.js";
import { invalidate } from "./schedule.js";

const DEFAULT_INTERVAL_S = 10;
const LATE = 2; // heartbeat intervals (+ 2 s) before amber
const DEAD = 5; // ... before red

class Beat {
  constructor() {
    this.at = null; // ms, this browser's clock
    this.gaps = [];
  }

  seen(ageS, nowMs) {
    if (ageS === null || ageS === undefined) return;
    const at = nowMs - ageS * 1000;
    if (this.at !== null && at - this.at > 500) {
      this.gaps.push((at - this.at) / 1000);
      if (this.gaps.length > 5) this.gaps.shift();
    }
    if (this.at === null || at - this.at > 500) this.at = at;
  }

  interval() {
    return this.gaps.length ? Math.max(0.5, Math.min(...this.gaps)) : DEFAULT_INTERVAL_S;
  }

  age(nowMs) {
    return this.at === null ? null : Math.max(0, (nowMs - this.at) / 1000);
  }

  lateness(ageS) {
    if (ageS === null) return "none";
    const interval = this.interval();
    if (ageS > DEAD * interval + 2) return "dead";
    if (ageS > LATE * interval + 2) return "late";
    return "ok";
  }
}

const FIGURES = [
  ["heartbeat", "Heartbeat"],
  ["state", "State"],
  ["queued", "Queued"],
  ["running", "Running"],
  ["outbox", "Outbox"],
  ["completed", "Completed"],
  ["abandoned", "Abandoned"],
  ["rss", "RSS"],
  ["cpu", "CPU"],
  ["backend", "Backend"],
  ["version", "Version"],
];

class NodeCard {
  constructor(name, { admin, steer }) {
    this.name = name;
    this.beat = new Beat();
    this.view = null;
    const titleId = `node-title-${name}`;
    this.root = el("article", { class: "node card", "data-node": name, "aria-labelledby": titleId });
    this.presence = el("span", { class: "badge presence" });
    this.root.append(el("header", {}, el("h3", { id: titleId }, name), this.presence));
    const list = el("dl", { class: "figures" });
    this.fields = {};
    for (const [key, label] of FIGURES) {
      this.fields[key] = el("dd", { "data-field": key }, "-");
      list.append(el("div", {}, el("dt", {}, label), this.fields[key]));
    }
    this.root.append(list);
    this.spark = new Sparkline(`${name}: tasks/s`);
    this.rate = el("span", { class: "rate", "data-field": "rate" }, "0/s");
    this.root.append(el("div", { class: "throughput" }, this.spark.svg, this.rate));
    if (admin) this.addActions(steer);
  }

  addActions(steer) {
    this.drain = el("button", { type: "button", class: "drain", "data-action": "drain" }, "Drain");
    this.resume = el("button", { type: "button", class: "resume", "data-action": "resume" }, "Resume");
    this.message = el("p", { class: "message", role: "status" });
    const act = async (action, button) => {
      button.disabled = true;
      setText(this.message, `${action} sent ...`);
      try {
        const answer = await steer(this.name, action);
        setText(this.message, `${action}: ${answer.status}`);
      } catch (exc) {
        setText(this.message, `${action} refused: ${exc.message}`);
      } finally {
        button.disabled = false;
      }
    };
    this.drain.addEventListener("click", () => act("drain", this.drain));
    this.resume.addEventListener("click", () => act("resume", this.resume));
    this.root.append(el("div", { class: "actions" }, this.drain, this.resume, this.message));
  }

  set(view, nowMs) {
    this.view = view;
    this.beat.seen(view.last_heartbeat_age_s, nowMs);
  }

  render(nowMs) {
    const v = this.view;
    if (!v) return;
    const f = this.fields;
    setText(this.presence, v.online ? "online" : "offline");
    this.presence.title = v.session === null ? "" : `session ${v.session}`;
    setClass(this.presence, "online", v.online);
    setClass(this.root, "offline", !v.online);
    this.root.dataset.online = String(v.online);
    this.root.dataset.state = v.state || "";
    setText(f.state, v.state || "-");
    setClass(f.state, "draining", v.state === "draining");
    setText(f.queued, fmtNumber(v.queued));
    setText(f.running, fmtNumber(v.running));
    setText(f.outbox, fmtNumber(v.outbox));
    setText(f.completed, fmtNumber(v.completed_total));
    setText(f.abandoned, fmtNumber(v.abandoned_total));
    setText(f.rss, fmtBytes(v.rss_bytes));
    setText(f.cpu, v.cpu_percent === undefined || v.cpu_percent === null ? "-" : `${v.cpu_percent.toFixed(1)} %`);
    setText(f.backend, v.backend || "-");
    setText(f.version, v.version || "-");
    if (this.drain) {
      this.drain.hidden = v.state === "draining";
      this.resume.hidden = v.state !== "draining";
    }
    this.renderAge(nowMs);
  }

  renderAge(nowMs) {
    const age = this.beat.age(nowMs);
    const lateness = this.beat.lateness(age);
    const f = this.fields.heartbeat;
    setText(f, fmtAge(age));
    for (const name of ["ok", "late", "dead"]) setClass(f, name, lateness === name);
    this.root.dataset.beat = lateness; // ok | late | dead | none
  }

  renderRate(throughput) {
    this.spark.update(throughput.rates(this.name));
    setText(this.rate, fmtRate(throughput.recentRate(this.name)));
  }
}

export class FleetPanel {
  constructor({ container, empty, summary, chart, spanLabel }, throughput, options) {
    this.container = container;
    this.empty = empty;
    this.summary = summary;
    this.throughput = throughput;
    this.options = options; // {admin, steer}
    this.cards = new Map();
    this.dirty = new Set();
    this.chart = new RateChart(chart, throughput.spanLabel());
    this.spanLabel = spanLabel;
    this.render = () => this.flush();
    this.ticker = setInterval(() => this.tick(), 1000);
  }

  load(nodes) {
    for (const card of this.cards.values()) card.root.remove();
    this.cards.clear();
    this.dirty.clear();
    for (const view of nodes) this.update(view);
    setText(this.spanLabel, this.throughput.spanLabel());
    this.tick();
  }

  update(view) {
    let card = this.cards.get(view.node);
    if (!card) {
      card = new NodeCard(view.node, this.options);
      this.cards.set(view.node, card);
      this.place(card);
    }
    card.set(view, Date.now());
    this.dirty.add(card);
    invalidate(this.render);
  }

  place(card) {
    const after = [...this.cards.keys()].filter((n) => n > card.name).sort()[0];
    const next = after === undefined ? null : this.cards.get(after).root;
    this.container.insertBefore(card.root, next && next.parentNode ? next : null);
  }

  flush() {
    const now = Date.now();
    for (const card of this.dirty) card.render(now);
    this.dirty.clear();
    this.empty.hidden = this.cards.size > 0;
    this.renderSummary();
  }

  tick() {
    const now = Date.now();
    this.throughput.advance();
    for (const card of this.cards.values()) {
      card.renderAge(now);
      card.renderRate(this.throughput);
    }
    const total = this.throughput.totalRates();
    const rate = this.throughput.recentRate();
    this.chart.update(total, `fleet throughput, ${fmtRate(rate)} over the last minute`);
    this.renderSummary();
  }

  renderSummary() {
    const views = [...this.cards.values()].map((c) => c.view).filter(Boolean);
    const online = views.filter((v) => v.online).length;
    const sum = (key) => views.reduce((acc, v) => acc + (v[key] || 0), 0);
    setText(
      this.summary,
      `${online} of ${views.length} node${views.length === 1 ? "" : "s"} online · ` +
        `${fmtNumber(sum("queued"))} queued · ${fmtNumber(sum("running"))} running · ` +
        `${fmtRate(this.throughput.recentRate())} · ${fmtNumber(sum("completed_total"))} completed`,
    );
  }
}
