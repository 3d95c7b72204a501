// The connection pools behind the clusters: one UpstreamPool per cluster, sized from its
// circuit breakers and protocol options, and one shared set of idle-expiring passthrough
// pools for ORIGINAL_DST clusters. Pools of a removed or replaced cluster are closed.
import type { AbortSignalLike, RequestHead, ResponseHead } from '../http/index.ts';
import { isIP } from 'node:net';
import { isLocalAddress, PassthroughPools, UpstreamPool } from '../upstream/index.ts';
import type { ReplayableBody } from '../upstream/index.ts';
import type { UpstreamDispatch } from '../router/router.ts';
import type { Cluster } from './cluster.ts';
import type { Host } from './host.ts';

/** How long requests in flight on a removed cluster's pool may take before it closes. */
const REMOVED_POOL_GRACE_MS = 30_000;

export interface ClusterPoolsOptions {
  /** Idle expiry of passthrough destinations (M15). */
  passthroughIdleMs: number;
  retryBufferBytes: number;
  /**
   * The workload's own IP: outbound connections bind to it when it is an address of this
   * host, so the next hop sees the real source (M17). A cluster's upstreamBindConfig wins.
   */
  sourceAddress?: string;
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
}

// An address connections can bind to, or undefined.
function bindable(ip: string | undefined): string | undefined {
  if (ip === undefined || ip === '') return undefined;
  const v4 = ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip;
  return isLocalAddress(v4) ? v4 : undefined;
}

export class ClusterPools implements UpstreamDispatch {
  private readonly pools = new Map<Cluster, UpstreamPool>();
  private readonly retiring = new Set<UpstreamPool>();
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
    const original = bindable(opts.sourceAddress);
    if (cluster.type === 'ORIGINAL_DST') {
      // one shared pool for every ORIGINAL_DST cluster: the source travels with the request
      const source = original ?? bindable(cluster.bindAddress);
      const ep = source === undefined ? { host: host.address, port: host.port } : { host: host.address, port: host.port, localAddress: source };
      return this.passthrough.request(ep, head, body, opts);
    }
    const ep = original === undefined ? host.endpoint : { host: host.address, port: host.port, localAddress: original };
    return this.poolFor(cluster).request(ep, head, body, opts);
  }

  /** Source to bind to: the original source (inbound), else the cluster's bind config, else the workload IP. */
  sourceFor(cluster: Cluster, original: string | undefined): string | undefined {
    return bindable(original) ?? bindable(cluster.bindAddress) ?? this.sourceAddress;
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
      const pool = p;
      cluster.onHostsRemoved = (hosts) => { for (const h of hosts) pool.drainEndpoint({ host: h.address, port: h.port }); };
    }
    return p;
  }

  /**
   * Retires the pools of clusters that are gone or replaced: requests in flight on them
   * finish (for up to REMOVED_POOL_GRACE_MS), then the pool closes.
   */
  release(removed: readonly Cluster[]): void {
    for (const c of removed) {
      const p = this.pools.get(c);
      this.pools.delete(c);
      if (!p) continue;
      this.retiring.add(p);
      setTimeout(() => { p.close(); this.retiring.delete(p); }, REMOVED_POOL_GRACE_MS).unref();
    }
  }

  close(): void {
    for (const p of [...this.pools.values(), ...this.retiring]) p.close();
    this.pools.clear();
    this.retiring.clear();
    this.passthrough.close();
  }
}
