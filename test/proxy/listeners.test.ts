// Listener kinds Istio's pilot emits: passthrough for ALLOW_ANY (ORIGINAL_DST), blackhole for
// REGISTRY_ONLY (502 NR), tcp_proxy, inbound to the local app with the real client address
// (M17), faults from typedPerFilterConfig, mirroring, and ring hash affinity.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { FAULT_TYPE, TCP_PROXY_TYPE } from '../../src/envoy/index.ts';
import { assignment, edsCluster, freePort, httpListener, meshWith, routeConfig, send, startBackend } from './helpers/fixtures.ts';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

const passthroughCluster = { name: 'PassthroughCluster', type: 'ORIGINAL_DST', connectTimeout: '1s', lbPolicy: 'CLUSTER_PROVIDED' };
const blackholeCluster = { name: 'BlackHoleCluster', type: 'STATIC', connectTimeout: '1s' };

test('ALLOW_ANY passes an http_proxy request through to its destination; REGISTRY_ONLY answers 502 NR', async () => {
  const external = await startBackend('external');
  cleanups.push(external.close);
  const port = await freePort();
  const m = await meshWith({
    clusters: [passthroughCluster, blackholeCluster],
    listeners: [httpListener('l', port, 'r')],
    routes: [routeConfig('r', [
      { name: 'allow_any', domains: ['*'], routes: [{ name: 'allow_any', match: { prefix: '/' }, route: { cluster: 'PassthroughCluster' } }] },
      { name: 'block_all', domains: ['blocked.example.com', 'blocked.example.com:*'], routes: [{ name: 'block_all', match: { prefix: '/' }, directResponse: { status: 502 } }] },
      { name: 'hole', domains: ['hole.example.com'], routes: [{ match: { prefix: '/' }, route: { cluster: 'BlackHoleCluster' } }] },
    ])],
  });
  cleanups.push(m.close);
  await m.proxy.whenReady();
  const r = await send(port, `http://127.0.0.1:${external.port}/outside?q=1`, { Host: `127.0.0.1:${external.port}` });
  assert.equal(r.status, 200);
  assert.equal(JSON.parse(r.body).name, 'external');
  assert.equal(external.lastUrl, '/outside?q=1');
  assert.equal((await send(port, '/', { Host: 'blocked.example.com' })).status, 502);
  assert.equal((await send(port, '/', { Host: 'hole.example.com' })).status, 502);
  const metrics = m.proxy.metrics.expose();
  assert.match(metrics, /istio_requests_total\{[^}]*destination_service="PassthroughCluster"[^}]*response_code="200",response_flags="-"\} 1/);
  assert.match(metrics, /istio_requests_total\{[^}]*response_code="502",response_flags="NR"\} 2/);
});

test('tcp_proxy forwards bytes both ways to the cluster', async () => {
  const echo = net.createServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
  cleanups.push(() => new Promise<void>((r) => echo.close(() => r())));
  const echoPort = (echo.address() as net.AddressInfo).port;
  const port = await freePort();
  const m = await meshWith({
    clusters: [edsCluster('outbound|3306||mysql.default.svc.cluster.local')],
    endpoints: [assignment('outbound|3306||mysql.default.svc.cluster.local', [echoPort])],
    listeners: [{
      name: 'tcp', address: { socketAddress: { address: '127.0.0.1', portValue: port } },
      filterChains: [{ filters: [{ name: 'envoy.filters.network.tcp_proxy', typedConfig: { '@type': TCP_PROXY_TYPE, statPrefix: 'mysql', cluster: 'outbound|3306||mysql.default.svc.cluster.local' } }] }],
    }],
  });
  cleanups.push(m.close);
  await m.proxy.whenReady();
  const sock = net.connect(port, '127.0.0.1');
  const got = await new Promise<string>((resolve, reject) => {
    let acc = '';
    sock.on('data', (d) => { acc += d.toString(); if (acc.length >= 11) { resolve(acc); sock.end(); } });
    sock.on('error', reject);
    sock.write('hello world');
  });
  assert.equal(got, 'hello world');
});

