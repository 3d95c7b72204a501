// A mesh for the lanes and active-active end-to-end tests: a real `sextant pilot` on a config
// directory, a real `sextant proxy` per workload (captureMode NONE: inbound on the workload's
// address in front of its app, egress on a second address for the app's calls), and the apps
// themselves as echo servers in the test process. An app answers with its name, lane and data
// centre, the lane headers it saw, and, when it calls a next service, that call's answer and
// the lane headers of its response. Apps forward only `traceparent` on their calls (unless told
// otherwise), as an app whose tracer carries nothing else does.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnPilot, type PilotProcess } from '../helpers/pilot-process.ts';
import { freePort } from '../helpers/ports.ts';

const CLI = path.join(import.meta.dirname, '..', '..', 'bin', 'sextant.mjs');
export const NS = 'default';
export const PORT = 9080;
const APP_PORT = 8080;

export interface WorkloadSpec {
  /** Unique: the WorkloadEntry, Sidecar and sidecar process are named after it. */
  name: string;
  /** The service it is an instance of (its `app` label); absent for a client. */
  service?: string;
  lane?: string;
  /** The data centre (`--data-centre` of its sidecar, and its WorkloadEntry locality). */
  dc?: string;
  /** The service its app calls on every request. */
  next?: string;
  /** Headers the app forwards on its call (default: traceparent only). */
  forward?: readonly string[];
  /** No sidecar: the app alone at its address (an instance of a service, called directly). */
  bare?: boolean;
  /** Not registered as a WorkloadEntry by the file (the registration API does it). */
  unregistered?: boolean;
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** The app's answer, or undefined when the body was not one (a proxy's local reply). */
  body: AppAnswer | undefined;
  text: string;
}

export interface AppAnswer {
  name: string;
  lane: string;
  dc: string;
  seen: Record<string, string | undefined>;
  next?: { status: number; headers: Record<string, string | undefined>; body: AppAnswer | undefined } | undefined;
}

interface Workload extends WorkloadSpec {
  ip: string;
  egress: string;
  admin: string | undefined;
  sidecar: ChildProcess | undefined;
  server: http.Server | undefined;
  hits: number;
}

const SEEN = ['x-sextant-lane', 'baggage', 'tracestate', 'traceparent', 'x-sextant-caller-dc', 'x-sextant-origin-dc'];
const RESPONSE = ['x-sextant-served-lane', 'x-sextant-lane-reason', 'x-sextant-requested-lane', 'x-sextant-lane-miss', 'x-sextant-served-dc'];

const agent = new http.Agent({ keepAlive: true, maxSockets: 128 });

/** One HTTP request; resolves with the status, headers and the body (parsed when an app's). */
export function request(address: string, port: number, headers: Record<string, string>, timeoutMs = 10_000): Promise<Reply> {
  return new Promise((resolve) => {
    const req = http.request({ host: address, port, path: '/', agent, headers, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let body: AppAnswer | undefined;
        try {
          const j = JSON.parse(text) as AppAnswer;
          if (typeof j.name === 'string') body = j;
        } catch {
          // a proxy's own answer
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text });
      });
      res.on('error', (err) => resolve({ status: 0, headers: {}, body: undefined, text: err.message }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (err) => resolve({ status: 0, headers: {}, body: undefined, text: err.message }));
    req.end();
  });
}

export function traceparent(): string {
  const hex = (n: number): string => Array.from({ length: n }, () => Math.floor(Math.random() * 16).toString(16)).join('');
  return `00-${hex(32)}-${hex(16)}-01`;
}

function serviceEntry(service: string): string {
  return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ${service}, namespace: ${NS}}
spec:
  hosts: [${service}.${NS}.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: ${PORT}, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: ${service}}}`;
}

/** A workload's WorkloadEntry (`we-NAME.yaml`) and Sidecar (`sc-NAME.yaml`), each a file of its own. */
function workloadYaml(w: Workload): Record<string, string> {
  const docs: Record<string, string> = {};
  if (w.service !== undefined && w.unregistered !== true) {
    const labels = [`app: ${w.service}`, `wl: ${w.name}`, ...(w.lane !== undefined ? [`sextant.io/lane: ${w.lane}`] : [])].join(', ');
    docs[`we-${w.name}.yaml`] = (`apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ${w.name}, namespace: ${NS}}
