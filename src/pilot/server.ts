// The pilot process: reads every config object from the store, builds the first PushContext
// once, then serves xDS and the monitoring port; later changes are debounced into pushes.
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import type { Logger } from 'pino';
import type { Resource } from '../api/resource.ts';
import { resourceKey } from '../api/resource.ts';
import { openConfigStore } from '../config/index.ts';
import type { ConfigStore, DeleteGuardOptions, WatchEvent, ConfigWatch } from '../config/index.ts';
import { generators as defaultGenerators, generatorsFor } from './gen/index.ts';
import { MESH_CONFIG_KEY } from './mesh-config/index.ts';
import type { MeshConfigSource } from './mesh-config/index.ts';
import type { ConfigChange, Generators, Proxy, PushContext } from './model.ts';
import { PilotMetrics } from './metrics.ts';
import { Debouncer } from './push/debounce.ts';
import type { DebouncedChange } from './push/debounce.ts';
import { ADS_SERVICE, CSDS_SERVICE, DiscoveryServer, csdsHandlers } from './xds/index.ts';
import { widenReceiveWindows } from './xds/flow.ts';
import { createMonitoringServer, listen } from './http.ts';
import { createRegistrationApi } from '../registry/api/index.ts';
import { ResourceMap } from '../registry/index.ts';
import { createDashboard, type Access } from '../dashboard/index.ts';
import { instanceAcks } from './instance-acks.ts';
import { defaultPilotIdentity, startLeadership, type Leadership, type LeaderStatus } from './leader/index.ts';
import { EtcdConfigStore } from '../config/index.ts';
import { Gauge } from 'prom-client';
import type { DeltaRequest, SotwRequest } from './xds/wire.ts';
import { startCertificateAuthority, startServingCertificate, verifiedPeerIdentity } from './ca/index.ts';
import type { CertificateAuthority, CertificateAuthorityOptions, ServingCertificate } from './ca/index.ts';
import { spiffeUri } from '../api/spiffe.ts';
import { ConnectionRefusedError } from './xds/ads.ts';
import { startAdaptiveLimits } from './adaptive-limits.ts';
import { EtcdExchange } from './adaptive-exchange.ts';
import { startLazyScope } from './lazy-scope.ts';
import { isManagedSidecar } from './gen/lazyscope.ts';
import { LRS_SERVICE } from './xds/lrs.ts';
import { canonicalJson } from '../config/object.ts';
import { AccessLogSink } from '../telemetry/sink.ts';
import type { LogStore } from '../telemetry/types.ts';
import { sinkDirectory } from './access-log.ts';
import { SextantPushContext } from './push/context.ts';
import { telemetryProblemList } from './gen/telemetry.ts';
import { WasmModuleStore, withWasmPlugins } from './wasm/index.ts';
import type { FetchLimits } from './wasm/index.ts';

