// Retries, circuit breakers and outlier detection with Envoy's semantics, over real sockets.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { CLUSTER_TYPE, ENDPOINT_TYPE } from '../../src/envoy/index.ts';
import { assignment, edsCluster, freePort, httpListener, meshWith, routeConfig, send, startBackend, REFUSED_PORT } from './helpers/fixtures.ts';
import type { Backend } from './helpers/fixtures.ts';

const cleanups: (() => Promise<void>)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

async function mesh(backends: Backend[], cluster: Record<string, unknown>, route: Record<string, unknown>): Promise<{ port: number; m: Awaited<ReturnType<typeof meshWith>> }> {
  const port = await freePort();
  const m = await meshWith({
    clusters: [edsCluster('svc', cluster)],
    endpoints: [assignment('svc', backends.map((b) => b.port))],
    listeners: [httpListener('l', port, 'r')],
    routes: [routeConfig('r', [{ name: 'svc', domains: ['*'], routes: [{ name: 'all', match: { prefix: '/' }, route: { cluster: 'svc', ...route } }] }])],
  });
  cleanups.push(m.close);
  await m.proxy.whenReady();
  return { port, m };
}

test('retries on 5xx recover every request from a flaky upstream', async () => {
  let n = 0;
  const flaky = await startBackend('flaky', (req, res) => {
    req.resume();
    // Every other request fails with 503.
    if (n++ % 2 === 0) { res.writeHead(503); res.end('down'); return; }
    res.writeHead(200); res.end('ok');
  });
  cleanups.push(flaky.close);
  const { port } = await mesh([flaky], {}, { retryPolicy: { retryOn: '5xx', numRetries: 2, retryBackOff: { baseInterval: '0.001s' } } });
  for (let i = 0; i < 50; i++) {
    const r = await send(port, '/x', { Host: 'svc' });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'ok');
  }
  assert.equal(flaky.hits, 100);
});

test('without a retry policy the 503 reaches the caller; connect failures become 503 UF', async () => {
  const dead = REFUSED_PORT;
  const { port } = await mesh([{ port: dead } as Backend], {}, {});
  const r = await send(port, '/', { Host: 'svc' });
  assert.equal(r.status, 503);
  assert.equal(r.body, 'upstream connect error or disconnect/reset before headers. reset reason: connection failure');
});

test('connect-failure retries with previous_hosts move to the healthy host', async () => {
  const ok = await startBackend('ok');
  cleanups.push(ok.close);
  const dead = REFUSED_PORT;
  const { port } = await mesh([{ port: dead } as Backend, ok], {}, {
    retryPolicy: { retryOn: 'connect-failure', numRetries: 3, retryHostPredicate: [{ name: 'envoy.retry_host_predicates.previous_hosts' }], hostSelectionRetryMaxAttempts: 5, retryBackOff: { baseInterval: '0.001s' } },
  });
  for (let i = 0; i < 20; i++) assert.equal((await send(port, '/', { Host: 'svc' })).status, 200);
});

test('circuit breaker max_requests overflow answers 503 with flag UO', async () => {
  const pending: (() => void)[] = [];
  const slow = await startBackend('slow', (req, res) => {
    req.resume();
    pending.push(() => { res.writeHead(200); res.end('late'); });
  });
  cleanups.push(slow.close);
  const { port, m } = await mesh([slow], { circuitBreakers: { thresholds: [{ maxRequests: 2, maxPendingRequests: 1 }] } }, {});
  const inflight = [send(port, '/a', { Host: 'svc' }), send(port, '/b', { Host: 'svc' })];
  while (pending.length < 2) await new Promise((r) => setTimeout(r, 10));
  const over = await send(port, '/c', { Host: 'svc' });
  assert.equal(over.status, 503);
  assert.equal(over.body, 'upstream connect error or disconnect/reset before headers. reset reason: overflow');
  for (const p of pending) p();
  assert.deepEqual((await Promise.all(inflight)).map((r) => r.status), [200, 200]);
  const metrics = m.proxy.metrics.expose();
  assert.match(metrics, /istio_requests_total\{[^}]*response_code="503",response_flags="UO"\} 1/);
});

