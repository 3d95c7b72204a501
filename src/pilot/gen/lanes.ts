// Lanes (LaneGroup, sextant.io/v1alpha1): per (service, port, lane) an outbound cluster
// `outbound|PORT|lane~LANE|HOST` whose endpoints are ordered as priorities, lane → parent lane →
// … → baseline (each split further by data centre for a proxy that has one), so a lane whose
// instance is down, ejected or not ready falls back in the data plane with no push in between;
// the routes that pick a lane cluster by the `x-sextant-lane` header (or a lane's mock); the
// default clusters of covered services hold baseline instances only; and the lanes HTTP filter
// (`sextant.filters.http.lanes`) that tells each sidecar its own lane and the lanes there are.
import { TYPED_STRUCT_TYPE } from '../../envoy/index.ts';
import type { ProtoJson } from '../../envoy/index.ts';
import {
  DEFAULT_BASELINE, LANE_HEADER, LANE_LABEL, LANE_TRACE_TABLE_DEFAULTS, parentLane, parseDurationMs, resolveLaneHost,
} from '../../api/index.ts';
import type { LaneGroupSpec, LaneMock, Resource } from '../../api/index.ts';
import { byAge, isHttpProtocol } from '../../registry/index.ts';
import type { Service, ServiceEndpoint } from '../../registry/index.ts';
import type { Proxy } from '../model.ts';
import type { SextantPushContext } from '../push/context.ts';
import { proxyServiceTargets } from '../push/scope.ts';
import { clusterName, parseClusterName } from './names.ts';
import { dataCentreRoutes, previousPriorities, priorityFailoverCluster, proxyDataCentre, servedDataCentreRoutes } from './active-active.ts';

/** Cluster subsets `lane~NAME` name lane clusters; `~` is not allowed in DestinationRule subset names. */
export const LANE_SUBSET_PREFIX = 'lane~';
export const LANES_FILTER = 'sextant.filters.http.lanes';
export const LANES_TYPE = 'type.googleapis.com/sextant.filters.http.lanes.v1alpha1.Lanes';
export const SERVED_LANE_HEADER = 'x-sextant-served-lane';
const HCM_FILTER = 'envoy.filters.network.http_connection_manager';

/** One lane of a group: its fallback chain (itself, then its ancestors) and its mocks by host. */
export interface LaneModel {
  name: string;
  /** The lanes whose instances serve it, in order (itself first); the baseline follows unless strict. */
  chain: readonly string[];
  mocks: ReadonlyMap<string, LaneMock>;
}

export interface LaneGroupModel {
  key: string;
  namespace: string;
  baseline: string;
  strict: boolean;
  lanes: readonly LaneModel[];
  hosts: ReadonlySet<string>;
}

/** Every LaneGroup of a snapshot, resolved once. */
export interface LanesModel {
  groups: readonly LaneGroupModel[];
  /** The group covering each service host (the oldest group, when several name it). */
  byHost: ReadonlyMap<string, LaneGroupModel>;
  /** Every declared lane name. */
  lanes: ReadonlySet<string>;
  traceTable: { maxEntries: number; ttlMs: number };
  trustedSources: readonly string[];
  /** Services covered by a strict group (for the sidecar's `x-sextant-lane-miss`). */
  strictHosts: readonly string[];
}

const EMPTY: LanesModel = { groups: [], byHost: new Map(), lanes: new Set(), traceTable: { ...LANE_TRACE_TABLE_DEFAULTS }, trustedSources: [], strictHosts: [] };

