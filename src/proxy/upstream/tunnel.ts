// HTTP/1.1 Upgrade (WebSocket and the like, Envoy's upgrade_configs) to an upstream: a
// connection of its own (TLS when the cluster's transport socket says so), never pooled. The request head goes with its Connection and
// Upgrade headers; a `101 Switching Protocols` answer turns the connection into a byte
// tunnel (the response body is every byte the upstream sends until it closes, the request
// body every byte the client sends); any other answer is relayed as a response, after
// which the connection closes.
import type net from 'node:net';
import type { AbortSignalLike } from '../http/abort.ts';
import { BodyStream, emptyBody, type BodySource } from '../http/body.ts';
import type { RequestHead } from '../http/headers.ts';
import { ChunkedDecoder, findHeadEnd, HttpParseError, parseResponseHead } from '../http/parser.ts';
import { authorityOf, connectTcp, type UpstreamEndpoint, type UpstreamResponse } from './connection.ts';
import { UpstreamError } from './errors.ts';
import type { ReplayableBody } from './request-body.ts';

export interface TunnelOptions {
  timeoutMs: number;
  connectTimeoutMs: number;
  signal: AbortSignalLike | undefined;
  localAddress: string | undefined;
  maxHeaderBytes: number;
  bodyHighWaterMark: number;
}

/** The head of an upgrade request as it goes upstream: every line as it came, Host added if absent. */
function upgradeHead(head: RequestHead, authority: string): string {
  let s = head.method + ' ' + head.target + ' HTTP/1.1\r\n';
  let host = false;
  for (const h of head.headers) if (h.name.length === 4 && h.name.toLowerCase() === 'host') host = true;
  if (!host) s += 'Host: ' + authority + '\r\n';
  for (const h of head.headers) s += h.name + ': ' + h.value + '\r\n';
  return s + '\r\n';
}

/**
 * Opens the connection, sends the upgrade request and resolves with the response head;
 * on 101 the body is the upstream's tunnel bytes and the request body is piped upstream.
 */
