// `sextant logs`: the access logs the pilot's store holds, newest first, filtered by service,
// operation, path, caller IP, response class, origin (app, proxy, client) and time, from the
// pilot's monitoring API (/api/v1/access/logs), a page at a time up to --limit.
import type { Command } from 'commander';
import type { AccessLogEntry } from '../telemetry/index.ts';
import { UsageError } from './flags.ts';
import { checkOutput, getApi, monitoringApiFlags, rangeParams, reportRemote, time, type MonitoringApiFlags } from './monitoring-api.ts';
import { table } from './table.ts';

interface LogsFlags extends MonitoringApiFlags {
  service?: string;
  operation?: string;
  path?: string;
  sourceIp?: string;
  code?: string;
  origin?: string;
  reporter?: string;
  since?: string;
  from?: string;
  to?: string;
  limit: string;
}

/** The most entries one command prints (pages of 1,000 from the pilot). */
export const MAX_LOG_ENTRIES = 100_000;
const PAGE = 1000;

const FLAG_OF: Readonly<Record<string, string>> = {
  service: '--service', operation: '--operation', path: '--path', sourceIp: '--source-ip', codeClass: '--code', origin: '--origin',
  reporter: '--reporter', since: '--since', from: '--from', to: '--to',
};

export function registerLogs(program: Command): void {
  monitoringApiFlags(program.command('logs').description("access logs from the pilot's store, newest first (needs the pilot's monitoring API: --api-tokens or --dashboard-insecure)"))
    .option('--service <host>', 'only requests to this service host, e.g. reviews.default.svc.cluster.local')
    .option('--operation <operation>', 'only this operation, e.g. /orders/{id}')
    .option('--path <path>', 'only this path (without the query)')
    .option('--source-ip <ip>', 'only requests from this caller IP')
    .option('--code <class>', 'only responses of this class: 2xx, 3xx, 4xx or 5xx')
    .option('--origin <origin>', 'only responses made by: app, proxy (NR, UF, UO, UH…) or client (DC)')
    .option('--reporter <reporter>', 'only entries reported by the source or the destination sidecar (both report a call)')
    .option('--since <duration>', 'look back this far, e.g. 15m, 1h, 7d (default 1h)')
    .option('--from <time>', 'start (RFC 3339 or ms since the epoch) instead of --since')
    .option('--to <time>', 'end (RFC 3339 or ms since the epoch; default now)')
    .option('--limit <n>', `at most this many entries (up to ${MAX_LOG_ENTRIES})`, '100')
    .action(reportRemote(async (f: LogsFlags) => {
      checkOutput(f);
      const entries = await fetchLogs(f);
      process.stdout.write(f.output === 'json' ? `${JSON.stringify(entries, null, 2)}\n` : formatLogs(entries));
    }));
}

async function fetchLogs(f: LogsFlags): Promise<AccessLogEntry[]> {
  if (!/^\d+$/.test(f.limit) || Number(f.limit) < 1 || Number(f.limit) > MAX_LOG_ENTRIES) throw new UsageError(`invalid --limit "${f.limit}": expected a whole number from 1 to ${MAX_LOG_ENTRIES}`);
  const limit = Number(f.limit);
  const params = {
    service: f.service, operation: f.operation, path: f.path, sourceIp: f.sourceIp, codeClass: f.code, origin: f.origin, reporter: f.reporter,
    ...rangeParams(f),
  };
  // The window is fixed by the first page's answer, so later pages read the same one.
  const out: AccessLogEntry[] = [];
  let cursor: string | undefined;
  let window: { from: number; to: number } | undefined;
  do {
    const page = await getApi(f, 'access/logs', {
      ...params,
      ...(window !== undefined ? { since: undefined, from: String(window.from), to: String(window.to) } : {}),
      limit: String(Math.min(PAGE, limit - out.length)),
      cursor,
    }, FLAG_OF);
    window ??= page['window'] as { from: number; to: number };
    out.push(...(page['entries'] as AccessLogEntry[]));
    cursor = typeof page['next'] === 'string' ? page['next'] : undefined;
  } while (cursor !== undefined && out.length < limit);
  return out;
}

export function formatLogs(entries: readonly AccessLogEntry[]): string {
  if (entries.length === 0) return 'no access-log entries match\n';
  const rows = entries.map((e) => [
    time(e.time), e.reporter, e.sourceWorkload !== '' ? `${e.sourceWorkload}.${e.sourceNamespace}` : e.sourceIp, e.destinationService || 'unknown',
    `${e.method} ${e.path}`, String(e.responseCode), e.responseFlags || '-', e.origin, String(Math.round(e.durationMs)),
  ]);
  return `${table(['TIME', 'REPORTER', 'SOURCE', 'DESTINATION', 'REQUEST', 'CODE', 'FLAGS', 'ORIGIN', 'MS'], rows)}\n`;
}
