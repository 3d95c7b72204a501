// Keep-alive connection pools of one cluster, per upstream endpoint: reuse idle
// connections, never hand out one the upstream has closed, expire idle ones before the
// upstream would (Keep-Alive: timeout=), and resend a request that died unanswered on a
// reused connection once on a fresh one (M16).
import { assertSendable, isToken, type RequestHead } from '../http/headers.ts';
import type { AbortSignalLike } from '../http/abort.ts';
import { DeadlineTimer } from '../http/deadline-timer.ts';
import { DEFAULT_HTTP1_LIMITS } from '../http/limits.ts';
import {
  authorityOf,
  endpointKey,
  connectTcp,
  UpstreamConnection,
  type ConnectionLimits,
  type ConnectionOwner,
  type UpstreamEndpoint,
  type UpstreamResponse,
} from './connection.ts';
import { UpstreamError } from './errors.ts';
import { ReplayableBody } from './request-body.ts';

export interface UpstreamPoolOptions {
  /** Open connections per endpoint (idle + busy + connecting). Default 1024. */
  maxConnectionsPerEndpoint?: number;
  /** Requests waiting for a connection per endpoint when all are busy; beyond, 'UO'. Default 1024. */
  maxPendingPerEndpoint?: number;
  /**
   * Open connections across all endpoints (Envoy's per-cluster max_connections). An
   * endpoint with no connection at all may still open one, as Envoy's pools do, so a
   * cluster at its limit never starves a host. Default: no bound beyond the per-endpoint one.
   */
  maxConnections?: number;
  /** Requests waiting for a connection across all endpoints (max_pending_requests); beyond, 'UO'. Default: no bound beyond the per-endpoint one. */
  maxPendingRequests?: number;
  /** Local address outbound connections bind to (net.connect's localAddress); default: the system's choice. */
  localAddress?: string;
  /** An idle connection is closed after this. Default 60 s. */
  idleTimeoutMs?: number;
  /** TCP connect timeout (flag 'UF'). Default 10 s. */
  connectTimeoutMs?: number;
  /** Requests per connection before it is closed; 0 is unlimited. Default 0. */
  maxRequestsPerConnection?: number;
  /** Request body bytes kept to resend a request after a stale-connection failure. Default 64 KiB. */
  retryBufferBytes?: number;
  /** Endpoints with live state at once; beyond, idle state is evicted or 'UO'. Default 10,000. */
  maxEndpoints?: number;
  /** Response head bound. Default 60 KiB. */
  maxHeaderBytes?: number;
  /** Response header count bound. Default 100. */
  maxHeaders?: number;
  /** Response body bytes queued unread before the upstream socket pauses. Default 64 KiB. */
  bodyHighWaterMark?: number;
  /** Called when an endpoint's last connection is gone and its state freed. */
  onEndpointFreed?: (ep: UpstreamEndpoint) => void;
}

export interface UpstreamRequestOptions {
  /** Until the response head arrived, connect included; on expiry 'UT'. 0 or absent: none. */
  timeoutMs?: number;
  /** Aborting destroys the connection; the request (or its response body) fails with 'LR'. */
  signal?: AbortSignalLike;
}

/** Counters in Envoy's cluster stat vocabulary (upstream_cx_*, upstream_rq_*). */
export interface UpstreamPoolStats {
  cxTotal: number;
  cxConnectFail: number;
  cxIdleTimeout: number;
  cxDestroy: number;
  rqTotal: number;
  /** Requests resent on a fresh connection after the reused one was found closed. */
  rqStaleRetry: number;
  rqPendingOverflow: number;
  /** Connections not opened because the pool-wide connection limit was reached (upstream_cx_overflow). */
  cxOverflow: number;
}

interface Waiter {
  resolve: (c: UpstreamConnection) => void;
  reject: (e: Error) => void;
  fresh: boolean;
  done: boolean;
  signal: AbortSignalLike | undefined;
  timeoutMs: number;
}

