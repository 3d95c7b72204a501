// What every store does the same way around its SQL: checking queries at the boundary (a
// LogQueryError names the field, the HTTP API answers 400 with it), the opaque page cursor,
// bounding what an entry may hold, the retention defaults, and turning grouped rollup sums
// into operation rows and the topology graph.
import { addInto, BUCKET_COUNT, COUNTER_COLUMNS, countsOf, pickReporter, quantileOf, HOUR_MS, MINUTE_MS } from './rollup.ts';
import type { RollupSums } from './rollup.ts';
import type { AccessLogEntry, Graph, GraphEdge, GraphNode, LogQuery, OperationRow, OperationsQuery, PeersQuery, Reporter, RetentionPolicy, TimeWindow } from './types.ts';

/** A query a store refuses; the message names the field. */
export class LogQueryError extends Error {
  override name = 'LogQueryError';
}

export const DEFAULT_LOG_LIMIT = 100;
export const MAX_LOG_LIMIT = 1000;
export const DEFAULT_OPERATIONS_LIMIT = 100;
export const MAX_OPERATIONS_LIMIT = 1000;
/** Distinct (caller, destination) pairs a peers answer holds at most. */
export const MAX_PEER_ROWS = 1000;
/** Edges a graph holds at most (the busiest first); `truncated` says when more existed. */
export const MAX_GRAPH_EDGES = 10_000;

export const DEFAULT_RETENTION: RetentionPolicy = {
  maxAgeMs: 7 * 24 * 3600_000,
  maxRows: 1_000_000,
  rollupMaxAgeMs: 30 * 24 * 3600_000,
  minuteRollupMaxAgeMs: 24 * 3600_000,
  rollupMaxRows: 2_000_000,
};

export function retentionOf(p: Partial<RetentionPolicy> | undefined): Required<RetentionPolicy> {
  const r = { ...DEFAULT_RETENTION, ...p } as Required<RetentionPolicy>;
  for (const k of ['maxAgeMs', 'maxRows', 'rollupMaxAgeMs', 'minuteRollupMaxAgeMs', 'rollupMaxRows'] as const) {
    const v = r[k];
    if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`retention: ${k} must be a positive integer, got ${String(v)}`);
  }
  if (r.minuteRollupMaxAgeMs < HOUR_MS) throw new RangeError(`retention: minuteRollupMaxAgeMs must be at least an hour (${HOUR_MS} ms), got ${r.minuteRollupMaxAgeMs}`);
  return r;
}

/** Longest strings an entry keeps (longer ones are cut), so one row has a bounded size. */
export const MAX_PATH_LENGTH = 2048;
export const MAX_FIELD_LENGTH = 256;

const STRING_FIELDS = ['node', 'sourceIp', 'sourceWorkload', 'sourceNamespace', 'sourcePrincipal', 'destinationIp', 'destinationWorkload', 'destinationNamespace', 'destinationService', 'method', 'operation', 'authority', 'protocol', 'responseFlags', 'requestId', 'upstreamCluster', 'routeName'] as const;

/** The entry itself when every string is within bounds, else a copy with the long ones cut. */
export function boundEntry(e: AccessLogEntry): AccessLogEntry {
  let out: AccessLogEntry | undefined;
  if (e.path.length > MAX_PATH_LENGTH) out = { ...e, path: e.path.slice(0, MAX_PATH_LENGTH) };
  for (const f of STRING_FIELDS) {
    if (e[f].length > MAX_FIELD_LENGTH) {
      out ??= { ...e };
      out[f] = e[f].slice(0, MAX_FIELD_LENGTH);
    }
  }
  return out ?? e;
}

export function checkWindow(w: TimeWindow, what = 'window'): void {
  if (!Number.isFinite(w.from) || !Number.isFinite(w.to)) throw new LogQueryError(`${what}: from and to must be times in ms since the epoch`);
  if (w.from >= w.to) throw new LogQueryError(`${what}: from (${w.from}) must be before to (${w.to})`);
}

function limitOf(v: number | undefined, dflt: number, max: number, field: string): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 1) throw new LogQueryError(`${field}: must be a positive integer, got ${String(v)}`);
  return Math.min(v, max);
}

export interface CheckedLogQuery extends LogQuery {
  limit: number;
  after: { time: number; id: number } | undefined;
}

const CODE_CLASSES = new Set(['2xx', '3xx', '4xx', '5xx']);
const ORIGINS = new Set(['app', 'proxy', 'client']);
const REPORTERS = new Set(['source', 'destination', 'gateway']);

