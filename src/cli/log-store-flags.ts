// `sextant pilot`'s access-log store flags: where the ALS sink writes (`--log-store`, by default
// an embedded node:sqlite file under the pilot's data directory) and how long entries are kept.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { homedir } from 'node:os';
import type pino from 'pino';
import { UsageError } from './flags.ts';
import { LogStoreSpecError, defaultLogStoreSpec, openLogStore } from '../telemetry/index.ts';
import type { LogStore, RetentionPolicy } from '../telemetry/index.ts';

export interface LogStoreFlags {
  logStore?: string;
  logRetentionAge: string;
  logRetentionRows: string;
  logRollupRetentionAge: string;
}

/** The pilot's data directory: $SEXTANT_DATA_DIR, else ~/.sextant (as the CA's root lives in it). */
export function pilotDataDir(): string {
  const data = process.env['SEXTANT_DATA_DIR'];
  return data !== undefined && data !== '' ? data : path.join(homedir(), '.sextant');
}

/** The flags as `sextant pilot` declares them: [flags, description, default]. */
export const LOG_STORE_OPTIONS: readonly [string, string, string?][] = [
  ['--log-store <store>', `where the access-log sink (ALS on the xDS port) writes: sqlite:FILE, postgres://USER:PASSWORD@HOST:PORT/DB (several pilots, one database), or none (default: ${defaultLogStoreSpec('$SEXTANT_DATA_DIR')}, ~/.sextant without it)`],
  ['--log-retention-age <duration>', 'access-log entries older than this are removed (e.g. 12h, 7d)', '7d'],
  ['--log-retention-rows <n>', 'access-log entries kept at most; the oldest go first', '1000000'],
  ['--log-rollup-retention-age <duration>', 'per-minute rollups (the boards and operations) older than this are removed', '30d'],
];

/** `500ms`, `30s`, `10m`, `12h`, `7d` → ms. */
export function parseRetention(value: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(value.trim());
  if (m === null) throw new UsageError(`invalid ${flag} "${value}": expected a duration like 30m, 12h or 7d`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
  const ms = Math.round(Number(m[1]) * unit);
  if (ms < 1000) throw new UsageError(`invalid ${flag} "${value}": at least 1s`);
  return ms;
}

/** The retention policy the flags ask for (a usage error names the flag). */
export function retentionFromFlags(flags: LogStoreFlags): RetentionPolicy {
  const rows = Number(flags.logRetentionRows);
  if (!/^\d+$/.test(flags.logRetentionRows) || !Number.isSafeInteger(rows) || rows < 1) throw new UsageError(`invalid --log-retention-rows "${flags.logRetentionRows}": expected an integer >= 1`);
  return {
    maxAgeMs: parseRetention(flags.logRetentionAge, '--log-retention-age'),
    maxRows: rows,
    rollupMaxAgeMs: parseRetention(flags.logRollupRetentionAge, '--log-rollup-retention-age'),
  };
}

/**
 * Opens the store the flags name. The default file is optional like the CA's default directory:
 * when it cannot be opened (a read-only home) the pilot runs without a sink and says so; a store
 * given with --log-store must open, or the start fails.
 */
export async function openPilotLogStore(flags: LogStoreFlags, logger: pino.Logger): Promise<LogStore | undefined> {
  const retention = retentionFromFlags(flags);
  if (flags.logStore === 'none') return undefined;
  if (flags.logStore !== undefined) {
    try {
      return await openLogStore(flags.logStore, { retention });
    } catch (err) {
      if (err instanceof LogStoreSpecError) throw new UsageError(`--log-store: ${err.message}`);
      throw new Error(`--log-store: cannot open the access-log store: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }
  const dir = pilotDataDir();
  const spec = defaultLogStoreSpec(dir);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const store = await openLogStore(spec, { retention });
    logger.info({ store: spec }, 'access-log store open');
    return store;
  } catch (err) {
    logger.error({ store: spec, err: err instanceof Error ? err.message : String(err) }, 'access-log store not opened: the access-log sink is off (give --log-store, or --log-store none)');
    return undefined;
  }
}
