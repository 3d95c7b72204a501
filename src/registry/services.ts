// The service registry: services and their endpoints, built in one pass from ServiceEntry
// (hosts, ports, inline endpoints) and WorkloadEntry (selected by a ServiceEntry's
// workloadSelector), the way istiod's serviceentry controller does it, without Kubernetes.
import type { Resource } from '../api/resource.ts';
import type { ServiceEntrySpec, WorkloadEntrySpec, PortSpec } from './istio.ts';
import { OverlayMap } from './overlay.ts';

export type Protocol = 'HTTP' | 'HTTP2' | 'GRPC' | 'GRPC-WEB' | 'HTTPS' | 'TLS' | 'TCP' | 'MONGO' | 'REDIS' | 'MYSQL' | 'UDP' | 'UNKNOWN';

export interface ServicePort {
  name: string;
  port: number;
  protocol: Protocol;
  targetPort?: number;
}

export type Resolution = 'NONE' | 'STATIC' | 'DNS' | 'DNS_ROUND_ROBIN' | 'DYNAMIC_DNS';

/** One host of one ServiceEntry: the unit clusters and virtual hosts are made of. */
export interface Service {
  /** `namespace/hostname`, unique in a registry. */
  key: string;
  hostname: string;
  namespace: string;
  ports: readonly ServicePort[];
  resolution: Resolution;
  location: 'MESH_EXTERNAL' | 'MESH_INTERNAL';
  addresses: readonly string[];
  /** Namespaces the service is visible from; null means every namespace (`*`). */
  exportTo: ReadonlySet<string> | null;
  /** Labels of the workloadSelector, when endpoints come from WorkloadEntries. */
  selector?: Readonly<Record<string, string>>;
  /** `ServiceEntry/ns/name` that declared it. */
  source: string;
}

export interface Locality {
  region: string;
  zone: string;
  subZone: string;
}

/** One endpoint of one service port. */
export interface ServiceEndpoint {
  address: string;
  /** The port on the workload (WorkloadEntry ports[name], targetPort, or the service port). */
  port: number;
  servicePort: ServicePort;
  labels: Readonly<Record<string, string>>;
  locality?: Locality;
  weight?: number;
  network?: string;
  /** The cluster the workload runs in (label `topology.istio.io/cluster`); absent: DEFAULT_CLUSTER_ID. */
  cluster?: string;
  healthy: boolean;
  /**
   * Pulled out of traffic (WorkloadEntry annotation `sextant.io/traffic: out`): served as
   * DRAINING, so proxies send it no new requests while those in flight finish.
   */
  draining?: true;
  /** `WorkloadEntry/ns/name`, or `ServiceEntry/ns/name#i` for inline endpoints. */
  source: string;
}

/** Istio's label for a workload's cluster; Sextant reads it from a WorkloadEntry's (or inline endpoint's) labels. */
export const CLUSTER_LABEL = 'topology.istio.io/cluster';
/** Istio's label for a workload's network, read when the WorkloadEntry's `network` field is not set. */
export const NETWORK_LABEL = 'topology.istio.io/network';
/** Istio's default cluster id (istiod's CLUSTER_ID): proxies and endpoints that name none are in it. */
export const DEFAULT_CLUSTER_ID = 'Kubernetes';

export interface Registry {
  readonly services: readonly Service[];
  /** Services by hostname, in precedence order (oldest declaration first). */
  readonly byHost: ReadonlyMap<string, readonly Service[]>;
  readonly byKey: ReadonlyMap<string, Service>;
  /** Endpoints by service key, then by service port number. */
  readonly endpoints: ReadonlyMap<string, ReadonlyMap<number, readonly ServiceEndpoint[]>>;
  /** The service keys a WorkloadEntry (or an inline ServiceEntry endpoint list) feeds. */
  readonly servicesOf: ReadonlyMap<string, readonly string[]>;
  /** Endpoints by workload address, for the inbound side of a proxy at that address. */
  readonly byAddress: ReadonlyMap<string, readonly { service: Service; endpoint: ServiceEndpoint }[]>;
  /** Services by the `ServiceEntry/ns/name` that declared them. */
  readonly bySource: ReadonlyMap<string, readonly Service[]>;
  readonly endpointCount: number;
}

