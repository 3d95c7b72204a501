// Istio's standard metrics with the lean default labels, Telemetry-driven label removal and
// metric drops (istio.stats filter config), peer metadata between a client and a server
// sidecar, and JSON access logs with Envoy's fields and response flags.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { TYPED_STRUCT_TYPE } from '../../src/envoy/index.ts';
import { DEFAULT_LABELS } from '../../src/proxy/index.ts';
import { assignment, edsCluster, freePort, httpListener, meshWith, routeConfig, send, startBackend, REFUSED_PORT } from './helpers/fixtures.ts';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

const svcMeta = { filterMetadata: { istio: { services: [{ host: 'reviews.default.svc.cluster.local', name: 'reviews', namespace: 'default' }] } } };

test('a client and a server sidecar report istio_requests_total with the lean default labels', async () => {
  const app = await startBackend('reviews');
  cleanups.push(app.close);
  const inboundPort = await freePort();
  const outboundPort = await freePort();
  // Server sidecar: inbound listener to the local app.
  const server = await meshWith({
    clusters: [edsCluster('inbound|9080||', { metadata: svcMeta })],
    endpoints: [assignment('inbound|9080||', [app.port])],
    listeners: [httpListener('inbound_9080', inboundPort, 'inbound|9080||', { direction: 'INBOUND' })],
    routes: [routeConfig('inbound|9080||', [{ name: 'inbound', domains: ['*'], routes: [{ name: 'default', match: { prefix: '/' }, route: { cluster: 'inbound|9080||' } }] }])],
  }, { id: 'sidecar~127.0.0.1~reviews-v1-xyz12.default~default.svc.cluster.local', labels: { app: 'reviews', version: 'v1' }, metadata: { WORKLOAD_NAME: 'reviews-v1' } });
  cleanups.push(server.close);
  // Client sidecar: outbound to the server sidecar, with the workload in EDS metadata.
  const client = await meshWith({
    clusters: [edsCluster('outbound|9080||reviews.default.svc.cluster.local', { metadata: svcMeta })],
    endpoints: [assignment('outbound|9080||reviews.default.svc.cluster.local', [inboundPort], { workload: 'reviews-v1;default;reviews;v1;Kubernetes' })],
    listeners: [httpListener('0.0.0.0_9080', outboundPort, '9080')],
    routes: [routeConfig('9080', [{ name: 'reviews', domains: ['reviews', 'reviews:9080'], routes: [{ name: 'default', match: { prefix: '/' }, route: { cluster: 'outbound|9080||reviews.default.svc.cluster.local' } }] }])],
  }, { metadata: { WORKLOAD_NAME: 'productpage-v1' } });
  cleanups.push(client.close);
  await Promise.all([server.proxy.whenReady(), client.proxy.whenReady()]);

  for (let i = 0; i < 3; i++) assert.equal((await send(outboundPort, `/reviews/${i}`, { Host: 'reviews:9080' })).status, 200);
  assert.equal((await send(outboundPort, '/', { Host: 'unknown-host' })).status, 404);

  const appHeaders = app.lastHeaders.map((h) => h.toLowerCase());
  assert.ok(!appHeaders.includes('x-envoy-peer-metadata'), 'peer metadata is for proxies, not the app');

  const out = await (await fetch(`http://${client.proxy.adminAddress}/stats/prometheus`)).text();
  assert.ok(out.includes('istio_requests_total{reporter="source",source_workload="productpage-v1",source_workload_namespace="default",source_canonical_service="productpage",destination_workload="reviews-v1",destination_workload_namespace="default",destination_service="reviews.default.svc.cluster.local",destination_canonical_service="reviews",request_protocol="http",response_code="200",response_flags="-"} 3'), out);
  assert.ok(out.includes('istio_requests_total{reporter="source",source_workload="productpage-v1",source_workload_namespace="default",source_canonical_service="productpage",destination_workload="unknown",destination_workload_namespace="unknown",destination_service="unknown",destination_canonical_service="unknown",request_protocol="http",response_code="404",response_flags="NR"} 1'), out);
  assert.match(out, /istio_request_duration_milliseconds_bucket\{reporter="source",[^}]*response_code="200",response_flags="-",le="\+Inf"\} 3/);

  const inb = await (await fetch(`http://${server.proxy.adminAddress}/stats/prometheus`)).text();
  assert.ok(inb.includes('istio_requests_total{reporter="destination",source_workload="productpage-v1",source_workload_namespace="default",source_canonical_service="productpage",destination_workload="reviews-v1",destination_workload_namespace="default",destination_service="reviews.default.svc.cluster.local",destination_canonical_service="reviews",request_protocol="http",response_code="200",response_flags="-"} 3'), inb);
  assert.equal(DEFAULT_LABELS.length, 11);
});

