// Upstream HTTP/2 (h2c, prior knowledge) for clusters that ask for it: sessions pooled per
// endpoint, each carrying up to its max_concurrent_streams (ours, and the peer's SETTINGS);
// more sessions up to the cluster's max_connections, then requests wait (max_pending_requests,
// beyond it 'UO'). A session that received GOAWAY takes no new stream; a stream the peer
// never processed (id above GOAWAY's last_stream_id, or REFUSED_STREAM) is sent again on
// another session, since the application never saw it. Every other failure stands.
import http2 from 'node:http2';
import net from 'node:net';
import type { AbortSignalLike, RawHeader, RequestHead } from '../http/index.ts';
import { BodyStream, emptyBody } from '../http/index.ts';
import type { BodySource } from '../http/body.ts';
import { authorityOf, endpointKey, UpstreamError } from '../upstream/index.ts';
import type { ReplayableBody, UpstreamEndpoint, UpstreamResponse } from '../upstream/index.ts';
import { h2RequestHeaders, h2Trailers, rawToHeaders, responseHeadFromH2 } from './headers.ts';
import { DEFAULT_HTTP2_SETTINGS, H2_CANCEL, H2_REFUSED_STREAM } from './settings.ts';
import type { Http2Settings } from './settings.ts';

const { NGHTTP2_FLAG_END_STREAM } = http2.constants;

export interface Http2PoolOptions {
  /** Sessions open or connecting, across endpoints (the cluster's max_connections). An endpoint without one may always open one. */
  maxConnections?: number;
  /** Requests waiting for a stream slot, across endpoints (max_pending_requests); beyond, 'UO'. */
  maxPendingRequests?: number;
  /** Streams per session at most (http2_protocol_options.max_concurrent_streams); the peer's SETTINGS may lower it. */
  maxConcurrentStreams?: number;
  connectTimeoutMs?: number;
  /** A session with no stream for this long is closed. */
  idleTimeoutMs?: number;
  /** Streams per session before it is retired (GOAWAY'd by us); 0 unlimited. */
  maxRequestsPerConnection?: number;
  /** Source address sessions bind to. */
  localAddress?: string;
  settings?: Partial<Http2Settings>;
}

export interface Http2RequestOptions {
  /** Until the response head arrived, connect included; on expiry 'UT'. 0: none. */
  timeoutMs?: number;
  signal?: AbortSignalLike;
}

/** Counters in Envoy's cluster stat vocabulary. */
export interface Http2PoolStats {
  cxTotal: number;
  cxConnectFail: number;
  rqTotal: number;
  /** Streams sent again after the peer refused them or announced GOAWAY below their id. */
  rqRetryUnprocessed: number;
  rqPendingOverflow: number;
  goawayReceived: number;
}

/** A stream the peer never processed: safe to send again on another session. */
class Unprocessed extends Error {
  override readonly name = 'Unprocessed';
}

interface Session {
  readonly h2: http2.ClientHttp2Session;
  readonly ep: EndpointState;
  active: number;
  started: number;
  /** No new streams: GOAWAY received (or sent by us), or the session is closing. */
  closing: boolean;
  /** GOAWAY's last_stream_id: streams above it were never processed. */
  lastStreamId: number;
  idleTimer: NodeJS.Timeout | null;
  /**
   * The exchanges in flight, each told when the session closes: a stream opened in the instant
   * the peer's socket went away may never report its own close, and must not wait forever.
   */
  readonly exchanges: Set<() => void>;
}

interface Waiter {
  resolve: (s: Session) => void;
  reject: (e: Error) => void;
  done: boolean;
}

class EndpointState {
  readonly key: string;
  readonly ep: UpstreamEndpoint;
  readonly authority: string;
  readonly sessions: Session[] = [];
  connecting = 0;
  waiters: Waiter[] = [];

  constructor(key: string, ep: UpstreamEndpoint) {
    this.key = key;
    this.ep = ep;
    this.authority = authorityOf(ep);
  }
}

