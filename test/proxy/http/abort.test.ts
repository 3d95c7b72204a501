// A request's abort signal behaves as an AbortSignal does for the listeners the proxy adds.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RequestAbort } from '../../../src/proxy/http/abort.ts';

// two listeners that record their calls, in order
function recorder(): { calls: string[]; a: () => void; b: () => void } {
  const calls: string[] = [];
  return { calls, a: () => { calls.push('a'); }, b: () => { calls.push('b'); } };
}

test('abort runs each listener once, in the order added, and records the reason', () => {
  const s = new RequestAbort();
  const { calls, a, b } = recorder();
  s.addEventListener('abort', a);
  s.addEventListener('abort', b, { once: true });
  s.addEventListener('abort', a); // a listener added twice is one listener, as with EventTarget
  assert.equal(s.aborted, false);
  const reason = new Error('gone');
  s.abort(reason);
  s.abort(new Error('again'));
  assert.deepEqual(calls, ['a', 'b']);
  assert.equal(s.aborted, true);
  assert.equal(s.reason, reason);
});

test('a removed listener does not run; one added after abort never runs', () => {
  const s = new RequestAbort();
  const { calls, a, b } = recorder();
  s.addEventListener('abort', a);
  s.addEventListener('abort', b);
  s.removeEventListener('abort', a);
  s.removeEventListener('abort', a);
  s.abort(undefined);
  s.addEventListener('abort', a);
  assert.deepEqual(calls, ['b']);
});
