// How the pilots of a mesh share adaptive limits (M22). A proxy reports its load (LRS) to the
// pilot it is connected to, and gets its limit (RTDS) from that pilot; the controller runs on
// the elected leader only. The exchange joins the two: load reports from every pilot reach the
// leader's controller, and the leader's limits reach every pilot.
//
// - In process (`InProcessExchange`): one pilot (a directory store): reports go straight to the
//   controller, limits straight to the RTDS source.
// - Through etcd (`EtcdExchange`): every pilot folds the reports it receives per instance and
//   writes them every `flushEveryMs` to `PREFIX.adaptive/observations/<pilot id>` (one key per
//   pilot, bound to the pilot's lease); every pilot watches those keys and hands each write, once,
//   to its controller (which ignores it unless it runs, i.e. leads). The leader writes its limits
//   to `PREFIX.adaptive/limits` when they moved past the deadband, and re-vouches for them every
//   third of their lease; every pilot (the leader too) serves RTDS from that key. Each entry
//   carries how long it stays valid from the write (not a wall-clock time, so the pilots' clocks
//   need not agree); a pilot that gets no fresh write (leader dead, etcd unreachable) lets the
//   entries expire and its proxies fall back to the fail-safe after the lease, as with one pilot.
// The keys live beside the config prefix, like the election's: the store reads every key under
// PREFIX/ as config, and these are rewritten every second.
import type { IKeyValue, Lease, Namespace, Watcher } from 'etcd3';
import type { Logger } from 'pino';
import type { ClusterSample, PublishedLimit } from '../controllers/adaptive/index.ts';
import { inboundPort } from '../controllers/adaptive/index.ts';
import { NO_LIMITS, type InstanceLimit, type LimitTable } from './gen/runtime.ts';

/** One proxy's load report as the controller reads it. */
export interface ProxyReport {
  addresses: readonly string[];
  /** When it arrived (ms since epoch, on the pilot that hands it over). */
  receivedAt: number;
  clusters: readonly ClusterSample[];
}

export interface AdaptiveExchange {
  readonly kind: 'in-process' | 'etcd';
  /** A load report from a proxy connected to this pilot. */
  report(r: ProxyReport): void;
  /** Every load report of the mesh reaches `listener` once (on every pilot; the controller keeps them while it leads). */
  onReport(listener: (r: ProxyReport) => void): () => void;
  /** The leader's limits (by instance address); `moved`: a limit changed (not only their expiry). */
  publish(byAddress: ReadonlyMap<string, readonly PublishedLimit[]>, moved: boolean): void;
  /** The limits this pilot serves over RTDS now. */
  table(): LimitTable;
  /** Called when the served limits changed: RTDS must regenerate. */
  onChange(listener: () => void): () => void;
  /** For `/debug/limits`. */
  status(): Record<string, unknown>;
  close(): Promise<void>;
}

/** One pilot: reports and limits never leave the process. */
export class InProcessExchange implements AdaptiveExchange {
  readonly kind = 'in-process' as const;
  private current: LimitTable = NO_LIMITS;
  private readonly reportListeners = new Set<(r: ProxyReport) => void>();
  private readonly changeListeners = new Set<() => void>();

  report(r: ProxyReport): void {
    for (const l of this.reportListeners) l(r);
  }

  onReport(listener: (r: ProxyReport) => void): () => void {
    this.reportListeners.add(listener);
    return () => this.reportListeners.delete(listener);
  }

  publish(byAddress: ReadonlyMap<string, readonly PublishedLimit[]>, moved: boolean): void {
    this.current = { byAddress };
    if (moved) for (const l of this.changeListeners) l();
  }

  table(): LimitTable {
    return this.current;
  }

