// Supervises the demo's child processes: each in its own process group, output to a log
// file, and all of them stopped (SIGTERM, then SIGKILL after a grace period) when the demo
// stops or any child dies unexpectedly.
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import path from 'node:path';

export interface Supervised {
  name: string;
  child: ChildProcess;
  logFile: string;
  exited: Promise<number | null>;
}

export class ProcessGroup {
  readonly #logDir: string;
  readonly #children: Supervised[] = [];
  #stopping = false;
  onUnexpectedExit: (s: Supervised, code: number | null) => void = () => {};

  constructor(logDir: string) {
    this.#logDir = logDir;
  }

  get children(): readonly Supervised[] {
    return this.#children;
  }

  start(name: string, command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Supervised {
    const logFile = path.join(this.#logDir, `${name}.log`);
    const fd = openSync(logFile, 'a');
    const child = spawn(command, args, { stdio: ['ignore', fd, fd], detached: true, env });
    closeSync(fd);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const s: Supervised = { name, child, logFile, exited };
    this.#children.push(s);
    void exited.then((code) => {
      if (!this.#stopping) this.onUnexpectedExit(s, code);
    });
    return s;
  }

  /** Stops every child: SIGTERM to each process group, SIGKILL whatever is left after `graceMs`. */
  async stopAll(graceMs = 2500): Promise<void> {
    this.#stopping = true;
    const alive = this.#children.filter((s) => s.child.exitCode === null && s.child.signalCode === null);
    for (const s of alive) signalGroup(s.child, 'SIGTERM');
    const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), graceMs).unref());
    await Promise.race([Promise.all(alive.map((s) => s.exited)), timer]);
    for (const s of alive) if (s.child.exitCode === null && s.child.signalCode === null) signalGroup(s.child, 'SIGKILL');
    await Promise.race([Promise.all(alive.map((s) => s.exited)), new Promise((r) => setTimeout(r, 1000).unref())]);
  }
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}
