// An upstream host as the load balancer and outlier detector see it: address, weight,
// priority and locality from EDS, and the mutable health the proxy itself observes.
import { endpointOf, type UpstreamEndpoint } from '../upstream/index.ts';

/** Istio's workload identity for an endpoint (from EDS metadata `istio.workload`). */
export interface WorkloadIdentity {
  name: string;
  namespace: string;
  canonicalService: string;
  canonicalRevision: string;
  cluster: string;
}

export class Host {
  readonly address: string;
  readonly port: number;
  /** `address:port`, the identity kept across EDS updates (so ejections survive them). */
  readonly key: string;
  /** Where its pool connects (made once, so a request builds no endpoint or pool key). */
  readonly endpoint: UpstreamEndpoint;
  weight = 1;
  priority = 0;
  locality = '';
  /** The EDS weight of the host's locality (0: none), for locality-weighted balancing. */
  localityWeight = 0;
  /** Health as EDS reports it (UNKNOWN and HEALTHY count as healthy). */
  edsHealthy = true;
  /**
   * EDS said DRAINING: as in Envoy, the host is excluded from load balancing, panic mode and
   * the panic threshold alike (no new requests); requests in flight to it finish.
   */
  edsDraining = false;
  /** `envoy.lb` filter metadata, for subset load balancing. */
  lbMetadata: Readonly<Record<string, unknown>> = {};
  /** `envoy.transport_socket_match` metadata (Istio's `tlsMode: istio` for auto mTLS). */
  transportMatch: Readonly<Record<string, unknown>> = {};
  workload: WorkloadIdentity | undefined;
  /** Requests in flight to this host (least request, /clusters). */
  active = 0;
  /** Outlier detection state. */
  ejectedUntil = 0;
  ejectionCount = 0;
  consecutive5xx = 0;
  consecutiveGatewayFailure = 0;
  /** Counters shown by /clusters. */
  totalRequests = 0;
  totalErrors = 0;
  /** ORIGINAL_DST: last use, for idle cleanup. */
  lastUsed = 0;

  constructor(address: string, port: number) {
    this.address = address;
    this.port = port;
    this.key = address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
    this.endpoint = endpointOf(address, port);
  }

  get ejected(): boolean {
    return this.ejectedUntil > 0;
  }

  /** Eligible for load balancing outside panic mode. */
  get healthy(): boolean {
    return this.edsHealthy && this.ejectedUntil === 0;
  }
}

/**
 * Parses Istio's `istio.workload` endpoint metadata (`name;namespace;canonical;revision;cluster`,
 * trailing parts optional); missing canonical names come from the endpoint's labels.
 */
export function parseWorkloadMetadata(value: unknown, labels?: unknown): WorkloadIdentity | undefined {
  if (typeof value !== 'string' || value === '') return undefined;
  const [name = '', namespace = '', canonical = '', revision = '', cluster = ''] = value.split(';');
  const l = (labels && typeof labels === 'object' ? labels : {}) as Record<string, unknown>;
  const str = (v: unknown): string => (typeof v === 'string' ? v : '');
  return {
    name,
    namespace,
    canonicalService: canonical || str(l['service.istio.io/canonical-name']) || str(l['app']),
    canonicalRevision: revision || str(l['service.istio.io/canonical-revision']) || str(l['version']),
    cluster,
  };
}
