// Opens the access-log store a flag names: `sqlite:PATH` (the default, a file under the
// pilot's data directory, served by a worker thread) or a `postgres://` / `postgresql://` URL
// (several pilots, one database).
import path from 'node:path';
import { openPostgresLogStore } from './postgres-store.ts';
import { SqliteThreadLogStore } from './sqlite-thread-store.ts';
import type { LogStore, RetentionPolicy } from './types.ts';

export class LogStoreSpecError extends Error {
  override name = 'LogStoreSpecError';
}

export interface OpenLogStoreOptions {
  retention?: Partial<RetentionPolicy>;
  /** How often retention runs on its own (default 60 s; 0: only when asked). */
  retentionIntervalMs?: number;
}

/** The file name of the embedded store inside a data directory. */
export const DEFAULT_SQLITE_FILE = 'access-log.db';

/** The default spec for a pilot's data directory: `sqlite:DIR/access-log.db`. */
export function defaultLogStoreSpec(dataDir: string): string {
  return `sqlite:${path.join(dataDir, DEFAULT_SQLITE_FILE)}`;
}

/**
 * `sqlite:PATH` (relative paths from the working directory) or `postgres://USER:PASSWORD@HOST:PORT/DB`.
 * Throws LogStoreSpecError for anything else, and the backend's error when it cannot open.
 */
export async function openLogStore(spec: string, opts: OpenLogStoreOptions = {}): Promise<LogStore> {
  const common = {
    ...(opts.retention !== undefined ? { retention: opts.retention } : {}),
    ...(opts.retentionIntervalMs !== undefined ? { retentionIntervalMs: opts.retentionIntervalMs } : {}),
  };
  if (spec.startsWith('sqlite:')) {
    const file = spec.slice('sqlite:'.length);
    if (file === '') throw new LogStoreSpecError('access-log store: sqlite: needs a file path (sqlite:/var/lib/sextant/access-log.db)');
    return SqliteThreadLogStore.open({ path: file, ...common });
  }
  if (spec.startsWith('postgres://') || spec.startsWith('postgresql://')) {
    return openPostgresLogStore({ url: spec, ...common });
  }
  throw new LogStoreSpecError(`access-log store: ${JSON.stringify(spec.replace(/:[^:@/]*@/, ':***@'))} is neither sqlite:PATH nor a postgres:// URL`);
}
