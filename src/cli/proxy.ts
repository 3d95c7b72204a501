// `sextant proxy`: runs the sidecar proxy against an xDS server until SIGTERM/SIGINT (which
// drain: stop accepting, finish in-flight requests within the drain period, exit) or
// POST /quitquitquit on the admin port.
import type { Command } from 'commander';
import { pino } from 'pino';
import { parseNodeId, startProxy } from '../proxy/index.ts';
import { parseDurationFlag, UsageError } from './flags.ts';

interface ProxyFlags {
  xds: string;
  id: string;
  ip?: string;
  namespace?: string;
  label: string[];
  meta: string[];
  adminAddress: string;
  statsAddress?: string;
  drainDuration: string;
  passthroughIdle: string;
  /** delta or sotw: checked as commander reads it (flags.ts). */
  xdsProtocol: 'delta' | 'sotw';
  logLevel: string;
}

function keyValues(list: string[], flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list) {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new UsageError(`invalid ${flag} "${kv}": expected KEY=VALUE`);
    out[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return out;
}

const collect = (v: string, prev: string[]): string[] => [...prev, v];

export function registerProxy(program: Command): void {
  program
    .command('proxy')
    .description('run the sidecar proxy: listeners, routes and clusters come from the xDS server')
    .requiredOption('--xds <host:port>', 'xDS (ADS) server address, e.g. 127.0.0.1:15010')
    .requiredOption('--id <node-id>', 'node id as istio-agent sends it: sidecar~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local')
    .option('--ip <addr>', 'workload IP (default: the one in the node id)')
    .option('--namespace <ns>', 'workload namespace (default: the one in the node id)')
    .option('--label <key=value>', 'workload label (repeatable)', collect, [])
    .option('--meta <key=value>', 'extra node metadata (repeatable); a JSON value is parsed', collect, [])
    .option('--admin-address <host:port>', 'admin endpoints (keep on loopback)', '127.0.0.1:15000')
    .option('--stats-address <host:port>', 'Prometheus endpoint serving /stats/prometheus, e.g. 0.0.0.0:15090')
    .option('--drain-duration <duration>', 'how long in-flight requests may finish after SIGTERM', '5s')
    .option('--passthrough-idle <duration>', 'idle time after which passthrough destinations are freed', '5s')
    .option('--xds-protocol <delta|sotw>', 'ADS flavour to try first (delta falls back to sotw)', 'delta')
    .option('--log-level <level>', 'log level: fatal, error, warn, info, debug', 'info')
    .action(async (flags: ProxyFlags) => {
      // Flag values are checked before anything starts: a bad one is a usage error (exit 2).
      try {
        parseNodeId(flags.id);
      } catch (err) {
        throw new UsageError((err as Error).message);
      }
      const labels = keyValues(flags.label, '--label');
      const drainMs = parseDurationFlag(flags.drainDuration, '--drain-duration');
      const passthroughIdleMs = parseDurationFlag(flags.passthroughIdle, '--passthrough-idle');
      const logger = pino({ name: 'proxy', level: flags.logLevel });
      const meta: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(keyValues(flags.meta, '--meta'))) {
        try {
          meta[k] = /^[[{]/.test(v) ? JSON.parse(v) : v;
        } catch {
          meta[k] = v;
        }
      }
      const proxy = await startProxy({
        xds: flags.xds,
        id: flags.id,
        ...(flags.ip !== undefined ? { ip: flags.ip } : {}),
        ...(flags.namespace !== undefined ? { namespace: flags.namespace } : {}),
        labels,
        metadata: meta,
        adminAddress: flags.adminAddress,
        ...(flags.statsAddress !== undefined ? { statsAddress: flags.statsAddress } : {}),
        drainMs,
        passthroughIdleMs,
        protocol: flags.xdsProtocol,
        logger,
      });
      const stop = (signal: string): void => {
        logger.info({ signal }, 'proxy stopping');
        void proxy.drain();
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
      await proxy.closed;
      // Give pino a tick to flush the last lines.
      setImmediate(() => process.exit(0));
    });
}
