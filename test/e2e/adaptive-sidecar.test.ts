// The sidecar's half of adaptive limits with real processes: a `sextant pilot` serving an
// AdaptiveLimit for productpage, and the productpage `sextant proxy`. The pilot puts the
// admission filter in the inbound chain and leases the limit over RTDS; the sidecar runs the
// gate at that limit (503 UO with x-envoy-overloaded past it), shows the layer at /runtime,
// reports its load over LRS (the controller sees the instance reporting, so the limit holds),
// and when the pilot is killed the lease lapses and the gate falls back to the fail-safe.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CLI, spawnPilot, waitFor } from '../helpers/pilot-process.ts';
import { ingressSidecar } from '../helpers/istio-yaml.ts';
import { freePort } from '../helpers/ports.ts';

const WORKLOAD = '127.0.65.1';
const KEY = 'circuit_breakers.inbound|9080||.default.max_requests';
const cleanups: (() => Promise<void> | void)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

interface RuntimeDump { layers: string[]; entries: Record<string, { final_value: string; layer_values: string[] }> }

function get(path: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    // bounded: a request the gate should have shed and did not fails the test instead of hanging it
    const req = http.request({ host: WORKLOAD, port: 9080, path, headers: { host: 'productpage:9080' }, agent: false, signal: AbortSignal.timeout(30_000) }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('the sidecar gates productpage at the leased limit, reports its load, and falls back to the fail-safe when the pilot dies', async () => {
  // The app holds /hold requests until the test releases them.
  const held: (() => void)[] = [];
  const app = http.createServer((req, res) => {
    const answer = (): void => { res.writeHead(200); res.end('ok'); };
    if (req.url === '/hold') held.push(answer);
    else answer();
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
  cleanups.push(() => new Promise<void>((r) => { for (const h of held.splice(0)) h(); app.closeAllConnections(); app.close(() => r()); }));
  const appPort = (app.address() as net.AddressInfo).port;

  const dir = mkdtempSync(path.join(tmpdir(), 'sextant-adaptive-sidecar-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'mesh.yaml'), `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: productpage, namespace: default}
spec:
  hosts: [productpage.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: ${WORKLOAD}, labels: {app: productpage}}]
---
${ingressSidecar({ name: 'productpage', bind: WORKLOAD, defaultEndpoint: `127.0.0.1:${appPort}` })}
---
apiVersion: sextant.io/v1alpha1
kind: AdaptiveLimit
metadata: {name: productpage, namespace: default}
spec:
  host: productpage.default.svc.cluster.local
  port: 9080
  enforce: true
  target: {latency: 100ms}
  pid: {interval: 1s}
  limits: {floor: 3, initial: 3, ceiling: 3}
  queue: {size: 0}
  reject: {status: 503, body: overloaded}
  failSafe: {limit: 50, lease: 3s}
`);
  const pilot = await spawnPilot({ configDir: dir, args: ['--debounce-after', '10ms'] });
  cleanups.push(pilot.close);

  const admin = `127.0.0.1:${await freePort()}`;
  const id = `sidecar~${WORKLOAD}~productpage-v1-abcde.default~default.svc.cluster.local`;
  const sidecar = spawn(process.execPath, [CLI, 'proxy', '--xds', pilot.xds, '--id', id, '--admin-address', admin, '--drain-duration', '200ms', '--log-level', 'warn', '--label', 'app=productpage', '--label', 'version=v1'], { stdio: ['ignore', 'ignore', 'inherit'], detached: true });
  const sidecarExited = new Promise((r) => sidecar.once('exit', r));
  cleanups.push(async () => {
    if (sidecar.exitCode !== null || sidecar.pid === undefined) return;
    try { process.kill(-sidecar.pid, 'SIGKILL'); } catch { /* gone */ }
    await sidecarExited;
  });
  await waitFor('the sidecar is ready', async () => (await fetch(`http://${admin}/ready`).catch(() => undefined))?.status === 200, 30_000);
  const runtime = async (): Promise<RuntimeDump> => (await fetch(`http://${admin}/runtime`)).json() as Promise<RuntimeDump>;
  const stats = async (): Promise<string> => (await fetch(`http://${admin}/stats`)).text();

  // The controller's first limit arrives over RTDS, leased.
  await waitFor('the leased limit at /runtime', async () => (await runtime()).entries[KEY]?.final_value === '3', 30_000);
  assert.match(await stats(), /^admission\.inbound\|9080\|\|\.limit: 3$/m);

  // Three requests in flight fill the gate; the fourth is shed with Envoy's overload answer.
  const first = [get('/hold'), get('/hold'), get('/hold')];
  await waitFor('three requests at the app', async () => held.length === 3);
  const shed = await get('/hold');
  assert.deepEqual([shed.status, shed.headers['x-envoy-overloaded'], shed.body], [503, 'true', 'overloaded']);
  for (const h of held.splice(0)) h();
  assert.deepEqual((await Promise.all(first)).map((r) => r.status), [200, 200, 200]);
  assert.match(await stats(), /^admission\.inbound\|9080\|\|\.rq_rejected_overflow: 1$/m);

  // The sidecar's load reports reach the controller: the instance is reporting and its limit holds past three ticks.
  const status = await waitFor('the instance reporting to the controller', async () => {
    const all = await (await fetch(`${pilot.url}/debug/limits`)).json() as Record<string, { measured: { reportingInstances: number; shedEnforced: number } }> | { rules?: unknown };
    const rule = (all as Record<string, { measured: { reportingInstances: number; shedEnforced: number } }>)['default/productpage']
      ?? ((all as { rules?: Record<string, { measured: { reportingInstances: number; shedEnforced: number } }> }).rules?.['default/productpage']);
    return rule !== undefined && rule.measured.reportingInstances === 1 ? rule : undefined;
  }, 20_000);
  assert.equal(status.measured.reportingInstances, 1);
  await new Promise((r) => setTimeout(r, 4000));
  // (floor and ceiling are both 3: whatever the controller computes from the load, 3 is leased)
  const leased = (await runtime()).entries[KEY]?.final_value;
  assert.equal(leased, '3', `still leased: the reports keep the controller's limits alive (got ${leased})`);
  assert.match(await stats(), new RegExp(`^admission\\.inbound\\|9080\\|\\|\\.limit: ${leased}$`, 'm'));

  // The pilot dies: no more heartbeats, the lease lapses, and the fail-safe (50) holds.
  await pilot.close();
  await waitFor('the lease to lapse', async () => (await runtime()).entries[KEY] === undefined, 20_000);
  assert.match(await stats(), /^admission\.inbound\|9080\|\|\.limit: 50$/m);
  const many = Array.from({ length: 5 }, () => get('/hold'));
  await waitFor('five requests at the app', async () => held.length === 5);
  for (const h of held.splice(0)) h();
  assert.deepEqual((await Promise.all(many)).map((r) => r.status), [200, 200, 200, 200, 200]);
});
