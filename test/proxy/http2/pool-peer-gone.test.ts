// The upstream HTTP/2 pool when the peer goes away at the instant a request is sent: every
// request must end (sent again on a new session, or failed with a flag), none may wait forever.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type net from 'node:net';
import { Http2Pool } from '../../../src/proxy/http2/pool.ts';
import { ReplayableBody } from '../../../src/proxy/upstream/request-body.ts';
import { UpstreamError } from '../../../src/proxy/upstream/index.ts';

const HEAD = { method: 'POST', target: '/pkg.Svc/Call', version: '1.1' as const, headers: [{ name: 'content-type', value: 'application/grpc' }, { name: 'te', value: 'trailers' }] };

test('a request sent as the peer destroys its sessions ends: answered by a new session or failed with a flag, never left waiting (400 rounds, four ways)', async () => {
  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  const server = http2.createServer();
  server.on('connection', (s: net.Socket) => { sockets.add(s); s.once('close', () => sockets.delete(s)); });
  server.on('session', (s: http2.ServerHttp2Session) => { sessions.add(s); s.once('close', () => sessions.delete(s)); });
  server.on('stream', (stream) => {
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const pool = new Http2Pool({ connectTimeoutMs: 2000 });
  const ep = { host: '127.0.0.1', port };
  const outcomes = new Map<string, number>();
  try {
    for (let round = 0; round < 400; round++) {
      // a warm session, then the peer drops every connection in the same tick as the request
      const warm = await pool.request(ep, HEAD, new ReplayableBody(Buffer.from('x'), 1024));
      for await (const _ of warm.body) { /* drain */ }
      const pending = pool.request(ep, HEAD, new ReplayableBody(Buffer.from('y'), 1024));
      // as the peer may go: its socket cut, its session destroyed (as grpc-js's forceShutdown: GOAWAY CANCEL), or closed gracefully
      const how = round % 4;
      if (how === 0) for (const s of sockets) s.destroy();
      else if (how === 1) for (const s of sessions) s.destroy();
      else if (how === 2) for (const s of sessions) s.destroy(undefined, http2.constants.NGHTTP2_CANCEL);
      else for (const s of sessions) s.close();
      let timer: NodeJS.Timeout | undefined;
      const hung = new Promise<'hung'>((r) => { timer = setTimeout(() => r('hung'), 10_000); });
      const outcome = await Promise.race([
        pending.then(async (res) => { for await (const _ of res.body) { /* drain */ } return `status ${res.head.status}`; }, (e: unknown) => (e instanceof UpstreamError ? `flag ${e.flag}` : `error ${(e as Error).message}`)),
        hung,
      ]);
      clearTimeout(timer);
      assert.notEqual(outcome, 'hung', `round ${round}: the request never ended`);
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    }
    for (const k of outcomes.keys()) assert.match(k, /^(status 200|flag (UC|UR|UF))$/, JSON.stringify([...outcomes]));
  } finally {
    pool.close();
    for (const s of sockets) s.destroy();
    server.close();
  }
});

test('a request sent as the peer\'s server goes away (listener closed, sessions destroyed) fails with UF after one connect attempt, never loops (50 rounds)', async () => {
  const pool = new Http2Pool({ connectTimeoutMs: 2000 });
  try {
    for (let round = 0; round < 50; round++) {
      const sessions = new Set<http2.ServerHttp2Session>();
      const server = http2.createServer();
      server.on('session', (s: http2.ServerHttp2Session) => { sessions.add(s); s.once('close', () => sessions.delete(s)); });
      server.on('stream', (stream) => {
        stream.respond({ ':status': 200 });
        stream.end('ok');
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      const ep = { host: '127.0.0.1', port: (server.address() as net.AddressInfo).port };
      const warm = await pool.request(ep, HEAD, new ReplayableBody(Buffer.from('x'), 1024));
      for await (const _ of warm.body) { /* drain */ }
      // as grpc-js's forceShutdown: no more listener, every session destroyed with GOAWAY CANCEL
      server.close();
      const before = pool.stats.cxConnectFail;
      const pending = pool.request(ep, HEAD, new ReplayableBody(Buffer.from('y'), 1024));
      for (const s of sessions) s.destroy(undefined, http2.constants.NGHTTP2_CANCEL);
      let timer: NodeJS.Timeout | undefined;
      const hung = new Promise<string>((r) => { timer = setTimeout(() => r('hung'), 10_000); });
      const outcome = await Promise.race([
        pending.then((res) => `status ${res.head.status}`, (e: unknown) => (e instanceof UpstreamError ? `flag ${e.flag}` : `error ${(e as Error).message}`)),
        hung,
      ]);
      clearTimeout(timer);
      assert.match(outcome, /^flag (UF|UC|UR)$/, `round ${round}`);
      assert.ok(pool.stats.cxConnectFail - before <= 2, `round ${round}: ${pool.stats.cxConnectFail - before} connect attempts failed for one request`);
    }
  } finally {
    pool.close();
  }
});
