// `sextant proxy` as a process: SIGTERM drains (new connections refused, the request in
// flight completes, exit 0), and a scan of many ports plus random-path requests leaves
// its memory and metric series bounded (M9).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE } from '../../src/envoy/index.ts';
import { TestAdsServer } from './helpers/ads-server.ts';
import { assignment, edsCluster, freePort, httpListener, routeConfig, send, startBackend } from './helpers/fixtures.ts';

const cleanups: (() => Promise<void> | void)[] = [];
after(async () => { for (const c of cleanups.reverse()) await c(); });

const main = path.join(import.meta.dirname, 'helpers', 'proxy-main.ts');

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

async function setup(handler?: Parameters<typeof startBackend>[1]): Promise<{ port: number; admin: string; child: ChildProcess }> {
  const app = await startBackend('app', handler);
  cleanups.push(app.close);
  const port = await freePort();
  const ads = new TestAdsServer();
  ads.set(CLUSTER_TYPE, [edsCluster('svc')]);
  ads.set(ENDPOINT_TYPE, [assignment('svc', [app.port])]);
  ads.set(LISTENER_TYPE, [httpListener('l', port, 'r')]);
  ads.set(ROUTE_TYPE, [routeConfig('r', [{ name: 'v', domains: ['svc'], routes: [{ match: { prefix: '/' }, route: { cluster: 'svc' } }] }])]);
  await ads.start();
  cleanups.push(() => ads.stop());
  const admin = `127.0.0.1:${await freePort()}`;
  const child = await spawnProxy(ads.address, admin);
  return { port, admin, child };
}

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

test('a port scan and 100,000 random-path requests keep RSS within 20 MB and series fixed', async () => {
  const { port, admin } = await setup();
  const stats = async (): Promise<{ rss: number; series: number }> => {
    const text = await (await fetch(`http://${admin}/stats/prometheus`)).text();
    const rss = Number(/^envoy_server_memory_allocated (\d+)$/m.exec(text)?.[1]);
    const series = text.split('\n').filter((l) => l.startsWith('istio_requests_total{')).length;
    return { rss, series };
  };
  // Warm up so JIT and pools reach their steady state before the baseline.
  for (let i = 0; i < 2000; i++) await send(port, `/warm/${i}`, { Host: i % 2 ? 'svc' : 'x' });
  const base = await stats();
  // Probe ports around ours: only the listener's port accepts.
  let accepted = 0;
  const probe = (p: number): Promise<void> => new Promise((r) => {
    const s = net.connect(p, '127.0.0.1', () => { if (p === port) accepted++; s.destroy(); r(); });
    s.on('error', () => r());
  });
  for (let p = Math.max(1024, port - 2000); p < Math.min(65535, port + 2000); p += 50) await Promise.all(Array.from({ length: 50 }, (_, k) => probe(p + k)));
  assert.equal(accepted, 1);
  let sent = 0;
  const worker = async (): Promise<void> => {
    while (sent < 100_000) {
      sent++;
      await send(port, `/${Math.random().toString(36).slice(2)}/${sent}`, { Host: sent % 2 ? 'svc' : `h${sent}` });
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  const end = await stats();
  assert.equal(end.series, 2, 'one series for 200 via svc, one for 404 NR');
  assert.ok(end.rss - base.rss < 20 * 1024 * 1024, `RSS grew by ${((end.rss - base.rss) / 1048576).toFixed(1)} MB`);
});
