// The mass-deletion guard: the shared rule, and the etcd store holding a wiped prefix (in one
// watch batch, or found by a relist after compaction) until PREFIX/.sextant-confirm-delete is put.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Etcd3 } from 'etcd3';
import pino from 'pino';
import {
  CONFIRM_DELETE_MARKER, DEFAULT_DELETE_GUARD, InvalidArgumentError, deleteGuard, judgeDeletion, openEtcdStore, type EtcdConfigStore, type WatchEvent,
} from '../../src/config/index.ts';
import { etcdUnavailableReason, startEtcd, type EtcdProcess } from '../helpers/etcd.ts';
import { record, serviceEntry } from './conformance.ts';
import { startPartition } from './partition.ts';

describe('judgeDeletion', () => {
  it('holds a change deleting more than the fraction of what is served, and more than the minimum', () => {
    const g = deleteGuard(undefined);
    assert.deepEqual(g, DEFAULT_DELETE_GUARD);
    assert.deepEqual(judgeDeletion(g, 11, 20), { hold: true, deletions: 11, total: 20 });
    assert.equal(judgeDeletion(g, 10, 20).hold, false); // exactly half is not more than half
    assert.equal(judgeDeletion(g, 10, 10).hold, false); // at most the minimum: a small mesh can be emptied
    assert.equal(judgeDeletion(g, 11, 11).hold, true);
    assert.equal(judgeDeletion(g, 100, 1000).hold, false);
    assert.equal(judgeDeletion(deleteGuard({ fraction: 0.1, minDeletions: 0 }), 2, 10).hold, true);
  });

  it('is off with 0 or 1, and refuses values that cannot be a fraction or a count', () => {
    assert.equal(judgeDeletion(deleteGuard({ fraction: 0 }), 1000, 1000).hold, false);
    assert.equal(judgeDeletion(deleteGuard({ fraction: 1 }), 1000, 1000).hold, false);
    assert.equal(deleteGuard({ fraction: 1 }).fraction, 0);
    for (const fraction of [-0.1, 1.5, Number.NaN]) {
      assert.throws(() => deleteGuard({ fraction }), (e: unknown) => e instanceof InvalidArgumentError && e.message.startsWith(`invalid delete guard fraction ${String(fraction)}: expected a number from 0 to 1`));
    }
    assert.throws(() => deleteGuard({ minDeletions: -1 }), /invalid delete guard minimum -1: expected an integer >= 0/);
    assert.throws(() => deleteGuard({ minDeletions: 2.5 }), InvalidArgumentError);
  });
});

