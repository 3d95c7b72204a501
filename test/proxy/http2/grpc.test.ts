// gRPC at one sidecar: a failure the proxy makes itself is a gRPC status in a trailers-only
// answer (Envoy's httpToGrpcStatus), never a bare HTTP error, and is logged with Envoy's
// flags; faults abort with a gRPC status; upstream HTTP/2 sessions honour
// max_concurrent_streams, and after GOAWAY only the streams the peer never processed are
// sent again, on a new session.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type net from 'node:net';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { freePort, httpListener, meshWith, REFUSED_PORT, routeConfig } from '../helpers/fixtures.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';
import { echoClient, startEchoServer, unary } from '../../helpers/grpc-echo.ts';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

function h2Cluster(name: string, port: number, h2: ProtoJson = {}): ProtoJson {
  return {
    name, type: 'STATIC', connectTimeout: '1s',
    loadAssignment: { clusterName: name, endpoints: [{ lbEndpoints: [{ endpoint: { address: { socketAddress: { address: '127.0.0.1', portValue: port } } } }] }] },
    typedExtensionProtocolOptions: {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
        '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
        explicitHttpConfig: { http2ProtocolOptions: h2 },
      },
    },
  };
}

const FAULT = 'type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault';

async function proxyTo(clusters: ProtoJson[], routes: ProtoJson[]): Promise<{ port: number; log: string; proxy: Awaited<ReturnType<typeof meshWith>>['proxy'] }> {
  const port = await freePort();
  const log = path.join(mkdtempSync(path.join(tmpdir(), 'sextant-grpc-')), 'access.log');
  const m = await meshWith({
    clusters,
    listeners: [httpListener('l', port, 'r', { accessLogPath: log, httpFilters: [{ name: 'envoy.filters.http.fault', typedConfig: { '@type': FAULT } }] })],
    routes: [routeConfig('r', [{ name: 'vh', domains: ['*'], routes }])],
  });
  cleanups.push(m.close);
  await m.proxy.whenReady();
  return { port, log, proxy: m.proxy };
}

async function logLines(log: string): Promise<Record<string, unknown>[]> {
  await new Promise((r) => setTimeout(r, 50));
  return readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
}

test('proxy-made failures reach a gRPC client as gRPC statuses, logged with their flags', async () => {
  const { port, log } = await proxyTo([h2Cluster('down', REFUSED_PORT)], [
    { match: { prefix: '/sextant.test.Echo/Unary' }, route: { cluster: 'down', timeout: '0s', retryPolicy: { retryOn: 'connect-failure', numRetries: 1 } } },
    { match: { prefix: '/sextant.test.Echo/ServerStream' }, route: { cluster: 'missing' } },
    { match: { prefix: '/sextant.test.Echo/Bidi' }, directResponse: { status: 503 } },
    {
      match: { prefix: '/sextant.test.Echo/ClientStream' }, route: { cluster: 'down' },
      typedPerFilterConfig: { 'envoy.filters.http.fault': { '@type': FAULT, abort: { grpcStatus: 8, percentage: { numerator: 100 } } } },
    },
  ]);
  const client = echoClient(`127.0.0.1:${port}`, 'echo');
  cleanups.push(() => client.close());
  // connect failure, retried once: 503 UF → 14 UNAVAILABLE
  const down = await unary(client, 'x');
  assert.equal(down.error?.code, grpc.status.UNAVAILABLE);
  assert.equal(down.error?.details, 'upstream connect error or disconnect/reset before headers. reset reason: connection failure');
  // a route to a cluster the proxy does not have: 503 NC → 14 UNAVAILABLE
  const noRoute = await new Promise<grpc.StatusObject>((resolve) => {
    const call = client.serverStream(Buffer.from('x'), new grpc.Metadata());
    call.on('error', () => {});
    call.on('status', resolve);
  });
  assert.equal(noRoute.code, grpc.status.UNAVAILABLE, 'a route to a missing cluster is 503 NC → 14');
  // the fault filter's gRPC abort
  const fault = await new Promise<grpc.ServiceError | null>((resolve) => {
    const call = client.clientStream(new grpc.Metadata(), {}, (err) => resolve(err));
    call.end();
  });
  assert.equal(fault?.code, grpc.status.RESOURCE_EXHAUSTED);

  // on the wire: one HEADERS frame with END_STREAM, :status 200, content-type, grpc-status
  const raw = await new Promise<{ headers: Record<string, string>; flags: number }>((resolve, reject) => {
    const c = http2.connect(`http://127.0.0.1:${port}`);
    const s = c.request({ ':method': 'POST', ':path': '/nowhere.Svc/Call', 'content-type': 'application/grpc', te: 'trailers' });
    s.on('response', (h, flags) => resolve({ headers: h as Record<string, string>, flags }));
    s.on('error', reject);
    s.on('close', () => c.close());
    s.end();
  });
  assert.equal(raw.flags & http2.constants.NGHTTP2_FLAG_END_STREAM, http2.constants.NGHTTP2_FLAG_END_STREAM);
  assert.equal(raw.headers[':status'], 200);
  assert.equal(raw.headers['content-type'], 'application/grpc');
  assert.equal(raw.headers['grpc-status'], '12');

  const lines = await logLines(log);
  assert.deepEqual(lines.map((l) => [l['path'], l['response_code'], l['response_flags'], l['protocol']]), [
    ['/sextant.test.Echo/Unary', 200, 'URX,UF', 'HTTP/2'],
    ['/sextant.test.Echo/ServerStream', 200, 'NC', 'HTTP/2'],
    ['/sextant.test.Echo/ClientStream', 200, 'FI', 'HTTP/2'],
    ['/nowhere.Svc/Call', 200, 'NR', 'HTTP/2'],
  ]);
});

