// The immutable PushContext: every resource of one snapshot, indexed once (services by host,
// VirtualServices by host, DestinationRules by host, Sidecars and EnvoyFilters by namespace),
// plus per-snapshot memo tables so resources identical across proxies are built once.
import type { Resource } from '../../api/resource.ts';
import type { ConfigChange, PushContext } from '../model.ts';
import { OverlayMap, ResourceMap, buildRegistry, byAge, updateRegistryEndpoints } from '../../registry/index.ts';
import type { Registry, Service } from '../../registry/index.ts';
import type {
  DestinationRuleSpec, EnvoyFilterSpec, ServiceEntrySpec, SidecarSpec, VirtualServiceSpec, WorkloadEntrySpec,
} from '../../registry/index.ts';
import type { GatewaySpec } from '../../api/index.ts';
import { ClusterLocalHosts, DEFAULT_MESH_CONFIG } from '../mesh-config/index.ts';
import type { MeshConfig } from '../mesh-config/index.ts';
import { MemoTable } from './memo.ts';

/** Istio's default root namespace (MeshConfig `rootNamespace`): a Sidecar or EnvoyFilter here applies mesh-wide. */
export const ROOT_NAMESPACE = DEFAULT_MESH_CONFIG.rootNamespace;

/** A resource plus what indexing derived from it once. */
export interface Indexed<S> {
  resource: Resource<S>;
  spec: S;
  key: string;
  namespace: string;
  /** Namespaces it is exported to; null = all. */
  exportTo: ReadonlySet<string> | null;
}

let sequence = 0;

function exportTo(list: readonly string[] | undefined, namespace: string): ReadonlySet<string> | null {
  if (!list || list.length === 0 || list.includes('*')) return null;
  return new Set(list.map((e) => (e === '.' ? namespace : e)));
}

const byCreation = byAge;

function push<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const list = m.get(k);
  if (list) list.push(v);
  else m.set(k, [v]);
}

/** The snapshot the generators read; never mutated after construction except its memo tables. */
export class SextantPushContext implements PushContext {
  readonly version: string;
  readonly builtAt: number;
  /** Every resource, as given; a derived snapshot given none lists its own (byKey) when first asked. */
  private resourceList: readonly Resource[] | undefined;
  readonly stats: { services: number; virtualServices: number; destinationRules: number; endpoints: number };
  readonly registry: Registry;
  /** The mesh-wide settings this snapshot was built with (`--mesh-config`). */
  readonly mesh: MeshConfig;
  /** Which service hosts are cluster-local under `mesh` (their endpoints are filtered per proxy cluster). */
  readonly clusterLocalHosts: ClusterLocalHosts;
  /** VirtualServices bound to the mesh (sidecars), by host as written (short names resolved later). */
  readonly virtualServices: readonly Indexed<VirtualServiceSpec>[];
  /** VirtualServices bound to at least one Gateway (`ns/name`, resolved), oldest first. */
  readonly gatewayVirtualServices: readonly (Indexed<VirtualServiceSpec> & { gateways: ReadonlySet<string> })[];
  readonly gateways: readonly Indexed<GatewaySpec>[];
  readonly virtualServicesByKey: ReadonlyMap<string, Indexed<VirtualServiceSpec>>;
  readonly destinationRules: readonly Indexed<DestinationRuleSpec>[];
  readonly destinationRulesByKey: ReadonlyMap<string, Indexed<DestinationRuleSpec>>;
  /** DestinationRules by host (exact), oldest first. */
  readonly destinationRulesByHost: ReadonlyMap<string, readonly Indexed<DestinationRuleSpec>[]>;
  /** Wildcard-host DestinationRules (`*.example.com`), oldest first. */
  readonly wildcardDestinationRules: readonly Indexed<DestinationRuleSpec>[];
  readonly sidecarsByNamespace: ReadonlyMap<string, readonly Indexed<SidecarSpec>[]>;
  readonly envoyFiltersByNamespace: ReadonlyMap<string, readonly Indexed<EnvoyFilterSpec>[]>;
  readonly byKey: ReadonlyMap<string, Resource>;
  /**
   * Memo tables for proxy-independent results (a cluster's ClusterLoadAssignment, the
   * clusters of one visibility scope, …). Bounded by the snapshot: dropped with it.
   */
  private readonly memo: MemoTable<unknown>;
  /**
   * Memo tables for results that read a service's endpoints (ClusterLoadAssignments), by
   * service key, so an endpoint-only snapshot drops exactly the affected services' entries.
   * On the endpoint fast path both are layered over the previous snapshot's (memo.ts).
   */
  private readonly endpointMemo: MemoTable<Map<string, unknown>>;

