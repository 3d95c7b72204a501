// Debian's Prometheus as a real process for tests: on a free loopback port, with a temp data
// directory, a generated scrape config of the given targets (sidecars' /stats/prometheus), 1 s
// scrape and evaluation intervals and the given rule files; query helpers over its HTTP API;
// always killed after (close(), and on process exit). Tests skip with `prometheusSkip()`.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import { freePort } from '../helpers/ports.ts';
import { killGroup, ownProcess } from '../helpers/owned-processes.ts';

export const PROMETHEUS_BIN = '/usr/bin/prometheus';
export const PROMTOOL_BIN = '/usr/bin/promtool';

/** A reason to skip when Prometheus is not installed, else false (for `describe(…, { skip })`). */
export function prometheusSkip(): string | false {
  return existsSync(PROMETHEUS_BIN) ? false : `${PROMETHEUS_BIN} is not installed (Debian package prometheus)`;
}

export interface ScrapeJob {
  name: string;
  /** `HOST:PORT` of each target. */
  targets: string[];
  /** Default `/stats/prometheus`, the sidecar's (Istio's 15090 path). */
  metricsPath?: string;
}

export interface PrometheusOptions {
  /** Scrape jobs; a bare list of `HOST:PORT` is one job `sidecars` on /stats/prometheus. */
  jobs: ScrapeJob[] | string[];
  /** Rule files to load: each a path, or `{ name, yaml }` written into the data directory. */
  ruleFiles?: Array<string | { name: string; yaml: string }>;
  /** Scrape and evaluation interval, whole seconds (default 1 s). */
  intervalSeconds?: number;
  /** How long start() waits for /-/ready (default 30 s). */
  readyTimeoutMs?: number;
}

/** One element of an instant vector. */
export interface Sample {
  metric: Record<string, string>;
  value: number;
}

/** An alert as Prometheus's /api/v1/alerts lists it. */
export interface PromAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: 'pending' | 'firing' | 'inactive';
  activeAt: string;
  value: string;
}

export interface PromTarget {
  scrapeUrl: string;
  health: 'up' | 'down' | 'unknown';
  lastError: string;
  labels: Record<string, string>;
}

export interface Prometheus {
  /** `http://127.0.0.1:PORT`. */
  url: string;
  dir: string;
  child: ChildProcess;
  /** Instant query; throws with Prometheus's error on a bad expression. */
  query(expr: string): Promise<Sample[]>;
  /** The value of a query that yields one sample, 0 when it yields none; throws when it yields several. */
  scalar(expr: string): Promise<number>;
  alerts(): Promise<PromAlert[]>;
  targets(): Promise<PromTarget[]>;
  /** Replaces the scrape jobs (and rule files when given): rewrites the config and reloads it. */
  reconfigure(opts: Pick<PrometheusOptions, 'jobs' | 'ruleFiles'>): Promise<void>;
  /** Waits until every target has been scraped successfully at least once. */
  waitForTargetsUp(timeoutMs?: number): Promise<void>;
  /** Polls until `probe` yields something other than undefined or false; throws with `what` after `timeoutMs`. */
  waitFor<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs?: number): Promise<T>;
  /** The process's stderr so far (Prometheus logs there), for failure messages. */
  log(): string;
  /** Kills Prometheus (SIGKILL to its process group), waits for it, removes the data directory. */
  close(): Promise<void>;
}

function jobsOf(opts: PrometheusOptions): ScrapeJob[] {
  if (opts.jobs.length > 0 && typeof opts.jobs[0] === 'string') return [{ name: 'sidecars', targets: opts.jobs as string[] }];
  return opts.jobs as ScrapeJob[];
}