export class Http2Pool {
  readonly stats: Http2PoolStats = { cxTotal: 0, cxConnectFail: 0, rqTotal: 0, rqRetryUnprocessed: 0, rqPendingOverflow: 0, goawayReceived: 0 };
  private readonly endpoints = new Map<string, EndpointState>();
  private readonly maxConnections: number;
  private readonly maxPending: number;
  private readonly maxStreams: number;
  private readonly connectTimeoutMs: number;
  private readonly idleTimeoutMs: number;
  private readonly maxRequestsPerConnection: number;
  private readonly localAddress: string | undefined;
  private readonly settings: Http2Settings;
  private totalSessions = 0;
  private totalPending = 0;
  private closed = false;

  constructor(opts: Http2PoolOptions = {}) {
    this.maxConnections = Math.max(1, opts.maxConnections ?? Number.MAX_SAFE_INTEGER);
    this.maxPending = Math.max(0, opts.maxPendingRequests ?? 1024);
    this.maxStreams = Math.max(1, opts.maxConcurrentStreams ?? 1024);
    this.connectTimeoutMs = Math.max(1, opts.connectTimeoutMs ?? 10_000);
    this.idleTimeoutMs = Math.max(1, opts.idleTimeoutMs ?? 60_000);
    this.maxRequestsPerConnection = opts.maxRequestsPerConnection ?? 0;
    this.localAddress = opts.localAddress;
    this.settings = { ...DEFAULT_HTTP2_SETTINGS, ...opts.settings };
  }

  /** Open sessions (for `ep`, or all endpoints). */
  sessionCount(ep?: UpstreamEndpoint): number {
    if (ep === undefined) return this.totalSessions;
    return this.endpoints.get(keyOf(ep))?.sessions.length ?? 0;
  }

  /** Streams in flight across all sessions. */
  activeStreams(): number {
    let n = 0;
    for (const e of this.endpoints.values()) for (const s of e.sessions) n += s.active;
    return n;
  }

  /**
   * Sends a request as an HTTP/2 stream and resolves with the response head (the body
   * streams; trailers land on `body.trailers`). A trailers-only response resolves with an
   * ended empty body. Rejects with UpstreamError.
   */
  async request(ep: UpstreamEndpoint, head: RequestHead, body: ReplayableBody, opts: Http2RequestOptions = {}): Promise<UpstreamResponse> {
    if (this.closed) throw new UpstreamError('UO', 'upstream pool is closed', { retriable: false });
    this.stats.rqTotal++;
    const timeoutMs = opts.timeoutMs ?? 0;
    const deadline = timeoutMs > 0 ? Date.now() + timeoutMs : 0;
    const state = this.endpointState(ep);
    for (let attempt = 0; ; attempt++) {
      const session = await this.acquire(state, deadline, opts.signal);
      try {
        return await this.exchange(session, head, body, deadline, opts.signal);
      } catch (e) {
        if (!(e instanceof Unprocessed)) throw e;
        if (attempt >= 2 || !body.replayable || opts.signal?.aborted === true) {
          throw new UpstreamError('UR', e.message, { retriable: true, code: 'REFUSED_STREAM' });
        }
        this.stats.rqRetryUnprocessed++;
      }
    }
  }

  /** Closes every session; waiting requests fail with 'UO'. */
  close(): void {
    this.closed = true;
    for (const st of this.endpoints.values()) {
      for (const w of st.waiters.splice(0)) settle(w, new UpstreamError('UO', 'upstream pool closed', { retriable: false }));
      for (const s of [...st.sessions]) s.h2.destroy();
    }
    this.totalPending = 0;
  }

  /** Retires the sessions of `ep` (an endpoint removed by EDS): streams in flight finish. */
  drainEndpoint(ep: UpstreamEndpoint): void {
    for (const st of this.endpoints.values()) {
      if (st.ep.host !== ep.host || st.ep.port !== ep.port) continue;
      for (const s of st.sessions) this.retire(s);
    }
  }

