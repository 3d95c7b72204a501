// A discrete-event M/M/c simulator in virtual time, for the adaptive-limits controller's tests
// and the overload benchmark's in-process arms: an upstream with c workers and exponential
// service times behind an unbounded FIFO, which thrashes past its knee (with n requests in it,
// service takes 1 + thrash·max(0, n − c)/c times longer, so throughput falls under overload);
// an admission gate in front of it as the sidecar runs one (a limit, a short priority queue
// with a timeout, a tier-0 reserve, shadow mode); open-loop Poisson arrivals with a rate
// schedule; and a pluggable limiter that sets the gate's limit. Deterministic per seed: no
// wall clock, no timers, one seeded generator.

/** A seeded generator (mulberry32): the same seed gives the same run on every machine. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  exp(mean: number): number {
    return -Math.log(1 - this.next()) * mean;
  }
}

/** A binary min-heap of events by time (ties in insertion order). */
class EventQueue<T> {
  private readonly times: number[] = [];
  private readonly seqs: number[] = [];
  private readonly items: T[] = [];
  private seq = 0;
  get size(): number {
    return this.items.length;
  }
  push(time: number, item: T): void {
    let i = this.items.length;
    this.times.push(time);
    this.seqs.push(this.seq++);
    this.items.push(item);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }
  peekTime(): number {
    return this.times[0] ?? Infinity;
  }
  pop(): { time: number; item: T } | undefined {
    const n = this.items.length;
    if (n === 0) return undefined;
    const out = { time: this.times[0]!, item: this.items[0]! };
    this.swap(0, n - 1);
    this.times.pop();
    this.seqs.pop();
    this.items.pop();
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n - 1 && this.less(l, m)) m = l;
      if (r < n - 1 && this.less(r, m)) m = r;
      if (m === i) break;
      this.swap(i, m);
      i = m;
    }
    return out;
  }
  private less(a: number, b: number): boolean {
    return this.times[a]! < this.times[b]! || (this.times[a] === this.times[b] && this.seqs[a]! < this.seqs[b]!);
  }
  private swap(a: number, b: number): void {
    [this.times[a], this.times[b]] = [this.times[b]!, this.times[a]!];
    [this.seqs[a], this.seqs[b]] = [this.seqs[b]!, this.seqs[a]!];
    [this.items[a], this.items[b]] = [this.items[b]!, this.items[a]!];
  }
}

/** What a limiter sees of the gate when it is told something happened. */
export interface GateView {
  now: number;
  /** Admitted requests not finished yet. */
  inFlight: number;
}

/**
 * Sets the gate's limit. The simulator calls `admitted` and `completed` for every admitted
 * request, and `tick` every `tickMs` of virtual time.
 */
export interface Limiter {
  readonly name: string;
  /** The admitted-concurrency limit in force (Infinity: none). */
  limit(now: number): number;
  admitted?(view: GateView): void;
  /**
   * An admitted request finished: `latencyMs` from its arrival at the gate (queue wait included,
   * what the caller sees), `upstreamMs` from its admission (what the limit acts on).
   */
  completed?(view: GateView, latencyMs: number, upstreamMs: number, error: boolean): void;
  /** The gate shed a request (or, in shadow mode, would have). */
  shed?(view: GateView): void;
  readonly tickMs?: number;
  tick?(view: GateView): void;
}

export interface GateOptions {
  /** Requests that may wait for a slot (0: refuse at once, as Envoy's max_requests does). */
  queueSize: number;
  queueTimeoutMs: number;
  /** Tiers: 0 is the highest; the lowest is tiers − 1. */
  tiers: number;
  /** Share of the limit only tier 0 may use. */
  tier0ReservePercent: number;
  /** False: shadow mode, nothing is refused. */
  enforce: boolean;
}

export interface SimOptions {
  seed: number;
  /** Workers c as a function of virtual time (an admin endpoint changing c at run time). */
  workers: (t: number) => number;
  meanServiceMs: number;
  /** Service slows by 1 + thrash·max(0, n − c)/c with n requests in the upstream. */
  thrash: number;
  /** Offered load (requests per second) as a function of virtual time. */
  rate: (t: number) => number;
  durationMs: number;
  gate: GateOptions;
  limiter: Limiter;
  /** Share of requests in tier 0 (the rest in the lowest tier). */
  tier0Fraction: number;
  /** The client's deadline: a success after it counts as a failure (the upstream keeps working). */
  deadlineMs: number;
  /** Sample the limit every this many ms (default 1000). */
  limitSampleMs?: number;
}

export const OUTCOME = { ok: 0, late: 1, shed: 2 } as const;

/** Every request of a run, in columns (a run holds up to a few million). */
export interface SimResult {
  count: number;
  sentAt: Float64Array;
  latencyMs: Float64Array;
  /** 0 ok (2xx within the deadline), 1 late (finished after it), 2 shed. */
  outcome: Uint8Array;
  tier: Uint8Array;
  /** Would have been shed (shadow mode). */
  wouldShed: Uint8Array;
  /** [t, limit] every limitSampleMs. */
  limits: [number, number][];
  events: number;
}