export async function openTunnel(ep: UpstreamEndpoint, head: RequestHead, body: ReplayableBody, opts: TunnelOptions): Promise<UpstreamResponse> {
  const authority = authorityOf(ep);
  const deadline = opts.timeoutMs > 0 ? Date.now() + opts.timeoutMs : 0;
  const connectMs = deadline > 0 ? Math.max(1, Math.min(opts.connectTimeoutMs, deadline - Date.now())) : opts.connectTimeoutMs;
  let opened = await connectTcp(ep, connectMs, opts.signal, opts.localAddress);
  // the cluster's transport socket (mesh mTLS): handshake and peer identity before the upgrade request
  if (ep.secure !== undefined) opened = await ep.secure.secure(opened, ep, connectMs);
  const { socket, sink } = opened;
  return new Promise<UpstreamResponse>((resolve, reject) => {
    let buf: Buffer | null = null;
    let resBody: BodyStream | null = null;
    let decoder: ChunkedDecoder | null = null;
    let remaining = -1;
    let settled = false;
    let paused = false;
    let timer: NodeJS.Timeout | null = null;
    const source: BodySource = {
      resume: () => {
        if (paused) {
          paused = false;
          socket.resume();
        }
      },
      abandon: () => socket.destroy(),
    };
    const fail = (err: Error): void => {
      if (timer !== null) clearTimeout(timer);
      if (!settled) {
        settled = true;
        reject(err);
      } else if (resBody !== null && !resBody.finished) resBody.fail(err);
      socket.destroy();
    };
    const onAbort = (): void => fail(new UpstreamError('LR', `upgrade request to ${authority} aborted`, { retriable: false, requestSent: true, responseStarted: settled }));
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    if (deadline > 0) {
      timer = setTimeout(() => { if (!settled) fail(new UpstreamError('UT', `no response from ${authority} in time`, { retriable: true, requestSent: true })); }, Math.max(1, deadline - Date.now()));
    }
    const push = (b: Buffer): void => {
      if (b.length === 0 || resBody === null) return;
      if (!resBody.push(Buffer.from(b)) && !paused) {
        paused = true;
        socket.pause();
      }
    };
    const feed = (b: Buffer): void => {
      if (decoder !== null) {
        try {
          decoder.feed(b, 0, push);
        } catch (e) {
          fail(new UpstreamError('UPE', `malformed chunked body from ${authority}: ${(e as Error).message}`, { responseStarted: true }));
          return;
        }
        if (decoder.done) {
          resBody!.end(decoder.trailers);
          socket.destroy();
        }
        return;
      }
      if (remaining >= 0) {
        const n = Math.min(remaining, b.length);
        push(b.subarray(0, n));
        remaining -= n;
        if (remaining === 0) {
          resBody!.end();
          socket.destroy();
        }
        return;
      }
      push(b);
    };
    sink.target = (chunk: Buffer): void => {
      if (settled) {
        feed(chunk);
        return;
      }
      buf = buf === null ? Buffer.from(chunk) : Buffer.concat([buf, chunk]);
      const end = findHeadEnd(buf, 0, 0);
      if (end < 0) {
        if (buf.length > opts.maxHeaderBytes) fail(new UpstreamError('UPE', `response head from ${authority} larger than ${opts.maxHeaderBytes} bytes`, { responseStarted: true }));
        return;
      }
      let parsed;
      try {
        parsed = parseResponseHead(buf, 0, end, 100);
      } catch (e) {
        fail(new UpstreamError('UPE', `malformed response from ${authority}: ${e instanceof HttpParseError ? e.message : String(e)}`, { responseStarted: true }));
        return;
      }
      const rest = parsed.end < buf.length ? buf.subarray(parsed.end) : null;
      buf = null;
      const { head: rh, framing } = parsed;
      if (rh.status < 200 && rh.status !== 101) return; // 1xx before the answer: skipped
      settled = true;
      if (timer !== null) clearTimeout(timer);
      if (rh.status === 101) {
        resBody = new BodyStream(source, opts.bodyHighWaterMark);
        resolve({ head: rh, body: resBody, bodyLength: 'close' });
        void pipeUp(socket, body);
      } else if (head.method === 'HEAD' || rh.status === 204 || rh.status === 304 || (framing.contentLength === 0 && !framing.chunked)) {
        resolve({ head: rh, body: emptyBody(), bodyLength: 0 });
        socket.destroy();
        return;
      } else {
        resBody = new BodyStream(source, opts.bodyHighWaterMark);
        if (framing.chunked) decoder = new ChunkedDecoder(opts.maxHeaderBytes, 100, 502);
        else if (framing.contentLength > 0) remaining = framing.contentLength;
        resolve({ head: rh, body: resBody, bodyLength: framing.chunked ? 'chunked' : remaining > 0 ? remaining : 'close' });
      }
      if (rest !== null) feed(rest);
    };
    socket.on('end', () => {
      if (!settled) fail(new UpstreamError('UC', `upstream ${authority}: connection closed before the response`, { requestSent: true }));
      else if (resBody !== null && !resBody.finished) resBody.end();
      socket.end();
    });
    socket.on('error', (e: NodeJS.ErrnoException) => fail(new UpstreamError(e.code === 'ECONNRESET' ? 'UR' : 'UC', `upstream ${authority}: connection ${e.code ?? e.message}`, { requestSent: true, responseStarted: settled, code: e.code })));
    socket.on('close', () => {
      opts.signal?.removeEventListener('abort', onAbort);
      if (!settled) fail(new UpstreamError('UC', `upstream ${authority}: connection closed before the response`, { requestSent: true }));
      else if (resBody !== null && !resBody.finished) resBody.end();
    });
    socket.write(upgradeHead(head, authority), 'latin1');
  });
}

// The client's bytes after the upgrade, to the upstream, with backpressure; the client's
// end of stream half-closes the upstream.
async function pipeUp(socket: net.Socket, body: ReplayableBody): Promise<void> {
  const cursor = body.cursor();
  try {
    for (;;) {
      const r = await cursor.next();
      if (r.done === true) break;
      if (socket.destroyed) return;
      if (!socket.write(r.value)) {
        await new Promise<void>((resolve) => {
          const done = (): void => {
            socket.removeListener('drain', done);
            socket.removeListener('close', done);
            resolve();
          };
          socket.on('drain', done);
          socket.on('close', done);
        });
      }
    }
    if (!socket.destroyed) socket.end();
  } catch {
    socket.destroy();
  }
}
