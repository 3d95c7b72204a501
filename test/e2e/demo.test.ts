// `sextant demo` (what `npm start` runs): it comes up, shows the live table, and Ctrl-C or
// a crashed child stops every process it started, leaving nothing behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../helpers/local-mesh.ts';
import { readTopology } from '../../src/demo/topology.ts';
import { BOOKINFO_EXAMPLES, CLI } from '../../src/demo/mesh.ts';

const workloads = readTopology(BOOKINFO_EXAMPLES);

interface Demo {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
  pilotPorts: number[];
}

async function startDemo(t: { after: (fn: () => void | Promise<void>) => void }): Promise<Demo> {
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'sextant-demo-'));
  const xds = await freePort();
  const http = await freePort();
  const child = spawn(process.execPath, [CLI, 'demo', '--work-dir', workDir, '--xds-address', `127.0.0.1:${xds}`, '--http-address', `127.0.0.1:${http}`, '--rate', '20'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.after(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    for (const pid of demoChildren(workDir)) process.kill(pid, 'SIGKILL');
    rmSync(workDir, { recursive: true, force: true });
  });
  return { child, output: () => out, exited, pilotPorts: [xds, http] };
}

async function waitForOutput(demo: Demo, pattern: RegExp, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pattern.test(demo.output())) {
    if (Date.now() > deadline) throw new Error(`demo did not print ${pattern} in time; output:\n${demo.output()}`);
    if (demo.child.exitCode !== null) throw new Error(`demo exited early:\n${demo.output()}`);
    await sleep(100);
  }
}

/** Processes started for the demo in `workDir`'s mesh (the pilot names the folder). */
function demoChildren(workDir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmd.includes(workDir)) pids.push(Number(entry));
    } catch {
      // gone
    }
  }
  return pids;
}

function listening(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function nothingListens(demo: Demo): Promise<string[]> {
  const addresses = [
    ...demo.pilotPorts.map((p) => ['127.0.0.1', p] as const),
    ...workloads.flatMap((w) => [[w.address, w.port], [w.appEndpoint.host, w.appEndpoint.port], [w.egress.host, w.egress.port], [w.address, 15000]] as const),
  ];
  const open: string[] = [];
  for (const [h, p] of addresses) if (await listening(h, p)) open.push(`${h}:${p}`);
  return open;
}

test('the demo shows every workload with live traffic, and Ctrl-C stops everything within 5 s', async (t) => {
  const demo = await startDemo(t);
  await waitForOutput(demo, /client → productpage: \d+ req\/s, success 100\.0%/, 90_000);
  const text = demo.output();
  for (const w of workloads) assert.match(text, new RegExp(`^${w.name}\\s+${w.version}\\s+${w.address.replaceAll('.', '\\.')}:9080`, 'm'));
  assert.match(text, /curl http:\/\/127\.0\.1\.1:9080\/productpage/);

  const stopAt = Date.now();
  demo.child.kill('SIGINT');
  const code = await demo.exited;
  const tookMs = Date.now() - stopAt;
  assert.equal(code, 0);
  assert.ok(tookMs < 5000, `stopping took ${tookMs} ms`);
  assert.match(demo.output(), /All processes stopped\.\n$/);
  assert.deepEqual(await nothingListens(demo), []);
});

test('when a sidecar crashes, the demo says which and stops every other process', async (t) => {
  const demo = await startDemo(t);
  await waitForOutput(demo, /client → productpage:/, 90_000);
  const victim = workloads.find((w) => w.name === 'reviews-v2');
  assert.ok(victim);
  const pid = readdirSync('/proc').find((e) => {
    try {
      return /^\d+$/.test(e) && readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(`${victim.adminAddress}\0`);
    } catch {
      return false;
    }
  });
  assert.ok(pid, 'found the reviews-v2 sidecar process');
  process.kill(Number(pid), 'SIGKILL');
  const code = await demo.exited;
  assert.equal(code, 1);
  assert.match(demo.output(), /proxy-reviews-v2 exited unexpectedly/);
  assert.match(demo.output(), /All processes stopped\.\n$/);
  assert.deepEqual(await nothingListens(demo), []);
});