const skip = etcdUnavailableReason();
describe('etcd store: mass-deletion guard', { skip }, () => {
  const logger = pino({ level: process.env.SEXTANT_TEST_LOG_LEVEL ?? 'silent' });
  const prefix = '/guard-test/config';
  let etcd: EtcdProcess;
  let admin: Etcd3;
  const stores: EtcdConfigStore[] = [];
  before(async () => {
    etcd = await startEtcd();
    admin = new Etcd3({ hosts: [etcd.endpoint] });
  });
  after(async () => {
    for (const s of stores) await s.close();
    admin?.close();
    await etcd?.stop();
  });

  const open = async (endpoint = etcd.endpoint): Promise<EtcdConfigStore> => {
    const s = await openEtcdStore({ endpoints: [endpoint], prefix, logger, initialBackoffMs: 50, maxBackoffMs: 500 });
    stores.push(s);
    return s;
  };

  const seed = async (s: EtcdConfigStore, from: number, to: number): Promise<void> => {
    for (let i = from; i < to; i++) await s.create(serviceEntry(`svc-${String(i).padStart(2, '0')}`));
  };

  /** What a consumer holds after applying the events. */
  const view = (events: readonly WatchEvent[]): string[] => {
    const held = new Set<string>();
    for (const e of events) {
      if (e.type === 'DELETED') held.delete(e.resource.metadata.name);
      else held.add(e.resource.metadata.name);
    }
    return [...held].sort();
  };

  it('holds a wiped prefix, applies small deletions, and applies the wipe when the confirmation key is put', async () => {
    await admin.delete().prefix(`${prefix}/`);
    const s = await open();
    await seed(s, 0, 30);
    const w = record(s, undefined);
    await w.synced;
    assert.equal(w.events.length, 30);

    await s.delete('ServiceEntry', 'default', 'svc-00'); // one deletion: applies at once
    await w.waitFor(31);
    assert.equal(w.events[30]!.type, 'DELETED');

    await admin.delete().prefix(`${prefix}/`); // 29 keys in one revision
    await sleep(300);
    assert.equal(w.events.length, 31);
    const status = s.status();
    assert.equal(status.healthy, false);
    assert.equal(status.heldChange?.deletions, 29);
    assert.equal(status.heldChange?.total, 29);
    assert.deepEqual(status.heldChange?.sample.slice(0, 2), ['ServiceEntry/default/svc-01', 'ServiceEntry/default/svc-02']);
    assert.equal(status.heldChange?.confirm, `to apply it, put the key ${prefix}/${CONFIRM_DELETE_MARKER} (etcdctl put ${prefix}/${CONFIRM_DELETE_MARKER} yes); to withdraw it, restore the keys`);
    assert.deepEqual(s.errors(), []);

    await admin.put(`${prefix}/${CONFIRM_DELETE_MARKER}`).value('yes');
    await w.waitFor(60);
    assert.deepEqual(view(w.events), []);
    for (const e of w.events) assert.equal(e.resource.metadata.resourceVersion, String(e.revision));
    for (let i = 1; i < w.events.length; i++) assert.ok(w.events[i]!.revision >= w.events[i - 1]!.revision);
    const deadline = Date.now() + 5000;
    while ((await admin.get(`${prefix}/${CONFIRM_DELETE_MARKER}`).string()) !== null) {
      assert.ok(Date.now() < deadline, 'the confirmation key is removed');
      await sleep(20);
    }
    assert.equal(s.status().healthy, true);
    assert.deepEqual(s.errors(), []); // the marker key is never reported as invalid config
    w.cancel();
  });

  it('withdraws a held wipe when the keys come back, delivering only what stayed deleted', async () => {
    await admin.delete().prefix(`${prefix}/`);
    const s = await open();
    await seed(s, 0, 30);
    const w = record(s, undefined);
    await w.synced;
    await admin.delete().prefix(`${prefix}/`);
    const deadline = Date.now() + 5000;
    while (s.status().heldChange === null) {
      assert.ok(Date.now() < deadline, 'the wipe is held');
      await sleep(20);
    }
    await seed(s, 0, 16); // each put of a held key is a MODIFIED; at 15 held of 30 the rest applies
    await sleep(300);
    w.cancel();
    assert.deepEqual(view(w.events), (await s.list('ServiceEntry')).map((r) => r.metadata.name));
    assert.equal(w.events.filter((e) => e.type === 'DELETED').length, 15);
    assert.equal(s.status().healthy, true);
  });

  const markerKey = `${prefix}/${CONFIRM_DELETE_MARKER}`;
  const names = (from: number, to: number): string[] => Array.from({ length: to - from }, (_, i) => `svc-${String(from + i).padStart(2, '0')}`);
  const seKey = (name: string): Buffer => Buffer.from(`${prefix}/ServiceEntry/default/${name}`);

  /** Waits until a watch has seen the confirmation key and removed it. */
  const markerRemoved = async (): Promise<void> => {
    const deadline = Date.now() + 5000;
    while ((await admin.get(markerKey).string()) !== null) {
      assert.ok(Date.now() < deadline, 'the confirmation key is removed');
      await sleep(20);
    }
  };

  const waitHeld = async (s: EtcdConfigStore, deletions: number): Promise<void> => {
    const deadline = Date.now() + 5000;
    while (s.status().heldChange?.deletions !== deletions) {
      assert.ok(Date.now() < deadline, `a deletion of ${deletions} is held (status: ${JSON.stringify(s.status().heldChange)})`);
      await sleep(20);
    }
  };

  it('confirms nothing with a confirmation key put in the same transaction as the mass deletion', async () => {
    await admin.delete().prefix(`${prefix}/`);
    const s = await open();
    await seed(s, 0, 30);
    const w = record(s, undefined);
    await w.synced;
    // The marker first, then 20 of the 30 keys: one revision, one watch response.
    const res = await admin.kv.txn({
      compare: [],
      success: [
        { request_put: { key: Buffer.from(markerKey), value: Buffer.from('yes') } },
        ...names(0, 20).map((n) => ({ request_delete_range: { key: seKey(n) } })),
      ],
    });
    assert.equal(res.succeeded, true);
    await markerRemoved();
    await waitHeld(s, 20);
    await sleep(200);
    assert.equal(w.events.length, 30);
    assert.deepEqual(view(w.events), names(0, 30));
    assert.equal(s.status().healthy, false);
    assert.equal(s.status().heldChange?.total, 30);

    // A put once the hold is reported confirms it.
    await admin.put(markerKey).value('yes');
    await w.waitFor(50);
    await markerRemoved();
    assert.deepEqual(view(w.events), names(20, 30));
    assert.deepEqual((await s.list('ServiceEntry')).map((r) => r.metadata.name), names(20, 30));
    assert.equal(s.status().healthy, true);
    w.cancel();
  });

  it('confirms nothing with a confirmation key put before the mass deletion (a forgotten or pre-placed key)', async () => {
    await admin.delete().prefix(`${prefix}/`);
    const partition = await startPartition(etcd.endpoint);
    try {
      const writer = await open();
      await seed(writer, 0, 30);
      const s = await open(partition.endpoint);
      const w = record(s, undefined);
      await w.synced;
      // Put while nothing is held, in a response of its own: removed, nothing changes.
      await admin.put(markerKey).value('yes');
      await markerRemoved();
      // While the watch is cut off, the marker is put and then the keys are deleted: the watch
      // resumes and gets both, the marker at the lower revision, in one response.
      partition.cut();
      const put = await admin.put(markerKey).value('yes').exec();
      await admin.delete().prefix(`${prefix}/ServiceEntry/`);
      partition.heal();
      await markerRemoved();
      await waitHeld(s, 30);
      await sleep(200);
      assert.ok(Number(put.header.revision) > 0);
      assert.equal(w.events.length, 30);
      assert.deepEqual(view(w.events), names(0, 30));
      assert.equal(s.status().healthy, false);

      // Put again now that the hold is reported: it confirms.
      await admin.put(markerKey).value('yes');
      await w.waitFor(60);
      await markerRemoved();
      assert.deepEqual(view(w.events), []);
      assert.equal(s.status().healthy, true);
      w.cancel();
    } finally {
      await partition.close();
    }
  });

  it('confirms a held deletion with a key put after the hold was reported, unless it deletes more than was reported', async () => {
    await admin.delete().prefix(`${prefix}/`);
    const s = await open();
    await seed(s, 0, 30);
    const w = record(s, undefined);
    await w.synced;
    await admin.kv.txn({ compare: [], success: names(0, 16).map((n) => ({ request_delete_range: { key: seKey(n) } })) });
    await waitHeld(s, 16);
    assert.equal(w.events.length, 30);

    // The marker with more deletions in the same response: held, now with 18 deletions.
    await admin.kv.txn({
      compare: [],
      success: [
        ...names(16, 18).map((n) => ({ request_delete_range: { key: seKey(n) } })),
        { request_put: { key: Buffer.from(markerKey), value: Buffer.from('yes') } },
      ],
    });
    await markerRemoved();
    await waitHeld(s, 18);
    await sleep(200);
    assert.equal(w.events.length, 30);
    assert.deepEqual(view(w.events), names(0, 30));

    // Put after the hold as reported: the 18 deletions apply, and nothing else.
    await admin.put(markerKey).value('yes');
    await w.waitFor(48);
    await markerRemoved();
    await sleep(200);
    assert.equal(w.events.length, 48);
    assert.deepEqual(view(w.events), names(18, 30));
    assert.deepEqual((await s.list('ServiceEntry')).map((r) => r.metadata.name), names(18, 30));
    assert.equal(s.status().healthy, true);
    assert.equal(s.status().heldChange, null);
    w.cancel();
  });

  it('holds a wipe found by a relist after the watch lost its connection and its revision was compacted', async () => {
    await admin.delete().prefix(`${prefix}/`);
    const writer = await open();
    await seed(writer, 0, 30);
    const partition = await startPartition(etcd.endpoint);
    try {
      const s = await open(partition.endpoint);
      const w = record(s, undefined);
      await w.synced;
      partition.cut();
      await admin.delete().prefix(`${prefix}/`);
      await writer.create(serviceEntry('new'));
      const res = await admin.kv.range({ key: Buffer.from('/'), count_only: true });
      await admin.kv.compact({ revision: res.header.revision, physical: true });
      partition.heal();
      await w.waitFor(31); // the addition arrives, the 30 deletions are held
      await sleep(300);
      assert.equal(w.events.length, 31);
      assert.equal(s.status().heldChange?.deletions, 30);
      await admin.put(`${prefix}/${CONFIRM_DELETE_MARKER}`).value('yes');
      await w.waitFor(61);
      w.cancel();
      assert.deepEqual(view(w.events), ['new']);
    } finally {
      await partition.close();
    }
  });
});
