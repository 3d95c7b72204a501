// `sextant pilot`: runs the control plane on a config directory or etcd until SIGINT/SIGTERM.
import { statSync } from 'node:fs';
import path from 'node:path';
import { homedir } from 'node:os';
import type { Command } from 'commander';
import { pino } from 'pino';
import { startPilot, MeshConfigError, MeshConfigFile, readMeshConfigFile } from '../pilot/index.ts';
import { parseDurationFlag, UsageError } from './flags.ts';
import { generatedToken, readTokenFile, TokenFileError } from '../registry/api/index.ts';
import { monitoringOptions } from './monitoring-flags.ts';
import { LOG_STORE_OPTIONS, openPilotLogStore } from './log-store-flags.ts';
import type { LogStoreFlags } from './log-store-flags.ts';


interface PilotFlags extends LogStoreFlags {
  configDir?: string;
  meshConfig?: string;
  etcdEndpoints?: string;
  etcdPrefix?: string;
  xdsAddress: string;
  httpAddress: string;
  debounceAfter: string;
  debounceMax: string;
  debounceEndpointsMax: string;
  pushConcurrency: string;
  configDeleteGuard: string;
  configDeleteGuardMin: string;
  id?: string;
  leaderLease: string;
  logLevel: string;
  registrationTokens?: string;
  apiTokens?: string;
  dashboardInsecure?: boolean;
  prometheus?: string;
  wasmMaxModule: string;
  wasmFetchTimeout: string;
  wasmInsecureRegistries?: string;
  ca: boolean;
  caDir: string;
  caCertFile?: string;
  caKeyFile?: string;
  caRootFile?: string;
  caTokens?: string;
  trustDomain: string;
  plaintextXds?: boolean;
  xdsTlsHosts?: string;
}

