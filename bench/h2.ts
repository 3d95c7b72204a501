// HTTP/2 and gRPC through the sidecar, side by side with the alternatives (issue 19).
//
// 1. h2load (nghttp2) through one sextant sidecar (h2c downstream, h2c upstream: the cluster
//    asks for HTTP/2) against nginx as an h2c reverse proxy (`listen … http2` cleartext with
//    prior knowledge, `grpc_pass` to the upstream: nginx 1.22's only HTTP/2 upstream, which
//    carries any HTTP/2 request, one stream per upstream connection at a time, reused by
//    `keepalive`), both in front of the same h2c origin (nginx), and direct to the origin,
//    with small ("ok") and 1 KiB responses. Each target gets ROUNDS bounded h2load runs
//    (`-n REQUESTS -c 10 -m 10 -t 1`), interleaved across targets so that the host's noise
//    hits them alike, each after an unmeasured warm-up run of a quarter of the requests; the
//    median round's requests/s counts. Latency: h2load's own "time for request"
//    (min / mean / max / sd) and p50 / p90 / p99 from its per-request --log-file, of the
//    median round. CPU per request: the proxy's utime+stime (/proc/PID/stat) over all
//    measured rounds divided by their requests. With --pin (the default) the proxy under
//    test runs alone on CPU 1, h2load and the origin share CPU 0, as in
//    bench/proxy-throughput.ts.
// 2. gRPC unary calls from a grpc-js client (this process) through a sidecar pair (client
//    sidecar → server sidecar → grpc-js echo server, HTTP/2 on both hops) against the same
//    client calling the server directly: GRPC_CALLS calls per round at GRPC_CONCURRENCY in
//    flight, ROUNDS interleaved rounds each after a warm-up; calls/s, p50 / p99 of the call
//    latency the client sees, CPU µs per call of both sidecars together. Nothing is pinned
//    in this part (four processes on two cores).
// The host's load average and the share of the machine's CPU used by other work during the
// run are recorded with the result: a busy host moves every figure here.
// Writes bench/results/h2.json.
//
//   node bench/h2.ts [--rounds 5] [--requests 20000] [--clients 10] [--streams 10]
//       [--grpc-calls 5000] [--grpc-concurrency 10] [--no-pin]
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE } from '../src/envoy/index.ts';
import type { ProtoJson } from '../src/envoy/index.ts';
import { TestAdsServer } from '../test/proxy/helpers/ads-server.ts';
import { assignment, freePort, httpListener, routeConfig } from '../test/proxy/helpers/fixtures.ts';
import { echoClient, startEchoServer } from '../test/helpers/grpc-echo.ts';
import type { EchoClient } from '../test/helpers/grpc-echo.ts';
import { childPids, cpuSeconds, machineCpu, median, percentile } from './proc.ts';

const args = process.argv.slice(2);

// Child mode: the grpc-js echo server, in its own process so that its CPU is not the client's.
if (args[0] === '--echo-server') {
  await startEchoServer('bench', '127.0.0.1', Number(args[1]));
  await new Promise(() => { /* serve until killed */ });
}

const arg = (name: string, dflt: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const ROUNDS = arg('rounds', 5);
const REQUESTS = arg('requests', 20_000);
const CLIENTS = arg('clients', 10);
const STREAMS = arg('streams', 10);
const GRPC_CALLS = arg('grpc-calls', 5000);
const GRPC_CONCURRENCY = arg('grpc-concurrency', 10);
const PIN = !args.includes('--no-pin');
const PROXY_CPU = '1';
const LOAD_CPU = '0';
const root = path.resolve(import.meta.dirname, '..');
const work = mkdtempSync(path.join(os.tmpdir(), 'sextant-bench-h2-'));
const children: ChildProcess[] = [];
const adsServers: TestAdsServer[] = [];
const grpcClients: EchoClient[] = [];

function cleanup(): void {
  for (const c of grpcClients) { try { c.close(); } catch { /* closed */ } }
  for (const c of children) { try { process.kill(-c.pid!, 'SIGKILL'); } catch { /* gone */ } }
  rmSync(work, { recursive: true, force: true });
}
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));
process.on('uncaughtException', (err) => { console.error(err); process.exit(1); });
process.on('unhandledRejection', (err) => { console.error(err); process.exit(1); });

