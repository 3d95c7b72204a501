// HTTP/2 on the sidecar's listeners and clusters: h2c (prior knowledge) and HTTP/1.1 on the
// same port, chosen per connection (codec_type AUTO); HTTP/1.1 ↔ HTTP/2 translation both
// ways (pseudo-headers, hop-by-hop headers dropped, trailers relayed, a trailers-only reply
// kept trailers-only); Upgrade requests refused unless the connection manager enables them.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import http2 from 'node:http2';
import net from 'node:net';
import { readFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort, httpListener, meshWith, routeConfig, send, startBackend } from '../helpers/fixtures.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';

const run = promisify(execFile);
const cleanups: (() => Promise<void> | void)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

const H2_OPTIONS: ProtoJson = {
  typedExtensionProtocolOptions: {
    'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
      '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
      explicitHttpConfig: { http2ProtocolOptions: {} },
    },
  },
};

function staticCluster(name: string, port: number, extra: ProtoJson = {}): ProtoJson {
  return { name, type: 'STATIC', connectTimeout: '1s', loadAssignment: { clusterName: name, endpoints: [{ lbEndpoints: [{ endpoint: { address: { socketAddress: { address: '127.0.0.1', portValue: port } } } }] }] }, ...extra };
}

interface H2Seen { headers: string[]; trailers: string[] }

/** An HTTP/2-only upstream: echoes what it saw; /trailers answers with trailers, /only trailers-only. */
async function startH2Upstream(): Promise<{ port: number; seen: H2Seen[] }> {
  const seen: H2Seen[] = [];
  const server = http2.createServer();
  server.on('stream', (stream, headers, _flags, raw) => {
    const s: H2Seen = { headers: raw, trailers: [] };
    seen.push(s);
    stream.on('trailers', (_t, _f, rawT: string[]) => { s.trailers = rawT; });
    const chunks: Buffer[] = [];
    stream.on('data', (b: Buffer) => chunks.push(b));
    stream.on('end', () => {
      const path = String(headers[':path']);
      if (path === '/only') {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '5', 'grpc-message': 'not%20found', 'x-t': '1' }, { endStream: true });
        return;
      }
      stream.respond({ ':status': 200, 'content-type': 'text/plain', 'x-upstream': 'h2' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers(path === '/trailers' ? { 'grpc-status': '0', 'x-checksum': ['a', 'b'] } : {}));
      stream.end(`h2 ${String(headers[':method'])} ${path} authority=${String(headers[':authority'])} body=${Buffer.concat(chunks).length}`);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  return { port: (server.address() as net.AddressInfo).port, seen };
}

async function setup(hcm: ProtoJson = {}): Promise<{ port: number; log: string; upstream: { port: number; seen: H2Seen[] } }> {
  const h1 = await startBackend('h1');
  cleanups.push(h1.close);
  const upstream = await startH2Upstream();
  const port = await freePort();
  const log = path.join(mkdtempSync(path.join(tmpdir(), 'sextant-h2-')), 'access.log');
  const m = await meshWith({
    clusters: [staticCluster('h1', h1.port), staticCluster('h2', upstream.port, H2_OPTIONS)],
    listeners: [httpListener('l', port, 'r', { accessLogPath: log, hcm })],
    routes: [routeConfig('r', [{ name: 'vh', domains: ['*'], routes: [
      { match: { prefix: '/h1' }, route: { cluster: 'h1' } },
      { match: { prefix: '/' }, route: { cluster: 'h2' } },
    ] }])],
  });
  cleanups.push(m.close);
  await m.proxy.whenReady();
  return { port, log, upstream };
}

function h2Request(port: number, headers: http2.OutgoingHttpHeaders, body?: string): Promise<{ headers: string[]; flags: number; trailers: string[] | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const c = http2.connect(`http://127.0.0.1:${port}`);
    c.on('error', reject);
    const s = c.request(headers, { endStream: body === undefined });
    let res: { headers: string[]; flags: number } | undefined;
    let trailers: string[] | undefined;
    const chunks: Buffer[] = [];
    s.on('response', (_h, flags, raw) => { res = { headers: raw, flags }; });
    s.on('trailers', (_t, _f, raw: string[]) => { trailers = raw; });
    s.on('data', (b: Buffer) => chunks.push(b));
    s.on('close', () => {
      c.close();
      if (!res) reject(new Error(`stream closed without a response (rst ${s.rstCode})`));
      else resolve({ ...res, trailers, body: Buffer.concat(chunks).toString() });
    });
    if (body !== undefined) s.end(body);
  });
}

function pairs(raw: string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < raw.length; i += 2) out.push([raw[i]!, raw[i + 1]!]);
  return out;
}

