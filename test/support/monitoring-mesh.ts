// A pilot and sidecars as real processes for the monitoring tests: the pilot on a config
// directory with the flags a test gives (`--dashboard-insecure`, `--prometheus URL`, …), each
// sidecar on an admin address chosen before it starts (so Prometheus's scrape config can name
// it first); everything killed by stop(), also when a test fails half-way.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../helpers/ports.ts';

const CLI = path.join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');

export interface SidecarSpec {
  /** `app` label; the workload is `app-version`. */
  app: string;
  version: string;
  ip: string;
  namespace?: string;
  /** `127.0.0.1:PORT`, picked by reserveAdmin() so Prometheus can be told first. */
  admin: string;
}

export interface MonitoringMesh {
  dir: string;
  configDir: string;
  xds: string;
  /** `http://127.0.0.1:PORT`: the pilot's HTTP address (/ready, /api/v1, /dashboard). */
  pilotUrl: string;
  writeConfig(file: string, yaml: string): void;
  startSidecar(s: SidecarSpec): Promise<void>;
  /** The processes' output (logs), for failure messages. */
  log(): string;
  stop(): Promise<void>;
}

/** An admin address for a sidecar to start later. */
export async function reserveAdmin(): Promise<string> {
  return `127.0.0.1:${await freePort()}`;
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`timed out waiting until ${what}`);
}

/** Starts `sextant pilot --plaintext-xds` on a directory holding `files` (name → YAML), with `pilotArgs`. */
export async function startMonitoringMesh(files: Record<string, string>, pilotArgs: string[] = []): Promise<MonitoringMesh> {
  const dir = mkdtempSync(path.join(tmpdir(), 'sextant-monitoring-'));
  const configDir = path.join(dir, 'config');
  const children: ChildProcess[] = [];
  let stderr = '';
  const capture = (child: ChildProcess, name: string): void => {
    // pino logs to stdout; both are kept (bounded) for failure messages
    for (const stream of [child.stdout, child.stderr]) {
      stream?.setEncoding('utf8').on('data', (d: string) => {
        stderr = (stderr + d.split('\n').filter((l) => l !== '').map((l) => `[${name}] ${l}\n`).join('')).slice(-64 * 1024);
      });
    }
  };
  const stop = async (): Promise<void> => {
    for (const c of children.reverse()) {
      if (c.exitCode !== null || c.signalCode !== null || c.pid === undefined) continue;
      const exited = new Promise((r) => c.once('exit', r));
      try { process.kill(-c.pid, 'SIGKILL'); } catch { /* gone */ }
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const onExit = (): void => {
    for (const c of children) if (c.pid !== undefined && c.exitCode === null) try { process.kill(-c.pid, 'SIGKILL'); } catch { /* gone */ }
  };
  process.once('exit', onExit);
  try {
    mkdirSync(configDir, { recursive: true });
    for (const [name, yaml] of Object.entries(files)) writeFileSync(path.join(configDir, name), yaml);
    const xds = `127.0.0.1:${await freePort()}`;
    const http = `127.0.0.1:${await freePort()}`;
    const pilot = spawn(process.execPath, [CLI, 'pilot', '--plaintext-xds', '--config-dir', configDir, '--ca-dir', path.join(dir, 'ca'), '--xds-address', xds, '--http-address', http, '--log-level', 'warn', ...pilotArgs], {
      stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: { ...process.env, SEXTANT_DATA_DIR: path.join(dir, 'data') },
    });
    children.push(pilot);
    capture(pilot, 'pilot');
    const pilotUrl = `http://${http}`;
    await until('the pilot is ready', async () => {
      if (pilot.exitCode !== null) throw new Error(`the pilot exited (${pilot.exitCode}): ${stderr}`);
      return (await fetch(`${pilotUrl}/ready`)).status === 200;
    });
    return {
      dir,
      configDir,
      xds,
      pilotUrl,
      writeConfig(file, yaml) {
        const tmp = path.join(dir, `.${file}.tmp`);
        writeFileSync(tmp, yaml);
        renameSync(tmp, path.join(configDir, file));
      },
      async startSidecar(s) {
        const ns = s.namespace ?? 'default';
        const id = `sidecar~${s.ip}~${s.app}-${s.version}-abcde.${ns}~${ns}.svc.cluster.local`;
        const child = spawn(process.execPath, [CLI, 'proxy', '--xds', xds, '--id', id, '--admin-address', s.admin, '--label', `app=${s.app}`, '--label', `version=${s.version}`, '--drain-duration', '200ms', '--log-level', 'warn'], {
          stdio: ['ignore', 'pipe', 'pipe'], detached: true,
        });
        children.push(child);
        capture(child, `${s.app}-${s.version}`);
        await until(`sidecar ${s.app}-${s.version} is ready`, async () => {
          if (child.exitCode !== null) throw new Error(`sidecar ${s.app}-${s.version} exited (${child.exitCode}): ${stderr}`);
          return (await fetch(`http://${s.admin}/ready`)).status === 200;
        });
      },
      log: () => stderr,
      async stop() {
        process.off('exit', onExit);
        await stop();
      },
    };
  } catch (err) {
    process.off('exit', onExit);
    await stop();
    throw err;
  }
}
