// Istio mutual TLS at the socket level: the server's first-byte inspection, client
// certificates required, SPIFFE identities checked on full and resumed handshakes alike.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { acceptTls, looksLikeTls } from '../../../src/proxy/tls/downstream.ts';
import { UpstreamTls } from '../../../src/proxy/tls/upstream.ts';
import type { DownstreamTlsSpec, UpstreamTlsSpec } from '../../../src/proxy/tls/transport-socket.ts';
import { connectTcp } from '../../../src/proxy/upstream/connection.ts';
import type { WorkloadCertificates } from '../../../src/proxy/tls/workload-certificates.ts';
import { testRoot, workloadCerts } from './helpers.ts';

const closers: (() => void)[] = [];
after(() => { for (const c of closers) c(); });

const SERVER_SPEC: DownstreamTlsSpec = { mesh: true, requireClientCertificate: true, alpn: ['h2', 'http/1.1'], sans: [] };

/** An echo server that answers `principal|alpn|tlsVersion|resumed` over mTLS, or `plain` for plaintext. */
async function mtlsServer(certs: WorkloadCertificates): Promise<{ port: number; refused: string[] }> {
  const refused: string[] = [];
  const server = net.createServer((sock) => {
    sock.once('data', (chunk) => {
      sock.pause();
      sock.unshift(chunk);
      if (!looksLikeTls(chunk)) {
        sock.end('plain');
        return;
      }
      acceptTls(sock, SERVER_SPEC, { certs, trustDomain: 'cluster.local' }).then((a) => {
        a.socket.end(`${a.principal}|${a.offeredAlpn.join(',')}|${a.socket.getProtocol()}|${a.socket.isSessionReused()}`);
      }, (err: Error) => refused.push(err.message));
      // not resumed: TLS replays the unshifted bytes itself
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => server.close());
  return { port: (server.address() as net.AddressInfo).port, refused };
}

async function call(client: UpstreamTls, port: number, spec: UpstreamTlsSpec): Promise<string> {
  const ep = { host: '127.0.0.1', port };
  const opened = await client.connector(spec).secure(await connectTcp(ep, 2000), ep, 2000);
  return new Promise((resolve) => {
    let body = '';
    opened.sink.target = (b) => { body += b.toString(); };
    opened.socket.once('end', () => resolve(body));
    opened.socket.once('close', () => resolve(body));
  });
}

const ISTIO_HTTP: UpstreamTlsSpec = { sni: 'outbound_.9080_._.reviews.default.svc.cluster.local', alpn: ['istio-http/1.1', 'istio', 'http/1.1'], sans: ['spiffe://cluster.local/ns/default/sa/reviews'] };

test('sidecar to sidecar: TLS 1.3, the client\'s SPIFFE identity on the server, the server\'s checked by the client, on resumed handshakes too', async () => {
  const root = await testRoot();
  const serverCerts = await workloadCerts(root, 'default', 'reviews');
  const clientCerts = await workloadCerts(root, 'default', 'productpage');
  await serverCerts.start();
  await clientCerts.start();
  const { port } = await mtlsServer(serverCerts);
  const client = new UpstreamTls({ certs: clientCerts, trustDomain: 'cluster.local' });
  assert.equal(await call(client, port, ISTIO_HTTP), 'spiffe://cluster.local/ns/default/sa/productpage|istio-http/1.1,istio,http/1.1|TLSv1.3|false');
  // the session ticket from the first connection is reused, and the peer still checked
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(await call(client, port, ISTIO_HTTP), 'spiffe://cluster.local/ns/default/sa/productpage|istio-http/1.1,istio,http/1.1|TLSv1.3|true');
  assert.equal(client.resumed, 1);
});

test('a server whose certificate names another identity is refused by the client, resumed or not', async () => {
  const root = await testRoot();
  const evil = await workloadCerts(root, 'default', 'evil');
  const clientCerts = await workloadCerts(root, 'default', 'productpage');
  await evil.start();
  await clientCerts.start();
  const { port } = await mtlsServer(evil);
  const client = new UpstreamTls({ certs: clientCerts, trustDomain: 'cluster.local' });
  await assert.rejects(call(client, port, ISTIO_HTTP), /peer identity spiffe:\/\/cluster.local\/ns\/default\/sa\/evil is not one of spiffe:\/\/cluster.local\/ns\/default\/sa\/reviews/);
  // a session got for an acceptable identity is never offered under another expectation
  const anyMesh: UpstreamTlsSpec = { ...ISTIO_HTTP, sans: [] };
  assert.match(await call(client, port, anyMesh), /^spiffe:\/\/cluster.local\/ns\/default\/sa\/productpage\|/);
  await assert.rejects(call(client, port, ISTIO_HTTP), /is not one of/);
  assert.equal(client.peerRefused, 2);
});

test('a client with a certificate of another mesh, or with none, is refused by the server', async () => {
  const root = await testRoot();
  const otherRoot = await testRoot();
  const serverCerts = await workloadCerts(root, 'default', 'reviews');
  const stranger = await workloadCerts(otherRoot, 'default', 'productpage');
  await serverCerts.start();
  await stranger.start();
  const { port, refused } = await mtlsServer(serverCerts);
  const client = new UpstreamTls({ certs: stranger, trustDomain: 'cluster.local' });
  await assert.rejects(call(client, port, ISTIO_HTTP));
  const tls = await import('node:tls');
  await new Promise<void>((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ALPNProtocols: ['istio'] });
    s.on('error', () => resolve());
    s.on('close', () => resolve());
    s.resume();
  });
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(refused.length, 2);
  assert.match(refused.join('\n'), /TLS handshake failed|peer certificate not trusted/);
});

test('plaintext is told from TLS by the first byte', async () => {
  const root = await testRoot();
  const serverCerts = await workloadCerts(root, 'default', 'reviews');
  await serverCerts.start();
  const { port } = await mtlsServer(serverCerts);
  const body = await new Promise<string>((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\n\r\n'));
    let b = '';
    s.on('data', (c) => { b += c.toString(); });
    s.on('close', () => resolve(b));
  });
  assert.equal(body, 'plain');
});

test('rotation: a new key and serial at half the lifetime, the next generation\'s contexts', async () => {
  const root = await testRoot();
  const certs = await workloadCerts(root, 'default', 'reviews', { ttlSeconds: 2 });
  const first = await certs.start();
  const ctx = certs.clientContext();
  const rotated = await new Promise<{ serial: string; generation: number; keyPem: string }>((r) => certs.onRotate(r));
  certs.close();
  assert.equal(rotated.generation, 2);
  assert.notEqual(rotated.serial, first.serial);
  assert.notEqual(rotated.keyPem, first.keyPem);
  assert.notEqual(certs.clientContext(), ctx);
});
