// gRPC inside the sidecars' mutual TLS: a grpc-js client → its sidecar (h2c on the egress
// listener) → mTLS with ALPN h2 (PeerAuthentication STRICT) → the server's sidecar → a grpc-js
// server. Unary and server streaming; the caller's SPIFFE identity in the server sidecar's log.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { startPilot } from '../../src/pilot/index.ts';
import type { Pilot } from '../../src/pilot/index.ts';
import { startProxy } from '../../src/proxy/index.ts';
import type { Proxy } from '../../src/proxy/index.ts';
import { startBackend } from '../proxy/helpers/fixtures.ts';
import type { Backend } from '../proxy/helpers/fixtures.ts';
import { echoClient, startEchoServer, unary } from '../helpers/grpc-echo.ts';
import type { EchoClient, EchoServer } from '../helpers/grpc-echo.ts';
import { accessLogLines, meshYaml } from './mtls-helpers.ts';
import type { MtlsMesh } from './mtls-helpers.ts';

// addresses of their own: the other mTLS files bind fixed ports on theirs
const SERVER = '127.0.47.3';
const CLIENT = '127.0.48.1';
const HOST = 'reviews.default.svc.cluster.local';
const PRODUCTPAGE = 'spiffe://cluster.local/ns/default/sa/productpage';
const STRICT = `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
`;
const silent = pino({ level: 'silent' });

let dir: string;
let pilot: Pilot;
let backend: Backend;
let echo: EchoServer;
let clientSidecar: Proxy;
let serverSidecar: Proxy;
let client: EchoClient;
let accessLog: string;
let policyFile: string;

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'sextant-grpc-mtls-'));
  const configDir = path.join(dir, 'config');
  mkdirSync(configDir);
  accessLog = path.join(dir, 'reviews-access.log');
  backend = await startBackend('reviews');
  // the gRPC app behind the server sidecar's HTTP2 inbound port (9092)
  echo = await startEchoServer('v1');
  writeFileSync(path.join(configDir, 'mesh.yaml'), meshYaml(backend.port, accessLog, backend.port, SERVER, CLIENT, echo.port));
  policyFile = path.join(configDir, 'policy.yaml');
  writeFileSync(policyFile, STRICT);
  pilot = await startPilot({
    configDir, xdsAddress: '127.0.0.1:0', httpAddress: '127.0.0.1:0', logger: silent, debounceAfterMs: 20,
    ca: { dir: path.join(dir, 'ca') },
  });
  await pilot.ready;
  const ca = (sa: string) => ({ serviceAccount: sa, ttlSeconds: 3600 });
  clientSidecar = await startProxy({
    xds: pilot.xdsAddress, id: `sidecar~${CLIENT}~productpage-v1-aaaaa.default~default.svc.cluster.local`,
    labels: { app: 'productpage', version: 'v1' }, adminAddress: '127.0.0.1:0', logger: silent, drainMs: 200, ca: ca('productpage'),
  });
  serverSidecar = await startProxy({
    xds: pilot.xdsAddress, id: `sidecar~${SERVER}~reviews-v1-bbbbb.default~default.svc.cluster.local`,
    labels: { app: 'reviews', version: 'v1' }, adminAddress: '127.0.0.1:0', logger: silent, drainMs: 200, ca: ca('reviews'),
  });
  await Promise.all([clientSidecar.whenReady(), serverSidecar.whenReady()]);
  client = echoClient(`${CLIENT}:9092`, `${HOST}:9092`);
});

