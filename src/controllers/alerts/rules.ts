// The Prometheus alerting rules of the mesh, generated from a few windows and thresholds: a
// route-not-found 404 (NR) anywhere, a new 404 rate on an operation that had none, proxy-made and
// application 5xx apart, and access-log drops. Pure: options in, a rule file (YAML) out.
//
// Every rule splits errors by origin with the one rule the access logs use (src/telemetry's
// originOf): no flag (or only a neutral one) is the application's answer, a client flag (DC, DR)
// is the client's, any other flag a proxy's. Istio's metrics carry Envoy's flags in
// `response_flags`, so the split is a label match.
import { stringify } from 'yaml';
import { CLIENT_FLAGS, NEUTRAL_FLAGS } from '../../telemetry/index.ts';
import { formatPromDuration } from './duration.ts';

/** What the rules are tuned by; every field has a default (DEFAULT_ALERT_RULE_OPTIONS). */
export interface AlertRuleOptions {
  /** The window every rate is taken over (`--window`, default 5m). */
  windowMs: number;
  /** The error ratio above which the 5xx rules and the new-404 rule fire (`--threshold`, default 0.05). */
  threshold: number;
  /** Fewer requests than this in the window never fire a ratio rule (`--min-requests`, default 10). */
  minRequests: number;
  /** How long a ratio rule must hold before it fires (`--for`, default 1m; 0 fires at once). */
  forMs: number;
  /** How far back the new-404 rule looks for the operation's usual 404 ratio (`--baseline-offset`, default 1d). */
  baselineOffsetMs: number;
  /** The length of that earlier window (`--baseline-window`, default 1h). */
  baselineWindowMs: number;
  /** An operation whose 404 ratio was at least this in the earlier window is not "new" (`--baseline-threshold`, default 0.005). */
  baselineThreshold: number;
  /** The group's evaluation interval (`--interval`); absent: Prometheus's global one. */
  intervalMs?: number | undefined;
}

export const DEFAULT_ALERT_RULE_OPTIONS: Readonly<AlertRuleOptions> = {
  windowMs: 5 * 60_000,
  threshold: 0.05,
  minRequests: 10,
  forMs: 60_000,
  baselineOffsetMs: 86_400_000,
  baselineWindowMs: 3_600_000,
  baselineThreshold: 0.005,
};

/** The rule names, as they appear in Prometheus's `alertname`. */
export const ALERT_NAMES = {
  noRoute: 'SextantProxyNoRoute',
  new404: 'SextantNew404',
  proxy5xx: 'SextantProxy5xx',
  app5xx: 'SextantApp5xx',
  accessLogDrops: 'SextantAccessLogDrops',
} as const;

export const RULE_GROUP = 'sextant-mesh';

/** Options that cannot make a working rule file; the message names the option. */
export class AlertRuleOptionError extends Error {
  override name = 'AlertRuleOptionError';
}

