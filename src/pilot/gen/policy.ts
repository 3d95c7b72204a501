// DestinationRule traffic policy → Envoy cluster fields: load balancer (incl. consistent
// hash), connection pool (circuit breakers, timeouts, HTTP protocol options), outlier
// detection, locality settings; with Istio's port-level and subset override rules.
import type { ProtoJson } from '../../envoy/index.ts';
import type { DestinationRuleSpec, TrafficPolicy, Protocol } from '../../registry/index.ts';
import type { ClientTLSSettings } from '../../api/index.ts';
import { isHttp2Protocol, isHttpProtocol } from '../../registry/index.ts';

type PolicyFields = Omit<TrafficPolicy, 'portLevelSettings'>;

function overlay(base: PolicyFields, over: PolicyFields | undefined): PolicyFields {
  if (!over) return base;
  const out: PolicyFields = { ...base };
  if (over.loadBalancer) out.loadBalancer = over.loadBalancer;
  if (over.connectionPool) out.connectionPool = over.connectionPool;
  if (over.outlierDetection) out.outlierDetection = over.outlierDetection;
  if (over.tls) out.tls = over.tls;
  return out;
}

function atPort(policy: TrafficPolicy | undefined, port: number): PolicyFields {
  if (!policy) return {};
  const { portLevelSettings, ...rest } = policy;
  return overlay(rest, portLevelSettings?.find((p) => p.port?.number === port));
}

/**
 * The policy for one cluster: the rule's policy at this port, then the subset's policy
 * at this port over it (Istio's MergeTrafficPolicy: a subset field replaces the parent's).
 */
export function effectivePolicy(dr: DestinationRuleSpec | undefined, subset: string, port: number): PolicyFields {
  if (!dr) return {};
  const top = atPort(dr.trafficPolicy, port);
  if (!subset) return top;
  const sub = dr.subsets?.find((s) => s.name === subset);
  return overlay(top, atPort(sub?.trafficPolicy, port));
}

const MAX_U32 = 4294967295;

// The shared codec names fields as protobufjs does; a digit after `_` keeps the underscore.
const CONSECUTIVE_5XX = 'consecutive5xx';
const ENFORCING_CONSECUTIVE_5XX = 'enforcingConsecutive5xx';

const UNIT_SECONDS: Record<string, number> = { ns: 1e-9, us: 1e-6, 'µs': 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600 };

/** Go-style durations as Istio accepts them ("1h", "1m30s", "500ms", "1.5s") → seconds. */
function seconds(d: string | undefined): number | undefined {
  if (!d) return undefined;
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let end = 0;
  for (let m = re.exec(d); m; m = re.exec(d)) {
    total += Number(m[1]) * (UNIT_SECONDS[m[2] as string] ?? 0);
    end = re.lastIndex;
  }
  return end === d.length && end > 0 ? total : undefined;
}

/** Istio durations ("1h", "500ms") → proto3 JSON ("3600s", "0.500s"). */
export function protoDuration(d: string | undefined): string | undefined {
  const s = seconds(d);
  if (s === undefined) return undefined;
  return `${Number(s.toFixed(9))}s`;
}

export const DEFAULT_CONNECT_TIMEOUT = '10s';

/** The largest ring Envoy builds (RingHashLbConfig.minimum_ring_size: `lte: 8388608`). */
const MAX_RING_SIZE = 8_388_608;

/**
 * Writes the policy into `cluster` (already named and typed). `grpc` restricts the result
 * to what proxyless gRPC clients accept (ROUND_ROBIN or RING_HASH, no least-request).
 */
