// The pilot fetching WasmPlugin modules: over HTTP, and from an OCI registry (a local one
// speaking the distribution API, with an anonymous bearer-token challenge) in both layouts
// Istio pulls (a Wasm artifact layer, an image whose single layer holds plugin.wasm); every
// bound and check refuses with its reason.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { fetchModule, parseOciReference } from '../../../src/pilot/wasm/index.ts';
import type { FetchLimits } from '../../../src/pilot/wasm/index.ts';

const MODULE = Buffer.concat([Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]), Buffer.from('a module for the tests')]);
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A tar with one file (ustar headers, checksums set). */
function tar(name: string, content: Buffer): Buffer {
  const header = Buffer.alloc(512);
  header.write(name, 0, 'latin1');
  header.write('0000644\0', 100, 'latin1');
  header.write('0000000\0', 108, 'latin1');
  header.write('0000000\0', 116, 'latin1');
  header.write(`${content.length.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  header.write('00000000000\0', 136, 'latin1');
  header.write('0', 156, 'latin1');
  header.write('ustar\0' + '00', 257, 'latin1');
  header.fill(' ', 148, 156);
  let sum = 0;
  for (const b of header) sum += b;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  const pad = Buffer.alloc((512 - (content.length % 512)) % 512);
  return Buffer.concat([header, content, pad, Buffer.alloc(1024)]);
}

interface Blob { mediaType: string; bytes: Buffer }
const blobs = new Map<string, Buffer>();
const manifests = new Map<string, Buffer>();
function putImage(repo: string, tag: string, layers: Blob[]): string {
  const l = layers.map((x) => {
    const digest = `sha256:${sha(x.bytes)}`;
    blobs.set(digest, x.bytes);
    return { mediaType: x.mediaType, digest, size: x.bytes.length };
  });
  const m = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: 'sha256:0', size: 2 }, layers: l }));
  manifests.set(`${repo}:${tag}`, m);
  manifests.set(`${repo}:sha256:${sha(m)}`, m);
  return sha(m);
}

let server: http.Server;
let base = '';
let registry = '';
const TOKEN = 'anonymous-token-1';

before(async () => {
  server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/module.wasm') return void res.writeHead(200, { 'content-type': 'application/wasm' }).end(MODULE);
    if (url.pathname === '/big.wasm') { res.writeHead(200); res.write(Buffer.alloc(600)); return void res.end(Buffer.alloc(600)); }
    if (url.pathname === '/slow.wasm') return; // never answers
    if (url.pathname === '/token') {
      assert.equal(url.searchParams.get('service'), 'test-registry');
      return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: TOKEN }));
    }
    const m = /^\/v2\/(.+)\/(manifests|blobs)\/(.+)$/.exec(url.pathname);
    if (m) {
      if (req.headers['authorization'] !== `Bearer ${TOKEN}`) {
        return void res.writeHead(401, { 'www-authenticate': `Bearer realm="${base}/token",service="test-registry",scope="repository:${m[1]}:pull"` }).end();
      }
      const body = m[2] === 'manifests' ? manifests.get(`${m[1]}:${m[3]}`) : blobs.get(m[3]!);
      if (body === undefined) return void res.writeHead(404).end();
      return void res.writeHead(200, { 'content-type': m[2] === 'manifests' ? 'application/vnd.oci.image.manifest.v1+json' : 'application/octet-stream' }).end(body);
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}`;
  registry = `127.0.0.1:${port}`;
  putImage('filters/header', 'v1', [{ mediaType: 'application/vnd.module.wasm.content.layer.v1+wasm', bytes: MODULE }]);
  putImage('filters/compat', 'v1', [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', bytes: gzipSync(tar('plugin.wasm', MODULE)) }]);
  putImage('filters/empty', 'v1', [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', bytes: gzipSync(tar('other.txt', Buffer.from('x'))) }]);
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

const limits = (over: Partial<FetchLimits> = {}): FetchLimits => ({ maxBytes: 1000, timeoutMs: 5000, insecureRegistries: [registry], ...over });

test('HTTP: the module and its sha256; a stated sha256 must match', async () => {
  assert.deepEqual(await fetchModule(`${base}/module.wasm`, undefined, limits()), { bytes: MODULE, sha256: sha(MODULE) });
  assert.deepEqual(await fetchModule(`${base}/module.wasm`, sha(MODULE), limits()), { bytes: MODULE, sha256: sha(MODULE) });
  await assert.rejects(fetchModule(`${base}/module.wasm`, 'a'.repeat(64), limits()),
    { name: 'ModuleFetchError', message: `sha256 ${sha(MODULE)} of ${base}/module.wasm is not the expected ${'a'.repeat(64)}` });
});

test('HTTP: bounded in bytes and time, and a non-200 answer is an error naming it', async () => {
  await assert.rejects(fetchModule(`${base}/big.wasm`, undefined, limits()), { message: `${base}/big.wasm is more than the 1000 bytes allowed` });
  await assert.rejects(fetchModule(`${base}/missing.wasm`, undefined, limits()), { message: `HTTP 404 from ${base}/missing.wasm` });
  await assert.rejects(fetchModule(`${base}/slow.wasm`, undefined, limits({ timeoutMs: 200 })), { message: `fetching ${base}/slow.wasm took longer than 200 ms` });
});

test('OCI: a Wasm artifact and an image with plugin.wasm, anonymous token, manifest digest checked against sha256', async () => {
  assert.deepEqual(await fetchModule(`oci://${registry}/filters/header:v1`, undefined, limits()), { bytes: MODULE, sha256: sha(MODULE) });
  // no scheme is OCI too
  assert.deepEqual(await fetchModule(`${registry}/filters/compat:v1`, undefined, limits()), { bytes: MODULE, sha256: sha(MODULE) });
  const digest = sha(manifests.get('filters/header:v1')!);
  assert.deepEqual((await fetchModule(`oci://${registry}/filters/header@sha256:${digest}`, undefined, limits())).bytes, MODULE);
  assert.deepEqual((await fetchModule(`oci://${registry}/filters/header:v1`, digest, limits())).bytes, MODULE);
  await assert.rejects(fetchModule(`oci://${registry}/filters/header:v1`, 'b'.repeat(64), limits()),
    { message: `manifest digest sha256:${digest} of ${registry}/filters/header:v1 is not the expected sha256:${'b'.repeat(64)}` });
  await assert.rejects(fetchModule(`oci://${registry}/filters/empty:v1`, undefined, limits()), { message: `${registry}/filters/empty:v1: the image has no plugin.wasm` });
  await assert.rejects(fetchModule(`oci://${registry}/filters/none:v1`, undefined, limits()), { message: `HTTP 404 from ${base}/v2/filters/none/manifests/v1` });
});

test('OCI references: registry, repository, tag or digest', () => {
  assert.deepEqual(parseOciReference('ghcr.io/org/filters/auth:1.2'), { registry: 'ghcr.io', repository: 'org/filters/auth', reference: '1.2' });
  assert.deepEqual(parseOciReference('localhost:5000/auth'), { registry: 'localhost:5000', repository: 'auth', reference: 'latest' });
  assert.deepEqual(parseOciReference('r.io/auth@sha256:abc'), { registry: 'r.io', repository: 'auth', reference: 'sha256:abc' });
  assert.throws(() => parseOciReference('auth:1.0'), { message: 'auth:1.0: an OCI reference names a registry and a repository (registry/repository:tag)' });
});
