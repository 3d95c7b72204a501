// `sextant wait`: exits 0 once the sidecar is ready, 1 when it is not within the timeout.
// The sidecar's postStart hook in a pod (the app container starts after it), a unit's
// ExecStartPre on a VM. Istio's `pilot-agent wait` flags are accepted too.
import { Option, type Command } from 'commander';
import { DEFAULT_WAIT, waitUntilReady } from '../inject/wait.ts';
import { parseDurationFlag, UsageError } from './flags.ts';

interface WaitFlags {
  url: string;
  timeout: string;
  period: string;
  requestTimeout: string;
  timeoutSeconds?: string;
  periodMillis?: string;
  requestTimeoutMillis?: string;
}

const seconds = (ms: number): string => `${Number((ms / 1000).toFixed(1))} s`;

export function registerWait(program: Command): void {
  program
    .command('wait')
    .description('wait until the sidecar is ready (its /healthz/ready answers 200): exit 0, or exit 1 after the timeout')
    .option('--url <url>', "the sidecar's readiness URL", DEFAULT_WAIT.url)
    .option('--timeout <duration>', 'give up after this long', '60s')
    .option('--period <duration>', 'time between polls', '500ms')
    .option('--request-timeout <duration>', 'longest one poll may take', '1s')
    .addOption(new Option('--timeoutSeconds <n>', "pilot-agent wait's --timeout, in seconds").hideHelp())
    .addOption(new Option('--periodMillis <n>', "pilot-agent wait's --period, in milliseconds").hideHelp())
    .addOption(new Option('--requestTimeoutMillis <n>', "pilot-agent wait's --request-timeout, in milliseconds").hideHelp())
    .action(async (flags: WaitFlags) => {
      const timeoutMs = flags.timeoutSeconds !== undefined ? Number(flags.timeoutSeconds) * 1000 : parseDurationFlag(flags.timeout, '--timeout');
      const periodMs = flags.periodMillis !== undefined ? Number(flags.periodMillis) : parseDurationFlag(flags.period, '--period');
      const requestTimeoutMs = flags.requestTimeoutMillis !== undefined ? Number(flags.requestTimeoutMillis) : parseDurationFlag(flags.requestTimeout, '--request-timeout');
      if (periodMs <= 0) throw new UsageError(`invalid --period "${flags.periodMillis ?? flags.period}": expected a duration above 0`);
      if (requestTimeoutMs <= 0) throw new UsageError(`invalid --request-timeout "${flags.requestTimeoutMillis ?? flags.requestTimeout}": expected a duration above 0`);
      let url: URL;
      try {
        url = new URL(flags.url);
        if (url.protocol !== 'http:') throw new Error('not http');
      } catch {
        throw new UsageError(`invalid --url "${flags.url}": expected an http:// URL, e.g. ${DEFAULT_WAIT.url}`);
      }
      const r = await waitUntilReady({ url: url.href, timeoutMs, periodMs, requestTimeoutMs });
      if (r.ready) {
        process.stdout.write(`sidecar ready after ${seconds(r.elapsedMs)} (${r.attempts} poll${r.attempts === 1 ? '' : 's'} of ${url.href})\n`);
        return;
      }
      process.stderr.write(`error: the sidecar was not ready after ${seconds(timeoutMs)}: ${url.href} last answered: ${r.last}\n`);
      process.exitCode = 1;
    });
}
