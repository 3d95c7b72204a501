// The immutable PushContext: every resource of one snapshot, indexed once (services by host,
// VirtualServices by host, DestinationRules by host, Sidecars and EnvoyFilters by namespace),
// plus per-snapshot memo tables so resources identical across proxies are built once.
import type { Resource } from '../../api/resource.ts';
import type { PushContext } from '../model.ts';
import { buildRegistry, byAge } from '../../registry/index.ts';
import type { Registry, Service } from '../../registry/index.ts';
import type {
  DestinationRuleSpec, EnvoyFilterSpec, ServiceEntrySpec, SidecarSpec, VirtualServiceSpec, WorkloadEntrySpec,
} from '../../registry/index.ts';
import type { GatewaySpec } from '../../api/index.ts';

/** Istio's root namespace: a Sidecar or EnvoyFilter here applies mesh-wide. */
export const ROOT_NAMESPACE = 'istio-system';

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
  readonly resources: readonly Resource[];
  readonly stats: { services: number; virtualServices: number; destinationRules: number; endpoints: number };
  readonly registry: Registry;
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
  readonly memo = new Map<string, unknown>();

  constructor(resources: readonly Resource[], version?: string) {
    this.builtAt = Date.now();
    this.version = version ?? `${this.builtAt.toString(36)}-${(++sequence).toString(36)}`;
    this.resources = resources;
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
    this.registry = buildRegistry(ses, wes);
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

  /** The memoized value under `key`, computed once per snapshot. */
  memoize<T>(key: string, compute: () => T): T {
    const hit = this.memo.get(key);
    if (hit !== undefined || this.memo.has(key)) return hit as T;
    const v = compute();
    this.memo.set(key, v);
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
      if (!fromRoot && d.namespace === ROOT_NAMESPACE) fromRoot = d;
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

/** Builds a snapshot from every resource, indexes and all, once. */
export function buildPushContext(resources: readonly Resource[]): SextantPushContext {
  return new SextantPushContext(resources);
}
