// `sextant demo` (what `npm start` runs): a local mesh in one command. The pilot on a
// directory store seeded from examples/bookinfo, six bookinfo workloads each with its own
// loopback address and sidecar, a trickle of traffic, and a live summary in the terminal.
// Every process is supervised: one that exits is restarted with backoff, and only Ctrl-C
// (SIGINT, SIGTERM or SIGHUP to the demo) stops them all.
import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULT_RESTART_POLICY, type RestartPolicy } from './backoff.ts';
import { readTopology, type DemoWorkload } from './topology.ts';
import { appProcess, PILOT_PROCESS, seedConfig, sidecarProcess, startLocalMesh, type LocalMesh } from './mesh.ts';
import type { ProcessState, Supervised } from './processes.ts';
import { TrafficGenerator, percentile } from './traffic.ts';
import { LiveSummary, type WorkloadRow } from './summary.ts';
import { table } from '../cli/table.ts';
import { demoMonitoring, seedTelemetry, type DemoMonitoring } from './dashboard.ts';

export interface DemoOptions {
  /** Working folder: config/ (the pilot's directory store) and logs/. */
  workDir: string;
  /** Where the seed config and apps are (examples/bookinfo). */
  examplesDir: string;
  /** Start from the seed config even if the working folder has one. */
  reset: boolean;
  xdsAddress: string;
  httpAddress: string;
  /** Requests per second sent to productpage. */
  rate: number;
  /** Stop by itself after this many seconds (0: run until Ctrl-C). */
  durationSeconds: number;
  out: NodeJS.WriteStream;
  /** How processes that exit are restarted (default: 250 ms doubling to 10 s). */
  restartPolicy?: RestartPolicy;
}

const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

export async function runDemo(opts: DemoOptions): Promise<number> {
  const out = opts.out;
  const configDir = path.join(opts.workDir, 'config');
  const logDir = path.join(opts.workDir, 'logs');
  seedConfig(opts.examplesDir, configDir, opts.reset);
  seedTelemetry(configDir);
  rmSync(logDir, { recursive: true, force: true });

  let stopRequested = false;
  let wake = (): void => {};
  const stopped = new Promise<void>((resolve) => (wake = resolve));
  // The children run in process groups of their own (so a terminal's Ctrl-C or hang-up
  // reaches only the demo): the demo stops them on any of these, then exits.
  const onSignal = (): void => {
    stopRequested = true;
    wake();
  };
  for (const sig of STOP_SIGNALS) process.on(sig, onSignal);
  let mesh: LocalMesh | undefined;
  let traffic: TrafficGenerator | undefined;
  try {
    out.write(`Starting the pilot (config: ${configDir}) and ${readTopology(configDir).length} workloads with their sidecars ...\n`);
    const monitoring = demoMonitoring(opts.workDir, opts.httpAddress);
    mesh = await startLocalMesh({
      configDir, logDir, examplesDir: opts.examplesDir, xdsAddress: opts.xdsAddress, httpAddress: opts.httpAddress,
      aborted: () => (stopRequested ? 'stopped' : undefined),
      restartPolicy: opts.restartPolicy ?? DEFAULT_RESTART_POLICY,
      pilotArgs: monitoring.pilotArgs,
    });
    const workloads = mesh.workloads;
    printTopology(out, workloads, opts, configDir, monitoring);
    const front = workloads.find((w) => w.service === 'productpage');
    traffic = new TrafficGenerator({ host: front?.address ?? '127.0.1.1', port: front?.port ?? 9080, path: '/productpage' }, opts.rate);
    traffic.start();
    const processes = new Map(mesh.group.children.map((c) => [c.name, c]));
    const summary = new LiveSummary(workloads, { sidecarRestarts: (w) => processes.get(sidecarProcess(w))?.restarts ?? 0 });
    await summary.scrape();
    const started = Date.now();
    let lines = 0;
    while (!stopRequested) {
      await Promise.race([sleep(1000), stopped]);
      if (stopRequested) break;
      if (opts.durationSeconds > 0 && Date.now() - started >= opts.durationSeconds * 1000) break;
      const rows = await summary.scrape();
      lines = render(out, { rows, processes, workloads, xdsAddress: opts.xdsAddress, client: traffic.take() }, lines);
    }
    return 0;
  } catch (err) {
    out.write(`\ndemo: ${err instanceof Error ? err.message : String(err)} (logs: ${logDir})\n`);
    return 1;
  } finally {
    traffic?.stop();
    out.write('\nStopping ...\n');
    await mesh?.stop();
    for (const sig of STOP_SIGNALS) process.off(sig, onSignal);
    out.write('All processes stopped.\n');
  }
}

