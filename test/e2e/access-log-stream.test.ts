// Access logs over ALS, end to end with real processes: a pilot (its sink writing node:sqlite),
// a client sidecar and a server sidecar in front of an app, configured by Istio YAML (Telemetry
// with the built-in `sextant` provider). Every request is stored once per reporter; each origin
// (app 404, route-not-found NR, refused port UF, overflow UO, no endpoints UH) is stored with its
// flags; a Telemetry filter expression keeps only what it selects; and with the sink stopped,
// requests still succeed, while stored + counted drops = requests once it is back.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { egressSidecar, ingressSidecar } from '../helpers/istio-yaml.ts';
import { countBy, getText, load, pilotRun, query, sample, sidecar, until } from './access-log-helpers.ts';
import type { PilotRun, SidecarRun } from './access-log-helpers.ts';

const CLIENT_IP = '127.0.61.2';
const SERVER_IP = '127.0.61.9';
const REFUSING_IP = '127.0.61.77';
const PORT = 8080;
const BUFFER = 2000;

let dir: string;
let storeFile: string;
let app: http.Server;
let pilot: PilotRun;
let client: SidecarRun;
let server: SidecarRun;

function config(filter?: string): string {
  return `
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging:
  - providers: [{name: sextant}]${filter === undefined ? '' : `\n    filter: {expression: '${filter}'}`}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: orders, namespace: default}
spec:
  hosts: [orders.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: ${PORT}, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: orders}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: orders-v1, namespace: default}
spec: {address: ${SERVER_IP}, labels: {app: orders, version: v1}, ports: {http: ${PORT}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: legacy, namespace: default}
spec:
  hosts: [legacy.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: ${PORT}, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: orders}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: legacy, namespace: default}
spec:
  hosts: [legacy.default.svc.cluster.local]
  http:
  - match: [{uri: {prefix: /v1/}}]
    route: [{destination: {host: legacy.default.svc.cluster.local}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: slow, namespace: default}
spec:
  hosts: [slow.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: ${PORT}, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: orders}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: slow, namespace: default}
spec:
  host: slow.default.svc.cluster.local
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1, http2MaxRequests: 1}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: down, namespace: default}
spec:
  hosts: [down.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: ${PORT}, name: http, protocol: HTTP}]
  endpoints: [{address: ${REFUSING_IP}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: empty, namespace: default}
spec:
  hosts: [empty.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: ${PORT}, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: nobody}}
---
${egressSidecar({ name: 'client', bind: CLIENT_IP, port: PORT })}
---
${ingressSidecar({ name: 'orders', bind: SERVER_IP, port: PORT, defaultEndpoint: `127.0.0.1:${(app.address() as AddressInfo).port}` })}
`;
}

function writeConfig(yaml: string): void {
  const tmp = path.join(dir, '.mesh.yaml.tmp');
  writeFileSync(tmp, yaml);
  renameSync(tmp, path.join(dir, 'config', 'mesh.yaml'));
}

/** Rows per reporter whose path starts with `prefix`. */
function stored(prefix: string): Record<string, number> {
  const rows = query<{ reporter: string; n: number }>(storeFile, 'SELECT reporter, count(*) AS n FROM access_log WHERE path LIKE ? GROUP BY reporter', `${prefix}%`);
  return Object.fromEntries(rows.map((r) => [r.reporter, Number(r.n)]));
}

/** What the sidecars had sent when the pilot (re)started: its sink counts from zero. */
let sentAtStart = 0;

/** Both sidecars have sent everything, the pilot's sink received all of it and wrote it. */
async function settled(): Promise<void> {
  await until('the sidecars sent everything and the sink wrote it', async () => {
    const [c, s, p] = await Promise.all([client.stats(), server.stats(), pilot.metrics()]);
    const sent = sample(c, 'sextant_accesslog_sent_total') + sample(s, 'sextant_accesslog_sent_total');
    const received = sample(p, 'sextant_accesslog_sink_received_total');
    return sample(c, 'sextant_accesslog_buffered') === 0 && sample(s, 'sextant_accesslog_buffered') === 0
      && sent - sentAtStart === received && sample(p, 'sextant_accesslog_sink_queued') === 0
      && received === sample(p, 'sextant_accesslog_sink_stored_total') + sample(p, 'sextant_accesslog_sink_dropped_total');
  });
}

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sextant-als-'));
  mkdirSync(path.join(dir, 'config'));
  storeFile = path.join(dir, 'access-log.db');
  app = http.createServer((req, res) => {
    const url = req.url ?? '/';
    if (url.startsWith('/missing')) res.writeHead(404).end('no such thing');
    else if (url.startsWith('/slow')) setTimeout(() => res.writeHead(200).end('slow'), 400);
    else res.writeHead(200).end('ok');
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  writeConfig(config());
  pilot = await pilotRun(path.join(dir, 'config'), storeFile);
  const buffer = ['--access-log-buffer-entries', String(BUFFER)];
  [client, server] = await Promise.all([
    sidecar(pilot.xds, CLIENT_IP, 'client-v1', { app: 'client', version: 'v1' }, buffer),
    sidecar(pilot.xds, SERVER_IP, 'orders-v1', { app: 'orders', version: 'v1' }, buffer),
  ]);
});

