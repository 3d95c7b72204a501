// A compiled upstream cluster: discovery type (EDS, STATIC, STRICT_DNS, ORIGINAL_DST), its
// hosts and balancer, subsets, circuit breakers and outlier detection. Built from an Envoy
// Cluster by `compileCluster`, which throws with the field at fault for invalid input.
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { ProtoJson } from '../../envoy/index.ts';
import { Balancer, DEFAULT_BALANCER_OPTIONS } from './balancer.ts';
import type { BalancerOptions, LbContext, LbPolicy } from './balancer.ts';
import { CircuitBreaker, DEFAULT_THRESHOLDS } from './circuit-breaker.ts';
import type { CircuitBreakerThresholds } from './circuit-breaker.ts';
import { Host, parseWorkloadMetadata } from './host.ts';
import { OutlierDetector } from './outlier.ts';
import type { OutlierConfig } from './outlier.ts';
import { durationMs, ConfigError } from '../config/fields.ts';
import { compileTransportSocketMatches, compileUpstreamTls } from '../tls/transport-socket.ts';
import type { UpstreamTlsSpec } from '../tls/transport-socket.ts';

/** Bound on ORIGINAL_DST destinations tracked at once. */
const ORIGINAL_DST_MAX_HOSTS = 65_536;

export type DiscoveryType = 'EDS' | 'STATIC' | 'STRICT_DNS' | 'LOGICAL_DNS' | 'ORIGINAL_DST';

/** Istio's service identity of a cluster (from metadata `istio.services`). */
export interface ClusterService {
  host: string;
  name: string;
  namespace: string;
}

export interface SubsetConfig {
  fallbackPolicy: 'NO_FALLBACK' | 'ANY_ENDPOINT' | 'DEFAULT_SUBSET';
  defaultSubset: Record<string, unknown>;
}

/** Cluster settings the connection pool needs. */
export interface PoolSettings {
  connectTimeoutMs: number;
  maxConnections: number;
  maxPendingRequests: number;
  /** Idle connection timeout (HttpProtocolOptions common_http_protocol_options.idle_timeout). */
  idleTimeoutMs: number;
  maxRequestsPerConnection: number;
}

/**
 * The protocol a cluster's upstream requests use (HttpProtocolOptions' explicit_http_config
 * or use_downstream_protocol_config, or the Cluster's own http2_protocol_options and
 * protocol_selection): 'downstream' follows each request's downstream protocol.
 */
export type UpstreamProtocol = 'http1' | 'http2' | 'downstream';

/** http2_protocol_options the pool honours; undefined fields take the proxy's defaults. */
export interface Http2PoolSettings {
  maxConcurrentStreams: number | undefined;
  streamWindow: number | undefined;
  connectionWindow: number | undefined;
}

export class Cluster {
  readonly name: string;
  readonly type: DiscoveryType;
  /** The Envoy resource it was compiled from (for config_dump and change detection). */
  readonly source: ProtoJson;
  readonly sourceKey: string;
  /** EDS service name (defaults to the cluster name). */
  readonly edsServiceName: string;
  /** The EDS config source's initial_fetch_timeout; 0 waits for the assignment indefinitely. */
  readonly edsInitialFetchTimeoutMs: number | undefined;
  readonly policy: LbPolicy;
  readonly pool: PoolSettings;
  readonly upstreamProtocol: UpstreamProtocol;
  readonly http2: Http2PoolSettings;
  readonly circuitBreaker: CircuitBreaker;
  readonly outlier: OutlierDetector | undefined;
  readonly balancer: Balancer;
  readonly service: ClusterService | undefined;
  readonly subsets: SubsetConfig | undefined;
  /** ORIGINAL_DST: take the destination from this header (x-envoy-original-dst-host). */
  readonly originalDstHeader: string | undefined;
  /** upstream_bind_config's source address: outbound connections bind to it. */
  readonly bindAddress: string | undefined;
  /** The cluster's TLS transport socket (Istio mutual TLS), undefined for plaintext. */
  readonly tls: UpstreamTlsSpec | undefined;
  /** Auto mTLS: `transportSocketMatches` against each endpoint's `envoy.transport_socket_match` metadata. */
  readonly tlsMatches: readonly { match: Record<string, unknown>; tls: UpstreamTlsSpec | undefined }[];
  readonly balancerOptions: BalancerOptions;
  /** True once endpoints are known (EDS assignment received or DNS resolved once). */
  warm: boolean;
  private hostsByKey = new Map<string, Host>();
  private subsetBalancers = new Map<string, Balancer>();
  private dnsTimer: NodeJS.Timeout | undefined;
  private dnsTargets: { hostname: string; port: number; template: ProtoJson }[] = [];
  private readonly dnsRefreshMs: number;
  /** ORIGINAL_DST: idle hosts are forgotten after this (cleanup_interval). */
  readonly cleanupIntervalMs: number;
  private sweepTimer: NodeJS.Timeout | undefined;
  closed = false;
  /** Told when EDS/DNS removes hosts (the pool closes their idle connections). */
  onHostsRemoved: ((hosts: readonly Host[]) => void) | undefined;