spec:
  address: ${w.ip}
  ports: {http: ${w.bare === true ? APP_PORT : PORT}}
  labels: {${labels}}${w.dc !== undefined ? `\n  locality: ${w.dc}` : ''}\n`);
  }
  if (w.bare !== true) {
    const ingress = w.service !== undefined ? `
  ingress:
  - port: {number: ${PORT}, protocol: HTTP, name: http}
    bind: ${w.ip}
    defaultEndpoint: 0.0.0.0:${APP_PORT}
    captureMode: NONE` : '';
    docs[`sc-${w.name}.yaml`] = (`apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: ${w.name}, namespace: ${NS}}
spec:
  workloadSelector: {labels: {wl: ${w.name}}}${ingress}
  egress:
  - port: {number: ${PORT}, protocol: HTTP, name: http}
    bind: ${w.egress}
    captureMode: NONE
    hosts: ["./*"]\n`);
  }
  return docs;
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(50);
  }
}

export interface LaneMesh {
  dir: string;
  pilot: PilotProcess;
  /** Every workload by name. */
  workload(name: string): Workload;
  /** A request from a client workload's app to `service` through its sidecar's egress. */
  send(client: string, service: string, headers?: Record<string, string>): Promise<Reply>;
  /** Requests that reached a workload's app. */
  hits(name: string): number;
  /** Kills a workload (its sidecar with SIGKILL, its app closed); it stays registered. */
  kill(name: string): Promise<void>;
  /** Starts a killed workload again and waits until its sidecar is ready. */
  restart(name: string): Promise<void>;
  /** Writes (or replaces) a file of the config directory; `we-NAME.yaml` holds a workload's WorkloadEntry. */
  writeConfig(file: string, yaml: string): void;
  removeConfig(file: string): void;
  /** The WorkloadEntry file of a workload, as the mesh started with it. */
  workloadEntryYaml(name: string): string;
  /** A sidecar's Prometheus exposition. */
  stats(name: string): Promise<string>;
  stop(): Promise<void>;
}

/**
 * Starts the mesh: `base` (octet N) gives workloads 127.0.N.i and egress 127.0.N+1.i. `config`
 * is extra YAML (LaneGroups, rules) written with the services and workloads.
 */
export async function startLaneMesh(base: number, specs: readonly WorkloadSpec[], config: string, pilotArgs: string[] = []): Promise<LaneMesh> {
  const dir = mkdtempSync(path.join(tmpdir(), 'sextant-lanes-e2e-'));
  const configDir = path.join(dir, 'config');
  const logDir = path.join(dir, 'logs');
  mkdirSync(configDir, { recursive: true });
  mkdirSync(logDir, { recursive: true });
  const workloads = new Map<string, Workload>();
  specs.forEach((s, i) => workloads.set(s.name, { ...s, ip: `127.0.${base}.${i + 1}`, egress: `127.0.${base + 1}.${i + 1}`, admin: undefined, sidecar: undefined, server: undefined, hits: 0 }));
  // a service whose instances are all registered through the registration API gets its ServiceEntry there
  const services = [...new Set(specs.flatMap((s) => (s.service !== undefined && s.unregistered !== true ? [s.service] : [])))];
  writeFileSync(path.join(configDir, 'services.yaml'), services.map(serviceEntry).join('\n---\n') + '\n');
  for (const w of workloads.values()) for (const [file, yaml] of Object.entries(workloadYaml(w))) writeFileSync(path.join(configDir, file), yaml);
  if (config.trim() !== '') writeFileSync(path.join(configDir, 'lanes.yaml'), config);

  let pilot: PilotProcess | undefined;
  const stop = async (): Promise<void> => {
    for (const w of workloads.values()) {
      if (w.sidecar?.pid !== undefined && w.sidecar.exitCode === null && w.sidecar.signalCode === null) {
        const exited = new Promise((r) => w.sidecar!.once('exit', r));
        try { process.kill(-w.sidecar.pid, 'SIGKILL'); } catch { /* gone */ }
        await exited;
      }
      w.server?.closeAllConnections();
      w.server?.close();
    }
    await pilot?.close();
    if (process.env['KEEP_MESH_LOGS'] === undefined) rmSync(dir, { recursive: true, force: true });
    else process.stderr.write(`lanes mesh logs in ${dir}\n`);
  };

  const startApp = (w: Workload): Promise<void> => {
    const server = http.createServer((req, res) => {
      w.hits++;
      const seen: Record<string, string | undefined> = {};
      for (const h of SEEN) seen[h] = req.headers[h] as string | undefined;
      const answer = (next: AppAnswer['next']): void => {
        const body: AppAnswer = { name: w.name, lane: w.lane ?? 'baseline', dc: w.dc ?? '', seen, next };
        res.writeHead(next !== undefined && next.status !== 200 ? 502 : 200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      req.resume();
      if (w.next === undefined) { answer(undefined); return; }
      const fwd: Record<string, string> = { host: `${w.next}.${NS}.svc.cluster.local` };
      for (const h of w.forward ?? ['traceparent']) if (typeof req.headers[h] === 'string') fwd[h] = req.headers[h] as string;
      void request(w.egress, PORT, fwd).then((r) => {
        const headers: Record<string, string | undefined> = {};
        for (const h of RESPONSE) headers[h] = r.headers[h] as string | undefined;
        answer({ status: r.status, headers, body: r.body });
      });
    });
    server.keepAliveTimeout = 30_000;
    w.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(APP_PORT, w.ip, () => resolve());
    });
  };

  const startSidecar = async (w: Workload): Promise<void> => {
    w.admin ??= `127.0.0.1:${await freePort()}`;
    const args = [CLI, 'proxy', '--xds', pilot!.xds, '--id', `sidecar~${w.ip}~${w.name}-0.${NS}~${NS}.svc.cluster.local`, '--admin-address', w.admin, '--drain-duration', '200ms', '--log-level', 'warn', '--label', `wl=${w.name}`];
    if (w.service !== undefined) args.push('--label', `app=${w.service}`);
    if (w.lane !== undefined) args.push('--lane', w.lane);
    if (w.dc !== undefined) args.push('--data-centre', w.dc);
    const log = openSync(path.join(logDir, `${w.name}.log`), 'a');
    w.sidecar = spawn(process.execPath, args, { stdio: ['ignore', log, log], detached: true });
    const admin = w.admin;
    await until(`the sidecar of ${w.name} is ready`, async () => (await fetch(`http://${admin}/ready`, { signal: AbortSignal.timeout(1000) })).status === 200, 60_000);
  };

  try {
    pilot = await spawnPilot({ configDir, args: ['--debounce-after', '20ms', ...pilotArgs] });
    for (const w of workloads.values()) if (w.service !== undefined) await startApp(w);
    // Sidecars start a few at a time: each is a Node process of its own on a small machine.
    const pending = [...workloads.values()].filter((w) => w.bare !== true);
    while (pending.length > 0) await Promise.all(pending.splice(0, 4).map(startSidecar));
  } catch (err) {
    await stop();
    throw err;
  }

  const get = (name: string): Workload => {
    const w = workloads.get(name);
    if (w === undefined) throw new Error(`no workload ${name}`);
    return w;
  };
  return {
    dir,
    pilot,
    workload: get,
    send(client, service, headers = {}) {
      return request(get(client).egress, PORT, { host: `${service}.${NS}.svc.cluster.local`, ...headers });
    },
    hits: (name) => get(name).hits,
    async kill(name) {
      const w = get(name);
      if (w.sidecar?.pid !== undefined && w.sidecar.exitCode === null) {
        const exited = new Promise((r) => w.sidecar!.once('exit', r));
        try { process.kill(-w.sidecar.pid, 'SIGKILL'); } catch { /* gone */ }
        await exited;
      }
      w.sidecar = undefined;
      const server = w.server;
      if (server !== undefined) {
        server.closeAllConnections();
        await new Promise((r) => server.close(r));
      }
      w.server = undefined;
    },
    async restart(name) {
      const w = get(name);
      if (w.service !== undefined) await startApp(w);
      if (w.bare !== true) await startSidecar(w);
    },
    writeConfig(file, yaml) {
      const tmp = path.join(dir, `.${file}.tmp`);
      writeFileSync(tmp, yaml);
      renameSync(tmp, path.join(configDir, file));
    },
    removeConfig(file) {
      rmSync(path.join(configDir, file), { force: true });
    },
    workloadEntryYaml(name) {
      return workloadYaml(get(name))[`we-${name}.yaml`] ?? '';
    },
    async stats(name) {
      return (await fetch(`http://${get(name).admin}/stats/prometheus`)).text();
    },
    stop,
  };
}

/** Runs `n` tasks with at most `concurrency` at a time; results in task order. */
export async function pool<T>(n: number, concurrency: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, async () => {
    while (next < n) {
      const i = next++;
      out[i] = await task(i);
    }
  }));
  return out;
}

export function closeAgent(): void {
  agent.destroy();
}

export { until };