  constructor(resources: readonly Resource[], version?: string, derived?: DerivedInputs, reuse?: { registry?: Registry; mesh?: MeshConfig; clusterLocalHosts?: ClusterLocalHosts }) {
    this.builtAt = Date.now();
    this.version = version ?? `${this.builtAt.toString(36)}-${(++sequence).toString(36)}`;
    this.resourceList = derived !== undefined && resources.length === 0 ? undefined : resources;
    if (derived !== undefined) {
      // Everything but endpoints is the previous snapshot's, shared (both are immutable).
      const from = derived.from;
      this.byKey = derived.byKey;
      this.registry = derived.registry;
      this.mesh = from.mesh;
      this.clusterLocalHosts = from.clusterLocalHosts;
      this.virtualServices = from.virtualServices;
      this.gatewayVirtualServices = from.gatewayVirtualServices;
      this.gateways = from.gateways;
      this.virtualServicesByKey = from.virtualServicesByKey;
      this.destinationRules = from.destinationRules;
      this.destinationRulesByKey = from.destinationRulesByKey;
      this.destinationRulesByHost = from.destinationRulesByHost;
      this.wildcardDestinationRules = from.wildcardDestinationRules;
      this.sidecarsByNamespace = from.sidecarsByNamespace;
      this.envoyFiltersByNamespace = from.envoyFiltersByNamespace;
      this.stats = { ...from.stats, endpoints: this.registry.endpointCount };
      this.memo = from.memo.fork();
      this.endpointMemo = from.endpointMemo.fork(derived.endpointsChanged);
      return;
    }
    this.memo = new MemoTable();
    this.endpointMemo = new MemoTable();
    this.mesh = reuse?.mesh ?? DEFAULT_MESH_CONFIG;
    this.clusterLocalHosts = reuse?.clusterLocalHosts ?? new ClusterLocalHosts(this.mesh);
    const ses: Resource<ServiceEntrySpec>[] = [];
    const wes: Resource<WorkloadEntrySpec>[] = [];
    const vss: Resource<VirtualServiceSpec>[] = [];
    const drs: Resource<DestinationRuleSpec>[] = [];
    const scs: Resource<SidecarSpec>[] = [];
    const efs: Resource<EnvoyFilterSpec>[] = [];
    const gws: Resource<GatewaySpec>[] = [];
    const byKey = new Map<string, Resource>();
    for (const r of resources) {
      byKey.set(`${r.kind}/${r.metadata.namespace}/${r.metadata.name}`, r);
      switch (r.kind) {
        case 'ServiceEntry': ses.push(r as Resource<ServiceEntrySpec>); break;
        case 'WorkloadEntry': wes.push(r as Resource<WorkloadEntrySpec>); break;
        case 'VirtualService': vss.push(r as Resource<VirtualServiceSpec>); break;
        case 'DestinationRule': drs.push(r as Resource<DestinationRuleSpec>); break;
        case 'Sidecar': scs.push(r as Resource<SidecarSpec>); break;
        case 'EnvoyFilter': efs.push(r as Resource<EnvoyFilterSpec>); break;
        case 'Gateway': gws.push(r as Resource<GatewaySpec>); break;
        default: break;
      }
    }
    this.byKey = byKey;
    this.registry = reuse?.registry ?? buildRegistry(ses, wes);
    const index = <S extends { exportTo?: string[] }>(r: Resource<S>): Indexed<S> => ({
      resource: r,
      spec: (r.spec ?? {}) as S,
      key: `${r.kind}/${r.metadata.namespace}/${r.metadata.name}`,
      namespace: r.metadata.namespace,
      exportTo: exportTo(r.spec?.exportTo, r.metadata.namespace),
    });
    // Only mesh-bound VirtualServices apply to sidecars (no gateways, or `mesh` listed).
    const allVs = vss.sort(byCreation).map(index);
    this.virtualServices = allVs.filter((v) => {
      const bound = v.spec.gateways;
      return !bound || bound.length === 0 || bound.includes('mesh');
    });
    this.gatewayVirtualServices = allVs.flatMap((v) => {
      const bound = (v.spec.gateways ?? []).filter((g) => g !== 'mesh').map((g) => (g.includes('/') ? g : `${v.namespace}/${g}`));
      return bound.length > 0 ? [{ ...v, gateways: new Set(bound) }] : [];
    });
    this.gateways = gws.sort(byCreation).map((g) => index(g as Resource<GatewaySpec & { exportTo?: string[] }>));
    this.virtualServicesByKey = new Map(this.virtualServices.map((v) => [v.key, v]));
    this.destinationRules = drs.sort(byCreation).map(index);
    this.destinationRulesByKey = new Map(this.destinationRules.map((d) => [d.key, d]));
    const drByHost = new Map<string, Indexed<DestinationRuleSpec>[]>();
    const drWild: Indexed<DestinationRuleSpec>[] = [];
    for (const dr of this.destinationRules) {
      if (!dr.spec.host) continue;
      const host = resolveHost(dr.spec.host, dr.namespace);
      if (host.startsWith('*')) drWild.push(dr);
      else push(drByHost, host, dr);
    }
    this.destinationRulesByHost = drByHost;
    this.wildcardDestinationRules = drWild;
    const sidecars = new Map<string, Indexed<SidecarSpec>[]>();
    for (const s of scs.sort(byCreation)) push(sidecars, s.metadata.namespace, index(s as Resource<SidecarSpec & { exportTo?: string[] }>));
    this.sidecarsByNamespace = sidecars;
    const filters = new Map<string, Indexed<EnvoyFilterSpec>[]>();
    // EnvoyFilters apply in priority order, then creation order (Istio's rule).
    const efSorted = efs.sort((a, b) => (a.spec?.priority ?? 0) - (b.spec?.priority ?? 0) || byCreation(a, b));
    for (const e of efSorted) push(filters, e.metadata.namespace, index(e as Resource<EnvoyFilterSpec & { exportTo?: string[] }>));
    this.envoyFiltersByNamespace = filters;
    this.stats = {
      services: this.registry.services.length,
      virtualServices: this.virtualServices.length,
      destinationRules: this.destinationRules.length,
      endpoints: this.registry.endpointCount,
    };
  }

