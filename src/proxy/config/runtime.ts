// Compile-then-serve: each xDS update is validated and compiled into runtime objects
// (clusters with balancers, route tables, listener specs) before anything changes; an
// invalid update throws (the xDS client NACKs it) and the previous objects keep serving.
// The request path only reads the maps held here.
import type pino from 'pino';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, RUNTIME_TYPE } from '../../envoy/index.ts';
import type { ProtoJson } from '../../envoy/index.ts';
import { Cluster } from '../cluster/cluster.ts';
import { compileListener } from '../listener/listener-spec.ts';
import type { ListenerSpec } from '../listener/listener-spec.ts';
import { RouteTable } from '../router/route-table.ts';
import type { ResourceSink, SubscribedTypeUrl, XdsResource } from '../xds/ads-client.ts';
import { compileRouteLimits } from '../filters/local-ratelimit/index.ts';
import { RuntimeLayers } from './runtime-layer.ts';

/** Who to tell when the compiled config changes (the listener manager, the pools, admin). */
export interface RuntimeConfigHooks {
  listenersChanged?: () => void;
  clustersChanged?: (added: readonly Cluster[], removed: readonly Cluster[]) => void;
  ready?: () => void;
}

export class RuntimeConfig implements ResourceSink {
  hooks: RuntimeConfigHooks = {};
  clusters = new Map<string, Cluster>();
  routes = new Map<string, RouteTable>();
  listeners = new Map<string, ListenerSpec>();
  /** RTDS: the runtime layers filters read (runtime-layer.ts). */
  readonly layers: RuntimeLayers;
  /** Latest assignment by EDS service name (kept for clusters that arrive later). */
  private assignments = new Map<string, ProtoJson>();
  private readonly received = new Set<SubscribedTypeUrl>();
  private readyAt = 0;
  private readonly logger: pino.Logger;
  /** Envoy's initial_fetch_timeout: after it, missing EDS/RDS no longer hold readiness. */
  private readonly initialFetchDeadline: number;
  /** Optional filters already reported as skipped (by name and type), so each is logged once. */
  private readonly skippedReported = new Set<string>();

  constructor(logger: pino.Logger, initialFetchTimeoutMs = 15_000) {
    this.logger = logger;
    this.initialFetchDeadline = Date.now() + initialFetchTimeoutMs;
    this.layers = new RuntimeLayers({ logger });
  }

  /** True once a complete config (CDS, EDS for its clusters, LDS, RDS for its listeners) is applied. */
  get ready(): boolean {
    return this.readyAt > 0;
  }

  apply(typeUrl: SubscribedTypeUrl, resources: ReadonlyMap<string, XdsResource>): void {
    switch (typeUrl) {
      case RUNTIME_TYPE: this.layers.apply(resources); break;
      case CLUSTER_TYPE: this.applyClusters(resources); break;
      case ENDPOINT_TYPE: this.applyEndpoints(resources); break;
      case LISTENER_TYPE: this.applyListeners(resources); break;
      case ROUTE_TYPE: this.applyRoutes(resources); break;
    }
    this.received.add(typeUrl);
    this.checkReady();
  }

  interest(typeUrl: SubscribedTypeUrl): ReadonlySet<string> {
    if (typeUrl === RUNTIME_TYPE) return this.layers.interest();
    const out = new Set<string>();
    if (typeUrl === ENDPOINT_TYPE) {
      for (const c of this.clusters.values()) if (c.type === 'EDS') out.add(c.edsServiceName);
    } else if (typeUrl === ROUTE_TYPE) {
      for (const l of this.listeners.values()) {
        for (const fc of [...l.filterChains, ...(l.defaultChain ? [l.defaultChain] : [])]) {
          if (fc.network.kind === 'http' && fc.network.rdsName) out.add(fc.network.rdsName);
          // scoped routes: every scope's route configuration
          if (fc.network.kind === 'http' && fc.network.scopedRoutes !== undefined) for (const n of fc.network.scopedRoutes.byKey.values()) out.add(n);
        }
      }
    }
    return out;
  }

  /** Re-evaluates readiness (also after the initial fetch timeout passes). */
  checkReady(): void {
    if (this.readyAt > 0) return;
    if (!this.received.has(CLUSTER_TYPE) || !this.received.has(LISTENER_TYPE)) return;
    const late = Date.now() >= this.initialFetchDeadline;
    for (const c of this.clusters.values()) {
      if (c.type !== 'EDS' || this.assignments.has(c.edsServiceName)) continue;
      // initial_fetch_timeout 0s (what Istio sets) waits for the assignment indefinitely.
      if (!late || c.edsInitialFetchTimeoutMs === 0) return;
    }
    if (!late) {
      for (const n of this.interest(ROUTE_TYPE)) if (!this.routes.has(n)) return;
    }
    this.readyAt = Date.now();
    this.logger.info({ clusters: this.clusters.size, listeners: this.listeners.size, routes: this.routes.size }, 'first complete config applied; proxy ready');
    this.hooks.ready?.();
  }

