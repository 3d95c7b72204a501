// Throughput and added latency of the sidecar against the alternatives a user would pick:
// wrk through one sextant sidecar and through a client+server sidecar pair, against a direct
// connection, nginx and HAProxy as equivalent reverse proxies (one worker each), with small
// and 1 KB responses. Latency is measured at a constant 1,000 rps with coordinated-omission
// correction (wrk2-style). Writes bench/results/proxy-throughput.json.
//
//   node bench/proxy-throughput.ts [--duration 8] [--connections 64]
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE } from '../src/envoy/index.ts';
import { TestAdsServer } from '../test/proxy/helpers/ads-server.ts';
import { assignment, edsCluster, freePort, httpListener, routeConfig } from '../test/proxy/helpers/fixtures.ts';

const args = process.argv.slice(2);
const arg = (name: string, dflt: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const DURATION = arg('duration', 8);
const CONNECTIONS = arg('connections', 64);
const RATE = 1000;
const root = path.resolve(import.meta.dirname, '..');
const work = mkdtempSync(path.join(tmpdir(), 'sextant-bench-'));
const children: ChildProcess[] = [];

function cleanup(): void {
  for (const c of children) { try { process.kill(-c.pid!, 'SIGKILL'); } catch { /* gone */ } }
  rmSync(work, { recursive: true, force: true });
}
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));

function start(cmd: string, argv: string[]): ChildProcess {
  const c = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'inherit'], detached: true });
  children.push(c);
  return c;
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
  const c = start('nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf')]);
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
  const c = start('nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf')]);
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
  const c = start('haproxy', ['-db', '-f', cfg]);
  await waitPort(port);
  return { port, pids: [c.pid!] };
}

/** A sextant proxy process with the given resources from an ADS server. */
async function startSidecar(name: string, resources: { clusters: object[]; endpoints: object[]; listeners: object[]; routes: object[] }, ip: string): Promise<{ pid: number; ads: TestAdsServer }> {
  const ads = new TestAdsServer();
  ads.set(CLUSTER_TYPE, resources.clusters as never);
  ads.set(ENDPOINT_TYPE, resources.endpoints as never);
  ads.set(LISTENER_TYPE, resources.listeners as never);
  ads.set(ROUTE_TYPE, resources.routes as never);
  await ads.start();
  const admin = `127.0.0.1:${await freePort()}`;
  const c = start(process.execPath, [path.join(root, 'test/proxy/helpers/proxy-main.ts'), 'proxy', '--xds', ads.address, '--id', `sidecar~${ip}~${name}-1.default~default.svc.cluster.local`, '--label', `app=${name}`, '--admin-address', admin, '--log-level', 'warn']);
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (await fetch(`http://${admin}/ready`).then((r) => r.status === 200, () => false)) return { pid: c.pid!, ads };
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`sidecar ${name} did not become ready`);
}

function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** utime+stime of the processes, in seconds. */
function cpuSeconds(pids: number[]): number {
  const hz = 100;
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]);
    } catch { /* exited */ }
  }
  return ticks / hz;
}

function rssMb(pids: number[]): number {
  let kb = 0;
  for (const pid of pids) {
    try {
      kb += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
    } catch { /* exited */ }
  }
  return Math.round(kb / 102.4) / 10;
}

function wrk(port: number, urlPath: string, host: string): { rps: number; requests: number } {
  const r = spawnSync('wrk', ['-t1', `-c${CONNECTIONS}`, `-d${DURATION}s`, '-H', `Host: ${host}`, `http://127.0.0.1:${port}${urlPath}`], { encoding: 'utf8' });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1] ?? 0);
  const requests = Number(/(\d+) requests in/.exec(r.stdout)?.[1] ?? 0);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(r.stdout)?.[1] ?? 0);
  if (rps === 0 || non2xx > 0) throw new Error(`wrk against ${port}${urlPath} failed: ${r.stdout}${r.stderr}`);
  return { rps, requests };
}

/**
 * Constant-rate load (1,000 rps over 32 keep-alive connections); latency is measured from
 * each request's scheduled time, so a stall counts against every request it delays.
 */
