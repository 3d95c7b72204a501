// The lazy-scope tests' mesh, as real processes: Debian's Prometheus (1 s scrape), `sextant
// pilot` on a config directory with the dashboard API and --prometheus, a hub (`sextant hub`),
// the lazy caller `a` and the destination `dest` (both `sextant proxy` in captureMode NONE on
// their own loopback addresses), and the destination's app: a raw TCP server that keeps every
// request head exactly as it arrived. Everything is killed by stop(), also when a test fails.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../helpers/ports.ts';
import { startPrometheus, type Prometheus } from '../support/prometheus.ts';

const CLI = path.join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');
const ROOT = path.join(import.meta.dirname, '..', '..');

export interface LazyMeshOptions {
  /** Workloads on 127.0.OCTET.N, egress binds on 127.0.OCTET+1.N. */
  octet: number;
  /** The LazyScope's spec fields besides the fallback (YAML flow mappings). */
  idleTimeout: string;
  learning: { accessLog: boolean; prometheus: boolean };
}

export interface Head {
  /** The head's bytes as received, up to and including the blank line. */
  raw: string;
  /** The TCP peer the app saw. */
  peer: string;
}

export interface ScopeReport {
  workload: string;
  lazyScope: string | null;
  sidecar: string | null;
  userSidecar: string | null;
  edges: { host: string; source: string; state: string; firstSeen: string; lastSeen: string }[];
}

export interface LazyMesh {
  dir: string;
  configDir: string;
  xds: string;
  pilotUrl: string;
  prometheus: Prometheus;
  /** Admin addresses. */
  admin: { a: string; dest: string; hub: string };
  /** a's egress listener (the app calls services through it, as http_proxy). */
  egress: { host: string; port: number };
  /** IPs. */
  ip: { a: string; dest: string; hub: string };
  heads: Head[];
  writeConfig(file: string, yaml: string): void;
  readConfigFile(rel: string): string;
  startPilot(): Promise<void>;
  stopPilot(): Promise<void>;
  startHub(): Promise<void>;
  stopHub(): Promise<void>;
  startA(): Promise<void>;
  /** Sends `head` (CRLF lines, without the final blank line) to a's egress on a new connection; resolves with the status and body. */
  raw(head: string): Promise<{ status: number; body: string; headers: string }>;
  /** Outbound cluster names a proxy holds now (its admin /clusters). */
  clusters(admin: string): Promise<string[]>;
  /** A resource as the pilot serves it (/debug/configz), or undefined. */
  resource(kind: string, namespace: string, name: string): Promise<Record<string, unknown> | undefined>;
  /** The pilot's /api/v1/access/logs (every page) for a query. */
  logs(query: Record<string, string>): Promise<Record<string, unknown>[]>;
  /** A workload's WorkloadScope as the pilot's store holds it now (/debug/lazyscope). */
  scope(workload: string): Promise<ScopeReport | undefined>;
  syncz(): Promise<{ proxy: string; types: { type: string; responses: number; versionAcked?: string; nonceAcked?: string }[] }[]>;
  log(): string;
  stop(): Promise<void>;
}

const SERVICES = 20;

function config(o: LazyMeshOptions, appPort: number): Record<string, string> {
  const w = (n: number): string => `127.0.${o.octet}.${n}`;
  const e = (n: number): string => `127.0.${o.octet + 1}.${n}`;
  let services = '';
  for (let i = 0; i < SERVICES; i++) {
    const name = `svc-${String(i).padStart(3, '0')}`;
    // svc-007 and svc-011 are served by the destination workload; the rest by nobody
    const backend = i === 7 || i === 11 ? '  workloadSelector: {labels: {app: dest}}' : `  endpoints: [{address: ${w(200)}}]`;
    services += `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ${name}, namespace: shop}
spec:
  hosts: [${name}.shop.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
${backend}
---
`;
  }
  return {
    'services.yaml': services,
    'workloads.yaml': `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: dest-v1, namespace: shop}
spec: {address: ${w(7)}, labels: {app: dest, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: dest-v1, namespace: shop}
spec:
  workloadSelector: {labels: {app: dest}}
  ingress:
  - {port: {number: 8080, protocol: HTTP, name: http}, bind: ${w(7)}, defaultEndpoint: 127.0.0.1:${appPort}, captureMode: NONE}
  egress:
  - {port: {number: 8080, protocol: HTTP, name: http}, bind: ${e(7)}, captureMode: NONE, hosts: ["./svc-000.shop.svc.cluster.local"]}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: u-v1, namespace: shop}
spec: {address: ${w(20)}, labels: {app: u, version: v1, lazy: "true"}}
`,
    'user-sidecar.yaml': `# a Sidecar the user wrote for workload u: lazy scope leaves it as it is
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: u-own, namespace: shop}
spec:
  workloadSelector: {labels: {app: u}}
  egress:
  - hosts: ["./svc-001.shop.svc.cluster.local"]
`,
    'hub.yaml': `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: sextant-hub, namespace: istio-system}
spec:
  hosts: [sextant-hub.istio-system.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 15080, name: http-hub, protocol: HTTP}]
  workloadSelector: {labels: {app: sextant-hub}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: sextant-hub-0, namespace: istio-system}
spec: {address: ${w(10)}, labels: {app: sextant-hub}}
`,
    'lazy.yaml': `apiVersion: sextant.io/v1alpha1
kind: LazyScope
metadata: {name: lazy, namespace: shop}
spec:
  workloadSelector: {labels: {lazy: "true"}}
  fallback: {hub: {host: sextant-hub.istio-system.svc.cluster.local, port: 15080}, timeout: 10s}
  idleTimeout: ${o.idleTimeout}
  evaluationInterval: 1s
  prometheusWindow: 3s
  learning: {accessLog: ${o.learning.accessLog}, prometheus: ${o.learning.prometheus}}
---
apiVersion: sextant.io/v1alpha1
kind: WorkloadScope
metadata: {name: a-v1, namespace: shop}
spec:
  workloadSelector: {labels: {app: a, version: v1, lazy: "true"}}
  egress:
  - {port: {number: 8080, protocol: HTTP, name: http}, bind: ${e(1)}, captureMode: NONE}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging: [{providers: [{name: sextant}]}]
`,
  };
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`timed out waiting until ${what}`);
}

