// One keep-alive HTTP/1.1 connection to an upstream host: writes a request, parses the
// response (1xx skipped, chunked/length/close-delimited bodies) and says whether the
// connection may carry another request and for how long.
import net from 'node:net';
import type { AbortSignalLike } from '../http/abort.ts';
import { DeadlineTimer } from '../http/deadline-timer.ts';
import { BodyStream, emptyBody, type BodySource } from '../http/body.ts';
import { contentLengthOf, type RawHeader, type RequestHead, type ResponseHead } from '../http/headers.ts';
import { ChunkedDecoder, findBareCr, findHeadEnd, HttpParseError, parseResponseHead, type MessageFraming } from '../http/parser.ts';
import {
  FRAMING_CHUNKED,
  FRAMING_NONE,
  requestHeadString,
  serializeLastChunk,
  WriteBatch,
  writeChunk,
  type BodyFraming,
} from '../http/serialize.ts';
import { UpstreamError } from './errors.ts';
import type { BodyCursor, ReplayableBody } from './request-body.ts';

export interface UpstreamEndpoint {
  host: string;
  port: number;
  /**
   * Source address to bind connections to (M17: the workload's own IP, or on inbound the
   * caller's); connections with different sources are pooled apart. Absent: the pool's
   * default, else the system's choice.
   */
  localAddress?: string;
  /** Its pool key, `host:port[@localAddress]`, when made once by endpointOf() and kept (else computed per request). */
  readonly key?: string;
  /** Wraps each new connection in TLS (a cluster's transport socket, src/proxy/tls); absent: plaintext. */
  readonly secure?: SecureUpstream;
}

/** Turns an opened TCP connection into a TLS one (handshake and peer checks included), or rejects with UpstreamError 'UF'. */
export interface SecureUpstream {
  /** Distinguishes pools of the same address with other TLS settings. */
  readonly key: string;
  secure(opened: OpenedSocket, ep: UpstreamEndpoint, timeoutMs: number): Promise<OpenedSocket>;
  /**
   * For HTTP/2 sessions (node:http2's `createConnection`): a TLS connection to `ep` being made
   * now, ALPN `h2`, destroyed with an UpstreamError if the handshake or the peer check fails.
   */
  connectH2?(ep: UpstreamEndpoint, localAddress: string | undefined): net.Socket;
}

/** An endpoint kept across requests (a cluster host's), its pool key computed once. */
export function endpointOf(host: string, port: number): UpstreamEndpoint {
  return { host, port, key: endpointKey(host, port, undefined) };
}

/** The key connections to an endpoint are pooled under: `host:port[@localAddress]`. */
export function endpointKey(host: string, port: number, localAddress: string | undefined): string {
  const k = host + ':' + port;
  return localAddress === undefined ? k : k + '@' + localAddress;
}

export interface UpstreamResponse {
  head: ResponseHead;
  /** De-framed body bytes, read once; chunked trailers on `body.trailers` at the end. */
  body: BodyStream;
  /** Content-Length, 'chunked', 'close' (read until the upstream closes, HTTP/1.0 style) or 0. */
  bodyLength: number | 'chunked' | 'close' | 0;
}

export interface ConnectionLimits {
  maxHeaderBytes: number;
  maxHeaders: number;
  bodyHighWaterMark: number;
}

/** The Host value for an endpoint: `host:port`, IPv6 in brackets. */
export function authorityOf(ep: UpstreamEndpoint): string {
  return (ep.host.includes(':') ? '[' + ep.host + ']' : ep.host) + ':' + ep.port;
}

// Every upstream socket reads into this one buffer (net's `onread`): no 64 KiB allocation
// per read, hence no allocator fragmentation after bursts of connections (M15). A view
// of it is valid only during the read callback: bytes kept longer are copied.
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/** True when `b` is a view of the shared read buffer (copy it to keep it). */
function isShared(b: Buffer): boolean {
  return b.buffer === READ_BUFFER.buffer;
}

/** Where a socket's reads go once its connection object exists. */
export interface ReadSink {
  target: ((chunk: Buffer) => void) | null;
  /** Bytes arrived before anyone listened (a server speaking first: not HTTP/1 as we know it). */
  early: boolean;
}

export interface OpenedSocket {
  socket: net.Socket;
  sink: ReadSink;
}

