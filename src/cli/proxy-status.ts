// `sextant proxy-status`: each proxy connected to a pilot, with SYNCED / STALE / NACKED per
// type, read from the pilot's /debug/syncz (as `istioctl proxy-status` reads istiod's).
import type { Command } from 'commander';
import type { ProxySyncStatus } from '../pilot/xds/index.ts';
import { UsageError } from './flags.ts';
import { fetchJson, isRecord, notExpected, RemoteError } from './remote-json.ts';
import { pilotToken } from './monitoring-api.ts';

const TYPES = ['CDS', 'LDS', 'EDS', 'RDS'] as const;

/** The table `proxy-status` prints, one row per connection, then any NACK messages. */
export function formatProxyStatus(statuses: readonly ProxySyncStatus[]): string {
  const header = ['NAME', 'PROTOCOL', ...TYPES, 'CONVERGENCE'];
  const rows = [...statuses]
    .sort((a, b) => a.proxy.localeCompare(b.proxy))
    .map((s) => {
      const byType = new Map(s.types.map((t) => [t.type, t]));
      return [
        s.proxy,
        s.protocol === 'delta' ? 'DELTA' : 'SOTW',
        ...TYPES.map((t) => byType.get(t)?.state.replace('_', ' ') ?? 'NOT SENT'),
        s.lastConvergenceMs === undefined ? '-' : `${s.lastConvergenceMs}ms`,
      ];
    });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]! + 3))).join('');
  const out = [line(header), ...rows.map(line)];
  const nacks = statuses.flatMap((s) => s.types.filter((t) => t.state === 'NACKED' && t.lastNack).map((t) => `${s.proxy} ${t.type} NACKED version ${t.lastNack!.version}: ${t.lastNack!.message}`));
  if (nacks.length > 0) out.push('', ...nacks);
  return out.join('\n') + '\n';
}

export function registerProxyStatus(program: Command): void {
  program
    .command('proxy-status')
    .description('show each proxy connected to the pilot and whether its CDS, LDS, EDS, RDS are SYNCED, STALE or NACKED')
    .argument('[proxy]', 'only this proxy id')
    .option('--pilot <url>', "the pilot's monitoring address", 'http://127.0.0.1:15014')
    .option('-o, --output <format>', 'table or json', 'table')
    .option('--token-file <file>', "a token of the pilot's --api-tokens file (default: the one the pilot generated in $SEXTANT_DATA_DIR or ~/.sextant, when there)")
    .action(async (proxy: string | undefined, flags: { pilot: string; output: string; tokenFile?: string }) => {
      try {
        process.stdout.write(await proxyStatusText(proxy, flags));
      } catch (err) {
        if (!(err instanceof RemoteError)) throw err;
        process.stderr.write(`error: ${err.message}\n`);
        process.exitCode = 1;
      }
    });
}

const PILOT = 'a Sextant pilot';

/**
 * Fetches the pilot's /debug/syncz and renders it as a table or JSON. Throws a UsageError
 * for bad flags, a RemoteError naming the URL when no pilot answers there.
 */
export async function proxyStatusText(proxy: string | undefined, flags: { pilot: string; output: string; tokenFile?: string }): Promise<string> {
  if (flags.output !== 'table' && flags.output !== 'json') throw new UsageError(`invalid --output "${flags.output}": expected table or json`);
  let url: URL;
  try {
    url = new URL('/debug/syncz', /^[a-z][a-z0-9+.-]*:\/\//i.test(flags.pilot) ? flags.pilot : `http://${flags.pilot}`);
  } catch {
    throw new UsageError(`invalid --pilot "${flags.pilot}": expected the pilot's monitoring address, e.g. http://127.0.0.1:15014`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`invalid --pilot "${flags.pilot}": expected an http:// or https:// address`);
  if (proxy !== undefined) url.searchParams.set('proxy', proxy);
  const token = pilotToken(flags.tokenFile);
  const answer = await fetchJson(url, PILOT, 5000, token === undefined ? {} : { authorization: `Bearer ${token}` });
  if (!isStatusList(answer.body)) throw notExpected(answer, PILOT, 'not a list of proxy statuses');
  return flags.output === 'json' ? JSON.stringify(answer.body, null, 2) + '\n' : formatProxyStatus(answer.body);
}

/** The shape formatProxyStatus reads: [{proxy, protocol, types: [{type, state}]}]. */
function isStatusList(body: unknown): body is ProxySyncStatus[] {
  return Array.isArray(body) && body.every((s) =>
    isRecord(s) && typeof s['proxy'] === 'string' && typeof s['protocol'] === 'string' && Array.isArray(s['types']) &&
    s['types'].every((t) => isRecord(t) && typeof t['type'] === 'string' && typeof t['state'] === 'string'));
}
