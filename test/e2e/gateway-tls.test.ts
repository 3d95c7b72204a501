// An ingress gateway as Istio users configure one, with real processes (`sextant pilot`,
// `sextant gateway`), openssl and an HTTPS client: TLS termination for two hosts on one port by
// SNI with credentialName secrets from the config store (served over SDS), MUTUAL with a client
// certificate required, PASSTHROUGH to a backend that terminates TLS itself, httpsRedirect, a
// TCP server, a certificate rotated in the store served within seconds while an open connection
// keeps going, a route change on a kept connection, secrets never logged and shown redacted,
// and a drain on SIGTERM that lets the request in flight finish.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { CLI } from '../helpers/pilot-process.ts';
import { eventually, httpsGet, issue, makeCa, sClient, startGatewayMesh, tlsSecret } from './gateway-helpers.ts';
import type { CertFiles, GatewayMesh, Process } from './gateway-helpers.ts';

const GW = '127.0.61.1';
const dir = mkdtempSync(path.join(tmpdir(), 'sextant-gateway-tls-'));

let mesh: GatewayMesh;
let gateway: { proc: Process; admin: string };
let serverCa: CertFiles;
let clientCa: CertFiles;
let otherCa: CertFiles;
let passCa: CertFiles;
let certA: CertFiles;
let certB: CertFiles;
let certM: CertFiles;
let certC: CertFiles;
let client: CertFiles;
let stranger: CertFiles;
const servers: (http.Server | net.Server)[] = [];
const ports: Record<string, number> = {};
let slowRelease: (() => void) | undefined;
let slowStarted: (() => void) | undefined;

async function listen(name: string, server: http.Server | net.Server): Promise<void> {
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  ports[name] = (server.address() as net.AddressInfo).port;
}

function web(name: string): http.Server {
  return http.createServer((req, res) => {
    if (req.url === '/slow') {
      slowStarted?.();
      // answered when the test says so (while the gateway drains)
      slowRelease = () => res.end(JSON.stringify({ name, url: req.url }));
      return;
    }
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ name, url: req.url, host: req.headers.host, forwardedFor: req.headers['x-forwarded-for'] }));
  });
}

function registry(): string {
  const se = (name: string, portName: string, protocol: string, port: number): string => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ${name}, namespace: default}
spec:
  hosts: [${name}.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8000, name: ${portName}, protocol: ${protocol}}]
  endpoints: [{address: 127.0.0.1, ports: {${portName}: ${port}}}]
`;
  return [se('web-a', 'http', 'HTTP', ports['web-a']!), se('web-b', 'http', 'HTTP', ports['web-b']!), se('secure', 'tls', 'TLS', ports['secure']!), se('echo', 'tcp', 'TCP', ports['echo']!)].join('---\n');
}

const GATEWAY = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8443, name: https-a, protocol: HTTPS}
    bind: ${GW}
    hosts: [a.example.com]
    tls: {mode: SIMPLE, credentialName: a-cred}
  - port: {number: 8443, name: https-b, protocol: HTTPS}
    bind: ${GW}
    hosts: [b.example.com]
    tls: {mode: SIMPLE, credentialName: b-cred}
  - port: {number: 8443, name: https-mtls, protocol: HTTPS}
    bind: ${GW}
    hosts: [mtls.example.com]
    tls: {mode: MUTUAL, credentialName: m-cred}
  - port: {number: 8443, name: tls-pass, protocol: TLS}
    bind: ${GW}
    hosts: [pass.example.com]
    tls: {mode: PASSTHROUGH}
  - port: {number: 8080, name: http, protocol: HTTP}
    bind: ${GW}
    hosts: [a.example.com]
    tls: {httpsRedirect: true}
  - port: {number: 9000, name: tcp, protocol: TCP}
    bind: ${GW}
    hosts: ["*"]
`;

function routes(aTarget = 'web-a'): string {
  const vs = (name: string, host: string, target: string): string => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ${name}, namespace: default}
spec:
  hosts: [${host}]
  gateways: [istio-system/edge]
  http: [{route: [{destination: {host: ${target}.default.svc.cluster.local, port: {number: 8000}}}]}]
`;
  return [vs('a', 'a.example.com', aTarget), vs('b', 'b.example.com', 'web-b'), vs('m', 'mtls.example.com', 'web-a'), `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: pass, namespace: default}
