// The proxy's ALS sender against a real gRPC server speaking Envoy's AccessLogService: entries
// decode with Envoy's protos (the identifier on each stream's first message only); a sink that
// is down or stops reading never makes log() wait: entries are held up to the bound, then
// dropped and counted, and what was held arrives once the sink is back (received + dropped = sent);
// the config it cannot honour is refused naming the field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { setTimeout as sleep } from 'node:timers/promises';
import { decodeMessage } from '../../../src/envoy/index.ts';
import { AccessLogService, compileGrpcAccessLog } from '../../../src/proxy/telemetry/als.ts';
import type { AccessLogRecord } from '../../../src/proxy/telemetry/access-log.ts';
import { freePort } from '../../helpers/ports.ts';

const logger = pino({ level: 'silent' });
const NODE = { id: 'sidecar~127.0.1.2~client-v1-abcde.default~default.svc.cluster.local', metadata: { NAMESPACE: 'default', WORKLOAD_NAME: 'client-v1' } };

function record(i: number): AccessLogRecord {
  return {
    startTime: 1_700_000_000_000 + i, method: 'GET', path: `/orders/${i}?q=1`, originalPath: undefined, protocol: 'HTTP/1.1', responseCode: i % 10 === 0 ? 404 : 200,
    responseFlags: i % 10 === 0 ? 'NR' : '-', responseCodeDetails: i % 10 === 0 ? 'route_not_found' : 'via_upstream', bytesReceived: 0, bytesSent: 12, durationMs: 3,
    upstreamServiceTimeMs: 2, xForwardedFor: undefined, userAgent: 'test', requestId: `req-${i}`, authority: 'orders:8080',
    upstreamHost: i % 10 === 0 ? undefined : '127.0.1.9:8080', upstreamCluster: i % 10 === 0 ? undefined : 'outbound|8080||orders.default.svc.cluster.local',
    upstreamLocalAddress: undefined, upstreamTransportFailureReason: undefined, downstreamLocalAddress: '127.0.2.2:8080', downstreamRemoteAddress: '127.0.0.1:41000',
    routeName: undefined, requestHeader: () => undefined,
    upstreamPeer: i % 10 === 0 ? undefined : { name: 'orders-v1', namespace: 'default', canonicalService: 'orders', canonicalRevision: 'v1', cluster: 'Kubernetes' },
  };
}

/** An ALS server: decodes every message with Envoy's protos; can stop reading (a slow sink). */
async function alsServer(port: number): Promise<{ messages: Record<string, unknown>[]; entries: () => Record<string, unknown>[]; pause(): void; resume(): void; close(): Promise<void> }> {
  const messages: Record<string, unknown>[] = [];
  const calls = new Set<grpc.ServerReadableStream<Buffer, Buffer>>();
  let paused = false;
  const server = new grpc.Server();
  const raw = (b: Buffer): Buffer => b;
  server.addService({ StreamAccessLogs: { path: '/envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs', requestStream: true, responseStream: false, requestSerialize: raw, requestDeserialize: raw, responseSerialize: raw, responseDeserialize: raw } }, {
    StreamAccessLogs: (call: grpc.ServerReadableStream<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      calls.add(call);
      if (paused) call.pause();
      call.on('data', (b: Buffer) => messages.push(decodeMessage('envoy.service.accesslog.v3.StreamAccessLogsMessage', b)));
      call.on('end', () => cb(null, Buffer.alloc(0)));
      call.on('error', () => calls.delete(call));
    },
  });
  await new Promise<void>((resolve, reject) => server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  return {
    messages,
    entries: () => messages.flatMap((m) => ((m['httpLogs'] as { logEntry?: Record<string, unknown>[] } | undefined)?.logEntry ?? [])),
    pause() { paused = true; for (const c of calls) c.pause(); },
    resume() { paused = false; for (const c of calls) c.resume(); },
    close: () => new Promise<void>((resolve) => { server.forceShutdown(); resolve(); }),
  };
}

const spec = (flushMs = '0.05s') => compileGrpcAccessLog({
  commonConfig: {
    logName: 'sextant', grpcService: { envoyGrpc: { clusterName: 'xds-grpc' } }, transportApiVersion: 'V3',
    bufferFlushInterval: flushMs, filterStateObjectsToLog: ['upstream_peer', 'downstream_peer'], customTags: [{ tag: 'reporter', literal: { value: 'source' } }],
  },
}, 'Listener l.accessLog[0].typedConfig');

async function until(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(20);
  }
}

