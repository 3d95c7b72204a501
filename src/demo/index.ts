// `sextant demo` (what `npm start` runs): a local mesh in one command. The pilot on a
// directory store seeded from examples/bookinfo, six bookinfo workloads each with its own
// loopback address and sidecar, a trickle of traffic, and a live summary in the terminal.
import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { readTopology, type DemoWorkload } from './topology.ts';
import { seedConfig, startLocalMesh, type LocalMesh } from './mesh.ts';
import { TrafficGenerator, percentile } from './traffic.ts';
import { LiveSummary, type WorkloadRow } from './summary.ts';
import { table } from '../cli/table.ts';

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
}

export async function runDemo(opts: DemoOptions): Promise<number> {
  const out = opts.out;
  const configDir = path.join(opts.workDir, 'config');
  const logDir = path.join(opts.workDir, 'logs');
  seedConfig(opts.examplesDir, configDir, opts.reset);
  rmSync(logDir, { recursive: true, force: true });

  let stopRequested = false;
  const onSignal = (): void => {
    stopRequested = true;
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let mesh: LocalMesh | undefined;
  let traffic: TrafficGenerator | undefined;
  try {
    out.write(`Starting the pilot (config: ${configDir}) and ${readTopology(configDir).length} workloads with their sidecars ...\n`);
    mesh = await startLocalMesh({
      configDir, logDir, examplesDir: opts.examplesDir, xdsAddress: opts.xdsAddress, httpAddress: opts.httpAddress,
      aborted: () => (stopRequested ? 'stopped' : undefined),
    });
    const workloads = mesh.workloads;
    printTopology(out, workloads, opts, configDir);
    const front = workloads.find((w) => w.service === 'productpage');
    traffic = new TrafficGenerator({ host: front?.address ?? '127.0.1.1', port: front?.port ?? 9080, path: '/productpage' }, opts.rate);
    traffic.start();
    const summary = new LiveSummary(workloads);
    await summary.scrape();
    const started = Date.now();
    let lines = 0;
    while (!stopRequested && mesh.failure() === undefined) {
      await sleep(1000);
      if (opts.durationSeconds > 0 && Date.now() - started >= opts.durationSeconds * 1000) break;
      const rows = await summary.scrape();
      lines = render(out, rows, traffic.take(), lines);
    }
    const failure = mesh.failure();
    if (failure !== undefined) {
      out.write(`\n${failure}\n`);
      return 1;
    }
    return 0;
  } catch (err) {
    out.write(`\ndemo: ${err instanceof Error ? err.message : String(err)} (logs: ${logDir})\n`);
    return 1;
  } finally {
    traffic?.stop();
    out.write('\nStopping ...\n');
    await mesh?.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    out.write('All processes stopped.\n');
  }
}

function printTopology(out: NodeJS.WriteStream, workloads: readonly DemoWorkload[], opts: DemoOptions, configDir: string): void {
  const rows = workloads.map((w) => [w.name, w.version, `${w.address}:${w.port}`, `${w.appEndpoint.host}:${w.appEndpoint.port}`, `${w.egress.host}:${w.egress.port}`, `http://${w.adminAddress}`]);
  out.write('\n' + table(['WORKLOAD', 'VERSION', 'ADDRESS (sidecar)', 'APP', 'EGRESS', 'SIDECAR ADMIN'], rows) + '\n');
  const front = `http://${workloads.find((w) => w.service === 'productpage')?.address ?? '127.0.1.1'}:9080/productpage`;
  // The CLI through npm, so it runs on the project's Node whatever the shell's node is.
  const cli = 'npm run -s sextant --';
  const sample = path.resolve(opts.examplesDir, '..', '..', '..', 'shared', 'istio-compat', 'bookinfo', 'virtual-service-reviews-90-10.yaml');
  const vs = existsSync(sample) ? sample : 'my-virtual-service.yaml';
  const pad = (label: string): string => label.padEnd(16);
  out.write(`
${pad('Pilot:')}xDS ${opts.xdsAddress}, status http://${opts.httpAddress}/debug/syncz
${pad('Try:')}curl ${front}
${pad('')}curl -H 'end-user: jason' ${front}
${pad('Shift traffic:')}${cli} apply --config-dir ${configDir} -f ${vs}
${pad('')}(or edit the files in ${configDir})
${pad('Status:')}${cli} proxy-status --pilot http://${opts.httpAddress}
${pad('Sidecar config:')}${cli} proxy-config clusters ${workloads[0]?.adminAddress ?? '127.0.1.1:15000'}
${pad('Logs:')}${path.join(opts.workDir, 'logs')}
Ctrl-C stops everything.

`);
}

function render(out: NodeJS.WriteStream, rows: WorkloadRow[], client: ReturnType<TrafficGenerator['take']>, previousLines: number): number {
  const body = table(
    ['WORKLOAD', 'REQ/S', 'SUCCESS', 'P99 MS', 'TOTAL'],
    rows.map((r) => [r.workload, r.rps.toFixed(1), fmtPct(r.successRate), Number.isNaN(r.p99Ms) ? '-' : r.p99Ms.toFixed(1), String(r.total)]),
  );
  const codes = [...client.byStatus.entries()].sort((a, b) => a[0] - b[0]).map(([c, n]) => `${c === 0 ? 'error' : c}×${n}`).join(' ');
  const text = `${body}\nclient → productpage: ${client.requests} req/s, success ${fmtPct(client.requests ? client.ok / client.requests : NaN)}, p99 ${fmtMs(percentile(client.latencies, 99))} ms  [${codes}]\n`;
  if (out.isTTY && previousLines > 0) out.write(`\x1b[${previousLines}A\x1b[J`);
  out.write(text);
  return text.split('\n').length - 1;
}

function fmtPct(x: number): string {
  return Number.isNaN(x) ? '-' : `${(x * 100).toFixed(1)}%`;
}

function fmtMs(x: number): string {
  return Number.isNaN(x) ? '-' : x.toFixed(1);
}
