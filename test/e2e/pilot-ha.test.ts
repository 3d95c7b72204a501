// Several pilots on one etcd, all real processes: two `sextant pilot --etcd-endpoints` replicas,
// a `sextant proxy --xds A,B` sidecar in front of a backend, and a proxyless gRPC client whose
// bootstrap names both pilots. A write through the store (`sextant apply`) reaches the sidecar
// on pilot A; SIGKILL of A under 50 requests a second fails none, the sidecar is SYNCED on B
// within 5 s and later writes reach it through B; B is elected leader within the lease time;
// the proxyless client gets its next config through B too.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
import { startGreeter } from '../helpers/grpc-echo.ts';
import { greeterBootstrap, lineQueue } from '../helpers/proxyless-client.ts';

const skip = etcdUnavailableReason();
const repo = path.resolve(import.meta.dirname, '../..');
const CLI = path.join(repo, 'src/cli/main.ts');
const dir = mkdtempSync(path.join(tmpdir(), 'sextant-pilot-ha-'));
const LEASE_SECONDS = 4;
const WORKLOAD_IP = '127.0.61.1';
const EGRESS_IP = '127.0.62.1';
const SIDECAR_ID = `sidecar~${WORKLOAD_IP}~client-1.default~default.svc.cluster.local`;
const BACKEND_HOST = 'backend.default.svc.cluster.local';

const children: { name: string; proc: ChildProcess; log: string }[] = [];
const servers: { close(): void }[] = [];
let etcd: EtcdProcess | undefined;

interface PilotProcess { name: string; proc: ChildProcess; xds: string; http: string }
let pilotA: PilotProcess;
let pilotB: PilotProcess;
let sidecarAdmin = '';
let backendPort = 0;
let termOfA = '';
let greeter: { ask(line: string): Promise<Record<string, number>> };

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

/** Starts a process of its own group, logging to a file in the test's folder. */
function start(name: string, args: string[], env: NodeJS.ProcessEnv = {}, stdin: 'ignore' | 'pipe' = 'ignore', stdout: 'log' | 'pipe' = 'log'): ChildProcess {
  const log = path.join(dir, `${name}.log`);
  const fd = openSync(log, 'a');
  const proc = spawn(process.execPath, args, { cwd: repo, env: { ...process.env, ...env }, detached: true, stdio: [stdin, stdout === 'log' ? fd : 'pipe', fd] });
  closeSync(fd);
  children.push({ name, proc, log });
  return proc;
}

/** The last lines each process logged, for failure messages. */
function logTails(): string {
  return children.map((c) => {
    let text = '';
    try {
      text = readFileSync(c.log, 'utf8');
    } catch {
      // no log yet
    }
    return `--- ${c.name} (exit ${c.proc.exitCode ?? c.proc.signalCode ?? 'running'})\n${text.split('\n').slice(-15).join('\n')}`;
  }).join('\n');
}

async function getJson<T>(url: string): Promise<{ status: number; body: T | undefined }> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    const text = await res.text();
    return { status: res.status, body: (text.startsWith('{') || text.startsWith('[') ? JSON.parse(text) : undefined) as T | undefined };
  } catch {
    return { status: 0, body: undefined };
  }
}

/** Polls `check` every 100 ms; returns the ms it took, or fails after `timeoutMs` with the processes' logs. */
async function until(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > timeoutMs) assert.fail(`timed out after ${timeoutMs} ms waiting until ${what}\n${logTails()}`);
    await sleep(100);
  }
  return Date.now() - started;
}

async function startPilotProcess(name: string): Promise<PilotProcess> {
  const xds = `127.0.0.1:${await freePort()}`;
  const httpAddress = `127.0.0.1:${await freePort()}`;
  const proc = start(name, [CLI, 'pilot', '--plaintext-xds', '--etcd-endpoints', etcd!.endpoint, '--xds-address', xds, '--http-address', httpAddress, '--id', name, '--leader-lease', `${LEASE_SECONDS}s`, '--debounce-after', '50ms']);
  const p = { name, proc, xds, http: httpAddress };
  await until(`${name} is ready`, async () => (await getJson(`http://${httpAddress}/ready`)).status === 200, 30_000);
  return p;
}

const leader = async (p: PilotProcess): Promise<LeaderStatus | undefined> => (await getJson<LeaderStatus>(`http://${p.http}/debug/leader`)).body;

