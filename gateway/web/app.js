// The dashboard's entry: sign-in (a cookie session: the page never holds the token), then one live
// stream of events from the gateway fanned out to the fleet cards, the results stream, the task
// detail, the alerts and the submit form. What a role may not do is not drawn at all.

import { Alerts } from "./alerts.js";
import { api, session, whenUnauthorized } from "./api.js";
import { Detail } from "./detail.js";
import { $, setText } from "./dom.js";
import { FleetPanel } from "./fleet.js";
import { Live } from "./live.js";
import { Stream } from "./stream.js";
import { SubmitPanel } from "./submit.js";
import { Throughput } from "./throughput.js";

const CONNECTION_TEXT = {
  connecting: "Disconnected from the gateway: reconnecting ...",
  closed: "Disconnected from the gateway: trying again shortly ...",
};

function may(roles, role) {
  return roles.includes("admin") || roles.includes(role) || (role === "read" && roles.includes("submit"));
}

class Dashboard {
  constructor(me) {
    this.me = me;
    const roles = me.roles || [];
    this.canSubmit = may(roles, "submit");
    this.admin = roles.includes("admin");
    this.verified = true;
    this.throughput = new Throughput();
    this.fleet = new FleetPanel(
      { container: $("nodes"), empty: $("no-nodes"), summary: $("fleet-summary"), chart: $("fleet-chart"), spanLabel: $("chart-span") },
      this.throughput,
      { admin: this.admin, steer: (node, action) => api("POST", `/api/v1/nodes/${encodeURIComponent(node)}/${action}?wait=5`) },
    );
    this.stream = new Stream(
      { rows: $("stream-rows"), count: $("stream-count"), empty: $("no-results"), pause: $("pause"), template: $("row-template") },
      { onOpen: (id) => this.open(id) },
    );
    this.detail = new Detail(
      { panel: $("detail"), title: $("detail-title"), body: $("detail-body"), close: $("detail-close") },
      { canSubmit: this.canSubmit, onClose: (id) => this.closed(id) },
    );
    this.alerts = new Alerts({
      forgedTotal: $("forged-total"), forgedCodes: $("forged-codes"), forgedBox: $("forged-box"),
      rejectsTotal: $("rejects-total"), rejectCodes: $("reject-codes"), list: $("alert-list"), empty: $("no-alerts"),
      badge: $("forged-badge"), badgeLink: $("forged-badge-link"),
    });
    this.submit = null;
    if (this.canSubmit) {
      this.submit = new SubmitPanel(
        {
          section: $("submit"), form: $("submit-form"), kernel: $("kernel"), kernelDoc: $("kernel-doc"), params: $("params"),
          jsonMode: $("json-mode"), formMode: $("form-mode"), json: $("json-body"), target: $("target"),
          priority: $("priority"), delay: $("delay"), message: $("submit-message"), mine: $("mine"), noMine: $("no-mine"),
          button: $("submit-button"),
        },
        { clock: () => this.throughput.now(), onOpen: (id) => this.open(id) },
      );
      $("submit").hidden = false;
      this.submit.load();
    } else {
      $("submit").remove(); // a reader gets no form and no buttons, not hidden ones
      $("jump-submit").remove();
    }
    this.live = new Live(
      "/api/v1/events",
      {
        snapshot: (data) => this.snapshot(data),
        node: (data) => this.node(data),
        result: (data) => this.result(data),
        alert: (data) => this.alert(data),
      },
      { onState: (state) => this.connection(state), closed: stillSignedIn },
    );
  }

  start() {
    $("dashboard").hidden = false;
    this.live.start();
  }

  stop() {
    this.live.stop();
  }

  check(data) {
    if (data.verified !== true && this.verified) {
      this.verified = false;
      setText($("verified"), "⚠ a message arrived without the gateway's verification");
      $("verified").classList.add("unverified");
    }
  }

  snapshot(data) {
    this.throughput.load(data.throughput, data.server_time ?? Date.now() / 1000);
    this.fleet.load(data.nodes || []);
    this.stream.load(data.results || []);
    this.alerts.load(data.alerts);
    this.submit?.setNodes((data.nodes || []).map((n) => n.node));
    $("verified").hidden = false;
  }

  node(view) {
    this.check(view);
    this.fleet.update(view);
    this.submit?.setNodes([...this.fleet.cards.keys()].sort());
  }

