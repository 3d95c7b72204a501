// Transparent interception end to end, as root: a client and a server workload, each in its
// own network namespace with `sextant iptables` rules and a sidecar (uid 1337) in REDIRECT
// mode, apps as uid 1000, the pilot in a router namespace between them. Only declared ports
// reach a sidecar (M8, M9), the server app sees the client's IP (M17), and names resolve
// through the client sidecar's DNS proxy.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FIXTURES, NODE, SEXTANT, Topology, eventually, nsSh, rootSkipReason } from './helpers/netns.ts';
import type { NsProcess } from './helpers/netns.ts';

const skip = rootSkipReason();
const APP_UID = 1000;
const PROXY_UID = 1337;
const CLIENT_IP = '10.211.1.2';
const SERVER_IP = '10.211.2.2';
const REVIEWS = 'reviews.default.svc.cluster.local';

const CONFIG = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [${REVIEWS}]
  location: MESH_INTERNAL
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: default}
spec:
  address: ${SERVER_IP}
  labels: {app: reviews, version: v1}
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: access-log, namespace: istio-system}
spec:
  configPatches:
  - applyTo: NETWORK_FILTER
    match: {listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager}}}}
    patch:
      operation: MERGE
      value:
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: /dev/stdout
`;

interface Mesh {
  topo: Topology;
  router: string;
  client: string;
  server: string;
  clientSidecar: NsProcess;
  serverSidecar: NsProcess;
  dir: string;
}

let mesh: Mesh | undefined;

function sidecarArgs(ip: string, pod: string, pilot: string, labels: Record<string, string>, meta: string[]): string[] {
  return [
    NODE, SEXTANT, 'proxy', '--xds', pilot, '--id', `sidecar~${ip}~${pod}.default~default.svc.cluster.local`,
    ...Object.entries(labels).flatMap(([k, v]) => ['--label', `${k}=${v}`]),
    '--meta', 'INTERCEPTION_MODE=REDIRECT', ...meta.flatMap((m) => ['--meta', m]),
    '--admin-address', '127.0.0.1:15000', '--log-level', 'warn',
  ];
}

async function probe<T>(ns: string, args: string[], uid?: number): Promise<T> {
  const out = await mesh!.topo.run(ns, [NODE, path.join(FIXTURES, 'probe.ts'), ...args], uid === undefined ? {} : { uid });
  return JSON.parse(out.trim().split('\n').pop()!) as T;
}

async function adminGet(ns: string, p: string): Promise<{ status?: number; body?: string; error?: string }> {
  return probe(ns, ['get', `http://127.0.0.1:15000${p}`]);
}

