// The sidecar proxy: an ADS client feeding compile-then-serve runtime config, listeners
// bound from what the control plane sends, Istio telemetry, admin on loopback, and a
// graceful drain. `startProxy` wires it all; `sextant proxy` is its command line.
import type http from 'node:http';
import pino from 'pino';
import type { ProtoJson } from '../envoy/index.ts';
import { http1Limits } from './http/index.ts';
import type { Http1Limits } from './http/index.ts';
import { RuntimeConfig } from './config/runtime.ts';
import { ClusterPools } from './cluster/pools.ts';
import { ListenerManager } from './listener/listener-manager.ts';
import { AdsClient } from './xds/ads-client.ts';
import { BurstReclaimer } from './upstream/index.ts';
import { IstioMetrics } from './telemetry/metrics.ts';
import { AccessLogWriter } from './telemetry/access-log.ts';
import { peerMetadataHeaders, selfWorkload } from './telemetry/peer.ts';
import { boundAddress, startAdmin } from './admin/admin-server.ts';

export { RuntimeConfig } from './config/runtime.ts';
export { ConfigError } from './config/fields.ts';
export { AdsClient } from './xds/ads-client.ts';
export type { ResourceSink, XdsResource, XdsUpdateStatus } from './xds/ads-client.ts';
export { IstioMetrics } from './telemetry/metrics.ts';
export { DEFAULT_LABELS, ALL_LABELS, STANDARD_METRICS } from './telemetry/stats-config.ts';

export interface ProxyOptions {
  /** xDS server `host:port`. */
  xds: string;
  /** Node id as istio-agent sends it: `sidecar~IP~NAME.NS~NS.svc.cluster.local`. */
  id: string;
  /** Workload IP (defaults to the one in the node id). */
  ip?: string;
  namespace?: string;
  labels?: Record<string, string>;
  /** Extra node metadata; wins over what is derived. */
  metadata?: Record<string, unknown>;
  /** Admin (loopback) `host:port`; default 127.0.0.1:15000. Port 0 picks a free one. */
  adminAddress?: string;
  /** Prometheus `host:port` serving /stats/prometheus; default none (admin serves it too). */
  statsAddress?: string;
  /** SIGTERM drain period; default 5 s (Istio's terminationDrainDuration). */
  drainMs?: number;
  /** Idle expiry of passthrough destinations; default 5 s. */
  passthroughIdleMs?: number;
  /** Request body bytes kept for retries and mirrors; default 64 KiB. */
  retryBufferBytes?: number;
  /** Metric series per metric at most; default 10,000. */
  maxMetricSeries?: number;
  protocol?: 'delta' | 'sotw';
  limits?: Partial<Http1Limits>;
  logger?: pino.Logger;
  /** Envoy's initial_fetch_timeout for EDS/RDS before readiness stops waiting; default 15 s. */
  initialFetchTimeoutMs?: number;
}

export interface Proxy {
  readonly node: ProtoJson;
  readonly config: RuntimeConfig;
  readonly xds: AdsClient;
  readonly listeners: ListenerManager;
  readonly metrics: IstioMetrics;
  readonly pools: ClusterPools;
  /** Bound admin `host:port`. */
  readonly adminAddress: string;
  readonly statsAddress: string | undefined;
  /** Resolves once the first complete config is applied and its listeners are bound. */
  whenReady(): Promise<void>;
  /** Stops accepting, finishes in-flight requests within the drain period, closes everything. */
  drain(drainMs?: number): Promise<void>;
  /** Resolves after drain() completed (e.g. from /quitquitquit or SIGTERM). */
  readonly closed: Promise<void>;
}

/** Parses istio-agent's node id: `type~ip~pod.namespace~namespace.svc.cluster.local`. */
export function parseNodeId(id: string): { type: string; ip: string; podName: string; namespace: string; domain: string } {
  const parts = id.split('~');
  if (parts.length !== 4) throw new Error(`--id: expected TYPE~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local, got ${JSON.stringify(id)}`);
  const [type = '', ip = '', podNs = '', domain = ''] = parts;
  if (type !== 'sidecar' && type !== 'router') throw new Error(`--id: node type must be sidecar or router, got ${JSON.stringify(type)}`);
  const dot = podNs.lastIndexOf('.');
  return { type, ip, podName: dot > 0 ? podNs.slice(0, dot) : podNs, namespace: dot > 0 ? podNs.slice(dot + 1) : (domain.split('.')[0] ?? ''), domain };
}

