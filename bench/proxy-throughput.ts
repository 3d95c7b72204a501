// Throughput and added latency of the sidecar against the alternatives a user would pick:
// wrk through one sextant sidecar and through a client+server sidecar pair, against a direct
// connection, nginx and HAProxy as equivalent reverse proxies (one worker each), with small
// and 1 KB responses. A bare Node.js TCP relay (bench/fixtures/node-tcp-relay.ts: bytes
// copied between sockets, no HTTP) runs beside them as the floor of any proxy on this
// runtime, and so does the sidecar's HTTP/1 codec and upstream pool alone
// (bench/http-relay.ts --serve: no routing, telemetry or xDS). Throughput is the median of
// five 3-second wrk rounds per target, interleaved across targets, each after one unmeasured
// second of load (firstSecondRps: a sidecar idle for 2 s reclaims memory and recompiles its
// request path, so that second shows the cost of coming back from quiet). Latency and CPU are measured at a steady 1,000 rps: wrk paced by a Lua
// delay, 32 connections each waiting a random 0-64 ms (32 ms on average) after a response
// before its next request, so arrivals are spread like independent clients' (Poisson-like)
// rather than in lockstep bursts; the median of three runs is reported. With --pin (the default)
// the proxy under test runs alone on CPU 1 and wrk and the origin share CPU 0 during the
// throughput runs, so "one worker" means one core; the paced runs let the scheduler place
// every process on either core, as on a host where a sidecar shares cores with its app
// (a proxy alone on an otherwise idle core pays the core's wake-up on every request).
// --no-pin never pins.
// Writes bench/results/proxy-throughput.json.
//
//   node bench/proxy-throughput.ts [--duration 8] [--rounds 5] [--round-seconds 3]
//       [--connections 64] [--no-pin]
//       [--only TARGET,…] [--sizes small,1k] [--paced-only] [--proxy-node-flags "--max-semi-space-size=8"]
//       [--alt-root DIR[,DIR…]] [--alt-flags "--no-parallel-scavenge"] [--throughput-only] [--gc]
// --alt-root and --alt-flags add targets, sextant-alt (sextant-alt2, …): one more sidecar
// per checkout given and/or with other Node flags, measured in the same interleaved rounds as
// sextant-one-sidecar, so that a change is compared under the same noise (A/B).
// --cpu-prof flags among --proxy-node-flags also profile the codec relay, for side-by-side profiles.
// --gc runs the Node targets with V8's GC trace and adds, per request over the throughput
// rounds, the bytes they allocated and kept past a scavenge and their GC pause: a measure
// of a change to the request path that the host's noise does not move.
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE } from '../src/envoy/index.ts';
import { TestAdsServer } from '../test/proxy/helpers/ads-server.ts';
import { assignment, edsCluster, freePort, httpListener, routeConfig } from '../test/proxy/helpers/fixtures.ts';
import { childPids, cpuSeconds, cpuTimes } from './proc.ts';