test('an inbound listener gives the app the real client address in x-forwarded-for', async () => {
  const app = await startBackend('app');
  cleanups.push(app.close);
  const port = await freePort();
  const m = await meshWith({
    clusters: [edsCluster('inbound|8080||')],
    endpoints: [assignment('inbound|8080||', [app.port])],
    listeners: [httpListener('inbound', port, 'inbound', { direction: 'INBOUND' })],
    routes: [routeConfig('inbound', [{ name: 'inbound', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'inbound|8080||' } }] }])],
  });
  cleanups.push(m.close);
  await m.proxy.whenReady();
  // The client connects from 127.0.0.7 (its own loopback address, as a pod has its own IP).
  const body = await new Promise<string>((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.7' });
    let acc = '';
    s.on('data', (d) => { acc += d.toString(); if (acc.endsWith('0\r\n\r\n') || acc.trimEnd().endsWith('}')) { resolve(acc); s.end(); } });
    s.on('error', reject);
    s.write('GET /who HTTP/1.1\r\nHost: app\r\n\r\n');
  });
  // The body is chunked; the JSON object is the only brace-delimited text in it.
  const json = JSON.parse(body.slice(body.indexOf('{'), body.lastIndexOf('}') + 1));
  const h: string[] = json.headers;
  const get = (n: string): string | undefined => h[h.findIndex((x, i) => i % 2 === 0 && x.toLowerCase() === n) + 1];
  assert.equal(get('x-forwarded-for'), '127.0.0.7');
  assert.equal(get('x-envoy-external-address'), '127.0.0.7');
});

test('fault abort and delay from the route typedPerFilterConfig', async () => {
  const app = await startBackend('app');
  cleanups.push(app.close);
  const port = await freePort();
  const fault = (cfg: Record<string, unknown>) => ({ 'envoy.filters.http.fault': { '@type': FAULT_TYPE, ...cfg } });
  const m = await meshWith({
    clusters: [edsCluster('svc')],
    endpoints: [assignment('svc', [app.port])],
    listeners: [httpListener('l', port, 'r', { httpFilters: [{ name: 'envoy.filters.http.fault', typedConfig: { '@type': FAULT_TYPE } }] })],
    routes: [routeConfig('r', [{ name: 'v', domains: ['*'], routes: [
      { name: 'abort', match: { prefix: '/abort' }, route: { cluster: 'svc' }, typedPerFilterConfig: fault({ abort: { httpStatus: 418, percentage: { numerator: 100, denominator: 'HUNDRED' } } }) },
      { name: 'delay', match: { prefix: '/delay' }, route: { cluster: 'svc' }, typedPerFilterConfig: fault({ delay: { fixedDelay: '0.2s', percentage: { numerator: 1000000, denominator: 'MILLION' } } }) },
    ] }])],
  });
  cleanups.push(m.close);
  await m.proxy.whenReady();
  const hits = app.hits;
  assert.equal((await send(port, '/abort', { Host: 'svc' })).status, 418);
  assert.equal(app.hits, hits, 'an aborted request never reaches the app');
  const t0 = Date.now();
  assert.equal((await send(port, '/delay', { Host: 'svc' })).status, 200);
  assert.ok(Date.now() - t0 >= 190, 'the delay is applied before forwarding');
  assert.match(m.proxy.metrics.expose(), /response_code="418",response_flags="FI"\} 1/);
  assert.match(m.proxy.metrics.expose(), /response_code="200",response_flags="DI"\} 1/);
});

