// The sidecar's table of recent inbound requests: trace id → the lane (and first data centre)
// the request came in with, so an outbound call that carries only a trace id is put back in its
// lane. Bounded (least recently written entries go first) and expiring (an entry older than its
// TTL is never read); both bounds come from the LaneGroups.

/** What an inbound request told the sidecar, kept under each of its trace ids. */
export interface LaneContext {
  /** The lane the request is in (never the baseline: baseline requests are not recorded). */
  readonly lane: string | undefined;
  /** The data centre of the request's first hop (`x-sextant-origin-dc`), when known. */
  readonly originDc: string | undefined;
}

interface Entry {
  ctx: LaneContext;
  expires: number;
}

export class TraceTable {
  // A Map iterates in insertion order; a write re-inserts, so the first key is the oldest.
  private readonly entries = new Map<string, Entry>();
  private max: number;
  private ttl: number;
  /** Entries dropped to keep the bound (not expiry). */
  evictions = 0;

  constructor(maxEntries: number, ttlMs: number) {
    this.max = Math.max(1, maxEntries);
    this.ttl = Math.max(1, ttlMs);
  }

  get size(): number {
    return this.entries.size;
  }

  get maxEntries(): number {
    return this.max;
  }

  get ttlMs(): number {
    return this.ttl;
  }

  /** New bounds (a config change): an over-full table drops its oldest entries now. */
  resize(maxEntries: number, ttlMs: number): void {
    this.max = Math.max(1, maxEntries);
    this.ttl = Math.max(1, ttlMs);
    this.trim();
  }

  /** Records `ctx` under every key (one request's trace ids share one entry object). */
  record(keys: readonly string[], ctx: LaneContext, now = Date.now()): void {
    if (keys.length === 0) return;
    const e: Entry = { ctx, expires: now + this.ttl };
    for (const k of keys) {
      this.entries.delete(k);
      this.entries.set(k, e);
    }
    this.trim();
  }

  /** The context recorded under `key`, unless it expired. */
  get(key: string, now = Date.now()): LaneContext | undefined {
    const e = this.entries.get(key);
    if (e === undefined) return undefined;
    if (e.expires <= now) {
      this.entries.delete(key);
      return undefined;
    }
    return e.ctx;
  }

  private trim(): void {
    if (this.entries.size <= this.max) return;
    const it = this.entries.keys();
    while (this.entries.size > this.max) {
      const k = it.next();
      if (k.done === true) break;
      this.entries.delete(k.value);
      this.evictions++;
    }
  }
}
