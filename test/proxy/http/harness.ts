// The codec and the pool composed as the router composes them (downstream request →
// upstream pool → downstream response), in front of an upstream that records every byte
// it receives and reads requests with its own strict framing, independent of the codec.
import type net from 'node:net';
import { after } from 'node:test';
import { http1Limits, serveHttp1, type DownstreamRequest, type Http1Limits } from '../../../src/proxy/http/index.ts';
import { UpstreamError, UpstreamPool, type UpstreamPoolOptions } from '../../../src/proxy/upstream/index.ts';
import { rawServer } from './wire.ts';

/** One request as the recording upstream framed it. */
export interface RecordedRequest {
  /** The head, up to and including its empty line. */
  head: string;
  /** The body bytes as received, framing (chunk lines, trailers) included. */
  body: string;
  /** Index of the upstream connection (in accept order) it came on. */
  connection: number;
}

/** What the recording upstream saw on one connection. */
export interface RecordedConnection {
  raw: string;
  closed: boolean;
}

export interface RecordingUpstream {
  port: number;
  /** Complete requests, in arrival order. */
  requests: RecordedRequest[];
  connections: RecordedConnection[];
  /** Every byte received since the last reset(), all connections, in arrival order. */
  raw(): string;
  /** Forgets what was recorded (connections stay open). */
  reset(): void;
}

/**
 * Splits `raw` into complete requests, each framed by one Content-Length or by a chunked
 * body (chunk lines, data, last chunk, trailers until the empty line); CRLF line endings
 * only. `rest` is what does not form a complete request; `ambiguous` is set when a head
 * carries two framings or differing lengths (no request may reach an app like that).
 */
export function splitRequests(raw: string): { requests: Array<{ head: string; body: string }>; rest: string; ambiguous: boolean } {
  const requests: Array<{ head: string; body: string }> = [];
  let pos = 0;
  let ambiguous = false;
  for (;;) {
    const i = raw.indexOf('\r\n\r\n', pos);
    if (i < 0) break;
    const head = raw.slice(pos, i + 4);
    const lines = head.split('\r\n');
    const cl = lines.filter((l) => /^content-length:/i.test(l)).map((l) => l.slice(15).trim());
    const te = lines.filter((l) => /^transfer-encoding:/i.test(l));
    if ((cl.length > 0 && te.length > 0) || new Set(cl).size > 1) ambiguous = true;
    let end: number;
    if (te.length > 0) {
      end = chunkedEnd(raw, i + 4);
    } else {
      const n = cl.length > 0 ? Number(cl[0]) : 0;
      end = raw.length >= i + 4 + n ? i + 4 + n : -1;
    }
    if (end < 0) break;
    requests.push({ head, body: raw.slice(i + 4, end) });
    pos = end;
  }
  return { requests, rest: raw.slice(pos), ambiguous };
}

// Index just past a chunked body starting at `p`, or -1 when incomplete or malformed.
function chunkedEnd(raw: string, p: number): number {
  for (;;) {
    const eol = raw.indexOf('\r\n', p);
    if (eol < 0) return -1;
    const size = /^([0-9a-fA-F]+)(;[^\r\n]*)?$/.exec(raw.slice(p, eol));
    if (size === null) return -1;
    const n = parseInt(size[1]!, 16);
    p = eol + 2;
    if (n === 0) {
      // trailer lines until the empty line
      for (;;) {
        const e = raw.indexOf('\r\n', p);
        if (e < 0) return -1;
        if (e === p) return p + 2;
        p = e + 2;
      }
    }
    if (raw.length < p + n + 2) return -1;
    if (raw.slice(p + n, p + n + 2) !== '\r\n') return -1;
    p += n + 2;
  }
}

/** An upstream that records raw bytes and answers each complete request `200 ok` (or `respond`'s bytes). */
export async function recordingUpstream(respond?: (r: RecordedRequest) => string): Promise<RecordingUpstream> {
  const requests: RecordedRequest[] = [];
  const connections: RecordedConnection[] = [];
  let log = '';
  const srv = await rawServer((s: net.Socket) => {
    const index = connections.length;
    const conn: RecordedConnection = { raw: '', closed: false };
    connections.push(conn);
    let pending = '';
    s.on('data', (d: Buffer) => {
      const text = d.toString('latin1');
      conn.raw += text;
      log += text;
      pending += text;
      const { requests: done, rest } = splitRequests(pending);
      pending = rest;
      for (const r of done) {
        const rec = { ...r, connection: index };
        requests.push(rec);
        s.write(Buffer.from(respond?.(rec) ?? 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok', 'latin1'));
      }
    });
    s.on('close', () => (conn.closed = true));
  });
  return {
    port: srv.port,
    requests,
    connections,
    raw: () => log,
    reset: () => {
      log = '';
      requests.length = 0;
    },
  };
}

export interface CodecRelay {
  port: number;
  pool: UpstreamPool;
}

/** The sidecar's codec and pool as a bare relay to one upstream; an upstream failure is answered 503 with its flag as the body. */
export async function codecRelay(upstreamPort: number, limits: Partial<Http1Limits> = {}, poolOpts: UpstreamPoolOptions = {}): Promise<CodecRelay> {
  const pool = new UpstreamPool(poolOpts);
  const l = http1Limits(limits);
  const handle = async (req: DownstreamRequest): Promise<void> => {
    try {
      const r = await pool.request({ host: '127.0.0.1', port: upstreamPort }, req.head, req.bodyLength === 0 ? null : req.body, { signal: req.signal });
      await req.respond(r.head, r.body);
    } catch (e) {
      if (!req.responded) {
        const flag = e instanceof UpstreamError ? e.flag : 'other';
        await req.respond({ status: 503, reason: 'Service Unavailable', version: '1.1', headers: [] }, Buffer.from(flag)).catch(() => {});
      }
    }
  };
  after(() => pool.close());
  const proxy = await rawServer((s) => serveHttp1(s, l, (req) => void handle(req)));
  return { port: proxy.port, pool };
}

/** The response the codec writes itself for a refused request. */
export function localResponse(status: number, reason: string, message: string): string {
  return `HTTP/1.1 ${status} ${reason}\r\nContent-Length: ${message.length + 1}\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n${message}\n`;
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
