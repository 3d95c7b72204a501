// EDS: a ClusterLoadAssignment per outbound cluster: the service's endpoints (only the
// subset's, by label) grouped by locality, with weights, health and Istio metadata.
// Identical for every proxy that sees the same service and rule, so it is memoized.
// A lane cluster's endpoints are tiers of priorities (lanes.ts); a proxy in a data centre
// (SEXTANT_DC) gets its own data centre first and fails over on capacity alone: no
// outlierDetection needed, pulled-out endpoints count as unhealthy, and a DestinationRule may
// set the local-health threshold (its overprovisioning factor).
import { transportSocketMatchMetadata } from './mtls.ts';
import type { ProtoJson } from '../../envoy/index.ts';
import type { Proxy } from '../model.ts';
import { CLUSTER_LABEL, DEFAULT_CLUSTER_ID, NETWORK_LABEL, labelsMatch } from '../../registry/index.ts';
import type { Service, ServiceEndpoint, ServicePort, LoadBalancerSettings } from '../../registry/index.ts';
import type { SextantPushContext } from '../push/context.ts';
import { parseClusterName } from './names.ts';
import { effectivePolicy } from './policy.ts';
import { FAILOVER_THRESHOLD_ANNOTATION, parseFailoverThreshold } from '../../api/index.ts';
import { baselineEndpoints, laneOfSubset, laneTiers } from './lanes.ts';
import { proxyDataCentre } from './active-active.ts';

type Loc = { region: string; zone: string; subZone: string };

function localityKey(l: Loc | undefined): string {
  return l ? `${l.region}/${l.zone}/${l.subZone}` : '';
}

function localityPattern(pattern: string, l: Loc): boolean {
  const parts = pattern.split('/');
  const have = [l.region, l.zone, l.subZone];
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i];
    if (p === '*') return true;
    if (p !== have[i]) return false;
  }
  return true;
}

function lbEndpoint(ep: ServiceEndpoint, grpc: boolean, drainingUnhealthy = false): ProtoJson {
  const out: ProtoJson = {
    endpoint: { address: { socketAddress: { address: ep.address, portValue: ep.port } } },
    // DRAINING (pulled out): Envoy sends it no new requests; those in flight finish. Where
    // endpoints fall back by priority it is UNHEALTHY instead: Envoy leaves DRAINING hosts out
    // of a priority's health, so 1 of 3 left would read as fully healthy and keep all traffic.
    healthStatus: ep.draining === true ? (drainingUnhealthy ? 'UNHEALTHY' : 'DRAINING') : ep.healthy ? 'HEALTHY' : 'UNHEALTHY',
    loadBalancingWeight: ep.weight ?? 1,
  };
  if (!grpc) {
    const name = ep.source.slice(ep.source.indexOf('/') + 1);
    out['metadata'] = { filterMetadata: { istio: { workload: `${name.slice(name.indexOf('/') + 1)};${name.slice(0, name.indexOf('/'))}`, labels: ep.labels } } };
    // auto mTLS: endpoints with a sidecar (label security.istio.io/tlsMode: istio), as Istio's EDS marks them
    const tlsMatch = transportSocketMatchMetadata(ep.labels);
    if (tlsMatch !== undefined) (out['metadata'] as { filterMetadata: ProtoJson }).filterMetadata['envoy.transport_socket_match'] = tlsMatch;
  }
  return out;
}

interface LocalityOptions {
  /** Priority per locality relative to the proxy (failover), when enabled. */
  proxyLocality?: Loc;
  /** The proxy's labels, for `failoverPriority`. */
  proxyLabels?: Readonly<Record<string, string>>;
  /** The proxy's cluster and network, for `failoverPriority` on Istio's topology labels. */
  proxyTopology?: Topology;
  lb?: LoadBalancerSettings;
  /** Pulled-out endpoints count as unhealthy (priority failover on capacity). */
  drainingUnhealthy?: boolean;
}

/** Where a proxy or an endpoint is, as Istio's labels `topology.istio.io/cluster` and `…/network` name it. */
interface Topology {
  cluster: string;
  network?: string | undefined;
}

const TOPOLOGY_KEYS: Record<string, keyof Loc> = {
  'topology.kubernetes.io/region': 'region',
  'topology.kubernetes.io/zone': 'zone',
  'topology.istio.io/subzone': 'subZone',
};

