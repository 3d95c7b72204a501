// TLS termination at a gateway (issue 20), side by side with nginx terminating TLS with the
// same certificate and key in the same run.
//
// The gateway is what users run: `sextant pilot` on a config directory (a Gateway with an
// HTTPS SIMPLE server, its certificate as a `kubernetes.io/tls` Secret served over SDS, a
// VirtualService to the origin) and `sextant gateway` (bin/sextant.mjs). nginx: one worker,
// `listen ssl`, `proxy_pass` with kept upstream connections. Both forward to the same origin
// (nginx, plain HTTP, one worker, "ok"). ECDSA P-256 certificate (openssl), TLS 1.3, X25519.
//
// 1. Throughput over kept TLS connections: wrk (-t1 -c CONNECTIONS) for ROUND_SECONDS per
//    round; the median round's requests/s and the proxy's CPU µs per request.
// 2. New connections: wrk with `Connection: close`, so every request is a new TCP connection
//    and a full TLS handshake (wrk resumes no sessions); the median round's handshakes/s and
//    CPU µs per handshake (+ request).
// 3. Sequential handshakes: `openssl s_time -new` (one connection at a time, no request):
//    connections/s as one client sees them.
// Rounds are interleaved across targets so that the host's noise hits both alike. With --pin
// (the default) the proxy under test runs alone on CPU 1; wrk, openssl and the origin share
// CPU 0. The host's load average and the share of the machine used by other work are recorded:
// a busy host moves every figure here. Writes bench/results/gateway-tls.json.
//
//   node bench/gateway-tls.ts [--rounds 3] [--seconds 5] [--connections 20] [--no-pin]
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../test/helpers/ports.ts';
import { childPids, cpuSeconds, machineCpu, median } from './proc.ts';