  constructor(json: ProtoJson, at: string) {
    this.source = json;
    this.sourceKey = JSON.stringify(json);
    const name = json['name'];
    if (typeof name !== 'string' || name === '') throw new ConfigError(`${at}.name: a cluster needs a name`);
    this.name = name;
    const type = (json['type'] as string | undefined) ?? 'STATIC';
    if (!['EDS', 'STATIC', 'STRICT_DNS', 'LOGICAL_DNS', 'ORIGINAL_DST'].includes(type)) {
      throw new ConfigError(`${at}.type: unsupported discovery type ${type}`);
    }
    this.type = type as DiscoveryType;
    const eds = json['edsClusterConfig'] as ProtoJson | undefined;
    this.edsServiceName = (eds?.['serviceName'] as string | undefined) || name;
    this.edsInitialFetchTimeoutMs = durationMs((eds?.['edsConfig'] as ProtoJson | undefined)?.['initialFetchTimeout'], `${at}.edsClusterConfig.edsConfig.initialFetchTimeout`);
    const lb = (json['lbPolicy'] as string | undefined) ?? 'ROUND_ROBIN';
    const policy = lb === 'CLUSTER_PROVIDED' ? 'ROUND_ROBIN' : lb;
    if (!['ROUND_ROBIN', 'LEAST_REQUEST', 'RANDOM', 'RING_HASH', 'MAGLEV'].includes(policy)) {
      throw new ConfigError(`${at}.lbPolicy: unsupported load balancing policy ${lb}`);
    }
    this.policy = policy as LbPolicy;
    const common = (json['commonLbConfig'] ?? {}) as ProtoJson;
    const panic = common['healthyPanicThreshold'] as ProtoJson | undefined;
    const ring = (json['ringHashLbConfig'] ?? {}) as ProtoJson;
    const lr = (json['leastRequestLbConfig'] ?? {}) as ProtoJson;
    this.balancerOptions = {
      ...DEFAULT_BALANCER_OPTIONS,
      policy: this.policy,
      healthyPanicThreshold: panic ? Number(panic['value'] ?? 0) : DEFAULT_BALANCER_OPTIONS.healthyPanicThreshold,
      minimumRingSize: Number(ring['minimumRingSize'] ?? DEFAULT_BALANCER_OPTIONS.minimumRingSize),
      maximumRingSize: Number(ring['maximumRingSize'] ?? DEFAULT_BALANCER_OPTIONS.maximumRingSize),
      choiceCount: Number(lr['choiceCount'] ?? 2),
      localityWeighted: common['localityWeightedLbConfig'] !== undefined,
    };
    if (this.balancerOptions.minimumRingSize > this.balancerOptions.maximumRingSize) {
      throw new ConfigError(`${at}.ringHashLbConfig: minimumRingSize exceeds maximumRingSize`);
    }
    this.balancer = new Balancer(this.balancerOptions);
    const thresholds = compileThresholds(json['circuitBreakers'] as ProtoJson | undefined, `${at}.circuitBreakers`);
    this.circuitBreaker = new CircuitBreaker(thresholds);
    const proto = httpProtocolOptions(json);
    const { protocol, h2 } = upstreamProtocol(json);
    this.upstreamProtocol = protocol;
    this.http2 = {
      maxConcurrentStreams: h2['maxConcurrentStreams'] !== undefined ? Number(h2['maxConcurrentStreams']) : undefined,
      streamWindow: h2['initialStreamWindowSize'] !== undefined ? Number(h2['initialStreamWindowSize']) : undefined,
      connectionWindow: h2['initialConnectionWindowSize'] !== undefined ? Number(h2['initialConnectionWindowSize']) : undefined,
    };
    const maxReqPerConn = Number(json['maxRequestsPerConnection'] ?? proto['maxRequestsPerConnection'] ?? 0);
    this.pool = {
      connectTimeoutMs: durationMs(json['connectTimeout'], `${at}.connectTimeout`) ?? 5000,
      maxConnections: thresholds.maxConnections,
      maxPendingRequests: thresholds.maxPendingRequests,
      idleTimeoutMs: durationMs(proto['idleTimeout'], `${at}.typedExtensionProtocolOptions.commonHttpProtocolOptions.idleTimeout`) ?? 3_600_000,
      maxRequestsPerConnection: maxReqPerConn,
    };
    const od = json['outlierDetection'] as ProtoJson | undefined;
    // Sextant's priority failover: a whole priority level (data centre, lane) may be ejected
    const sextantMeta = ((json['metadata'] as ProtoJson | undefined)?.['filterMetadata'] as ProtoJson | undefined)?.['sextant.io'] as ProtoJson | undefined;
    const wholePriority = sextantMeta?.['ejectWholePriority'] === true;
    this.outlier = od ? new OutlierDetector({ ...compileOutlier(od, `${at}.outlierDetection`), ejectWholePriority: wholePriority }, () => [...this.hostsByKey.values()], () => this.invalidate()) : undefined;
    const services = ((json['metadata'] as ProtoJson | undefined)?.['filterMetadata'] as ProtoJson | undefined)?.['istio'] as ProtoJson | undefined;
    const svc = (services?.['services'] as ProtoJson[] | undefined)?.[0];
    this.service = svc ? { host: String(svc['host'] ?? ''), name: String(svc['name'] ?? ''), namespace: String(svc['namespace'] ?? '') } : undefined;
    const subset = json['lbSubsetConfig'] as ProtoJson | undefined;
    this.subsets = subset ? {
      fallbackPolicy: ((subset['fallbackPolicy'] as string | undefined) ?? 'NO_FALLBACK') as SubsetConfig['fallbackPolicy'],
      defaultSubset: (subset['defaultSubset'] as Record<string, unknown> | undefined) ?? {},
    } : undefined;
    const odc = json['originalDstLbConfig'] as ProtoJson | undefined;
    this.originalDstHeader = odc?.['useHttpHeader'] ? String(odc['httpHeaderName'] || 'x-envoy-original-dst-host') : undefined;
    const bind = ((json['upstreamBindConfig'] as ProtoJson | undefined)?.['sourceAddress'] as ProtoJson | undefined)?.['address'];
    if (bind !== undefined && (typeof bind !== 'string' || (bind !== '' && isIP(bind) === 0))) {
      throw new ConfigError(`${at}.upstreamBindConfig.sourceAddress.address: expected an IP address, got ${JSON.stringify(bind)}`);
    }
    this.bindAddress = bind === undefined || bind === '' ? undefined : bind;
    this.tls = compileUpstreamTls(json['transportSocket'] as ProtoJson | undefined, `${at}.transportSocket`);
    this.tlsMatches = compileTransportSocketMatches(json['transportSocketMatches'], `${at}.transportSocketMatches`);
    this.dnsRefreshMs = durationMs(json['dnsRefreshRate'], `${at}.dnsRefreshRate`) ?? 5000;
    this.cleanupIntervalMs = Math.max(100, durationMs(json['cleanupInterval'], `${at}.cleanupInterval`) ?? 5000);
    this.warm = this.type === 'ORIGINAL_DST';
    const la = json['loadAssignment'] as ProtoJson | undefined;
    if (this.type === 'STATIC') {
      this.setAssignment(la ?? {}, `${at}.loadAssignment`);
    } else if (this.type === 'STRICT_DNS' || this.type === 'LOGICAL_DNS') {
      this.prepareDns(la ?? {}, `${at}.loadAssignment`);
    }
  }

