// A local mesh on loopback: the pilot on a directory store, and for each workload of the
// topology its app and its sidecar, all supervised. Used by `sextant demo` (which restarts
// whatever exits) and by the end-to-end tests (which give each mesh its own addresses and
// ports, and treat an exit as a failure).
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RestartPolicy } from './backoff.ts';
import { ProcessGroup, type Supervised } from './processes.ts';
import { readTopology, type DemoWorkload } from './topology.ts';

const REPO = path.resolve(import.meta.dirname, '..', '..');
/** `sextant` as users run it (the entry applies the sidecar's runtime profile). */
export const CLI = path.join(REPO, 'bin', 'sextant.mjs');
export const BOOKINFO_EXAMPLES = path.join(REPO, 'examples', 'bookinfo');

export interface MeshOptions {
  configDir: string;
  logDir: string;
  examplesDir: string;
  xdsAddress: string;
  httpAddress: string;
  /** Called when the mesh gives up waiting, to stop early (e.g. on Ctrl-C). */
  aborted?: () => string | undefined;
  /**
   * Start a process that exits on its own again, with this backoff (on the same command line,
   * so on the same addresses and ports). Without it, the first exit is the mesh's failure().
   */
  restartPolicy?: RestartPolicy;
  /** More flags for the pilot (the demo's monitoring API and access-log store). */
  pilotArgs?: readonly string[];
}

export interface LocalMesh {
  workloads: DemoWorkload[];
  group: ProcessGroup;
  /** First unexpected exit of a child, if any (only without a restart policy). */
  failure(): string | undefined;
  stop(): Promise<void>;
}

export interface SeedRewrite {
  /** Replaces the third octet of workload addresses (1 in 127.0.1.N) … */
  workloadOctet: number;
  /** … and of egress addresses (2 in 127.0.2.N). */
  egressOctet: number;
  /** Added to the apps' local ports (1908x). */
  appPortOffset: number;
}

/**
 * Copies the example's YAML into `configDir` unless it already has config (or `reset`).
 * With `rewrite`, addresses and ports are moved so several meshes can run side by side.
 */
export function seedConfig(examplesDir: string, configDir: string, reset: boolean, rewrite?: SeedRewrite): void {
  if (reset) rmSync(configDir, { recursive: true, force: true });
  if (existsSync(configDir) && readdirSync(configDir).length > 0) return;
  mkdirSync(configDir, { recursive: true });
  for (const f of readdirSync(examplesDir)) {
    if (!f.endsWith('.yaml')) continue;
    if (!rewrite) {
      cpSync(path.join(examplesDir, f), path.join(configDir, f));
      continue;
    }
    const text = readFileSync(path.join(examplesDir, f), 'utf8')
      .replaceAll('127.0.1.', `127.0.${rewrite.workloadOctet}.`)
      .replaceAll('127.0.2.', `127.0.${rewrite.egressOctet}.`)
      .replace(/127\.0\.0\.1:(190\d\d)/g, (_m, p: string) => `127.0.0.1:${Number(p) + rewrite.appPortOffset}`);
    writeFileSync(path.join(configDir, f), text);
  }
}

export async function startLocalMesh(opts: MeshOptions): Promise<LocalMesh> {
  mkdirSync(opts.logDir, { recursive: true });
  const workloads = readTopology(opts.configDir);
  const group = new ProcessGroup(opts.logDir, opts.restartPolicy);
  let failed: string | undefined;
  if (!opts.restartPolicy) {
    group.onUnexpectedExit = (s, code) => {
      failed ??= `${s.name} exited unexpectedly (code ${code}); see ${s.logFile}`;
    };
  }
  const abort = (): string | undefined => failed ?? opts.aborted?.();
  try {
    startPilot(group, opts);
    await waitForReady(`http://${opts.httpAddress}/ready`, 30_000, abort);
    for (const w of workloads) startWorkload(group, w, opts);
    for (const w of workloads) await waitForReady(`http://${w.adminAddress}/ready`, 30_000, abort);
  } catch (err) {
    // With restarts, a process that keeps exiting shows as a timeout: say which it was.
    const why = group.children.filter((c) => c.lastExit !== undefined)
      .map((c) => `${c.name} exited (last: ${c.lastExit?.signal ?? `code ${c.lastExit?.code}`}) and was restarted ${c.restarts} times, see ${c.logFile}`);
    await group.stopAll();
    if (why.length === 0 || !(err instanceof Error)) throw err;
    throw new Error(`${err.message}; ${why.join('; ')}`, { cause: err });
  }
  return { workloads, group, failure: () => failed, stop: () => group.stopAll() };
}

/** The process names of the mesh's group. */
export const PILOT_PROCESS = 'pilot';
export const sidecarProcess = (w: DemoWorkload): string => `proxy-${w.name}`;
export const appProcess = (w: DemoWorkload): string => `app-${w.name}`;

/** Starts (or restarts) the pilot of a mesh; its CA root is kept beside the config directory, in the mesh's work folder. */
export function startPilot(group: ProcessGroup, opts: Pick<MeshOptions, 'configDir' | 'xdsAddress' | 'httpAddress' | 'pilotArgs'>): Supervised {
  const caDir = path.join(path.dirname(opts.configDir), 'ca');
  return group.start(PILOT_PROCESS, process.execPath, [CLI, 'pilot', '--plaintext-xds', '--config-dir', opts.configDir, '--xds-address', opts.xdsAddress, '--http-address', opts.httpAddress, '--ca-dir', caDir, ...(opts.pilotArgs ?? [])]);
}

function startWorkload(group: ProcessGroup, w: DemoWorkload, opts: MeshOptions): void {
  group.start(appProcess(w), process.execPath, [
    path.join(opts.examplesDir, 'app.ts'),
    '--service', w.service, '--version', w.version,
    '--host', w.appEndpoint.host, '--port', String(w.appEndpoint.port),
    '--egress', `${w.egress.host}:${w.egress.port}`,
  ]);
  group.start(sidecarProcess(w), process.execPath, [
    CLI, 'proxy', '--xds', opts.xdsAddress, '--id', w.nodeId, '--ip', w.address, '--namespace', w.namespace,
    ...Object.entries(w.labels).flatMap(([k, v]) => ['--label', `${k}=${v}`]),
    '--meta', 'INTERCEPTION_MODE=NONE', '--meta', `WORKLOAD_NAME=${w.name}`,
    '--admin-address', w.adminAddress,
  ]);
}

export async function waitForReady(url: string, timeoutMs: number, abort: () => string | undefined = () => undefined): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const reason = abort();
    if (reason !== undefined) throw new Error(reason);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === 200) return;
    } catch {
      // not up yet
    }
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${url}`);
}
