// Rollups, shared by every store: per minute (recent windows, exact to the minute) and per hour
// (long windows: a week of an operation is 168 rows, not 10,080). The key a request is counted
// under, the counters and latency histogram kept per key, folding a batch of entries into rollup
// rows before one upsert per row, and reading percentiles back from the histogram.
import { codeClassOf } from './origin.ts';
import type { AccessLogEntry, CodeCounts, Reporter } from './types.ts';

export const MINUTE_MS = 60_000;
export const HOUR_MS = 3_600_000;

/**
 * Upper bounds (ms) of the latency buckets; one more bucket holds everything slower. Roughly
 * logarithmic so p50 and p99 read back within a bucket's width from 1 ms to 30 s.
 */
export const LATENCY_BUCKETS_MS: readonly number[] = [1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10_000, 30_000];
export const BUCKET_COUNT = LATENCY_BUCKETS_MS.length + 1;
/** Column names of the buckets, b0 … b24, in both schemas. */
export const BUCKET_COLUMNS: readonly string[] = Array.from({ length: BUCKET_COUNT }, (_, i) => `b${i}`);

/**
 * The counters of a rollup row, as column names in both schemas. `total` counts every entry,
 * also those with no status (a client that went away); the classes and origins split it.
 */
export const COUNTER_COLUMNS = ['total', 'c2xx', 'c3xx', 'c4xx', 'c5xx', 'app_4xx', 'app_5xx', 'proxy_4xx', 'proxy_5xx', 'client_4xx', 'client_5xx', 'duration_sum'] as const;
export type CounterColumn = (typeof COUNTER_COLUMNS)[number];

/**
 * Two families of rollups, so each query reads only the rows it groups: `op` per (bucket,
 * reporter, destination service, operation) for the operations table, `edge` per (bucket,
 * reporter, caller — its workload, or its IP when it has none: a caller outside the mesh —,
 * destination service, destination workload) for the graph. Each has a minute and an hour table.
 */
export interface RollupFamily {
  name: 'op' | 'edge';
  keyColumns: readonly string[];
  /** The key values of an entry, in keyColumns order after the bucket. */
  keyOf(e: AccessLogEntry): Array<string | number>;
}

export const OP_FAMILY: RollupFamily = {
  name: 'op',
  keyColumns: ['bucket', 'reporter', 'dst_service', 'operation'],
  keyOf: (e) => [e.reporter, e.destinationService, e.operation],
};

export const EDGE_FAMILY: RollupFamily = {
  name: 'edge',
  keyColumns: ['bucket', 'reporter', 'src_workload', 'src_ns', 'src_ip', 'dst_service', 'dst_workload', 'dst_ns'],
  keyOf: (e) => [e.reporter, e.sourceWorkload, e.sourceNamespace, e.sourceWorkload === '' ? e.sourceIp : '', e.destinationService, e.destinationWorkload, e.destinationNamespace],
};

export interface RollupRow {
  /** The bucket, then the family's key values. */
  key: Array<string | number>;
  counters: number[];
  buckets: number[];
}

/** The histogram bucket of a duration. */
export function bucketOf(durationMs: number): number {
  let lo = 0;
  let hi = LATENCY_BUCKETS_MS.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (durationMs <= LATENCY_BUCKETS_MS[mid]!) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** Folds a batch into a family's rollup rows of `bucketMs` (a minute or an hour), one per key, so a batch makes one upsert per key, not per entry. */
export function foldRollups(entries: readonly AccessLogEntry[], bucketMs: number, family: RollupFamily): RollupRow[] {
  const rows = new Map<string, RollupRow>();
  for (const e of entries) {
    const key = [e.time - (e.time % bucketMs), ...family.keyOf(e)];
    const id = key.join('\u0000');
    let row = rows.get(id);
    if (row === undefined) {
      row = { key, counters: new Array<number>(COUNTER_COLUMNS.length).fill(0), buckets: new Array<number>(BUCKET_COUNT).fill(0) };
      rows.set(id, row);
    }
    const c = row.counters;
    c[0]!++;
    const cls = codeClassOf(e.responseCode);
    if (cls === '2xx') c[1]!++;
    else if (cls === '3xx') c[2]!++;
    else if (cls === '4xx') {
      c[3]!++;
      c[e.origin === 'app' ? 5 : e.origin === 'proxy' ? 7 : 9]!++;
    } else if (cls === '5xx') {
      c[4]!++;
      c[e.origin === 'app' ? 6 : e.origin === 'proxy' ? 8 : 10]!++;
    }
    c[11]! += e.durationMs;
    row.buckets[bucketOf(e.durationMs)]!++;
  }
  return [...rows.values()];
}

/** Summed counters and buckets of one group (a query's GROUP BY), per reporter. */
export interface RollupSums {
  reporter: Reporter;
  counters: number[];
  buckets: number[];
}

const REPORTER_RANK: Record<Reporter, number> = { destination: 2, source: 1, gateway: 0 };

/**
 * Both sidecars of a call may report it. For one group (an edge, an operation), the answer
 * takes the reporter that saw the most requests (destination on a tie), so a call counts once
 * whether one side or both sides report it.
 */
export function pickReporter(sums: readonly RollupSums[]): RollupSums | undefined {
  let best: RollupSums | undefined;
  for (const s of sums) {
    if (best === undefined || s.counters[0]! > best.counters[0]! || (s.counters[0] === best.counters[0] && REPORTER_RANK[s.reporter] > REPORTER_RANK[best.reporter])) best = s;
  }
  return best;
}

export function countsOf(counters: readonly number[]): CodeCounts {
  const n = (i: number): number => counters[i] ?? 0;
  return {
    total: n(0),
    '2xx': n(1),
    '3xx': n(2),
    '4xx': n(3),
    '5xx': n(4),
    byOrigin: {
      app: { '4xx': n(5), '5xx': n(6) },
      proxy: { '4xx': n(7), '5xx': n(8) },
      client: { '4xx': n(9), '5xx': n(10) },
    },
  };
}

/**
 * The q-quantile (0..1) of a histogram, interpolated linearly inside its bucket as Prometheus's
 * histogram_quantile does; the overflow bucket answers with the last finite bound. 0 when empty.
 */
export function quantileOf(buckets: readonly number[], q: number): number {
  let total = 0;
  for (const b of buckets) total += b;
  if (total === 0) return 0;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < buckets.length; i++) {
    const b = buckets[i]!;
    if (b > 0 && seen + b >= rank) {
      if (i >= LATENCY_BUCKETS_MS.length) return LATENCY_BUCKETS_MS[LATENCY_BUCKETS_MS.length - 1]!;
      const lower = i === 0 ? 0 : LATENCY_BUCKETS_MS[i - 1]!;
      const upper = LATENCY_BUCKETS_MS[i]!;
      return round2(lower + (upper - lower) * ((rank - seen) / b));
    }
    seen += b;
  }
  return LATENCY_BUCKETS_MS[LATENCY_BUCKETS_MS.length - 1]!;
}

function round2(v: number): number {
  return Math.round(v * 100) / 100;
}

/** Adds `b` into `a` element by element. */
export function addInto(a: number[], b: readonly number[]): void {
  for (let i = 0; i < b.length; i++) a[i] = (a[i] ?? 0) + (b[i] ?? 0);
}