function labelValue(key: string, labels: Readonly<Record<string, string>> | undefined, loc: Loc | undefined, topology?: Topology): string | undefined {
  const field = TOPOLOGY_KEYS[key];
  if (field) return loc?.[field];
  // Istio gives every proxy and endpoint its cluster and network labels.
  if (topology !== undefined && key === CLUSTER_LABEL) return topology.cluster;
  if (topology !== undefined && key === NETWORK_LABEL) return topology.network ?? labels?.[key];
  return labels?.[key];
}

/**
 * An endpoint's failover priority for this proxy: by `failoverPriority` labels (the longer
 * the matching prefix, the better), else by locality (subzone, zone, region, the failover
 * region, anything else), as Istio's locality load balancing does.
 */
function endpointPriority(ep: ServiceEndpoint, opts: LocalityOptions): number {
  const setting = opts.lb?.localityLbSetting;
  const me = opts.proxyLocality;
  const keys = setting?.failoverPriority ?? [];
  if (keys.length > 0 && (opts.proxyLabels || me)) {
    let matched = 0;
    const theirs: Topology = { cluster: ep.cluster ?? DEFAULT_CLUSTER_ID, network: ep.network };
    for (const k of keys) {
      const mine = labelValue(k, opts.proxyLabels, me, opts.proxyTopology);
      if (mine === undefined || mine !== labelValue(k, ep.labels, ep.locality, theirs)) break;
      matched++;
    }
    return keys.length - matched;
  }
  if (!me) return 0;
  const l = ep.locality;
  if (l && l.region === me.region) return l.zone === me.zone ? (l.subZone === me.subZone ? 0 : 1) : 2;
  const to = setting?.failover?.find((f) => f.from === me.region)?.to;
  if (to !== undefined) return l?.region === to ? 3 : 4;
  return 3;
}

/** Groups endpoints by locality (and failover priority) into Envoy's LocalityLbEndpoints. */
export function localityGroups(endpoints: readonly ServiceEndpoint[], grpc: boolean, opts: LocalityOptions = {}): ProtoJson[] {
  const me = opts.proxyLocality;
  const distribute = me ? opts.lb?.localityLbSetting?.distribute?.find((d) => d.from && localityPattern(d.from, me)) : undefined;
  const prioritized = !distribute && opts.lb?.localityLbSetting?.enabled !== false && (me !== undefined || (opts.lb?.localityLbSetting?.failoverPriority?.length ?? 0) > 0);
  // The common case, one group without locality or priority, skips grouping and sorting.
  if (!prioritized && !distribute && endpoints.every((e) => e.locality === undefined)) {
    if (endpoints.length === 0) return [];
    return [{ locality: {}, lbEndpoints: endpoints.map((e) => lbEndpoint(e, grpc, opts.drainingUnhealthy)), loadBalancingWeight: endpoints.reduce((sum, e) => sum + (e.weight ?? 1), 0) }];
  }
  const groups = new Map<string, { locality: Loc | undefined; priority: number; eps: ServiceEndpoint[] }>();
  for (const ep of endpoints) {
    const priority = prioritized ? endpointPriority(ep, opts) : 0;
    const k = `${localityKey(ep.locality)}\u0000${priority}`;
    let g = groups.get(k);
    if (!g) groups.set(k, (g = { locality: ep.locality, priority, eps: [] }));
    g.eps.push(ep);
  }
  const out: ProtoJson[] = [];
  for (const [, g] of [...groups.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))) {
    const entry: ProtoJson = {};
    const l = g.locality;
    entry['locality'] = l ? Object.fromEntries(Object.entries({ region: l.region, zone: l.zone, subZone: l.subZone }).filter(([, v]) => v !== '')) : {};
    entry['lbEndpoints'] = g.eps.map((e) => lbEndpoint(e, grpc, opts.drainingUnhealthy));
    let weight = g.eps.reduce((s, e) => s + (e.weight ?? 1), 0);
    if (distribute?.to && l) {
      const match = Object.entries(distribute.to).find(([pat]) => localityPattern(pat, l));
      weight = match ? match[1] : 0;
    }
    if (distribute && !l) weight = 0;
    if (weight === 0 && distribute) continue; // distribute sends nothing there
    entry['loadBalancingWeight'] = weight;
    if (g.priority > 0) entry['priority'] = g.priority;
    out.push(entry);
  }
  // Priorities must be contiguous from 0 (gRPC rejects gaps; Envoy warns).
  const used = [...new Set(out.map((e) => (e['priority'] as number | undefined) ?? 0))].sort((a, b) => a - b);
  if (used.length > 0 && used.some((p, i) => p !== i)) {
    for (const e of out) {
      const idx = used.indexOf((e['priority'] as number | undefined) ?? 0);
      if (idx > 0) e['priority'] = idx;
      else delete e['priority'];
    }
  }
  return out;
}