test('outlier detection ejects a host after consecutive 5xx and brings it back after the ejection time', async () => {
  let failing = true;
  const bad = await startBackend('bad', (req, res) => { req.resume(); res.writeHead(failing ? 500 : 200); res.end('bad'); });
  const good = await startBackend('good');
  cleanups.push(bad.close, good.close);
  const { port, m } = await mesh([bad, good], {
    outlierDetection: { consecutive_5xx: 3, interval: '1s', baseEjectionTime: '30s', maxEjectionPercent: 50 },
    commonLbConfig: { healthyPanicThreshold: { value: 0 } },
  }, {});
  // Round robin alternates; after 3 errors from `bad` it is ejected.
  for (let i = 0; i < 10; i++) await send(port, '/', { Host: 'svc' });
  const cluster = m.proxy.config.clusters.get('svc')!;
  const badHost = cluster.hosts.find((h) => h.port === bad.port)!;
  assert.equal(badHost.ejected, true);
  const before = bad.hits;
  for (let i = 0; i < 20; i++) assert.equal((await send(port, '/', { Host: 'svc' })).status, 200);
  assert.equal(bad.hits, before, 'an ejected host gets no traffic');
  const clusters = await (await fetch(`http://${m.proxy.adminAddress}/clusters`)).text();
  assert.match(clusters, new RegExp(`svc::127.0.0.1:${bad.port}::health_flags::/failed_outlier_check`));
  failing = false;
  // The first interval tick after the 30 s ejection time brings the host back (the tick is
  // driven with a clock 31 s ahead rather than waiting).
  cluster.outlier!.tick(Date.now() + 29_000);
  assert.equal(badHost.ejected, true, 'still ejected before its time is up');
  cluster.outlier!.tick(Date.now() + 31_000);
  assert.equal(badHost.ejected, false, 'the host returns after its ejection time');
  for (let i = 0; i < 10; i++) await send(port, '/', { Host: 'svc' });
  assert.ok(bad.hits > before, 'the recovered host serves again');
});

test('priorities: traffic stays on priority 0 while healthy and spills by the 1.4 overprovisioning factor', async () => {
  const p0 = await startBackend('p0');
  const p1 = await startBackend('p1');
  cleanups.push(p0.close, p1.close);
  const port = await freePort();
  const m = await meshWith({
    clusters: [edsCluster('svc')],
    endpoints: [assignment('svc', [p0.port, p1.port], { priority: [0, 1] })],
    listeners: [httpListener('l', port, 'r')],
    routes: [routeConfig('r', [{ name: 'svc', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'svc' } }] }])],
  });
  cleanups.push(m.close);
  await m.proxy.whenReady();
  for (let i = 0; i < 20; i++) assert.equal(JSON.parse((await send(port, '/', { Host: 'svc' })).body).name, 'p0');
  const cluster = m.proxy.config.clusters.get('svc')!;
  assert.deepEqual(cluster.balancer.priorityLoads(), [100, 0]);
  // Two P0 hosts, one unhealthy: health 50% × 1.4 = 70% stays on P0, 30% spills to P1.
  m.ads.set(ENDPOINT_TYPE, [{
    clusterName: 'svc',
    endpoints: [
      { priority: 0, lbEndpoints: [{ endpoint: { address: { socketAddress: { address: '127.0.0.1', portValue: p0.port } } } }, { endpoint: { address: { socketAddress: { address: '127.0.0.1', portValue: 1 } } }, healthStatus: 'UNHEALTHY' }] },
      { priority: 1, lbEndpoints: [{ endpoint: { address: { socketAddress: { address: '127.0.0.1', portValue: p1.port } } } }] },
    ],
  }]);
  const deadline = Date.now() + 5000;
  while (cluster.hosts.length !== 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(cluster.balancer.priorityLoads(), [70, 30]);
});

