// WasmPlugin end to end: `sextant pilot` reads WasmPlugins from its config directory, fetches
// their modules (HTTP, an OCI registry, or leaves file:// to the proxy), and serves them over
// ECDS; the reviews sidecar runs them on the requests it receives. Modules are built from
// AssemblyScript source with the proxy-wasm SDK.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startProxy } from '../../src/proxy/index.ts';
import type { Proxy } from '../../src/proxy/index.ts';
import { silent, startBackend } from '../proxy/helpers/fixtures.ts';
import type { Backend } from '../proxy/helpers/fixtures.ts';
import { spawnPilot, waitFor } from '../helpers/pilot-process.ts';
import { ingressSidecar } from '../helpers/istio-yaml.ts';
import { buildFilter } from '../helpers/wasm-filters.ts';

const SERVER = '127.0.61.3';
const cleanups: (() => Promise<void> | void)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

let dir: string;
let app: Backend;
let server: Proxy;
let modules: http.Server;
let origin = '';
let registry = '';
const files: Record<string, Buffer> = {};
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

interface Reply { status: number; headers: http.IncomingHttpHeaders; body: string }

function call(target: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: SERVER, port: 9080, path: target, agent: false, headers: { Host: 'reviews.shop.svc.cluster.local:9080' }, setHost: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

function writePlugins(yaml: string): void {
  const tmp = path.join(path.dirname(dir), `.wasm-${process.pid}.tmp`);
  writeFileSync(tmp, yaml);
  renameSync(tmp, path.join(dir, 'wasm.yaml'));
}

/** Until the sidecar's inbound chain names exactly these plugins (ECDS) and has their configs. */
async function untilRunning(plugins: string[]): Promise<void> {
  const names = plugins.map((p) => `extensions.istio.io/wasmplugin/shop.${p}`);
  await waitFor(`the sidecar running ${plugins.join(', ') || 'no plugin'}`, async () => {
    const listener = server.config.listeners.get(`${SERVER}_9080`)?.sourceKey ?? '';
    const named = [...listener.matchAll(/extensions\.istio\.io\/wasmplugin\/[a-z0-9.-]+/g)].map((m) => m[0]);
    const configs = server.listeners.wasm.extensionConfigNames;
    return named.length === names.length && names.every((n) => named.includes(n) && configs.includes(n));
  }, 30_000);
}

const wasmPlugin = (name: string, spec: string): string => `apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: ${name}, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
${spec}`;

before(async () => {
  files['header.wasm'] = await buildFilter('header');
  const deny = await buildFilter('deny');
  files['trap.wasm'] = await buildFilter('trap');
  // modules over HTTP, and an OCI registry (the distribution API, no auth) holding the deny filter
  const layerDigest = `sha256:${sha(deny)}`;
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', layers: [{ mediaType: 'application/vnd.module.wasm.content.layer.v1+wasm', digest: layerDigest, size: deny.length }] }));
  modules = http.createServer((req, res) => {
    const url = req.url ?? '/';
    if (url === '/v2/filters/deny/manifests/v1') return void res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }).end(manifest);
    if (url === `/v2/filters/deny/blobs/${layerDigest}`) return void res.writeHead(200).end(deny);
    const f = files[url.slice(1)];
    if (f === undefined) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'application/wasm' }).end(f);
  });
  await new Promise<void>((r) => modules.listen(0, '127.0.0.1', () => r()));
  const port = (modules.address() as AddressInfo).port;
  origin = `http://127.0.0.1:${port}`;
  registry = `127.0.0.1:${port}`;
  cleanups.push(() => new Promise<void>((r) => { modules.closeAllConnections(); modules.close(() => r()); }));

  app = await startBackend('reviews');
  cleanups.push(app.close);
  dir = mkdtempSync(path.join(tmpdir(), 'sextant-wasm-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'trap.wasm'), files['trap.wasm']);
  writeFileSync(path.join(dir, 'mesh.yaml'), `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: shop}
spec: {address: ${SERVER}, labels: {app: reviews}, ports: {http: 9080}}
---
${ingressSidecar({ name: 'reviews', namespace: 'shop', bind: SERVER, defaultEndpoint: `127.0.0.1:${app.port}` })}
`);
  writePlugins('');
  const pilot = await spawnPilot({ configDir: dir, args: ['--debounce-after', '10ms', '--wasm-insecure-registries', registry] });
  cleanups.push(pilot.close);
  server = await startProxy({ xds: pilot.xds, id: `sidecar~${SERVER}~reviews-v1-aaaaa.shop~shop.svc.cluster.local`, labels: { app: 'reviews' }, adminAddress: '127.0.0.1:0', logger: silent, drainMs: 200 });
  cleanups.push(() => server.drain(100));
  await server.whenReady();
});

