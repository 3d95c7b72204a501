// A pilot and sidecars as real processes (`sextant pilot`, `sextant proxy`), for end-to-end
// tests of traffic between apps: config from a YAML string, each sidecar on its own admin
// port, waited for until ready; everything killed by stop().
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './ports.ts';

const CLI = path.join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');

export interface Sidecar {
  id: string;
  admin: string;
  child: ChildProcess;
  /** The sidecar's Prometheus exposition. */
  stats(): Promise<string>;
}

export interface SidecarMesh {
  dir: string;
  xds: string;
  writeConfig(yaml: string): void;
  /** Starts `sextant proxy` for a workload at `ip` with these labels, and waits until it is ready. */
  sidecar(ip: string, name: string, labels: Record<string, string>): Promise<Sidecar>;
  stop(): Promise<void>;
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`timed out waiting until ${what}`);
}

/** Starts a pilot on a directory store holding `yaml`. */
export async function startSidecarMesh(yaml: string): Promise<SidecarMesh> {
  const dir = mkdtempSync(path.join(tmpdir(), 'sextant-h2-'));
  writeFileSync(path.join(dir, 'mesh.yaml'), yaml);
  const xdsPort = await freePort();
  const httpPort = await freePort();
  const children: ChildProcess[] = [];
  const pilot = spawn(process.execPath, [CLI, 'pilot', '--plaintext-xds', '--config-dir', dir, '--xds-address', `127.0.0.1:${xdsPort}`, '--http-address', `127.0.0.1:${httpPort}`, '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'], detached: true });
  children.push(pilot);
  await until('the pilot is ready', async () => (await fetch(`http://127.0.0.1:${httpPort}/ready`)).status === 200);
  const xds = `127.0.0.1:${xdsPort}`;
  return {
    dir,
    xds,
    writeConfig(y) {
      // written aside and renamed into place: the store never reads half a file
      const tmp = path.join(path.dirname(dir), `.${path.basename(dir)}.yaml.tmp`);
      writeFileSync(tmp, y);
      renameSync(tmp, path.join(dir, 'mesh.yaml'));
    },
    async sidecar(ip, name, labels) {
      const admin = `127.0.0.1:${await freePort()}`;
      const id = `sidecar~${ip}~${name}-abcde.default~default.svc.cluster.local`;
      const args = [CLI, 'proxy', '--xds', xds, '--id', id, '--admin-address', admin, '--drain-duration', '200ms', '--log-level', 'warn'];
      for (const [k, v] of Object.entries(labels)) args.push('--label', `${k}=${v}`);
      const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'], detached: true });
      children.push(child);
      await until(`sidecar ${name} is ready`, async () => (await fetch(`http://${admin}/ready`)).status === 200);
      return { id, admin, child, stats: async () => (await fetch(`http://${admin}/stats/prometheus`)).text() };
    },
    async stop() {
      for (const c of children.reverse()) {
        if (c.exitCode !== null || c.pid === undefined) continue;
        const exited = new Promise((r) => c.once('exit', r));
        try { process.kill(-c.pid, 'SIGKILL'); } catch { /* gone */ }
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