/** One alerting rule as Prometheus's rule file holds it. */
export interface AlertingRule {
  alert: string;
  expr: string;
  for?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

export interface RuleFile {
  groups: Array<{ name: string; interval?: string; rules: AlertingRule[] }>;
}

const REQUESTS = 'istio_requests_total';
const DROPS = 'sextant_accesslog_dropped_total';

/** A `response_flags` value with no flag, or with neutral flags only: the application answered. */
export const APP_FLAGS_REGEX = (() => {
  const neutral = [...NEUTRAL_FLAGS].sort().join('|');
  return `-|(?:${neutral})(?:,(?:${neutral}))*`;
})();

/** A `response_flags` value holding a client flag: the client ended the exchange. */
export const CLIENT_FLAGS_REGEX = `(?:.*,)?(?:${[...CLIENT_FLAGS].sort().join('|')})(?:,.*)?`;

/** Checks options (with defaults filled in) and returns them complete. */
export function alertRuleOptions(partial: Partial<AlertRuleOptions> = {}): AlertRuleOptions {
  const o: AlertRuleOptions = { ...DEFAULT_ALERT_RULE_OPTIONS, ...stripUndefined(partial) };
  const positiveMs = (v: number, name: string): void => {
    if (!Number.isInteger(v) || v < 1000) throw new AlertRuleOptionError(`${name}: ${v} ms is too short; rules need whole seconds, at least 1s`);
    if (v % 1000 !== 0) throw new AlertRuleOptionError(`${name}: ${v} ms is not a whole number of seconds`);
  };
  positiveMs(o.windowMs, 'window');
  positiveMs(o.baselineOffsetMs, 'baseline-offset');
  positiveMs(o.baselineWindowMs, 'baseline-window');
  if (o.intervalMs !== undefined) positiveMs(o.intervalMs, 'interval');
  if (!Number.isInteger(o.forMs) || o.forMs < 0 || o.forMs % 1000 !== 0) throw new AlertRuleOptionError(`for: ${o.forMs} ms must be 0 or whole seconds`);
  if (!(o.threshold > 0 && o.threshold <= 1)) throw new AlertRuleOptionError(`threshold: ${o.threshold} must be a ratio above 0 and at most 1 (0.05 is 5 %)`);
  if (!(o.baselineThreshold > 0 && o.baselineThreshold <= o.threshold)) {
    throw new AlertRuleOptionError(`baseline-threshold: ${o.baselineThreshold} must be above 0 and at most the threshold ${o.threshold}`);
  }
  if (!Number.isInteger(o.minRequests) || o.minRequests < 1) throw new AlertRuleOptionError(`min-requests: ${o.minRequests} must be a whole number of at least 1`);
  if (o.baselineOffsetMs < o.windowMs) {
    throw new AlertRuleOptionError(`baseline-offset: ${formatPromDuration(o.baselineOffsetMs)} must be at least the window ${formatPromDuration(o.windowMs)}, or the baseline overlaps the window it is compared with`);
  }
  return o;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * Series whose counter went up in the window, or that were born in it. `increase()` alone misses
 * a series whose first sample already counts the event (a first NR makes `…{response_flags="NR"}`
 * appear at 1): such a series is present now and was absent one window ago.
 */
function grewOrBorn(selector: string, window: string): string {
  return `increase(${selector}[${window}]) > 0\n  or (${selector} > 0 unless ${selector} offset ${window})`;
}

function pct(ratio: number): string {
  return `${+(ratio * 100).toPrecision(6)} %`;
}

/** The rules for these options (see AlertRuleOptions for the defaults). */
export function alertRules(partial: Partial<AlertRuleOptions> = {}): RuleFile {
  const o = alertRuleOptions(partial);
  const w = formatPromDuration(o.windowMs);
  const forClause = o.forMs === 0 ? {} : { for: formatPromDuration(o.forMs) };
  const app = `response_flags=~"${APP_FLAGS_REGEX}"`;
  const proxy = `response_flags!~"${APP_FLAGS_REGEX}",response_flags!~"${CLIENT_FLAGS_REGEX}"`;
  const n = o.minRequests;

  const noRoute = `${REQUESTS}{response_code="404",response_flags="NR"}`;
  const noRouteBy = 'reporter, source_workload, source_workload_namespace, destination_service';

  // New 404s: the destination's sidecar reports every request the application answered, once,
  // and names the service by its canonical name (its inbound side knows no service host).
  const svc = 'destination_canonical_service, destination_workload_namespace';
  const op = `${svc}, request_operation`;
  const dst = `${REQUESTS}{reporter="destination"}`;
  const app404 = `${REQUESTS}{reporter="destination",response_code="404",${app}}`;
  const b = formatPromDuration(o.baselineWindowMs);
  const off = formatPromDuration(o.baselineOffsetMs);
  const observedSince = formatPromDuration(o.baselineOffsetMs + o.baselineWindowMs);
  const new404 = [
    `(`,
    `  sum by (${op}) (increase(${app404}[${w}]))`,
    `  / sum by (${op}) (increase(${dst}[${w}]))`,
    `) > ${o.threshold}`,
    `and sum by (${op}) (increase(${dst}[${w}])) >= ${n}`,
    // Only services Prometheus saw before the baseline began: without history every 404 is "new".
    `and on (${svc}) sum by (${svc}) (${dst} offset ${observedSince})`,
    `unless (`,
    `  sum by (${op}) (increase(${app404}[${b}] offset ${off}))`,
    `  / sum by (${op}) (increase(${dst}[${b}] offset ${off}))`,
    `) >= ${o.baselineThreshold}`,
  ].join('\n');

  const pair = 'reporter, source_workload, source_workload_namespace, destination_service';
  const proxy5xx = [
    `sum by (${pair}, response_flags) (increase(${REQUESTS}{response_code=~"5..",${proxy}}[${w}]))`,
    `/ ignoring (response_flags) group_left`,
    `sum by (${pair}) (increase(${REQUESTS}[${w}]))`,
    `> ${o.threshold}`,
    `and ignoring (response_flags)`,
    `sum by (${pair}) (increase(${REQUESTS}[${w}])) >= ${n}`,
  ].join('\n');

  const service = 'destination_canonical_service, destination_workload, destination_workload_namespace';
  const app5xx = [
    `sum by (${service}) (increase(${REQUESTS}{reporter="destination",response_code=~"5..",${app}}[${w}]))`,
    `/ sum by (${service}) (increase(${dst}[${w}]))`,
    `> ${o.threshold}`,
    `and sum by (${service}) (increase(${dst}[${w}])) >= ${n}`,
  ].join('\n');

  const rules: AlertingRule[] = [
    {
      alert: ALERT_NAMES.noRoute,
      expr: `sum by (${noRouteBy}) (\n  ${grewOrBorn(noRoute, w)}\n)`,
      labels: { severity: 'warning', origin: 'proxy' },
      annotations: {
        summary: 'A sidecar found no route: 404 NR',
        description: `{{ $labels.source_workload }}.{{ $labels.source_workload_namespace }} (reporter {{ $labels.reporter }}) got route-not-found 404s (response flag NR) for {{ $labels.destination_service }} in the last ${w}: the proxy answered, the application never saw the request.`,
      },
    },
    {
      alert: ALERT_NAMES.new404,
      expr: new404,
      ...forClause,
      labels: { severity: 'warning', origin: 'app' },
      annotations: {
        summary: 'An operation started answering 404',
        description: `{{ $labels.request_operation }} of {{ $labels.destination_canonical_service }}.{{ $labels.destination_workload_namespace }} answered {{ $value | humanizePercentage }} of its requests with an application 404 in the last ${w}; in the ${b} that ended ${off} earlier it was under ${pct(o.baselineThreshold)}.`,
      },
    },
    {
      alert: ALERT_NAMES.proxy5xx,
      expr: proxy5xx,
      ...forClause,
      labels: { severity: 'critical', origin: 'proxy' },
      annotations: {
        summary: 'Sidecars are failing requests (proxy-made 5xx)',
        description: `{{ $value | humanizePercentage }} of the requests from {{ $labels.source_workload }}.{{ $labels.source_workload_namespace }} to {{ $labels.destination_service }} (reporter {{ $labels.reporter }}) failed in a sidecar with {{ $labels.response_flags }} in the last ${w} (above ${pct(o.threshold)}).`,
      },
    },
    {
      alert: ALERT_NAMES.app5xx,
      expr: app5xx,
      ...forClause,
      labels: { severity: 'critical', origin: 'app' },
      annotations: {
        summary: 'An application answers 5xx',
        description: `{{ $labels.destination_workload }}.{{ $labels.destination_workload_namespace }} (service {{ $labels.destination_canonical_service }}) answered {{ $value | humanizePercentage }} of its requests with a 5xx of its own in the last ${w} (above ${pct(o.threshold)}).`,
      },
    },
    {
      alert: ALERT_NAMES.accessLogDrops,
      expr: `sum without () (\n  ${grewOrBorn(DROPS, w)}\n)`,
      labels: { severity: 'warning', origin: 'proxy' },
      annotations: {
        summary: 'A sidecar dropped access-log entries',
        description: `{{ $labels.instance }} dropped access-log entries in the last ${w}: its ALS buffer was full or the log sink unreachable, so the access-log store misses requests.`,
      },
    },
  ];
  return { groups: [{ name: RULE_GROUP, ...(o.intervalMs !== undefined ? { interval: formatPromDuration(o.intervalMs) } : {}), rules }] };
}

/** The rule file as YAML, with a header saying what made it. */
export function alertRulesYaml(partial: Partial<AlertRuleOptions> = {}, madeBy = 'sextant alerts rules'): string {
  const file = alertRules(partial);
  const header = `# Prometheus alerting rules for the Sextant mesh, written by \`${madeBy}\`.\n# Load with rule_files in prometheus.yml; check with \`promtool check rules FILE\`.\n`;
  return header + stringify(file, { lineWidth: 0 });
}
