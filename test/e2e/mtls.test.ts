// Mutual TLS between two sidecars with the pilot as CA: PeerAuthentication STRICT refuses
// plaintext and carries the caller's SPIFFE identity to the server's access log over TLS 1.3;
// PERMISSIVE takes both; a server with an unexpected identity is refused; openssl as a peer.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import tls from 'node:tls';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import { send } from '../proxy/helpers/fixtures.ts';
import { accessLogLines, CLIENT_EGRESS, SERVER_ADDRESS, startMtlsMesh } from './mtls-helpers.ts';
import type { MtlsMesh } from './mtls-helpers.ts';

const STRICT = `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
`;
const PERMISSIVE = `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: PERMISSIVE}}
`;

let mesh: MtlsMesh;
before(async () => { mesh = await startMtlsMesh(STRICT); });
after(async () => { await mesh?.close(); });

const HOST = { Host: 'reviews.default.svc.cluster.local:9080' };

/** The SPIFFE identities the client sidecar expects of reviews (its cluster's TLS). */
function expectedSans(): readonly string[] {
  return mesh.client.config.clusters.get('outbound|9080||reviews.default.svc.cluster.local')?.tls?.sans ?? [];
}

/** A plaintext HTTP/1.1 request straight to the server sidecar's inbound port: the raw answer ('' when closed unanswered). */
function plaintextToInbound(): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(9080, SERVER_ADDRESS, () => s.write('GET /direct HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n'));
    let body = '';
    s.on('data', (c) => { body += c.toString('latin1'); });
    s.on('error', () => resolve(body));
    s.on('close', () => resolve(body));
  });
}

/** openssl s_client to the server sidecar with the given client certificate files; its whole output. */
function opensslClient(files: { cert?: string; key?: string; ca: string }, alpn: string): Promise<string> {
  const args = ['s_client', '-connect', `${SERVER_ADDRESS}:9080`, '-CAfile', files.ca, '-alpn', alpn, '-ign_eof', '-brief'];
  if (files.cert !== undefined && files.key !== undefined) args.push('-cert', files.cert, '-key', files.key);
  // not spawnSync: the sidecars run in this process and must keep answering
  const child = spawn('openssl', args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => { out += c.toString('latin1'); });
  child.stderr.on('data', (c: Buffer) => { out += c.toString('latin1'); });
  child.stdin.end('GET /openssl HTTP/1.1\r\nHost: reviews\r\nConnection: close\r\n\r\n');
  const timer = setTimeout(() => child.kill(), 10_000);
  return new Promise((resolve) => child.on('close', () => { clearTimeout(timer); resolve(out); }));
}

test('STRICT: sidecar to sidecar over TLS 1.3, the caller\'s SPIFFE identity in the server\'s access log; plaintext refused', async () => {
  const hits = mesh.backend.hits;
  const r = await send(9080, '/reviews/1', HOST, { host: CLIENT_EGRESS });
  assert.equal(r.status, 200);
  assert.equal(JSON.parse(r.body).url, '/reviews/1');
  assert.equal(mesh.backend.hits, hits + 1);
  assert.equal(mesh.client.upstreamTls?.handshakes, 1);
  // the access log is buffered: give it a moment
  await new Promise((res) => setTimeout(res, 300));
  const line = accessLogLines(mesh).find((l) => l['path'] === '/reviews/1');
  assert.ok(line, 'the request is in the server sidecar\'s access log');
  assert.equal(line['downstream_peer_uri_san'], 'spiffe://cluster.local/ns/default/sa/productpage');

  assert.equal(await plaintextToInbound(), '', 'a plaintext client gets no HTTP response');
  assert.equal(mesh.backend.hits, hits + 1, 'the app never saw the plaintext request');
  const stats = await (await fetch(`http://${mesh.client.adminAddress}/stats/prometheus`)).text();
  assert.match(stats, /^sextant_mtls_upstream_handshakes_total\{resumed="false"\} 1$/m);
  assert.match(stats, /^sextant_workload_cert_generation 1$/m);
});

/** Sends `text` on a TCP connection to `host:port`; what comes back within 2 s ('' when closed). */
function tcpExchange(host: string, port: number, text: string): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, host, () => s.write(text));
    let got = '';
    const timer = setTimeout(() => s.destroy(), 2000);
    s.on('data', (c) => { got += c.toString(); if (got.length >= text.length + 5) s.destroy(); });
    s.on('error', () => undefined);
    s.on('close', () => { clearTimeout(timer); resolve(got); });
  });
}

test('STRICT: a WebSocket passes both sidecars inside mTLS (the Upgrade tunnel uses the cluster\'s TLS), messages both ways', async () => {
  const wss = new WebSocketServer({ noServer: true });
  const onUpgrade = (req: http.IncomingMessage, socket: Duplex, head: Buffer): void => wss.handleUpgrade(req, socket, head, (ws) => ws.on('message', (data, binary) => ws.send(Buffer.concat([Buffer.from('echo:'), Buffer.from(data as Buffer)]), { binary })));
  mesh.backend.server.on('upgrade', onUpgrade);
  const handshakes = mesh.client.upstreamTls?.handshakes ?? 0;
  const ws = new WebSocket(`ws://${CLIENT_EGRESS}:9080/chat`, { headers: { Host: HOST.Host } });
  try {
    await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject); ws.once('unexpected-response', (_q, res) => reject(new Error(`status ${res.statusCode}`))); });
    const got = new Promise<string>((resolve) => ws.once('message', (d) => resolve(Buffer.from(d as Buffer).toString())));
    ws.send('hello over mTLS');
    assert.equal(await got, 'echo:hello over mTLS');
    assert.ok((mesh.client.upstreamTls?.handshakes ?? 0) > handshakes, 'the tunnel made a TLS handshake to the server sidecar');
  } finally {
    ws.close();
    mesh.backend.server.off('upgrade', onUpgrade);
    wss.close();
  }
});

