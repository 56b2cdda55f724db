// The live connection: one EventSource on /api/v1/events (the session cookie goes with it).
//
// EventSource reconnects by itself after a network error (readyState CONNECTING, the gateway's
// `retry: 2000`), but gives up for good on an HTTP error answer (readyState CLOSED): then the page
// asks `closed()` what to do (the session may have expired) and opens a new one after a back-off.
// Every state change goes to `onState("open" | "connecting" | "closed")`: the page shows a banner
// whenever the stream is not open. A `gap` (this page's queue at the gateway overflowed) reopens
// the stream at once: the next snapshot brings the whole state again.

const TYPES = ["snapshot", "node", "result", "alert"];

export class Live {
  constructor(url, handlers, { onState, closed }) {
    this.url = url;
    this.handlers = handlers; // type -> (data) => void
    this.onState = onState;
    this.closed = closed; // async () => boolean: true to reconnect
    this.source = null;
    this.backoffMs = 1000;
    this.timer = null;
    this.stopped = true;
    this.opens = 0; // streams opened (1 + reconnections), for the page's own figures
    this.gaps = 0;
  }

  start() {
    this.stopped = false;
    this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.source) this.source.close();
    this.source = null;
  }

  open() {
    if (this.source) this.source.close();
    const source = new EventSource(this.url);
    this.source = source;
    this.onState("connecting");
    source.onopen = () => {
      this.backoffMs = 1000;
      this.opens += 1;
      this.onState("open");
    };
    source.onerror = () => {
      if (source !== this.source || this.stopped) return;
      if (source.readyState === EventSource.CLOSED) {
        this.onState("closed");
        this.retryLater();
      } else {
        this.onState("connecting");
      }
    };
    for (const type of TYPES) {
      source.addEventListener(type, (event) => this.dispatch(type, event));
    }
    source.addEventListener("gap", () => {
      this.gaps += 1;
      if (source === this.source && !this.stopped) this.open();
    });
  }

  dispatch(type, event) {
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      console.warn(`an unreadable ${type} event was ignored`);
      return;
    }
    this.handlers[type](data);
  }

  retryLater() {
    clearTimeout(this.timer);
    this.timer = setTimeout(async () => {
      if (this.stopped) return;
      let again = true;
      try {
        again = await this.closed();
      } catch {
        again = true;
      }
      if (again && !this.stopped) this.open();
    }, this.backoffMs);
    this.backoffMs = Math.min(this.backoffMs * 2, 15000);
  }
}
