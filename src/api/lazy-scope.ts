// Sextant's lazy-scope kinds (sextant.io/v1alpha1), MISSION M5. `LazyScope` is the opt-in:
// which workloads start from a minimal scope, where their first calls go (the fallback: a hub
// of full-scope `sextant proxy` replicas, or an existing host:port tier), how long an unused
// dependency lives, the hosts every lazy workload keeps, and how dependencies are learned.
// `WorkloadScope` is one workload's state: its selector and static hosts (spec, written by the
// user or created by the controller) and the learned dependencies with their first and last
// use and their source (status, written by the controller), kept in the config store so a
// pilot restart or failover loses nothing. The spec types, structural schemas, semantic
// rules, and the LazyScope settings with every default filled in.
import { checkFQDN, isIPAddress, parseDurationMs } from './checks.ts';
import type { CaptureMode, Duration, IstioIngressListener, Port } from './kinds.ts';
import { arr, bool, int, map, obj, str, strEnum, strs, type NodeRule, type ObjectSchema } from './schema.ts';
import type { Issues } from './schema.ts';
import type { ResourceName } from './semantic.ts';

export const LAZY_SCOPE_GROUP = 'sextant.io';
export const LAZY_SCOPE_VERSION = 'v1alpha1';
export const LAZY_SCOPE_API_VERSION = `${LAZY_SCOPE_GROUP}/${LAZY_SCOPE_VERSION}`;

/** The label on every Sidecar the lazy-scope controller writes (`sextant.io/managed-by: lazy-scope`). */
export const MANAGED_BY_LABEL = 'sextant.io/managed-by';
export const MANAGED_BY_LAZY_SCOPE = 'lazy-scope';
/** The annotation of a managed Sidecar naming its LazyScope (`NAMESPACE/NAME`). */
export const LAZY_SCOPE_ANNOTATION = 'sextant.io/lazy-scope';
/** Hosts listed in one WorkloadScope's staticHosts or one LazyScope's stableHosts at most. */
export const MAX_SCOPE_HOSTS = 1000;

export interface LazyScopeFallback {
  /**
   * A hub: `sextant proxy` replicas in the hub role, registered under this host (a ServiceEntry
   * with their WorkloadEntries) and port. Requests keep their bytes, get the caller's Istio
   * semantics, and reach the destination from the caller's address.
   */
  hub?: { host: string; port: number };
  /** An existing tier: a registry host, or an IP address, and its port; requests go there unchanged. */
  target?: { host: string; port: number };
  /** The fallback route's timeout (default 30s; `0s`: none). */
  timeout?: Duration;
}

export interface LazyScopeSpec {
  /** The workloads (their labels) this applies to; absent: every sidecar in scope. In the root namespace: every namespace. */
  workloadSelector?: { labels?: Record<string, string> };
  fallback: LazyScopeFallback;
  /** A learned dependency unused this long starts to expire (default 1h). */
  idleTimeout?: Duration;
  /**
   * Hosts every lazy workload keeps, in Sidecar egress syntax (`NAMESPACE/HOST`, `./HOST`,
   * `*\/HOST`; a bare host means `*\/HOST`). The fallback's host is always kept.
   */
  stableHosts?: string[];
  /** How dependencies are learned: the hub's access-log stream, Prometheus (`sextant pilot --prometheus`), or both (the default). */
  learning?: { accessLog?: boolean; prometheus?: boolean };
  /** How often the controller reads Prometheus and ages dependencies (default 15s). */
  evaluationInterval?: Duration;
  /** The window a Prometheus evaluation counts calls in (default 2m; at least the scrape interval). */
  prometheusWindow?: Duration;
}

/** A Sidecar egress listener without hosts: the controller fills them in. */
export interface WorkloadScopeEgress {
  port?: Port;
  bind?: string;
  captureMode?: CaptureMode;
}

export interface WorkloadScopeSpec {
  /** The workload's proxies (the managed Sidecar's workloadSelector). */
  workloadSelector: { labels: Record<string, string> };
  /** Hosts this workload always keeps (egress syntax), besides the LazyScope's stable hosts; never expire. */
  staticHosts?: string[];
  /** Ingress listeners copied into the managed Sidecar (the captureMode NONE topology: bind and defaultEndpoint). */
  ingress?: IstioIngressListener[];
  /** Egress listeners of the managed Sidecar (binds and ports); each gets the scope's hosts. Absent: one catch-all listener. */
  egress?: WorkloadScopeEgress[];
}

/** Where a dependency was first seen, or is declared. */
export type EdgeSource = 'access-log' | 'prometheus' | 'static';