  onChange(listener: () => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  status(): Record<string, unknown> {
    return { kind: this.kind };
  }

  async close(): Promise<void> {
    this.reportListeners.clear();
    this.changeListeners.clear();
  }
}

/** Where the exchange's keys live for a config prefix: `/sextant/config` gives `/sextant/config.adaptive/`. */
export function exchangeKeyPrefix(configPrefix: string): string {
  return `${configPrefix.replace(/\/+$/, '')}.adaptive/`;
}

export interface EtcdExchangeOptions {
  client: Namespace;
  /** The config store's prefix; the keys go beside it (`exchangeKeyPrefix`). */
  configPrefix: string;
  /** This pilot's identity (`--id`): its observations key. */
  identity: string;
  logger: Logger;
  /** How often the folded reports are written (default 500 ms; the sidecars report every second). */
  flushEveryMs?: number;
  /** TTL of the lease the pilot's keys are bound to (default 5 s): a dead pilot's keys vanish after it. */
  leaseTtlSeconds?: number;
  /** Instances (address set × inbound cluster) in one observations write; the rest wait for the next (default 4,000). */
  maxInstancesPerWrite?: number;
  now?: () => number;
}

/** One instance's folded reports, as written (short names: the value is rewritten every flush). */
interface WireObservation {
  /** The proxy's addresses. */
  a: string[];
  /** The cluster (`inbound|PORT||`). */
  c: string;
  /** Milliseconds between the last report and the write. */
  age: number;
  s: number;
  e: number;
  d: number;
  /** Summed load metrics: name → [samples, total]; gauges (`concurrency_max`, `limit_in_effect`) as [1, value]. */
  m: Record<string, [number, number]>;
}

interface WireLimit {
  port: number;
  limit: number;
  rule: string;
  leaseMs: number;
  /** How long the entry holds from the write (the leader's last tick plus the lease, minus now). */
  validMs: number;
}

interface Folded {
  addresses: string[];
  cluster: string;
  lastAt: number;
  successful: number;
  errors: number;
  dropped: number;
  metrics: Map<string, [number, number]>;
  peak: number | undefined;
  limit: number | undefined;
}

/** Every pilot on one etcd: reports and limits go through two kinds of keys (see the file's head). */
export class EtcdExchange implements AdaptiveExchange {
  readonly kind = 'etcd' as const;
  private readonly o: EtcdExchangeOptions;
  private readonly now: () => number;
  private readonly log: Logger;
  private readonly observationsPrefix: string;
  private readonly observationsKey: string;
  private readonly limitsKey: string;
  private readonly pending = new Map<string, Folded>();
  private readonly reportListeners = new Set<(r: ProxyReport) => void>();
  private readonly changeListeners = new Set<() => void>();
  private readonly flushTimer: NodeJS.Timeout;
  private lease: Lease | undefined;
  private watchers: Watcher[] = [];
  private current: LimitTable = NO_LIMITS;
  private closed = false;
  private flushing = false;
  /** The limits write waiting for the one in flight (only the latest matters). */
  private limitsNext: { value: string | undefined } | undefined;
  private limitsWriting = false;
  /** The value this pilot last wrote to the limits key (a stepping-down leader deletes only its own). */
  private limitsWritten: string | undefined;
  private limitsWrittenAt: number | undefined;
  private counters = { observationWrites: 0, observationsRead: 0, instancesDeferred: 0, limitWrites: 0, limitReads: 0, writeErrors: 0 };
  private lastErrorLogAt = 0;

  constructor(o: EtcdExchangeOptions) {
    this.o = o;
    this.now = o.now ?? Date.now;
    this.log = o.logger.child({ component: 'adaptive-exchange' });
    const base = exchangeKeyPrefix(o.configPrefix);
    this.observationsPrefix = `${base}observations/`;
    this.observationsKey = `${this.observationsPrefix}${o.identity}`;
    this.limitsKey = `${base}limits`;
    this.flushTimer = setInterval(() => void this.flush(), o.flushEveryMs ?? 500);
    this.flushTimer.unref();
    this.watch();
  }

  report(r: ProxyReport): void {
    if (this.closed) return;
    const max = this.o.maxInstancesPerWrite ?? 4000;
    for (const c of r.clusters) {
      if (inboundPort(c.cluster) === undefined) continue;
      const key = `${r.addresses.join(',')}|${c.cluster}`;
      let f = this.pending.get(key);
      if (f === undefined) {
        // Bounded: past the cap, reports of new instances are dropped until the next write.
        if (this.pending.size >= 4 * max) continue;
        f = { addresses: [...r.addresses], cluster: c.cluster, lastAt: r.receivedAt, successful: 0, errors: 0, dropped: 0, metrics: new Map(), peak: undefined, limit: undefined };
        this.pending.set(key, f);
      }
      f.lastAt = Math.max(f.lastAt, r.receivedAt);
      f.successful += c.successful;
      f.errors += c.errors;
      f.dropped += c.dropped;
      for (const [name, m] of c.metrics) {
        const v = m.count > 0 ? m.total / m.count : m.total;
        if (name === 'concurrency_max') f.peak = Math.max(f.peak ?? 0, v);
        else if (name === 'limit_in_effect') f.limit = v;
        else {
          const prev = f.metrics.get(name) ?? [0, 0];
          f.metrics.set(name, [prev[0] + m.count, prev[1] + m.total]);
        }
      }
    }
  }

  onReport(listener: (r: ProxyReport) => void): () => void {
    this.reportListeners.add(listener);
    return () => this.reportListeners.delete(listener);
  }

