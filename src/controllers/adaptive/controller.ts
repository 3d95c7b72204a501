// The adaptive-limits controller: the thin loop around the pure step. It runs on the elected
// leader only; every rule interval it reads what the sidecars reported over LRS, steps the
// rule's PID loop, splits the budget over the service's healthy instances, publishes the limits
// that moved past the deadband to the RTDS source (no snapshot is rebuilt, no cluster touched),
// and writes the rule's status back through the ConfigStore every few seconds. Its view of the
// mesh comes through the `AdaptiveInputs` interface, never the pilot's internals.
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { AdaptiveLimitSettings, Resource } from '../../api/index.ts';
import type { ConfigStore } from '../../config/index.ts';
import { splitBudget, withDeadband } from './budget.ts';
import { LoadLedger, observation, type ClusterSample, type InstanceTick } from './observe.ts';
import { initialState, step, type Observation, type PidState, type StepReason } from './step.ts';

/** One rule as the controller needs it: the pilot's snapshot supplies these. */
export interface AdaptiveRuleInput {
  /** `AdaptiveLimit/namespace/name`. */
  key: string;
  /** `namespace/name`. */
  id: string;
  namespace: string;
  name: string;
  settings: AdaptiveLimitSettings;
  /** The service's endpoints (address and workload port); only healthy ones share the budget. */
  instances: readonly { address: string; port: number; healthy: boolean }[];
  /** The rule's status as last stored (a new leader resumes from its checkpoint). */
  status: unknown;
}

/** One published limit (the RTDS generator's input). */
export interface PublishedLimit {
  port: number;
  limit: number;
  rule: string;
  leaseMs: number;
  expiresAt: number;
}

export interface AdaptiveInputs {
  /** The rules of the snapshot being served. */
  rules(): readonly AdaptiveRuleInput[];
  /**
   * Replaces the limits served over RTDS (by instance address). `moved` is false when only the
   * entries' expiry moved (each tick re-vouches for them): nothing needs sending then.
   */
  publish(byAddress: ReadonlyMap<string, readonly PublishedLimit[]>, moved: boolean): void;
  /** Where status is written; undefined while the store is not open. */
  store(): ConfigStore | undefined;
}

export interface AdaptiveControllerOptions extends AdaptiveInputs {
  logger: Logger;
  /** Where the controller's metrics register (the pilot's registry). */
  registry?: Registry;
  /** Status is written at most this often per rule (default 5 s), and when the mode or a limit moves. */
  statusEveryMs?: number;
  /** The loop's resolution (default 100 ms): rule intervals are rounded up to it. */
  resolutionMs?: number;
  now?: () => number;
}

/** The rule's status (`status` of the AdaptiveLimit resource, and `/debug/limits`). */
export interface AdaptiveLimitStatus {
  mode: 'enforce' | 'shadow';
  setpoint: { latencyMs: number; percentile: number; errorRate: number };
  measured: { latencyMs: number | null; errorRate: number | null; samples: number; reportingInstances: number; healthyInstances: number; shedEnforced: number; shedShadow: number; at: string | null };
  /** C, the service's admitted-concurrency budget. */
  budget: number;
  /** Per instance (`address:port`), the limit in force; at most 256 listed. */
  limits: { instance: string; limit: number }[];
  instances: number;
  reason: StepReason;
  lastPush: string | null;
  lease: { ttlSeconds: number; expiresAt: string | null };
  /** The loop's state, so a new leader resumes without a jump. */
  checkpoint: { budget: number; instances: number; pv: number | null; e1: number; e2: number; at: string };
  /** The service the rule names has no ServiceEntry (nothing is limited). */
  serviceMissing?: true;
}

const MAX_LISTED_LIMITS = 256;
/**
 * How long a due tick waits for the next load report before stepping without one: sidecars
 * report every second (the interval the LRS server asks for), which may be slower than a
 * rule's interval; the loop steps on fresh data, and counts silence only past this.
 */
export const REPORT_WAIT_MS = 2500;
const MAX_LIMIT_SERIES = 2000;

interface RuleRun {
  input: AdaptiveRuleInput;
  pid: PidState;
  /** `address|port` → limit in force. */
  inForce: Map<string, number>;
  lapsed: boolean;
  nextTickAt: number;
  lastTickAt: number;
  lastPushAt: number | undefined;
  lastObservation: Observation | undefined;
  lastErrorRate: number | undefined;
  shedEnforced: number;
  shedShadow: number;
  measuredAt: number | undefined;
  status: AdaptiveLimitStatus | undefined;
  statusWrittenAt: number;
  statusWritten: string;
  writing: boolean;
}