test('a killed upstream surfaces as UNAVAILABLE with UF in the access log, and metrics say grpc', async () => {
  const server = await startEchoServer('v1');
  const { port, log, proxy } = await proxyTo([h2Cluster('echo', server.port)], [
    { match: { prefix: '/' }, route: { cluster: 'echo', timeout: '0s' } },
  ]);
  const client = echoClient(`127.0.0.1:${port}`, 'echo');
  cleanups.push(() => client.close());
  assert.equal((await unary(client, 'a')).value?.toString(), 'v1:a');
  server.kill();
  await new Promise((r) => setTimeout(r, 100));
  const r = await unary(client, 'b');
  assert.equal(r.error?.code, grpc.status.UNAVAILABLE);
  const last = (await logLines(log)).at(-1)!;
  assert.equal(last['response_code'], 200);
  assert.match(String(last['response_flags']), /^U[FCR]$/);
  const stats = proxy.metrics.expose();
  assert.match(stats, /istio_requests_total\{[^}]*request_protocol="grpc",response_code="200",response_flags="-"\} 1\n/);
});

test('streams per upstream session stop at max_concurrent_streams; more sessions open', async () => {
  const server = await startEchoServer('v1');
  cleanups.push(server.close);
  const { port, proxy } = await proxyTo([h2Cluster('echo', server.port, { maxConcurrentStreams: 2 })], [
    { match: { prefix: '/' }, route: { cluster: 'echo', timeout: '0s' } },
  ]);
  const client = echoClient(`127.0.0.1:${port}`, 'echo');
  cleanups.push(() => client.close());
  const results = await Promise.all(Array.from({ length: 6 }, (_, i) => unary(client, `c${i}`, { 'x-delay-ms': '200' })));
  assert.deepEqual(results.map((r) => r.value?.toString()), Array.from({ length: 6 }, (_, i) => `v1:c${i}`));
  const pool = proxy.pools.h2PoolFor(proxy.config.clusters.get('echo')!);
  assert.equal(pool.stats.cxTotal, 3, 'six concurrent calls at two streams a session: three sessions');
});

test('after GOAWAY only streams the upstream never processed are sent again, on a new session', async () => {
  // An upstream that, at its 10th stream, announces GOAWAY with that stream as the last it
  // will process; it answers those and never sees the rest.
  const answered: string[] = [];
  let sessions = 0;
  const server = http2.createServer();
  server.on('session', (session) => {
    sessions++;
    let count = 0;
    let last = Number.MAX_SAFE_INTEGER;
    session.on('stream', (stream, headers) => {
      count++;
      stream.on('error', () => { /* refused after GOAWAY */ });
      const id = stream.id ?? 0;
      if (id > last) return; // not processed
      if (sessions === 1 && count === 10) {
        last = id;
        session.goaway(http2.constants.NGHTTP2_NO_ERROR, last);
      }
      stream.resume();
      stream.on('end', () => {
        setTimeout(() => {
          answered.push(String(headers['x-id']));
          stream.respond({ ':status': 200 });
          stream.end(`ok ${String(headers['x-id'])}`);
        }, 20);
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  const upstreamPort = (server.address() as net.AddressInfo).port;
  const { port, proxy } = await proxyTo([h2Cluster('h2', upstreamPort)], [{ match: { prefix: '/' }, route: { cluster: 'h2', timeout: '0s' } }]);

  const c = http2.connect(`http://127.0.0.1:${port}`);
  cleanups.push(() => c.close());
  const one = (i: number): Promise<string> => new Promise((resolve, reject) => {
    const s = c.request({ ':method': 'POST', ':path': '/x', 'x-id': String(i) });
    const chunks: Buffer[] = [];
    let status = 0;
    s.on('response', (h) => { status = Number(h[':status']); });
    s.on('data', (b: Buffer) => chunks.push(b));
    s.on('error', reject);
    s.on('close', () => resolve(`${status} ${Buffer.concat(chunks).toString()}`));
    s.end('body');
  });
  const results = await Promise.all(Array.from({ length: 50 }, (_, i) => one(i)));
  assert.deepEqual(results, Array.from({ length: 50 }, (_, i) => `200 ok ${i}`), 'no call failed');
  assert.equal(answered.length, 50, 'each request was processed exactly once');
  assert.equal(new Set(answered).size, 50);
  assert.equal(sessions, 2);
  const stats = proxy.pools.h2PoolFor(proxy.config.clusters.get('h2')!).stats;
  assert.equal(stats.goawayReceived, 1);
  assert.equal(stats.rqRetryUnprocessed, 40);
});
