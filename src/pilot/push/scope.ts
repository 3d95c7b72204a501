// Who sees what: the Sidecar scope of a proxy (egress hosts, exportTo visibility, the
// default Sidecar in the root namespace), which EnvoyFilters select it, and planPush: the
// smallest push a change requires for one proxy, or null when the change is not its concern.
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, PUSH_ORDER, ROUTE_TYPE } from '../../envoy/index.ts';
import type { XdsTypeUrl } from '../../envoy/index.ts';
import type { ConfigChange, Proxy, PushPlan } from '../model.ts';
import { CLUSTER_LABEL, DEFAULT_CLUSTER_ID, labelsMatch } from '../../registry/index.ts';
import type { Registry, Service, EnvoyFilterSpec, SidecarSpec, VirtualServiceSpec, IstioEgressListener } from '../../registry/index.ts';
import { ROOT_NAMESPACE, hostMatches, resolveHost } from './context.ts';
import { MESH_CONFIG_KEY } from '../mesh-config/index.ts';
import type { Indexed, SextantPushContext } from './context.ts';
import { clusterName } from '../gen/names.ts';
import { authorizationPolicySelects } from '../gen/rbac.ts';
import { requestAuthenticationSelects } from '../gen/jwt.ts';
import { adaptiveLimitSelects } from '../gen/adaptive.ts';
import { rateLimitSelects } from '../gen/ratelimit.ts';
import { operationsRequested, telemetrySelects } from '../gen/telemetry.ts';
import { laneClusterNames } from '../gen/lanes.ts';
import { isHub, isManagedSidecar, lazyFallbackFor } from '../gen/lazyscope.ts';

/** One egress listener of a Sidecar (or the implicit catch-all one), with what it can reach. */
export interface EgressScope {
  listener: IstioEgressListener;
  services: readonly Service[];
  virtualServices: readonly Indexed<VirtualServiceSpec>[];
}

/** A proxy's view of the mesh; identical for every proxy of one namespace and Sidecar. */
export interface SidecarScope {
  namespace: string;
  sidecar: Indexed<SidecarSpec> | undefined;
  egress: readonly EgressScope[];
  /** Union over egress listeners, in registry order. */
  services: readonly Service[];
  serviceKeys: ReadonlySet<string>;
  hostnames: ReadonlySet<string>;
  virtualServices: readonly Indexed<VirtualServiceSpec>[];
  /** VirtualServices in scope and the delegates their routes point at (`VirtualService/ns/name`). */
  virtualServiceKeys: ReadonlySet<string>;
  outboundTrafficPolicy: 'ALLOW_ANY' | 'REGISTRY_ONLY';
  /** Whether some route in scope matches on source labels: then output differs per proxy labels. */
  sourceLabelDependent: boolean;
}

interface HostRule {
  namespace: string; // '*', or a namespace name ('.' and '~' resolved)
  host: string;
}

function parseHostRules(hosts: readonly string[], namespace: string): HostRule[] {
  const rules: HostRule[] = [];
  for (const h of hosts) {
    const slash = h.indexOf('/');
    const ns = slash >= 0 ? h.slice(0, slash) : '*';
    const host = slash >= 0 ? h.slice(slash + 1) : h;
    if (ns === '~') continue; // `~/` imports nothing
    rules.push({ namespace: ns === '.' ? namespace : ns, host });
  }
  return rules;
}

function ruleMatches(rules: readonly HostRule[], namespace: string, host: string): boolean {
  for (const r of rules) {
    if (r.namespace !== '*' && r.namespace !== namespace) continue;
    if (hostMatches(r.host, host) || (r.host.startsWith('*') && host.startsWith('*') && host.endsWith(r.host.slice(1)))) return true;
  }
  return false;
}

function visibleFrom(exportTo: ReadonlySet<string> | null, owner: string, namespace: string): boolean {
  return owner === namespace || exportTo === null || exportTo.has(namespace);
}

