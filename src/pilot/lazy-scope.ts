// The pilot's side of lazy scope (M5), wired together: the lazy-scope controller
// (src/controllers/lazyscope, started on the elected leader by the caller), its view of the
// mesh from the snapshot being served and the proxies connected, and its fast lane: the
// hub's access-log entries, taken from the access-log sink as they arrive. The generators
// (src/pilot/gen/lazyscope.ts) read what the controller writes like any other config.
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Resource, ScopeEdge, SidecarSpec, WorkloadScopeSpec } from '../api/index.ts';
import type { ConfigStore } from '../config/index.ts';
import { LazyScopeController, managedSidecarName } from '../controllers/lazyscope/index.ts';
import type { LazyScopeLearning, LazyWorkload } from '../controllers/lazyscope/index.ts';
import { HUB_LOG_NAME, HUB_ROLE, HUB_ROLE_LABEL, fallbackCluster, isHub, isManagedSidecar, lazyScopeFor, lazyScopes } from './gen/lazyscope.ts';
import { labelsMatch } from '../registry/index.ts';
import type { Proxy } from './model.ts';
import { SextantPushContext } from './push/context.ts';
import type { DiscoveryServer } from './xds/index.ts';
import type { AccessLogSink } from '../telemetry/sink.ts';

export interface LazyScopeWiringOptions {
  server: DiscoveryServer;
  logger: Logger;
  registry: Registry;
  store: () => ConfigStore | undefined;
  /** The latest stored state of a resource by `Kind/namespace/name` (status included). */
  resource: (key: string) => Resource | undefined;
  /** Prometheus (`--prometheus`): the durable lane; absent: the access-log lane only. */
  prometheusUrl?: string;
  statusEveryMs?: number;
}

export interface LazyScopeWiring {
  controller: LazyScopeController;
  /** Every lazy workload's dependencies as the store holds them (any pilot), and whether this pilot runs the controller. */
  report(): LazyScopeReport;
  /** Subscribes the controller to the hub's access logs; returns the unsubscribe. */
  follow(sink: AccessLogSink): () => void;
}

/** `/debug/lazyscope`, `sextant proxy-config lazyscope` and the dashboard's lazy-scope panel. */
export interface LazyScopeReport {
  /** This pilot runs the controller (it leads). */
  controller: boolean;
  workloads: { workload: string; lazyScope: string | null; sidecar: string | null; userSidecar: string | null; updated: string | null; edges: ScopeEdge[]; staticHosts: string[] }[];
}

/** A proxy's workload as it names itself (istio-agent's WORKLOAD_NAME), as the metrics and access logs do. */
function proxyWorkload(p: Proxy): string {
  const w = p.metadata['WORKLOAD_NAME'];
  if (typeof w === 'string' && w !== '') return w;
  const app = p.labels['app'];
  if (app !== undefined) return p.labels['version'] !== undefined ? `${app}-${p.labels['version']}` : app;
  return p.podName;
}

/** The labels that pick a workload's proxies: app and version when it has them, else all of them. */
function selectorOf(labels: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of ['app', 'version']) if (labels[k] !== undefined) out[k] = labels[k];
  return Object.keys(out).length > 0 ? out : { ...labels };
}

/** The registry host a call names (FQDN, short name, `name.ns`, with or without `:port`), seen from `namespace`. */
export function resolveCallHost(push: SextantPushContext, host: string, namespace: string): string | undefined {
  const h = host.replace(/:\d+$/, '').toLowerCase();
  if (h === '') return undefined;
  const candidates = [h];
  if (!h.includes('.')) candidates.push(`${h}.${namespace}.svc.cluster.local`);
  else if (/^[^.]+\.[^.]+$/.test(h)) candidates.push(`${h}.svc.cluster.local`);
  else if (h.endsWith('.svc')) candidates.push(`${h}.cluster.local`);
  for (const c of candidates) if (push.serviceFor(c, namespace) !== undefined) return c;
  return undefined;
}