  publish(byAddress: ReadonlyMap<string, readonly PublishedLimit[]>, moved: boolean): void {
    if (this.closed) return;
    const now = this.now();
    let minLease = Infinity;
    const entries: [string, WireLimit[]][] = [];
    for (const [address, list] of byAddress) {
      const out: WireLimit[] = [];
      for (const l of list) {
        minLease = Math.min(minLease, l.leaseMs);
        out.push({ port: l.port, limit: l.limit, rule: l.rule, leaseMs: l.leaseMs, validMs: Math.max(0, l.expiresAt - now) });
      }
      entries.push([address, out]);
    }
    if (entries.length === 0) {
      // Withdrawn (lapse, no rule, or this pilot stops leading): delete the key if it is still ours.
      if (!moved && this.limitsWritten === undefined) return;
      this.queueLimits(undefined);
      return;
    }
    // Unmoved limits are re-vouched for every third of the shortest lease, so the entries' validity
    // on the other pilots never runs out while this leader ticks.
    if (!moved && this.limitsWrittenAt !== undefined && now - this.limitsWrittenAt < Math.max(250, minLease / 3)) return;
    this.limitsWrittenAt = now;
    this.queueLimits(JSON.stringify({ leader: this.o.identity, limits: entries }));
  }

  table(): LimitTable {
    return this.current;
  }