/** The snapshot's lane groups, memoized per snapshot (endpoint-only snapshots share it). */
export function lanesModel(push: SextantPushContext): LanesModel {
  return push.memoize('lanes|model', () => {
    const rs = push.resources.filter((r) => r.kind === 'LaneGroup').sort(byAge) as Resource<LaneGroupSpec>[];
    if (rs.length === 0) return EMPTY;
    const groups: LaneGroupModel[] = [];
    const byHost = new Map<string, LaneGroupModel>();
    const lanes = new Set<string>();
    let maxEntries = 0;
    let ttlMs = 0;
    const trusted = new Set<string>();
    for (const r of rs) {
      const spec = r.spec;
      const ns = r.metadata.namespace;
      const strict = spec.mode === 'strict';
      const models: LaneModel[] = spec.lanes.map((l) => {
        const chain: string[] = [];
        for (let n: string | undefined = l.name; n !== undefined; n = parentLane(n)) chain.push(n);
        return { name: l.name, chain: strict ? [l.name] : chain, mocks: new Map((l.mocks ?? []).map((m) => [resolveLaneHost(m.service, ns), m])) };
      });
      const hosts = new Set(spec.services.map((s) => resolveLaneHost(s, ns)));
      const g: LaneGroupModel = { key: `LaneGroup/${ns}/${r.metadata.name}`, namespace: ns, baseline: spec.baseline ?? DEFAULT_BASELINE, strict, lanes: models, hosts };
      groups.push(g);
      for (const h of hosts) if (!byHost.has(h)) byHost.set(h, g);
      for (const l of models) lanes.add(l.name);
      maxEntries = Math.max(maxEntries, spec.traceTable?.maxEntries ?? LANE_TRACE_TABLE_DEFAULTS.maxEntries);
      ttlMs = Math.max(ttlMs, (spec.traceTable?.ttl !== undefined ? parseDurationMs(spec.traceTable.ttl) : undefined) ?? LANE_TRACE_TABLE_DEFAULTS.ttlMs);
      for (const s of spec.trustedSources ?? []) trusted.add(s);
    }
    const strictHosts = [...byHost].filter(([, g]) => g.strict).map(([h]) => h).sort();
    return { groups, byHost, lanes, traceTable: { maxEntries, ttlMs }, trustedSources: [...trusted].sort(), strictHosts };
  });
}

/** The lane cluster of a service port: `outbound|PORT|lane~LANE|HOST`. */
export function laneClusterName(port: number, lane: string, host: string): string {
  return clusterName('outbound', port, `${LANE_SUBSET_PREFIX}${lane}`, host);
}

/** The lane a cluster subset names, or undefined for any other subset. */
export function laneOfSubset(subset: string): string | undefined {
  return subset.startsWith(LANE_SUBSET_PREFIX) ? subset.slice(LANE_SUBSET_PREFIX.length) : undefined;
}

/** The lane an endpoint is in: its lane label, or the baseline without one. */
function endpointLane(ep: ServiceEndpoint, baseline: string): string {
  return ep.labels[LANE_LABEL] ?? baseline;
}

/** Lanes get clusters on EDS-served HTTP ports (DNS services keep their inline endpoints, without lanes). */
function laneable(service: Service): boolean {
  return service.resolution === 'STATIC' || (service.resolution === 'NONE' && service.selector !== undefined);
}

/** The lane cluster names of a service (for EDS pushes), empty when no group covers it. */
export function laneClusterNames(push: SextantPushContext, service: Service): string[] {
  const g = lanesModel(push).byHost.get(service.hostname);
  if (g === undefined || !laneable(service)) return [];
  const out: string[] = [];
  for (const p of service.ports) {
    if (!isHttpProtocol(p.protocol)) continue;
    for (const l of g.lanes) if (!l.mocks.has(service.hostname)) out.push(laneClusterName(p.port, l.name, service.hostname));
  }
  return out;
}

/**
 * The lane clusters of the services in scope: each a copy of the service's default cluster
 * under the lane's name (same policy and TLS), with Sextant's passive health checking when the
 * DestinationRule has no outlierDetection, so a dead lane instance stops taking first tries.
 */
export function laneClusters(push: SextantPushContext, services: readonly Service[], defaults: (svc: Service) => readonly ProtoJson[]): ProtoJson[] {
  const model = lanesModel(push);
  if (model.groups.length === 0) return [];
  const out: ProtoJson[] = [];
  for (const svc of services) {
    const g = model.byHost.get(svc.hostname);
    if (g === undefined || !laneable(svc)) continue;
    for (const base of defaults(svc)) {
      const parsed = parseClusterName(String(base['name']));
      if (parsed === undefined || parsed.subset !== '' || base['type'] !== 'EDS') continue;
      const port = svc.ports.find((p) => p.port === parsed.port);
      if (port === undefined || !isHttpProtocol(port.protocol)) continue;
      for (const l of g.lanes) {
        if (l.mocks.has(svc.hostname)) continue;
        out.push(laneCluster(base, laneClusterName(parsed.port, l.name, svc.hostname), l.name));
      }
    }
  }
  return out;
}