/**
 * Opens a TCP connection, bound to `localAddress` when given (the workload's own IP, so
 * the upstream sees the real source, M17); rejects with UpstreamError 'UF' on failure or
 * after `timeoutMs`.
 */
export function connectTcp(ep: UpstreamEndpoint, timeoutMs: number, signal?: AbortSignalLike, localAddress?: string): Promise<OpenedSocket> {
  return new Promise((resolve, reject) => {
    const sink: ReadSink = { target: null, early: false };
    const socket = net.connect({
      host: ep.host,
      port: ep.port,
      // bind only within the destination's address family (an IPv4 source cannot reach ::1)
      ...(localAddress !== undefined && net.isIP(localAddress) === net.isIP(ep.host) ? { localAddress } : {}),
      noDelay: true,
      onread: {
        buffer: READ_BUFFER,
        callback: (n: number, buf: Uint8Array): boolean => {
          const t = sink.target;
          if (t === null) sink.early = true;
          else t((buf as Buffer).subarray(0, n));
          return true;
        },
      },
    });
    let timer: NodeJS.Timeout | null = null;
    const onAbort = (): void => {
      cleanup();
      socket.destroy();
      reject(new UpstreamError('LR', `request to ${authorityOf(ep)} aborted while connecting`, { retriable: false }));
    };
    const cleanup = (): void => {
      if (timer !== null) clearTimeout(timer);
      socket.removeListener('error', onError);
      socket.removeListener('connect', onConnect);
      signal?.removeEventListener('abort', onAbort);
    };
    const onError = (err: NodeJS.ErrnoException): void => {
      cleanup();
      socket.destroy();
      reject(new UpstreamError('UF', `connect to ${authorityOf(ep)} failed: ${err.code ?? err.message}`, { retriable: true, code: err.code }));
    };
    const onConnect = (): void => {
      cleanup();
      resolve({ socket, sink });
    };
    if (timeoutMs > 0) {
      timer = setTimeout(() => {
        cleanup();
        socket.destroy();
        reject(new UpstreamError('UF', `connect to ${authorityOf(ep)} timed out after ${timeoutMs} ms`, { retriable: true, code: 'ETIMEDOUT' }));
      }, timeoutMs);
    }
    socket.once('error', onError);
    socket.once('connect', onConnect);
    if (signal !== undefined) {
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    }
  });
}

interface Exchange {
  isHead: boolean;
  resolve: (r: UpstreamResponse) => void;
  reject: (e: Error) => void;
  settled: boolean;
  requestBytes: number;
  requestDone: boolean;
  responseBytes: number;
  framing: MessageFraming | null;
  body: BodyStream | null;
  decoder: ChunkedDecoder | null;
  remaining: number;
  closeDelimited: boolean;
  responseDone: boolean;
  timeoutMs: number;
  /** The signal this exchange listens on (until it is detached). */
  signal: AbortSignalLike | undefined;
}

const ST_IDLE = 0;
const ST_BUSY = 1;
const ST_CLOSED = 2;

/** Callbacks from a connection to the pool that owns it. */
export interface ConnectionOwner {
  released(conn: UpstreamConnection): void;
  closed(conn: UpstreamConnection): void;
}

export class UpstreamConnection implements BodySource {
  readonly socket: net.Socket;
  readonly endpoint: UpstreamEndpoint;
  private readonly limits: ConnectionLimits;
  private readonly owner: ConnectionOwner;
  private readonly authority: string;
  private state = ST_IDLE;
  private buf: Buffer | null = null;
  private scanFrom = 0;
  private ex: Exchange | null = null;
  private paused = false;
  private reusable = true;
  private drainWaiters: Array<() => void> = [];
  /** Requests started on this connection. */
  requests = 0;
  /** Responses completed on this connection. */
  responses = 0;
  /** Idle lifetime the upstream announced (Keep-Alive: timeout=), -1 when none. */
  keepAliveHintMs = -1;
  /** Requests the upstream said it still accepts (Keep-Alive: max= of the last response), -1 when none. */
  keepAliveMax = -1;
  /** Set by the pool: when the connection went idle (ms since epoch, Date.now()). */
  idleSince = 0;
  /** Set by the pool: how long the connection may stay idle, and its timer. */
  idleTimeoutMs = 0;
  idleTimer: DeadlineTimer | null = null;
  // The response-head deadline, kept across exchanges: a request allocates no timer of its own.
  private readonly headTimer = new DeadlineTimer(() => this.onHeadTimeout());

