// Upstream applications for pool tests, written on raw sockets (independent of the codec
// under test) so each test controls the exact bytes and the exact moment of a close.
import type net from 'node:net';
import { rawServer, type RawServer } from '../http/wire.ts';

export interface SeenRequest {
  /** The raw head, exactly as received. */
  head: string;
  /** The raw body bytes (framing included), as received. */
  body: string;
  /** Index of the connection (in accept order) it came on. */
  connection: number;
}

export interface AppBehaviour {
  /** Raw response bytes for a request; null to send nothing. */
  respond(req: SeenRequest, socket: net.Socket): string | null;
  /** Close the connection silently right after each response (no Connection: close). */
  closeAfterResponse?: boolean;
  /** Close a connection that stayed idle this long after its last response. */
  idleCloseMs?: number;
}

export interface App extends RawServer {
  requests: SeenRequest[];
}

// Reads requests framed by Content-Length or chunked (only what tests send).
function nextRequest(buf: string): { head: string; body: string; rest: string } | null {
  const i = buf.indexOf('\r\n\r\n');
  if (i < 0) return null;
  const head = buf.slice(0, i + 4);
  const after = buf.slice(i + 4);
  if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
    const end = after.indexOf('0\r\n\r\n');
    if (end < 0) return null;
    // good enough for tests: bodies never contain "0\r\n\r\n" before the last chunk
    return { head, body: after.slice(0, end + 5), rest: after.slice(end + 5) };
  }
  const m = /\r\ncontent-length: *(\d+)/i.exec(head);
  const len = m ? Number(m[1]) : 0;
  if (after.length < len) return null;
  return { head, body: after.slice(0, len), rest: after.slice(len) };
}

export async function app(b: AppBehaviour, host = '127.0.0.1'): Promise<App> {
  const requests: SeenRequest[] = [];
  let connections = 0;
  const srv = await rawServer((s) => {
    const conn = connections++;
    let buf = '';
    let idle: NodeJS.Timeout | null = null;
    s.on('data', (d: Buffer) => {
      if (idle !== null) clearTimeout(idle);
      buf += d.toString('latin1');
      for (;;) {
        const r = nextRequest(buf);
        if (r === null) return;
        buf = r.rest;
        const seen = { head: r.head, body: r.body, connection: conn };
        requests.push(seen);
        const out = b.respond(seen, s);
        if (out === null) return;
        s.write(Buffer.from(out, 'latin1'));
        if (b.closeAfterResponse === true) {
          s.end();
          return;
        }
        if (b.idleCloseMs !== undefined) {
          idle = setTimeout(() => s.end(), b.idleCloseMs);
        }
      }
    });
    s.on('close', () => {
      if (idle !== null) clearTimeout(idle);
    });
  }, {}, host);
  return Object.assign(srv, { requests });
}

export function ok(body: string, extra = ''): string {
  return `HTTP/1.1 200 OK\r\n${extra}Content-Length: ${Buffer.byteLength(body, 'latin1')}\r\n\r\n${body}`;
}

export async function text(body: AsyncIterable<Buffer>): Promise<string> {
  let s = '';
  for await (const b of body) s += b.toString('latin1');
  return s;
}