// Lane copies by base cluster: the base is one object per service, rule and TLS mode within a
// snapshot (memoized by serviceClusters), so each lane copy is made once and shared likewise.
const laneCopies = new WeakMap<ProtoJson, Map<string, ProtoJson>>();

function laneCluster(base: ProtoJson, name: string, lane: string): ProtoJson {
  let copies = laneCopies.get(base);
  if (copies === undefined) laneCopies.set(base, (copies = new Map()));
  const hit = copies.get(name);
  if (hit !== undefined) return hit;
  const eds = base['edsClusterConfig'] as ProtoJson;
  let c: ProtoJson = { ...base, name, edsClusterConfig: { ...eds, serviceName: name } };
  const md = base['metadata'] as { filterMetadata?: { istio?: ProtoJson } } | undefined;
  if (md?.filterMetadata?.istio) c['metadata'] = { ...md, filterMetadata: { ...md.filterMetadata, istio: { ...md.filterMetadata.istio, subset: `${LANE_SUBSET_PREFIX}${lane}` } } };
  c = priorityFailoverCluster(c);
  copies.set(name, c);
  return c;
}

/**
 * The endpoints of a lane cluster as priority tiers: the lane's own instances, then each
 * ancestor's, then the baseline's (a strict group: the lane's alone). Empty tiers are dropped,
 * so the first lane of the chain that has instances is priority 0.
 */
export function laneTiers(push: SextantPushContext, service: Service, lane: string, endpoints: readonly ServiceEndpoint[]): ServiceEndpoint[][] | undefined {
  const g = lanesModel(push).byHost.get(service.hostname);
  const l = g?.lanes.find((x) => x.name === lane);
  if (g === undefined || l === undefined) return undefined;
  const order = g.strict ? l.chain : [...l.chain, g.baseline];
  const tiers = order.map(() => [] as ServiceEndpoint[]);
  const at = new Map(order.map((n, i) => [n, i]));
  for (const ep of endpoints) {
    const i = at.get(endpointLane(ep, g.baseline));
    if (i !== undefined) tiers[i]!.push(ep);
  }
  return tiers.filter((t) => t.length > 0);
}

/** A covered service's endpoints outside lane clusters: the baseline's only. */
export function baselineEndpoints(push: SextantPushContext, service: Service, endpoints: readonly ServiceEndpoint[]): readonly ServiceEndpoint[] {
  const g = lanesModel(push).byHost.get(service.hostname);
  if (g === undefined) return endpoints;
  return endpoints.filter((ep) => endpointLane(ep, g.baseline) === g.baseline);
}

// ---------------------------------------------------------------- routes

function laneHeaderMatch(match: ProtoJson, lane: string): ProtoJson {
  return { ...match, headers: [...((match['headers'] as ProtoJson[] | undefined) ?? []), { name: LANE_HEADER, stringMatch: { exact: lane } }] };
}

const servedLane = (lane: string): ProtoJson => ({ header: { key: SERVED_LANE_HEADER, value: lane }, appendAction: 'OVERWRITE_IF_EXISTS_OR_ADD' });

/** The mock's destination cluster, or undefined when its host names no service with that port. */
function mockCluster(push: SextantPushContext, proxy: Proxy, mock: LaneMock, ns: string): string | undefined {
  const host = resolveLaneHost(mock.host!, ns);
  const svc = push.serviceFor(host, proxy.namespace);
  if (svc === undefined) return undefined;
  const port = mock.port ?? (svc.ports.length === 1 ? svc.ports[0]!.port : undefined);
  if (port === undefined || !svc.ports.some((p) => p.port === port)) return undefined;
  return clusterName('outbound', port, '', host);
}

