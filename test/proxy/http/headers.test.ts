// Content-Length as the codec reads it: one valid number, or a list repeating it; else none.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { contentLengthOf } from '../../../src/proxy/http/headers.ts';

const cl = (...values: string[]): number => contentLengthOf(values.map((value, i) => ({ name: i % 2 ? 'content-length' : 'Content-Length', value })));

test('Content-Length: one value, a repeated value, or a list of the same value', () => {
  assert.equal(contentLengthOf([{ name: 'Host', value: 'a' }]), -1);
  assert.equal(cl('0'), 0);
  assert.equal(cl('1024'), 1024);
  assert.equal(cl('42', '42'), 42);
  assert.equal(cl('42, 42'), 42);
  assert.equal(cl(' 7 ,\t7'), 7);
  assert.equal(cl('999999999999999'), 999999999999999);
});

test('Content-Length: conflicting, empty, signed, non-decimal or too long values are not a length', () => {
  for (const bad of [['1', '2'], ['3, 4'], [''], ['5,'], [',5'], ['+5'], ['-5'], ['0x10'], ['1 2'], ['5a'], ['1000000000000000']]) {
    assert.equal(cl(...bad), -1, JSON.stringify(bad));
  }
});
