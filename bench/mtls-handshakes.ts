// Benchmark (not a test) of the sidecar's mesh mTLS handshakes: the client side
// (src/proxy/tls/upstream.ts) against the server side (downstream.ts) in one process, one
// connection at a time, with TLS session resumption on and off, against a plaintext
// connection as the floor. Reports handshakes per second and CPU per connection (both
// sides together, user + system), then request/response round trips on one kept
// connection over mTLS and plaintext (the per-request cost once connected).
//
//   node bench/mtls-handshakes.ts [--seconds 3]
//
// Writes bench/results/mtls-handshakes.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { pino } from 'pino';
import { loadSigningRoot, parseCsr, signWorkloadCertificate } from '../src/pilot/ca/index.ts';
import { acceptTls, looksLikeTls } from '../src/proxy/tls/downstream.ts';
import { UpstreamTls } from '../src/proxy/tls/upstream.ts';
import { WorkloadCertificates } from '../src/proxy/tls/workload-certificates.ts';
import { connectTcp } from '../src/proxy/upstream/connection.ts';
import type { OpenedSocket } from '../src/proxy/upstream/connection.ts';
import { tmpdir } from 'node:os';

const seconds = Number(process.argv[process.argv.indexOf('--seconds') + 1] ?? 3) || 3;
const root = await loadSigningRoot({ dir: path.join(tmpdir(), `sextant-bench-ca-${process.pid}`), trustDomain: 'cluster.local' });
async function certs(sa: string): Promise<WorkloadCertificates> {
  const c = new WorkloadCertificates({
    identity: `spiffe://cluster.local/ns/default/sa/${sa}`, ttlSeconds: 3600, logger: pino({ level: 'silent' }),
    sign: async (csrPem, ttl) => {
      const chain = await signWorkloadCertificate(root, (await parseCsr(csrPem)).csr, `spiffe://cluster.local/ns/default/sa/${sa}`, ttl * 1000);
      return { chainPem: chain.slice(0, -1).join(''), rootPem: chain[chain.length - 1]! };
    },
  });
  await c.start();
  return c;
}
const serverCerts = await certs('reviews');
const clientCerts = await certs('productpage');

// echoes every chunk back, over mTLS or plaintext as the first byte says
const server = net.createServer((sock) => {
  sock.once('data', (chunk) => {
    sock.pause();
    sock.unshift(chunk);
    if (!looksLikeTls(chunk)) {
      sock.on('data', (c) => sock.write(c));
      sock.resume();
      return;
    }
    acceptTls(sock, { mesh: true, requireClientCertificate: true, alpn: ['http/1.1'], sans: [] }, { certs: serverCerts, trustDomain: 'cluster.local' })
      .then((a) => a.socket.on('data', (c) => a.socket.write(c)), () => undefined);
  });
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
const ep = { host: '127.0.0.1', port: (server.address() as net.AddressInfo).port };
const spec = { sni: 'outbound_.9080_._.reviews.default.svc.cluster.local', alpn: ['istio-http/1.1', 'istio', 'http/1.1'], sans: ['spiffe://cluster.local/ns/default/sa/reviews'] };

async function open(tls: UpstreamTls | undefined): Promise<OpenedSocket> {
  const raw = await connectTcp(ep, 2000);
  if (tls === undefined) {
    raw.socket.on('data', (c: Buffer) => raw.sink.target?.(c));
    return raw;
  }
  return tls.connector(spec).secure(raw, ep, 2000);
}

function roundTrip(o: OpenedSocket): Promise<void> {
  return new Promise((resolve) => {
    o.sink.target = () => resolve();
    o.socket.write('ping');
  });
}

async function measure(name: string, fn: () => Promise<void>): Promise<{ name: string; perSecond: number; cpuMicrosEach: number }> {
  for (let i = 0; i < 50; i++) await fn(); // warm-up
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let n = 0;
  while (performance.now() - t0 < seconds * 1000) {
    await fn();
    n++;
  }
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const r = { name, perSecond: Math.round(n / (ms / 1000)), cpuMicrosEach: Math.round((cpu.user + cpu.system) / n) };
  console.log(`${name.padEnd(44)} ${String(r.perSecond).padStart(7)}/s  ${String(r.cpuMicrosEach).padStart(5)} µs CPU each`);
  return r;
}

const connectOnce = (tls: UpstreamTls | undefined) => async (): Promise<void> => {
  const o = await open(tls);
  await roundTrip(o);
  o.socket.destroy();
};
const resumed = new UpstreamTls({ certs: clientCerts, trustDomain: 'cluster.local' });
const full = new UpstreamTls({ certs: clientCerts, trustDomain: 'cluster.local' });
full.resumption = false;
const results = [
  await measure('connection + 1 round trip, plaintext', connectOnce(undefined)),
  await measure('connection + 1 round trip, mTLS, resumption on', connectOnce(resumed)),
  await measure('connection + 1 round trip, mTLS, resumption off', connectOnce(full)),
];
console.log(`  (resumed ${resumed.resumed} of ${resumed.handshakes} handshakes with resumption on)`);
const plainConn = await open(undefined);
const tlsConn = await open(full);
results.push(await measure('round trip on a kept connection, plaintext', () => roundTrip(plainConn)));
results.push(await measure('round trip on a kept connection, mTLS', () => roundTrip(tlsConn)));
plainConn.socket.destroy();
tlsConn.socket.destroy();
server.close();
mkdirSync(path.join(import.meta.dirname, 'results'), { recursive: true });
writeFileSync(path.join(import.meta.dirname, 'results', 'mtls-handshakes.json'), JSON.stringify({ date: new Date().toISOString(), seconds, node: process.version, results }, null, 2) + '\n');
process.exit(0);
