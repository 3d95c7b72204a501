// The downstream side of HTTP/2 (h2c with prior knowledge): one Node Http2Session per
// connection, each stream handed to the listener's handler as the same DownstreamRequest
// the HTTP/1 codec gives, so routing, retries, metrics and logs are one code path. Request
// bodies flow with backpressure (a paused stream stops returning window to the peer);
// responses relay trailers, and a response that is only headers ends the stream with them
// (gRPC's trailers-only form).
import http2 from 'node:http2';
import type net from 'node:net';
import { BodyStream, DownstreamClosedError, emptyBody, RequestAbort } from '../http/index.ts';
import type { AbortSignalLike, DownstreamRequest, RawHeader, RequestHead, RespondOptions, ResponseHead } from '../http/index.ts';
import type { BodySource } from '../http/body.ts';
import { h2ResponseHeaders, h2Trailers, rawToHeaders, requestHeadFromH2 } from './headers.ts';
import { DEFAULT_HTTP2_SETTINGS, H2_CANCEL, H2_INTERNAL_ERROR } from './settings.ts';
import type { Http2Settings } from './settings.ts';

const { NGHTTP2_FLAG_END_STREAM } = http2.constants;
const hrtime = process.hrtime.bigint;
const RESOLVED: Promise<void> = Promise.resolve();
// Node adds a Date header to responses unless told not to (`sendDate`, missing from its
// types): a proxy relays the upstream's.
const END_STREAM = { endStream: true, sendDate: false } as http2.ServerStreamResponseOptions;
const WITH_BODY = { sendDate: false } as http2.ServerStreamResponseOptions;
const WITH_TRAILERS = { waitForTrailers: true, sendDate: false } as http2.ServerStreamResponseOptions;

export interface Http2ServeOptions {
  settings?: Partial<Http2Settings>;
  /** A connection with no open stream for this long is closed (GOAWAY). 0: never. */
  idleTimeoutMs?: number;
}

/** One request stream of a downstream HTTP/2 connection. */
class Http2Request implements DownstreamRequest, BodySource {
  readonly protocol = 'HTTP/2' as const;
  head: RequestHead;
  body: BodyStream;
  bodyLength: number | 'chunked' | 0;
  remoteAddress: string;
  remotePort: number;
  localAddress: string;
  localPort: number;
  receivedAt: bigint;
  responded = false;
  complete = false;
  responseTrailers: RawHeader[] | null = null;
  private received = 0;
  private sent = 0;
  private closed = false;
  private paused = false;
  private abortSignal: RequestAbort | null = null;
  private readonly stream: http2.ServerHttp2Stream;

  constructor(stream: http2.ServerHttp2Stream, socket: net.Socket, raw: string[], flags: number, highWaterMark: number) {
    this.stream = stream;
    this.receivedAt = hrtime();
    this.head = requestHeadFromH2(raw);
    this.remoteAddress = socket.remoteAddress ?? '';
    this.remotePort = socket.remotePort ?? 0;
    this.localAddress = socket.localAddress ?? '';
    this.localPort = socket.localPort ?? 0;
    if ((flags & NGHTTP2_FLAG_END_STREAM) !== 0) {
      this.bodyLength = 0;
      this.body = emptyBody();
    } else {
      const cl = contentLength(this.head.headers);
      this.bodyLength = cl > 0 ? cl : 'chunked';
      this.body = new BodyStream(this, highWaterMark);
      let trailers: RawHeader[] | null = null;
      stream.on('data', (b: Buffer) => {
        this.received += b.length;
        if (!this.body.push(b) && !this.paused) {
          this.paused = true;
          stream.pause();
        }
      });
      stream.on('trailers', (_t: unknown, _f: number, rawTrailers: string[]) => { trailers = rawToHeaders(rawTrailers); });
      stream.on('end', () => this.body.end(trailers));
    }
    stream.on('error', () => { /* reported through 'close' */ });
    stream.on('close', () => this.onClose());
  }

  get signal(): AbortSignalLike {
    if (this.abortSignal === null) {
      this.abortSignal = new RequestAbort();
      if (this.closed && !this.complete) this.abortSignal.abort(new DownstreamClosedError('downstream stream closed'));
    }
    return this.abortSignal;
  }

