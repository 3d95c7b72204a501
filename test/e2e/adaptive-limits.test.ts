// Adaptive limits end to end, with real processes: `sextant pilot`, a `sextant proxy` in front
// of an app that degrades past a concurrency knee (test/support/knee-app.ts, an M/M/c server of
// timers), and an open-loop load generator. A new rule starts in shadow mode: under overload
// nothing is refused, the would-be rejects are counted, and the admitted p99 runs away. Enforced,
// the same overload is shed (503 `x-envoy-overloaded`) and the admitted p99 stays near the
// target, while half load sheds nothing. Then the pilot is killed: the proxy keeps the pushed
// limit while its lease runs, and falls back to the rule's fail-safe after it. Outcomes are
// asserted, never timings.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnPilot, waitFor, CLI, type PilotProcess } from '../helpers/pilot-process.ts';
import { freePort } from '../helpers/ports.ts';
import { ingressSidecar } from '../helpers/istio-yaml.ts';
import { runOpenLoop, summarize } from '../support/open-loop.ts';

const IP = '127.0.7.10';
const MEAN_MS = 40;
const WORKERS = 8;
/** The app's capacity: 8 workers / 40 ms. */
const MU = (WORKERS * 1000) / MEAN_MS;
/** p99 of the unloaded app is ≈ 4.6 × 40 ms = 184 ms; the rule holds it near 200 ms. */
const TARGET_MS = 200;
const FAIL_SAFE = 96;

let dir: string;
let appPort: number;
let app: ChildProcess | undefined;
let pilot: PilotProcess | undefined;
let proxy: ChildProcess | undefined;
let admin: string;

function mesh(enforce: boolean): string {
  return [
    `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: app, namespace: default}
spec:
  hosts: [app.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: ${IP}, ports: {http: 9080}}]`,
    ingressSidecar({ name: 'app', bind: IP, defaultEndpoint: `127.0.0.1:${appPort}` }),
    `apiVersion: sextant.io/v1alpha1
kind: AdaptiveLimit
metadata: {name: app, namespace: default}
spec:
  host: app
  enforce: ${enforce}
  target: {latency: ${TARGET_MS}ms, percentile: 99}
  pid: {interval: 500ms}
  limits: {floor: 2, initial: 32, ceiling: 64}
  queue: {size: 0}
  priority: {tiers: 6, tier0ReservePercent: 20}
  failSafe: {limit: ${FAIL_SAFE}, lease: 3s}`,
  ].join('\n---\n') + '\n';
}

function writeMesh(enforce: boolean): void {
  const tmp = path.join(path.dirname(dir), `.${path.basename(dir)}.tmp`);
  writeFileSync(tmp, mesh(enforce));
  renameSync(tmp, path.join(dir, 'mesh.yaml'));
}

async function startApp(): Promise<void> {
  const child = spawn(process.execPath, [path.join(import.meta.dirname, '..', 'support', 'knee-app.ts'), '--port', String(appPort), '--workers', String(WORKERS), '--mean-ms', String(MEAN_MS), '--seed', '3'], { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
  app = child;
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`the app exited (${code})`)));
  });
  assert.deepEqual(JSON.parse(line), { port: appPort });
}

async function kill(child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise((r) => child.once('exit', r));
  try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
  await exited;
}

async function proxyStat(name: string): Promise<number | undefined> {
  const text = await fetch(`http://${admin}/stats/prometheus`).then((r) => r.text(), () => '');
  const line = text.split('\n').find((l) => l.startsWith(name));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

/** A few hundred requests, four at a time, through the sidecar: a fresh app process is slow at first. */
async function warmUp(): Promise<void> {
  for (let i = 0; i < 60; i++) {
    await Promise.all([0, 1, 2, 3].map(() => fetch(`http://${IP}:9080/`).then((r) => r.text(), () => '')));
  }
}

async function configDump(): Promise<string> {
  return fetch(`http://${admin}/config_dump`).then((r) => r.text(), () => '');
}

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'sextant-adaptive-'));
  appPort = await freePort();
  await startApp();
  writeMesh(false);
  pilot = await spawnPilot({ configDir: dir, args: ['--debounce-after', '10ms'] });
  admin = `127.0.0.1:${await freePort()}`;
  proxy = spawn(process.execPath, [CLI, 'proxy', '--xds', pilot.xds, '--id', `sidecar~${IP}~app-abcde.default~default.svc.cluster.local`, '--label', 'app=app', '--admin-address', admin, '--drain-duration', '200ms', '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'], detached: true });
  await waitFor('the sidecar is ready', async () => (await fetch(`http://${admin}/ready`).then((r) => r.status === 200, () => false)), 30_000);
  await waitFor('the gate is in the inbound chain', async () => (await configDump()).includes('sextant.filters.http.admission'), 30_000);
  await waitFor('the app answers through the sidecar', async () => (await fetch(`http://${IP}:9080/`).then((r) => r.status === 200, () => false)), 30_000);
});

