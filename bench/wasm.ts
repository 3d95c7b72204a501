// The per-request cost of WASM filters in the sidecar: one `sextant proxy` process with three
// listeners in front of the same nginx origin, measured in the same run: no filter, an empty
// Proxy-Wasm filter (the host's fixed cost: a stream context, its callbacks, metering), and a
// filter that adds a request and a response header (the SDK's header calls on top). Modules
// are built from AssemblyScript source with the proxy-wasm SDK, optimized (-O3) as shipped.
// Throughput is the median of interleaved wrk rounds at saturation with the proxy alone on
// CPU 1 (wrk and nginx on CPU 0); the proxy's CPU time per request over those rounds gives the
// cost in microseconds; latency is wrk's at a steady 1,000 rps. Writes bench/results/wasm.json.
//
//   node bench/wasm.ts [--rounds 3] [--round-seconds 3] [--connections 32] [--paced-seconds 5] [--no-pin]
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE } from '../src/envoy/index.ts';
import type { ProtoJson } from '../src/envoy/index.ts';
import pino from 'pino';
import { WasmHost, WASM_HTTP_TYPE, compileWasmConfig } from '../src/proxy/filters/wasm/index.ts';
import { HeaderMap } from '../src/proxy/filters/wasm/header-map.ts';
import { TestAdsServer } from '../test/proxy/helpers/ads-server.ts';
import { assignment, edsCluster, freePort, httpListener, routeConfig } from '../test/proxy/helpers/fixtures.ts';
import { buildFilter } from '../test/helpers/wasm-filters.ts';
import { median, processCpuSeconds } from './proc.ts';

const args = process.argv.slice(2);
const arg = (name: string, dflt: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const ROUNDS = arg('rounds', 3);
const ROUND_SECONDS = arg('round-seconds', 3);
const CONNECTIONS = arg('connections', 32);
const PACED_SECONDS = arg('paced-seconds', 5);
const PIN = !args.includes('--no-pin');
const PROXY_CPU = '1';
const LOAD_CPU = '0';
const root = path.resolve(import.meta.dirname, '..');
const work = mkdtempSync(path.join(tmpdir(), 'sextant-bench-wasm-'));
const children: ChildProcess[] = [];

function cleanup(): void {
  for (const c of children) { try { process.kill(-c.pid!, 'SIGKILL'); } catch { /* gone */ } }
  rmSync(work, { recursive: true, force: true });
}
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));

function start(cmd: string, argv: string[], cpu: string): ChildProcess {
  const [file, full] = PIN ? ['taskset', ['-c', cpu, cmd, ...argv]] : [cmd, argv];
  const c = spawn(file, full, { stdio: ['ignore', 'ignore', 'inherit'], detached: true });
  children.push(c);
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

async function startOrigin(): Promise<number> {
  const port = await freePort();
  const dir = path.join(work, 'origin');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'nginx.conf'), `
worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 1000000; keepalive_timeout 65s;
  client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
  server { listen 127.0.0.1:${port}; location = /small { default_type text/plain; return 200 "ok"; } }
}`);
  start('nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf')], LOAD_CPU);
  await waitPort(port);
  return port;
}

function wasmFilter(name: string, module: Buffer, rootId: string, configuration?: string): ProtoJson {
  return {
    name,
    typedConfig: {
      '@type': WASM_HTTP_TYPE,
      config: {
        name, rootId,
        vmConfig: { runtime: 'envoy.wasm.runtime.v8', code: { local: { inlineBytes: module.toString('base64') } } },
        ...(configuration !== undefined ? { configuration: { '@type': 'type.googleapis.com/google.protobuf.StringValue', value: configuration } } : {}),
      },
    },
  };
}

function wrkArgv(argv: string[], pin: boolean): [string, string[]] {
  return pin && PIN ? ['taskset', ['-c', LOAD_CPU, 'wrk', ...argv]] : ['wrk', argv];
}

