// `sextant peers`: who called a path or an operation, and which destinations served it, over a
// window (e.g. the last week): distinct source and destination IPs and workloads with counts,
// first and last seen, from the pilot's monitoring API (/api/v1/access/peers).
import type { Command } from 'commander';
import type { PeerRow } from '../telemetry/index.ts';
import { UsageError } from './flags.ts';
import { checkOutput, getApi, monitoringApiFlags, rangeParams, reportRemote, time, type MonitoringApiFlags } from './monitoring-api.ts';
import { table } from './table.ts';

interface PeersFlags extends MonitoringApiFlags {
  path?: string;
  operation?: string;
  service?: string;
  since?: string;
  from?: string;
  to?: string;
  limit?: string;
}

const FLAG_OF: Readonly<Record<string, string>> = {
  path: '--path', operation: '--operation', service: '--service', since: '--since', from: '--from', to: '--to', limit: '--limit',
};

export function registerPeers(program: Command): void {
  monitoringApiFlags(program.command('peers').description("the callers and destinations of a path or an operation, with counts, first and last seen (from the pilot's access-log store)"))
    .option('--path <path>', 'the path, e.g. /orders/1')
    .option('--operation <operation>', 'the operation instead, e.g. /orders/{id}')
    .option('--service <host>', 'only requests to this service host')
    .option('--since <duration>', 'look back this far, e.g. 1h, 24h, 7d (default 1h)')
    .option('--from <time>', 'start (RFC 3339 or ms since the epoch) instead of --since')
    .option('--to <time>', 'end (RFC 3339 or ms since the epoch; default now)')
    .option('--limit <n>', 'at most this many rows, the busiest first (up to 1000)')
    .action(reportRemote(async (f: PeersFlags) => {
      checkOutput(f);
      if ((f.path === undefined) === (f.operation === undefined)) throw new UsageError('give exactly one of --path and --operation');
      const answer = await getApi(f, 'access/peers', { path: f.path, operation: f.operation, service: f.service, limit: f.limit, ...rangeParams(f) }, FLAG_OF);
      const peers = answer['peers'] as PeerRow[];
      process.stdout.write(f.output === 'json' ? `${JSON.stringify(answer, null, 2)}\n` : formatPeers(peers, f.path ?? f.operation ?? ''));
    }));
}

export function formatPeers(peers: readonly PeerRow[], what: string): string {
  if (peers.length === 0) return `nobody called ${what} in that window\n`;
  const rows = peers.map((p) => [
    p.sourceIp, p.sourceWorkload !== '' ? `${p.sourceWorkload}.${p.sourceNamespace}` : '-', p.destinationIp || '-', p.destinationWorkload || '-',
    p.destinationService || 'unknown', String(p.count), time(p.firstSeen), time(p.lastSeen),
  ]);
  return `${table(['SOURCE IP', 'SOURCE WORKLOAD', 'DESTINATION IP', 'DESTINATION WORKLOAD', 'SERVICE', 'REQUESTS', 'FIRST SEEN', 'LAST SEEN'], rows)}\n`;
}