/** The lane variants of one route to a covered service's default cluster, placed before it. */
function laneVariants(push: SextantPushContext, proxy: Proxy, g: LaneGroupModel, host: string, port: number, route: ProtoJson): ProtoJson[] {
  const out: ProtoJson[] = [];
  const match = route['match'] as ProtoJson;
  const name = String(route['name'] ?? 'default');
  for (const l of g.lanes) {
    const mock = l.mocks.get(host);
    const variant: ProtoJson = { name: `${name}@${l.name}`, match: laneHeaderMatch(match, l.name) };
    if (route['decorator'] !== undefined) variant['decorator'] = route['decorator'];
    if (mock?.directResponse !== undefined) {
      variant['directResponse'] = { status: mock.directResponse.status, ...(mock.directResponse.body !== undefined ? { body: { inlineString: mock.directResponse.body } } : {}) };
      variant['responseHeadersToAdd'] = [servedLane(l.name)];
    } else if (mock?.host !== undefined) {
      const cluster = mockCluster(push, proxy, mock, g.namespace);
      if (cluster === undefined) continue; // the mock host is not (yet) a service: the baseline serves
      variant['route'] = { ...(route['route'] as ProtoJson), cluster };
      variant['responseHeadersToAdd'] = [servedLane(l.name)];
    } else {
      const action = route['route'] as ProtoJson;
      const retry = action['retryPolicy'] as ProtoJson | undefined;
      variant['route'] = { ...action, cluster: laneClusterName(port, l.name, host), ...(retry !== undefined ? { retryPolicy: { ...retry, retryPriority: previousPriorities(Number(retry['numRetries'] ?? 1)) } } : {}) };
    }
    for (const k of ['requestHeadersToAdd', 'requestHeadersToRemove', 'responseHeadersToRemove', 'typedPerFilterConfig']) if (route[k] !== undefined) variant[k] = route[k];
    if (route['responseHeadersToAdd'] !== undefined) variant['responseHeadersToAdd'] = [...(route['responseHeadersToAdd'] as ProtoJson[]), ...((variant['responseHeadersToAdd'] as ProtoJson[] | undefined) ?? [])];
    out.push(variant);
  }
  return out;
}

/** A virtual host with lane variants before each route to a covered service's default cluster. */
function laneVirtualHost(push: SextantPushContext, proxy: Proxy, model: LanesModel, vh: ProtoJson): ProtoJson {
  const vhName = String(vh['name'] ?? '');
  const colon = vhName.lastIndexOf(':');
  const host = colon > 0 ? vhName.slice(0, colon) : vhName;
  const port = Number(vhName.slice(colon + 1));
  const g = model.byHost.get(host);
  if (g === undefined || !Number.isInteger(port)) return vh;
  const svc = push.serviceFor(host, proxy.namespace);
  if (svc === undefined || !laneable(svc)) return vh;
  const plain = clusterName('outbound', port, '', host);
  const routes: ProtoJson[] = [];
  let changed = false;
  for (const r of (vh['routes'] as ProtoJson[] | undefined) ?? []) {
    if ((r['route'] as ProtoJson | undefined)?.['cluster'] === plain) {
      routes.push(...laneVariants(push, proxy, g, host, port, r));
      changed = true;
    }
    routes.push(r);
  }
  return changed ? { ...vh, routes } : vh;
}

const routeCopies = new WeakMap<ProtoJson, Map<string, ProtoJson>>();

/**
 * An outbound route configuration as this proxy gets it: lane variants for covered services
 * and, for a proxy in a data centre, the data-centre headers and retries to the other one.
 * Cached per route configuration object (shared within a snapshot) and data centre.
 */
export function laneRoutes(push: SextantPushContext, proxy: Proxy, rc: ProtoJson): ProtoJson {
  const model = lanesModel(push);
  const dc = proxyDataCentre(proxy);
  if (model.groups.length === 0 && dc === undefined) return rc;
  let copies = routeCopies.get(rc);
  if (copies === undefined) routeCopies.set(rc, (copies = new Map()));
  const key = `${proxy.namespace}|${dc ?? ''}`;
  const hit = copies.get(key);
  if (hit !== undefined) return hit;
  let out = rc;
  if (model.groups.length > 0) {
    const vhs = (rc['virtualHosts'] as ProtoJson[] | undefined) ?? [];
    const next = vhs.map((vh) => laneVirtualHost(push, proxy, model, vh));
    if (next.some((vh, i) => vh !== vhs[i])) out = { ...rc, virtualHosts: next };
  }
  if (dc !== undefined) out = dataCentreRoutes(out, dc);
  copies.set(key, out);
  return out;
}

