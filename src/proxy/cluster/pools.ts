// The connection pools behind the clusters: one UpstreamPool per cluster, sized from its
// circuit breakers and protocol options, and one shared set of idle-expiring passthrough
// pools for ORIGINAL_DST clusters. Pools of a removed or replaced cluster are closed.
import type { AbortSignalLike, RequestHead, ResponseHead } from '../http/index.ts';
import { isIP } from 'node:net';
import { isLocalAddress, PassthroughPools, UpstreamPool } from '../upstream/index.ts';
import type { ReplayableBody, SecureUpstream, UpstreamEndpoint } from '../upstream/index.ts';
import { UpstreamError } from '../upstream/index.ts';
import type { UpstreamTls } from '../tls/upstream.ts';
import type { UpstreamTlsSpec } from '../tls/transport-socket.ts';
import { openTunnel } from '../upstream/tunnel.ts';
import { Http2Pool } from '../http2/index.ts';
import type { UpstreamDispatch } from '../router/router.ts';
import type { Cluster } from './cluster.ts';
import type { Host } from './host.ts';

/** How long requests in flight on a removed cluster's pool may take before it closes. */
const REMOVED_POOL_GRACE_MS = 30_000;

export interface ClusterPoolsOptions {
  /** Mesh mTLS to upstream sidecars (the workload certificate); absent, TLS clusters fail with 'UF'. */
  tls?: UpstreamTls;
  /** Idle expiry of passthrough destinations (M15). */
  passthroughIdleMs: number;
  retryBufferBytes: number;
  /**
   * The workload's own IP: outbound connections bind to it when it is an address of this
   * host, so the next hop sees the real source (M17). A cluster's upstreamBindConfig wins.
   */
  sourceAddress?: string;
  /**
   * Under capture with preserved source ranges: the loopback address standing for a caller
   * that is not an address of this host (a NETMAP on lo turns it back into the caller's, so
   * the app sees the caller as its TCP peer, M17); undefined when the caller is not covered.
   */
  mapSource?: (caller: string) => string | undefined;
}

/** Per-request dispatch options (the router's). */
export interface DispatchOptions {
  timeoutMs: number;
  signal: AbortSignalLike;
  /**
   * The original source to bind to (an inbound request's caller, as Envoy's original_src
   * filter does); used when it is an address of this host, ahead of any bind config.
   */
  sourceAddress?: string;
  /** The downstream request is HTTP/2 (a cluster with use_downstream_protocol_config follows it). */
  downstreamH2?: boolean;
  /** An HTTP/1.1 Upgrade request (WebSocket): a tunnel of its own, never pooled. */
  upgrade?: boolean;
}

// An address connections can bind to, or undefined.
function bindable(ip: string | undefined): string | undefined {
  if (ip === undefined || ip === '') return undefined;
  const v4 = ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip;
  return isLocalAddress(v4) ? v4 : undefined;
}

/** TLS clusters of a proxy without a workload certificate (no CA configured): every connection fails. */
const NO_CERTIFICATE: SecureUpstream = {
  key: 'no-certificate',
  secure: (opened, ep) => {
    opened.socket.destroy();
    return Promise.reject(new UpstreamError('UF', `TLS to ${ep.host}:${ep.port} needs a workload certificate; this proxy has no CA (--ca-address)`, { retriable: false }));
  },
};

export class ClusterPools implements UpstreamDispatch {
  private readonly secureEndpoints = new WeakMap<Host, UpstreamEndpoint>();
  private readonly pools = new Map<Cluster, UpstreamPool>();
  private readonly h2Pools = new Map<Cluster, Http2Pool>();
  private readonly retiring = new Set<UpstreamPool | Http2Pool>();
  /** HTTP/2 to ORIGINAL_DST destinations (sessions close after idling like passthrough pools). */
  private h2Passthrough: Http2Pool | undefined;
  readonly passthrough: PassthroughPools;
  private readonly opts: ClusterPoolsOptions;
  /** The bindable workload IP, or undefined (then the system picks the source). */
  readonly sourceAddress: string | undefined;

  constructor(opts: ClusterPoolsOptions) {
    this.opts = opts;
    this.sourceAddress = bindable(opts.sourceAddress);
    this.passthrough = new PassthroughPools({
      idleTimeoutMs: opts.passthroughIdleMs,
      retryBufferBytes: opts.retryBufferBytes,
      ...(this.sourceAddress !== undefined ? { localAddress: this.sourceAddress } : {}),
    });
  }

