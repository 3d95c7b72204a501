// Debounce merges a burst of config events into one batch; the push queue bounds concurrency
// and merges plans for a proxy queued twice.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE } from '../../../src/envoy/index.ts';
import { Debouncer } from '../../../src/pilot/push/debounce.ts';
import type { DebouncedChange } from '../../../src/pilot/push/debounce.ts';
import { PushQueue, mergePlans } from '../../../src/pilot/push/queue.ts';
import type { PushPlan } from '../../../src/pilot/model.ts';

test('a burst of events becomes one batch: keys merged, endpointsOnly only if every event was', async () => {
  const batches: DebouncedChange[] = [];
  let release!: () => void;
  const done = new Promise<void>((r) => (release = r));
  const d = new Debouncer({ afterMs: 30, maxMs: 5000 }, async (c) => {
    batches.push(c);
    release();
  });
  d.add('WorkloadEntry/default/w1', true, 1000);
  d.add('WorkloadEntry/default/w2', true, 1001);
  d.add('VirtualService/default/vs', false, 1002);
  d.add('WorkloadEntry/default/w1', true, 1003);
  await done;
  d.close();
  assert.equal(batches.length, 1);
  assert.deepEqual([...batches[0]!.keys], ['WorkloadEntry/default/w1', 'WorkloadEntry/default/w2', 'VirtualService/default/vs']);
  assert.equal(batches[0]!.endpointsOnly, false);
  assert.equal(batches[0]!.events, 4);
  assert.equal(batches[0]!.firstEventAt, 1000);
});

test('events that arrive while a batch is being pushed form the next batch', async () => {
  const batches: string[][] = [];
  let unblock!: () => void;
  const blocked = new Promise<void>((r) => (unblock = r));
  let second!: () => void;
  const secondDone = new Promise<void>((r) => (second = r));
  const d = new Debouncer({ afterMs: 5, maxMs: 5000 }, async (c) => {
    batches.push([...c.keys]);
    if (batches.length === 1) await blocked;
    else second();
  });
  d.add('ServiceEntry/default/a', false);
  while (batches.length === 0) await new Promise((r) => setTimeout(r, 5));
  d.add('ServiceEntry/default/b', true);
  d.add('ServiceEntry/default/c', true);
  unblock();
  await secondDone;
  d.close();
  assert.deepEqual(batches, [['ServiceEntry/default/a'], ['ServiceEntry/default/b', 'ServiceEntry/default/c']]);
});

test('invalid debounce bounds are refused', () => {
  assert.throws(() => new Debouncer({ afterMs: 200, maxMs: 100 }, async () => {}), /invalid debounce: after 200ms must be >= 0 and <= max 100ms/);
});

test('merging plans: types unite; EDS stays narrowed only when both plans narrowed it', () => {
  const eds = (names?: string[]): PushPlan => (names === undefined ? { types: new Set([ENDPOINT_TYPE]) } : { types: new Set([ENDPOINT_TYPE]), edsClusters: new Set(names) });
  const m1 = mergePlans(eds(['a']), eds(['b']));
  assert.deepEqual([...m1.types], [ENDPOINT_TYPE]);
  assert.deepEqual([...m1.edsClusters!].sort(), ['a', 'b']);
  assert.equal(mergePlans(eds(['a']), eds()).edsClusters, undefined);
  const m2 = mergePlans(eds(['a']), { types: new Set([CLUSTER_TYPE, LISTENER_TYPE]) });
  assert.deepEqual([...m2.types].sort(), [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE].sort());
  assert.deepEqual([...m2.edsClusters!], ['a']);
});

test('the queue never runs more than its bound, and a key queued twice is pushed once with merged plans', async () => {
  let running = 0;
  let maxRunning = 0;
  const pushed: { key: string; plan: PushPlan; eventAt: number }[] = [];
  const gates: (() => void)[] = [];
  const q = new PushQueue<string>({
    concurrency: 2,
    push: async (key, plan, eventAt) => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      await new Promise<void>((r) => gates.push(r));
      pushed.push({ key, plan, eventAt });
      running--;
    },
  });
  for (const k of ['p1', 'p2', 'p3', 'p4']) q.enqueue(k, { types: new Set([ENDPOINT_TYPE]), edsClusters: new Set(['x']) }, 10);
  q.enqueue('p4', { types: new Set([CLUSTER_TYPE]) }, 5);
  assert.equal(q.running, 2);
  assert.equal(q.size, 2);
  while (pushed.length < 4) {
    await new Promise((r) => setTimeout(r, 1));
    gates.shift()?.();
  }
  await q.idle();
  assert.equal(maxRunning, 2);
  assert.deepEqual(pushed.map((p) => p.key), ['p1', 'p2', 'p3', 'p4']);
  const p4 = pushed[3]!;
  assert.deepEqual([...p4.plan.types].sort(), [CLUSTER_TYPE, ENDPOINT_TYPE].sort());
  assert.equal(p4.eventAt, 5);
  assert.throws(() => new PushQueue<string>({ concurrency: 0, push: async () => {} }), /invalid push concurrency 0/);
});

test('under a steady stream of endpoint changes a batch waits at most endpointsMaxMs; a config change in it waits up to maxMs', async () => {
  const released: Array<{ at: number; endpointsOnly: boolean; events: number }> = [];
  const d = new Debouncer({ afterMs: 50, maxMs: 5000, endpointsMaxMs: 150 }, async (c) => {
    released.push({ at: Date.now() - c.firstEventAt, endpointsOnly: c.endpointsOnly, events: c.events });
  });
  // An event every 20 ms: never 50 ms of quiet.
  const stream = async (ms: number, endpointsOnly: (i: number) => boolean): Promise<void> => {
    for (let i = 0; i * 20 < ms; i++) {
      d.add(`WorkloadEntry/default/w${i}`, endpointsOnly(i));
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  await stream(600, () => true);
  await new Promise((r) => setTimeout(r, 100));
  assert.ok(released.length >= 3, JSON.stringify(released));
  for (const b of released) {
    assert.equal(b.endpointsOnly, true);
    assert.ok(b.at >= 140 && b.at < 400, JSON.stringify(released));
  }
  released.length = 0;
  // With a VirtualService change among them, the batch is a full rebuild: no early release.
  await stream(600, (i) => i !== 1);
  d.close();
  assert.deepEqual(released, []);
});
