// Pilot at scale: 10,000 ServiceEntries with 50,000 endpoints served to 1,000 simulated proxies
// (bench/pilot-clients.ts, a separate process; half state-of-the-world, half delta). Measures
// start to all proxies ACKed, convergence after one endpoint change and one VirtualService change
// (from the file write, so both debounces are included), bytes pushed per proxy with and without
// a Sidecar scope, and the pilot's peak RSS. Writes bench/results/pilot-scale.json.
//
//   node bench/pilot-scale.ts [--services 10000] [--endpoints 5] [--proxies 1000] [--namespaces 100]
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';

const repo = path.resolve(import.meta.dirname, '..');
const nodeBin = path.join(repo, 'node_modules/.bin/node');
const CLOCK_TICKS_PER_SECOND = 100; // Linux's USER_HZ

/**
 * The benchmark's mesh. `namespace` scope: only ns-1 has a Sidecar (hosts `./*`), every other
 * proxy sees the whole mesh. `mesh-default`: a root-namespace Sidecar scopes every namespace to
 * itself, except ns-0, whose own Sidecar imports every namespace: the usual production set-up.
 */
export interface ScaleMesh {
  services: number;
  endpointsPerService: number;
  namespaces: number;
  scope: 'namespace' | 'mesh-default';
}

const SCOPED_NAMESPACE = 'ns-1';

/** User + system CPU of a process so far, in ms (Linux /proc); undefined elsewhere. */
function cpuMs(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}
function serviceEntry(mesh: ScaleMesh, ns: number, i: number, endpointShift = 0): string {
  const eps = Array.from({ length: mesh.endpointsPerService }, (_, e) => {
    const n = i * mesh.endpointsPerService + e + endpointShift;
    return `  - {address: 10.${(ns % 200) + 10}.${Math.floor(n / 250) % 250}.${(n % 250) + 1}}`;
  }).join('\n');
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc-${i}, namespace: ns-${ns}}
spec:
  hosts: [svc-${i}.ns-${ns}.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
${eps}
`;
}

/** The ServiceEntries of namespace `ns`; `changed` moves one service's endpoints (the endpoint change). */
function namespaceFile(mesh: ScaleMesh, ns: number, changed?: { index: number }): string {
  const perNs = Math.ceil(mesh.services / mesh.namespaces);
  const docs: string[] = [];
  for (let i = 0; i < perNs && ns * perNs + i < mesh.services; i++) docs.push(serviceEntry(mesh, ns, i, changed?.index === i ? 100_000 : 0));
  return docs.join('---\n');
}

function virtualService(timeout: string): string {
  return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc-0, namespace: ns-0}
spec:
  hosts: [svc-0.ns-0.svc.cluster.local]
  http:
  - timeout: ${timeout}
    route:
    - destination: {host: svc-0.ns-0.svc.cluster.local}
`;
}

function sidecarFile(mesh: ScaleMesh): string {
  const sidecar = (namespace: string, hosts: string): string => `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: ${namespace}}
spec:
  egress:
  - hosts: ["${hosts}"]
`;
  return mesh.scope === 'namespace' ? sidecar(SCOPED_NAMESPACE, './*') : `${sidecar('istio-system', './*')}---\n${sidecar('ns-0', '*/*')}`;
}

/** The mesh's config directory as the pilot starts on it: file name → YAML. */
export function meshFiles(mesh: ScaleMesh): Map<string, string> {
  const files = new Map<string, string>();
  for (let ns = 0; ns < mesh.namespaces; ns++) files.set(`ns-${ns}.yaml`, namespaceFile(mesh, ns));
  files.set('vs.yaml', virtualService('5s'));
  files.set('sidecar.yaml', sidecarFile(mesh));
  return files;
}