export function registerPilot(program: Command): void {
  program
    .command('pilot')
    .description('run the xDS control plane: serve Istio config from a directory or etcd to Envoy, sextant proxies and proxyless gRPC')
    .option('--config-dir <dir>', 'directory of Istio YAML config (watched for changes)')
    .option('--mesh-config <file>', 'Istio MeshConfig YAML (istiod\'s mesh file, or the istio ConfigMap): serviceSettings (cluster-local services), rootNamespace, outboundTrafficPolicy, connectTimeout, pathNormalization; re-read when it changes')
    .option('--etcd-endpoints <urls>', 'comma-separated etcd endpoints, e.g. http://127.0.0.1:2379')
    .option('--etcd-prefix <prefix>', 'key prefix of the config in etcd')
    .option('--xds-address <host:port>', 'xDS (ADS, CSDS) gRPC listen address', '127.0.0.1:15010')
    .option('--http-address <host:port>', 'monitoring listen address: /ready, /metrics, /debug/*', '127.0.0.1:15014')
    .option('--debounce-after <duration>', 'quiet time after the last config change before pushing', '100ms')
    .option('--debounce-max <duration>', 'longest a change waits under a steady stream of changes', '10s')
    .option('--debounce-endpoints-max <duration>', 'longest an endpoint-only change (a pull-out, a new instance) waits under a steady stream of them', '200ms')
    .option('--push-concurrency <n>', 'proxies pushed at once', '64')
    .option('--config-delete-guard <fraction>', 'hold a config change that deletes more than this fraction of the resources until it is confirmed (0 or 1: off)', '0.5')
    .option('--config-delete-guard-min <n>', 'changes deleting this many resources or fewer are never held', '10')
    .option('--id <identity>', 'this pilot\'s identity in the leader election and as xDS control plane (default: HOSTNAME-PID)')
    .option('--leader-lease <duration>', 'TTL of the leader election\'s lease on etcd (whole seconds, at least 2s): how long a dead leader keeps the mesh without one', '10s')
    .option('--log-level <level>', 'log level: fatal, error, warn, info, debug', 'info')
    .option('--ca-dir <dir>', 'the mesh CA\'s directory: its root is generated there on first start and reused', defaultCaDir())
    .option('--ca-cert-file <file>', 'a platform CA to sign with instead (PEM certificate, may be an intermediate); needs --ca-key-file')
    .option('--ca-key-file <file>', 'the platform CA\'s private key (PEM)')
    .option('--ca-root-file <file>', 'the root above a plugged intermediate (PEM; default: the plugged certificate)')
    .option('--ca-tokens <file>', 'bootstrap tokens a CreateCertificate caller must present: "TOKEN NAMESPACE[,NAMESPACE...]" or "TOKEN *" per line (default over TLS: a token for every namespace generated once in CA_DIR/bootstrap-token; with --plaintext-xds: none needed)')
    .option('--trust-domain <domain>', 'the mesh\'s trust domain (SPIFFE identities spiffe://DOMAIN/ns/NS/sa/SA)', 'cluster.local')
    .option('--no-ca', 'do not serve Istio\'s CreateCertificate (no mesh CA)')
    .option('--plaintext-xds', 'serve xDS and the CA in plaintext to anyone who reaches the port (local demos only); default: TLS with the pilot\'s certificate from the mesh CA, a workload certificate required on every xDS stream, and bootstrap tokens for first certificates')
    .option('--xds-tls-hosts <names>', 'further DNS names and IPs for the pilot\'s certificate, comma-separated (always: istiod.istio-system.svc, localhost, 127.0.0.1 and the --xds-address host)')
    .option('--registration-tokens <file>', 'turn on the registration API (/apis/registration/v1) for the tokens in FILE: "TOKEN NAMESPACE[,NAMESPACE...]" or "TOKEN *" per line')
    .option('--api-tokens <file>', 'turn on the monitoring API (/api/v1) and the dashboard (/dashboard) for the tokens in FILE granted on *: "TOKEN *" per line')
    .option('--dashboard-insecure', 'turn on the monitoring API and the dashboard for every caller, without a token (a trusted host only)')
    .option('--wasm-max-module <bytes>', 'largest WasmPlugin module the pilot fetches (bytes)', String(32 * 1024 * 1024))
    .option('--wasm-fetch-timeout <duration>', 'time for one WasmPlugin module fetch', '30s')
    .option('--wasm-insecure-registries <hosts>', 'OCI registries (host:port, comma-separated) WasmPlugin modules are pulled from over plain HTTP')
    .option('--prometheus <url>', 'Prometheus that evaluates the mesh\'s alert rules (sextant alerts rules): /api/v1/alerts and the dashboard list its alerts')
    .option(...LOG_STORE_OPTIONS[0]!)
    .option(...LOG_STORE_OPTIONS[1]!)
    .option(...LOG_STORE_OPTIONS[2]!)
    .option(...LOG_STORE_OPTIONS[3]!)
    .action(async (flags: PilotFlags) => {
      try {
        await runPilot(flags);
      } catch (err) {
        process.stderr.write(`sextant pilot: ${err instanceof Error ? err.message : String(err)}\n`);
        process.exitCode = err instanceof UsageError ? 2 : 1;
      }
    });
}

