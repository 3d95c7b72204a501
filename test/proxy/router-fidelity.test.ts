// Through the whole proxy (listener, router, cluster, pool), header names keep their case
// and order and duplicates stay separate lines (M12, M13); route timeouts answer 504 UT and
// per-try timeouts and resets are retried.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { assignment, edsCluster, freePort, httpListener, meshWith, routeConfig, send } from './helpers/fixtures.ts';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

/** A raw TCP upstream: records the request bytes, answers with `reply(n)` for the n-th request. */
async function rawUpstream(reply: (n: number, sock: net.Socket) => string | null): Promise<{ port: number; requests: string[] }> {
  const requests: string[] = [];
  const server = net.createServer((sock) => {
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      let end: number;
      while ((end = buf.indexOf('\r\n\r\n')) >= 0) {
        const head = buf.slice(0, end + 4);
        buf = buf.slice(end + 4);
        requests.push(head);
        const r = reply(requests.length, sock);
        if (r !== null) sock.write(r);
      }
    });
    sock.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  cleanups.push(() => { server.close(); });
  return { port: (server.address() as net.AddressInfo).port, requests };
}

function rawRequest(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(text));
    let acc = '';
    s.on('data', (d) => {
      acc += d.toString('latin1');
      const end = acc.indexOf('\r\n\r\n');
      const len = Number(/content-length: (\d+)/i.exec(acc)?.[1] ?? -1);
      if (end >= 0 && len >= 0 && acc.length >= end + 4 + len) { s.end(); resolve(acc); }
    });
    s.on('error', reject);
  });
}

async function proxyTo(upstreamPort: number, route: Record<string, unknown> = {}): Promise<number> {
  const port = await freePort();
  const m = await meshWith({
    clusters: [edsCluster('svc')],
    endpoints: [assignment('svc', [upstreamPort])],
    listeners: [httpListener('l', port, 'r')],
    routes: [routeConfig('r', [{ name: 'v', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'svc', ...route } }] }])],
  });
  cleanups.push(m.close);
  await m.proxy.whenReady();
  return port;
}

test('request and response header lines arrive with their case, order and duplicates', async () => {
  const up = await rawUpstream(() => 'HTTP/1.1 200 OK\r\nX-Upper-Case: A\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\n\r\nok');
  const port = await proxyTo(up.port);
  const res = await rawRequest(port, 'POST /p HTTP/1.1\r\nHost: svc\r\nX-Custom-Header: one\r\nContent-Type: text/plain\r\ncontent-type: charset=utf-8\r\nACCEPT: */*\r\nContent-Length: 0\r\n\r\n');
  const sent = up.requests[0]!.split('\r\n');
  const names = sent.slice(1).filter(Boolean).map((l) => l.slice(0, l.indexOf(':')));
  // The client's lines keep their relative order and exact bytes; the proxy's own headers follow.
  const original = names.filter((n) => ['Host', 'X-Custom-Header', 'Content-Type', 'content-type', 'ACCEPT'].includes(n));
  assert.deepEqual(original, ['Host', 'X-Custom-Header', 'Content-Type', 'content-type', 'ACCEPT']);
  assert.ok(sent.includes('Content-Type: text/plain') && sent.includes('content-type: charset=utf-8'), 'duplicates are separate lines');
  assert.ok(sent.some((l) => /^x-request-id: [0-9a-f-]{36}$/.test(l)));
  const lines = res.split('\r\n');
  assert.equal(lines[0], 'HTTP/1.1 200 OK');
  assert.ok(lines.includes('X-Upper-Case: A'));
  assert.ok(lines.indexOf('set-cookie: a=1') >= 0 && lines.indexOf('Set-Cookie: b=2') === lines.indexOf('set-cookie: a=1') + 1);
});

test('a route timeout answers 504 with the upstream request timeout body', async () => {
  const up = await rawUpstream(() => null); // never answers
  const port = await proxyTo(up.port, { timeout: '0.3s' });
  const r = await send(port, '/', { Host: 'svc' });
  assert.equal(r.status, 504);
  assert.equal(r.body, 'upstream request timeout');
});

test('per-try timeouts and resets are retried on another attempt', async () => {
  const up = await rawUpstream((n, sock) => {
    if (n === 1) return null; // first attempt hangs past the per-try timeout
    if (n === 2) { sock.destroy(); return null; } // second is reset
    return 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nthird';
  });
  const port = await proxyTo(up.port, { timeout: '5s', retryPolicy: { retryOn: '5xx,reset', numRetries: 3, perTryTimeout: '0.2s', retryBackOff: { baseInterval: '0.001s' } } });
  const r = await send(port, '/', { Host: 'svc' });
  assert.equal(r.status, 200);
  assert.equal(r.body, 'third');
  assert.equal(up.requests.length, 3);
});

test('an HTTP/1.0 client without Host is routed by the catch-all virtual host and answered in HTTP/1.0', async () => {
  const up = await rawUpstream(() => 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npong');
  const port = await proxyTo(up.port);
  const res = await new Promise<string>((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write('GET /ping HTTP/1.0\r\n\r\n'));
    let acc = '';
    s.on('data', (d) => { acc += d.toString('latin1'); });
    s.on('end', () => resolve(acc)); // HTTP/1.0 without keep-alive: the proxy closes after the response
    s.on('error', reject);
  });
  assert.match(res, /^HTTP\/1\.0 200 OK\r\n/);
  assert.ok(res.endsWith('\r\n\r\npong'));
  assert.match(up.requests[0]!, /^GET \/ping HTTP\/1\.1\r\n/);
});