  constructor(opened: OpenedSocket, endpoint: UpstreamEndpoint, limits: ConnectionLimits, owner: ConnectionOwner) {
    const socket = opened.socket;
    this.socket = socket;
    this.endpoint = endpoint;
    this.limits = limits;
    this.owner = owner;
    this.authority = authorityOf(endpoint);
    opened.sink.target = (b) => this.onData(b);
    socket.on('end', () => this.onEnd());
    socket.on('error', (e: NodeJS.ErrnoException) => this.onError(e));
    socket.on('close', () => this.onError(null));
    socket.on('drain', () => this.wakeWriters());
    if (opened.sink.early) this.close(); // it spoke first: not an HTTP/1 server
  }

  get closed(): boolean {
    return this.state === ST_CLOSED;
  }

  get busy(): boolean {
    return this.state === ST_BUSY;
  }

  /** Idle and still open as far as this process can tell (no FIN or error seen yet). */
  get usable(): boolean {
    const s = this.socket;
    return this.state === ST_IDLE && this.reusable && !s.destroyed && !s.readableEnded && s.writable;
  }

  close(): void {
    if (this.state === ST_CLOSED) return;
    this.socket.destroy();
    this.onError(null);
  }

  /**
   * Sends one request and resolves with the response head once it arrived. A failure
   * before any response byte rejects with UpstreamError; after it, the body stream fails.
   */
  exchange(head: RequestHead, body: ReplayableBody, timeoutMs: number, signal: AbortSignalLike | undefined): Promise<UpstreamResponse> {
    if (this.state !== ST_IDLE) {
      return Promise.reject(new UpstreamError('UC', `upstream ${this.authority}: connection closed before the request was sent`, { retriable: true }));
    }
    this.state = ST_BUSY;
    this.requests++;
    return new Promise<UpstreamResponse>((resolve, reject) => {
      const ex: Exchange = {
        isHead: head.method === 'HEAD',
        resolve,
        reject,
        settled: false,
        requestBytes: 0,
        requestDone: false,
        responseBytes: 0,
        framing: null,
        body: null,
        decoder: null,
        remaining: 0,
        closeDelimited: false,
        responseDone: false,
        timeoutMs,
        signal: undefined,
      };
      this.ex = ex;
      if (timeoutMs > 0) this.headTimer.arm(timeoutMs);
      if (signal !== undefined) {
        if (signal.aborted) {
          this.onSignalAbort();
          return;
        }
        ex.signal = signal;
        signal.addEventListener('abort', this.onSignalAbort);
      }
      try {
        this.writeRequest(ex, head, body)?.catch((e: unknown) => this.requestBodyFailed(ex, e));
      } catch (e) {
        this.requestBodyFailed(ex, e);
      }
    });
  }

  private onHeadTimeout(): void {
    const ex = this.ex;
    if (ex === null) return;
    this.abortExchange(ex, new UpstreamError('UT', `no response from ${this.authority} within ${ex.timeoutMs} ms`, { requestSent: ex.requestBytes > 0, responseStarted: ex.responseBytes > 0 }));
  }

  // The downstream's signal aborted the exchange in flight.
  private readonly onSignalAbort = (): void => {
    const ex = this.ex;
    if (ex === null) return;
    this.abortExchange(ex, new UpstreamError('LR', `request to ${this.authority} aborted`, { retriable: false, requestSent: ex.requestBytes > 0, responseStarted: ex.responseBytes > 0 }));
  };

  // The request body source failed (e.g. the downstream went away): nothing to salvage.
  private requestBodyFailed(ex: Exchange, e: unknown): void {
    if (this.ex === ex && !ex.responseDone) {
      const err = e instanceof Error ? e : new Error(String(e));
      this.abortExchange(ex, err);
    }
  }