/**
 * Lane tiers as consecutive priorities: each tier's locality groups (own data centre first)
 * shifted below the tiers before it, so lanes and data centres make one priority list,
 * lane-major: s2@dc-a, s2@dc-b, baseline@dc-a, baseline@dc-b.
 */
export function tieredGroups(tiers: readonly (readonly ServiceEndpoint[])[], grpc: boolean, opts: LocalityOptions): ProtoJson[] {
  const out: ProtoJson[] = [];
  let base = 0;
  for (const tier of tiers) {
    const groups = localityGroups(tier, grpc, opts);
    if (groups.length === 0) continue;
    let top = 0;
    for (const g of groups) {
      const p = (g['priority'] as number | undefined) ?? 0;
      top = Math.max(top, p);
      if (base + p > 0) g['priority'] = base + p;
    }
    base += top + 1;
    out.push(...groups);
  }
  return out;
}

/** The DestinationRule's local-health threshold as Envoy's overprovisioning factor (percent), when it sets one. */
function overprovisioningFactor(dr: ResolvedOutbound['dr']): number | undefined {
  const v = dr?.resource.metadata.annotations?.[FAILOVER_THRESHOLD_ANNOTATION];
  if (v === undefined) return undefined;
  const t = parseFailoverThreshold(v);
  return typeof t === 'number' ? Math.round(10_000 / t) : undefined;
}

function subsetEndpoints(push: SextantPushContext, service: Service, port: number, subset: string, namespace: string): ServiceEndpoint[] {
  const all = push.registry.endpoints.get(service.key)?.get(port) ?? [];
  if (!subset) return all as ServiceEndpoint[];
  const dr = push.destinationRuleFor(service, namespace);
  const labels = dr?.spec.subsets?.find((s) => s.name === subset)?.labels;
  if (!dr || !dr.spec.subsets?.some((s) => s.name === subset)) return [];
  return all.filter((e) => labelsMatch(labels, e.labels));
}

/** The endpoints in cluster `clusterId` (an endpoint that names no cluster is in the default one). */
export function inCluster(endpoints: readonly ServiceEndpoint[], clusterId: string): ServiceEndpoint[] {
  return endpoints.filter((e) => (e.cluster ?? DEFAULT_CLUSTER_ID) === clusterId);
}

/**
 * The inline load assignment of a DNS cluster: its endpoints' hostnames, or the service host.
 * `clusterId` is the proxy's cluster: a cluster-local service keeps only that cluster's endpoints.
 */
export function dnsLoadAssignment(push: SextantPushContext, service: Service, port: ServicePort, subset: string, name: string, namespace: string, clusterId?: string): ProtoJson {
  let eps = subsetEndpoints(push, service, port.port, subset, namespace);
  if (clusterId !== undefined && push.isClusterLocal(service)) eps = inCluster(eps, clusterId);
  if (eps.length === 0 && !subset && (push.registry.endpoints.get(service.key)?.size ?? 0) === 0) {
    eps = [{ address: service.hostname, port: port.port, servicePort: port, labels: {}, healthy: true, source: service.source }];
  }
  return {
    clusterName: name,
    endpoints: localityGroups(eps, true).map((g) => ({ ...g, lbEndpoints: (g['lbEndpoints'] as ProtoJson[]).map((e) => ({ endpoint: e['endpoint'], loadBalancingWeight: e['loadBalancingWeight'] })) })),
  };
}

/**
 * The ClusterLoadAssignment for an outbound cluster name as `proxy` sees it; undefined when
 * the name is not an outbound cluster of a service the proxy can see. Memoized per snapshot
 * (per proxy locality only when locality failover applies, per proxy cluster only for a
 * cluster-local service, whose endpoints are those of the proxy's cluster).
 */