test('an invalid update is NACKed with the reason and the last good config keeps serving', async () => {
  const b = await startBackend('b');
  cleanups.push(b.close);
  const { port, m } = await mesh([b], {}, {});
  assert.equal((await send(port, '/', { Host: 'svc' })).status, 200);
  m.ads.set(CLUSTER_TYPE, [edsCluster('svc', { lbPolicy: 'ROUND_ROBIN', outlierDetection: { maxEjectionPercent: 250 } })]);
  const nack = await m.ads.waitFor((a) => a.nack && a.typeUrl === CLUSTER_TYPE);
  assert.equal(nack.message, 'Cluster svc.outlierDetection.maxEjectionPercent: expected a percentage 0..100, got 250');
  assert.equal((await send(port, '/', { Host: 'svc' })).status, 200);
  const dump = await (await fetch(`http://${m.proxy.adminAddress}/config_dump`)).json() as { configs: { '@type': string; dynamicActiveClusters?: { cluster: { outlierDetection?: unknown }; errorState?: { details: string } }[] }[] };
  const clusters = dump.configs.find((c) => c['@type'].endsWith('ClustersConfigDump'))!;
  assert.equal(clusters.dynamicActiveClusters![0]!.cluster.outlierDetection, undefined, 'config_dump shows the config in use');
  assert.match(clusters.dynamicActiveClusters![0]!.errorState!.details, /maxEjectionPercent/);
});

test('with the retry circuit breaker at zero the upstream 503 passes through unretried', async () => {
  const down = await startBackend('down', (req, res) => { req.resume(); res.writeHead(503, { 'x-from': 'upstream' }); res.end('busy'); });
  cleanups.push(down.close);
  const { port, m } = await mesh([down], { circuitBreakers: { thresholds: [{ maxRetries: 0 }] } }, { retryPolicy: { retryOn: '5xx', numRetries: 3 } });
  const r = await send(port, '/', { Host: 'svc' });
  assert.equal(r.status, 503);
  assert.equal(r.body, 'busy');
  assert.equal(r.headers['x-from'], 'upstream');
  assert.equal(down.hits, 1);
  assert.equal(m.proxy.config.clusters.get('svc')!.circuitBreaker.retryOverflows, 1);
});

test('max_requests holds across every endpoint of a cluster: 3 endpoints, maxRequests 2 → the third request is 503 UO, x-envoy-overloaded', async () => {
  const pending: (() => void)[] = [];
  const backends: Backend[] = [];
  for (const name of ['e1', 'e2', 'e3']) {
    const b = await startBackend(name, (req, res) => {
      req.resume();
      pending.push(() => { res.writeHead(200); res.end(name); });
    });
    cleanups.push(b.close);
    backends.push(b);
  }
  const { port, m } = await mesh(backends, { lbPolicy: 'ROUND_ROBIN', circuitBreakers: { thresholds: [{ maxRequests: 2 }] } }, {});
  const inflight = [send(port, '/a', { Host: 'svc' }), send(port, '/b', { Host: 'svc' })];
  while (pending.length < 2) await new Promise((r) => setTimeout(r, 10));
  // two different endpoints hold one request each: the third endpoint is idle, yet the cluster is full
  assert.deepEqual(backends.map((b) => b.hits).sort(), [0, 1, 1]);
  const over = await send(port, '/c', { Host: 'svc' });
  assert.equal(over.status, 503);
  assert.equal(over.headers['x-envoy-overloaded'], 'true');
  assert.equal(over.body, 'upstream connect error or disconnect/reset before headers. reset reason: overflow');
  assert.equal(backends.reduce((n, b) => n + b.hits, 0), 2);
  for (const p of pending.splice(0)) p();
  assert.deepEqual((await Promise.all(inflight)).map((r) => r.status), [200, 200]);
  // capacity is back: the next request goes through, without the overload header
  const next = send(port, '/d', { Host: 'svc' });
  while (pending.length < 1) await new Promise((r) => setTimeout(r, 10));
  pending.shift()!();
  const ok = await next;
  assert.equal(ok.status, 200);
  assert.equal(ok.headers['x-envoy-overloaded'], undefined);
  assert.match(m.proxy.metrics.expose(), /istio_requests_total\{[^}]*response_code="503",response_flags="UO"\} 1/);
});
