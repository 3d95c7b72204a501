// The registration API's objects (service, instance, release) and the Istio resources they
// are written as: ServiceEntry, WorkloadEntry, DestinationRule + VirtualService. Each way is a
// pure function, so a repeated call yields the same resource (and the store sees no change).
import type { Resource } from '../../api/index.ts';
import type { DestinationRuleSpec, HTTPMatchRequest, ServiceEntrySpec, VirtualServiceSpec, WorkloadEntrySpec } from '../istio.ts';
import { TRAFFIC_ANNOTATION } from '../services.ts';

/** Every resource the API writes carries this label. */
export const MANAGED_BY_LABEL = 'sextant.io/managed-by';
export const MANAGED_BY = 'registration';
/** Which service and instance id a WorkloadEntry stands for (its name joins them with '-'). */
export const SERVICE_ANNOTATION = 'registration.sextant.io/service';
export const INSTANCE_ANNOTATION = 'registration.sextant.io/instance';
/** Istio's label for the cluster a workload runs in. */
export const CLUSTER_LABEL = 'topology.istio.io/cluster';

const API_VERSION = 'networking.istio.io/v1';

export interface ServiceBody {
  ports: Array<{ name: string; number: number; protocol?: string }>;
  hosts?: string[];
  location?: 'MESH_INTERNAL' | 'MESH_EXTERNAL';
  resolution?: 'STATIC' | 'NONE' | 'DNS' | 'DNS_ROUND_ROBIN';
  exportTo?: string[];
}

export interface InstanceBody {
  address: string;
  ports?: Record<string, number>;
  labels?: Record<string, string>;
  locality?: string;
  weight?: number;
  network?: string;
  cluster?: string;
  serviceAccount?: string;
  state?: 'in' | 'out';
}

export interface ReleaseBody {
  subsets: Array<{ name: string; labels: Record<string, string>; weight: number }>;
  match?: Array<Record<string, unknown>>;
}

export function isManaged(r: Resource | undefined): boolean {
  return r?.metadata.labels?.[MANAGED_BY_LABEL] === MANAGED_BY;
}

export function defaultHost(namespace: string, name: string): string {
  return `${name}.${namespace}.svc.cluster.local`;
}

export function instanceResourceName(service: string, id: string): string {
  return `${service}-${id}`;
}

// ---------------------------------------------------------------- service ↔ ServiceEntry

export function serviceEntryOf(namespace: string, name: string, body: ServiceBody): Resource<ServiceEntrySpec> {
  const spec: ServiceEntrySpec = {
    hosts: body.hosts ?? [defaultHost(namespace, name)],
    ports: body.ports.map((p) => ({ name: p.name, number: p.number, ...(p.protocol !== undefined ? { protocol: p.protocol } : {}) })),
    location: body.location ?? 'MESH_INTERNAL',
    resolution: body.resolution ?? 'STATIC',
    workloadSelector: { labels: { app: name } },
  };
  if (body.exportTo !== undefined) spec.exportTo = body.exportTo;
  return { apiVersion: API_VERSION, kind: 'ServiceEntry', metadata: { name, namespace, labels: { [MANAGED_BY_LABEL]: MANAGED_BY } }, spec };
}

export interface ServiceView extends ServiceBody {
  namespace: string;
  name: string;
  resourceVersion: string;
  /** The Istio resource it is written as. */
  serviceEntry: string;
}

export function serviceView(se: Resource): ServiceView {
  const spec = se.spec as ServiceEntrySpec;
  const view: ServiceView = {
    namespace: se.metadata.namespace,
    name: se.metadata.name,
    hosts: [...spec.hosts],
    ports: (spec.ports ?? []).map((p) => ({ name: p.name, number: p.number, ...(p.protocol !== undefined ? { protocol: p.protocol } : {}) })),
    location: spec.location ?? 'MESH_EXTERNAL',
    resolution: (spec.resolution ?? 'NONE') as NonNullable<ServiceBody['resolution']>,
    resourceVersion: se.metadata.resourceVersion ?? '',
    serviceEntry: `ServiceEntry/${se.metadata.namespace}/${se.metadata.name}`,
  };
  if (spec.exportTo !== undefined) view.exportTo = [...spec.exportTo];
  return view;
}

