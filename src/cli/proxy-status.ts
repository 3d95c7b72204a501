// `sextant proxy-status`: each proxy connected to a pilot, with SYNCED / STALE / NACKED per
// type, read from the pilot's /debug/syncz (as `istioctl proxy-status` reads istiod's).
import type { Command } from 'commander';
import type { ProxySyncStatus } from '../pilot/xds/index.ts';

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
    .action(async (proxy: string | undefined, flags: { pilot: string; output: string }) => {
      try {
        process.stdout.write(await proxyStatusText(proxy, flags));
      } catch (err) {
        process.stderr.write(`sextant proxy-status: ${err instanceof Error ? err.message : String(err)}\n`);
        process.exitCode = 1;
      }
    });
}

/** Fetches the pilot's /debug/syncz and renders it as a table or JSON. */
export async function proxyStatusText(proxy: string | undefined, flags: { pilot: string; output: string }): Promise<string> {
  if (flags.output !== 'table' && flags.output !== 'json') throw new Error(`invalid --output "${flags.output}": expected table or json`);
  const base = /^https?:\/\//.test(flags.pilot) ? flags.pilot : `http://${flags.pilot}`;
  const url = new URL('/debug/syncz', base);
  if (proxy !== undefined) url.searchParams.set('proxy', proxy);
  let res: Response;
  try {
    res = await fetch(url);
  } catch (err) {
    throw new Error(`cannot reach the pilot at ${base}: ${err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err)}`, { cause: err });
  }
  if (!res.ok) throw new Error(`pilot at ${base} answered ${res.status} for /debug/syncz`);
  const statuses = (await res.json()) as ProxySyncStatus[];
  return flags.output === 'json' ? JSON.stringify(statuses, null, 2) + '\n' : formatProxyStatus(statuses);
}
