// The admission gate of one inbound port: a concurrency limit with a short bounded queue,
// priority tiers (the lowest tier is shed first; tier 0 keeps a reserve of the limit), shadow
// mode, and a local reflex that may only lower the limit between controller updates. The
// limit comes from the runtime layer (the controller's leased value, clamped to floor and
// ceiling) or, with no lease held, from the fail-safe. O(1) per request; the clock and the
// timer are injected, so the gate runs in tests without waiting.
import type { AdmissionConfig } from './config.ts';
import { LatencyHistogram } from './histogram.ts';

/** Where the gate reads the controller's limit (RuntimeLayers). */
export interface LimitSource {
  /** The key's whole-number value while its layer's lease holds (the source keeps its own time). */
  integer(key: string): number | undefined;
}

/** A scheduler for the queue's deadline (one timer per gate, armed for the earliest one). */
export interface GateTimers {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

/** An admitted request: return it with `leave` when its response is done. */
export interface AdmissionTicket {
  readonly tier: number;
  /** When the request was admitted (gate clock). */
  readonly admittedAt: number;
}

export type RejectReason = 'overflow' | 'evicted' | 'timeout';

/** The gate's answer: admitted now, refused now, or queued (the promise settles with one of the two). */
export type Admission =
  | { kind: 'admitted'; ticket: AdmissionTicket }
  | { kind: 'rejected'; reason: RejectReason }
  | { kind: 'queued'; settled: Promise<{ kind: 'admitted'; ticket: AdmissionTicket } | { kind: 'rejected'; reason: RejectReason }> };

interface Waiter {
  tier: number;
  deadline: number;
  resolve: (a: { kind: 'admitted'; ticket: AdmissionTicket } | { kind: 'rejected'; reason: RejectReason }) => void;
}

/** What a reporting interval saw (LRS): counts since the last report, and gauges now. */
export interface GateReport {
  cluster: string;
  successful: number;
  errors: number;
  issued: number;
  inProgress: number;
  /** Enforced rejections made at once (overflow, eviction). */
  dropped: number;
  latency: { p50: number; p90: number; p99: number; samples: number };
  concurrencyMax: number;
  /** The limit in force now; 0 = unlimited. */
  limit: number;
  shadowShed: number;
  /** Rejections by tier (drops and queue timeouts). */
  shedByTier: readonly number[];
  intervalMs: number;
}

/** Lifetime counters (the proxy's stats). */
export interface GateCounters {
  admitted: number;
  queued: number;
  rejectedOverflow: number;
  rejectedEvicted: number;
  rejectedTimeout: number;
  shadowRejects: number;
  reflexCuts: number;
}

/** The reflex looks at windows this long, and acts after this many bad ones in a row. */
export const REFLEX_WINDOW_MS = 100;
export const REFLEX_WINDOWS = 3;
/** Each reflex step cuts the limit by this fraction. */
export const REFLEX_STEP = 0.1;
/** A reflex window needs this many samples to judge. */
const REFLEX_MIN_SAMPLES = 5;

const DEFAULT_TIMERS: GateTimers = {
  set: (fn, ms) => { const t = setTimeout(fn, ms); t.unref(); return t; },
  clear: (h) => clearTimeout(h as NodeJS.Timeout),
};

export class AdmissionGate {
  config: AdmissionConfig;
  private readonly source: LimitSource | undefined;
  private readonly clock: () => number;
  private readonly timers: GateTimers;
  /** Requests admitted and not yet done. */
  inflight = 0;
  /** Waiting requests by tier, each FIFO (deadlines ascending). */
  private queues: Waiter[][];
  private queued = 0;
  private timer: unknown = undefined;
  private timerAt = Infinity;
  /** The controller's (or fail-safe) limit last seen, and the reflex's cut below it. */
  private base = Infinity;
  private reflexLimit: number | undefined = undefined;
  private reflexWindow = -1;
  private reflexBad = 0;
  private readonly windowLatency = new LatencyHistogram();
  readonly counters: GateCounters = { admitted: 0, queued: 0, rejectedOverflow: 0, rejectedEvicted: 0, rejectedTimeout: 0, shadowRejects: 0, reflexCuts: 0 };
  // the reporting interval
  private readonly latency = new LatencyHistogram();
  private successful = 0;
  private errors = 0;
  private issued = 0;
  private dropped = 0;
  private shadowShed = 0;
  private concurrencyMax = 0;
  private shedByTier: number[];
  private reportedAt: number;

  constructor(config: AdmissionConfig, source?: LimitSource, clock: () => number = () => performance.now(), timers: GateTimers = DEFAULT_TIMERS) {
    this.config = config;
    this.source = source;
    this.clock = clock;
    this.timers = timers;
    this.queues = Array.from({ length: config.tiers }, () => []);
    this.shedByTier = new Array<number>(config.tiers).fill(0);
    this.reportedAt = clock();
  }