/** `listener.NAME.downstream_cx_total` of a sidecar's /stats, summed over its listeners. */
async function accepted(ns: string): Promise<number> {
  const r = await adminGet(ns, '/stats');
  return [...(r.body ?? '').matchAll(/^listener\.\S+\.downstream_cx_total: (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
}

async function seriesCount(ns: string): Promise<number> {
  const r = await adminGet(ns, '/stats');
  return Number(/^metrics\.series: (\d+)$/m.exec(r.body ?? '')?.[1] ?? NaN);
}

/** Access log lines (JSON with a response_code) a sidecar wrote so far. */
function accessLog(p: NsProcess): Record<string, unknown>[] {
  const lines: Record<string, unknown>[] = [];
  for (const l of p.output().split('\n')) {
    if (!l.startsWith('{') || !l.includes('"response_code"')) continue;
    try {
      lines.push(JSON.parse(l) as Record<string, unknown>);
    } catch { /* a partial line */ }
  }
  return lines;
}

/** Packets matched by the capture (DNAT/REDIRECT) rules of a namespace. */
function capturedPackets(ns: string): number {
  const out = nsSh(ns, 'iptables', ['-t', 'nat', '-L', '-v', '-x', '-n']);
  let n = 0;
  for (const line of out.split('\n')) if (/\b(DNAT|REDIRECT)\b/.test(line)) n += Number(line.trim().split(/\s+/)[0]);
  return n;
}

function rss(p: NsProcess): number {
  const status = readFileSync(`/proc/${p.child.pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN) * 1024;
}

before(async () => {
  if (skip) return;
  const topo = new Topology();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sextant-root-'));
  mesh = { topo, dir } as Mesh;
  const router = topo.namespace('r');
  const client = topo.namespace('c');
  const server = topo.namespace('s');
  Object.assign(mesh, { router, client, server });
  topo.link(router, '10.211.1.1/24', client, `${CLIENT_IP}/24`);
  topo.link(router, '10.211.2.1/24', server, `${SERVER_IP}/24`);
  nsSh(router, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  nsSh(client, 'ip', ['route', 'add', 'default', 'via', '10.211.1.1']);
  nsSh(server, 'ip', ['route', 'add', 'default', 'via', '10.211.2.1']);
  // The client's resolver is "the router": its queries never get there, the sidecar answers.
  topo.resolvConf(client, 'nameserver 10.211.1.1\noptions timeout:2 attempts:1\n');

  const configDir = path.join(dir, 'config');
  mkdirSync(configDir);
  writeFileSync(path.join(configDir, 'mesh.yaml'), CONFIG);
  topo.spawn(router, 'pilot', [NODE, SEXTANT, 'pilot', '--plaintext-xds', '--config-dir', configDir, '--xds-address', '0.0.0.0:15010', '--http-address', '127.0.0.1:15014', '--log-level', 'warn']);

  // Server: the app on 9080 (declared) and TCP servers on 3306 and 6379 (never captured).
  const app = topo.spawn(server, 'app', [NODE, path.join(FIXTURES, 'app.ts'), 'http', '9080'], { uid: APP_UID });
  const db = topo.spawn(server, 'db', [NODE, path.join(FIXTURES, 'app.ts'), 'tcp', '3306', '6379'], { uid: APP_UID });
  await eventually(async () => (app.output().includes('ready') && db.output().includes('ready') ? true : undefined), 15_000, 'the server apps');
  nsSh(server, NODE, [SEXTANT, 'iptables', '--include-inbound-ports', '9080', '--preserve-source-ranges', '10.211.0.0/16']);
  nsSh(client, NODE, [SEXTANT, 'iptables', '--include-outbound-ports', '9080', '--dns']);

  mesh.serverSidecar = topo.spawn(server, 'server-sidecar', sidecarArgs(SERVER_IP, 'reviews-v1-5d8f7c9b4-x2x9z', '10.211.2.1:15010', { app: 'reviews', version: 'v1' }, []), {
    uid: PROXY_UID, env: { SEXTANT_PRESERVE_SOURCE_RANGES: '10.211.0.0/16' },
  });
  mesh.clientSidecar = topo.spawn(client, 'client-sidecar', sidecarArgs(CLIENT_IP, 'productpage-v1-6b746f74dc-9stvx', '10.211.1.1:15010', { app: 'productpage', version: 'v1' }, ['DNS_CAPTURE=true']), { uid: PROXY_UID });
  for (const ns of [client, server]) {
    await eventually(async () => ((await adminGet(ns, '/ready')).status === 200 ? true : undefined), 30_000, `the sidecar in ${ns} to be ready`, 300);
  }
  await eventually(async () => (/^sextant_dns_name_table_hosts 1$/m.test((await adminGet(client, '/stats/prometheus')).body ?? '') ? true : undefined), 15_000, 'the name table (NDS)', 300);
});

after(async () => {
  if (mesh === undefined) return;
  const failed = process.exitCode !== undefined && process.exitCode !== 0;
  if (failed || process.env['KEEP_ROOT_LOGS']) {
    process.stderr.write(`--- client sidecar ---\n${mesh.clientSidecar?.output().slice(-4000)}\n--- server sidecar ---\n${mesh.serverSidecar?.output().slice(-4000)}\n`);
  }
  await mesh.topo.destroy();
  rmSync(mesh.dir, { recursive: true, force: true });
});

test('root: app → client sidecar → server sidecar → server app, by a name the DNS proxy resolves, with no proxy settings', { skip }, async () => {
  const m = mesh!;
  const lookup = await probe<{ address: string; family: number }[]>(m.client, ['lookup', REVIEWS], APP_UID);
  assert.equal(lookup.length, 1);
  assert.match(lookup[0]!.address, /^240\.240\.\d+\.\d+$/, 'an auto-allocated address from the sidecar\'s DNS proxy');
  const clientLog = accessLog(m.clientSidecar).length;
  const serverLog = accessLog(m.serverSidecar).length;
  const r = await probe<{ status?: number; body?: string; error?: string }>(m.client, ['get', `http://${REVIEWS}:9080/ratings?x=1`], APP_UID);
  assert.equal(r.error, undefined);
  assert.equal(r.status, 200);
  const seen = JSON.parse(r.body!) as { peer: string; host: string; path: string };
  assert.equal(seen.peer, CLIENT_IP, 'the server app sees the client namespace\'s IP as its TCP peer');
  assert.equal(seen.host, `${REVIEWS}:9080`);
  assert.equal(seen.path, '/ratings?x=1');
  await eventually(async () => (accessLog(m.clientSidecar).length > clientLog && accessLog(m.serverSidecar).length > serverLog ? true : undefined), 5000, 'both access logs');
  const out = accessLog(m.clientSidecar).at(-1)!;
  const inb = accessLog(m.serverSidecar).at(-1)!;
  assert.equal(out['upstream_cluster'], `outbound|9080||${REVIEWS}`);
  assert.equal(out['path'], '/ratings?x=1');
  assert.equal(out['response_code'], 200);
  assert.equal(out['downstream_local_address'], '0.0.0.0:9080', 'the original port (the address is not known under REDIRECT)');
  assert.equal(inb['upstream_cluster'], 'inbound|9080||');
  assert.equal(inb['downstream_remote_address'], `${CLIENT_IP}:${String(inb['downstream_remote_address']).split(':')[1]}`);
  assert.equal(inb['downstream_local_address'], `${SERVER_IP}:9080`);
  assert.equal(inb['response_code'], 200);
});

test('root: a captured port\'s unknown host goes to its original destination (passthrough by Host)', { skip }, async () => {
  const m = mesh!;
  const r = await probe<{ status?: number; body?: string }>(m.client, ['get', `http://${SERVER_IP}:9080/direct`], APP_UID);
  assert.equal(r.status, 200);
  assert.equal((JSON.parse(r.body!) as { path: string }).path, '/direct');
  const out = accessLog(m.clientSidecar).at(-1)!;
  assert.equal(out['upstream_cluster'], 'PassthroughCluster');
  assert.equal(out['upstream_host'], `${SERVER_IP}:9080`);
});

test('root: TCP to 3306 and 6379 never reaches a sidecar and works', { skip }, async () => {
  const m = mesh!;
  const before = { client: await accepted(m.client), server: await accepted(m.server), clientPkts: capturedPackets(m.client), serverPkts: capturedPackets(m.server), clientLog: accessLog(m.clientSidecar).length, serverLog: accessLog(m.serverSidecar).length };
  for (const port of [3306, 6379]) {
    const r = await probe<{ reply?: string; error?: string }>(m.client, ['tcp', SERVER_IP, String(port)], APP_UID);
    assert.equal(r.reply, `${port} ping`);
  }
  assert.equal(await accepted(m.client), before.client, 'client sidecar accepted nothing');
  assert.equal(await accepted(m.server), before.server, 'server sidecar accepted nothing');
  assert.equal(capturedPackets(m.client), before.clientPkts, 'no capture rule matched in the client namespace');
  assert.equal(capturedPackets(m.server), before.serverPkts, 'no capture rule matched in the server namespace');
  assert.equal(accessLog(m.clientSidecar).length, before.clientLog);
  assert.equal(accessLog(m.serverSidecar).length, before.serverLog);
  for (const ns of [m.client, m.server]) assert.doesNotMatch(nsSh(ns, 'iptables-save', []), /\b(3306|6379)\b/);
});

test('root: a scan of ports 1024-65535 reaches the sidecar only on the declared port, with no memory growth and no new metric series', { skip, timeout: 300_000 }, async (t) => {
  const m = mesh!;
  const acceptedBefore = await accepted(m.server);
  const seriesBefore = await seriesCount(m.server);
  const rssBefore = rss(m.serverSidecar);
  // The scanner is another host (the router namespace), as a security scanner would be.
  const started = Date.now();
  const r = await probe<{ open: number[]; refused: number; other: number }>(m.router, ['scan', SERVER_IP, '1024', '65535']);
  t.diagnostic(`scanned 64,512 ports in ${Date.now() - started} ms: open ${r.open.join(', ')}, ${r.refused} refused`);
  assert.deepEqual(r.open, [3306, 6379, 9080], 'the app\'s own ports and the declared port; the sidecar\'s 15001/15006 are reset');
  assert.equal(r.other, 0);
  assert.equal(await accepted(m.server) - acceptedBefore, 1, 'only the connection to the declared port reached the sidecar');
  await new Promise((res) => setTimeout(res, 1000));
  const grown = rss(m.serverSidecar) - rssBefore;
  t.diagnostic(`server sidecar RSS ${(rssBefore / 1048576).toFixed(1)} MB before, grew ${(grown / 1048576).toFixed(2)} MB`);
  assert.ok(grown < 5 * 1024 * 1024, `sidecar RSS grew ${(grown / 1048576).toFixed(1)} MB`);
  assert.equal(await seriesCount(m.server), seriesBefore, 'no metric series added');
});
