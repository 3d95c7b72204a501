// Mesh mTLS against plaintext between a client and a server sidecar (issue 18), same run.
//
// Two sidecar pairs as real processes (`sextant proxy`), configured by one real pilot (in this
// process, idle during the measurement): namespace `plain` with PeerAuthentication DISABLE and
// a DestinationRule `tls: DISABLE`, namespace `mtls` with STRICT and ISTIO_MUTUAL. Each pair:
// this process → client sidecar (egress bind) → server sidecar (ingress bind) → an HTTP origin
// in this process. Open-loop load at RATE requests/s (sent on schedule whatever the answers
// do; latency counted from the scheduled send, so a stall is not hidden) over keep-alive
// connections, ROUNDS rounds of SECONDS per pair, interleaved, after a warm-up. Reported per
// pair (each the median over its rounds): requests/s achieved, latency p50 / p90 / p99 / max,
// and the CPU of both sidecars
// (utime + stime from /proc) as vCPU per 1,000 requests/s, beside Istio's published figure for
// Envoy with mTLS (0.35 vCPU per 1,000 rps per sidecar pair direction, different hardware).
// The host's load during the run is recorded: a busy host moves every figure.
// Writes bench/results/mtls-pair.json.
//
//   node bench/mtls-pair.ts [--rate 1000] [--seconds 10] [--rounds 3]
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { startPilot } from '../src/pilot/index.ts';
import { freePort } from '../test/helpers/ports.ts';
import { cpuSeconds, machineCpu, median, percentile } from './proc.ts';

const args = process.argv.slice(2);
const arg = (name: string, dflt: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const RATE = arg('rate', 1000);
const SECONDS = arg('seconds', 10);
const ROUNDS = arg('rounds', 3);
const CONNECTIONS = 32;
const root = path.resolve(import.meta.dirname, '..');
const work = mkdtempSync(path.join(os.tmpdir(), 'sextant-bench-mtls-pair-'));
const children: ChildProcess[] = [];

function cleanup(): void {
  for (const c of children) { try { process.kill(-c.pid!, 'SIGKILL'); } catch { /* gone */ } }
  rmSync(work, { recursive: true, force: true });
}
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));

const round2 = (n: number): number => Number(n.toFixed(2));

// The origin: a small JSON answer, in this process (its CPU is not measured).
const origin = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"reviews":[{"id":1,"stars":5}]}');
  });
});
await new Promise<void>((r) => origin.listen(0, '127.0.0.1', () => r()));
const originPort = (origin.address() as net.AddressInfo).port;

interface Pair { name: string; ns: string; client: string; server: string; mode: 'DISABLE' | 'STRICT'; tls: 'DISABLE' | 'ISTIO_MUTUAL' }
const PAIRS: Pair[] = [
  { name: 'plaintext', ns: 'plain', client: '127.0.71.1', server: '127.0.71.3', mode: 'DISABLE', tls: 'DISABLE' },
  { name: 'mTLS', ns: 'mtls', client: '127.0.72.1', server: '127.0.72.3', mode: 'STRICT', tls: 'ISTIO_MUTUAL' },
];
const PORT = 9080;

function pairYaml(p: Pair): string {
  return `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: ${p.ns}}
spec:
  hosts: [reviews.${p.ns}.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: ${PORT}, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: ${p.ns}}
spec: {address: ${p.server}, serviceAccount: reviews, labels: {app: reviews, version: v1, security.istio.io/tlsMode: istio}, ports: {http: ${PORT}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: ${p.ns}}
spec:
  host: reviews.${p.ns}.svc.cluster.local
  trafficPolicy: {tls: {mode: ${p.tls}}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: ${p.ns}}
spec: {mtls: {mode: ${p.mode}}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: client, namespace: ${p.ns}}
spec:
  workloadSelector: {labels: {app: client}}
  egress:
  - port: {number: ${PORT}, protocol: HTTP, name: http}
    bind: ${p.client}
    captureMode: NONE
    hosts: ["./*"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews, namespace: ${p.ns}}
spec:
  workloadSelector: {labels: {app: reviews}}
  ingress:
  - port: {number: ${PORT}, protocol: HTTP, name: http}
    bind: ${p.server}
    defaultEndpoint: 127.0.0.1:${originPort}
    captureMode: NONE
`;
}

const configDir = path.join(work, 'config');
mkdirSync(configDir);
writeFileSync(path.join(configDir, 'mesh.yaml'), PAIRS.map(pairYaml).join('\n---\n'));
const pilot = await startPilot({ configDir, xdsAddress: '127.0.0.1:0', httpAddress: '127.0.0.1:0', logger: pino({ level: 'silent' }), ca: { dir: path.join(work, 'ca') } });
await pilot.ready;

const admins = new Map<string, string>();
async function sidecar(p: Pair, app: 'client' | 'reviews'): Promise<number> {
  const admin = `127.0.0.1:${await freePort()}`;
  const ip = app === 'client' ? p.client : p.server;
  const argv = [path.join(root, 'bin/sextant.mjs'), 'proxy', '--xds', pilot.xdsAddress, '--id', `sidecar~${ip}~${app}-1.${p.ns}~${p.ns}.svc.cluster.local`, '--label', `app=${app}`, '--admin-address', admin, '--log-level', 'warn'];
  if (p.mode === 'STRICT') argv.push('--service-account', app);
  const c = spawn(process.execPath, argv, { stdio: ['ignore', 'ignore', 'inherit'], detached: true });
  children.push(c);
  admins.set(`${p.name}/${app}`, admin);
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (await fetch(`http://${admin}/ready`).then((r) => r.status === 200, () => false)) return c.pid!;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`sidecar ${app} of ${p.name} not ready`);
}

