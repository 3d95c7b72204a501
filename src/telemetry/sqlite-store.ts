// The embedded access-log store: one node:sqlite file under the pilot's data directory, in WAL
// mode, written a batch per transaction with prepared statements; rollups by minute and by hour
// kept on insert; retention by age and by rows, with incremental auto-vacuum so the file gives freed
// pages back instead of growing. One writer (this process) per file.
import { mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import type { StatementSync } from 'node:sqlite';
import { EDGE_FAMILY, MINUTE_MS, OP_FAMILY, foldRollups } from './rollup.ts';
import type { RollupFamily } from './rollup.ts';
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
  peerOf, peersSql, rollupColumns, rollupUpsertSql, rollupValues, sumsOf,
} from './sql.ts';
import type { RollupTable } from './sql.ts';
import type { AccessLogEntry, Graph, LogPage, LogQuery, LogStore, LogStoreStats, OperationRow, OperationsQuery, PeerRow, PeersQuery, RetentionPolicy, TimeWindow } from './types.ts';

export interface SqliteLogStoreOptions {
  /** The database file (created with its directory when missing). */
  path: string;
  retention?: Partial<RetentionPolicy>;
  /** How often retention by age runs on its own, default 60 s; 0 turns the timer off. */
  retentionIntervalMs?: number;
}

function schema(): string {
  const text = (c: string): string => `${c} TEXT NOT NULL`;
  const int = (c: string): string => `${c} INTEGER NOT NULL`;
  const logCols = LOG_COLUMNS.map((c) => (['ts', 'dst_port', 'code', 'bytes_in', 'bytes_out'].includes(c) ? int(c) : c === 'duration_ms' ? `${c} REAL NOT NULL` : text(c)));
  const rollup = (t: RollupTable): string => {
    const cols = rollupColumns(t.family).map((c) => (c === 'duration_sum' ? `${c} REAL NOT NULL` : c === 'bucket' || !t.family.keyColumns.includes(c) ? int(c) : text(c)));
    return `CREATE TABLE IF NOT EXISTS ${t.table} (${cols.join(', ')}, PRIMARY KEY (${t.family.keyColumns.join(', ')}));`;
  };
  return `
    CREATE TABLE IF NOT EXISTS access_log (id INTEGER PRIMARY KEY, ${logCols.join(', ')});
    CREATE INDEX IF NOT EXISTS access_log_ts ON access_log (ts);
    CREATE INDEX IF NOT EXISTS access_log_operation_peers ON access_log (operation, ${PEER_INDEX_COLUMNS});
    CREATE INDEX IF NOT EXISTS access_log_path_peers ON access_log (path, ${PEER_INDEX_COLUMNS});
    CREATE INDEX IF NOT EXISTS access_log_service ON access_log (dst_service, ts);
    CREATE INDEX IF NOT EXISTS access_log_src_ip ON access_log (src_ip, ts);
    ${ROLLUP_TABLES.map(rollup).join('\n    ')}
    CREATE TABLE IF NOT EXISTS rollup_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
  `;
}

/** The WAL is cut back to this size after a checkpoint, so it does not keep the largest batch's size. */
const JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024;
/**
 * A checkpoint every 16,384 pages (64 MiB at 4 KiB) rather than SQLite's 1,000: index pages a
 * batch touches again are copied to the database once per checkpoint, and the file is synced
 * less often (synchronous=NORMAL syncs at checkpoints only).
 */
const WAL_CHECKPOINT_PAGES = 16_384;
/** Free pages always kept for reuse (1 MiB at 4 KiB), however small the file. */
const RESERVED_FREE_PAGES = 256;

export class SqliteLogStore implements LogStore {
  readonly kind = 'sqlite' as const;
  readonly path: string;
  readonly retention: Required<RetentionPolicy>;
  private readonly db: DatabaseSync;
  private readonly insertLog: StatementSync;
  private readonly upsertRollups: Array<[StatementSync, RollupTable]>;
  private readonly statements = new Map<string, StatementSync>();
  private readonly timer: NodeJS.Timeout | undefined;
  /** Rows in access_log: counted once on open, then kept by this (the only) writer. */
  private rows: number;
  private closed = false;