after(async () => {
  await kill(proxy);
  await pilot?.close();
  await kill(app);
  rmSync(dir, { recursive: true, force: true });
});

test('shadow mode (the default): under overload nothing is refused, would-be rejects are counted, the admitted p99 runs away', async () => {
  const { sent } = await runOpenLoop({ host: IP, port: 9080, rate: (t) => (t < 4000 ? 0.5 : 3) * MU, durationMs: 10_000, seed: 1, deadlineMs: 3000 });
  const overload = summarize(sent, 6000, 10_000);
  assert.equal(sent.filter((s) => s.overloaded || s.status === 503).length, 0);
  assert.ok(!(overload.admittedP99 <= 3 * TARGET_MS), `admitted p99 without enforcement: ${overload.admittedP99} ms`);
  const shadow = await waitFor('the gate counts would-be rejects', async () => {
    const v = await proxyStat('sextant_admission_shadow_rejects_total');
    return v !== undefined && v > 0 ? v : undefined;
  });
  assert.ok(shadow > 0);
  // the pilot heard of them over LRS
  await waitFor('the pilot counts shadow sheds', async () => {
    const text = await fetch(`${pilot!.url}/metrics`).then((r) => r.text());
    return /sextant_adaptive_shed_total\{rule="default\/app",mode="shadow"\} [1-9]/.test(text);
  });
  // the app is buried in abandoned work: start it afresh (and warm) for the enforced run
  await kill(app);
  await startApp();
  await warmUp();
});

test('enforced: half load sheds nothing; overload is shed with 503 x-envoy-overloaded and the admitted p99 stays near the target', async () => {
  writeMesh(true);
  await waitFor('the gate enforces', async () => /"enforce": ?true/.test(await configDump()), 30_000);
  // the changed rule's loop starts over from its initial limit, pushed at once
  await waitFor('the initial limit is in force', async () => (await proxyStat('sextant_admission_limit')) === 32, 30_000);
  const { sent } = await runOpenLoop({ host: IP, port: 9080, rate: (t) => (t < 8000 ? 0.5 : 3) * MU, durationMs: 22_000, seed: 2, deadlineMs: 3000 });
  const half = summarize(sent, 0, 8000);
  assert.ok(half.sent > 0.5 * MU * 6);
  assert.equal(half.shed, 0, 'nothing shed at half load');
  assert.equal(half.failed, 0);
  const overload = summarize(sent, 14_000, 22_000);
  assert.ok(overload.shed / overload.sent > 0.3, `fraction shed under 3× capacity: ${(overload.shed / overload.sent).toFixed(3)}`);
  assert.ok(overload.admittedP99 <= 2.5 * TARGET_MS, `admitted p99 ${overload.admittedP99.toFixed(0)} ms (target ${TARGET_MS} ms)`);
  assert.ok(overload.ok > 0.5 * MU * 8, `goodput ${overload.ok} in 8 s`);
  const limit = await proxyStat('sextant_admission_limit');
  assert.ok(limit !== undefined && limit >= 2 && limit <= 64, `limit in force ${limit}`);
  const status = await waitFor('the rule\'s status is written', async () => {
    const r = await fetch(`${pilot!.url}/debug/limits`).then((x) => x.json()) as { rules: Record<string, { mode?: string; limits?: { instance: string; limit: number }[] }> };
    const s = r.rules['default/app'];
    return s?.mode === 'enforce' && (s.limits?.length ?? 0) === 1 ? s : undefined;
  });
  assert.equal(status.limits![0]!.instance, `${IP}:9080`);
});

test('pilot killed: the proxy keeps the pushed limit while the lease runs, then lapses to the fail-safe', async () => {
  const pushed = await proxyStat('sextant_admission_limit');
  assert.ok(pushed !== undefined && pushed !== FAIL_SAFE && pushed <= 64, `pushed limit ${pushed}`);
  const killedAt = Date.now();
  await pilot!.close();
  assert.equal(await proxyStat('sextant_admission_limit'), pushed, 'held right after the kill');
  await waitFor('the limit lapses to the fail-safe', async () => (await proxyStat('sextant_admission_limit')) === FAIL_SAFE, 20_000);
  // the lease (3 s) ran from the last heartbeat, at most a third of it before the kill
  assert.ok(Date.now() - killedAt >= 1500, 'not before the lease ran out');
  await sleep(0);
});
