// `sextant demo` (what `npm start` runs): it comes up and shows the live table; it supervises
// its processes, so a sidecar or the pilot killed with -9 is restarted and traffic recovers
// with no manual step; and Ctrl-C stops every process it started, leaving nothing behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../helpers/local-mesh.ts';
import { readTopology } from '../../src/demo/topology.ts';
import { BOOKINFO_EXAMPLES, CLI } from '../../src/demo/mesh.ts';

const workloads = readTopology(BOOKINFO_EXAMPLES);
const front = workloads.find((w) => w.name === 'productpage-v1');
assert.ok(front);
/** Every process the demo starts inherits this variable, so the test finds them all, orphans included. */
const MARK = 'SEXTANT_DEMO_TEST_MARK';

interface Demo {
  child: ChildProcess;
  workDir: string;
  output: () => string;
  exited: Promise<number | null>;
  xdsPort: number;
  httpPort: number;
}

async function startDemo(t: { after: (fn: () => void | Promise<void>) => void }): Promise<Demo> {
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'sextant-demo-'));
  const xds = await freePort();
  const http = await freePort();
  const child = spawn(process.execPath, [CLI, 'demo', '--work-dir', workDir, '--xds-address', `127.0.0.1:${xds}`, '--http-address', `127.0.0.1:${http}`, '--rate', '20'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, [MARK]: workDir },
  });
  let out = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.after(async () => {
    // Whatever happened: the demo first (so it restarts nothing), then every process group
    // it started, orphans included.
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
    for (const pid of demoProcesses(workDir)) {
      for (const target of [-pid, pid]) {
        try {
          process.kill(target, 'SIGKILL');
        } catch {
          // gone, or not a group leader
        }
      }
    }
    // KEEP_MESH_LOGS keeps the work folder (config and every process's log), as for test meshes.
    if (process.env['KEEP_MESH_LOGS']) console.error(`demo work folder kept: ${workDir}`);
    else rmSync(workDir, { recursive: true, force: true });
  });
  return { child, workDir, output: () => out, exited, xdsPort: xds, httpPort: http };
}

async function waitForOutput(demo: Demo, pattern: RegExp, timeoutMs: number, from = 0): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pattern.test(demo.output().slice(from))) {
    if (Date.now() > deadline) throw new Error(`demo did not print ${pattern} in time; output:\n${demo.output()}`);
    if (demo.child.exitCode !== null) throw new Error(`demo exited early:\n${demo.output()}`);
    await sleep(100);
  }
}

async function eventually(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await sleep(100);
  }
  return Date.now() - started;
}

/** The processes the demo in `workDir` started (found by the variable they inherit), alive or orphaned. */
function demoProcesses(workDir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const env = readFileSync(`/proc/${entry}/environ`, 'utf8').split('\0');
      const state = readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1]?.[0];
      if (state !== 'Z' && env.includes(`${MARK}=${workDir}`)) pids.push(Number(entry));
    } catch {
      // gone, or not ours
    }
  }
  return pids;
}

/** The pid of the demo's process whose command line contains `needle` (NUL-separated arguments). */
function pidOf(demo: Demo, needle: string): number {
  const pids = demoProcesses(demo.workDir).filter((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(needle);
    } catch {
      return false;
    }
  });
  assert.equal(pids.length, 1, `one process with ${JSON.stringify(needle)}: ${pids.join(', ')}`);
  return pids[0] as number;
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
    ['127.0.0.1', demo.xdsPort] as const,
    ['127.0.0.1', demo.httpPort] as const,
    ...workloads.flatMap((w) => [[w.address, w.port], [w.appEndpoint.host, w.appEndpoint.port], [w.egress.host, w.egress.port], [w.address, 15000]] as const),
  ];
  const open: string[] = [];
  for (const [h, p] of addresses) if (await listening(h, p)) open.push(`${h}:${p}`);
  return open;
}

/** The demo's token for /debug (the pilot's monitoring tokens guard it), from its work folder. */
function debugAuth(demo: { workDir: string }): Record<string, string> {
  return { authorization: `Bearer ${readFileSync(path.join(demo.workDir, 'api-token'), 'utf8').trim()}` };
}

function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, timeout: 5000, headers }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve({ status: 0, body: '' }));
  });
}

/** The demo's own traffic, one line per second: "client → productpage: 20 req/s, success 100.0%, …". */
function clientLines(text: string): string[] {
  return text.split('\n').filter((l) => l.startsWith('client → productpage:'));
}

