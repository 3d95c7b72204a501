// `sextant alerts rules`: writes the mesh's Prometheus alerting rules (route-not-found 404s, new
// 404s on an operation, proxy and application 5xx apart, access-log drops) for Prometheus's
// `rule_files`, with the windows and thresholds given.
import { renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { UsageError } from './flags.ts';
import {
  AlertRuleOptionError, DEFAULT_ALERT_RULE_OPTIONS, DurationError, alertRuleOptions, alertRulesYaml, formatPromDuration, parsePromDuration,
  type AlertRuleOptions,
} from '../controllers/alerts/index.ts';

export interface AlertRulesFlags {
  window: string;
  threshold: string;
  minRequests: string;
  for: string;
  baselineOffset: string;
  baselineWindow: string;
  baselineThreshold: string;
  interval?: string;
  output?: string;
}

const D = DEFAULT_ALERT_RULE_OPTIONS;

export function registerAlerts(program: Command): void {
  const alerts = program.command('alerts').description("the mesh's Prometheus alerts");
  alerts
    .command('rules')
    .description('write the Prometheus alerting rules: route-not-found 404s (NR), new 404s on an operation, proxy 5xx and app 5xx apart, access-log drops')
    .option('--window <duration>', 'the window every rate is taken over', formatPromDuration(D.windowMs))
    .option('--threshold <ratio>', 'error ratio above which the 5xx and new-404 alerts fire (0.05 = 5 %)', String(D.threshold))
    .option('--min-requests <n>', 'requests in the window below which no ratio alert fires', String(D.minRequests))
    .option('--for <duration>', 'how long a ratio alert holds before it fires (0s: at once)', formatPromDuration(D.forMs))
    .option('--baseline-offset <duration>', 'how far back the new-404 alert looks for an operation\'s usual 404 ratio', formatPromDuration(D.baselineOffsetMs))
    .option('--baseline-window <duration>', 'the length of that earlier window', formatPromDuration(D.baselineWindowMs))
    .option('--baseline-threshold <ratio>', 'an operation with at least this 404 ratio in the earlier window has no "new" 404s', String(D.baselineThreshold))
    .option('--interval <duration>', "the rule group's evaluation interval (default: Prometheus's global one)")
    .option('-o, --output <file>', 'write the rules to FILE (default: stdout)')
    .action((flags: AlertRulesFlags) => {
      const yaml = alertRulesYaml(alertRulesOptionsFromFlags(flags), commandLine(flags));
      if (flags.output === undefined || flags.output === '-') {
        process.stdout.write(yaml);
        return;
      }
      // Written aside and renamed into place: Prometheus never reloads half a file.
      const file = path.resolve(flags.output);
      const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}`);
      try {
        writeFileSync(tmp, yaml);
        renameSync(tmp, file);
      } catch (err) {
        throw new UsageError(`--output ${file}: cannot write it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
      }
      process.stderr.write(`wrote ${file}\n`);
    });
  // runProgram makes the top-level commands throw instead of exiting; this one is a level down.
  for (const sub of alerts.commands) sub.exitOverride().configureOutput({ outputError: () => undefined });
}

/** The flags as rule options; a UsageError names the flag that is wrong. */
export function alertRulesOptionsFromFlags(flags: AlertRulesFlags): AlertRuleOptions {
  const duration = (v: string, flag: string, zero = false): number => {
    if (zero && /^0+(ms|s|m|h|d|w)?$/.test(v.trim())) return 0;
    try {
      return parsePromDuration(v, flag);
    } catch (err) {
      if (err instanceof DurationError) throw new UsageError(`invalid ${err.message}`);
      throw err;
    }
  };
  const ratio = (v: string, flag: string): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n)) throw new UsageError(`invalid ${flag} "${v}": expected a ratio such as 0.05 (5 %)`);
    return n;
  };
  if (!/^\d+$/.test(flags.minRequests)) throw new UsageError(`invalid --min-requests "${flags.minRequests}": expected a whole number`);
  try {
    return alertRuleOptions({
      windowMs: duration(flags.window, '--window'),
      threshold: ratio(flags.threshold, '--threshold'),
      minRequests: Number(flags.minRequests),
      forMs: duration(flags.for, '--for', true),
      baselineOffsetMs: duration(flags.baselineOffset, '--baseline-offset'),
      baselineWindowMs: duration(flags.baselineWindow, '--baseline-window'),
      baselineThreshold: ratio(flags.baselineThreshold, '--baseline-threshold'),
      intervalMs: flags.interval === undefined ? undefined : duration(flags.interval, '--interval'),
    });
  } catch (err) {
    if (err instanceof AlertRuleOptionError) throw new UsageError(`invalid --${err.message}`);
    throw err;
  }
}

function commandLine(flags: AlertRulesFlags): string {
  const parts = ['sextant alerts rules', `--window ${flags.window}`, `--threshold ${flags.threshold}`, `--min-requests ${flags.minRequests}`, `--for ${flags.for}`,
    `--baseline-offset ${flags.baselineOffset}`, `--baseline-window ${flags.baselineWindow}`, `--baseline-threshold ${flags.baselineThreshold}`];
  if (flags.interval !== undefined) parts.push(`--interval ${flags.interval}`);
  return parts.join(' ');
}
