// The LogStore conformance suite: the same cases against node:sqlite and a real PostgreSQL
// (started here on a free loopback port in a temp directory, always stopped after), so the
// sink, the API and the CLI see the same answers whichever store a pilot runs with.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import path from 'node:path';
import { LogQueryError, LogStoreSpecError, openLogStore, originOf, SqliteThreadLogStore } from '../../src/telemetry/index.ts';
import type { AccessLogEntry, CodeCounts, LogStore, RetentionPolicy } from '../../src/telemetry/index.ts';
import { backend, backends, closeBackends, tempDir } from './backends.ts';
import { entry, trafficBatch, DEFAULT_SHAPE } from './traffic.ts';

after(closeBackends);

const T0 = Date.UTC(2025, 0, 6, 12, 0, 0); // on a minute boundary
const MIN = 60_000;
const ORDERS = 'orders.default.svc.cluster.local';

function counts(c: Partial<Omit<CodeCounts, 'byOrigin'>> & { byOrigin?: Partial<CodeCounts['byOrigin']> }): CodeCounts {
  const zero = { '4xx': 0, '5xx': 0 };
  return {
    total: c.total ?? 0,
    '2xx': c['2xx'] ?? 0,
    '3xx': c['3xx'] ?? 0,
    '4xx': c['4xx'] ?? 0,
    '5xx': c['5xx'] ?? 0,
    byOrigin: { app: { ...zero, ...c.byOrigin?.app }, proxy: { ...zero, ...c.byOrigin?.proxy }, client: { ...zero, ...c.byOrigin?.client } },
  };
}

/** w1..w3 on 127.0.1.2–.4 each call /orders/1 twice and /orders/2 once, reported by orders' sidecar. */
function threeCallers(): AccessLogEntry[] {
  const out: AccessLogEntry[] = [];
  ['w1', 'w2', 'w3'].forEach((w, k) => {
    const ip = `127.0.1.${k + 2}`;
    for (const [j, p] of ['/orders/1', '/orders/1', '/orders/2'].entries()) {
      out.push(entry({ time: T0 + 10_000 + k * 1000 + j * 100, sourceWorkload: w, sourceIp: ip, sourcePrincipal: `spiffe://cluster.local/ns/default/sa/${w}`, path: p, requestId: `${w}-${j}` }));
    }
  });
  return out;
}

/** One response of each origin, as the sink records them. */
function originCases(): AccessLogEntry[] {
  const mk = (i: number, code: number, flags: string, over: Partial<AccessLogEntry> = {}): AccessLogEntry =>
    entry({ time: T0 + 20_000 + i, responseCode: code, responseFlags: flags, origin: originOf(code, flags), durationMs: 2, requestId: `o-${i}`, ...over });
  return [
    mk(0, 200, ''),
    mk(1, 404, ''),
    mk(2, 404, 'NR', { destinationService: '', destinationWorkload: '', destinationIp: '', operation: '/orders/{id}' }),
    mk(3, 503, 'UF'),
    mk(4, 503, 'UO'),
    mk(5, 503, 'UH', { destinationWorkload: '', destinationIp: '' }),
    mk(6, 500, ''),
    mk(7, 0, 'DC'),
  ];
}