/**
 * The Sidecar that applies to a proxy: one in its namespace whose workloadSelector matches
 * its labels, else the namespace's one without a selector, else the root namespace's.
 */
export function sidecarFor(push: SextantPushContext, proxy: Proxy): Indexed<SidecarSpec> | undefined {
  if (proxy.type === 'router') return undefined; // Sidecar resources never apply to gateways
  if (isHub(proxy)) return undefined; // lazy scope: a hub has full scope
  const own = push.sidecarsByNamespace.get(proxy.namespace) ?? [];
  const selects = (s: Indexed<SidecarSpec>): boolean => s.spec.workloadSelector?.labels !== undefined && labelsMatch(s.spec.workloadSelector.labels, proxy.labels);
  // lazy scope: a Sidecar the user wrote for the workload wins over the controller's
  const selected = own.find((s) => selects(s) && !isManagedSidecar(s.resource)) ?? own.find(selects);
  if (selected) return selected;
  const nsWide = own.find((s) => !s.spec.workloadSelector?.labels);
  if (nsWide) return nsWide;
  return (push.sidecarsByNamespace.get(push.mesh.rootNamespace) ?? []).find((s) => !s.spec.workloadSelector?.labels);
}

/** The proxy's scope, memoized per snapshot, namespace and Sidecar. */
export function sidecarScope(push: SextantPushContext, proxy: Proxy): SidecarScope {
  const sidecar = sidecarFor(push, proxy);
  const ns = proxy.namespace;
  return push.memoize(`scope|${ns}|${sidecar?.key ?? ''}`, () => computeScope(push, ns, sidecar));
}

/** The service half of a scope: depends only on the registry, the namespace and the egress hosts. */
interface ScopeServices {
  egress: readonly (readonly Service[])[];
  services: readonly Service[];
  serviceKeys: ReadonlySet<string>;
  hostnames: ReadonlySet<string>;
}

/**
 * Service halves of scopes, per registry service list: a snapshot that shares its
 * predecessor's services (no ServiceEntry or WorkloadEntry changed, or only endpoints did)
 * reuses them instead of filtering every service again per namespace. Bounded by
 * namespaces × distinct egress specs, and dropped with the service list.
 */
const scopeServicesByRegistry = new WeakMap<Registry['services'], Map<string, ScopeServices>>();

function scopeServices(push: SextantPushContext, ns: string, egressSpecs: readonly IstioEgressListener[]): ScopeServices {
  let cache = scopeServicesByRegistry.get(push.registry.services);
  if (cache === undefined) scopeServicesByRegistry.set(push.registry.services, (cache = new Map()));
  const key = `${ns}|${JSON.stringify(egressSpecs.map((l) => l.hosts ?? []))}`;
  const hit = cache.get(key);
  if (hit !== undefined) return hit;
  const exportedKey = `${ns}|exported`;
  let exported = cache.get(exportedKey)?.services;
  if (exported === undefined) {
    exported = push.registry.services.filter((s) => visibleFrom(s.exportTo, s.namespace, ns));
    cache.set(exportedKey, { egress: [], services: exported, serviceKeys: new Set(), hostnames: new Set() });
  }
  const all = exported;
  const egress = egressSpecs.map((listener) => {
    const rules = parseHostRules(listener.hosts ?? [], ns);
    const wildcardAll = rules.some((r) => r.namespace === '*' && r.host === '*');
    return wildcardAll ? all : all.filter((s) => ruleMatches(rules, s.namespace, s.hostname));
  });
  const serviceKeys = new Set<string>();
  const services: Service[] = [];
  for (const list of egress) for (const s of list) if (!serviceKeys.has(s.key)) { serviceKeys.add(s.key); services.push(s); }
  const entry: ScopeServices = { egress, services, serviceKeys, hostnames: new Set(services.map((s) => s.hostname)) };
  cache.set(key, entry);
  return entry;
}

