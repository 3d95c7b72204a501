// The downstream side of HTTP/1.x: reads requests off an accepted socket one at a time
// (pipelined requests wait their turn), hands each to the listener's handler and writes
// its response with framing that matches the client's version and keep-alive.
import type net from 'node:net';
import { RequestAbort, type AbortSignalLike } from './abort.ts';
import { BodyStream, emptyBody, type BodySource } from './body.ts';
import { DeadlineTimer } from './deadline-timer.ts';
import { assertSendable, contentLengthOf, reasonPhrase, type RawHeader, type RequestHead, type ResponseHead } from './headers.ts';
import type { Http1Limits } from './limits.ts';
import { checkRequestLine, ChunkedDecoder, findBareCr, findHeadEnd, HttpParseError, parseRequestHead, type MessageFraming } from './parser.ts';
import {
  FRAMING_CHUNKED,
  FRAMING_CLOSE,
  FRAMING_KEEP,
  FRAMING_NONE,
  responseHeadString,
  serializeLastChunk,
  WriteBatch,
  writeChunk,
  type BodyFraming,
} from './serialize.ts';

/** The downstream connection ended before the exchange completed (Envoy's `DC`). */
export class DownstreamClosedError extends Error {
  readonly flag = 'DC';
  override readonly name = 'DownstreamClosedError';
}

export interface RespondOptions {
  /** Close the downstream connection after this response (e.g. while draining). */
  close?: boolean;
}

/** One request read from a downstream connection. */
export interface DownstreamRequest {
  head: RequestHead;
  /** De-framed body bytes, read once. Chunked trailers land on `body.trailers` at its end. */
  body: BodyStream;
  /**
   * Content-Length, 0 when the request has no body, or 'chunked' for a body of unknown
   * length (chunked, an HTTP/2 stream without content-length, an upgraded connection's bytes).
   */
  bodyLength: number | 'chunked' | 0;
  /** 'HTTP/2' for a request read from an HTTP/2 stream; absent for HTTP/1.x (see head.version). */
  readonly protocol?: 'HTTP/2';
  /**
   * The protocol an HTTP/1.1 Upgrade request asks for (lower-cased, e.g. `websocket`): its
   * body is then every byte the client sends after the head, and a 101 answer turns the
   * connection into a tunnel.
   */
  readonly upgrade?: string | undefined;
  /** The trailers sent after the response body, once written (HTTP/2). */
  readonly responseTrailers?: readonly RawHeader[] | null;
  remoteAddress: string;
  remotePort: number;
  localAddress: string;
  localPort: number;
  /**
   * The caller's SPIFFE identity (`spiffe://cluster.local/ns/NS/sa/SA`) when the request came
   * over mesh mTLS, checked on every connection (src/proxy/tls); undefined for plaintext.
   * Set by the listener before any filter runs (Envoy's `source.principal`).
   */
  peerPrincipal?: string | undefined;
  /** process.hrtime.bigint() when the first byte of the request arrived. */
  receivedAt: bigint;
  /** Aborted when the downstream connection closes before the response completed. */
  readonly signal: AbortSignalLike;
  /**
   * Writes the response, framed for this client: Content-Length for a Buffer body, the
   * head's Content-Length or else chunked (close-delimited for HTTP/1.0) for a stream;
   * no body for HEAD, 204, 304. Resolves when every byte is handed to the socket.
   */
  respond(head: ResponseHead, body?: Buffer | AsyncIterable<Buffer> | null, opts?: RespondOptions): Promise<void>;
  /** True once respond() was called. */
  readonly responded: boolean;
  /** True once every byte of the response is handed to the socket; respond()'s promise is then fulfilled. */
  readonly complete: boolean;
  /** Request body bytes received (de-framed), as Envoy's %BYTES_RECEIVED%. */
  bytesReceived(): number;
  /** Response body bytes sent (de-framed), as Envoy's %BYTES_SENT%. */
  bytesSent(): number;
}

const ST_HEAD = 0;
const ST_BODY = 1;
const ST_WAIT = 2;
const ST_CLOSED = 3;

