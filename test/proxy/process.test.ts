// `sextant proxy` as a process, started through the installed entry point: it runs with the
// sidecar's runtime profile, SIGTERM drains (new connections refused, the request in flight
// completes, exit 0), and a scan of many ports plus random-path requests leaves its memory
// and metric series bounded (M9).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import net from 'node:net';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE } from '../../src/envoy/index.ts';
import { TestAdsServer } from './helpers/ads-server.ts';
import { assignment, edsCluster, freePort, httpListener, routeConfig, send, startBackend } from './helpers/fixtures.ts';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

const main = path.join(import.meta.dirname, '..', '..', 'bin', 'sextant.mjs');

async function spawnProxy(xds: string, admin: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [main, 'proxy', '--xds', xds, '--id', 'sidecar~127.0.0.1~app-1.default~default.svc.cluster.local', '--admin-address', admin, '--drain-duration', '3s', '--label', 'app=app', '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  cleanups.push(() => { try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ } });
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(`http://${admin}/ready`)).status === 200) return child;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('proxy did not become ready');
}

/** The TCP addresses process `pid` listens on, from /proc (sorted `ip:port`). */
function listeningSockets(pid: number): string[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch { /* closed meanwhile */ }
  }
  const out: string[] = [];
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || f[3] !== '0A' || !inodes.has(f[9]!)) continue; // 0A: LISTEN
    const [hexIp, hexPort] = f[1]!.split(':') as [string, string];
    const ip = [3, 2, 1, 0].map((i) => parseInt(hexIp.slice(i * 2, i * 2 + 2), 16)).join('.');
    out.push(`${ip}:${parseInt(hexPort, 16)}`);
  }
  return out.sort();
}

/** The scanned workload's own address. */
const SCAN_IP = '127.0.91.1';

async function setup(handler?: Parameters<typeof startBackend>[1], listenIp = '127.0.0.1'): Promise<{ port: number; admin: string; child: ChildProcess }> {
  const app = await startBackend('app', handler);
  cleanups.push(app.close);
  const port = await freePort();
  const ads = new TestAdsServer();
  ads.set(CLUSTER_TYPE, [edsCluster('svc')]);
  ads.set(ENDPOINT_TYPE, [assignment('svc', [app.port])]);
  const listener = httpListener('l', port, 'r');
  listener['address'] = { socketAddress: { address: listenIp, portValue: port } };
  ads.set(LISTENER_TYPE, [listener]);
  ads.set(ROUTE_TYPE, [routeConfig('r', [{ name: 'v', domains: ['svc'], routes: [{ match: { prefix: '/' }, route: { cluster: 'svc' } }] }])]);
  await ads.start();
  cleanups.push(() => ads.stop());
  const admin = `127.0.0.1:${await freePort()}`;
  const child = await spawnProxy(ads.address, admin);
  return { port, admin, child };
}

test('sextant proxy re-executes in place with the sidecar profile: 2 MB semi-spaces, two malloc arenas, trimmed frees', async () => {
  const { child } = await setup();
  const argv = readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').split('\0');
  assert.equal(argv[1], '--max-semi-space-size=2');
  assert.ok(argv.includes('proxy'));
  const env = readFileSync(`/proc/${child.pid}/environ`, 'utf8').split('\0');
  assert.ok(env.includes('MALLOC_ARENA_MAX=2'), 'MALLOC_ARENA_MAX=2 in the environment');
  assert.ok(env.includes('MALLOC_TRIM_THRESHOLD_=131072'), 'MALLOC_TRIM_THRESHOLD_=131072 in the environment');
});

test('SIGTERM drains: the request in flight completes, new connections are refused, exit 0', async () => {
  let release: () => void = () => {};
  const { port, admin, child } = await setup((req, res) => {
    req.resume();
    if (req.url === '/slow') release = () => { res.writeHead(200); res.end('finished'); };
    else { res.writeHead(200); res.end('fast'); }
  });
  assert.equal((await send(port, '/fast', { Host: 'svc' })).body, 'fast');
  const slow = send(port, '/slow', { Host: 'svc' });
  await new Promise((r) => setTimeout(r, 200));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  child.kill('SIGTERM');
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    const status = await fetch(`http://${admin}/ready`).then((r) => r.status, () => 0);
    if (status === 503) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  await assert.rejects(new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => { s.end(); resolve(undefined); });
    s.on('error', reject);
  }), { code: 'ECONNREFUSED' });
  release();
  const r = await slow;
  assert.equal(r.status, 200);
  assert.equal(r.body, 'finished');
  assert.equal(await exited, 0);
});