after(async () => {
  client?.close();
  await Promise.all([clientSidecar?.drain(100), serverSidecar?.drain(100)]);
  await pilot?.close();
  await backend?.close();
  await echo?.close();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

function logLines(): Record<string, unknown>[] {
  return accessLogLines({ accessLog } as MtlsMesh);
}

test('STRICT: unary gRPC through both sidecars over mTLS (ALPN h2), the caller\'s identity in the server sidecar\'s access log', async () => {
  const calls = echo.calls;
  const r = await unary(client, 'hello', { 'x-trailer-order': '7' });
  assert.equal(r.error, null);
  assert.equal(r.value?.toString(), 'v1:hello');
  assert.deepEqual(r.headers?.get('x-echo-server'), ['v1']);
  assert.deepEqual(r.trailers?.get('x-trailer-order'), ['7']);
  assert.equal(echo.calls, calls + 1);
  assert.ok((clientSidecar.upstreamTls?.handshakes ?? 0) >= 1, 'the client sidecar made an mTLS handshake');
  // the access log is buffered: give it a moment
  await new Promise((res) => setTimeout(res, 300));
  const line = logLines().find((l) => l['path'] === '/sextant.test.Echo/Unary');
  assert.ok(line, `the call is in the server sidecar's access log: ${JSON.stringify(logLines())}`);
  assert.equal(line['downstream_peer_uri_san'], PRODUCTPAGE);
  assert.equal(line['protocol'], 'HTTP/2');
  assert.equal(line['response_flags'], '-');
});

test('STRICT: the server sidecar selects ALPN h2 for a mesh client offering Istio\'s HTTP/2 ALPN; plaintext h2c is refused', async () => {
  const c = clientSidecar.certificates!;
  const alpn = await new Promise<string>((resolve) => {
    const s = tls.connect({ host: SERVER, port: 9092, secureContext: c.clientContext(), ALPNProtocols: ['istio-h2', 'istio', 'h2'], checkServerIdentity: () => undefined });
    s.on('secureConnect', () => { resolve(String(s.alpnProtocol)); s.destroy(); });
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
  assert.equal(alpn, 'h2');
  const plain = echoClient(`${SERVER}:9092`, `${HOST}:9092`);
  try {
    const r = await unary(plain, 'direct', {}, { deadline: Date.now() + 3000 });
    assert.notEqual(r.error, null, 'a plaintext caller gets no answer');
  } finally {
    plain.close();
  }
});

test('STRICT: server streaming gRPC over mTLS delivers every message and the status', async () => {
  const md = new grpc.Metadata();
  md.set('x-count', '5');
  const got: string[] = [];
  const status = await new Promise<grpc.StatusObject>((resolve) => {
    const call = client.serverStream(Buffer.from('s'), md);
    call.on('data', (b: Buffer) => got.push(b.toString()));
    call.on('error', () => undefined);
    call.on('status', resolve);
  });
  assert.equal(status.code, grpc.status.OK);
  assert.deepEqual(got, ['0', '1', '2', '3', '4']);
  await new Promise((res) => setTimeout(res, 300));
  const line = logLines().find((l) => String(l['path']).endsWith('/ServerStream'));
  assert.ok(line, 'the stream is in the server sidecar\'s access log');
  assert.equal(line['downstream_peer_uri_san'], PRODUCTPAGE);
});

test('a server whose identity is not the one the DestinationRule expects is refused over HTTP/2 too (UNAVAILABLE), and sees no call', async () => {
  const expected = (): readonly string[] => clientSidecar.config.clusters.get(`outbound|9092||${HOST}`)?.tls?.sans ?? [];
  writeFileSync(policyFile, `${STRICT}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: ${HOST}
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL, subjectAltNames: ["spiffe://cluster.local/ns/default/sa/ratings"]}}
`);
  const start = Date.now();
  while (!expected().includes('spiffe://cluster.local/ns/default/sa/ratings') && Date.now() - start < 10_000) await new Promise((r) => setTimeout(r, 50));
  assert.ok(expected().includes('spiffe://cluster.local/ns/default/sa/ratings'), 'the DestinationRule reached the client sidecar');
  const calls = echo.calls;
  const refused = clientSidecar.upstreamTls?.peerRefused ?? 0;
  const r = await unary(client, 'wrong-san', {}, { deadline: Date.now() + 5000 });
  assert.equal(r.error?.code, grpc.status.UNAVAILABLE);
  assert.equal(echo.calls, calls);
  assert.ok((clientSidecar.upstreamTls?.peerRefused ?? 0) > refused);
});