const HTTP_NAME_PREFIXES: readonly [string, Protocol][] = [
  ['grpc-web', 'GRPC-WEB'], ['grpc', 'GRPC'], ['http2', 'HTTP2'], ['https', 'HTTPS'], ['http', 'HTTP'],
  ['tls', 'TLS'], ['tcp', 'TCP'], ['mongo', 'MONGO'], ['redis', 'REDIS'], ['mysql', 'MYSQL'], ['udp', 'UDP'],
];

/** Istio's protocol selection: the explicit protocol, else the port name prefix (`http-web`). */
export function portProtocol(p: PortSpec): Protocol {
  const explicit = (p.protocol ?? '').toUpperCase();
  if (explicit) {
    for (const [, proto] of HTTP_NAME_PREFIXES) if (proto === explicit) return proto;
    return 'UNKNOWN';
  }
  const name = (p.name ?? '').toLowerCase();
  for (const [prefix, proto] of HTTP_NAME_PREFIXES) {
    if (name === prefix || name.startsWith(`${prefix}-`)) return proto;
  }
  return 'UNKNOWN';
}

export function isHttpProtocol(p: Protocol): boolean {
  return p === 'HTTP' || p === 'HTTP2' || p === 'GRPC' || p === 'GRPC-WEB';
}

export function isHttp2Protocol(p: Protocol): boolean {
  return p === 'HTTP2' || p === 'GRPC';
}

/** `r/z/s` as WorkloadEntry.locality writes it. */
export function parseLocality(s: string | undefined): Locality | undefined {
  if (!s) return undefined;
  const [region = '', zone = '', subZone = ''] = s.split('/');
  return { region, zone, subZone };
}

function exportToSet(list: readonly string[] | undefined, namespace: string): ReadonlySet<string> | null {
  if (!list || list.length === 0 || list.includes('*')) return null;
  return new Set(list.map((e) => (e === '.' ? namespace : e)));
}

/** Whether every label of the selector is present with the same value. */
export function labelsMatch(selector: Readonly<Record<string, string>> | undefined, labels: Readonly<Record<string, string>>): boolean {
  if (!selector) return true;
  for (const k in selector) if (labels[k] !== selector[k]) return false;
  return true;
}

/**
 * The WorkloadEntry annotation that takes a workload out of traffic (`out`) or puts it back
 * (`in`, the default), as the registration API's pull-out and pull-in do.
 */
export const TRAFFIC_ANNOTATION = 'sextant.io/traffic';

function workloadDraining(r: Resource): boolean {
  return r.metadata.annotations?.[TRAFFIC_ANNOTATION] === 'out';
}

function workloadHealthy(r: Resource): boolean {
  const status = (r as { status?: { conditions?: { type?: string; status?: string }[] } }).status;
  const cond = status?.conditions?.find((c) => c.type === 'Healthy');
  return cond?.status !== 'False';
}

