// The SQL both stores share (node:sqlite and PostgreSQL speak the same dialect for these):
// the access_log and rollup columns, the queries with `?` placeholders (the PostgreSQL store
// numbers them), and reading rows back into the contract's types.
import { BUCKET_COLUMNS, COUNTER_COLUMNS, EDGE_FAMILY, HOUR_MS, MINUTE_MS, OP_FAMILY } from './rollup.ts';
import type { RollupFamily, RollupRow } from './rollup.ts';
import { reporterOf } from './query.ts';
import type { CheckedLogQuery, EdgeKey, GroupedSums, OperationKey } from './query.ts';
import type { AccessLogEntry, Origin, PeerRow } from './types.ts';

/** The access_log columns in insert order; the same names in the PostgreSQL schema. */
export const LOG_COLUMNS = [
  'ts', 'duration_ms', 'reporter', 'node', 'src_ip', 'src_workload', 'src_ns', 'src_principal',
  'dst_ip', 'dst_workload', 'dst_ns', 'dst_service', 'dst_port', 'method', 'path', 'operation',
  'authority', 'protocol', 'code', 'flags', 'origin', 'bytes_in', 'bytes_out', 'request_id',
  'upstream_cluster', 'route_name',
] as const;

/** The values of one entry in LOG_COLUMNS order. */
export function logValues(e: AccessLogEntry): Array<string | number> {
  return [
    e.time, e.durationMs, e.reporter, e.node, e.sourceIp, e.sourceWorkload, e.sourceNamespace, e.sourcePrincipal,
    e.destinationIp, e.destinationWorkload, e.destinationNamespace, e.destinationService, e.destinationPort, e.method, e.path, e.operation,
    e.authority, e.protocol, e.responseCode, e.responseFlags, e.origin, e.bytesReceived, e.bytesSent, e.requestId,
    e.upstreamCluster, e.routeName,
  ];
}

/** A stored row back as an entry (both backends name the columns the same). */
export function entryOf(r: Record<string, unknown>): AccessLogEntry {
  return {
    time: Number(r['ts']),
    durationMs: Number(r['duration_ms']),
    reporter: reporterOf(r['reporter']),
    node: String(r['node']),
    sourceIp: String(r['src_ip']),
    sourceWorkload: String(r['src_workload']),
    sourceNamespace: String(r['src_ns']),
    sourcePrincipal: String(r['src_principal']),
    destinationIp: String(r['dst_ip']),
    destinationWorkload: String(r['dst_workload']),
    destinationNamespace: String(r['dst_ns']),
    destinationService: String(r['dst_service']),
    destinationPort: Number(r['dst_port']),
    method: String(r['method']),
    path: String(r['path']),
    operation: String(r['operation']),
    authority: String(r['authority']),
    protocol: String(r['protocol']),
    responseCode: Number(r['code']),
    responseFlags: String(r['flags']),
    origin: String(r['origin']) as Origin,
    bytesReceived: Number(r['bytes_in']),
    bytesSent: Number(r['bytes_out']),
    requestId: String(r['request_id']),
    upstreamCluster: String(r['upstream_cluster']),
    routeName: String(r['route_name']),
  };
}

/** Counters and buckets of a grouped rollup row. */
export function sumsOf<K>(r: Record<string, unknown>, key: K): GroupedSums<K> {
  return {
    key,
    reporter: reporterOf(r['reporter']),
    counters: COUNTER_COLUMNS.map((c) => Number(r[c] ?? 0)),
    buckets: BUCKET_COLUMNS.map((c) => Number(r[c] ?? 0)),
  };
}

/** `SUM(x) AS x` for every counter and bucket. */
export const SUM_COLUMNS = [...COUNTER_COLUMNS, ...BUCKET_COLUMNS].map((c) => `SUM(${c}) AS ${c}`).join(', ');

/** Filters of a logs query as SQL conditions with `?` placeholders (the PostgreSQL store renumbers them). */
export function logConditions(q: CheckedLogQuery): { where: string; params: Array<string | number> } {
  const cond: string[] = ['ts >= ?', 'ts < ?'];
  const params: Array<string | number> = [q.from, q.to];
  const eq = (col: string, v: string | undefined): void => {
    if (v === undefined || v === '') return;
    cond.push(`${col} = ?`);
    params.push(v);
  };
  eq('dst_service', q.service);
  eq('operation', q.operation);
  eq('path', q.path);
  eq('src_ip', q.sourceIp);
  eq('origin', q.origin);
  eq('reporter', q.reporter);
  if (q.codeClass !== undefined) {
    const lo = Number(q.codeClass[0]) * 100;
    cond.push('code >= ?', 'code < ?');
    params.push(lo, lo + 100);
  }
  if (q.after !== undefined) {
    cond.push('(ts < ? OR (ts = ? AND id < ?))');
    params.push(q.after.time, q.after.time, q.after.id);
  }
  return { where: cond.join(' AND '), params };
}

/**
 * After the path or the operation, the columns of the two peer indexes: the pair and the
 * reporter in the order the peers query groups by, then the time. The query reads only the
 * index (no table row per request) and groups without sorting, so a path with 100,000 requests
 * in the window costs a scan of its index range.
 */
export const PEER_INDEX_COLUMNS = 'src_ip, src_workload, src_ns, dst_ip, dst_workload, dst_service, reporter, ts';

