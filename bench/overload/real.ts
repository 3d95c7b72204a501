// The overload benchmark's real-process half: `sextant pilot` (plaintext xDS, directory store),
// one `sextant proxy` in front of the knee app (test/support/knee-app.ts: M/M/c of timers, 8
// workers, 40 ms mean, thrashing past the knee), an AdaptiveLimit enforced on it, and an
// open-loop Poisson load from this process (test/support/open-loop.ts). Schedule: 0.5μ, 2μ,
// 0.5μ, 5μ with the pilot SIGKILLed 1.25 phases into 5μ; the proxy's limit is polled
// to see it held while the lease runs and lapse to the fail-safe after.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../../test/helpers/ports.ts';
import { runOpenLoop, summarize } from '../../test/support/open-loop.ts';
import { processCpuSeconds } from '../proc.ts';

const repo = path.resolve(import.meta.dirname, '..', '..');
const CLI = path.join(repo, 'src', 'cli', 'main.ts');
const IP = '127.0.9.10';
const WORKERS = 8;
const MEAN_MS = 40;
const MU = (WORKERS * 1000) / MEAN_MS;
/** The unloaded p99 of the app is ≈ 4.6 × 40 ms = 184 ms, ≈ 200 ms through the sidecar on a busy host. */
const TARGET_MS = 230;
const FAIL_SAFE = 64;

export interface RealPhase {
  phase: string;
  offeredRps: number;
  goodputRatio: number;
  admittedP99Ms: number | null;
  shedFraction: number;
  tier0Success: number | null;
}

export interface RealResult {
  mu: number;
  targetP99Ms: number;
  phases: RealPhase[];
  unloadedP99Ms: number | null;
  falseShedding: number;
  /** Sidecar CPU seconds per 1,000 requests offered. */
  sidecarCpuSecondsPer1k: number;
  /** Limit changes the controller pushed per minute (before the kill). */
  pushesPerMin: number | null;
  /** The proxy's limit right after the kill, and how long until it lapsed to the fail-safe. */
  limitAtKill: number | null;
  lapseAfterKillS: number | null;
  failSafe: number;
  sendLagP99Ms: number;
  requests: number;
}

async function kill(child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise((r) => child.once('exit', r));
  try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
  await exited;
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`timed out waiting until ${what}`);
}