function computeScope(push: SextantPushContext, ns: string, sidecar: Indexed<SidecarSpec> | undefined): SidecarScope {
  const exportedVirtualServices = push.memoize(`exported-vs|${ns}`, () => push.virtualServices.filter((v) => visibleFrom(v.exportTo, v.namespace, ns)));
  // A sidecar in the root namespace is a template: `.` means the proxy's own namespace.
  const egressSpecs: IstioEgressListener[] = sidecar?.spec.egress && sidecar.spec.egress.length > 0
    ? sidecar.spec.egress
    : [{ hosts: ['*/*'] }];
  const svc = scopeServices(push, ns, egressSpecs);
  const egress: EgressScope[] = egressSpecs.map((listener, i) => {
    const rules = parseHostRules(listener.hosts ?? [], ns);
    const wildcardAll = rules.some((r) => r.namespace === '*' && r.host === '*');
    const virtualServices = wildcardAll
      ? exportedVirtualServices
      : exportedVirtualServices.filter((v) => (v.spec.hosts ?? []).some((h) => ruleMatches(rules, v.namespace, resolveHost(h, v.namespace))));
    return { listener, services: svc.egress[i] ?? [], virtualServices };
  });
  const vsKeys = new Set<string>();
  const vss: Indexed<VirtualServiceSpec>[] = [];
  for (const e of egress) {
    for (const v of e.virtualServices) if (!vsKeys.has(v.key)) { vsKeys.add(v.key); vss.push(v); }
  }
  // A delegate VirtualService has no hosts: it is in scope through the routes that name it.
  for (const v of vss) {
    for (const r of v.spec.http ?? []) if (r.delegate?.name) vsKeys.add(`VirtualService/${r.delegate.namespace ?? v.namespace}/${r.delegate.name}`);
  }
  return {
    namespace: ns,
    sidecar,
    egress,
    services: svc.services,
    serviceKeys: svc.serviceKeys,
    hostnames: svc.hostnames,
    virtualServices: vss,
    virtualServiceKeys: vsKeys,
    outboundTrafficPolicy: outboundMode(sidecar?.spec.outboundTrafficPolicy?.mode) ?? push.mesh.outboundTrafficPolicy.mode,
    sourceLabelDependent: vss.some((v) => [...(v.spec.http ?? []), ...(v.spec.tcp ?? []), ...(v.spec.tls ?? [])].some((r) => (r.match ?? []).some((m) => m.sourceLabels !== undefined))),
  };
}

/** A Sidecar's outboundTrafficPolicy mode; undefined when it sets none (the mesh config's applies). */
function outboundMode(mode: string | undefined): 'ALLOW_ANY' | 'REGISTRY_ONLY' | undefined {
  return mode === 'REGISTRY_ONLY' || mode === 'ALLOW_ANY' ? mode : undefined;
}

/** Whether an EnvoyFilter applies to a proxy: its namespace or the root one, and its selector. */
export function envoyFilterSelects(ef: Indexed<EnvoyFilterSpec>, proxy: Proxy, rootNamespace = ROOT_NAMESPACE): boolean {
  if (ef.namespace !== proxy.namespace && ef.namespace !== rootNamespace) return false;
  const sel = ef.spec.workloadSelector?.labels;
  return !sel || labelsMatch(sel, proxy.labels);
}

/** The EnvoyFilters for a proxy, root namespace first, each in priority then creation order. */
export function envoyFiltersFor(push: SextantPushContext, proxy: Proxy): Indexed<EnvoyFilterSpec>[] {
  const out: Indexed<EnvoyFilterSpec>[] = [];
  const root = push.mesh.rootNamespace;
  for (const ns of proxy.namespace === root ? [root] : [root, proxy.namespace]) {
    for (const ef of push.envoyFiltersByNamespace.get(ns) ?? []) if (envoyFilterSelects(ef, proxy, root)) out.push(ef);
  }
  return out;
}

