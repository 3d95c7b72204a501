// The proxy collects a burst's garbage once traffic stops, once per burst, never under
// steady traffic or after a trickle.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BurstReclaimer } from '../../../src/proxy/upstream/index.ts';

function harness(minRequests = 100, quietMs = 2000): { r: BurstReclaimer; tick: (requests: number, ms?: number) => void; collections: () => number } {
  let served = 0;
  let now = 0;
  let collections = 0;
  const r = new BurstReclaimer({ served: () => served, minRequests, quietMs, checkEveryMs: 3_600_000, reclaim: () => { collections++; return true; }, now: () => now });
  const tick = (requests: number, ms = 1000): void => {
    served += requests;
    now += ms;
    r.check();
  };
  return { r, tick, collections: () => collections };
}

test('a burst followed by quiet is collected once', () => {
  const h = harness();
  h.tick(500);
  h.tick(0);
  assert.equal(h.collections(), 0, 'not before quietMs');
  h.tick(0);
  assert.equal(h.collections(), 1);
  for (let i = 0; i < 10; i++) h.tick(0);
  assert.equal(h.collections(), 1, 'one collection per burst');
  assert.equal(h.r.reclaims, 1);
  h.r.close();
});

test('steady traffic is never interrupted, however much of it', () => {
  const h = harness();
  for (let i = 0; i < 100; i++) h.tick(1000);
  assert.equal(h.collections(), 0);
  h.r.close();
});

test('a trickle below the burst size is not collected; a second burst is', () => {
  const h = harness();
  h.tick(50);
  for (let i = 0; i < 5; i++) h.tick(0);
  assert.equal(h.collections(), 0);
  h.tick(200);
  for (let i = 0; i < 3; i++) h.tick(0);
  assert.equal(h.collections(), 1);
  h.tick(300);
  for (let i = 0; i < 3; i++) h.tick(0);
  assert.equal(h.collections(), 2);
  h.r.close();
});