for (const b of backends) {
  describe(`LogStore conformance: ${b.name}`, { skip: b.skip }, () => {
    const open: LogStore[] = [];
    const store = async (retention?: Partial<RetentionPolicy>): Promise<LogStore> => {
      const s = await b.open(retention);
      open.push(s);
      return s;
    };
    after(async () => {
      for (const s of open) await s.close();
    });
    before(async () => {
      // Start the backend once (the PostgreSQL server) before the cases time themselves.
      await store();
    });

    test('entries come back exactly as inserted, newest first', async () => {
      const s = await store();
      const es = threeCallers();
      await s.insert(es);
      const page = await s.logs({ from: T0, to: T0 + MIN });
      assert.equal(page.next, undefined);
      assert.deepEqual(page.entries, [...es].sort((x, y) => y.time - x.time));
      assert.deepEqual((await s.stats()).rows, 9);
    });

    test('peers by path: three callers of /orders/1 are exactly three rows with their IPs and counts; a window before the calls has none', async () => {
      const s = await store();
      await s.insert(threeCallers());
      const rows = await s.peers({ path: '/orders/1', from: T0, to: T0 + MIN });
      assert.deepEqual(rows.map((r) => [r.sourceIp, r.sourceWorkload, r.sourceNamespace, r.destinationIp, r.destinationWorkload, r.destinationService, r.count]).sort(), [
        ['127.0.1.2', 'w1', 'default', '127.0.1.9', 'orders', ORDERS, 2],
        ['127.0.1.3', 'w2', 'default', '127.0.1.9', 'orders', ORDERS, 2],
        ['127.0.1.4', 'w3', 'default', '127.0.1.9', 'orders', ORDERS, 2],
      ]);
      const w1 = rows.find((r) => r.sourceWorkload === 'w1')!;
      assert.equal(w1.firstSeen, T0 + 10_000);
      assert.equal(w1.lastSeen, T0 + 10_100);
      assert.deepEqual(await s.peers({ path: '/orders/1', from: T0 - MIN, to: T0 + 10_000 }), []);
      const byOp = await s.peers({ operation: '/orders/{id}', from: T0, to: T0 + MIN, service: ORDERS });
      assert.deepEqual(byOp.map((r) => [r.sourceIp, r.count]).sort(), [['127.0.1.2', 3], ['127.0.1.3', 3], ['127.0.1.4', 3]]);
      assert.deepEqual(await s.peers({ operation: '/orders/{id}', from: T0, to: T0 + MIN, service: 'other.default.svc.cluster.local' }), []);
    });

    test('a call reported by both sidecars counts once in peers, operations and the graph', async () => {
      const s = await store();
      const dest = threeCallers();
      const src = dest.map((e) => ({ ...e, reporter: 'source' as const, node: `sidecar~${e.sourceIp}~${e.sourceWorkload}-1.default~default.svc.cluster.local` }));
      await s.insert([...dest, ...src]);
      const rows = await s.peers({ path: '/orders/1', from: T0, to: T0 + MIN });
      assert.deepEqual(rows.map((r) => r.count), [2, 2, 2]);
      const [op] = await s.operations({ from: T0, to: T0 + MIN });
      assert.equal(op!.counts.total, 9);
      const g = await s.graph({ from: T0, to: T0 + MIN });
      assert.deepEqual(g.edges.map((e) => [e.source, e.target, e.counts.total]), [
        [`service:${ORDERS}`, 'workload:default/orders', 9],
        ['workload:default/w1', `service:${ORDERS}`, 3],
        ['workload:default/w2', `service:${ORDERS}`, 3],
        ['workload:default/w3', `service:${ORDERS}`, 3],
      ]);
      assert.equal((await s.logs({ from: T0, to: T0 + MIN, reporter: 'source' })).entries.length, 9);
    });

    test('exact counts by class and origin in operations and the graph', async () => {
      const s = await store();
      await s.insert(originCases());
      const ops = await s.operations({ from: T0, to: T0 + MIN, sort: 'name' });
      assert.deepEqual(ops.map((o) => [o.service, o.operation]), [['', '/orders/{id}'], [ORDERS, '/orders/{id}']]);
      assert.deepEqual(ops[0]!.counts, counts({ total: 1, '4xx': 1, byOrigin: { proxy: { '4xx': 1, '5xx': 0 } } }));
      assert.deepEqual(ops[1]!.counts, counts({ total: 7, '2xx': 1, '4xx': 1, '5xx': 4, byOrigin: { app: { '4xx': 1, '5xx': 1 }, proxy: { '4xx': 0, '5xx': 3 } } }));
      assert.equal(ops[1]!.rps, Number((7 / 60).toFixed(3)));
      assert.equal(ops[1]!.p50Ms, 1.5);
      assert.equal(ops[1]!.p99Ms, 1.99);
      const g = await s.graph({ from: T0, to: T0 + MIN });
      assert.deepEqual(g.nodes.map((n) => [n.id, n.kind, n.name, n.namespace]), [
        [`service:${ORDERS}`, 'service', ORDERS, 'default'],
        ['service:unknown', 'service', 'unknown', ''],
        ['workload:default/orders', 'workload', 'orders', 'default'],
        ['workload:default/w1', 'workload', 'w1', 'default'],
      ]);
      const edge = (src: string, dst: string): CodeCounts => g.edges.find((e) => e.source === src && e.target === dst)!.counts;
      assert.deepEqual(edge('workload:default/w1', `service:${ORDERS}`), ops[1]!.counts);
      assert.deepEqual(edge('workload:default/w1', 'service:unknown'), ops[0]!.counts);
      // The UH request reached no workload: the service→workload edge has the other six.
      assert.deepEqual(edge(`service:${ORDERS}`, 'workload:default/orders'), counts({ total: 6, '2xx': 1, '4xx': 1, '5xx': 3, byOrigin: { app: { '4xx': 1, '5xx': 1 }, proxy: { '4xx': 0, '5xx': 2 } } }));
      assert.equal(g.edges.length, 3);
      const proxy5xx = await s.logs({ from: T0, to: T0 + MIN, origin: 'proxy', codeClass: '5xx' });
      assert.deepEqual(proxy5xx.entries.map((e) => e.responseFlags), ['UH', 'UO', 'UF']);
      const client = await s.logs({ from: T0, to: T0 + MIN, origin: 'client' });
      assert.deepEqual(client.entries.map((e) => [e.responseCode, e.responseFlags]), [[0, 'DC']]);
    });

    test('callers outside the mesh are unknown:IP nodes', async () => {
      const s = await store();
      await s.insert([entry({ time: T0, sourceWorkload: '', sourceNamespace: '', sourcePrincipal: '', sourceIp: '192.0.2.7' }), entry({ time: T0 + 1, sourceWorkload: '', sourceNamespace: '', sourceIp: '192.0.2.8' })]);
      const g = await s.graph({ from: T0, to: T0 + MIN });
      assert.deepEqual(g.edges.filter((e) => e.target === `service:${ORDERS}`).map((e) => [e.source, e.counts.total]), [['unknown:192.0.2.7', 1], ['unknown:192.0.2.8', 1]]);
      assert.deepEqual(g.nodes.filter((n) => n.kind === 'unknown').map((n) => n.name), ['192.0.2.7', '192.0.2.8']);
    });

    test('filtered logs are paged with an opaque cursor: every entry once, newest first', async () => {
      const s = await store();
      // 250 entries for orders (three in the same millisecond per step), 50 for another service.
      const es: AccessLogEntry[] = [];
      for (let i = 0; i < 300; i++) {
        es.push(entry({ time: T0 + Math.floor(i / 3) * 10, requestId: `r${i}`, destinationService: i < 250 ? ORDERS : 'other.default.svc.cluster.local', responseCode: i % 10 === 0 ? 503 : 200 }));
      }
      await s.insert(es);
      const seen: string[] = [];
      let cursor: string | undefined;
      const sizes: number[] = [];
      do {
        const page = await s.logs({ from: T0, to: T0 + MIN, service: ORDERS, limit: 100, ...(cursor !== undefined ? { cursor } : {}) });
        sizes.push(page.entries.length);
        seen.push(...page.entries.map((e) => e.requestId));
        for (let k = 1; k < page.entries.length; k++) assert.ok(page.entries[k - 1]!.time >= page.entries[k]!.time);
        cursor = page.next;
      } while (cursor !== undefined);
      assert.deepEqual(sizes, [100, 100, 50]);
      assert.deepEqual(new Set(seen).size, 250);
      assert.deepEqual([...seen].sort(), es.slice(0, 250).map((e) => e.requestId).sort());
      const errors = await s.logs({ from: T0, to: T0 + MIN, service: ORDERS, codeClass: '5xx', limit: 1000 });
      assert.equal(errors.entries.length, 25);
      assert.equal((await s.logs({ from: T0, to: T0 + MIN, limit: 5000 })).entries.length, 300);
      assert.equal((await s.logs({ from: T0, to: T0 + MIN, sourceIp: '127.0.1.2', path: '/orders/1', operation: '/orders/{id}' })).entries.length, 100);
    });

    test('bad queries are refused naming the field', async () => {
      const s = await store();
      await assert.rejects(s.logs({ from: T0, to: T0 }), (e: unknown) => e instanceof LogQueryError && /from .* must be before to/.test(e.message));
      await assert.rejects(s.logs({ from: T0, to: T0 + 1, cursor: 'bm9wZQ' }), /cursor: not a cursor this store returned/);
      await assert.rejects(s.logs({ from: T0, to: T0 + 1, limit: 0 }), /limit: must be a positive integer/);
      await assert.rejects(s.logs({ from: T0, to: T0 + 1, codeClass: '6xx' as '5xx' }), /codeClass: must be one of/);
      await assert.rejects(s.peers({ from: T0, to: T0 + 1 }), /exactly one of path or operation/);
      await assert.rejects(s.peers({ from: T0, to: T0 + 1, path: '/a', operation: 'b' }), /exactly one of path or operation/);
      await assert.rejects(s.operations({ from: T0, to: T0 + 1, sort: 'size' as 'name' }), /sort: must be one of/);
      await assert.rejects(s.graph({ from: Number.NaN, to: T0 }), /graph: from and to must be times/);
    });

    test('long strings are cut to the store\'s bounds', async () => {
      const s = await store();
      await s.insert([entry({ time: T0, path: '/' + 'p'.repeat(5000), authority: 'a'.repeat(1000) })]);
      const [e] = (await s.logs({ from: T0, to: T0 + 1 })).entries;
      assert.equal(e!.path.length, 2048);
      assert.equal(e!.authority.length, 256);
    });

    test('a window over several hours reads whole hours from hour rollups and its ends from minute rollups, exactly', async () => {
      const s = await store();
      const H = 60 * MIN;
      const at = [-(2 * H + 50 * MIN), -(2 * H + 10 * MIN), -(H + 30 * MIN), -55 * MIN, -5 * MIN].map((d) => T0 + d); // 09:10 09:50 10:30 11:05 11:55
      await s.insert(at.map((time, i) => entry({ time, requestId: `h${i}`, responseCode: i === 2 ? 503 : 200 })));
      const w = { from: T0 - 2 * H - 30 * MIN, to: T0 - 30 * MIN }; // 09:30 – 11:30
      const [op] = await s.operations(w);
      assert.deepEqual(op!.counts, counts({ total: 3, '2xx': 2, '5xx': 1, byOrigin: { app: { '4xx': 0, '5xx': 1 } } }));
      assert.equal(op!.rps, Number((3 / 7200).toFixed(3)));
      const g = await s.graph(w);
      assert.equal(g.edges.find((e) => e.source === 'workload:default/w1')!.counts.total, 3);
      assert.equal((await s.operations({ from: T0 - 3 * H, to: T0 }))[0]!.counts.total, 5);
      assert.deepEqual(await s.operations({ from: T0 - 2 * H, to: T0 - 2 * H + 5 * MIN }), []);
    });

    test('retention by age removes old entries; rollups keep their own ages, old windows answered to the hour', async () => {
      const H = 60 * MIN;
      const s = await store({ maxAgeMs: 10 * MIN, minuteRollupMaxAgeMs: H, rollupMaxAgeMs: 3 * H });
      // 08:00, 10:30, 11:30, 11:59 with the clock at 12:00.
      await s.insert([entry({ time: T0 - 4 * H, requestId: 'ancient' }), entry({ time: T0 - 90 * MIN, requestId: 'old' }), entry({ time: T0 - 30 * MIN, requestId: 'older' }), entry({ time: T0 - MIN, requestId: 'recent' })]);
      assert.equal(await s.enforceRetention(T0), 3);
      assert.deepEqual((await s.logs({ from: T0 - 5 * H, to: T0 })).entries.map((e) => e.requestId), ['recent']);
      const total = async (from: number, to: number): Promise<number> => (await s.operations({ from, to }))[0]?.counts.total ?? 0;
      assert.equal(await total(T0 - 5 * H, T0), 3, 'the 08:00 hour is gone, 10:00 and 11:00 stay');
      assert.equal(await total(T0 - 45 * MIN, T0), 2, 'minute rollups of the last hour: exact to the minute');
      assert.equal(await total(T0 - 100 * MIN, T0 - 20 * MIN), 2, 'before 11:00 the minutes are gone: the 10:00 hour, then minutes');
      const st = await s.stats();
      assert.equal(st.rows, 1);
      assert.equal(st.rollupRows, 8, 'per family (operations, edges): minute rows 11:30 and 11:59, hour rows 10:00 and 11:00');
      assert.equal(st.oldest, T0 - MIN);
      await assert.rejects(b.open({ minuteRollupMaxAgeMs: 10 * MIN }), /minuteRollupMaxAgeMs must be at least an hour/);
    });

    test('entries and rollups survive a reopen; the schema is created once', async () => {
      const s = await store();
      await s.insert(threeCallers());
      const again = await b.reopen(s);
      open.push(again);
      assert.equal((await again.stats()).rows, 9);
      assert.equal((await again.peers({ path: '/orders/2', from: T0, to: T0 + MIN })).length, 3);
      await again.insert(threeCallers());
      assert.equal((await s.operations({ from: T0, to: T0 + MIN }))[0]!.counts.total, 18);
    });
  });
}