/** Request field for an error in the ServiceEntry's `path` (spec.ports[0].number → ports[0].number). */
export function serviceField(path: string): string | undefined {
  if (path.startsWith('spec.workloadSelector')) return undefined;
  if (path.startsWith('spec.')) return path.slice(5);
  if (path === 'metadata.name') return 'name';
  if (path === 'metadata.namespace') return 'namespace';
  return undefined;
}

// ---------------------------------------------------------------- instance ↔ WorkloadEntry

export function workloadEntryOf(namespace: string, service: string, id: string, body: InstanceBody): Resource<WorkloadEntrySpec> {
  const labels: Record<string, string> = { ...body.labels, app: service };
  if (body.cluster !== undefined) labels[CLUSTER_LABEL] = body.cluster;
  const spec: WorkloadEntrySpec = { address: body.address, labels };
  if (body.ports !== undefined) spec.ports = { ...body.ports };
  if (body.locality !== undefined) spec.locality = body.locality;
  if (body.weight !== undefined) spec.weight = body.weight;
  if (body.network !== undefined) spec.network = body.network;
  if (body.serviceAccount !== undefined) spec.serviceAccount = body.serviceAccount;
  return {
    apiVersion: API_VERSION,
    kind: 'WorkloadEntry',
    metadata: {
      name: instanceResourceName(service, id),
      namespace,
      labels: { [MANAGED_BY_LABEL]: MANAGED_BY, app: service },
      annotations: { [SERVICE_ANNOTATION]: service, [INSTANCE_ANNOTATION]: id, [TRAFFIC_ANNOTATION]: body.state ?? 'in' },
    },
    spec,
  };
}

/** The same WorkloadEntry in another traffic state. */
export function withTrafficState(we: Resource, state: 'in' | 'out'): Resource {
  return { ...we, metadata: { ...we.metadata, annotations: { ...we.metadata.annotations, [TRAFFIC_ANNOTATION]: state } } };
}

export function trafficState(we: Resource): 'in' | 'out' {
  return we.metadata.annotations?.[TRAFFIC_ANNOTATION] === 'out' ? 'out' : 'in';
}

/** Whether a WorkloadEntry is an instance of `service` written by this API. */
export function isInstanceOf(we: Resource, service: string): boolean {
  return isManaged(we) && we.metadata.annotations?.[SERVICE_ANNOTATION] === service;
}

export interface InstanceView extends InstanceBody {
  namespace: string;
  service: string;
  id: string;
  state: 'in' | 'out';
  resourceVersion: string;
  workloadEntry: string;
}

export function instanceView(we: Resource): InstanceView {
  const spec = we.spec as WorkloadEntrySpec;
  const { app: _app, [CLUSTER_LABEL]: cluster, ...labels } = spec.labels ?? {};
  const view: InstanceView = {
    namespace: we.metadata.namespace,
    service: we.metadata.annotations?.[SERVICE_ANNOTATION] ?? '',
    id: we.metadata.annotations?.[INSTANCE_ANNOTATION] ?? '',
    address: spec.address ?? '',
    state: trafficState(we),
    resourceVersion: we.metadata.resourceVersion ?? '',
    workloadEntry: `WorkloadEntry/${we.metadata.namespace}/${we.metadata.name}`,
  };
  if (spec.ports !== undefined) view.ports = { ...spec.ports };
  if (Object.keys(labels).length > 0) view.labels = labels;
  if (spec.locality !== undefined) view.locality = spec.locality;
  if (spec.weight !== undefined) view.weight = spec.weight;
  if (spec.network !== undefined) view.network = spec.network;
  if (cluster !== undefined) view.cluster = cluster;
  if (spec.serviceAccount !== undefined) view.serviceAccount = spec.serviceAccount;
  return view;
}

