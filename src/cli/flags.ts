// How the sextant command is called: flag values checked as commander reads them, the
// UsageError every "called wrongly" case throws, and the exit codes: 0 done, 1 the command
// ran and failed, 2 it was called wrongly; a failure is one line on stderr.
import { CommanderError } from 'commander';
import type { Command } from 'commander';

/** An error in how the command was called: a bad flag value, a missing or extra argument (exit code 2). */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Parses `100ms`, `10s`, `1.5s`, `2m` into milliseconds; throws a UsageError naming the flag. */
export function parseDurationFlag(value: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(value.trim());
  if (m === null) throw new UsageError(`invalid ${flag} "${value}": expected a duration like 100ms, 10s or 1m`);
  const n = Number(m[1]);
  return m[2] === 'ms' ? n : m[2] === 's' ? n * 1000 : n * 60_000;
}

type FlagCheck = (value: string, flag: string) => void;

const duration: FlagCheck = (v, flag) => void parseDurationFlag(v, flag);

const oneOf = (...allowed: string[]): FlagCheck => (v, flag) => {
  if (!allowed.includes(v)) throw new UsageError(`invalid ${flag} "${v}": expected ${allowed.slice(0, -1).join(', ')} or ${allowed[allowed.length - 1]!}`);
};

const logLevel = oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent');

const hostPort: FlagCheck = (v, flag) => {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(v);
  if (m === null || Number(m[3]) > 65535) throw new UsageError(`invalid ${flag} "${v}": expected HOST:PORT, e.g. 127.0.0.1:15010`);
};

/** One or more HOST:PORT, comma-separated: xDS servers in order of preference. */
const hostPortList: FlagCheck = (v, flag) => {
  const parts = v.split(',').map((p) => p.trim());
  for (const p of parts) {
    try {
      hostPort(p, flag);
    } catch {
      throw new UsageError(`invalid ${flag} "${v}": expected HOST:PORT[,HOST:PORT…], e.g. 127.0.0.1:15010,127.0.0.2:15010`);
    }
  }
};

const wholeSeconds: FlagCheck = (v, flag) => {
  const ms = parseDurationFlag(v, flag);
  if (ms % 1000 !== 0 || ms < 2000) throw new UsageError(`invalid ${flag} "${v}": expected whole seconds, at least 2s (e.g. 10s)`);
};

const positiveInteger: FlagCheck = (v, flag) => {
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new UsageError(`invalid ${flag} "${v}": expected an integer >= 1`);
};

/**
 * Flag values checked when commander reads them, by `COMMAND --flag`. Checking here, before
 * any action runs, makes a bad value a usage error (exit 2) whichever command declares the
 * flag and however that command reports its own failures. Values pass through unchanged.
 */
const FLAG_VALUE_CHECKS: Readonly<Record<string, FlagCheck>> = {
  'pilot --xds-address': hostPort,
  'pilot --http-address': hostPort,
  'pilot --debounce-after': duration,
  'pilot --debounce-max': duration,
  'pilot --debounce-endpoints-max': duration,
  'pilot --push-concurrency': positiveInteger,
  'pilot --leader-lease': wholeSeconds,
  'pilot --log-level': logLevel,
  'proxy --xds': hostPortList,
  'proxy --admin-address': hostPort,
  'proxy --stats-address': hostPort,
  'proxy --health-address': hostPort,
  'proxy --drain-duration': duration,
  'proxy --passthrough-idle': duration,
  'proxy --xds-protocol': oneOf('delta', 'sotw'),
  'proxy --log-level': logLevel,
  'inject --pilot-address': hostPortList,
  'inject --interception-mode': oneOf('REDIRECT', 'NONE'),
  'inject --image-pull-policy': oneOf('Always', 'IfNotPresent', 'Never'),
  'inject --proxy-log-level': logLevel,
  'injector --pilot-address': hostPortList,
  'injector --interception-mode': oneOf('REDIRECT', 'NONE'),
  'injector --image-pull-policy': oneOf('Always', 'IfNotPresent', 'Never'),
  'injector --proxy-log-level': logLevel,
  'injector --address': hostPort,
  'injector --failure-policy': oneOf('Ignore', 'Fail'),
  'injector --log-level': logLevel,
  'wait --timeout': duration,
  'wait --period': duration,
  'wait --request-timeout': duration,
  'wait --timeoutSeconds': positiveInteger,
  'wait --periodMillis': positiveInteger,
  'wait --requestTimeoutMillis': positiveInteger,
  'demo --xds-address': hostPort,
  'demo --http-address': hostPort,
  'demo --rate': (v, flag) => {
    if (!(Number(v) > 0 && Number(v) <= 1000)) throw new UsageError(`invalid ${flag} "${v}": expected requests per second, above 0 and at most 1000`);
  },
  'demo --duration': (v, flag) => {
    if (!/^\d+(?:\.\d+)?$/.test(v)) throw new UsageError(`invalid ${flag} "${v}": expected a number of seconds (0: until Ctrl-C)`);
  },
};

/** Attaches the checks of FLAG_VALUE_CHECKS to the options of `program`'s subcommands. */
export function checkFlagValues(program: Command): void {
  for (const cmd of program.commands) {
    for (const option of cmd.options) {
      const check = option.long === undefined ? undefined : FLAG_VALUE_CHECKS[`${cmd.name()} ${option.long}`];
      // An option with its own parser (e.g. a repeatable one) keeps it.
      if (check === undefined || option.parseArg !== undefined) continue;
      const flag = option.long!;
      option.argParser((value: string) => {
        check(value, flag);
        return value;
      });
    }
  }
}

/**
 * Parses `argv` and runs the command it names, with flag values checked first. A failure
 * that reaches here is printed as one line and sets process.exitCode (2 for usage errors,
 * 1 for the rest); a command that reports its own failures sets process.exitCode itself.
 */
export async function runProgram(program: Command, argv: readonly string[]): Promise<void> {
  // Commander reports a usage error by throwing, never by exiting itself, and prints
  // nothing: the one line below says what was wrong.
  for (const cmd of [program, ...program.commands]) cmd.exitOverride().configureOutput({ outputError: () => undefined });
  checkFlagValues(program);
  const names = new Set(program.commands.map((c) => c.name()));
  const invoked = argv[2];
  try {
    // Commander answers `help NOSUCH` with the whole help; say what is wrong instead.
    const topic = argv[3];
    if (invoked === 'help' && topic !== undefined && !topic.startsWith('-') && !names.has(topic)) {
      throw new CommanderError(2, 'commander.unknownCommand', `error: unknown command '${topic}'`);
    }
    await program.parseAsync(argv);
  } catch (err) {
    process.exitCode = reportFailure(err, invoked !== undefined && names.has(invoked) ? `${program.name()} ${invoked}` : program.name());
  }
}

function reportFailure(err: unknown, command: string): number {
  if (err instanceof CommanderError) {
    // --help and --version end with code 0; the program alone has printed its help to stderr.
    if (err.exitCode === 0 || err.code === 'commander.help') return err.exitCode === 0 ? 0 : 2;
    process.stderr.write(`${err.message.replace(/\s*\n\s*/g, ' ')} (see '${command} --help')\n`);
    return 2;
  }
  process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
  return err instanceof UsageError ? 2 : 1;
}
