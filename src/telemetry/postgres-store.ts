// The shared access-log store: one PostgreSQL database that several pilots write to at once.
// A batch is one transaction of two statements (the entries as arrays through unnest, the
// rollups as an upsert that adds to the row of the same key), so nothing depends on state held
// in one process. The schema is created on open under an advisory lock; retention runs in one
// pilot at a time (another advisory lock) and PostgreSQL's autovacuum reuses the freed space.
import pg from 'pg';
import { BUCKET_COLUMNS, COUNTER_COLUMNS, EDGE_FAMILY, MINUTE_MS, OP_FAMILY, foldRollups } from './rollup.ts';
import type { RollupFamily, RollupRow } from './rollup.ts';
import {
  assembleGraph,
  assembleOperations,
  boundEntry,
  checkLogQuery,
  checkOperationsQuery,
  checkPeersQuery,
  checkWindow,
  encodeCursor,
  rollupBounds,
  retentionOf,
} from './query.ts';
import {
  GRAPH_SQL, LOG_COLUMNS, PEER_INDEX_COLUMNS, ROLLUP_TABLES, edgeKeyOf, entryOf, logConditions, logValues, minutesFromName, operationKeyOf, operationsParams, operationsSql,
  peerOf, peersSql, rollupColumns, rollupValues, sumsOf,
} from './sql.ts';
import type { RollupTable } from './sql.ts';
import type { AccessLogEntry, Graph, LogPage, LogQuery, LogStore, LogStoreStats, OperationRow, OperationsQuery, PeerRow, PeersQuery, RetentionPolicy, TimeWindow } from './types.ts';

export interface PostgresLogStoreOptions {
  /** `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (libpq's URL form, as `pg` reads it). */
  url: string;
  retention?: Partial<RetentionPolicy>;
  /** How often retention runs on its own, default 60 s; 0 turns the timer off. */
  retentionIntervalMs?: number;
  /** Connections this store opens at most (default 4). */
  maxConnections?: number;
}

// Keys of the advisory locks this store takes (any constant; they only need to be the same in every pilot).
const SCHEMA_LOCK = 0x5e7a47_01;
const RETENTION_LOCK = 0x5e7a47_02;

const INT_COLUMNS = new Set(['dst_port', 'code']);
const BIGINT_COLUMNS = new Set(['ts', 'bytes_in', 'bytes_out']);

function logColumnType(c: string): string {
  return BIGINT_COLUMNS.has(c) ? 'bigint' : INT_COLUMNS.has(c) ? 'integer' : c === 'duration_ms' ? 'double precision' : 'text';
}

function rollupColumnType(family: RollupFamily, c: string): string {
  return c === 'bucket' ? 'bigint' : family.keyColumns.includes(c) ? 'text' : c === 'duration_sum' ? 'double precision' : 'bigint';
}

