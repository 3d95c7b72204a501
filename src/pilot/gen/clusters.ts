// CDS: outbound clusters `outbound|PORT|SUBSET|HOST` per visible service port and
// DestinationRule subset, inbound clusters `inbound|PORT||`, PassthroughCluster and
// BlackHoleCluster, with Istio's defaults and DestinationRule traffic policy.
import { BLACKHOLE_CLUSTER, PASSTHROUGH_CLUSTER } from '../../envoy/index.ts';
import type { ProtoJson } from '../../envoy/index.ts';
import type { Proxy } from '../model.ts';
import type { Service, ServicePort } from '../../registry/index.ts';
import type { SextantPushContext } from '../push/context.ts';
import { sidecarScope } from '../push/scope.ts';
import { INBOUND_PASSTHROUGH_CLUSTER, clusterName } from './names.ts';
import { DEFAULT_CONNECT_TIMEOUT, applyClientTls, applyTrafficPolicy, effectivePolicy } from './policy.ts';
import { dnsLoadAssignment } from './endpoints.ts';
import { inboundPorts } from './inbound.ts';
import { isHttp2Protocol } from '../../registry/index.ts';
import { applyMeshTls, hasWorkloadCertificate, meshProtocol } from './mtls.ts';
import { laneClusters } from './lanes.ts';
import { priorityFailoverCluster, proxyDataCentre } from './active-active.ts';

export const ADS_CONFIG_SOURCE: ProtoJson = { ads: {}, initialFetchTimeout: '0s', resourceApiVersion: 'V3' };

/** Istio's `istio` filter metadata naming the service behind a cluster (used by telemetry). */
export function serviceMetadata(service: Service, port: number, subset: string): ProtoJson {
  const m = /^([^.]+)\.([^.]+)\.svc\./.exec(service.hostname);
  const istio: ProtoJson = {
    services: [{ host: service.hostname, name: m?.[1] ?? service.hostname, namespace: m?.[2] ?? service.namespace }],
    default_original_port: port,
  };
  if (subset) istio['subset'] = subset;
  return { filterMetadata: { istio } };
}

function isDns(service: Service): boolean {
  return service.resolution === 'DNS' || service.resolution === 'DNS_ROUND_ROBIN';
}

/** Whether a service's endpoints are inline in its clusters and differ per proxy cluster (cluster-local DNS). */
export function isClusterLocalDns(push: SextantPushContext, service: Service): boolean {
  return isDns(service) && push.isClusterLocal(service);
}

/**
 * One outbound cluster of `service` at `port` (and `subset`), as a proxy in `namespace` sees
 * it; `clusterId` (the proxy's cluster) filters a cluster-local DNS service's inline endpoints.
 */