/** Spawns in its own process group (killed whole on exit), on `cpu` when pinning. */
function start(cmd: string, argv: string[], cpu?: string): ChildProcess {
  const [file, full] = PIN && cpu !== undefined ? ['taskset', ['-c', cpu, cmd, ...argv]] : [cmd, argv];
  const c = spawn(file, full, { stdio: ['ignore', process.env['BENCH_CHILD_STDOUT'] ? 'inherit' : 'ignore', 'inherit'], detached: true });
  children.push(c);
  // taskset execs the command in place: the pid is the command's
  return c;
}

async function waitPort(port: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); r(true); });
      s.on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listening on 127.0.0.1:${port}`);
}

const round3 = (n: number): number => Number(n.toFixed(3));
const BODY_1K = 'x'.repeat(1024);
const nginxCommon = (dir: string): string => `
worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log warn;
events { worker_connections 4096; }`;
const nginxHttpCommon = (dir: string): string => `
  access_log off; keepalive_requests 1000000; keepalive_timeout 65s;
  client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};`;

/** The origin: nginx serving h2c (prior knowledge) on one worker. */
async function startOrigin(): Promise<{ port: number; pid: number }> {
  const port = await freePort();
  const dir = path.join(work, 'origin');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'nginx.conf'), `${nginxCommon(dir)}
http {${nginxHttpCommon(dir)}
  server {
    listen 127.0.0.1:${port} http2;
    location = /small { default_type text/plain; return 200 "ok"; }
    location = /1k { default_type text/plain; return 200 "${BODY_1K}"; }
  }
}`);
  const c = start('nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf')], LOAD_CPU);
  await waitPort(port);
  return { port, pid: c.pid! };
}

/** nginx as an h2c reverse proxy: h2c downstream, HTTP/2 upstream through grpc_pass, one worker. */
async function startNginxProxy(origin: number): Promise<{ port: number; pids: number[] }> {
  const port = await freePort();
  const dir = path.join(work, 'nginx-proxy');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'nginx.conf'), `${nginxCommon(dir)}
http {${nginxHttpCommon(dir)}
  upstream origin { server 127.0.0.1:${origin}; keepalive 256; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:${port} http2;
    location / { grpc_pass grpc://origin; }
  }
}`);
  const c = start('nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf')], PROXY_CPU);
  await waitPort(port);
  await new Promise((r) => setTimeout(r, 200));
  return { port, pids: [c.pid!, ...childPids(c.pid!)] };
}

/** A STATIC cluster to 127.0.0.1:port whose upstream protocol is HTTP/2 (h2c, prior knowledge). */
function h2Cluster(name: string, port: number): ProtoJson {
  return {
    name, type: 'STATIC', connectTimeout: '1s',
    loadAssignment: assignment(name, [port]),
    typedExtensionProtocolOptions: {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
        '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
        explicitHttpConfig: { http2ProtocolOptions: {} },
      },
    },
  };
}

/**
 * A `sextant proxy` process, as users run it, with one listener on `port` (codec AUTO: h2c
 * by its preface) routing everything to an HTTP/2 cluster at `upstream`.
 */
async function startSidecar(name: string, port: number, upstream: number, direction: 'OUTBOUND' | 'INBOUND', cpu: string | undefined): Promise<{ pid: number; readyMs: number }> {
  const cluster = direction === 'OUTBOUND' ? `outbound|80||${name}-upstream` : 'inbound|80||';
  const ads = new TestAdsServer();
  adsServers.push(ads);
  ads.set(CLUSTER_TYPE, [h2Cluster(cluster, upstream)] as never);
  ads.set(ENDPOINT_TYPE, [] as never);
  ads.set(LISTENER_TYPE, [httpListener(direction === 'OUTBOUND' ? 'out' : 'in', port, 'r', { direction })] as never);
  ads.set(ROUTE_TYPE, [routeConfig('r', [{ name: 'svc', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster } }] }])] as never);
  await ads.start();
  const admin = `127.0.0.1:${await freePort()}`;
  const t0 = performance.now();
  const c = start(process.execPath, [path.join(root, 'bin/sextant.mjs'), 'proxy', '--xds', ads.address, '--id', `sidecar~127.0.0.1~${name}-1.default~default.svc.cluster.local`, '--label', `app=${name}`, '--admin-address', admin, '--log-level', 'warn'], cpu);
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (await fetch(`http://${admin}/ready`).then((r) => r.status === 200, () => false)) {
      await waitPort(port);
      return { pid: c.pid!, readyMs: Math.round(performance.now() - t0) };
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`sidecar ${name} did not become ready`);
}