spec:
  hosts: [pass.example.com]
  gateways: [istio-system/edge]
  tls: [{match: [{sniHosts: [pass.example.com]}], route: [{destination: {host: secure.default.svc.cluster.local, port: {number: 8000}}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp, namespace: default}
spec:
  hosts: ["*"]
  gateways: [istio-system/edge]
  tcp: [{route: [{destination: {host: echo.default.svc.cluster.local, port: {number: 8000}}}]}]
`].join('---\n');
}

function secrets(a: CertFiles): string {
  return [tlsSecret('a-cred', 'istio-system', a), tlsSecret('b-cred', 'istio-system', certB), tlsSecret('m-cred', 'istio-system', certM, clientCa)].join('---\n');
}

before(async () => {
  serverCa = makeCa(dir, 'server-ca');
  clientCa = makeCa(dir, 'client-ca');
  otherCa = makeCa(dir, 'other-ca');
  passCa = makeCa(dir, 'pass-ca');
  certA = issue(dir, serverCa, 'a', 'a.example.com');
  certB = issue(dir, serverCa, 'b', 'b.example.com');
  certM = issue(dir, serverCa, 'm', 'mtls.example.com');
  client = issue(dir, clientCa, 'client', 'client.example.com', 'client');
  stranger = issue(dir, otherCa, 'stranger', 'client.example.com', 'client');
  const pass = issue(dir, passCa, 'pass', 'pass.example.com');
  await listen('web-a', web('web-a'));
  await listen('web-b', web('web-b'));
  await listen('secure', https.createServer({ cert: pass.certPem, key: pass.keyPem }, (req, res) => res.end(`secure ${req.url}`)));
  await listen('echo', net.createServer((s) => s.on('data', (c) => s.write(`echo:${c.toString()}`))));
  mesh = await startGatewayMesh(dir, { 'registry.yaml': registry(), 'gateway.yaml': GATEWAY, 'routes.yaml': routes(), 'secrets.yaml': secrets(certA) });
  gateway = await mesh.gateway(['--ip', GW, '--drain-duration', '5s']);
});

after(async () => {
  slowRelease?.();
  await mesh?.stop();
  for (const s of servers) s.close();
  rmSync(dir, { recursive: true, force: true });
});

test('two hosts on one port by SNI, each with its own certificate (openssl s_client and an HTTPS client)', async () => {
  const out = await sClient(GW, 8443, 'a.example.com', serverCa.cert, 'GET /openssl HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n');
  assert.match(out, /Verification: OK/);
  assert.match(out, /Peer certificate: CN ?= ?a\.example\.com/);
  assert.match(out, /HTTP\/1\.1 200/);
  assert.match(out, /"name":"web-a","url":"\/openssl"/);
  const b = await httpsGet(GW, 8443, 'b.example.com', '/b-path', serverCa.certPem);
  assert.deepEqual([b.status, b.cn, JSON.parse(b.body).name, JSON.parse(b.body).url], [200, 'b.example.com', 'web-b', '/b-path']);
  const a = await httpsGet(GW, 8443, 'a.example.com', '/a-path', serverCa.certPem);
  assert.deepEqual([a.status, a.cn, JSON.parse(a.body).name], [200, 'a.example.com', 'web-a']);
  // A name no server has finds no filter chain: the connection is closed without a handshake.
  const none = await httpsGet(GW, 8443, 'c.example.com', '/', serverCa.certPem);
  assert.equal(none.status, 0);
  assert.equal(none.cn, '');
});

test('MUTUAL: a client certificate of the credential\'s CA is required; none, or one of another CA, is refused', async () => {
  const ok = await httpsGet(GW, 8443, 'mtls.example.com', '/m', serverCa.certPem, client);
  assert.deepEqual([ok.status, JSON.parse(ok.body).url], [200, '/m']);
  const without = await httpsGet(GW, 8443, 'mtls.example.com', '/m', serverCa.certPem);
  assert.equal(without.status, 0, `no client certificate: ${without.error}`);
  const other = await httpsGet(GW, 8443, 'mtls.example.com', '/m', serverCa.certPem, stranger);
  assert.equal(other.status, 0, `a client of another CA: ${other.error}`);
  const out = await sClient(GW, 8443, 'mtls.example.com', serverCa.cert, 'GET /o HTTP/1.1\r\nHost: mtls.example.com\r\nConnection: close\r\n\r\n', ['-cert', client.cert, '-key', client.key]);
  assert.match(out, /HTTP\/1\.1 200/);
});

test('PASSTHROUGH: the backend terminates TLS itself with its own certificate', async () => {
  const r = await httpsGet(GW, 8443, 'pass.example.com', '/through', passCa.certPem);
  assert.deepEqual([r.status, r.cn, r.body], [200, 'pass.example.com', 'secure /through']);
});

test('httpsRedirect: plain HTTP to the host is redirected to https with its path and query', async () => {
  const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
    http.get({ host: GW, port: 8080, path: '/r?x=1', headers: { host: 'a.example.com' }, agent: false }, resolve).on('error', reject);
  });
  res.resume();
  assert.equal(res.statusCode, 301);
  assert.equal(res.headers.location, 'https://a.example.com/r?x=1');
});

test('a TCP server forwards bytes to its tcp route', async () => {
  const got = await new Promise<string>((resolve) => {
    const s = net.connect(9000, GW, () => s.write('ping'));
    let data = '';
    s.on('data', (c) => { data += c.toString(); if (data.length >= 9) s.end(); });
    s.on('close', () => resolve(data));
  });
  assert.equal(got, 'echo:ping');
});

/** A kept-alive HTTPS connection sending requests one at a time (HTTP/1.1, Content-Length bodies). */
class KeptConnection {
  readonly socket: tls.TLSSocket;
  closed = false;
  private buf = '';
  private waiter: (() => void) | undefined;
  constructor(servername: string, ca: string) {
    this.socket = tls.connect({ host: GW, port: 8443, servername, ca, ALPNProtocols: ['http/1.1'] });
    this.socket.on('data', (c: Buffer) => { this.buf += c.toString(); this.waiter?.(); });
    this.socket.on('close', () => { this.closed = true; this.waiter?.(); });
    this.socket.on('error', () => undefined);
  }
  ready(): Promise<void> {
    return new Promise((r) => this.socket.once('secureConnect', () => r()));
  }
  serial(): string {
    return this.socket.getPeerCertificate().serialNumber;
  }
  async get(p: string, host: string): Promise<{ status: number; body: string }> {
    this.socket.write(`GET ${p} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    for (;;) {
      const head = this.buf.indexOf('\r\n\r\n');
      if (head >= 0) {
        const len = Number(/content-length: (\d+)/i.exec(this.buf.slice(0, head))?.[1] ?? 0);
        if (this.buf.length >= head + 4 + len) {
          const status = Number(this.buf.slice(9, 12));
          const body = this.buf.slice(head + 4, head + 4 + len);
          this.buf = this.buf.slice(head + 4 + len);
          return { status, body };
        }
      }
      if (this.closed) throw new Error('the connection was closed');
      await new Promise<void>((r) => { this.waiter = r; });
    }
  }
}

test('a certificate rotated in the store is served to new connections within seconds; an open connection keeps going', async () => {
  const kept = new KeptConnection('a.example.com', serverCa.certPem);
  await kept.ready();
  assert.equal(kept.serial(), certA.serial);
  assert.equal((await kept.get('/before', 'a.example.com')).status, 200);
  const rotated = issue(dir, serverCa, 'a2', 'a.example.com');
  assert.notEqual(rotated.serial, certA.serial);
  mesh.write('secrets.yaml', secrets(rotated));
  await eventually('new connections get the rotated certificate', async () => (await httpsGet(GW, 8443, 'a.example.com', '/new', serverCa.certPem)).serial === rotated.serial);
  const again = await kept.get('/after-rotation', 'a.example.com');
  assert.deepEqual([again.status, JSON.parse(again.body).url], [200, '/after-rotation']);
  assert.equal(kept.closed, false);
  assert.equal(kept.serial(), certA.serial, 'the open connection keeps the certificate it was accepted with');
  // The gateway's config dump names the new certificate and shows no key material.
  const dump = await (await fetch(`http://${gateway.admin}/config_dump`)).text();
  const secretsDump = (JSON.parse(dump) as { configs: { '@type': string; dynamicActiveSecrets?: { name: string; serialNumber?: string; secret: unknown }[] }[] }).configs.find((c) => c['@type'].endsWith('SecretsConfigDump'));
  const a = secretsDump?.dynamicActiveSecrets?.find((s) => s.name === 'kubernetes://a-cred');
  assert.equal(a?.serialNumber, rotated.serial);
  assert.deepEqual(a?.secret, { name: 'kubernetes://a-cred', tlsCertificate: { certificateChain: { inlineString: '[redacted]' }, privateKey: { inlineString: '[redacted]' } } });
  assert.equal(dump.includes('PRIVATE KEY'), false);

  // A route change reaches the same kept connection's next request.
  mesh.write('routes.yaml', routes('web-b'));
  await eventually('the kept connection is routed by the new VirtualService', async () => JSON.parse((await kept.get('/which', 'a.example.com')).body).name === 'web-b');
  assert.equal(kept.closed, false);
  // A Gateway change (one more host on the port) reaches new connections; the kept one goes on.
  certC = issue(dir, serverCa, 'c', 'c.example.com');
  mesh.write('secrets.yaml', secrets(rotated) + '---\n' + tlsSecret('c-cred', 'istio-system', certC));
  mesh.write('gateway.yaml', GATEWAY + `  - port: {number: 8443, name: https-c, protocol: HTTPS}
    bind: ${GW}
    hosts: [c.example.com]
    tls: {mode: SIMPLE, credentialName: c-cred}
`);
  mesh.write('routes.yaml', routes('web-b') + '---\n' + routes().split('---\n')[0]!.replace('name: a,', 'name: c,').replace('a.example.com', 'c.example.com'));
  await eventually('the new host is served', async () => (await httpsGet(GW, 8443, 'c.example.com', '/c', serverCa.certPem)).cn === 'c.example.com');
  const c = await httpsGet(GW, 8443, 'c.example.com', '/c', serverCa.certPem);
  assert.deepEqual([c.status, JSON.parse(c.body).name], [200, 'web-a']);
  assert.equal((await kept.get('/still', 'a.example.com')).status, 200);
  assert.equal(kept.closed, false);
  kept.socket.destroy();
  mesh.write('routes.yaml', routes());
});

test('secrets are never logged, and the pilot\'s /debug/configz shows them redacted', async () => {
  const configz = await (await fetch(`${mesh.pilotUrl}/debug/configz?kind=Secret`)).json() as { resources: { metadata: { name: string }; spec: { data: Record<string, string> } }[] };
  const aCred = configz.resources.find((r) => r.metadata.name === 'a-cred');
  assert.deepEqual(aCred?.spec.data, { 'tls.crt': '[redacted]', 'tls.key': '[redacted]' });
  const keyLines = [certA.keyPem, certB.keyPem].flatMap((k) => k.split('\n').filter((l) => l.length > 20 && !l.startsWith('-----')));
  const keyB64 = [certA.keyPem, certB.keyPem].map((k) => Buffer.from(k).toString('base64').slice(0, 40));
  for (const [who, out] of [['pilot', mesh.pilot.output()], ['gateway', gateway.proc.output()]] as const) {
    assert.ok(out.length > 0, `${who} logged something`);
    for (const l of [...keyLines, ...keyB64]) assert.equal(out.includes(l), false, `${who} output holds key material`);
    assert.equal(out.includes('PRIVATE KEY'), false);
  }
  // `sextant proxy-config secrets` lists the gateway's secrets by serial, without their values.
  const table = spawnSync(process.execPath, [CLI, 'proxy-config', 'secrets', gateway.admin], { encoding: 'utf8' });
  assert.equal(table.status, 0, table.stderr);
  const rows = table.stdout.trim().split('\n').map((l) => l.split(/\s{2,}/));
  assert.deepEqual(rows[0], ['RESOURCE NAME', 'TYPE', 'SERIAL NUMBER', 'NOT AFTER', 'VERSION']);
  assert.deepEqual(rows.slice(1).map((r) => [r[0], r[1]]).sort(), [
    ['kubernetes://a-cred', 'Cert Chain'], ['kubernetes://b-cred', 'Cert Chain'], ['kubernetes://c-cred', 'Cert Chain'], ['kubernetes://m-cred', 'Cert Chain'], ['kubernetes://m-cred-cacert', 'CA'],
  ]);
  assert.equal(rows.find((r) => r[0] === 'kubernetes://b-cred')?.[2], certB.serial);
  const json = spawnSync(process.execPath, [CLI, 'proxy-config', 'secrets', gateway.admin, '-o', 'json'], { encoding: 'utf8' });
  for (const l of keyLines) assert.equal(json.stdout.includes(l), false);
});

test('SIGTERM: the gateway stops being ready, finishes the request in flight, refuses new connections and exits 0', async () => {
  const started = new Promise<void>((r) => { slowStarted = r; });
  const inFlight = httpsGet(GW, 8443, 'b.example.com', '/slow', serverCa.certPem);
  await started;
  const exited = gateway.proc.stop('SIGTERM');
  await eventually('the gateway reports DRAINING', async () => (await fetch(`http://${gateway.admin}/ready`)).status === 503);
  const refused = await httpsGet(GW, 8443, 'b.example.com', '/late', serverCa.certPem);
  assert.equal(refused.status, 0, 'no new connection is served while draining');
  slowRelease!();
  const r = await inFlight;
  assert.deepEqual([r.status, JSON.parse(r.body).url], [200, '/slow']);
  assert.equal(await exited, 0);
});
