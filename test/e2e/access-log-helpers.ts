// Real processes for the access-log stream tests: a pilot on fixed loopback ports (so it can be
// stopped and started again where the sidecars look for it) with its node:sqlite store in a temp
// dir, sidecars (`sextant proxy`), reads of the sidecars' counters, and of the store's rows
// (read-only, beside the pilot, as an operator's sqlite3 would).
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../helpers/ports.ts';

export const CLI = path.join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');

export interface Proc {
  child: ChildProcess;
  exited: Promise<void>;
  kill(): Promise<void>;
}

function start(args: string[]): Proc {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'inherit'], detached: true });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    exited,
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
      try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
      await exited;
    },
  };
}

/**
 * GET a text page; one retry, since a kept-alive connection the server just closed fails the
 * first attempt (the admin servers close idle connections before fetch stops reusing them).
 */
export async function getText(url: string): Promise<string> {
  try {
    return await fetch(url).then((r) => r.text());
  } catch {
    return fetch(url).then((r) => r.text());
  }
}

export async function until<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(100);
  }
}

export interface PilotRun {
  xds: string;
  http: string;
  proc: Proc | undefined;
  /** Starts (or starts again) the pilot on the same ports and store; resolves when /ready answers 200. */
  start(): Promise<void>;
  stop(): Promise<void>;
  metrics(): Promise<string>;
}

/** `closed`: the CLI's default closed control plane (TLS xDS) instead of `--plaintext-xds`. */
export async function pilotRun(configDir: string, storeFile: string, extra: string[] = [], closed = false): Promise<PilotRun> {
  const xds = `127.0.0.1:${await freePort()}`;
  const httpAddr = `127.0.0.1:${await freePort()}`;
  const run: PilotRun = {
    xds, http: httpAddr, proc: undefined,
    async start() {
      run.proc = start(['pilot', ...(closed ? [] : ['--plaintext-xds']), '--config-dir', configDir, '--xds-address', xds, '--http-address', httpAddr, '--log-store', `sqlite:${storeFile}`, '--log-level', 'warn', '--debounce-after', '20ms', ...extra]);
      const p = run.proc;
      await until('the pilot is ready', async () => {
        if (p.child.exitCode !== null) throw new Error(`the pilot exited (${p.child.exitCode})`);
        return fetch(`http://${httpAddr}/ready`).then((r) => r.status === 200, () => false);
      });
    },
    async stop() {
      await run.proc?.kill();
    },
    metrics: () => getText(`http://${httpAddr}/metrics`),
  };
  await run.start();
  return run;
}

export interface SidecarRun extends Proc {
  admin: string;
  pid: number;
  stats(): Promise<string>;
}

export async function sidecar(xds: string, ip: string, name: string, labels: Record<string, string>, extra: string[] = []): Promise<SidecarRun> {
  const admin = `127.0.0.1:${await freePort()}`;
  const args = ['proxy', '--xds', xds, '--id', `sidecar~${ip}~${name}-abcde.default~default.svc.cluster.local`, '--admin-address', admin, '--drain-duration', '200ms', '--log-level', 'warn', ...extra];
  for (const [k, v] of Object.entries(labels)) args.push('--label', `${k}=${v}`);
  const p = start(args);
  await until(`sidecar ${name} is ready`, async () => {
    if (p.child.exitCode !== null) throw new Error(`sidecar ${name} exited (${p.child.exitCode})`);
    return fetch(`http://${admin}/ready`).then((r) => r.status === 200, () => false);
  });
  return { ...p, admin, pid: p.child.pid!, stats: () => getText(`http://${admin}/stats/prometheus`) };
}

/** The value of an unlabelled (or exactly labelled) sample in a Prometheus exposition; 0 when absent. */
export function sample(text: string, name: string): number {
  const m = new RegExp(`^${name.replace(/[{}"|.]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(text);
  return m === null ? 0 : Number(m[1]);
}

/** The resident set size of a process, from /proc. */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN) * 1024;
}

/** Rows of the store, read-only (the pilot keeps writing). */
export function query<T = Record<string, unknown>>(storeFile: string, sql: string, ...params: (string | number)[]): T[] {
  const db = new DatabaseSync(storeFile, { readOnly: true });
  try {
    return db.prepare(sql).all(...params) as T[];
  } finally {
    db.close();
  }
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
}

/** Sends `n` GETs (`pathOf(i)`) to `host:port` with `Host: authority`, `concurrency` at a time; resolves with each status. */
export async function load(host: string, port: number, authority: string, n: number, pathOf: (i: number) => string, concurrency = 16): Promise<number[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const statuses = new Array<number>(n).fill(0);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) {
      const i = next++;
      statuses[i] = await new Promise<number>((resolve) => {
        const req = http.request({ host, port, path: pathOf(i), agent, headers: { host: authority } }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.on('error', () => resolve(0));
        req.end();
      });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  agent.destroy();
  return statuses;
}

export function countBy(list: readonly number[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of list) out[String(s)] = (out[String(s)] ?? 0) + 1;
  return out;
}
