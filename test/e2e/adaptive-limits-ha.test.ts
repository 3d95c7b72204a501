// Adaptive limits with several pilots on one etcd, all real processes: two `sextant pilot
// --etcd-endpoints` replicas, two `sextant proxy` sidecars with the admission gate in front of
// one app, one sidecar connected to each pilot (sidecar a to the leader, pilot a, with pilot b as
// its fallback; sidecar b to pilot b only), a light steady load through both, and an enforced
// AdaptiveLimit. Both sidecars get a leased limit (not the fail-safe); the leader's controller
// counts both instances' reports (the one on the other pilot too, through etcd); pilot a is
// killed: pilot b becomes leader, its controller takes both instances' reports, and both
// sidecars hold a leased limit from it. Outcomes are asserted, never timings.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import type { Resource } from '../../src/api/resource.ts';
import { openConfigStore } from '../../src/config/index.ts';
import type { LeaderStatus } from '../../src/pilot/leader/index.ts';
import { etcdUnavailableReason, startEtcd, type EtcdProcess } from '../helpers/etcd.ts';
import { freePort } from '../helpers/ports.ts';

const skip = etcdUnavailableReason();
const repo = path.resolve(import.meta.dirname, '../..');
const CLI = path.join(repo, 'src/cli/main.ts');
const dir = mkdtempSync(path.join(tmpdir(), 'sextant-adaptive-ha-'));
const LEASE_SECONDS = 4;
const IP_A = '127.0.7.31';
const IP_B = '127.0.7.32';
const FAIL_SAFE = 96;
const CEILING = 64;
const FLOOR = 2;
const HOST = 'app.default.svc.cluster.local';

const children: { name: string; proc: ChildProcess; log: string }[] = [];
let etcd: EtcdProcess | undefined;
let app: http.Server | undefined;
let loadRunning = false;
let load: Promise<void> | undefined;

interface PilotProcess { name: string; proc: ChildProcess; xds: string; http: string }
let pilotA: PilotProcess;
let pilotB: PilotProcess;
const admin: Record<'a' | 'b', string> = { a: '', b: '' };

function killAll(): void {
  for (const c of children) {
    try {
      if (c.proc.exitCode === null && c.proc.signalCode === null) process.kill(-c.proc.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}
process.on('exit', killAll);

function start(name: string, args: string[]): ChildProcess {
  const log = path.join(dir, `${name}.log`);
  const fd = openSync(log, 'a');
  const proc = spawn(process.execPath, args, { cwd: repo, env: process.env, detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  children.push({ name, proc, log });
  return proc;
}

function logTails(): string {
  return children.map((c) => {
    let text = '';
    try {
      text = readFileSync(c.log, 'utf8');
    } catch {
      // no log yet
    }
    return `--- ${c.name} (exit ${c.proc.exitCode ?? c.proc.signalCode ?? 'running'})\n${text.split('\n').slice(-12).join('\n')}`;
  }).join('\n');
}

async function getJson<T>(url: string): Promise<T | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    return res.status === 200 ? await res.json() as T : undefined;
  } catch {
    return undefined;
  }
}

/** Polls `check` every 200 ms until it returns a value; fails after `timeoutMs` with the processes' logs. */
async function until<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs: number): Promise<T> {
  const started = Date.now();
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() - started > timeoutMs) assert.fail(`timed out after ${timeoutMs} ms waiting until ${what}\nlast /debug/limits: ${lastDebug}\n${logTails()}`);
    await sleep(200);
  }
}

async function startPilotProcess(name: string): Promise<PilotProcess> {
  const xds = `127.0.0.1:${await freePort()}`;
  const httpAddress = `127.0.0.1:${await freePort()}`;
  const proc = start(name, [CLI, 'pilot', '--plaintext-xds', '--etcd-endpoints', etcd!.endpoint, '--xds-address', xds, '--http-address', httpAddress, '--id', name, '--leader-lease', `${LEASE_SECONDS}s`, '--debounce-after', '50ms', '--log-level', 'info']);
  await until(`${name} is ready`, async () => (await fetch(`http://${httpAddress}/ready`).then((r) => r.status === 200, () => false)), 30_000);
  return { name, proc, xds, http: httpAddress };
}