const args = process.argv.slice(2);
const arg = (name: string, dflt: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
/** Seconds of each paced (1,000 rps) run. */
const DURATION = arg('duration', 8);
/** Interleaved throughput rounds per target, and seconds of each. */
const ROUNDS = arg('rounds', 5);
const ROUND_SECONDS = arg('round-seconds', 3);
const CONNECTIONS = arg('connections', 64);
const RATE = 1000;
const PACED_CONNECTIONS = 32;
const PIN = !args.includes('--no-pin');
const strArg = (name: string): string | undefined => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const ONLY = strArg('only')?.split(',');
/** Skip the saturation run (e.g. to profile the steady 1,000 rps alone). */
const PACED_ONLY = args.includes('--paced-only');
/** Skip the paced runs (throughput A/B only). */
const THROUGHPUT_ONLY = args.includes('--throughput-only');
const SIZES = (strArg('sizes') ?? 'small,1k').split(',') as ('small' | '1k')[];
/** Node flags for the sidecars instead of the profile `sextant proxy` applies itself. */
const PROXY_NODE_FLAGS = strArg('proxy-node-flags')?.split(' ').filter(Boolean) ?? [];
/** A/B: another checkout and/or other Node flags for the sextant-alt sidecar. */
const ALT_ROOTS = strArg('alt-root')?.split(',');
const ALT_FLAGS = strArg('alt-flags')?.split(' ').filter(Boolean);
const ALT = ALT_ROOTS !== undefined || ALT_FLAGS !== undefined;
/** Trace the Node targets' garbage collections (allocation and GC pause per request). */
const GC = args.includes('--gc');
/** CPU sets: the proxy under test alone on one core, load generator and origin on the other. */
const PROXY_CPU = '1';
const LOAD_CPU = '0';
const root = path.resolve(import.meta.dirname, '..');
const work = mkdtempSync(path.join(tmpdir(), 'sextant-bench-'));
const children: ChildProcess[] = [];

function cleanup(): void {
  for (const c of children) { try { process.kill(-c.pid!, 'SIGKILL'); } catch { /* gone */ } }
  rmSync(work, { recursive: true, force: true });
}
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));

function start(cmd: string, argv: string[], cpu?: string, env?: NodeJS.ProcessEnv): ChildProcess {
  const traced = GC && cmd === process.execPath;
  if (traced) argv = ['--trace-gc-nvp', ...argv];
  const [file, full] = PIN && cpu !== undefined ? ['taskset', ['-c', cpu, cmd, ...argv]] : [cmd, argv];
  // A traced process writes its trace to a file: the harness blocks in wrk while a round runs
  // and would not drain a pipe, which would then stall the process under test.
  const trace = traced ? path.join(work, `gc-${children.length}.log`) : undefined;
  const stdout = trace !== undefined ? openSync(trace, 'w') : process.env['BENCH_CHILD_STDOUT'] ? 'inherit' : 'ignore';
  const c = spawn(file, full, { stdio: ['ignore', stdout, 'inherit'], detached: true, env: env ?? process.env });
  if (typeof stdout === 'number') closeSync(stdout);
  children.push(c);
  // taskset execs the command in place, so the pid is Node's (and sextant proxy re-executes in place too)
  if (trace !== undefined) gcTraces.set(c.pid!, trace);
  return c;
}

/** Totals of Node processes' garbage collections, from their `--trace-gc-nvp` lines. */
interface GcTotals { allocated: number; survived: number; pauseMs: number; scavenges: number; fullGcs: number }
const gcTraces = new Map<number, string>();

function gcSnapshot(pids: number[]): GcTotals {
  const sum: GcTotals = { allocated: 0, survived: 0, pauseMs: 0, scavenges: 0, fullGcs: 0 };
  for (const pid of pids) {
    const trace = gcTraces.get(pid);
    if (trace === undefined) continue;
    for (const line of readFileSync(trace, 'utf8').split('\n')) {
      const kind = / gc=(\w+)/.exec(line)?.[1];
      if (kind === undefined) continue;
      sum.allocated += Number(/ allocated=(\d+)/.exec(line)?.[1] ?? 0);
      sum.survived += Number(/ new_space_survived=(\d+)/.exec(line)?.[1] ?? 0);
      sum.pauseMs += Number(/ pause=([\d.]+)/.exec(line)?.[1] ?? 0);
      if (kind === 's') sum.scavenges++;
      else sum.fullGcs++;
    }
  }
  return sum;
}

async function waitPort(port: number, host = '127.0.0.1'): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, host, () => { s.destroy(); r(true); });
      s.on('error', () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listening on ${host}:${port}`);
}

const BODY_1K = 'x'.repeat(1024);

async function startOrigin(): Promise<{ port: number; pid: number }> {
  const port = await freePort();
  const dir = path.join(work, 'origin');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'nginx.conf'), `
worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 1000000; keepalive_timeout 65s;
  client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
  server {
    listen 127.0.0.1:${port};
    location = /small { default_type text/plain; return 200 "ok"; }
    location = /1k { default_type text/plain; return 200 "${BODY_1K}"; }
  }
}`);
  const c = start('nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf')], LOAD_CPU);
  await waitPort(port);
  return { port, pid: c.pid! };
}

async function startNginxProxy(origin: number): Promise<{ port: number; pids: number[] }> {
  const port = await freePort();
  const dir = path.join(work, 'nginx-proxy');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'nginx.conf'), `
worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 1000000;
  client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
  upstream origin { server 127.0.0.1:${origin}; keepalive 256; }
  server {
    listen 127.0.0.1:${port};
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering on; }
  }
}`);
  const c = start('nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf')], PROXY_CPU);
  await waitPort(port);
  await new Promise((r) => setTimeout(r, 200));
  return { port, pids: [c.pid!, ...childPids(c.pid!)] };
}

async function startHaproxy(origin: number): Promise<{ port: number; pids: number[] }> {
  const port = await freePort();
  const cfg = path.join(work, 'haproxy.cfg');
  writeFileSync(cfg, `
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
frontend fe
  bind 127.0.0.1:${port}
  default_backend be
backend be
  http-reuse always
  server origin 127.0.0.1:${origin}
`);
  const c = start('haproxy', ['-db', '-f', cfg], PROXY_CPU);
  await waitPort(port);
  return { port, pids: [c.pid!] };
}

/** A sextant proxy process (`sextant proxy`, as users run it) with the given resources from an ADS server. */
async function startSidecar(
  name: string, resources: { clusters: object[]; endpoints: object[]; listeners: object[]; routes: object[] }, ip: string, cpu: string | undefined,
  from = root, nodeFlags = PROXY_NODE_FLAGS,
): Promise<{ pid: number; ads: TestAdsServer; readyMs: number }> {
  const ads = new TestAdsServer();
  ads.set(CLUSTER_TYPE, resources.clusters as never);
  ads.set(ENDPOINT_TYPE, resources.endpoints as never);
  ads.set(LISTENER_TYPE, resources.listeners as never);
  ads.set(ROUTE_TYPE, resources.routes as never);
  await ads.start();
  const admin = `127.0.0.1:${await freePort()}`;
  const t0 = performance.now();
  const c = start(process.execPath, [...nodeFlags, path.join(from, 'bin/sextant.mjs'), 'proxy', '--xds', ads.address, '--id', `sidecar~${ip}~${name}-1.default~default.svc.cluster.local`, '--label', `app=${name}`, '--admin-address', admin, '--log-level', 'warn'], cpu);
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (await fetch(`http://${admin}/ready`).then((r) => r.status === 200, () => false)) return { pid: c.pid!, ads, readyMs: Math.round(performance.now() - t0) };
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`sidecar ${name} did not become ready`);
}

/**
 * Resident memory in MB: all of it (RSS); the private, anonymous part that excludes the
 * executable's and libraries' pages; and the proportional share (PSS), where each shared
 * page counts divided by the number of processes mapping it.
 */
function rssMb(pids: number[]): { rss: number; private: number; pss: number } {
  let kb = 0;
  let anonKb = 0;
  let pssKb = 0;
  for (const pid of pids) {
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      kb += Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
      anonKb += Number(/RssAnon:\s+(\d+)/.exec(status)?.[1] ?? 0);
      pssKb += Number(/^Pss:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0);
    } catch { /* exited */ }
  }
  const mb = (k: number): number => Math.round(k / 102.4) / 10;
  return { rss: mb(kb), private: mb(anonKb), pss: mb(pssKb) };
}

function wrkArgv(argv: string[], pin = PIN): [string, string[]] {
  return pin ? ['taskset', ['-c', LOAD_CPU, 'wrk', ...argv]] : ['wrk', argv];
}

/** Moves every thread of the processes to `cpus` (e.g. '0,1' to unpin, '1' to pin again). */
function setAffinity(pids: number[], cpus: string): void {
  if (!PIN) return;
  for (const pid of pids) spawnSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' });
}

