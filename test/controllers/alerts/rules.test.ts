// The mesh's alerting rules: the generated file passes `promtool check rules`, and Prometheus's
// own rule unit tests (`promtool test rules`) show each rule firing on the series it is for and
// staying silent on the others: a first NR fires at once, a steady app 404 never does; an
// operation going from 0 % to 20 % app 404s fires the new-404 rule with its name, a steady 30 %
// one does not; proxy-made and application 5xx are told apart; drops fire, a new idle counter not.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import {
  ALERT_NAMES, AlertRuleOptionError, DurationError, alertRuleOptions, alertRules, alertRulesYaml, formatPromDuration, parsePromDuration,
  type AlertRuleOptions,
} from '../../../src/controllers/alerts/index.ts';

const PROMTOOL = '/usr/bin/promtool';
const skip = existsSync(PROMTOOL) ? false : `${PROMTOOL} is not installed (Debian package prometheus)`;

/** Short windows, so a test spans seconds: rates over 10 s, the baseline the 10 s ending 20 s ago. */
const TEST_OPTIONS: Partial<AlertRuleOptions> = {
  windowMs: 10_000, forMs: 0, baselineOffsetMs: 20_000, baselineWindowMs: 10_000, threshold: 0.1, baselineThreshold: 0.01, minRequests: 5, intervalMs: 1000,
};

/** `count` samples, one per second: `start`, then `step` more each second. */
function ramp(start: number, step: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => start + step * i);
}

/** A promtool series value list: numbers, `_` for "not scraped". */
function values(...parts: Array<number[] | { missing: number }>): string {
  return parts.flatMap((p) => (Array.isArray(p) ? p.map(String) : Array.from({ length: p.missing }, () => '_'))).join(' ');
}

function series(name: string, labels: Record<string, string>): string {
  return `${name}{${Object.entries(labels).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(',')}}`;
}

const RATINGS = 'ratings.default.svc.cluster.local';

function requests(labels: Record<string, string>): string {
  return series('istio_requests_total', labels);
}

interface ExpAlert { exp_labels: Record<string, string>; exp_annotations: Record<string, string> }