async function startSidecar(which: 'a' | 'b', ip: string, xds: string): Promise<void> {
  admin[which] = `127.0.0.1:${await freePort()}`;
  start(`sidecar-${which}`, [CLI, 'proxy', '--xds', xds, '--id', `sidecar~${ip}~app-${which}.default~default.svc.cluster.local`, '--label', 'app=app', '--label', `instance=${which}`, '--admin-address', admin[which], '--drain-duration', '200ms', '--log-level', 'warn']);
  await until(`sidecar ${which} is ready`, async () => (await fetch(`http://${admin[which]}/ready`).then((r) => r.status === 200, () => false)), 30_000);
  await until(`sidecar ${which} gates its inbound port`, async () => (await fetch(`http://${admin[which]}/config_dump`).then((r) => r.text(), () => '')).includes('sextant.filters.http.admission'), 30_000);
}

async function proxyStat(which: 'a' | 'b', name: string): Promise<number | undefined> {
  const text = await fetch(`http://${admin[which]}/stats/prometheus`, { signal: AbortSignal.timeout(2000) }).then((r) => r.text(), () => '');
  const line = text.split('\n').find((l) => l.startsWith(name));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

/** The limit a sidecar's gate enforces when it comes from a lease (not the fail-safe). */
async function leasedLimit(which: 'a' | 'b'): Promise<number | undefined> {
  const v = await proxyStat(which, 'sextant_admission_limit');
  return v !== undefined && v >= FLOOR && v <= CEILING ? v : undefined;
}

interface RuleStatus { mode?: string; measured?: { reportingInstances: number; healthyInstances: number; samples: number }; limits?: { instance: string; limit: number }[] }
interface LimitsDebug { running: boolean; rules: Record<string, RuleStatus>; exchange: { kind: string; observationWrites?: number; limitReads?: number } }
const limitsOf = (p: PilotProcess): Promise<LimitsDebug | undefined> => getJson<LimitsDebug>(`http://${p.http}/debug/limits`);
const leaderOf = (p: PilotProcess): Promise<LeaderStatus | undefined> => getJson<LeaderStatus>(`http://${p.http}/debug/leader`);

/** Both instances report into `p`'s running controller, and it holds a limit for each. */
let lastDebug = '';
async function countsBoth(p: PilotProcess): Promise<RuleStatus | undefined> {
  const d = await limitsOf(p);
  lastDebug = JSON.stringify(d);
  const s = d?.rules['default/app'];
  if (d?.running !== true || s?.measured?.reportingInstances !== 2) return undefined;
  const instances = (s.limits ?? []).map((l) => l.instance).sort();
  return instances.join(',') === `${IP_A}:9080,${IP_B}:9080` ? s : undefined;
}

/** A light steady load through both sidecars (a few requests a second each), until the end. */
function startLoad(): void {
  loadRunning = true;
  const one = (ip: string): Promise<void> => fetch(`http://${ip}:9080/`, { signal: AbortSignal.timeout(2000) }).then((r) => r.text(), () => '').then(() => undefined);
  load = (async () => {
    while (loadRunning) {
      await Promise.all([one(IP_A), one(IP_B), sleep(100)]);
    }
  })();
}

before(async () => {
  if (skip !== undefined) return;
  etcd = await startEtcd();
  app = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => setTimeout(() => res.writeHead(200, { 'content-type': 'text/plain' }).end('app\n'), 5));
  });
  await new Promise<void>((resolve) => app!.listen(0, '127.0.0.1', resolve));
  const appPort = (app.address() as { port: number }).port;
  const ingress = (which: 'a' | 'b', ip: string): Resource => ({
    apiVersion: 'networking.istio.io/v1', kind: 'Sidecar', metadata: { name: `app-${which}`, namespace: 'default' },
    spec: { workloadSelector: { labels: { instance: which } }, ingress: [{ port: { number: 9080, protocol: 'HTTP', name: 'http' }, bind: ip, defaultEndpoint: `127.0.0.1:${appPort}`, captureMode: 'NONE' }] },
  });
  const store = await openConfigStore({ etcdEndpoints: [etcd.endpoint], logger: pino({ level: 'silent' }) });
  const seed: Resource[] = [
    {
      apiVersion: 'networking.istio.io/v1', kind: 'ServiceEntry', metadata: { name: 'app', namespace: 'default' },
      spec: { hosts: [HOST], location: 'MESH_INTERNAL', resolution: 'STATIC', ports: [{ number: 9080, name: 'http', protocol: 'HTTP' }], endpoints: [{ address: IP_A, ports: { http: 9080 } }, { address: IP_B, ports: { http: 9080 } }] },
    },
    ingress('a', IP_A),
    ingress('b', IP_B),
    {
      apiVersion: 'sextant.io/v1alpha1', kind: 'AdaptiveLimit', metadata: { name: 'app', namespace: 'default' },
      spec: { host: 'app', enforce: true, target: { latency: '200ms', percentile: 99 }, pid: { interval: '1s' }, limits: { floor: FLOOR, initial: 32, ceiling: CEILING }, failSafe: { limit: FAIL_SAFE, lease: '3s' } },
    },
  ];
  for (const r of seed) await store.create(r);
  await store.close();
});

