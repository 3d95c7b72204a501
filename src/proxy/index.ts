// The sidecar proxy: an ADS client feeding compile-then-serve runtime config, listeners
// bound from what the control plane sends, Istio telemetry, admin on loopback, and a
// graceful drain. `startProxy` wires it all; `sextant proxy` is its command line.
import type http from 'node:http';
import pino from 'pino';
import type { ProtoJson } from '../envoy/index.ts';
import { http1Limits } from './http/index.ts';
import type { Http1Limits } from './http/index.ts';
import { RuntimeConfig } from './config/runtime.ts';
import { CaClient } from './tls/ca-client.ts';
import { UpstreamTls } from './tls/upstream.ts';
import { WorkloadCertificates } from './tls/workload-certificates.ts';
import { spiffeUri } from '../api/spiffe.ts';
import { ClusterPools } from './cluster/pools.ts';
import { ListenerManager } from './listener/listener-manager.ts';
import { AdsClient } from './xds/ads-client.ts';
import { BurstReclaimer } from './upstream/index.ts';
import { IstioMetrics } from './telemetry/metrics.ts';
import { AccessLogWriter } from './telemetry/access-log.ts';
import { peerMetadataHeaders, selfWorkload } from './telemetry/peer.ts';
import { boundAddress, startAdmin } from './admin/admin-server.ts';
import { DnsProxy } from './dns/index.ts';
import type { Upstream } from './dns/index.ts';
import { NAME_TABLE_TYPE } from '../envoy/index.ts';
import type { XdsTypeUrl } from '../envoy/index.ts';
import type { ResourceSink } from './xds/ads-client.ts';
import { mappedSource, sourceMap } from '../inject/iptables/index.ts';

export { RuntimeConfig } from './config/runtime.ts';
export { ConfigError } from './config/fields.ts';
export { AdsClient } from './xds/ads-client.ts';
export type { ResourceSink, XdsResource, XdsUpdateStatus } from './xds/ads-client.ts';
export { IstioMetrics } from './telemetry/metrics.ts';
export { DEFAULT_LABELS, ALL_LABELS, STANDARD_METRICS } from './telemetry/stats-config.ts';

export interface ProxyOptions {
  /**
   * Under capture (INTERCEPTION_MODE REDIRECT): callers in these ranges keep their IP as the
   * app's TCP peer; the same ranges as `sextant iptables --preserve-source-ranges`.
   */
  preserveSourceRanges?: readonly string[];
  /** The DNS proxy, which runs when node metadata DNS_CAPTURE is true (default 127.0.0.1:15053, /etc/resolv.conf). */
  dns?: { address?: string; port?: number; resolvConf?: string; upstreams?: readonly Upstream[] };
  /** xDS servers, `host:port` each, in order of preference (a string may list several, comma-separated). */
  xds: string | readonly string[];
  /** Node id as istio-agent sends it: `sidecar~IP~NAME.NS~NS.svc.cluster.local`. */
  id: string;
  /** Workload IP (defaults to the one in the node id). */
  ip?: string;
  namespace?: string;
  /** The cluster the workload runs in (node metadata CLUSTER_ID); default `Kubernetes`, as istio-agent's. */
  clusterId?: string;
  /** The network the workload is on (node metadata NETWORK); not sent when absent. */
  network?: string;
  labels?: Record<string, string>;
  /** Extra node metadata; wins over what is derived. */
  metadata?: Record<string, unknown>;
  /** Admin (loopback) `host:port`; default 127.0.0.1:15000. Port 0 picks a free one. */
  adminAddress?: string;
  /** Prometheus `host:port` serving /stats/prometheus; default none (admin serves it too). */
  statsAddress?: string;
  /** `host:port` serving Istio's readiness path /healthz/ready (15021 in a pod); default none. */
  healthAddress?: string;
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
  /** The workload certificate for mesh mTLS, from Istio's CreateCertificate; absent: no mTLS (TLS chains refuse, TLS clusters fail). */
  ca?: ProxyCaOptions;
}

