// The two stores the suites run against: node:sqlite in a temp directory, and a real
// PostgreSQL started on first use (a free loopback port, a temp data directory), one fresh
// database per store; closeBackends() stops the server and removes the directories.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PostgresLogStore, SqliteLogStore, SqliteThreadLogStore } from '../../src/telemetry/index.ts';
import type { LogStore, RetentionPolicy } from '../../src/telemetry/index.ts';
import { postgresUnavailableReason, startPostgres } from '../helpers/postgres.ts';
import type { PostgresProcess } from '../helpers/postgres.ts';

const dirs: string[] = [];
export function tempDir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'sextant-logstore-'));
  dirs.push(d);
  return d;
}

export interface Backend {
  name: 'sqlite' | 'sqlite (worker thread)' | 'postgres';
  skip: string | undefined;
  open(retention?: Partial<RetentionPolicy>): Promise<LogStore>;
  /** A second store on the same data (another pilot, or the same file reopened). */
  reopen(store: LogStore): Promise<LogStore>;
}

let pgServer: PostgresProcess | undefined;
let dbSeq = 0;
const pgReason = postgresUnavailableReason();
const sqlitePaths = new WeakMap<LogStore, string>();
const pgUrls = new WeakMap<LogStore, string>();

export const backends: Backend[] = [
  {
    name: 'sqlite',
    skip: undefined,
    async open(retention) {
      const file = path.join(tempDir(), 'data', 'access-log.db');
      const s = new SqliteLogStore({ path: file, retentionIntervalMs: 0, ...(retention !== undefined ? { retention } : {}) });
      sqlitePaths.set(s, file);
      return s;
    },
    async reopen(store) {
      return new SqliteLogStore({ path: sqlitePaths.get(store)!, retentionIntervalMs: 0 });
    },
  },
  {
    name: 'sqlite (worker thread)',
    skip: undefined,
    async open(retention) {
      const file = path.join(tempDir(), 'data', 'access-log.db');
      const s = await SqliteThreadLogStore.open({ path: file, retentionIntervalMs: 0, ...(retention !== undefined ? { retention } : {}) });
      sqlitePaths.set(s, file);
      return s;
    },
    async reopen(store) {
      return SqliteThreadLogStore.open({ path: sqlitePaths.get(store)!, retentionIntervalMs: 0 });
    },
  },
  {
    name: 'postgres',
    skip: pgReason === undefined ? undefined : `PostgreSQL is not available: ${pgReason}`,
    async open(retention) {
      pgServer ??= await startPostgres();
      const url = await pgServer.createDatabase(`logstore_${++dbSeq}`);
      const s = await PostgresLogStore.open({ url, retentionIntervalMs: 0, ...(retention !== undefined ? { retention } : {}) });
      pgUrls.set(s, url);
      return s;
    },
    async reopen(store) {
      return PostgresLogStore.open({ url: pgUrls.get(store)!, retentionIntervalMs: 0 });
    },
  },
];

export function backend(name: Backend['name']): Backend {
  return backends.find((b) => b.name === name)!;
}

export async function closeBackends(): Promise<void> {
  await pgServer?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}
