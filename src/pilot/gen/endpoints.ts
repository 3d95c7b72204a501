// EDS: a ClusterLoadAssignment per outbound cluster: the service's endpoints (only the
// subset's, by label) grouped by locality, with weights, health and Istio metadata.
// Identical for every proxy that sees the same service and rule, so it is memoized.
import type { ProtoJson } from '../../envoy/index.ts';
import type { Proxy } from '../model.ts';
import { labelsMatch } from '../../registry/index.ts';
import type { Service, ServiceEndpoint, ServicePort, LoadBalancerSettings } from '../../registry/index.ts';
import type { SextantPushContext } from '../push/context.ts';
import { parseClusterName } from './names.ts';
import { effectivePolicy } from './policy.ts';

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

function lbEndpoint(ep: ServiceEndpoint, grpc: boolean): ProtoJson {
  const out: ProtoJson = {
    endpoint: { address: { socketAddress: { address: ep.address, portValue: ep.port } } },
    healthStatus: ep.healthy ? 'HEALTHY' : 'UNHEALTHY',
    loadBalancingWeight: ep.weight ?? 1,
  };
  if (!grpc) {
    const name = ep.source.slice(ep.source.indexOf('/') + 1);
    out['metadata'] = { filterMetadata: { istio: { workload: `${name.slice(name.indexOf('/') + 1)};${name.slice(0, name.indexOf('/'))}`, labels: { ...ep.labels } } } };
  }
  return out;
}

interface LocalityOptions {
  /** Priority per locality relative to the proxy (failover), when enabled. */
  proxyLocality?: Loc;
  lb?: LoadBalancerSettings;
}

/** Groups endpoints by locality into Envoy's LocalityLbEndpoints. */
export function localityGroups(endpoints: readonly ServiceEndpoint[], grpc: boolean, opts: LocalityOptions = {}): ProtoJson[] {
  const groups = new Map<string, { locality: Loc | undefined; eps: ServiceEndpoint[] }>();
  for (const ep of endpoints) {
    const k = localityKey(ep.locality);
    let g = groups.get(k);
    if (!g) groups.set(k, (g = { locality: ep.locality, eps: [] }));
    g.eps.push(ep);
  }
  const out: ProtoJson[] = [];
  const me = opts.proxyLocality;
  const distribute = me ? opts.lb?.localityLbSetting?.distribute?.find((d) => d.from && localityPattern(d.from, me)) : undefined;
  for (const [, g] of [...groups.entries()].sort((a, b) => a[0].localeCompare(b[0]))) {
    const entry: ProtoJson = {};
    const l = g.locality;
    entry['locality'] = l ? Object.fromEntries(Object.entries({ region: l.region, zone: l.zone, subZone: l.subZone }).filter(([, v]) => v !== '')) : {};
    entry['lbEndpoints'] = g.eps.map((e) => lbEndpoint(e, grpc));
    let weight = g.eps.reduce((s, e) => s + (e.weight ?? 1), 0);
    if (distribute?.to && l) {
      const match = Object.entries(distribute.to).find(([pat]) => localityPattern(pat, l));
      weight = match ? match[1] : 0;
    }
    if (distribute && !l) weight = 0;
    if (weight === 0 && distribute) continue; // distribute sends nothing there
    entry['loadBalancingWeight'] = weight;
    if (me && !distribute && opts.lb?.localityLbSetting?.enabled !== false) {
      let p = 3;
      if (l && l.region === me.region) p = l.zone === me.zone ? (l.subZone === me.subZone ? 0 : 1) : 2;
      if (p > 0) entry['priority'] = p;
    }
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

function subsetEndpoints(push: SextantPushContext, service: Service, port: number, subset: string, namespace: string): ServiceEndpoint[] {
  const all = push.registry.endpoints.get(service.key)?.get(port) ?? [];
  if (!subset) return all as ServiceEndpoint[];
  const dr = push.destinationRuleFor(service, namespace);
  const labels = dr?.spec.subsets?.find((s) => s.name === subset)?.labels;
  if (!dr || !dr.spec.subsets?.some((s) => s.name === subset)) return [];
  return all.filter((e) => labelsMatch(labels, e.labels));
}

/** The inline load assignment of a DNS cluster: its endpoints' hostnames, or the service host. */
export function dnsLoadAssignment(push: SextantPushContext, service: Service, port: ServicePort, subset: string, name: string): ProtoJson {
  let eps = subsetEndpoints(push, service, port.port, subset, service.namespace);
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
 * (per proxy locality only when locality failover applies).
 */
export function loadAssignment(push: SextantPushContext, proxy: Proxy, name: string): ProtoJson | undefined {
  const parsed = parseClusterName(name);
  if (!parsed || parsed.direction !== 'outbound') return undefined;
  const service = push.serviceFor(parsed.host, proxy.namespace);
  if (!service || !service.ports.some((p) => p.port === parsed.port)) return undefined;
  const dr = push.destinationRuleFor(service, proxy.namespace);
  const grpc = proxy.generator === 'grpc';
  // Locality only matters for proxies that announce one: the common case skips the policy.
  const policy = proxy.locality ? effectivePolicy(dr?.spec, parsed.subset, parsed.port) : undefined;
  const loc = policy?.loadBalancer?.localityLbSetting;
  const localityAware = policy !== undefined && loc?.enabled !== false &&
    ((loc?.distribute?.length ?? 0) > 0 || policy.outlierDetection !== undefined);
  const locKey = localityAware ? localityKey(proxy.locality) : '';
  return push.memoize(`eds|${grpc ? 'g' : 'e'}|${name}|${service.key}|${dr?.key ?? ''}|${locKey}`, () => {
    const eps = subsetEndpoints(push, service, parsed.port, parsed.subset, proxy.namespace);
    const opts: LocalityOptions = {};
    if (localityAware && proxy.locality) opts.proxyLocality = proxy.locality;
    if (policy?.loadBalancer) opts.lb = policy.loadBalancer;
    return { clusterName: name, endpoints: localityGroups(eps, grpc, opts) };
  });
}
