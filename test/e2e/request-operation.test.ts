// request_operation on istio_requests_total, opt-in by a Telemetry tagOverride (as Istio and
// Kiali configure it), through a real sidecar: 100,000 requests on random paths leave at most
// the budget of operations (200, then `__other__`) and so a bounded number of series; a path
// matching a RouteTemplates template is one operation; the sidecar's RSS grows less than 20 MB.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { egressSidecar } from '../helpers/istio-yaml.ts';
import { countBy, load, pilotRun, rssBytes, sidecar } from './access-log-helpers.ts';
import type { PilotRun, SidecarRun } from './access-log-helpers.ts';

const CLIENT_IP = '127.0.62.2';
const SERVER_IP = '127.0.62.9';
const PORT = 8080;
const HOST = 'orders.default.svc.cluster.local';

let dir: string;
let app: http.Server;
let pilot: PilotRun;
let client: SidecarRun;

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sextant-operation-'));
  mkdirSync(path.join(dir, 'config'));
  app = http.createServer((_req, res) => res.writeHead(200).end('ok'));
  await new Promise<void>((r) => app.listen(PORT, SERVER_IP, r));
  writeFileSync(path.join(dir, 'config', 'mesh.yaml'), `
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: operations, namespace: istio-system}
spec:
  metrics:
  - providers: [{name: prometheus}]
    overrides:
    - match: {metric: REQUEST_COUNT, mode: CLIENT_AND_SERVER}
      tagOverrides:
        request_operation: {value: "filter_state['wasm.istio_operationId']"}
---
apiVersion: sextant.io/v1alpha1
kind: RouteTemplates
metadata: {name: orders, namespace: default}
spec:
  host: orders
  templates:
  - template: "/items/{id}"
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: orders, namespace: default}
spec:
  hosts: [${HOST}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: ${PORT}, name: http, protocol: HTTP}]
  endpoints: [{address: ${SERVER_IP}}]
---
${egressSidecar({ name: 'client', bind: CLIENT_IP, port: PORT })}
`);
  pilot = await pilotRun(path.join(dir, 'config'), path.join(dir, 'unused.db'), []);
  client = await sidecar(pilot.xds, CLIENT_IP, 'client-v1', { app: 'client', version: 'v1' });
});

after(async () => {
  await client?.kill();
  await pilot?.stop();
  app?.close();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

const WORDS = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel', 'india', 'juliet'];
const pick = (): string => WORDS[Math.floor(Math.random() * WORDS.length)]!;
const word = (): string => Math.random().toString(36).slice(2, 2 + 3 + Math.floor(Math.random() * 6)).replace(/[0-9]/g, 'x');

/**
 * Random paths: three words of ten each (1,000 paths the namer keeps as literals, far past the
 * budget), and every seventh of random letters (which the namer folds into `{*}`).
 */
function randomPath(i = 0): string {
  return i % 7 === 3 ? `/${word()}/${word()}/${word()}` : `/${pick()}/${pick()}/${pick()}`;
}

interface Series {
  labels: Record<string, string>;
  value: number;
}

function requestsTotal(text: string): Series[] {
  const out: Series[] = [];
  for (const m of text.matchAll(/^istio_requests_total\{(.*)\} (\S+)$/gm)) {
    const labels: Record<string, string> = {};
    for (const l of m[1]!.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ labels, value: Number(m[2]) });
  }
  return out;
}

test('100,000 random paths: operations within the budget, a template one operation, series bounded, RSS growth < 20 MB', async (t) => {
  const authority = `${HOST}:${PORT}`;
  // warm up, so the baseline holds what any busy sidecar holds (a declared template comes on top
  // of the 200 learned operations, whenever it is first seen)
  assert.deepEqual(countBy(await load(CLIENT_IP, PORT, authority, 5000, (i) => (i === 0 ? '/items/1' : randomPath(i)), 32)), { 200: 5000 });
  await new Promise((r) => setTimeout(r, 1500));
  const rssBefore = rssBytes(client.pid);
  const N = 100_000;
  const ITEMS = 1000;
  // the templated path is spread through the random ones: every 101st of 101,000 requests
  const statuses = await load(CLIENT_IP, PORT, authority, N + ITEMS, (i) => (i % 101 === 50 ? `/items/${Math.floor(Math.random() * 1e12)}` : randomPath(i)), 32);
  assert.deepEqual(countBy(statuses), { 200: N + ITEMS });
  await new Promise((r) => setTimeout(r, 1500));
  const rssAfter = rssBytes(client.pid);
  const series = requestsTotal(await client.stats()).filter((s) => s.labels['destination_service'] === HOST);
  const operations = new Set(series.map((s) => s.labels['request_operation']));
  // 200 learned operations, then `__other__`, and the declared /items/{id}; every request
  // answered 200, so one series per operation
  assert.equal(operations.size, 202, `operations: ${operations.size}`);
  assert.ok(operations.has('__other__'));
  assert.equal(series.length, 202);
  const items = series.filter((s) => s.labels['request_operation'] === '/items/{id}');
  assert.deepEqual(items.map((s) => [s.labels['response_code'], s.value]), [['200', ITEMS + 1]]);
  assert.equal(series.reduce((a, s) => a + s.value, 0), 5000 + N + ITEMS);
  const growthMb = (rssAfter - rssBefore) / 1024 / 1024;
  t.diagnostic(`sidecar RSS ${(rssBefore / 1048576).toFixed(1)} → ${(rssAfter / 1048576).toFixed(1)} MB after ${N + ITEMS} requests on random paths`);
  assert.ok(growthMb < 20, `proxy RSS grew ${growthMb.toFixed(1)} MB (${(rssBefore / 1048576).toFixed(1)} → ${(rssAfter / 1048576).toFixed(1)} MB)`);
});
