// `sextant injector`: the mutating admission webhook that injects sidecars into pods as
// Kubernetes creates them (HTTPS; AdmissionReview v1 in, a JSONPatch out). In a primary-remote
// mesh (M3) the remote cluster runs only this, pointing its sidecars at the primary's pilot.
import type { Command } from 'commander';
import { pino } from 'pino';
import { startInjector, type FailurePolicy } from '../inject/webhook.ts';
import { injectFlags, injectOptionsFrom, type InjectFlags } from './inject.ts';

interface InjectorFlags extends InjectFlags {
  address: string;
  tlsCert: string;
  tlsKey: string;
  failurePolicy: FailurePolicy;
  logLevel: string;
}

export function registerInjector(program: Command): void {
  const cmd = program
    .command('injector')
    .description('run the sidecar injection webhook (Kubernetes MutatingWebhookConfiguration, POST /inject over HTTPS)')
    .requiredOption('--tls-cert <file>', 'PEM certificate the webhook serves (re-read when it changes)')
    .requiredOption('--tls-key <file>', 'PEM private key of the certificate')
    .option('--address <host:port>', 'HTTPS listen address', '0.0.0.0:15017')
    .option('--failure-policy <policy>', 'a request that cannot be read: Ignore admits the pod without a sidecar and a warning (fail open), Fail refuses it', 'Fail')
    .option('--log-level <level>', 'log level: fatal, error, warn, info, debug', 'info');
  injectFlags(cmd).action(async (flags: InjectorFlags) => {
    const inject = injectOptionsFrom(flags);
    const logger = pino({ name: 'injector', level: flags.logLevel });
    let injector;
    try {
      injector = await startInjector({ address: flags.address, certFile: flags.tlsCert, keyFile: flags.tlsKey, inject, failurePolicy: flags.failurePolicy, logger });
    } catch (err) {
      process.stderr.write(`error: sextant injector: ${(err as Error).message}\n`);
      process.exitCode = 1;
      return;
    }
    const stop = (signal: string): void => {
      logger.info({ signal }, 'injector stopping');
      void injector.close().then(() => setImmediate(() => process.exit(0)));
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