interface H2loadRun { rps: number; requests: number; timeForRequestMs: { min: number; mean: number; max: number; sd: number }; p50: number; p90: number; p99: number }

/** h2load's duration figure (`772us`, `9.89ms`, `1.2s`) in milliseconds. */
function h2ms(v: string | undefined): number {
  const m = /([\d.]+)(us|ms|s)$/.exec(v ?? '');
  if (m === null) return NaN;
  const n = Number(m[1]);
  return m[2] === 'us' ? n / 1000 : m[2] === 'ms' ? n : n * 1000;
}

/** One bounded h2load run (h2c, prior knowledge), on the load CPU when pinning. */
function h2load(port: number, urlPath: string, requests: number, log: boolean): H2loadRun {
  const logFile = path.join(work, 'h2load.log');
  const argv = ['-n', String(requests), '-c', String(CLIENTS), '-m', String(STREAMS), '-t', '1', ...(log ? [`--log-file=${logFile}`] : []), `http://127.0.0.1:${port}${urlPath}`];
  const [file, full] = PIN ? ['taskset', ['-c', LOAD_CPU, 'h2load', ...argv]] : ['h2load', argv];
  const r = spawnSync(file, full, { encoding: 'utf8', timeout: 300_000 });
  const out = r.stdout ?? '';
  const rps = Number(/finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(out)?.[1] ?? 0);
  const done = /requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(out);
  const ok2xx = Number(/status codes: (\d+) 2xx/.exec(out)?.[1] ?? 0);
  if (rps === 0 || done === null || Number(done[3]) !== requests || ok2xx !== requests) throw new Error(`h2load against ${port}${urlPath} failed: ${out}${r.stderr ?? ''}`);
  const t = /time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)/.exec(out);
  let sorted: number[] = [];
  if (log) {
    // one line per request: start time (µs), status, elapsed µs
    sorted = readFileSync(logFile, 'utf8').split('\n').filter(Boolean).map((l) => Number(l.split('\t')[2]) / 1000).sort((a, b) => a - b);
    rmSync(logFile, { force: true });
  }
  return {
    rps, requests,
    timeForRequestMs: { min: h2ms(t?.[1]), max: h2ms(t?.[2]), mean: h2ms(t?.[3]), sd: h2ms(t?.[4]) },
    p50: round3(percentile(sorted, 50)), p90: round3(percentile(sorted, 90)), p99: round3(percentile(sorted, 99)),
  };
}

interface Target { name: string; port: number; pids: number[] }

