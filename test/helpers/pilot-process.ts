// `sextant pilot` as a real process for end-to-end tests: on a config directory, on free
// loopback ports of its own, waited for until /ready answers 200; close() kills its process
// group. And waitFor(), the poll-until-it-holds loop the tests share.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './ports.ts';

export const CLI = path.join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');

export interface PilotProcess {
  /** HOST:PORT of the xDS server. */
  xds: string;
  /** HOST:PORT of the HTTP server (/ready, /debug/…). */
  http: string;
  /** `http://` + http. */
  url: string;
  child: ChildProcess;
  /** Kills the pilot's process group (SIGKILL) and waits until it has exited. */
  close(): Promise<void>;
}

export interface PilotOptions {
  configDir: string;
  /** More flags after the addresses and `--log-level warn`, e.g. ['--debounce-after', '10ms']. */
  args?: string[];
  /** The entry point to run (src/cli/main.ts; bin/sextant.mjs to go through the installed binary). */
  cli?: string;
  /** How long to wait for /ready (30 s). */
  readyTimeoutMs?: number;
  /** false: the closed control plane (TLS xDS, the CLI's default); default true (`--plaintext-xds`). */
  plaintext?: boolean;
}

/**
 * Starts `sextant pilot --config-dir <configDir>` (stdout ignored, stderr inherited, in a
 * process group of its own) and waits until its /ready answers 200; throws if it exits first
 * or is not ready in time.
 */
export async function spawnPilot(opts: PilotOptions): Promise<PilotProcess> {
  const xds = `127.0.0.1:${await freePort()}`;
  const http = `127.0.0.1:${await freePort()}`;
  const url = `http://${http}`;
  const child = spawn(process.execPath, [opts.cli ?? CLI, 'pilot', ...(opts.plaintext === false ? [] : ['--plaintext-xds']), '--config-dir', opts.configDir, '--xds-address', xds, '--http-address', http, '--log-level', 'warn', ...(opts.args ?? [])], { stdio: ['ignore', 'ignore', 'inherit'], detached: true });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const pilot: PilotProcess = {
    xds,
    http,
    url,
    child,
    async close() {
      if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
      try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
      await exited;
    },
  };
  const timeoutMs = opts.readyTimeoutMs ?? 30_000;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && child.exitCode === null) {
    if (await fetch(`${url}/ready`).then((r) => r.status === 200, () => false)) return pilot;
    await sleep(100);
  }
  await pilot.close();
  throw new Error(child.exitCode === null ? `the pilot was not ready within ${timeoutMs} ms` : `the pilot exited (${child.exitCode})`);
}

/**
 * Polls `probe` every 100 ms until it returns something other than undefined or false, and
 * returns that. Throws once `timeoutMs` has passed (or when the probe throws).
 */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}