export interface PilotOptions {
  /** The config store to serve (closed by close()); or give configDir / etcdEndpoints. */
  store?: ConfigStore;
  /** A directory of YAML config (`--config-dir`). */
  configDir?: string;
  /** etcd endpoints (`--etcd-endpoints`), with an optional key prefix. */
  etcdEndpoints?: string[];
  etcdPrefix?: string;
  /** The store's mass-deletion guard (`--config-delete-guard`, `--config-delete-guard-min`) when the pilot opens the store. */
  configDeleteGuard?: DeleteGuardOptions;
  /** The generator side; the built-in one unless a test brings its own. */
  generators?: Generators;
  /** Mesh-wide settings (`--mesh-config`; Istio's defaults when absent); a change is pushed to every proxy. Closed by close(). */
  meshConfig?: MeshConfigSource;
  /** `HOST:PORT` for xDS (default 127.0.0.1:15010; port 0 picks one). */
  xdsAddress?: string;
  /** `HOST:PORT` for /ready, /metrics, /debug (default 127.0.0.1:15014). */
  httpAddress?: string;
  /** Quiet time before a batch of changes is pushed (default 100 ms). */
  debounceAfterMs?: number;
  /** Longest a batch waits under a steady stream of changes (default 10 s). */
  debounceMaxMs?: number;
  /** Longest a batch of endpoint changes only waits under a steady stream of them (default 200 ms; `--debounce-endpoints-max`). */
  debounceEndpointsMaxMs?: number;
  /** Proxies pushed at once (default 64). */
  pushConcurrency?: number;
  /** Streams accepted at once (default 20,000). */
  maxConnections?: number;
  logger?: Logger;
  /** Export Node's process metrics too (the CLI does; tests with several pilots do not). */
  processMetrics?: boolean;
  /** Turns on the registration API with the tokens of this file (`--registration-tokens`). */
  registrationTokens?: string;
  /** The monitoring API (/api/v1) and /dashboard: for the tokens of a file (`--api-tokens`) or every caller (`--dashboard-insecure`), alerts from `--prometheus`; absent: off. */
  monitoring?: { access: Access; prometheusUrl?: string };
  /** This pilot's identity in the leader election and as control plane (`--id`); default HOSTNAME-PID. */
  id?: string;
  /** TTL in seconds of the leader election's lease (`--leader-lease`), when the store is etcd; default 10. */
  leaderLeaseSeconds?: number;
  /** Serve Istio's CreateCertificate on the xDS port with this CA (`--ca-dir` …); absent: no CA. */
  ca?: CertificateAuthorityOptions;
  /**
   * The closed control plane (the CLI's default): xDS and the CA only over TLS with the pilot's
   * certificate from the mesh CA; every xDS stream presents a workload certificate whose
   * namespace is its node's; the CA needs a bootstrap token or a mesh certificate. Needs `ca`
   * with bootstrap tokens. Absent: plaintext (`--plaintext-xds`, local demos).
   */
  xdsTls?: { hosts?: readonly string[] };
  /**
   * The access-log store (`--log-store`): the ALS sink on the xDS port writes to it, the HTTP
   * API reads it. Closed by close(). Absent: no sink (ALS streams are refused as unimplemented).
   */
  logStore?: LogStore;
  /** The sink's bounds: queued entries (default 100,000), batch size (1,000), flush interval (100 ms). */
  accessLogSink?: { maxQueuedEntries?: number; batchSize?: number; flushIntervalMs?: number };
  /** Lazy scope: how often a WorkloadScope's status is rewritten when only last-use times moved (default 30 s). */
  lazyScope?: { statusEveryMs?: number };
  /** WasmPlugin modules the pilot fetches (src/pilot/wasm): size and time bounds, plain-HTTP registries, cache size. */
  wasm?: { limits?: Partial<FetchLimits>; cacheBytes?: number; retryMs?: number };
}

export interface Pilot {
  /** `HOST:PORT` the xDS server listens on. */
  xdsAddress: string;
  /** `HOST:PORT` of the monitoring server. */
  httpAddress: string;
  /** Resolves once the first snapshot is built and served. */
  ready: Promise<void>;
  server: DiscoveryServer;
  metrics: PilotMetrics;
  /** Whether this pilot leads the mesh; controllers register with `leader.runOnLeader`. */
  leader: Leadership;
  /** The mesh CA, when `ca` was given. */
  ca: CertificateAuthority | undefined;
  /** The access-log store and the ALS sink writing to it, when `logStore` was given. */
  logStore: LogStore | undefined;
  accessLogSink: AccessLogSink | undefined;
  close(): Promise<void>;
}

export interface HostPort {
  host: string;
  port: number;
}

/** Parses `HOST:PORT` or `[IPv6]:PORT`; port 0 picks a free port. */
export function parseHostPort(value: string, flag: string): HostPort {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value.trim());
  const port = m === null ? NaN : Number(m[3]);
  if (m === null || !(port >= 0 && port <= 65535)) {
    throw new Error(`invalid ${flag} "${value}": expected HOST:PORT (e.g. 127.0.0.1:15010), port 0-65535`);
  }
  return { host: m[1] ?? m[2] ?? '', port };
}

function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * True when an event only moves endpoints: any WorkloadEntry change, or a ServiceEntry whose
 * spec changed only in its inline `endpoints`. Such a batch is pushed as EDS only.
 */
export function isEndpointOnlyEvent(event: WatchEvent, previous: Resource | undefined): boolean {
  if (event.resource.kind === 'WorkloadEntry') return true;
  if (event.resource.kind !== 'ServiceEntry' || event.type !== 'MODIFIED' || previous === undefined) return false;
  const strip = (r: Resource): string => {
    const { endpoints: _endpoints, ...rest } = (r.spec ?? {}) as Record<string, unknown>;
    return JSON.stringify([rest, r.metadata.labels ?? {}, r.metadata.annotations ?? {}]);
  };
  return strip(previous) === strip(event.resource);
}

