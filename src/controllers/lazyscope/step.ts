// The lazy-scope controller's decision, a pure function: step(state, observations, config, now)
// → {state, writes}. Observations are calls a workload was seen making (from the hub's access
// logs, or from Prometheus, which also sees the calls that already go direct); the config is
// the mesh as it is now (the lazy workloads, their LazyScope, what the store holds for them).
// Per workload it keeps edges with first and last use and their source, ages them with
// hysteresis (idle past the LazyScope's idleTimeout → EXPIRING, still unused at a later
// evaluation → removed; a use in between makes them ACTIVE again), and says what to write: the
// managed Sidecar (stable, static and learned hosts) and the WorkloadScope status, only when
// they differ from what was last written. A workload with a Sidecar of its user's is never
// given one (its managed Sidecar, if any, is deleted) and says so in its status.
import type { EdgeSource, IstioEgressListener, ScopeEdge, SidecarSpec, WorkloadScopeSpec } from '../../api/index.ts';

/** Edges one workload keeps at most; calls to further hosts keep going through the fallback. */
export const MAX_EDGES_PER_WORKLOAD = 1000;
/** How often a workload's status is rewritten at most when only last-use times moved. */
export const DEFAULT_STATUS_EVERY_MS = 30_000;

/** A call a workload was seen making. */
export interface CallObservation {
  namespace: string;
  /** The calling workload's name (istio-agent's WORKLOAD_NAME; Istio's `source_workload`). */
  workload: string;
  /** The destination host as seen (FQDN, short name, `host:port`); resolved against the registry. */
  host: string;
  /** When the call was made (ms). */
  at: number;
  source: Exclude<EdgeSource, 'static'>;
}

/** A lazy workload as the mesh describes it now. */
export interface LazyWorkload {
  namespace: string;
  name: string;
  /** The managed Sidecar's workloadSelector. */
  selector: Readonly<Record<string, string>>;
  /** `namespace/name` of the LazyScope that applies. */
  lazyScope: string;
  idleTimeoutMs: number;
  /** Hosts always kept (egress syntax): the LazyScope's stable hosts and its fallback's host. */
  stableHosts: readonly string[];
  /** The WorkloadScope's spec (staticHosts, listener templates); the selector above when none is stored. */
  spec: WorkloadScopeSpec;
  /** A Sidecar the user wrote that selects the workload (it wins; no managed Sidecar is written). */
  userSidecar: string | undefined;
  /** The managed Sidecar's spec as the store holds it now (undefined: none). */
  storedSidecar: SidecarSpec | undefined;
  /** The WorkloadScope's status edges as the store holds them (restored after a restart or failover). */
  storedEdges: readonly ScopeEdge[] | undefined;
  /** Whether a WorkloadScope resource exists for the workload. */
  hasWorkloadScope: boolean;
}

export interface StepConfig {
  workloads: readonly LazyWorkload[];
  /** The registry host (FQDN) a call to `host` from `namespace` means, or undefined when the registry has none. */
  resolveHost(host: string, namespace: string): string | undefined;
  /** LazyScopes (`namespace/name`) whose evaluation is due now: their workloads' edges are aged. */
  evaluate: ReadonlySet<string>;
  /** Status rewrites for moved last-use times at most this often (default 30 s). */
  statusEveryMs?: number;
}

interface Edge {
  host: string;
  source: EdgeSource;
  firstSeen: number;
  lastSeen: number;
  lastSource: EdgeSource;
  expiringSince: number | undefined;
}

interface WorkloadState {
  edges: Map<string, Edge>;
  /** Fingerprints of what was last written (or found in the store). */
  sidecarWritten: string | undefined;
  statusWritten: string | undefined;
  statusWrittenAt: number;
  /** Calls not kept because the workload reached MAX_EDGES_PER_WORKLOAD. */
  dropped: number;
}

export interface LazyScopeState {
  workloads: ReadonlyMap<string, WorkloadState>;
}

/** The WorkloadScope status the controller writes. */
export interface WorkloadScopeStatus {
  lazyScope: string;
  /** The managed Sidecar's name, or null while a Sidecar of the user's wins. */
  sidecar: string | null;
  /** Set while a Sidecar the user wrote selects the workload: it is left as it is. */
  userSidecar?: string;
  conditions: { type: 'UserSidecarPresent' | 'EdgeLimitReached'; message: string }[];
  edges: ScopeEdge[];
  updated: string;
}

export type LazyScopeWrite =
  | { kind: 'sidecar'; workload: string; namespace: string; name: string; sidecar: { name: string; spec: SidecarSpec; lazyScope: string } }
  | { kind: 'delete-sidecar'; workload: string; namespace: string; name: string; sidecarName: string }
  | { kind: 'status'; workload: string; namespace: string; name: string; status: WorkloadScopeStatus; selector: Readonly<Record<string, string>>; create: boolean };

export interface StepResult {
  state: LazyScopeState;
  writes: LazyScopeWrite[];
  /** Edges added and removed in this step (for metrics and logs). */
  added: { workload: string; host: string; source: EdgeSource }[];
  removed: { workload: string; host: string }[];
}