// ---------------------------------------------------------------- the lanes filter

/** The proxy's own lane: its lane label, else the baseline of the group covering its service. */
export function ownLane(push: SextantPushContext, proxy: Proxy): { lane: string; baseline: string } {
  const model = lanesModel(push);
  let baseline = model.groups[0]?.baseline ?? DEFAULT_BASELINE;
  for (const t of proxyServiceTargets(push, proxy)) {
    const g = model.byHost.get(t.service.hostname);
    if (g !== undefined) { baseline = g.baseline; break; }
  }
  return { lane: proxy.labels[LANE_LABEL] ?? baseline, baseline };
}

/** What distinguishes proxies whose listeners differ by lanes or data centre (for the listener memo). */
export function laneClassKey(push: SextantPushContext, proxy: Proxy): string {
  const dc = proxyDataCentre(proxy);
  const lanes = lanesModel(push).groups.length > 0;
  if (!lanes && dc === undefined) return '';
  const own = lanes ? ownLane(push, proxy) : undefined;
  return `lanes=${own ? `${own.lane}/${own.baseline}` : ''}|dc=${dc ?? ''}`;
}

/** The lanes filter of one connection manager (the contract between pilot and sidecar). */
export function lanesFilter(push: SextantPushContext, proxy: Proxy, direction: 'inbound' | 'outbound'): ProtoJson {
  const model = lanesModel(push);
  const own = model.groups.length > 0 ? ownLane(push, proxy) : { lane: DEFAULT_BASELINE, baseline: DEFAULT_BASELINE };
  const dc = proxyDataCentre(proxy);
  return {
    name: LANES_FILTER,
    // A proxy without this filter still routes by the lane header: the filter only adds to it.
    isOptional: true,
    typedConfig: {
      '@type': TYPED_STRUCT_TYPE,
      typeUrl: LANES_TYPE,
      value: {
        direction,
        ownLane: own.lane,
        baseline: own.baseline,
        lanes: [...model.lanes].sort(),
        strictHosts: model.strictHosts,
        traceTable: model.traceTable,
        trustedSources: model.trustedSources,
        ...(dc !== undefined ? { dataCentre: dc } : {}),
      },
    },
  };
}

function withLanesFilter(chain: ProtoJson, filter: ProtoJson, dc: string | undefined, inbound: boolean): ProtoJson {
  const filters = (chain['filters'] as ProtoJson[] | undefined) ?? [];
  const i = filters.findIndex((f) => f['name'] === HCM_FILTER);
  if (i < 0) return chain;
  const hcm = filters[i]!;
  const tc = hcm['typedConfig'] as ProtoJson;
  const next: ProtoJson = { ...tc, httpFilters: [filter, ...((tc['httpFilters'] as ProtoJson[] | undefined) ?? [])] };
  // Inbound route configurations are inline: their responses name the data centre that served.
  if (inbound && dc !== undefined && tc['routeConfig'] !== undefined) next['routeConfig'] = servedDataCentreRoutes(tc['routeConfig'] as ProtoJson, dc);
  return { ...chain, filters: filters.map((f, j) => (j === i ? { ...hcm, typedConfig: next } : f)) };
}

/**
 * Puts the lanes filter first in every HTTP connection manager of a sidecar when there are lane
 * groups or the proxy has a data centre; inbound chains also name the serving data centre.
 */
export function applyLanes(push: SextantPushContext, proxy: Proxy, listeners: ProtoJson[]): ProtoJson[] {
  const dc = proxyDataCentre(proxy);
  if (lanesModel(push).groups.length === 0 && dc === undefined) return listeners;
  const inboundFilter = lanesFilter(push, proxy, 'inbound');
  const outboundFilter = lanesFilter(push, proxy, 'outbound');
  return listeners.map((l) => {
    const inbound = l['trafficDirection'] === 'INBOUND';
    const filter = inbound ? inboundFilter : outboundFilter;
    const chains = (l['filterChains'] as ProtoJson[] | undefined) ?? [];
    const next = chains.map((c) => withLanesFilter(c, filter, dc, inbound));
    return next.some((c, i) => c !== chains[i]) ? { ...l, filterChains: next } : l;
  });
}
