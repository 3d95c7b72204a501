// The sidecar proxy: an ADS client feeding compile-then-serve runtime config, listeners
// bound from what the control plane sends, Istio telemetry, admin on loopback, and a
// graceful drain. `startProxy` wires it all; `sextant proxy` is its command line.
import type http from 'node:http';
import pino from 'pino';
import type { ProtoJson } from '../envoy/index.ts';
import { http1Limits } from './http/index.ts';
import type { Http1Limits } from './http/index.ts';
import { RuntimeConfig } from './config/runtime.ts';
import { CaClient, controlPlaneCredentials } from './tls/ca-client.ts';
import { UpstreamTls } from './tls/upstream.ts';
import { WorkloadCertificates } from './tls/workload-certificates.ts';
import { spiffeUri } from '../api/spiffe.ts';
import { ClusterPools } from './cluster/pools.ts';
import { ListenerManager } from './listener/listener-manager.ts';
import { AdsClient } from './xds/ads-client.ts';
import { BurstReclaimer } from './upstream/index.ts';
import { IstioMetrics } from './telemetry/metrics.ts';
import { AccessLogWriter } from './telemetry/access-log.ts';
import { AccessLogService } from './telemetry/als.ts';
import type { AlsEndpoint } from './telemetry/als.ts';
import { XDS_GRPC_CLUSTER } from '../envoy/access-log.ts';
import { peerMetadataHeaders, selfWorkload } from './telemetry/peer.ts';
import { boundAddress, startAdmin } from './admin/admin-server.ts';
import { DnsProxy } from './dns/index.ts';
import type { Upstream } from './dns/index.ts';
import { EXTENSION_CONFIG_TYPE, NAME_TABLE_TYPE, RUNTIME_TYPE, SECRET_TYPE } from '../envoy/index.ts';
import { WasmHost, extensionConfigNames, wasmConfigsOf } from './filters/wasm/index.ts';
import { ServerCredentials, secretNamesOf, tlsSpecsOf } from './tls/server-credentials.ts';
import { LocalRateLimits, localRateLimitPrometheus, localRateLimitStatLines } from './filters/local-ratelimit/index.ts';
import { AdmissionGates, admissionPrometheus, admissionStatLines } from './filters/admission/index.ts';
import type { AdmissionConfig } from './filters/admission/index.ts';
import { LoadReportingClient } from './telemetry/lrs.ts';
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
  /** ALS (access logs over gRPC): entries and bytes held per stream while the sink is down or slow; default 10,000 and 4 MiB. */
  accessLogBuffer?: { entries?: number; bytes?: number };
  protocol?: 'delta' | 'sotw';
  limits?: Partial<Http1Limits>;
  logger?: pino.Logger;
  /** Envoy's initial_fetch_timeout for EDS/RDS before readiness stops waiting; default 15 s. */
  initialFetchTimeoutMs?: number;
  /** The workload certificate for mesh mTLS, from Istio's CreateCertificate; absent: no mTLS (TLS chains refuse, TLS clusters fail). */
  ca?: ProxyCaOptions;
  /**
   * The workload's data centre (SEXTANT_DC): a locality as Istio writes it (`region/zone/subzone`,
   * trailing parts optional), sent as the node's locality and as node metadata SEXTANT_DC.
   */
  dataCentre?: string;
  /** The workload's lane (SEXTANT_LANE, for a VM): its label `sextant.io/lane` unless the labels set one. */
  lane?: string;
  /**
   * A closed control plane: xDS and the CA over TLS, the pilot checked against this root, the
   * workload certificate (`ca`, required) presented on every xDS stream. The first certificate
   * is obtained with the bootstrap token; xDS starts once it is in.
   */
  xdsTls?: { rootPem: string; serverName?: string };
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
  /** Local rate limits: the token buckets and stats (src/proxy/filters/local-ratelimit). */
  readonly localRateLimits: LocalRateLimits;
  /** The adaptive-limits admission gates, one per gated inbound port (src/proxy/filters/admission). */
  readonly admission: AdmissionGates;
  /** Load reports (LRS) to the xDS server. */
  readonly loadReporting: LoadReportingClient;
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
  const labels = o.lane !== undefined && o.labels?.['sextant.io/lane'] === undefined ? { ...o.labels, 'sextant.io/lane': o.lane } : (o.labels ?? {});
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
    ...(o.dataCentre !== undefined ? { SEXTANT_DC: o.dataCentre } : {}),
    ...o.metadata,
  };
  const node: ProtoJson = {
    id: o.id,
    cluster: `${labels['app'] ?? workload}.${namespace}`,
    metadata,
    userAgentName: 'sextant',
    userAgentVersion: '0.1.0',
  };
  // active-active: the data centre is the node's locality (endpoints in it come first)
  if (o.dataCentre !== undefined) {
    const [region = '', zone = '', subZone = ''] = o.dataCentre.split('/');
    node['locality'] = { region, zone, subZone };
  }
  return node;
}

