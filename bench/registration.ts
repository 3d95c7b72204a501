// The registration API at scale: 10,000 services and 50,000 instances (as the API writes them:
// ServiceEntries selecting WorkloadEntries) in etcd, one `sextant pilot` on it with the API on,
// and 1,000 simulated proxies (bench/pilot-clients.ts; 10 per namespace, a root Sidecar scoping
// each namespace to itself and ns-0 seeing everything). Measures:
//
//  - pull-out latency: from sending the pull-out call to every proxy that holds the instance
//    having ACKed the EDS that carries it DRAINING (as the pilot sees the ACKs: the acks of
//    GET …/instances/{id}, polled every 20 ms); one call at a time, and under background calls;
//  - calls per second one pilot sustains: pull-out/pull-in toggles of random instances, and
//    registrations of new instances, from concurrent clients.
//
// Writes bench/results/registration.json.
//
//   node bench/registration.ts [--services 10000] [--instances 5] [--proxies 1000] [--namespaces 100]
//                              [--samples 100] [--seconds 20] [--concurrency 32] [--background 50]
//   env: BENCH_PILOT_NODE_ARGS / BENCH_CLIENTS_NODE_ARGS (e.g. --cpu-prof), BENCH_PILOT_LOG=FILE (the pilot's output)
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { cpus, loadavg, totalmem, tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Etcd3 } from 'etcd3';
import type { Resource } from '../src/api/index.ts';
import { encodeValue } from '../src/config/etcd/value.ts';
import { serviceEntryOf, workloadEntryOf } from '../src/registry/api/resources.ts';
import { ETCD_BINARY, startEtcd } from '../test/helpers/etcd.ts';
import { freePort } from '../test/helpers/ports.ts';

const repo = path.resolve(import.meta.dirname, '..');
const nodeBin = path.join(repo, 'node_modules/.bin/node');
const PREFIX = '/sextant/config';
const TOKEN = 'bench-registration-token-0123456789';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ''), process.argv[i + 1] ?? '');
const num = (k: string, d: number): number => Number(args.get(k) ?? d);
const SERVICES = num('services', 10_000);
const INSTANCES = num('instances', 5);
const PROXIES = num('proxies', 1000);
const NAMESPACES = num('namespaces', 100);
const SAMPLES = num('samples', 100);
const SECONDS = num('seconds', 20);
const CONCURRENCY = num('concurrency', 32);
const BACKGROUND = num('background', 50);

const nsOf = (svc: number): string => `ns-${svc % NAMESPACES}`;
const address = (svc: number, i: number): string => {
  const n = svc * INSTANCES + i;
  return `10.${Math.floor(n / 62_500) % 250}.${Math.floor(n / 250) % 250}.${(n % 250) + 1}`;
};

function meshResources(): Resource[] {
  const out: Resource[] = [];
  const sidecar = (namespace: string, hosts: string): Resource => ({ apiVersion: 'networking.istio.io/v1', kind: 'Sidecar', metadata: { name: 'default', namespace }, spec: { egress: [{ hosts: [hosts] }] } });
  out.push(sidecar('istio-system', './*'), sidecar('ns-0', '*/*'));
  for (let s = 0; s < SERVICES; s++) {
    out.push(serviceEntryOf(nsOf(s), `svc-${s}`, { ports: [{ name: 'http', number: 80, protocol: 'HTTP' }] }));
    for (let i = 0; i < INSTANCES; i++) out.push(workloadEntryOf(nsOf(s), `svc-${s}`, `e${i}`, { address: address(s, i), labels: { version: 'v1' } }));
  }
  return out;
}

async function populate(endpoint: string, resources: Resource[]): Promise<void> {
  const client = new Etcd3({ hosts: [endpoint] });
  try {
    const now = new Date().toISOString();
    let next = 0;
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (next < resources.length) {
        const batch = resources.slice(next, next + 100);
        next += 100;
        await client.kv.txn({
          compare: [],
          success: batch.map((r) => ({ request_put: { key: Buffer.from(`${PREFIX}/${r.kind}/${r.metadata.namespace}/${r.metadata.name}`), value: encodeValue({ ...r, metadata: { ...r.metadata, creationTimestamp: now, generation: 1 } }) } })),
          failure: [],
        });
      }
    }));
  } finally {
    client.close();
  }
}

