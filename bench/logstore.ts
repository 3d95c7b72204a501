// Benchmark (not a test): the access-log stores. Ingest rate (entries/s, batches of 1,000 as
// the sink writes them) into node:sqlite and PostgreSQL, then the p50/p99 of the queries the
// API answers, over the whole stored range: peers of a cold path (a few rows), peers of a hot
// path (10 % of all traffic) and of an operation, the operations table, the graph, a page of
// filtered logs.
//
//   node bench/logstore.ts [--rows 1000000[,10000000]] [--only sqlite|postgres] [--queries 50]
//
// PostgreSQL is started here (Debian's, a temp directory, durable commits as in production).
// Writes bench/results/logstore.json.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { PostgresLogStore, SqliteThreadLogStore } from '../src/telemetry/index.ts';
import type { LogStore } from '../src/telemetry/index.ts';
import { postgresUnavailableReason, startPostgres } from '../test/helpers/postgres.ts';
import type { PostgresProcess } from '../test/helpers/postgres.ts';
import { trafficBatch, DEFAULT_SHAPE } from '../test/telemetry/traffic.ts';
import type { TrafficShape } from '../test/telemetry/traffic.ts';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

const ROWS = arg('rows', '1000000').split(',').map(Number);
const ONLY = arg('only', '');
const QUERIES = Number(arg('queries', '50'));
const BATCH = 1000;
const SHAPE: TrafficShape = { ...DEFAULT_SHAPE, start: Date.UTC(2026, 0, 5), stepMs: 1, hotShare: 0.1 };

interface QueryResult {
  name: string;
  rowsReturned: number;
  p50Ms: number;
  p99Ms: number;
}

interface StoreResult {
  store: 'sqlite' | 'postgres';
  rows: number;
  ingestPerSecond: number;
  /** CPU of this process (all its threads) per entry: the pilot's cost; PostgreSQL's own CPU is not in it. */
  ingestCpuMicrosEach: number;
  bytes: number | undefined;
  loadAverageAtStart: number;
  queries: QueryResult[];
}

function percentile(sorted: number[], q: number): number {
  return Math.round(sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]! * 10) / 10;
}

async function timeQuery(name: string, n: number, run: (k: number) => Promise<number>): Promise<QueryResult> {
  await run(0); // warm: statements prepared, pages cached, as in a pilot that has answered before
  const times: number[] = [];
  let returned = 0;
  for (let k = 0; k < n; k++) {
    const t = performance.now();
    returned = await run(k + 1);
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  const r = { name, rowsReturned: returned, p50Ms: percentile(times, 0.5), p99Ms: percentile(times, 0.99) };
  console.log(`  ${name}: p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms (${returned} rows)`);
  return r;
}

async function measure(kind: 'sqlite' | 'postgres', rows: number, open: () => Promise<LogStore>, settle?: () => Promise<void>): Promise<StoreResult> {
  const loadAverageAtStart = loadavg()[0]!;
  const store = await open();
  console.log(`${kind}, ${rows.toLocaleString('en')} rows (load average ${loadAverageAtStart.toFixed(1)})`);
  try {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    for (let i = 0; i < rows; i += BATCH) {
      await store.insert(trafficBatch(i, Math.min(BATCH, rows - i), SHAPE));
      if (i % 1_000_000 === 0 && i > 0) console.log(`  ${i.toLocaleString('en')} rows, ${Math.round(i / ((performance.now() - t0) / 1000))} entries/s`);
    }
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(c0);
    const ingestPerSecond = Math.round(rows / seconds);
    const ingestCpuMicrosEach = Math.round(((cpu.user + cpu.system) / rows) * 10) / 10;
    await settle?.();
    const stats = await store.stats();
    console.log(`  ingest: ${ingestPerSecond} entries/s, ${ingestCpuMicrosEach} µs CPU each, ${stats.rows} rows, ${Math.round((stats.bytes ?? 0) / 1e6)} MB`);
    const w = { from: SHAPE.start, to: SHAPE.start + rows * SHAPE.stepMs };
    const queries: QueryResult[] = [];
    queries.push(await timeQuery('peers of a cold path', QUERIES, async (k) => (await store.peers({ ...w, path: `/api/op${k % SHAPE.operations}/${(k * 37) % 1000}` })).length));
    queries.push(await timeQuery('peers of the hot path (10 % of rows)', QUERIES, async () => (await store.peers({ ...w, path: '/api/hot' })).length));
    queries.push(await timeQuery('peers of an operation', QUERIES, async (k) => (await store.peers({ ...w, operation: `/api/op${k % SHAPE.operations}/{id}` })).length));
    queries.push(await timeQuery('operations, whole range', QUERIES, async () => (await store.operations({ ...w, limit: 1000 })).length));
    queries.push(await timeQuery('operations of one service, last 5 minutes', QUERIES, async (k) => (await store.operations({ from: w.to - 300_000, to: w.to, service: `svc-${k % SHAPE.services}.team.svc.cluster.local` })).length));
    queries.push(await timeQuery('graph, whole range', QUERIES, async () => (await store.graph(w)).edges.length));
    queries.push(await timeQuery('logs, one service\'s 5xx, first page', QUERIES, async (k) => (await store.logs({ ...w, service: `svc-${k % SHAPE.services}.team.svc.cluster.local`, codeClass: '5xx' })).entries.length));
    return { store: kind, rows, ingestPerSecond, ingestCpuMicrosEach, bytes: stats.bytes, loadAverageAtStart, queries };
  } finally {
    await store.close();
  }
}

const results: StoreResult[] = [];
let server: PostgresProcess | undefined;
const dir = mkdtempSync(path.join(tmpdir(), 'sextant-bench-logstore-'));
try {
  for (const rows of ROWS) {
    if (ONLY === '' || ONLY === 'sqlite') {
      const file = path.join(dir, `access-log-${rows}.db`);
      // As a pilot runs it: in its worker thread (the time includes handing each batch over).
      results.push(await measure('sqlite', rows, () => SqliteThreadLogStore.open({ path: file, retentionIntervalMs: 0, retention: { maxRows: rows } })));
      rmSync(file, { force: true });
    }
    if (ONLY === '' || ONLY === 'postgres') {
      const reason = postgresUnavailableReason();
      if (reason !== undefined) {
        console.log(`postgres skipped: ${reason}`);
      } else {
        server ??= await startPostgres({ durable: true });
        const url = await server.createDatabase(`bench_${rows}`);
        // After a bulk load, VACUUM ANALYZE does at once what autovacuum does as rows arrive
        // (the store sets it to run every 2 % of inserts): the peers query's index-only scan needs it.
        const settle = async (): Promise<void> => {
          const c = new pg.Client({ connectionString: url });
          await c.connect();
          await c.query('VACUUM ANALYZE access_log');
          await c.end();
        };
        results.push(await measure('postgres', rows, () => PostgresLogStore.open({ url, retentionIntervalMs: 0, retention: { maxRows: rows } }), settle));
      }
    }
  }
} finally {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
}
mkdirSync(path.join(import.meta.dirname, 'results'), { recursive: true });
writeFileSync(path.join(import.meta.dirname, 'results', 'logstore.json'), JSON.stringify({ date: new Date().toISOString(), node: process.version, batch: BATCH, queriesEach: QUERIES, results }, null, 2) + '\n');