/** The services the proxy itself serves (its inbound side): endpoints at its addresses. */
export function proxyServiceTargets(push: SextantPushContext, proxy: Proxy): { service: Service; port: number; targetPort: number; protocol: string; portName: string }[] {
  const out: { service: Service; port: number; targetPort: number; protocol: string; portName: string }[] = [];
  const seen = new Set<string>();
  for (const ip of proxy.ipAddresses) {
    for (const { service, endpoint } of push.registry.byAddress.get(ip) ?? []) {
      if (service.namespace !== proxy.namespace) continue;
      const k = `${service.key}|${endpoint.servicePort.port}`;
      if (seen.has(k)) continue;
      seen.add(k);
      out.push({ service, port: endpoint.servicePort.port, targetPort: endpoint.port, protocol: endpoint.servicePort.protocol, portName: endpoint.servicePort.name });
    }
  }
  return out;
}

/** Every outbound cluster name of a service as a proxy in `namespace` sees it (ports × subsets). */
export function serviceClusterNames(push: SextantPushContext, service: Service, namespace: string): string[] {
  const dr = push.destinationRuleFor(service, namespace);
  const names: string[] = [];
  for (const p of service.ports) {
    names.push(clusterName('outbound', p.port, '', service.hostname));
    for (const s of dr?.spec.subsets ?? []) if (s.name) names.push(clusterName('outbound', p.port, s.name, service.hostname));
  }
  names.push(...laneClusterNames(push, service)); // lanes: `outbound|PORT|lane~LANE|HOST`
  return names;
}

const ALL_TYPES: ReadonlySet<XdsTypeUrl> = new Set([CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE]);
/** Kinds whose change may touch a hub's scoped routes (any namespace's view of any host). */
const HUB_KINDS: ReadonlySet<string> = new Set(['VirtualService', 'DestinationRule', 'ServiceEntry', 'Sidecar', 'LazyScope']);

function kindOf(key: string): string {
  return key.slice(0, key.indexOf('/'));
}

/**
 * What `change` requires for `proxy`, or null when nothing it holds is touched. Config
 * with a workloadSelector (EnvoyFilter, Sidecar) concerns only the proxies it selects;
 * endpoint-only changes push EDS for the affected clusters the proxy holds.
 */