function wrk(port: number, seconds: number): { rps: number; requests: number } {
  const r = spawnSync(...wrkArgv(['-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, '-H', 'Host: svc', `http://127.0.0.1:${port}/small`], true), { encoding: 'utf8' });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1] ?? 0);
  const requests = Number(/(\d+) requests in/.exec(r.stdout)?.[1] ?? 0);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(r.stdout)?.[1] ?? 0);
  if (rps === 0 || non2xx > 0) throw new Error(`wrk against ${port} failed: ${r.stdout}${r.stderr}`);
  return { rps, requests };
}

function wrkMs(v: string | undefined): number {
  const m = /([\d.]+)(us|ms|s)/.exec(v ?? '');
  if (m === null) return NaN;
  const n = Number(m[1]);
  return m[2] === 'us' ? n / 1000 : m[2] === 'ms' ? n : n * 1000;
}

/** About 1,000 rps from 32 connections, each waiting a random 0-64 ms between requests. */
function paced(port: number): { p50Ms: number; p99Ms: number; rps: number } {
  const script = path.join(work, 'paced.lua');
  writeFileSync(script, 'math.randomseed(os.time())\nfunction delay() return math.random(0, 64) end\n');
  const r = spawnSync(...wrkArgv(['-t1', '-c32', `-d${PACED_SECONDS}s`, '--latency', '-s', script, '-H', 'Host: svc', `http://127.0.0.1:${port}/small`], false), { encoding: 'utf8' });
  const dist = /Latency Distribution[\s\S]*?50%\s+(\S+)[\s\S]*?99%\s+(\S+)/.exec(r.stdout);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1] ?? 0);
  if (dist === null || rps === 0) throw new Error(`paced wrk against ${port} failed: ${r.stdout}${r.stderr}`);
  return { p50Ms: wrkMs(dist[1]), p99Ms: wrkMs(dist[2]), rps: Math.round(rps) };
}

/**
 * The module's own share, in this process: the callbacks a request without a body makes (context
 * create, request and response headers, response body, done, log, delete) called straight on the
 * VM, without the proxy around them. Median of 5 runs of 20,000.
 */
function vmCallsUs(module: Buffer, rootId: string): number {
  const host = new WasmHost({ logger: pino({ level: 'warn' }) });
  const spec = compileWasmConfig({ config: { name: rootId, rootId, vmConfig: { runtime: 'envoy.wasm.runtime.v8', code: { local: { inlineBytes: module.toString('base64') } } }, configuration: { '@type': 'type.googleapis.com/google.protobuf.StringValue', value: 'bench' } } }, 'bench');
  const plugin = (host as unknown as { inlinePlugin(s: typeof spec): { vmForStream(): import('../src/proxy/filters/wasm/vm.ts').WasmVm; rootContextId: number } }).inlinePlugin(spec);
  const vm = plugin.vmForStream();
  const runs: number[] = [];
  for (let r = 0; r < 6; r++) {
    const n = 20_000;
    const t = process.hrtime.bigint();
    for (let i = 0; i < n; i++) {
      const id = vm.newContextId();
      const req = new HeaderMap([{ name: ':path', value: '/small' }, { name: ':authority', value: 'svc' }]);
      const resp = new HeaderMap([{ name: ':status', value: '200' }, { name: 'content-length', value: '2' }]);
      const ctx = {
        id, kind: 'http' as const, map: (type: number) => (type === 0 ? req : type === 2 ? resp : null), body: () => null,
        sendLocalResponse: () => 0, continueStream: () => 0, closeStream: () => 0, property: () => undefined, setProperty: () => 0,
      };
      vm.contexts.set(id, ctx);
      vm.call(ctx, 'proxy_on_context_create', id, plugin.rootContextId);
      vm.call(ctx, 'proxy_on_request_headers', id, 2, 1);
      vm.call(ctx, 'proxy_on_response_headers', id, 2, 0);
      vm.call(ctx, 'proxy_on_response_body', id, 2, 1);
      vm.call(ctx, 'proxy_on_done', id);
      vm.call(ctx, 'proxy_on_log', id);
      vm.call(ctx, 'proxy_on_delete', id);
      vm.contexts.delete(id);
    }
    if (r > 0) runs.push(Number(process.hrtime.bigint() - t) / n / 1000);
  }
  host.close();
  return Math.round(median(runs) * 10) / 10;
}

