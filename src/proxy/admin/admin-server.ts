// The proxy's admin endpoints (Envoy's paths, meant for loopback): /ready, /stats/prometheus,
// /stats, /config_dump, /clusters, /listeners, /quitquitquit. A plain node:http server is
// fine here: this is the operator's side door, not the data path.
import type http from 'node:http';
import type net from 'node:net';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE } from '../../envoy/index.ts';
import type { ProtoJson, XdsTypeUrl } from '../../envoy/index.ts';
import type { RuntimeConfig } from '../config/runtime.ts';
import type { AdsClient } from '../xds/ads-client.ts';
import type { IstioMetrics } from '../telemetry/metrics.ts';
import type { ListenerManager } from '../listener/listener-manager.ts';

// node:http without an ESM import: the ESM facade of node:http reads every export, which
// loads Node's bundled fetch (undici), 14 MB of RSS and 3 MB of heap for nothing.
const { createServer } = process.getBuiltinModule('node:http');

export interface AdminState {
  config: RuntimeConfig;
  xds: AdsClient;
  metrics: IstioMetrics;
  listeners: ListenerManager;
  node: ProtoJson;
  /** 'LIVE' | 'DRAINING'; readiness also needs the first complete config. */
  state: () => 'LIVE' | 'DRAINING';
  /** Whether the first complete config's listeners are bound (ready needs that too, as `sextant wait` relies on it). */
  listenersBound?: () => boolean;
  quit: () => void;
  /** More `/stats` lines (filters' stats: local rate limits, admission gates). */
  extraStats?: () => string[];
  /** A gateway's SDS secrets, described without key material (config_dump's SecretsConfigDump). */
  secrets?: () => { name: string; kind: 'cert' | 'ca'; version: string; serial?: string; notAfter?: string }[];
}

const DUMP = 'type.googleapis.com/envoy.admin.v3.';

/**
 * Serves admin on `address` (`host:port`); resolves with the bound server. `stats` serves only
 * the Prometheus paths, `health` only Istio's readiness path `/healthz/ready` (port 15021 in a
 * pod: the kubelet's readiness probe and `sextant wait` ask it).
 */
export async function startAdmin(address: string, s: AdminState, paths: 'admin' | 'stats' | 'health' = 'admin'): Promise<http.Server> {
  const [host, portStr] = splitHostPort(address);
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://admin');
    const send = (status: number, body: string, type = 'text/plain; charset=UTF-8'): void => {
      res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    const ready = (): void => {
      if (s.state() === 'DRAINING') return send(503, 'DRAINING\n');
      return s.config.ready && (s.listenersBound?.() ?? true) ? send(200, 'LIVE\n') : send(503, 'PRE_INITIALIZING\n');
    };
    try {
      if (paths === 'health') return url.pathname === '/healthz/ready' ? ready() : send(404, 'not found\n');
      if (url.pathname === '/stats/prometheus' || (paths === 'stats' && url.pathname === '/metrics')) {
        return send(200, prometheus(s), 'text/plain; version=0.0.4; charset=utf-8');
      }
      if (paths === 'stats') return send(404, 'not found\n');
      switch (url.pathname) {
        case '/ready':
          return ready();
        case '/stats':
          return send(200, envoyStats(s));
        case '/runtime':
          // Envoy's /runtime: the RTDS layers and each key's value per layer and in effect
          return send(200, JSON.stringify(s.config.layers.dump(), null, 2), 'application/json');
        case '/config_dump':
          return send(200, JSON.stringify(configDump(s), null, 2), 'application/json');
        case '/clusters':
          return url.searchParams.get('format') === 'json' ? send(200, JSON.stringify(clustersJson(s), null, 2), 'application/json') : send(200, clustersText(s));
        case '/listeners':
          return send(200, [
            ...[...s.listeners.boundAddresses()].map(([n, a]) => `${n}::${a}`),
            // listeners waiting for their port (tried again with a backoff)
            ...[...s.listeners.errors].map(([n, e]) => `${n}::not bound: ${e}`),
          ].join('\n') + '\n');
        case '/quitquitquit':
          if (req.method !== 'POST') return send(405, 'use POST\n');
          send(200, 'OK\n');
          s.quit();
          return;
        case '/':
          return send(200, ['/ready', '/stats', '/stats/prometheus', '/config_dump', '/runtime', '/clusters', '/listeners', '/quitquitquit'].join('\n') + '\n');
        default:
          return send(404, 'not found\n');
      }
    } catch (err) {
      send(500, `${(err as Error).message}\n`);
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port: Number(portStr) }, () => resolve());
  });
  return server;
}