function cpuMs(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

function peakRssMb(pid: number | undefined): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

const summary = (values: number[]): { n: number; p50Ms: number; p99Ms: number; maxMs: number } => ({
  n: values.length, p50Ms: Math.round(percentile(values, 50)), p99Ms: Math.round(percentile(values, 99)), maxMs: Math.round(Math.max(...values)),
});

function lines(proc: ChildProcess, onLine: (entry: Record<string, unknown>) => void, copyTo?: number): void {
  createInterface({ input: proc.stdout! }).on('line', (l) => {
    if (copyTo !== undefined) writeSync(copyTo, `${l}\n`);
    try {
      onLine(JSON.parse(l) as Record<string, unknown>);
    } catch {
      // not JSON
    }
  });
}

const children: ChildProcess[] = [];
function killChildren(): void {
  for (const c of children) {
    try {
      process.kill(-c.pid!, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(tmpdir(), 'sextant-bench-registration-'));
  const etcd = await startEtcd();
  try {
    const resources = meshResources();
    let t = Date.now();
    await populate(etcd.endpoint, resources);
    process.stderr.write(`populated etcd with ${resources.length} resources in ${((Date.now() - t) / 1000).toFixed(1)} s\n`);
    const tokens = path.join(dir, 'tokens');
    writeFileSync(tokens, `${TOKEN} *\n`);
    const xds = `127.0.0.1:${await freePort()}`;
    const http = `127.0.0.1:${await freePort()}`;
    t = Date.now();
    const extra = (process.env['BENCH_PILOT_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');
    const pilot = spawn(nodeBin, ['--max-old-space-size=4096', ...extra, 'src/cli/pilot-main.ts', 'pilot', '--plaintext-xds', '--etcd-endpoints', etcd.endpoint, '--xds-address', xds, '--http-address', http, '--registration-tokens', tokens, '--log-level', 'info'], { cwd: repo, stdio: ['ignore', 'pipe', 'inherit'], detached: true });
    children.push(pilot);
    let readyMs = 0;
    let pushes = 0;
    const builds: number[] = [];
    // BENCH_PILOT_LOG=FILE keeps the pilot's output (its log lines, and --trace-gc's) for a closer look.
    const pilotLog = process.env['BENCH_PILOT_LOG'] ? openSync(process.env['BENCH_PILOT_LOG'], 'w') : undefined;
    lines(pilot, (e) => {
      if (e['msg'] === 'pilot ready') readyMs = Date.now() - t;
      if (e['msg'] === 'push queued') pushes++;
      if (e['msg'] === 'push context built' && builds.length < 100_000) builds.push(Number(e['ms']));
    }, pilotLog);
    const clientExtra = (process.env['BENCH_CLIENTS_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');
    const clients = spawn(nodeBin, ['--max-old-space-size=4096', ...clientExtra, 'bench/pilot-clients.ts', '--xds', xds, '--proxies', String(PROXIES), '--namespaces', String(NAMESPACES)], { cwd: repo, stdio: ['pipe', 'pipe', 'inherit'], detached: true });
    children.push(clients);
    let allSyncedMs = 0;
    lines(clients, (e) => {
      if (e['event'] === 'all-synced') allSyncedMs = Date.now() - t;
    });
    while (allSyncedMs === 0) {
      if (Date.now() - t > 900_000) throw new Error('the proxies did not sync within 900 s');
      await new Promise((r) => setTimeout(r, 200));
    }
    process.stderr.write(`pilot ready after ${readyMs} ms; ${PROXIES} proxies synced after ${allSyncedMs} ms\n`);
    await new Promise((r) => setTimeout(r, 2000));

    const api = `http://${http}/apis/registration/v1`;
    const call = async (method: string, p: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> => {
      const res = await fetch(`${api}${p}`, { method, headers: { authorization: `Bearer ${TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    const instancePath = (svc: number, i: number): string => `/namespaces/${nsOf(svc)}/services/svc-${svc}/instances/e${i}`;
    const state = new Map<string, 'in' | 'out'>();
    const pick = (): [number, number] => [Math.floor(Math.random() * SERVICES), Math.floor(Math.random() * INSTANCES)];

    // The simulated proxy `app-N` speaks delta xDS when N is odd, state of the world when even.
    const isDelta = (proxy: string): boolean => Number(/~app-(\d+)\./.exec(proxy)?.[1] ?? 0) % 2 === 1;
    const TIMEOUT_MS = 30_000;

    /**
     * Pulls an instance out (or in) and waits until every proxy holding it has ACKed: ms from the
     * call until the delta proxies had, and until all had (undefined: not within TIMEOUT_MS).
     */
    const timedPull = async (svc: number, i: number, to: 'in' | 'out'): Promise<{ ms: number | undefined; deltaMs: number | undefined; proxies: number; stuck: string[] }> => {
      const p = instancePath(svc, i);
      const started = performance.now();
      const r = await call('POST', `${p}:pull-${to}`);
      if (r.status !== 200) throw new Error(`pull-${to} ${p}: ${r.status} ${JSON.stringify(r.body)}`);
      state.set(p, to);
      const version = Number(r.body['resourceVersion']);
      let deltaMs: number | undefined;
      for (;;) {
        const g = await call('GET', p);
        const acks = g.body['acks'] as { complete: boolean; pushed: boolean; resourceVersion: string; proxies: Array<{ proxy: string; acked: boolean }> };
        const current = Number(acks.resourceVersion) >= version && acks.pushed;
        if (deltaMs === undefined && current && acks.proxies.every((x) => x.acked || !isDelta(x.proxy))) deltaMs = performance.now() - started;
        if (acks.complete && current) return { ms: performance.now() - started, deltaMs, proxies: acks.proxies.length, stuck: [] };
        if (performance.now() - started > TIMEOUT_MS) return { ms: undefined, deltaMs, proxies: acks.proxies.length, stuck: acks.proxies.filter((x) => !x.acked).map((x) => x.proxy) };
        await new Promise((res) => setTimeout(res, 20));
      }
    };

    const latency = async (samples: number, label: string): Promise<Record<string, unknown>> => {
      const outs: number[] = [];
      const ins: number[] = [];
      const deltaOuts: number[] = [];
      const holders: number[] = [];
      const timedOut: Array<{ instance: string; stuck: string[] }> = [];
      for (let k = 0; k < samples; k++) {
        // Some proxy stopped keeping up (its ACKs lag by more than the timeout): more samples would only time out too.
        if (timedOut.length >= 4) break;
        const [svc, i] = pick();
        for (const to of ['out', 'in'] as const) {
          const o = await timedPull(svc, i, to);
          if (o.ms === undefined) timedOut.push({ instance: `${instancePath(svc, i)}:pull-${to}`, stuck: o.stuck });
          else (to === 'out' ? outs : ins).push(o.ms);
          if (to === 'out') {
            holders.push(o.proxies);
            if (o.deltaMs !== undefined) deltaOuts.push(o.deltaMs);
          }
          await new Promise((r) => setTimeout(r, 150));
        }
      }
      process.stderr.write(`${label}: pull-out p50 ${Math.round(percentile(outs, 50))} ms p99 ${Math.round(percentile(outs, 99))} ms, ${timedOut.length} not acked within ${TIMEOUT_MS / 1000} s\n`);
      return {
        pullOut: summary(outs), pullIn: summary(ins), pullOutDeltaProxies: summary(deltaOuts),
        proxiesPerInstance: { p50: percentile(holders, 50), max: Math.max(...holders) },
        notAckedWithin30s: timedOut.length, timedOut: timedOut.slice(0, 5),
      };
    };

    /** Calls from `concurrency` clients for `seconds`; `next` makes one call and says whether it succeeded. */
    const throughput = async (seconds: number, concurrency: number, next: () => Promise<boolean>, ratePerSecond?: number, stopped: () => boolean = () => false): Promise<{ calls: number; failed: number; callsPerSecond: number; latency: ReturnType<typeof summary>; pilotCpuSeconds: number }> => {
      const lat: number[] = [];
      let failed = 0;
      const cpu0 = cpuMs(pilot.pid);
      const started = performance.now();
      const end = started + seconds * 1000;
      let issued = 0;
      await Promise.all(Array.from({ length: concurrency }, async () => {
        while (performance.now() < end && !stopped()) {
          if (ratePerSecond !== undefined) {
            const due = started + (issued / ratePerSecond) * 1000;
            issued++;
            const wait = due - performance.now();
            if (wait > 0) await new Promise((r) => setTimeout(r, wait));
            if (performance.now() >= end || stopped()) break;
          }
          const t0 = performance.now();
          const ok = await next().catch(() => false);
          lat.push(performance.now() - t0);
          if (!ok) failed++;
        }
      }));
      const elapsed = (performance.now() - started) / 1000;
      return { calls: lat.length, failed, callsPerSecond: Math.round(lat.length / elapsed), latency: summary(lat), pilotCpuSeconds: Math.round((cpuMs(pilot.pid) - cpu0) / 100) / 10 };
    };

    const toggle = async (): Promise<boolean> => {
      const [svc, i] = pick();
      const p = instancePath(svc, i);
      const to = state.get(p) === 'out' ? 'in' : 'out';
      state.set(p, to);
      return (await call('POST', `${p}:pull-${to}`)).status === 200;
    };
    let fresh = 0;
    const registerNew = async (): Promise<boolean> => {
      const svc = Math.floor(Math.random() * SERVICES);
      const n = fresh++;
      return (await call('PUT', `/namespaces/${nsOf(svc)}/services/svc-${svc}/instances/n${n}`, { address: `10.250.${Math.floor(n / 250) % 250}.${(n % 250) + 1}`, labels: { version: 'v2' } })).status === 201;
    };

    const phaseCpu = (): { pilot: number; clients: number } => ({ pilot: cpuMs(pilot.pid), clients: cpuMs(clients.pid) });
    const cpuSince = (from: { pilot: number; clients: number }): { pilotCpuSeconds: number; clientsCpuSeconds: number } => {
      const now = phaseCpu();
      return { pilotCpuSeconds: Math.round((now.pilot - from.pilot) / 100) / 10, clientsCpuSeconds: Math.round((now.clients - from.clients) / 100) / 10 };
    };
    const cpu0 = cpuMs(pilot.pid);
    let mark = phaseCpu();
    builds.length = 0;
    const idle = { ...(await latency(SAMPLES, 'pull-out, one call at a time')), ...cpuSince(mark), snapshotBuildMs: summary(builds.splice(0)) };

    // Latency while other instances are being pulled in and out at BACKGROUND calls/s.
    let loaded: Record<string, unknown> | undefined;
    let background: Awaited<ReturnType<typeof throughput>> | undefined;
    if (BACKGROUND > 0) {
      let stop = false;
      mark = phaseCpu();
      const bg = throughput(3600, 8, toggle, BACKGROUND, () => stop);
      const measured = await latency(Math.max(10, Math.round(SAMPLES / 2)), `pull-out under ${BACKGROUND} calls/s`);
      stop = true;
      background = await bg;
      loaded = { ...measured, ...cpuSince(mark), snapshotBuildMs: summary(builds.splice(0)) };
      await new Promise((r) => setTimeout(r, 5000));
    }

    mark = phaseCpu();
    const pulls = { ...(await throughput(SECONDS, CONCURRENCY, toggle)), ...cpuSince(mark) };
    process.stderr.write(`pull-in/pull-out: ${pulls.callsPerSecond} calls/s, p99 ${pulls.latency.p99Ms} ms, ${pulls.failed} failed\n`);
    await new Promise((r) => setTimeout(r, 12_000)); // the debounced pushes of the burst settle
    mark = phaseCpu();
    const registrations = { ...(await throughput(SECONDS, CONCURRENCY, registerNew)), ...cpuSince(mark) };
    process.stderr.write(`new instances: ${registrations.callsPerSecond} calls/s, p99 ${registrations.latency.p99Ms} ms, ${registrations.failed} failed\n`);

    const result = {
      benchmark: 'registration',
      at: new Date().toISOString(),
      machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? '', memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version, etcd: execFileSync(ETCD_BINARY, ['--version'], { encoding: 'utf8' }).split('\n')[0], loadAverage1m: loadavg()[0] },
      mesh: { services: SERVICES, instances: SERVICES * INSTANCES, proxies: PROXIES, namespaces: NAMESPACES, scope: 'root Sidecar ./* per namespace; ns-0 sees */*' },
      startup: { pilotReadyMs: readyMs, allProxiesSyncedMs: allSyncedMs },
      pullOutToAllAcked: { ...idle, note: 'one call at a time; from sending the call to the pilot seeing every proxy that holds the instance ACK its new EDS (GET acks polled every 20 ms)' },
      pullOutToAllAckedUnderLoad: loaded === undefined ? null : { ...loaded, backgroundCallsPerSecond: BACKGROUND, background },
      callsPerSecond: { pullInOut: { ...pulls, concurrency: CONCURRENCY, seconds: SECONDS }, newInstances: { ...registrations, concurrency: CONCURRENCY, seconds: SECONDS } },
      pilot: { peakRssMb: peakRssMb(pilot.pid), cpuSecondsDuringCalls: Math.round((cpuMs(pilot.pid) - cpu0) / 100) / 10, pushesQueued: pushes },
    };
    const out = path.join(repo, 'bench', 'results', args.get('out') ?? 'registration.json');
    writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    clients.stdin!.end();
  } finally {
    // A graceful stop, so a pilot run with --cpu-prof (BENCH_PILOT_NODE_ARGS) writes its profile.
    const [pilot, clients] = children;
    if (clients?.stdin !== null && clients?.stdin !== undefined && clients.exitCode === null) {
      clients.stdin.end();
      await Promise.race([new Promise((r) => clients.once('exit', r)), new Promise((r) => setTimeout(r, 15_000))]);
    }
    if (pilot?.pid !== undefined && pilot.exitCode === null) {
      process.kill(pilot.pid, 'SIGTERM');
      await Promise.race([new Promise((r) => pilot.once('exit', r)), new Promise((r) => setTimeout(r, 15_000))]);
    }
    killChildren();
    await etcd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => {
  killChildren();
  process.exit(1);
});
await main();
process.exit(0);