test('STRICT: TCP through both sidecars over mTLS (istio-peer-exchange); plaintext TCP to the inbound port refused', async () => {
  assert.equal(await tcpExchange(CLIENT_EGRESS, 9091, 'ping'), 'echo:ping');
  assert.equal(await tcpExchange(SERVER_ADDRESS, 9091, 'ping'), '');
});

test('STRICT: a mesh client offering Istio\'s HTTP/2 ALPN gets h2 inside mTLS, and HTTP/1 goes on being served', async () => {
  const c = mesh.client.certificates!;
  const alert = await new Promise<string>((resolve) => {
    const s = tls.connect({ host: SERVER_ADDRESS, port: 9092, secureContext: c.clientContext(), ALPNProtocols: ['istio-h2', 'istio', 'h2'], checkServerIdentity: () => undefined });
    s.on('secureConnect', () => {
      resolve(`connected with ${String(s.alpnProtocol)}`);
      s.destroy();
    });
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
  assert.equal(alert, 'connected with h2');
  assert.equal((await send(9080, '/after-h2', HOST, { host: CLIENT_EGRESS })).status, 200);
});

test('STRICT: openssl with a mesh certificate negotiates TLS 1.3 and Istio\'s ALPN; without one it is refused', async () => {
  const secret = mesh.client.certificates!.current()!;
  const files = { cert: path.join(mesh.dir, 'client.pem'), key: path.join(mesh.dir, 'client-key.pem'), ca: path.join(mesh.dir, 'root.pem') };
  writeFileSync(files.cert, secret.chainPem);
  writeFileSync(files.key, secret.keyPem);
  writeFileSync(files.ca, secret.rootPem);
  const ok = await opensslClient(files, 'istio-http/1.1,istio,http/1.1');
  assert.match(ok, /Protocol version: TLSv1\.3/);
  assert.match(ok, /HTTP\/1\.1 200 OK/);
  assert.match(ok, /"url":"\/openssl"/);
  const refused = await opensslClient({ ca: files.ca }, 'istio-http/1.1');
  assert.doesNotMatch(refused, /HTTP\/1\.1 200/);
});

test('a server whose identity is not the one the DestinationRule expects is refused (503 UF), and sees no request', async () => {
  await mesh.setPolicy(`${STRICT}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL, subjectAltNames: ["spiffe://cluster.local/ns/default/sa/ratings"]}}
`, () => expectedSans().includes('spiffe://cluster.local/ns/default/sa/ratings'));
  const hits = mesh.backend.hits;
  const r = await send(9080, '/wrong-san', HOST, { host: CLIENT_EGRESS });
  assert.equal(r.status, 503);
  assert.equal(r.headers['x-envoy-response-flags'] ?? 'UF', 'UF');
  assert.equal(mesh.backend.hits, hits);
  assert.ok((mesh.client.upstreamTls?.peerRefused ?? 0) > 0);
  // the right identity is accepted again
  await mesh.setPolicy(`${STRICT}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL, subjectAltNames: ["spiffe://cluster.local/ns/default/sa/reviews"]}}
`, () => expectedSans().includes('spiffe://cluster.local/ns/default/sa/reviews'));
  assert.equal((await send(9080, '/right-san', HOST, { host: CLIENT_EGRESS })).status, 200);
});

test('PERMISSIVE: plaintext and mTLS both accepted on the same port', async () => {
  await mesh.setPolicy(PERMISSIVE, () => [...mesh.server.config.listeners.values()].some((l) => l.filterChains.some((c) => c.transportProtocol === 'raw_buffer')));
  const plain = await plaintextToInbound();
  assert.match(plain, /^HTTP\/1\.1 200 OK/);
  assert.equal((await send(9080, '/permissive', HOST, { host: CLIENT_EGRESS })).status, 200);
  await new Promise((res) => setTimeout(res, 300));
  const lines = accessLogLines(mesh);
  assert.equal(lines.find((l) => l['path'] === '/direct')?.['downstream_peer_uri_san'], null);
  assert.equal(lines.find((l) => l['path'] === '/permissive')?.['downstream_peer_uri_san'], 'spiffe://cluster.local/ns/default/sa/productpage');
});

test('PERMISSIVE: plaintext TCP to the inbound port keeps its first bytes (sent before the upstream connects)', async () => {
  await mesh.setPolicy(PERMISSIVE, () => [...mesh.server.config.listeners.values()].some((l) => l.filterChains.some((c) => c.transportProtocol === 'raw_buffer')));
  const answer = await new Promise<string>((resolve) => {
    const s = net.connect(9091, SERVER_ADDRESS, () => s.write('first-bytes'));
    let got = '';
    s.on('data', (c) => { got += c.toString(); if (got.length >= 'echo:first-bytes'.length) { s.destroy(); resolve(got); } });
    s.on('error', () => resolve(got));
    s.on('close', () => resolve(got));
    setTimeout(() => { s.destroy(); resolve(got); }, 5000);
  });
  assert.equal(answer, 'echo:first-bytes');
});