function positiveInt(v: number | undefined, dflt: number, field: string, allowZero = false): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 0 || (!allowZero && v === 0)) {
    throw new RangeError(`upstream pool: ${field} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got ${String(v)}`);
  }
  return v;
}

/** State of one endpoint: its connections and the requests waiting for one. */
class EndpointPool implements ConnectionOwner {
  readonly key: string;
  readonly endpoint: UpstreamEndpoint;
  readonly idle: UpstreamConnection[] = [];
  readonly all = new Set<UpstreamConnection>();
  connecting = 0;
  waiters: Waiter[] = [];
  private readonly pool: UpstreamPool;

  constructor(pool: UpstreamPool, key: string, ep: UpstreamEndpoint) {
    this.pool = pool;
    this.key = key;
    const base = ep.localAddress === undefined ? { host: ep.host, port: ep.port } : { host: ep.host, port: ep.port, localAddress: ep.localAddress };
    this.endpoint = ep.secure === undefined ? base : { ...base, secure: ep.secure };
  }

  get total(): number {
    return this.all.size + this.connecting;
  }

  get empty(): boolean {
    return this.all.size === 0 && this.connecting === 0 && this.waiters.length === 0;
  }

  released(conn: UpstreamConnection): void {
    this.pool.onReleased(this, conn);
  }

  closed(conn: UpstreamConnection): void {
    this.pool.onClosed(this, conn);
  }
}

/** Connection pools of one cluster, one per endpoint. */
export class UpstreamPool {
  readonly stats: UpstreamPoolStats = {
    cxTotal: 0,
    cxConnectFail: 0,
    cxIdleTimeout: 0,
    cxDestroy: 0,
    rqTotal: 0,
    rqStaleRetry: 0,
    rqPendingOverflow: 0,
    cxOverflow: 0,
  };
  private readonly endpoints = new Map<string, EndpointPool>();
  private readonly maxConnections: number;
  private readonly maxPending: number;
  private readonly maxTotalConnections: number;
  private readonly maxTotalPending: number;
  private readonly localAddress: string | undefined;
  /** Connections open or connecting, all endpoints. */
  private totalConnections = 0;
  /** Requests waiting for a connection, all endpoints. */
  private totalPending = 0;
  private readonly idleTimeoutMs: number;
  private readonly connectTimeoutMs: number;
  private readonly maxRequestsPerConnection: number;
  private readonly retryBufferBytes: number;
  private readonly maxEndpoints: number;
  private readonly limits: ConnectionLimits;
  private readonly onEndpointFreed: ((ep: UpstreamEndpoint) => void) | undefined;
  private isClosed = false;

  constructor(opts: UpstreamPoolOptions = {}) {
    this.maxConnections = positiveInt(opts.maxConnectionsPerEndpoint, 1024, 'maxConnectionsPerEndpoint');
    this.maxPending = positiveInt(opts.maxPendingPerEndpoint, 1024, 'maxPendingPerEndpoint', true);
    this.maxTotalConnections = positiveInt(opts.maxConnections, Number.MAX_SAFE_INTEGER, 'maxConnections');
    this.maxTotalPending = positiveInt(opts.maxPendingRequests, Number.MAX_SAFE_INTEGER, 'maxPendingRequests', true);
    this.localAddress = opts.localAddress === '' ? undefined : opts.localAddress;
    this.idleTimeoutMs = positiveInt(opts.idleTimeoutMs, 60_000, 'idleTimeoutMs');
    this.connectTimeoutMs = positiveInt(opts.connectTimeoutMs, 10_000, 'connectTimeoutMs');
    this.maxRequestsPerConnection = positiveInt(opts.maxRequestsPerConnection, 0, 'maxRequestsPerConnection', true);
    this.retryBufferBytes = positiveInt(opts.retryBufferBytes, 64 * 1024, 'retryBufferBytes', true);
    this.maxEndpoints = positiveInt(opts.maxEndpoints, 10_000, 'maxEndpoints');
    this.onEndpointFreed = opts.onEndpointFreed;
    this.limits = {
      maxHeaderBytes: positiveInt(opts.maxHeaderBytes, DEFAULT_HTTP1_LIMITS.maxHeaderBytes, 'maxHeaderBytes'),
      maxHeaders: positiveInt(opts.maxHeaders, DEFAULT_HTTP1_LIMITS.maxHeaders, 'maxHeaders'),
      bodyHighWaterMark: positiveInt(opts.bodyHighWaterMark, DEFAULT_HTTP1_LIMITS.bodyHighWaterMark, 'bodyHighWaterMark'),
    };
  }