async function runPilot(flags: PilotFlags): Promise<void> {
  const logger = pino({ name: 'pilot', level: flags.logLevel });
  const etcdEndpoints = flags.etcdEndpoints?.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const pushConcurrency = Number(flags.pushConcurrency);
  if (!Number.isInteger(pushConcurrency) || pushConcurrency < 1) throw new Error(`invalid --push-concurrency "${flags.pushConcurrency}": expected an integer >= 1`);
  const configDeleteGuard = parseDeleteGuard(flags.configDeleteGuard, flags.configDeleteGuardMin);
  if (flags.configDir !== undefined) checkConfigDir(flags.configDir);
  if (flags.registrationTokens !== undefined) checkTokenFile(flags.registrationTokens);
  const leaderLeaseSeconds = parseLeaderLease(flags.leaderLease);
  const meshConfig = flags.meshConfig !== undefined ? openMeshConfig(flags.meshConfig, logger) : undefined;
  // the closed control plane (default) needs the CA, and bootstrap tokens so no caller can name any identity
  const closed = flags.plaintextXds !== true;
  if (closed && !flags.ca) throw new UsageError('--no-ca: xDS over TLS needs the mesh CA (give --plaintext-xds to serve plaintext xDS, for local demos only)');
  // proxies on this host obtain their first certificate with the generated token (--ca-token-file)
  if (flags.caTokens !== undefined) checkTokenFile(flags.caTokens, '--ca-tokens', 'CA bootstrap');
  const caTokens = flags.caTokens ?? (closed ? generated(flags.caDir, 'bootstrap-token', 'a bootstrap token for any identity', logger) : undefined);
  // closed, /debug and the monitoring pages need a token too: one generated for this host unless given
  const monitoring = monitoringOptions(flags) ?? (closed
    ? { access: { kind: 'tokens' as const, file: generated(dataDir(), 'api-token', 'the monitoring API, the dashboard and /debug', logger) } }
    : undefined);
  const logStore = await openPilotLogStore(flags, logger);
  const pilot = await startPilot({
    ...(logStore !== undefined ? { logStore } : {}),
    ...(meshConfig !== undefined ? { meshConfig } : {}),
    ...(flags.configDir !== undefined ? { configDir: flags.configDir } : {}),
    ...(etcdEndpoints !== undefined ? { etcdEndpoints } : {}),
    ...(flags.etcdPrefix !== undefined ? { etcdPrefix: flags.etcdPrefix } : {}),
    xdsAddress: flags.xdsAddress,
    httpAddress: flags.httpAddress,
    debounceAfterMs: parseDurationFlag(flags.debounceAfter, '--debounce-after'),
    debounceMaxMs: parseDurationFlag(flags.debounceMax, '--debounce-max'),
    debounceEndpointsMaxMs: parseDurationFlag(flags.debounceEndpointsMax, '--debounce-endpoints-max'),
    pushConcurrency,
    configDeleteGuard,
    ...(flags.id !== undefined ? { id: flags.id } : {}),
    leaderLeaseSeconds,
    logger,
    processMetrics: true,
    ...(flags.registrationTokens !== undefined ? { registrationTokens: flags.registrationTokens } : {}),
    wasm: wasmFlags(flags),
    ...(monitoring !== undefined ? { monitoring } : {}),
    ...(flags.ca ? {
      ca: {
        dir: flags.caDir,
        // the default directory may be unwritable: then the pilot runs without a CA, and says so
        optional: !closed && flags.caDir === defaultCaDir() && flags.caCertFile === undefined && flags.caTokens === undefined,
        trustDomain: flags.trustDomain,
        ...(flags.caCertFile !== undefined ? { certFile: flags.caCertFile } : {}),
        ...(flags.caKeyFile !== undefined ? { keyFile: flags.caKeyFile } : {}),
        ...(flags.caRootFile !== undefined ? { rootFile: flags.caRootFile } : {}),
        ...(caTokens !== undefined ? { tokensFile: caTokens } : {}),
      },
    } : {}),
    ...(closed ? { xdsTls: { hosts: (flags.xdsTlsHosts ?? '').split(',').map((h) => h.trim()).filter((h) => h !== '') } } : {}),
  }).catch(async (err: unknown) => {
    await logStore?.close(); // the pilot closes it once started; not when the start failed
    throw err;
  });
  const stop = (signal: string): void => {
    logger.info({ signal }, 'pilot stopping');
    pilot.close().then(() => process.exit(0), (err: unknown) => {
      logger.error({ err: err instanceof Error ? err.message : String(err) }, 'pilot stop failed');
      process.exit(1);
    });
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
  try {
    await pilot.ready;
  } catch (err) {
    await pilot.close();
    throw err;
  }
}

/** The pilot's data directory: $SEXTANT_DATA_DIR, else ~/.sextant. */
export function dataDir(): string {
  const data = process.env['SEXTANT_DATA_DIR'];
  return data !== undefined && data !== '' ? data : path.join(homedir(), '.sextant');
}

/** Where the mesh CA keeps its root unless told: DATA_DIR/ca. */
function defaultCaDir(): string {
  return path.join(dataDir(), 'ca');
}

/** A token generated once for this host (`generatedToken`), said in the log by file, never by value. */
function generated(dir: string, name: string, what: string, logger: pino.Logger): string {
  const t = generatedToken(dir, name, what);
  logger.info({ tokenFile: t.tokenFile }, `no token file given: ${what} takes the token in this file`);
  return t.tokensFile;
}

/**
 * The pilot serves the directory it is given and never creates it: a typo or an unmounted
 * volume must stop the start (exit 2), not start an empty mesh.
 */
function checkConfigDir(dir: string): void {
  let isDir: boolean;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    throw new UsageError(`--config-dir ${path.resolve(dir)}: no such directory`);
  }
  if (!isDir) throw new UsageError(`--config-dir ${path.resolve(dir)}: not a directory`);
}

