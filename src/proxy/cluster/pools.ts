// The connection pools behind the clusters: one UpstreamPool per cluster, sized from its
// circuit breakers and protocol options, and one shared set of idle-expiring passthrough
// pools for ORIGINAL_DST clusters. Pools of a removed or replaced cluster are closed.
import type { RequestHead, ResponseHead } from '../http/index.ts';
import { PassthroughPools, UpstreamPool } from '../upstream/index.ts';
import type { ReplayableBody } from '../upstream/index.ts';
import type { UpstreamDispatch } from '../router/router.ts';
import type { Cluster } from './cluster.ts';

/** How long requests in flight on a removed cluster's pool may take before it closes. */
const REMOVED_POOL_GRACE_MS = 30_000;

export interface ClusterPoolsOptions {
  /** Idle expiry of passthrough destinations (M15). */
  passthroughIdleMs: number;
  retryBufferBytes: number;
}

export class ClusterPools implements UpstreamDispatch {
  private readonly pools = new Map<Cluster, UpstreamPool>();
  private readonly retiring = new Set<UpstreamPool>();
  readonly passthrough: PassthroughPools;
  private readonly opts: ClusterPoolsOptions;

  constructor(opts: ClusterPoolsOptions) {
    this.opts = opts;
    this.passthrough = new PassthroughPools({ idleTimeoutMs: opts.passthroughIdleMs, retryBufferBytes: opts.retryBufferBytes });
  }

  request(cluster: Cluster, host: { address: string; port: number }, head: RequestHead, body: ReplayableBody, opts: { timeoutMs: number; signal: AbortSignal }): Promise<{ head: ResponseHead; body: AsyncIterable<Buffer> }> {
    const ep = { host: host.address, port: host.port };
    if (cluster.type === 'ORIGINAL_DST') return this.passthrough.request(ep, head, body, opts);
    return this.poolFor(cluster).request(ep, head, body, opts);
  }

  poolFor(cluster: Cluster): UpstreamPool {
    let p = this.pools.get(cluster);
    if (!p) {
      const s = cluster.pool;
      // Envoy's connection and pending thresholds are per cluster; the pool applies them
      // per endpoint, which is the same for the common single-endpoint-per-call case.
      p = new UpstreamPool({
        maxConnectionsPerEndpoint: Math.max(1, s.maxConnections),
        maxPendingPerEndpoint: s.maxPendingRequests,
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
