// Benchmark (not a test) of the HTTP/1 codec and upstream pool as a relay: wrk through a
// minimal relay (serveHttp1 → UpstreamPool, no routing) against nginx as an equivalent
// reverse proxy and against the backend directly, one worker each, small and 1 KiB bodies;
// requests/s and CPU time per request of each proxy. It bounds what the full sidecar can
// reach; docs/performance.md measures the sidecar.
//
//   node bench/http-relay.ts [--duration 5] [--connections 32]
//   node bench/http-relay.ts --serve PORT UPSTREAM_PORT   (the relay process itself)
//
// Writes bench/results/http-relay.json.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { http1Limits, serveHttp1, type DownstreamRequest } from '../src/proxy/http/index.ts';
import { UpstreamPool } from '../src/proxy/upstream/index.ts';
import { childPids, cpuSeconds } from './proc.ts';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

async function serve(port: number, upstreamPort: number): Promise<void> {
  const pool = new UpstreamPool();
  const limits = http1Limits();
  const ep = { host: '127.0.0.1', port: upstreamPort };
  const handle = async (req: DownstreamRequest): Promise<void> => {
    try {
      const r = await pool.request(ep, req.head, req.bodyLength === 0 ? null : req.body, { signal: req.signal });
      await req.respond(r.head, r.body);
    } catch {
      if (!req.responded) await req.respond({ status: 503, reason: 'Service Unavailable', version: '1.1', headers: [] }).catch(() => {});
    }
  };
  const server = net.createServer((s) => {
    s.on('error', () => {});
    serveHttp1(s, limits, (req) => void handle(req));
  });
  server.listen(port, '127.0.0.1');
  // exit normally on SIGTERM, so that Node writes a profile asked for with --cpu-prof
  process.once('SIGTERM', () => process.exit(0));
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

async function waitPort(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = net.connect(port, '127.0.0.1');
      c.once('connect', () => {
        c.destroy();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`port ${port} never opened`);
}

function wrk(port: number, pathName: string, duration: number, connections: number): number {
  const r = spawnSync('wrk', ['-t1', `-c${connections}`, `-d${duration}s`, `http://127.0.0.1:${port}${pathName}`], { encoding: 'utf8' });
  const m = /Requests\/sec:\s+([\d.]+)/.exec(r.stdout);
  if (!m) throw new Error(`wrk failed: ${r.stdout}${r.stderr}`);
  const errors = /Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)/.exec(r.stdout);
  if (errors) console.error(`  wrk reported: ${errors[0]}`);
  return Number(m[1]);
}

async function main(): Promise<void> {
  if (process.argv.includes('--serve')) {
    const i = process.argv.indexOf('--serve');
    await serve(Number(process.argv[i + 1]), Number(process.argv[i + 2]));
    return;
  }
  const duration = Number(arg('duration', '5'));
  const connections = Number(arg('connections', '32'));
  const dir = mkdtempSync(path.join(tmpdir(), 'sextant-relay-bench-'));
  const children: ChildProcess[] = [];
  const cleanup = (): void => {
    for (const c of children) if (c.pid !== undefined) try { process.kill(-c.pid, 'SIGKILL'); } catch { /* gone */ }
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', cleanup);
  try {
    const [backend, nginxProxy, relay] = [await freePort(), await freePort(), await freePort()];
    const kib = 'x'.repeat(1024);
    const common = `worker_processes 1; daemon off; events { worker_connections 4096; }`;
    const temp = (d: string): string =>
      `access_log off; client_body_temp_path ${d}; proxy_temp_path ${d}; fastcgi_temp_path ${d}; uwsgi_temp_path ${d}; scgi_temp_path ${d};`;
    // two nginx instances, so the reverse proxy's CPU is its own
    writeFileSync(
      path.join(dir, 'backend.conf'),
      `${common} pid ${dir}/backend.pid; error_log ${dir}/backend.log;
http { ${temp(dir)}
  server { listen 127.0.0.1:${backend}; keepalive_requests 100000;
    location /small { return 200 "ok"; }
    location /1k { return 200 "${kib}"; } } }`,
    );
    writeFileSync(
      path.join(dir, 'proxy.conf'),
      `${common} pid ${dir}/proxy.pid; error_log ${dir}/proxy.log;
http { ${temp(dir)}
  upstream backend { server 127.0.0.1:${backend}; keepalive 64; }
  server { listen 127.0.0.1:${nginxProxy}; keepalive_requests 100000;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; } } }`,
    );
    children.push(spawn('nginx', ['-c', path.join(dir, 'backend.conf'), '-p', dir], { stdio: 'inherit', detached: true }));
    const nginxMaster = spawn('nginx', ['-c', path.join(dir, 'proxy.conf'), '-p', dir], { stdio: 'inherit', detached: true });
    children.push(nginxMaster);
    const relayProc = spawn(process.execPath, [import.meta.filename, '--serve', String(relay), String(backend)], { stdio: 'inherit', detached: true });
    children.push(relayProc);
    await waitPort(backend);
    await waitPort(nginxProxy);
    await waitPort(relay);
    const nginxPids = (): number[] => [nginxMaster.pid!, ...childPids(nginxMaster.pid!)];
    const results: Record<string, Record<string, number>> = {};
    for (const p of ['/small', '/1k']) {
      wrk(relay, p, 1, connections); // warm up the JIT
      const direct = wrk(backend, p, duration, connections);
      const n0 = cpuSeconds(nginxPids());
      const nginx = wrk(nginxProxy, p, duration, connections);
      const nginxCpu = cpuSeconds(nginxPids()) - n0;
      const r0 = cpuSeconds([relayProc.pid!]);
      const ours = wrk(relay, p, duration, connections);
      const relayCpu = cpuSeconds([relayProc.pid!]) - r0;
      // CPU per request is steadier than requests/s on a shared machine
      const nginxUs = (nginxCpu / (nginx * duration)) * 1e6;
      const relayUs = (relayCpu / (ours * duration)) * 1e6;
      results[p] = {
        directRps: Math.round(direct),
        nginxRps: Math.round(nginx),
        relayRps: Math.round(ours),
        rpsRatioToNginx: Number((ours / nginx).toFixed(2)),
        nginxCpuUsPerRequest: Number(nginxUs.toFixed(1)),
        relayCpuUsPerRequest: Number(relayUs.toFixed(1)),
        cpuRatioToNginx: Number((nginxUs / relayUs).toFixed(2)),
      };
      console.log(
        `${p.padEnd(7)} direct ${direct.toFixed(0)} rps; nginx ${nginx.toFixed(0)} rps, ${nginxUs.toFixed(1)} µs CPU/req; ` +
          `relay ${ours.toFixed(0)} rps, ${relayUs.toFixed(1)} µs CPU/req → ${(ours / nginx).toFixed(2)}× nginx rps, ${(nginxUs / relayUs).toFixed(2)}× nginx per CPU`,
      );
    }
    await mkdir(path.join(import.meta.dirname, 'results'), { recursive: true });
    await writeFile(
      path.join(import.meta.dirname, 'results', 'http-relay.json'),
      JSON.stringify({ date: new Date().toISOString(), duration, connections, node: process.version, results }, null, 2) + '\n',
    );
  } finally {
    cleanup();
  }
}

await main();