export function applyTrafficPolicy(cluster: ProtoJson, policy: PolicyFields, protocol: Protocol, opts: { grpc?: boolean; originalDst?: boolean } = {}): void {
  const lb = policy.loadBalancer;
  if (!opts.originalDst) {
    if (lb?.consistentHash) {
      const ch = lb.consistentHash;
      if (ch.maglev && !opts.grpc) {
        cluster['lbPolicy'] = 'MAGLEV';
        if (ch.maglev.tableSize) cluster['maglevLbConfig'] = { tableSize: ch.maglev.tableSize };
      } else {
        cluster['lbPolicy'] = 'RING_HASH';
        const min = ch.ringHash?.minimumRingSize ?? ch.minimumRingSize;
        // Istio accepts any size; Envoy refuses a ring above 8M entries (its validation rule).
        cluster['ringHashLbConfig'] = { minimumRingSize: Math.min(min ?? 1024, MAX_RING_SIZE) };
      }
    } else {
      switch (lb?.simple) {
        case 'ROUND_ROBIN': cluster['lbPolicy'] = 'ROUND_ROBIN'; break;
        case 'RANDOM': cluster['lbPolicy'] = opts.grpc ? 'ROUND_ROBIN' : 'RANDOM'; break;
        case 'PASSTHROUGH':
          cluster['type'] = 'ORIGINAL_DST';
          cluster['lbPolicy'] = 'CLUSTER_PROVIDED';
          delete cluster['edsClusterConfig'];
          break;
        default:
          // Istio's default balancer is least-request; gRPC clients only do round robin.
          cluster['lbPolicy'] = opts.grpc ? 'ROUND_ROBIN' : 'LEAST_REQUEST';
      }
    }
    if (lb?.warmupDurationSecs && !opts.grpc) {
      const w = protoDuration(lb.warmupDurationSecs);
      // Slow start belongs to the balancer's own config (least-request or round-robin only).
      if (w && cluster['lbPolicy'] === 'LEAST_REQUEST') cluster['leastRequestLbConfig'] = { slowStartConfig: { slowStartWindow: w } };
      else if (w && cluster['lbPolicy'] === 'ROUND_ROBIN') cluster['roundRobinLbConfig'] = { slowStartConfig: { slowStartWindow: w } };
    }
    const loc = lb?.localityLbSetting;
    if (loc && loc.enabled !== false && loc.distribute && loc.distribute.length > 0 && !opts.grpc) {
      cluster['commonLbConfig'] = { ...(cluster['commonLbConfig'] as ProtoJson | undefined), localityWeightedLbConfig: {} };
    }
  }

  const pool = policy.connectionPool;
  const threshold: ProtoJson = opts.grpc ? {} : { maxConnections: MAX_U32, maxPendingRequests: MAX_U32, maxRequests: MAX_U32, maxRetries: MAX_U32, trackRemaining: true };
  if (pool?.tcp?.maxConnections) threshold['maxConnections'] = pool.tcp.maxConnections;
  if (pool?.http?.http1MaxPendingRequests) threshold['maxPendingRequests'] = pool.http.http1MaxPendingRequests;
  if (pool?.http?.http2MaxRequests) threshold['maxRequests'] = pool.http.http2MaxRequests;
  if (pool?.http?.maxRetries) threshold['maxRetries'] = pool.http.maxRetries;
  if (Object.keys(threshold).length > 0) cluster['circuitBreakers'] = { thresholds: [threshold] };
  const ct = protoDuration(pool?.tcp?.connectTimeout);
  if (ct) cluster['connectTimeout'] = ct;
  const ka = pool?.tcp?.tcpKeepalive;
  if (ka && !opts.grpc) {
    const k: ProtoJson = {};
    if (ka.probes) k['keepaliveProbes'] = ka.probes;
    const t = seconds(ka.time);
    if (t !== undefined) k['keepaliveTime'] = Math.round(t);
    const i = seconds(ka.interval);
    if (i !== undefined) k['keepaliveInterval'] = Math.round(i);
    cluster['upstreamConnectionOptions'] = { tcpKeepalive: k };
  }
  if (isHttpProtocol(protocol) && !opts.grpc) {
    const common: ProtoJson = {};
    const idle = protoDuration(pool?.http?.idleTimeout);
    if (idle) common['idleTimeout'] = idle;
    if (pool?.http?.maxRequestsPerConnection) common['maxRequestsPerConnection'] = pool.http.maxRequestsPerConnection;
    const h2 = isHttp2Protocol(protocol) || pool?.http?.h2UpgradePolicy === 'UPGRADE';
    const h2Options: ProtoJson = {};
    if (pool?.http?.maxConcurrentStreams) h2Options['maxConcurrentStreams'] = pool.http.maxConcurrentStreams;
    let protocolConfig: ProtoJson | undefined;
    if (pool?.http?.useClientProtocol) protocolConfig = { useDownstreamProtocolConfig: { httpProtocolOptions: {}, http2ProtocolOptions: h2Options } };
    else if (h2) protocolConfig = { explicitHttpConfig: { http2ProtocolOptions: h2Options } };
    if (Object.keys(common).length > 0 || protocolConfig) {
      cluster['typedExtensionProtocolOptions'] = {
        'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
          '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
          ...(Object.keys(common).length > 0 ? { commonHttpProtocolOptions: common } : {}),
          ...(protocolConfig ?? { explicitHttpConfig: { httpProtocolOptions: {} } }),
        },
      };
    }
  } else if (isHttp2Protocol(protocol) && opts.grpc) {
    // nothing: gRPC clients always speak HTTP/2
  }

  const od = policy.outlierDetection;
  if (od) {
    const o: ProtoJson = {};
    const c5xx = od.consecutive5xxErrors ?? od.consecutiveErrors;
    if (c5xx !== undefined) {
      if (c5xx > 0) { o[CONSECUTIVE_5XX] = c5xx; o[ENFORCING_CONSECUTIVE_5XX] = 100; } else o[ENFORCING_CONSECUTIVE_5XX] = 0;
    } else if (od.consecutiveGatewayErrors !== undefined) {
      o[ENFORCING_CONSECUTIVE_5XX] = 0; // only gateway errors were asked for
    }
    if (od.consecutiveGatewayErrors !== undefined && od.consecutiveGatewayErrors > 0) {
      o['consecutiveGatewayFailure'] = od.consecutiveGatewayErrors;
      o['enforcingConsecutiveGatewayFailure'] = 100;
    }
    const interval = protoDuration(od.interval);
    if (interval) o['interval'] = interval;
    const base = protoDuration(od.baseEjectionTime);
    if (base) o['baseEjectionTime'] = base;
    if (od.maxEjectionPercent !== undefined) o['maxEjectionPercent'] = od.maxEjectionPercent;
    if (od.splitExternalLocalOriginErrors) {
      o['splitExternalLocalOriginErrors'] = true;
      if (od.consecutiveLocalOriginFailures) {
        o['consecutiveLocalOriginFailure'] = od.consecutiveLocalOriginFailures;
        o['enforcingConsecutiveLocalOriginFailure'] = 100;
      }
    }
    // Envoy's success-rate ejection is on by default; Istio turns it off.
    o['enforcingSuccessRate'] = 0;
    cluster['outlierDetection'] = o;
    if (od.minHealthPercent !== undefined && !opts.grpc) {
      cluster['commonLbConfig'] = { ...(cluster['commonLbConfig'] as ProtoJson | undefined), healthyPanicThreshold: { value: od.minHealthPercent } };
    }
  }
}

