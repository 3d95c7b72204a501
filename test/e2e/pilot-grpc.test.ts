// End to end: `sextant pilot` (the real CLI, a separate process) serves a proxyless @grpc/grpc-js-xds client (a
// real child process) that calls xds:///greeter.default.svc.cluster.local:50051, backed by two
// gRPC servers registered by WorkloadEntry; a 90/10 VirtualService split, then an edit of the
// config file to a header match, take effect without restarting anything.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Interface } from 'node:readline';
import * as grpc from '@grpc/grpc-js';
import { startGreeter } from '../helpers/grpc-echo.ts';
import { greeterBootstrap, lineQueue } from '../helpers/proxyless-client.ts';

const repo = path.resolve(import.meta.dirname, '../..');
const nodeBin = path.join(repo, 'node_modules/.bin/node');
const dir = mkdtempSync(path.join(tmpdir(), 'sextant-pilot-grpc-'));
const children: ChildProcess[] = [];
const servers: grpc.Server[] = [];
let client: { proc: ChildProcess; lines: Interface; next: () => Promise<string> };
let httpAddress = '';

function virtualService(http: string): string {
  return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: greeter, namespace: default}
spec:
  hosts: [greeter.default.svc.cluster.local]
  http:
${http}`;
}

const SPLIT = `  - route:
    - destination: {host: greeter.default.svc.cluster.local, subset: v1}
      weight: 90
    - destination: {host: greeter.default.svc.cluster.local, subset: v2}
      weight: 10
`;

const HEADER_MATCH = `  - match:
    - headers:
        x-version: {exact: v2}
    route:
    - destination: {host: greeter.default.svc.cluster.local, subset: v2}
  - route:
    - destination: {host: greeter.default.svc.cluster.local, subset: v1}
`;

/** Replaces a config file the way editors and `kubectl`-style tools do (write, then rename). */
function writeConfig(name: string, text: string): void {
  const tmp = path.join(dir, `.${name}.tmp`);
  writeFileSync(tmp, text);
  renameSync(tmp, path.join(dir, name));
}

function spawnChild(args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const proc = spawn(nodeBin, args, { cwd: repo, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  children.push(proc);
  return proc;
}

before(async () => {
  const [v1, v2] = await Promise.all([startGreeter('v1'), startGreeter('v2')]);
  servers.push(v1.server, v2.server);
  writeConfig('greeter.yaml', `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: greeter, namespace: default}
spec:
  hosts: [greeter.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 50051, name: grpc, protocol: GRPC}]
  workloadSelector: {labels: {app: greeter}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: greeter-v1, namespace: default}
spec: {address: 127.0.0.1, ports: {grpc: ${v1.port}}, labels: {app: greeter, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: greeter-v2, namespace: default}
spec: {address: 127.0.0.1, ports: {grpc: ${v2.port}}, labels: {app: greeter, version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: greeter, namespace: default}
spec:
  host: greeter.default.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`);
  writeConfig('greeter-vs.yaml', virtualService(SPLIT));

  const pilot = spawnChild(['src/cli/main.ts', 'pilot', '--plaintext-xds', '--config-dir', dir, '--xds-address', '127.0.0.1:0', '--http-address', '127.0.0.1:0', '--debounce-after', '50ms']);
  let xdsAddress = '';
  const logs = createInterface({ input: pilot.stdout! });
  let stderr = '';
  pilot.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  await new Promise<void>((resolve, reject) => {
    pilot.once('exit', (code) => reject(new Error(`pilot exited with ${code}: ${stderr}`)));
    logs.on('line', (line) => {
      const entry = JSON.parse(line) as { msg?: string; xdsAddress?: string; httpAddress?: string };
      if (entry.msg === 'pilot listening; loading config') {
        xdsAddress = entry.xdsAddress!;
        httpAddress = entry.httpAddress!;
      }
      if (entry.msg === 'pilot ready') resolve();
    });
  });

  const proc = spawnChild(['test/e2e/pilot-xds-client.ts', 'xds:///greeter.default.svc.cluster.local:50051'], { GRPC_XDS_BOOTSTRAP_CONFIG: greeterBootstrap([xdsAddress]) });
  client = { proc, ...lineQueue(proc.stdout!) };
});

after(() => {
  for (const c of children) {
    try {
      process.kill(-c.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const s of servers) s.forceShutdown();
  rmSync(dir, { recursive: true, force: true });
});

async function round(calls: number, header?: string): Promise<Record<string, number>> {
  client.proc.stdin!.write(`${calls}${header === undefined ? '' : ` ${header}`}\n`);
  return JSON.parse(await client.next()) as Record<string, number>;
}

test('a 90/10 VirtualService split sends 90±5 % of 1,000 calls to v1', async () => {
  // Warm-up: the first call waits for LDS, RDS, CDS, EDS from the pilot.
  await round(1);
  const counts = await round(1000);
  assert.equal((counts['v1'] ?? 0) + (counts['v2'] ?? 0), 1000, JSON.stringify(counts));
  assert.ok(counts['v1']! >= 850 && counts['v1']! <= 950, `v1 got ${counts['v1']} of 1000`);
});

test('editing the file to a header match takes effect without a restart', async () => {
  writeConfig('greeter-vs.yaml', virtualService(HEADER_MATCH));
  let withHeader: Record<string, number> = {};
  for (let i = 0; i < 300; i++) {
    withHeader = await round(20, 'x-version=v2');
    if (withHeader['v2'] === 20) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.deepEqual(withHeader, { v2: 20 });
  assert.deepEqual(await round(50), { v1: 50 });

  // The client shows up SYNCED in the pilot's status.
  const status = (await (await fetch(`http://${httpAddress}/debug/syncz`)).json()) as { proxy: string; types: { type: string; state: string }[] }[];
  const me = status.find((s) => s.proxy.includes('greeter-client'));
  assert.ok(me, JSON.stringify(status));
  for (const t of me.types) assert.equal(t.state, 'SYNCED', `${t.type} ${t.state}`);
});