export function splitHostPort(a: string): [string, string] {
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(a);
  if (!m) throw new Error(`expected HOST:PORT, got ${JSON.stringify(a)}`);
  return [m[1]!, m[2]!];
}

export function boundAddress(server: http.Server): string {
  const a = server.address() as net.AddressInfo;
  return `${a.address}:${a.port}`;
}

function prometheus(s: AdminState): string {
  const lines: string[] = [s.metrics.expose()];
  const g = (name: string, type: string, help: string, rows: [string, number][]): void => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, v] of rows) lines.push(`${name}${labels} ${v}`);
  };
  const clusters = [...s.config.clusters.values()];
  const lab = (n: string): string => `{cluster_name="${n}"}`;
  g('envoy_cluster_upstream_rq_active', 'gauge', 'Requests in flight per cluster.', clusters.map((c) => [lab(c.name), c.circuitBreaker.activeRequests]));
  g('envoy_cluster_upstream_rq_pending_overflow', 'counter', 'Requests refused by a circuit breaker (UO).', clusters.map((c) => [lab(c.name), c.circuitBreaker.requestOverflows]));
  g('envoy_cluster_upstream_rq_retry_overflow', 'counter', 'Retries not made because of the retry circuit breaker.', clusters.map((c) => [lab(c.name), c.circuitBreaker.retryOverflows]));
  g('envoy_cluster_outlier_detection_ejections_active', 'gauge', 'Hosts ejected now.', clusters.map((c) => [lab(c.name), c.hosts.filter((h) => h.ejected).length]));
  g('envoy_cluster_membership_healthy', 'gauge', 'Healthy hosts per cluster.', clusters.map((c) => [lab(c.name), c.hosts.filter((h) => h.healthy).length]));
  g('envoy_server_state', 'gauge', 'Server state: 0 live, 1 draining, 2 pre-initializing.', [['', s.state() === 'DRAINING' ? 1 : s.config.ready ? 0 : 2]]);
  g('envoy_server_memory_allocated', 'gauge', 'Resident set size in bytes.', [['', process.memoryUsage.rss()]]);
  return lines.join('\n') + '\n';
}

function envoyStats(s: AdminState): string {
  const out: string[] = [];
  for (const c of s.config.clusters.values()) {
    out.push(`cluster.${c.name}.upstream_rq_active: ${c.circuitBreaker.activeRequests}`);
    out.push(`cluster.${c.name}.upstream_rq_pending_overflow: ${c.circuitBreaker.requestOverflows}`);
    out.push(`cluster.${c.name}.upstream_rq_retry_overflow: ${c.circuitBreaker.retryOverflows}`);
    out.push(`cluster.${c.name}.outlier_detection.ejections_active: ${c.hosts.filter((h) => h.ejected).length}`);
    out.push(`cluster.${c.name}.outlier_detection.ejections_total: ${c.outlier?.ejectionsTotal ?? 0}`);
  }
  // Envoy's downstream_cx_total, by listener name: what reached the sidecar at all.
  for (const [name, n] of s.listeners.acceptedConnections()) out.push(`listener.${name}.downstream_cx_total: ${n}`);
  if (s.extraStats !== undefined) out.push(...s.extraStats());
  out.push(`server.state: ${s.state() === 'DRAINING' ? 1 : s.config.ready ? 0 : 2}`);
  out.push(`metrics.series: ${s.metrics.seriesCount()}`);
  return out.join('\n') + '\n';
}

function clustersText(s: AdminState): string {
  const out: string[] = [];
  for (const c of s.config.clusters.values()) {
    const t = c.circuitBreaker.thresholds;
    out.push(`${c.name}::default_priority::max_connections::${t.maxConnections}`);
    out.push(`${c.name}::default_priority::max_pending_requests::${t.maxPendingRequests}`);
    out.push(`${c.name}::default_priority::max_requests::${t.maxRequests}`);
    out.push(`${c.name}::default_priority::max_retries::${t.maxRetries}`);
    for (const h of c.hosts) {
      const health = [h.edsDraining ? '/eds_status_draining' : h.edsHealthy ? '' : '/failed_eds_health', h.ejected ? '/failed_outlier_check' : ''].join('') || 'healthy';
      out.push(`${c.name}::${h.key}::rq_active::${h.active}`);
      out.push(`${c.name}::${h.key}::rq_total::${h.totalRequests}`);
      out.push(`${c.name}::${h.key}::rq_error::${h.totalErrors}`);
      out.push(`${c.name}::${h.key}::health_flags::${health}`);
      out.push(`${c.name}::${h.key}::weight::${h.weight}`);
      out.push(`${c.name}::${h.key}::priority::${h.priority}`);
      if (h.locality) out.push(`${c.name}::${h.key}::zone::${h.locality}`);
    }
  }
  return out.join('\n') + '\n';
}