async function constantRate(port: number, urlPath: string, host: string, seconds: number): Promise<{ p50: number; p99: number }> {
  const conns = 32;
  const req = Buffer.from(`GET ${urlPath} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
  const sockets = await Promise.all(Array.from({ length: conns }, () => new Promise<net.Socket>((r) => { const s = net.connect(port, '127.0.0.1', () => r(s)); s.setNoDelay(true); })));
  const latencies: number[] = [];
  const total = RATE * seconds;
  const queues: number[][] = sockets.map(() => []);
  sockets.forEach((s, i) => {
    let buf: Buffer = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const len = Number(/content-length:\s*(\d+)/i.exec(buf.subarray(0, end).toString('latin1'))?.[1] ?? 0);
        if (buf.length < end + 4 + len) return;
        buf = buf.subarray(end + 4 + len);
        latencies.push(performance.now() - queues[i]!.shift()!);
      }
    });
    s.on('error', () => {});
  });
  // Request n is due at t0 + n ms and goes out on connection n mod 32 (pipelined if that
  // connection is still busy); its latency counts from when it was due.
  const t0 = performance.now();
  let sent = 0;
  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const due = Math.min(total, Math.floor(((performance.now() - t0) * RATE) / 1000));
      for (; sent < due; sent++) {
        const i = sent % conns;
        queues[i]!.push(t0 + (sent * 1000) / RATE);
        sockets[i]!.write(req);
      }
      if (sent < total) setTimeout(tick, 1);
      else resolve();
    };
    tick();
  });
  const deadline = performance.now() + 10_000;
  while (latencies.length < total && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  for (const s of sockets) s.destroy();
  latencies.sort((a, b) => a - b);
  const q = (p: number): number => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]! * 1000) / 1000;
  return { p50: q(0.5), p99: q(0.99) };
}

interface Target { name: string; port: number; host: string; pids: number[] }

async function main(): Promise<void> {
  const origin = await startOrigin();
  const nginxProxy = await startNginxProxy(origin.port);
  const haproxy = await startHaproxy(origin.port);

  const onePort = await freePort();
  const route = (cluster: string) => [routeConfig('r', [{ name: 'svc', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster } }] }])];
  const single = await startSidecar('client', {
    clusters: [edsCluster('outbound|80||origin')], endpoints: [assignment('outbound|80||origin', [origin.port])],
    listeners: [httpListener('out', onePort, 'r')], routes: route('outbound|80||origin'),
  }, '127.0.0.1');
  const serverPort = await freePort();
  const server = await startSidecar('server', {
    clusters: [edsCluster('inbound|80||')], endpoints: [assignment('inbound|80||', [origin.port])],
    listeners: [httpListener('in', serverPort, 'r', { direction: 'INBOUND' })], routes: route('inbound|80||'),
  }, '127.0.0.1');
  const pairPort = await freePort();
  const client = await startSidecar('client2', {
    clusters: [edsCluster('outbound|80||server')], endpoints: [assignment('outbound|80||server', [serverPort])],
    listeners: [httpListener('out', pairPort, 'r')], routes: route('outbound|80||server'),
  }, '127.0.0.1');

  const targets: Target[] = [
    { name: 'direct', port: origin.port, host: 'origin', pids: [] },
    { name: 'nginx', port: nginxProxy.port, host: 'origin', pids: nginxProxy.pids },
    { name: 'haproxy', port: haproxy.port, host: 'origin', pids: haproxy.pids },
    { name: 'sextant-one-sidecar', port: onePort, host: 'origin', pids: [single.pid] },
    { name: 'sextant-sidecar-pair', port: pairPort, host: 'origin', pids: [client.pid, server.pid] },
  ];
  const results: Record<string, Record<string, unknown>> = {};
  for (const size of ['small', '1k'] as const) {
    const urlPath = size === 'small' ? '/small' : '/1k';
    // Warm up JIT and connection pools.
    for (const t of targets) spawnSync('wrk', ['-t1', '-c16', '-d2s', '-H', `Host: ${t.host}`, `http://127.0.0.1:${t.port}${urlPath}`]);
    let nginxRps = 0;
    let directLat = { p50: 0, p99: 0 };
    for (const t of targets) {
      const cpu0 = cpuSeconds(t.pids);
      const w = wrk(t.port, urlPath, t.host);
      const cpu = cpuSeconds(t.pids) - cpu0;
      if (t.name === 'nginx') nginxRps = w.rps;
      const rss = rssMb(t.pids);
      const cpu1 = cpuSeconds(t.pids);
      const lat = await constantRate(t.port, urlPath, t.host, DURATION);
      const cpuAtRate = cpuSeconds(t.pids) - cpu1;
      if (t.name === 'direct') directLat = lat;
      results[`${t.name}/${size}`] = {
        target: t.name, response: size, requestsPerSecond: Math.round(w.rps),
        cpuSecondsPer1000Requests: t.pids.length ? Number(((cpu / w.requests) * 1000).toFixed(4)) : null,
        vcpuAt1000rps: t.pids.length ? Number((cpuAtRate / DURATION).toFixed(3)) : null,
        rssMb: t.pids.length ? rss : null,
        latencyAt1000rps: lat,
        addedLatencyAt1000rps: t.name === 'direct' ? null : { p50: Number((lat.p50 - directLat.p50).toFixed(3)), p99: Number((lat.p99 - directLat.p99).toFixed(3)) },
      };
      console.log(JSON.stringify(results[`${t.name}/${size}`]));
    }
    for (const t of targets) {
      const r = results[`${t.name}/${size}`]!;
      r['ratioToNginx'] = Number(((r['requestsPerSecond'] as number) / nginxRps).toFixed(3));
    }
  }
  const out = {
    when: new Date().toISOString(), node: process.version, cpus: (await import('node:os')).cpus().length,
    wrk: { threads: 1, connections: CONNECTIONS, durationSeconds: DURATION }, constantRate: { rps: RATE, connections: 32 },
    note: 'one worker each (nginx worker_processes 1, haproxy nbthread 1, one Node process per sidecar); origin is nginx; added latency is relative to direct; sidecar-pair CPU and RSS are the sum of both sidecars',
    results: Object.values(results),
  };
  mkdirSync(path.join(root, 'bench', 'results'), { recursive: true });
  writeFileSync(path.join(root, 'bench', 'results', 'proxy-throughput.json'), JSON.stringify(out, null, 2) + '\n');
  for (const s of [single, server, client]) await s.ads.stop();
  process.exit(0);
}

await main();