test('two pilots write to one PostgreSQL database at once: every entry and every rollup count exact', { skip: backend('postgres').skip }, async () => {
  const a = await backend('postgres').open();
  const b = await backend('postgres').reopen(a);
  try {
    const shape = { ...DEFAULT_SHAPE, start: T0 };
    // Both write the same minutes and keys, interleaved, 20 batches each.
    await Promise.all([a, b].map(async (s, k) => {
      for (let i = 0; i < 20; i++) await s.insert(trafficBatch((i * 2 + k) * 500, 500, shape));
    }));
    for (const s of [a, b]) {
      assert.equal((await s.stats()).rows, 20_000);
      const ops = await s.operations({ from: T0, to: T0 + 20_000, limit: 1000 });
      assert.equal(ops.reduce((n, o) => n + o.counts.total, 0), 20_000);
    }
    const expected = trafficBatch(0, 20_000, shape).filter((e) => e.path === '/api/op3/7');
    const peers = await a.peers({ path: '/api/op3/7', from: T0, to: T0 + 20_000 });
    assert.equal(peers.reduce((n, p) => n + p.count, 0), expected.length);
  } finally {
    await a.close();
    await b.close();
  }
});

test('openLogStore: sqlite:PATH, postgres:// URLs, and a clear error for anything else', async () => {
  const file = path.join(tempDir(), 'nested', 'dir', 'log.db');
  const s = await openLogStore(`sqlite:${file}`, { retentionIntervalMs: 0 });
  assert.equal(s.kind, 'sqlite');
  assert.ok(s instanceof SqliteThreadLogStore, 'the pilot\'s embedded store runs in a worker thread');
  assert.ok(statSync(file).isFile());
  await s.close();
  await assert.rejects(openLogStore('mysql://u:secret@h/db'), (e: unknown) => e instanceof LogStoreSpecError && /neither sqlite:PATH nor a postgres:\/\/ URL/.test(e.message) && !e.message.includes('secret'));
  await assert.rejects(openLogStore('sqlite:'), /sqlite: needs a file path/);
  const notAFile = tempDir();
  await assert.rejects(openLogStore(`sqlite:${notAFile}`), (e: unknown) => e instanceof Error && e.message.startsWith(`access-log store ${notAFile}: `));
  await assert.rejects(openLogStore('postgres://u:secret@127.0.0.1:1/db'), (e: unknown) => e instanceof Error && /access-log store postgres:\/\/u:\*\*\*@127\.0\.0\.1:1\/db/.test(e.message) && !e.message.includes('secret'));
});
