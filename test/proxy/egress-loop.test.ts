// Passthrough in captureMode NONE (the demo's set-up): the app calls its sidecar's egress
// listener explicitly, so the connection's local address is the sidecar itself, never where
// the request is going. An ALLOW_ANY request goes where its Host names, as through a forward
// proxy; one that names nothing, or names (or comes back to) the sidecar's own listeners, is
// answered at once by the sidecar, which never connects to itself.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startProxy } from '../../src/proxy/index.ts';
import type { Proxy } from '../../src/proxy/index.ts';
import { reachesListener } from '../../src/proxy/listener/original-dst.ts';
import { freePort, silent } from './helpers/fixtures.ts';
import { spawnPilot } from '../helpers/pilot-process.ts';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

// The workload and its egress on a loopback network of their own (as a pod has its own IP).
const net3 = 100 + Math.floor(Math.random() * 150);
const workloadIp = `127.0.${net3}.1`;
let httpPort = 0; // egress HTTP listener on the workload IP
let anyPort = 0; // egress HTTP listener bound to 0.0.0.0
let tcpPort = 0; // egress TCP listener (no service on it: tcp_proxy to PassthroughCluster)
let sidecar: Proxy;
let accessLogPath = '';

// A plain HTTP server outside the mesh (no ServiceEntry names it). `/bounce…` sends the request
// back into the sidecar's egress listener (as `/bounced`) with the headers it arrived with, as
// a misconfigured forward proxy would: without a hop marker, a loop through the outside.
interface Outside { port: number; hits: number; lastHeaders: string[] }
const outside: Outside = { port: 0, hits: 0, lastHeaders: [] };