function wrk(port: number, urlPath: string, host: string): { rps: number; requests: number } {
  const r = spawnSync(...wrkArgv(['-t1', `-c${CONNECTIONS}`, `-d${ROUND_SECONDS}s`, '-H', `Host: ${host}`, `http://127.0.0.1:${port}${urlPath}`]), { encoding: 'utf8' });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1] ?? 0);
  const requests = Number(/(\d+) requests in/.exec(r.stdout)?.[1] ?? 0);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(r.stdout)?.[1] ?? 0);
  if (rps === 0 || non2xx > 0) throw new Error(`wrk against ${port}${urlPath} failed: ${r.stdout}${r.stderr}`);
  return { rps, requests };
}

/** wrk's latency figure (`812.00us`, `1.20ms`, `2.00s`) in milliseconds. */
function wrkMs(v: string | undefined): number {
  const m = /([\d.]+)(us|ms|s)/.exec(v ?? '');
  if (m === null) return NaN;
  const n = Number(m[1]);
  return m[2] === 'us' ? n / 1000 : m[2] === 'ms' ? n : n * 1000;
}

/**
 * Steady load at about 1,000 rps: 32 keep-alive connections, each sending its next request
 * a random 0-64 ms after the previous response (wrk's Lua `delay`), so the connections do
 * not fire in lockstep. Latency is wrk's, from write to the complete response, measured by
 * a C load generator that adds little jitter of its own.
 */
function pacedOnce(port: number, urlPath: string, host: string, seconds: number): { p50: number; p99: number; rps: number } {
  const script = path.join(work, 'paced.lua');
  const meanDelayMs = Math.round((PACED_CONNECTIONS * 1000) / RATE);
  writeFileSync(script, `math.randomseed(os.time())\nfunction delay() return math.random(0, ${2 * meanDelayMs}) end\n`);
  const r = spawnSync(...wrkArgv(['-t1', `-c${PACED_CONNECTIONS}`, `-d${seconds}s`, '--latency', '-s', script, '-H', `Host: ${host}`, `http://127.0.0.1:${port}${urlPath}`], false), { encoding: 'utf8' });
  const dist = /Latency Distribution[\s\S]*?50%\s+(\S+)[\s\S]*?99%\s+(\S+)/.exec(r.stdout);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1] ?? 0);
  if (dist === null || rps === 0) throw new Error(`paced wrk against ${port}${urlPath} failed: ${r.stdout}${r.stderr}`);
  return { p50: wrkMs(dist[1]), p99: wrkMs(dist[2]), rps: Math.round(rps) };
}

/** Three paced runs of `seconds` each; the median run by p99 (tail latency here moves by milliseconds between runs). */
function paced(port: number, urlPath: string, host: string, seconds: number): { p50: number; p99: number; rps: number; p99Runs: number[] } {
  const runs = [0, 1, 2].map(() => pacedOnce(port, urlPath, host, seconds)).sort((a, b) => a.p99 - b.p99);
  return { ...runs[1]!, p99Runs: runs.map((r) => r.p99) };
}

interface Target { name: string; port: number; host: string; pids: number[] }

