// The codec and the pool composed as the router composes them (downstream request →
// upstream pool → downstream response), watched with raw sockets at both ends.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { http1Limits, serveHttp1, type DownstreamRequest } from '../../../src/proxy/http/index.ts';
import { UpstreamError, UpstreamPool } from '../../../src/proxy/upstream/index.ts';
import { app, ok, type AppBehaviour } from '../upstream/apps.ts';
import { rawServer, RawClient } from './wire.ts';

// A minimal relay: every request goes to the one app; upstream failures become 503.
async function relay(b: AppBehaviour): Promise<{ port: number; app: Awaited<ReturnType<typeof app>> }> {
  const upstream = await app(b);
  const pool = new UpstreamPool();
  test.after(() => pool.close());
  const limits = http1Limits();
  const handle = async (req: DownstreamRequest): Promise<void> => {
    try {
      const r = await pool.request({ host: '127.0.0.1', port: upstream.port }, req.head, req.bodyLength === 0 ? null : req.body, { signal: req.signal });
      await req.respond(r.head, r.body);
    } catch (e) {
      if (!req.responded) {
        const flag = e instanceof UpstreamError ? e.flag : 'other';
        await req.respond({ status: 503, reason: 'Service Unavailable', version: '1.1', headers: [] }, Buffer.from(flag)).catch(() => {});
      }
    }
  };
  const proxy = await rawServer((s) => serveHttp1(s, limits, (req) => void handle(req)));
  return { port: proxy.port, app: upstream };
}

test('two Content-Type lines reach the app as two lines, names in their case (M12, M13)', async () => {
  const r = await relay({ respond: () => 'HTTP/1.1 200 OK\r\nX-App-Header: 1\r\ncontent-type: text/plain\r\nContent-Length: 2\r\n\r\nok' });
  const c = await RawClient.connect(r.port);
  c.write('POST /form HTTP/1.1\r\nHost: svc\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Type: charset=UTF-8\r\nX-Request-ID: abc\r\nContent-Length: 3\r\n\r\na=b');
  assert.equal(await c.until((s) => s.endsWith('ok')), 'HTTP/1.1 200 OK\r\nX-App-Header: 1\r\ncontent-type: text/plain\r\nContent-Length: 2\r\n\r\nok');
  assert.equal(
    r.app.requests[0]!.head,
    'POST /form HTTP/1.1\r\nHost: svc\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Type: charset=UTF-8\r\nX-Request-ID: abc\r\nContent-Length: 3\r\n\r\n',
  );
  assert.equal(r.app.requests[0]!.body, 'a=b');
});

test('a repeated chunked response reaches the client intact, not as a 503 (M14)', async () => {
  const r = await relay({ respond: () => 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n' });
  const c = await RawClient.connect(r.port);
  c.write('GET / HTTP/1.1\r\nHost: svc\r\n\r\n');
  assert.equal(await c.until((s) => s.endsWith('0\r\n\r\n')), 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n');
});

test('an HTTP/1.0 server response ending at close is relayed, and the 1.0 client connection closed (M11)', async () => {
  const r = await relay({ respond: () => 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nold server body', closeAfterResponse: true });
  const c = await RawClient.connect(r.port);
  c.write('GET /x HTTP/1.0\r\n\r\n');
  assert.equal(await c.untilClosed(), 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nold server body');
  // the app got an HTTP/1.1 request with the Host the pool derives from the endpoint
  assert.equal(r.app.requests[0]!.head, `GET /x HTTP/1.1\r\nHost: 127.0.0.1:${r.app.port}\r\n\r\n`);
  // an HTTP/1.1 client gets the same body chunked and keeps its connection
  const d = await RawClient.connect(r.port);
  d.write('GET /y HTTP/1.1\r\nHost: svc\r\n\r\n');
  assert.equal(await d.until((s) => s.endsWith('0\r\n\r\n')), 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\nf\r\nold server body\r\n0\r\n\r\n');
  assert.equal(d.ended, false);
});

test('HTTP/1.0 client with keep-alive: several requests on one connection', async () => {
  const r = await relay({ respond: (q) => ok(q.head.split(' ')[1]!) });
  const c = await RawClient.connect(r.port);
  for (const p of ['/1', '/2', '/3']) {
    c.received = '';
    c.write(`GET ${p} HTTP/1.0\r\nHost: svc\r\nConnection: keep-alive\r\n\r\n`);
    assert.equal(await c.until((s) => s.endsWith(p)), `HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n${p}`);
  }
  assert.equal(c.ended, false);
});

test('absolute-form targets travel as received (clients using http_proxy)', async () => {
  const r = await relay({ respond: () => ok('') });
  const c = await RawClient.connect(r.port);
  c.write('GET http://reviews:9080/x HTTP/1.1\r\nHost: reviews:9080\r\n\r\n');
  await c.until((s) => s.includes('\r\n\r\n'));
  assert.equal(r.app.requests[0]!.head, 'GET http://reviews:9080/x HTTP/1.1\r\nHost: reviews:9080\r\n\r\n');
});

test('a chunked request is re-framed for the app; a smuggling attempt never reaches it', async () => {
  const r = await relay({ respond: () => ok('fine') });
  const c = await RawClient.connect(r.port);
  c.write('POST /p HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n3;ext\r\nabc\r\n0\r\n\r\n');
  await c.until((s) => s.endsWith('fine'));
  assert.equal(r.app.requests[0]!.head, 'POST /p HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n');
  assert.equal(r.app.requests[0]!.body, '3\r\nabc\r\n0\r\n\r\n');
  const d = await RawClient.connect(r.port);
  d.write('POST /p HTTP/1.1\r\nHost: svc\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: svc\r\n\r\n');
  assert.match(await d.untilClosed(), /^HTTP\/1\.1 400 Bad Request\r\n/);
  assert.equal(r.app.requests.length, 1);
});

test('chunked trailers from the app reach the client after the last chunk', async () => {
  const r = await relay({ respond: () => 'HTTP/1.1 200 OK\r\nTrailer: X-Checksum\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Checksum: 42\r\n\r\n' });
  const c = await RawClient.connect(r.port);
  c.write('GET / HTTP/1.1\r\nHost: svc\r\n\r\n');
  assert.equal(
    await c.until((s) => s.endsWith('\r\n\r\n') && s.includes('X-Checksum: 42')),
    'HTTP/1.1 200 OK\r\nTrailer: X-Checksum\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Checksum: 42\r\n\r\n',
  );
});

test('a head and the body bytes already here leave in one socket write, both ways', async () => {
  const r = await relay({ respond: () => 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n' });
  // count write() calls per socket, by the port at the far end
  const writes = new Map<number, string[]>();
  const orig = net.Socket.prototype.write;
  net.Socket.prototype.write = function (this: net.Socket, ...a: Parameters<net.Socket['write']>): boolean {
    const port = this.remotePort ?? 0;
    const chunk = a[0];
    const list = writes.get(port) ?? [];
    list.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString('latin1'));
    writes.set(port, list);
    return orig.apply(this, a);
  } as typeof orig;
  try {
    const c = await RawClient.connect(r.port);
    c.write('POST /form HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\n\r\na=b');
    const expected = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n';
    assert.equal(await c.until((s) => s.endsWith('0\r\n\r\n')), expected);
    // upstream: request head and its body in one write, bytes unchanged
    assert.deepEqual(writes.get(r.app.port), ['POST /form HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\n\r\na=b']);
    // downstream: response head, chunk and last chunk in one write
    assert.deepEqual(writes.get(c.socket.localPort!), [expected]);
  } finally {
    net.Socket.prototype.write = orig;
  }
});