/** Replaces `file` atomically, by a rename from `scratch` (outside the watched config directory). */
function write(scratch: string, file: string, text: string): void {
  const tmp = path.join(scratch, `.${path.basename(file)}.tmp`);
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function lines(proc: ChildProcess, onLine: (entry: Record<string, unknown>) => void): void {
  createInterface({ input: proc.stdout! }).on('line', (l) => {
    try {
      onLine(JSON.parse(l) as Record<string, unknown>);
    } catch {
      // not JSON
    }
  });
}

/** GET a JSON page from the pilot, retrying a connection the server closed under us. */
async function getJson<T>(url: string): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return (await (await fetch(url)).json()) as T;
    } catch (err) {
      if (attempt >= 5) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function peakRssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /VmHWM:\s+(\d+) kB/.exec(status);
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}

interface Run {
  mesh: ScaleMesh;
  proxies: number;
  /** Result file name under bench/results. */
  out: string;
  /** Scratch directory (the pilot's config directory goes in it). */
  dir: string;
  /** Processes started, killed on exit. */
  children: ChildProcess[];
}

async function main(run: Run): Promise<void> {
  const { mesh, proxies, children } = run;
  const { services, endpointsPerService, namespaces, scope } = mesh;
  const configDir = path.join(run.dir, 'config');
  mkdirSync(configDir);
  for (const [file, text] of meshFiles(mesh)) writeFileSync(path.join(configDir, file), text);
  const [xdsPort, httpPort] = [await freePort(), await freePort()];
  const httpAddress = `127.0.0.1:${httpPort}`;

  const t0 = Date.now();
  const extra = (process.env['BENCH_PILOT_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');
  const pilot = spawn(nodeBin, ['--max-old-space-size=4096', ...extra, 'src/cli/pilot-main.ts', 'pilot', '--plaintext-xds', '--config-dir', configDir, '--xds-address', `127.0.0.1:${xdsPort}`, '--http-address', httpAddress, '--log-level', 'info'], { cwd: repo, stdio: ['ignore', 'pipe', 'inherit'], detached: true });
  children.push(pilot);
  let readyAt = 0;
  // CPU time, not only wall time: the machine is shared, and CPU is what this work reduces.
  let pilotCpuAtReady: number | undefined;
  let pilotCpuAtSynced: number | undefined;
  let clientsCpuAtSynced: number | undefined;
  let builtMs = 0;
  let storeLoadedAt = 0;
  const builds: { at: number; ms: number }[] = [];
  const queuedAt: number[] = [];
  const pilotLog: Record<string, unknown>[] = [];
  lines(pilot, (e) => {
    if (e['msg'] === 'config directory loaded') storeLoadedAt = Date.now();
    if (pilotLog.length < 2000 && e['level'] !== 30) pilotLog.push(e);
    if (e['msg'] === 'pilot ready') {
      readyAt = Date.now();
      pilotCpuAtReady = cpuMs(pilot.pid);
    }
    if (e['msg'] === 'push context built') {
      if (builtMs === 0) builtMs = Number(e['ms']);
      builds.push({ at: Date.now(), ms: Number(e['ms']) });
    }
    if (e['msg'] === 'push queued') queuedAt.push(Date.now());
  });

  const clientExtra = (process.env['BENCH_CLIENTS_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');
  const clients = spawn(nodeBin, ['--max-old-space-size=4096', ...clientExtra, 'bench/pilot-clients.ts', '--xds', `127.0.0.1:${xdsPort}`, '--proxies', String(proxies), '--namespaces', String(namespaces)], { cwd: repo, stdio: ['pipe', 'pipe', 'inherit'], detached: true });
  children.push(clients);
  const synced: { proxy: number; delta: boolean; at: number; bytes: number }[] = [];
  let allSyncedAt = 0;
  const waiters = new Map<string, (e: Record<string, unknown>) => void>();
  lines(clients, (e) => {
    if (e['event'] === 'synced') synced.push(e as unknown as { proxy: number; delta: boolean; at: number; bytes: number });
    if (e['event'] === 'all-synced') {
      allSyncedAt = Number(e['at']);
      pilotCpuAtSynced = cpuMs(pilot.pid);
      clientsCpuAtSynced = cpuMs(clients.pid);
    }
    const key = `${String(e['event'])}|${String(e['id'] ?? '')}`;
    waiters.get(key)?.(e);
  });
  const expect = (event: string, id = ''): Promise<Record<string, unknown>> => new Promise((r) => waiters.set(`${event}|${id}`, r));
  const command = (cmd: string, id: string): void => void clients.stdin!.write(JSON.stringify({ cmd, id }) + '\n');

  const deadline = Date.now() + 900_000;
  let lastLog = 0;
  while (allSyncedAt === 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    if (Date.now() - lastLog > 5000) {
      lastLog = Date.now();
      process.stderr.write(`  ${Math.round((Date.now() - t0) / 1000)}s: ready=${readyAt > 0} synced=${synced.length}/${proxies}\n`);
    }
  }
  if (allSyncedAt === 0) throw new Error(`only ${synced.length} of ${proxies} proxies synced in 900 s`);
  const bytesOf = (filter: (p: number) => boolean): number => {
    const list = synced.filter((s) => filter(s.proxy));
    return Math.round(list.reduce((n, s) => n + s.bytes, 0) / Math.max(1, list.length));
  };
  const isScoped = (p: number): boolean => (scope === 'namespace' ? `ns-${p % namespaces}` === SCOPED_NAMESPACE : p % namespaces !== 0);

  async function pushSettled(since: number): Promise<void> {
    for (;;) {
      await new Promise((r) => setTimeout(r, 100));
      const st = await getJson<{ lastPush: { at: string } | null; queue: { queued: number; running: number } }>(`http://${httpAddress}/debug/push_status`);
      if (st.lastPush !== null && Date.parse(st.lastPush.at) >= since && st.queue.queued === 0 && st.queue.running === 0) break;
    }
    await new Promise((r) => setTimeout(r, 1000)); // let the last responses reach the clients
  }

  const breakdown: Record<string, { changeToSnapshotBuiltMs: number; snapshotBuildMs: number; changeToPushQueuedMs: number }> = {};
  async function measure(id: string, type: string, change: () => void): Promise<{ proxiesPushed: number; p50Ms: number; p99Ms: number; maxMs: number }> {
    const marked = expect('marked', id);
    command('mark', id);
    await marked;
    const at = Date.now();
    change();
    await pushSettled(at);
    const report = expect('report', id);
    command('report', id);
    const build = builds.find((b) => b.at >= at);
    const queued = queuedAt.find((q) => q >= at);
    breakdown[id] = { changeToSnapshotBuiltMs: build ? build.at - at : NaN, snapshotBuildMs: build?.ms ?? NaN, changeToPushQueuedMs: queued !== undefined ? queued - at : NaN };
    const times = ((await report)['times'] as { proxy: number; type: string; at: number }[]).filter((x) => x.type === type).map((x) => x.at - at).sort((a, b) => a - b);
    return { proxiesPushed: times.length, p50Ms: percentile(times, 50), p99Ms: percentile(times, 99), maxMs: times[times.length - 1] ?? NaN };
  }

  const endpointChange = await measure('endpoint', 'ClusterLoadAssignment', () => write(run.dir, path.join(configDir, 'ns-5.yaml'), namespaceFile(mesh, 5, { index: 3 })));
  const virtualServiceChange = await measure('virtualservice', 'RouteConfiguration', () => write(run.dir, path.join(configDir, 'vs.yaml'), virtualService('6s')));
  const rssMb = peakRssMb(pilot.pid!);
  const metrics = await fetch(`http://${httpAddress}/metrics`).then((r) => r.text(), () => '');
  const pushStatus = await getJson<{ encodedResources: number }>(`http://${httpAddress}/debug/push_status`);
  if (pilotLog.length > 0) process.stderr.write(`pilot warnings/errors: ${pilotLog.length}, first: ${JSON.stringify(pilotLog[0])}\n`);

  const result = {
    date: new Date().toISOString(),
    machine: { cpus: (await import('node:os')).cpus().length, node: process.version },
    config: { serviceEntries: services, endpoints: services * endpointsPerService, proxies, sotwProxies: Math.ceil(proxies / 2), deltaProxies: Math.floor(proxies / 2), namespaces, scope, scopedProxies: Array.from({ length: proxies }, (_, p) => p).filter(isScoped).length },
    startup: {
      configLoadedMs: storeLoadedAt - t0, pilotReadyMs: readyAt - t0, firstPushContextBuildMs: builtMs, allProxiesAckedMs: allSyncedAt - t0,
      // Process CPU (user + system) from /proc; absent where /proc is not available.
      pilotCpuToReadyMs: pilotCpuAtReady,
      pilotCpuReadyToAllAckedMs: pilotCpuAtSynced !== undefined && pilotCpuAtReady !== undefined ? pilotCpuAtSynced - pilotCpuAtReady : undefined,
      clientsCpuToAllAckedMs: clientsCpuAtSynced,
    },
    endpointChange,
    virtualServiceChange,
    changeBreakdown: breakdown,
    bytesPerProxy: { fullMesh: bytesOf((p) => !isScoped(p)), sidecarScoped: bytesOf(isScoped), sotw: bytesOf((p) => p % 2 === 0), delta: bytesOf((p) => p % 2 === 1) },
    pilotPeakRssMb: rssMb,
    pilotEncodedResources: pushStatus.encodedResources,
    pilotXdsRejects: Number(/^pilot_total_xds_rejects(?:\{[^}]*\})? (\d+)/m.exec(metrics)?.[1] ?? 0),
    goals: { allAckedUnderMs: 10_000, endpointP99UnderMs: 500, rssUnderMb: 1536 },
  };
  mkdirSync(path.join(repo, 'bench/results'), { recursive: true });
  const out = path.join(repo, 'bench/results', run.out);
  writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
  process.stdout.write(JSON.stringify(result, null, 2) + '\n');
  // A clean stop lets the pilot write profiles when BENCH_PILOT_NODE_ARGS asks for them.
  pilot.kill('SIGTERM');
  clients.stdin!.end();
  await Promise.all([new Promise((r) => pilot.once('exit', r)), new Promise((r) => clients.once('exit', r))]);
}

function killChildren(children: readonly ChildProcess[]): void {
  for (const c of children) {
    try {
      process.kill(-c.pid!, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

// Run, not imported: the PGV conformance test imports meshFiles() for this mesh.
if (import.meta.main) {
  const args = new Map<string, string>();
  for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ''), process.argv[i + 1] ?? '');
  const scope = args.get('scope') ?? 'namespace';
  if (scope !== 'namespace' && scope !== 'mesh-default') throw new Error(`invalid --scope "${scope}": expected namespace or mesh-default`);
  const mesh: ScaleMesh = {
    services: Number(args.get('services') ?? '10000'),
    endpointsPerService: Number(args.get('endpoints') ?? '5'),
    namespaces: Number(args.get('namespaces') ?? '100'),
    scope,
  };
  // The endpoint change moves svc-3 of ns-5: without it no push would come and the run would wait forever.
  if (5 * Math.ceil(mesh.services / mesh.namespaces) + 3 >= mesh.services) {
    throw new Error('--services and --namespaces: the endpoint change needs ns-5 to hold at least 4 services');
  }
  const run: Run = {
    mesh,
    proxies: Number(args.get('proxies') ?? '1000'),
    out: args.get('out') ?? 'pilot-scale.json',
    dir: mkdtempSync(path.join(tmpdir(), 'sextant-pilot-scale-')),
    children: [],
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      killChildren(run.children);
      rmSync(run.dir, { recursive: true, force: true });
      process.exit(1);
    });
  }
  try {
    await main(run);
  } finally {
    killChildren(run.children);
    rmSync(run.dir, { recursive: true, force: true });
  }
}
