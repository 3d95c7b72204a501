// Duration flags, shared by `sextant pilot` and `sextant proxy`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDurationFlag } from '../../src/cli/flags.ts';

test('durations in ms, s and m become milliseconds', () => {
  assert.equal(parseDurationFlag('100ms', '--debounce-after'), 100);
  assert.equal(parseDurationFlag('1.5s', '--drain-duration'), 1500);
  assert.equal(parseDurationFlag(' 2m ', '--debounce-max'), 120_000);
});

test('anything else is an error naming the flag and the value', () => {
  assert.throws(() => parseDurationFlag('5', '--drain-duration'), { message: 'invalid --drain-duration "5": expected a duration like 100ms, 10s or 1m' });
  assert.throws(() => parseDurationFlag('-1s', '--passthrough-idle'), /invalid --passthrough-idle "-1s"/);
});
