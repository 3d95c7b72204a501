// The pilot's access-log sink between a real proxy-side ALS sender and a real node:sqlite
// store: each HTTPAccessLogEntry is stored as one AccessLogEntry with its reporter, both ends
// (from the node, the peer metadata and the directory), origin, operation (route name, then
// RouteTemplates, then the learned template); a store that refuses batches makes the sink drop
// and count them, and received = stored + dropped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { setTimeout as sleep } from 'node:timers/promises';
import { Registry } from 'prom-client';
import { AccessLogSink } from '../../src/telemetry/sink.ts';
import { SqliteLogStore } from '../../src/telemetry/index.ts';
import type { AccessLogEntry } from '../../src/telemetry/index.ts';
import { AccessLogService, compileGrpcAccessLog } from '../../src/proxy/telemetry/als.ts';
import type { AccessLogRecord } from '../../src/proxy/telemetry/access-log.ts';
import { freePort } from '../helpers/ports.ts';

const logger = pino({ level: 'silent' });

const node = (ip: string, workload: string) => ({ id: `sidecar~${ip}~${workload}-abcde.shop~shop.svc.cluster.local`, metadata: { NAMESPACE: 'shop', WORKLOAD_NAME: workload, INSTANCE_IPS: ip } });

const spec = (reporter: string) => compileGrpcAccessLog({
  commonConfig: { logName: 'sextant', grpcService: { envoyGrpc: { clusterName: 'xds-grpc' } }, bufferFlushInterval: '0.05s', filterStateObjectsToLog: ['upstream_peer', 'downstream_peer'], customTags: [{ tag: 'reporter', literal: { value: reporter } }] },
}, 'l');

function rec(over: Partial<AccessLogRecord>): AccessLogRecord {
  return {
    startTime: 1_700_000_000_000, method: 'GET', path: '/', originalPath: undefined, protocol: 'HTTP/1.1', responseCode: 200, responseFlags: '-',
    responseCodeDetails: 'via_upstream', bytesReceived: 0, bytesSent: 5, durationMs: 4, upstreamServiceTimeMs: undefined, xForwardedFor: undefined,
    userAgent: undefined, requestId: 'r', authority: 'orders.shop.svc.cluster.local:8080', upstreamHost: undefined, upstreamCluster: undefined,
    upstreamLocalAddress: undefined, upstreamTransportFailureReason: undefined, downstreamLocalAddress: '127.0.0.1:8080', downstreamRemoteAddress: '127.0.0.1:5000',
    routeName: undefined, requestHeader: () => undefined, ...over,
  };
}

async function harness(store: SqliteLogStore, opts: { maxQueuedEntries?: number } = {}) {
  const registry = new Registry();
  const sink = new AccessLogSink({
    store, logger, registry, flushIntervalMs: 20, ...opts,
    directory: {
      workloadAt: (ip) => (ip === '127.0.1.9' ? { workload: 'orders-v1', namespace: 'shop' } : ip === '127.0.1.2' ? { workload: 'web-v1', namespace: 'shop' } : undefined),
      servicesAt: (ip, port) => (ip === '127.0.1.9' && port === 8080 ? ['legacy.shop.svc.cluster.local', 'orders.shop.svc.cluster.local'] : []),
      templates: () => TEMPLATES,
    },
  });
  const server = new grpc.Server();
  sink.register(server);
  const port = await freePort();
  await new Promise<void>((resolve, reject) => server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
  const sender = (n: ReturnType<typeof node>) => new AccessLogService({ node: n, logger, resolve: () => ({ target: `127.0.0.1:${port}` }) });
  return { sink, server, registry, sender };
}

const TEMPLATES = [{ service: 'orders.shop.svc.cluster.local', template: '/orders/{id}/items' }];

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(20);
  }
}

async function all(store: SqliteLogStore): Promise<AccessLogEntry[]> {
  const page = await store.logs({ from: 0, to: Date.now() + 3_600_000, limit: 1000 });
  return page.entries.sort((a, b) => a.requestId.localeCompare(b.requestId));
}