const pids = new Map<string, number[]>();
for (const p of PAIRS) pids.set(p.name, [await sidecar(p, 'client'), await sidecar(p, 'reviews')]);

/** Open loop: RATE requests/s for `seconds`, latency from each request's scheduled time. */
async function openLoop(p: Pair, rate: number, seconds: number): Promise<{ sent: number; ok: number; failed: number; lat: number[]; elapsed: number }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  const lat: number[] = [];
  let ok = 0;
  let failed = 0;
  let sent = 0;
  const total = Math.round(rate * seconds);
  const start = performance.now();
  const inflight = new Set<Promise<void>>();
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate));
      while (sent < due) {
        const scheduled = start + (sent / rate) * 1000;
        sent++;
        const pr = new Promise<void>((done) => {
          const req = http.request({ host: p.client, port: PORT, path: '/reviews/1', agent, headers: { host: `reviews.${p.ns}.svc.cluster.local:${PORT}` } }, (res) => {
            res.resume();
            res.on('end', () => {
              lat.push(performance.now() - scheduled);
              if (res.statusCode === 200) ok++;
              else failed++;
              done();
            });
          });
          req.on('error', () => { failed++; done(); });
          req.end();
        });
        inflight.add(pr);
        void pr.then(() => inflight.delete(pr));
      }
      if (sent >= total) resolve();
      else setTimeout(tick, 1);
    };
    tick();
  });
  await Promise.all(inflight);
  agent.destroy();
  return { sent, ok, failed, lat: lat.sort((a, b) => a - b), elapsed: (performance.now() - start) / 1000 };
}

// warm-up: connections, handshakes, JIT
for (const p of PAIRS) await openLoop(p, RATE, 2);

const rounds = new Map<string, { rps: number; p50: number; p90: number; p99: number; max: number; vcpuPer1000: number; failed: number }[]>(PAIRS.map((p) => [p.name, []]));
const m0 = machineCpu();
const load0 = os.loadavg()[0];
for (let r = 0; r < ROUNDS; r++) {
  for (const p of (r % 2 === 0 ? PAIRS : [...PAIRS].reverse())) {
    const ps = pids.get(p.name)!;
    const c0 = cpuSeconds(ps);
    const run = await openLoop(p, RATE, SECONDS);
    const cpu = cpuSeconds(ps) - c0;
    const rps = run.ok / run.elapsed;
    rounds.get(p.name)!.push({
      rps: round2(rps), p50: round2(percentile(run.lat, 50)), p90: round2(percentile(run.lat, 90)), p99: round2(percentile(run.lat, 99)), max: round2(run.lat[run.lat.length - 1] ?? NaN),
      vcpuPer1000: round2((cpu / run.elapsed) / (rps / 1000)), failed: run.failed,
    });
    console.error(`${p.name} round ${r + 1}: ${JSON.stringify(rounds.get(p.name)!.at(-1))}`);
  }
}
const m1 = machineCpu();
// the median round by p99 represents each pair
// proof of what each pair ran: the client sidecar's mTLS handshakes to upstream sidecars
async function handshakes(p: Pair): Promise<number> {
  const text = await (await fetch(`http://${admins.get(`${p.name}/client`)!}/stats/prometheus`)).text();
  let n = 0;
  for (const m of text.matchAll(/^sextant_mtls_upstream_handshakes_total\{[^}]*\} (\d+)$/gm)) n += Number(m[1]);
  return n;
}
const results = [];
// each figure is its median over the rounds (a busy host moves single rounds a lot)
for (const p of PAIRS) {
  const rs = rounds.get(p.name)!;
  const med = Object.fromEntries((['rps', 'p50', 'p90', 'p99', 'max', 'vcpuPer1000', 'failed'] as const).map((k) => [k, median(rs.map((r) => r[k]))])) as Record<'rps' | 'p50' | 'p90' | 'p99' | 'max' | 'vcpuPer1000' | 'failed', number>;
  results.push({ pair: p.name, ...med, clientMtlsHandshakes: await handshakes(p), rounds: rs });
}
const plain = results.find((r) => r.pair === 'plaintext')!;
const mtls = results.find((r) => r.pair === 'mTLS')!;
const summary = {
  addedVcpuPer1000Rps: round2(mtls.vcpuPer1000 - plain.vcpuPer1000),
  addedP99Ms: round2(mtls.p99 - plain.p99),
  cpuRatio: round2(mtls.vcpuPer1000 / plain.vcpuPer1000),
  istioPublished: 'Envoy with mTLS: 0.35 vCPU per 1,000 rps (istio.io performance and scalability, 1 KiB payloads, different hardware)',
};
const out = {
  date: new Date().toISOString(), node: process.version, rate: RATE, seconds: SECONDS, rounds: ROUNDS, connections: CONNECTIONS,
  host: { cpus: os.cpus().length, loadavgStart: load0, machineBusyShare: round2((m1.busy - m0.busy) / (m1.total - m0.total)) },
  results, summary,
};
mkdirSync(path.join(import.meta.dirname, 'results'), { recursive: true });
writeFileSync(path.join(import.meta.dirname, 'results', 'mtls-pair.json'), JSON.stringify(out, null, 2) + '\n');
console.log(JSON.stringify({ results: results.map(({ rounds: _r, ...x }) => x), summary }, null, 2));
await pilot.close();
origin.close();
process.exit(0);