after(async () => {
  loadRunning = false;
  await load;
  killAll();
  app?.closeAllConnections();
  app?.close();
  await etcd?.stop();
  if (process.env['KEEP_HA_LOGS']) process.stderr.write(`adaptive-ha logs kept in ${dir}\n`);
  else rmSync(dir, { recursive: true, force: true });
});

test('a sidecar on each pilot: both get a leased limit, and the leader counts both instances\' load', { skip }, async () => {
  pilotA = await startPilotProcess('pilot-a');
  await until('pilot-a leads', async () => (await leaderOf(pilotA))?.leader === true, 15_000);
  pilotB = await startPilotProcess('pilot-b');
  await until('pilot-b knows the leader', async () => (await leaderOf(pilotB))?.leaderIdentity === 'pilot-a', 10_000);
  await startSidecar('a', IP_A, `${pilotA.xds},${pilotB.xds}`);
  await startSidecar('b', IP_B, pilotB.xds);
  // the fail-safe holds until a lease arrives
  startLoad();
  const [la, lb] = await Promise.all([
    until('sidecar a holds a leased limit', () => leasedLimit('a'), 20_000),
    until('sidecar b (on the pilot that does not lead) holds a leased limit', () => leasedLimit('b'), 20_000),
  ]);
  assert.ok(la >= FLOOR && la <= CEILING && lb >= FLOOR && lb <= CEILING);
  const layer = await fetch(`http://${admin.b}/runtime`).then((r) => r.text());
  assert.match(layer, /circuit_breakers\.inbound\|9080\|\|\.default\.max_requests/);
  // the leader's controller hears both instances, the one reporting to pilot b included
  const status = await until('the leader counts both instances\' reports', () => countsBoth(pilotA), 20_000);
  assert.equal(status.mode, 'enforce');
  assert.equal(status.measured!.healthyInstances, 2);
  assert.ok(status.measured!.samples > 0);
  const a = (await limitsOf(pilotA))!;
  const b = (await limitsOf(pilotB))!;
  assert.equal(a.exchange.kind, 'etcd');
  assert.equal(b.exchange.kind, 'etcd');
  assert.equal(b.running, false, 'only the leader runs the controller');
  assert.ok((b.exchange.observationWrites ?? 0) > 0, 'pilot b wrote its proxies\' reports');
  assert.ok((b.exchange.limitReads ?? 0) > 0, 'pilot b serves the leader\'s limits');
});

test('the leader killed: the other pilot leads, counts both instances, and both sidecars hold its leased limits', { skip }, async () => {
  process.kill(-pilotA.proc.pid!, 'SIGKILL');
  await until('pilot-b leads', async () => (await leaderOf(pilotB))?.leader === true, 30_000);
  // sidecar a fell over to pilot b; pilot b's controller now takes both instances' reports
  const status = await until('the new leader counts both instances\' reports', () => countsBoth(pilotB), 30_000);
  assert.equal(status.measured!.healthyInstances, 2);
  // whatever happened in between (held, or lapsed to the fail-safe), both hold a leased limit from the new leader
  const served = new Map((status.limits ?? []).map((l) => [l.instance, l.limit]));
  await until('both sidecars hold the new leader\'s limits', async () => {
    const d = (await limitsOf(pilotB))?.rules['default/app'];
    const now = new Map((d?.limits ?? []).map((l) => [l.instance, l.limit]));
    const [la, lb] = [await leasedLimit('a'), await leasedLimit('b')];
    return la !== undefined && lb !== undefined && la === now.get(`${IP_A}:9080`) && lb === now.get(`${IP_B}:9080`);
  }, 20_000);
  assert.equal(served.size, 2);
});