  request(cluster: Cluster, host: Host, head: RequestHead, body: ReplayableBody, opts: DispatchOptions): Promise<{ head: ResponseHead; body: AsyncIterable<Buffer> }> {
    const original = this.originalSource(opts.sourceAddress, host.address);
    if (opts.upgrade === true) return this.tunnel(cluster, host, head, body, opts, original);
    const proto = cluster.upstreamProtocol;
    if (proto !== 'http1' && (proto === 'http2' || opts.downstreamH2 === true)) return this.requestH2(cluster, host, head, body, opts, original);
    if (cluster.type === 'ORIGINAL_DST') {
      // one shared pool for every ORIGINAL_DST cluster: the source travels with the request
      const source = original ?? bindable(cluster.bindAddress);
      const ep = source === undefined ? { host: host.address, port: host.port } : { host: host.address, port: host.port, localAddress: source };
      return this.passthrough.request(ep, head, body, opts);
    }
    const tls = cluster.tlsFor(host);
    if (tls !== undefined) return this.poolFor(cluster).request(this.secureEndpoint(host, tls, original), head, body, opts);
    const ep = original === undefined ? host.endpoint : { host: host.address, port: host.port, localAddress: original };
    return this.poolFor(cluster).request(ep, head, body, opts);
  }

  // The endpoint of a host reached over mesh mTLS: its pool key names the TLS settings, so
  // plaintext and TLS connections to one address are never mixed (auto mTLS can change).
  private secureEndpoint(host: Host, tls: UpstreamTlsSpec, original: string | undefined): UpstreamEndpoint {
    const secure: SecureUpstream = this.opts.tls?.connector(tls) ?? NO_CERTIFICATE;
    if (original !== undefined) return { host: host.address, port: host.port, localAddress: original, secure };
    let ep = this.secureEndpoints.get(host);
    if (ep === undefined || ep.secure !== secure) {
      ep = { host: host.address, port: host.port, secure, key: `${host.key}#${secure.key}` };
      this.secureEndpoints.set(host, ep);
    }
    return ep;
  }

  private requestH2(cluster: Cluster, host: Host, head: RequestHead, body: ReplayableBody, opts: DispatchOptions, original: string | undefined): Promise<{ head: ResponseHead; body: AsyncIterable<Buffer> }> {
    if (cluster.type === 'ORIGINAL_DST') {
      const source = original ?? bindable(cluster.bindAddress);
      const ep: UpstreamEndpoint = source === undefined ? { host: host.address, port: host.port } : { host: host.address, port: host.port, localAddress: source };
      this.h2Passthrough ??= new Http2Pool({
        idleTimeoutMs: this.opts.passthroughIdleMs,
        ...(this.sourceAddress !== undefined ? { localAddress: this.sourceAddress } : {}),
      });
      return this.h2Passthrough.request(ep, head, body, opts);
    }
    // mesh mTLS: ALPN h2 on the cluster's transport socket (its pool key names the TLS settings)
    const tls = cluster.tlsFor(host);
    if (tls !== undefined) return this.h2PoolFor(cluster).request(this.secureEndpoint(host, tls, original), head, body, opts);
    const ep = original === undefined ? host.endpoint : { host: host.address, port: host.port, localAddress: original };
    return this.h2PoolFor(cluster).request(ep, head, body, opts);
  }

  // An Upgrade request: its own connection to the host, bound as the cluster's pools bind.
  private tunnel(cluster: Cluster, host: Host, head: RequestHead, body: ReplayableBody, opts: DispatchOptions, original: string | undefined): Promise<{ head: ResponseHead; body: AsyncIterable<Buffer> }> {
    // under mesh mTLS the tunnel is a TLS connection like the cluster's pooled ones (STRICT peers refuse plaintext)
    const tls = cluster.tlsFor(host);
    const ep: UpstreamEndpoint = tls !== undefined ? this.secureEndpoint(host, tls, undefined) : { host: host.address, port: host.port };
    return openTunnel(ep, head, body, {
      timeoutMs: opts.timeoutMs,
      connectTimeoutMs: Math.max(1, Math.round(cluster.pool.connectTimeoutMs)),
      signal: opts.signal,
      localAddress: original ?? bindable(cluster.bindAddress) ?? this.sourceAddress,
      maxHeaderBytes: 60 * 1024,
      bodyHighWaterMark: 64 * 1024,
    });
  }

