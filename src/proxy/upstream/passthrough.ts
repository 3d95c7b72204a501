// Pools for passthrough (ALLOW_ANY) and ORIGINAL_DST traffic: one keep-alive pool per
// original destination, created on first use and freed once idle (default 5 s, M15), so
// a caller reaching many destinations leaves no state behind.
import type { RequestHead } from '../http/headers.ts';
import type { UpstreamEndpoint, UpstreamResponse } from './connection.ts';
import { UpstreamPool, type UpstreamPoolOptions, type UpstreamRequestOptions, type UpstreamPoolStats } from './pool.ts';
import type { ReplayableBody } from './request-body.ts';

export interface PassthroughPoolsOptions extends Omit<UpstreamPoolOptions, 'idleTimeoutMs' | 'maxEndpoints'> {
  /** Idle connections, and the destination state with them, are freed after this. Default 5000 ms. */
  idleTimeoutMs?: number;
  /** Destinations with live state at once; beyond, the oldest idle one is evicted, else 'UO'. Default 10,000. */
  maxDestinations?: number;
}

/**
 * Per original-destination connection pools. A destination's entry exists only while it
 * has connections (busy or idle) or waiting requests; idle connections close after
 * `idleTimeoutMs`, and the entry goes with the last one.
 */
export class PassthroughPools {
  private readonly pool: UpstreamPool;
  readonly idleTimeoutMs: number;

  constructor(opts: PassthroughPoolsOptions = {}) {
    const { maxDestinations, idleTimeoutMs, ...rest } = opts;
    this.idleTimeoutMs = idleTimeoutMs ?? 5000;
    this.pool = new UpstreamPool({ ...rest, idleTimeoutMs: this.idleTimeoutMs, maxEndpoints: maxDestinations ?? 10_000 });
  }

  /** Sends a request to its original destination; see UpstreamPool.request. */
  request(
    dst: UpstreamEndpoint,
    head: RequestHead,
    body: AsyncIterable<Buffer> | Buffer | null | ReplayableBody,
    opts: UpstreamRequestOptions = {},
  ): Promise<UpstreamResponse> {
    return this.pool.request(dst, head, body, opts);
  }

  /** Destinations with live state. */
  get destinations(): number {
    return this.pool.endpointCount;
  }

  activeConnections(dst?: UpstreamEndpoint): number {
    return this.pool.activeConnections(dst);
  }

  idleConnections(dst?: UpstreamEndpoint): number {
    return this.pool.idleConnections(dst);
  }

  get stats(): UpstreamPoolStats {
    return this.pool.stats;
  }

  close(): void {
    this.pool.close();
  }
}