test('a scan of every port 1024-65535 finds only the declared listener; after 100,000 random-path requests RSS is within 20 MB and series fixed', async () => {
  const { port, admin, child } = await setup(undefined, SCAN_IP);
  const sendTo = (p: number, urlPath: string, headers: Record<string, string>): ReturnType<typeof send> => send(p, urlPath, headers, { host: SCAN_IP });
  const stats = async (): Promise<{ rss: number; series: number }> => {
    const text = await (await fetch(`http://${admin}/stats/prometheus`)).text();
    const rss = Number(/^envoy_server_memory_allocated (\d+)$/m.exec(text)?.[1]);
    const series = text.split('\n').filter((l) => l.startsWith('istio_requests_total{')).length;
    return { rss, series };
  };
  // Warm up so JIT and pools reach their steady state before the baseline.
  for (let i = 0; i < 2000; i++) await sendTo(port, `/warm/${i}`, { Host: i % 2 ? 'svc' : 'x' });
  const base = await stats();
  // Probe every unprivileged port of the workload's address, as a security scanner does:
  // only the port a listener declares accepts (the admin port is on 127.0.0.1).
  const accepted: number[] = [];
  const probe = (p: number): Promise<void> => new Promise((r) => {
    const s = net.connect(p, SCAN_IP, () => { accepted.push(p); s.destroy(); r(); });
    s.on('error', () => r());
  });
  for (let p = 1024; p <= 65535; p += 100) await Promise.all(Array.from({ length: Math.min(100, 65536 - p) }, (_, k) => probe(p + k)));
  // Other programs on this machine may listen on a wildcard address, which answers on every
  // loopback address: the proxy's own listening sockets tell which accepted ports are its.
  const own = listeningSockets(child.pid!);
  assert.deepEqual(own, [admin, `${SCAN_IP}:${port}`].sort());
  assert.deepEqual(accepted.filter((p) => own.some((a) => a.endsWith(`:${p}`))), [port]);
  let sent = 0;
  const worker = async (): Promise<void> => {
    while (sent < 100_000) {
      sent++;
      await sendTo(port, `/${Math.random().toString(36).slice(2)}/${sent}`, { Host: sent % 2 ? 'svc' : `h${sent}` });
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  // Once traffic stops, the proxy collects the burst's garbage and returns it to the OS.
  const reclaimed = async (): Promise<number> => Number(/^sextant_burst_memory_reclaims_total (\d+)$/m.exec(await (await fetch(`http://${admin}/stats/prometheus`)).text())?.[1]);
  const deadline = Date.now() + 15_000;
  while ((await reclaimed()) === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
  assert.equal(await reclaimed(), 1, 'one collection after the burst');
  const end = await stats();
  assert.equal(end.series, 2, 'one series for 200 via svc, one for 404 NR');
  assert.ok(end.rss - base.rss < 20 * 1024 * 1024, `RSS grew by ${((end.rss - base.rss) / 1048576).toFixed(1)} MB`);
});

test('the sidecar and the pilot modules load no Node bundled fetch (undici): 4 MB private memory per sidecar', async () => {
  // The ESM facade of node:http reads every export, and one of them loads undici.
  const probe = `await import(${JSON.stringify(path.join(import.meta.dirname, '..', '..', 'src', 'proxy', 'index.ts'))});
await import(${JSON.stringify(path.join(import.meta.dirname, '..', '..', 'src', 'pilot', 'http.ts'))});
process.stdout.write(JSON.stringify(process.moduleLoadList.filter((m) => m.includes('undici'))));`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', probe], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => { out += b.toString(); });
  const code = await new Promise<number | null>((r) => child.on('close', r));
  assert.equal(code, 0);
  assert.deepEqual(JSON.parse(out), []);
});