const args = process.argv.slice(2);
const arg = (name: string, dflt: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const ROUNDS = arg('rounds', 3);
const ROUND_SECONDS = arg('seconds', 5);
const CONNECTIONS = arg('connections', 20);
const PIN = !args.includes('--no-pin');
const PROXY_CPU = '1';
const LOAD_CPU = '0';
const HOST = 'bench.example.com';
const root = path.resolve(import.meta.dirname, '..');
const work = mkdtempSync(path.join(os.tmpdir(), 'sextant-bench-gateway-tls-'));
const children: ChildProcess[] = [];

function cleanup(): void {
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
  const c = spawn(file, full, { stdio: ['ignore', 'ignore', 'inherit'], detached: true });
  children.push(c);
  return c;
}

async function waitPort(port: number, host = '127.0.0.1'): Promise<void> {
  const deadline = Date.now() + 30_000;
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

const round3 = (n: number): number => Number(n.toFixed(3));

function openssl(argv: string[]): void {
  const r = spawnSync('openssl', argv, { cwd: work, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${argv.join(' ')}: ${r.stderr}`);
}

/** A CA and an ECDSA P-256 server certificate for HOST; returns file paths. */
function certificates(): { ca: string; cert: string; key: string } {
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-subj', '/CN=bench-ca', '-days', '2',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', `/CN=${HOST}`]);
  writeFileSync(path.join(work, 'server.ext'), `subjectAltName=DNS:${HOST}\nextendedKeyUsage=serverAuth\n`);
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-set_serial', '0x1001', '-out', 'server.crt', '-days', '2', '-extfile', 'server.ext']);
  return { ca: path.join(work, 'ca.crt'), cert: path.join(work, 'server.crt'), key: path.join(work, 'server.key') };
}

const nginxCommon = (dir: string): string => `
worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log warn;
events { worker_connections 4096; }`;
const nginxHttpCommon = (dir: string): string => `
  access_log off; keepalive_requests 1000000; keepalive_timeout 65s;
  client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};`;

async function startOrigin(): Promise<number> {
  const port = await freePort();
  const dir = path.join(work, 'origin');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'nginx.conf'), `${nginxCommon(dir)}
http {${nginxHttpCommon(dir)}
  server { listen 127.0.0.1:${port}; location / { default_type text/plain; return 200 "ok"; } }
}`);
  start('nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf')], LOAD_CPU);
  await waitPort(port);
  return port;
}

/** nginx terminating TLS with the same certificate, proxying to the origin over kept connections. */
async function startNginxTls(origin: number, certs: { cert: string; key: string }): Promise<{ port: number; pids: number[] }> {
  const port = await freePort();
  const dir = path.join(work, 'nginx-tls');
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'nginx.conf'), `${nginxCommon(dir)}
http {${nginxHttpCommon(dir)}
  upstream origin { server 127.0.0.1:${origin}; keepalive 256; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:${port} ssl;
    server_name ${HOST};
    ssl_certificate ${certs.cert}; ssl_certificate_key ${certs.key};
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache off; ssl_session_tickets off;
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}`);
  const c = start('nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf')], PROXY_CPU);
  await waitPort(port);
  await new Promise((r) => setTimeout(r, 200));
  return { port, pids: [c.pid!, ...childPids(c.pid!)] };
}

/** `sextant pilot` with the Gateway config, and `sextant gateway` (bin/sextant.mjs) on the proxy CPU. */
async function startGateway(origin: number, certs: { cert: string; key: string }): Promise<{ port: number; pids: number[]; readyMs: number }> {
  const port = await freePort();
  const configDir = path.join(work, 'config');
  mkdirSync(configDir, { recursive: true });
  const b64 = (f: string): string => readFileSync(f).toString('base64');
  writeFileSync(path.join(configDir, 'gateway.yaml'), `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: origin, namespace: default}
spec:
  hosts: [origin.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.1, ports: {http: ${origin}}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bench, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: ${port}, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE, credentialName: bench-cred}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bench, namespace: default}
spec:
  hosts: ["*"]
  gateways: [istio-system/bench]
  http: [{route: [{destination: {host: origin.default.svc.cluster.local, port: {number: 80}}}]}]
---
apiVersion: v1
kind: Secret
metadata: {name: bench-cred, namespace: istio-system}
type: kubernetes.io/tls
data:
  tls.crt: ${b64(certs.cert)}
  tls.key: ${b64(certs.key)}
`);
  const xds = `127.0.0.1:${await freePort()}`;
  const http = `127.0.0.1:${await freePort()}`;
  const pilot = spawn(process.execPath, [path.join(root, 'bin/sextant.mjs'), 'pilot', '--config-dir', configDir, '--xds-address', xds, '--http-address', http, '--log-level', 'warn', '--plaintext-xds', '--no-ca'],
    { stdio: ['ignore', 'ignore', 'inherit'], detached: true, env: { ...process.env, SEXTANT_DATA_DIR: path.join(work, 'data') } });
  children.push(pilot);
  const admin = `127.0.0.1:${await freePort()}`;
  const t0 = performance.now();
  const gw = start(process.execPath, [path.join(root, 'bin/sextant.mjs'), 'gateway', '--xds', xds, '--admin-address', admin, '--log-level', 'warn'], PROXY_CPU);
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (await fetch(`http://${admin}/ready`).then((r) => r.status === 200, () => false)) {
      await waitPort(port);
      return { port, pids: [gw.pid!], readyMs: Math.round(performance.now() - t0) };
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('the gateway did not become ready');
}

function loadArgv(cmd: string, argv: string[]): [string, string[]] {
  return PIN ? ['taskset', ['-c', LOAD_CPU, cmd, ...argv]] : [cmd, argv];
}

/** One wrk round over TLS (SNI: the URL's host, 127.0.0.1); `close` makes every request a new connection. */
function wrk(port: number, close: boolean): { rps: number; requests: number } {
  const headers = ['-H', `Host: ${HOST}`, ...(close ? ['-H', 'Connection: close'] : [])];
  const r = spawnSync(...loadArgv('wrk', ['-t1', `-c${CONNECTIONS}`, `-d${ROUND_SECONDS}s`, ...headers, `https://127.0.0.1:${port}/`]), { encoding: 'utf8' });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1] ?? 0);
  const requests = Number(/(\d+) requests in/.exec(r.stdout)?.[1] ?? 0);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(r.stdout)?.[1] ?? 0);
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(r.stdout);
  if (rps === 0 || non2xx > 0 || (errors !== null && Number(errors[1]) + Number(errors[4]) > 0)) throw new Error(`wrk against ${port} failed: ${r.stdout}${r.stderr}`);
  return { rps, requests };
}