  onChange(listener: () => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  status(): Record<string, unknown> {
    return {
      kind: this.kind,
      observationsKey: this.observationsKey,
      limitsKey: this.limitsKey,
      servedInstances: [...this.current.byAddress.values()].reduce((n, l) => n + l.length, 0),
      ...this.counters,
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.flushTimer);
    this.reportListeners.clear();
    this.changeListeners.clear();
    await Promise.all(this.watchers.map((w) => w.cancel().catch(() => undefined)));
    this.watchers = [];
    // Revoking the lease deletes this pilot's keys at once (its observations; its limits if it led).
    const lease = this.lease;
    this.lease = undefined;
    if (lease !== undefined) await withTimeout(lease.revoke(), 2000).catch(() => undefined);
  }

  private leaseNow(): Lease {
    if (this.lease === undefined || this.lease.revoked()) {
      const lease = this.o.client.lease(this.o.leaseTtlSeconds ?? 5);
      lease.on('lost', (err) => {
        if (this.lease === lease) this.lease = undefined;
        this.logError('the exchange lease was lost; a new one is taken at the next write', err);
      });
      this.lease = lease;
    }
    return this.lease;
  }

  private async flush(): Promise<void> {
    if (this.closed || this.flushing || this.pending.size === 0) return;
    this.flushing = true;
    const now = this.now();
    const max = this.o.maxInstancesPerWrite ?? 4000;
    const out: WireObservation[] = [];
    for (const [key, f] of this.pending) {
      if (out.length >= max) break;
      this.pending.delete(key);
      const m: Record<string, [number, number]> = {};
      for (const [name, v] of f.metrics) m[name] = v;
      if (f.peak !== undefined) m['concurrency_max'] = [1, f.peak];
      if (f.limit !== undefined) m['limit_in_effect'] = [1, f.limit];
      out.push({ a: f.addresses, c: f.cluster, age: Math.max(0, now - f.lastAt), s: f.successful, e: f.errors, d: f.dropped, m });
    }
    this.counters.instancesDeferred += this.pending.size;
    try {
      // Each write is a new batch: readers take each revision once (the watch), never re-read a key.
      await this.leaseNow().put(this.observationsKey).value(JSON.stringify({ pilot: this.o.identity, observations: out }));
      this.counters.observationWrites++;
    } catch (err) {
      this.counters.writeErrors++;
      this.logError('load observations not written to etcd (dropped; the controller holds on silence)', err);
    } finally {
      this.flushing = false;
    }
  }

  private queueLimits(value: string | undefined): void {
    this.limitsNext = { value };
    if (!this.limitsWriting) void this.writeLimits();
  }

  private async writeLimits(): Promise<void> {
    this.limitsWriting = true;
    try {
      while (this.limitsNext !== undefined && !this.closed) {
        const { value } = this.limitsNext;
        this.limitsNext = undefined;
        try {
          if (value === undefined) {
            const mine = this.limitsWritten;
            this.limitsWritten = undefined;
            this.limitsWrittenAt = undefined;
            if (mine !== undefined) await this.o.client.if(this.limitsKey, 'Value', '==', mine).then(this.o.client.delete().key(this.limitsKey)).commit();
          } else {
            await this.leaseNow().put(this.limitsKey).value(value);
            this.limitsWritten = value;
            this.counters.limitWrites++;
          }
        } catch (err) {
          this.counters.writeErrors++;
          if (value !== undefined) this.limitsWrittenAt = undefined; // re-vouch at the next tick
          this.logError('adaptive limits not written to etcd; retried at the next tick', err);
        }
      }
    } finally {
      this.limitsWriting = false;
    }
  }

  private watch(): void {
    void this.o.client.watch().prefix(this.observationsPrefix).create().then((w) => {
      if (this.closed) return void w.cancel();
      this.watchers.push(w);
      w.on('put', (kv) => this.readObservations(kv));
      w.on('error', (err) => this.logError('observations watch failed', err));
    }, (err: unknown) => this.logError('observations watch not started', err));
    void this.o.client.watch().key(this.limitsKey).create().then((w) => {
      if (this.closed) return void w.cancel();
      this.watchers.push(w);
      w.on('put', (kv) => this.readLimits(kv));
      w.on('delete', () => this.setTable(NO_LIMITS));
      w.on('error', (err) => this.logError('limits watch failed', err));
    }, (err: unknown) => this.logError('limits watch not started', err));
  }

  private readObservations(kv: IKeyValue): void {
    if (this.closed || this.reportListeners.size === 0) return;
    let parsed: { observations?: unknown };
    try {
      parsed = JSON.parse(kv.value.toString()) as { observations?: unknown };
    } catch {
      this.logError(`unreadable observations at ${kv.key.toString()}`, undefined);
      return;
    }
    if (!Array.isArray(parsed.observations)) return;
    const now = this.now();
    for (const o of parsed.observations as WireObservation[]) {
      if (!Array.isArray(o.a) || typeof o.c !== 'string') continue;
      const metrics = new Map<string, { count: number; total: number }>();
      for (const [name, v] of Object.entries(o.m ?? {})) {
        if (Array.isArray(v) && v.length === 2) metrics.set(name, { count: Number(v[0]) || 0, total: Number(v[1]) || 0 });
      }
      const sample: ClusterSample = { cluster: o.c, successful: Number(o.s) || 0, errors: Number(o.e) || 0, dropped: Number(o.d) || 0, metrics };
      this.counters.observationsRead++;
      const report: ProxyReport = { addresses: o.a.map(String), receivedAt: now - Math.max(0, Number(o.age) || 0), clusters: [sample] };
      for (const l of this.reportListeners) l(report);
    }
  }

  private readLimits(kv: IKeyValue): void {
    let parsed: { limits?: unknown };
    try {
      parsed = JSON.parse(kv.value.toString()) as { limits?: unknown };
    } catch {
      this.logError(`unreadable adaptive limits at ${this.limitsKey}`, undefined);
      return;
    }
    if (!Array.isArray(parsed.limits)) return;
    const now = this.now();
    const byAddress = new Map<string, InstanceLimit[]>();
    for (const entry of parsed.limits as unknown[]) {
      if (!Array.isArray(entry) || typeof entry[0] !== 'string' || !Array.isArray(entry[1])) continue;
      const list: InstanceLimit[] = [];
      for (const l of entry[1] as WireLimit[]) {
        if (!(l.port > 0 && l.limit > 0 && l.leaseMs > 0)) continue;
        // Valid from this pilot's receipt, never longer than the lease.
        list.push({ port: l.port, limit: l.limit, rule: String(l.rule), leaseMs: l.leaseMs, expiresAt: now + Math.min(Math.max(0, l.validMs), l.leaseMs) });
      }
      byAddress.set(entry[0], list);
    }
    this.counters.limitReads++;
    this.setTable({ byAddress });
  }

  /** Replaces the served table; RTDS regenerates when a limit moved or an entry had lapsed (heartbeats alone would not restore it). */
  private setTable(next: LimitTable): void {
    const now = this.now();
    const previous = this.current;
    this.current = next;
    if (sameLimits(previous, next) && !anyLapsed(previous, now)) return;
    for (const l of this.changeListeners) l();
  }

  private logError(msg: string, err: unknown): void {
    const now = this.now();
    if (now - this.lastErrorLogAt < 10_000) return;
    this.lastErrorLogAt = now;
    this.log.warn({ err: err instanceof Error ? err.message : err === undefined ? undefined : String(err) }, msg);
  }
}

function sameLimits(a: LimitTable, b: LimitTable): boolean {
  if (a.byAddress.size !== b.byAddress.size) return false;
  for (const [address, list] of a.byAddress) {
    const other = b.byAddress.get(address);
    if (other === undefined || other.length !== list.length) return false;
    for (let i = 0; i < list.length; i++) {
      const x = list[i]!;
      const y = other[i]!;
      if (x.port !== y.port || x.limit !== y.limit || x.leaseMs !== y.leaseMs || x.rule !== y.rule) return false;
    }
  }
  return true;
}

function anyLapsed(t: LimitTable, now: number): boolean {
  for (const list of t.byAddress.values()) for (const l of list) if (l.expiresAt !== undefined && l.expiresAt <= now) return true;
  return false;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    p.then((v) => { clearTimeout(t); resolve(v); }, (e: unknown) => { clearTimeout(t); reject(e instanceof Error ? e : new Error(String(e))); });
  });
}