export function loadAssignment(push: SextantPushContext, proxy: Proxy, name: string): ProtoJson | undefined {
  // Which service, rule and policy a name means depends only on the proxy's namespace: it is
  // resolved once per namespace and name, not per proxy (990 proxies × their clusters).
  const resolved = push.memoize(`eds-resolve|${proxy.namespace}|${name}`, () => resolveOutbound(push, proxy.namespace, name));
  if (resolved === null) return undefined;
  const { service, dr, policy, subset, port, clusterLocal } = resolved;
  const grpc = proxy.generator === 'grpc';
  const loc = policy?.loadBalancer?.localityLbSetting;
  // A proxy in a data centre fails over by locality with or without outlierDetection (Istio needs it).
  const dcAware = proxyDataCentre(proxy) !== undefined && loc?.enabled !== false;
  const localityAware = proxy.locality !== undefined && ((policy !== undefined && loc?.enabled !== false &&
    ((loc?.distribute?.length ?? 0) > 0 || policy.outlierDetection !== undefined)) || dcAware);
  const lane = laneOfSubset(subset);
  // failoverPriority compares the proxy's labels with the endpoints'.
  const failoverKeys = loc?.enabled !== false ? (loc?.failoverPriority ?? []) : [];
  const topology: Topology = { cluster: proxy.clusterId, network: proxy.network };
  const labelsKey = failoverKeys.length > 0 ? JSON.stringify(failoverKeys.map((k) => labelValue(k, proxy.labels, proxy.locality, topology))) : '';
  const locKey = (localityAware ? localityKey(proxy.locality) : '') + labelsKey + (dcAware ? '|dc' : '');
  // Every other service's assignment is shared by all clusters' proxies.
  const clusterKey = clusterLocal ? `|cluster=${proxy.clusterId}` : '';
  return push.memoizeEndpoints(service.key, `eds|${grpc ? 'g' : 'e'}|${name}|${dr?.key ?? ''}|${locKey}${clusterKey}`, () => {
    const opts: LocalityOptions = {};
    if (localityAware && proxy.locality) opts.proxyLocality = proxy.locality;
    if (failoverKeys.length > 0) {
      opts.proxyLabels = proxy.labels;
      opts.proxyTopology = topology;
    }
    if (policy?.loadBalancer) opts.lb = policy.loadBalancer;
    if (dcAware || lane !== undefined) opts.drainingUnhealthy = true;
    const factor = overprovisioningFactor(dr);
    const cla: ProtoJson = { clusterName: name };
    if (lane !== undefined) {
      let all = (push.registry.endpoints.get(service.key)?.get(port) ?? []) as ServiceEndpoint[];
      if (clusterLocal) all = inCluster(all, proxy.clusterId);
      cla['endpoints'] = tieredGroups(laneTiers(push, service, lane, all) ?? [], grpc, opts);
    } else {
      let eps = subsetEndpoints(push, service, port, subset, proxy.namespace);
      if (clusterLocal) eps = inCluster(eps, proxy.clusterId);
      cla['endpoints'] = localityGroups(baselineEndpoints(push, service, eps), grpc, opts);
    }
    if (factor !== undefined) cla['policy'] = { overprovisioningFactor: factor };
    return cla;
  });
}

interface ResolvedOutbound {
  service: Service;
  dr: ReturnType<SextantPushContext['destinationRuleFor']>;
  policy: ReturnType<typeof effectivePolicy> | undefined;
  subset: string;
  port: number;
  /** MeshConfig serviceSettings: only the proxy's own cluster's endpoints are sent. */
  clusterLocal: boolean;
}

function resolveOutbound(push: SextantPushContext, namespace: string, name: string): ResolvedOutbound | null {
  const parsed = parseClusterName(name);
  if (!parsed || parsed.direction !== 'outbound') return null;
  const service = push.serviceFor(parsed.host, namespace);
  if (!service || !service.ports.some((p) => p.port === parsed.port)) return null;
  const dr = push.destinationRuleFor(service, namespace);
  // Only a DestinationRule can ask for locality-aware endpoints; without one, skip the policy.
  const policy = dr ? effectivePolicy(dr.spec, parsed.subset, parsed.port) : undefined;
  return { service, dr, policy, subset: parsed.subset, port: parsed.port, clusterLocal: push.isClusterLocal(service) };
}
