// Starts a real etcd (Debian's /usr/bin/etcd) for tests and benchmarks: free loopback ports,
// a temporary data directory, health-checked start, and a kill on stop or on process exit.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from './ports.ts';
import { killGroup, ownDirectory, ownProcess } from './owned-processes.ts';

export const ETCD_BINARY = process.env.SEXTANT_ETCD_BINARY ?? '/usr/bin/etcd';

/** Why etcd tests must skip on this machine, or undefined when etcd can be started. */
export function etcdUnavailableReason(): string | undefined {
  if (!existsSync(ETCD_BINARY)) {
    return `etcd not found at ${ETCD_BINARY} (install Debian's etcd-server, or set SEXTANT_ETCD_BINARY)`;
  }
  return undefined;
}

export interface EtcdProcess {
  /** Client URL, e.g. http://127.0.0.1:40123 */
  endpoint: string;
  /** Kills etcd and removes its data directory. Safe to call twice. */
  stop(): Promise<void>;
  /** Stops etcd (SIGTERM) and starts it again on the same ports and data directory. */
  restart(): Promise<void>;
  /** Kills etcd (SIGKILL) without restarting it; `start()` brings it back on the same ports and data. */
  kill(): Promise<void>;
  start(): Promise<void>;
}

const STDERR_TAIL_BYTES = 16 * 1024;
const HEALTH_TIMEOUT_MS = 30_000;

/** Spawns etcd on free loopback ports and resolves once /health reports healthy. */
export async function startEtcd(): Promise<EtcdProcess> {
  const reason = etcdUnavailableReason();
  if (reason !== undefined) throw new Error(reason);
  const dataDir = mkdtempSync(path.join(tmpdir(), 'sextant-etcd-'));
  const removeDataDir = ownDirectory(dataDir);
  const clientPort = await freePort();
  let peerPort = await freePort();
  while (peerPort === clientPort) peerPort = await freePort();
  const endpoint = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  let child: ChildProcess | undefined;
  let stderrTail = '';
  let stopped = false;

  const spawnOnce = async (): Promise<void> => {
    stderrTail = '';
    const proc = spawn(
      ETCD_BINARY,
      [
        '--name', 'sextant-test',
        '--data-dir', path.join(dataDir, 'data'),
        '--listen-client-urls', endpoint,
        '--advertise-client-urls', endpoint,
        '--listen-peer-urls', peer,
        '--initial-advertise-peer-urls', peer,
        '--initial-cluster', `sextant-test=${peer}`,
        '--initial-cluster-state', 'new',
        '--log-level', 'warn',
        '--logger', 'zap',
      ],
      { detached: true, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    child = proc;
    ownProcess(proc);
    proc.stderr?.setEncoding('utf8');
    proc.stderr?.on('data', (chunk: string) => {
      stderrTail = (stderrTail + chunk).slice(-STDERR_TAIL_BYTES);
    });
    const deadline = Date.now() + HEALTH_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(`etcd exited during start (code ${proc.exitCode ?? proc.signalCode}): ${stderrTail}`);
      }
      try {
        const res = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1000) });
        const body = (await res.json()) as { health?: string };
        if (body.health === 'true') return;
      } catch {
        // Not listening yet.
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    killGroup(proc, 'SIGKILL');
    throw new Error(`etcd did not become healthy within ${HEALTH_TIMEOUT_MS} ms: ${stderrTail}`);
  };

  const waitExit = async (signal: NodeJS.Signals): Promise<void> => {
    const proc = child;
    child = undefined;
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    killGroup(proc, signal);
    const timer = setTimeout(() => killGroup(proc, 'SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };

  try {
    await spawnOnce();
  } catch (err) {
    await waitExit('SIGKILL');
    removeDataDir();
    throw err;
  }

  return {
    endpoint,
    async stop() {
      if (stopped) return;
      stopped = true;
      await waitExit('SIGKILL');
      removeDataDir();
    },
    async restart() {
      if (stopped) throw new Error('etcd was stopped');
      await waitExit('SIGTERM');
      await spawnOnce();
    },
    async kill() {
      if (stopped) throw new Error('etcd was stopped');
      await waitExit('SIGKILL');
    },
    async start() {
      if (stopped) throw new Error('etcd was stopped');
      if (child !== undefined) return;
      await spawnOnce();
    },
  };
}