export function outboundCluster(push: SextantPushContext, service: Service, port: ServicePort, subset: string, namespace: string, grpc: boolean, clusterId?: string, autoMtls = false): ProtoJson {
  const name = clusterName('outbound', port.port, subset, service.hostname);
  const dr = push.destinationRuleFor(service, namespace);
  const cluster: ProtoJson = { name, connectTimeout: push.mesh.connectTimeout };
  let originalDst = false;
  if (grpc && (service.resolution === 'DNS' || service.resolution === 'DNS_ROUND_ROBIN')) {
    // gRPC clients resolve one DNS name themselves (LOGICAL_DNS with exactly one endpoint).
    const la = dnsLoadAssignment(push, service, port, subset, name, namespace, clusterId);
    const first = ((la['endpoints'] as ProtoJson[])[0]?.['lbEndpoints'] as ProtoJson[] | undefined)?.[0];
    cluster['type'] = 'LOGICAL_DNS';
    cluster['loadAssignment'] = { clusterName: name, endpoints: first ? [{ locality: {}, lbEndpoints: [{ endpoint: first['endpoint'] }] }] : [] };
  } else if (grpc || service.resolution === 'STATIC' || (service.resolution === 'NONE' && service.selector)) {
    cluster['type'] = 'EDS';
    cluster['edsClusterConfig'] = { edsConfig: grpc ? { ads: {}, resourceApiVersion: 'V3' } : ADS_CONFIG_SOURCE, serviceName: name };
  } else if (service.resolution === 'DNS' || service.resolution === 'DNS_ROUND_ROBIN') {
    cluster['type'] = service.resolution === 'DNS' ? 'STRICT_DNS' : 'LOGICAL_DNS';
    cluster['dnsLookupFamily'] = 'V4_ONLY';
    cluster['loadAssignment'] = dnsLoadAssignment(push, service, port, subset, name, namespace, clusterId);
  } else {
    cluster['type'] = 'ORIGINAL_DST';
    cluster['lbPolicy'] = 'CLUSTER_PROVIDED';
    originalDst = true;
  }
  const policy = effectivePolicy(dr?.spec, subset, port.port);
  applyTrafficPolicy(cluster, policy, port.protocol, { grpc, originalDst });
  if (!grpc) applyClientTls(cluster, policy.tls, service.hostname);
  if (!grpc) applyMeshTls(cluster, policy.tls, service.hostname, port.port, subset, meshProtocol(port.protocol), autoMtls);
  if (!grpc) cluster['metadata'] = serviceMetadata(service, port.port, subset);
  return cluster;
}

/**
 * Every outbound cluster of a service for a proxy namespace (and cluster `clusterId`);
 * memoized per snapshot, per proxy cluster only for a cluster-local DNS service.
 */
export function serviceClusters(push: SextantPushContext, service: Service, namespace: string, grpc: boolean, clusterId?: string, autoMtls = false): ProtoJson[] {
  const dr = push.destinationRuleFor(service, namespace);
  const local = clusterId !== undefined && isClusterLocalDns(push, service) ? clusterId : undefined;
  return push.memoize(`cds|${grpc ? 'g' : 'e'}|${service.key}|${dr?.key ?? ''}${local === undefined ? '' : `|cluster=${local}`}${autoMtls ? '|mtls' : ''}`, () => {
    const out: ProtoJson[] = [];
    for (const p of service.ports) {
      out.push(outboundCluster(push, service, p, '', namespace, grpc, local, autoMtls));
      for (const s of dr?.spec.subsets ?? []) if (s.name) out.push(outboundCluster(push, service, p, s.name, namespace, grpc, local, autoMtls));
    }
    return out;
  });
}

const PASSTHROUGH: ProtoJson = {
  name: PASSTHROUGH_CLUSTER,
  type: 'ORIGINAL_DST',
  connectTimeout: DEFAULT_CONNECT_TIMEOUT,
  lbPolicy: 'CLUSTER_PROVIDED',
  circuitBreakers: { thresholds: [{ maxConnections: 4294967295, maxPendingRequests: 4294967295, maxRequests: 4294967295, maxRetries: 4294967295, trackRemaining: true }] },
  typedExtensionProtocolOptions: {
    'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
      '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
      useDownstreamProtocolConfig: { httpProtocolOptions: {}, http2ProtocolOptions: {} },
    },
  },
};

const BLACKHOLE: ProtoJson = { name: BLACKHOLE_CLUSTER, type: 'STATIC', connectTimeout: DEFAULT_CONNECT_TIMEOUT };

const INBOUND_PASSTHROUGH: ProtoJson = {
  name: INBOUND_PASSTHROUGH_CLUSTER,
  type: 'ORIGINAL_DST',
  connectTimeout: DEFAULT_CONNECT_TIMEOUT,
  lbPolicy: 'CLUSTER_PROVIDED',
  upstreamBindConfig: { sourceAddress: { address: '127.0.0.6', portValue: 0 } },
};

/** A fixed cluster with the mesh's connect timeout: the shared constant when it is the default. */
function withConnectTimeout(push: SextantPushContext, cluster: ProtoJson): ProtoJson {
  if (cluster['connectTimeout'] === push.mesh.connectTimeout) return cluster;
  return push.memoize(`cds-fixed|${String(cluster['name'])}`, () => ({ ...cluster, connectTimeout: push.mesh.connectTimeout }));
}