interface SyncStatus { proxy: string; types: { type: string; state: string }[] }
async function syncz(p: PilotProcess, proxy: string): Promise<SyncStatus | undefined> {
  return (await getJson<SyncStatus[]>(`http://${p.http}/debug/syncz?proxy=${encodeURIComponent(proxy)}`)).body?.[0];
}
// CDS, EDS, LDS and RDS each SYNCED, and so is any other type the proxy watches (RTDS, ECDS)
const allSynced = (s: SyncStatus | undefined): boolean => s !== undefined && ['CDS', 'EDS', 'LDS', 'RDS'].every((t) => s.types.some((x) => x.type === t)) && s.types.every((t) => t.state === 'SYNCED');

/** `sextant apply --etcd-endpoints` with the given YAML, as an operator (or the registration API) writes config. */
async function apply(yaml: string): Promise<void> {
  const file = path.join(dir, `apply-${Date.now()}.yaml`);
  writeFileSync(file, yaml);
  const proc = spawn(process.execPath, [CLI, 'apply', '--etcd-endpoints', etcd!.endpoint, '-f', file], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((resolve) => proc.once('exit', resolve));
  assert.equal(code, 0, `sextant apply failed: ${out}`);
}

const backendRoute = (value: string): string => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: backend, namespace: default}
spec:
  hosts: [${BACKEND_HOST}]
  http:
  - headers: {response: {set: {x-config-write: ${value}}}}
    route:
    - destination: {host: ${BACKEND_HOST}}
`;

const greeterRoute = (subset: string): string => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: greeter, namespace: default}
spec:
  hosts: [greeter.default.svc.cluster.local]
  http:
  - route:
    - destination: {host: greeter.default.svc.cluster.local, subset: ${subset}}
`;

const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

/** One request through the sidecar's egress listener, as the app would send it. */
function call(): Promise<{ status: number; written: string | undefined; error?: string }> {
  return new Promise((resolve) => {
    const req = http.request({ host: EGRESS_IP, port: 8080, path: '/', headers: { host: `${BACKEND_HOST}:8080` }, agent, timeout: 5000 }, (res) => {
      res.resume();
      res.on('end', () => {
        const w = res.headers['x-config-write'];
        resolve({ status: res.statusCode ?? 0, written: Array.isArray(w) ? w.join(',') : w });
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err) => resolve({ status: 0, written: undefined, error: err.message }));
    req.end();
  });
}

async function greeterServer(reply: string): Promise<number> {
  const { server, port } = await startGreeter(reply);
  servers.push({ close: () => server.forceShutdown() });
  return port;
}

before(async () => {
  if (skip !== undefined) return;
  etcd = await startEtcd();
  const backend = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'text/plain' }).end('backend\n'));
  });
  await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
  servers.push({ close: () => { backend.closeAllConnections(); backend.close(); } });
  backendPort = (backend.address() as { port: number }).port;
  const [v1, v2] = await Promise.all([greeterServer('v1'), greeterServer('v2')]);

  // The mesh's config, written to etcd through the store before any pilot runs.
  const store = await openConfigStore({ etcdEndpoints: [etcd.endpoint], logger: pino({ level: 'silent' }) });
  const seed: Resource[] = [
    {
      apiVersion: 'networking.istio.io/v1', kind: 'ServiceEntry', metadata: { name: 'backend', namespace: 'default' },
      spec: { hosts: [BACKEND_HOST], location: 'MESH_INTERNAL', resolution: 'STATIC', ports: [{ number: 8080, name: 'http', protocol: 'HTTP' }], endpoints: [{ address: '127.0.0.1', ports: { http: backendPort } }] },
    },
    {
      apiVersion: 'networking.istio.io/v1', kind: 'Sidecar', metadata: { name: 'client', namespace: 'default' },
      spec: { workloadSelector: { labels: { app: 'client' } }, egress: [{ port: { number: 8080, protocol: 'HTTP', name: 'http' }, bind: EGRESS_IP, captureMode: 'NONE', hosts: ['./*'] }] },
    },
    {
      apiVersion: 'networking.istio.io/v1', kind: 'ServiceEntry', metadata: { name: 'greeter', namespace: 'default' },
      spec: { hosts: ['greeter.default.svc.cluster.local'], location: 'MESH_INTERNAL', resolution: 'STATIC', ports: [{ number: 50051, name: 'grpc', protocol: 'GRPC' }], workloadSelector: { labels: { app: 'greeter' } } },
    },
    { apiVersion: 'networking.istio.io/v1', kind: 'WorkloadEntry', metadata: { name: 'greeter-v1', namespace: 'default' }, spec: { address: '127.0.0.1', ports: { grpc: v1 }, labels: { app: 'greeter', version: 'v1' } } },
    { apiVersion: 'networking.istio.io/v1', kind: 'WorkloadEntry', metadata: { name: 'greeter-v2', namespace: 'default' }, spec: { address: '127.0.0.1', ports: { grpc: v2 }, labels: { app: 'greeter', version: 'v2' } } },
    {
      apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: 'greeter', namespace: 'default' },
      spec: { host: 'greeter.default.svc.cluster.local', subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] },
    },
    {
      apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'greeter', namespace: 'default' },
      spec: { hosts: ['greeter.default.svc.cluster.local'], http: [{ route: [{ destination: { host: 'greeter.default.svc.cluster.local', subset: 'v1' } }] }] },
    },
  ];
  for (const r of seed) await store.create(r);
  await store.close();
});