  /**
   * Every resource of the snapshot. A derived snapshot built without the list (the pilot's
   * endpoint fast path: copying 60,000 entries per pull-out cost more than the pull-out) makes
   * it from byKey on first use: the same resources, with the changed ones last.
   */
  get resources(): readonly Resource[] {
    this.resourceList ??= [...this.byKey.values()];
    return this.resourceList;
  }

  /** The memoized value under `key`, computed once per snapshot. */
  memoize<T>(key: string, compute: () => T): T {
    const hit = this.memo.get(key);
    if (hit !== undefined || this.memo.has(key)) return hit as T;
    const v = compute();
    this.memo.set(key, v);
    return v;
  }

  /** Like memoize, for a result that reads `serviceKey`'s endpoints. */
  memoizeEndpoints<T>(serviceKey: string, key: string, compute: () => T): T {
    let table = this.endpointMemo.get(serviceKey);
    if (table === undefined) this.endpointMemo.set(serviceKey, (table = new Map()));
    const hit = table.get(key);
    if (hit !== undefined || table.has(key)) return hit as T;
    const v = compute();
    table.set(key, v);
    return v;
  }


  /**
   * The service a proxy in `namespace` reaches for `hostname`: its own namespace's
   * declaration first, then the oldest one exported to it (Istio's precedence).
   */
  serviceFor(hostname: string, namespace: string): Service | undefined {
    const list = this.registry.byHost.get(hostname);
    if (!list) return undefined;
    let found: Service | undefined;
    for (const s of list) {
      if (s.namespace === namespace) return s;
      if (!found && (s.exportTo === null || s.exportTo.has(namespace))) found = s;
    }
    return found;
  }

  /** Whether the service is cluster-local (MeshConfig serviceSettings): proxies see only their own cluster's endpoints. */
  isClusterLocal(service: Service): boolean {
    return this.clusterLocalHosts.isClusterLocal(service.hostname);
  }