test('WasmPlugins from an HTTP URL (sha256 checked) and an OCI registry run in the sidecar, each at its phase', async () => {
  writePlugins(`${wasmPlugin('header', `  url: ${origin}/header.wasm
  sha256: "${sha(files['header.wasm']!)}"
  pluginName: add_header
  phase: STATS
  pluginConfig: {greeting: hi}`)}
---
${wasmPlugin('deny', `  url: oci://${registry}/filters/deny:v1
  pluginName: deny
  phase: AUTHZ
  pluginConfig: {denyPrefix: /admin}`)}
`);
  await untilRunning(['header', 'deny']);
  const ok = await call('/reviews/1');
  assert.equal(ok.status, 200);
  assert.equal(JSON.parse(ok.body).name, 'reviews');
  assert.equal(ok.headers['x-wasm-filter'], '{"greeting":"hi"}');
  assert.ok(JSON.parse(ok.body).headers.includes('x-wasm-request'), 'the app sees the header the plugin added');
  const denied = await call('/admin/users');
  assert.equal(denied.status, 403);
  assert.equal(denied.body, 'denied by policy\n');
  assert.equal(denied.headers['x-denied-by'], 'wasm');
});

test('failStrategy: a trapping plugin (file:// module) answers 503 when FAIL_CLOSE, lets the request through when FAIL_OPEN', async () => {
  const trap = (strategy: string): string => wasmPlugin('trap', `  url: file://${path.join(dir, 'trap.wasm')}
  pluginName: trap
  failStrategy: ${strategy}`);
  writePlugins(trap('FAIL_CLOSE'));
  await untilRunning(['trap']);
  assert.equal((await call('/trap')).status, 503);
  assert.equal((await call('/reviews/1')).status, 200);
  writePlugins(trap('FAIL_OPEN'));
  await waitFor('the FAIL_OPEN config', async () => server.listeners.wasm.discoveredPlugin('extensions.istio.io/wasmplugin/shop.trap')?.spec.failOpen === true);
  const r = await call('/trap');
  assert.equal(r.status, 200);
  assert.equal(JSON.parse(r.body).url, '/trap');
});

test('a module whose sha256 does not match is refused by the pilot: FAIL_CLOSE answers 503, and the sidecar says why', async () => {
  writePlugins(wasmPlugin('bad', `  url: ${origin}/header.wasm
  sha256: "${'0'.repeat(64)}"
  pluginName: add_header`));
  await untilRunning(['bad']);
  assert.equal((await call('/reviews/1')).status, 503);
  const status = server.listeners.wasm.status().find((p) => p.name === 'shop.bad')!;
  assert.equal(status.failure, `the control plane could not fetch the module ${origin}/header.wasm: sha256 ${sha(files['header.wasm']!)} of ${origin}/header.wasm is not the expected ${'0'.repeat(64)}`);
});

test('deleting the WasmPlugins takes their filters out', async () => {
  writePlugins('');
  await untilRunning([]);
  const r = await call('/reviews/1');
  assert.equal(r.status, 200);
  assert.equal(r.headers['x-wasm-filter'], undefined);
});