export interface ProxyCaOptions {
  /** The CA's gRPC `host:port`; default the (first) xDS server, where `sextant pilot` serves it. */
  address?: string;
  /** The workload's service account (node metadata SERVICE_ACCOUNT); the identity is spiffe://TD/ns/NS/sa/SA. */
  serviceAccount: string;
  /** Default `cluster.local`. */
  trustDomain?: string;
  /** Requested lifetime (Istio's SECRET_TTL); default 24 h. Rotation at half of it. */
  ttlSeconds?: number;
  /** A bootstrap token, sent as `authorization: Bearer …`. */
  token?: string;
}

export interface Proxy {
  readonly node: ProtoJson;
  readonly config: RuntimeConfig;
  readonly xds: AdsClient;
  readonly listeners: ListenerManager;
  readonly metrics: IstioMetrics;
  readonly pools: ClusterPools;
  /** The workload certificate (mesh mTLS), when `ca` was given. */
  readonly certificates: WorkloadCertificates | undefined;
  /** Mesh mTLS to upstreams (handshake and resumption counts), when `ca` was given. */
  readonly upstreamTls: UpstreamTls | undefined;
  /** The DNS proxy, when node metadata DNS_CAPTURE is true. */
  readonly dns: DnsProxy | undefined;
  /** Bound admin `host:port`. */
  readonly adminAddress: string;
  readonly statsAddress: string | undefined;
  readonly healthAddress: string | undefined;
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
    CLUSTER_ID: o.clusterId || 'Kubernetes',
    ...(o.network ? { NETWORK: o.network } : {}),
    INTERCEPTION_MODE: 'NONE',
    WORKLOAD_NAME: workload,
    INSTANCE_IPS: ip,
    ISTIO_VERSION: '1.24.0',
    MESH_ID: 'cluster.local',
    ...(o.ca !== undefined ? { SERVICE_ACCOUNT: o.ca.serviceAccount } : {}),
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

/**
 * The workload certificate from the CA: the first one is retried with backoff until it comes
 * (mTLS connections are refused meanwhile), then rotated at half its lifetime.
 */
function meshCertificates(o: ProxyOptions, namespace: string, logger: pino.Logger): { certs: WorkloadCertificates; trustDomain: string; ready: Promise<void>; close(): void } {
  const ca = o.ca!;
  const trustDomain = ca.trustDomain ?? 'cluster.local';
  const address = ca.address ?? (Array.isArray(o.xds) ? o.xds[0] : String(o.xds).split(',')[0])!.trim();
  const client = new CaClient(address);
  const identity = spiffeUri({ trustDomain, namespace, serviceAccount: ca.serviceAccount });
  const certs = new WorkloadCertificates({
    identity,
    ttlSeconds: ca.ttlSeconds ?? 24 * 3600,
    logger,
    sign: (csrPem, ttlSeconds) => client.request({
      csrPem, ttlSeconds, metadata: { NAMESPACE: namespace, SERVICE_ACCOUNT: ca.serviceAccount }, ...(ca.token !== undefined ? { token: ca.token } : {}),
    }),
  });
  let closed = false;
  const ready = (async () => {
    for (let wait = 500; !closed; wait = Math.min(wait * 2, 30_000)) {
      try {
        await certs.start();
        return;
      } catch (err) {
        logger.warn({ identity, ca: address, err: (err as Error).message, retryMs: wait }, 'no workload certificate yet; retrying');
        await new Promise((r) => setTimeout(r, wait).unref());
      }
    }
  })();
  return { certs, trustDomain, ready, close: () => { closed = true; certs.close(); client.close(); } };
}

export async function startProxy(o: ProxyOptions): Promise<Proxy> {
  const logger = o.logger ?? pino({ name: 'sextant-proxy' });
  const node = buildNode(o);
  const meta = node['metadata'] as Record<string, unknown>;
  const labels = (meta['LABELS'] as Record<string, string> | undefined) ?? {};
  const retryBufferBytes = o.retryBufferBytes ?? 64 * 1024;
  const config = new RuntimeConfig(logger, o.initialFetchTimeoutMs ?? 15_000);
  // outbound connections leave from the workload's own IP when this host has it (M17)
  const workloadAddress = String(meta['INSTANCE_IPS'] ?? '').split(',')[0] ?? '';
  // REDIRECT capture by `sextant iptables`: original destinations from the capture addresses,
  // and callers in the preserved ranges kept as the app's TCP peer (M17)
  const captured = meta['INTERCEPTION_MODE'] === 'REDIRECT';
  const preserved = captured ? sourceMap(o.preserveSourceRanges ?? []) : [];
  // The workload certificate, as istio-agent keeps Envoy's SDS secrets (default, ROOTCA), in-process.
  const mesh = o.ca === undefined ? undefined : meshCertificates(o, String(meta['NAMESPACE'] ?? ''), logger);
  const upstreamTls = mesh === undefined ? undefined : new UpstreamTls({ certs: mesh.certs, trustDomain: mesh.trustDomain });
  const pools = new ClusterPools({
    ...(upstreamTls !== undefined ? { tls: upstreamTls } : {}),
    passthroughIdleMs: o.passthroughIdleMs ?? 5000, retryBufferBytes, sourceAddress: workloadAddress,
    ...(preserved.length > 0 ? { mapSource: (caller: string) => mappedSource(preserved, caller) } : {}),
  });
  const metrics = new IstioMetrics(o.maxMetricSeries ?? 10_000);
  const accessLog = new AccessLogWriter();
  const listeners = new ListenerManager({
    config, upstream: pools, logger, metrics, accessLog,
    self: selfWorkload(meta, labels),
    peerHeaders: peerMetadataHeaders(String(node['id']), meta),
    limits: http1Limits(o.limits),
    retryBufferBytes,
    ...(captured ? { capture: { workloadAddress } } : {}),
    ...(mesh !== undefined ? { tls: { certs: mesh.certs, trustDomain: mesh.trustDomain } } : {}),
    ...(upstreamTls !== undefined ? { upstreamTls } : {}),
  });
  const dnsCapture = ['true', true, '1'].includes(meta['DNS_CAPTURE'] as string);
  const dns = dnsCapture ? new DnsProxy({ namespace: String(meta['NAMESPACE'] ?? ''), logger, ...o.dns }) : undefined;
  // The name table (NDS) goes to the DNS proxy, everything else to the runtime config.
  const sink: ResourceSink = dns === undefined ? config : {
    apply: (t: XdsTypeUrl, r) => (t === NAME_TABLE_TYPE ? dns.apply(r) : config.apply(t, r)),
    interest: (t: XdsTypeUrl) => config.interest(t),
  };
  const xds = new AdsClient({ server: o.xds, node, sink, logger, protocol: o.protocol ?? 'delta', ...(dns !== undefined ? { extraTypes: [NAME_TABLE_TYPE] } : {}) });

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
    mesh?.close();
    xds.close();
    pools.close();
    dns?.close();
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
    // ready also needs the workload certificate when mTLS is on (its listeners could not serve mTLS before)
    listenersBound: () => listenersReady && (mesh === undefined || mesh.certs.current() !== undefined),
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
  let healthAddress: string | undefined;
  if (o.healthAddress) {
    const health = await startAdmin(o.healthAddress, adminState, 'health');
    servers.push(health);
    healthAddress = boundAddress(health);
  }
  metrics.addExposition(() => `# HELP sextant_burst_memory_reclaims_total Full collections run after a burst of requests was followed by quiet.\n# TYPE sextant_burst_memory_reclaims_total counter\nsextant_burst_memory_reclaims_total ${reclaimer.reclaims}`);
  metrics.addExposition(() => `# HELP sextant_access_log_dropped_total Access log lines dropped because the log buffer was full.\n# TYPE sextant_access_log_dropped_total counter\nsextant_access_log_dropped_total ${accessLog.dropped}`);
  if (mesh !== undefined && upstreamTls !== undefined) {
    const m = mesh;
    const up = upstreamTls;
    metrics.addExposition(() => {
      const s = m.certs.current();
      return [
        '# HELP sextant_workload_cert_expiry_timestamp_seconds When the workload certificate in use expires (0: none yet).', '# TYPE sextant_workload_cert_expiry_timestamp_seconds gauge', `sextant_workload_cert_expiry_timestamp_seconds ${s === undefined ? 0 : Math.floor(s.notAfter / 1000)}`,
        '# HELP sextant_workload_cert_generation Workload certificates installed since start (1 + rotations).', '# TYPE sextant_workload_cert_generation gauge', `sextant_workload_cert_generation ${s?.generation ?? 0}`,
        '# HELP sextant_workload_cert_rotation_failures_total Certificate requests that failed and were retried.', '# TYPE sextant_workload_cert_rotation_failures_total counter', `sextant_workload_cert_rotation_failures_total ${m.certs.failures}`,
        '# HELP sextant_mtls_upstream_handshakes_total mTLS handshakes to upstream sidecars, by resumption.', '# TYPE sextant_mtls_upstream_handshakes_total counter',
        `sextant_mtls_upstream_handshakes_total{resumed="false"} ${up.handshakes - up.resumed}`, `sextant_mtls_upstream_handshakes_total{resumed="true"} ${up.resumed}`,
        '# HELP sextant_mtls_upstream_peer_refused_total Upstream sidecars refused for their identity.', '# TYPE sextant_mtls_upstream_peer_refused_total counter', `sextant_mtls_upstream_peer_refused_total ${up.peerRefused}`,
        '# HELP sextant_mtls_downstream_refused_total Inbound mTLS connections refused (handshake, untrusted or unacceptable peer, no certificate yet).', '# TYPE sextant_mtls_downstream_refused_total counter', `sextant_mtls_downstream_refused_total ${listeners.tlsRefused}`,
      ].join('\n');
    });
  }
  if (dns !== undefined) {
    await dns.start();
    metrics.addExposition(() => [
      '# HELP istio_agent_dns_requests_total DNS queries received by the DNS proxy.', '# TYPE istio_agent_dns_requests_total counter', `istio_agent_dns_requests_total ${dns.stats.requests}`,
      '# HELP sextant_dns_local_answers_total DNS queries answered from the name table.', '# TYPE sextant_dns_local_answers_total counter', `sextant_dns_local_answers_total ${dns.stats.answeredLocally}`,
      '# HELP istio_agent_dns_upstream_requests_total DNS queries forwarded to a resolver.', '# TYPE istio_agent_dns_upstream_requests_total counter', `istio_agent_dns_upstream_requests_total ${dns.stats.upstreamRequests}`,
      '# HELP istio_agent_dns_upstream_failures_total Forwarded DNS queries that got no answer.', '# TYPE istio_agent_dns_upstream_failures_total counter', `istio_agent_dns_upstream_failures_total ${dns.stats.upstreamFailures}`,
      '# HELP sextant_dns_name_table_hosts Hosts in the DNS name table (NDS).', '# TYPE sextant_dns_name_table_hosts gauge', `sextant_dns_name_table_hosts ${dns.hosts}`,
    ].join('\n'));
  }
  xds.start();
  logger.info({ xds: o.xds, id: o.id, admin: boundAddress(admin) }, 'proxy started');

  return {
    node, config, xds, listeners, metrics, pools, dns,
    adminAddress: boundAddress(admin),
    statsAddress,
    healthAddress,
    certificates: mesh?.certs,
    upstreamTls,
    // ready once the config is applied and bound, and the workload certificate (if any) is in
    whenReady: () => (mesh === undefined ? readyPromise : Promise.all([readyPromise, mesh.ready]).then(() => undefined)),
    drain,
    closed,
  };
}