export function checkLogQuery(q: LogQuery): CheckedLogQuery {
  checkWindow(q, 'logs');
  if (q.codeClass !== undefined && !CODE_CLASSES.has(q.codeClass)) throw new LogQueryError(`codeClass: must be one of 2xx, 3xx, 4xx, 5xx, got ${JSON.stringify(q.codeClass)}`);
  if (q.origin !== undefined && !ORIGINS.has(q.origin)) throw new LogQueryError(`origin: must be one of app, proxy, client, got ${JSON.stringify(q.origin)}`);
  if (q.reporter !== undefined && !REPORTERS.has(q.reporter)) throw new LogQueryError(`reporter: must be one of source, destination, gateway, got ${JSON.stringify(q.reporter)}`);
  return { ...q, limit: limitOf(q.limit, DEFAULT_LOG_LIMIT, MAX_LOG_LIMIT, 'limit'), after: q.cursor === undefined || q.cursor === '' ? undefined : decodeCursor(q.cursor) };
}

export function checkPeersQuery(q: PeersQuery): PeersQuery & { limit: number } {
  checkWindow(q, 'peers');
  const byPath = q.path !== undefined && q.path !== '';
  const byOp = q.operation !== undefined && q.operation !== '';
  if (byPath === byOp) throw new LogQueryError('peers: exactly one of path or operation is required');
  return { ...q, limit: limitOf(q.limit, MAX_PEER_ROWS, MAX_PEER_ROWS, 'limit') };
}

export function checkOperationsQuery(q: OperationsQuery): OperationsQuery & { limit: number } {
  checkWindow(q, 'operations');
  if (q.sort !== undefined && !['requests', 'errors', 'p99', 'name'].includes(q.sort)) throw new LogQueryError(`sort: must be one of requests, errors, p99, name, got ${JSON.stringify(q.sort)}`);
  return { ...q, limit: limitOf(q.limit, DEFAULT_OPERATIONS_LIMIT, MAX_OPERATIONS_LIMIT, 'limit') };
}

// The cursor is the (time, id) of the last entry of a page; pages go from newest to oldest.
export function encodeCursor(time: number, id: number): string {
  return Buffer.from(`${time}:${id}`, 'utf8').toString('base64url');
}

export function decodeCursor(cursor: string): { time: number; id: number } {
  const m = /^(-?\d{1,16}):(\d{1,19})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (m === null) throw new LogQueryError('cursor: not a cursor this store returned');
  return { time: Number(m[1]), id: Number(m[2]) };
}

function floorTo(t: number, unit: number): number {
  return t - (((t % unit) + unit) % unit);
}

/**
 * The six bounds of a rollup query (see ROLLUP_SOURCE): minute rows for the partial hours at
 * both ends of the window, hour rows for the whole hours between. A window starts at the minute
 * holding `from`. Where retention removed the minute rows (before `minutesFrom`), the leading
 * end is read from its hour instead, so an old window is answered to the hour rather than not
 * at all. Minute rows are kept at least an hour, so the trailing end always has them.
 */
export function rollupBounds(w: TimeWindow, minutesFrom: number | undefined): number[] {
  const start = floorTo(w.from, MINUTE_MS);
  const firstHour = start + ((HOUR_MS - (((start % HOUR_MS) + HOUR_MS) % HOUR_MS)) % HOUR_MS);
  const lastHour = floorTo(w.to, HOUR_MS);
  const minutesGone = minutesFrom !== undefined && start < minutesFrom;
  if (minutesGone) {
    const h = floorTo(start, HOUR_MS);
    return lastHour > h ? [0, 0, h, lastHour, lastHour, w.to] : [0, 0, h, w.to, 0, 0];
  }
  if (firstHour < lastHour) return [start, firstHour, firstHour, lastHour, lastHour, w.to];
  return [start, w.to, 0, 0, 0, 0];
}

/** One group of a rollup query, per reporter, as a store reads it back. */
export interface GroupedSums<K> extends RollupSums {
  key: K;
}

function byKey<K>(rows: readonly GroupedSums<K>[], keyOf: (k: K) => string): Map<string, { key: K; sums: RollupSums[] }> {
  const groups = new Map<string, { key: K; sums: RollupSums[] }>();
  for (const r of rows) {
    const k = keyOf(r.key);
    let g = groups.get(k);
    if (g === undefined) groups.set(k, (g = { key: r.key, sums: [] }));
    g.sums.push(r);
  }
  return groups;
}

export interface OperationKey {
  service: string;
  operation: string;
}

