// Supervises the demo's child processes as a process manager does: each runs in its own
// process group with its output appended to a log file. With a restart policy, a child that
// exits on its own is started again (same command, so same addresses and ports) after an
// exponential backoff; without one, the exit is only reported. stopAll() stops every child:
// SIGTERM to each process group, SIGKILL to whatever is left after a grace period.
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, closeSync, openSync } from 'node:fs';
import path from 'node:path';
import { RestartBackoff, type RestartPolicy } from './backoff.ts';

/** How a child ended. */
export interface ProcessExit {
  /** Epoch milliseconds. */
  at: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  uptimeMs: number;
}

export type ProcessState =
  | { kind: 'running'; pid: number; upMs: number; crashLooping: boolean }
  /** Exited on its own; starts again in `inMs`. */
  | { kind: 'restarting'; inMs: number; crashLooping: boolean }
  /** Exited on its own and the group has no restart policy. */
  | { kind: 'exited'; exit: ProcessExit }
  /** Stopped by stopAll(). */
  | { kind: 'stopped' };

/** One supervised process across its restarts; `child` and `exited` are the current run's. */
export class Supervised {
  readonly name: string;
  readonly logFile: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  readonly backoff: RestartBackoff | undefined;
  /** Times it was started again after exiting on its own. */
  restarts = 0;
  lastExit: ProcessExit | undefined;
  #child!: ChildProcess;
  #exited!: Promise<number | null>;
  #startedAt = 0;
  #restartAt: number | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(name: string, logFile: string, command: string, args: readonly string[], env: NodeJS.ProcessEnv, backoff: RestartBackoff | undefined) {
    this.name = name;
    this.logFile = logFile;
    this.command = command;
    this.args = args;
    this.env = env;
    this.backoff = backoff;
  }

  get child(): ChildProcess {
    return this.#child;
  }

  /** Resolves with the exit code when the current run ends. */
  get exited(): Promise<number | null> {
    return this.#exited;
  }

  get alive(): boolean {
    return this.#child.exitCode === null && this.#child.signalCode === null && this.#child.pid !== undefined && this.#restartAt === undefined;
  }

  state(now = Date.now()): ProcessState {
    if (this.#stopped) return { kind: 'stopped' };
    if (this.#restartAt !== undefined) {
      return { kind: 'restarting', inMs: Math.max(0, this.#restartAt - now), crashLooping: this.backoff?.crashLooping() ?? false };
    }
    if (this.alive) {
      const upMs = now - this.#startedAt;
      return { kind: 'running', pid: this.#child.pid ?? 0, upMs, crashLooping: this.backoff?.crashLooping(upMs) ?? false };
    }
    return this.lastExit ? { kind: 'exited', exit: this.lastExit } : { kind: 'stopped' };
  }

  /** Starts a run; `onExit` is called once when it ends. */
  run(onExit: (s: Supervised, exit: ProcessExit) => void): void {
    this.#restartAt = undefined;
    const fd = openSync(this.logFile, 'a');
    let child: ChildProcess;
    try {
      // detached: a process group of its own, so the terminal's Ctrl-C reaches only the demo,
      // which then stops the children in order, and a kill reaches the child's own children.
      child = spawn(this.command, [...this.args], { stdio: ['ignore', fd, fd], detached: true, env: this.env });
    } finally {
      closeSync(fd);
    }
    const startedAt = Date.now();
    this.#child = child;
    this.#startedAt = startedAt;
    this.#exited = new Promise<number | null>((resolve) => {
      const ended = (code: number | null, signal: NodeJS.Signals | null): void => {
        resolve(code);
        onExit(this, { at: Date.now(), code, signal, uptimeMs: Date.now() - startedAt });
      };
      child.once('exit', ended);
      // A spawn that failed (no pid) emits 'error' and never 'exit'.
      child.once('error', () => {
        if (child.pid === undefined) ended(null, null);
      });
    });
  }

  /** Schedules the next run after `delayMs`. */
  scheduleRun(delayMs: number, run: () => void): void {
    this.#restartAt = Date.now() + delayMs;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      run();
    }, delayMs);
  }

  /** Cancels a scheduled run; the state reads `stopped` from now on. */
  markStopped(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#restartAt = undefined;
    this.#stopped = true;
  }
}