export function initialState(): LazyScopeState {
  return { workloads: new Map() };
}

/** The managed Sidecar's name for a workload: `<workload>-lazy`, a DNS-1123 name. */
export function managedSidecarName(workload: string): string {
  const base = workload.toLowerCase().replace(/[^a-z0-9.-]+/g, '-').replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, '').slice(0, 240) || 'workload';
  return `${base}-lazy`;
}

const iso = (ms: number): string => new Date(ms).toISOString();

function restore(edges: readonly ScopeEdge[] | undefined): Map<string, Edge> {
  const out = new Map<string, Edge>();
  for (const e of edges ?? []) {
    const first = Date.parse(e.firstSeen);
    const last = Date.parse(e.lastSeen);
    if (typeof e.host !== 'string' || Number.isNaN(first) || Number.isNaN(last)) continue;
    const since = e.expiringSince !== undefined ? Date.parse(e.expiringSince) : NaN;
    out.set(e.host, {
      host: e.host, source: e.source, firstSeen: first, lastSeen: last, lastSource: e.lastSource ?? e.source,
      expiringSince: e.state === 'EXPIRING' && !Number.isNaN(since) ? since : undefined,
    });
    if (out.size >= MAX_EDGES_PER_WORKLOAD) break;
  }
  return out;
}

/** The egress hosts of a workload's managed Sidecar: stable, static and learned, sorted, once each. */
export function scopeHosts(w: LazyWorkload, edges: Iterable<string>): string[] {
  const out = new Set<string>([...w.stableHosts, ...(w.spec.staticHosts ?? [])]);
  for (const h of edges) out.add(`*/${h}`);
  return [...out].map(egressHost).sort();
}

/** Whether a host is among the workload's stable or static hosts (named exactly, any namespace part). */
function keptAlways(w: LazyWorkload, host: string): boolean {
  for (const h of [...w.stableHosts, ...(w.spec.staticHosts ?? [])]) {
    const bare = h.slice(h.indexOf('/') + 1);
    if (bare === host || (bare.startsWith('*.') && host.endsWith(bare.slice(1)))) return true;
  }
  return false;
}

/** A bare host in egress syntax means any namespace's. */
function egressHost(h: string): string {
  return h.includes('/') ? h : `*/${h}`;
}

/** The managed Sidecar's spec: the WorkloadScope's listener templates, each with the scope's hosts. */
export function renderSidecar(w: LazyWorkload, hosts: readonly string[]): SidecarSpec {
  const templates = w.spec.egress !== undefined && w.spec.egress.length > 0 ? w.spec.egress : [{}];
  const egress: IstioEgressListener[] = templates.map((t) => ({ ...t, hosts: [...hosts] }));
  const spec: SidecarSpec = { workloadSelector: { labels: { ...w.selector } } };
  if (w.spec.ingress !== undefined && w.spec.ingress.length > 0) spec.ingress = w.spec.ingress.map((i) => ({ ...i }));
  spec.egress = egress;
  return spec;
}

function statusEdges(edges: ReadonlyMap<string, Edge>): ScopeEdge[] {
  return [...edges.values()].sort((a, b) => a.host.localeCompare(b.host)).map((e) => ({
    host: e.host, source: e.source, firstSeen: iso(e.firstSeen), lastSeen: iso(e.lastSeen), lastSource: e.lastSource,
    state: e.expiringSince === undefined ? 'ACTIVE' as const : 'EXPIRING' as const,
    ...(e.expiringSince !== undefined ? { expiringSince: iso(e.expiringSince) } : {}),
  }));
}

/** What of a status counts as a change (the last-use times do not: they are checkpointed). */
function statusShape(s: WorkloadScopeStatus): string {
  return JSON.stringify([s.lazyScope, s.sidecar, s.userSidecar ?? null, s.conditions, s.edges.map((e) => [e.host, e.source, e.state, e.expiringSince ?? null])]);
}

function statusTimes(s: WorkloadScopeStatus): string {
  return JSON.stringify(s.edges.map((e) => e.lastSeen));
}

