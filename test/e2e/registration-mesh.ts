// A mesh for the registration end-to-end tests, all real processes: etcd, `sextant pilot` on
// it with the registration API on, a client's `sextant proxy` (captureMode NONE, its egress
// listener on 127.0.OCTET+1.1:8080), and instances of one service on 127.0.OCTET.N. Nothing is
// registered from files: only the client's Sidecar is put into etcd, the rest goes through
// the API.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { openEtcdStore } from '../../src/config/index.ts';
import { startEtcd, type EtcdProcess } from '../helpers/etcd.ts';
import { freePort } from '../helpers/ports.ts';
import { killGroup } from '../helpers/owned-processes.ts';

const REPO = path.resolve(import.meta.dirname, '..', '..');
export const CLI = path.join(REPO, 'bin', 'sextant.mjs');
const INSTANCE_APP = path.join(import.meta.dirname, 'registration-instance.ts');
export const TOKEN = 'e2e-shop-token-0123456789';
export const NAMESPACE = 'shop';
export const SERVICE = 'reviews';
export const HOST = `${SERVICE}.${NAMESPACE}.svc.cluster.local`;
export const SERVICE_PORT = 8080;
export const INSTANCE_PORT = 18080;

export interface Instance {
  id: string;
  address: string;
  process: ChildProcess | undefined;
}

export interface RegistrationMesh {
  dir: string;
  tokenFile: string;
  pilotHttp: string;
  api: string;
  /** Where the client sends requests (its sidecar's egress listener). */
  egress: { host: string; port: number };
  clientNodeId: string;
  instances: Instance[];
  startInstance(instance: Instance): Promise<void>;
  /** SIGTERM, then wait for the exit (it finishes its requests first). */
  stopInstance(instance: Instance): Promise<void>;
  /** Requests an instance is serving, asked directly (not through the mesh). */
  inflight(instance: Instance): Promise<number>;
  /** A call to the registration API with the test's token. */
  call(method: string, p: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }>;
  /** Runs `sextant register ARGS --pilot … --token-file … -n shop`. */
  register(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }>;
  stop(): Promise<void>;
}

function spawnLogged(dir: string, name: string, args: string[]): ChildProcess {
  const log = openSync(path.join(dir, `${name}.log`), 'a');
  return spawn(process.execPath, args, { detached: true, stdio: ['ignore', log, log] });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(50);
  }
}

const ok = async (url: string): Promise<boolean> => (await fetch(url, { signal: AbortSignal.timeout(1000) })).status === 200;

