// Servers a test process starts for itself (etcd, PostgreSQL, Prometheus): each in a process
// group of its own, killed with its group, and its directory removed, when the test process
// exits or is ended by a signal, so a test that fails before its cleanup leaves nothing behind.
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';

const running = new Set<ChildProcess>();
const directories = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  const killAll = (): void => {
    for (const child of running) killGroup(child, 'SIGKILL');
    for (const dir of directories) rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', killAll);
  // A process ended by a signal runs no 'exit' handlers: kill them, then die of the same signal.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      killAll();
      process.removeListener(signal, onSignal);
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

/** Sends `signal` to the child's process group (spawned `detached`), unless it has exited or never started. */
export function killGroup(child: ChildProcess | undefined, signal: NodeJS.Signals): void {
  if (child?.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
}

/** Kills the child's group if this process exits first. */
export function ownProcess(child: ChildProcess): void {
  installExitHook();
  running.add(child);
  child.once('exit', () => running.delete(child));
}

/** Removes the directory if this process exits first; the returned function removes it now. */
export function ownDirectory(dir: string): () => void {
  installExitHook();
  directories.add(dir);
  return () => {
    rmSync(dir, { recursive: true, force: true });
    directories.delete(dir);
  };
}