  // The stream closed: whatever was not finished by then never will be.
  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    if (!this.body.finished) this.body.fail(new DownstreamClosedError('downstream stream reset before the request body ended'));
    if (!this.complete) this.abortSignal?.abort(new DownstreamClosedError('downstream stream closed'));
  }

  // BodySource
  resume(): void {
    if (this.paused) {
      this.paused = false;
      this.stream.resume();
    }
  }
  abandon(): void {
    // the router no longer wants the body: let it be consumed so the window keeps opening
    this.resume();
  }

  respond(head: ResponseHead, body?: Buffer | AsyncIterable<Buffer> | null, _opts?: RespondOptions): Promise<void> {
    if (this.responded) return Promise.reject(new Error('respond() called twice for one request'));
    const stream = this.stream;
    if (this.closed || stream.destroyed) return Promise.reject(new DownstreamClosedError('downstream stream closed'));
    if (!Number.isInteger(head.status) || head.status < 200 || head.status > 999) {
      return Promise.reject(new RangeError(`respond(): invalid final status ${head.status} on HTTP/2`));
    }
    this.responded = true;
    const headers = h2ResponseHeaders(head);
    const noBody = this.head.method === 'HEAD' || head.status === 204 || head.status === 304;
    try {
      if (body === null || body === undefined || Buffer.isBuffer(body) || noBody) {
        const b = Buffer.isBuffer(body) && !noBody ? body : null;
        if (body instanceof BodyStream) body.abandon();
        if (b === null || b.length === 0) stream.respond(headers, END_STREAM);
        else {
          stream.respond(headers, WITH_BODY);
          this.sent = b.length;
          stream.end(b);
        }
        this.complete = true;
        return RESOLVED;
      }
      // A body that ended with nothing in it and no trailers: the headers end the stream
      // (an upstream's trailers-only gRPC reply stays trailers-only).
      if (body instanceof BodyStream && body.isEmptyAndEnded && body.trailers === null) {
        stream.respond(headers, END_STREAM);
        this.complete = true;
        return RESOLVED;
      }
      stream.respond(headers, WITH_TRAILERS);
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
    return this.stream_(body);
  }

  // Streams a body with backpressure, then its trailers (or an empty DATA frame ending the stream).
  private async stream_(body: AsyncIterable<Buffer>): Promise<void> {
    const stream = this.stream;
    const bs = body instanceof BodyStream ? body : null;
    try {
      const it = body[Symbol.asyncIterator]();
      for (;;) {
        let b: Buffer | null | undefined = bs !== null ? bs.tryRead() : undefined;
        if (b === undefined) {
          const r = await it.next();
          b = r.done === true ? null : r.value;
        }
        if (b === null) break;
        if (this.closed) throw new DownstreamClosedError('downstream stream closed');
        if (b.length === 0) continue;
        this.sent += b.length;
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
      if (this.closed) throw new DownstreamClosedError('downstream stream closed');
      const trailers = bs?.trailers ?? null;
      this.responseTrailers = trailers;
      stream.once('wantTrailers', () => {
        try {
          stream.sendTrailers(h2Trailers(trailers));
        } catch {
          stream.close(H2_INTERNAL_ERROR);
        }
      });
      stream.end();
      this.complete = true;
    } catch (e) {
      // The response cannot be completed: the client must see a reset, not a short stream.
      if (!stream.destroyed) stream.close(e instanceof DownstreamClosedError ? H2_CANCEL : H2_INTERNAL_ERROR);
      throw e;
    }
  }

  bytesReceived(): number {
    return this.received;
  }
  bytesSent(): number {
    return this.sent;
  }
}

function contentLength(headers: readonly RawHeader[]): number {
  for (const h of headers) {
    if (h.name === 'content-length') {
      const n = Number(h.value);
      return Number.isSafeInteger(n) && n >= 0 && /^\d+$/.test(h.value) ? n : -1;
    }
  }
  return -1;
}

/** A downstream HTTP/2 connection being served. */
export class Http2ServerConnection {
  readonly session: http2.ServerHttp2Session;
  private closing = false;
  /** Streams open now: an idle connection is one with none. */
  private open = 0;

  constructor(socket: net.Socket, opts: Http2ServeOptions, onRequest: (req: DownstreamRequest) => void) {
    const s = { ...DEFAULT_HTTP2_SETTINGS, ...opts.settings };
    const session = http2.performServerHandshake(socket, {
      settings: { initialWindowSize: s.streamWindow, maxConcurrentStreams: s.maxConcurrentStreams, maxHeaderListSize: s.maxHeaderListSize, enablePush: false },
      maxSessionMemory: s.maxSessionMemoryMb,
      maxHeaderListPairs: 256,
    });
    this.session = session;
    try {
      session.setLocalWindowSize(s.connectionWindow);
    } catch { /* the session failed at once; 'error' says why */ }
    session.on('error', () => { /* the connection is gone; its streams report it */ });
    session.on('stream', (stream, _headers, flags, raw) => {
      this.open++;
      stream.once('close', () => this.open--);
      const req = new Http2Request(stream, socket, raw, flags, s.bodyHighWaterMark);
      try {
        onRequest(req);
      } catch {
        if (!req.responded) stream.close(H2_INTERNAL_ERROR);
      }
    });
    const idle = opts.idleTimeoutMs ?? 0;
    if (idle > 0) session.setTimeout(idle, () => { if (this.open === 0) this.drain(); });
  }

  /** Stops taking new streams (GOAWAY); the ones in flight finish, then the connection closes. */
  drain(): void {
    if (this.closing) return;
    this.closing = true;
    if (!this.session.closed && !this.session.destroyed) this.session.close();
  }
}

/** Serves HTTP/2 (prior knowledge) on an accepted socket; the client preface may already be unshifted onto it. */
export function serveHttp2(socket: net.Socket, opts: Http2ServeOptions, onRequest: (req: DownstreamRequest) => void): Http2ServerConnection {
  return new Http2ServerConnection(socket, opts, onRequest);
}
