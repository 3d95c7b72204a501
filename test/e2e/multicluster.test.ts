// Many clusters, one control plane (M3), end to end: a real `sextant pilot --mesh-config`
// serving two real sidecars, `sextant proxy --cluster-id cluster-a` and `--cluster-id
// cluster-b`. The cluster-local service (mesh config serviceSettings) gives each sidecar only
// its own cluster's endpoints, the global one every cluster's; requests through each sidecar
// reach exactly those workloads; a mesh config change is re-read and pushed; an invalid
// mesh config stops the pilot at start (exit 2) naming the field.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from '../helpers/ports.ts';
import { waitFor } from '../helpers/pilot-process.ts';

const CLI = path.resolve(import.meta.dirname, '../../bin/sextant.mjs');
const root = mkdtempSync(path.join(tmpdir(), 'sextant-multicluster-'));
const configDir = path.join(root, 'config');
const meshFile = path.join(root, 'mesh.yaml');
const children: ChildProcess[] = [];
const apps: http.Server[] = [];
let pilotLog = '';

// Workloads on addresses of their own (as pods and VMs have), in two clusters.
const NET = '127.0.79';
const WORKLOADS = [
  { name: 'ledger-a1', service: 'ledger', ns: 'payments', ip: `${NET}.1`, cluster: 'cluster-a' },
  { name: 'ledger-a2', service: 'ledger', ns: 'payments', ip: `${NET}.2`, cluster: 'cluster-a' },
  { name: 'ledger-b1', service: 'ledger', ns: 'payments', ip: `${NET}.3`, cluster: 'cluster-b' },
  { name: 'reviews-a1', service: 'reviews', ns: 'default', ip: `${NET}.11`, cluster: 'cluster-a' },
  { name: 'reviews-b1', service: 'reviews', ns: 'default', ip: `${NET}.12`, cluster: 'cluster-b' },
];
const SIDECARS = [
  { name: 'web-a', cluster: 'cluster-a', egress: `${NET}.101`, admin: 0 },
  { name: 'web-b', cluster: 'cluster-b', egress: `${NET}.102`, admin: 0 },
];
let port = 0;
let pilotHttp = '';

const LEDGER = (p: number): string => `outbound|${p}||ledger.payments.svc.cluster.local`;
const REVIEWS = (p: number): string => `outbound|${p}||reviews.default.svc.cluster.local`;

function writeAtomically(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}

function serviceEntry(name: string, ns: string): string {
  return [
    'apiVersion: networking.istio.io/v1', 'kind: ServiceEntry', `metadata: {name: ${name}, namespace: ${ns}}`, 'spec:',
    `  hosts: [${name}.${ns}.svc.cluster.local]`, '  location: MESH_INTERNAL', '  resolution: STATIC',
    `  ports: [{number: ${port}, name: http, protocol: HTTP}]`, `  workloadSelector: {labels: {app: ${name}}}`,
  ].join('\n');
}

function workloadEntry(w: (typeof WORKLOADS)[number]): string {
  return [
    'apiVersion: networking.istio.io/v1', 'kind: WorkloadEntry', `metadata: {name: ${w.name}, namespace: ${w.ns}}`, 'spec:',
    `  address: ${w.ip}`, `  labels: {app: ${w.service}, topology.istio.io/cluster: ${w.cluster}}`,
  ].join('\n');
}

function sidecarResource(s: (typeof SIDECARS)[number]): string {
  return [
    'apiVersion: networking.istio.io/v1', 'kind: Sidecar', `metadata: {name: ${s.name}, namespace: default}`, 'spec:',
    `  workloadSelector: {labels: {app: ${s.name}}}`,
    '  egress:', `  - port: {number: ${port}, protocol: HTTP, name: http}`, `    bind: ${s.egress}`, '    captureMode: NONE', '    hosts: ["*/*"]',
  ].join('\n');
}

function meshConfig(clusterLocalHosts: string[]): string {
  return `# Istio MeshConfig\nserviceSettings:\n- settings:\n    clusterLocal: true\n  hosts: [${clusterLocalHosts.map((h) => JSON.stringify(h)).join(', ')}]\naccessLogFile: /dev/stdout\n`;
}

/** Starts a sextant process; its log goes to ROOT/NAME.log (kept with KEEP_MESH_LOGS=1). */
function start(name: string, args: string[], onOutput?: (s: string) => void): ChildProcess {
  const log = openSync(path.join(root, `${name}.log`), 'a');
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', onOutput ? 'pipe' : log, 'pipe'], detached: true });
  children.push(child);
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  if (onOutput) child.stdout?.on('data', (d: Buffer) => onOutput(d.toString()));
  child.on('exit', (code) => { if (code !== 0 && code !== null) process.stderr.write(`${name} exited ${code}: ${stderr}\n`); });
  return child;
}