before(async () => {
  const server = http.createServer((req, res) => {
    outside.hits++;
    outside.lastHeaders = req.rawHeaders;
    req.resume();
    if (req.url?.startsWith('/bounce')) {
      const back = http.request({ host: workloadIp, port: httpPort, path: '/bounced', headers: req.rawHeaders, setHost: false, agent: false }, (r) => {
        res.writeHead(r.statusCode ?? 500, { 'x-bounced-status': String(r.statusCode) });
        r.pipe(res);
      });
      back.on('error', (e) => { res.writeHead(599); res.end(e.message); });
      back.end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`outside ${req.url}`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  outside.port = (server.address() as net.AddressInfo).port;
  cleanups.push(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));

  const dir = mkdtempSync(path.join(tmpdir(), 'sextant-egress-loop-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  accessLogPath = path.join(dir, 'access.log');
  httpPort = await freePort(workloadIp);
  anyPort = await freePort('0.0.0.0');
  tcpPort = await freePort(workloadIp);
  const yaml = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: ${httpPort}, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.${net3}.3}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: client, namespace: default}
spec:
  workloadSelector: {labels: {app: client}}
  outboundTrafficPolicy: {mode: ALLOW_ANY}
  egress:
  - port: {number: ${httpPort}, protocol: HTTP, name: http}
    bind: ${workloadIp}
    captureMode: NONE
    hosts: ["./*"]
  - port: {number: ${anyPort}, protocol: HTTP, name: http-any}
    bind: 0.0.0.0
    captureMode: NONE
    hosts: ["./*"]
  - port: {number: ${tcpPort}, protocol: TCP, name: tcp}
    bind: ${workloadIp}
    captureMode: NONE
    hosts: ["~/*"]
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: access-log, namespace: default}
spec:
  workloadSelector: {labels: {app: client}}
  configPatches:
  - applyTo: NETWORK_FILTER
    match:
      context: SIDECAR_OUTBOUND
      listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager}}}
    patch:
      operation: MERGE
      value:
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: ${accessLogPath}
`;
  writeFileSync(path.join(dir, 'mesh.yaml'), yaml);
  const pilot = await spawnPilot({ configDir: dir });
  cleanups.push(pilot.close);
  sidecar = await startProxy({
    xds: pilot.xds, id: `sidecar~${workloadIp}~client-v1-aaaaa.default~default.svc.cluster.local`,
    labels: { app: 'client', version: 'v1' }, adminAddress: '127.0.0.1:0', logger: silent, drainMs: 200,
  });
  cleanups.push(() => sidecar.drain(100));
  await sidecar.whenReady();
  assert.deepEqual(new Set(sidecar.listeners.boundAddresses().values()), new Set([`${workloadIp}:${httpPort}`, `0.0.0.0:${anyPort}`, `${workloadIp}:${tcpPort}`]));
});

/** Connections the sidecar's listeners have accepted so far (Envoy's downstream_cx_total). */
function accepted(): number {
  let n = 0;
  for (const c of sidecar.listeners.acceptedConnections().values()) n += c;
  return n;
}

interface Answer { status: number; headers: Map<string, string>; body: string; ms: number }

/**
 * Sends `raw` on a connection of its own and reads one response; status 0 when none came
 * within `timeoutMs` (the sidecar looping on itself never answers).
 */
function exchange(host: string, port: number, raw: string, timeoutMs = 4000): Promise<Answer> {
  const started = performance.now();
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    let acc = Buffer.alloc(0);
    let done = false;
    const finish = (a: Omit<Answer, 'ms'>): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ ...a, ms: performance.now() - started });
    };
    const timer = setTimeout(() => finish({ status: 0, headers: new Map(), body: 'no answer' }), timeoutMs);
    const parse = (closed: boolean): void => {
      const text = acc.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end < 0) { if (closed) finish({ status: 0, headers: new Map(), body: text }); return; }
      const [statusLine = '', ...lines] = text.slice(0, end).split('\r\n');
      const headers = new Map<string, string>();
      for (const l of lines) headers.set(l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim());
      let body = text.slice(end + 4);
      const length = headers.has('content-length') ? Number(headers.get('content-length')) : undefined;
      const chunked = headers.get('transfer-encoding') === 'chunked';
      if (!closed && !(length !== undefined && body.length >= length) && !(chunked && body.endsWith('0\r\n\r\n'))) return;
      if (chunked) body = dechunk(body);
      finish({ status: Number(statusLine.split(' ')[1]), headers, body });
    };
    s.on('data', (d: Buffer) => { acc = Buffer.concat([acc, d]); parse(false); });
    s.on('end', () => parse(true));
    s.on('error', () => parse(true));
    s.write(raw);
  });
}

function dechunk(s: string): string {
  let out = '';
  for (let i = 0; ;) {
    const eol = s.indexOf('\r\n', i);
    const size = parseInt(s.slice(i, eol), 16);
    if (!(size > 0)) return out;
    out += s.slice(eol + 2, eol + 2 + size);
    i = eol + 2 + size + 2;
  }
}

/** The access log line of the last request whose path is `path`. */
function logged(pathOf: string): Record<string, unknown> {
  const lines = readFileSync(accessLogPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const line = lines.filter((l) => l['path'] === pathOf).at(-1);
  assert.ok(line, `an access log line for ${pathOf}`);
  return line;
}

async function eventuallyLogged(pathOf: string): Promise<Record<string, unknown>> {
  const deadline = Date.now() + 3000;
  for (;;) {
    try {
      return logged(pathOf);
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** Passthrough requests with this status and flag, as istio_requests_total counts them. */
function passthroughCount(status: number, flags: string): number {
  const re = new RegExp(`^istio_requests_total\\{[^}]*destination_service="PassthroughCluster"[^}]*response_code="${status}",response_flags="${flags}"\\} (\\d+)$`, 'm');
  return Number(re.exec(sidecar.metrics.expose())?.[1] ?? 0);
}

/** Sends one request on a fresh connection and checks the local answer, the log and the metric. */
async function expectLocalAnswer(raw: string, pathOf: string, status: number, flag: string, details: string): Promise<Answer> {
  const counted = passthroughCount(status, flag);
  const before = accepted();
  const a = await exchange(workloadIp, httpPort, raw);
  assert.equal(a.status, status, `answered ${status} (got ${a.status}: ${a.body.slice(0, 100)})`);
  assert.ok(a.ms < 2000, `answered at once, not after ${Math.round(a.ms)} ms`);
  assert.equal(accepted() - before, 1, 'the sidecar accepted only the caller\'s connection: it never connected to itself');
  const line = await eventuallyLogged(pathOf);
  assert.equal(line['response_code'], status);
  assert.equal(line['response_flags'], flag);
  assert.equal(line['response_code_details'], details);
  assert.equal(line['upstream_cluster'], 'PassthroughCluster');
  assert.equal(passthroughCount(status, flag), counted + 1, `istio_requests_total counts it with response_flags="${flag}"`);
  return a;
}

test('a Host naming no service and no resolvable name: 404 NR at once', async () => {
  await expectLocalAnswer(`GET /a HTTP/1.1\r\nHost: nosuch-service:${httpPort}\r\nConnection: close\r\n\r\n`, '/a', 404, 'NR', 'dns_resolution_failure');
});

test('an empty Host: refused at once (400 from the HTTP/1 codec, or 404 NR from the router)', async () => {
  const raw = 'GET /b HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n';
  const counted = passthroughCount(404, 'NR');
  const before = accepted();
  const a = await exchange(workloadIp, httpPort, raw);
  // The codec refuses a Host that is not uri-host[:port] before any routing (Envoy's codec does
  // too); were it let through, the router would find no destination in it.
  if (a.status === 400) {
    assert.equal(passthroughCount(404, 'NR'), counted);
  } else {
    assert.equal(a.status, 404, `answered 400 or 404 (got ${a.status}: ${a.body.slice(0, 100)})`);
    const line = await eventuallyLogged('/b');
    assert.equal(line['response_flags'], 'NR');
    assert.equal(line['response_code_details'], 'no_original_destination');
  }
  assert.ok(a.ms < 2000, `answered at once, not after ${Math.round(a.ms)} ms`);
  assert.equal(accepted() - before, 1, 'the sidecar never connected to itself');
});

test('HTTP/1.0 without Host: 404 NR at once', async () => {
  await expectLocalAnswer('GET /c HTTP/1.0\r\n\r\n', '/c', 404, 'NR', 'no_original_destination');
});

test('a Host naming the sidecar\'s own listener: 502 NR at once, no connection to itself', async () => {
  await expectLocalAnswer(`GET /d1 HTTP/1.1\r\nHost: ${workloadIp}:${httpPort}\r\nConnection: close\r\n\r\n`, '/d1', 502, 'NR', 'passthrough_loop_detected');
  // without a port the Host means the port the app dialled: the same listener
  await expectLocalAnswer(`GET /d2 HTTP/1.1\r\nHost: ${workloadIp}\r\nConnection: close\r\n\r\n`, '/d2', 502, 'NR', 'passthrough_loop_detected');
  // an http_proxy client naming the listener in its absolute-form target
  await expectLocalAnswer(`GET http://${workloadIp}:${httpPort}/d3 HTTP/1.1\r\nHost: ${workloadIp}:${httpPort}\r\nConnection: close\r\n\r\n`, '/d3', 502, 'NR', 'passthrough_loop_detected');
  // a listener bound to 0.0.0.0 listens on every local address: another loopback address reaches it
  await expectLocalAnswer(`GET /d4 HTTP/1.1\r\nHost: 127.0.${net3}.9:${anyPort}\r\nConnection: close\r\n\r\n`, '/d4', 502, 'NR', 'passthrough_loop_detected');
  // so does localhost, a name
  await expectLocalAnswer(`GET /d5 HTTP/1.1\r\nHost: localhost:${anyPort}\r\nConnection: close\r\n\r\n`, '/d5', 502, 'NR', 'passthrough_loop_detected');
});

