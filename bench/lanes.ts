// Lanes and active-active costs, on real sidecars and a real pilot (test/e2e/lanes-mesh.ts):
//
//  - sidecar CPU per request with lanes on vs off, in one run: two identical meshes side by side
//    (one pilot with a LaneGroup, one without), each a load generator → b's sidecar → b's app →
//    b's sidecar → c. b's sidecar does the whole lane work of a middle hop: the inbound side
//    records the request's trace id and writes the lane into baggage, the outbound side finds the
//    lane by the trace id alone (b forwards only traceparent) and routes to the lane cluster.
//    The load alternates between the two meshes in rounds; the sidecars' CPU is read from /proc;
//  - the trace table's memory at its bound (10,000 and 100,000 trace ids, two ids per request:
//    traceparent and x-request-id), from the heap after a full collection (needs --expose-gc);
//  - data-centre failover time: a client sidecar in sh/dc-a, three instances in each data
//    centre registered through the registration API; the local three removed through the API
//    while requests flow: the time from the first removal call to the last request sent that
//    still reached sh/dc-a, and the errors seen (expected: none).
//
// Writes bench/results/lanes.json.
//
//   node --expose-gc bench/lanes.ts [--rounds 5] [--requests 2000] [--concurrency 16] [--failovers 5]
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import path from 'node:path';
import { TraceTable, traceKeys } from '../src/proxy/filters/lanes/index.ts';
import { closeAgent, pool, request, startLaneMesh, traceparent, type LaneMesh, type Reply } from '../test/e2e/lanes-mesh.ts';

const repo = path.resolve(import.meta.dirname, '..');
const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ''), process.argv[i + 1] ?? '');
const num = (k: string, d: number): number => Number(args.get(k) ?? d);
const ROUNDS = num('rounds', 5);
const REQUESTS = num('requests', 2000);
const CONCURRENCY = num('concurrency', 16);
const FAILOVERS = num('failovers', 5);
const TICK = 100; // clock ticks per second (USER_HZ) in /proc/PID/stat

const LANES = `apiVersion: sextant.io/v1alpha1
kind: LaneGroup
metadata: {name: dev, namespace: default}
spec:
  services: [b, c]
  lanes: [{name: s2}, {name: s3}]
  # the load generator calls b's sidecar directly: its lane header is trusted
  trustedSources: [127.0.0.0/8]
`;

/** utime + stime of a process, in ms. */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICK;
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function laneCost(): Promise<Record<string, unknown>> {
  const specs = [{ name: 'b', service: 'b', next: 'c' }, { name: 'c-base', service: 'c', bare: true }, { name: 'c-s2', service: 'c', lane: 's2', bare: true }];
  const on = await startLaneMesh(170, specs, LANES);
  const off = await startLaneMesh(172, specs, '');
  try {
    const meshes: Array<[string, LaneMesh]> = [['on', on], ['off', off]];
    const send = (m: LaneMesh): Promise<Reply> => request(m.workload('b').ip, 9080, { host: 'b.default.svc.cluster.local', 'x-sextant-lane': 's2', traceparent: traceparent() });
    // warm-up, and the lane routing checked: with lanes on, b's call reaches s2's c
    for (const [, m] of meshes) await pool(500, CONCURRENCY, () => send(m));
    const check = await send(on);
    if (check.body?.next?.body?.name !== 'c-s2') throw new Error(`lanes on: b's call went to ${check.body?.next?.body?.name}`);
    if ((await send(off)).body?.next?.body?.name === undefined) throw new Error('lanes off: b\'s call failed');
    const result: Record<string, { cpuMs: number; requests: number; wallMs: number; errors: number }> = { on: { cpuMs: 0, requests: 0, wallMs: 0, errors: 0 }, off: { cpuMs: 0, requests: 0, wallMs: 0, errors: 0 } };
    for (let r = 0; r < ROUNDS; r++) {
      for (const [name, m] of r % 2 === 0 ? meshes : [...meshes].reverse()) {
        const pid = m.workload('b').sidecar!.pid!;
        const cpu0 = cpuMs(pid);
        const t0 = performance.now();
        const replies = await pool(REQUESTS, CONCURRENCY, () => send(m));
        result[name]!.wallMs += performance.now() - t0;
        result[name]!.cpuMs += cpuMs(pid) - cpu0;
        result[name]!.requests += REQUESTS;
        result[name]!.errors += replies.filter((x) => x.status !== 200).length;
      }
    }
    const perRequest = (k: string): number => (result[k]!.cpuMs * 1000) / result[k]!.requests;
    return {
      what: 'CPU of the middle sidecar (inbound + outbound hop) per request, lanes on vs off',
      rounds: ROUNDS, requestsPerRound: REQUESTS, concurrency: CONCURRENCY,
      on: { ...result['on'], cpuUsPerRequest: Math.round(perRequest('on')) },
      off: { ...result['off'], cpuUsPerRequest: Math.round(perRequest('off')) },
      laneCostUsPerRequest: Math.round(perRequest('on') - perRequest('off')),
      laneCostPercent: Math.round((100 * (perRequest('on') - perRequest('off'))) / perRequest('off') * 10) / 10,
    };
  } finally {
    await on.stop();
    await off.stop();
  }
}