async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  try {
    const res = await fetch(url, { headers, signal: AbortSignal.timeout(5000) });
    return { status: res.status, body: await res.text() };
  } catch {
    return { status: 0, body: '' };
  }
}

/** The upstream hosts of each cluster, as the sidecar's admin reports them. */
async function endpointsOf(s: (typeof SIDECARS)[number]): Promise<Record<string, string[]>> {
  const r = await get(`http://127.0.0.1:${s.admin}/clusters?format=json`);
  if (r.status !== 200) return {};
  const json = JSON.parse(r.body) as { clusterStatuses: { name: string; hostStatuses: { address: { socketAddress: { address: string } } }[] }[] };
  return Object.fromEntries(json.clusterStatuses.map((c) => [c.name, c.hostStatuses.map((h) => h.address.socketAddress.address).sort()]));
}

/** Waits until the sidecar holds exactly these endpoint sets for the two services. */
async function expectEndpoints(s: (typeof SIDECARS)[number], ledger: string[], reviews: string[]): Promise<void> {
  let last: Record<string, string[]> = {};
  try {
    await waitFor(`${s.name}'s endpoints`, async () => {
      last = await endpointsOf(s);
      const ok = JSON.stringify(last[LEDGER(port)]) === JSON.stringify(ledger) && JSON.stringify(last[REVIEWS(port)]) === JSON.stringify(reviews);
      return ok ? true : undefined;
    }, 30_000);
  } catch (err) {
    assert.deepEqual({ ledger: last[LEDGER(port)], reviews: last[REVIEWS(port)] }, { ledger, reviews }, `${s.name}: ${(err as Error).message}`);
  }
}

/** One request with a Host header of our choosing (fetch always derives Host from the URL). */
function request(address: string, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = http.get({ host: address, port, path: '/', headers: { host }, agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', () => resolve({ status: 0, body: '' }));
    req.on('timeout', () => req.destroy());
  });
}

/** Which workloads answer `count` requests to `host` through the sidecar's egress listener. */
async function answers(s: (typeof SIDECARS)[number], host: string, count: number): Promise<string[]> {
  const seen = new Set<string>();
  for (let i = 0; i < count; i++) {
    const r = await request(s.egress, `${host}:${port}`);
    assert.equal(r.status, 200, `${s.name} → ${host}: ${r.status} ${r.body}`);
    seen.add(r.body);
  }
  return [...seen].sort();
}

before(async () => {
  port = await freePort(`${NET}.1`);
  for (const w of WORKLOADS) {
    const server = http.createServer((_req, res) => res.end(w.name));
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, w.ip, resolve));
    apps.push(server);
  }
  mkdirSync(configDir, { recursive: true });
  writeFileSync(path.join(configDir, 'services.yaml'), [serviceEntry('ledger', 'payments'), serviceEntry('reviews', 'default')].join('\n---\n'));
  writeFileSync(path.join(configDir, 'workloads.yaml'), WORKLOADS.map(workloadEntry).join('\n---\n'));
  writeFileSync(path.join(configDir, 'sidecars.yaml'), SIDECARS.map(sidecarResource).join('\n---\n'));
  writeFileSync(meshFile, meshConfig(['*.payments.svc.cluster.local']));
  const xds = `127.0.0.1:${await freePort()}`;
  pilotHttp = `127.0.0.1:${await freePort()}`;
  start('pilot', ['pilot', '--plaintext-xds', '--config-dir', configDir, '--mesh-config', meshFile, '--xds-address', xds, '--http-address', pilotHttp, '--debounce-after', '20ms'], (s) => { pilotLog += s; });
  await waitFor('the pilot', async () => ((await get(`http://${pilotHttp}/ready`)).status === 200 ? true : undefined), 60_000);
  for (const s of SIDECARS) {
    s.admin = await freePort();
    start(s.name, [
      'proxy', '--xds', xds, '--id', `sidecar~${s.egress}~${s.name}-1.default~default.svc.cluster.local`, '--label', `app=${s.name}`,
      '--cluster-id', s.cluster, '--network', `net-${s.cluster}`, '--admin-address', `127.0.0.1:${s.admin}`,
    ]);
  }
  for (const s of SIDECARS) await waitFor(`${s.name} ready`, async () => ((await get(`http://127.0.0.1:${s.admin}/ready`)).status === 200 ? true : undefined), 60_000);
});