/**
 * The workload certificate from the CA: the first one is retried with backoff until it comes
 * (mTLS connections are refused meanwhile), then rotated at half its lifetime.
 */
function meshCertificates(o: ProxyOptions, namespace: string, logger: pino.Logger): { certs: WorkloadCertificates; trustDomain: string; ready: Promise<void>; close(): void } {
  const ca = o.ca!;
  const trustDomain = ca.trustDomain ?? 'cluster.local';
  const address = ca.address ?? (Array.isArray(o.xds) ? o.xds[0] : String(o.xds).split(',')[0])!.trim();
  // over TLS, renewals present the current certificate (the CA then needs no token)
  let current: () => { keyPem: string; chainPem: string } | undefined = () => undefined;
  const client = new CaClient(address, o.xdsTls === undefined ? undefined : { ...o.xdsTls, clientCertificate: () => current() });
  const identity = spiffeUri({ trustDomain, namespace, serviceAccount: ca.serviceAccount });
  const certs = new WorkloadCertificates({
    identity,
    ttlSeconds: ca.ttlSeconds ?? 24 * 3600,
    logger,
    sign: (csrPem, ttlSeconds) => client.request({
      csrPem, ttlSeconds, metadata: { NAMESPACE: namespace, SERVICE_ACCOUNT: ca.serviceAccount }, ...(ca.token !== undefined ? { token: ca.token } : {}),
    }),
  });
  current = () => certs.current();
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
  if (o.xdsTls !== undefined && o.ca === undefined) throw new Error('xDS over TLS needs the workload\'s identity for its certificate (ca.serviceAccount, --service-account)');
  const mesh = o.ca === undefined ? undefined : meshCertificates(o, String(meta['NAMESPACE'] ?? ''), logger);
  const upstreamTls = mesh === undefined ? undefined : new UpstreamTls({ certs: mesh.certs, trustDomain: mesh.trustDomain });
  const pools = new ClusterPools({
    ...(upstreamTls !== undefined ? { tls: upstreamTls } : {}),
    passthroughIdleMs: o.passthroughIdleMs ?? 5000, retryBufferBytes, sourceAddress: workloadAddress,
    ...(preserved.length > 0 ? { mapSource: (caller: string) => mappedSource(preserved, caller) } : {}),
  });
  const metrics = new IstioMetrics(o.maxMetricSeries ?? 10_000);
  // ALS streams resolve their cluster when they connect: `xds-grpc` is the control plane (a
  // server after another, as the ADS client fails over), any other name a cluster of the config.
  let xdsTurn = 0;
  const alsEndpoint = (cluster: string): AlsEndpoint | undefined => {
    if (cluster === XDS_GRPC_CLUSTER) {
      const servers = xds.servers;
      const target = servers[xdsTurn++ % servers.length]!;
      if (o.xdsTls === undefined || mesh === undefined) return { target };
      const tls = o.xdsTls;
      const certs = mesh.certs;
      const c = controlPlaneCredentials({ ...tls, clientCertificate: () => certs.current() });
      return { target, credentials: c.credentials, channelOptions: c.options };
    }
    const host = config.clusters.get(cluster)?.pick({});
    return host === undefined ? undefined : { target: host.key };
  };
  const als = new AccessLogService({
    node, logger, resolve: alsEndpoint,
    ...(o.accessLogBuffer?.entries !== undefined ? { maxBufferedEntries: o.accessLogBuffer.entries } : {}),
    ...(o.accessLogBuffer?.bytes !== undefined ? { maxBufferedBytes: o.accessLogBuffer.bytes } : {}),
  });
  const accessLog = new AccessLogWriter(undefined, als);
  // local rate limits and the admission gates read the runtime layers (RTDS) of the config
  const localRateLimits = new LocalRateLimits({ runtime: config.layers, localCluster: String(node['cluster'] ?? '') });
  const admission = new AdmissionGates({ source: config.layers });
  // A gateway's certificates: SDS secrets over ADS (`kubernetes://NAME`) and files its listeners name.
  const credentials = new ServerCredentials(logger);
  // wasm: the Proxy-Wasm host running envoy.filters.http.wasm filters, inline or over ECDS
  const wasm = new WasmHost({ logger, node });
  const listeners = new ListenerManager({
    config, upstream: pools, logger, metrics, accessLog, credentials,
    self: selfWorkload(meta, labels),
    peerHeaders: peerMetadataHeaders(String(node['id']), meta),
    limits: http1Limits(o.limits),
    retryBufferBytes,
    ...(captured ? { capture: { workloadAddress } } : {}),
    ...(mesh !== undefined ? { tls: { certs: mesh.certs, trustDomain: mesh.trustDomain } } : {}),
    ...(upstreamTls !== undefined ? { upstreamTls } : {}),
    localRateLimits, admission, wasm,
  });
  const dnsCapture = ['true', true, '1'].includes(meta['DNS_CAPTURE'] as string);
  const dns = dnsCapture ? new DnsProxy({ namespace: String(meta['NAMESPACE'] ?? ''), logger, ...o.dns }) : undefined;
  // The name table (NDS) goes to the DNS proxy, everything else to the runtime config.
  const sink: ResourceSink = dns === undefined ? config : {
    apply: (t: XdsTypeUrl, r) => (t === NAME_TABLE_TYPE ? dns.apply(r) : config.apply(t, r)),
    interest: (t: XdsTypeUrl) => config.interest(t),
  };
  // SDS secrets go to the gateway's certificate store; it needs the names its listeners' TLS refers to.
  const tlsSink: ResourceSink = {
    apply: (t, r) => (t === SECRET_TYPE ? credentials.apply(r) : t === EXTENSION_CONFIG_TYPE ? wasm.applyExtensionConfigs(r) : sink.apply(t, r)),
    interest: (t) => (t === SECRET_TYPE ? secretNamesOf(tlsSpecsOf(config.listeners.values())) : t === EXTENSION_CONFIG_TYPE ? extensionConfigNames(wasmConfigsOf(config.listeners.values())) : sink.interest(t)),
  };
  const xdsTls = o.xdsTls;
  const xds = new AdsClient({
    server: o.xds, node, sink: tlsSink, logger, protocol: o.protocol ?? 'delta', ...(dns !== undefined ? { extraTypes: [NAME_TABLE_TYPE] } : {}),
    ...(xdsTls !== undefined && mesh !== undefined ? { credentials: () => controlPlaneCredentials({ ...xdsTls, clientCertificate: () => mesh.certs.current() }) } : {}),
    // RTDS: the leased runtime layer of adaptive limits
    namedTypes: [RUNTIME_TYPE, SECRET_TYPE, EXTENSION_CONFIG_TYPE],
  });
  // LRS to the xDS server in use, with the same credentials
  const loadReporting = new LoadReportingClient({
    server: () => xds.server, node, logger, reports: () => admission.reports(),
    ...(xdsTls !== undefined && mesh !== undefined ? { credentials: () => controlPlaneCredentials({ ...xdsTls, clientCertificate: () => mesh.certs.current() }) } : {}),
  });

  // A gateway is ready once the SDS secrets its listeners name have arrived (Envoy's listener
  // warming), or the initial fetch timeout has passed (a missing secret then refuses its chain's handshakes).
  const secretsDeadline = Date.now() + (o.initialFetchTimeoutMs ?? 15_000);
  const secretsReady = (): boolean => Date.now() >= secretsDeadline || [...secretNamesOf(tlsSpecsOf(config.listeners.values()))].every((n) => credentials.has(n));
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
    listenersChanged: () => {
      admission.sync(admissionConfigs(config));
      credentials.syncFiles(tlsSpecsOf(config.listeners.values()));
      wasm.listenersChanged(wasmConfigsOf(config.listeners.values()));
      reconcile();
    },
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
    credentials.close();
    xds.close();
    pools.close();
    dns?.close();
    config.close();
    loadReporting.close();
    admission.close();
    wasm.close();
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
    // local rate limit and admission gate stats in /stats, as Envoy lists its filters' stats
    extraStats: () => [...[...localRateLimits.allStats()].flatMap(([p, c]) => localRateLimitStatLines(p, c)), ...admissionStatLines(admission.all())],
    state: (): 'LIVE' | 'DRAINING' => (draining ? 'DRAINING' : 'LIVE'),
    // ready also needs the workload certificate when mTLS is on (its listeners could not serve mTLS before)
    listenersBound: () => listenersReady && (mesh === undefined || mesh.certs.current() !== undefined) && secretsReady(),
    secrets: () => credentials.summaries(),
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
  metrics.addExposition(() => als.exposition());
  metrics.addExposition(() => wasm.exposition());
  metrics.addExposition(() => [localRateLimitPrometheus(localRateLimits.allStats()), admissionPrometheus(admission.all())].filter((x) => x !== '').join('\n'));
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
  // TLS refused downstream (mesh mTLS and a gateway's TLS alike) and a gateway's SDS secrets.
  metrics.addExposition(() => [
    '# HELP sextant_downstream_tls_refused_total TLS connections refused: a failed handshake, no matching filter chain or certificate, an untrusted or unacceptable client.', '# TYPE sextant_downstream_tls_refused_total counter', `sextant_downstream_tls_refused_total ${listeners.tlsRefused}`,
    '# HELP sextant_sds_secrets SDS secrets held (a gateway\'s kubernetes:// credentials).', '# TYPE sextant_sds_secrets gauge', `sextant_sds_secrets ${credentials.summaries().length}`,
    '# HELP sextant_sds_updates_rejected_total SDS updates refused (NACKed) because a secret was unusable.', '# TYPE sextant_sds_updates_rejected_total counter', `sextant_sds_updates_rejected_total ${credentials.rejected}`,
  ].join('\n'));
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
  // a closed control plane serves xDS only to a workload certificate: the first one comes first
  if (xdsTls !== undefined && mesh !== undefined) void mesh.ready.then(() => { if (!draining) { xds.start(); loadReporting.start(); } });
  else { xds.start(); loadReporting.start(); }
  logger.info({ xds: o.xds, id: o.id, admin: boundAddress(admin), xdsTls: xdsTls !== undefined }, 'proxy started');

  return {
    node, config, xds, listeners, metrics, pools, dns, localRateLimits, admission, loadReporting,
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

/** The admission filters of the listeners in force (one gate per limit key). */
function admissionConfigs(config: RuntimeConfig): AdmissionConfig[] {
  const out: AdmissionConfig[] = [];
  for (const l of config.listeners.values()) {
    for (const c of [...l.filterChains, ...(l.defaultChain ? [l.defaultChain] : [])]) {
      if (c.network.kind === 'http' && c.network.admission !== undefined) out.push(c.network.admission);
    }
  }
  return out;
}