async function main(): Promise<void> {
  const origin = await startOrigin();
  const nginxProxy = await startNginxProxy(origin.port);
  const haproxy = await startHaproxy(origin.port);

  const relayPort = await freePort();
  const relay = start(process.execPath, [path.join(root, 'bench/fixtures/node-tcp-relay.ts')], PROXY_CPU, { ...process.env, ORIGIN_PORT: String(origin.port), PORT: String(relayPort) });
  await waitPort(relayPort);
  // the sidecar's HTTP/1 codec and upstream pool alone (no routing, telemetry or xDS), with its young-generation size
  const codecPort = await freePort();
  const codec = start(process.execPath, ['--max-semi-space-size=2', ...PROXY_NODE_FLAGS.filter((f) => f.startsWith('--cpu-prof')), path.join(root, 'bench/http-relay.ts'), '--serve', String(codecPort), String(origin.port)], PROXY_CPU);
  await waitPort(codecPort);
  const onePort = await freePort();
  const route = (cluster: string) => [routeConfig('r', [{ name: 'svc', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster } }] }])];
  // one outbound listener on `port` routing everything to the origin
  const toOrigin = (port: number) => ({
    clusters: [edsCluster('outbound|80||origin')], endpoints: [assignment('outbound|80||origin', [origin.port])],
    listeners: [httpListener('out', port, 'r')], routes: route('outbound|80||origin'),
  });
  const single = await startSidecar('client', toOrigin(onePort), '127.0.0.1', PROXY_CPU);
  const serverPort = await freePort();
  const server = await startSidecar('server', {
    clusters: [edsCluster('inbound|80||')], endpoints: [assignment('inbound|80||', [origin.port])],
    listeners: [httpListener('in', serverPort, 'r', { direction: 'INBOUND' })], routes: route('inbound|80||'),
  }, '127.0.0.1', undefined);
  const pairPort = await freePort();
  const client = await startSidecar('client2', {
    clusters: [edsCluster('outbound|80||server')], endpoints: [assignment('outbound|80||server', [serverPort])],
    listeners: [httpListener('out', pairPort, 'r')], routes: route('outbound|80||server'),
  }, '127.0.0.1', undefined);

  const alts: { name: string; port: number; pid: number; ads: TestAdsServer }[] = [];
  for (const [i, from] of (ALT ? ALT_ROOTS ?? [root] : []).entries()) {
    const port = await freePort();
    const s = await startSidecar(`alt${i + 1}`, toOrigin(port), '127.0.0.1', PROXY_CPU, path.resolve(from), ALT_FLAGS ?? PROXY_NODE_FLAGS);
    alts.push({ name: i === 0 ? 'sextant-alt' : `sextant-alt${i + 1}`, port, ...s });
  }

  const allTargets: Target[] = [
    { name: 'direct', port: origin.port, host: 'origin', pids: [] },
    { name: 'nginx', port: nginxProxy.port, host: 'origin', pids: nginxProxy.pids },
    { name: 'haproxy', port: haproxy.port, host: 'origin', pids: haproxy.pids },
    { name: 'node-tcp-relay', port: relayPort, host: 'origin', pids: [relay.pid!] },
    { name: 'sextant-codec-relay', port: codecPort, host: 'origin', pids: [codec.pid!] },
    { name: 'sextant-one-sidecar', port: onePort, host: 'origin', pids: [single.pid] },
    { name: 'sextant-sidecar-pair', port: pairPort, host: 'origin', pids: [client.pid, server.pid] },
    ...alts.map((a) => ({ name: a.name, port: a.port, host: 'origin', pids: [a.pid] })),
  ];
  const targets = allTargets.filter((t) => ONLY === undefined || t.name === 'nginx' || ONLY.includes(t.name) || t.name.startsWith('sextant-alt'));
  const results: Record<string, Record<string, unknown>> = {};
  for (const size of SIZES) {
    const urlPath = size === 'small' ? '/small' : '/1k';
    // Warm up JIT and connection pools.
    for (const t of targets) spawnSync(...wrkArgv(['-t1', '-c16', '-d2s', '-H', `Host: ${t.host}`, `http://127.0.0.1:${t.port}${urlPath}`]));
    let directLat = { p50: 0, p99: 0 };
    // Throughput: ROUNDS short wrk runs per target, interleaved across targets so that a
    // burst of noise from the shared host hits every target alike; the median round counts.
    const rounds = new Map<string, { rps: number; requests: number; cpu: number; system: number; gc: GcTotals }[]>(targets.map((t) => [t.name, []]));
    // requests/s of each round's unmeasured first second (after the other targets' rounds)
    const firstSeconds = new Map<string, number[]>(targets.map((t) => [t.name, []]));
    for (let round = 0; round < (PACED_ONLY ? 0 : ROUNDS); round++) {
      for (const t of targets) {
        // Each round starts warm. A sidecar idle for 2 s (while the other targets run) has
        // given its memory back with a full collection, and V8 drops the optimized code of
        // the request path in a collection that finds it idle: the first ~0.2 s after quiet
        // run while it compiles again. One unmeasured second of load first.
        const warm = spawnSync(...wrkArgv(['-t1', `-c${CONNECTIONS}`, '-d1s', '-H', `Host: ${t.host}`, `http://127.0.0.1:${t.port}${urlPath}`]), { encoding: 'utf8' });
        firstSeconds.get(t.name)!.push(Math.round(Number(/Requests\/sec:\s+([\d.]+)/.exec(warm.stdout)?.[1] ?? 0)));
        const cpu0 = cpuTimes(t.pids);
        const gc0 = gcSnapshot(t.pids);
        const w = wrk(t.port, urlPath, t.host);
        const cpu1 = cpuTimes(t.pids);
        const gc1 = gcSnapshot(t.pids);
        const gc: GcTotals = { allocated: gc1.allocated - gc0.allocated, survived: gc1.survived - gc0.survived, pauseMs: gc1.pauseMs - gc0.pauseMs, scavenges: gc1.scavenges - gc0.scavenges, fullGcs: gc1.fullGcs - gc0.fullGcs };
        rounds.get(t.name)!.push({ ...w, cpu: cpu1.user + cpu1.system - cpu0.user - cpu0.system, system: cpu1.system - cpu0.system, gc });
      }
    }
    const medianRps = (name: string): number => {
      const r = rounds.get(name)!.map((x) => x.rps).sort((a, b) => a - b);
      return r.length === 0 ? 0 : r[Math.floor(r.length / 2)]!;
    };
    const nginxRps = medianRps('nginx');
    for (const t of targets) {
      const rs = rounds.get(t.name)!;
      const requests = rs.reduce((a, r) => a + r.requests, 0);
      const cpu = rs.reduce((a, r) => a + r.cpu, 0);
      const system = rs.reduce((a, r) => a + r.system, 0);
      const gc = rs.reduce((a, r) => ({ allocated: a.allocated + r.gc.allocated, survived: a.survived + r.gc.survived, pauseMs: a.pauseMs + r.gc.pauseMs, scavenges: a.scavenges + r.gc.scavenges, fullGcs: a.fullGcs + r.gc.fullGcs }), { allocated: 0, survived: 0, pauseMs: 0, scavenges: 0, fullGcs: 0 });
      const rss = rssMb(t.pids);
      const cpu1 = cpuSeconds(t.pids);
      const originPids = [origin.pid, ...childPids(origin.pid)];
      setAffinity([...t.pids, ...originPids], '0,1');
      const lat = THROUGHPUT_ONLY ? { p50: 0, p99: 0, rps: 0, p99Runs: [] } : paced(t.port, urlPath, t.host, DURATION);
      setAffinity(t.pids, t.name.startsWith('sextant-sidecar-pair') ? '0,1' : PROXY_CPU);
      setAffinity(originPids, LOAD_CPU);
      const cpuAtRate = (cpuSeconds(t.pids) - cpu1) / 3;
      if (t.name === 'direct' || (ONLY !== undefined && !ONLY.includes('direct') && t.name === 'nginx')) directLat = lat;
      results[`${t.name}/${size}`] = {
        target: t.name, response: size, requestsPerSecond: medianRps(t.name),
        rpsRounds: rs.map((r) => Math.round(r.rps)),
        firstSecondRps: firstSeconds.get(t.name)!,
        ratioToNginx: nginxRps > 0 ? Number((medianRps(t.name) / nginxRps).toFixed(3)) : null,
        cpuSecondsPer1000Requests: t.pids.length && requests > 0 ? Number(((cpu / requests) * 1000).toFixed(4)) : null,
        // the kernel's share: socket reads and writes, and the wake-ups of the processes they serve
        systemShareOfCpu: t.pids.length && cpu > 0 ? Number((system / cpu).toFixed(2)) : null,
        vcpuAt1000rps: t.pids.length && !THROUGHPUT_ONLY ? Number((cpuAtRate / DURATION).toFixed(3)) : null,
        rssMb: t.pids.length ? rss.rss : null,
        privateMb: t.pids.length ? rss.private : null,
        pssMb: t.pids.length ? rss.pss : null,
        ...(GC && gcTraces.has(t.pids[0] ?? -1) && requests > 0 ? {
          gcPerRequest: {
            allocatedBytes: Math.round(gc.allocated / requests), survivedBytes: Math.round(gc.survived / requests),
            pauseUs: Number(((gc.pauseMs * 1000) / requests).toFixed(2)), scavengesPer1000: Number(((gc.scavenges * 1000) / requests).toFixed(2)), fullGcs: gc.fullGcs,
          },
        } : {}),
        latencyAt1000rps: { p50: lat.p50, p99: lat.p99, p99Runs: lat.p99Runs },
        pacedRps: lat.rps,
        addedLatencyAt1000rps: t.name === 'direct' ? null : { p50: Number((lat.p50 - directLat.p50).toFixed(3)), p99: Number((lat.p99 - directLat.p99).toFixed(3)) },
      };
      console.log(JSON.stringify(results[`${t.name}/${size}`]));
    }
  }
  const out = {
    when: new Date().toISOString(), node: process.version, cpus: (await import('node:os')).cpus().length,
    wrk: { threads: 1, connections: CONNECTIONS, rounds: ROUNDS, roundSeconds: ROUND_SECONDS }, paced: { rps: RATE, connections: PACED_CONNECTIONS, delayMs: [0, 2 * Math.round((PACED_CONNECTIONS * 1000) / RATE)], runs: 3 }, pinned: PIN,
    sidecarStartToReadyMs: [single.readyMs, server.readyMs, client.readyMs],
    note: 'one worker each (nginx worker_processes 1, haproxy nbthread 1, one Node process per sidecar); origin is nginx; each throughput round follows one unmeasured second of load, whose rate is firstSecondRps; node-tcp-relay copies bytes between sockets with no HTTP (the runtime floor); sextant-codec-relay is the sidecar codec and pool with no routing or telemetry; systemShareOfCpu is the kernel part of the CPU time at saturation; with pinning the proxy under test has CPU 1 to itself and wrk and the origin share CPU 0 during the throughput runs (the sidecar pair is not pinned), the paced runs are unpinned; added latency is relative to direct; privateMb is RssAnon (RSS without the shared executable), pssMb the proportional set size (six Node processes share the executable in this run: the harness, the two Node relays and three sidecars); sidecar-pair CPU and memory are the sum of both sidecars',
    results: Object.values(results),
  };
  // only a complete run with the sidecar's own runtime profile is a result
  if (ONLY === undefined && !PACED_ONLY && !THROUGHPUT_ONLY && PROXY_NODE_FLAGS.length === 0 && !ALT && !GC) {
    mkdirSync(path.join(root, 'bench', 'results'), { recursive: true });
    writeFileSync(path.join(root, 'bench', 'results', 'proxy-throughput.json'), JSON.stringify(out, null, 2) + '\n');
  } else {
    console.log('partial or traced run (--only, --paced-only, --throughput-only, --proxy-node-flags, --alt-* or --gc): bench/results/proxy-throughput.json not written');
  }
  if ([...PROXY_NODE_FLAGS, ...(ALT_FLAGS ?? [])].some((f) => f.startsWith('--cpu-prof') || f === '--import')) {
    // let the sidecars drain and exit normally so that Node writes their CPU profiles
    for (const s of [single, server, client, ...alts]) process.kill(s.pid, 'SIGTERM');
    process.kill(codec.pid!, 'SIGTERM');
    await new Promise((r) => setTimeout(r, 8000));
  }
  for (const s of [single, server, client, ...alts]) await s.ads.stop();
  process.exit(0);
}

await main();
