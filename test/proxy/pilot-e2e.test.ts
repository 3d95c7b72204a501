// The proxy against the real control plane: `sextant pilot` serves Istio YAML (ServiceEntry,
// WorkloadEntry, Sidecar with captureMode NONE binds, VirtualService); two proxies (client
// and server sidecar) carry a request from one app to the other.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startProxy } from '../../src/proxy/index.ts';
import { send, silent, startBackend } from './helpers/fixtures.ts';
import { spawnPilot } from '../helpers/pilot-process.ts';
import { egressSidecar, ingressSidecar } from '../helpers/istio-yaml.ts';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

test('a request from productpage reaches reviews v2 through both sidecars, routed by the pilot config', async () => {
  const v1 = await startBackend('reviews-v1');
  const v2 = await startBackend('reviews-v2');
  cleanups.push(v1.close, v2.close);
  const dir = mkdtempSync(path.join(tmpdir(), 'sextant-e2e-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const yaml = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: default, labels: {app: reviews, version: v1}}
spec: {address: 127.0.31.3, labels: {app: reviews, version: v1}, ports: {http: 9080}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v2, namespace: default, labels: {app: reviews, version: v2}}
spec: {address: 127.0.31.4, labels: {app: reviews, version: v2}, ports: {http: 9080}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews.default.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews.default.svc.cluster.local, subset: v2}}]
  - route: [{destination: {host: reviews.default.svc.cluster.local, subset: v1}}]
---
${egressSidecar({ name: 'productpage', bind: '127.0.32.1' })}
---
${ingressSidecar({ name: 'reviews-v1', labels: { app: 'reviews', version: 'v1' }, bind: '127.0.31.3', defaultEndpoint: `127.0.0.1:${v1.port}` })}
---
${ingressSidecar({ name: 'reviews-v2', labels: { app: 'reviews', version: 'v2' }, bind: '127.0.31.4', defaultEndpoint: `127.0.0.1:${v2.port}` })}
`;
  writeFileSync(path.join(dir, 'mesh.yaml'), yaml);
  const pilot = await spawnPilot({ configDir: dir });
  cleanups.push(pilot.close);
  const { xds } = pilot;
  const start = (id: string, labels: Record<string, string>) => startProxy({ xds, id, labels, adminAddress: '127.0.0.1:0', logger: silent, drainMs: 200 });
  const client = await start('sidecar~127.0.32.1~productpage-v1-aaaaa.default~default.svc.cluster.local', { app: 'productpage', version: 'v1' });
  const r1 = await start('sidecar~127.0.31.3~reviews-v1-bbbbb.default~default.svc.cluster.local', { app: 'reviews', version: 'v1' });
  const r2 = await start('sidecar~127.0.31.4~reviews-v2-ccccc.default~default.svc.cluster.local', { app: 'reviews', version: 'v2' });
  cleanups.push(() => client.drain(100), () => r1.drain(100), () => r2.drain(100));
  await Promise.all([client.whenReady(), r1.whenReady(), r2.whenReady()]);

  const plain = await send(9080, '/reviews/1', { Host: 'reviews.default.svc.cluster.local:9080' }, { host: '127.0.32.1' });
  assert.equal(plain.status, 200);
  assert.equal(JSON.parse(plain.body).name, 'reviews-v1');
  const jason = await send(9080, '/reviews/1', { Host: 'reviews:9080', 'end-user': 'jason' }, { host: '127.0.32.1' });
  assert.equal(JSON.parse(jason.body).name, 'reviews-v2');
  // The app behind the server sidecar sees the client sidecar's address as the caller.
  const h = v2.lastHeaders;
  const xff = h[h.findIndex((x, i) => i % 2 === 0 && x.toLowerCase() === 'x-forwarded-for') + 1];
  assert.ok(xff, 'x-forwarded-for reaches the app');
});