export function planPush(before: SextantPushContext, after: SextantPushContext, change: ConfigChange, proxy: Proxy): PushPlan | null {
  if (change.endpointsOnly) return planEndpointPush(before, after, change, proxy);
  const types = new Set<XdsTypeUrl>();
  const eds = new Set<string>();
  let edsAll = false;
  const scopeBefore = sidecarScope(before, proxy);
  const scopeAfter = sidecarScope(after, proxy);
  const isSelf = (key: string, ctx: SextantPushContext): boolean => {
    const r = ctx.byKey.get(key);
    const addr = (r?.spec as { address?: string } | undefined)?.address;
    return addr !== undefined && proxy.ipAddresses.includes(addr);
  };
  const addAll = (): void => { for (const t of ALL_TYPES) types.add(t); edsAll = true; };

  // lazy scope: a hub routes with every namespace's view; a lazy proxy's catch-all follows its LazyScope
  const hub = isHub(proxy);
  for (const key of change.keys) {
    if (key === MESH_CONFIG_KEY) {
      // Mesh-wide settings may change any resource of any proxy.
      addAll();
      continue;
    }
    if (hub && HUB_KINDS.has(kindOf(key))) {
      addAll();
      continue;
    }
    switch (kindOf(key)) {
      case 'LazyScope':
        if ([before, after].some((ctx) => lazyFallbackFor(ctx, proxy)?.scope.key === key)) addAll();
        break;
      case 'EnvoyFilter': {
        const concerned = [before, after].some((ctx) => {
          const r = ctx.byKey.get(key);
          if (!r) return false;
          const list = ctx.envoyFiltersByNamespace.get(r.metadata.namespace) ?? [];
          const ef = list.find((e) => e.key === key);
          return ef !== undefined && envoyFilterSelects(ef, proxy, ctx.mesh.rootNamespace);
        });
        if (concerned) {
          // Patches can touch any type; only the types the filter's patches target are resent.
          for (const ctx of [before, after]) {
            const spec = ctx.byKey.get(key)?.spec as EnvoyFilterSpec | undefined;
            for (const p of spec?.configPatches ?? []) {
              const t = patchType(p.applyTo);
              // Inbound route configurations are inline in listeners.
              if (t === ROUTE_TYPE && p.match?.context !== 'SIDECAR_OUTBOUND') types.add(LISTENER_TYPE);
              if (t && !(t === ROUTE_TYPE && p.match?.context === 'SIDECAR_INBOUND')) types.add(t);
            }
          }
        }
        break;
      }
      case 'AuthorizationPolicy':
        // RBAC filters live in the inbound listeners of the workloads a policy selects.
        if ([before, after].some((ctx) => authorizationPolicySelects(ctx.byKey.get(key), proxy, ctx.mesh.rootNamespace))) types.add(LISTENER_TYPE);
        break;
      case 'PeerAuthentication':
        // mTLS chains live in the inbound listeners of the namespace's workloads (mesh-wide from the root namespace)
        if ([before, after].some((ctx) => {
          const ns = ctx.byKey.get(key)?.metadata.namespace;
          return ns !== undefined && (ns === proxy.namespace || ns === ctx.mesh.rootNamespace);
        })) types.add(LISTENER_TYPE);
        break;
      case 'RequestAuthentication':
        if ([before, after].some((ctx) => requestAuthenticationSelects(ctx.byKey.get(key), proxy, ctx.mesh.rootNamespace))) types.add(LISTENER_TYPE);
        break;
      case 'AdaptiveLimit':
        // The admission gate lives in the inbound listeners of the workloads backing the rule's service.
        if ([before, after].some((ctx) => adaptiveLimitSelects(ctx, key, proxy))) types.add(LISTENER_TYPE);
        break;
      case 'RateLimit':
        // Local rate limits live in the inbound listeners of the workloads a rule selects (ratelimit.ts).
        if ([before, after].some((ctx) => rateLimitSelects(ctx, key, proxy))) types.add(LISTENER_TYPE);
        break;
      case 'Telemetry':
        // access logs and stats overrides live in the connection managers of the workloads it selects
        if ([before, after].some((ctx) => telemetrySelects(ctx, key, proxy))) types.add(LISTENER_TYPE);
        break;
      case 'RouteTemplates':
        // templates travel with the stats config, only while a Telemetry asks for request_operation
        if ([before, after].some((ctx) => operationsRequested(ctx))) types.add(LISTENER_TYPE);
        break;
      case 'LaneGroup':
        // Lane clusters, their endpoints and routes, and every sidecar's lanes filter (gen/lanes.ts).
        if (proxy.type !== 'router') addAll();
        break;
      case 'Sidecar':
        if (scopeBefore.sidecar?.key === key || scopeAfter.sidecar?.key === key || scopeBefore.sidecar?.key !== scopeAfter.sidecar?.key) addAll();
        break;
      case 'ServiceEntry': {
        const touches = (ctx: SextantPushContext, scope: SidecarScope): boolean =>
          (ctx.registry.bySource.get(key) ?? []).some((s) => scope.serviceKeys.has(s.key) || isServedBy(ctx, s.key, proxy));
        if (touches(before, scopeBefore) || touches(after, scopeAfter)) addAll();
        break;
      }
      case 'Gateway':
        if (proxy.type === 'router' && [before, after].some((ctx) => gatewaysSelecting(ctx, proxy).has(key))) {
          types.add(LISTENER_TYPE);
          types.add(ROUTE_TYPE);
        }
        break;
      case 'VirtualService':
        if (proxy.type === 'router') {
          const bound = [before, after].some((ctx) => {
            const selecting = gatewaysSelecting(ctx, proxy);
            const vs = ctx.gatewayVirtualServices.find((v) => v.key === key);
            return vs !== undefined && [...vs.gateways].some((g) => selecting.has(`Gateway/${g}`));
          });
          if (bound) { types.add(LISTENER_TYPE); types.add(ROUTE_TYPE); }
        }
        if (scopeBefore.virtualServiceKeys.has(key) || scopeAfter.virtualServiceKeys.has(key)) {
          types.add(LISTENER_TYPE);
          types.add(ROUTE_TYPE);
        }
        break;
      case 'DestinationRule': {
        const touches = (ctx: SextantPushContext, scope: SidecarScope): boolean => {
          const dr = ctx.destinationRulesByKey.get(key);
          if (!dr?.spec.host || !visibleFrom(dr.exportTo, dr.namespace, proxy.namespace)) return false;
          const host = resolveHost(dr.spec.host, dr.namespace);
          if (!host.startsWith('*')) return scope.hostnames.has(host);
          for (const h of scope.hostnames) if (hostMatches(host, h)) return true;
          return false;
        };
        if (touches(before, scopeBefore) || touches(after, scopeAfter)) {
          types.add(CLUSTER_TYPE);
          types.add(ENDPOINT_TYPE);
          edsAll = true;
        }
        break;
      }
      case 'WorkloadEntry': {
        if (isSelf(key, before) || isSelf(key, after)) {
          // The proxy's own workload: its inbound side may change, whatever else did.
          addAll();
          break;
        }
        for (const [ctx, scope] of [[before, scopeBefore], [after, scopeAfter]] as const) {
          for (const svcKey of ctx.registry.servicesOf.get(key) ?? []) {
            if (!scope.serviceKeys.has(svcKey)) continue;
            const svc = after.registry.byKey.get(svcKey) ?? ctx.registry.byKey.get(svcKey);
            if (!svc) continue;
            for (const n of serviceClusterNames(after, svc, proxy.namespace)) eds.add(n);
          }
        }
        if (eds.size > 0) types.add(ENDPOINT_TYPE);
        break;
      }
      default:
        break; // kinds the generators do not read (Gateway, telemetry, Sextant's own)
    }
  }
  if (types.size === 0) return null;
  if (types.has(ENDPOINT_TYPE) && !edsAll && types.size === 1) return { types, edsClusters: eds };
  return { types: orderTypes(types) };
}

