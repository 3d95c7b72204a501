// The deadline timer: moved by a field store, never early, never after being disarmed.
import assert from 'node:assert/strict';
import { mock, test } from 'node:test';
import { DeadlineTimer } from '../../../src/proxy/http/deadline-timer.ts';

function clock(): { fired: number[]; timer: DeadlineTimer } {
  const fired: number[] = [];
  const timer = new DeadlineTimer(() => { fired.push(Date.now()); });
  return { fired, timer };
}

test('a deadline expires once, when it is due', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000 });
  const { fired, timer } = clock();
  timer.arm(100);
  t.mock.timers.tick(99);
  assert.deepEqual(fired, []);
  t.mock.timers.tick(1);
  assert.deepEqual(fired, [1_100]);
  assert.equal(timer.armed, false);
  t.mock.timers.tick(1_000);
  assert.deepEqual(fired, [1_100]);
});

test('a deadline moved later expires at the new time, not at the first', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
  const { fired, timer } = clock();
  timer.arm(100); // due at 100
  t.mock.timers.tick(60);
  timer.arm(100); // moved to 160: the pending timeout fires at 100 and waits out the rest
  t.mock.timers.tick(40);
  assert.deepEqual(fired, []);
  t.mock.timers.tick(59);
  assert.deepEqual(fired, []);
  t.mock.timers.tick(1);
  assert.deepEqual(fired, [160]);
});

test('a deadline moved earlier expires at the earlier time', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
  const { fired, timer } = clock();
  timer.arm(1_000);
  timer.arm(50);
  t.mock.timers.tick(50);
  assert.deepEqual(fired, [50]);
  t.mock.timers.tick(2_000);
  assert.deepEqual(fired, [50]);
});

test('a disarmed or stopped deadline never expires; re-armed, it does', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
  const { fired, timer } = clock();
  timer.arm(100);
  timer.disarm();
  t.mock.timers.tick(500);
  assert.deepEqual(fired, []);
  timer.arm(100);
  timer.stop();
  t.mock.timers.tick(500);
  assert.deepEqual(fired, []);
  timer.arm(10);
  t.mock.timers.tick(10);
  assert.deepEqual(fired, [1_010]);
});

test('moving a deadline on every request schedules one timeout per period, not one per request', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
  const { fired, timer } = clock();
  const real = globalThis.setTimeout;
  let scheduled = 0;
  const spy = mock.method(globalThis, 'setTimeout', (...a: Parameters<typeof real>) => { scheduled++; return real(...a); });
  for (let i = 0; i < 1_000; i++) {
    timer.arm(100);
    t.mock.timers.tick(1); // a request a millisecond for one second
  }
  spy.mock.restore();
  assert.deepEqual(fired, []);
  assert.ok(scheduled <= 11, `${scheduled} timeouts scheduled for 1,000 moves`);
});