test('mirroring sends a shadow copy with -shadow host; ring hash keeps a header on one host', async () => {
  const main = await startBackend('main');
  const shadow = await startBackend('shadow');
  const a = await startBackend('a');
  const b = await startBackend('b');
  const c = await startBackend('c');
  cleanups.push(main.close, shadow.close, a.close, b.close, c.close);
  const port = await freePort();
  const m = await meshWith({
    clusters: [edsCluster('main'), edsCluster('shadow'), edsCluster('ring', { lbPolicy: 'RING_HASH' })],
    endpoints: [assignment('main', [main.port]), assignment('shadow', [shadow.port]), assignment('ring', [a.port, b.port, c.port])],
    listeners: [httpListener('l', port, 'r')],
    routes: [routeConfig('r', [{ name: 'v', domains: ['*'], routes: [
      { match: { prefix: '/mirror' }, route: { cluster: 'main', requestMirrorPolicies: [{ cluster: 'shadow', runtimeFraction: { defaultValue: { numerator: 100 } } }] } },
      { match: { prefix: '/ring' }, route: { cluster: 'ring', hashPolicy: [{ header: { headerName: 'x-user' } }] } },
    ] }])],
  });
  cleanups.push(m.close);
  await m.proxy.whenReady();
  assert.equal(JSON.parse((await send(port, '/mirror', { Host: 'svc:80' })).body).name, 'main');
  const deadline = Date.now() + 5000;
  while (shadow.hits === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(shadow.hits, 1);
  const h = shadow.lastHeaders;
  assert.equal(h[h.findIndex((x, i) => i % 2 === 0 && x.toLowerCase() === 'host') + 1], 'svc-shadow:80');
  for (const user of ['alice', 'bob', 'carol', 'dave']) {
    const first = JSON.parse((await send(port, '/ring', { Host: 'svc', 'x-user': user })).body).name;
    for (let i = 0; i < 10; i++) assert.equal(JSON.parse((await send(port, '/ring', { Host: 'svc', 'x-user': user })).body).name, first);
  }
});

test('only ports with listeners accept connections', async () => {
  const port = await freePort();
  const m = await meshWith({ clusters: [], listeners: [httpListener('l', port, 'r')], routes: [routeConfig('r', [{ name: 'v', domains: ['*'], routes: [{ match: { prefix: '/' }, directResponse: { status: 200 } }] }])] });
  cleanups.push(m.close);
  await m.proxy.whenReady();
  const other = await freePort();
  await assert.rejects(new Promise((resolve, reject) => {
    const s = net.connect(other, '127.0.0.1', () => { s.end(); resolve(undefined); });
    s.on('error', reject);
  }), { code: 'ECONNREFUSED' });
  assert.deepEqual([...m.proxy.listeners.boundAddresses().values()], [`127.0.0.1:${port}`]);
});

test('ring hash on a cookie with a TTL sets the cookie once, then keeps the client on one host', async () => {
  const a = await startBackend('a');
  const b = await startBackend('b');
  const c = await startBackend('c');
  cleanups.push(a.close, b.close, c.close);
  const port = await freePort();
  const m = await meshWith({
    clusters: [edsCluster('ring', { lbPolicy: 'RING_HASH' })],
    endpoints: [assignment('ring', [a.port, b.port, c.port])],
    listeners: [httpListener('l', port, 'r')],
    routes: [routeConfig('r', [{ name: 'v', domains: ['*'], routes: [
      { match: { prefix: '/' }, route: { cluster: 'ring', hashPolicy: [{ cookie: { name: 'affinity', ttl: '3600s', path: '/' } }] } },
    ] }])],
  });
  cleanups.push(m.close);
  await m.proxy.whenReady();
  const first = await send(port, '/', { Host: 'svc' });
  const setCookie = first.headers['set-cookie']?.[0] ?? '';
  assert.match(setCookie, /^affinity="[0-9a-f]{8}"; Max-Age=3600; Path=\/; HttpOnly$/);
  const cookie = setCookie.split(';')[0]!;
  const host = JSON.parse(first.body).name;
  for (let i = 0; i < 10; i++) {
    const r = await send(port, '/', { Host: 'svc', Cookie: cookie });
    assert.equal(JSON.parse(r.body).name, host);
    assert.equal(r.headers['set-cookie'], undefined);
  }
});

test('a listener whose port is taken is bound once the port is free again, with no config update', async () => {
  const app = await startBackend('app');
  cleanups.push(app.close);
  const port = await freePort();
  // another process on the port: it answers once and closes the connection
  const squatter = net.createServer((s) => {
    s.write('HTTP/1.1 418 Squatter\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    s.destroySoon();
  });
  await new Promise<void>((r) => squatter.listen(port, '127.0.0.1', () => r()));
  const m = await meshWith({
    clusters: [edsCluster('outbound|8080||app')],
    endpoints: [assignment('outbound|8080||app', [app.port])],
    listeners: [httpListener('l', port, 'r')],
    routes: [routeConfig('r', [{ name: 'app', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'outbound|8080||app' } }] }])],
  });
  cleanups.push(m.close);
  await m.proxy.whenReady();
  // the port still answers as the other process; the admin lists the listener as not bound
  assert.equal((await send(port, '/', { Host: 'app' })).status, 418);
  assert.match(await (await fetch(`http://${m.proxy.adminAddress}/listeners`)).text(), new RegExp(`^l::not bound: listen EADDRINUSE: address already in use 127\\.0\\.0\\.1:${port}\n$`));
  await new Promise<void>((r) => squatter.close(() => r()));
  const deadline = Date.now() + 10_000;
  let status = 0;
  while (Date.now() < deadline) {
    status = await send(port, '/', { Host: 'app' }).then((r) => r.status, () => 0);
    if (status === 200) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  // nothing was pushed in between: the proxy tried the port again by itself
  assert.equal(status, 200, 'the proxy took the port once it was free');
  assert.equal(await (await fetch(`http://${m.proxy.adminAddress}/listeners`)).text(), `l::127.0.0.1:${port}\n`);
});