/** The xDS node istio-agent would send for these options. */
export function buildNode(o: ProxyOptions): ProtoJson {
  const id = parseNodeId(o.id);
  const ip = o.ip ?? id.ip;
  const namespace = o.namespace ?? id.namespace;
  const labels = o.labels ?? {};
  const workload = labels['app'] ? (labels['version'] ? `${labels['app']}-${labels['version']}` : labels['app']) : id.podName.replace(/-[a-z0-9]{5,10}(-[a-z0-9]{5})?$/, '');
  const metadata: Record<string, unknown> = {
    NAME: id.podName,
    NAMESPACE: namespace,
    LABELS: labels,
    CLUSTER_ID: 'Kubernetes',
    INTERCEPTION_MODE: 'NONE',
    WORKLOAD_NAME: workload,
    INSTANCE_IPS: ip,
    ISTIO_VERSION: '1.24.0',
    MESH_ID: 'cluster.local',
    ...o.metadata,
  };
  return {
    id: o.id,
    cluster: `${labels['app'] ?? workload}.${namespace}`,
    metadata,
    userAgentName: 'sextant',
    userAgentVersion: '0.1.0',
  };
}

export async function startProxy(o: ProxyOptions): Promise<Proxy> {
  const logger = o.logger ?? pino({ name: 'sextant-proxy' });
  const node = buildNode(o);
  const meta = node['metadata'] as Record<string, unknown>;
  const labels = (meta['LABELS'] as Record<string, string> | undefined) ?? {};
  const retryBufferBytes = o.retryBufferBytes ?? 64 * 1024;
  const config = new RuntimeConfig(logger, o.initialFetchTimeoutMs ?? 15_000);
  // outbound connections leave from the workload's own IP when this host has it (M17)
  const pools = new ClusterPools({ passthroughIdleMs: o.passthroughIdleMs ?? 5000, retryBufferBytes, sourceAddress: String(meta['INSTANCE_IPS'] ?? '').split(',')[0] });
  const metrics = new IstioMetrics(o.maxMetricSeries ?? 10_000);
  const accessLog = new AccessLogWriter();
  const listeners = new ListenerManager({
    config, upstream: pools, logger, metrics, accessLog,
    self: selfWorkload(meta, labels),
    peerHeaders: peerMetadataHeaders(String(node['id']), meta),
    limits: http1Limits(o.limits),
    retryBufferBytes,
  });
  const xds = new AdsClient({ server: o.xds, node, sink: config, logger, protocol: o.protocol ?? 'delta' });

  let listenersReady = false;
  let readyResolve: () => void = () => {};
  const readyPromise = new Promise<void>((r) => { readyResolve = r; });
  let reconciling: Promise<void> = Promise.resolve();
  const reconcile = (): void => {
    reconciling = reconciling.then(() => listeners.reconcile()).then(() => {
      if (config.ready && !listenersReady) {
        listenersReady = true;
        readyResolve();
      }
    });
  };
  config.hooks = {
    listenersChanged: reconcile,
    clustersChanged: (_added, removed) => pools.release(removed),
    ready: reconcile,
  };
  const fetchTimer = setInterval(() => config.checkReady(), 1000);
  fetchTimer.unref();
  // a burst's garbage goes back to the OS once traffic stops (M9)
  const reclaimer = new BurstReclaimer({ served: () => listeners.served });

  let draining = false;
  let closedResolve: () => void = () => {};
  const closed = new Promise<void>((r) => { closedResolve = r; });
  const servers: http.Server[] = [];
  const drain = async (drainMs = o.drainMs ?? 5000): Promise<void> => {
    if (draining) return closed;
    draining = true;
    logger.info({ drainMs, inFlight: listeners.inFlight }, 'draining: no new connections; finishing in-flight requests');
    clearInterval(fetchTimer);
    reclaimer.close();
    await listeners.drain(drainMs);
    xds.close();
    pools.close();
    config.close();
    accessLog.close();
    for (const s of servers) {
      s.closeAllConnections();
      s.close();
    }
    logger.info('drained; exiting');
    closedResolve();
  };

  const adminState = {
    config, xds, metrics, listeners, node,
    state: (): 'LIVE' | 'DRAINING' => (draining ? 'DRAINING' : 'LIVE'),
    quit: () => void drain(),
  };
  const admin = await startAdmin(o.adminAddress ?? '127.0.0.1:15000', adminState);
  servers.push(admin);
  let statsAddress: string | undefined;
  if (o.statsAddress) {
    const stats = await startAdmin(o.statsAddress, adminState, 'stats');
    servers.push(stats);
    statsAddress = boundAddress(stats);
  }
  metrics.addExposition(() => `# HELP sextant_burst_memory_reclaims_total Full collections run after a burst of requests was followed by quiet.\n# TYPE sextant_burst_memory_reclaims_total counter\nsextant_burst_memory_reclaims_total ${reclaimer.reclaims}`);
  metrics.addExposition(() => `# HELP sextant_access_log_dropped_total Access log lines dropped because the log buffer was full.\n# TYPE sextant_access_log_dropped_total counter\nsextant_access_log_dropped_total ${accessLog.dropped}`);
  xds.start();
  logger.info({ xds: o.xds, id: o.id, admin: boundAddress(admin) }, 'proxy started');

  return {
    node, config, xds, listeners, metrics, pools,
    adminAddress: boundAddress(admin),
    statsAddress,
    whenReady: () => readyPromise,
    drain,
    closed,
  };
}
