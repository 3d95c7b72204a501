// The xDS client against a real gRPC ADS server: readiness only after a complete config,
// state-of-the-world fallback, serving through a control-plane outage, and reconnecting.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE } from '../../src/envoy/index.ts';
import { startProxy } from '../../src/proxy/index.ts';
import { TestAdsServer } from './helpers/ads-server.ts';
import { assignment, edsCluster, freePort, httpListener, meshWith, routeConfig, send, silent, startBackend } from './helpers/fixtures.ts';

const cleanups: (() => Promise<void>)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

const ready = async (admin: string): Promise<number> => (await fetch(`http://${admin}/ready`)).status;

test('/ready answers 503 until clusters, endpoints, listeners and routes are all applied', async () => {
  const b = await startBackend('b');
  cleanups.push(b.close);
  const port = await freePort();
  const ads = new TestAdsServer();
  await ads.start();
  ads.set(CLUSTER_TYPE, [edsCluster('svc')]);
  ads.set(LISTENER_TYPE, [httpListener('l', port, 'r')]);
  const proxy = await startProxy({ xds: ads.address, id: 'sidecar~127.0.0.1~a-1.default~default.svc.cluster.local', adminAddress: '127.0.0.1:0', logger: silent });
  cleanups.push(async () => { await proxy.drain(100); await ads.stop(); });
  await ads.waitFor((a) => a.typeUrl === LISTENER_TYPE && !a.nack);
  assert.equal(await ready(proxy.adminAddress), 503, 'no endpoints and no routes yet');
  ads.set(ENDPOINT_TYPE, [assignment('svc', [b.port])]);
  await ads.waitFor((a) => a.typeUrl === ENDPOINT_TYPE && !a.nack);
  assert.equal(await ready(proxy.adminAddress), 503, 'routes still missing');
  ads.set(ROUTE_TYPE, [routeConfig('r', [{ name: 'v', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'svc' } }] }])]);
  await proxy.whenReady();
  assert.equal(await ready(proxy.adminAddress), 200);
  assert.equal((await send(port, '/', { Host: 'svc' })).status, 200);
});

test('a server without delta ADS is used with state of the world, and updates still apply', async () => {
  const a = await startBackend('a');
  const b = await startBackend('b');
  cleanups.push(a.close, b.close);
  const port = await freePort();
  const route = (cluster: string) => routeConfig('r', [{ name: 'v', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster } }] }]);
  const m = await meshWith({
    clusters: [edsCluster('a'), edsCluster('b')],
    endpoints: [assignment('a', [a.port]), assignment('b', [b.port])],
    listeners: [httpListener('l', port, 'r')],
    routes: [route('a')],
  }, { delta: false });
  cleanups.push(m.close);
  await m.proxy.whenReady();
  assert.equal(m.proxy.xds.protocol, 'sotw');
  assert.equal(JSON.parse((await send(port, '/', { Host: 'x' })).body).name, 'a');
  const seen = m.ads.acks.length;
  m.ads.set(ROUTE_TYPE, [route('b')]);
  await m.ads.waitFor((x) => x.typeUrl === ROUTE_TYPE && !x.nack && x.protocol === 'sotw', 10_000, seen);
  assert.equal(JSON.parse((await send(port, '/', { Host: 'x' })).body).name, 'b');
  assert.ok(m.ads.acks.every((x) => x.protocol === 'sotw' && !x.nack));
});

test('the proxy keeps serving while the control plane is down and resubscribes when it returns', async () => {
  const b = await startBackend('b');
  cleanups.push(b.close);
  const port = await freePort();
  const resources = {
    clusters: [edsCluster('svc')],
    endpoints: [assignment('svc', [b.port])],
    listeners: [httpListener('l', port, 'r')],
    routes: [routeConfig('r', [{ name: 'v', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'svc' } }] }])],
  };
  const m = await meshWith(resources);
  cleanups.push(async () => { await m.proxy.drain(100); });
  await m.proxy.whenReady();
  const xdsPort = m.ads.port;
  await m.ads.stop();
  for (let i = 0; i < 5; i++) assert.equal((await send(port, '/', { Host: 'svc' })).status, 200);
  // The control plane returns on the same address with the same config.
  const ads2 = new TestAdsServer();
  ads2.set(CLUSTER_TYPE, resources.clusters);
  ads2.set(ENDPOINT_TYPE, resources.endpoints);
  ads2.set(LISTENER_TYPE, resources.listeners);
  ads2.set(ROUTE_TYPE, resources.routes);
  await ads2.start(xdsPort);
  cleanups.push(() => ads2.stop());
  const node = await (async () => {
    const deadline = Date.now() + 20_000;
    while (ads2.nodes.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    return ads2.nodes[0];
  })();
  assert.equal(node?.['id'], 'sidecar~127.0.0.1~productpage-v1-abc12.default~default.svc.cluster.local');
  assert.equal((node?.['metadata'] as Record<string, unknown>)['NAMESPACE'], 'default');
  assert.equal((await send(port, '/', { Host: 'svc' })).status, 200);
});

test('resources removed by the server stop serving: a removed listener closes its port, a removed cluster answers 503 NC', async () => {
  const b = await startBackend('b');
  cleanups.push(b.close);
  const port = await freePort();
  const port2 = await freePort();
  const m = await meshWith({
    clusters: [edsCluster('svc')],
    endpoints: [assignment('svc', [b.port])],
    listeners: [httpListener('l', port, 'r'), httpListener('l2', port2, 'r')],
    routes: [routeConfig('r', [{ name: 'v', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'svc' } }] }])],
  });
  cleanups.push(m.close);
  await m.proxy.whenReady();
  assert.equal((await send(port2, '/', { Host: 'svc' })).status, 200);
  let seen = m.ads.acks.length;
  m.ads.set(LISTENER_TYPE, [httpListener('l', port, 'r')]);
  await m.ads.waitFor((a) => a.typeUrl === LISTENER_TYPE && !a.nack, 10_000, seen);
  const deadline = Date.now() + 5000;
  while (m.proxy.listeners.boundAddresses().size !== 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual([...m.proxy.listeners.boundAddresses().keys()], ['l']);
  seen = m.ads.acks.length;
  m.ads.set(CLUSTER_TYPE, []);
  await m.ads.waitFor((a) => a.typeUrl === CLUSTER_TYPE && !a.nack, 10_000, seen);
  const r = await send(port, '/', { Host: 'svc' });
  assert.equal(r.status, 503);
  assert.match(m.proxy.metrics.expose(), /response_code="503",response_flags="NC"\} 1/);
});