/** The peers query over access_log (`?` placeholders): one row per pair, counted by the reporter that saw it most. */
export function peersSql(byPath: boolean, withService: boolean): string {
  const pair = 'src_ip, src_workload, src_ns, dst_ip, dst_workload, dst_service';
  return `SELECT ${pair}, MAX(n) AS n, MIN(first_seen) AS first_seen, MAX(last_seen) AS last_seen FROM (
    SELECT ${pair}, reporter, COUNT(*) AS n, MIN(ts) AS first_seen, MAX(ts) AS last_seen FROM access_log
    WHERE ${byPath ? 'path' : 'operation'} = ? AND ts >= ? AND ts < ?${withService ? ' AND dst_service = ?' : ''}
    GROUP BY ${pair}, reporter) AS per_reporter
  GROUP BY ${pair} ORDER BY n DESC, src_ip, src_workload, dst_ip, dst_workload, dst_service LIMIT ?`;
}

export function peerOf(r: Record<string, unknown>): PeerRow {
  return {
    sourceIp: String(r['src_ip']),
    sourceWorkload: String(r['src_workload']),
    sourceNamespace: String(r['src_ns']),
    destinationIp: String(r['dst_ip']),
    destinationWorkload: String(r['dst_workload']),
    destinationService: String(r['dst_service']),
    count: Number(r['n']),
    firstSeen: Number(r['first_seen']),
    lastSeen: Number(r['last_seen']),
  };
}

/**
 * The rollup rows of a window: minutes, hours, minutes (six bounds from rollupBounds). Both
 * tables have the same columns in the same order.
 */
function rollupSource(family: RollupFamily, where: string): string {
  const part = (table: string): string => `SELECT * FROM ${table} WHERE bucket >= ? AND bucket < ?${where}`;
  const [minutes, hours] = [rollupTable(family, MINUTE_MS), rollupTable(family, HOUR_MS)];
  return `(${part(minutes)} UNION ALL ${part(hours)} UNION ALL ${part(minutes)}) AS r`;
}

/** Parameters: the six bounds, each followed by the service when `withService`. */
export function operationsSql(withService: boolean): string {
  return `SELECT dst_service, operation, reporter, ${SUM_COLUMNS} FROM ${rollupSource(OP_FAMILY, withService ? ' AND dst_service = ?' : '')}
    GROUP BY dst_service, operation, reporter`;
}

export const GRAPH_SQL = `SELECT src_workload, src_ns, src_ip, dst_service, dst_workload, dst_ns, reporter, ${SUM_COLUMNS} FROM ${rollupSource(EDGE_FAMILY, '')}
  GROUP BY src_workload, src_ns, src_ip, dst_service, dst_workload, dst_ns, reporter`;

/** The parameters of operationsSql: each pair of bounds, then the service when there is one. */
export function operationsParams(bounds: readonly number[], service: string | undefined): Array<string | number> {
  const out: Array<string | number> = [];
  for (let i = 0; i < 6; i += 2) {
    out.push(bounds[i]!, bounds[i + 1]!);
    if (service !== undefined) out.push(service);
  }
  return out;
}

export function edgeKeyOf(r: Record<string, unknown>): EdgeKey {
  return {
    srcWorkload: String(r['src_workload']),
    srcNamespace: String(r['src_ns']),
    srcIp: String(r['src_ip']),
    dstService: String(r['dst_service']),
    dstWorkload: String(r['dst_workload']),
    dstNamespace: String(r['dst_ns']),
  };
}

export function operationKeyOf(r: Record<string, unknown>): OperationKey {
  return { service: String(r['dst_service']), operation: String(r['operation']) };
}

export function rollupTable(family: RollupFamily, bucketMs: number): string {
  return `rollup_${family.name}_${bucketMs === MINUTE_MS ? '1m' : '1h'}`;
}

export interface RollupTable {
  table: string;
  family: RollupFamily;
  bucketMs: number;
}

/** The four rollup tables: each family by minute and by hour. */
export const ROLLUP_TABLES: readonly RollupTable[] = [OP_FAMILY, EDGE_FAMILY].flatMap((family) =>
  [MINUTE_MS, HOUR_MS].map((bucketMs) => ({ table: rollupTable(family, bucketMs), family, bucketMs })));

/** All columns of a rollup table: its key, the counters, the histogram. */
export function rollupColumns(family: RollupFamily): string[] {
  return [...family.keyColumns, ...COUNTER_COLUMNS, ...BUCKET_COLUMNS];
}

/** The rollup upsert into a table (`?` placeholders): counters and buckets added to the row of the same key. */
export function rollupUpsertSql(t: RollupTable): string {
  const cols = rollupColumns(t.family);
  const add = [...COUNTER_COLUMNS, ...BUCKET_COLUMNS].map((c) => `${c} = ${t.table}.${c} + excluded.${c}`).join(', ');
  return `INSERT INTO ${t.table} (${cols.join(', ')}) VALUES (${cols.map(() => '?').join(', ')})
    ON CONFLICT (${t.family.keyColumns.join(', ')}) DO UPDATE SET ${add}`;
}

/** A rollup row's values in column order. */
export function rollupValues(r: RollupRow): Array<string | number> {
  return [...r.key, ...r.counters, ...r.buckets];
}

/** The name under which retention records how far it removed a minute table's rows. */
export function minutesFromName(family: RollupFamily): string {
  return `minutes_from:${family.name}`;
}