export async function startRegistrationMesh(octet: number, instanceCount: number): Promise<RegistrationMesh> {
  const dir = mkdtempSync(path.join(tmpdir(), 'sextant-registration-e2e-'));
  mkdirSync(dir, { recursive: true });
  const tokenFile = path.join(dir, 'tokens');
  writeFileSync(tokenFile, `${TOKEN} ${NAMESPACE}\n`, { mode: 0o600 });
  const children: ChildProcess[] = [];
  let etcd: EtcdProcess | undefined;
  const instances: Instance[] = Array.from({ length: instanceCount }, (_, i) => ({ id: `i${i + 1}`, address: `127.0.${octet}.${i + 1}`, process: undefined }));

  const stop = async (): Promise<void> => {
    for (const c of [...children, ...instances.map((i) => i.process)]) killGroup(c, 'SIGKILL');
    await etcd?.stop();
    if (process.env['KEEP_MESH_LOGS'] === undefined) rmSync(dir, { recursive: true, force: true });
    else process.stderr.write(`registration mesh logs in ${dir}\n`);
  };

  try {
    etcd = await startEtcd();
    const prefix = '/sextant/config';
    // The client's sidecar scope: the only config not written through the registration API.
    const store = await openEtcdStore({ endpoints: [etcd.endpoint], prefix, logger: pino({ level: 'silent' }) });
    const egress = { host: `127.0.${octet + 1}.1`, port: SERVICE_PORT };
    await store.create({
      apiVersion: 'networking.istio.io/v1', kind: 'Sidecar', metadata: { name: 'client', namespace: NAMESPACE },
      spec: { workloadSelector: { labels: { app: 'client' } }, egress: [{ port: { number: SERVICE_PORT, protocol: 'HTTP', name: 'http' }, bind: egress.host, captureMode: 'NONE', hosts: ['./*'] }] },
    });
    await store.close();

    const xds = `127.0.0.1:${await freePort()}`;
    const pilotHttp = `127.0.0.1:${await freePort()}`;
    children.push(spawnLogged(dir, 'pilot', [CLI, 'pilot', '--plaintext-xds', '--etcd-endpoints', etcd.endpoint, '--etcd-prefix', prefix, '--xds-address', xds, '--http-address', pilotHttp, '--registration-tokens', tokenFile]));
    await until('the pilot is ready', () => ok(`http://${pilotHttp}/ready`));

    const clientNodeId = `sidecar~127.0.${octet + 1}.1~client-0.${NAMESPACE}~${NAMESPACE}.svc.cluster.local`;
    const admin = `127.0.0.1:${await freePort()}`;
    children.push(spawnLogged(dir, 'client-proxy', [
      CLI, 'proxy', '--xds', xds, '--id', clientNodeId, '--namespace', NAMESPACE, '--label', 'app=client',
      '--meta', 'INTERCEPTION_MODE=NONE', '--admin-address', admin,
    ]));
    await until('the client sidecar is ready', () => ok(`http://${admin}/ready`));

    const api = `http://${pilotHttp}/apis/registration/v1`;
    const mesh: RegistrationMesh = {
      dir, tokenFile, pilotHttp, api, egress, clientNodeId, instances,
      async startInstance(instance) {
        const child = spawnLogged(dir, `instance-${instance.id}`, [INSTANCE_APP, '--id', instance.id, '--host', instance.address, '--port', String(INSTANCE_PORT)]);
        instance.process = child;
        await until(`instance ${instance.id} listens`, async () => (await mesh.inflight(instance)) >= 0);
      },
      async stopInstance(instance) {
        const child = instance.process;
        if (child === undefined) return;
        killGroup(child, 'SIGTERM');
        await exited(child);
        instance.process = undefined;
      },
      async inflight(instance) {
        const res = await fetch(`http://${instance.address}:${INSTANCE_PORT}/inflight`, { signal: AbortSignal.timeout(1000) });
        return ((await res.json()) as { inflight: number }).inflight;
      },
      async call(method, p, body) {
        const res = await fetch(`${api}${p}`, {
          method,
          headers: { authorization: `Bearer ${TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        });
        return { status: res.status, body: (await res.json()) as Record<string, unknown> };
      },
      register(...args) {
        return new Promise((resolve) => {
          const child = spawn(process.execPath, [CLI, 'register', ...args, '--pilot', `http://${pilotHttp}`, '--token-file', tokenFile, '-n', NAMESPACE], { stdio: ['ignore', 'pipe', 'pipe'] });
          let stdout = '';
          let stderr = '';
          child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
          child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
          child.on('exit', (code) => resolve({ code, stdout, stderr }));
        });
      },
      stop,
    };
    for (const i of instances) await mesh.startInstance(i);
    return mesh;
  } catch (err) {
    await stop();
    throw err;
  }
}

export interface Sent {
  /** performance.now() when sent and when answered. */
  at: number;
  done: number;
  status: number;
  /** The instance that answered (from its body), or the error. */
  instance: string;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

/** One request through the client's sidecar to the service. */
export function send(mesh: RegistrationMesh, pathAndQuery = '/', timeoutMs = 10_000): Promise<Sent> {
  const at = performance.now();
  return new Promise((resolve) => {
    const req = http.request({ host: mesh.egress.host, port: mesh.egress.port, path: pathAndQuery, agent, headers: { host: `${HOST}:${SERVICE_PORT}` }, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let instance = text.slice(0, 200);
        try {
          instance = (JSON.parse(text) as { id: string }).id;
        } catch {
          // not an instance's answer (a proxy's 503 text)
        }
        resolve({ at, done: performance.now(), status: res.statusCode ?? 0, instance });
      });
      res.on('error', (err) => resolve({ at, done: performance.now(), status: 0, instance: err.message }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err) => resolve({ at, done: performance.now(), status: 0, instance: err.message }));
    req.end();
  });
}

export function closeAgent(): void {
  agent.destroy();
}

export { until };