  // Writes the request. A body given whole (or none) leaves with the head in one write and
  // the result is null; a streamed body returns the promise of its rest.
  private writeRequest(ex: Exchange, head: RequestHead, body: ReplayableBody): Promise<void> | null {
    const s = this.socket;
    let framing: BodyFraming;
    const known = body.knownLength;
    let declared = -1;
    if (known === 0) framing = hasFramingHeader(head.headers) || methodExpectsBody(head.method) ? { kind: 'length', length: 0 } : FRAMING_NONE;
    else if (known > 0) framing = { kind: 'length', length: known };
    else {
      declared = contentLengthOf(head.headers);
      framing = declared >= 0 ? { kind: 'length', length: declared } : FRAMING_CHUNKED;
    }
    const batch = new WriteBatch();
    batch.head = requestHeadString(head, framing, '', this.authority);
    const headBytes = batch.head.length;
    const cursor: BodyCursor = body.cursor();
    const chunked = framing.kind === 'chunked';
    if (known >= 0) {
      // a body given whole (or none): the head and it leave in one write
      for (;;) {
        const b = cursor.tryRead();
        if (b === null) break;
        if (b === undefined) return this.writeKnownSlowly(ex, batch, cursor, headBytes);
        batch.add(b);
      }
      ex.requestBytes += headBytes + batch.bytes;
      batch.flush(s);
      ex.requestDone = true;
      return null;
    }
    return this.writeStreamedRequest(ex, batch, cursor, body, chunked, declared, headBytes);
  }

  // Not expected for a known-length body: its bytes are not all there yet. Read it the slow
  // way, corked.
  private async writeKnownSlowly(ex: Exchange, batch: WriteBatch, cursor: BodyCursor, headBytes: number): Promise<void> {
    const s = this.socket;
    s.cork();
    batch.flush(s);
    for (;;) {
      const r = await cursor.next();
      if (r.done === true) break;
      s.write(r.value);
      ex.requestBytes += r.value.length;
    }
    s.uncork();
    ex.requestBytes += headBytes;
    ex.requestDone = true;
  }

  private async writeStreamedRequest(
    ex: Exchange, batch: WriteBatch, cursor: BodyCursor, body: ReplayableBody, chunked: boolean, declared: number, headBytes: number,
  ): Promise<void> {
    const s = this.socket;
    let sent = 0;
    const count = (b: Buffer): void => {
      if (declared >= 0 && sent + b.length > declared) {
        throw new Error(`request body longer than its Content-Length ${declared}`);
      }
      sent += b.length;
      ex.requestBytes += b.length;
    };
    // the head and the body bytes already here leave in one write
    ex.requestBytes += headBytes;
    const ended = batch.addQueued(cursor, chunked, count);
    if (ended && chunked) batch.add(serializeLastChunk(body.trailers));
    batch.flush(s);
    while (!ended) {
      const r = await cursor.next();
      if (this.ex !== ex || this.state === ST_CLOSED) return; // the exchange ended meanwhile
      if (r.done === true) break;
      const b = r.value;
      if (b.length === 0) continue;
      // Asked now, not remembered from the last write(): the socket may have drained while
      // the next chunk was awaited, and its one 'drain' event then went by unheard.
      if (s.writableNeedDrain) {
        await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
        if (this.ex !== ex || this.state === ST_CLOSED) return;
      }
      count(b);
      if (chunked) writeChunk(s, b);
      else s.write(b);
    }
    if (declared >= 0 && sent !== declared) {
      throw new Error(`request body of ${sent} bytes is shorter than its Content-Length ${declared}`);
    }
    if (chunked && !ended) s.write(serializeLastChunk(body.trailers));
    ex.requestDone = true;
    if (ex.responseDone) this.finish(ex);
  }

  private wakeWriters(): void {
    const w = this.drainWaiters;
    if (w.length === 0) return;
    this.drainWaiters = [];
    for (const f of w) f();
  }

  private onData(chunk: Buffer): void {
    const ex = this.ex;
    if (ex === null || this.state !== ST_BUSY) {
      // bytes on an idle connection (e.g. a 408 before the server closes): not reusable
      this.close();
      return;
    }
    ex.responseBytes += chunk.length;
    if (ex.body !== null && this.buf === null) {
      this.feedBody(ex, chunk, 0);
      return;
    }
    this.buf = this.buf === null ? chunk : Buffer.concat([this.buf, chunk]);
    this.processHead(ex);
  }