/** The destination's app: answers every request 200 `ok`, keeping the head it received. */
function startApp(heads: Head[]): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer((socket) => {
    let buf = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) break;
        heads.push({ raw: buf.subarray(0, end + 4).toString('latin1'), peer: socket.remoteAddress ?? '' });
        buf = buf.subarray(end + 4);
        socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok');
      }
    });
    socket.on('error', () => undefined);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as net.AddressInfo).port })));
}

export async function startLazyMesh(o: LazyMeshOptions): Promise<LazyMesh> {
  const dir = mkdtempSync(path.join(tmpdir(), 'sextant-lazy-'));
  const configDir = path.join(dir, 'config');
  mkdirSync(configDir, { recursive: true });
  const children = new Map<string, ChildProcess>();
  let output = '';
  const capture = (child: ChildProcess, name: string): void => {
    for (const stream of [child.stdout, child.stderr]) {
      stream?.setEncoding('utf8').on('data', (d: string) => {
        output = (output + d.split('\n').filter((l) => l !== '').map((l) => `[${name}] ${l}\n`).join('')).slice(-128 * 1024);
      });
    }
  };
  const kill = async (name: string): Promise<void> => {
    const c = children.get(name);
    children.delete(name);
    if (c === undefined || c.exitCode !== null || c.signalCode !== null || c.pid === undefined) return;
    const exited = new Promise((r) => c.once('exit', r));
    try { process.kill(-c.pid, 'SIGKILL'); } catch { /* gone */ }
    await exited;
  };
  const heads: Head[] = [];
  const app = await startApp(heads);
  const ip = { a: `127.0.${o.octet}.1`, dest: `127.0.${o.octet}.7`, hub: `127.0.${o.octet}.10` };
  const admin = { a: `127.0.0.1:${await freePort()}`, dest: `127.0.0.1:${await freePort()}`, hub: `127.0.0.1:${await freePort()}` };
  const xds = `127.0.0.1:${await freePort()}`;
  const http = `127.0.0.1:${await freePort()}`;
  const pilotUrl = `http://${http}`;
  let prometheus: Prometheus | undefined;
  const onExit = (): void => {
    for (const c of children.values()) if (c.pid !== undefined && c.exitCode === null) try { process.kill(-c.pid, 'SIGKILL'); } catch { /* gone */ }
  };
  process.once('exit', onExit);
  const stopAll = async (): Promise<void> => {
    process.off('exit', onExit);
    for (const name of [...children.keys()].reverse()) await kill(name);
    await prometheus?.close();
    app.server.close();
    if (!process.env['KEEP_MESH_LOGS']) rmSync(dir, { recursive: true, force: true });
  };
  const spawnCli = (name: string, args: string[]): ChildProcess => {
    const child = spawn(process.execPath, [CLI, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'], detached: true, cwd: ROOT, env: { ...process.env, SEXTANT_DATA_DIR: path.join(dir, 'data') },
    });
    children.set(name, child);
    capture(child, name);
    return child;
  };
  const proxyReady = async (name: string, adminAddress: string): Promise<void> => {
    const child = children.get(name)!;
    await until(`${name} is ready`, async () => {
      if (child.exitCode !== null) throw new Error(`${name} exited (${child.exitCode}): ${output}`);
      return (await fetch(`http://${adminAddress}/ready`)).status === 200;
    });
  };
  try {
    for (const [file, yaml] of Object.entries(config(o, app.port))) writeFileSync(path.join(configDir, file), yaml);
    prometheus = await startPrometheus({ jobs: [admin.a, admin.dest, admin.hub], intervalSeconds: 1 });
    const mesh: LazyMesh = {
      dir, configDir, xds, pilotUrl, prometheus, admin, ip, heads,
      egress: { host: `127.0.${o.octet + 1}.1`, port: 8080 },
      writeConfig(file, yaml) {
        const tmp = path.join(dir, `.${file}.tmp`);
        writeFileSync(tmp, yaml);
        renameSync(tmp, path.join(configDir, file));
      },
      readConfigFile: (rel) => readFileSync(path.join(configDir, rel), 'utf8'),
      async startPilot() {
        const pilot = spawnCli('pilot', ['pilot', '--plaintext-xds', '--config-dir', configDir, '--ca-dir', path.join(dir, 'ca'), '--xds-address', xds, '--http-address', http,
          '--dashboard-insecure', '--prometheus', prometheus!.url, '--log-level', 'warn']);
        await until('the pilot is ready', async () => {
          if (pilot.exitCode !== null) throw new Error(`the pilot exited (${pilot.exitCode}): ${output}`);
          return (await fetch(`${pilotUrl}/ready`)).status === 200;
        });
      },
      stopPilot: () => kill('pilot'),
      async startHub() {
        spawnCli('hub', ['hub', '--xds', xds, '--ip', ip.hub, '--name', 'sextant-hub-0', '--admin-address', admin.hub, '--drain-duration', '200ms', '--log-level', 'warn']);
        await proxyReady('hub', admin.hub);
      },
      stopHub: () => kill('hub'),
      async startA() {
        spawnCli('a', ['proxy', '--xds', xds, '--id', `sidecar~${ip.a}~a-v1-abcde.shop~shop.svc.cluster.local`, '--admin-address', admin.a,
          '--label', 'app=a', '--label', 'version=v1', '--label', 'lazy=true', '--drain-duration', '200ms', '--log-level', 'warn']);
        await proxyReady('a', admin.a);
      },
      raw: (head) => new Promise((resolve, reject) => {
        const socket = net.connect({ host: mesh.egress.host, port: mesh.egress.port });
        let buf = Buffer.alloc(0);
        const timer = setTimeout(() => socket.destroy(new Error(`no answer in 15 s to ${head.split('\r\n')[0]}`)), 15_000);
        socket.on('connect', () => socket.write(`${head}\r\n\r\n`));
        socket.on('data', (d: Buffer) => {
          buf = Buffer.concat([buf, d]);
          const end = buf.indexOf('\r\n\r\n');
          if (end < 0) return;
          const headers = buf.subarray(0, end).toString('latin1');
          const len = Number(/\r\ncontent-length:\s*(\d+)/i.exec(headers)?.[1] ?? '0');
          if (buf.length < end + 4 + len) return;
          clearTimeout(timer);
          socket.destroy();
          resolve({ status: Number(headers.split(' ')[1]), body: buf.subarray(end + 4, end + 4 + len).toString('utf8'), headers });
        });
        socket.on('error', (err) => { clearTimeout(timer); reject(err); });
      }),
      async clusters(adminAddress) {
        const text = await (await fetch(`http://${adminAddress}/clusters`)).text();
        return [...new Set(text.split('\n').map((l) => l.split('::')[0]!).filter((n) => n.startsWith('outbound|')))].sort();
      },
      async resource(kind, namespace, name) {
        const body = await (await fetch(`${pilotUrl}/debug/configz?kind=${kind}`)).json() as { resources: { kind: string; metadata: { namespace: string; name: string } }[] };
        return body.resources.find((r) => r.metadata.namespace === namespace && r.metadata.name === name) as Record<string, unknown> | undefined;
      },
      async logs(query) {
        const out: Record<string, unknown>[] = [];
        let cursor: string | undefined;
        for (let page = 0; page < 100; page++) {
          const q = new URLSearchParams({ ...query, limit: '1000', ...(cursor !== undefined ? { cursor } : {}) });
          const body = await (await fetch(`${pilotUrl}/api/v1/access/logs?${q.toString()}`)).json() as { entries: Record<string, unknown>[]; next?: string };
          out.push(...body.entries);
          if (body.next === undefined) break;
          cursor = body.next;
        }
        return out;
      },
      async scope(workload) {
        const body = await (await fetch(`${pilotUrl}/debug/lazyscope`)).json() as { workloads: ScopeReport[] };
        return body.workloads.find((w) => w.workload === workload);
      },
      async syncz() {
        return await (await fetch(`${pilotUrl}/debug/syncz`)).json() as Awaited<ReturnType<LazyMesh['syncz']>>;
      },
      log: () => output,
      stop: stopAll,
    };
    await mesh.startPilot();
    spawnCli('dest', ['proxy', '--xds', xds, '--id', `sidecar~${ip.dest}~dest-v1-abcde.shop~shop.svc.cluster.local`, '--admin-address', admin.dest,
      '--label', 'app=dest', '--label', 'version=v1', '--drain-duration', '200ms', '--log-level', 'warn']);
    await proxyReady('dest', admin.dest);
    return mesh;
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** Sends `count` requests at `rate` per second (open loop), each on its own connection through `send`; resolves with every status in send order. */
export async function openLoop(count: number, rate: number, send: (i: number) => Promise<number>): Promise<number[]> {
  const statuses = new Array<number>(count).fill(0);
  const started = performance.now();
  const inflight: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    const due = started + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    inflight.push(send(i).then((s) => { statuses[i] = s; }, () => { statuses[i] = 0; }));
  }
  await Promise.all(inflight);
  return statuses;
}
