// A latency histogram with log-spaced buckets (5 % apart, 0.1 ms to about an hour): constant
// memory and an O(1) record, percentiles within the bucket width. The admission gate keeps
// one per reporting interval and one per reflex window.

const BASE_MS = 0.1;
const GROWTH = 1.05;
const LOG_GROWTH = Math.log(GROWTH);
const BUCKETS = 360;

export class LatencyHistogram {
  private readonly counts = new Uint32Array(BUCKETS);
  count = 0;
  sum = 0;
  max = 0;

  record(ms: number): void {
    const v = ms > 0 ? ms : 0;
    const i = v <= BASE_MS ? 0 : Math.min(BUCKETS - 1, Math.floor(Math.log(v / BASE_MS) / LOG_GROWTH) + 1);
    this.counts[i]!++;
    this.count++;
    this.sum += v;
    if (v > this.max) this.max = v;
  }

  /** The `q` quantile (0..1) in ms: the upper bound of its bucket, capped at the largest value seen; 0 when empty. */
  quantile(q: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return Math.min(this.max, i === 0 ? BASE_MS : BASE_MS * GROWTH ** i);
    }
    return this.max;
  }

  reset(): void {
    if (this.count === 0) return;
    this.counts.fill(0);
    this.count = 0;
    this.sum = 0;
    this.max = 0;
  }
}