test('a Host naming a server outside the mesh is reached through passthrough, marked with the sidecar\'s Via', async () => {
  const hits = outside.hits;
  const before = accepted();
  const a = await exchange(workloadIp, httpPort, `GET /e?q=1 HTTP/1.1\r\nHost: 127.0.0.1:${outside.port}\r\nConnection: close\r\n\r\n`);
  assert.equal(a.status, 200);
  assert.equal(a.body, 'outside /e?q=1');
  assert.equal(outside.hits, hits + 1);
  assert.equal(accepted() - before, 1);
  const h = outside.lastHeaders;
  const get = (n: string): string | undefined => h[h.findIndex((x, i) => i % 2 === 0 && x.toLowerCase() === n) + 1];
  assert.equal(get('host'), `127.0.0.1:${outside.port}`, 'the Host goes upstream as the app sent it');
  assert.match(get('via') ?? '', /^1\.1 sextant-[0-9a-f]{8}$/);
  const line = await eventuallyLogged('/e?q=1');
  assert.equal(line['response_flags'], '-');
  assert.equal(line['upstream_host'], `127.0.0.1:${outside.port}`);
  assert.equal(passthroughCount(200, '-') >= 1, true);
});

test('a request that comes back through the outside carrying the sidecar\'s own Via is refused: 502 NR', async () => {
  const hits = outside.hits;
  const before = accepted();
  const a = await exchange(workloadIp, httpPort, `GET /bounce HTTP/1.1\r\nHost: 127.0.0.1:${outside.port}\r\nConnection: close\r\n\r\n`);
  assert.equal(a.status, 502);
  assert.equal(a.headers.get('x-bounced-status'), '502', 'the second pass through the sidecar was refused');
  assert.equal(outside.hits, hits + 1, 'the outside server saw the request once, not again and again');
  assert.equal(accepted() - before, 2, 'the caller\'s connection and the bounced one; none from the sidecar to itself');
  const line = await eventuallyLogged('/bounced');
  assert.equal(line['response_code'], 502);
  assert.equal(line['response_flags'], 'NR');
  assert.equal(line['response_code_details'], 'passthrough_loop_detected');
});