function rollupSchema(t: RollupTable): string {
  const cols = rollupColumns(t.family).map((c) => `${c} ${rollupColumnType(t.family, c)} NOT NULL`);
  return `CREATE TABLE IF NOT EXISTS ${t.table} (${cols.join(', ')}, PRIMARY KEY (${t.family.keyColumns.join(', ')}));`;
}

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS access_log (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, ${LOG_COLUMNS.map((c) => `${c} ${logColumnType(c)} NOT NULL`).join(', ')});
  -- Vacuumed after every 2 % of inserts (PostgreSQL's default waits for 20 %), so the
  -- visibility map stays current and the peers query reads its index alone.
  ALTER TABLE access_log SET (autovacuum_vacuum_insert_scale_factor = 0.02, autovacuum_vacuum_insert_threshold = 10000, autovacuum_analyze_scale_factor = 0.02);
  CREATE INDEX IF NOT EXISTS access_log_ts ON access_log (ts, id);
  CREATE INDEX IF NOT EXISTS access_log_operation_peers ON access_log (operation, ${PEER_INDEX_COLUMNS});
  CREATE INDEX IF NOT EXISTS access_log_path_peers ON access_log (path, ${PEER_INDEX_COLUMNS});
  CREATE INDEX IF NOT EXISTS access_log_service ON access_log (dst_service, ts);
  CREATE INDEX IF NOT EXISTS access_log_src_ip ON access_log (src_ip, ts);
  ${ROLLUP_TABLES.map(rollupSchema).join('\n  ')}
  CREATE TABLE IF NOT EXISTS rollup_meta (name text PRIMARY KEY, value bigint NOT NULL);
`;

const INSERT_LOG = `INSERT INTO access_log (${LOG_COLUMNS.join(', ')})
  SELECT * FROM unnest(${LOG_COLUMNS.map((c, i) => `$${i + 1}::${logColumnType(c)}[]`).join(', ')})`;

function upsertRollupSql(t: RollupTable): string {
  const cols = rollupColumns(t.family);
  return `INSERT INTO ${t.table} (${cols.join(', ')})
  SELECT * FROM unnest(${cols.map((c, i) => `$${i + 1}::${rollupColumnType(t.family, c)}[]`).join(', ')})
  ON CONFLICT (${t.family.keyColumns.join(', ')}) DO UPDATE SET ${[...COUNTER_COLUMNS, ...BUCKET_COLUMNS].map((c) => `${c} = ${t.table}.${c} + excluded.${c}`).join(', ')}`;
}

/** `?` placeholders (the shared SQL) as PostgreSQL's `$1, $2, …`. */
function numbered(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}

// 64-bit integers and sums come back as JavaScript numbers: counts and ms timestamps stay far below 2^53.
const NUMERIC_OIDS = new Set([20 /* int8 */, 1700 /* numeric */]);
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => (NUMERIC_OIDS.has(oid) ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format ?? 'text'))) as typeof pg.types.getTypeParser,
};

/** Deadlocks and serialization failures: two pilots upserting the same rollup rows; the batch is retried. */
const RETRYABLE = new Set(['40P01', '40001']);
const MAX_ATTEMPTS = 5;

function compareRollups(a: RollupRow, b: RollupRow): number {
  for (let i = 0; i < a.key.length; i++) {
    const x = a.key[i]!;
    const y = b.key[i]!;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

export class PostgresLogStore implements LogStore {
  readonly kind = 'postgres' as const;
  readonly retention: Required<RetentionPolicy>;
  private readonly pool: pg.Pool;
  private readonly timer: NodeJS.Timeout | undefined;
  private readonly checkEvery: number;
  private insertedSinceCheck = 0;
  private retaining: Promise<number> | undefined;
  private closed = false;

  private constructor(pool: pg.Pool, opts: PostgresLogStoreOptions, retention: Required<RetentionPolicy>) {
    this.pool = pool;
    this.retention = retention;
    // Each pilot checks the row bound after its own share of inserts; the bound is exact after enforceRetention().
    this.checkEvery = Math.max(1000, Math.ceil(retention.maxRows / 20));
    const every = opts.retentionIntervalMs ?? 60_000;
    if (every > 0) {
      this.timer = setInterval(() => {
        this.enforceRetention().catch(() => undefined /* the next tick tries again */);
      }, every);
      this.timer.unref();
    }
  }

  static async open(opts: PostgresLogStoreOptions): Promise<PostgresLogStore> {
    const retention = retentionOf(opts.retention);
    const max = opts.maxConnections ?? 4;
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`postgres store: maxConnections must be a positive integer, got ${max}`);
    const pool = new pg.Pool({ connectionString: opts.url, max, types, application_name: 'sextant-access-log' });
    // An idle connection the server dropped must not crash the pilot; the next query reconnects.
    pool.on('error', () => undefined);
    try {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        await client.query('SELECT pg_advisory_xact_lock($1)', [SCHEMA_LOCK]);
        await client.query(SCHEMA);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      } finally {
        client.release();
      }
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw new Error(`access-log store ${redact(opts.url)}: ${(err as Error).message}`, { cause: err });
    }
    return new PostgresLogStore(pool, opts, retention);
  }

  async insert(entries: readonly AccessLogEntry[]): Promise<void> {
    this.open();
    if (entries.length === 0) return;
    const bounded = entries.map(boundEntry);
    const columns: unknown[][] = LOG_COLUMNS.map(() => new Array<unknown>(bounded.length));
    bounded.forEach((e, i) => {
      logValues(e).forEach((v, c) => {
        columns[c]![i] = v;
      });
    });
    // Upserts in one key order in every pilot, so two batches touching the same rows cannot deadlock each other.
    const rollups = ROLLUP_TABLES.map((t) => {
      const rows = foldRollups(bounded, t.bucketMs, t.family).sort(compareRollups);
      const columns: unknown[][] = rollupColumns(t.family).map(() => new Array<unknown>(rows.length));
      rows.forEach((r, i) => {
        rollupValues(r).forEach((v, c) => {
          columns[c]![i] = v;
        });
      });
      return { name: `sextant_upsert_${t.table}`, text: upsertRollupSql(t), values: columns };
    });
    for (let attempt = 1; ; attempt++) {
      const client = await this.pool.connect();
      try {
        await client.query('BEGIN');
        await client.query({ name: 'sextant_insert_log', text: INSERT_LOG, values: columns });
        for (const upsert of rollups) await client.query(upsert);
        await client.query('COMMIT');
        break;
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        if (attempt >= MAX_ATTEMPTS || !RETRYABLE.has((err as { code?: string }).code ?? '')) throw err;
      } finally {
        client.release();
      }
    }
    this.insertedSinceCheck += bounded.length;
    if (this.insertedSinceCheck >= this.checkEvery) {
      this.insertedSinceCheck = 0;
      await this.serialized(() => this.retain(Date.now(), true));
    }
  }

  private async all(sql: string, params: ReadonlyArray<string | number>): Promise<Array<Record<string, unknown>>> {
    this.open();
    return (await this.pool.query(numbered(sql), params as unknown[])).rows as Array<Record<string, unknown>>;
  }

  async logs(query: LogQuery): Promise<LogPage> {
    const q = checkLogQuery(query);
    const { where, params } = logConditions(q);
    const rows = await this.all(`SELECT * FROM access_log WHERE ${where} ORDER BY ts DESC, id DESC LIMIT ?`, [...params, q.limit + 1]);
    const page: LogPage = { entries: rows.slice(0, q.limit).map(entryOf) };
    if (rows.length > q.limit) {
      const last = rows[q.limit - 1]!;
      page.next = encodeCursor(Number(last['ts']), Number(last['id']));
    }
    return page;
  }

  async peers(query: PeersQuery): Promise<PeerRow[]> {
    const q = checkPeersQuery(query);
    const byPath = q.path !== undefined && q.path !== '';
    const withService = q.service !== undefined && q.service !== '';
    const params: Array<string | number> = [(byPath ? q.path : q.operation)!, q.from, q.to];
    if (withService) params.push(q.service!);
    return (await this.all(peersSql(byPath, withService), [...params, q.limit])).map(peerOf);
  }

  async operations(query: OperationsQuery): Promise<OperationRow[]> {
    const q = checkOperationsQuery(query);
    const withService = q.service !== undefined && q.service !== '';
    const params = operationsParams(rollupBounds(q, await this.minutesFrom(OP_FAMILY)), withService ? q.service : undefined);
    const rows = await this.all(operationsSql(withService), params);
    return assembleOperations(rows.map((r) => sumsOf(r, operationKeyOf(r))), q);
  }

  async graph(w: TimeWindow): Promise<Graph> {
    checkWindow(w, 'graph');
    const rows = await this.all(GRAPH_SQL, operationsParams(rollupBounds(w, await this.minutesFrom(EDGE_FAMILY)), undefined));
    return assembleGraph(rows.map((r) => sumsOf(r, edgeKeyOf(r))), w);
  }

  /** Where retention has removed minute rollups up to (exclusive), if it has. */
  private async minutesFrom(family: RollupFamily): Promise<number | undefined> {
    const [row] = await this.all('SELECT value FROM rollup_meta WHERE name = ?', [minutesFromName(family)]);
    return row === undefined ? undefined : Number(row['value']);
  }

  /**
   * Applies the policy now. Only one pilot at a time does the work (a try-lock: a pilot that
   * finds another one at it returns 0 at once). Returns the entries this call removed.
   */
  async enforceRetention(now = Date.now()): Promise<number> {
    this.open();
    return this.serialized(() => this.retain(now, false));
  }

  // One retention run at a time in this process (the advisory lock covers the other pilots).
  private async serialized(fn: () => Promise<number>): Promise<number> {
    if (this.retaining !== undefined) await this.retaining.catch(() => undefined);
    const run = fn();
    this.retaining = run;
    try {
      return await run;
    } finally {
      if (this.retaining === run) this.retaining = undefined;
    }
  }

  /** The row bound, and with `rowsOnly` false the ages too (the timer's and enforceRetention's job). */
  private async retain(now: number, rowsOnly: boolean): Promise<number> {
    const r = this.retention;
    const client = await this.pool.connect();
    try {
      const locked = (await client.query('SELECT pg_try_advisory_lock($1) AS ok', [RETENTION_LOCK])).rows[0] as { ok: boolean };
      if (!locked.ok) return 0;
      try {
        let removed = rowsOnly ? 0 : (await client.query('DELETE FROM access_log WHERE ts < $1', [now - r.maxAgeMs])).rowCount ?? 0;
        const rows = Number(((await client.query('SELECT count(*) AS n FROM access_log')).rows[0] as { n: number }).n);
        if (rows > r.maxRows) {
          const cut = (await client.query('SELECT ts FROM access_log ORDER BY ts LIMIT 1 OFFSET $1', [rows - r.maxRows - 1])).rows[0] as { ts: number } | undefined;
          if (cut !== undefined) removed += (await client.query('DELETE FROM access_log WHERE ts <= $1', [cut.ts])).rowCount ?? 0;
        }
        if (rowsOnly) return removed;
        for (const { table, family, bucketMs } of ROLLUP_TABLES) {
          let before = now - (bucketMs === MINUTE_MS ? r.minuteRollupMaxAgeMs : r.rollupMaxAgeMs);
          await client.query(`DELETE FROM ${table} WHERE bucket < $1`, [before]);
          const rollups = Number(((await client.query(`SELECT count(*) AS n FROM ${table}`)).rows[0] as { n: number }).n);
          if (rollups > r.rollupMaxRows) {
            const cut = (await client.query(`SELECT bucket FROM ${table} ORDER BY bucket LIMIT 1 OFFSET $1`, [rollups - r.rollupMaxRows - 1])).rows[0] as { bucket: number } | undefined;
            if (cut !== undefined) {
              await client.query(`DELETE FROM ${table} WHERE bucket <= $1`, [cut.bucket]);
              before = Math.max(before, cut.bucket + 1);
            }
          }
          if (bucketMs === MINUTE_MS) {
            await client.query('INSERT INTO rollup_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = GREATEST(rollup_meta.value, excluded.value)', [minutesFromName(family), before]);
          }
        }
        return removed;
      } finally {
        await client.query('SELECT pg_advisory_unlock($1)', [RETENTION_LOCK]);
      }
    } finally {
      client.release();
    }
  }

  async stats(): Promise<LogStoreStats> {
    const [row] = await this.all(`SELECT (SELECT count(*) FROM access_log) AS n, ${ROLLUP_TABLES.map((t) => `(SELECT count(*) FROM ${t.table})`).join(' + ')} AS r,
      (SELECT min(ts) FROM access_log) AS oldest, (SELECT max(ts) FROM access_log) AS newest,
      ${['access_log', ...ROLLUP_TABLES.map((t) => t.table)].map((t) => `pg_total_relation_size('${t}')`).join(' + ')} AS bytes`, []);
    return {
      rows: Number(row!['n']),
      rollupRows: Number(row!['r']),
      oldest: row!['oldest'] === null ? undefined : Number(row!['oldest']),
      newest: row!['newest'] === null ? undefined : Number(row!['newest']),
      bytes: Number(row!['bytes']),
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    await this.retaining?.catch(() => undefined);
    await this.pool.end();
  }

  private open(): void {
    if (this.closed) throw new Error('access-log store (postgres) is closed');
  }
}

export function openPostgresLogStore(opts: PostgresLogStoreOptions): Promise<PostgresLogStore> {
  return PostgresLogStore.open(opts);
}

/** A connection URL without its password, for messages and logs. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return '(an unparsable URL)';
  }
}