export class ProcessGroup {
  readonly #logDir: string;
  readonly #restartPolicy: RestartPolicy | undefined;
  readonly #children: Supervised[] = [];
  #stopping = false;
  /** Called on every exit the group did not ask for, before any restart is scheduled. */
  onUnexpectedExit: (s: Supervised, code: number | null) => void = () => {};

  /** With `restartPolicy`, children that exit on their own are started again with its backoff. */
  constructor(logDir: string, restartPolicy?: RestartPolicy) {
    this.#logDir = logDir;
    this.#restartPolicy = restartPolicy;
  }

  get children(): readonly Supervised[] {
    return this.#children;
  }

  start(name: string, command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Supervised {
    if (this.#stopping) throw new Error(`cannot start ${name}: the process group is stopping`);
    const backoff = this.#restartPolicy ? new RestartBackoff(this.#restartPolicy) : undefined;
    const s = new Supervised(name, path.join(this.#logDir, `${name}.log`), command, args, env, backoff);
    this.#children.push(s);
    s.run(this.#onExit);
    return s;
  }

  readonly #onExit = (s: Supervised, exit: ProcessExit): void => {
    s.lastExit = exit;
    if (this.#stopping) return;
    this.onUnexpectedExit(s, exit.code);
    if (!s.backoff) return;
    const delayMs = s.backoff.exited(exit.uptimeMs);
    const crashLooping = s.backoff.crashLooping();
    writeEvent(s, 40, crashLooping ? 'crash-looping; restarting after backoff' : 'exited unexpectedly; restarting', {
      code: exit.code, signal: exit.signal, uptimeMs: exit.uptimeMs, restartInMs: delayMs, restarts: s.restarts, consecutiveExits: s.backoff.consecutiveExits,
    });
    s.scheduleRun(delayMs, () => {
      if (this.#stopping) return;
      s.restarts++;
      try {
        s.run(this.#onExit);
        writeEvent(s, 30, 'restarted', { restarts: s.restarts });
      } catch (err) {
        // spawn() itself refused (e.g. out of file descriptors): count it as a failed run.
        this.#onExit(s, { at: Date.now(), code: null, signal: null, uptimeMs: 0 });
        writeEvent(s, 50, 'restart failed', { err: err instanceof Error ? err.message : String(err) });
      }
    });
  };

  /** Stops every child: SIGTERM to each process group, SIGKILL whatever is left after `graceMs`. */
  async stopAll(graceMs = 2500): Promise<void> {
    this.#stopping = true;
    for (const s of this.#children) s.markStopped();
    const alive = this.#children.filter((s) => s.child.exitCode === null && s.child.signalCode === null);
    for (const s of alive) signalGroup(s.child, 'SIGTERM');
    const timer = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), graceMs).unref());
    await Promise.race([Promise.all(alive.map((s) => s.exited)), timer]);
    for (const s of alive) if (s.child.exitCode === null && s.child.signalCode === null) signalGroup(s.child, 'SIGKILL');
    await Promise.race([Promise.all(alive.map((s) => s.exited)), new Promise((r) => setTimeout(r, 1000).unref())]);
  }
}

/** A supervisor event in the child's own log, as one JSON line like the child's (pino's levels). */
function writeEvent(s: Supervised, level: number, msg: string, fields: Record<string, unknown>): void {
  try {
    appendFileSync(s.logFile, JSON.stringify({ level, time: Date.now(), source: 'demo-supervisor', process: s.name, pid: s.child.pid, ...fields, msg }) + '\n');
  } catch {
    // the log is a convenience; supervision goes on without it
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