/** `openssl s_time -new`: sequential full handshakes for ROUND_SECONDS; connections/s. */
function sTime(port: number, ca: string): { perSecond: number; connections: number } {
  const r = spawnSync(...loadArgv('openssl', ['s_time', '-connect', `127.0.0.1:${port}`, '-new', '-time', String(ROUND_SECONDS), '-CAfile', ca]), { encoding: 'utf8' });
  const m = /(\d+) connections in ([\d.]+)s; ([\d.]+) connections\/user sec/.exec(r.stdout);
  const real = /(\d+) connections in (\d+) real seconds/.exec(r.stdout);
  if (m === null || real === null) throw new Error(`openssl s_time against ${port} failed: ${r.stdout}${r.stderr}`);
  return { perSecond: Number(real[1]) / Number(real[2]), connections: Number(real[1]) };
}

interface Target { name: string; port: number; pids: number[] }

async function main(): Promise<void> {
  const certs = certificates();
  const origin = await startOrigin();
  const nginx = await startNginxTls(origin, certs);
  const gateway = await startGateway(origin, certs);
  console.log(`gateway ready in ${gateway.readyMs} ms`);
  const targets: Target[] = [{ name: 'nginx', port: nginx.port, pids: nginx.pids }, { name: 'sextant-gateway', port: gateway.port, pids: gateway.pids }];
  // warm-up, unmeasured: JIT, pools, session state
  for (const t of targets) { wrk(t.port, false); wrk(t.port, true); }
  const load0 = os.loadavg()[0]!;
  const machine0 = machineCpu();
  const results: Record<string, unknown>[] = [];
  for (const [part, close] of [['kept-connections', false], ['new-connection-per-request', true]] as const) {
    const rounds = new Map<string, { rps: number; requests: number; cpu: number }[]>(targets.map((t) => [t.name, []]));
    for (let round = 0; round < ROUNDS; round++) {
      for (const t of targets) {
        const cpu0 = cpuSeconds(t.pids);
        const run = wrk(t.port, close);
        rounds.get(t.name)!.push({ ...run, cpu: cpuSeconds(t.pids) - cpu0 });
        console.log(`${part} round ${round + 1} ${t.name}: ${Math.round(run.rps)} rps, load ${os.loadavg()[0]!.toFixed(2)}`);
      }
    }
    const nginxRps = median(rounds.get('nginx')!.map((r) => r.rps));
    for (const t of targets) {
      const rs = rounds.get(t.name)!;
      const rps = median(rs.map((r) => r.rps));
      const requests = rs.reduce((a, r) => a + r.requests, 0);
      const cpu = rs.reduce((a, r) => a + r.cpu, 0);
      const r = {
        part, target: t.name, [close ? 'handshakesPerSecond' : 'requestsPerSecond']: Math.round(rps), rounds: rs.map((x) => Math.round(x.rps)),
        ratioToNginx: round3(rps / nginxRps), cpuUsPerRequest: Number(((cpu / requests) * 1e6).toFixed(1)),
      };
      results.push(r);
      console.log(JSON.stringify(r));
    }
  }
  const sequential = new Map<string, number[]>(targets.map((t) => [t.name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const t of targets) {
      const s = sTime(t.port, certs.ca);
      sequential.get(t.name)!.push(s.perSecond);
      console.log(`s_time round ${round + 1} ${t.name}: ${s.perSecond.toFixed(0)} connections/s`);
    }
  }
  const nginxSeq = median(sequential.get('nginx')!);
  for (const t of targets) {
    const per = median(sequential.get(t.name)!);
    const r = { part: 'openssl-s_time-new', target: t.name, connectionsPerSecond: Math.round(per), rounds: sequential.get(t.name)!.map(Math.round), ratioToNginx: round3(per / nginxSeq) };
    results.push(r);
    console.log(JSON.stringify(r));
  }
  const machine1 = machineCpu();
  const out = {
    benchmark: 'gateway-tls',
    date: new Date().toISOString(),
    host: { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? '', loadAverageAtStart: round3(load0), loadAverageAtEnd: round3(os.loadavg()[0]!), machineBusyShare: round3((machine1.busy - machine0.busy) / (machine1.total - machine0.total)) },
    settings: { rounds: ROUNDS, roundSeconds: ROUND_SECONDS, connections: CONNECTIONS, pinned: PIN, certificate: 'ECDSA P-256', tls: 'TLS 1.3 (X25519), no session resumption' },
    gatewayReadyMs: gateway.readyMs,
    results,
  };
  mkdirSync(path.join(root, 'bench/results'), { recursive: true });
  writeFileSync(path.join(root, 'bench/results/gateway-tls.json'), JSON.stringify(out, null, 2) + '\n');
  console.log('wrote bench/results/gateway-tls.json');
  process.exit(0);
}

await main();
