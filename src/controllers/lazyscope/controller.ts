// The lazy-scope controller: the thin loop around the pure step. It runs on the elected
// leader only. Calls come in two lanes: the hub's access-log entries (pushed in by the pilot's
// access-log sink as they arrive: an edge is learned within a tick) and, every evaluation
// interval of a LazyScope, Prometheus (`istio_requests_total{reporter="source"}`: calls that
// go direct keep their edges alive). Each tick steps the state and writes what changed
// through the ConfigStore: the managed Sidecar (the pilot pushes it to the proxies it selects
// at once) and the WorkloadScope status (edges with first and last use and source, read back
// by the next leader, so a restart or failover loses nothing). Its view of the mesh comes
// through `LazyScopeInputs`, never the pilot's internals.
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Resource } from '../../api/index.ts';
import { LAZY_SCOPE_ANNOTATION, LAZY_SCOPE_API_VERSION, MANAGED_BY_LABEL, MANAGED_BY_LAZY_SCOPE } from '../../api/index.ts';
import type { ApplyOp, ConfigStore } from '../../config/index.ts';
import { queryEdges } from './prometheus.ts';
import { edgesOf, forgetWritten, initialState, managedSidecarName, step } from './step.ts';
import type { CallObservation, LazyScopeState, LazyScopeWrite, LazyWorkload } from './step.ts';
import type { ScopeEdge } from '../../api/index.ts';

/** A LazyScope's learning settings, as the loop needs them. */
export interface LazyScopeLearning {
  /** `namespace/name`. */
  key: string;
  accessLog: boolean;
  prometheus: boolean;
  evaluationIntervalMs: number;
  prometheusWindowMs: number;
}

export interface LazyScopeInputs {
  /** The LazyScopes of the config in force. */
  lazyScopes(): readonly LazyScopeLearning[];
  /** The lazy workloads now (selected by a LazyScope), with what the store holds for each. */
  workloads(): readonly LazyWorkload[];
  /** The registry host (FQDN) a call to `host` from `namespace` means, or undefined. */
  resolveHost(host: string, namespace: string): string | undefined;
  /** Changes whenever workloads() may have changed (the snapshot's version, the proxies connected). */
  version(): string;
  /** Where Sidecars and WorkloadScopes are written; undefined while the store is not open. */
  store(): ConfigStore | undefined;
}

export interface LazyScopeControllerOptions extends LazyScopeInputs {
  logger: Logger;
  registry?: Registry;
  /** Prometheus's base URL (`sextant pilot --prometheus`); absent: the access-log lane only. */
  prometheusUrl?: string;
  /** The loop's resolution (default 100 ms). */
  tickMs?: number;
  /** Status rewrites for moved last-use times at most this often (default 30 s). */
  statusEveryMs?: number;
  now?: () => number;
}

/** Distinct caller → host pairs waiting for the next tick at most; more are dropped (counted) until it runs. */
export const MAX_PENDING_OBSERVATIONS = 100_000;

export interface LazyScopeDebug {
  running: boolean;
  workloads: { workload: string; lazyScope: string; sidecar: string | null; userSidecar?: string; edges: ScopeEdge[] }[];
}

export class LazyScopeController {
  private readonly o: LazyScopeControllerOptions;
  private readonly log: Logger;
  private readonly now: () => number;
  private state: LazyScopeState = initialState();
  private pending = new Map<string, CallObservation>();
  private readonly nextEvaluation = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private busy = false;
  private lastVersion = '';
  private retry = false;
  private warnedNoPrometheus = false;
  private prometheusFailing = false;
  private lastWorkloads: readonly LazyWorkload[] = [];
  private readonly m: {
    edges: Gauge; learned: Counter; expired: Counter; writes: Counter; promErrors: Counter; dropped: Counter; evaluations: Counter;
  } | undefined;

  constructor(o: LazyScopeControllerOptions) {
    this.o = o;
    this.log = o.logger.child({ component: 'lazy-scope' });
    this.now = o.now ?? Date.now;
    const registers = o.registry === undefined ? undefined : [o.registry];
    const count = (): number => { let n = 0; for (const w of this.state.workloads.values()) n += w.edges.size; return n; };
    this.m = registers === undefined ? undefined : {
      edges: new Gauge({ name: 'sextant_lazyscope_edges', help: 'Learned dependencies of lazy workloads held now (this pilot, while it leads).', registers, collect() { this.set(count()); } }),
      learned: new Counter({ name: 'sextant_lazyscope_edges_learned_total', help: 'Dependencies learned, by the source that saw them first.', labelNames: ['source'], registers }),
      expired: new Counter({ name: 'sextant_lazyscope_edges_expired_total', help: 'Dependencies removed after going unused for the idle time.', registers }),
      writes: new Counter({ name: 'sextant_lazyscope_writes_total', help: 'Writes through the config store, by kind (sidecar, delete-sidecar, status) and outcome.', labelNames: ['kind', 'outcome'], registers }),
      promErrors: new Counter({ name: 'sextant_lazyscope_prometheus_errors_total', help: 'Prometheus evaluations that failed (their LazyScope\'s edges are not aged then).', registers }),
      dropped: new Counter({ name: 'sextant_lazyscope_observations_dropped_total', help: 'Calls not taken because too many distinct ones waited for the next tick.', registers }),
      evaluations: new Counter({ name: 'sextant_lazyscope_evaluations_total', help: 'LazyScope evaluations (Prometheus read and aging).', registers }),
    };
  }