test('the Telemetry config (istio.stats) removes labels and drops metrics', async () => {
  const app = await startBackend('app');
  cleanups.push(app.close);
  const port = await freePort();
  const stats = {
    name: 'istio.stats',
    typedConfig: {
      '@type': TYPED_STRUCT_TYPE,
      typeUrl: 'type.googleapis.com/stats.PluginConfig',
      value: { metrics: [{ tags_to_remove: ['source_workload', 'destination_workload'] }, { name: 'request_bytes', drop: true }, { name: 'response_bytes', drop: true }] },
    },
  };
  const m = await meshWith({
    clusters: [edsCluster('svc', { metadata: svcMeta })],
    endpoints: [assignment('svc', [app.port])],
    listeners: [httpListener('l', port, 'r', { httpFilters: [stats] })],
    routes: [routeConfig('r', [{ name: 'v', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'svc' } }] }])],
  });
  cleanups.push(m.close);
  await m.proxy.whenReady();
  await send(port, '/', { Host: 'svc' });
  const out = m.proxy.metrics.expose();
  assert.ok(out.includes('istio_requests_total{reporter="source",source_workload_namespace="default",source_canonical_service="productpage",destination_workload_namespace="unknown",destination_service="reviews.default.svc.cluster.local",destination_canonical_service="unknown",request_protocol="http",response_code="200",response_flags="-"} 1'), out);
  assert.ok(!out.includes('istio_request_bytes'));
  assert.ok(!out.includes('istio_response_bytes'));
  assert.ok(out.includes('istio_request_duration_milliseconds_count'));
});

test('100,000 requests to random paths and random hosts add no metric series beyond a fixed set', async () => {
  const app = await startBackend('app');
  cleanups.push(app.close);
  const port = await freePort();
  const m = await meshWith({
    clusters: [edsCluster('svc', { metadata: svcMeta })],
    endpoints: [assignment('svc', [app.port])],
    listeners: [httpListener('l', port, 'r')],
    routes: [routeConfig('r', [{ name: 'v', domains: ['svc'], routes: [{ match: { prefix: '/' }, route: { cluster: 'svc' } }] }])],
  });
  cleanups.push(m.close);
  await m.proxy.whenReady();
  let sent = 0;
  const worker = async (): Promise<void> => {
    while (sent < 100_000) {
      sent++;
      const rnd = Math.random().toString(36).slice(2);
      await send(port, `/${rnd}/${sent}`, { Host: sent % 2 === 0 ? 'svc' : `scan-${rnd}` });
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  // Two outcomes (200 via svc, 404 NR) × four standard HTTP metrics.
  assert.equal(m.proxy.metrics.seriesCount(), 8);
  const out = m.proxy.metrics.expose();
  assert.ok(!/scan-|\/[a-z0-9]{6,}\//.test(out), 'no path or host appears in a label');
});

test('access log lines are JSON with Envoy fields and exact response flags', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sextant-al-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const logPath = path.join(dir, 'access.log');
  const app = await startBackend('app');
  cleanups.push(app.close);
  const port = await freePort();
  const dead = REFUSED_PORT;
  const m = await meshWith({
    clusters: [edsCluster('svc'), edsCluster('dead')],
    endpoints: [assignment('svc', [app.port]), assignment('dead', [dead])],
    listeners: [httpListener('l', port, 'r', { accessLogPath: logPath })],
    routes: [routeConfig('r', [{ name: 'v', domains: ['svc', 'dead'], routes: [
      { name: 'to-dead', match: { prefix: '/', headers: [{ name: ':authority', stringMatch: { exact: 'dead' } }] }, route: { cluster: 'dead' } },
      { name: 'to-svc', match: { prefix: '/' }, route: { cluster: 'svc' } },
    ] }])],
  });
  cleanups.push(m.close);
  await m.proxy.whenReady();
  await send(port, '/ok?x=1', { Host: 'svc', 'User-Agent': 'ua/1', 'x-request-id': 'rid-1', 'X-Forwarded-For': '10.1.2.3' });
  await send(port, '/down', { Host: 'dead' });
  await send(port, '/none', { Host: 'nothing' });
  const deadline = Date.now() + 5000;
  let lines: Record<string, unknown>[] = [];
  while (Date.now() < deadline) {
    try { lines = readFileSync(logPath, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>); } catch { /* not yet */ }
    if (lines.length >= 3) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(lines.length, 3);
  const [ok, down, none] = lines as [Record<string, unknown>, Record<string, unknown>, Record<string, unknown>];
  assert.equal(ok['method'], 'GET');
  assert.equal(ok['path'], '/ok?x=1');
  assert.equal(ok['protocol'], 'HTTP/1.1');
  assert.equal(ok['response_code'], 200);
  assert.equal(ok['response_flags'], '-');
  assert.equal(ok['authority'], 'svc');
  assert.equal(ok['user_agent'], 'ua/1');
  assert.equal(ok['request_id'], 'rid-1');
  assert.equal(ok['x_forwarded_for'], '10.1.2.3');
  assert.equal(ok['upstream_cluster'], 'svc');
  assert.equal(ok['upstream_host'], `127.0.0.1:${app.port}`);
  assert.equal(ok['route_name'], 'to-svc');
  assert.match(String(ok['downstream_remote_address']), /^127\.0\.0\.1:\d+$/);
  assert.equal(ok['downstream_local_address'], `127.0.0.1:${port}`);
  assert.equal(typeof ok['duration'], 'number');
  assert.match(String(ok['start_time']), /^\d{4}-\d\d-\d\dT/);
  assert.equal(down['response_code'], 503);
  assert.equal(down['response_flags'], 'UF');
  assert.equal(down['upstream_host'], `127.0.0.1:${dead}`);
  assert.equal(none['response_code'], 404);
  assert.equal(none['response_flags'], 'NR');
  assert.equal(none['upstream_cluster'], null);
});