export async function runReal(phaseS: number): Promise<RealResult> {
  const dir = mkdtempSync(path.join(tmpdir(), 'sextant-overload-'));
  const children: ChildProcess[] = [];
  try {
    const appPort = await freePort();
    const app = spawn(process.execPath, [path.join(repo, 'test', 'support', 'knee-app.ts'), '--port', String(appPort), '--workers', String(WORKERS), '--mean-ms', String(MEAN_MS), '--seed', '5'], { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
    children.push(app);
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: app.stdout! }).once('line', () => resolve());
      app.once('exit', (code) => reject(new Error(`the app exited (${code})`)));
    });
    writeFileSync(path.join(dir, 'mesh.yaml'), `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: app, namespace: default}
spec:
  hosts: [app.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: ${IP}, ports: {http: 9080}}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: app, namespace: default}
spec:
  workloadSelector: {labels: {app: app}}
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    bind: ${IP}
    defaultEndpoint: 127.0.0.1:${appPort}
    captureMode: NONE
---
apiVersion: sextant.io/v1alpha1
kind: AdaptiveLimit
metadata: {name: app, namespace: default}
spec:
  host: app
  enforce: true
  target: {latency: ${TARGET_MS}ms, percentile: 99}
  limits: {floor: 4, initial: 24, ceiling: 256}
  queue: {size: 8, timeout: 50ms}
  priority: {tiers: 6, tier0ReservePercent: 20}
  failSafe: {limit: ${FAIL_SAFE}, lease: 3s}
`);
    const xds = `127.0.0.1:${await freePort()}`;
    const httpAddr = `127.0.0.1:${await freePort()}`;
    const pilot = spawn(process.execPath, [CLI, 'pilot', '--plaintext-xds', '--config-dir', dir, '--xds-address', xds, '--http-address', httpAddr, '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'], detached: true });
    children.push(pilot);
    await until('the pilot is ready', async () => (await fetch(`http://${httpAddr}/ready`)).status === 200);
    const admin = `127.0.0.1:${await freePort()}`;
    const proxy = spawn(process.execPath, [CLI, 'proxy', '--xds', xds, '--id', `sidecar~${IP}~app-abcde.default~default.svc.cluster.local`, '--label', 'app=app', '--admin-address', admin, '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'], detached: true });
    children.push(proxy);
    const limitNow = async (): Promise<number | undefined> => {
      const text = await fetch(`http://${admin}/stats/prometheus`).then((r) => r.text(), () => '');
      const line = text.split('\n').find((l) => l.startsWith('sextant_admission_limit'));
      return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
    };
    await until('the proxy is ready', async () => (await fetch(`http://${admin}/ready`)).status === 200);
    await until('the gate holds the initial limit', async () => (await limitNow()) === 24);
    // warm the app and the connections (a fresh process is slow at first)
    for (let i = 0; i < 50; i++) await Promise.all([0, 1, 2, 3].map(() => fetch(`http://${IP}:9080/`).then((r) => r.text(), () => '')));

    const P = phaseS * 1000;
    // 5μ lasts two phases: the pilot is killed 1.25 phases in
    const phases = [{ name: '0.5μ', x: 0.5 }, { name: '2μ', x: 2 }, { name: '0.5μ after 2μ', x: 0.5 }, { name: '5μ', x: 5 }, { name: '5μ', x: 5 }];
    const killAt = 3 * P + 1.25 * P;
    const cpuBefore = processCpuSeconds(proxy.pid!);
    let pushesAtKill: number | undefined;
    let limitAtKill: number | undefined;
    let lapsedAt: number | undefined;
    const killer = (async () => {
      await sleep(killAt);
      const metrics = await fetch(`http://${httpAddr}/metrics`).then((r) => r.text(), () => '');
      const m = /sextant_adaptive_pushes_total\{rule="default\/app"\} (\d+)/.exec(metrics);
      pushesAtKill = m === null ? undefined : Number(m[1]);
      const killedAt = Date.now();
      await kill(pilot);
      limitAtKill = await limitNow();
      while (Date.now() - killedAt < 30_000) {
        if ((await limitNow()) === FAIL_SAFE) { lapsedAt = Date.now() - killedAt; break; }
        await sleep(50);
      }
    })();
    const load = await runOpenLoop({ host: IP, port: 9080, rate: (t) => MU * (phases[Math.min(phases.length - 1, Math.floor(t / P))]!.x), durationMs: phases.length * P, seed: 9, deadlineMs: 2000, tier0Fraction: 0.1, lowTier: 5 });
    await killer;
    const cpu = processCpuSeconds(proxy.pid!) - cpuBefore;
    const skip = P / 4;
    // 5μ is split at the kill: while the pilot lives, and after the lease lapsed (fail-safe)
    const windows = [
      ...phases.slice(0, 3).map((p, i) => ({ name: p.name, x: p.x, from: i * P + skip, to: (i + 1) * P })),
      { name: '5μ, pilot up', x: 5, from: 3 * P + skip, to: killAt },
      ...(lapsedAt === undefined ? [] : [{ name: '5μ, lease lapsed to the fail-safe', x: 5, from: killAt + lapsedAt, to: 5 * P }]),
    ];
    const out: RealPhase[] = windows.map((p) => {
      const s = summarize(load.sent, p.from, p.to);
      return {
        phase: p.name,
        offeredRps: MU * p.x,
        goodputRatio: Math.round((s.ok / (MU * ((p.to - p.from) / 1000))) * 1000) / 1000,
        admittedP99Ms: Number.isFinite(s.admittedP99) ? Math.round(s.admittedP99) : null,
        shedFraction: s.sent === 0 ? 0 : Math.round((s.shed / s.sent) * 1000) / 1000,
        tier0Success: s.tier0Sent === 0 ? null : Math.round((s.tier0Ok / s.tier0Sent) * 1000) / 1000,
      };
    });
    const halves = [summarize(load.sent, 0, P), summarize(load.sent, 2 * P + skip, 3 * P)];
    const unloaded = summarize(load.sent, P / 4, P);
    return {
      mu: MU,
      targetP99Ms: TARGET_MS,
      phases: out,
      unloadedP99Ms: Number.isFinite(unloaded.admittedP99) ? Math.round(unloaded.admittedP99) : null,
      falseShedding: Math.round((halves.reduce((a, h) => a + h.shed, 0) / Math.max(1, halves.reduce((a, h) => a + h.sent, 0))) * 10_000) / 10_000,
      sidecarCpuSecondsPer1k: Math.round((cpu / (load.sent.length / 1000)) * 1000) / 1000,
      pushesPerMin: pushesAtKill === undefined ? null : Math.round((pushesAtKill / (killAt / 60_000)) * 10) / 10,
      limitAtKill: limitAtKill ?? null,
      lapseAfterKillS: lapsedAt === undefined ? null : Math.round(lapsedAt / 100) / 10,
      failSafe: FAIL_SAFE,
      sendLagP99Ms: Math.round(load.sendLagP99Ms * 10) / 10,
      requests: load.sent.length,
    };
  } finally {
    for (const c of children.reverse()) await kill(c);
    rmSync(dir, { recursive: true, force: true });
  }
}
