// Results per time bucket, per node: the snapshot's rings (`throughput`), then one count per
// `result` event, in the gateway's clock (the snapshot's `server_time` gives the offset). Fixed
// size: `count` buckets per node, the newest one still filling.

export class Throughput {
  constructor() {
    this.bucketS = 10;
    this.count = 30;
    this.end = 0; // epoch s (gateway clock) where the newest bucket ends
    this.offsetS = 0; // gateway clock - this browser's clock
    this.nodes = new Map();
  }

  load(throughput, serverTime) {
    this.offsetS = serverTime - Date.now() / 1000;
    this.nodes.clear();
    if (!throughput) {
      this.end = Math.ceil(this.now() / this.bucketS) * this.bucketS;
      return;
    }
    this.bucketS = throughput.bucket_s || 10;
    const rings = throughput.nodes || {};
    this.count = Math.max(2, ...Object.values(rings).map((r) => r.length), 30);
    this.end = throughput.end;
    if (this.end <= this.now() - this.bucketS) this.end = this.now(); // tolerate an end of "now"
    for (const [node, ring] of Object.entries(rings)) {
      const copy = new Array(this.count).fill(0);
      copy.splice(this.count - ring.length, ring.length, ...ring);
      this.nodes.set(node, copy.slice(-this.count));
    }
    this.advance();
  }

  now() {
    return Date.now() / 1000 + this.offsetS;
  }

  advance() {
    const now = this.now();
    if (now < this.end) return;
    const steps = Math.floor((now - this.end) / this.bucketS) + 1;
    this.end += steps * this.bucketS;
    for (const ring of this.nodes.values()) {
      if (steps >= this.count) ring.fill(0);
      else {
        ring.splice(0, steps);
        for (let i = 0; i < steps; i++) ring.push(0);
      }
    }
  }

  ring(node) {
    let ring = this.nodes.get(node);
    if (!ring) {
      ring = new Array(this.count).fill(0);
      this.nodes.set(node, ring);
    }
    return ring;
  }

  add(node) {
    this.advance();
    this.ring(node)[this.count - 1] += 1;
  }

  /** tasks/s per bucket, oldest first; the filling bucket over the time it has been filling. */
  rates(node) {
    return this.ratesOf(this.nodes.get(node) || new Array(this.count).fill(0));
  }

  totalRates() {
    return this.ratesOf(this.sumRing());
  }

  ratesOf(ring) {
    const filling = Math.max(1, this.now() - (this.end - this.bucketS));
    return ring.map((c, i) => c / (i === ring.length - 1 ? Math.min(filling, this.bucketS) : this.bucketS));
  }

  /** tasks/s over the last minute (or the whole window when shorter), the filling bucket included. */
  recentRate(node) {
    const ring = node === undefined ? this.sumRing() : this.nodes.get(node);
    if (!ring) return 0;
    const buckets = Math.min(this.count, Math.max(1, Math.round(60 / this.bucketS)));
    const filling = Math.min(this.bucketS, Math.max(0, this.now() - (this.end - this.bucketS)));
    let total = 0;
    for (let i = this.count - buckets; i < this.count; i++) total += ring[i];
    return total / ((buckets - 1) * this.bucketS + Math.max(1, filling));
  }

  sumRing() {
    const sum = new Array(this.count).fill(0);
    for (const ring of this.nodes.values()) for (let i = 0; i < this.count; i++) sum[i] += ring[i];
    return sum;
  }

  spanLabel() {
    const s = this.count * this.bucketS;
    return s % 60 === 0 ? `${s / 60} min` : `${s} s`;
  }
}