/** One learned dependency (`WorkloadScope.status.edges[]`). */
export interface ScopeEdge {
  /** The destination service (FQDN of a registry host). */
  host: string;
  source: EdgeSource;
  /** RFC 3339. */
  firstSeen: string;
  lastSeen: string;
  /** The source that saw it last. */
  lastSource: EdgeSource;
  state: 'ACTIVE' | 'EXPIRING';
  /** When it went EXPIRING (RFC 3339). */
  expiringSince?: string;
}

/** A LazyScope with every default filled in and durations in milliseconds. */
export interface LazyScopeSettings {
  fallback: { kind: 'hub' | 'target'; host: string; port: number; timeoutMs: number };
  idleTimeoutMs: number;
  stableHosts: readonly string[];
  accessLog: boolean;
  prometheus: boolean;
  evaluationIntervalMs: number;
  prometheusWindowMs: number;
}

export const LAZY_SCOPE_DEFAULTS = Object.freeze({
  fallbackTimeoutMs: 30_000,
  idleTimeoutMs: 3_600_000,
  evaluationIntervalMs: 15_000,
  prometheusWindowMs: 120_000,
});

const ms = (d: Duration | undefined): number | undefined => (d === undefined ? undefined : parseDurationMs(d));

/** The settings of a (validated) LazyScope. */
export function lazyScopeSettings(spec: LazyScopeSpec): LazyScopeSettings {
  const d = LAZY_SCOPE_DEFAULTS;
  const f = spec.fallback.hub ?? spec.fallback.target ?? { host: '', port: 0 };
  return {
    fallback: { kind: spec.fallback.hub !== undefined ? 'hub' : 'target', host: f.host, port: f.port, timeoutMs: ms(spec.fallback.timeout) ?? d.fallbackTimeoutMs },
    idleTimeoutMs: ms(spec.idleTimeout) ?? d.idleTimeoutMs,
    stableHosts: spec.stableHosts ?? [],
    accessLog: spec.learning?.accessLog ?? true,
    prometheus: spec.learning?.prometheus ?? true,
    evaluationIntervalMs: ms(spec.evaluationInterval) ?? d.evaluationIntervalMs,
    prometheusWindowMs: ms(spec.prometheusWindow) ?? d.prometheusWindowMs,
  };
}

// ---------------------------------------------------------------- schema

const durationBetween = (minMs: number, maxMs: number): NodeRule<string> => (v, path, issues) => {
  const n = parseDurationMs(v);
  if (n === undefined) issues.add(path, `Invalid value: ${JSON.stringify(v)}: must be a duration such as "500ms", "30s" or "1h"`);
  else if (n < minMs || n > maxMs) issues.add(path, `Invalid value: ${JSON.stringify(v)}: must be between ${formatMs(minMs)} and ${formatMs(maxMs)}`);
};

function formatMs(n: number): string {
  if (n % 3_600_000 === 0) return `${n / 3_600_000}h`;
  if (n % 1000 === 0) return `${n / 1000}s`;
  return `${n}ms`;
}

const duration = (minMs: number, maxMs: number): ObjectSchema['fields'][string] => str({ rules: [durationBetween(minMs, maxMs)] });
const labels = map(str({ maxLength: 63 }), { maxProperties: 64 });
const hostPort = obj({ host: str({ minLength: 1, maxLength: 253 }), port: int({ min: 1, max: 65535 }) }, { required: ['host', 'port'] });
const hosts = strs({ maxItems: MAX_SCOPE_HOSTS }, str({ minLength: 1, maxLength: 320 }));
const portDecl = obj({ number: int({ min: 1, max: 65535 }), protocol: str(), name: str(), targetPort: int({ min: 1, max: 65535 }) });
const captureMode = strEnum(['DEFAULT', 'IPTABLES', 'NONE']);

/** The structural schema of LazyScope's spec. */
export const lazyScopeSchema: ObjectSchema = obj({
  workloadSelector: obj({ labels }),
  fallback: obj({
    hub: hostPort,
    target: hostPort,
    timeout: duration(0, 3_600_000),
  }, { oneOf: [['hub', 'target']] }),
  idleTimeout: duration(1000, 366 * 24 * 3_600_000),
  stableHosts: hosts,
  learning: obj({ accessLog: bool(), prometheus: bool() }),
  evaluationInterval: duration(100, 3_600_000),
  prometheusWindow: duration(1000, 24 * 3_600_000),
}, { required: ['fallback'] });