  /** A call seen in an access log (the hub's); ignored while the controller does not run. */
  observe(o: CallObservation): void {
    if (!this.running) return;
    const key = `${o.namespace}/${o.workload}/${o.host}`;
    const prev = this.pending.get(key);
    if (prev !== undefined) {
      if (o.at > prev.at) this.pending.set(key, o);
      return;
    }
    if (this.pending.size >= MAX_PENDING_OBSERVATIONS) {
      this.m?.dropped.inc();
      return;
    }
    this.pending.set(key, o);
  }

  /** Starts the loop (on gaining leadership): the state is rebuilt from the store's WorkloadScopes. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.state = initialState();
    this.pending.clear();
    this.nextEvaluation.clear();
    this.lastVersion = '';
    this.timer = setInterval(() => void this.tick(), this.o.tickMs ?? 100);
    this.timer.unref();
    this.log.info({}, 'lazy-scope controller started');
  }

  /** Stops the loop (on losing leadership or closing); what was written stays in the store. */
  stop(): void {
    if (!this.running) return;
    this.running = false;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.pending.clear();
    this.log.info({}, 'lazy-scope controller stopped');
  }

  get isRunning(): boolean {
    return this.running;
  }

  /** Each lazy workload's dependencies as this leader holds them (`/debug/lazyscope`). */
  debug(): LazyScopeDebug {
    return {
      running: this.running,
      workloads: this.lastWorkloads.map((w) => {
        const key = `${w.namespace}/${w.name}`;
        return {
          workload: key, lazyScope: w.lazyScope,
          sidecar: w.userSidecar !== undefined ? null : `${w.namespace}/${managedSidecarName(w.name)}`,
          ...(w.userSidecar !== undefined ? { userSidecar: `${w.namespace}/${w.userSidecar}` } : {}),
          edges: edgesOf(this.state, key),
        };
      }),
    };
  }

  /** One pass (public for tests, which drive time themselves). */
  async tick(): Promise<void> {
    if (!this.running || this.busy) return;
    this.busy = true;
    try {
      await this.pass();
    } catch (err) {
      this.log.error({ err: err instanceof Error ? err.message : String(err) }, 'lazy-scope pass failed; retried at the next tick');
    } finally {
      this.busy = false;
    }
  }

  private async pass(): Promise<void> {
    const now = this.now();
    const store = this.o.store();
    if (store === undefined) return;
    const scopes = this.o.lazyScopes();
    const evaluate = new Set<string>();
    const prometheusObs: CallObservation[] = [];
    for (const s of scopes) {
      const at = this.nextEvaluation.get(s.key);
      if (at === undefined) {
        // the first evaluation one interval after start: Prometheus and the access logs get a chance first
        this.nextEvaluation.set(s.key, now + s.evaluationIntervalMs);
        continue;
      }
      if (now < at) continue;
      this.nextEvaluation.set(s.key, Math.max(at + s.evaluationIntervalMs, now + s.evaluationIntervalMs / 2));
      this.m?.evaluations.inc();
      if (s.prometheus) {
        if (this.o.prometheusUrl === undefined) {
          if (!this.warnedNoPrometheus) this.log.warn({ lazyScope: s.key }, 'LazyScope learns from Prometheus but the pilot has no --prometheus: edges age by the access-log lane only (calls that go direct do not keep them alive)');
          this.warnedNoPrometheus = true;
        } else {
          try {
            for (const e of await queryEdges(this.o.prometheusUrl, s.prometheusWindowMs)) prometheusObs.push({ namespace: e.namespace, workload: e.workload, host: e.service, at: now, source: 'prometheus' });
            if (this.prometheusFailing) this.log.info({ prometheus: this.o.prometheusUrl }, 'Prometheus answers again');
            this.prometheusFailing = false;
          } catch (err) {
            this.m?.promErrors.inc();
            if (!this.prometheusFailing) this.log.warn({ lazyScope: s.key, err: err instanceof Error ? err.message : String(err) }, 'Prometheus evaluation failed: edges are not aged until it answers');
            this.prometheusFailing = true;
            continue; // no aging without the source that keeps direct calls alive
          }
        }
      }
      evaluate.add(s.key);
    }
    const observations = [...this.pending.values(), ...prometheusObs];
    this.pending = new Map();
    const version = this.o.version();
    if (observations.length === 0 && evaluate.size === 0 && version === this.lastVersion && !this.retry) return;
    this.lastVersion = version;
    this.retry = false;
    const workloads = this.o.workloads();
    this.lastWorkloads = workloads;
    const accessLogScopes = new Set(scopes.filter((s) => s.accessLog).map((s) => s.key));
    const byWorkload = new Map(workloads.map((w) => [`${w.namespace}/${w.name}`, w.lazyScope]));
    // access-log calls count for workloads whose LazyScope learns from them
    const taken = observations.filter((o) => o.source !== 'access-log' || accessLogScopes.has(byWorkload.get(`${o.namespace}/${o.workload}`) ?? ''));
    const result = step(this.state, taken, { workloads, resolveHost: (h, ns) => this.o.resolveHost(h, ns), evaluate, ...(this.o.statusEveryMs !== undefined ? { statusEveryMs: this.o.statusEveryMs } : {}) }, now);
    this.state = result.state;
    for (const a of result.added) {
      this.m?.learned.inc({ source: a.source });
      this.log.info({ workload: a.workload, host: a.host, source: a.source }, 'dependency learned');
    }
    for (const r of result.removed) {
      this.m?.expired.inc();
      this.log.info({ workload: r.workload, host: r.host }, 'dependency expired');
    }
    await this.write(store, result.writes);
  }