  private processHead(ex: Exchange): void {
    while (this.buf !== null && this.ex === ex && ex.body === null) {
      const buf = this.buf;
      let end = findHeadEnd(buf, 0, this.scanFrom);
      if (end < 0) {
        if (buf.length > this.limits.maxHeaderBytes) {
          this.protocolError(ex, `response head from ${this.authority} larger than ${this.limits.maxHeaderBytes} bytes`);
        } else if (findBareCr(buf, this.scanFrom, buf.length) >= 0) {
          // a bare CR line ending: no empty line will ever end this head
          this.protocolError(ex, `malformed response from ${this.authority}: bare CR in response head`);
        } else {
          this.scanFrom = Math.max(0, buf.length - 3);
          if (isShared(buf)) this.buf = Buffer.from(buf);
        }
        return;
      }
      const max = this.limits.maxHeaderBytes;
      let parsed;
      try {
        parsed = parseResponseHead(buf, 0, Math.min(end, max), this.limits.maxHeaders);
      } catch (e) {
        const tooLarge = end > max ? ` (or larger than ${max} bytes)` : '';
        this.protocolError(ex, `malformed response from ${this.authority}${tooLarge}: ${e instanceof HttpParseError ? e.message : String(e)}`);
        return;
      }
      end = parsed.end;
      this.scanFrom = 0;
      this.buf = end < buf.length ? buf.subarray(end) : null;
      const { head, framing } = parsed;
      if (head.status < 200) {
        if (head.status === 101) {
          this.protocolError(ex, `unexpected 101 Switching Protocols from ${this.authority}`);
          return;
        }
        continue; // 100 Continue, 102, 103: informational, the final response follows
      }
      this.headTimer.disarm();
      ex.framing = framing;
      if (framing.keepAliveTimeoutMs >= 0) this.keepAliveHintMs = framing.keepAliveTimeoutMs;
      if (framing.keepAliveMax >= 0) this.keepAliveMax = framing.keepAliveMax;
      const keep = head.version === '1.1' ? !framing.connectionClose : framing.connectionKeepAlive && !framing.connectionClose;
      if (!keep || framing.mustClose) this.reusable = false;
      let bodyLength: UpstreamResponse['bodyLength'];
      if (ex.isHead || head.status === 204 || head.status === 304) {
        bodyLength = 0;
        ex.body = emptyBody();
      } else if (framing.chunked) {
        bodyLength = 'chunked';
        ex.decoder = new ChunkedDecoder(this.limits.maxHeaderBytes, this.limits.maxHeaders, 502);
        ex.body = new BodyStream(this, this.limits.bodyHighWaterMark);
      } else if (framing.contentLength >= 0 && !framing.transferEncoding) {
        bodyLength = framing.contentLength;
        ex.remaining = framing.contentLength;
        ex.body = framing.contentLength === 0 ? emptyBody() : new BodyStream(this, this.limits.bodyHighWaterMark);
      } else {
        bodyLength = 'close';
        ex.closeDelimited = true;
        this.reusable = false;
        ex.body = new BodyStream(this, this.limits.bodyHighWaterMark);
      }
      ex.settled = true;
      ex.resolve({ head, body: ex.body, bodyLength });
      if (bodyLength === 0) {
        this.responseComplete(ex);
        return;
      }
      if (this.buf !== null) {
        const b = this.buf;
        this.buf = null;
        this.feedBody(ex, b, 0);
      }
      return;
    }
  }

  private feedBody(ex: Exchange, buf: Buffer, off: number): void {
    const body = ex.body!;
    if (ex.decoder !== null) {
      let end: number;
      try {
        end = ex.decoder.feed(buf, off, (b) => this.deliver(body, b));
      } catch (e) {
        this.protocolError(ex, `malformed chunked body from ${this.authority}: ${e instanceof Error ? e.message : String(e)}`);
        return;
      }
      if (ex.decoder.done) {
        if (end < buf.length) this.reusable = false; // bytes after the response: never trust this connection again
        body.end(ex.decoder.trailers);
        this.responseComplete(ex);
      }
      return;
    }
    if (ex.closeDelimited) {
      this.deliver(body, off === 0 ? buf : buf.subarray(off));
      return;
    }
    const n = Math.min(ex.remaining, buf.length - off);
    this.deliver(body, off === 0 && n === buf.length ? buf : buf.subarray(off, off + n));
    ex.remaining -= n;
    if (ex.remaining === 0) {
      if (off + n < buf.length) this.reusable = false;
      body.end();
      this.responseComplete(ex);
    }
  }