export function step(state: LazyScopeState, observations: readonly CallObservation[], config: StepConfig, now: number): StepResult {
  const statusEvery = config.statusEveryMs ?? DEFAULT_STATUS_EVERY_MS;
  const next = new Map<string, WorkloadState>();
  const writes: LazyScopeWrite[] = [];
  const added: StepResult['added'] = [];
  const removed: StepResult['removed'] = [];
  const byKey = new Map<string, LazyWorkload>();
  for (const w of config.workloads) byKey.set(`${w.namespace}/${w.name}`, w);

  for (const [key, w] of byKey) {
    const prev = state.workloads.get(key);
    next.set(key, prev !== undefined
      ? { ...prev, edges: new Map(prev.edges) }
      : { edges: restore(w.storedEdges), sidecarWritten: w.storedSidecar === undefined ? undefined : JSON.stringify(w.storedSidecar), statusWritten: undefined, statusWrittenAt: 0, dropped: 0 });
  }

  // Calls seen: new edges, later last use, EXPIRING edges active again.
  for (const o of observations) {
    const key = `${o.namespace}/${o.workload}`;
    const ws = next.get(key);
    const w = byKey.get(key);
    if (ws === undefined || w === undefined) continue;
    const host = config.resolveHost(o.host, o.namespace);
    if (host === undefined) continue; // not in the registry: the fallback keeps serving it
    if (keptAlways(w, host)) continue; // a stable or static host (the fallback's own, calls to the hub) is no edge
    const e = ws.edges.get(host);
    if (e === undefined) {
      if (ws.edges.size >= MAX_EDGES_PER_WORKLOAD) { ws.dropped++; continue; }
      ws.edges.set(host, { host, source: o.source, firstSeen: o.at, lastSeen: o.at, lastSource: o.source, expiringSince: undefined });
      added.push({ workload: key, host, source: o.source });
      continue;
    }
    if (o.at >= e.lastSeen) {
      ws.edges.set(host, { ...e, lastSeen: o.at, lastSource: o.source, expiringSince: e.expiringSince !== undefined && o.at > e.expiringSince ? undefined : e.expiringSince });
    }
  }

  for (const [key, w] of byKey) {
    const ws = next.get(key)!;
    // Aging, at the LazyScope's evaluations only: idle → EXPIRING; EXPIRING at a later evaluation → removed.
    if (config.evaluate.has(w.lazyScope)) {
      for (const [host, e] of ws.edges) {
        if (e.expiringSince !== undefined) {
          if (e.lastSeen > e.expiringSince) ws.edges.set(host, { ...e, expiringSince: undefined });
          else if (now > e.expiringSince) {
            ws.edges.delete(host);
            removed.push({ workload: key, host });
          }
        } else if (now - e.lastSeen > w.idleTimeoutMs) {
          ws.edges.set(host, { ...e, expiringSince: now });
        }
      }
    }

    const [namespace, name] = [w.namespace, w.name];
    const sidecarName = managedSidecarName(w.name);
    // The Sidecar: none while the user's wins; else the scope's hosts (EXPIRING edges included).
    if (w.userSidecar !== undefined) {
      if (w.storedSidecar !== undefined) {
        writes.push({ kind: 'delete-sidecar', workload: key, namespace, name, sidecarName });
        ws.sidecarWritten = undefined;
      }
    } else {
      const spec = renderSidecar(w, scopeHosts(w, ws.edges.keys()));
      const fp = JSON.stringify(spec);
      if (fp !== ws.sidecarWritten) {
        writes.push({ kind: 'sidecar', workload: key, namespace, name, sidecar: { name: sidecarName, spec, lazyScope: w.lazyScope } });
        ws.sidecarWritten = fp;
      }
    }

    const conditions: WorkloadScopeStatus['conditions'] = [];
    if (w.userSidecar !== undefined) conditions.push({ type: 'UserSidecarPresent', message: `Sidecar ${w.namespace}/${w.userSidecar} selects the workload: it is used as written and no managed Sidecar is written` });
    if (ws.dropped > 0) conditions.push({ type: 'EdgeLimitReached', message: `the workload has ${MAX_EDGES_PER_WORKLOAD} dependencies; calls to further hosts keep going through the fallback` });
    const status: WorkloadScopeStatus = {
      lazyScope: w.lazyScope,
      sidecar: w.userSidecar !== undefined ? null : sidecarName,
      ...(w.userSidecar !== undefined ? { userSidecar: w.userSidecar } : {}),
      conditions,
      edges: statusEdges(ws.edges),
      updated: iso(now),
    };
    const shape = statusShape(status);
    const times = statusTimes(status);
    const written = ws.statusWritten;
    const due = written === undefined || !w.hasWorkloadScope || shape !== written.slice(0, written.indexOf('\u0000'))
      || (times !== written.slice(written.indexOf('\u0000') + 1) && now - ws.statusWrittenAt >= statusEvery);
    if (due) {
      writes.push({ kind: 'status', workload: key, namespace, name, status, selector: w.selector, create: !w.hasWorkloadScope });
      ws.statusWritten = `${shape}\u0000${times}`;
      ws.statusWrittenAt = now;
    }
  }
  return { state: { workloads: next }, writes, added, removed };
}

/** Forgets what was last written for a workload (its write failed): the next step writes again. */
export function forgetWritten(state: LazyScopeState, workload: string, what: 'sidecar' | 'status'): LazyScopeState {
  const ws = state.workloads.get(workload);
  if (ws === undefined) return state;
  const next = new Map(state.workloads);
  next.set(workload, what === 'sidecar' ? { ...ws, sidecarWritten: '\u0000failed' } : { ...ws, statusWritten: undefined });
  return { workloads: next };
}

/** A workload's edges now (for `/debug/lazyscope`, the CLI and the dashboard). */
export function edgesOf(state: LazyScopeState, workload: string): ScopeEdge[] {
  const ws = state.workloads.get(workload);
  return ws === undefined ? [] : statusEdges(ws.edges);
}
