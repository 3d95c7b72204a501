// `sextant demo` shows the mesh on its dashboard: it runs with the access-log stream on, prints
// the dashboard's URL with its token, the API behind it answers only that token, the graph
// holds bookinfo's calls within seconds of the start, and Chromium draws one node per workload.
// The demo runs on addresses of its own (a rewritten bookinfo), so it never meets another test's.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { BOOKINFO_EXAMPLES, CLI, seedConfig } from '../../src/demo/mesh.ts';
import { readTopology } from '../../src/demo/topology.ts';
import type { Graph } from '../../src/telemetry/index.ts';
import { freePort } from '../helpers/ports.ts';
import { chromiumSkip, openBrowser, type BrowserSession } from '../support/browser.ts';

const MARK = 'SEXTANT_DEMO_DASHBOARD_TEST';
const OCTET = 143;

let workDir: string;
let demo: ChildProcess | undefined;
let output = '';
let session: BrowserSession | undefined;

/** Every process the demo started (they inherit MARK), orphans included. */
function demoProcesses(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0').includes(`${MARK}=${workDir}`)) pids.push(Number(entry));
    } catch {
      // gone, or not ours
    }
  }
  return pids;
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (demo?.exitCode !== null) throw new Error(`the demo exited while waiting for ${what}:\n${output}`);
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; demo output:\n${output}`);
    await sleep(200);
  }
}

describe('sextant demo with its dashboard', () => {
  let url: URL;
  let token: string;

  before(async () => {
    workDir = mkdtempSync(path.join(os.tmpdir(), 'sextant-demo-dashboard-'));
    seedConfig(BOOKINFO_EXAMPLES, path.join(workDir, 'config'), true, { workloadOctet: OCTET, egressOctet: OCTET + 1, appPortOffset: OCTET * 10 });
    const http = `127.0.0.1:${await freePort()}`;
    demo = spawn(process.execPath, [CLI, 'demo', '--work-dir', workDir, '--xds-address', `127.0.0.1:${await freePort()}`, '--http-address', http, '--rate', '20'], {
      stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, [MARK]: workDir },
    });
    demo.stdout?.setEncoding('utf8').on('data', (d: string) => (output += d));
    demo.stderr?.setEncoding('utf8').on('data', (d: string) => (output += d));
    const line = await waitFor('the dashboard line', async () => /^Dashboard:\s+(\S+)$/m.exec(output)?.[1], 60_000);
    url = new URL(line);
    token = url.searchParams.get('token') ?? '';
  });

  after(async () => {
    await session?.close();
    if (demo !== undefined && demo.exitCode === null) {
      const exited = new Promise((r) => demo!.once('exit', r));
      demo.kill('SIGINT');
      await Promise.race([exited, sleep(15_000)]);
    }
    for (const pid of demoProcesses()) for (const target of [-pid, pid]) try { process.kill(target, 'SIGKILL'); } catch { /* gone */ }
    if (workDir !== undefined) rmSync(workDir, { recursive: true, force: true });
  });

  it('prints the dashboard URL with a token the API accepts, and only that token', async () => {
    assert.equal(url.pathname, '/dashboard');
    assert.match(token, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(readFileSync(path.join(workDir, 'api-token'), 'utf8').trim(), token);
    assert.equal((await fetch(new URL('/api/v1/graph', url))).status, 401);
    assert.equal((await fetch(new URL('/api/v1/graph', url), { headers: { authorization: `Bearer ${token}` } })).status, 200);
    assert.match(output, /Access logs:\s+npm run -s sextant -- logs --pilot http:\/\/\S+ --token-file \S+api-token --since 5m/);
  });

  it('draws bookinfo\'s calls from the access-log stream within seconds', async () => {
    const expected = [
      'workload:default/productpage-v1 -> service:details.default.svc.cluster.local',
      'workload:default/productpage-v1 -> service:reviews.default.svc.cluster.local',
      'service:productpage.default.svc.cluster.local -> workload:default/productpage-v1',
      'service:details.default.svc.cluster.local -> workload:default/details-v1',
    ];
    const graph = await waitFor('bookinfo\'s calls in the graph', async () => {
      const res = await fetch(new URL('/api/v1/graph?window=1m', url), { headers: { authorization: `Bearer ${token}` } });
      const g = (await res.json()) as Graph;
      const edges = new Set(g.edges.map((e) => `${e.source} -> ${e.target}`));
      return expected.every((e) => edges.has(e)) ? g : undefined;
    }, 30_000);
    // every edge is one of bookinfo's calls: the traffic generator → productpage → details, reviews → ratings
    const allowed = /^(unknown:127\.0\.0\.1 -> service:productpage|service:(\w+)\.default\.svc\.cluster\.local -> workload:default\/\2-v\d|workload:default\/productpage-v1 -> service:(details|reviews)|workload:default\/reviews-v[23] -> service:ratings)/;
    for (const e of graph.edges) assert.match(`${e.source} -> ${e.target}`, allowed);
  });

  it('shows one node per bookinfo workload in Chromium', { skip: chromiumSkip() }, async () => {
    session = await openBrowser('demo');
    const { page, errors } = session;
    await page.goto(url.href);
    await waitFor('every workload drawn', async () => {
      const n = await page.locator('#graph [data-workload]').count();
      return n === readTopology(path.join(workDir, 'config')).length ? n : undefined;
    }, 30_000);
    const drawn = await page.$$eval('#graph [data-workload]', (els) => els.map((e) => e.getAttribute('data-workload')).sort());
    assert.deepEqual(drawn, readTopology(path.join(workDir, 'config')).map((w) => `${w.namespace}/${w.name}`).sort());
    await session.screenshot('demo-dashboard');
    assert.deepEqual(errors, []);
  });
});