async function h2Part(): Promise<Record<string, unknown>[]> {
  const origin = await startOrigin();
  const nginx = await startNginxProxy(origin.port);
  const sidecarPort = await freePort();
  const sidecar = await startSidecar('h2', sidecarPort, origin.port, 'OUTBOUND', PROXY_CPU);
  console.log(`h2: sidecar ready in ${sidecar.readyMs} ms`);
  const targets: Target[] = [
    { name: 'direct', port: origin.port, pids: [] },
    { name: 'nginx', port: nginx.port, pids: nginx.pids },
    { name: 'sextant-one-sidecar', port: sidecarPort, pids: [sidecar.pid] },
  ];
  const results: Record<string, unknown>[] = [];
  for (const size of ['small', '1k'] as const) {
    const urlPath = `/${size}`;
    const rounds = new Map<string, (H2loadRun & { cpu: number })[]>(targets.map((t) => [t.name, []]));
    for (let round = 0; round < ROUNDS; round++) {
      for (const t of targets) {
        h2load(t.port, urlPath, Math.max(1000, Math.round(REQUESTS / 4)), false); // warm-up, unmeasured
        const cpu0 = cpuSeconds(t.pids);
        const run = h2load(t.port, urlPath, REQUESTS, true);
        rounds.get(t.name)!.push({ ...run, cpu: cpuSeconds(t.pids) - cpu0 });
        console.log(`h2 ${size} round ${round + 1} ${t.name}: ${Math.round(run.rps)} rps, p50 ${run.p50} ms, p99 ${run.p99} ms, load ${os.loadavg()[0]!.toFixed(2)}`);
      }
    }
    const nginxRps = median(rounds.get('nginx')!.map((r) => r.rps));
    for (const t of targets) {
      const rs = rounds.get(t.name)!;
      const rps = median(rs.map((r) => r.rps));
      const med = rs.find((r) => r.rps === rps)!;
      const requests = rs.reduce((a, r) => a + r.requests, 0);
      const cpu = rs.reduce((a, r) => a + r.cpu, 0);
      const r = {
        part: 'h2load', target: t.name, response: size, requestsPerSecond: Math.round(rps),
        rpsRounds: rs.map((x) => Math.round(x.rps)),
        ratioToNginx: round3(rps / nginxRps),
        cpuUsPerRequest: t.pids.length > 0 ? Number(((cpu / requests) * 1e6).toFixed(1)) : null,
        latencyMs: { p50: med.p50, p90: med.p90, p99: med.p99, h2loadTimeForRequest: med.timeForRequestMs },
        p99Rounds: rs.map((x) => x.p99),
      };
      results.push(r);
      console.log(JSON.stringify(r));
    }
  }
  return results;
}

/** `calls` unary calls with `concurrency` in flight; latency of each as the client sees it. */
async function unaryLoop(client: EchoClient, calls: number, concurrency: number): Promise<{ seconds: number; latMs: number[] }> {
  const body = Buffer.from('ping');
  const latMs: number[] = [];
  let next = 0;
  const one = (): Promise<void> => new Promise((resolve, reject) => {
    const t0 = performance.now();
    client.unary(body, new grpc.Metadata(), {}, (err) => {
      if (err) { reject(err); return; }
      latMs.push(performance.now() - t0);
      resolve();
    });
  });
  const worker = async (): Promise<void> => { while (next++ < calls) await one(); };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { seconds: (performance.now() - t0) / 1000, latMs };
}