after(async () => {
  for (const c of children) {
    try {
      process.kill(-c.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const a of apps) a.close();
  if (!process.env['KEEP_MESH_LOGS']) rmSync(root, { recursive: true, force: true });
});

const [A, B] = SIDECARS as [(typeof SIDECARS)[number], (typeof SIDECARS)[number]];

test('the pilot reports the MeshConfig fields it does not implement', () => {
  assert.match(pilotLog, /MeshConfig fields Sextant does not implement \(ignored\): accessLogFile/);
});

test('cluster-local: each sidecar holds its own cluster\'s endpoints of a cluster-local service, and every cluster\'s of a global one', async () => {
  await expectEndpoints(A, [`${NET}.1`, `${NET}.2`], [`${NET}.11`, `${NET}.12`]);
  await expectEndpoints(B, [`${NET}.3`], [`${NET}.11`, `${NET}.12`]);
  // Traffic follows: the cluster-local service is answered only in the caller's cluster.
  assert.deepEqual(await answers(A, 'ledger.payments.svc.cluster.local', 20), ['ledger-a1', 'ledger-a2']);
  assert.deepEqual(await answers(B, 'ledger.payments.svc.cluster.local', 10), ['ledger-b1']);
  assert.deepEqual(await answers(A, 'reviews.default.svc.cluster.local', 20), ['reviews-a1', 'reviews-b1']);
  assert.deepEqual(await answers(B, 'reviews.default.svc.cluster.local', 20), ['reviews-a1', 'reviews-b1']);
});

test('a workload added in cluster-b reaches cluster-b\'s sidecar only', async () => {
  writeAtomically(path.join(configDir, 'workloads.yaml'), [...WORKLOADS, { name: 'ledger-b2', service: 'ledger', ns: 'payments', ip: `${NET}.4`, cluster: 'cluster-b' }].map(workloadEntry).join('\n---\n'));
  await expectEndpoints(B, [`${NET}.3`, `${NET}.4`], [`${NET}.11`, `${NET}.12`]);
  await expectEndpoints(A, [`${NET}.1`, `${NET}.2`], [`${NET}.11`, `${NET}.12`]);
});

test('the mesh config file is re-read: reviews made cluster-local too; an invalid edit keeps the last good config', async () => {
  writeAtomically(meshFile, meshConfig(['*.payments.svc.cluster.local', 'reviews.default.svc.cluster.local']));
  await expectEndpoints(A, [`${NET}.1`, `${NET}.2`], [`${NET}.11`]);
  await expectEndpoints(B, [`${NET}.3`, `${NET}.4`], [`${NET}.12`]);
  writeAtomically(meshFile, 'serviceSettings: [{settings: {clusterLocal: sometimes}, hosts: ["*"]}]\n');
  await waitFor('the refusal in the pilot log', async () => (pilotLog.includes('mesh config change refused; keeping the last good mesh config') ? true : undefined), 10_000);
  assert.match(pilotLog, /"field":"serviceSettings\[0\]\.settings\.clusterLocal"/);
  await expectEndpoints(A, [`${NET}.1`, `${NET}.2`], [`${NET}.11`]);
  assert.equal((await get(`http://${pilotHttp}/ready`)).status, 200);
});

test('an invalid --mesh-config stops the pilot at start with exit 2, naming the field', () => {
  const bad = path.join(root, 'bad-mesh.yaml');
  writeFileSync(bad, 'outboundTrafficPolicy:\n  mode: ALLOW_ALL\n');
  const r = spawnSync(process.execPath, [CLI, 'pilot', '--plaintext-xds', '--config-dir', configDir, '--mesh-config', bad, '--xds-address', '127.0.0.1:0', '--http-address', '127.0.0.1:0'], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 2, r.stderr);
  assert.equal(r.stderr, `sextant pilot: --mesh-config ${bad}: outboundTrafficPolicy.mode: expected one of ALLOW_ANY, REGISTRY_ONLY, got "ALLOW_ALL"\n`);
  const missing = spawnSync(process.execPath, [CLI, 'pilot', '--plaintext-xds', '--config-dir', configDir, '--mesh-config', path.join(root, 'nope.yaml'), '--xds-address', '127.0.0.1:0', '--http-address', '127.0.0.1:0'], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(missing.status, 2);
  assert.equal(missing.stderr, `sextant pilot: --mesh-config ${path.join(root, 'nope.yaml')}: no such file\n`);
});