/** True when only the resource's `status` changed (a controller wrote it): no proxy is concerned. */
export function isStatusOnlyEvent(event: WatchEvent, previous: Resource | undefined): boolean {
  if (event.type !== 'MODIFIED' || previous === undefined) return false;
  const r = event.resource;
  if (JSON.stringify(r.status ?? null) === JSON.stringify(previous.status ?? null)) return false;
  const same = (a: unknown, b: unknown): boolean => canonicalJson(a ?? null) === canonicalJson(b ?? null);
  return r.apiVersion === previous.apiVersion && same(r.spec, previous.spec) && same(r.metadata.labels, previous.metadata.labels) && same(r.metadata.annotations, previous.metadata.annotations);
}

function checkConfigSource(options: PilotOptions): void {
  if (options.store !== undefined) return;
  const hasDir = options.configDir !== undefined;
  const hasEtcd = options.etcdEndpoints !== undefined && options.etcdEndpoints.length > 0;
  if (hasDir === hasEtcd) throw new Error('the pilot needs exactly one config source: --config-dir DIR or --etcd-endpoints URL[,URL...]');
}

async function openStore(options: PilotOptions, logger: Logger): Promise<ConfigStore> {
  const hasDir = options.configDir !== undefined;
  const storeLogger = logger;
  const guard = options.configDeleteGuard !== undefined ? { deleteGuard: options.configDeleteGuard } : {};
  // The pilot never creates its config directory: a missing one is a mistake to report, not an empty mesh to serve.
  if (hasDir) return openConfigStore({ configDir: options.configDir!, logger: storeLogger, ...guard });
  return openConfigStore({ etcdEndpoints: options.etcdEndpoints!, ...(options.etcdPrefix !== undefined ? { etcdPrefix: options.etcdPrefix } : {}), logger: storeLogger, ...guard });
}