/** An inbound cluster to an HTTP/2 or gRPC port speaks HTTP/2 to the application, as Istio's does. */
const INBOUND_H2: ProtoJson = {
  'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
    '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
    explicitHttpConfig: { http2ProtocolOptions: {} },
  },
};

/** Inbound clusters: `inbound|PORT||` to the application (original destination, or the Sidecar's defaultEndpoint). */
export function inboundClusters(push: SextantPushContext, proxy: Proxy): ProtoJson[] {
  const out: ProtoJson[] = [];
  for (const ib of inboundPorts(push, proxy)) {
    const name = clusterName('inbound', ib.port, '', '');
    const h2 = isHttp2Protocol(ib.protocol) ? { typedExtensionProtocolOptions: INBOUND_H2 } : {};
    if (ib.endpoint) {
      out.push({
        name,
        type: 'STATIC',
        connectTimeout: push.mesh.connectTimeout,
        loadAssignment: {
          clusterName: name,
          endpoints: [{ lbEndpoints: [{ endpoint: { address: { socketAddress: { address: ib.endpoint.address, portValue: ib.endpoint.port } } } }] }],
        },
        circuitBreakers: { thresholds: [{ maxConnections: 4294967295, maxPendingRequests: 4294967295, maxRequests: 4294967295, maxRetries: 4294967295, trackRemaining: true }] },
        ...h2,
      });
    } else {
      out.push({
        name,
        type: 'ORIGINAL_DST',
        connectTimeout: push.mesh.connectTimeout,
        lbPolicy: 'CLUSTER_PROVIDED',
        // Istio binds inbound upstream connections to 127.0.0.6 so iptables lets them through.
        upstreamBindConfig: { sourceAddress: { address: '127.0.0.6', portValue: 0 } },
        circuitBreakers: { thresholds: [{ maxConnections: 4294967295, maxPendingRequests: 4294967295, maxRequests: 4294967295, maxRetries: 4294967295, trackRemaining: true }] },
        ...h2,
      });
    }
  }
  return out;
}

const passiveCopies = new WeakMap<ProtoJson, ProtoJson>();

/**
 * An EDS cluster as a proxy in a data centre gets it, whose endpoints fall back to the other
 * data centre by priority (active-active.ts); one copy per cluster object.
 */
function withPassiveFailover(cluster: ProtoJson): ProtoJson {
  if (cluster['type'] !== 'EDS') return cluster;
  let copy = passiveCopies.get(cluster);
  if (copy === undefined) passiveCopies.set(cluster, (copy = priorityFailoverCluster(cluster)));
  return copy;
}

/** CDS for an Envoy-style sidecar. */
export function generateClusters(push: SextantPushContext, proxy: Proxy): ProtoJson[] {
  const scope = sidecarScope(push, proxy);
  const out: ProtoJson[] = [];
  const autoMtls = hasWorkloadCertificate(proxy);
  const dc = proxyDataCentre(proxy) !== undefined;
  for (const svc of scope.services) {
    const clusters = serviceClusters(push, svc, proxy.namespace, false, proxy.clusterId, autoMtls);
    out.push(...(dc ? clusters.map(withPassiveFailover) : clusters));
  }
  // Lanes: a cluster per covered service port and lane (lanes.ts).
  out.push(...laneClusters(push, scope.services, (svc) => serviceClusters(push, svc, proxy.namespace, false, proxy.clusterId, autoMtls)));
  out.push(...inboundClusters(push, proxy));
  out.push(withConnectTimeout(push, PASSTHROUGH), withConnectTimeout(push, BLACKHOLE));
  if (proxy.interceptionMode !== 'NONE') out.push(withConnectTimeout(push, INBOUND_PASSTHROUGH));
  return out;
}