interface Req {
  id: number;
  arrival: number;
  admittedAt: number;
  tier: number;
  queued: boolean;
  done: boolean;
}

type Ev =
  | { k: 'arrival' }
  | { k: 'complete'; req: Req }
  | { k: 'qtimeout'; req: Req }
  | { k: 'tick' }
  | { k: 'sample' };

/** Runs one simulation to its end and returns every request's fate. */
export function simulate(o: SimOptions): SimResult {
  const rng = new Rng(o.seed);
  const ev = new EventQueue<Ev>();
  const cap = Math.ceil((o.durationMs / 1000) * 6000) + 1024;
  let sentAt = new Float64Array(cap);
  let latencyMs = new Float64Array(cap);
  let outcome = new Uint8Array(cap);
  let tier = new Uint8Array(cap);
  let wouldShed = new Uint8Array(cap);
  let count = 0;
  const grow = (): void => {
    const n = sentAt.length * 2;
    const f = (a: Float64Array<ArrayBuffer>): Float64Array<ArrayBuffer> => { const b = new Float64Array(n); b.set(a); return b; };
    const u = (a: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> => { const b = new Uint8Array(n); b.set(a); return b; };
    sentAt = f(sentAt); latencyMs = f(latencyMs); outcome = u(outcome); tier = u(tier); wouldShed = u(wouldShed);
  };

  // upstream
  let inUpstream = 0;
  let busy = 0;
  const fifo: Req[] = [];
  let fifoHead = 0;
  // gate
  let inFlight = 0;
  const gateQueue: Req[][] = Array.from({ length: o.gate.tiers }, () => []);
  let queued = 0;
  const limits: [number, number][] = [];
  let events = 0;
  const lowest = o.gate.tiers - 1;

  const view = (now: number): GateView => ({ now, inFlight });
  const threshold = (now: number, t: number): number => {
    const l = o.limiter.limit(now);
    if (!Number.isFinite(l)) return Infinity;
    return t === 0 ? l : Math.max(1, Math.floor(l * (1 - o.gate.tier0ReservePercent / 100)));
  };
  const record = (req: Req, out: number, lat: number): void => {
    outcome[req.id] = out;
    latencyMs[req.id] = lat;
    if (out === OUTCOME.shed) o.limiter.shed?.(view(req.arrival + lat));
  };

  const startService = (now: number, req: Req): void => {
    const c = Math.max(1, o.workers(now));
    const slow = 1 + (o.thrash * Math.max(0, inUpstream - c)) / c;
    busy++;
    ev.push(now + rng.exp(o.meanServiceMs) * slow, { k: 'complete', req });
  };
  const toUpstream = (now: number, req: Req): void => {
    inFlight++;
    req.admittedAt = now;
    o.limiter.admitted?.(view(now));
    inUpstream++;
    if (busy < Math.max(1, o.workers(now))) startService(now, req);
    else fifo.push(req);
  };
  const drainFifo = (now: number): void => {
    while (fifoHead < fifo.length && busy < Math.max(1, o.workers(now))) startService(now, fifo[fifoHead++]!);
    if (fifoHead > 4096 && fifoHead * 2 > fifo.length) {
      fifo.splice(0, fifoHead);
      fifoHead = 0;
    }
  };
  const drainGate = (now: number): void => {
    for (let t = 0; t < o.gate.tiers && queued > 0; t++) {
      const q = gateQueue[t]!;
      while (q.length > 0 && inFlight < threshold(now, t)) {
        const req = q.shift()!;
        queued--;
        req.queued = false;
        toUpstream(now, req);
      }
    }
  };

  const arrive = (now: number): void => {
    if (count >= sentAt.length) grow();
    const id = count++;
    const t = rng.next() < o.tier0Fraction ? 0 : lowest;
    sentAt[id] = now;
    tier[id] = t;
    const req: Req = { id, arrival: now, admittedAt: now, tier: t, queued: false, done: false };
    if (inFlight < threshold(now, t)) {
      toUpstream(now, req);
      return;
    }
    if (!o.gate.enforce) {
      wouldShed[id] = 1;
      o.limiter.shed?.(view(now));
      toUpstream(now, req);
      return;
    }
    if (o.gate.queueSize > 0) {
      if (queued >= o.gate.queueSize) {
        // full: a lower tier than the newcomer's gives up its place, else the newcomer is shed
        let victim: Req | undefined;
        for (let v = lowest; v > t; v--) if (gateQueue[v]!.length > 0) { victim = gateQueue[v]!.pop(); break; }
        if (victim === undefined) {
          req.done = true;
          record(req, OUTCOME.shed, 0);
          return;
        }
        queued--;
        victim.queued = false;
        victim.done = true;
        record(victim, OUTCOME.shed, now - victim.arrival);
      }
      req.queued = true;
      gateQueue[t]!.push(req);
      queued++;
      ev.push(now + o.gate.queueTimeoutMs, { k: 'qtimeout', req });
      return;
    }
    req.done = true;
    record(req, OUTCOME.shed, 0);
  };

  let lastWorkers = o.workers(0);
  const nextArrival = (now: number): void => {
    // thinning over a piecewise rate: step in small slices so a schedule change is honoured
    let t = now;
    for (;;) {
      const r = o.rate(t);
      if (r <= 0) { t += 10; if (t > o.durationMs) return; continue; }
      const gap = rng.exp(1000 / r);
      if (gap <= 10) { t += gap; break; }
      t += 10;
      if (t > o.durationMs) return;
    }
    if (t <= o.durationMs) ev.push(t, { k: 'arrival' });
  };
  nextArrival(0);
  if (o.limiter.tickMs !== undefined) ev.push(o.limiter.tickMs, { k: 'tick' });
  ev.push(0, { k: 'sample' });
  const sampleMs = o.limitSampleMs ?? 1000;

  for (;;) {
    const e = ev.pop();
    if (e === undefined) break;
    const now = e.time;
    events++;
    const w = o.workers(now);
    if (w !== lastWorkers) {
      lastWorkers = w;
      drainFifo(now);
    }
    switch (e.item.k) {
      case 'arrival':
        arrive(now);
        nextArrival(now);
        break;
      case 'complete': {
        const req = e.item.req;
        busy--;
        inUpstream--;
        inFlight--;
        const lat = now - req.arrival;
        record(req, lat <= o.deadlineMs ? OUTCOME.ok : OUTCOME.late, lat);
        req.done = true;
        o.limiter.completed?.(view(now), lat, now - req.admittedAt, false);
        drainFifo(now);
        drainGate(now);
        break;
      }
      case 'qtimeout': {
        const req = e.item.req;
        if (!req.queued) break;
        const q = gateQueue[req.tier]!;
        const i = q.indexOf(req);
        if (i >= 0) q.splice(i, 1);
        queued--;
        req.queued = false;
        req.done = true;
        record(req, OUTCOME.shed, now - req.arrival);
        break;
      }
      case 'tick':
        o.limiter.tick?.(view(now));
        drainGate(now);
        if (now + o.limiter.tickMs! <= o.durationMs + 5000) ev.push(now + o.limiter.tickMs!, { k: 'tick' });
        break;
      case 'sample':
        limits.push([now, o.limiter.limit(now)]);
        if (now + sampleMs <= o.durationMs) ev.push(now + sampleMs, { k: 'sample' });
        break;
    }
    // stop once the arrivals are over and everything admitted has finished
    if (now > o.durationMs && inFlight === 0 && queued === 0) break;
  }
  return { count, sentAt: sentAt.subarray(0, count), latencyMs: latencyMs.subarray(0, count), outcome: outcome.subarray(0, count), tier: tier.subarray(0, count), wouldShed: wouldShed.subarray(0, count), limits, events };
}

/** The q-quantile (0..1) of values (sorted in place). */
export function quantile(values: number[] | Float64Array, q: number): number {
  if (values.length === 0) return NaN;
  const a = values instanceof Float64Array ? values : Float64Array.from(values);
  a.sort();
  const i = Math.min(a.length - 1, Math.max(0, Math.ceil(q * a.length) - 1));
  return a[i]!;
}

/** Summary of the requests sent in [fromMs, toMs). */
export interface WindowStats {
  sent: number;
  ok: number;
  late: number;
  shed: number;
  wouldShed: number;
  /** p99 of admitted requests' latency (not shed). */
  admittedP99: number;
  admittedP50: number;
  tier0Sent: number;
  tier0Ok: number;
}

export function windowStats(r: SimResult, fromMs: number, toMs: number): WindowStats {
  const lat: number[] = [];
  const s: WindowStats = { sent: 0, ok: 0, late: 0, shed: 0, wouldShed: 0, admittedP99: NaN, admittedP50: NaN, tier0Sent: 0, tier0Ok: 0 };
  for (let i = 0; i < r.count; i++) {
    const t = r.sentAt[i]!;
    if (t < fromMs || t >= toMs) continue;
    s.sent++;
    const out = r.outcome[i]!;
    if (out === OUTCOME.ok) s.ok++;
    else if (out === OUTCOME.late) s.late++;
    else s.shed++;
    if (r.wouldShed[i] === 1) s.wouldShed++;
    if (out !== OUTCOME.shed) lat.push(r.latencyMs[i]!);
    if (r.tier[i] === 0) {
      s.tier0Sent++;
      if (out === OUTCOME.ok) s.tier0Ok++;
    }
  }
  if (lat.length > 0) {
    const a = Float64Array.from(lat).sort();
    s.admittedP99 = a[Math.min(a.length - 1, Math.ceil(0.99 * a.length) - 1)]!;
    s.admittedP50 = a[Math.min(a.length - 1, Math.ceil(0.5 * a.length) - 1)]!;
  }
  return s;
}