  private applyClusters(resources: ReadonlyMap<string, XdsResource>): void {
    const next = new Map<string, Cluster>();
    const added: Cluster[] = [];
    try {
      for (const [name, r] of resources) {
        const old = this.clusters.get(name);
        const key = JSON.stringify(r.resource);
        if (old && old.sourceKey === key) {
          next.set(name, old);
          continue;
        }
        const c = new Cluster(r.resource, `Cluster ${name}`);
        if (c.name !== name) throw new Error(`Cluster ${name}: resource name differs from cluster name ${c.name}`);
        const cla = this.assignments.get(c.edsServiceName);
        if (c.type === 'EDS' && cla) c.setAssignment(cla, `ClusterLoadAssignment ${c.edsServiceName}`);
        next.set(name, c);
        added.push(c);
      }
    } catch (err) {
      for (const c of added) c.close();
      throw err;
    }
    // Warm before use: a replaced cluster keeps its endpoints until EDS says otherwise.
    for (const c of added) {
      const old = this.clusters.get(c.name);
      if (c.type === 'EDS' && !c.warm && old?.warm) c.adoptHosts(old);
      c.startDns((err) => this.logger.warn({ cluster: c.name, err: err.message }, 'DNS resolution failed'));
    }
    const removed = [...this.clusters.values()].filter((c) => next.get(c.name) !== c);
    this.clusters = next;
    for (const c of removed) c.close();
    this.hooks.clustersChanged?.(added, removed);
  }

  private applyEndpoints(resources: ReadonlyMap<string, XdsResource>): void {
    // Validate every assignment on a scratch cluster first, so nothing is half-applied.
    const scratch = new Cluster({ name: 'validate', type: 'EDS' }, 'validate');
    for (const [name, r] of resources) scratch.setAssignment(r.resource, `ClusterLoadAssignment ${name}`);
    scratch.close();
    this.assignments = new Map([...resources].map(([n, r]) => [n, r.resource]));
    for (const c of this.clusters.values()) {
      if (c.type !== 'EDS') continue;
      const cla = this.assignments.get(c.edsServiceName);
      if (cla) c.setAssignment(cla, `ClusterLoadAssignment ${c.edsServiceName}`);
    }
  }

  private applyListeners(resources: ReadonlyMap<string, XdsResource>): void {
    const next = new Map<string, ListenerSpec>();
    const bound = new Map<string, string>();
    for (const [name, r] of resources) {
      const old = this.listeners.get(name);
      const spec = old && old.sourceKey === JSON.stringify(r.resource) ? old : compileListener(r.resource, `Listener ${name}`);
      if (spec.bindToPort) {
        const addr = `${spec.address}:${spec.port}`;
        const other = bound.get(addr);
        if (other) throw new Error(`Listener ${name}: address ${addr} is already used by listener ${other}`);
        bound.set(addr, name);
      }
      next.set(name, spec);
    }
    this.listeners = next;
    this.reportSkippedFilters(next);
    this.hooks.listenersChanged?.();
  }

  private reportSkippedFilters(listeners: ReadonlyMap<string, ListenerSpec>): void {
    for (const [name, l] of listeners) {
      for (const fc of [...l.filterChains, ...(l.defaultChain ? [l.defaultChain] : [])]) {
        if (fc.network.kind !== 'http') continue;
        for (const f of fc.network.skippedFilters) {
          const key = `${f.name}\u0000${f.implementation}`;
          if (this.skippedReported.has(key)) continue;
          this.skippedReported.add(key);
          this.logger.warn({ listener: name, filter: f.name, type: f.implementation, at: f.at }, 'optional HTTP filter not supported by this proxy; running without it');
        }
      }
    }
  }

  private applyRoutes(resources: ReadonlyMap<string, XdsResource>): void {
    const next = new Map<string, RouteTable>();
    for (const [name, r] of resources) {
      const old = this.routes.get(name);
      const table = old && old.sourceKey === JSON.stringify(r.resource) ? old : new RouteTable(r.resource, `RouteConfiguration ${name}`);
      // per-route local rate limits and rate_limits actions: refused here (NACK), not at request time
      compileRouteLimits(table, `RouteConfiguration ${name}`);
      next.set(name, table);
    }
    this.routes = next;
  }

  close(): void {
    for (const c of this.clusters.values()) c.close();
  }
}