const UPSTREAM_TLS_TYPE = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';

/**
 * DestinationRule `tls` → the cluster's transport socket: SIMPLE originates TLS (SNI, CA
 * file, SANs), MUTUAL adds the client certificate files. ISTIO_MUTUAL (the mesh's own
 * certificates over SDS) and auto mTLS are applyMeshTls's (mtls.ts); DISABLE sends plaintext.
 */
export function applyClientTls(cluster: ProtoJson, tls: ClientTLSSettings | undefined, host: string): void {
  if (!tls || (tls.mode !== 'SIMPLE' && tls.mode !== 'MUTUAL')) return;
  const common: ProtoJson = {};
  if (tls.mode === 'MUTUAL' && tls.clientCertificate && tls.privateKey) {
    common['tlsCertificates'] = [{ certificateChain: { filename: tls.clientCertificate }, privateKey: { filename: tls.privateKey } }];
  }
  if (!tls.insecureSkipVerify && (tls.caCertificates || tls.subjectAltNames?.length)) {
    const vc: ProtoJson = {};
    if (tls.caCertificates) vc['trustedCa'] = { filename: tls.caCertificates };
    if (tls.subjectAltNames?.length) vc['matchTypedSubjectAltNames'] = tls.subjectAltNames.map((san) => ({ sanType: 'DNS', matcher: { exact: san } }));
    if (tls.caCrl) vc['crl'] = { filename: tls.caCrl };
    common['validationContext'] = vc;
  }
  cluster['transportSocket'] = {
    name: 'envoy.transport_sockets.tls',
    typedConfig: { '@type': UPSTREAM_TLS_TYPE, sni: tls.sni ?? (host.startsWith('*') ? '' : host), commonTlsContext: common },
  };
}

/** The route hashPolicy a consistent-hash load balancer needs (set on routes to the cluster). */
export function hashPolicy(policy: PolicyFields): ProtoJson[] | undefined {
  const ch = policy.loadBalancer?.consistentHash;
  if (!ch) return undefined;
  if (ch.httpHeaderName) return [{ header: { headerName: ch.httpHeaderName } }];
  if (ch.httpCookie?.name) {
    const cookie: ProtoJson = { name: ch.httpCookie.name };
    if (ch.httpCookie.path) cookie['path'] = ch.httpCookie.path;
    const ttl = protoDuration(ch.httpCookie.ttl);
    if (ttl) cookie['ttl'] = ttl;
    return [{ cookie }];
  }
  if (ch.useSourceIp) return [{ connectionProperties: { sourceIp: true } }];
  if (ch.httpQueryParameterName) return [{ queryParameter: { name: ch.httpQueryParameterName } }];
  return undefined;
}