  get hosts(): readonly Host[] {
    return this.balancer.allHosts;
  }

  /** Replaces the endpoints (EDS or static), keeping the observed state of hosts that stay. */
  setAssignment(cla: ProtoJson, at: string): void {
    // The assignment's overprovisioning factor (percent; Envoy's default 140): how healthy a
    // priority level must be to keep all of its load (Sextant's failover threshold sets it).
    const factor = (cla['policy'] as ProtoJson | undefined)?.['overprovisioningFactor'];
    if (factor !== undefined && !(Number.isInteger(Number(factor)) && Number(factor) > 0)) throw new ConfigError(`${at}.policy.overprovisioningFactor: expected a positive integer (percent), got ${JSON.stringify(factor)}`);
    const next = new Map<string, Host>();
    const list: Host[] = [];
    const localities = (cla['endpoints'] as ProtoJson[] | undefined) ?? [];
    localities.forEach((loc, li) => {
      const priority = Number(loc['priority'] ?? 0);
      const locality = loc['locality'] as ProtoJson | undefined;
      const locName = locality ? [locality['region'], locality['zone'], locality['subZone']].filter(Boolean).join('/') : '';
      const lbs = (loc['lbEndpoints'] as ProtoJson[] | undefined) ?? [];
      lbs.forEach((lbe, ei) => {
        const where = `${at}.endpoints[${li}].lbEndpoints[${ei}]`;
        const sa = ((lbe['endpoint'] as ProtoJson | undefined)?.['address'] as ProtoJson | undefined)?.['socketAddress'] as ProtoJson | undefined;
        if (!sa) throw new ConfigError(`${where}.endpoint.address.socketAddress: required`);
        const address = String(sa['address'] ?? '');
        const port = Number(sa['portValue'] ?? 0);
        if (!address || !(port > 0 && port < 65536)) throw new ConfigError(`${where}.endpoint.address.socketAddress: needs an address and a port in 1..65535`);
        if (this.type === 'EDS' || this.type === 'STATIC') {
          if (isIP(address) === 0) throw new ConfigError(`${where}.endpoint.address.socketAddress.address: ${address} is not an IP address`);
        }
        const key = isIP(address) === 6 ? `[${address}]:${port}` : `${address}:${port}`;
        const host = next.get(key) ?? this.hostsByKey.get(key) ?? new Host(address, port);
        host.priority = priority;
        host.locality = locName;
        host.localityWeight = Number(loc['loadBalancingWeight'] ?? 0);
        host.weight = Math.max(1, Number(lbe['loadBalancingWeight'] ?? 1));
        const hs = (lbe['healthStatus'] as string | undefined) ?? 'UNKNOWN';
        host.edsHealthy = hs === 'UNKNOWN' || hs === 'HEALTHY';
        host.edsDraining = hs === 'DRAINING';
        const fm = ((lbe['metadata'] as ProtoJson | undefined)?.['filterMetadata'] ?? {}) as ProtoJson;
        host.lbMetadata = (fm['envoy.lb'] as Record<string, unknown> | undefined) ?? {};
        host.transportMatch = (fm['envoy.transport_socket_match'] as Record<string, unknown> | undefined) ?? {};
        host.workload = parseWorkloadMetadata((fm['istio'] as ProtoJson | undefined)?.['workload'], (fm['istio'] as ProtoJson | undefined)?.['labels']);
        if (!next.has(key)) list.push(host);
        next.set(key, host);
      });
    });
    const removed = [...this.hostsByKey.values()].filter((h) => next.get(h.key) !== h);
    this.hostsByKey = next;
    this.balancer.setOverprovisioningFactor(factor === undefined ? undefined : Number(factor) / 100);
    this.balancer.setHosts(list);
    if (removed.length > 0) this.onHostsRemoved?.(removed);
    this.subsetBalancers.clear();
    this.warm = true;
  }