/** Writes prometheus.yml and the rule files into `dir`; returns the config path. */
export function writePrometheusConfig(dir: string, opts: PrometheusOptions): string {
  const interval = `${opts.intervalSeconds ?? 1}s`;
  const ruleFiles = (opts.ruleFiles ?? []).map((r) => {
    if (typeof r === 'string') return path.resolve(r);
    const file = path.join(dir, r.name);
    writeFileSync(file, r.yaml);
    return file;
  });
  const config = {
    global: { scrape_interval: interval, evaluation_interval: interval, scrape_timeout: interval },
    rule_files: ruleFiles,
    scrape_configs: jobsOf(opts).map((j) => ({
      job_name: j.name,
      metrics_path: j.metricsPath ?? '/stats/prometheus',
      static_configs: [{ targets: j.targets }],
    })),
  };
  const file = path.join(dir, 'prometheus.yml');
  writeFileSync(file, stringify(config));
  return file;
}

export async function startPrometheus(opts: PrometheusOptions): Promise<Prometheus> {
  const skip = prometheusSkip();
  if (skip !== false) throw new Error(skip);
  const dir = mkdtempSync(path.join(tmpdir(), 'sextant-prometheus-'));
  const config = writePrometheusConfig(dir, opts);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(PROMETHEUS_BIN, [
    `--config.file=${config}`,
    `--storage.tsdb.path=${path.join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`,
    '--log.level=warn',
    '--web.enable-lifecycle',
    // Debian's defaults point at /etc/prometheus; the tests need none of it.
    `--web.console.templates=${dir}`,
    `--web.console.libraries=${dir}`,
  ], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  ownProcess(child);
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    // bounded: the tail is what explains a failure
    stderr = (stderr + d).slice(-64 * 1024);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let closed = false;

  const api = async (p: string): Promise<unknown> => {
    const res = await fetch(`${url}${p}`, { signal: AbortSignal.timeout(10_000) });
    const body = (await res.json()) as { status: string; data?: unknown; error?: string };
    if (body.status !== 'success') throw new Error(`Prometheus ${p} answered ${res.status}: ${body.error ?? JSON.stringify(body)}`);
    return body.data;
  };
  const waitFor = async <T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`Prometheus exited (${child.exitCode}) while waiting for ${what}: ${stderr.slice(-2000)}`);
      const v = await probe();
      if (v !== undefined && v !== false) return v;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await sleep(200);
    }
  };

  const prom: Prometheus = {
    url,
    dir,
    child,
    async query(expr) {
      const data = (await api(`/api/v1/query?query=${encodeURIComponent(expr)}`)) as { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> };
      if (data.resultType !== 'vector') throw new Error(`query ${expr} gave a ${data.resultType}, expected a vector`);
      return data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
    },
    async scalar(expr) {
      const samples = await prom.query(expr);
      if (samples.length > 1) throw new Error(`query ${expr} gave ${samples.length} samples, expected at most one: ${JSON.stringify(samples)}`);
      return samples[0]?.value ?? 0;
    },
    async alerts() {
      return ((await api('/api/v1/alerts')) as { alerts: PromAlert[] }).alerts;
    },
    async targets() {
      return ((await api('/api/v1/targets?state=active')) as { activeTargets: PromTarget[] }).activeTargets;
    },
    async reconfigure(next) {
      writePrometheusConfig(dir, { ...opts, ...next, ruleFiles: next.ruleFiles ?? opts.ruleFiles });
      const res = await fetch(`${url}/-/reload`, { method: 'POST', signal: AbortSignal.timeout(10_000) });
      if (res.status !== 200) throw new Error(`Prometheus refused the new config (${res.status}): ${await res.text()}`);
    },
    async waitForTargetsUp(timeoutMs = 30_000) {
      await waitFor('every scrape target up', async () => {
        const t = await prom.targets().catch(() => []);
        return t.length > 0 && t.every((x) => x.health === 'up');
      }, timeoutMs);
    },
    waitFor,
    log: () => stderr,
    async close() {
      if (closed) return;
      closed = true;
      if (child.exitCode === null && child.signalCode === null) {
        killGroup(child, 'SIGKILL');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };

  try {
    await waitFor('Prometheus /-/ready', async () => (await fetch(`${url}/-/ready`).then((r) => r.status === 200, () => false)), opts.readyTimeoutMs ?? 30_000);
  } catch (err) {
    await prom.close();
    throw err;
  }
  return prom;
}