  /** A new config for the same gate (state kept); waiters of tiers that no longer exist move to the lowest tier. */
  reconfigure(config: AdmissionConfig): void {
    if (config === this.config) return;
    const tiers = config.tiers;
    if (tiers !== this.config.tiers) {
      const next: Waiter[][] = Array.from({ length: tiers }, () => []);
      for (let t = 0; t < this.queues.length; t++) for (const w of this.queues[t]!) next[Math.min(t, tiers - 1)]!.push({ ...w, tier: Math.min(t, tiers - 1) });
      for (const q of next) q.sort((a, b) => a.deadline - b.deadline);
      this.queues = next;
      this.shedByTier = Array.from({ length: tiers }, (_, i) => this.shedByTier[i] ?? 0);
    }
    this.config = config;
    this.drain(this.clock());
  }

  /** The tier a header value names: 0..tiers-1, anything else the lowest. */
  tierOf(value: string | undefined): number {
    const last = this.config.tiers - 1;
    if (value === undefined || value.length === 0 || value.length > 3) return last;
    const n = Number(value);
    return Number.isInteger(n) && n >= 0 && n <= last ? n : last;
  }

  /** The limit in force now (Infinity: unlimited). */
  limit(): number {
    const c = this.config;
    const v = this.source?.integer(c.limitRuntimeKey);
    let base: number;
    if (v === undefined) base = c.failSafeLimit === 0 ? Infinity : Math.max(c.failSafeLimit, c.floor);
    else base = Math.max(c.floor, c.ceiling > 0 ? Math.min(v, c.ceiling) : v);
    if (base !== this.base) {
      // A new value from the controller (or the lease lapsed): the reflex's cut was for the old one.
      this.base = base;
      this.reflexLimit = undefined;
      this.reflexBad = 0;
    }
    return this.reflexLimit !== undefined && this.reflexLimit < base ? this.reflexLimit : base;
  }

  /** How many requests of `tier` may be in flight under `limit` (tier 0 keeps the reserve). */
  private threshold(tier: number, limit: number): number {
    if (tier === 0 || limit === Infinity) return limit;
    return limit - Math.ceil((limit * this.config.tier0ReservePercent) / 100);
  }

  /** A request of `tier` arrives. */
  admit(tier: number): Admission {
    const now = this.clock();
    const limit = this.limit();
    this.drain(now, limit);
    const threshold = this.threshold(tier, limit);
    if (!this.config.enforce) {
      // Shadow: everyone goes in; one that the queue could not have held counts as a would-be reject.
      if (this.inflight >= threshold + this.config.queueSize) {
        this.counters.shadowRejects++;
        this.shadowShed++;
      }
      return { kind: 'admitted', ticket: this.enter(tier, now) };
    }
    if (this.inflight < threshold && !this.queuedAtOrAbove(tier)) return { kind: 'admitted', ticket: this.enter(tier, now) };
    if (this.config.queueSize === 0 || this.config.queueTimeoutMs === 0) return this.reject(tier, 'overflow');
    if (this.queued >= this.config.queueSize && !this.evictBelow(tier)) return this.reject(tier, 'overflow');
    this.counters.queued++;
    const settled = new Promise<{ kind: 'admitted'; ticket: AdmissionTicket } | { kind: 'rejected'; reason: RejectReason }>((resolve) => {
      this.queues[tier]!.push({ tier, deadline: now + this.config.queueTimeoutMs, resolve });
    });
    this.queued++;
    this.arm();
    return { kind: 'queued', settled };
  }

  /**
   * An admitted request is done with `status` (0: the caller went away, which counts neither as
   * a success nor an error, and its truncated latency is not a sample).
   */
  leave(ticket: AdmissionTicket, status: number): void {
    const now = this.clock();
    this.inflight--;
    if (status !== 0) {
      const ms = now - ticket.admittedAt;
      if (status >= 500) this.errors++;
      else this.successful++;
      this.latency.record(ms);
      this.observeReflex(now, ms);
    }
    this.drain(now);
  }

  /** The interval's load report (and a new interval begins). */
  report(now: number = this.clock()): GateReport {
    const limit = this.limit();
    const r: GateReport = {
      cluster: this.config.cluster,
      successful: this.successful,
      errors: this.errors,
      issued: this.issued,
      inProgress: this.inflight,
      dropped: this.dropped,
      latency: { p50: this.latency.quantile(0.5), p90: this.latency.quantile(0.9), p99: this.latency.quantile(0.99), samples: this.latency.count },
      concurrencyMax: Math.max(this.concurrencyMax, this.inflight),
      limit: limit === Infinity ? 0 : limit,
      shadowShed: this.shadowShed,
      shedByTier: [...this.shedByTier],
      intervalMs: now - this.reportedAt,
    };
    this.latency.reset();
    this.successful = 0;
    this.errors = 0;
    this.issued = 0;
    this.dropped = 0;
    this.shadowShed = 0;
    this.concurrencyMax = this.inflight;
    this.shedByTier.fill(0);
    this.reportedAt = now;
    return r;
  }

  /** Requests waiting now. */
  get waiting(): number {
    return this.queued;
  }

