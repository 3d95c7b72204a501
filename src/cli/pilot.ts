// `sextant pilot`: runs the control plane on a config directory or etcd until SIGINT/SIGTERM.
import type { Command } from 'commander';
import { pino } from 'pino';
import { startPilot } from '../pilot/index.ts';
import { parseDurationFlag } from './flags.ts';


interface PilotFlags {
  configDir?: string;
  etcdEndpoints?: string;
  etcdPrefix?: string;
  xdsAddress: string;
  httpAddress: string;
  debounceAfter: string;
  debounceMax: string;
  pushConcurrency: string;
  logLevel: string;
}

export function registerPilot(program: Command): void {
  program
    .command('pilot')
    .description('run the xDS control plane: serve Istio config from a directory or etcd to Envoy, sextant proxies and proxyless gRPC')
    .option('--config-dir <dir>', 'directory of Istio YAML config (watched for changes)')
    .option('--etcd-endpoints <urls>', 'comma-separated etcd endpoints, e.g. http://127.0.0.1:2379')
    .option('--etcd-prefix <prefix>', 'key prefix of the config in etcd')
    .option('--xds-address <host:port>', 'xDS (ADS, CSDS) gRPC listen address', '127.0.0.1:15010')
    .option('--http-address <host:port>', 'monitoring listen address: /ready, /metrics, /debug/*', '127.0.0.1:15014')
    .option('--debounce-after <duration>', 'quiet time after the last config change before pushing', '100ms')
    .option('--debounce-max <duration>', 'longest a change waits under a steady stream of changes', '10s')
    .option('--push-concurrency <n>', 'proxies pushed at once', '64')
    .option('--log-level <level>', 'log level: fatal, error, warn, info, debug', 'info')
    .action(async (flags: PilotFlags) => {
      try {
        await runPilot(flags);
      } catch (err) {
        process.stderr.write(`sextant pilot: ${err instanceof Error ? err.message : String(err)}\n`);
        process.exitCode = 1;
      }
    });
}

async function runPilot(flags: PilotFlags): Promise<void> {
  const logger = pino({ name: 'pilot', level: flags.logLevel });
  const etcdEndpoints = flags.etcdEndpoints?.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const pushConcurrency = Number(flags.pushConcurrency);
  if (!Number.isInteger(pushConcurrency) || pushConcurrency < 1) throw new Error(`invalid --push-concurrency "${flags.pushConcurrency}": expected an integer >= 1`);
  const pilot = await startPilot({
    ...(flags.configDir !== undefined ? { configDir: flags.configDir } : {}),
    ...(etcdEndpoints !== undefined ? { etcdEndpoints } : {}),
    ...(flags.etcdPrefix !== undefined ? { etcdPrefix: flags.etcdPrefix } : {}),
    xdsAddress: flags.xdsAddress,
    httpAddress: flags.httpAddress,
    debounceAfterMs: parseDurationFlag(flags.debounceAfter, '--debounce-after'),
    debounceMaxMs: parseDurationFlag(flags.debounceMax, '--debounce-max'),
    pushConcurrency,
    logger,
    processMetrics: true,
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