after(async () => {
  killAll();
  for (const s of servers) s.close();
  agent.destroy();
  await etcd?.stop();
  if (process.env['KEEP_HA_LOGS']) process.stderr.write(`pilot-ha logs kept in ${dir}\n`);
  else rmSync(dir, { recursive: true, force: true });
});

test('two pilots on one etcd serve the same config; the first elected leads and the other knows it', { skip }, async () => {
  pilotA = await startPilotProcess('pilot-a');
  await until('pilot-a leads', async () => (await leader(pilotA))?.leader === true, 15_000);
  pilotB = await startPilotProcess('pilot-b');
  await until('pilot-b knows the leader', async () => (await leader(pilotB))?.leaderIdentity === 'pilot-a', 10_000);
  const a = (await leader(pilotA))!;
  const b = (await leader(pilotB))!;
  assert.deepEqual(
    { leader: a.leader, identity: a.identity, leaderIdentity: a.leaderIdentity, election: a.election, ttl: a.lease?.ttlSeconds },
    { leader: true, identity: 'pilot-a', leaderIdentity: 'pilot-a', election: 'etcd', ttl: LEASE_SECONDS },
  );
  assert.deepEqual(
    { leader: b.leader, identity: b.identity, leaderIdentity: b.leaderIdentity, term: b.term, validUntil: b.lease?.validUntil },
    { leader: false, identity: 'pilot-b', leaderIdentity: 'pilot-a', term: a.term, validUntil: null },
  );
  termOfA = a.term!;
  const metrics = async (p: PilotProcess): Promise<string> => (await (await fetch(`http://${p.http}/metrics`)).text());
  assert.match(await metrics(pilotA), /^sextant_pilot_leader 1$/m);
  assert.match(await metrics(pilotB), /^sextant_pilot_leader 0$/m);

  // Both serve the same config, under the same content-derived version.
  const configz = async (p: PilotProcess): Promise<{ version: string; resources: unknown[] }> => (await getJson<{ version: string; resources: unknown[] }>(`http://${p.http}/debug/configz`)).body!;
  const [ca, cb] = [await configz(pilotA), await configz(pilotB)];
  assert.equal(ca.resources.length, 7);
  assert.equal(cb.resources.length, 7);
});