  /** Bytes of request body kept for a resend (the bound a router may reuse for its retries). */
  get retryBufferLimit(): number {
    return this.retryBufferBytes;
  }

  /**
   * Sends a request to `ep` and resolves with the response head (the body streams). The
   * request goes out as HTTP/1.1 (Host added from `ep` when the head has none). Rejects
   * with UpstreamError. A request that failed on a reused connection before any response
   * byte is resent once on a fresh connection when its body is replayable.
   */
  request(
    ep: UpstreamEndpoint,
    head: RequestHead,
    body: AsyncIterable<Buffer> | Buffer | null | ReplayableBody,
    opts: UpstreamRequestOptions = {},
  ): Promise<UpstreamResponse> {
    try {
      if (this.isClosed) throw new UpstreamError('UO', 'upstream pool is closed', { retriable: false });
      assertSendable(head.headers, head.target, 'request target');
      if (!isToken(head.method)) throw new TypeError(`invalid method ${JSON.stringify(head.method)}`);
      this.stats.rqTotal++;
      const rb = body instanceof ReplayableBody ? body : new ReplayableBody(body, this.retryBufferBytes);
      if (!rb.canReplay) {
        throw new UpstreamError('UO', 'request body exceeded the retry buffer: it cannot be sent again', { retriable: false });
      }
      const timeoutMs = opts.timeoutMs ?? 0;
      const deadline = timeoutMs > 0 ? Date.now() + timeoutMs : 0;
      // an idle keep-alive connection is taken without waiting for anything
      const conn = this.takeIdle(this.endpointPool(ep));
      if (conn === undefined) return this.requestOnNew(ep, head, rb, deadline, opts.signal);
      const sent = conn.exchange(head, rb, remaining(deadline, ep), opts.signal);
      // Not an async function: a request in flight holds one small closure, not a suspended frame.
      return sent.catch((e: unknown) => this.resendStale(e, ep, head, rb, deadline, opts.signal));
    } catch (e) {
      return Promise.reject(e as Error);
    }
  }

  // No idle connection: a new one, or one a waiter hands over.
  private async requestOnNew(ep: UpstreamEndpoint, head: RequestHead, rb: ReplayableBody, deadline: number, signal: AbortSignalLike | undefined): Promise<UpstreamResponse> {
    const conn = await this.acquire(ep, false, deadline, signal);
    try {
      return await conn.exchange(head, rb, remaining(deadline, ep), signal);
    } catch (e) {
      return await this.resendStale(e, ep, head, rb, deadline, signal);
    }
  }

  // The upstream closed a reused keep-alive connection as the request went out: it never
  // answered it, so the request goes again on a connection opened for it. Other failures stand.
  private async resendStale(e: unknown, ep: UpstreamEndpoint, head: RequestHead, rb: ReplayableBody, deadline: number, signal: AbortSignalLike | undefined): Promise<UpstreamResponse> {
    if (
      !(e instanceof UpstreamError) ||
      !e.reusedConnection ||
      e.responseStarted ||
      (e.flag !== 'UC' && e.flag !== 'UR') ||
      !rb.replayable ||
      signal?.aborted === true
    ) {
      throw e;
    }
    this.stats.rqStaleRetry++;
    const conn = await this.acquire(ep, true, deadline, signal);
    return await conn.exchange(head, rb, remaining(deadline, ep), signal);
  }