export function instanceField(path: string): string | undefined {
  if (path.startsWith(`spec.labels.${CLUSTER_LABEL}`)) return 'cluster';
  if (path.startsWith('spec.')) return path.slice(5);
  if (path === 'metadata.name') return 'id';
  return undefined;
}

// ---------------------------------------------------------------- release ↔ DestinationRule + VirtualService

export function releaseOf(namespace: string, service: string, host: string, body: ReleaseBody): { dr: Resource<DestinationRuleSpec>; vs: Resource<VirtualServiceSpec> } {
  const metadata = { name: service, namespace, labels: { [MANAGED_BY_LABEL]: MANAGED_BY } };
  const dr: Resource<DestinationRuleSpec> = {
    apiVersion: API_VERSION,
    kind: 'DestinationRule',
    metadata: { ...metadata, labels: { ...metadata.labels } },
    spec: { host, subsets: body.subsets.map((s) => ({ name: s.name, labels: { ...s.labels } })) },
  };
  const split = body.subsets.map((s) => ({ destination: { host, subset: s.name }, weight: s.weight }));
  const http: NonNullable<VirtualServiceSpec['http']> = body.match === undefined
    ? [{ name: 'release', route: split }]
    : [{ name: 'release', match: body.match as unknown as HTTPMatchRequest[], route: split }, { name: 'default', route: [{ destination: { host, subset: body.subsets[0]!.name } }] }];
  const vs: Resource<VirtualServiceSpec> = {
    apiVersion: API_VERSION,
    kind: 'VirtualService',
    metadata: { ...metadata, labels: { ...metadata.labels } },
    spec: { hosts: [host], http },
  };
  return { dr, vs };
}

export interface ReleaseView extends ReleaseBody {
  namespace: string;
  service: string;
  host: string;
  resourceVersion: string;
  destinationRule: string;
  virtualService: string;
}

/** The release's version: the later of its two resources' (one transaction writes both at once on etcd). */
export function releaseVersion(dr: Resource | undefined, vs: Resource | undefined): string {
  const a = Number(dr?.metadata.resourceVersion ?? 0);
  const b = Number(vs?.metadata.resourceVersion ?? 0);
  return String(Math.max(a, b));
}

export function releaseView(dr: Resource, vs: Resource | undefined): ReleaseView {
  const drSpec = dr.spec as DestinationRuleSpec;
  const vsSpec = vs?.spec as VirtualServiceSpec | undefined;
  const route = vsSpec?.http?.[0]?.route ?? [];
  const weightOf = (subset: string): number => {
    const r = route.find((d) => d.destination.subset === subset);
    return r === undefined ? 0 : (r.weight ?? (route.length === 1 ? 100 : 0));
  };
  const view: ReleaseView = {
    namespace: dr.metadata.namespace,
    service: dr.metadata.name,
    host: drSpec.host,
    subsets: (drSpec.subsets ?? []).map((s) => ({ name: s.name, labels: { ...s.labels }, weight: weightOf(s.name) })),
    resourceVersion: releaseVersion(dr, vs),
    destinationRule: `DestinationRule/${dr.metadata.namespace}/${dr.metadata.name}`,
    virtualService: `VirtualService/${dr.metadata.namespace}/${dr.metadata.name}`,
  };
  const match = vsSpec?.http?.[0]?.match;
  if (match !== undefined) view.match = match as unknown as Array<Record<string, unknown>>;
  return view;
}

export function destinationRuleField(path: string): string | undefined {
  const m = /^spec\.subsets(\[\d+\].*)$/.exec(path);
  return m === null ? undefined : `subsets${m[1]!}`;
}

export function virtualServiceField(path: string): string | undefined {
  const weight = /^spec\.http\[0\]\.route(\[\d+\])\.weight$/.exec(path);
  if (weight !== null) return `subsets${weight[1]!}.weight`;
  const match = /^spec\.http\[0\]\.match(.*)$/.exec(path);
  if (match !== null) return `match${match[1]!}`;
  if (/^spec\.http\[0\]\.route(\[\d+\])/.test(path)) return path.replace(/^spec\.http\[0\]\.route/, 'subsets');
  return undefined;
}