async function grpcPart(): Promise<Record<string, unknown>[]> {
  const echoPort = await freePort();
  start(process.execPath, [path.join(root, 'bench/h2.ts'), '--echo-server', String(echoPort)]);
  await waitPort(echoPort);
  const serverPort = await freePort();
  const server = await startSidecar('echo', serverPort, echoPort, 'INBOUND', undefined);
  const clientPort = await freePort();
  const clientSidecar = await startSidecar('client', clientPort, serverPort, 'OUTBOUND', undefined);
  console.log(`grpc: sidecars ready in ${server.readyMs} / ${clientSidecar.readyMs} ms`);
  const authority = 'echo.default.svc.cluster.local:80';
  const targets = [
    { name: 'direct', client: echoClient(`127.0.0.1:${echoPort}`, authority), pids: [] as number[] },
    { name: 'sextant-sidecar-pair', client: echoClient(`127.0.0.1:${clientPort}`, authority), pids: [clientSidecar.pid, server.pid] },
  ];
  grpcClients.push(...targets.map((t) => t.client));
  const rounds = new Map<string, { cps: number; calls: number; p50: number; p99: number; cpu: number }[]>(targets.map((t) => [t.name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const t of targets) {
      await unaryLoop(t.client, Math.max(500, Math.round(GRPC_CALLS / 5)), GRPC_CONCURRENCY); // warm-up
      const cpu0 = cpuSeconds(t.pids);
      const r = await unaryLoop(t.client, GRPC_CALLS, GRPC_CONCURRENCY);
      const cpu = cpuSeconds(t.pids) - cpu0;
      const sorted = r.latMs.sort((a, b) => a - b);
      const x = { cps: GRPC_CALLS / r.seconds, calls: GRPC_CALLS, p50: round3(percentile(sorted, 50)), p99: round3(percentile(sorted, 99)), cpu };
      rounds.get(t.name)!.push(x);
      console.log(`grpc round ${round + 1} ${t.name}: ${Math.round(x.cps)} calls/s, p50 ${x.p50} ms, p99 ${x.p99} ms, load ${os.loadavg()[0]!.toFixed(2)}`);
    }
  }
  const directCps = median(rounds.get('direct')!.map((r) => r.cps));
  const directRound = rounds.get('direct')!.find((r) => r.cps === directCps)!;
  const results: Record<string, unknown>[] = [];
  for (const t of targets) {
    const rs = rounds.get(t.name)!;
    const cps = median(rs.map((r) => r.cps));
    const med = rs.find((r) => r.cps === cps)!;
    const calls = rs.reduce((a, r) => a + r.calls, 0);
    const cpu = rs.reduce((a, r) => a + r.cpu, 0);
    const r = {
      part: 'grpc-unary', target: t.name, callsPerSecond: Math.round(cps),
      cpsRounds: rs.map((x) => Math.round(x.cps)),
      ratioToDirect: round3(cps / directCps),
      latencyMs: { p50: med.p50, p99: med.p99 },
      p99Rounds: rs.map((x) => x.p99),
      addedLatencyMs: t.name === 'direct' ? null : { p50: round3(med.p50 - directRound.p50), p99: round3(med.p99 - directRound.p99) },
      cpuUsPerCall: t.pids.length > 0 ? Number(((cpu / calls) * 1e6).toFixed(1)) : null,
    };
    results.push(r);
    console.log(JSON.stringify(r));
  }
  return results;
}

async function main(): Promise<void> {
  const startedAt = new Date().toISOString();
  const load0 = os.loadavg();
  const m0 = machineCpu();
  const own0 = cpuSeconds([process.pid]);
  const h2 = await h2Part();
  const load1 = os.loadavg();
  const grpcResults = await grpcPart();
  const m1 = machineCpu();
  // the machine's CPU used by processes other than this benchmark's own
  const ours = cpuSeconds([process.pid, ...children.flatMap((c) => [c.pid!, ...childPids(c.pid!)])]) - own0;
  const wall = m1.total - m0.total;
  const out = {
    when: startedAt, node: process.version, cpus: os.cpus().length, pinned: PIN,
    h2load: { requestsPerRound: REQUESTS, clients: CLIENTS, maxConcurrentStreams: STREAMS, threads: 1, rounds: ROUNDS, warmUpRequests: Math.max(1000, Math.round(REQUESTS / 4)) },
    grpc: { callsPerRound: GRPC_CALLS, concurrency: GRPC_CONCURRENCY, rounds: ROUNDS, message: '4-byte request, 9-byte answer' },
    hostLoad: {
      loadAverageAtStart: load0.map((l) => Number(l.toFixed(2))),
      loadAverageAfterH2load: load1.map((l) => Number(l.toFixed(2))),
      loadAverageAtEnd: os.loadavg().map((l) => Number(l.toFixed(2))),
      machineBusyShare: round3((m1.busy - m0.busy) / wall),
      // approximate: the CPU of this benchmark's processes (harness, proxies, origin, servers; not h2load) subtracted from the machine's
      otherWorkCpusAverage: round3(Math.max(0, (m1.busy - m0.busy) - ours) / (wall / os.cpus().length)),
    },
    note: 'one worker each (nginx worker_processes 1, one Node process per sidecar); the origin is nginx serving h2c; nginx proxies with listen … http2 downstream and grpc_pass (HTTP/2, one stream per upstream connection, keepalive) upstream; the sidecar has a codec AUTO listener and an HTTP/2 cluster (one multiplexed session); median of interleaved rounds; latency of the median round: p50/p90/p99 from h2load --log-file, h2load\'s own min/mean/max/sd as printed; CPU per request is the proxy\'s utime+stime over all measured rounds; gRPC: grpc-js client in the harness, grpc-js echo server in its own process, sidecar-pair CPU is both sidecars; the host was shared with other work (hostLoad)',
    results: [...h2, ...grpcResults],
  };
  mkdirSync(path.join(root, 'bench', 'results'), { recursive: true });
  writeFileSync(path.join(root, 'bench', 'results', 'h2.json'), JSON.stringify(out, null, 2) + '\n');
  console.log(JSON.stringify(out.hostLoad));
  for (const a of adsServers) await a.stop();
  process.exit(0);
}

await main();