const hrtime = process.hrtime.bigint;
// How long a closing connection may take to flush its last response, and then to see
// the client's FIN, before it is destroyed.
const CLOSE_BACKSTOP_MS = 30_000;
const CLOSE_LINGER_MS = 1000;
const CONTINUE_100 = Buffer.from('HTTP/1.1 100 Continue\r\n\r\n', 'latin1');
/** The HTTP/2 client connection preface (RFC 9113 §3.4): a connection that starts with it is HTTP/2. */
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** A response the codec writes itself (parse errors, timeouts). */
function localResponse(status: number, message: string): Buffer {
  const body = message + '\n';
  return Buffer.from(
    `HTTP/1.1 ${status} ${reasonPhrase(status)}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
      `Content-Type: text/plain\r\nConnection: close\r\n\r\n${body}`,
    'latin1',
  );
}

class Request implements DownstreamRequest, BodySource {
  head: RequestHead;
  body: BodyStream;
  bodyLength: number | 'chunked' | 0;
  remoteAddress: string;
  remotePort: number;
  localAddress: string;
  localPort: number;
  receivedAt: bigint;
  responded = false;
  /** Response fully written. */
  complete = false;
  received = 0;
  sent = 0;
  /** Body bytes still expected (Content-Length bodies). */
  remaining: number;
  decoder: ChunkedDecoder | null;
  keepAlive: boolean;
  expectContinue: boolean;
  upgrade: string | undefined;
  private abortSignal: RequestAbort | null = null;
  private readonly conn: ServerConnection;

  constructor(conn: ServerConnection, head: RequestHead, framing: MessageFraming, receivedAt: bigint) {
    this.conn = conn;
    this.head = head;
    const s = conn.socket;
    this.remoteAddress = s.remoteAddress ?? '';
    this.remotePort = s.remotePort ?? 0;
    this.localAddress = s.localAddress ?? '';
    this.localPort = s.localPort ?? 0;
    this.receivedAt = receivedAt;
    this.keepAlive = head.version === '1.1' ? !framing.connectionClose : framing.connectionKeepAlive && !framing.connectionClose;
    this.expectContinue = framing.expectContinue && head.version === '1.1';
    this.upgrade = undefined;
    if (framing.upgrade !== '' && framing.connectionUpgrade && head.version === '1.1' && !framing.transferEncoding && framing.contentLength <= 0) {
      // Every byte after the head belongs to the upgraded protocol: the body never ends
      // on its own, and the connection serves no other request.
      this.upgrade = framing.upgrade;
      this.keepAlive = false;
      this.bodyLength = 'chunked';
      this.remaining = Infinity;
      this.decoder = null;
      this.body = new BodyStream(this, conn.limits.bodyHighWaterMark);
      conn.tunnel = true;
      // a client's FIN ends only its direction: the other keeps flowing until the upstream ends
      conn.socket.allowHalfOpen = true;
    } else if (framing.chunked) {
      this.bodyLength = 'chunked';
      this.remaining = -1;
      this.decoder = new ChunkedDecoder(conn.limits.maxHeaderBytes, conn.limits.maxHeaders, 400);
      this.body = new BodyStream(this, conn.limits.bodyHighWaterMark);
    } else if (framing.contentLength > 0) {
      this.bodyLength = framing.contentLength;
      this.remaining = framing.contentLength;
      this.decoder = null;
      this.body = new BodyStream(this, conn.limits.bodyHighWaterMark);
    } else {
      this.bodyLength = 0;
      this.remaining = 0;
      this.decoder = null;
      this.body = emptyBody();
    }
  }

  get signal(): AbortSignalLike {
    if (this.abortSignal === null) {
      this.abortSignal = new RequestAbort();
      if (this.conn.state === ST_CLOSED && !this.complete) this.abortSignal.abort(new DownstreamClosedError('downstream connection closed'));
    }
    return this.abortSignal;
  }

  abort(err: Error): void {
    this.body.fail(err);
    this.abortSignal?.abort(err);
  }

  // BodySource
  resume(): void {
    this.conn.resumeBody();
  }
  abandon(): void {
    // the rest of the body is read and dropped (or the connection closed) by the connection
  }
  firstRead(): void {
    if (this.expectContinue && !this.responded && this.conn.state !== ST_CLOSED) {
      this.expectContinue = false;
      this.conn.socket.write(CONTINUE_100);
    }
  }

  respond(head: ResponseHead, body?: Buffer | AsyncIterable<Buffer> | null, opts?: RespondOptions): Promise<void> {
    if (this.responded) return Promise.reject(new Error('respond() called twice for one request'));
    try {
      assertSendable(head.headers, head.reason, 'reason phrase');
    } catch (e) {
      return Promise.reject(e as Error); // nothing sent: the caller can still answer
    }
    this.responded = true;
    try {
      return this.conn.writeResponse(this, head, body ?? null, opts?.close === true);
    } catch (e) {
      return Promise.reject(e as Error);
    }
  }

  bytesReceived(): number {
    return this.received;
  }
  bytesSent(): number {
    return this.sent;
  }
}

/** A downstream HTTP/1 connection being served. */
export class ServerConnection {
  readonly socket: net.Socket;
  readonly limits: Http1Limits;
  private readonly onRequest: (req: DownstreamRequest) => void;
  state = ST_HEAD;
  private buf: Buffer | null = null;
  private scanFrom = 0;
  private headStarted = false;
  /** The request line of the head being read was checked (its line ending arrived). */
  private lineChecked = false;
  private headStartedAt = 0n;
  private current: Request | null = null;
  /**
   * A chunked request whose head is complete but not handed out yet: its first chunk-size
   * line began in the bytes that came with the head and has not ended (see parseHead).
   */
  private held: Request | null = null;
  private served = 0;
  private readonly idleTimer = new DeadlineTimer(() => this.onIdleTimer());
  private readonly headersTimer = new DeadlineTimer(() => this.onHeadersTimer());
  private readonly bodyTimer = new DeadlineTimer(() => this.onBodyTimer());
  private paused = false;
  private draining = false;
  private drainBudget = -1;
  private writeWaiters: Array<() => void> = [];
  private awaitingDrain = false;
  /** The request being served switched protocols (Upgrade): its body is the tunnel's bytes, with no idle deadline. */
  tunnel = false;
  /**
   * Who takes the connection if it starts with the HTTP/2 preface (codec AUTO); null once
   * the first bytes showed HTTP/1, or when HTTP/2 is not served here.
   */
  private onPreface: ((socket: net.Socket) => void) | null;
  private readonly listeners: { data: (b: Buffer) => void; end: () => void; close: () => void; drain: () => void };

  constructor(socket: net.Socket, limits: Http1Limits, onRequest: (req: DownstreamRequest) => void, onHttp2Preface?: (socket: net.Socket) => void) {
    this.socket = socket;
    this.limits = limits;
    this.onRequest = onRequest;
    this.onPreface = onHttp2Preface ?? null;
    socket.setNoDelay(true);
    this.listeners = {
      data: (chunk: Buffer) => this.onData(chunk),
      end: () => this.onEnd(),
      close: () => this.onClose(),
      drain: () => this.onDrain(),
    };
    socket.on('data', this.listeners.data);
    socket.on('end', this.listeners.end);
    socket.on('error', this.listeners.close);
    socket.on('close', this.listeners.close);
    socket.on('drain', this.listeners.drain);
    this.armIdle();
  }

  // The first bytes of the connection, while they may still be the HTTP/2 preface. True
  // when they were taken (handed to HTTP/2, or kept until more arrive). One byte decides
  // for almost every HTTP/1 request: only methods starting with 'P' compare further.
  private sniffPreface(chunk: Buffer): boolean {
    const buf = this.buf === null ? chunk : Buffer.concat([this.buf, chunk]);
    if (buf[0] !== 0x50 /* P */) {
      this.onPreface = null;
      return false;
    }
    const n = Math.min(buf.length, H2_PREFACE.length);
    if (buf.compare(H2_PREFACE, 0, n, 0, n) !== 0) {
      this.onPreface = null;
      return false;
    }
    if (n < H2_PREFACE.length) {
      this.buf = buf; // a preface begun: wait for the rest (the head timeout still runs)
      if (!this.headStarted) {
        this.headStarted = true;
        this.headStartedAt = hrtime();
        this.armHeaders();
      }
      return true;
    }
    // HTTP/2: the socket, with the bytes read so far put back, goes to the HTTP/2 codec
    const take = this.onPreface!;
    this.onPreface = null;
    this.state = ST_CLOSED;
    this.buf = null;
    this.clearTimers();
    const s = this.socket;
    s.removeListener('data', this.listeners.data);
    s.removeListener('end', this.listeners.end);
    s.removeListener('error', this.listeners.close);
    s.removeListener('close', this.listeners.close);
    s.removeListener('drain', this.listeners.drain);
    s.pause();
    s.unshift(buf);
    take(s);
    return true;
  }

  /** Requests fully answered on this connection. */
  get requestsServed(): number {
    return this.served;
  }

  /** Stops keep-alive: the connection closes after the response in flight, or now if idle. */
  drain(): void {
    this.draining = true;
    if (this.current === null && this.state === ST_HEAD && !this.headStarted) this.closeNow();
  }

  // Two deadlines moved with every request rather than timers re-created or re-linked:
  // keep-alive idle and head read.
  private armIdle(): void {
    this.headersTimer.disarm();
    const ms = this.limits.idleTimeoutMs;
    if (ms <= 0 || this.state === ST_CLOSED) return;
    this.idleTimer.arm(ms);
  }

  private armHeaders(): void {
    this.idleTimer.disarm();
    const ms = this.limits.headersTimeoutMs;
    if (ms <= 0 || this.state === ST_CLOSED) return;
    this.headersTimer.arm(ms);
  }

  private disarm(): void {
    this.idleTimer.disarm();
    this.headersTimer.disarm();
  }

  // The request body deadline: moved by every read while the body is incomplete, off while
  // reading is paused for backpressure (then the silence is the reader's, not the client's).
  private armBody(): void {
    const ms = this.limits.bodyIdleTimeoutMs;
    if (ms > 0 && !this.tunnel) this.bodyTimer.arm(ms);
  }

  private clearTimers(): void {
    this.idleTimer.stop();
    this.headersTimer.stop();
    this.bodyTimer.stop();
  }

  private onIdleTimer(): void {
    if (this.state !== ST_HEAD || this.current !== null || this.headStarted) return;
    this.closeNow();
  }

  private onHeadersTimer(): void {
    if (this.held === null && (this.state !== ST_HEAD || this.current !== null)) return;
    this.fail(new HttpParseError(408, 'request headers not received in time'));
  }

  private onBodyTimer(): void {
    if (this.state !== ST_BODY || this.current === null || this.paused) return;
    this.fail(new HttpParseError(408, 'request body not received in time'));
  }

  private onData(chunk: Buffer): void {
    if (this.state === ST_CLOSED) return;
    if (this.onPreface !== null) {
      if (this.sniffPreface(chunk)) return;
      if (this.buf !== null) {
        // a partial preface that turned out to be HTTP/1 (e.g. "PRI" then "ORITY ..."): read as one
        chunk = Buffer.concat([this.buf, chunk]);
        this.buf = null;
        this.headStarted = false;
      }
    }
    if (this.state === ST_BODY && this.buf === null) {
      this.armBody();
      this.feedBody(chunk, 0);
      return;
    }
    this.buf = this.buf === null ? chunk : Buffer.concat([this.buf, chunk]);
    this.process();
  }

  private process(): void {
    while (this.buf !== null && this.state !== ST_CLOSED) {
      if (this.state === ST_HEAD) {
        if (!this.parseHead()) return;
      } else if (this.state === ST_BODY) {
        const b = this.buf;
        this.buf = null;
        this.feedBody(b, 0);
      } else {
        // ST_WAIT: pipelined bytes wait for the response in flight, within a bound
        if (this.buf.length > this.limits.maxHeaderBytes && !this.paused) {
          this.paused = true;
          this.socket.pause();
        }
        return;
      }
    }
  }

  // Returns false when more bytes are needed.
  private parseHead(): boolean {
    const buf = this.buf!;
    let off = 0;
    if (!this.headStarted) {
      // RFC 9112 §2.2: ignore empty lines before a request line
      while (off < buf.length && (buf[off] === 10 || (buf[off] === 13 && buf[off + 1] === 10))) off += buf[off] === 10 ? 1 : 2;
      if (off >= buf.length || (off === buf.length - 1 && buf[off] === 13)) {
        this.buf = off >= buf.length ? null : buf.subarray(off);
        return false;
      }
      this.headStarted = true;
      this.headStartedAt = hrtime();
      this.scanFrom = off;
      this.armHeaders();
    }
    let end = findHeadEnd(buf, off, this.scanFrom);
    if (end < 0) {
      if (buf.length - off > this.limits.maxHeaderBytes) {
        this.fail(new HttpParseError(431, `request head larger than ${this.limits.maxHeaderBytes} bytes`));
        return false;
      }
      // a line ended by a bare CR, or a request line that is not HTTP/1: no empty line
      // may ever end this head, so it is refused now rather than at the head timeout
      if (findBareCr(buf, Math.max(off, this.scanFrom), buf.length) >= 0) {
        this.fail(new HttpParseError(400, 'bare CR in request head'));
        return false;
      }
      if (!this.lineChecked) {
        try {
          this.lineChecked = checkRequestLine(buf, off, buf.length);
        } catch (e) {
          this.fail(e instanceof HttpParseError ? e : new HttpParseError(400, String(e)));
          return false;
        }
      }
      this.buf = off === 0 ? buf : buf.subarray(off);
      this.scanFrom = Math.max(0, this.buf.length - 3);
      return false;
    }
    // `end` is an upper bound: the parser finds the first empty line, within the limit
    const max = this.limits.maxHeaderBytes;
    const truncated = end - off > max;
    let parsed;
    try {
      parsed = parseRequestHead(buf, off, truncated ? off + max : end, this.limits.maxHeaders);
    } catch (e) {
      if (truncated && e instanceof HttpParseError && e.status === 400) {
        this.fail(new HttpParseError(431, `request head larger than ${max} bytes`));
      } else this.fail(e instanceof HttpParseError ? e : new HttpParseError(400, String(e)));
      return false;
    }
    end = parsed.end;
    this.headStarted = false;
    this.lineChecked = false;
    this.scanFrom = 0;
    const req = new Request(this, parsed.head, parsed.framing, this.headStartedAt);
    this.current = req;
    this.buf = end < buf.length ? buf.subarray(end) : null;
    if (req.bodyLength === 0) {
      this.state = ST_WAIT;
      return this.handOut(req);
    }
    this.state = ST_BODY;
    this.armBody();
    if (this.buf === null) return this.handOut(req);
    // The body bytes that came with the head are read before the head is handed out: they
    // leave with it in one write, and a chunked body's errors among them (a bad first
    // chunk size, a bare LF, an overlong extension) are refused before anything reaches
    // the application. A first chunk-size line begun but not ended is waited for (bounded
    // by the chunk line limit and the head timeout).
    this.held = req;
    const b = this.buf;
    this.buf = null;
    this.feedBody(b, 0);
    return this.held === null && this.state !== ST_CLOSED;
  }

  // Gives a request to the handler; false when the connection failed with it.
  private handOut(req: Request): boolean {
    this.held = null;
    this.disarm();
    try {
      this.onRequest(req);
    } catch (e) {
      if (!req.responded) {
        this.fail(new HttpParseError(500, 'request handler failed: ' + (e instanceof Error ? e.message : String(e))));
        return false;
      }
    }
    return this.state !== ST_CLOSED;
  }

  private feedBody(buf: Buffer, off: number): void {
    const req = this.current!;
    const body = req.body;
    let end: number;
    let done: boolean;
    if (req.decoder !== null) {
      try {
        end = req.decoder.feed(buf, off, (b) => this.deliver(req, b));
      } catch (e) {
        const err = e instanceof HttpParseError ? e : new HttpParseError(400, String(e));
        req.abort(err);
        this.fail(err);
        return;
      }
      done = req.decoder.done;
    } else {
      const n = Math.min(req.remaining, buf.length - off);
      this.deliver(req, off === 0 && n === buf.length ? buf : buf.subarray(off, off + n));
      req.remaining -= n;
      end = off + n;
      done = req.remaining === 0;
    }
    if (this.state === ST_CLOSED) return;
    if (this.held === req) {
      // the first chunk-size line is complete (or data flowed): the head may go now
      if (!done && req.received === 0 && req.decoder !== null && req.decoder.inSizeLine) {
        if (end < buf.length) this.buf = buf.subarray(end);
        return;
      }
      if (!this.handOut(req)) return;
    }
    if (done) {
      this.bodyTimer.disarm();
      body.end(req.decoder?.trailers ?? null);
      this.state = ST_WAIT;
      this.buf = end < buf.length ? buf.subarray(end) : null;
      if (this.paused) {
        this.paused = false;
        this.socket.resume();
      }
      if (req.complete) this.finishExchange(req);
      else this.process();
    } else if (end < buf.length) {
      this.buf = buf.subarray(end);
    }
  }

  private deliver(req: Request, b: Buffer): void {
    if (b.length === 0) return;
    req.received += b.length;
    if (req.complete || req.body.isAbandoned) {
      // the response is done (or the reader left): the rest is read and dropped, within a bound
      if (this.drainBudget >= 0) {
        this.drainBudget -= b.length;
        if (this.drainBudget < 0) this.closeNow();
      }
      return;
    }
    if (!req.body.push(b) && !this.paused) {
      this.paused = true;
      this.socket.pause();
    }
  }

  resumeBody(): void {
    if (this.paused && this.state === ST_BODY) {
      this.paused = false;
      this.armBody();
      this.socket.resume();
    }
  }

  private onEnd(): void {
    // A tunnel's client half-closed: that is the end of the bytes going up, not of the exchange.
    if (this.tunnel && this.state === ST_BODY && this.current !== null) {
      this.bodyTimer.disarm();
      this.state = ST_WAIT;
      this.current.body.end();
      return;
    }
    // The client half-closed. Answer the request already read when the socket allows
    // half-open (HTTP/1.0 clients that shut down their side); otherwise it is over.
    if (this.state === ST_WAIT && this.current !== null && this.socket.allowHalfOpen && !this.current.complete) {
      this.draining = true;
      return;
    }
    this.onClose();
  }

  private onClose(): void {
    if (this.state === ST_CLOSED) return;
    this.state = ST_CLOSED;
    this.clearTimers();
    this.buf = null;
    const req = this.current;
    if (req !== null && !req.complete) req.abort(new DownstreamClosedError('downstream connection closed'));
    this.wakeWriters();
    if (!this.socket.destroyed) this.socket.destroy();
  }

  private closeNow(): void {
    if (this.state === ST_CLOSED) return;
    this.state = ST_CLOSED;
    this.clearTimers();
    this.buf = null;
    const req = this.current;
    if (req !== null && !req.complete) req.abort(new DownstreamClosedError('downstream connection closed'));
    this.wakeWriters();
    const s = this.socket;
    // FIN goes out right after the last byte (no delayed close, M11). Once everything is
    // flushed, the client gets a moment to close its side; one that never reads at all
    // loses the socket after a bound.
    s.end();
    let linger = setTimeout(() => s.destroy(), CLOSE_BACKSTOP_MS);
    linger.unref();
    s.once('finish', () => {
      clearTimeout(linger);
      linger = setTimeout(() => s.destroy(), CLOSE_LINGER_MS);
      linger.unref();
    });
    s.once('close', () => clearTimeout(linger));
  }

  // A protocol error: answer it when no response started, then close.
  private fail(err: HttpParseError): void {
    if (this.state === ST_CLOSED) return;
    const req = this.current;
    if (req === null || !req.responded) this.socket.write(localResponse(err.status, err.message));
    if (req !== null && !req.complete) req.abort(err);
    this.closeNow();
  }

  private onDrain(): void {
    this.wakeWriters();
    if (this.awaitingDrain && this.state !== ST_CLOSED) {
      this.awaitingDrain = false;
      this.nextRequest();
    }
  }

  private wakeWriters(): void {
    const w = this.writeWaiters;
    if (w.length === 0) return;
    this.writeWaiters = [];
    for (const f of w) f();
  }

  private waitDrain(): Promise<void> {
    return new Promise((resolve) => this.writeWaiters.push(resolve));
  }

  /**
   * Writes a response. Whatever can be written now is written before this returns; the
   * result is settled already unless the body still streams (most responses: one write,
   * no promise of their own). Throws for an unsendable response before writing anything.
   */
  writeResponse(req: Request, head: ResponseHead, body: Buffer | AsyncIterable<Buffer> | null, close: boolean): Promise<void> {
    if (this.state === ST_CLOSED) throw new DownstreamClosedError('downstream connection closed');
    const status = head.status;
    if (status === 101 && req.upgrade !== undefined && body !== null && !Buffer.isBuffer(body)) return this.switchProtocols(req, head, body);
    if (!Number.isInteger(status) || status < 200 || status > 999) throw new RangeError(`respond(): invalid final status ${status}`);
    const version = req.head.version;
    const noBody = req.head.method === 'HEAD' || status === 204 || status === 304;
    let framing: BodyFraming;
    let declared = -1;
    if (noBody) framing = status === 204 ? FRAMING_NONE : FRAMING_KEEP;
    else if (body === null) framing = { kind: 'length', length: 0 };
    else if (Buffer.isBuffer(body)) framing = { kind: 'length', length: body.length };
    else {
      declared = contentLengthOf(head.headers);
      if (declared >= 0) framing = { kind: 'length', length: declared };
      else framing = version === '1.1' ? FRAMING_CHUNKED : FRAMING_CLOSE;
    }
    const max = this.limits.maxRequestsPerConnection;
    let keepAlive =
      req.keepAlive &&
      !close &&
      !this.draining &&
      framing.kind !== 'close' &&
      !(max > 0 && this.served + 1 >= max);
    if (keepAlive && !req.body.finished) {
      // the request body is still arriving: keep the connection only if the rest is small
      if (req.remaining > this.limits.maxDrainBytes) keepAlive = false;
      // a client still waiting for "100 Continue" may or may not send its body now: the
      // next bytes are ambiguous, so this connection ends with this response
      if (req.expectContinue) keepAlive = false;
    }
    const connection = version === '1.1' ? (keepAlive ? '' : 'close') : keepAlive ? 'keep-alive' : '';
    if (!keepAlive) req.keepAlive = false;
    const batch = new WriteBatch();
    batch.head = responseHeadString(version, status, head.reason, head.headers, framing, connection);
    const s = this.socket;
    if (framing.kind === 'keep' || framing.kind === 'none') {
      batch.flush(s);
      if (body instanceof BodyStream) body.abandon();
      else if (body !== null && !Buffer.isBuffer(body)) return discard(body).then(() => this.responseWritten(req));
    } else if (body === null) {
      batch.flush(s);
    } else if (Buffer.isBuffer(body)) {
      if (body.length > 0) batch.add(body);
      batch.flush(s);
      req.sent = body.length;
    } else {
      const rest = this.writeStreamedBody(req, s, batch, body, framing.kind === 'chunked', declared);
      if (rest !== null) return rest.then(() => this.responseWritten(req));
    }
    this.responseWritten(req);
    return RESOLVED;
  }

  /**
   * 101 Switching Protocols: the head goes as the upstream sent it (its Connection and
   * Upgrade lines are the new protocol's, not this hop's), then every byte of the upgraded
   * protocol until the upstream ends it; then the connection closes.
   */
  private switchProtocols(req: Request, head: ResponseHead, body: AsyncIterable<Buffer>): Promise<void> {
    assertSendable(head.headers, head.reason, 'reason phrase');
    let text = 'HTTP/1.1 101 ' + head.reason + '\r\n';
    for (const h of head.headers) text += h.name + ': ' + h.value + '\r\n';
    const batch = new WriteBatch();
    batch.head = text + '\r\n';
    const rest = this.writeStreamedBody(req, this.socket, batch, body, false, -1);
    if (rest !== null) return rest.then(() => this.responseWritten(req));
    this.responseWritten(req);
    return RESOLVED;
  }

  // Every byte of `req`'s response is handed to the socket: keep-alive or close.
  private responseWritten(req: Request): void {
    req.complete = true;
    if (this.state === ST_CLOSED) return;
    this.served++;
    if (!req.keepAlive) {
      this.current = null;
      this.closeNow();
      return;
    }
    if (req.body.finished) this.finishExchange(req);
    else {
      // read and drop the unread rest of the request body, then serve the next request
      req.body.abandon();
      this.drainBudget = this.limits.maxDrainBytes;
      if (this.paused) {
        this.paused = false;
        if (this.state === ST_BODY) this.armBody();
        this.socket.resume();
      }
    }
  }

  // Head and body of unknown or declared length from a stream. The head and the bytes
  // already queued go out in one write; when that was the whole body (a response that
  // arrived in one read) the result is null, else the promise of the rest, which streams
  // as it comes, with backpressure.
  private writeStreamedBody(
    req: Request,
    s: net.Socket,
    batch: WriteBatch,
    body: AsyncIterable<Buffer>,
    chunked: boolean,
    declared: number,
  ): Promise<void> | null {
    const w: StreamedWrite = { req, s, chunked, declared, sent: 0 };
    const stream = body instanceof BodyStream ? body : null;
    try {
      let ended = false;
      if (stream !== null) ended = batch.addQueued(stream, chunked, (b) => countSent(w, b));
      if (ended) {
        if (chunked) batch.add(serializeLastChunk(stream!.trailers));
        batch.flush(s);
        checkDeclared(w);
        return null;
      }
      batch.flush(s);
      return this.streamRest(w, stream ?? body[Symbol.asyncIterator](), stream);
    } catch (e) {
      this.streamFailed(w);
      throw e;
    }
  }

  private async streamRest(w: StreamedWrite, it: AsyncIterator<Buffer>, stream: BodyStream | null): Promise<void> {
    const s = w.s;
    try {
      for (;;) {
        const r = await it.next();
        if (r.done === true) break;
        if (this.state === ST_CLOSED) throw new DownstreamClosedError('downstream connection closed');
        const b = r.value;
        if (b.length === 0) continue;
        // Asked now, not remembered from the last write(): the socket may have drained while
        // the next chunk was awaited, and its one 'drain' event then went by unheard.
        if (s.writableNeedDrain) {
          await this.waitDrain();
          if (this.state === ST_CLOSED) throw new DownstreamClosedError('downstream connection closed');
        }
        countSent(w, b);
        if (w.chunked) writeChunk(s, b);
        else s.write(b);
      }
      checkDeclared(w);
      if (w.chunked) s.write(serializeLastChunk(stream !== null ? stream.trailers : null));
    } catch (e) {
      this.streamFailed(w);
      throw e;
    }
  }

  // The response cannot be completed: the client must see a reset, not a short body.
  private streamFailed(w: StreamedWrite): void {
    w.req.keepAlive = false;
    if (!w.s.destroyed) w.s.destroy();
    this.onClose();
  }

  // The response is written and the request fully read: on to the next request.
  private finishExchange(req: Request): void {
    if (this.current !== req || this.state === ST_CLOSED) return;
    this.current = null;
    this.drainBudget = -1;
    if (!req.keepAlive || this.draining) {
      this.closeNow();
      return;
    }
    if (this.socket.writableNeedDrain) {
      // the client is not reading: serve no further pipelined request until it does
      this.state = ST_WAIT;
      this.awaitingDrain = true;
      return;
    }
    this.nextRequest();
  }

  private nextRequest(): void {
    this.state = ST_HEAD;
    if (this.paused) {
      this.paused = false;
      this.socket.resume();
    }
    this.armIdle();
    if (this.buf !== null) this.process();
  }
}

/** A streamed response body being written: what is counted against its declared length. */
interface StreamedWrite {
  req: Request;
  s: net.Socket;
  chunked: boolean;
  /** Content-Length from the head, -1 when none. */
  declared: number;
  sent: number;
}

function countSent(w: StreamedWrite, b: Buffer): void {
  if (w.declared >= 0 && w.sent + b.length > w.declared) {
    throw new Error(`response body longer than its Content-Length ${w.declared}`);
  }
  w.sent += b.length;
  w.req.sent = w.sent;
}

function checkDeclared(w: StreamedWrite): void {
  if (w.declared >= 0 && w.sent !== w.declared) {
    throw new Error(`response body of ${w.sent} bytes is shorter than its Content-Length ${w.declared}`);
  }
}

const RESOLVED: Promise<void> = Promise.resolve();

async function discard(body: AsyncIterable<Buffer>): Promise<void> {
  for await (const _ of body) {
    // drained so its producer can finish
  }
}

/**
 * Serves HTTP/1.0 and 1.1 on an accepted socket: keep-alive, pipelining in order,
 * 400/431/505 for malformed or ambiguous requests, 408 when a head is too slow. With
 * `onHttp2Preface`, a connection that opens with the HTTP/2 preface is handed to it
 * (the socket paused, the bytes read put back): Envoy's codec_type AUTO.
 */
export function serveHttp1(socket: net.Socket, limits: Http1Limits, onRequest: (req: DownstreamRequest) => void, onHttp2Preface?: (socket: net.Socket) => void): ServerConnection {
  return new ServerConnection(socket, limits, onRequest, onHttp2Preface);
}