  /** The DestinationRule for a host as seen from `namespace` (own namespace, then the host's, then root). */
  destinationRuleFor(service: Service, namespace: string): Indexed<DestinationRuleSpec> | undefined {
    // Called per cluster per proxy namespace: no allocation on the common path.
    const exact = this.destinationRulesByHost.get(service.hostname);
    const list = exact ?? this.wildcardDestinationRules;
    let fromService: Indexed<DestinationRuleSpec> | undefined;
    let fromRoot: Indexed<DestinationRuleSpec> | undefined;
    let first: Indexed<DestinationRuleSpec> | undefined;
    for (const d of list) {
      if (!exact && !hostMatches(resolveHost(d.spec.host ?? '', d.namespace), service.hostname)) continue;
      if (d.namespace === namespace) return d; // oldest rule of the proxy's own namespace
      if (d.exportTo !== null && !d.exportTo.has(namespace)) continue;
      if (!fromService && d.namespace === service.namespace) fromService = d;
      if (!fromRoot && d.namespace === this.mesh.rootNamespace) fromRoot = d;
      first ??= d;
    }
    return fromService ?? fromRoot ?? first;
  }
}

/** Istio's short-name rule: `reviews` written in namespace `default` means `reviews.default.svc.cluster.local`. */
export function resolveHost(host: string, namespace: string): string {
  if (host.includes('.') || host.includes('*')) return host;
  return `${host}.${namespace}.svc.cluster.local`;
}

/** Whether a (possibly wildcard) host pattern covers a concrete hostname. */
export function hostMatches(pattern: string, host: string): boolean {
  if (pattern === '*') return true;
  if (pattern.startsWith('*')) return host.endsWith(pattern.slice(1));
  return pattern === host;
}

/** What an endpoint-only snapshot takes over from its predecessor, and what it replaces. */
interface DerivedInputs {
  from: SextantPushContext;
  registry: Registry;
  byKey: ReadonlyMap<string, Resource>;
  /** Service keys whose endpoints changed: their endpoint memo entries are dropped. */
  endpointsChanged: ReadonlySet<string>;
}

function kindOf(key: string): string {
  return key.slice(0, key.indexOf('/'));
}

/**
 * Builds a snapshot from every resource, indexes and all, once. Given the previous snapshot
 * and a change that touched no ServiceEntry or WorkloadEntry, the service registry (and so
 * the scopes derived from it, see scope.ts) is the previous one, shared. `mesh` is the mesh
 * config in force (Istio's defaults when not given).
 */
export function buildPushContext(resources: readonly Resource[], previous?: SextantPushContext, change?: ConfigChange, mesh: MeshConfig = DEFAULT_MESH_CONFIG): SextantPushContext {
  const registryUnchanged = previous !== undefined && change !== undefined &&
    ![...change.keys].some((k) => { const kind = kindOf(k); return kind === 'ServiceEntry' || kind === 'WorkloadEntry'; });
  const reuse: { registry?: Registry; mesh: MeshConfig; clusterLocalHosts?: ClusterLocalHosts } = { mesh };
  if (registryUnchanged) reuse.registry = previous.registry;
  if (previous !== undefined && previous.mesh === mesh) reuse.clusterLocalHosts = previous.clusterLocalHosts;
  return new SextantPushContext(resources, undefined, undefined, reuse);
}

/**
 * The endpoint fast path: the snapshot after an endpoint-only change (WorkloadEntries, or
 * ServiceEntries whose spec changed only in `endpoints`), derived from `before`. Everything
 * but the affected services' endpoints is shared with `before`, memoized clusters, listeners,
 * routes and scopes included, so their encodings are reused by identity. Returns undefined
 * when the change cannot take this path (a DNS service's endpoints are inline in its
 * cluster, so its CDS changes too): the caller then builds a full snapshot.
 */