const fullSuccess = (line: string): boolean => /: [1-9]\d* req\/s, success 100\.0%/.test(line);

/** The last live table the demo printed (from its header on). */
function lastFrame(text: string): string {
  return text.slice(text.lastIndexOf('WORKLOAD        REQ/S'));
}

interface ProcessRow {
  status: string;
  restarts: number;
}

/** STATUS and RESTARTS of each workload in a live table, and of the pilot (its own line). */
function processRows(frame: string): Map<string, ProcessRow> {
  const rows = new Map<string, ProcessRow>();
  for (const line of frame.split('\n')) {
    const cells = line.split(/ {2,}/);
    if (cells.length === 7 && workloads.some((w) => w.name === cells[0])) rows.set(cells[0] as string, { status: cells[5] as string, restarts: Number(cells[6]) });
    const pilot = /^pilot \(xDS [^)]+\): (.+), (\d+) restarts?$/.exec(line);
    if (pilot) rows.set('pilot', { status: pilot[1] as string, restarts: Number(pilot[2]) });
  }
  return rows;
}

/** Every process row of `after` as in `before`, except `changed`: running with one more restart. */
function expectOneRestart(before: Map<string, ProcessRow>, after: Map<string, ProcessRow>, changed: string): void {
  const expected = new Map([...before].map(([name, r]) => [name, { status: 'running', restarts: name === changed ? r.restarts + 1 : r.restarts }]));
  assert.deepEqual(after, expected, `only ${changed} restarted, once`);
}

/** Ctrl-C: the demo exits 0 within 5 s, and no process it ever started is left or listening. */
async function stopWithCtrlC(demo: Demo): Promise<void> {
  const stopAt = Date.now();
  demo.child.kill('SIGINT');
  const code = await demo.exited;
  const tookMs = Date.now() - stopAt;
  assert.equal(code, 0);
  assert.ok(tookMs < 5000, `stopping took ${tookMs} ms`);
  assert.match(demo.output(), /All processes stopped\.\n$/);
  assert.deepEqual(demoProcesses(demo.workDir), []);
  assert.deepEqual(await nothingListens(demo), []);
}

test('the demo shows every workload with live traffic, and Ctrl-C stops everything within 5 s', { timeout: 120_000 }, async (t) => {
  const demo = await startDemo(t);
  await waitForOutput(demo, /client → productpage: \d+ req\/s, success 100\.0%/, 90_000);
  const text = demo.output();
  for (const w of workloads) assert.match(text, new RegExp(`^${w.name}\\s+${w.version}\\s+${w.address.replaceAll('.', '\\.')}:9080`, 'm'));
  assert.match(text, /curl http:\/\/127\.0\.1\.1:9080\/productpage/);
  const frame = lastFrame(text);
  assert.deepEqual(processRows(frame), new Map(['pilot', ...workloads.map((w) => w.name)].map((n) => [n, { status: 'running', restarts: 0 }])), `a clean start restarts nothing:\n${frame}`);
  assert.match(frame, /^pilot \(xDS 127\.0\.0\.1:\d+\): running, 0 restarts$/m);
  assert.equal(demoProcesses(demo.workDir).length, 1 + 2 * workloads.length + 1, 'the demo, the pilot, an app and a sidecar per workload');
  await stopWithCtrlC(demo);
});