export async function startPilot(options: PilotOptions): Promise<Pilot> {
  checkConfigSource(options);
  const logger = options.logger ?? pino({ name: 'pilot' });
  const metrics = new PilotMetrics({ defaultMetrics: options.processMetrics === true });
  const xdsListen = parseHostPort(options.xdsAddress ?? '127.0.0.1:15010', '--xds-address');
  const httpListen = parseHostPort(options.httpAddress ?? '127.0.0.1:15014', '--http-address');
  const mesh = options.meshConfig;
  // wasm: WasmPlugins' modules are fetched here and served over ECDS; a module that arrives is pushed as a change of its plugins
  const wasmModules = new WasmModuleStore({ logger, ...options.wasm, onChange: (keys) => { for (const k of keys) debouncer.add(k, false); } });
  const generators = withWasmPlugins(options.generators ?? (mesh !== undefined ? generatorsFor(() => mesh.current()) : defaultGenerators), wasmModules);
  // The store is opened after both ports listen, so proxies that connect during a long
  // config load are accepted and wait for the first snapshot instead of being refused.
  let store: ConfigStore | undefined = options.store;
  let leaderStatus: () => LeaderStatus | undefined = () => undefined;

  // Set once the CA is up: who may speak for which node on a TLS xDS port.
  let guard: ((call: grpc.ServerDuplexStream<unknown, Buffer>, proxy: Proxy) => void) | undefined;
  const server = new DiscoveryServer({
    authorize: (call, proxy) => guard?.(call, proxy),
    generators,
    logger,
    metrics,
    pushConcurrency: options.pushConcurrency ?? 64,
    maxConnections: options.maxConnections ?? 20_000,
    controlPlaneId: options.id ?? `sextant-pilot-${process.pid}`,
  });

  // Before any port listens: an unusable token file or CA root stops the start with nothing to clean up.
  const caOptions = options.ca;
  const ca = caOptions === undefined ? undefined : await startCertificateAuthority(caOptions, logger, metrics.registry).catch((err: unknown) => {
    // the CLI's default directory may be unwritable (a read-only home): then no CA, said loudly
    if (caOptions.optional !== true) throw err;
    logger.error({ dir: caOptions.dir, err: err instanceof Error ? err.message : String(err) }, 'mesh CA not started (give --ca-dir a writable directory, or --no-ca)');
    return undefined;
  });
  let serving: ServingCertificate | undefined;
  if (options.xdsTls !== undefined) {
    if (ca === undefined) throw new Error('xDS over TLS needs the mesh CA (give --plaintext-xds to serve plaintext xDS, for local demos only)');
    if (!ca.tokensRequired) throw new Error('xDS over TLS needs bootstrap tokens for the CA (--ca-tokens FILE): without them any caller could obtain any identity');
    serving = await startServingCertificate({ root: ca.root, trustDomain: ca.trustDomain, hosts: [xdsListen.host, ...(options.xdsTls.hosts ?? [])], logger });
    const { root, trustDomain } = ca;
    guard = (call, proxy) => {
      let id;
      try {
        id = verifiedPeerIdentity(call.getAuthContext().sslPeerCertificate, root, trustDomain);
      } catch (err) {
        throw new ConnectionRefusedError(grpc.status.UNAUTHENTICATED, (err as Error).message);
      }
      if (id === undefined) throw new ConnectionRefusedError(grpc.status.UNAUTHENTICATED, 'xDS needs a workload certificate from the mesh CA (the stream presented no client certificate)');
      if (id.namespace !== proxy.namespace) {
        throw new ConnectionRefusedError(grpc.status.PERMISSION_DENIED, `${spiffeUri(id)} may not obtain the config of namespace ${proxy.namespace} (node ${proxy.id})`);
      }
    };
  }
  const registration = options.registrationTokens === undefined ? undefined
    : createRegistrationApi({ tokensFile: options.registrationTokens, store: () => store, acks: instanceAcks(server), cached: (kind, ns, name) => resources.get(`${kind}/${ns}/${name}`), logger });
  const monitoring = options.monitoring;
  const dashboard = monitoring === undefined ? undefined : createDashboard({
    access: monitoring.access,
    prometheusUrl: monitoring.prometheusUrl,
    // the access-log sink's store, once the pilot keeps one
    logStore: () => options.logStore,
    logStoreMissing: () => 'this pilot keeps no access-log store: the access-log sink is off',
    // lazy scope's learned dependencies (bound once it is wired below)
    dependencies: () => lazyScopeReport(),
    logger,
  });

  let lazyScopeReport: () => unknown = () => ({ controller: false, workloads: [] });
  // The config as the store last delivered it, by Kind/namespace/name (WorkloadEntries also
  // by namespace and label, for the endpoint fast path).
  const resources = new ResourceMap();
  let current: PushContext | undefined;

  const telemetryReported = new Set<string>();
  const build = (change?: ConfigChange): PushContext => {
    const started = performance.now();
    // Endpoint-only batches take the short path: the previous snapshot with new endpoints,
    // reading the changed resources from the map (no list of all of them is made).
    const derived = change?.endpointsOnly === true && current !== undefined && generators.updateEndpoints !== undefined
      ? generators.updateEndpoints(current, [], { ...change, current: resources })
      : undefined;
    const push = derived ?? generators.buildPushContext([...resources.values()], current, change);
    logger.info({ version: push.version, resources: resources.size, ...push.stats, endpointFastPath: derived !== undefined, ms: Math.round(performance.now() - started) }, 'push context built');
    // Telemetry the generators cannot honour (unknown providers, …): said once per problem
    if (push instanceof SextantPushContext) {
      for (const p of telemetryProblemList(push)) {
        if (telemetryReported.has(p)) continue;
        telemetryReported.add(p);
        logger.warn({ problem: p }, 'Telemetry not fully applied');
      }
    }
    return push;
  };

  const debouncer = new Debouncer(
    { afterMs: options.debounceAfterMs ?? 100, maxMs: options.debounceMaxMs ?? 10_000, endpointsMaxMs: options.debounceEndpointsMaxMs ?? 200 },
    async (change: DebouncedChange) => {
      metrics.debounceTime.observe((Date.now() - change.firstEventAt) / 1000);
      let after: PushContext;
      try {
        after = build(change);
      } catch (err) {
        logger.error({ keys: [...change.keys].slice(0, 20), err: err instanceof Error ? err.message : String(err) }, 'building push context failed; keeping the previous snapshot');
        return;
      }
      current = after;
      await server.applyChange(after, change, change.firstEventAt);
      // One batch at a time: the next snapshot waits until this one is written out.
      await server.pushesIdle();
    },
  );

  const grpcServer = new grpc.Server({
    'grpc.max_send_message_length': -1,
    'grpc.max_receive_message_length': 64 * 1024 * 1024,
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_timeout_ms': 10_000,
    'grpc.keepalive_permit_without_calls': 1,
  });
  grpcServer.addService(ADS_SERVICE, {
    StreamAggregatedResources: (call: grpc.ServerDuplexStream<SotwRequest, Buffer>) => server.handleSotwStream(call),
    DeltaAggregatedResources: (call: grpc.ServerDuplexStream<DeltaRequest, Buffer>) => server.handleDeltaStream(call),
  } as unknown as grpc.UntypedServiceImplementation);
  grpcServer.addService(CSDS_SERVICE, csdsHandlers(server) as unknown as grpc.UntypedServiceImplementation);
  // Adaptive limits (M22): LRS on the xDS port, the controller (on the leader), RTDS limits out.
  const adaptive = startAdaptiveLimits({
    server, generators, logger, registry: metrics.registry,
    authorize: (call, proxy) => guard?.(call as grpc.ServerDuplexStream<unknown, Buffer>, proxy),
    store: () => store,
    resource: (key) => resources.get(key),
  });
  grpcServer.addService(LRS_SERVICE, adaptive.lrs.handlers() as unknown as grpc.UntypedServiceImplementation);
  ca?.register(grpcServer);
  // The access-log sink (ALS) on the same port, writing to the log store.
  const logStore = options.logStore;
  const accessLogSink = logStore === undefined ? undefined : new AccessLogSink({
    store: logStore, logger, registry: metrics.registry, ...options.accessLogSink,
    directory: sinkDirectory({ pushContext: () => server.pushContext, proxies: () => [...server.connections.values()].map((c) => c.proxy) }),
    authorize: (call, node) => guard?.(call as unknown as grpc.ServerDuplexStream<unknown, Buffer>, node as unknown as Proxy),
  });
  accessLogSink?.register(grpcServer);
  // Lazy scope (M5): the controller (on the leader) learns from the hub's access logs and Prometheus.
  const lazyScope = startLazyScope({
    server, logger, registry: metrics.registry, store: () => store, resource: (key) => resources.get(key),
    ...(options.monitoring?.prometheusUrl !== undefined ? { prometheusUrl: options.monitoring.prometheusUrl } : {}),
    ...(options.lazyScope?.statusEveryMs !== undefined ? { statusEveryMs: options.lazyScope.statusEveryMs } : {}),
  });
  const unfollowLazyScope = accessLogSink === undefined ? undefined : lazyScope.follow(accessLogSink);
  lazyScopeReport = () => lazyScope.report();
  const xdsPort = await new Promise<number>((resolve, reject) => {
    grpcServer.bindAsync(formatHostPort(xdsListen.host, xdsListen.port), serving?.credentials ?? grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(new Error(`cannot listen for xDS on ${formatHostPort(xdsListen.host, xdsListen.port)}: ${err.message}`)) : resolve(port)));
  });
  // Full-mesh state-of-the-world ACKs are hundreds of KB: wider HTTP/2 receive windows (xds/flow.ts).
  if (!widenReceiveWindows(grpcServer)) logger.warn('xDS HTTP/2 receive windows left at 64 KiB: this grpc-js keeps its sessions otherwise');

  const httpServer = createMonitoringServer({
    server,
    metrics,
    logger,
    config: () => ({ backend: store?.backend ?? 'loading', resources: current?.resources ?? [...resources.values()], errors: store?.errors() ?? [], status: store?.status?.() }),
    queue: () => server.queueStats(),
    registration: registration === undefined ? undefined : (req, res) => registration.handle(req, res),
    dashboard: dashboard === undefined ? undefined : (req, res) => dashboard.handle(req, res),
    // /debug shows every namespace's config: the monitoring API's tokens guard it too
    debugRefusal: dashboard === undefined ? undefined : (req) => dashboard.refusal(req),
    logStore,
    leader: () => leaderStatus(),
    limits: () => adaptive.debug(),
    lazyScope: () => lazyScope.report(),
  });
  let httpInfo;
  try {
    httpInfo = await listen(httpServer, httpListen.host, httpListen.port);
  } catch (err) {
    grpcServer.forceShutdown();
    throw new Error(`cannot listen for HTTP on ${formatHostPort(httpListen.host, httpListen.port)}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const xdsAddress = formatHostPort(xdsListen.host, xdsPort);
  const httpAddress = formatHostPort(httpInfo.address, httpInfo.port);
  logger.info({ xdsAddress, httpAddress }, 'pilot listening; loading config');
  if (store === undefined) {
    try {
      store = await openStore(options, logger);
    } catch (err) {
      grpcServer.forceShutdown();
      httpServer.close();
      throw err;
    }
  }
  const configStore: ConfigStore = store;
  metrics.observeConfigStore(() => configStore.status?.());
  // Several pilots on one etcd elect a leader for the work that must run once in the mesh.
  // The election gets an etcd client of its own when the pilot opened the store itself.
  const etcdStore = configStore instanceof EtcdConfigStore ? configStore : undefined;
  const leader: Leadership = startLeadership({
    identity: options.id ?? defaultPilotIdentity(),
    logger,
    ...(etcdStore === undefined ? {} : {
      etcd: {
        configPrefix: etcdStore.prefix,
        ...(options.store === undefined && options.etcdEndpoints !== undefined ? { endpoints: options.etcdEndpoints } : { client: etcdStore.client }),
        ...(options.leaderLeaseSeconds !== undefined ? { leaseTtlSeconds: options.leaderLeaseSeconds } : {}),
      },
    }),
  });
  leaderStatus = () => leader.status();
  // Several pilots on one etcd: load reports and limits pass through etcd, so every proxy reports
  // into the leader's controller and gets its limit, whichever pilot it is connected to.
  if (etcdStore !== undefined) adaptive.useExchange(new EtcdExchange({ client: etcdStore.client, configPrefix: etcdStore.prefix, identity: leader.identity, logger }));
  const stopAdaptive = leader.runOnLeader('adaptive-limits', () => adaptive.controller.start(), () => adaptive.controller.stop());
  const stopLazyScope = leader.runOnLeader('lazy-scope', () => lazyScope.controller.start(), () => lazyScope.controller.stop());
  new Gauge({
    name: 'sextant_pilot_leader',
    help: '1 while this pilot is the elected leader of the mesh, else 0.',
    registers: [metrics.registry],
    collect() { this.set(leader.isLeader() ? 1 : 0); },
  });

  // Start-up (M7): collect the whole current state, then build the snapshot once.
  let initializing = true;
  const startedAt = performance.now();
  const watch: ConfigWatch = configStore.watch(undefined, (event) => {
    const key = resourceKey(event.resource);
    const previous = resources.get(key);
    if (event.type === 'DELETED') resources.delete(key);
    else resources.set(key, event.resource);
    // A controller's status write (AdaptiveLimit) changes nothing any proxy is sent.
    // A lazy-scope Sidecar is pushed at once: its workload's calls go the long way until it is.
    const urgent = event.resource.kind === 'Sidecar' && (isManagedSidecar(event.resource) || isManagedSidecar(previous));
    if (!initializing && !isStatusOnlyEvent(event, previous)) debouncer.add(key, isEndpointOnlyEvent(event, previous), Date.now(), urgent);
  }, {
    onError: (err) => logger.error({ err: err.message }, 'config watch stopped'),
  });

  // The first snapshot reads the mesh config as it is then; later changes are a batch of their own.
  mesh?.onChange(() => {
    if (!initializing) debouncer.add(MESH_CONFIG_KEY, false);
  });

  const ready = watch.synced.then((revision) => {
    initializing = false;
    current = build();
    server.start(current);
    logger.info({ revision, resources: resources.size, ms: Math.round(performance.now() - startedAt) }, 'pilot ready');
  });
  ready.catch((err: unknown) => logger.error({ err: err instanceof Error ? err.message : String(err) }, 'initial config load failed'));

  let closed = false;
  return {
    xdsAddress,
    httpAddress,
    ready,
    server,
    metrics,
    leader,
    ca,
    logStore,
    accessLogSink,
    async close() {
      if (closed) return;
      closed = true;
      debouncer.close();
      wasmModules.close();
      registration?.close();
      dashboard?.close();
      watch.cancel();
      mesh?.close();
      await stopAdaptive();
      await adaptive.close();
      unfollowLazyScope?.();
      await stopLazyScope();
      lazyScope.controller.stop();
      server.close();
      serving?.close();
      ca?.close();
      grpcServer.forceShutdown();
      await new Promise<void>((resolve) => {
        httpServer.close(() => resolve());
        httpServer.closeAllConnections();
      });
      await leader.close();
      await configStore.close();
      await accessLogSink?.close();
      await logStore?.close();
    },
  };
}