  /**
   * ORIGINAL_DST: the host for a destination, created on first use and forgotten after
   * `cleanup_interval` idle (Envoy's default 5 s), with a hard bound on how many are kept.
   */
  originalDstHost(address: string, port: number): Host {
    const key = address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
    let h = this.hostsByKey.get(key);
    if (!h) {
      if (this.hostsByKey.size >= ORIGINAL_DST_MAX_HOSTS) this.sweepOriginalDst(Infinity);
      h = new Host(address, port);
      this.hostsByKey.set(key, h);
    }
    h.lastUsed = Date.now();
    if (!this.sweepTimer) {
      this.sweepTimer = setInterval(() => this.sweepOriginalDst(this.cleanupIntervalMs), this.cleanupIntervalMs);
      this.sweepTimer.unref();
    }
    return h;
  }

  private sweepOriginalDst(idleMs: number): void {
    const now = Date.now();
    for (const [k, h] of this.hostsByKey) {
      if (h.active === 0 && (idleMs === Infinity || now - h.lastUsed >= idleMs)) this.hostsByKey.delete(k);
    }
    if (this.hostsByKey.size === 0 && this.sweepTimer) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = undefined;
    }
  }

  /** Starts from another cluster's hosts (a replaced cluster, until EDS answers). */
  adoptHosts(other: Cluster): void {
    this.hostsByKey = new Map(other.hosts.map((h) => [h.key, h]));
    this.balancer.setHosts([...other.hosts]);
  }

  private prepareDns(cla: ProtoJson, at: string): void {
    const targets: typeof this.dnsTargets = [];
    ((cla['endpoints'] as ProtoJson[] | undefined) ?? []).forEach((loc, li) => {
      ((loc['lbEndpoints'] as ProtoJson[] | undefined) ?? []).forEach((lbe, ei) => {
        const sa = ((lbe['endpoint'] as ProtoJson | undefined)?.['address'] as ProtoJson | undefined)?.['socketAddress'] as ProtoJson | undefined;
        const hostname = String(sa?.['address'] ?? '');
        const port = Number(sa?.['portValue'] ?? 0);
        if (!hostname || !(port > 0 && port < 65536)) throw new ConfigError(`${at}.endpoints[${li}].lbEndpoints[${ei}].endpoint.address.socketAddress: needs an address and a port`);
        targets.push({ hostname, port, template: { ...loc, lbEndpoints: [lbe] } });
      });
    });
    this.dnsTargets = targets;
  }

  /** Starts DNS resolution (STRICT_DNS), refreshing every dns_refresh_rate. */
  startDns(onError: (err: Error) => void): void {
    if (this.dnsTargets.length === 0) {
      if (this.type === 'STRICT_DNS' || this.type === 'LOGICAL_DNS') this.setAssignment({}, this.name);
      return;
    }
    const resolve = async (): Promise<void> => {
      const endpoints: ProtoJson[] = [];
      for (const t of this.dnsTargets) {
        try {
          const addrs = this.type === 'LOGICAL_DNS' ? [await lookup(t.hostname)] : await lookup(t.hostname, { all: true });
          for (const a of addrs) {
            const lbe = ((t.template['lbEndpoints'] as ProtoJson[])[0] ?? {}) as ProtoJson;
            endpoints.push({ ...t.template, lbEndpoints: [{ ...lbe, endpoint: { address: { socketAddress: { address: a.address, portValue: t.port } } } }] });
          }
        } catch (err) {
          onError(new Error(`cluster ${this.name}: DNS lookup of ${t.hostname} failed: ${(err as Error).message}`));
        }
      }
      if (!this.closed) this.setAssignment({ endpoints }, this.name);
    };
    void resolve();
    this.dnsTimer = setInterval(() => void resolve(), Math.max(500, this.dnsRefreshMs));
    this.dnsTimer.unref();
  }

  /** The TLS a connection to `host` uses: the first transport socket match, else the cluster's socket. */
  tlsFor(host: Host): UpstreamTlsSpec | undefined {
    if (this.tlsMatches.length === 0) return this.tls;
    for (const m of this.tlsMatches) if (matchesMetadata(host.transportMatch, m.match)) return m.tls;
    return this.tls;
  }

  /** Picks a host; `subset` is the route's `envoy.lb` metadata match, when the cluster has subsets. */
  pick(ctx: LbContext, subset?: Readonly<Record<string, unknown>>): Host | undefined {
    if (!this.subsets || !subset || Object.keys(subset).length === 0) return this.balancer.pick(ctx);
    const key = JSON.stringify(subset);
    let b = this.subsetBalancers.get(key);
    if (!b) {
      let hosts = this.hosts.filter((h) => matchesSubset(h, subset));
      if (hosts.length === 0) {
        if (this.subsets.fallbackPolicy === 'ANY_ENDPOINT') hosts = [...this.hosts];
        else if (this.subsets.fallbackPolicy === 'DEFAULT_SUBSET') hosts = this.hosts.filter((h) => matchesSubset(h, this.subsets!.defaultSubset));
      }
      b = new Balancer(this.balancerOptions);
      b.setHosts(hosts);
      // Bounded: one balancer per distinct metadata match the routes use.
      if (this.subsetBalancers.size < 256) this.subsetBalancers.set(key, b);
    }
    return b.pick(ctx);
  }

  invalidate(): void {
    this.balancer.invalidate();
    for (const b of this.subsetBalancers.values()) b.invalidate();
  }

  close(): void {
    this.closed = true;
    this.outlier?.stop();
    clearInterval(this.dnsTimer);
    clearInterval(this.sweepTimer);
  }
}

