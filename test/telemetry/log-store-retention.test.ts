// Retention at scale: the row bound holds with every rollup intact, and the embedded store's
// file stops growing (incremental auto-vacuum). 1.2 M rows on node:sqlite, a tenth on PostgreSQL.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import path from 'node:path';
import { SqliteLogStore } from '../../src/telemetry/index.ts';
import { backend, closeBackends, tempDir } from './backends.ts';
import { trafficBatch, DEFAULT_SHAPE } from './traffic.ts';

after(closeBackends);

const T0 = Date.UTC(2025, 0, 6, 12, 0, 0);

// The retention bound at full scale on the embedded store (1.2 M rows, max 1 M) and at a tenth
// of it on PostgreSQL (its batches go through a server; the rule is the same code path).
for (const [b, inserted, maxRows] of [[backend('sqlite'), 1_200_000, 1_000_000], [backend('postgres'), 120_000, 100_000]] as const) {
  test(`retention (${b.name}): ${inserted.toLocaleString('en')} rows inserted leave at most ${maxRows.toLocaleString('en')}, the newest, with every rollup intact`, { skip: b.skip }, async () => {
    const s = await b.open({ maxRows, maxAgeMs: 365 * 24 * 3600_000, rollupMaxAgeMs: 365 * 24 * 3600_000 });
    try {
      // Lean rows (no node, principal, request id): the bound is about rows, and the file stays quick to fill.
      const shape = { ...DEFAULT_SHAPE, start: T0, lean: true };
      const batch = 10_000;
      for (let i = 0; i < inserted; i += batch) await s.insert(trafficBatch(i, batch, shape));
      await s.enforceRetention(T0 + inserted);
      const st = await s.stats();
      assert.ok(st.rows <= maxRows, `${st.rows} rows kept`);
      assert.ok(st.rows >= maxRows * 0.9, `${st.rows} rows kept: retention took far more than it needed`);
      assert.equal(st.newest, T0 + inserted - 1);
      assert.equal(st.oldest, T0 + inserted - st.rows, 'the oldest went first, the rest is contiguous');
      const ops = await s.operations({ from: T0, to: T0 + inserted, limit: 1000 });
      assert.equal(ops.reduce((n, o) => n + o.counts.total, 0), inserted);
      assert.equal(ops.length, shape.services * shape.operations);
    } finally {
      await s.close();
    }
  });
}

test('the sqlite file does not grow past its steady size while retention removes rows (incremental auto-vacuum)', async () => {
  const file = path.join(tempDir(), 'access-log.db');
  const s = new SqliteLogStore({ path: file, retentionIntervalMs: 0, retention: { maxRows: 20_000 } });
  try {
    const shape = { ...DEFAULT_SHAPE, start: T0 };
    const pages: number[] = [];
    for (let round = 0; round < 8; round++) {
      for (let i = 0; i < 20_000; i += 2000) await s.insert(trafficBatch(round * 20_000 + i, 2000, shape));
      pages.push(s.pages().pageCount);
      assert.ok((await s.stats()).rows <= 20_000);
    }
    // Past the first fill, rows removed by the bound leave pages the next inserts reuse: the file stays within 5 %.
    for (const n of pages.slice(2)) assert.ok(n <= pages[1]! * 1.05, `page counts by round: ${pages.join(', ')}`);
    // Removing by age gives the pages back to the file system, and the WAL is cut back to nothing.
    await s.enforceRetention(T0 + 10 * 365 * 24 * 3600_000);
    const p = s.pages();
    assert.equal(p.freelistCount, 0);
    assert.ok(p.pageCount < pages[1]! / 4, `page counts by round: ${pages.join(', ')}, after removing everything: ${p.pageCount}`);
    assert.equal(statSync(file).size, p.pageCount * p.pageSize);
    assert.equal(statSync(`${file}-wal`).size, 0);
    assert.equal((await s.stats()).bytes, p.pageCount * p.pageSize);
  } finally {
    await s.close();
  }
});

