// Start order (M10): the app's first request never fails because its sidecar is not ready.
// A pod written by a user is injected by `sextant inject`, and its containers run as local
// processes in the kubelet's order with their hooks (start-order-harness.ts): the app's init
// container, the real `sextant proxy` with its postStart `sextant wait`, then the app, whose
// very first request goes through the sidecar to a backend the pilot routes to. Twenty starts,
// every first request answered 200. The same pod with the hook skipped fails: the check can
// see the race it guards against. And `sextant wait` against a sidecar whose pilot is down
// gives up after its timeout, then exits 0 soon after the pilot serves.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse } from 'yaml';
import { DEFAULT_OPTIONS, type InjectOptions } from '../../src/inject/inject-template.ts';
import { injectYaml } from '../../src/inject/inject-yaml.ts';
import { freePort } from '../helpers/ports.ts';
import { runPod, type PodSpec } from './start-order-harness.ts';
import { egressSidecar } from '../helpers/istio-yaml.ts';

const CLI = path.resolve(import.meta.dirname, '..', '..', 'bin', 'sextant.mjs');
const APP = path.join(import.meta.dirname, 'start-order-app.ts');
/** The pod's own address (as a pod IP) and the egress address its Sidecar binds (captureMode NONE). */
const POD_IP = '127.0.113.1';
const EGRESS = '127.0.114.1';
const STARTS = 20;

let dir: string;
let backend: http.Server;
let backendPort: number;
let xdsAddress: string;
let httpAddress: string;
const children: ChildProcess[] = [];

function config(port: number): string {
  return `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: backend, namespace: default}
spec:
  hosts: [backend.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, ports: {http: ${port}}}]
---
${egressSidecar({ name: 'client', bind: EGRESS })}
`;
}

/** The pod as its owner writes it: an init container of its own and the app. */
function podYaml(initMarker: string): string {
  return `
apiVersion: v1
kind: Pod
metadata:
  name: client
  namespace: default
  labels: {app: client, version: v1}
  annotations:
    # No iptables here (not root): the app calls its sidecar's egress listener, as in the demo.
    sidecar.istio.io/interceptionMode: NONE
spec:
  initContainers:
  - name: prepare
    image: node:24
    command: [node, -e, "require('node:fs').writeFileSync(process.env.MARKER, 'done')"]
    env: [{name: MARKER, value: ${JSON.stringify(initMarker)}}]
  containers:
  - name: app
    image: node:24
    command: [node, ${JSON.stringify(APP)}]
    env:
    - {name: TARGET, value: "http://${EGRESS}:9080/"}
    - {name: TARGET_HOST, value: backend.default.svc.cluster.local}
`;
}

function spawnPilot(): ChildProcess {
  const args = ['pilot', '--plaintext-xds', '--config-dir', path.join(dir, 'config'), '--xds-address', xdsAddress, '--http-address', httpAddress, '--log-level', 'warn'];
  const out = path.join(dir, 'pilot.log');
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  child.stdout!.on('data', (c: Buffer) => writeFileSync(out, c, { flag: 'a' }));
  child.stderr!.on('data', (c: Buffer) => writeFileSync(out, c, { flag: 'a' }));
  children.push(child);
  return child;
}

async function untilOk(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await r.arrayBuffer();
      if (r.status === 200) return;
    } catch {
      // not up yet
    }
    await sleep(100);
  }
  throw new Error(`${url} not ready after ${timeoutMs} ms`);
}

function kill(child: ChildProcess, sig: NodeJS.Signals): void {
  try {
    process.kill(-child.pid!, sig);
  } catch {
    // gone
  }
}

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sextant-start-order-'));
  backend = http.createServer((_req, res) => res.end('backend says hello'));
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  backendPort = (backend.address() as { port: number }).port;
  mkdirSync(path.join(dir, 'config'));
  writeFileSync(path.join(dir, 'config', 'mesh.yaml'), config(backendPort));
  xdsAddress = `127.0.0.1:${await freePort()}`;
  httpAddress = `127.0.0.1:${await freePort()}`;
  spawnPilot();
  await untilOk(`http://${httpAddress}/ready`, 30_000);
});

after(async () => {
  for (const c of children) kill(c, 'SIGKILL');
  backend.closeAllConnections();
  backend.close();
  if (!process.env['KEEP_TEST_LOGS']) rmSync(dir, { recursive: true, force: true });
});

/** The injected pod, on ports of its own (several pods share this host's loopback). */
async function injectedPod(run: string): Promise<PodSpec> {
  const ports = { ...DEFAULT_OPTIONS.ports, admin: await freePort(), health: await freePort(), stats: await freePort() };
  const options: InjectOptions = { ...DEFAULT_OPTIONS, pilotAddress: xdsAddress, clusterId: 'start-order', ports, plaintextXds: true }; // the pilot above serves --plaintext-xds
  const r = injectYaml(podYaml(path.join(dir, run, 'init-done')), options);
  assert.equal(r.results[0]?.injected, true);
  return parse(r.text) as PodSpec;
}

