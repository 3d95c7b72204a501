// End to end: a sidecar configured by `sextant pilot` normalizes request paths before
// routing (Istio's default pathNormalization BASE), so a VirtualService route for
// /public cannot be used to reach what lies outside it; and the connection manager's
// other path settings answer 400 and 307 as Envoy's do.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startProxy } from '../../src/proxy/index.ts';
import { spawnPilot } from '../helpers/pilot-process.ts';
import { assignment, edsCluster, freePort, httpListener, meshWith, routeConfig, send, silent, startBackend } from './helpers/fixtures.ts';
import type { Backend } from './helpers/fixtures.ts';
import { RawClient } from './http/wire.ts';
import { egressSidecar } from '../helpers/istio-yaml.ts';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

const EGRESS = '127.0.36.1';

async function startPilot(yaml: string): Promise<string> {
  const dir = mkdtempSync(path.join(tmpdir(), 'sextant-paths-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'mesh.yaml'), yaml);
  const pilot = await spawnPilot({ configDir: dir });
  cleanups.push(pilot.close);
  return pilot.xds;
}

test('a /public route cannot reach /admin: the path is normalized before routing, and sent upstream normalized', async () => {
  const pub = await startBackend('public');
  const admin = await startBackend('admin');
  cleanups.push(pub.close, admin.close);
  const xds = await startPilot(`
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shop, namespace: default}
spec:
  hosts: [shop.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: shop}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: shop-public, namespace: default}
spec: {address: 127.0.0.1, labels: {app: shop, tier: public}, ports: {http: ${pub.port}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: shop-admin, namespace: default}
spec: {address: 127.0.0.1, labels: {app: shop, tier: admin}, ports: {http: ${admin.port}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: shop, namespace: default}
spec:
  host: shop.default.svc.cluster.local
  subsets:
  - {name: public, labels: {tier: public}}
  - {name: admin, labels: {tier: admin}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: default}
spec:
  hosts: [shop.default.svc.cluster.local]
  http:
  - match: [{uri: {prefix: /public}}]
    route: [{destination: {host: shop.default.svc.cluster.local, subset: public}}]
  - route: [{destination: {host: shop.default.svc.cluster.local, subset: admin}}]
---
${egressSidecar({ name: 'web', bind: EGRESS })}
`);
  const client = await startProxy({ xds, id: `sidecar~${EGRESS}~web-v1-aaaaa.default~default.svc.cluster.local`, labels: { app: 'web', version: 'v1' }, adminAddress: '127.0.0.1:0', logger: silent, drainMs: 200 });
  cleanups.push(() => client.drain(100));
  await client.whenReady();
  const host = { Host: 'shop.default.svc.cluster.local:9080' };
  const get = async (p: string): Promise<{ status: number; backend: Backend | undefined; url: string }> => {
    const r = await send(9080, p, host, { host: EGRESS });
    const backend = r.headers['x-backend'] === 'public' ? pub : r.headers['x-backend'] === 'admin' ? admin : undefined;
    return { status: r.status, backend, url: backend?.lastUrl ?? '' };
  };

  // An already-normal path keeps its exact bytes upstream, escapes and query included.
  assert.deepEqual(await get('/public/x'), { status: 200, backend: pub, url: '/public/x' });
  assert.deepEqual(await get('/public/a%2Fb%20c?next=/../admin&d=%2e%2e'), { status: 200, backend: pub, url: '/public/a%2Fb%20c?next=/../admin&d=%2e%2e' });
  // Dot segments, spelled in any of the ways a server might resolve them, leave /public.
  assert.deepEqual(await get('/public/../admin'), { status: 200, backend: admin, url: '/admin' });
  assert.deepEqual(await get('/public/%2e%2E/admin?x=1'), { status: 200, backend: admin, url: '/admin?x=1' });
  assert.deepEqual(await get('/public\\..\\admin'), { status: 200, backend: admin, url: '/admin' });
  assert.deepEqual(await get('/%70ublic/x'), { status: 200, backend: pub, url: '/public/x' });
  // BASE keeps an escaped slash escaped (it is not a separator) and does not merge slashes.
  assert.deepEqual(await get('/public/..%2Fadmin'), { status: 200, backend: pub, url: '/public/..%2Fadmin' });
  assert.deepEqual(await get('//public/x'), { status: 200, backend: admin, url: '//public/x' });

  // A NUL cannot be normalized: 400, and the connection is closed as Envoy closes it.
  const hits = pub.hits + admin.hits;
  const c = await RawClient.connect(9080, EGRESS);
  c.write('GET /public/%00 HTTP/1.1\r\nHost: shop.default.svc.cluster.local:9080\r\n\r\n');
  assert.match(await c.untilClosed(), /^HTTP\/1\.1 400 Bad Request\r\n/);
  assert.equal(pub.hits + admin.hits, hits, 'nothing reached a backend');
});

test("the connection manager's escaped-slash actions, and targets that are not origin-form", async () => {
  const app = await startBackend('app');
  cleanups.push(app.close);
  const [redirectPort, rejectPort] = [await freePort(), await freePort()];
  const cluster = 'outbound|9080||app.default.svc.cluster.local';
  const mesh = await meshWith({
    clusters: [edsCluster(cluster)],
    endpoints: [assignment(cluster, [app.port])],
    listeners: [
      httpListener('redirect', redirectPort, 'app', { hcm: { normalizePath: true, mergeSlashes: true, pathWithEscapedSlashesAction: 'UNESCAPE_AND_REDIRECT' } }),
      httpListener('reject', rejectPort, 'app', { hcm: { normalizePath: true, pathWithEscapedSlashesAction: 'REJECT_REQUEST' } }),
    ],
    routes: [routeConfig('app', [{ name: 'app', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster } }] }])],
  });
  cleanups.push(mesh.close);
  await mesh.proxy.whenReady();

  // UNESCAPE_AND_REDIRECT: 307 to the path as it would be forwarded, query kept.
  const moved = await send(redirectPort, '/a%2F%2fb/../c?q=%2F', { Host: 'app' });
  assert.equal(moved.status, 307);
  assert.equal(moved.headers.location, '/a/c?q=%2F');
  assert.equal(app.hits, 0);
  // gRPC clients do not follow redirects: Envoy's 400 instead, which a gRPC caller gets as a
  // trailers-only status (400 is INTERNAL in Envoy's httpToGrpcStatus).
  const grpc = await send(redirectPort, '/pkg.Svc%2FMethod', { Host: 'app', 'content-type': 'application/grpc' }, { method: 'POST' });
  assert.equal(grpc.status, 200);
  assert.equal(grpc.headers['grpc-status'], '13');
  assert.equal(app.hits, 0);
  // No escaped slash: forwarded, normalized and merged.
  assert.equal(JSON.parse((await send(redirectPort, '/a//b/./c', { Host: 'app' })).body).url, '/a/b/c');

  // REJECT_REQUEST: 400 for an escaped slash or backslash anywhere in the path, not the query.
  assert.equal((await send(rejectPort, '/a%5cb', { Host: 'app' })).status, 400);
  assert.equal((await send(rejectPort, '/a/b?next=%2F', { Host: 'app' })).status, 200);
  assert.equal(app.lastUrl, '/a/b?next=%2F');

  // Neither origin-form nor absolute-form: Envoy's codec answers 400; OPTIONS * is a 404.
  const c = await RawClient.connect(rejectPort);
  c.write('GET a/b HTTP/1.1\r\nHost: app\r\n\r\n');
  assert.match(await c.untilClosed(), /^HTTP\/1\.1 400 Bad Request\r\n[^]*\r\n\r\nBad Request$/);
  const star = await send(rejectPort, '*', { Host: 'app' }, { method: 'OPTIONS' });
  assert.equal(star.status, 404);
});