test('entries stream to the sink and decode with Envoy\'s protos; the identifier comes once per stream', async () => {
  const port = await freePort();
  const server = await alsServer(port);
  const als = new AccessLogService({ node: NODE, logger, resolve: () => ({ target: `127.0.0.1:${port}` }) });
  try {
    const s = spec();
    for (let i = 0; i < 100; i++) als.log(s, record(i));
    await until('100 entries arrive', () => server.entries().length === 100);
    assert.deepEqual(als.stats(), { sent: 100, dropped: 0, buffered: 0, connected: 1, streams: 1 });
    const withIdentifier = server.messages.filter((m) => m['identifier'] !== undefined);
    assert.equal(withIdentifier.length, 1);
    assert.deepEqual(server.messages[0]!['identifier'], { node: NODE, logName: 'sextant' });
    const e = server.entries();
    assert.deepEqual(e.map((x) => (x['request'] as Record<string, unknown>)['requestId']), Array.from({ length: 100 }, (_, i) => `req-${i}`));
    const nr = e[0]!;
    assert.deepEqual((nr['commonProperties'] as Record<string, unknown>)['responseFlags'], { noRouteFound: true });
    assert.deepEqual(nr['response'], { responseCode: 404, responseBodyBytes: 12, responseCodeDetails: 'route_not_found' });
    const ok = e[1]!['commonProperties'] as Record<string, unknown>;
    assert.equal(ok['upstreamCluster'], 'outbound|8080||orders.default.svc.cluster.local');
    assert.deepEqual(ok['upstreamRemoteAddress'], { socketAddress: { address: '127.0.1.9', portValue: 8080 } });
    assert.deepEqual(ok['customTags'], { reporter: 'source' });
    assert.deepEqual(ok['filterStateObjects'], { upstream_peer: { '@type': 'type.googleapis.com/google.protobuf.Struct', value: { workload: 'orders-v1', namespace: 'default', cluster: 'Kubernetes', service: 'orders', revision: 'v1' } } });
    assert.equal(ok['startTime'], new Date(1_700_000_000_001).toISOString());
    assert.deepEqual(e[1]!['request'], { requestMethod: 'GET', scheme: 'http', authority: 'orders:8080', port: 8080, path: '/orders/1?q=1', userAgent: 'test', requestId: 'req-1' });
  } finally {
    als.close();
    await server.close();
  }
});

test('a sink that is down: entries are held up to the bound, the rest dropped and counted; held ones arrive when it is back', async () => {
  const port = await freePort();
  const als = new AccessLogService({ node: NODE, logger, resolve: () => ({ target: `127.0.0.1:${port}` }), maxBufferedEntries: 300, initialBackoffMs: 50, maxBackoffMs: 200 });
  let server: Awaited<ReturnType<typeof alsServer>> | undefined;
  try {
    const s = spec();
    for (let i = 0; i < 1000; i++) als.log(s, record(i)); // returns at once: nothing listens
    assert.deepEqual(als.stats(), { sent: 0, dropped: 700, buffered: 300, connected: 0, streams: 1 });
    server = await alsServer(port);
    await until('the held entries arrive', () => server!.entries().length === 300);
    const ids = server.entries().map((x) => (x['request'] as Record<string, unknown>)['requestId']);
    assert.deepEqual(ids, Array.from({ length: 300 }, (_, i) => `req-${i}`), 'the first 300 were held, in order');
    assert.deepEqual(als.stats(), { sent: 300, dropped: 700, buffered: 0, connected: 1, streams: 1 });
  } finally {
    als.close();
    await server?.close();
  }
});

test('a sink that stops reading: writes stop, entries beyond the bound are dropped, received + dropped = logged', async () => {
  const port = await freePort();
  const server = await alsServer(port);
  const als = new AccessLogService({ node: NODE, logger, resolve: () => ({ target: `127.0.0.1:${port}` }), maxBufferedEntries: 2000 });
  try {
    const s = spec();
    als.log(s, record(0));
    await until('the stream is up', () => server.entries().length === 1);
    server.pause();
    const N = 60_000;
    for (let i = 1; i < N; i++) {
      als.log(s, record(i));
      if (i % 5000 === 0) await sleep(60); // let flushes run while the sink reads nothing
    }
    const held = als.stats();
    assert.ok(held.dropped > 0, `some entries were dropped (${JSON.stringify(held)})`);
    assert.equal(held.sent + held.dropped + held.buffered, N);
    server.resume();
    await until('everything not dropped arrives', () => server.entries().length === N - als.stats().dropped && als.stats().buffered === 0, 30_000);
    assert.equal(server.entries().length + als.stats().dropped, N);
  } finally {
    als.close();
    await server.close();
  }
});