let dir: string;
before(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'sextant-alert-rules-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function promtool(args: string[]): { status: number | null; output: string } {
  const r = spawnSync(PROMTOOL, args, { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

/** Runs one promtool rule unit test over the generated rules; fails with promtool's own report. */
function unitTest(name: string, inputSeries: Array<{ series: string; values: string }>, checks: Array<{ eval_time: string; alertname: string; exp_alerts: ExpAlert[] }>): void {
  const rules = path.join(dir, `${name}.rules.yml`);
  writeFileSync(rules, alertRulesYaml(TEST_OPTIONS));
  const test = path.join(dir, `${name}.test.yml`);
  writeFileSync(test, stringify({ rule_files: [path.basename(rules)], evaluation_interval: '1s', tests: [{ interval: '1s', input_series: inputSeries, alert_rule_test: checks }] }, { lineWidth: 0 }));
  const r = promtool(['test', 'rules', test]);
  assert.equal(r.status, 0, `promtool test rules failed:\n${r.output}`);
  assert.match(r.output, /SUCCESS/);
}

describe('alert rule file', { skip }, () => {
  it('passes promtool check rules, with the defaults and with short test windows', () => {
    for (const [name, options] of [['defaults', {}], ['short', TEST_OPTIONS]] as const) {
      const file = path.join(dir, `${name}.yml`);
      writeFileSync(file, alertRulesYaml(options));
      const r = promtool(['check', 'rules', file]);
      assert.equal(r.status, 0, r.output);
      assert.match(r.output, /SUCCESS: 5 rules found/);
    }
    const rules = alertRules().groups[0]!.rules;
    assert.deepEqual(rules.map((r) => r.alert), [ALERT_NAMES.noRoute, ALERT_NAMES.new404, ALERT_NAMES.proxy5xx, ALERT_NAMES.app5xx, ALERT_NAMES.accessLogDrops]);
    assert.deepEqual(rules.map((r) => r.for ?? null), [null, '1m', '1m', '1m', null]);
    assert.deepEqual(rules.map((r) => r.labels['origin']), ['proxy', 'app', 'proxy', 'app', 'proxy']);
  });

  it('fires the route-not-found rule on a first NR within one evaluation, for one window, and never on app 404s', () => {
    const nr = { reporter: 'source', source_workload: 'productpage-v1', source_workload_namespace: 'default', destination_service: 'unknown', response_code: '404', response_flags: 'NR' };
    const app404 = { reporter: 'destination', source_workload: 'productpage-v1', source_workload_namespace: 'default', destination_service: 'inbound|9080||', response_code: '404', response_flags: '-' };
    const fired: ExpAlert = {
      exp_labels: { severity: 'warning', origin: 'proxy', reporter: 'source', source_workload: 'productpage-v1', source_workload_namespace: 'default', destination_service: 'unknown' },
      exp_annotations: {
        summary: 'A sidecar found no route: 404 NR',
        description: 'productpage-v1.default (reporter source) got route-not-found 404s (response flag NR) for unknown in the last 10s: the proxy answered, the application never saw the request.',
      },
    };
    unitTest('no-route', [
      // the first NR: the series appears at 1 after 40 s, then a second one at 70 s
      { series: requests(nr), values: values({ missing: 40 }, ramp(1, 0, 30), ramp(2, 0, 20)) },
      // steady app 404s all along
      { series: requests(app404), values: values(ramp(0, 3, 90)) },
    ], [
      { eval_time: '39s', alertname: ALERT_NAMES.noRoute, exp_alerts: [] },
      { eval_time: '40s', alertname: ALERT_NAMES.noRoute, exp_alerts: [fired] },
      { eval_time: '49s', alertname: ALERT_NAMES.noRoute, exp_alerts: [fired] },
      { eval_time: '50s', alertname: ALERT_NAMES.noRoute, exp_alerts: [] },
      { eval_time: '69s', alertname: ALERT_NAMES.noRoute, exp_alerts: [] },
      { eval_time: '70s', alertname: ALERT_NAMES.noRoute, exp_alerts: [fired] },
      { eval_time: '79s', alertname: ALERT_NAMES.noRoute, exp_alerts: [fired] },
      { eval_time: '80s', alertname: ALERT_NAMES.noRoute, exp_alerts: [] },
    ]);
  });

  it('fires the new-404 rule naming the operation that went from 0 % to 20 %, never for a steady 30 %', () => {
    // the callee's sidecar names its service by its canonical name (destination_service is its inbound cluster)
    const base = { reporter: 'destination', source_workload: 'productpage-v1', source_workload_namespace: 'default', destination_service: 'inbound|9080||', destination_canonical_service: 'reviews', destination_workload_namespace: 'default', response_flags: '-' };
    const items = { ...base, request_operation: '/items/{id}' };
    const steady = { ...base, request_operation: '/steady' };
    const proxy404 = { ...base, request_operation: '/proxied', response_flags: 'NR' };
    const fired: ExpAlert = {
      exp_labels: { severity: 'warning', origin: 'app', destination_canonical_service: 'reviews', destination_workload_namespace: 'default', request_operation: '/items/{id}' },
      exp_annotations: {
        summary: 'An operation started answering 404',
        description: '/items/{id} of reviews.default answered 20% of its requests with an application 404 in the last 10s; in the 10s that ended 20s earlier it was under 1 %.',
      },
    };
    unitTest('new-404', [
      // /items/{id}: 8 200s a second; from 40 s on, 2 404s a second as well (20 %)
      { series: requests({ ...items, response_code: '200' }), values: values(ramp(0, 10, 41), ramp(408, 8, 50)) },
      { series: requests({ ...items, response_code: '404' }), values: values(ramp(0, 0, 41), ramp(2, 2, 50)) },
      // /steady: 30 % 404s from the start
      { series: requests({ ...steady, response_code: '200' }), values: values(ramp(0, 7, 91)) },
      { series: requests({ ...steady, response_code: '404' }), values: values(ramp(0, 3, 91)) },
      // 404s a proxy made are not the application's: never "new 404s"
      { series: requests({ ...proxy404, response_code: '404' }), values: values(ramp(0, 0, 41), ramp(5, 5, 50)) },
    ], [
      // before the service has a baseline (Prometheus saw it less than 30 s ago), nothing is "new"
      { eval_time: '25s', alertname: ALERT_NAMES.new404, exp_alerts: [] },
      { eval_time: '40s', alertname: ALERT_NAMES.new404, exp_alerts: [] },
      { eval_time: '50s', alertname: ALERT_NAMES.new404, exp_alerts: [fired] },
      { eval_time: '60s', alertname: ALERT_NAMES.new404, exp_alerts: [fired] },
      // once the baseline window holds the 404s, they are no longer new
      { eval_time: '71s', alertname: ALERT_NAMES.new404, exp_alerts: [] },
      { eval_time: '90s', alertname: ALERT_NAMES.new404, exp_alerts: [] },
    ]);
  });

  it('tells proxy-made 5xx from application 5xx, and a client that went away from both', () => {
    const src = { reporter: 'source', source_workload: 'reviews-v2', source_workload_namespace: 'default', destination_service: RATINGS, destination_canonical_service: 'ratings', destination_workload: 'ratings-v1', destination_workload_namespace: 'default' };
    const dst = { ...src, reporter: 'destination', destination_service: 'inbound|9080||' };
    const dc = { ...src, source_workload: 'reviews-v3' };
    const proxyFired: ExpAlert = {
      exp_labels: { severity: 'critical', origin: 'proxy', reporter: 'source', source_workload: 'reviews-v2', source_workload_namespace: 'default', destination_service: RATINGS, response_flags: 'UF' },
      exp_annotations: {
        summary: 'Sidecars are failing requests (proxy-made 5xx)',
        description: `20% of the requests from reviews-v2.default to ${RATINGS} (reporter source) failed in a sidecar with UF in the last 10s (above 10 %).`,
      },
    };
    const appFired: ExpAlert = {
      exp_labels: { severity: 'critical', origin: 'app', destination_canonical_service: 'ratings', destination_workload: 'ratings-v1', destination_workload_namespace: 'default' },
      exp_annotations: {
        summary: 'An application answers 5xx',
        description: 'ratings-v1.default (service ratings) answered 25% of its requests with a 5xx of its own in the last 10s (above 10 %).',
      },
    };
    unitTest('5xx', [
      // the caller's sidecar: 6 200s, 2 app 500s (flagless: the upstream answered) and 2 UF 503s a second
      { series: requests({ ...src, response_code: '200', response_flags: '-' }), values: values(ramp(0, 6, 30)) },
      { series: requests({ ...src, response_code: '500', response_flags: '-' }), values: values(ramp(0, 2, 30)) },
      { series: requests({ ...src, response_code: '503', response_flags: 'UF' }), values: values(ramp(0, 2, 30)) },
      // the callee's sidecar saw the 200s and the app's 500s
      { series: requests({ ...dst, response_code: '200', response_flags: '-' }), values: values(ramp(0, 6, 30)) },
      { series: requests({ ...dst, response_code: '500', response_flags: '-' }), values: values(ramp(0, 2, 30)) },
      // another caller whose requests mostly end with the client going away: neither proxy nor app
      { series: requests({ ...dc, response_code: '200', response_flags: '-' }), values: values(ramp(0, 1, 30)) },
      { series: requests({ ...dc, response_code: '503', response_flags: 'DC' }), values: values(ramp(0, 5, 30)) },
    ], [
      { eval_time: '20s', alertname: ALERT_NAMES.proxy5xx, exp_alerts: [proxyFired] },
      { eval_time: '20s', alertname: ALERT_NAMES.app5xx, exp_alerts: [appFired] },
    ]);
  });

  it('fires on access-log drops, and not for a sidecar that appears with none', () => {
    const a = { job: 'sidecars', instance: '127.0.1.2:15090' };
    const b = { job: 'sidecars', instance: '127.0.1.3:15090' };
    const c = { job: 'sidecars', instance: '127.0.1.4:15090' };
    const fired = (labels: Record<string, string>): ExpAlert => ({
      exp_labels: { severity: 'warning', origin: 'proxy', ...labels },
      exp_annotations: {
        summary: 'A sidecar dropped access-log entries',
        description: `${labels['instance']} dropped access-log entries in the last 10s: its ALS buffer was full or the log sink unreachable, so the access-log store misses requests.`,
      },
    });
    unitTest('drops', [
      { series: series('sextant_accesslog_dropped_total', a), values: values(ramp(0, 0, 60), ramp(5, 0, 30)) },
      { series: series('sextant_accesslog_dropped_total', b), values: values({ missing: 30 }, ramp(0, 0, 60)) },
      { series: series('sextant_accesslog_dropped_total', c), values: values({ missing: 40 }, ramp(3, 0, 50)) },
    ], [
      { eval_time: '35s', alertname: ALERT_NAMES.accessLogDrops, exp_alerts: [] },
      { eval_time: '40s', alertname: ALERT_NAMES.accessLogDrops, exp_alerts: [fired(c)] },
      { eval_time: '60s', alertname: ALERT_NAMES.accessLogDrops, exp_alerts: [fired(a)] },
      { eval_time: '75s', alertname: ALERT_NAMES.accessLogDrops, exp_alerts: [] },
    ]);
  });
});

describe('alert rule options', () => {
  it('reads Prometheus durations and writes them back in the largest exact units', () => {
    assert.equal(parsePromDuration('1h30m', '--window'), 5_400_000);
    assert.equal(parsePromDuration('250ms', '--window'), 250);
    assert.equal(formatPromDuration(90_000), '1m30s');
    assert.equal(formatPromDuration(86_400_000 + 3_600_000), '1d1h');
    assert.equal(formatPromDuration(14 * 86_400_000), '2w');
    assert.throws(() => parsePromDuration('5 minutes', '--window'), new DurationError('--window: "5 minutes" is not a duration; expected e.g. 30s, 5m, 1h30m or 1d'));
    assert.throws(() => parsePromDuration('0s', '--for'), new DurationError('--for: "0s" must be longer than 0'));
  });

  it('refuses options that make no working rule, naming the option', () => {
    const cases: Array<[Partial<AlertRuleOptions>, string]> = [
      [{ threshold: 0 }, 'threshold: 0 must be a ratio above 0 and at most 1 (0.05 is 5 %)'],
      [{ threshold: 1.5 }, 'threshold: 1.5 must be a ratio above 0 and at most 1 (0.05 is 5 %)'],
      [{ baselineThreshold: 0.2 }, 'baseline-threshold: 0.2 must be above 0 and at most the threshold 0.05'],
      [{ minRequests: 0 }, 'min-requests: 0 must be a whole number of at least 1'],
      [{ windowMs: 500 }, 'window: 500 ms is too short; rules need whole seconds, at least 1s'],
      [{ windowMs: 1500 }, 'window: 1500 ms is not a whole number of seconds'],
      [{ forMs: -1000 }, 'for: -1000 ms must be 0 or whole seconds'],
      [{ windowMs: 3_600_000, baselineOffsetMs: 60_000 }, 'baseline-offset: 1m must be at least the window 1h, or the baseline overlaps the window it is compared with'],
    ];
    for (const [options, message] of cases) assert.throws(() => alertRuleOptions(options), new AlertRuleOptionError(message));
    assert.deepEqual(alertRuleOptions({ windowMs: undefined, threshold: 0.1 }).windowMs, 300_000);
  });
});
