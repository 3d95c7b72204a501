// Leadership among pilots, against a real etcd: one of several candidates leads and the others
// know who; tasks registered with runOnLeader run only on the leader; a leader that stops
// hands over at once and one whose lease can no longer be renewed steps down before etcd
// could expire it. A pilot on a directory store leads alone.
import { test, after, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { Etcd3 } from 'etcd3';
import { pino } from 'pino';
import { electionKeyPrefix, startLeadership, type Leadership } from '../../src/pilot/leader/index.ts';
import { etcdUnavailableReason, startEtcd, type EtcdProcess } from '../helpers/etcd.ts';

const logger = pino({ level: process.env['LEADER_TEST_LOG'] ?? 'silent' });

async function until(what: string, check: () => boolean, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
    await sleep(20);
  }
  return Date.now() - started;
}

/** A task that records its steps, to check they alternate and run only where expected. */
function recorder(): { steps: string[]; start: () => Promise<void>; stop: () => void } {
  const steps: string[] = [];
  return {
    steps,
    start: async () => {
      steps.push('start');
      await sleep(10);
    },
    stop: () => void steps.push('stop'),
  };
}

test('a pilot on a directory store leads alone, and its tasks run until it closes', async () => {
  const sole = startLeadership({ identity: 'pilot-0', logger });
  const task = recorder();
  sole.runOnLeader('lazy-scope', task.start, task.stop);
  await until('the task started', () => task.steps.length === 1, 2000);
  const s = sole.status();
  assert.deepEqual({ ...s, since: typeof s.since }, {
    leader: true, identity: 'pilot-0', leaderIdentity: 'pilot-0', term: null, since: 'string', election: 'sole', lease: null,
    tasks: [{ name: 'lazy-scope', running: true }],
  });
  const changes: boolean[] = [];
  sole.onChange((l) => changes.push(l));
  await sole.close();
  assert.deepEqual(task.steps, ['start', 'stop']);
  assert.deepEqual(changes, [false]);
  assert.equal(sole.isLeader(), false);
});

test('a task whose start fails is logged, counts as not running and gets no stop', async () => {
  const sole = startLeadership({ identity: 'pilot-0', logger });
  let attempts = 0;
  const stops: number[] = [];
  const cancel = sole.runOnLeader('alerts', () => {
    attempts++;
    throw new Error('prometheus unreachable');
  }, () => void stops.push(attempts));
  await until('the start was tried', () => attempts === 1, 2000);
  await sleep(20);
  assert.deepEqual(sole.status().tasks, [{ name: 'alerts', running: false }]);
  await cancel();
  assert.deepEqual(stops, []);
  assert.deepEqual(sole.status().tasks, []);
  await sole.close();
});

const skip = etcdUnavailableReason();
describe('an election on etcd', { skip }, () => {
  let etcd: EtcdProcess;
  const clients: Etcd3[] = [];
  const elections: Leadership[] = [];
  const PREFIX = '/sextant-test/config';
  const TTL = 3;

  before(async () => {
    etcd = await startEtcd();
    clients.push(new Etcd3({ hosts: [etcd.endpoint] }));
  });
  after(async () => {
    for (const e of elections) await e.close().catch(() => undefined);
    for (const c of clients) c.close();
    await etcd.stop();
  });

  function candidate(identity: string, configPrefix = PREFIX): Leadership {
    const e = startLeadership({ identity, logger, etcd: { endpoints: [etcd.endpoint], configPrefix, leaseTtlSeconds: TTL, retryMs: 200 } });
    elections.push(e);
    return e;
  }

  test('one candidate leads, the others know who and since which term, and tasks run only on the leader', async () => {
    const a = candidate('pilot-a');
    const ta = recorder();
    a.runOnLeader('adaptive-limits', ta.start, ta.stop);
    await until('pilot-a leads', () => a.isLeader(), 10_000);
    const b = candidate('pilot-b');
    const tb = recorder();
    b.runOnLeader('adaptive-limits', tb.start, tb.stop);
    await until('both know the leader', () => a.status().term !== null && b.status().leaderIdentity === 'pilot-a', 10_000);
    assert.equal(b.isLeader(), false);
    const sa = a.status();
    const sb = b.status();
    assert.equal(sa.leader, true);
    assert.equal(sa.leaderIdentity, 'pilot-a');
    assert.equal(sb.leader, false);
    assert.equal(sb.term, sa.term);
    assert.equal(sa.election, 'etcd');
    assert.equal(sa.lease?.ttlSeconds, TTL);
    assert.match(sa.lease?.key ?? '', /^\/sextant-test\/config\.election\/pilot\/\d+$/);
    assert.notEqual(sa.lease?.validUntil, null);
    assert.equal(sb.lease?.validUntil, null);
    await until('the leader task started', () => ta.steps.length === 1, 2000);
    assert.deepEqual(tb.steps, []);

    // The election's keys sit beside the config prefix, not under it.
    let keys: string[] = [];
    for (let i = 0; i < 100 && keys.length < 2; i++, await sleep(20)) keys = await clients[0]!.getAll().prefix(electionKeyPrefix(PREFIX)).keys();
    assert.deepEqual(keys.map((k) => k.replace(/\d+$/, 'LEASE')), ['/sextant-test/config.election/pilot/LEASE', '/sextant-test/config.election/pilot/LEASE']);
    assert.equal((await clients[0]!.getAll().prefix(`${PREFIX}/`).keys()).length, 0);

    // A leader that stops revokes its lease: the next one leads at once, in a later term.
    const changes: boolean[] = [];
    b.onChange((l) => changes.push(l));
    await a.close();
    assert.deepEqual(ta.steps, ['start', 'stop']);
    const took = await until('pilot-b leads', () => b.isLeader(), 10_000);
    assert.ok(took < TTL * 1000, `handover after a clean stop took ${took} ms, less than the lease TTL`);
    await until('pilot-b knows it leads', () => b.status().leaderIdentity === 'pilot-b', 5000);
    assert.ok(BigInt(b.status().term!) > BigInt(sa.term!));
    await until('the task started on pilot-b', () => tb.steps.length === 1, 2000);
    assert.deepEqual(changes, [true]);
    await b.close();
    assert.deepEqual(tb.steps, ['start', 'stop']);
  });

  test('a leader that cannot renew its lease steps down within the TTL, and a leader is elected when etcd returns', async () => {
    const c = candidate('pilot-c', '/sextant-test/other');
    const tc = recorder();
    c.runOnLeader('lazy-scope', tc.start, tc.stop);
    await until('pilot-c leads', () => c.isLeader(), 10_000);
    await until('the task started', () => tc.steps.length === 1, 2000);
    const killedAt = Date.now();
    await etcd.kill();
    await until('pilot-c steps down', () => !c.isLeader(), TTL * 1000 + 2000);
    // etcd counts the TTL from the last renewal, which was before the kill: stepping down
    // before the TTL has passed since the kill means it never outlived its lease.
    assert.ok(Date.now() - killedAt <= TTL * 1000, `stepped down ${Date.now() - killedAt} ms after etcd went away`);
    await until('the task stopped', () => tc.steps.length === 2, 2000);
    await etcd.start();
    await until('pilot-c leads again', () => c.isLeader(), 30_000);
    await until('the task started again', () => tc.steps.length === 3, 2000);
    assert.deepEqual(tc.steps, ['start', 'stop', 'start']);
  });
});