export function assembleOperations(rows: readonly GroupedSums<OperationKey>[], q: OperationsQuery & { limit: number }): OperationRow[] {
  const seconds = (q.to - q.from) / 1000;
  const out: OperationRow[] = [];
  for (const { key, sums } of byKey(rows, (k) => `${k.service}\u0000${k.operation}`).values()) {
    const s = pickReporter(sums)!;
    out.push({ service: key.service, operation: key.operation, counts: countsOf(s.counters), rps: round3(s.counters[0]! / seconds), p50Ms: quantileOf(s.buckets, 0.5), p99Ms: quantileOf(s.buckets, 0.99) });
  }
  const errors = (r: OperationRow): number => r.counts['4xx'] + r.counts['5xx'];
  const byName = (a: OperationRow, b: OperationRow): number => (a.service < b.service ? -1 : a.service > b.service ? 1 : a.operation < b.operation ? -1 : a.operation > b.operation ? 1 : 0);
  const sort = q.sort ?? 'requests';
  out.sort((a, b) => {
    const d = sort === 'requests' ? b.counts.total - a.counts.total : sort === 'errors' ? errors(b) - errors(a) : sort === 'p99' ? b.p99Ms - a.p99Ms : 0;
    return d !== 0 ? d : byName(a, b);
  });
  return out.slice(0, q.limit);
}

export interface EdgeKey {
  srcWorkload: string;
  srcNamespace: string;
  srcIp: string;
  dstService: string;
  dstWorkload: string;
  dstNamespace: string;
}

/** The node id of a service host ('' when the proxy found none: Istio's `unknown`). */
function serviceNode(host: string): GraphNode {
  const name = host === '' ? 'unknown' : host;
  const ns = /^[^.]+\.([^.]+)\.svc\./.exec(host)?.[1] ?? '';
  return { id: `service:${name}`, kind: 'service', name, namespace: ns };
}

function workloadNode(name: string, namespace: string): GraphNode {
  return { id: `workload:${namespace}/${name}`, kind: 'workload', name, namespace };
}

/**
 * The topology: callers (workloads, or `unknown:IP` outside the mesh) → services → the
 * workloads that served them. A caller→service edge sums over the serving workloads.
 */
export function assembleGraph(rows: readonly GroupedSums<EdgeKey>[], w: TimeWindow): Graph {
  const seconds = (w.to - w.from) / 1000;
  const nodes = new Map<string, GraphNode>();
  const edges = new Map<string, { source: string; target: string; counters: number[]; buckets: number[] }>();
  const addEdge = (source: string, target: string, s: RollupSums): void => {
    const k = `${source}\u0000${target}`;
    let e = edges.get(k);
    if (e === undefined) edges.set(k, (e = { source, target, counters: new Array<number>(COUNTER_COLUMNS.length).fill(0), buckets: new Array<number>(BUCKET_COUNT).fill(0) }));
    addInto(e.counters, s.counters);
    addInto(e.buckets, s.buckets);
  };
  for (const { key, sums } of byKey(rows, (k) => `${k.srcWorkload}\u0000${k.srcNamespace}\u0000${k.srcIp}\u0000${k.dstService}\u0000${k.dstWorkload}\u0000${k.dstNamespace}`).values()) {
    const s = pickReporter(sums)!;
    const src = key.srcWorkload !== ''
      ? workloadNode(key.srcWorkload, key.srcNamespace)
      : { id: `unknown:${key.srcIp === '' ? 'unknown' : key.srcIp}`, kind: 'unknown' as const, name: key.srcIp === '' ? 'unknown' : key.srcIp, namespace: '' };
    const svc = serviceNode(key.dstService);
    nodes.set(src.id, src);
    nodes.set(svc.id, svc);
    addEdge(src.id, svc.id, s);
    if (key.dstWorkload !== '') {
      const dst = workloadNode(key.dstWorkload, key.dstNamespace);
      nodes.set(dst.id, dst);
      addEdge(svc.id, dst.id, s);
    }
  }
  let list = [...edges.values()];
  const truncated = list.length > MAX_GRAPH_EDGES;
  if (truncated) list = list.sort((a, b) => b.counters[0]! - a.counters[0]!).slice(0, MAX_GRAPH_EDGES);
  const out: GraphEdge[] = list
    .map((e) => ({ source: e.source, target: e.target, counts: countsOf(e.counters), rps: round3(e.counters[0]! / seconds), p50Ms: quantileOf(e.buckets, 0.5), p99Ms: quantileOf(e.buckets, 0.99) }))
    .sort((a, b) => (a.source < b.source ? -1 : a.source > b.source ? 1 : a.target < b.target ? -1 : a.target > b.target ? 1 : 0));
  const used = new Set(out.flatMap((e) => [e.source, e.target]));
  const graph: Graph = { window: { from: w.from, to: w.to }, nodes: [...nodes.values()].filter((n) => used.has(n.id)).sort((a, b) => (a.id < b.id ? -1 : 1)), edges: out };
  if (truncated) graph.truncated = true;
  return graph;
}

function round3(v: number): number {
  return Math.round(v * 1000) / 1000;
}

/** Reporter values read back from a database, checked. */
export function reporterOf(v: unknown): Reporter {
  if (v === 'source' || v === 'destination' || v === 'gateway') return v;
  throw new Error(`access-log store: unexpected reporter ${JSON.stringify(v)} in a stored row`);
}
