// Starts the bookinfo mesh of examples/bookinfo for an end-to-end test, on addresses and
// ports of its own (so test files can run side by side), and stops it after the test.
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './ports.ts';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { BOOKINFO_EXAMPLES, seedConfig, startLocalMesh, startPilot, type LocalMesh } from '../../src/demo/mesh.ts';
import type { DemoWorkload } from '../../src/demo/topology.ts';

export interface TestMesh extends LocalMesh {
  configDir: string;
  logDir: string;
  xdsAddress: string;
  httpAddress: string;
  workload(name: string): DemoWorkload;
  /** Writes (or replaces) a config file in the watched store directory. */
  writeConfig(file: string, yaml: string): void;
  removeConfig(file: string): void;
  restartPilot(): Promise<void>;
}

export { freePort };

/** `octet` picks the addresses: workloads on 127.0.OCTET.N, egress on 127.0.OCTET+1.N. */
export async function startTestMesh(octet: number): Promise<TestMesh> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sextant-mesh-'));
  const configDir = path.join(dir, 'config');
  const logDir = path.join(dir, 'logs');
  seedConfig(BOOKINFO_EXAMPLES, configDir, true, { workloadOctet: octet, egressOctet: octet + 1, appPortOffset: octet * 10 });
  const xdsAddress = `127.0.0.1:${await freePort()}`;
  const httpAddress = `127.0.0.1:${await freePort()}`;
  const mesh = await startLocalMesh({ configDir, logDir, examplesDir: BOOKINFO_EXAMPLES, xdsAddress, httpAddress });
  return {
    ...mesh,
    configDir,
    logDir,
    xdsAddress,
    httpAddress,
    workload(name) {
      const w = mesh.workloads.find((x) => x.name === name);
      if (!w) throw new Error(`no workload ${name}`);
      return w;
    },
    writeConfig(file, yaml) {
      // Written aside and renamed into place, as editors do: the store never sees half a file.
      const tmp = path.join(path.dirname(configDir), `.${file}.tmp`);
      writeFileSync(tmp, yaml);
      renameSync(tmp, path.join(configDir, file));
    },
    removeConfig(file) {
      rmSync(path.join(configDir, file), { force: true });
    },
    async restartPilot() {
      const pilot = mesh.group.children.find((c) => c.name === 'pilot' && c.child.exitCode === null);
      if (pilot?.child.pid) process.kill(-pilot.child.pid, 'SIGTERM');
      await pilot?.exited;
      startPilot(mesh.group, { configDir, xdsAddress, httpAddress });
    },
    async stop() {
      await mesh.stop();
      if (!process.env['KEEP_MESH_LOGS']) rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  ms: number;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });

export function request(url: string, headers: Record<string, string> = {}, opts: { method?: string; timeoutMs?: number } = {}): Promise<Reply> {
  const started = performance.now();
  return new Promise((resolve) => {
    const req = http.request(url, { method: opts.method ?? 'GET', headers, agent, timeout: opts.timeoutMs ?? 20_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString(), ms: performance.now() - started }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err) => resolve({ status: 0, headers: {}, body: err.message, ms: performance.now() - started }));
    req.end();
  });
}

/** Polls `check` until it returns true or the deadline passes; returns the time it took. */
export async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    if (await check()) return Date.now() - started;
    await sleep(100);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
}

export function closeAgent(): void {
  agent.destroy();
}