function tableMemory(): Record<string, unknown> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) return { skipped: 'run with node --expose-gc' };
  const out: Record<string, unknown> = {};
  for (const bound of [10_000, 100_000]) {
    gc();
    const before = process.memoryUsage().heapUsed;
    const table = new TraceTable(bound, 60_000);
    // every request has a traceparent and an x-request-id: two keys, one entry object
    for (let i = 0; i < bound * 2; i++) {
      const keys = traceKeys([{ name: 'traceparent', value: traceparent() }, { name: 'x-request-id', value: crypto.randomUUID() }]);
      table.record(keys, { lane: i % 2 === 0 ? 's2' : 's3', originDc: undefined });
    }
    gc();
    const bytes = process.memoryUsage().heapUsed - before;
    out[String(bound)] = { entries: table.size, heapMiB: Math.round((bytes / 2 ** 20) * 10) / 10, bytesPerEntry: Math.round(bytes / table.size), evictions: table.evictions };
    if (table.size > bound) throw new Error('trace table over its bound');
  }
  return out;
}

async function failover(): Promise<Record<string, unknown>> {
  const TOKEN = 'bench-lanes-token-0123456789';
  const tokens = mkdtempSync(path.join(tmpdir(), 'sextant-bench-lanes-'));
  const file = path.join(tokens, 'tokens');
  writeFileSync(file, `${TOKEN} default\n`, { mode: 0o600 });
  const instances = [1, 2, 3, 4, 5, 6].map((n) => ({ id: `i${n}`, dc: n <= 3 ? 'sh/dc-a' : 'sh/dc-b', ip: `127.0.174.${n + 1}` }));
  const mesh = await startLaneMesh(174, [{ name: 'client', dc: 'sh/dc-a' }, ...instances.map((i) => ({ name: `echo-${i.id}`, service: 'echo', dc: i.dc, bare: true, unregistered: true }))], '', ['--registration-tokens', file]);
  const api = async (method: string, p: string, body?: unknown): Promise<number> => {
    const res = await fetch(`${mesh.pilot.url}/apis/registration/v1${p}`, { method, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    await res.arrayBuffer();
    return res.status;
  };
  const register = async (i: (typeof instances)[number]): Promise<void> => {
    const s = await api('PUT', `/namespaces/default/services/echo/instances/${i.id}`, { address: i.ip, ports: { http: 8080 }, locality: i.dc });
    if (s !== 200 && s !== 201) throw new Error(`register ${i.id}: ${s}`);
  };
  try {
    if (await api('PUT', '/namespaces/default/services/echo', { ports: [{ name: 'http', number: 9080, protocol: 'HTTP' }] }) !== 201) throw new Error('service');
    for (const i of instances) await register(i);
    const send = (): Promise<Reply> => mesh.send('client', 'echo', { traceparent: traceparent() });
    const samples: Array<{ lastLocalMs: number; firstRemoteMs: number; errors: number; requests: number }> = [];
    for (let s = 0; s < FAILOVERS; s++) {
      for (let w = 0; w < 200 && (await send()).body?.dc !== 'sh/dc-a'; w++) await new Promise((r) => setTimeout(r, 50));
      const sent: Array<{ at: number; dc: string; status: number }> = [];
      let stop = false;
      const load = Promise.all(Array.from({ length: 8 }, async () => {
        while (!stop) {
          const at = performance.now();
          const r = await send();
          sent.push({ at, dc: r.body?.dc ?? '', status: r.status });
        }
      }));
      await new Promise((r) => setTimeout(r, 500));
      const t0 = performance.now();
      for (const i of instances.filter((x) => x.dc === 'sh/dc-a')) await api('DELETE', `/namespaces/default/services/echo/instances/${i.id}`);
      await new Promise((r) => setTimeout(r, 3000));
      stop = true;
      await load;
      const after = sent.filter((x) => x.at >= t0);
      const lastLocal = Math.max(0, ...after.filter((x) => x.dc === 'sh/dc-a').map((x) => x.at - t0));
      const firstRemote = Math.min(...after.filter((x) => x.dc === 'sh/dc-b').map((x) => x.at - t0));
      samples.push({ lastLocalMs: Math.round(lastLocal), firstRemoteMs: Math.round(firstRemote), errors: sent.filter((x) => x.status !== 200).length, requests: sent.length });
      for (const i of instances.filter((x) => x.dc === 'sh/dc-a')) await register(i);
    }
    const last = samples.map((s) => s.lastLocalMs).sort((a, b) => a - b);
    return {
      what: 'local instances removed through the registration API under load: from the first removal call to the last request sent that still reached the local data centre',
      samples,
      lastLocalMs: { p50: percentile(last, 50), max: last[last.length - 1] },
      errors: samples.reduce((a, s) => a + s.errors, 0),
      goal: 'all traffic on the other data centre within 2 s, no error',
    };
  } finally {
    await mesh.stop();
    rmSync(tokens, { recursive: true, force: true });
  }
}

const result = {
  benchmark: 'lanes',
  at: new Date().toISOString(),
  machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model.split(' ').slice(0, 2).join(' '), memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version, loadAverage1m: Math.round(loadavg()[0]! * 100) / 100 },
  traceTable: tableMemory(),
  laneCost: await laneCost(),
  failover: await failover(),
};
closeAgent();
writeFileSync(path.join(repo, 'bench/results/lanes.json'), JSON.stringify(result, null, 2) + '\n');
process.stdout.write(JSON.stringify(result, null, 2) + '\n');