test('both reporters of a call are stored with their ends, origin and operation', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sextant-sink-'));
  const store = new SqliteLogStore({ path: path.join(dir, 'log.db'), retentionIntervalMs: 0 });
  const h = await harness(store);
  const web = h.sender(node('127.0.1.2', 'web-v1'));
  const orders = h.sender(node('127.0.1.9', 'orders-v1'));
  try {
    // the caller's sidecar (source): to orders, the upstream's workload from EDS metadata
    web.log(spec('source'), rec({
      requestId: 'a-src', path: '/orders/42/items?page=2', upstreamHost: '127.0.1.9:8080', upstreamCluster: 'outbound|8080||orders.shop.svc.cluster.local',
      upstreamPeer: { name: 'orders-v1', namespace: 'shop', canonicalService: 'orders', canonicalRevision: 'v1', cluster: 'Kubernetes' },
    }));
    // the callee's sidecar (destination): the caller from peer metadata, the service from the directory
    orders.log(spec('destination'), rec({
      requestId: 'a-dst', path: '/orders/42/items?page=2', downstreamRemoteAddress: '127.0.1.2:33000', downstreamLocalAddress: '127.0.1.9:8080',
      upstreamCluster: 'inbound|8080||', upstreamHost: '127.0.0.1:18080', responseCode: 404, downstreamPeerUriSan: 'spiffe://cluster.local/ns/shop/sa/web',
      downstreamPeer: { workload: 'web-v1', namespace: 'shop', canonicalService: 'web', canonicalRevision: 'v1', app: 'web', version: 'v1', cluster: 'Kubernetes' },
    }));
    // a route-not-found on the caller's side: no upstream; the service is the authority's host
    web.log(spec('source'), rec({ requestId: 'b-nr', path: '/nowhere', authority: 'nosuch:8080', responseCode: 404, responseFlags: 'NR', responseCodeDetails: 'route_not_found' }));
    // a named VirtualService route wins over templates; Istio's generated names do not
    web.log(spec('source'), rec({ requestId: 'c-named', path: '/orders/7/items', routeName: 'list-items', upstreamCluster: 'outbound|8080||orders.shop.svc.cluster.local', upstreamHost: '127.0.1.9:8080' }));
    web.log(spec('source'), rec({ requestId: 'd-default', path: '/orders/7', routeName: 'default', upstreamCluster: 'outbound|8080||orders.shop.svc.cluster.local', upstreamHost: '127.0.1.9:8080', responseCode: 503, responseFlags: 'UF', responseCodeDetails: 'upstream_reset_before_response_started' }));
    await until('5 entries stored', async () => (await all(store)).length === 5);
    const [aDst, aSrc, bNr, cNamed, dDefault] = await all(store);
    assert.deepEqual(aSrc, {
      time: 1_700_000_000_000, durationMs: 4, reporter: 'source', node: 'sidecar~127.0.1.2~web-v1-abcde.shop~shop.svc.cluster.local',
      sourceIp: '127.0.1.2', sourceWorkload: 'web-v1', sourceNamespace: 'shop', sourcePrincipal: '',
      destinationIp: '127.0.1.9', destinationWorkload: 'orders-v1', destinationNamespace: 'shop', destinationService: 'orders.shop.svc.cluster.local', destinationPort: 8080,
      method: 'GET', path: '/orders/42/items', operation: '/orders/{id}/items', authority: 'orders.shop.svc.cluster.local:8080', protocol: 'HTTP/1.1',
      responseCode: 200, responseFlags: '', origin: 'app', bytesReceived: 0, bytesSent: 5, requestId: 'a-src', upstreamCluster: 'outbound|8080||orders.shop.svc.cluster.local', routeName: '',
    });
    assert.deepEqual({ ...aDst }, {
      ...aSrc, reporter: 'destination', node: 'sidecar~127.0.1.9~orders-v1-abcde.shop~shop.svc.cluster.local', sourcePrincipal: 'spiffe://cluster.local/ns/shop/sa/web',
      responseCode: 404, requestId: 'a-dst', upstreamCluster: 'inbound|8080||',
    });
    assert.deepEqual([bNr!.destinationService, bNr!.destinationIp, bNr!.destinationWorkload, bNr!.responseFlags, bNr!.origin, bNr!.operation], ['nosuch', '', '', 'NR', 'proxy', '/nowhere']);
    assert.equal(cNamed!.operation, 'list-items');
    assert.deepEqual([dDefault!.operation, dDefault!.origin, dDefault!.responseFlags, dDefault!.routeName], ['/orders/{id}', 'proxy', 'UF', 'default']);
    assert.deepEqual({ ...h.sink.stats(), streams: 0 }, { streams: 0, received: 5, stored: 5, dropped: 0, queued: 0, malformed: 0 });
    const metrics = await h.registry.metrics();
    assert.match(metrics, /^sextant_accesslog_sink_stored_total 5$/m);
    assert.match(metrics, /^sextant_accesslog_sink_dropped_total 0$/m);
  } finally {
    web.close();
    orders.close();
    await h.sink.close();
    h.server.forceShutdown();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a store that refuses writes: the sink drops and counts, received = stored + dropped', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sextant-sink-'));
  const store = new SqliteLogStore({ path: path.join(dir, 'log.db'), retentionIntervalMs: 0 });
  const h = await harness(store, { maxQueuedEntries: 500 });
  const web = h.sender(node('127.0.1.2', 'web-v1'));
  try {
    const s = spec('source');
    for (let i = 0; i < 300; i++) web.log(s, rec({ requestId: `ok-${i}` }));
    await until('300 stored', () => h.sink.stats().stored === 300);
    await store.close(); // from now on every insert fails
    for (let i = 0; i < 2000; i++) web.log(s, rec({ requestId: `lost-${i}` }));
    await until('2,300 received', () => h.sink.stats().received === 2300);
    await h.sink.drained();
    const st = h.sink.stats();
    assert.equal(st.stored, 300);
    assert.equal(st.dropped, 2000);
    assert.equal(st.received, st.stored + st.dropped);
    assert.match(await h.registry.metrics(), /^sextant_accesslog_sink_dropped_total 2000$/m);
  } finally {
    web.close();
    await h.sink.close();
    h.server.forceShutdown();
    rmSync(dir, { recursive: true, force: true });
  }
});