  result(summary) {
    this.check(summary);
    if (!this.stream.add(summary)) return;
    this.throughput.add(summary.node);
    this.submit?.result(summary);
    this.detail.changed(summary.id, summary);
  }

  alert(alert) {
    this.alerts.add(alert);
  }

  connection(state) {
    const banner = $("connection");
    banner.hidden = state === "open";
    banner.dataset.state = state;
    if (state !== "open") setText(banner, CONNECTION_TEXT[state]);
    document.body.dataset.connection = state;
    document.body.dataset.opens = String(this.live.opens); // reconnections and gaps, for tests and benchmarks
    document.body.dataset.gaps = String(this.live.gaps);
  }

  open(taskId) {
    this.stream.select(taskId);
    this.detail.open(taskId, this.stream.summary(taskId));
  }

  closed(taskId) {
    this.stream.select(null);
    const row = [...$("stream-rows").children].find((r) => r.dataset.task === taskId);
    (row?.querySelector("button") || $("results")).focus();
  }
}

let dashboard = null;
let expiry = null;

/** True while the session is valid; otherwise back to the sign-in form (and false). */
async function stillSignedIn() {
  try {
    await session.current();
    return true;
  } catch (exc) {
    if (exc.status === 401) {
      signedOut(true);
      return false;
    }
    return true; // the gateway is away: the session may well be fine
  }
}

/** The session ends when its token does (the cookie's Max-Age): an open event stream would go on,
 *  so the page checks at `expires_at` and signs itself out. */
function watchExpiry(me) {
  clearTimeout(expiry);
  const ms = Math.min(Math.max(1000, me.expires_at * 1000 - Date.now() + 1000), 2 ** 31 - 1);
  expiry = setTimeout(async () => {
    if (await stillSignedIn()) session.current().then(watchExpiry, () => watchExpiry(me));
  }, ms);
}

function showSignIn(message = "") {
  $("sign-in").hidden = false;
  $("dashboard").hidden = true;
  $("who").hidden = true;
  $("sign-out").hidden = true;
  $("verified").hidden = true;
  setText($("sign-in-error"), message);
  $("client-id").focus();
}

/** Back to the sign-in form: a fresh page, so nothing of the session stays in memory or the DOM. */
function signedOut(ended) {
  clearTimeout(expiry);
  if (dashboard) dashboard.stop();
  dashboard = null;
  history.replaceState(null, "", ended ? "#session-ended" : window.location.pathname);
  window.location.reload();
}

function signedIn(me) {
  if (window.location.hash === "#session-ended") history.replaceState(null, "", window.location.pathname);
  $("sign-in").hidden = true;
  setText($("who"), `${me.client} · ${(me.roles || []).join(", ")}`);
  $("who").hidden = false;
  $("sign-out").hidden = false;
  document.body.dataset.roles = (me.roles || []).join(" ");
  dashboard = new Dashboard(me);
  dashboard.start();
  watchExpiry(me);
}

async function signIn(event) {
  event.preventDefault();
  const id = $("client-id").value.trim();
  const secret = $("client-secret").value;
  if (!id || !secret) {
    setText($("sign-in-error"), "Give the client id and its secret.");
    return;
  }
  const button = event.submitter || $("sign-in-form").querySelector("button");
  button.disabled = true;
  try {
    const me = await session.signIn(id, secret);
    $("client-secret").value = "";
    setText($("sign-in-error"), "");
    signedIn(me);
  } catch (exc) {
    const reason = exc.code === "rate_limited" ? "Too many attempts: wait a moment." : exc.message;
    setText($("sign-in-error"), `Sign-in refused: ${reason}`);
  } finally {
    button.disabled = false;
  }
}

async function main() {
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", async () => {
    try {
      await session.signOut();
    } catch (exc) {
      console.warn(`sign-out: ${exc.message}`);
    }
    signedOut(false);
  });
  whenUnauthorized(() => {
    if (dashboard) signedOut(true);
  });
  let me;
  try {
    me = await session.current();
  } catch (exc) {
    const ended = window.location.hash === "#session-ended" ? "Your session ended: sign in again." : "";
    showSignIn(exc.status === 401 ? ended : `The gateway answered: ${exc.message}`);
    return;
  }
  signedIn(me);
}

main();