test('a write through the config store reaches the sidecar connected to pilot A, and the proxyless client too', { skip }, async () => {
  const admin = `127.0.0.1:${await freePort()}`;
  start('sidecar', [CLI, 'proxy', '--xds', `${pilotA.xds},${pilotB.xds}`, '--id', SIDECAR_ID, '--label', 'app=client', '--admin-address', admin]);
  sidecarAdmin = admin;
  await until('the sidecar is ready', async () => (await getJson(`http://${admin}/ready`)).status === 200, 30_000);
  await until('the sidecar is SYNCED on pilot A', async () => allSynced(await syncz(pilotA, SIDECAR_ID)), 10_000);
  assert.equal(await syncz(pilotB, SIDECAR_ID), undefined, 'the sidecar uses one pilot at a time');
  assert.deepEqual(await call(), { status: 200, written: undefined });

  await apply(backendRoute('first'));
  await until('the write reaches the sidecar through pilot A', async () => (await call()).written === 'first', 10_000);

  // A proxyless gRPC client: grpc-js-xds uses the bootstrap's first xds_server, whose URI
  // names both pilots; clients with xDS fallback (gRFC A71) also read the second entry.
  const bootstrap = greeterBootstrap([`ipv4:${pilotA.xds},${pilotB.xds}`, pilotB.xds]);
  const proc = start('grpc-client', ['test/e2e/pilot-xds-client.ts', 'xds:///greeter.default.svc.cluster.local:50051'], { GRPC_XDS_BOOTSTRAP_CONFIG: bootstrap }, 'pipe', 'pipe');
  const out = lineQueue(proc.stdout!);
  greeter = {
    async ask(line) {
      proc.stdin!.write(`${line}\n`);
      return JSON.parse(await out.next()) as Record<string, number>;
    },
  };
  assert.deepEqual(await greeter.ask('5'), { v1: 5 });
});

test('SIGKILL of pilot A under traffic: no request fails, the sidecar is SYNCED on B within 5 s, and B leads within the lease time', { skip }, async (t) => {
  // 50 requests a second through the sidecar, before, during and after the failover.
  const outcomes = new Map<string, number>();
  let sent = 0;
  const inFlight: Promise<void>[] = [];
  const timer = setInterval(() => {
    sent++;
    inFlight.push(call().then((r) => {
      const key = r.status === 200 ? '200' : `${r.status} ${r.error ?? ''}`;
      outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
    }));
  }, 20);
  try {
    await sleep(2000);
    const killedAt = Date.now();
    process.kill(-pilotA.proc.pid!, 'SIGKILL');

    const syncedAfter = await until('the sidecar is SYNCED on pilot B', async () => allSynced(await syncz(pilotB, SIDECAR_ID)), 5000);
    const sinceKill = Date.now() - killedAt;
    assert.ok(sinceKill <= 5000, `SYNCED on B ${sinceKill} ms after the kill`);
    t.diagnostic(`sidecar SYNCED on pilot B ${sinceKill} ms after SIGKILL of pilot A (polled ${syncedAfter} ms)`);

    // A's lease is not revoked (it was killed): B leads once etcd expires it, within the TTL.
    await until('pilot-b leads', async () => (await leader(pilotB))?.leader === true, LEASE_SECONDS * 1000 + 3000);
    const leadAfter = Date.now() - killedAt;
    assert.ok(leadAfter <= LEASE_SECONDS * 1000 + 3000, `B leads ${leadAfter} ms after the kill`);
    t.diagnostic(`pilot B elected leader ${leadAfter} ms after SIGKILL of pilot A (lease ${LEASE_SECONDS} s)`);
    const b = (await leader(pilotB))!;
    assert.equal(b.leaderIdentity, 'pilot-b');
    assert.ok(BigInt(b.term!) > BigInt(termOfA), `term ${b.term} follows ${termOfA}`);

    // Writes now reach the sidecar through B.
    await apply(backendRoute('second'));
    await until('the write reaches the sidecar through pilot B', async () => (await call()).written === 'second', 10_000);
    await sleep(Math.max(0, 10_000 - (Date.now() - killedAt) - 2000));
  } finally {
    clearInterval(timer);
    await Promise.all(inFlight);
  }
  assert.ok(sent >= 400, `${sent} requests sent`);
  assert.deepEqual([...outcomes], [['200', sent]], `every request answered 200: ${JSON.stringify([...outcomes])}`);
  assert.equal((await getJson(`http://${sidecarAdmin}/ready`)).status, 200);
});

test('the proxyless gRPC client gets its next config through pilot B', { skip }, async () => {
  await apply(greeterRoute('v2'));
  let counts: Record<string, number> = {};
  await until('calls go to v2', async () => {
    counts = await greeter.ask('10');
    return counts['v2'] === 10;
  }, 20_000);
  assert.deepEqual(counts, { v2: 10 });
  const s = (await getJson<SyncStatus[]>(`http://${pilotB.http}/debug/syncz`)).body ?? [];
  assert.ok(s.some((c) => c.proxy.includes('greeter-client')), 'the proxyless client is connected to pilot B');
});