test('curl --http2-prior-knowledge and an HTTP/1.1 client on the same listener', async () => {
  const { port, log } = await setup();
  const h2 = await run('curl', ['-s', '--http2-prior-knowledge', '-o', '-', '-w', '\n%{http_version} %{http_code}', `http://127.0.0.1:${port}/h1/a?b=1`]);
  const [h2Body, h2Status] = h2.stdout.split('\n');
  assert.equal(h2Status, '2 200');
  assert.equal(JSON.parse(h2Body!).url, '/h1/a?b=1');
  const h1 = await run('curl', ['-s', '-o', '-', '-w', '\n%{http_version} %{http_code}', `http://127.0.0.1:${port}/h1/c`]);
  assert.equal(h1.stdout.split('\n')[1], '1.1 200');
  // the HTTP/1 upstream got the authority as Host, first
  const headers = JSON.parse(h2Body!).headers as string[];
  assert.deepEqual(headers.slice(0, 2), ['host', `127.0.0.1:${port}`]);
  await new Promise((r) => setTimeout(r, 50));
  const lines = readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(lines.map((l) => [l['protocol'], l['path'], l['response_code']]), [['HTTP/2', '/h1/a?b=1', 200], ['HTTP/1.1', '/h1/c', 200]]);
});

test('an HTTP/1.1 client reaches an HTTP/2-only upstream; connection headers stay on their hop', async () => {
  const { port, upstream } = await setup();
  const r = await send(port, '/plain', { Host: 'svc.local:9080', Connection: 'keep-alive, X-Hop', 'Keep-Alive': 'timeout=5', 'X-Hop': 'drop me', 'X-Keep': 'kept', TE: 'trailers' }, { method: 'POST', body: 'twelve bytes' });
  assert.equal(r.status, 200);
  assert.equal(r.body, 'h2 POST /plain authority=svc.local:9080 body=12');
  assert.equal(r.headers['x-upstream'], 'h2');
  const seen = pairs(upstream.seen.at(-1)!.headers).map(([n]) => n);
  for (const hop of ['connection', 'keep-alive', 'x-hop', 'host', 'transfer-encoding']) assert.ok(!seen.includes(hop), `${hop} does not reach the HTTP/2 upstream`);
  assert.ok(seen.includes('x-keep'));
  assert.ok(seen.includes('te'), 'te: trailers may cross');
});

test('trailers cross HTTP/2 → HTTP/2 and HTTP/2 → HTTP/1.1 as sent', async () => {
  const { port } = await setup();
  const r = await h2Request(port, { ':method': 'POST', ':path': '/trailers' }, 'x');
  assert.deepEqual(r.trailers, ['grpc-status', '0', 'x-checksum', 'a', 'x-checksum', 'b']);
  assert.equal(r.body, `h2 POST /trailers authority=127.0.0.1:${port} body=1`);
  // an HTTP/1.1 client gets them after the last chunk
  const raw = await rawHttp1(port, 'GET /trailers HTTP/1.1\r\nHost: x\r\nTE: trailers\r\n\r\n');
  assert.match(raw, /\r\n0\r\ngrpc-status: 0\r\nx-checksum: a\r\nx-checksum: b\r\n\r\n$/);
});

test('a trailers-only reply stays one HEADERS frame that ends the stream', async () => {
  const { port } = await setup();
  const r = await h2Request(port, { ':method': 'POST', ':path': '/only', 'content-type': 'application/grpc' }, '');
  assert.equal(r.flags & http2.constants.NGHTTP2_FLAG_END_STREAM, http2.constants.NGHTTP2_FLAG_END_STREAM);
  const h = Object.fromEntries(pairs(r.headers));
  assert.equal(h[':status'], '200');
  assert.equal(h['grpc-status'], '5');
  assert.equal(h['grpc-message'], 'not%20found');
  assert.equal(h['x-t'], '1');
  assert.equal(r.trailers, undefined);
});

test('request trailers from an HTTP/2 client reach an HTTP/2 upstream; split cookies are one line for HTTP/1', async () => {
  const { port, upstream } = await setup();
  await new Promise<void>((resolve, reject) => {
    const c = http2.connect(`http://127.0.0.1:${port}`);
    const s = c.request({ ':method': 'POST', ':path': '/t' }, { waitForTrailers: true });
    s.on('wantTrailers', () => s.sendTrailers({ 'x-request-trailer': 'yes' }));
    s.on('error', reject);
    s.on('close', () => { c.close(); resolve(); });
    s.resume();
    s.end('body');
  });
  assert.deepEqual(upstream.seen.at(-1)!.trailers, ['x-request-trailer', 'yes']);
  const r = await h2Request(port, { ':method': 'GET', ':path': '/h1/cookies', cookie: ['a=1', 'b=2'] });
  const headers = JSON.parse(r.body).headers as string[];
  assert.equal(headers[headers.indexOf('cookie') + 1], 'a=1; b=2');
});

test('an Upgrade the connection manager does not enable is refused with 403', async () => {
  const { port } = await setup();
  const raw = await rawHttp1(port, 'GET /h1/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
  assert.match(raw, /^HTTP\/1\.1 403 Forbidden\r\n/);
});

/** Sends raw bytes and reads until the server closes or goes quiet. */
function rawHttp1(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(text));
    let out = '';
    let timer: NodeJS.Timeout | undefined;
    s.on('data', (b: Buffer) => {
      out += b.toString('latin1');
      clearTimeout(timer);
      timer = setTimeout(() => s.destroy(), 300);
    });
    s.on('error', reject);
    s.on('close', () => { clearTimeout(timer); resolve(out); });
  });
}