const FULL_PLAN: PushPlan = { types: new Set(PUSH_ORDER) };
const CDS_PLAN: PushPlan = { types: new Set(PUSH_ORDER.filter((t) => t === CLUSTER_TYPE || t === ENDPOINT_TYPE)) };

/**
 * The plan for an endpoint-only change (WorkloadEntries, ServiceEntry `endpoints`): EDS for
 * the affected services' clusters the proxy's scope holds. What the batch means is worked out
 * once for the first proxy planned (endpointBatch), and the plan once per scope (and proxy
 * cluster, when a cluster-local service is affected), so planning P proxies costs P lookups
 * rather than P × K (batch size). A proxy whose own workload changed gets everything (its
 * inbound side may differ); a service with inline (DNS) endpoints gets CDS.
 */
function planEndpointPush(before: SextantPushContext, after: SextantPushContext, change: ConfigChange, proxy: Proxy): PushPlan | null {
  const batch = endpointBatch(before, after, change);
  for (const ip of proxy.ipAddresses) if (batch.selfAddresses.has(ip)) return FULL_PLAN;
  if (batch.otherKinds) return planPush(before, after, { keys: change.keys, endpointsOnly: false }, proxy);
  const scope = sidecarScope(after, proxy);
  const clusterId = batch.clusterDependent ? proxy.clusterId : '';
  let byCluster = batch.plans.get(scope);
  if (byCluster === undefined) batch.plans.set(scope, (byCluster = new Map()));
  let plan = byCluster.get(clusterId);
  if (plan === undefined) byCluster.set(clusterId, (plan = scopePlan(before, after, batch, scope, proxy.clusterId)));
  return plan;
}