  /** The HTTP/2 session pool of a cluster: per-cluster connection and pending bounds, streams per session from http2_protocol_options. */
  h2PoolFor(cluster: Cluster): Http2Pool {
    let p = this.h2Pools.get(cluster);
    if (!p) {
      const s = cluster.pool;
      const h2 = cluster.http2;
      const source = bindable(cluster.bindAddress) ?? this.sourceAddress;
      const settings: { streamWindow?: number; connectionWindow?: number } = {};
      if (h2.streamWindow !== undefined) settings.streamWindow = h2.streamWindow;
      if (h2.connectionWindow !== undefined) settings.connectionWindow = h2.connectionWindow;
      p = new Http2Pool({
        maxConnections: Math.max(1, s.maxConnections),
        maxPendingRequests: s.maxPendingRequests,
        ...(h2.maxConcurrentStreams !== undefined ? { maxConcurrentStreams: h2.maxConcurrentStreams } : {}),
        connectTimeoutMs: Math.max(1, Math.round(s.connectTimeoutMs)),
        idleTimeoutMs: Math.max(1, Math.round(s.idleTimeoutMs)),
        maxRequestsPerConnection: s.maxRequestsPerConnection,
        ...(source !== undefined ? { localAddress: source } : {}),
        settings,
      });
      this.h2Pools.set(cluster, p);
      this.watchHosts(cluster);
    }
    return p;
  }

  // Endpoints EDS removed: their idle HTTP/1 connections close, their HTTP/2 sessions retire.
  private watchHosts(cluster: Cluster): void {
    cluster.onHostsRemoved = (hosts) => {
      const h1 = this.pools.get(cluster);
      const h2 = this.h2Pools.get(cluster);
      for (const h of hosts) {
        h1?.drainEndpoint({ host: h.address, port: h.port });
        h2?.drainEndpoint({ host: h.address, port: h.port });
      }
    };
  }

  /** Source to bind to: the original source (inbound), else the cluster's bind config, else the workload IP. */
  sourceFor(cluster: Cluster, original: string | undefined, destination?: string): string | undefined {
    return this.originalSource(original, destination) ?? bindable(cluster.bindAddress) ?? this.sourceAddress;
  }

  // The caller's own address when this host has it, else its mapped stand-in (only toward a
  // non-loopback destination: the NETMAP applies to the app's workload address alone).
  private originalSource(caller: string | undefined, destination: string | undefined): string | undefined {
    const own = bindable(caller);
    if (own !== undefined || caller === undefined || this.opts.mapSource === undefined) return own;
    if (destination === undefined || destination.startsWith('127.') || destination === '::1') return undefined;
    return this.opts.mapSource(caller);
  }

  poolFor(cluster: Cluster): UpstreamPool {
    let p = this.pools.get(cluster);
    if (!p) {
      const s = cluster.pool;
      // Envoy's connection and pending thresholds are per cluster: the pool counts them
      // across all endpoints (and no endpoint may exceed them alone).
      const source = bindable(cluster.bindAddress) ?? this.sourceAddress;
      p = new UpstreamPool({
        maxConnections: Math.max(1, s.maxConnections),
        maxPendingRequests: s.maxPendingRequests,
        maxConnectionsPerEndpoint: Math.max(1, s.maxConnections),
        maxPendingPerEndpoint: s.maxPendingRequests,
        ...(source !== undefined ? { localAddress: source } : {}),
        connectTimeoutMs: Math.max(1, Math.round(s.connectTimeoutMs)),
        idleTimeoutMs: Math.max(1, Math.round(s.idleTimeoutMs)),
        maxRequestsPerConnection: s.maxRequestsPerConnection,
        retryBufferBytes: this.opts.retryBufferBytes,
      });
      this.pools.set(cluster, p);
      this.watchHosts(cluster);
    }
    return p;
  }

  /**
   * Retires the pools of clusters that are gone or replaced: requests in flight on them
   * finish (for up to REMOVED_POOL_GRACE_MS), then the pool closes.
   */
  release(removed: readonly Cluster[]): void {
    for (const c of removed) {
      for (const p of [this.pools.get(c), this.h2Pools.get(c)]) {
        if (!p) continue;
        this.retiring.add(p);
        setTimeout(() => { p.close(); this.retiring.delete(p); }, REMOVED_POOL_GRACE_MS).unref();
      }
      this.pools.delete(c);
      this.h2Pools.delete(c);
    }
  }

  close(): void {
    for (const p of [...this.pools.values(), ...this.h2Pools.values(), ...this.retiring]) p.close();
    this.h2Passthrough?.close();
    this.pools.clear();
    this.h2Pools.clear();
    this.retiring.clear();
    this.passthrough.close();
  }
}