  private deliver(body: BodyStream, b: Buffer): void {
    if (b.length === 0) return;
    if (!body.push(isShared(b) ? Buffer.from(b) : b) && !this.paused) {
      this.paused = true;
      this.socket.pause();
    }
  }

  // BodySource
  resume(): void {
    if (this.paused) {
      this.paused = false;
      this.socket.resume();
    }
  }
  abandon(): void {
    // the reader left before the end: the rest is unread on the wire, so the connection goes
    this.reusable = false;
    this.close();
  }

  private responseComplete(ex: Exchange): void {
    ex.responseDone = true;
    this.responses++;
    if (this.paused) this.resume();
    if (ex.requestDone) this.finish(ex);
    else {
      // the upstream answered before taking the whole request: the framing is unfinished
      this.reusable = false;
      this.finish(ex);
    }
  }

  private finish(ex: Exchange): void {
    if (this.ex !== ex) return;
    this.detach(ex);
    this.ex = null;
    this.buf = null;
    if (this.state === ST_CLOSED) return;
    // Keep-Alive: max=N is what the upstream still accepts after this response (RFC 2068 §19.7.1.1)
    if (!this.reusable || this.keepAliveMax === 0) {
      this.close();
      return;
    }
    this.state = ST_IDLE;
    this.owner.released(this);
  }

  private detach(ex: Exchange): void {
    this.headTimer.disarm();
    if (ex.signal !== undefined) {
      ex.signal.removeEventListener('abort', this.onSignalAbort);
      ex.signal = undefined;
    }
  }

  private protocolError(ex: Exchange, message: string): void {
    this.abortExchange(ex, new UpstreamError('UPE', message, { retriable: false, requestSent: true, responseStarted: true }));
  }

  // Ends the exchange with `err`: the response promise rejects, or the body stream fails.
  private abortExchange(ex: Exchange, err: Error): void {
    if (this.ex !== ex) return;
    this.detach(ex);
    this.ex = null;
    if (!ex.settled) {
      ex.settled = true;
      ex.reject(err);
    } else if (ex.body !== null && !ex.responseDone) ex.body.fail(err);
    this.close();
  }

  private onEnd(): void {
    const ex = this.ex;
    if (ex !== null && ex.closeDelimited && ex.body !== null) {
      // HTTP/1.0 style: the close is the end of the body; relay it at once (M11)
      ex.body.end();
      ex.responseDone = true;
      this.responses++;
      this.detach(ex);
      this.ex = null;
    }
    this.close();
  }

  private onError(err: NodeJS.ErrnoException | null): void {
    if (this.state === ST_CLOSED) return;
    this.state = ST_CLOSED;
    const ex = this.ex;
    if (ex !== null) {
      this.ex = null;
      this.detach(ex);
      const reset = err !== null && (err.code === 'ECONNRESET' || err.code === 'EPIPE');
      const flag = reset ? 'UR' : 'UC';
      const what = err === null ? 'connection closed' : `connection ${err.code ?? err.message}`;
      const e = new UpstreamError(flag, `upstream ${this.authority}: ${what} before the response completed`, {
        requestSent: ex.requestBytes > 0,
        responseStarted: ex.responseBytes > 0,
        code: err?.code,
        reusedConnection: this.requests > 1,
      });
      if (!ex.settled) {
        ex.settled = true;
        ex.reject(e);
      } else if (ex.body !== null && !ex.responseDone) ex.body.fail(e);
    }
    this.buf = null;
    this.idleTimer?.stop();
    this.headTimer.stop();
    this.wakeWriters();
    if (!this.socket.destroyed) this.socket.destroy();
    this.owner.closed(this);
  }
}

function hasFramingHeader(headers: readonly RawHeader[]): boolean {
  for (let i = 0; i < headers.length; i++) {
    const n = headers[i]!.name;
    if (n.length === 14 && n.toLowerCase() === 'content-length') return true;
    if (n.length === 17 && n.toLowerCase() === 'transfer-encoding') return true;
  }
  return false;
}

function methodExpectsBody(method: string): boolean {
  return method === 'POST' || method === 'PUT' || method === 'PATCH';
}
