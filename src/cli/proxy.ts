// `sextant proxy`: runs the sidecar proxy against an xDS server until SIGTERM/SIGINT (which
// drain: stop accepting, finish in-flight requests within the drain period, exit) or
// POST /quitquitquit on the admin port.
import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { pino } from 'pino';
import { parseNodeId, startProxy } from '../proxy/index.ts';
import { parseDurationFlag, UsageError } from './flags.ts';

interface ProxyFlags {
  xds: string;
  id: string;
  ip?: string;
  namespace?: string;
  clusterId?: string;
  network?: string;
  dataCentre?: string;
  lane?: string;
  label: string[];
  meta: string[];
  adminAddress: string;
  statsAddress?: string;
  healthAddress?: string;
  drainDuration: string;
  passthroughIdle: string;
  /** delta or sotw: checked as commander reads it (flags.ts). */
  xdsProtocol: 'delta' | 'sotw';
  logLevel: string;
  preserveSourceRanges?: string;
  serviceAccount?: string;
  caAddress?: string;
  trustDomain: string;
  certTtl: string;
  caTokenFile?: string;
  xdsRootCert?: string;
  xdsServerName?: string;
  accessLogBufferEntries: string;
  accessLogBufferBytes: string;
}

function caOptions(flags: ProxyFlags & { serviceAccount?: string }): NonNullable<Parameters<typeof startProxy>[0]['ca']> {
  const hours = /^(\d+(?:\.\d+)?)h$/.exec(flags.certTtl.trim());
  const ttlMs = hours !== null ? Number(hours[1]) * 3_600_000 : parseDurationFlag(flags.certTtl, '--cert-ttl');
  if (ttlMs < 2000) throw new UsageError(`invalid --cert-ttl "${flags.certTtl}": at least 2s`);
  let token: string | undefined;
  if (flags.caTokenFile !== undefined) {
    try {
      token = readFileSync(flags.caTokenFile, 'utf8').trim();
    } catch (err) {
      throw new UsageError(`--ca-token-file ${flags.caTokenFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  return {
    serviceAccount: flags.serviceAccount!,
    trustDomain: flags.trustDomain,
    ttlSeconds: Math.round(ttlMs / 1000),
    ...(flags.caAddress !== undefined ? { address: flags.caAddress } : {}),
    ...(token !== undefined ? { token } : {}),
  };
}

function readRootCert(file: string): string {
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`--xds-root-cert ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new UsageError(`--xds-root-cert ${file}: not a PEM certificate`);
  return pem;
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

function positiveInteger(v: string, flag: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isSafeInteger(n) || n < 1) throw new UsageError(`invalid ${flag} "${v}": expected an integer >= 1`);
  return n;
}

/** A flag's value, else istio-agent's environment variable for the same node metadata. */
function envOrFlag<K extends string>(flag: string | undefined, env: string, key: K): Partial<Record<K, string>> {
  const value = flag ?? process.env[env];
  return value !== undefined && value !== '' ? ({ [key]: value } as Partial<Record<K, string>>) : {};
}

export function registerProxy(program: Command): void {
  program
    .command('proxy')
    .description('run the sidecar proxy: listeners, routes and clusters come from the xDS server')
    .requiredOption('--xds <host:port,...>', 'xDS (ADS) server addresses in order of preference, e.g. 127.0.0.1:15010 or pilot-a:15010,pilot-b:15010: one is used at a time, the next when it is lost')
    .requiredOption('--id <node-id>', 'node id as istio-agent sends it: sidecar~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local')
    .option('--ip <addr>', 'workload IP (default: the one in the node id)')
    .option('--namespace <ns>', 'workload namespace (default: the one in the node id)')
    .option('--cluster-id <id>', 'cluster the workload runs in, sent as node metadata CLUSTER_ID (default: $ISTIO_META_CLUSTER_ID, else Kubernetes)')
    .option('--network <name>', 'network the workload is on, sent as node metadata NETWORK (default: $ISTIO_META_NETWORK)')
    .option('--data-centre <locality>', 'the workload\'s data centre, a locality REGION/ZONE[/SUBZONE] as its instances are registered: endpoints there come first (default: $SEXTANT_DC)')
    .option('--lane <name>', 'the workload\'s lane, as label sextant.io/lane (default: $SEXTANT_LANE)')
    .option('--label <key=value>', 'workload label (repeatable)', collect, [])
    .option('--meta <key=value>', 'extra node metadata (repeatable); a JSON value is parsed', collect, [])
    .option('--admin-address <host:port>', 'admin endpoints (keep on loopback)', '127.0.0.1:15000')
    .option('--stats-address <host:port>', 'Prometheus endpoint serving /stats/prometheus, e.g. 0.0.0.0:15090')
    .option('--health-address <host:port>', 'readiness endpoint /healthz/ready for probes and `sextant wait`, e.g. 0.0.0.0:15021 in a pod')
    .option('--drain-duration <duration>', 'how long in-flight requests may finish after SIGTERM', '5s')
    .option('--passthrough-idle <duration>', 'idle time after which passthrough destinations are freed', '5s')
    .option('--xds-protocol <delta|sotw>', 'ADS flavour to try first (delta falls back to sotw)', 'delta')
    .option('--log-level <level>', 'log level: fatal, error, warn, info, debug', 'info')
    .option('--preserve-source-ranges <cidrs>', 'under REDIRECT capture: callers in these ranges keep their IP as the app\'s TCP peer; as given to `sextant iptables` (default: $SEXTANT_PRESERVE_SOURCE_RANGES)')
    .option('--service-account <name>', 'the workload\'s service account: turns on mesh mTLS with the certificate spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/NAME from the CA')
    .option('--ca-address <host:port>', 'Istio CreateCertificate server (default: the first --xds server, where sextant pilot serves it)')
    .option('--trust-domain <domain>', 'the mesh\'s trust domain', 'cluster.local')
    .option('--cert-ttl <duration>', 'requested workload certificate lifetime; rotated at half of it (Istio\'s SECRET_TTL)', '24h')
    .option('--ca-token-file <file>', 'bootstrap token sent to the CA (authorization: Bearer)')
    .option('--xds-root-cert <file>', 'a closed control plane: xDS and the CA over TLS, the pilot checked against this root (the pilot\'s CA_DIR/root-cert.pem); the workload certificate (--service-account, default "default"; first one with --ca-token-file) is presented on every xDS stream')
    .option('--xds-server-name <name>', 'the name the pilot\'s certificate must carry', 'istiod.istio-system.svc')
    .option('--access-log-buffer-entries <n>', 'ALS access logs: entries held per stream while the sink is down or slow; more are dropped and counted (sextant_accesslog_dropped_total)', '10000')
    .option('--access-log-buffer-bytes <n>', 'ALS access logs: bytes held per stream while the sink is down or slow', '4194304')
    .action(async (flags: ProxyFlags) => {
      // Flag values are checked before anything starts: a bad one is a usage error (exit 2).
      try {
        parseNodeId(flags.id);
      } catch (err) {
        throw new UsageError((err as Error).message);
      }
      const labels = keyValues(flags.label, '--label');
      // active-active and lanes: the data centre and the lane, from flags or the environment
      const dataCentre = flags.dataCentre ?? (process.env['SEXTANT_DC'] || undefined);
      if (dataCentre !== undefined && !/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]*){0,2}$/.test(dataCentre)) throw new UsageError(`invalid ${flags.dataCentre !== undefined ? '--data-centre' : 'SEXTANT_DC'} "${dataCentre}": expected a locality REGION[/ZONE[/SUBZONE]]`);
      const lane = flags.lane ?? (process.env['SEXTANT_LANE'] || undefined);
      if (lane !== undefined && !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(lane)) throw new UsageError(`invalid ${flags.lane !== undefined ? '--lane' : 'SEXTANT_LANE'} "${lane}": expected lowercase labels joined by dots, e.g. s2 or s2.alice`);
      const drainMs = parseDurationFlag(flags.drainDuration, '--drain-duration');
      const passthroughIdleMs = parseDurationFlag(flags.passthroughIdle, '--passthrough-idle');
      const accessLogBuffer = {
        entries: positiveInteger(flags.accessLogBufferEntries, '--access-log-buffer-entries'),
        bytes: positiveInteger(flags.accessLogBufferBytes, '--access-log-buffer-bytes'),
      };
      const logger = pino({ name: 'proxy', level: flags.logLevel });
      const meta: Record<string, unknown> = {};
      // istio-agent's convention: every ISTIO_META_X variable is node metadata X (e.g.
      // ISTIO_META_INTERCEPTION_MODE=REDIRECT, ISTIO_META_DNS_CAPTURE=true); --meta wins.
      for (const [k, v] of Object.entries(process.env)) if (k.startsWith('ISTIO_META_') && k.length > 11 && v) meta[k.slice(11)] = v;
      for (const [k, v] of Object.entries(keyValues(flags.meta, '--meta'))) {
        try {
          meta[k] = /^[[{]/.test(v) ? JSON.parse(v) : v;
        } catch {
          meta[k] = v;
        }
      }
      const proxy = await startProxy({
        xds: flags.xds.split(',').map((s) => s.trim()),
        id: flags.id,
        ...(flags.ip !== undefined ? { ip: flags.ip } : {}),
        ...(flags.namespace !== undefined ? { namespace: flags.namespace } : {}),
        ...envOrFlag(flags.clusterId, 'ISTIO_META_CLUSTER_ID', 'clusterId'),
        ...envOrFlag(flags.network, 'ISTIO_META_NETWORK', 'network'),
        labels,
        ...(dataCentre !== undefined ? { dataCentre } : {}),
        ...(lane !== undefined ? { lane } : {}),
        metadata: meta,
        preserveSourceRanges: (flags.preserveSourceRanges ?? process.env['SEXTANT_PRESERVE_SOURCE_RANGES'] ?? '').split(',').map((r) => r.trim()).filter((r) => r !== ''),
        adminAddress: flags.adminAddress,
        ...(flags.statsAddress !== undefined ? { statsAddress: flags.statsAddress } : {}),
        ...(flags.healthAddress !== undefined ? { healthAddress: flags.healthAddress } : {}),
        drainMs,
        passthroughIdleMs,
        protocol: flags.xdsProtocol,
        logger,
        // a closed control plane needs the workload's identity: the service account defaults to Istio's "default"
        ...(flags.serviceAccount !== undefined || flags.xdsRootCert !== undefined ? { ca: caOptions({ ...flags, serviceAccount: flags.serviceAccount ?? 'default' }) } : {}),
        ...(flags.xdsRootCert !== undefined ? { xdsTls: { rootPem: readRootCert(flags.xdsRootCert), ...(flags.xdsServerName !== undefined ? { serverName: flags.xdsServerName } : {}) } } : {}),
        accessLogBuffer,
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
