// The demo's process supervision: a child that exits on its own is started again with
// backoff, a crash loop is reported as one, and stopAll() leaves no process behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ProcessGroup, type Supervised } from '../../src/demo/processes.ts';

const FAST = { initialDelayMs: 50, maxDelayMs: 400, stableAfterMs: 60_000, crashLoopAfter: 3 };

function alive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(20);
  }
}

function tempLogs(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sextant-processes-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('a killed child is started again after 50 ms, as a new process of the same command', { timeout: 20_000 }, async (t) => {
  const group = new ProcessGroup(tempLogs(t), FAST);
  t.after(() => group.stopAll(500));
  const s = group.start('sleeper', process.execPath, ['-e', 'setInterval(() => {}, 1000)']);
  const first = s.child.pid;
  await until('the first run is up', () => alive(first));
  assert.equal(s.state().kind, 'running');
  process.kill(first ?? 0, 'SIGKILL');
  await s.exited;
  const state = s.state();
  assert.equal(state.kind, 'restarting');
  assert.ok(state.kind === 'restarting' && state.inMs <= 50 && !state.crashLooping, JSON.stringify(state));
  await until('it runs again', () => s.restarts === 1 && s.state().kind === 'running');
  assert.notEqual(s.child.pid, first);
  assert.deepEqual(s.lastExit && { code: s.lastExit.code, signal: s.lastExit.signal }, { code: null, signal: 'SIGKILL' });
  const log = readFileSync(s.logFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(log.map((l) => [l['msg'], l['restartInMs'] ?? null, l['restarts']]), [
    ['exited unexpectedly; restarting', 50, 0],
    ['restarted', null, 1],
  ]);
});

test('a child that keeps exiting backs off 50, 100, 200, 400 ms and shows as crash-looping', { timeout: 30_000 }, async (t) => {
  const group = new ProcessGroup(tempLogs(t), FAST);
  t.after(() => group.stopAll(500));
  const s = group.start('crasher', process.execPath, ['-e', 'process.exit(3)']);
  await until('it exited five times', () => s.restarts >= 4 && s.state().kind === 'restarting', 15_000);
  const state = s.state();
  assert.ok(state.kind === 'restarting' && state.crashLooping, JSON.stringify(state));
  assert.equal(s.lastExit?.code, 3);
  const delays = readFileSync(s.logFile, 'utf8').trim().split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l['restartInMs'] !== undefined)
    .map((l) => [l['restartInMs'], l['msg']]);
  assert.deepEqual(delays.slice(0, 5), [
    [50, 'exited unexpectedly; restarting'],
    [100, 'exited unexpectedly; restarting'],
    [200, 'crash-looping; restarting after backoff'],
    [400, 'crash-looping; restarting after backoff'],
    [400, 'crash-looping; restarting after backoff'],
  ]);
});

test('stopAll() stops running children and cancels pending restarts; nothing is left', { timeout: 20_000 }, async (t) => {
  const group = new ProcessGroup(tempLogs(t), { ...FAST, initialDelayMs: 300 });
  t.after(() => group.stopAll(300)); // if an assertion fails first
  const running = group.start('sleeper', process.execPath, ['-e', 'setInterval(() => {}, 1000)']);
  // Ignores SIGTERM: only the SIGKILL after the grace period ends it.
  const stubborn = group.start('stubborn', process.execPath, ['-e', "process.on('SIGTERM', () => {}); setInterval(() => {}, 1000)"]);
  const crashed = group.start('crasher', process.execPath, ['-e', 'process.exit(1)']);
  await until('the crasher waits to restart', () => crashed.state().kind === 'restarting');
  await until('the others are up', () => alive(running.child.pid) && alive(stubborn.child.pid));
  await sleep(200); // the stubborn child has installed its SIGTERM handler
  const pids = [running, stubborn].map((s: Supervised) => s.child.pid);
  const started = Date.now();
  await group.stopAll(300);
  assert.ok(Date.now() - started < 2000, `stopAll took ${Date.now() - started} ms`);
  assert.deepEqual(pids.map(alive), [false, false]);
  await sleep(500); // past the crasher's restart time
  assert.equal(crashed.restarts, 0);
  assert.deepEqual(group.children.map((s) => s.state().kind), ['stopped', 'stopped', 'stopped']);
  assert.throws(() => group.start('late', process.execPath, ['-e', '']), /cannot start late: the process group is stopping/);
});

test('without a restart policy an exit is reported once and the child stays down', { timeout: 20_000 }, async (t) => {
  const group = new ProcessGroup(tempLogs(t));
  t.after(() => group.stopAll(500));
  const exits: Array<[string, number | null]> = [];
  group.onUnexpectedExit = (s, code) => exits.push([s.name, code]);
  const s = group.start('once', process.execPath, ['-e', 'process.exit(7)']);
  await s.exited;
  await sleep(100);
  assert.deepEqual(exits, [['once', 7]]);
  assert.equal(s.restarts, 0);
  assert.equal(s.state().kind, 'exited');
});