const r2 = (x: number): number => Math.round(x * 100) / 100;

export class AdaptiveController {
  private readonly o: AdaptiveControllerOptions;
  private readonly ledger = new LoadLedger();
  private readonly runs = new Map<string, RuleRun>();
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private readonly log: Logger;
  private readonly m: {
    limit: Gauge; budget: Gauge; setpoint: Gauge; pv: Gauge; pushes: Counter; lapses: Counter; shed: Counter; ticks: Counter; statusWrites: Counter;
  } | undefined;
  private limitSeries = new Set<string>();

  constructor(o: AdaptiveControllerOptions) {
    this.o = o;
    this.now = o.now ?? Date.now;
    this.log = o.logger.child({ component: 'adaptive-limits' });
    const registers = o.registry === undefined ? undefined : [o.registry];
    this.m = registers === undefined ? undefined : {
      limit: new Gauge({ name: 'sextant_adaptive_limit', help: 'Admitted concurrency pushed to an instance (rule, instance address:port).', labelNames: ['rule', 'instance'], registers }),
      budget: new Gauge({ name: 'sextant_adaptive_budget', help: 'The service budget C of an adaptive limit (sum of its instances\' limits).', labelNames: ['rule'], registers }),
      setpoint: new Gauge({ name: 'sextant_adaptive_setpoint_ms', help: 'The latency target of an adaptive limit.', labelNames: ['rule'], registers }),
      pv: new Gauge({ name: 'sextant_adaptive_pv_ms', help: 'The measured (smoothed) latency at the rule\'s percentile.', labelNames: ['rule'], registers }),
      pushes: new Counter({ name: 'sextant_adaptive_pushes_total', help: 'Limit changes published to the sidecars (past the deadband).', labelNames: ['rule'], registers }),
      lapses: new Counter({ name: 'sextant_adaptive_lapses_total', help: 'Times a rule\'s limits were withdrawn for stale telemetry (the fail-safe then holds).', labelNames: ['rule'], registers }),
      shed: new Counter({ name: 'sextant_adaptive_shed_total', help: 'Requests shed by the gates, as the sidecars reported (mode enforce: refused; shadow: would have been).', labelNames: ['rule', 'mode'], registers }),
      ticks: new Counter({ name: 'sextant_adaptive_ticks_total', help: 'Controller steps, by the reason the step ended with.', labelNames: ['reason'], registers }),
      statusWrites: new Counter({ name: 'sextant_adaptive_status_writes_total', help: 'Rule status writes through the config store, by outcome.', labelNames: ['outcome'], registers }),
    };
  }

  /** Folds in a proxy's load report (LRS); ignored while the controller does not run. */
  observe(addresses: readonly string[], receivedAt: number, clusters: readonly ClusterSample[]): void {
    if (!this.running) return;
    this.ledger.add(addresses, receivedAt, clusters);
  }