function parseDeleteGuard(fraction: string, min: string): { fraction: number; minDeletions: number } {
  const f = Number(fraction);
  if (fraction.trim() === '' || !Number.isFinite(f) || f < 0 || f > 1) {
    throw new UsageError(`invalid --config-delete-guard "${fraction}": expected a fraction from 0 to 1 (0 or 1 turns the guard off)`);
  }
  const n = Number(min);
  if (min.trim() === '' || !Number.isSafeInteger(n) || n < 0) throw new UsageError(`invalid --config-delete-guard-min "${min}": expected an integer >= 0`);
  return { fraction: f, minDeletions: n };
}

/** etcd leases live whole seconds, and etcd raises a TTL below its minimum (about 2 s) silently. */
function parseLeaderLease(value: string): number {
  const ms = parseDurationFlag(value, '--leader-lease');
  if (ms % 1000 !== 0 || ms < 2000) throw new UsageError(`invalid --leader-lease "${value}": expected whole seconds, at least 2s (e.g. 10s)`);
  return ms / 1000;
}

/** The mesh config file, checked before anything starts: an invalid one is a usage error (exit 2) naming the field. */
function openMeshConfig(file: string, logger: pino.Logger): MeshConfigFile {
  let parsed;
  try {
    parsed = readMeshConfigFile(file);
  } catch (err) {
    if (err instanceof MeshConfigError) throw new UsageError(`--mesh-config ${err.message}`);
    throw err;
  }
  for (const w of parsed.warnings) logger.warn({ file: path.resolve(file) }, w);
  logger.info({ file: path.resolve(file), meshConfig: parsed.config }, 'mesh config loaded');
  return new MeshConfigFile(file, parsed.config, { logger });
}

/** An unusable token file is a usage error (exit 2): the API or the CA must never start open or empty by mistake. */
function checkTokenFile(file: string, flag = '--registration-tokens', what = 'registration'): void {
  try {
    readTokenFile(file, what);
  } catch (err) {
    if (err instanceof TokenFileError) throw new UsageError(`${flag}: ${err.message}`);
    throw err;
  }
}

/** WasmPlugin module fetching (src/pilot/wasm): its bounds and plain-HTTP registries. */
function wasmFlags(flags: PilotFlags): { limits: { maxBytes: number; timeoutMs: number; insecureRegistries: string[] } } {
  const maxBytes = Number(flags.wasmMaxModule);
  if (!Number.isInteger(maxBytes) || maxBytes < 1) throw new UsageError(`invalid --wasm-max-module "${flags.wasmMaxModule}": expected a number of bytes >= 1`);
  return {
    limits: {
      maxBytes,
      timeoutMs: parseDurationFlag(flags.wasmFetchTimeout, '--wasm-fetch-timeout'),
      insecureRegistries: (flags.wasmInsecureRegistries ?? '').split(',').map((h) => h.trim()).filter((h) => h !== ''),
    },
  };
}