export function updateEndpoints(before: SextantPushContext, resources: readonly Resource[], change: ConfigChange): SextantPushContext | undefined {
  if (!change.endpointsOnly) return undefined;
  const changedNames = new Set<string>();
  for (const k of change.keys) {
    const kind = kindOf(k);
    if (kind !== 'ServiceEntry' && kind !== 'WorkloadEntry') return undefined;
    changedNames.add(k.slice(k.lastIndexOf('/') + 1));
  }
  // The changed ones, by key: looked up when the caller has them by key, else one pass.
  const current = new Map<string, Resource>();
  if (change.current !== undefined) {
    for (const key of change.keys) {
      const r = change.current.get(key);
      if (r !== undefined) current.set(key, r);
    }
  } else {
    for (const r of resources) {
      if ((r.kind !== 'ServiceEntry' && r.kind !== 'WorkloadEntry') || !changedNames.has(r.metadata.name)) continue;
      const key = `${r.kind}/${r.metadata.namespace}/${r.metadata.name}`;
      if (change.keys.has(key)) current.set(key, r);
    }
  }
  const reg = before.registry;
  const affected = new Set<string>();
  const changedWorkloads = new Set<string>();
  const selectorNamespaces = new Set<string>();
  let selectorServices: Map<string, Service[]> | undefined;
  for (const key of change.keys) {
    if (kindOf(key) === 'ServiceEntry') {
      if (!current.has(key)) return undefined; // deleted: services go away, not an endpoint change
      for (const s of reg.bySource.get(key) ?? []) affected.add(s.key);
      continue;
    }
    changedWorkloads.add(key);
    for (const s of reg.servicesOf.get(key) ?? []) affected.add(s);
    const we = current.get(key) as Resource<WorkloadEntrySpec> | undefined;
    if (we === undefined) continue;
    // Services that select the workload now (its labels may have changed).
    selectorServices ??= selectorServicesOf(reg.services);
    const labels = we.metadata.labels ? { ...we.metadata.labels, ...we.spec?.labels } : (we.spec?.labels ?? {});
    for (const s of selectorServices.get(we.metadata.namespace) ?? []) if (labelsMatchAll(s.selector, labels)) affected.add(s.key);
  }
  const serviceEntries = new Map<string, Resource<ServiceEntrySpec>>();
  for (const key of affected) {
    const svc = reg.byKey.get(key);
    if (!svc) return undefined;
    if (svc.resolution === 'DNS' || svc.resolution === 'DNS_ROUND_ROBIN') return undefined;
    if (svc.selector) selectorNamespaces.add(svc.namespace);
    const se = (current.get(svc.source) ?? before.byKey.get(svc.source)) as Resource<ServiceEntrySpec> | undefined;
    if (!se) return undefined;
    serviceEntries.set(svc.source, se);
  }
  // The workloads a selector may match: asked of the caller's index when it keeps one,
  // else found by one pass over every resource.
  let workloadsOf: (service: Service) => readonly Resource<WorkloadEntrySpec>[];
  const index = change.current instanceof ResourceMap ? change.current : undefined;
  if (index !== undefined) {
    workloadsOf = (svc) => index.selectWorkloads(svc.namespace, svc.selector ?? {});
  } else {
    const byNamespace = new Map<string, Resource<WorkloadEntrySpec>[]>();
    if (selectorNamespaces.size > 0) {
      for (const r of resources.length === 0 && change.current !== undefined ? change.current.values() : resources) {
        if (r.kind !== 'WorkloadEntry' || !selectorNamespaces.has(r.metadata.namespace)) continue;
        let list = byNamespace.get(r.metadata.namespace);
        if (!list) byNamespace.set(r.metadata.namespace, (list = []));
        list.push(r as Resource<WorkloadEntrySpec>);
      }
    }
    workloadsOf = (svc) => byNamespace.get(svc.namespace) ?? [];
  }
  const registry = updateRegistryEndpoints(reg, { services: affected, serviceEntries, workloadsOf, changedWorkloads });
  // Derived from the previous snapshot's, not copied (60,000 entries for a few changes).
  const byKey = OverlayMap.derive(before.byKey);
  for (const key of change.keys) {
    const r = current.get(key);
    if (r) byKey.set(key, r);
    else byKey.delete(key);
  }
  return new SextantPushContext(resources, undefined, { from: before, registry, byKey: byKey.done(), endpointsChanged: affected });
}

// Selector services by namespace, per list of services: the registries derived on the
// endpoint fast path share their predecessor's list, so this is computed once per full build.
const selectorServicesByList = new WeakMap<readonly Service[], Map<string, Service[]>>();

function selectorServicesOf(services: readonly Service[]): Map<string, Service[]> {
  let out = selectorServicesByList.get(services);
  if (out !== undefined) return out;
  out = new Map<string, Service[]>();
  for (const s of services) if (s.selector) push(out, s.namespace, s);
  selectorServicesByList.set(services, out);
  return out;
}

function labelsMatchAll(selector: Readonly<Record<string, string>> | undefined, labels: Readonly<Record<string, string>>): boolean {
  if (!selector) return false;
  for (const k in selector) if (labels[k] !== selector[k]) return false;
  return true;
}