test('a sidecar killed with -9 comes back on its address with its config, and traffic recovers with no manual step', { timeout: 150_000 }, async (t) => {
  const demo = await startDemo(t);
  await waitForOutput(demo, /client → productpage: \d+ req\/s, success 100\.0%/, 90_000);
  // productpage's sidecar is the front door: every request of the demo's traffic crosses it.
  const needle = `${front.adminAddress}\0`;
  const victim = pidOf(demo, needle);
  // (Counted from here: a process of a tree being edited may have restarted at start-up.)
  const before = processRows(lastFrame(demo.output()));
  assert.equal(before.size, workloads.length + 1);
  const mark = demo.output().length;
  const killedAt = Date.now();
  process.kill(victim, 'SIGKILL');

  // Recovered: the demo's own traffic is back to 100% success for three seconds running.
  const recoveredMs = await eventually('the demo\'s traffic is back to 100% success', () => {
    assert.equal(demo.child.exitCode, null, `the demo exited:\n${demo.output()}`);
    const lines = clientLines(demo.output().slice(mark));
    return lines.length >= 4 && lines.slice(-3).every(fullSuccess);
  }, 30_000);
  const after = demo.output().slice(mark);
  assert.match(after, /error×\d+/, 'the kill was felt before the restart');
  assert.ok(recoveredMs < 30_000);

  // The same sidecar, restarted: a new process on the same addresses, with config fetched again.
  const restarted = pidOf(demo, needle);
  assert.notEqual(restarted, victim);
  assert.equal(await listening(front.address, front.port), true);
  assert.equal((await get(`http://${front.address}:${front.port}/productpage`)).status, 200);
  const syncz = JSON.parse((await get(`http://127.0.0.1:${demo.httpPort}/debug/syncz`, debugAuth(demo))).body) as Array<{ proxy: string; connectedAt: string }>;
  const conn = syncz.find((c) => c.proxy.includes('productpage-v1'));
  assert.ok(conn && Date.parse(conn.connectedAt) > killedAt, `reconnected to the pilot after the kill: ${JSON.stringify(conn)}`);

  // The table shows the restart, and no rate went negative across the counters' reset.
  const frame = lastFrame(demo.output());
  expectOneRestart(before, processRows(frame), front.name);
  assert.match(frame, /^last exit: proxy-productpage-v1 at \d\d:\d\d:\d\d \(signal SIGKILL, up [\d.]+s\)$/m);
  assert.doesNotMatch(after, /^\S+-v\d\s+-\d/m, 'a negative requests/s');

  await stopWithCtrlC(demo);
});

test('the pilot killed with -9: the data plane keeps serving, the pilot comes back and every sidecar reconnects', { timeout: 150_000 }, async (t) => {
  const demo = await startDemo(t);
  await waitForOutput(demo, /client → productpage: \d+ req\/s, success 100\.0%/, 90_000);
  const needle = `--config-dir\0${path.join(demo.workDir, 'config')}\0`;
  const pilot = pidOf(demo, needle);
  const before = processRows(lastFrame(demo.output()));
  assert.equal(before.size, workloads.length + 1);
  const mark = demo.output().length;
  const killedAt = Date.now();
  process.kill(pilot, 'SIGKILL');

  await eventually('the pilot is down', async () => !(await listening('127.0.0.1', demo.xdsPort)), 5000);

  // While the pilot is down, requests still go through every hop (productpage → reviews → ratings).
  let servedWhileDown = 0;
  let failedWhileDown = 0;
  for (;;) {
    const r = await get(`http://${front.address}:${front.port}/productpage`);
    if (await listening('127.0.0.1', demo.xdsPort)) break;
    if (r.status === 200) servedWhileDown++;
    else failedWhileDown++;
    assert.ok(Date.now() - killedAt < 30_000, 'the pilot came back within 30 s');
  }
  assert.ok(servedWhileDown > 0, 'requests were served while the pilot was down');
  assert.equal(failedWhileDown, 0);

  // Back on the same ports, and every sidecar's ADS client reconnected by itself.
  await eventually('the pilot is ready', async () => (await get(`http://127.0.0.1:${demo.httpPort}/ready`)).status === 200, 30_000);
  assert.notEqual(pidOf(demo, needle), pilot);
  await eventually('every sidecar reconnected to the new pilot', async () => {
    const r = await get(`http://127.0.0.1:${demo.httpPort}/debug/syncz`, debugAuth(demo));
    if (r.status !== 200) return false;
    const conns = JSON.parse(r.body) as Array<{ connectedAt: string }>;
    return conns.length === workloads.length && conns.every((c) => Date.parse(c.connectedAt) > killedAt);
  }, 30_000);

  // The demo's own traffic never failed, and the table shows the pilot's restart.
  const restarted = (before.get('pilot')?.restarts ?? 0) + 1;
  await eventually('the table shows the pilot running again', () => {
    const pilotRow = processRows(lastFrame(demo.output())).get('pilot');
    return pilotRow?.status === 'running' && pilotRow.restarts === restarted;
  }, 20_000);
  await waitForOutput(demo, /^client → .*\n(?:.*\n)*client → /m, 10_000, demo.output().length);
  const lines = clientLines(demo.output().slice(mark));
  assert.ok(lines.length >= 2);
  assert.deepEqual(lines.filter((l) => !fullSuccess(l)), []);
  const frame = lastFrame(demo.output());
  expectOneRestart(before, processRows(frame), 'pilot');
  assert.match(frame, /^last exit: pilot at \d\d:\d\d:\d\d \(signal SIGKILL, up [\d.]+s\)$/m);
  assert.equal(demo.child.exitCode, null);

  await stopWithCtrlC(demo);
});