test('what the sender cannot honour is refused naming the field', () => {
  const at = 'Listener l.accessLog[0].typedConfig';
  const base = { logName: 'x', grpcService: { envoyGrpc: { clusterName: 'c' } } };
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ commonConfig: { grpcService: base.grpcService } }, /commonConfig.logName: required/],
    [{ commonConfig: { logName: 'x' } }, /commonConfig.grpcService: required/],
    [{ commonConfig: { ...base, grpcService: { googleGrpc: { targetUri: 'dns:///x' } } } }, /googleGrpc.targetUri: expected HOST:PORT/],
    [{ commonConfig: { ...base, filterStateObjectsToLog: ['wasm.istio_operationId'] } }, /filterStateObjectsToLog\[0\]: filter state "istio_operationId" is not kept by this proxy/],
    [{ commonConfig: { ...base, customTags: [{ tag: 't', metadata: { kind: { request: {} } } }] } }, /customTags\[0\]: custom tag "t": only literal, environment and requestHeader tags/],
    [{ commonConfig: base, additionalResponseHeadersToLog: ['x'] }, /additionalResponseHeadersToLog: response headers and trailers are not logged by this proxy/],
    [{ commonConfig: { ...base, transportApiVersion: 'V2' } }, /transportApiVersion: only V3 is supported/],
  ];
  for (const [tc, re] of bad) assert.throws(() => compileGrpcAccessLog(tc, at), re);
  assert.deepEqual(compileGrpcAccessLog({ commonConfig: { ...base, bufferSizeBytes: 1024, bufferFlushInterval: '2s' }, additionalRequestHeadersToLog: ['X-Tenant'] }, at).requestHeaders, ['x-tenant']);
});

test('long fields, IPv6, TLS identity, every flag and logged headers encode as Envoy decodes them', async () => {
  const { encodeHttpEntry } = await import('../../../src/proxy/telemetry/als.ts');
  const s = compileGrpcAccessLog({
    commonConfig: { logName: 'x', grpcService: { envoyGrpc: { clusterName: 'c' } }, filterStateObjectsToLog: ['downstream_peer'], customTags: [{ tag: 'reporter', literal: { value: 'destination' } }, { tag: 'tenant', requestHeader: { name: 'x-tenant' } }] },
    additionalRequestHeadersToLog: ['x-tenant', 'x-absent'],
  }, 'l');
  const path = `/${'p'.repeat(300)}?q=${'ü'.repeat(100)}`;
  const flags = 'LH,UH,UT,LR,UR,UF,UC,UO,NR,DI,FI,RL,UAEX,RLSE,DC,URX,SI,IH,DPE,UMSDR,RFCF,NFCF,DT,UPE,NC,OM,DF,DR';
  const bytes = encodeHttpEntry(s, {
    ...record(3), path, responseFlags: flags, responseCode: 503, durationMs: 1234.5, startTime: 1_700_000_123_456,
    downstreamRemoteAddress: '[fd00::2]:50000', downstreamLocalAddress: '[fd00::9]:8080', upstreamHost: undefined, upstreamCluster: undefined, upstreamPeer: undefined,
    downstreamPeerUriSan: 'spiffe://cluster.local/ns/shop/sa/web', bytesReceived: 70_000, bytesSent: 5_000_000,
    requestHeader: (n: string) => (n === 'x-tenant' ? 'blue' : undefined),
    downstreamPeer: { workload: 'web-v1', namespace: 'shop', canonicalService: 'web', canonicalRevision: 'v1', app: 'web', version: 'v1', cluster: 'Kubernetes' },
  });
  const e = decodeMessage('envoy.data.accesslog.v3.HTTPAccessLogEntry', bytes);
  const c = e['commonProperties'] as Record<string, unknown>;
  assert.deepEqual(c['downstreamRemoteAddress'], { socketAddress: { address: 'fd00::2', portValue: 50000 } });
  assert.deepEqual(c['downstreamLocalAddress'], { socketAddress: { address: 'fd00::9', portValue: 8080 } });
  assert.deepEqual(c['tlsProperties'], { peerCertificateProperties: { subjectAltName: [{ uri: 'spiffe://cluster.local/ns/shop/sa/web' }] } });
  assert.equal(c['startTime'], new Date(1_700_000_123_456).toISOString());
  assert.equal(c['duration'], '1.2345s');
  assert.equal(Object.keys(c['responseFlags'] as object).length, 28);
  assert.deepEqual((c['responseFlags'] as Record<string, unknown>)['unauthorizedDetails'], { reason: 'EXTERNAL_SERVICE' });
  assert.deepEqual(c['customTags'], { reporter: 'destination', tenant: 'blue' });
  assert.deepEqual(c['filterStateObjects'], { downstream_peer: { '@type': 'type.googleapis.com/google.protobuf.Struct', value: { workload: 'web-v1', namespace: 'shop', cluster: 'Kubernetes', service: 'web', revision: 'v1', app: 'web', version: 'v1' } } });
  const q = e['request'] as Record<string, unknown>;
  assert.equal(q['path'], path);
  assert.equal(q['requestBodyBytes'], 70_000);
  assert.deepEqual(q['requestHeaders'], { 'x-tenant': 'blue' });
  assert.deepEqual(e['response'], { responseCode: 503, responseBodyBytes: 5_000_000, responseCodeDetails: 'via_upstream' });
});