function printTopology(out: NodeJS.WriteStream, workloads: readonly DemoWorkload[], opts: DemoOptions, configDir: string, monitoring: DemoMonitoring): void {
  const rows = workloads.map((w) => [w.name, w.version, `${w.address}:${w.port}`, `${w.appEndpoint.host}:${w.appEndpoint.port}`, `${w.egress.host}:${w.egress.port}`, `http://${w.adminAddress}`]);
  out.write('\n' + table(['WORKLOAD', 'VERSION', 'ADDRESS (sidecar)', 'APP', 'EGRESS', 'SIDECAR ADMIN'], rows) + '\n');
  const front = `http://${workloads.find((w) => w.service === 'productpage')?.address ?? '127.0.1.1'}:9080/productpage`;
  // The CLI through npm, so it runs on the project's Node whatever the shell's node is.
  const cli = 'npm run -s sextant --';
  const sample = path.resolve(opts.examplesDir, '..', '..', '..', 'shared', 'istio-compat', 'bookinfo', 'virtual-service-reviews-90-10.yaml');
  const vs = existsSync(sample) ? sample : 'my-virtual-service.yaml';
  const pad = (label: string): string => label.padEnd(16);
  out.write(`
${pad('Pilot:')}xDS ${opts.xdsAddress} in plaintext (a local demo: a pilot started by hand serves TLS only), HTTP http://${opts.httpAddress}
${pad('Try:')}curl ${front}
${pad('')}curl -H 'end-user: jason' ${front}
${pad('Shift traffic:')}${cli} apply --config-dir ${configDir} -f ${vs}
${pad('')}(or edit the files in ${configDir})
${pad('Status:')}${cli} proxy-status --pilot http://${opts.httpAddress} --token-file ${monitoring.tokenFile}
${pad('Dashboard:')}${monitoring.dashboardUrl}
${pad('')}(topology, 4xx/5xx by origin, operations, who called a path; the token is in ${monitoring.tokenFile})
${pad('Access logs:')}${cli} logs --pilot http://${opts.httpAddress} --token-file ${monitoring.tokenFile} --since 5m
${pad('Who called:')}${cli} peers --pilot http://${opts.httpAddress} --token-file ${monitoring.tokenFile} --path /reviews/0 --since 1h
${pad('Sidecar config:')}${cli} proxy-config clusters ${workloads[0]?.adminAddress ?? '127.0.1.1:15000'}
${pad('Logs:')}${path.join(opts.workDir, 'logs')}
Processes that exit are restarted (the table shows restarts). Ctrl-C stops everything.

`);
}

interface Frame {
  rows: WorkloadRow[];
  processes: ReadonlyMap<string, Supervised>;
  workloads: readonly DemoWorkload[];
  xdsAddress: string;
  client: ReturnType<TrafficGenerator['take']>;
}

function render(out: NodeJS.WriteStream, f: Frame, previousLines: number): number {
  const now = Date.now();
  const body = table(
    ['WORKLOAD', 'REQ/S', 'SUCCESS', 'P99 MS', 'TOTAL', 'STATUS', 'RESTARTS'],
    f.rows.map((r) => {
      const w = f.workloads.find((x) => x.name === r.workload);
      const pod = [['sidecar', w && f.processes.get(sidecarProcess(w))], ['app', w && f.processes.get(appProcess(w))]] as const;
      // As kubectl shows a pod: one status (naming the process that is not running) and the
      // restarts of its containers together.
      const troubled = pod.filter(([, p]) => p && !healthy(p.state(now))).map(([what, p]) => `${what} ${describeState(p?.state(now))}`);
      const restarts = pod.reduce((n, [, p]) => n + (p?.restarts ?? 0), 0);
      return [r.workload, fmtNumber(r.rps), fmtPct(r.successRate), fmtNumber(r.p99Ms), String(r.total), troubled.length ? troubled.join(', ') : 'running', String(restarts)];
    }),
  );
  const pilot = f.processes.get(PILOT_PROCESS);
  const pilotLine = `pilot (xDS ${f.xdsAddress}): ${describeState(pilot?.state(now))}, ${plural(pilot?.restarts ?? 0, 'restart')}`;
  const client = f.client;
  const codes = [...client.byStatus.entries()].sort((a, b) => a[0] - b[0]).map(([c, n]) => `${c === 0 ? 'error' : c}×${n}`).join(' ');
  const clientLine = `client → productpage: ${client.requests} req/s, success ${fmtPct(client.requests ? client.ok / client.requests : NaN)}, p99 ${fmtMs(percentile(client.latencies, 99))} ms  [${codes}]`;
  const exits = [...f.processes.values()]
    .filter((p) => p.lastExit !== undefined)
    .sort((a, b) => (b.lastExit?.at ?? 0) - (a.lastExit?.at ?? 0))
    .slice(0, 3)
    .map((p) => `last exit: ${p.name} at ${new Date(p.lastExit?.at ?? 0).toTimeString().slice(0, 8)} (${p.lastExit?.signal ? `signal ${p.lastExit.signal}` : `code ${p.lastExit?.code}`}, up ${fmtSeconds(p.lastExit?.uptimeMs ?? 0)})`);
  const text = [body, pilotLine, clientLine, ...exits, ''].join('\n');
  if (out.isTTY && previousLines > 0) out.write(`\x1b[${previousLines}A\x1b[J`);
  out.write(text);
  return text.split('\n').length - 1;
}

function healthy(s: ProcessState): boolean {
  return s.kind === 'running' && !s.crashLooping;
}

/** running, restarting in 0.5s, crash-looping, restart in 8.0s, … */
function describeState(s: ProcessState | undefined): string {
  if (!s) return 'unknown';
  switch (s.kind) {
    case 'running':
      return s.crashLooping ? `crash-looping (up ${fmtSeconds(s.upMs)})` : 'running';
    case 'restarting':
      return s.crashLooping ? `crash-looping, restart in ${fmtSeconds(s.inMs)}` : `restarting in ${fmtSeconds(s.inMs)}`;
    case 'exited':
      return `exited (${s.exit.signal ?? `code ${s.exit.code}`})`;
    case 'stopped':
      return 'stopped';
  }
}

function fmtSeconds(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)}s` : `${Math.round(ms / 1000)}s`;
}

function plural(n: number, what: string): string {
  return `${n} ${what}${n === 1 ? '' : 's'}`;
}

function fmtNumber(x: number): string {
  return Number.isNaN(x) ? '-' : x.toFixed(1);
}

function fmtPct(x: number): string {
  return Number.isNaN(x) ? '-' : `${(x * 100).toFixed(1)}%`;
}

function fmtMs(x: number): string {
  return Number.isNaN(x) ? '-' : x.toFixed(1);
}
