// The seam between the pilot's generators (pilot/push, pilot/gen) and its xDS server
// (pilot/xds): who a proxy is, the immutable PushContext snapshot, and what a change means
// for one proxy. The server knows nothing of Istio kinds; the generators nothing of streams.
import type { Resource } from '../api/resource.ts';
import type { ProtoJson, XdsTypeUrl } from '../envoy/index.ts';

/** A connected proxy, identified the way istio-agent identifies it in its xDS node. */
export interface Proxy {
  /** Full node id: `sidecar~10.0.0.1~productpage-v1-abc.default~default.svc.cluster.local`. */
  id: string;
  type: 'sidecar' | 'router';
  ipAddresses: string[];
  /** The pod or VM name part of the id (`productpage-v1-abc`). */
  podName: string;
  namespace: string;
  /** `default.svc.cluster.local` */
  dnsDomain: string;
  labels: Record<string, string>;
  /** Node metadata as sent (NAMESPACE, LABELS, CLUSTER_ID, NETWORK, INTERCEPTION_MODE, GENERATOR, …). */
  metadata: Record<string, unknown>;
  /** The cluster the proxy runs in (metadata CLUSTER_ID; `Kubernetes` when not sent, as in Istio). */
  clusterId: string;
  /** The network the proxy is on (metadata NETWORK); absent when not sent. */
  network?: string;
  interceptionMode: 'REDIRECT' | 'TPROXY' | 'NONE';
  /** `grpc` for proxyless gRPC clients (node metadata GENERATOR: grpc). */
  generator: 'envoy' | 'grpc';
  /** From node.locality, for locality-aware endpoint priorities; absent when not sent. */
  locality?: { region: string; zone: string; subZone: string };
}

/** An immutable snapshot of all config and services at one version; only ever read. */
export interface PushContext {
  /** Changes whenever any input changes; logged and reported in status. */
  readonly version: string;
  /** When the snapshot was built (ms since epoch). */
  readonly builtAt: number;
  readonly resources: readonly Resource[];
  /** Counts for metrics (pilot_services, pilot_virt_services). */
  readonly stats: { services: number; virtualServices: number; destinationRules: number; endpoints: number };
}

/** What one debounced batch changed. */
export interface ConfigChange {
  /** `Kind/namespace/name` of every resource added, modified or deleted. */
  keys: ReadonlySet<string>;
  /** True when only WorkloadEntry addresses/weights/health changed (an EDS-only push). */
  endpointsOnly: boolean;
  /**
   * Every resource as of the change, by `Kind/namespace/name`, when the caller keeps them so:
   * the endpoint fast path then looks the changed ones up instead of scanning all of them.
   */
  current?: ReadonlyMap<string, Resource>;
}

/** For one proxy: what a change requires to be pushed. */
export interface PushPlan {
  /** Resource types to regenerate and send, in push order (CDS, EDS, LDS, RDS). */
  types: ReadonlySet<XdsTypeUrl>;
  /** For EDS-only plans: the cluster names whose assignments changed. */
  edsClusters?: ReadonlySet<string>;
}

/** The generator side of the seam, implemented in pilot/push and pilot/gen. */
export interface Generators {
  /** Parses an xDS node into a Proxy; throws an Error whose message says what is wrong. */
  proxyFromNode(node: ProtoJson): Proxy;
  /**
   * Builds a snapshot from every resource, indexes and all, once. Given the snapshot it
   * replaces and the change between them, it may share what the change cannot have touched.
   */
  buildPushContext(resources: readonly Resource[], previous?: PushContext, change?: ConfigChange): PushContext;
  /**
   * The endpoint fast path: the snapshot after an endpoint-only `change`, derived from
   * `before` (everything but the affected services' endpoints shared, as the same objects).
   * Undefined when this change cannot take it; the server then calls buildPushContext.
   * `resources` may be empty when `change.current` is given: the snapshot then lists its
   * resources itself, from its own indexes, only if asked.
   */
  updateEndpoints?(before: PushContext, resources: readonly Resource[], change: ConfigChange): PushContext | undefined;
  /** What `change` (between `before` and `after`) requires for `proxy`; null when it is not concerned. */
  planPush(before: PushContext, after: PushContext, change: ConfigChange, proxy: Proxy): PushPlan | null;
  /**
   * Every resource of `typeUrl` this proxy should have, by name (only `names` when given).
   * A resource identical for many proxies is returned as the same object instance within
   * one PushContext, so the server can cache its encoding by identity.
   */
  generate(push: PushContext, proxy: Proxy, typeUrl: XdsTypeUrl, names?: ReadonlySet<string>): Map<string, ProtoJson>;
}