  /** Applies the writes, one workload's batch at a time (Sidecar first: it is what proxies wait for). */
  private async write(store: ConfigStore, writes: readonly LazyScopeWrite[]): Promise<void> {
    const order = (w: LazyScopeWrite): number => (w.kind === 'status' ? 1 : 0);
    for (const w of [...writes].sort((a, b) => order(a) - order(b))) {
      try {
        const ops = await this.opsFor(store, w);
        if (ops.length > 0) await store.apply(ops);
        this.m?.writes.inc({ kind: w.kind, outcome: ops.length > 0 ? 'written' : 'skipped' });
      } catch (err) {
        this.m?.writes.inc({ kind: w.kind, outcome: 'failed' });
        this.log.warn({ workload: w.workload, kind: w.kind, err: err instanceof Error ? err.message : String(err) }, 'lazy-scope write failed; retried at the next tick');
        this.state = forgetWritten(this.state, w.workload, w.kind === 'status' ? 'status' : 'sidecar');
        this.retry = true;
      }
    }
  }

  private async opsFor(store: ConfigStore, w: LazyScopeWrite): Promise<ApplyOp[]> {
    switch (w.kind) {
      case 'sidecar': {
        const current = await store.get('Sidecar', w.namespace, w.sidecar.name);
        if (current !== undefined && current.metadata.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY_LAZY_SCOPE) {
          // a Sidecar of the user's has the managed name: it is theirs, never overwritten
          this.log.warn({ workload: w.workload, sidecar: `${w.namespace}/${w.sidecar.name}` }, 'a Sidecar not managed by lazy scope has the managed name; left as it is');
          return [];
        }
        const resource: Resource = {
          apiVersion: 'networking.istio.io/v1',
          kind: 'Sidecar',
          metadata: {
            name: w.sidecar.name, namespace: w.namespace,
            labels: { [MANAGED_BY_LABEL]: MANAGED_BY_LAZY_SCOPE },
            annotations: { [LAZY_SCOPE_ANNOTATION]: w.sidecar.lazyScope, 'sextant.io/workload': w.name },
          },
          spec: w.sidecar.spec,
        };
        return [{ op: 'put', resource, ifMatch: current?.metadata.resourceVersion }];
      }
      case 'delete-sidecar': {
        const current = await store.get('Sidecar', w.namespace, w.sidecarName);
        if (current === undefined || current.metadata.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY_LAZY_SCOPE) return [];
        return [{ op: 'delete', kind: 'Sidecar', namespace: w.namespace, name: w.sidecarName, ifMatch: current.metadata.resourceVersion }];
      }
      case 'status': {
        const current = await store.get('WorkloadScope', w.namespace, w.name);
        if (current === undefined) {
          const resource: Resource = {
            apiVersion: LAZY_SCOPE_API_VERSION, kind: 'WorkloadScope',
            metadata: { name: w.name, namespace: w.namespace, labels: { [MANAGED_BY_LABEL]: MANAGED_BY_LAZY_SCOPE } },
            spec: { workloadSelector: { labels: { ...w.selector } } },
            status: w.status,
          };
          return [{ op: 'put', resource }];
        }
        return [{ op: 'put', resource: { ...current, status: w.status }, ifMatch: current.metadata.resourceVersion }];
      }
    }
  }
}