function matchesMetadata(have: Readonly<Record<string, unknown>>, want: Readonly<Record<string, unknown>>): boolean {
  for (const [k, v] of Object.entries(want)) if (have[k] !== v) return false;
  return true;
}

function matchesSubset(h: Host, subset: Readonly<Record<string, unknown>>): boolean {
  for (const [k, v] of Object.entries(subset)) if (h.lbMetadata[k] !== v) return false;
  return true;
}

function httpProtocolOptions(json: ProtoJson): ProtoJson {
  const teo = (json['typedExtensionProtocolOptions'] ?? {}) as ProtoJson;
  const hpo = teo['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'] as ProtoJson | undefined;
  const common = { ...((json['commonHttpProtocolOptions'] ?? {}) as ProtoJson), ...((hpo?.['commonHttpProtocolOptions'] ?? {}) as ProtoJson) };
  return common;
}

function upstreamProtocol(json: ProtoJson): { protocol: UpstreamProtocol; h2: ProtoJson } {
  const teo = (json['typedExtensionProtocolOptions'] ?? {}) as ProtoJson;
  const hpo = teo['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'] as ProtoJson | undefined;
  const explicit = hpo?.['explicitHttpConfig'] as ProtoJson | undefined;
  if (explicit?.['http2ProtocolOptions'] !== undefined) return { protocol: 'http2', h2: explicit['http2ProtocolOptions'] as ProtoJson };
  const downstream = hpo?.['useDownstreamProtocolConfig'] as ProtoJson | undefined;
  if (downstream !== undefined) return { protocol: 'downstream', h2: (downstream['http2ProtocolOptions'] ?? {}) as ProtoJson };
  if (hpo === undefined) {
    // the Cluster's own (deprecated) fields
    const legacy = json['http2ProtocolOptions'] as ProtoJson | undefined;
    if (json['protocolSelection'] === 'USE_DOWNSTREAM_PROTOCOL') return { protocol: 'downstream', h2: legacy ?? {} };
    if (legacy !== undefined) return { protocol: 'http2', h2: legacy };
  }
  return { protocol: 'http1', h2: {} };
}

