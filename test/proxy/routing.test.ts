// End to end through a real ADS stream and real sockets: the proxy routes by domain, path
// and header as Envoy would, splits by weight, rewrites, redirects and answers directly.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { assignment, edsCluster, freePort, httpListener, meshWith, routeConfig, send, startBackend } from './helpers/fixtures.ts';
import type { Backend } from './helpers/fixtures.ts';

let v1: Backend;
let v2: Backend;
let port: number;
let mesh: Awaited<ReturnType<typeof meshWith>>;

before(async () => {
  v1 = await startBackend('v1');
  v2 = await startBackend('v2');
  port = await freePort();
  mesh = await meshWith({
    clusters: [edsCluster('outbound|9080|v1|reviews.default.svc.cluster.local'), edsCluster('outbound|9080|v2|reviews.default.svc.cluster.local')],
    endpoints: [assignment('outbound|9080|v1|reviews.default.svc.cluster.local', [v1.port]), assignment('outbound|9080|v2|reviews.default.svc.cluster.local', [v2.port])],
    listeners: [httpListener('127.0.0.1_9080', port, '9080')],
    routes: [routeConfig('9080', [
      {
        name: 'reviews.default.svc.cluster.local:9080',
        domains: ['reviews.default.svc.cluster.local', 'reviews.default.svc.cluster.local:9080', 'reviews', 'reviews:9080'],
        routes: [
          { name: 'jason', match: { prefix: '/', headers: [{ name: 'end-user', stringMatch: { exact: 'jason' } }] }, route: { cluster: 'outbound|9080|v2|reviews.default.svc.cluster.local' } },
          { name: 'exact', match: { path: '/exact' }, route: { cluster: 'outbound|9080|v2|reviews.default.svc.cluster.local' } },
          { name: 'regex', match: { safeRegex: { regex: '/items/[0-9]+' } }, route: { cluster: 'outbound|9080|v2|reviews.default.svc.cluster.local', regexRewrite: { pattern: { regex: '^/items/([0-9]+)$' }, substitution: '/item?id=\\1' } } },
          { name: 'query', match: { prefix: '/q', queryParameters: [{ name: 'beta', stringMatch: { exact: '1' } }] }, route: { cluster: 'outbound|9080|v2|reviews.default.svc.cluster.local' } },
          { name: 'rewrite', match: { prefix: '/api/' }, route: { cluster: 'outbound|9080|v1|reviews.default.svc.cluster.local', prefixRewrite: '/v1/' } },
          { name: 'split', match: { prefix: '/split' }, route: { weightedClusters: { clusters: [{ name: 'outbound|9080|v1|reviews.default.svc.cluster.local', weight: 80 }, { name: 'outbound|9080|v2|reviews.default.svc.cluster.local', weight: 20 }] } } },
          { name: 'moved', match: { prefix: '/old' }, redirect: { pathRedirect: '/new', responseCode: 'FOUND' } },
          { name: 'teapot', match: { prefix: '/teapot' }, directResponse: { status: 418, body: { inlineString: 'short and stout' } } },
          { name: 'default', match: { prefix: '/' }, route: { cluster: 'outbound|9080|v1|reviews.default.svc.cluster.local' }, responseHeadersToAdd: [{ header: { key: 'x-route', value: 'default' } }] },
        ],
      },
      { name: 'wild', domains: ['*.example.com'], routes: [{ match: { prefix: '/' }, route: { cluster: 'outbound|9080|v2|reviews.default.svc.cluster.local' } }] },
    ])],
  });
  await mesh.proxy.whenReady();
});

after(async () => {
  await mesh?.close();
  await v1?.close();
  await v2?.close();
});

test('the default route goes to v1, with response header operations applied', async () => {
  const r = await send(port, '/reviews/1', { Host: 'reviews:9080' });
  assert.equal(r.status, 200);
  assert.equal(JSON.parse(r.body).name, 'v1');
  assert.equal(r.headers['x-route'], 'default');
});

test('a header match routes end-user jason to v2', async () => {
  const r = await send(port, '/reviews/1', { Host: 'reviews', 'end-user': 'jason' });
  assert.equal(JSON.parse(r.body).name, 'v2');
});

test('exact path, safe_regex with rewrite, and query parameter matches', async () => {
  assert.equal(JSON.parse((await send(port, '/exact', { Host: 'reviews' })).body).name, 'v2');
  assert.equal(JSON.parse((await send(port, '/exact/no', { Host: 'reviews' })).body).name, 'v1');
  const re = JSON.parse((await send(port, '/items/42', { Host: 'reviews' })).body);
  assert.equal(re.name, 'v2');
  assert.equal(re.url, '/item?id=42');
  assert.equal(JSON.parse((await send(port, '/q?beta=1', { Host: 'reviews' })).body).name, 'v2');
  assert.equal(JSON.parse((await send(port, '/q?beta=2', { Host: 'reviews' })).body).name, 'v1');
});

test('prefix rewrite keeps the rest of the path and the query', async () => {
  const r = JSON.parse((await send(port, '/api/ratings?x=1', { Host: 'reviews' })).body);
  assert.equal(r.url, '/v1/ratings?x=1');
  const headers: string[] = r.headers;
  assert.equal(headers[headers.findIndex((h, i) => i % 2 === 0 && h.toLowerCase() === 'x-envoy-original-path') + 1], '/api/ratings?x=1');
});

test('wildcard domains, and unknown hosts get 404', async () => {
  assert.equal(JSON.parse((await send(port, '/', { Host: 'shop.example.com' })).body).name, 'v2');
  const r = await send(port, '/', { Host: 'nowhere' });
  assert.equal(r.status, 404);
});

test('weighted clusters split 80/20 within tolerance over 1,000 requests', async () => {
  const counts = { v1: 0, v2: 0 };
  const batch = async (): Promise<void> => {
    const r = await send(port, '/split', { Host: 'reviews' });
    counts[JSON.parse(r.body).name as 'v1' | 'v2']++;
  };
  for (let i = 0; i < 50; i++) await Promise.all(Array.from({ length: 20 }, batch));
  assert.equal(counts.v1 + counts.v2, 1000);
  // Binomial(1000, 0.2): sd ≈ 12.6; ±60 is more than 4.5 sd.
  assert.ok(counts.v2 > 140 && counts.v2 < 260, `v2 got ${counts.v2} of 1000`);
});

test('redirects and direct responses are answered by the proxy', async () => {
  const r = await send(port, '/old?a=1', { Host: 'reviews:9080' });
  assert.equal(r.status, 302);
  assert.equal(r.headers['location'], 'http://reviews:9080/new?a=1');
  const d = await send(port, '/teapot', { Host: 'reviews' });
  assert.equal(d.status, 418);
  assert.equal(d.body, 'short and stout');
});

test('x-request-id is generated, x-forwarded-proto set, and absolute-form targets route by their authority', async () => {
  const r = JSON.parse((await send(port, 'http://reviews:9080/abs?x=1', { Host: 'ignored' })).body);
  assert.equal(r.name, 'v1');
  assert.equal(r.url, '/abs?x=1');
  const h: string[] = r.headers;
  const get = (n: string): string | undefined => h[h.findIndex((x, i) => i % 2 === 0 && x.toLowerCase() === n) + 1];
  assert.equal(get('host'), 'reviews:9080');
  assert.match(get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
  assert.equal(get('x-forwarded-proto'), 'http');
});