/** One endpoint-only batch, whatever the proxy. */
interface EndpointBatch {
  /** Addresses whose proxy gets everything: a changed workload's, before or after, and the endpoints of a changed ServiceEntry's services. */
  selfAddresses: ReadonlySet<string>;
  /** Some key is neither a WorkloadEntry nor a ServiceEntry: planned as a config change. */
  otherKinds: boolean;
  /** Per key, the services whose endpoints it changed (see WorkloadFacts). */
  entries: readonly { services: readonly string[]; notClusterLocal: readonly string[] | undefined; clusters: ReadonlySet<string> }[];
  /** Some service is cluster-local: plans differ by proxy cluster. */
  clusterDependent: boolean;
  /** Plans made so far, per scope and proxy cluster ('' when not clusterDependent). */
  plans: Map<SidecarScope, Map<string, PushPlan | null>>;
}

const endpointBatches = new WeakMap<ConfigChange, { before: SextantPushContext; after: SextantPushContext; batch: EndpointBatch }>();

function endpointBatch(before: SextantPushContext, after: SextantPushContext, change: ConfigChange): EndpointBatch {
  const cached = endpointBatches.get(change);
  if (cached !== undefined && cached.before === before && cached.after === after) return cached.batch;
  const selfAddresses = new Set<string>();
  const entries: EndpointBatch['entries'][number][] = [];
  let otherKinds = false;
  let clusterDependent = false;
  for (const key of change.keys) {
    const kind = kindOf(key);
    if (kind === 'WorkloadEntry') {
      const facts = workloadFacts(before, after, change, key);
      for (const addr of facts.addresses) selfAddresses.add(addr);
      if (facts.notClusterLocal !== undefined) clusterDependent = true;
      entries.push(facts);
    } else if (kind === 'ServiceEntry') {
      const services = (after.registry.bySource.get(key) ?? before.registry.bySource.get(key) ?? []).map((s) => s.key);
      // The proxies serving one of them (isServedBy): their inbound side may change.
      for (const ctx of [before, after]) {
        for (const svcKey of services) {
          for (const list of ctx.registry.endpoints.get(svcKey)?.values() ?? []) for (const ep of list) selfAddresses.add(ep.address);
        }
      }
      entries.push({ services, notClusterLocal: undefined, clusters: new Set() });
    } else {
      otherKinds = true;
    }
  }
  const batch: EndpointBatch = { selfAddresses, otherKinds, entries, clusterDependent, plans: new Map() };
  endpointBatches.set(change, { before, after, batch });
  return batch;
}

/** The plan of a batch for the proxies of one scope (in cluster `clusterId`), not serving any changed workload. */
function scopePlan(before: SextantPushContext, after: SextantPushContext, batch: EndpointBatch, scope: SidecarScope, clusterId: string): PushPlan | null {
  const eds = new Set<string>();
  let cds = false;
  for (const entry of batch.entries) {
    // A cluster-local service's endpoints in other clusters are not this proxy's concern.
    const services = entry.notClusterLocal !== undefined && !entry.clusters.has(clusterId) ? entry.notClusterLocal : entry.services;
    for (const svcKey of services) {
      if (!scope.serviceKeys.has(svcKey)) continue;
      const svc = after.registry.byKey.get(svcKey) ?? before.registry.byKey.get(svcKey);
      if (!svc) continue;
      if (svc.resolution === 'DNS' || svc.resolution === 'DNS_ROUND_ROBIN') cds = true;
      for (const n of serviceClusterNames(after, svc, scope.namespace)) eds.add(n);
    }
  }
  if (cds) return CDS_PLAN;
  if (eds.size === 0) return null;
  return { types: new Set([ENDPOINT_TYPE]), edsClusters: eds };
}

/** What an endpoint change of one WorkloadEntry means whatever the proxy (see workloadFacts). */
interface WorkloadFacts {
  /** Its address before and after: the proxy at one of them gets everything. */
  addresses: string[];
  /** The services it fed before or feeds now. */
  services: readonly string[];
  /** `services` without the cluster-local ones, when some are: for proxies in other clusters. */
  notClusterLocal: readonly string[] | undefined;
  clusters: Set<string>;
}

