// Token buckets with Envoy's local rate limit semantics (a bucket starts full; every
// `fill_interval` it gains `tokens_per_fill`, capped at `max_tokens`), driven by time instead
// of timers: a bucket catches up on the fills it missed whenever it is looked at. Buckets live
// in a table keyed by their identity (where the filter sits, and the descriptor), so a config
// update that keeps a bucket's identity keeps its balance instead of starting it full again.

/** A bucket's shape, as Envoy's TokenBucket message gives it. */
export interface BucketParams {
  maxTokens: number;
  tokensPerFill: number;
  fillIntervalMs: number;
}

/** One bucket: its tokens and the time of its last fill (ms on the table's clock). */
export class TokenBucket {
  params: BucketParams;
  tokens: number;
  fillTime: number;

  constructor(params: BucketParams, now: number) {
    this.params = params;
    this.tokens = params.maxTokens;
    this.fillTime = now;
  }

  /** Adds the fills due since the last one (whole intervals only, as Envoy's fill timer does). */
  refill(now: number): void {
    const { fillIntervalMs, tokensPerFill, maxTokens } = this.params;
    const elapsed = now - this.fillTime;
    if (elapsed < fillIntervalMs) return;
    const fills = Math.floor(elapsed / fillIntervalMs);
    this.fillTime += fills * fillIntervalMs;
    if (this.tokens < maxTokens) this.tokens = Math.min(maxTokens, this.tokens + fills * tokensPerFill);
  }

  /** Takes one token if there is one. */
  tryConsume(now: number): boolean {
    this.refill(now);
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }

  /** Tokens left now. */
  remaining(now: number): number {
    this.refill(now);
    return this.tokens;
  }

  /** Envoy's x-ratelimit-reset: whole seconds of the fill interval not yet elapsed, truncated. */
  resetSeconds(now: number): number {
    this.refill(now);
    return Math.max(0, Math.trunc(this.params.fillIntervalMs / 1000 - Math.floor((now - this.fillTime) / 1000)));
  }

  /** True when the bucket is full: it is then the same as a new one and may be forgotten. */
  isFull(now: number): boolean {
    this.refill(now);
    return this.tokens >= this.params.maxTokens;
  }

  /**
   * A config update kept this bucket's identity: the balance stays (capped by the new
   * maximum) and so does the fill phase; only the shape changes.
   */
  reshape(params: BucketParams, now: number): void {
    if (sameParams(params, this.params)) return;
    this.refill(now);
    this.params = params;
    if (this.tokens > params.maxTokens) this.tokens = params.maxTokens;
  }
}

function sameParams(a: BucketParams, b: BucketParams): boolean {
  return a.maxTokens === b.maxTokens && a.tokensPerFill === b.tokensPerFill && a.fillIntervalMs === b.fillIntervalMs;
}

/** The table's default bound before it forgets buckets that have filled up again. */
const SWEEP_AT = 4096;

/**
 * Every bucket of the proxy by identity. A bucket is created full the first time its identity
 * is asked for and reshaped (balance kept) when the config gives it new parameters. Memory is
 * bounded by the configs in force: when the table grows past a bound, buckets that are full
 * again are dropped, which changes nothing (a full bucket and a new one behave the same).
 */
export class BucketTable {
  private readonly buckets = new Map<string, TokenBucket>();
  private readonly clock: () => number;
  private readonly bound: number;
  private sweepAt: number;

  constructor(clock: () => number = () => performance.now(), bound = SWEEP_AT) {
    this.clock = clock;
    this.bound = bound;
    this.sweepAt = bound;
  }

  now(): number {
    return this.clock();
  }

  get size(): number {
    return this.buckets.size;
  }

  /** The bucket of `identity`, shaped by `params` (created full, or reshaped keeping its balance). */
  bucket(identity: string, params: BucketParams, now: number = this.clock()): TokenBucket {
    let b = this.buckets.get(identity);
    if (b !== undefined) {
      if (b.params !== params) b.reshape(params, now);
      return b;
    }
    if (this.buckets.size >= this.sweepAt) this.sweep(now);
    b = new TokenBucket(params, now);
    this.buckets.set(identity, b);
    return b;
  }

  /** The bucket of `identity` if it exists (for tests and admin). */
  peek(identity: string): TokenBucket | undefined {
    return this.buckets.get(identity);
  }

  private sweep(now: number): void {
    for (const [k, b] of this.buckets) if (b.isFull(now)) this.buckets.delete(k);
    // Still large: every bucket is in use; let the table grow to twice that before looking again.
    this.sweepAt = Math.max(this.bound, this.buckets.size * 2);
  }
}