  /** Starts the loop (on gaining leadership). */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.ledger.clear();
    this.runs.clear();
    const every = this.o.resolutionMs ?? 100;
    this.timer = setInterval(() => this.tick(), every);
    this.timer.unref();
    this.log.info({}, 'adaptive limits controller started');
  }

  /** Stops the loop and withdraws every limit (on losing leadership or closing). */
  stop(): void {
    if (!this.running) return;
    this.running = false;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.runs.clear();
    this.ledger.clear();
    this.o.publish(new Map(), true);
    for (const key of [...this.limitSeries]) {
      const [rule, id] = JSON.parse(key) as [string, string];
      this.dropSeries(rule, id);
    }
    this.log.info({}, 'adaptive limits controller stopped; limits withdrawn');
  }

  get isRunning(): boolean {
    return this.running;
  }

  /** Every rule's status now (`/debug/limits`). */
  debug(): { running: boolean; rules: Record<string, AdaptiveLimitStatus | { pending: true }>; trackedInstances: number } {
    const rules: Record<string, AdaptiveLimitStatus | { pending: true }> = {};
    for (const [id, run] of this.runs) rules[id] = run.status ?? { pending: true };
    return { running: this.running, rules, trackedInstances: this.ledger.size };
  }

  /** One pass: every rule whose interval is due steps (public for tests, which drive time themselves). */
  tick(): void {
    if (!this.running) return;
    const now = this.now();
    const inputs = this.o.rules();
    const seen = new Set<string>();
    let moved = false;
    let held = false;
    for (const input of inputs) {
      seen.add(input.id);
      let run = this.runs.get(input.id);
      if (run !== undefined && JSON.stringify(run.input.settings) !== JSON.stringify(input.settings)) {
        // The rule changed (e.g. shadow → enforce): its loop starts over from the initial limit,
        // not from what it learnt under the old settings.
        this.log.info({ rule: input.id }, 'rule changed: its loop starts over');
        run = this.newRun({ ...input, status: undefined }, now);
        this.runs.set(input.id, run);
        for (const k of this.limitSeriesOf(input.id)) this.dropSeries(input.id, k);
        moved = true;
      }
      if (run === undefined) {
        run = this.newRun(input, now);
        this.runs.set(input.id, run);
        moved = true;
      }
      run.input = input;
      if (now < run.nextTickAt) continue;
      held = true;
      if (this.stepRule(run, now)) moved = true;
    }
    for (const [id, run] of this.runs) {
      if (seen.has(id)) continue;
      this.runs.delete(id);
      for (const k of run.inForce.keys()) this.dropSeries(id, k);
      this.m?.budget.remove(id);
      this.m?.setpoint.remove(id);
      this.m?.pv.remove(id);
      moved = true;
    }
    if (moved || held) this.publish(moved);
    this.ledger.prune(now - 60_000);
  }

  private newRun(input: AdaptiveRuleInput, now: number): RuleRun {
    const healthy = input.instances.filter((i) => i.healthy).length;
    let pid = initialState(input.settings, healthy);
    const cp = checkpointOf(input.status, input.settings);
    // A checkpoint younger than the lease is what the proxies still hold: resume from it.
    if (cp !== undefined && now - cp.at <= input.settings.leaseMs) {
      pid = { ...pid, budget: cp.budget, instances: cp.instances, pv: cp.pv ?? undefined, e1: cp.e1, e2: cp.e2 };
      this.log.info({ rule: input.id, budget: cp.budget }, 'resumed from the rule\'s checkpoint');
    }
    // The starting limits go out at once: a proxy must not keep enforcing what an older loop pushed
    // while this one waits for its first reports.
    const healthyIds = [...new Set(input.instances.filter((i) => i.healthy).map((i) => `${i.address}|${i.port}`))];
    const inForce = splitBudget(pid.budget, healthyIds.map((id) => ({ id, goodput: 0 })), input.settings.floor, input.settings.ceiling);
    return {
      input, pid, inForce, lapsed: false, nextTickAt: now, lastTickAt: now - input.settings.intervalMs, lastPushAt: inForce.size > 0 ? now : undefined,
      lastObservation: undefined, lastErrorRate: undefined, shedEnforced: 0, shedShadow: 0, measuredAt: undefined, status: undefined,
      statusWrittenAt: 0, statusWritten: '', writing: false,
    };
  }

  /** Steps one rule; true when its limits in force changed (a push). */
  private stepRule(run: RuleRun, now: number): boolean {
    const { input } = run;
    const s = input.settings;
    const intervalMs = s.intervalMs;
    let fresh = false;
    let lastReport = -Infinity;
    for (const i of input.instances) {
      const id = `${i.address}|${i.port}`;
      if (this.ledger.has(id)) fresh = true;
      lastReport = Math.max(lastReport, this.ledger.lastReportAt(id) ?? -Infinity);
    }
    if (!fresh && now - lastReport < REPORT_WAIT_MS) {
      run.nextTickAt = now + (this.o.resolutionMs ?? 100);
      return false;
    }
    run.nextTickAt = Math.max(run.nextTickAt + intervalMs, now + intervalMs / 2);
    const elapsedMs = Math.max(1, now - run.lastTickAt);
    run.lastTickAt = now;
    const ticks: (InstanceTick & { id: string })[] = [];
    const seenIds = new Set<string>();
    for (const i of input.instances) {
      const id = `${i.address}|${i.port}`;
      if (seenIds.has(id)) continue;
      seenIds.add(id);
      ticks.push({ id, healthy: i.healthy, load: this.ledger.take(id) });
    }
    let shedEnforced = 0;
    let shedShadow = 0;
    for (const t of ticks) {
      shedEnforced += t.load?.dropped ?? 0;
      shedShadow += t.load?.shadowShed ?? 0;
    }
    run.shedEnforced = shedEnforced;
    run.shedShadow = shedShadow;
    if (shedEnforced > 0) this.m?.shed.inc({ rule: input.id, mode: 'enforce' }, shedEnforced);
    if (shedShadow > 0) this.m?.shed.inc({ rule: input.id, mode: 'shadow' }, shedShadow);
    const obs = observation(ticks, s.percentile, run.pid.budget);
    const result = step(run.pid, obs, s);
    run.pid = result.state;
    run.lastObservation = obs;
    run.lastErrorRate = obs.finished > 0 ? obs.errors / obs.finished : undefined;
    if (obs.reporting > 0) run.measuredAt = now;
    this.m?.ticks.inc({ reason: result.state.reason });

    let next: Map<string, number>;
    if (result.lapse || input.instances.length === 0) {
      if (!run.lapsed && run.inForce.size > 0) {
        this.m?.lapses.inc({ rule: input.id });
        this.log.warn({ rule: input.id, staleTicks: result.state.staleTicks }, 'no load reports: limits withdrawn, the fail-safe holds');
      }
      run.lapsed = true;
      next = new Map();
    } else {
      run.lapsed = false;
      const healthy = ticks.filter((t) => t.healthy).map((t) => ({ id: t.id, goodput: ((t.load?.successful ?? 0) * 1000) / elapsedMs }));
      next = withDeadband(run.inForce, splitBudget(result.budget, healthy, s.floor, s.ceiling), s.deadband);
    }
    const changed = !sameLimits(run.inForce, next);
    if (changed) {
      for (const k of run.inForce.keys()) if (!next.has(k)) this.dropSeries(input.id, k);
      run.inForce = next;
      run.lastPushAt = now;
      this.m?.pushes.inc({ rule: input.id });
    }
    for (const [k, v] of run.inForce) this.setSeries(input.id, k, v);
    this.m?.budget.set({ rule: input.id }, r2(result.budget));
    this.m?.setpoint.set({ rule: input.id }, s.latencyTargetMs);
    if (result.state.pv !== undefined) this.m?.pv.set({ rule: input.id }, r2(result.state.pv));
    run.status = this.statusOf(run, now);
    this.writeStatus(run, now, changed);
    return changed;
  }

  private publish(moved: boolean): void {
    const byAddress = new Map<string, PublishedLimit[]>();
    for (const run of this.runs.values()) {
      const s = run.input.settings;
      for (const [id, limit] of run.inForce) {
        const bar = id.lastIndexOf('|');
        const address = id.slice(0, bar);
        const port = Number(id.slice(bar + 1));
        let list = byAddress.get(address);
        if (list === undefined) byAddress.set(address, (list = []));
        list.push({ port, limit, rule: run.input.id, leaseMs: s.leaseMs, expiresAt: run.lastTickAt + s.leaseMs });
      }
    }
    this.o.publish(byAddress, moved);
  }

  private statusOf(run: RuleRun, now: number): AdaptiveLimitStatus {
    const s = run.input.settings;
    const obs = run.lastObservation;
    const limits = [...run.inForce].slice(0, MAX_LISTED_LIMITS).map(([id, limit]) => ({ instance: id.replace(/\|(\d+)$/, ':$1'), limit }));
    const status: AdaptiveLimitStatus = {
      mode: s.enforce ? 'enforce' : 'shadow',
      setpoint: { latencyMs: s.latencyTargetMs, percentile: s.percentile, errorRate: s.errorRate },
      measured: {
        latencyMs: run.pid.pv === undefined ? null : r2(run.pid.pv),
        errorRate: run.lastErrorRate === undefined ? null : r2(run.lastErrorRate * 10_000) / 10_000,
        samples: obs?.samples ?? 0,
        reportingInstances: obs?.reporting ?? 0,
        healthyInstances: obs?.instances ?? 0,
        shedEnforced: run.shedEnforced,
        shedShadow: run.shedShadow,
        at: run.measuredAt === undefined ? null : new Date(run.measuredAt).toISOString(),
      },
      budget: r2(run.pid.budget),
      limits,
      instances: run.inForce.size,
      reason: run.pid.reason,
      lastPush: run.lastPushAt === undefined ? null : new Date(run.lastPushAt).toISOString(),
      lease: { ttlSeconds: s.leaseMs / 1000, expiresAt: run.inForce.size === 0 ? null : new Date(run.lastTickAt + s.leaseMs).toISOString() },
      checkpoint: { budget: r2(run.pid.budget), instances: run.pid.instances, pv: run.pid.pv === undefined ? null : r2(run.pid.pv), e1: r2(run.pid.e1 * 100) / 100, e2: r2(run.pid.e2 * 100) / 100, at: new Date(now).toISOString() },
    };
    if (run.input.instances.length === 0) status.serviceMissing = true;
    return status;
  }

  /**
   * Writes the status through the store when it is due (every statusEveryMs) or the limits
   * moved, with the resource's version as a precondition: a concurrent edit of the rule wins,
   * and the status follows at the next write. One write per rule at a time.
   */
  private writeStatus(run: RuleRun, now: number, limitsMoved: boolean): void {
    const store = this.o.store();
    if (store === undefined || run.writing || run.status === undefined) return;
    const every = this.o.statusEveryMs ?? 5000;
    if (now - run.statusWrittenAt < every && !(limitsMoved && now - run.statusWrittenAt >= Math.min(every, 1000))) return;
    const { checkpoint: _c, measured: _m, ...stable } = run.status;
    const fingerprint = JSON.stringify(stable);
    if (fingerprint === run.statusWritten && now - run.statusWrittenAt < 6 * every) return;
    run.writing = true;
    run.statusWrittenAt = now;
    const status = run.status;
    const { namespace, name } = run.input;
    void (async () => {
      const current = await store.get('AdaptiveLimit', namespace, name);
      if (current === undefined) return 'gone';
      const next: Resource = { ...current, status };
      await store.apply([{ op: 'put', resource: next, ifMatch: current.metadata.resourceVersion }]);
      run.statusWritten = fingerprint;
      return 'written';
    })().then((outcome) => this.m?.statusWrites.inc({ outcome }), (err: unknown) => {
      this.m?.statusWrites.inc({ outcome: 'failed' });
      this.log.warn({ rule: run.input.id, err: err instanceof Error ? err.message : String(err) }, 'rule status not written; retried at the next interval');
      run.statusWrittenAt = 0;
    }).finally(() => {
      run.writing = false;
    });
  }

  private limitSeriesOf(rule: string): string[] {
    const out: string[] = [];
    for (const key of this.limitSeries) {
      const [r, id] = JSON.parse(key) as [string, string];
      if (r === rule) out.push(id);
    }
    return out;
  }

  private setSeries(rule: string, id: string, v: number): void {
    if (this.m === undefined) return;
    const key = JSON.stringify([rule, id]);
    if (!this.limitSeries.has(key)) {
      if (this.limitSeries.size >= MAX_LIMIT_SERIES) return;
      this.limitSeries.add(key);
    }
    this.m.limit.set({ rule, instance: id.replace(/\|(\d+)$/, ':$1') }, v);
  }

  private dropSeries(rule: string, id: string): void {
    const key = JSON.stringify([rule, id]);
    if (!this.limitSeries.delete(key)) return;
    this.m?.limit.remove({ rule, instance: id.replace(/\|(\d+)$/, ':$1') });
  }
}

function sameLimits(a: ReadonlyMap<string, number>, b: ReadonlyMap<string, number>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

/** The checkpoint of a stored status, when it is well-formed and within the rule's bounds. */
function checkpointOf(status: unknown, s: AdaptiveLimitSettings): { budget: number; instances: number; pv: number | null; e1: number; e2: number; at: number } | undefined {
  const cp = (status as { checkpoint?: Record<string, unknown> } | null | undefined)?.checkpoint;
  if (cp === undefined || cp === null || typeof cp !== 'object') return undefined;
  const { budget, instances, pv, e1, e2, at } = cp;
  const t = typeof at === 'string' ? Date.parse(at) : NaN;
  if (typeof budget !== 'number' || typeof instances !== 'number' || !(instances >= 1) || typeof e1 !== 'number' || typeof e2 !== 'number' || Number.isNaN(t)) return undefined;
  if (!(budget >= s.floor * instances && budget <= s.ceiling * instances)) return undefined;
  return { budget, instances, pv: typeof pv === 'number' ? pv : null, e1, e2, at: t };
}