  /** Rejects every waiter (the gate is going away). */
  close(): void {
    for (let t = 0; t < this.queues.length; t++) for (const w of this.queues[t]!.splice(0)) { this.queued--; this.rejectWaiter(w, 'overflow'); }
    if (this.timer !== undefined) this.timers.clear(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
  }

  private enter(tier: number, now: number): AdmissionTicket {
    this.inflight++;
    this.issued++;
    this.counters.admitted++;
    if (this.inflight > this.concurrencyMax) this.concurrencyMax = this.inflight;
    return { tier, admittedAt: now };
  }

  private reject(tier: number, reason: RejectReason): Admission {
    this.countReject(tier, reason);
    return { kind: 'rejected', reason };
  }

  private countReject(tier: number, reason: RejectReason): void {
    if (reason === 'timeout') { this.counters.rejectedTimeout++; this.errors++; }
    else { this.dropped++; if (reason === 'evicted') this.counters.rejectedEvicted++; else this.counters.rejectedOverflow++; }
    this.shedByTier[tier] = (this.shedByTier[tier] ?? 0) + 1;
  }

  private rejectWaiter(w: Waiter, reason: RejectReason): void {
    this.countReject(w.tier, reason);
    w.resolve({ kind: 'rejected', reason });
  }

  /** True when a request of this tier or a higher priority waits (a newcomer must not overtake it). */
  private queuedAtOrAbove(tier: number): boolean {
    if (this.queued === 0) return false;
    for (let t = 0; t <= tier; t++) if (this.queues[t]!.length > 0) return true;
    return false;
  }

  /** The queue is full: the newest waiter of the lowest tier below `tier` makes room (shed first). */
  private evictBelow(tier: number): boolean {
    for (let t = this.queues.length - 1; t > tier; t--) {
      const q = this.queues[t]!;
      if (q.length === 0) continue;
      const w = q.pop()!;
      this.queued--;
      this.rejectWaiter(w, 'evicted');
      return true;
    }
    return false;
  }

  // Admits waiters, highest priority first, while the limit allows; expires those past their deadline.
  private drain(now: number, limit: number = this.limit()): void {
    if (this.queued === 0) return;
    for (let t = 0; t < this.queues.length; t++) {
      const q = this.queues[t]!;
      while (q.length > 0 && q[0]!.deadline <= now) {
        this.queued--;
        this.rejectWaiter(q.shift()!, 'timeout');
      }
    }
    for (let t = 0; t < this.queues.length && this.queued > 0; t++) {
      const q = this.queues[t]!;
      while (q.length > 0 && this.inflight < this.threshold(t, limit)) {
        const w = q.shift()!;
        this.queued--;
        w.resolve({ kind: 'admitted', ticket: this.enter(t, now) });
      }
      // Lower tiers never go ahead of a higher one still waiting.
      if (q.length > 0) break;
    }
    this.arm();
  }

  // One timer, for the earliest deadline among the queues' heads.
  private arm(): void {
    let next = Infinity;
    for (const q of this.queues) if (q.length > 0 && q[0]!.deadline < next) next = q[0]!.deadline;
    if (next === this.timerAt) return;
    if (this.timer !== undefined) this.timers.clear(this.timer);
    this.timer = undefined;
    this.timerAt = next;
    if (next === Infinity) return;
    this.timer = this.timers.set(() => {
      this.timer = undefined;
      this.timerAt = Infinity;
      this.drain(this.clock());
    }, Math.max(0, next - this.clock()));
  }

  // The local reflex: after REFLEX_WINDOWS windows in a row whose p90 is over the target, cut
  // the limit by REFLEX_STEP, never below the floor nor below (100 - maxCut) % of the base.
  private observeReflex(now: number, ms: number): void {
    const c = this.config;
    if (c.reflexLatencyTargetMs <= 0 || c.reflexMaxCutPercent <= 0 || this.base === Infinity) return;
    const w = Math.floor(now / REFLEX_WINDOW_MS);
    if (w !== this.reflexWindow) {
      if (this.reflexWindow >= 0) {
        const judged = this.windowLatency.count >= REFLEX_MIN_SAMPLES;
        const bad = judged && this.windowLatency.quantile(0.9) > c.reflexLatencyTargetMs;
        // a gap (windows without completions) breaks the run
        this.reflexBad = bad && w === this.reflexWindow + 1 ? this.reflexBad + 1 : bad ? 1 : 0;
        if (this.reflexBad >= REFLEX_WINDOWS) {
          this.reflexBad = 0;
          const current = this.reflexLimit ?? this.base;
          const lowest = Math.max(c.floor, Math.ceil(this.base * (1 - c.reflexMaxCutPercent / 100)));
          const cut = Math.max(lowest, Math.floor(current * (1 - REFLEX_STEP)));
          if (cut < current) {
            this.reflexLimit = cut;
            this.counters.reflexCuts++;
          }
        }
      }
      this.reflexWindow = w;
      this.windowLatency.reset();
    }
    this.windowLatency.record(ms);
  }
}