// Per change (the server plans every proxy with the same change object): computed once for
// the first proxy, not once per proxy, so planning a batch of K workloads for P proxies costs
// K×P lookups rather than K×P set and array constructions.
const workloadFactsCache = new WeakMap<ConfigChange, { before: SextantPushContext; after: SextantPushContext; facts: Map<string, WorkloadFacts> }>();

function workloadFacts(before: SextantPushContext, after: SextantPushContext, change: ConfigChange, key: string): WorkloadFacts {
  let cached = workloadFactsCache.get(change);
  if (cached === undefined || cached.before !== before || cached.after !== after) {
    cached = { before, after, facts: new Map() };
    workloadFactsCache.set(change, cached);
  }
  let facts = cached.facts.get(key);
  if (facts !== undefined) return facts;
  const addresses: string[] = [];
  for (const ctx of [before, after]) {
    const addr = (ctx.byKey.get(key)?.spec as { address?: string } | undefined)?.address;
    if (addr !== undefined && !addresses.includes(addr)) addresses.push(addr);
  }
  const was = before.registry.servicesOf.get(key) ?? [];
  const is = after.registry.servicesOf.get(key) ?? [];
  const services = was.length === 0 ? is : is.length === 0 ? was : [...new Set([...was, ...is])];
  const local = (k: string): boolean => { const svc = after.registry.byKey.get(k); return svc !== undefined && after.isClusterLocal(svc); };
  const notClusterLocal = services.some(local) ? services.filter((k) => !local(k)) : undefined;
  facts = { addresses, services, notClusterLocal, clusters: notClusterLocal === undefined ? new Set() : workloadClusters(before, after, key) };
  cached.facts.set(key, facts);
  return facts;
}

/** The clusters a WorkloadEntry was in and is in (label `topology.istio.io/cluster`, else the default cluster). */
function workloadClusters(before: SextantPushContext, after: SextantPushContext, key: string): Set<string> {
  const out = new Set<string>();
  for (const ctx of [before, after]) {
    const r = ctx.byKey.get(key);
    if (r === undefined) continue;
    const spec = r.spec as { labels?: Record<string, string> } | undefined;
    out.add(spec?.labels?.[CLUSTER_LABEL] || r.metadata.labels?.[CLUSTER_LABEL] || DEFAULT_CLUSTER_ID);
  }
  return out;
}

/** Keys (`Gateway/ns/name`) of the Gateways whose selector matches a gateway proxy. */
function gatewaysSelecting(ctx: SextantPushContext, proxy: Proxy): Set<string> {
  return new Set(ctx.gateways.filter((g) => g.spec.selector !== undefined && labelsMatch(g.spec.selector, proxy.labels)).map((g) => g.key));
}

function isServedBy(ctx: SextantPushContext, serviceKey: string, proxy: Proxy): boolean {
  for (const ip of proxy.ipAddresses) {
    for (const t of ctx.registry.byAddress.get(ip) ?? []) if (t.service.key === serviceKey) return true;
  }
  return false;
}

function orderTypes(types: Set<XdsTypeUrl>): Set<XdsTypeUrl> {
  // A cluster change resends its endpoints: Envoy drops EDS state of an updated cluster.
  if (types.has(CLUSTER_TYPE)) types.add(ENDPOINT_TYPE);
  return new Set(PUSH_ORDER.filter((t) => types.has(t)));
}

function patchType(applyTo: string | undefined): XdsTypeUrl | undefined {
  switch (applyTo) {
    case 'LISTENER': case 'FILTER_CHAIN': case 'NETWORK_FILTER': case 'HTTP_FILTER': case 'LISTENER_FILTER':
      return LISTENER_TYPE;
    case 'ROUTE_CONFIGURATION': case 'VIRTUAL_HOST': case 'HTTP_ROUTE':
      return ROUTE_TYPE;
    case 'CLUSTER':
      return CLUSTER_TYPE;
    default:
      return undefined;
  }
}