/** The structural schema of WorkloadScope's spec. */
export const workloadScopeSchema: ObjectSchema = obj({
  workloadSelector: obj({ labels }, { required: ['labels'] }),
  staticHosts: hosts,
  ingress: arr(obj({
    port: portDecl,
    bind: str(),
    captureMode,
    defaultEndpoint: str(),
  }, { required: ['port'] }), { maxItems: 64 }),
  egress: arr(obj({ port: portDecl, bind: str(), captureMode }), { maxItems: 64 }),
}, { required: ['workloadSelector'] });

/** A host in Sidecar egress syntax: `NS/HOST` (NS `*`, `.` or a name), `HOST` alone meaning any namespace. */
function checkEgressHost(h: string, path: string, issues: Issues): void {
  const slash = h.indexOf('/');
  const ns = slash >= 0 ? h.slice(0, slash) : '*';
  const host = slash >= 0 ? h.slice(slash + 1) : h;
  if (ns === '' || (ns !== '*' && ns !== '.' && ns !== '~' && !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(ns))) {
    issues.add(path, `Invalid value: ${JSON.stringify(h)}: the namespace part must be *, . or a namespace name`);
    return;
  }
  if (host === '*' || host === '') {
    if (host === '') issues.add(path, `Invalid value: ${JSON.stringify(h)}: a host is required after the namespace`);
    else issues.add(path, `Invalid value: ${JSON.stringify(h)}: a lazy scope keeps named hosts; "*" would keep every host (no lazy scope)`);
    return;
  }
  const e = checkFQDN(host.startsWith('*.') ? host.slice(2) : host);
  if (e !== undefined) issues.add(path, `Invalid value: ${JSON.stringify(h)}: ${e}`);
}

/** The rules across fields of a LazyScope: exactly one fallback, hosts that parse. */
export function checkLazyScope(spec: LazyScopeSpec, _id: ResourceName, issues: Issues): void {
  const f = spec.fallback;
  if (f.hub === undefined && f.target === undefined) issues.add('spec.fallback', 'Required value: a hub or a target (where first calls go)');
  for (const [field, hp] of [['hub', f.hub], ['target', f.target]] as const) {
    if (hp === undefined) continue;
    if (field === 'target' && isIPAddress(hp.host)) continue;
    if (hp.host.includes('*')) issues.add(`spec.fallback.${field}.host`, `Invalid value: ${JSON.stringify(hp.host)}: one host, not a wildcard`);
    else {
      const e = checkFQDN(hp.host);
      if (e !== undefined) issues.add(`spec.fallback.${field}.host`, e);
    }
  }
  (spec.stableHosts ?? []).forEach((h, i) => checkEgressHost(h, `spec.stableHosts[${i}]`, issues));
  const evalMs = parseDurationMs(spec.evaluationInterval ?? '15s');
  const idleMs = parseDurationMs(spec.idleTimeout ?? '1h');
  if (evalMs !== undefined && idleMs !== undefined && idleMs < 2 * evalMs) {
    issues.add('spec.idleTimeout', `Invalid value: ${JSON.stringify(spec.idleTimeout ?? '1h')}: must be at least two evaluation intervals (${spec.evaluationInterval ?? '15s'} each): an edge expires one evaluation after it goes idle`);
  }
}

/** The rules across fields of a WorkloadScope: a non-empty selector, hosts that parse, egress binds that are addresses. */
export function checkWorkloadScope(spec: WorkloadScopeSpec, _id: ResourceName, issues: Issues): void {
  if (Object.keys(spec.workloadSelector.labels).length === 0) issues.add('spec.workloadSelector.labels', 'Required value: at least one label (the workload\'s proxies)');
  (spec.staticHosts ?? []).forEach((h, i) => checkEgressHost(h, `spec.staticHosts[${i}]`, issues));
  (spec.egress ?? []).forEach((e, i) => {
    if (e.bind !== undefined && !isIPAddress(e.bind)) issues.add(`spec.egress[${i}].bind`, `Invalid value: ${JSON.stringify(e.bind)}: an IP address`);
    if (e.bind !== undefined && e.port?.number === undefined) issues.add(`spec.egress[${i}].port`, 'Required value: an egress listener with a bind address needs a port');
  });
  const ports = new Set<string>();
  (spec.egress ?? []).forEach((e, i) => {
    const k = `${e.bind ?? ''}:${e.port?.number ?? ''}`;
    if (ports.has(k)) issues.add(`spec.egress[${i}]`, `Duplicate value: another egress listener has bind ${JSON.stringify(e.bind ?? '')} and port ${e.port?.number ?? '(none)'}`);
    ports.add(k);
  });
}