interface Start {
  code: number | null;
  app: string;
  events: string[];
}

async function start(run: string, skipPostStart = false): Promise<Start> {
  const runDir = path.join(dir, run);
  mkdirSync(runDir, { recursive: true });
  const pod = await injectedPod(run);
  const running = await runPod(pod, { podIP: POD_IP, dir: runDir, skipPostStart });
  try {
    const code = await Promise.race([running.exited('app'), sleep(30_000).then(() => 'timeout' as const)]);
    assert.notEqual(code, 'timeout', `${run}: the app did not exit within 30 s`);
    return { code: code as number | null, app: readFileSync(path.join(runDir, 'app.log'), 'utf8').trim(), events: running.events.map((e) => e.what) };
  } finally {
    await running.stop();
  }
}

test(`the app's first request through its sidecar succeeds on each of ${STARTS} starts (init → sidecar → postStart sextant wait → app)`, async () => {
  const failures: string[] = [];
  for (let i = 0; i < STARTS; i++) {
    const s = await start(`start-${i}`);
    if (i === 0) {
      // The kubelet's order: the app's init container, the sidecar held by its hook, then the app.
      assert.deepEqual(s.events.slice(0, 6), ['init prepare started', 'init prepare exited 0', 'sextant-proxy started', 'sextant-proxy postStart exited 0', 'app started', 'app exited 0']);
      assert.ok(existsSync(path.join(dir, `start-${i}`, 'init-done')));
    }
    if (s.code !== 0) failures.push(`start ${i}: app exited ${s.code}: ${s.app}`);
    else assert.match(s.app, /"status":200,"body":"backend says hello"/);
  }
  assert.deepEqual(failures, []);
});

test('control: without the postStart hook the app starts before its sidecar is ready, and its first request fails', async () => {
  const outcomes: string[] = [];
  for (let i = 0; i < 3; i++) {
    const s = await start(`no-hook-${i}`, true);
    outcomes.push(s.code === 0 ? 'ok' : s.app);
  }
  assert.ok(outcomes.some((o) => o !== 'ok'), `every start succeeded without the hook: ${outcomes.join('; ')}`);
});

test('sextant wait with the pilot down exits 1 after its timeout; once a pilot serves, it exits 0 as the sidecar turns ready', async () => {
  const xds = `127.0.0.1:${await freePort()}`;
  const health = `127.0.0.1:${await freePort()}`;
  const url = `http://${health}/healthz/ready`;
  const proxy = spawn(process.execPath, [CLI, 'proxy', '--xds', xds, '--id', `sidecar~${POD_IP}~client.default~default.svc.cluster.local`, '--label', 'app=client',
    '--meta', 'INTERCEPTION_MODE=NONE', '--admin-address', `127.0.0.1:${await freePort()}`, '--health-address', health, '--log-level', 'warn'], { stdio: 'ignore', detached: true });
  children.push(proxy);
  const wait = (args: string[]): Promise<{ code: number | null; ms: number; stderr: string }> => new Promise((resolve) => {
    const t0 = performance.now();
    const w = spawn(process.execPath, [CLI, 'wait', '--url', url, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    w.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    w.on('close', (code) => resolve({ code, ms: performance.now() - t0, stderr }));
  });
  const down = await wait(['--timeoutSeconds', '3']);
  assert.equal(down.code, 1);
  assert.ok(down.ms >= 3000 && down.ms < 3000 + 1500, `${down.ms} ms`);
  assert.match(down.stderr, /last answered: (503 PRE_INITIALIZING|connection refused)\n$/);

  // A pilot on the proxy's xDS address, with the same config.
  const pilotDir = path.join(dir, 'late-pilot');
  mkdirSync(pilotDir);
  writeFileSync(path.join(pilotDir, 'mesh.yaml'), config(backendPort));
  const pilot = spawn(process.execPath, [CLI, 'pilot', '--plaintext-xds', '--config-dir', pilotDir, '--xds-address', xds, '--http-address', `127.0.0.1:${await freePort()}`, '--log-level', 'warn'], { stdio: 'ignore', detached: true });
  children.push(pilot);
  const waiting = wait(['--timeout', '60s']);
  // The test watches /healthz/ready too: `sextant wait` returns within a poll of it turning 200.
  let readyAt = 0;
  while (readyAt === 0) {
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(500) });
      await r.arrayBuffer();
      if (r.status === 200) readyAt = performance.now();
    } catch {
      // not yet
    }
    if (readyAt === 0) await sleep(25);
  }
  const up = await waiting;
  assert.equal(up.code, 0, up.stderr);
  const lag = performance.now() - readyAt;
  assert.ok(lag < 1000, `sextant wait returned ${Math.round(lag)} ms after the sidecar was ready`);
  kill(proxy, 'SIGKILL');
  kill(pilot, 'SIGKILL');
});
