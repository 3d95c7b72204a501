// Pools for passthrough (ALLOW_ANY) and ORIGINAL_DST traffic: one keep-alive pool per
// original destination, created on first use and freed once idle (default 5 s, M15), so
// a caller reaching many destinations leaves no state behind.
import type { RequestHead } from '../http/headers.ts';
import type { UpstreamEndpoint, UpstreamResponse } from './connection.ts';
import { UpstreamPool, type UpstreamPoolOptions, type UpstreamRequestOptions, type UpstreamPoolStats } from './pool.ts';
import { reclaimMemory } from './memory.ts';
import type { ReplayableBody } from './request-body.ts';

export interface PassthroughPoolsOptions extends Omit<UpstreamPoolOptions, 'idleTimeoutMs' | 'maxEndpoints' | 'onEndpointFreed'> {
  /** Idle connections, and the destination state with them, are freed after this. Default 5000 ms. */
  idleTimeoutMs?: number;
  /** Destinations with live state at once; beyond, the oldest idle one is evicted, else 'UO'. Default 10,000. */
  maxDestinations?: number;
  /** Called when a destination's state is freed (to drop per-destination entries kept elsewhere). */
  onDestinationFreed?: (dst: UpstreamEndpoint) => void;
  /**
   * After this many destinations were freed and most state is gone, run one
   * memory-reducing collection so RSS returns to its baseline (M15). 0 disables. Default 1000.
   */
  reclaimAfterFreed?: number;
}

// At most one memory-reducing collection per this interval: bounds its CPU cost.
const RECLAIM_MIN_INTERVAL_MS = 10_000;
// Quiet time after the last free before collecting: the burst must be over.
const RECLAIM_DELAY_MS = 1000;

/**
 * Per original-destination connection pools. A destination's entry exists only while it
 * has connections (busy or idle) or waiting requests; idle connections close after
 * `idleTimeoutMs`, and the entry goes with the last one.
 */
export class PassthroughPools {
  private readonly pool: UpstreamPool;
  readonly idleTimeoutMs: number;

  private readonly reclaimAfterFreed: number;
  private freedSinceReclaim = 0;
  private lastReclaim = 0;
  private reclaimTimer: NodeJS.Timeout | null = null;
  /** Memory-reducing collections run so far. */
  reclaims = 0;

  constructor(opts: PassthroughPoolsOptions = {}) {
    const { maxDestinations, idleTimeoutMs, onDestinationFreed, reclaimAfterFreed, ...rest } = opts;
    this.idleTimeoutMs = idleTimeoutMs ?? 5000;
    this.reclaimAfterFreed = reclaimAfterFreed ?? 1000;
    this.pool = new UpstreamPool({
      ...rest,
      idleTimeoutMs: this.idleTimeoutMs,
      maxEndpoints: maxDestinations ?? 10_000,
      onEndpointFreed: (ep) => {
        onDestinationFreed?.(ep);
        this.noteFreed();
      },
    });
  }

  // Once a burst of destinations is mostly gone (live ones under a tenth of those freed),
  // collect so the process does not keep the burst's peak RSS.
  private noteFreed(): void {
    if (this.reclaimAfterFreed === 0) return;
    this.freedSinceReclaim++;
    if (this.freedSinceReclaim < this.reclaimAfterFreed || this.pool.endpointCount * 10 > this.freedSinceReclaim) return;
    if (this.reclaimTimer !== null) this.reclaimTimer.refresh();
    else {
      this.reclaimTimer = setTimeout(() => this.reclaim(), RECLAIM_DELAY_MS);
      this.reclaimTimer.unref();
    }
  }

  private reclaim(): void {
    this.reclaimTimer = null;
    const now = Date.now();
    const wait = this.lastReclaim + RECLAIM_MIN_INTERVAL_MS - now;
    if (wait > 0) {
      this.reclaimTimer = setTimeout(() => this.reclaim(), wait);
      this.reclaimTimer.unref();
      return;
    }
    this.lastReclaim = now;
    this.freedSinceReclaim = 0;
    if (reclaimMemory()) this.reclaims++;
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
    if (this.reclaimTimer !== null) clearTimeout(this.reclaimTimer);
    this.reclaimTimer = null;
    this.pool.close();
  }
}