export function startLazyScope(o: LazyScopeWiringOptions): LazyScopeWiring {
  const snapshot = (): SextantPushContext | undefined => {
    const push = o.server.pushContext;
    // Test pilots may bring generators of their own; lazy scope needs the built-in snapshot.
    return push instanceof SextantPushContext ? push : undefined;
  };
  const controller = new LazyScopeController({
    logger: o.logger,
    registry: o.registry,
    ...(o.prometheusUrl !== undefined ? { prometheusUrl: o.prometheusUrl } : {}),
    ...(o.statusEveryMs !== undefined ? { statusEveryMs: o.statusEveryMs } : {}),
    store: o.store,
    version: () => `${snapshot()?.version ?? ''}|${o.server.connections.size}`,
    resolveHost: (host, ns) => {
      const push = snapshot();
      return push === undefined ? undefined : resolveCallHost(push, host, ns);
    },
    lazyScopes(): LazyScopeLearning[] {
      const push = snapshot();
      if (push === undefined) return [];
      return lazyScopes(push).map((s) => ({
        key: `${s.namespace}/${s.name}`, accessLog: s.settings.accessLog, prometheus: s.settings.prometheus,
        evaluationIntervalMs: s.settings.evaluationIntervalMs, prometheusWindowMs: s.settings.prometheusWindowMs,
      }));
    },
    workloads(): LazyWorkload[] {
      const push = snapshot();
      if (push === undefined || lazyScopes(push).length === 0) return [];
      // Candidates: the store's WorkloadScopes, the proxies connected here, the WorkloadEntries.
      const found = new Map<string, { namespace: string; name: string; labels: Record<string, string>; scope: Resource<WorkloadScopeSpec> | undefined }>();
      for (const r of push.resources) {
        if (r.kind !== 'WorkloadScope') continue;
        const ws = (o.resource(`WorkloadScope/${r.metadata.namespace}/${r.metadata.name}`) ?? r) as Resource<WorkloadScopeSpec>;
        found.set(`${r.metadata.namespace}/${r.metadata.name}`, { namespace: r.metadata.namespace, name: r.metadata.name, labels: { ...ws.spec.workloadSelector.labels }, scope: ws });
      }
      for (const con of o.server.connections.values()) {
        const p = con.proxy;
        if (p.type !== 'sidecar' || p.generator === 'grpc' || isHub(p)) continue;
        const key = `${p.namespace}/${proxyWorkload(p)}`;
        if (!found.has(key)) found.set(key, { namespace: p.namespace, name: proxyWorkload(p), labels: { ...p.labels }, scope: undefined });
      }
      for (const r of push.resources) {
        if (r.kind !== 'WorkloadEntry') continue;
        const labels = (r.spec as { labels?: Record<string, string> }).labels ?? {};
        const name = labels['app'] !== undefined ? (labels['version'] !== undefined ? `${labels['app']}-${labels['version']}` : labels['app']) : r.metadata.name;
        const key = `${r.metadata.namespace}/${name}`;
        if (!found.has(key)) found.set(key, { namespace: r.metadata.namespace, name, labels: { ...labels }, scope: undefined });
      }
      const out: LazyWorkload[] = [];
      for (const c of found.values()) {
        if (c.labels[HUB_ROLE_LABEL] === HUB_ROLE) continue;
        const scope = lazyScopeFor(push, c.namespace, c.labels);
        if (scope === undefined) continue;
        const selector = c.scope?.spec.workloadSelector.labels ?? selectorOf(c.labels);
        const sidecars = push.sidecarsByNamespace.get(c.namespace) ?? [];
        const user = sidecars.find((s) => !isManagedSidecar(s.resource) && s.spec.workloadSelector?.labels !== undefined && labelsMatch(s.spec.workloadSelector.labels, c.labels));
        const managed = o.resource(`Sidecar/${c.namespace}/${managedSidecarName(c.name)}`);
        const fallback = fallbackCluster(scope);
        const stableHosts = [...scope.settings.stableHosts, ...(fallback.host !== undefined ? [`*/${fallback.host}`] : [])];
        const status = c.scope?.status as { edges?: ScopeEdge[] } | undefined;
        out.push({
          namespace: c.namespace, name: c.name, selector, lazyScope: `${scope.namespace}/${scope.name}`,
          idleTimeoutMs: scope.settings.idleTimeoutMs, stableHosts,
          spec: c.scope?.spec ?? { workloadSelector: { labels: selector } },
          userSidecar: user?.resource.metadata.name,
          storedSidecar: managed !== undefined && isManagedSidecar(managed) ? managed.spec as SidecarSpec : undefined,
          storedEdges: Array.isArray(status?.edges) ? status.edges : undefined,
          hasWorkloadScope: c.scope !== undefined,
        });
      }
      return out;
    },
  });
  return {
    controller,
    report() {
      const push = snapshot();
      const workloads: LazyScopeReport['workloads'] = [];
      for (const r of push?.resources ?? []) {
        if (r.kind !== 'WorkloadScope') continue;
        const ws = (o.resource(`WorkloadScope/${r.metadata.namespace}/${r.metadata.name}`) ?? r) as Resource<WorkloadScopeSpec>;
        const st = (ws.status ?? {}) as { lazyScope?: string; sidecar?: string | null; userSidecar?: string; updated?: string; edges?: ScopeEdge[] };
        workloads.push({
          workload: `${r.metadata.namespace}/${r.metadata.name}`, lazyScope: st.lazyScope ?? null,
          sidecar: st.sidecar === undefined || st.sidecar === null ? null : `${r.metadata.namespace}/${st.sidecar}`,
          userSidecar: st.userSidecar === undefined ? null : `${r.metadata.namespace}/${st.userSidecar}`,
          updated: st.updated ?? null, edges: Array.isArray(st.edges) ? st.edges : [], staticHosts: ws.spec.staticHosts ?? [],
        });
      }
      return { controller: controller.isRunning, workloads };
    },
    follow(sink) {
      return sink.subscribe((e, logName) => {
        if (logName !== HUB_LOG_NAME || e.sourceWorkload === '' || e.destinationService === '') return;
        controller.observe({ namespace: e.sourceNamespace, workload: e.sourceWorkload, host: e.destinationService, at: e.time + e.durationMs, source: 'access-log' });
      });
    },
  };
}