function endpointFrom(we: WorkloadEntrySpec, port: ServicePort, source: string, healthy: boolean, weLabels: Readonly<Record<string, string>>, draining = false): ServiceEndpoint | undefined {
  if (!we.address) return undefined;
  const mapped = we.ports?.[port.name];
  const ep: ServiceEndpoint = {
    address: we.address,
    port: mapped ?? port.targetPort ?? port.port,
    servicePort: port,
    labels: weLabels,
    healthy,
    source,
  };
  const loc = parseLocality(we.locality);
  if (loc) ep.locality = loc;
  if (we.weight !== undefined && we.weight > 0) ep.weight = we.weight;
  const network = we.network || weLabels[NETWORK_LABEL];
  if (network) ep.network = network;
  const cluster = weLabels[CLUSTER_LABEL];
  if (cluster) ep.cluster = cluster;
  if (draining) ep.draining = true;
  return ep;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Istio's precedence between declarations: older first, then namespace and name. */
export function byAge(a: Resource, b: Resource): number {
  return cmp(a.metadata.creationTimestamp ?? '', b.metadata.creationTimestamp ?? '') ||
    cmp(a.metadata.namespace, b.metadata.namespace) || cmp(a.metadata.name, b.metadata.name);
}

/**
 * Builds the registry from every ServiceEntry and WorkloadEntry at once. WorkloadEntries
 * are indexed by namespace and label so each selector costs the size of its smallest
 * posting list, not a scan of every workload (10,000 entries × 50,000 workloads).
 */
export function buildRegistry(serviceEntries: readonly Resource<ServiceEntrySpec>[], workloadEntries: readonly Resource<WorkloadEntrySpec>[]): Registry {
  // namespace → "k=v" → workload entries carrying that label
  const weIndex = new Map<string, Map<string, Resource<WorkloadEntrySpec>[]>>();
  const weAll = new Map<string, Resource<WorkloadEntrySpec>[]>();
  // A workload's labels: metadata labels overlaid by spec labels, computed once.
  const weLabels = new Map<Resource<WorkloadEntrySpec>, Record<string, string>>();
  for (const we of workloadEntries) {
    const ns = we.metadata.namespace;
    let all = weAll.get(ns);
    if (!all) weAll.set(ns, (all = []));
    all.push(we);
    let byLabel = weIndex.get(ns);
    if (!byLabel) weIndex.set(ns, (byLabel = new Map()));
    const labels = we.metadata.labels ? { ...we.metadata.labels, ...we.spec?.labels } : (we.spec?.labels ?? {});
    weLabels.set(we, labels);
    for (const k in labels) {
      const lk = `${k}=${labels[k]}`;
      let list = byLabel.get(lk);
      if (!list) byLabel.set(lk, (list = []));
      list.push(we);
    }
  }

  const sorted = [...serviceEntries].sort(byAge);
  const services: Service[] = [];
  const byHost = new Map<string, Service[]>();
  const byKey = new Map<string, Service>();
  const endpoints = new Map<string, Map<number, ServiceEndpoint[]>>();
  const servicesOf = new Map<string, string[]>();
  const byAddress = new Map<string, { service: Service; endpoint: ServiceEndpoint }[]>();
  const bySource = new Map<string, Service[]>();
  let endpointCount = 0;

  const addEndpoint = (svc: Service, ep: ServiceEndpoint): void => {
    let perPort = endpoints.get(svc.key);
    if (!perPort) endpoints.set(svc.key, (perPort = new Map()));
    let list = perPort.get(ep.servicePort.port);
    if (!list) perPort.set(ep.servicePort.port, (list = []));
    list.push(ep);
    endpointCount++;
    let at = byAddress.get(ep.address);
    if (!at) byAddress.set(ep.address, (at = []));
    at.push({ service: svc, endpoint: ep });
  };
  const feeds = (source: string, svcKey: string): void => {
    let list = servicesOf.get(source);
    if (!list) servicesOf.set(source, (list = []));
    if (!list.includes(svcKey)) list.push(svcKey);
  };

  for (const se of sorted) {
    const spec = se.spec ?? {};
    const ns = se.metadata.namespace;
    const seKey = `ServiceEntry/${ns}/${se.metadata.name}`;
    const ports: ServicePort[] = (spec.ports ?? []).filter((p) => typeof p.number === 'number').map((p) => {
      const sp: ServicePort = { name: p.name ?? `port-${p.number}`, port: p.number as number, protocol: portProtocol(p) };
      if (p.targetPort) sp.targetPort = p.targetPort;
      return sp;
    });
    const exportTo = exportToSet(spec.exportTo, ns);
    const selector = spec.workloadSelector?.labels;
    // Selected workloads are found once per ServiceEntry, shared by its hosts.
    let selected: Resource<WorkloadEntrySpec>[] = [];
    if (selector) {
      const byLabel = weIndex.get(ns);
      const keys = Object.keys(selector);
      if (keys.length === 0) selected = weAll.get(ns) ?? [];
      else if (byLabel) {
        let smallest: Resource<WorkloadEntrySpec>[] | undefined;
        for (const k of keys) {
          const list = byLabel.get(`${k}=${selector[k]}`) ?? [];
          if (!smallest || list.length < smallest.length) smallest = list;
        }
        selected = (smallest ?? []).filter((we) => labelsMatch(selector, weLabels.get(we) ?? {}));
      }
    }
    for (const host of spec.hosts ?? []) {
      const key = `${ns}/${host}`;
      if (byKey.has(key)) continue; // an older ServiceEntry already declared this host here
      const svc: Service = {
        key,
        hostname: host,
        namespace: ns,
        ports,
        resolution: spec.resolution ?? 'NONE',
        location: spec.location ?? 'MESH_EXTERNAL',
        addresses: spec.addresses ?? [],
        exportTo,
        source: seKey,
      };
      if (selector) svc.selector = selector;
      services.push(svc);
      byKey.set(key, svc);
      let fromSe = bySource.get(seKey);
      if (!fromSe) bySource.set(seKey, (fromSe = []));
      fromSe.push(svc);
      let hs = byHost.get(host);
      if (!hs) byHost.set(host, (hs = []));
      hs.push(svc);
      if (selector) {
        for (const we of selected) {
          const weKey = `WorkloadEntry/${we.metadata.namespace}/${we.metadata.name}`;
          feeds(weKey, key);
          const labels = weLabels.get(we) ?? {};
          const healthy = workloadHealthy(we);
          const draining = workloadDraining(we);
          for (const port of ports) {
            const ep = endpointFrom(we.spec ?? {}, port, weKey, healthy, labels, draining);
            if (ep) addEndpoint(svc, ep);
          }
        }
      } else {
        feeds(seKey, key);
        (spec.endpoints ?? []).forEach((we, i) => {
          for (const port of ports) {
            const ep = endpointFrom(we, port, `${seKey}#${i}`, true, we.labels ?? {});
            if (ep) addEndpoint(svc, ep);
          }
        });
      }
    }
  }
  return { services, byHost, byKey, endpoints, servicesOf, byAddress, bySource, endpointCount };
}

/** The Service objects whose endpoints an endpoint-only change replaces, and their new inputs. */
export interface EndpointUpdate {
  /** Service keys whose endpoints are recomputed (their Service objects are kept as they are). */
  services: ReadonlySet<string>;
  /** The current ServiceEntry of each service in `services`, by `ServiceEntry/ns/name`. */
  serviceEntries: ReadonlyMap<string, Resource<ServiceEntrySpec>>;
  /**
   * For a selector service in `services`: the current WorkloadEntries of its namespace its
   * selector may match (all of them, or only the matching ones), in the order buildRegistry
   * meets them (the order of the resources it is given).
   */
  workloadsOf: (service: Service) => readonly Resource<WorkloadEntrySpec>[];
  /** The WorkloadEntry keys that changed (added, modified or deleted), for `servicesOf`. */
  changedWorkloads: ReadonlySet<string>;
}

/** One service's endpoints as buildRegistry computes them, and the workloads that fed it. */
function serviceEndpoints(svc: Service, se: Resource<ServiceEntrySpec>, workloads: readonly Resource<WorkloadEntrySpec>[]): { endpoints: ServiceEndpoint[]; workloads: string[] } {
  const out: ServiceEndpoint[] = [];
  const fed: string[] = [];
  if (svc.selector) {
    for (const we of workloads) {
      const labels = we.metadata.labels ? { ...we.metadata.labels, ...we.spec?.labels } : (we.spec?.labels ?? {});
      if (!labelsMatch(svc.selector, labels)) continue;
      const weKey = `WorkloadEntry/${we.metadata.namespace}/${we.metadata.name}`;
      fed.push(weKey);
      const healthy = workloadHealthy(we);
      const draining = workloadDraining(we);
      for (const port of svc.ports) {
        const ep = endpointFrom(we.spec ?? {}, port, weKey, healthy, labels, draining);
        if (ep) out.push(ep);
      }
    }
  } else {
    (se.spec?.endpoints ?? []).forEach((we, i) => {
      for (const port of svc.ports) {
        const ep = endpointFrom(we, port, `${svc.source}#${i}`, true, we.labels ?? {});
        if (ep) out.push(ep);
      }
    });
  }
  return { endpoints: out, workloads: fed };
}

/**
 * A registry equal to what buildRegistry would return after an endpoint-only change, derived
 * from `before`: services, hosts and sources are shared; only the endpoints of
 * `update.services` (and the address and workload indexes they appear in) are rebuilt.
 * The caller guarantees that no Service changed (only inline endpoints or WorkloadEntries).
 */
export function updateRegistryEndpoints(before: Registry, update: EndpointUpdate): Registry {
  // Derived, not copied: a pull-out changes a few entries of maps with one per workload.
  const endpoints = OverlayMap.derive(before.endpoints);
  const servicesOf = OverlayMap.derive(before.servicesOf);
  const byAddress = OverlayMap.derive(before.byAddress);
  let endpointCount = before.endpointCount;
  const touchedAddresses = new Set<string>();
  const fresh = new Map<string, { service: Service; endpoint: ServiceEndpoint }[]>();
  const fedBy = new Map<string, string[]>(); // WorkloadEntry key → service keys it now feeds
  for (const key of update.services) {
    const svc = before.byKey.get(key);
    if (!svc) throw new Error(`updateRegistryEndpoints: unknown service ${key}`);
    const se = update.serviceEntries.get(svc.source);
    if (!se) throw new Error(`updateRegistryEndpoints: no ServiceEntry ${svc.source} for service ${key}`);
    for (const list of before.endpoints.get(key)?.values() ?? []) {
      endpointCount -= list.length;
      for (const ep of list) touchedAddresses.add(ep.address);
    }
    const { endpoints: eps, workloads } = serviceEndpoints(svc, se, svc.selector ? update.workloadsOf(svc) : []);
    const perPort = new Map<number, ServiceEndpoint[]>();
    for (const ep of eps) {
      let list = perPort.get(ep.servicePort.port);
      if (!list) perPort.set(ep.servicePort.port, (list = []));
      list.push(ep);
      touchedAddresses.add(ep.address);
      let at = fresh.get(ep.address);
      if (!at) fresh.set(ep.address, (at = []));
      at.push({ service: svc, endpoint: ep });
    }
    endpointCount += eps.length;
    if (perPort.size > 0) endpoints.set(key, perPort);
    else endpoints.delete(key);
    for (const w of workloads) {
      let list = fedBy.get(w);
      if (!list) fedBy.set(w, (list = []));
      list.push(key);
    }
  }
  // A changed workload feeds exactly the recomputed services that now select it; the caller
  // includes every service it fed before, so no stale membership survives.
  for (const w of update.changedWorkloads) {
    const list = fedBy.get(w);
    if (list) servicesOf.set(w, list);
    else servicesOf.delete(w);
  }
  // Addresses keep buildRegistry's order: registry order of services, then endpoint order.
  let order: Map<string, number> | undefined;
  for (const addr of touchedAddresses) {
    const kept = (before.byAddress.get(addr) ?? []).filter((t) => !update.services.has(t.service.key));
    const added = fresh.get(addr) ?? [];
    if (kept.length + added.length === 0) { byAddress.delete(addr); continue; }
    // One service's endpoints are in endpoint order already; several services' need ranking
    // (`added` comes in the order the services were recomputed, not registry order).
    if (kept.length === 0 && added.every((t) => t.service === added[0]!.service)) { byAddress.set(addr, added); continue; }
    order ??= new Map(before.services.map((s, i) => [s.key, i]));
    const rank = order;
    byAddress.set(addr, [...kept, ...added].sort((a, b) => (rank.get(a.service.key) ?? 0) - (rank.get(b.service.key) ?? 0)));
  }
  return { services: before.services, byHost: before.byHost, byKey: before.byKey, endpoints: endpoints.done(), servicesOf: servicesOf.done(), byAddress: byAddress.done(), bySource: before.bySource, endpointCount };
}
