// The demo's restart schedule: how long it waits before starting a process that exited
// again, when that resets, and when it calls it a crash loop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_RESTART_POLICY, RestartBackoff, restartDelayMs } from '../../src/demo/backoff.ts';

test('consecutive exits wait 250 ms, doubling up to 10 s', () => {
  const b = new RestartBackoff();
  const delays = Array.from({ length: 9 }, () => b.exited(1_000));
  assert.deepEqual(delays, [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);
  assert.equal(b.consecutiveExits, 9);
});

test('a process that stayed up 30 s had a good run: its next exit waits 250 ms again', () => {
  const b = new RestartBackoff();
  assert.deepEqual([b.exited(100), b.exited(100), b.exited(100), b.exited(100)], [250, 500, 1000, 2000]);
  assert.equal(b.exited(29_999), 4000, 'just short of 30 s is not a good run');
  assert.equal(b.exited(30_000), 250);
  assert.equal(b.consecutiveExits, 1);
  assert.equal(b.exited(5), 500);
});

test('three exits in a row without a good run are a crash loop, until a run lasts 30 s', () => {
  const b = new RestartBackoff();
  b.exited(100);
  b.exited(100);
  assert.equal(b.crashLooping(), false);
  b.exited(100);
  assert.equal(b.crashLooping(), true, 'waiting to restart after the third exit');
  assert.equal(b.crashLooping(29_999), true, 'restarted, but not yet up 30 s');
  assert.equal(b.crashLooping(30_000), false, 'up 30 s: no longer looping');
  b.exited(30_000);
  assert.equal(b.crashLooping(), false);
});

test('the delay is capped for any number of exits (no overflow)', () => {
  assert.equal(restartDelayMs(DEFAULT_RESTART_POLICY, 1), 250);
  assert.equal(restartDelayMs(DEFAULT_RESTART_POLICY, 7), 10_000);
  assert.equal(restartDelayMs(DEFAULT_RESTART_POLICY, 5_000), 10_000);
  assert.equal(restartDelayMs({ initialDelayMs: 100, maxDelayMs: 1000, stableAfterMs: 5000, crashLoopAfter: 2 }, 4), 800);
});