function compileThresholds(cb: ProtoJson | undefined, at: string): CircuitBreakerThresholds {
  const list = (cb?.['thresholds'] as ProtoJson[] | undefined) ?? [];
  const def = list.find((t) => (t['priority'] ?? 'DEFAULT') === 'DEFAULT') ?? {};
  const num = (field: keyof CircuitBreakerThresholds): number => {
    const v = def[field];
    if (v === undefined) return DEFAULT_THRESHOLDS[field];
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new ConfigError(`${at}.thresholds.${field}: expected a non-negative integer, got ${JSON.stringify(v)}`);
    return n;
  };
  return { maxConnections: num('maxConnections'), maxPendingRequests: num('maxPendingRequests'), maxRequests: num('maxRequests'), maxRetries: num('maxRetries') };
}

function compileOutlier(od: ProtoJson, at: string): OutlierConfig {
  const pct = (field: string, def: number): number => {
    const v = od[field];
    const n = v === undefined ? def : Number(v);
    if (!(n >= 0 && n <= 100)) throw new ConfigError(`${at}.${field}: expected a percentage 0..100, got ${JSON.stringify(v)}`);
    return n;
  };
  return {
    // protobufjs names the proto field consecutive_5xx; proto3 JSON calls it consecutive5xx.
    consecutive5xx: Number(od['consecutive_5xx'] ?? od['consecutive5xx'] ?? 5),
    consecutiveGatewayFailure: Number(od['consecutiveGatewayFailure'] ?? 5),
    enforcingConsecutive5xx: od['enforcingConsecutive_5xx'] !== undefined ? pct('enforcingConsecutive_5xx', 100) : pct('enforcingConsecutive5xx', 100),
    enforcingConsecutiveGatewayFailure: pct('enforcingConsecutiveGatewayFailure', 0),
    intervalMs: durationMs(od['interval'], `${at}.interval`) ?? 10_000,
    baseEjectionTimeMs: durationMs(od['baseEjectionTime'], `${at}.baseEjectionTime`) ?? 30_000,
    maxEjectionTimeMs: durationMs(od['maxEjectionTime'], `${at}.maxEjectionTime`) ?? 300_000,
    maxEjectionPercent: pct('maxEjectionPercent', 10),
  };
}