  /** Connections carrying a request or connecting (for `ep`, or all endpoints). */
  activeConnections(ep?: UpstreamEndpoint): number {
    let n = 0;
    for (const p of this.pools(ep)) n += p.total - p.idle.length;
    return n;
  }

  /** Idle keep-alive connections (for `ep`, or all endpoints). */
  idleConnections(ep?: UpstreamEndpoint): number {
    let n = 0;
    for (const p of this.pools(ep)) n += p.idle.length;
    return n;
  }

  /** Requests waiting for a connection (for `ep`, or all endpoints). */
  pendingRequests(ep?: UpstreamEndpoint): number {
    let n = 0;
    for (const p of this.pools(ep)) n += p.waiters.length;
    return n;
  }

  /** Endpoints with live state (connections or waiting requests). */
  get endpointCount(): number {
    return this.endpoints.size;
  }

  /** Closes every connection; pending requests fail with 'UO'. */
  close(): void {
    this.isClosed = true;
    for (const p of [...this.endpoints.values()]) {
      for (const w of p.waiters.splice(0)) settle(w, new UpstreamError('UO', 'upstream pool closed', { retriable: false }));
      this.totalPending = 0;
      for (const c of [...p.all]) c.close();
    }
    this.endpoints.clear();
  }

  /** Closes the idle connections of `ep` (e.g. an endpoint removed by EDS); busy ones finish. */
  drainEndpoint(ep: UpstreamEndpoint): void {
    // every source address the endpoint is reached from
    for (const p of [...this.endpoints.values()]) {
      if (p.endpoint.host !== ep.host || p.endpoint.port !== ep.port) continue;
      for (const c of p.idle.splice(0)) c.close();
    }
  }

  private *pools(ep?: UpstreamEndpoint): Iterable<EndpointPool> {
    if (ep === undefined) yield* this.endpoints.values();
    else {
      const p = this.endpoints.get(keyOf(ep));
      if (p !== undefined) yield p;
    }
  }

  private endpointPool(ep: UpstreamEndpoint): EndpointPool {
    const key = keyOf(ep);
    let p = this.endpoints.get(key);
    if (p !== undefined) return p;
    if (this.endpoints.size >= this.maxEndpoints) this.evictIdleEndpoint();
    if (this.endpoints.size >= this.maxEndpoints) {
      this.stats.rqPendingOverflow++;
      throw new UpstreamError('UO', `more than ${this.maxEndpoints} upstream endpoints with live connections`, { retriable: false });
    }
    p = new EndpointPool(this, key, ep);
    this.endpoints.set(key, p);
    return p;
  }

  // Frees the oldest endpoint that only holds idle connections.
  private evictIdleEndpoint(): void {
    for (const p of this.endpoints.values()) {
      if (p.waiters.length === 0 && p.connecting === 0 && p.idle.length === p.all.size) {
        for (const c of p.idle.splice(0)) c.close();
        this.forget(p);
        return;
      }
    }
  }

  // The most recently used idle connection still usable, if any (stale ones are closed).
  private takeIdle(p: EndpointPool): UpstreamConnection | undefined {
    if (p.idle.length === 0) return undefined;
    const now = Date.now();
    while (p.idle.length > 0) {
      const c = p.idle.pop()!;
      if (c.usable && now - c.idleSince < c.idleTimeoutMs) return c;
      c.close();
    }
    return undefined;
  }