after(async () => {
  await client?.kill();
  await server?.kill();
  await pilot?.stop();
  app?.close();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

test('10,000 requests: exactly 10,000 stored entries per reporter, nothing dropped', async () => {
  const N = 10_000;
  const statuses = await load(CLIENT_IP, PORT, `orders.default.svc.cluster.local:${PORT}`, N, (i) => `/load/${i}`);
  assert.deepEqual(countBy(statuses), { 200: N });
  await until('10,000 entries per reporter', () => {
    const s = stored('/load/');
    return (s['source'] ?? 0) >= N && (s['destination'] ?? 0) >= N;
  }, 60_000);
  await settled();
  assert.deepEqual(stored('/load/'), { source: N, destination: N });
  const [c, s, p] = await Promise.all([client.stats(), server.stats(), pilot.metrics()]);
  assert.equal(sample(c, 'sextant_accesslog_dropped_total'), 0);
  assert.equal(sample(s, 'sextant_accesslog_dropped_total'), 0);
  assert.equal(sample(p, 'sextant_accesslog_sink_dropped_total'), 0);
  // each row names both ends: the client's sidecar reports the caller's own IP and the upstream host
  const ends = query<Record<string, string | number>>(storeFile, "SELECT reporter, src_ip, src_workload, dst_ip, dst_workload, dst_service, origin, operation, count(*) AS n FROM access_log WHERE path LIKE '/load/%' GROUP BY 1,2,3,4,5,6,7,8 ORDER BY 1");
  assert.deepEqual(ends.map((r) => ({ ...r, n: Number(r['n']) })), [
    { reporter: 'destination', src_ip: CLIENT_IP, src_workload: 'client-v1', dst_ip: SERVER_IP, dst_workload: 'orders-v1', dst_service: 'orders.default.svc.cluster.local', origin: 'app', operation: '/load/{id}', n: N },
    { reporter: 'source', src_ip: CLIENT_IP, src_workload: 'client-v1', dst_ip: SERVER_IP, dst_workload: 'orders-v1', dst_service: 'orders.default.svc.cluster.local', origin: 'app', operation: '/load/{id}', n: N },
  ]);
});

test('each origin is stored with its flags: app 404, route-not-found NR, refused port UF, overflow UO, no endpoints UH', async () => {
  const via = (host: string, p: string): Promise<number[]> => load(CLIENT_IP, PORT, `${host}.default.svc.cluster.local:${PORT}`, 1, () => p, 1);
  assert.deepEqual(await via('orders', '/missing/app'), [404]);
  assert.deepEqual(await via('legacy', '/old/nr'), [404]);
  assert.deepEqual(await via('down', '/down/uf'), [503]);
  assert.deepEqual(await via('empty', '/empty/uh'), [503]);
  // overflow: one connection and one pending request allowed, eight at once
  const overflow = await load(CLIENT_IP, PORT, `slow.default.svc.cluster.local:${PORT}`, 8, (i) => `/slow/uo/${i}`, 8);
  const rejected = overflow.filter((s) => s === 503).length;
  assert.ok(rejected >= 1 && overflow.filter((s) => s === 200).length >= 1, `some requests overflow, some pass: ${JSON.stringify(countBy(overflow))}`);
  await until('the origin entries are stored', () => (stored('/missing/app')['destination'] ?? 0) === 1 && (stored('/empty/uh')['source'] ?? 0) === 1 && (stored('/slow/uo/')['source'] ?? 0) === 8);
  await settled();
  const rows = query<{ reporter: string; path: string; code: number; flags: string; origin: string }>(storeFile,
    "SELECT reporter, path, code, flags, origin FROM access_log WHERE path IN ('/missing/app', '/old/nr', '/down/uf', '/empty/uh') ORDER BY path, reporter");
  assert.deepEqual(rows.map((r) => ({ ...r, code: Number(r.code) })), [
    { reporter: 'source', path: '/down/uf', code: 503, flags: 'UF,URX', origin: 'proxy' },
    { reporter: 'source', path: '/empty/uh', code: 503, flags: 'UH', origin: 'proxy' },
    { reporter: 'destination', path: '/missing/app', code: 404, flags: '', origin: 'app' },
    { reporter: 'source', path: '/missing/app', code: 404, flags: '', origin: 'app' },
    { reporter: 'source', path: '/old/nr', code: 404, flags: 'NR', origin: 'proxy' },
  ]);
  const uo = query<{ reporter: string; code: number; flags: string; origin: string; n: number }>(storeFile,
    "SELECT reporter, code, flags, origin, count(*) AS n FROM access_log WHERE path LIKE '/slow/uo/%' GROUP BY 1,2,3,4 ORDER BY 1, 2");
  assert.deepEqual(uo.map((r) => ({ ...r, code: Number(r.code), n: Number(r.n) })), [
    { reporter: 'destination', code: 200, flags: '', origin: 'app', n: 8 - rejected },
    { reporter: 'source', code: 200, flags: '', origin: 'app', n: 8 - rejected },
    { reporter: 'source', code: 503, flags: 'UO', origin: 'proxy', n: rejected },
  ]);
});

test('a Telemetry filter expression: only the responses it selects are logged, by both reporters', async () => {
  writeConfig(config('response.code >= 400 || request.path.startsWith("/filtered/keep")'));
  await until('the filter is in force', async () => (await getText(`http://${client.admin}/config_dump`)).includes('response.code >= 400'));
  await until('the filter is in force on the server', async () => (await getText(`http://${server.admin}/config_dump`)).includes('response.code >= 400'));
  const ok = await load(CLIENT_IP, PORT, `orders.default.svc.cluster.local:${PORT}`, 50, (i) => `/filtered/ok/${i}`, 4);
  const missing = await load(CLIENT_IP, PORT, `orders.default.svc.cluster.local:${PORT}`, 5, (i) => `/missing/filtered/${i}`, 1);
  const kept = await load(CLIENT_IP, PORT, `orders.default.svc.cluster.local:${PORT}`, 3, (i) => `/filtered/keep/${i}`, 1);
  assert.deepEqual([countBy(ok), countBy(missing), countBy(kept)], [{ 200: 50 }, { 404: 5 }, { 200: 3 }]);
  await until('the selected entries are stored', () => (stored('/missing/filtered/')['destination'] ?? 0) === 5 && (stored('/filtered/keep/')['destination'] ?? 0) === 3);
  await settled();
  assert.deepEqual(stored('/missing/filtered/'), { source: 5, destination: 5 });
  assert.deepEqual(stored('/filtered/keep/'), { source: 3, destination: 3 });
  assert.deepEqual(stored('/filtered/ok/'), {});
  writeConfig(config());
  await until('the filter is gone', async () => !(await getText(`http://${client.admin}/config_dump`)).includes('response.code >= 400')
    && !(await getText(`http://${server.admin}/config_dump`)).includes('response.code >= 400'));
});

test('the sink stopped: every request still succeeds; once it is back, stored + counted drops = requests', async () => {
  await settled();
  const dropsBefore = [sample(await client.stats(), 'sextant_accesslog_dropped_total'), sample(await server.stats(), 'sextant_accesslog_dropped_total')];
  assert.deepEqual(dropsBefore, [0, 0]);
  await pilot.stop();
  await until('both sidecars see the sink gone', async () => sample(await client.stats(), 'sextant_accesslog_streams_connected') === 0 && sample(await server.stats(), 'sextant_accesslog_streams_connected') === 0);
  const N = 10_000;
  const statuses = await load(CLIENT_IP, PORT, `orders.default.svc.cluster.local:${PORT}`, N, (i) => `/outage/${i}`);
  assert.deepEqual(countBy(statuses), { 200: N });
  const [c, s] = [await client.stats(), await server.stats()];
  // the sidecars held what their buffers take and counted the rest
  assert.deepEqual([sample(c, 'sextant_accesslog_buffered'), sample(c, 'sextant_accesslog_dropped_total')], [BUFFER, N - BUFFER]);
  assert.deepEqual([sample(s, 'sextant_accesslog_buffered'), sample(s, 'sextant_accesslog_dropped_total')], [BUFFER, N - BUFFER]);
  sentAtStart = sample(c, 'sextant_accesslog_sent_total') + sample(s, 'sextant_accesslog_sent_total');
  await pilot.start();
  await until('the held entries are stored', () => {
    const st = stored('/outage/');
    return st['source'] === BUFFER && st['destination'] === BUFFER;
  }, 60_000);
  await settled();
  const dropped = { source: sample(await client.stats(), 'sextant_accesslog_dropped_total'), destination: sample(await server.stats(), 'sextant_accesslog_dropped_total') };
  const st = stored('/outage/');
  assert.deepEqual({ source: st['source']! + dropped.source, destination: st['destination']! + dropped.destination }, { source: N, destination: N });
  assert.equal(sample(await pilot.metrics(), 'sextant_accesslog_sink_dropped_total'), 0);
});