function clustersJson(s: AdminState): ProtoJson {
  return {
    clusterStatuses: [...s.config.clusters.values()].map((c) => ({
      name: c.name,
      hostStatuses: c.hosts.map((h) => ({
        address: { socketAddress: { address: h.address, portValue: h.port } },
        stats: [{ name: 'rq_active', value: h.active }, { name: 'rq_total', value: h.totalRequests }, { name: 'rq_error', value: h.totalErrors }],
        healthStatus: { edsHealthStatus: h.edsDraining ? 'DRAINING' : h.edsHealthy ? 'HEALTHY' : 'UNHEALTHY', failedOutlierCheck: h.ejected },
        weight: h.weight,
        priority: h.priority,
      })),
    })),
  };
}

function configDump(s: AdminState): ProtoJson {
  const xds = s.xds;
  const when = (t: XdsTypeUrl): string => {
    const last = [...xds.history].reverse().find((h) => h.typeUrl === t && h.accepted);
    return new Date(last?.at ?? Date.now()).toISOString();
  };
  const errorFor = (t: XdsTypeUrl): ProtoJson | undefined => {
    const last = [...xds.history].reverse().find((h) => h.typeUrl === t);
    return last && !last.accepted ? { lastUpdateAttempt: new Date(last.at).toISOString(), details: last.error } : undefined;
  };
  const withType = (t: XdsTypeUrl, r: ProtoJson): ProtoJson => ({ '@type': t, ...r });
  const acc = (t: XdsTypeUrl): { name: string; version: string; resource: ProtoJson }[] => [...xds.accepted(t).values()];
  return {
    configs: [
      { '@type': `${DUMP}BootstrapConfigDump`, bootstrap: { node: s.node, dynamicResources: { adsConfig: { apiType: xds.protocol === 'delta' ? 'DELTA_GRPC' : 'GRPC', transportApiVersion: 'V3' }, cdsConfig: { ads: {}, resourceApiVersion: 'V3' }, ldsConfig: { ads: {}, resourceApiVersion: 'V3' } } } },
      {
        '@type': `${DUMP}ClustersConfigDump`,
        versionInfo: xds.versionInfo(CLUSTER_TYPE),
        dynamicActiveClusters: acc(CLUSTER_TYPE).map((r) => ({ versionInfo: r.version, cluster: withType(CLUSTER_TYPE, r.resource), lastUpdated: when(CLUSTER_TYPE), errorState: errorFor(CLUSTER_TYPE) })),
      },
      {
        '@type': `${DUMP}ListenersConfigDump`,
        versionInfo: xds.versionInfo(LISTENER_TYPE),
        dynamicListeners: acc(LISTENER_TYPE).map((r) => ({ name: r.name, activeState: { versionInfo: r.version, listener: withType(LISTENER_TYPE, r.resource), lastUpdated: when(LISTENER_TYPE) }, errorState: errorFor(LISTENER_TYPE) })),
      },
      {
        '@type': `${DUMP}RoutesConfigDump`,
        dynamicRouteConfigs: acc(ROUTE_TYPE).map((r) => ({ versionInfo: r.version, routeConfig: withType(ROUTE_TYPE, r.resource), lastUpdated: when(ROUTE_TYPE), errorState: errorFor(ROUTE_TYPE) })),
      },
      {
        '@type': `${DUMP}EndpointsConfigDump`,
        dynamicEndpointConfigs: acc(ENDPOINT_TYPE).map((r) => ({ versionInfo: r.version, endpointConfig: withType(ENDPOINT_TYPE, r.resource), lastUpdated: when(ENDPOINT_TYPE), errorState: errorFor(ENDPOINT_TYPE) })),
      },
      {
        // As Envoy dumps secrets: every value redacted; the serial and expiry say which certificate is in use.
        '@type': `${DUMP}SecretsConfigDump`,
        dynamicActiveSecrets: (s.secrets?.() ?? []).map((x) => ({
          name: x.name, versionInfo: x.version,
          secret: x.kind === 'cert'
            ? { name: x.name, tlsCertificate: { certificateChain: { inlineString: '[redacted]' }, privateKey: { inlineString: '[redacted]' } } }
            : { name: x.name, validationContext: { trustedCa: { inlineString: '[redacted]' } } },
          ...(x.serial !== undefined ? { serialNumber: x.serial } : {}), ...(x.notAfter !== undefined ? { notAfter: x.notAfter } : {}),
        })),
      },
    ],
  };
}