  constructor(opts: SqliteLogStoreOptions) {
    this.path = path.resolve(opts.path);
    this.retention = retentionOf(opts.retention);
    mkdirSync(path.dirname(this.path), { recursive: true, mode: 0o700 });
    try {
      this.db = new DatabaseSync(this.path);
    } catch (err) {
      throw new Error(`access-log store ${this.path}: ${(err as Error).message}`, { cause: err });
    }
    try {
      // auto_vacuum only takes effect on a database without tables; an older file is converted once.
      this.db.exec('PRAGMA auto_vacuum = INCREMENTAL');
      if (this.pragma('auto_vacuum') !== 2) this.db.exec('VACUUM');
      this.db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; PRAGMA journal_size_limit = ${JOURNAL_SIZE_LIMIT}; PRAGMA wal_autocheckpoint = ${WAL_CHECKPOINT_PAGES}; PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY`);
      this.db.exec(schema());
      this.insertLog = this.db.prepare(`INSERT INTO access_log (${LOG_COLUMNS.join(', ')}) VALUES (${LOG_COLUMNS.map(() => '?').join(', ')})`);
      this.upsertRollups = ROLLUP_TABLES.map((t) => [this.db.prepare(rollupUpsertSql(t)), t]);
      this.rows = Number((this.db.prepare('SELECT COUNT(*) AS n FROM access_log').get() as { n: number }).n);
    } catch (err) {
      this.db.close();
      throw new Error(`access-log store ${this.path}: ${(err as Error).message}`, { cause: err });
    }
    const every = opts.retentionIntervalMs ?? 60_000;
    if (every > 0) {
      this.timer = setInterval(() => {
        try {
          this.retain(Date.now());
        } catch {
          // A busy or closing database: the next tick tries again.
        }
      }, every);
      this.timer.unref();
    }
  }

  private pragma(name: string): number {
    const row = this.db.prepare(`PRAGMA ${name}`).get() as Record<string, unknown>;
    return Number(Object.values(row)[0]);
  }

  private statement(sql: string): StatementSync {
    let s = this.statements.get(sql);
    if (s === undefined) {
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }

  private transaction<T>(fn: () => T): T {
    this.db.exec('BEGIN IMMEDIATE');
    try {
      const out = fn();
      this.db.exec('COMMIT');
      return out;
    } catch (err) {
      this.db.exec('ROLLBACK');
      throw err;
    }
  }

  async insert(entries: readonly AccessLogEntry[]): Promise<void> {
    this.open();
    if (entries.length === 0) return;
    const bounded = entries.map(boundEntry);
    this.transaction(() => {
      for (const e of bounded) this.insertLog.run(...logValues(e));
      for (const [upsert, t] of this.upsertRollups) {
        for (const r of foldRollups(bounded, t.bucketMs, t.family)) upsert.run(...rollupValues(r));
      }
    });
    this.rows += bounded.length;
    // The row bound holds after every insert: past it, the oldest 5 % go at once, so the cost is
    // paid rarely. Their pages stay in the free list for the next inserts: the file stays as it is.
    if (this.rows > this.retention.maxRows) {
      this.deleteOldest(this.rows - this.retention.maxRows + Math.ceil(this.retention.maxRows / 20));
    }
  }

  async logs(query: LogQuery): Promise<LogPage> {
    this.open();
    const q = checkLogQuery(query);
    const { where, params } = logConditions(q);
    const rows = this.statement(`SELECT * FROM access_log WHERE ${where} ORDER BY ts DESC, id DESC LIMIT ?`).all(...params, q.limit + 1) as Array<Record<string, unknown>>;
    const page: LogPage = { entries: rows.slice(0, q.limit).map(entryOf) };
    if (rows.length > q.limit) {
      const last = rows[q.limit - 1]!;
      page.next = encodeCursor(Number(last['ts']), Number(last['id']));
    }
    return page;
  }

  async peers(query: PeersQuery): Promise<PeerRow[]> {
    this.open();
    const q = checkPeersQuery(query);
    const byPath = q.path !== undefined && q.path !== '';
    const withService = q.service !== undefined && q.service !== '';
    const params: Array<string | number> = [(byPath ? q.path : q.operation)!, q.from, q.to];
    if (withService) params.push(q.service!);
    return (this.statement(peersSql(byPath, withService)).all(...params, q.limit) as Array<Record<string, unknown>>).map(peerOf);
  }

  async operations(query: OperationsQuery): Promise<OperationRow[]> {
    this.open();
    const q = checkOperationsQuery(query);
    const withService = q.service !== undefined && q.service !== '';
    const params = operationsParams(rollupBounds(q, this.minutesFrom(OP_FAMILY)), withService ? q.service : undefined);
    const rows = this.statement(operationsSql(withService)).all(...params) as Array<Record<string, unknown>>;
    return assembleOperations(rows.map((r) => sumsOf(r, operationKeyOf(r))), q);
  }

  async graph(w: TimeWindow): Promise<Graph> {
    this.open();
    checkWindow(w, 'graph');
    const rows = this.statement(GRAPH_SQL).all(...operationsParams(rollupBounds(w, this.minutesFrom(EDGE_FAMILY)), undefined)) as Array<Record<string, unknown>>;
    return assembleGraph(rows.map((r) => sumsOf(r, edgeKeyOf(r))), w);
  }

  /** Where retention has removed minute rollups up to (exclusive), if it has. */
  private minutesFrom(family: RollupFamily): number | undefined {
    return (this.statement('SELECT value FROM rollup_meta WHERE name = ?').get(minutesFromName(family)) as { value: number } | undefined)?.value;
  }

  private minutesRemovedBefore(family: RollupFamily, t: number): void {
    this.statement('INSERT INTO rollup_meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)').run(minutesFromName(family), t);
  }

  async enforceRetention(now = Date.now()): Promise<number> {
    this.open();
    return this.retain(now);
  }

  private retain(now: number): number {
    const r = this.retention;
    let removed = Number(this.statement('DELETE FROM access_log WHERE ts < ?').run(now - r.maxAgeMs).changes);
    this.rows -= removed;
    if (this.rows > r.maxRows) removed += this.deleteOldest(this.rows - r.maxRows);
    for (const { table, family, bucketMs } of ROLLUP_TABLES) {
      let before = now - (bucketMs === MINUTE_MS ? r.minuteRollupMaxAgeMs : r.rollupMaxAgeMs);
      this.statement(`DELETE FROM ${table} WHERE bucket < ?`).run(before);
      const rollups = Number((this.statement(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n);
      if (rollups > r.rollupMaxRows) {
        const cut = this.statement(`SELECT bucket FROM ${table} ORDER BY bucket LIMIT 1 OFFSET ?`).get(rollups - r.rollupMaxRows - 1) as { bucket: number } | undefined;
        if (cut !== undefined) {
          this.statement(`DELETE FROM ${table} WHERE bucket <= ?`).run(cut.bucket);
          before = Math.max(before, cut.bucket + 1);
        }
      }
      if (bucketMs === MINUTE_MS) this.minutesRemovedBefore(family, before);
    }
    this.reclaim();
    return removed;
  }

  /** Deletes at least `n` of the oldest entries (all of the cut-off millisecond); returns how many. */
  private deleteOldest(n: number): number {
    if (n <= 0) return 0;
    const cut = this.statement('SELECT ts FROM access_log ORDER BY ts LIMIT 1 OFFSET ?').get(n - 1) as { ts: number } | undefined;
    const removed = cut === undefined
      ? Number(this.statement('DELETE FROM access_log').run().changes)
      : Number(this.statement('DELETE FROM access_log WHERE ts <= ?').run(cut.ts).changes);
    this.rows -= removed;
    return removed;
  }

  // Gives freed pages back to the file system once more than an eighth of the file is free (a
  // shrinking log, entries gone by age), keeping the few the row bound frees for the next
  // inserts; and cuts the WAL back to nothing.
  private reclaim(): void {
    const free = this.pragma('freelist_count');
    if (free > Math.max(this.pragma('page_count') / 8, RESERVED_FREE_PAGES)) this.db.exec('PRAGMA incremental_vacuum');
    this.db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
  }

  async stats(): Promise<LogStoreStats> {
    this.open();
    const range = this.statement('SELECT MIN(ts) AS oldest, MAX(ts) AS newest FROM access_log').get() as { oldest: number | null; newest: number | null };
    const rollupRows = Number((this.statement(`SELECT ${ROLLUP_TABLES.map((t) => `(SELECT COUNT(*) FROM ${t.table})`).join(' + ')} AS n`).get() as { n: number }).n);
    let bytes = 0;
    for (const f of [this.path, `${this.path}-wal`]) {
      try {
        bytes += statSync(f).size;
      } catch {
        // No WAL right now.
      }
    }
    return { rows: this.rows, rollupRows, oldest: range.oldest ?? undefined, newest: range.newest ?? undefined, bytes };
  }

  /** Pages of the main file and of its free list (for the retention tests). */
  pages(): { pageCount: number; freelistCount: number; pageSize: number } {
    return { pageCount: this.pragma('page_count'), freelistCount: this.pragma('freelist_count'), pageSize: this.pragma('page_size') };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.db.close();
  }

  private open(): void {
    if (this.closed) throw new Error(`access-log store ${this.path} is closed`);
  }
}

export function openSqliteLogStore(opts: SqliteLogStoreOptions): SqliteLogStore {
  return new SqliteLogStore(opts);
}