  private async acquire(ep: UpstreamEndpoint, fresh: boolean, deadline: number, signal: AbortSignalLike | undefined): Promise<UpstreamConnection> {
    const p = this.endpointPool(ep);
    if (!fresh) {
      const c = this.takeIdle(p);
      if (c !== undefined) return c;
    } else if (p.total >= this.maxConnections && p.idle.length > 0) {
      p.idle.shift()!.close(); // make room for the fresh connection
    }
    if (this.canConnect(p)) return this.connect(p, deadline, signal);
    if (p.total < this.maxConnections) this.stats.cxOverflow++;
    if (p.waiters.length >= this.maxPending || this.totalPending >= this.maxTotalPending) {
      this.stats.rqPendingOverflow++;
      const why = p.waiters.length >= this.maxPending
        ? `${this.maxConnections} connections busy and ${this.maxPending} requests pending`
        : `${this.totalConnections} connections busy and ${this.totalPending} requests pending across the cluster`;
      throw new UpstreamError('UO', `upstream ${authorityOf(ep)}: ${why}`, { retriable: false });
    }
    return new Promise<UpstreamConnection>((resolve, reject) => {
      const w: Waiter = { resolve, reject, fresh, done: false, signal, timeoutMs: 0 };
      this.addWaiter(p, w);
      const ms = remaining(deadline, ep);
      let timer: NodeJS.Timeout | null = null;
      const onAbort = (): void => {
        drop();
        settle(w, new UpstreamError('LR', `request to ${authorityOf(ep)} aborted while waiting for a connection`, { retriable: false }));
      };
      const drop = (): void => {
        const i = p.waiters.indexOf(w);
        if (i >= 0) {
          p.waiters.splice(i, 1);
          this.totalPending--;
        }
        if (timer !== null) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (p.empty) this.forget(p);
      };
      if (ms > 0) {
        timer = setTimeout(() => {
          drop();
          settle(w, new UpstreamError('UT', `no connection to ${authorityOf(ep)} available in time`, { retriable: true }));
        }, ms);
      }
      if (signal !== undefined) signal.addEventListener('abort', onAbort, { once: true });
      const unhook = (): void => {
        if (timer !== null) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      w.resolve = (c) => {
        unhook();
        resolve(c);
      };
      w.reject = (e) => {
        unhook();
        reject(e);
      };
    });
  }

  // A new connection to `p` fits the per-endpoint bound and the pool-wide one (or `p` has none at all).
  private canConnect(p: EndpointPool): boolean {
    return p.total < this.maxConnections && (this.totalConnections < this.maxTotalConnections || p.total === 0);
  }

  private addWaiter(p: EndpointPool, w: Waiter, front = false): void {
    if (front) p.waiters.unshift(w);
    else p.waiters.push(w);
    this.totalPending++;
  }

  private takeWaiter(p: EndpointPool): Waiter | undefined {
    const w = p.waiters.shift();
    if (w !== undefined) this.totalPending--;
    return w;
  }

  private async connect(p: EndpointPool, deadline: number, signal: AbortSignalLike | undefined): Promise<UpstreamConnection> {
    p.connecting++;
    this.totalConnections++;
    const left = remaining(deadline, p.endpoint);
    const ms = left > 0 ? Math.min(left, this.connectTimeoutMs) : this.connectTimeoutMs;
    let opened;
    try {
      opened = await connectTcp(p.endpoint, ms, signal, p.endpoint.localAddress ?? this.localAddress);
      if (p.endpoint.secure !== undefined) opened = await p.endpoint.secure.secure(opened, p.endpoint, ms);
    } catch (e) {
      p.connecting--;
      this.totalConnections--;
      this.stats.cxConnectFail++;
      this.afterCapacityFreed(p);
      if (e instanceof UpstreamError && e.flag === 'UF' && deadline > 0 && Date.now() >= deadline && ms === left) {
        throw new UpstreamError('UT', `no response from ${authorityOf(p.endpoint)} in time (connecting)`, { retriable: true, code: e.code });
      }
      throw e;
    }
    p.connecting--;
    this.stats.cxTotal++;
    const conn = new UpstreamConnection(opened, p.endpoint, this.limits, p);
    conn.idleTimeoutMs = this.idleTimeoutMs;
    p.all.add(conn);
    if (this.isClosed) conn.close();
    return conn;
  }

  /** A connection finished its exchange and may be reused. */
  onReleased(p: EndpointPool, conn: UpstreamConnection): void {
    if (this.isClosed || (this.maxRequestsPerConnection > 0 && conn.requests >= this.maxRequestsPerConnection)) {
      conn.close();
      return;
    }
    // hand it straight to a waiting request
    while (p.waiters.length > 0) {
      const w = this.takeWaiter(p)!;
      if (w.done) continue;
      if (w.fresh) {
        this.addWaiter(p, w, true);
        conn.close(); // frees the slot; afterCapacityFreed connects for this waiter
        return;
      }
      w.done = true;
      w.resolve(conn);
      return;
    }
    let ms = this.idleTimeoutMs;
    const hint = conn.keepAliveHintMs;
    if (hint >= 0) {
      // expire before the upstream does: its timer and ours race otherwise
      ms = Math.min(ms, hint - Math.min(1000, Math.floor(hint / 2)));
      if (ms <= 0) {
        conn.close();
        return;
      }
    }
    const now = Date.now();
    conn.idleSince = now;
    conn.idleTimeoutMs = ms;
    (conn.idleTimer ??= new DeadlineTimer(() => this.onIdleTimer(p, conn))).arm(ms, now);
    p.idle.push(conn);
  }

  private onIdleTimer(p: EndpointPool, conn: UpstreamConnection): void {
    if (conn.closed || conn.busy) return;
    if (p.idle.includes(conn)) {
      this.stats.cxIdleTimeout++;
      conn.close();
    }
  }

  /** A connection closed, idle or not. */
  onClosed(p: EndpointPool, conn: UpstreamConnection): void {
    this.stats.cxDestroy++;
    if (p.all.delete(conn)) this.totalConnections--;
    const i = p.idle.indexOf(conn);
    if (i >= 0) p.idle.splice(i, 1);
    this.afterCapacityFreed(p);
  }

  private afterCapacityFreed(p: EndpointPool): void {
    this.connectWaiters(p);
    // a slot freed under the pool-wide bound may serve a request waiting on another endpoint
    if (this.totalPending > 0 && this.totalConnections < this.maxTotalConnections) {
      for (const other of [...this.endpoints.values()]) {
        if (other === p || other.waiters.length === 0) continue;
        this.connectWaiters(other);
        if (this.totalConnections >= this.maxTotalConnections) break;
      }
    }
    if (p.empty) this.forget(p);
  }

  private connectWaiters(p: EndpointPool): void {
    while (p.waiters.length > 0 && this.canConnect(p) && !this.isClosed) {
      const w = this.takeWaiter(p)!;
      if (w.done) continue;
      w.done = true;
      this.connect(p, 0, w.signal).then(w.resolve, w.reject);
    }
  }

  private forget(p: EndpointPool): void {
    if (this.endpoints.get(p.key) !== p) return;
    this.endpoints.delete(p.key);
    this.onEndpointFreed?.(p.endpoint);
  }
}

function settle(w: Waiter, err: Error): void {
  if (w.done) return;
  w.done = true;
  w.reject(err);
}

function keyOf(ep: UpstreamEndpoint): string {
  return ep.key ?? (ep.secure === undefined ? endpointKey(ep.host, ep.port, ep.localAddress) : endpointKey(ep.host, ep.port, ep.localAddress) + '#' + ep.secure.key);
}

// Milliseconds left before `deadline` (0: no deadline); throws 'UT' when it passed.
function remaining(deadline: number, ep: UpstreamEndpoint): number {
  if (deadline === 0) return 0;
  const ms = deadline - Date.now();
  if (ms <= 0) throw new UpstreamError('UT', `no response from ${authorityOf(ep)} in time`, { retriable: true });
  return ms;
}