async function main(): Promise<void> {
  const empty = await buildFilter('empty', { optimize: true });
  const header = await buildFilter('header', { optimize: true });
  const origin = await startOrigin();
  const targets = [
    { name: 'no-filter', port: await freePort(), filters: [] as ProtoJson[] },
    { name: 'empty-wasm', port: await freePort(), filters: [wasmFilter('empty', empty, 'empty')] },
    { name: 'header-wasm', port: await freePort(), filters: [wasmFilter('header', header, 'add_header', 'bench')] },
  ];
  const ads = new TestAdsServer();
  ads.set(CLUSTER_TYPE, [edsCluster('origin')]);
  ads.set(ENDPOINT_TYPE, [assignment('origin', [origin])]);
  ads.set(LISTENER_TYPE, targets.map((t) => httpListener(t.name, t.port, 'r', { httpFilters: t.filters })));
  ads.set(ROUTE_TYPE, [routeConfig('r', [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'origin' } }] }])]);
  await ads.start();
  const admin = `127.0.0.1:${await freePort()}`;
  const proxy = start(process.execPath, [path.join(root, 'bin/sextant.mjs'), 'proxy', '--xds', ads.address, '--id', 'sidecar~127.0.0.1~bench-1.default~default.svc.cluster.local', '--label', 'app=bench', '--admin-address', admin, '--log-level', 'warn'], PROXY_CPU);
  const deadline = Date.now() + 30_000;
  while (!(await fetch(`http://${admin}/ready`).then((r) => r.status === 200, () => false))) {
    if (Date.now() > deadline) throw new Error('the sidecar did not become ready');
    await new Promise((r) => setTimeout(r, 50));
  }
  for (const t of targets) await waitPort(t.port);
  const pid = proxy.pid!;

  const rounds = new Map<string, { rps: number[]; cpuUsPerRequest: number[] }>(targets.map((t) => [t.name, { rps: [], cpuUsPerRequest: [] }]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const t of targets) {
      wrk(t.port, 1); // warm
      const before = processCpuSeconds(pid);
      const r = wrk(t.port, ROUND_SECONDS);
      const cpu = processCpuSeconds(pid) - before;
      rounds.get(t.name)!.rps.push(Math.round(r.rps));
      rounds.get(t.name)!.cpuUsPerRequest.push(Math.round((cpu / r.requests) * 1e7) / 10);
      console.log(`round ${round + 1} ${t.name}: ${Math.round(r.rps)} rps, ${(cpu / r.requests * 1e6).toFixed(1)} µs CPU/request`);
    }
  }
  const latency = new Map(targets.map((t) => [t.name, paced(t.port)]));
  const vmCalls: Record<string, number> = { 'empty-wasm': vmCallsUs(empty, 'empty'), 'header-wasm': vmCallsUs(header, 'add_header') };
  const base = rounds.get('no-filter')!;
  const results = targets.map((t) => {
    const r = rounds.get(t.name)!;
    const rps = median(r.rps);
    const cpu = median(r.cpuUsPerRequest);
    return {
      target: t.name,
      rps, rpsRounds: r.rps,
      cpuUsPerRequest: cpu, cpuUsPerRequestRounds: r.cpuUsPerRequest,
      addedCpuUsPerRequest: Math.round((cpu - median(base.cpuUsPerRequest)) * 10) / 10,
      addedUsPerRequestFromRps: Math.round((1e6 / rps - 1e6 / median(base.rps)) * 10) / 10,
      paced1000rps: latency.get(t.name),
      ...(vmCalls[t.name] !== undefined ? { moduleCallbacksUsPerRequest: vmCalls[t.name] } : {}),
    };
  });
  const out = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: (await import('node:os')).cpus().length,
    pinned: PIN,
    rounds: ROUNDS, roundSeconds: ROUND_SECONDS, connections: CONNECTIONS,
    modules: { empty: empty.length, header: header.length, build: 'assemblyscript -O3, @solo-io/proxy-runtime' },
    results,
  };
  mkdirSync(path.join(root, 'bench/results'), { recursive: true });
  writeFileSync(path.join(root, 'bench/results/wasm.json'), `${JSON.stringify(out, null, 2)}\n`);
  console.log(JSON.stringify(results, null, 2));
  await ads.stop();
}

main().then(() => process.exit(0), (err: unknown) => {
  console.error(err);
  process.exit(1);
});