  private endpointState(ep: UpstreamEndpoint): EndpointState {
    const key = keyOf(ep);
    let st = this.endpoints.get(key);
    if (st === undefined) {
      st = new EndpointState(key, ep);
      this.endpoints.set(key, st);
    }
    return st;
  }

  private limit(s: Session): number {
    const peer = s.h2.remoteSettings.maxConcurrentStreams;
    return peer !== undefined && peer < this.maxStreams ? peer : this.maxStreams;
  }

  // A session with a free stream slot; the slot is taken.
  private pick(st: EndpointState): Session | undefined {
    for (const s of st.sessions) {
      if (!s.closing && s.active < this.limit(s) && !s.h2.closed && !s.h2.destroyed) {
        this.take(s);
        return s;
      }
    }
    return undefined;
  }

  private take(s: Session): void {
    s.active++;
    s.started++;
    if (s.idleTimer !== null) {
      clearTimeout(s.idleTimer);
      s.idleTimer = null;
    }
    // the last stream this session may carry: no new ones after it
    if (this.maxRequestsPerConnection > 0 && s.started >= this.maxRequestsPerConnection) s.closing = true;
  }

  private acquire(st: EndpointState, deadline: number, signal: AbortSignalLike | undefined): Promise<Session> {
    const s = this.pick(st);
    if (s !== undefined) return Promise.resolve(s);
    if (signal?.aborted === true) return Promise.reject(new UpstreamError('LR', `request to ${st.authority} aborted`, { retriable: false }));
    // a session being opened will take the requests that wait for it
    const coming = st.connecting * this.maxStreams;
    if (st.waiters.length >= coming && (this.totalSessions < this.maxConnections || st.sessions.length + st.connecting === 0)) this.connect(st);
    if (this.totalPending >= this.maxPending) {
      this.stats.rqPendingOverflow++;
      return Promise.reject(new UpstreamError('UO', `upstream ${st.authority}: every HTTP/2 stream slot busy and ${this.totalPending} requests pending`, { retriable: false }));
    }
    return new Promise<Session>((resolve, reject) => {
      const w: Waiter = { resolve, reject, done: false };
      st.waiters.push(w);
      this.totalPending++;
      let timer: NodeJS.Timeout | null = null;
      const onAbort = (): void => {
        drop();
        settle(w, new UpstreamError('LR', `request to ${st.authority} aborted while waiting for a stream`, { retriable: false }));
      };
      const drop = (): void => {
        const i = st.waiters.indexOf(w);
        if (i >= 0) {
          st.waiters.splice(i, 1);
          this.totalPending--;
        }
        if (timer !== null) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      if (deadline > 0) {
        timer = setTimeout(() => {
          drop();
          settle(w, new UpstreamError('UT', `no HTTP/2 stream to ${st.authority} available in time`, { retriable: true }));
        }, Math.max(1, deadline - Date.now()));
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      w.resolve = (sess) => { drop(); resolve(sess); };
      w.reject = (e) => { drop(); reject(e); };
    });
  }

  private connect(st: EndpointState): void {
    st.connecting++;
    this.totalSessions++;
    const ep = st.ep;
    const local = ep.localAddress ?? this.localAddress;
    const bind = local !== undefined && net.isIP(local) === net.isIP(ep.host) ? { localAddress: local } : {};
    const set = this.settings;
    const h2 = http2.connect(`http://${st.authority}`, {
      createConnection: () => (ep.secure !== undefined ? this.secureConnection(ep, 'localAddress' in bind ? bind.localAddress : undefined) : net.connect({ host: ep.host, port: ep.port, noDelay: true, ...bind })),
      settings: { initialWindowSize: set.streamWindow, enablePush: false, maxHeaderListSize: set.maxHeaderListSize },
      maxSessionMemory: set.maxSessionMemoryMb,
      peerMaxConcurrentStreams: this.maxStreams,
    });
    const session: Session = { h2, ep: st, active: 0, started: 0, closing: false, lastStreamId: Number.MAX_SAFE_INTEGER, idleTimer: null, exchanges: new Set() };
    let ready = false;
    const timer = setTimeout(() => h2.destroy(new UpstreamError('UF', `connect to ${st.authority} timed out after ${this.connectTimeoutMs} ms`, { code: 'ETIMEDOUT' })), this.connectTimeoutMs);
    h2.once('connect', () => {
      ready = true;
      clearTimeout(timer);
      st.connecting--;
      this.stats.cxTotal++;
      try {
        h2.setLocalWindowSize(set.connectionWindow);
      } catch { /* closing already */ }
      st.sessions.push(session);
      if (this.closed) h2.destroy();
      this.serveWaiters(st);
      if (session.active === 0) this.armIdle(session);
    });
    // a peer's SETTINGS may raise the stream limit: waiters can go now
    h2.on('remoteSettings', () => { if (ready) this.serveWaiters(st); });
    h2.on('goaway', (_code: number, lastStreamId: number) => {
      // a peer may send more than one (a graceful shutdown's last one repeats the bound)
      if (session.lastStreamId === Number.MAX_SAFE_INTEGER) this.stats.goawayReceived++;
      session.closing = true;
      if (lastStreamId < session.lastStreamId) session.lastStreamId = lastStreamId;
    });
    h2.on('error', (err: Error & { code?: string }) => {
      if (ready) return;
      clearTimeout(timer);
      this.stats.cxConnectFail++;
      const e = err instanceof UpstreamError ? err : new UpstreamError('UF', `connect to ${st.authority} failed: ${err.code ?? err.message}`, { retriable: true, code: err.code });
      // The requests waiting fail with it unless a session can still take them. Not "unless another
      // connect is coming": two attempts failing in turn would each wait for the other, forever.
      if (!st.sessions.some(usable)) for (const w of st.waiters.splice(0)) { this.totalPending--; settle(w, e); }
    });
    h2.once('close', () => {
      clearTimeout(timer);
      if (session.idleTimer !== null) clearTimeout(session.idleTimer);
      session.closing = true;
      // after the streams' own close events (same tick or later): whatever is still open ends now
      setImmediate(() => { for (const gone of [...session.exchanges]) gone(); });
      this.totalSessions--;
      if (!ready) st.connecting--;
      const i = st.sessions.indexOf(session);
      if (i >= 0) st.sessions.splice(i, 1);
      if (st.sessions.length === 0 && st.connecting === 0 && st.waiters.length === 0) this.endpoints.delete(st.key);
      // requests still waiting get one new session (not one per closed session)
      else if (st.waiters.length > 0 && !this.closed && st.connecting === 0) this.connect(st);
    });
  }

  // mesh mTLS (the cluster's transport socket): a TLS socket with ALPN h2, peer checked
  private secureConnection(ep: UpstreamEndpoint, localAddress: string | undefined): net.Socket {
    const connectH2 = ep.secure?.connectH2;
    if (connectH2 !== undefined) return connectH2.call(ep.secure, ep, localAddress);
    const s = new net.Socket();
    process.nextTick(() => s.destroy(new UpstreamError('UF', `HTTP/2 over TLS to ${ep.host}:${ep.port} is not available (${ep.secure?.key ?? ''})`, { retriable: false })));
    return s;
  }

  private serveWaiters(st: EndpointState): void {
    while (st.waiters.length > 0) {
      const s = this.pick(st);
      if (s === undefined) return;
      const w = st.waiters[0]!;
      settle(w, null, s);
    }
  }

  private armIdle(s: Session): void {
    if (s.idleTimer !== null) clearTimeout(s.idleTimer);
    s.idleTimer = setTimeout(() => {
      s.idleTimer = null;
      if (s.active === 0) this.retire(s);
    }, this.idleTimeoutMs);
    s.idleTimer.unref();
  }

  // No new streams; the session closes once those in flight end.
  private retire(s: Session): void {
    s.closing = true;
    if (!s.h2.closed && !s.h2.destroyed) s.h2.close();
  }

  // A stream ended: its slot serves a waiting request, or the session idles.
  private release(s: Session): void {
    s.active--;
    if (s.closing) {
      if (s.active === 0) this.retire(s);
      this.serveWaiters(s.ep);
      return;
    }
    if (s.ep.waiters.length > 0) this.serveWaiters(s.ep);
    else if (s.active === 0) this.armIdle(s);
  }

  private exchange(s: Session, head: RequestHead, body: ReplayableBody, deadline: number, signal: AbortSignalLike | undefined): Promise<UpstreamResponse> {
    const authority = s.ep.authority;
    return new Promise<UpstreamResponse>((resolve, reject) => {
      const known = body.knownLength;
      let stream: http2.ClientHttp2Stream;
      try {
        stream = s.h2.request(h2RequestHeaders(head, authority), { endStream: known === 0, waitForTrailers: known !== 0 });
      } catch (e) {
        // GOAWAY'd or out of stream ids: the peer never saw it
        s.closing = true;
        this.release(s);
        reject(new Unprocessed(`upstream ${authority}: ${(e as Error).message}`));
        return;
      }
      let settled = false;
      let released = false;
      let resBody: BodyStream | null = null;
      let trailers: RawHeader[] | null = null;
      let paused = false;
      let timer: NodeJS.Timeout | null = null;
      const finish = (): void => {
        if (timer !== null) clearTimeout(timer);
        timer = null;
        s.exchanges.delete(sessionGone);
        signal?.removeEventListener('abort', onAbort);
        if (!released) {
          released = true;
          this.release(s);
        }
      };
      const fail = (err: Error): void => {
        if (!settled) {
          settled = true;
          finish();
          reject(err);
        } else if (resBody !== null && !resBody.finished) resBody.fail(err);
      };
      const onAbort = (): void => {
        fail(new UpstreamError('LR', `request to ${authority} aborted`, { retriable: false, requestSent: true, responseStarted: settled }));
        if (!stream.destroyed) stream.close(H2_CANCEL);
      };
      if (deadline > 0) {
        timer = setTimeout(() => {
          if (settled) return;
          fail(new UpstreamError('UT', `no response from ${authority} in time`, { retriable: true, requestSent: true }));
          if (!stream.destroyed) stream.close(H2_CANCEL);
        }, Math.max(1, deadline - Date.now()));
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      const source: BodySource = {
        resume: () => {
          if (paused) {
            paused = false;
            stream.resume();
          }
        },
        // the reader left before the end: the rest is unwanted
        abandon: () => { if (!stream.destroyed) stream.close(H2_CANCEL); },
      };
      stream.on('response', (_h, flags: number, raw: string[]) => {
        if (settled) return;
        settled = true;
        if (timer !== null) clearTimeout(timer);
        timer = null;
        const rh = responseHeadFromH2(raw);
        if ((flags & NGHTTP2_FLAG_END_STREAM) !== 0) {
          resolve({ head: rh, body: emptyBody(), bodyLength: 0 });
          return;
        }
        resBody = new BodyStream(source, this.settings.bodyHighWaterMark);
        resolve({ head: rh, body: resBody, bodyLength: 'chunked' });
      });
      stream.on('data', (b: Buffer) => {
        if (resBody === null) return;
        if (!resBody.push(b) && !paused) {
          paused = true;
          stream.pause();
        }
      });
      stream.on('trailers', (_t: unknown, _f: number, raw: string[]) => { trailers = rawToHeaders(raw); });
      stream.on('end', () => { resBody?.end(trailers); });
      stream.on('error', () => { /* 'close' reports it */ });
      stream.on('close', () => closed(stream.rstCode ?? 0, stream.id ?? 0));
      // the session closed and this stream said nothing: as if it closed with the session
      const sessionGone = (): void => {
        if (!stream.destroyed) stream.destroy();
        closed(stream.rstCode ?? 0, stream.id ?? 0);
      };
      s.exchanges.add(sessionGone);
      let ended = false;
      const closed = (code: number, id: number): void => {
        if (ended) return;
        ended = true;
        finish();
        if (!settled) {
          settled = true;
          // never processed: refused, above GOAWAY's last stream, or never sent at all
          if (code === H2_REFUSED_STREAM || id === 0 || id > s.lastStreamId) {
            reject(new Unprocessed(`upstream ${authority}: stream ${id} not processed (${code === H2_REFUSED_STREAM ? 'REFUSED_STREAM' : 'GOAWAY'})`));
            return;
          }
          const flag = code !== 0 ? 'UR' : 'UC';
          reject(new UpstreamError(flag, `upstream ${authority}: stream ${id} ${code !== 0 ? `reset (${h2ErrorName(code)})` : 'closed'} before the response`, { requestSent: true, code: code !== 0 ? h2ErrorName(code) : undefined }));
          return;
        }
        if (resBody !== null && !resBody.finished) {
          resBody.fail(new UpstreamError('UR', `upstream ${authority}: stream ${id} reset (${h2ErrorName(code)}) before the response completed`, { requestSent: true, responseStarted: true, code: h2ErrorName(code) }));
        }
      };
      if (known !== 0) {
        stream.once('wantTrailers', () => {
          try {
            stream.sendTrailers(h2Trailers(body.trailers));
          } catch { /* the stream is gone */ }
        });
        writeBody(stream, body).catch((e: unknown) => {
          fail(e instanceof Error ? e : new Error(String(e)));
          if (!stream.destroyed) stream.close(H2_CANCEL);
        });
      }
    });
  }
}

// Writes the request body with backpressure, then ends the stream (trailers follow).
async function writeBody(stream: http2.ClientHttp2Stream, body: ReplayableBody): Promise<void> {
  const cursor = body.cursor();
  for (;;) {
    let b = cursor.tryRead();
    if (b === undefined) {
      const r = await cursor.next();
      b = r.done === true ? null : r.value;
    }
    if (b === null) break;
    if (stream.destroyed) return;
    if (b.length === 0) continue;
    if (!stream.write(b)) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          stream.removeListener('drain', done);
          stream.removeListener('close', done);
          resolve();
        };
        stream.on('drain', done);
        stream.on('close', done);
      });
    }
  }
  if (!stream.destroyed) stream.end();
}

const H2_ERRORS = ['NO_ERROR', 'PROTOCOL_ERROR', 'INTERNAL_ERROR', 'FLOW_CONTROL_ERROR', 'SETTINGS_TIMEOUT', 'STREAM_CLOSED', 'FRAME_SIZE_ERROR', 'REFUSED_STREAM', 'CANCEL', 'COMPRESSION_ERROR', 'CONNECT_ERROR', 'ENHANCE_YOUR_CALM', 'INADEQUATE_SECURITY', 'HTTP_1_1_REQUIRED'];

function h2ErrorName(code: number): string {
  return H2_ERRORS[code] ?? `0x${code.toString(16)}`;
}

/** A session that may still take a stream. */
function usable(s: Session): boolean {
  return !s.closing && !s.h2.closed && !s.h2.destroyed;
}

function keyOf(ep: UpstreamEndpoint): string {
  return ep.key ?? endpointKey(ep.host, ep.port, ep.localAddress);
}

function settle(w: Waiter, err: Error | null, s?: Session): void {
  if (w.done) return;
  w.done = true;
  if (err !== null) w.reject(err);
  else w.resolve(s!);
}