test('tcp_proxy to PassthroughCluster on a bound egress listener closes at once instead of connecting to itself', async () => {
  const before = accepted();
  const started = performance.now();
  const closed = await new Promise<boolean>((resolve) => {
    const s = net.connect({ host: workloadIp, port: tcpPort });
    const timer = setTimeout(() => { s.destroy(); resolve(false); }, 4000);
    s.on('close', () => { clearTimeout(timer); resolve(true); });
    s.on('error', () => { /* close follows */ });
    s.write('hello');
  });
  assert.ok(closed && performance.now() - started < 2000, 'the connection is closed at once');
  assert.equal(accepted() - before, 1);
  const metrics = sidecar.metrics.expose();
  assert.match(metrics, /istio_tcp_connections_closed_total\{[^}]*destination_service="PassthroughCluster"[^}]*response_flags="NR"\} 1/);
});

test('the loop guard: an exact bind, a 0.0.0.0 bind on any local IPv4 address, a :: bind on any local address', () => {
  const bound = [{ address: '127.0.5.1', port: 9080 }, { address: '0.0.0.0', port: 15001 }, { address: '::', port: 15006 }];
  assert.equal(reachesListener(bound, '127.0.5.1', 9080), true);
  assert.equal(reachesListener(bound, '::ffff:127.0.5.1', 9080), true, 'IPv4-mapped');
  assert.equal(reachesListener(bound, '127.0.5.2', 9080), false, 'another address, same port');
  assert.equal(reachesListener(bound, '127.0.5.1', 9081), false, 'same address, another port');
  assert.equal(reachesListener(bound, '127.9.9.9', 15001), true, 'any loopback address reaches 0.0.0.0');
  assert.equal(reachesListener(bound, '0.0.0.0', 15001), true, '0.0.0.0 as a destination is this host');
  assert.equal(reachesListener(bound, '::1', 15001), false, '0.0.0.0 is IPv4 only');
  assert.equal(reachesListener(bound, '203.0.113.7', 15001), false, 'not an address of this host');
  assert.equal(reachesListener(bound, '::1', 15006), true);
  assert.equal(reachesListener(bound, '0:0:0:0:0:0:0:1', 15006), true, 'any spelling of ::1');
  assert.equal(reachesListener(bound, '127.0.0.1', 15006), true, ':: takes IPv4 too');
  assert.equal(reachesListener(bound, 'localhost', 15006), false, 'names are resolved before the guard');
});
