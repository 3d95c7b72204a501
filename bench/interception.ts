// What transparent interception costs, as root, in network namespaces (test/root/helpers):
// the added latency (p50, p99 at about 1,000 rps, wrk paced as in proxy-throughput.ts) of a
// call captured by `sextant iptables` (client sidecar → server sidecar), against the same call
// through a client sidecar in captureMode NONE (the app dials it) and against no sidecar at
// all, in one run with the targets interleaved; and a MySQL-port round trip (never captured)
// with the sidecars and rules present and after they are gone: the goal is no difference.
// Writes bench/results/interception.json.
//
//   node bench/interception.ts [--seconds 8] [--runs 3] [--rtts 5000]
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FIXTURES, NODE, ROOT, SEXTANT, Topology, eventually, nsSh, rootSkipReason } from '../test/root/helpers/netns.ts';

const arg = (name: string, def: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const SECONDS = arg('seconds', 8);
const RUNS = arg('runs', 3);
const RTTS = arg('rtts', 5000);
const RATE = 1000;
const CONNECTIONS = 32;
const REVIEWS = 'reviews.default.svc.cluster.local';

const skip = rootSkipReason();
if (skip) {
  process.stderr.write(`bench/interception: ${skip}\n`);
  process.exit(1);
}
if (spawnSync('sh', ['-c', 'command -v wrk']).status !== 0) {
  process.stderr.write('bench/interception: needs wrk (scripts/install-system-deps.sh)\n');
  process.exit(1);
}

const topo = new Topology();
const dir = mkdtempSync(path.join(os.tmpdir(), 'sextant-bench-interception-'));
chmodSync(dir, 0o755); // wrk runs as the app's user and reads its script here
try {
  await main();
} finally {
  await topo.destroy();
  rmSync(dir, { recursive: true, force: true });
}

async function probe<T>(ns: string, args: string[], uid?: number): Promise<T> {
  const out = await topo.run(ns, [NODE, path.join(FIXTURES, 'probe.ts'), ...args], uid === undefined ? {} : { uid });
  return JSON.parse(out.trim().split('\n').pop()!) as T;
}

function wrkMs(v: string | undefined): number {
  const m = /([\d.]+)(us|ms|s)/.exec(v ?? '');
  if (m === null) return NaN;
  const n = Number(m[1]);
  return m[2] === 'us' ? n / 1000 : m[2] === 'ms' ? n : n * 1000;
}

/** One paced wrk run in `ns` as the app (uid 1000). */
function paced(ns: string, url: string, host: string): { p50: number; p99: number; rps: number } {
  const script = path.join(dir, 'paced.lua');
  writeFileSync(script, `math.randomseed(os.time())\nfunction delay() return math.random(0, ${2 * Math.round((CONNECTIONS * 1000) / RATE)}) end\n`);
  const r = spawnSync('ip', ['netns', 'exec', ns, 'setpriv', '--reuid=1000', '--regid=1000', '--clear-groups', '--',
    'wrk', '-t1', `-c${CONNECTIONS}`, `-d${SECONDS}s`, '--latency', '-s', script, '-H', `Host: ${host}`, url], { encoding: 'utf8' });
  const dist = /Latency Distribution[\s\S]*?50%\s+(\S+)[\s\S]*?99%\s+(\S+)/.exec(r.stdout);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1] ?? 0);
  const errors = /Non-2xx or 3xx responses: (\d+)/.exec(r.stdout);
  if (dist === null || rps === 0 || errors !== null) throw new Error(`wrk ${url} in ${ns} failed: ${r.stdout}${r.stderr}`);
  return { p50: wrkMs(dist[1]), p99: wrkMs(dist[2]), rps: Math.round(rps) };
}

async function main(): Promise<void> {
  const router = topo.namespace('br');
  const client = topo.namespace('bc');
  const none = topo.namespace('bn');
  const server = topo.namespace('bs');
  topo.link(router, '10.213.1.1/24', client, '10.213.1.2/24');
  topo.link(router, '10.213.2.1/24', server, '10.213.2.2/24');
  topo.link(router, '10.213.3.1/24', none, '10.213.3.2/24');
  nsSh(router, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  for (const [ns, gw] of [[client, '10.213.1.1'], [server, '10.213.2.1'], [none, '10.213.3.1']] as const) nsSh(ns, 'ip', ['route', 'add', 'default', 'via', gw]);
  topo.resolvConf(client, 'nameserver 10.213.1.1\noptions timeout:2 attempts:1\n');
  const configDir = path.join(dir, 'config');
  mkdirSync(configDir);
  writeFileSync(path.join(configDir, 'mesh.yaml'), `apiVersion: networking.istio.io/v1
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
spec: {address: 10.213.2.2, labels: {app: reviews, version: v1}}
`);
  topo.spawn(router, 'pilot', [NODE, SEXTANT, 'pilot', '--plaintext-xds', '--config-dir', configDir, '--xds-address', '0.0.0.0:15010', '--http-address', '127.0.0.1:15014', '--log-level', 'warn']);
  // The app on 9080 (declared, captured) and on 9081 (never captured: the no-sidecar baseline); MySQL's port.
  const apps = topo.spawn(server, 'app', [NODE, path.join(FIXTURES, 'app.ts'), 'http', '9080', '9081'], { uid: 1000 });
  const db = topo.spawn(server, 'db', [NODE, path.join(FIXTURES, 'app.ts'), 'tcp', '3306'], { uid: 1000 });
  await eventually(async () => (apps.output().includes('ready') && db.output().includes('ready') ? true : undefined), 15_000, 'the apps');

  const rttBaseline = await probe<{ p50: number; p99: number }>(client, ['rtt', '10.213.2.2', '3306', String(RTTS)], 1000);

  nsSh(server, NODE, [SEXTANT, 'iptables', '-b', '9080', '--preserve-source-ranges', '10.213.0.0/16']);
  nsSh(client, NODE, [SEXTANT, 'iptables', '-q', '9080', '--dns']);
  const sidecar = (ns: string, ip: string, pod: string, gw: string, labels: string[], meta: string[], env: Record<string, string> = {}): void => {
    topo.spawn(ns, pod, [NODE, SEXTANT, 'proxy', '--xds', `${gw}:15010`, '--id', `sidecar~${ip}~${pod}.default~default.svc.cluster.local`,
      ...labels.flatMap((l) => ['--label', l]), ...meta.flatMap((m) => ['--meta', m]), '--admin-address', '127.0.0.1:15000', '--log-level', 'warn'], { uid: 1337, env });
  };
  sidecar(server, '10.213.2.2', 'reviews-v1-1', '10.213.2.1', ['app=reviews', 'version=v1'], ['INTERCEPTION_MODE=REDIRECT'], { SEXTANT_PRESERVE_SOURCE_RANGES: '10.213.0.0/16' });
  sidecar(client, '10.213.1.2', 'productpage-v1-1', '10.213.1.1', ['app=productpage'], ['INTERCEPTION_MODE=REDIRECT', 'DNS_CAPTURE=true']);
  sidecar(none, '10.213.3.2', 'productpage-v2-1', '10.213.3.1', ['app=productpage'], ['INTERCEPTION_MODE=NONE']);
  for (const ns of [client, server, none]) {
    await eventually(async () => ((await probe<{ status?: number }>(ns, ['get', 'http://127.0.0.1:15000/ready'])).status === 200 ? true : undefined), 30_000, `sidecar in ${ns}`, 300);
  }
  const vip = await eventually(async () => {
    const r = await probe<{ address: string }[] | { error: string }>(client, ['lookup', REVIEWS], 1000);
    return Array.isArray(r) && r[0]?.address.startsWith('240.240.') ? r[0].address : undefined;
  }, 15_000, 'the DNS proxy', 300);

  const targets = [
    { name: 'captured (iptables REDIRECT, client + server sidecar)', ns: client, url: `http://${vip}:9080/`, host: `${REVIEWS}:9080` },
    { name: 'captureMode NONE client sidecar (+ captured server sidecar)', ns: none, url: 'http://127.0.0.1:9080/', host: `${REVIEWS}:9080` },
    { name: 'no sidecar', ns: client, url: 'http://10.213.2.2:9081/', host: '10.213.2.2:9081' },
  ];
  const runs = new Map<string, { p50: number; p99: number; rps: number }[]>(targets.map((t) => [t.name, []]));
  for (const t of targets) paced(t.ns, t.url, t.host); // warm-up
  for (let i = 0; i < RUNS; i++) for (const t of targets) runs.get(t.name)!.push(paced(t.ns, t.url, t.host));
  const median = (name: string): { p50: number; p99: number; rps: number; p99Runs: number[] } => {
    const list = [...runs.get(name)!].sort((a, b) => a.p99 - b.p99);
    return { ...list[Math.floor(list.length / 2)]!, p99Runs: list.map((r) => r.p99) };
  };
  const results = targets.map((t) => ({ target: t.name, ...median(t.name) }));
  const direct = results[2]!;
  const rttWithSidecar = await probe<{ p50: number; p99: number }>(client, ['rtt', '10.213.2.2', '3306', String(RTTS)], 1000);

  const out = {
    date: new Date().toISOString(), host: { cpus: os.cpus().length, kernel: os.release() },
    paced: { rps: RATE, connections: CONNECTIONS, seconds: SECONDS, runs: RUNS },
    latency: results.map((r) => ({ ...r, addedP50: +(r.p50 - direct.p50).toFixed(2), addedP99: +(r.p99 - direct.p99).toFixed(2) })),
    mysqlPortRoundTrip: { roundTrips: RTTS, withoutSidecar: rttBaseline, withSidecarAndRules: rttWithSidecar },
  };
  mkdirSync(path.join(ROOT, 'bench', 'results'), { recursive: true });
  writeFileSync(path.join(ROOT, 'bench', 'results', 'interception.json'), JSON.stringify(out, null, 2) + '\n');
  for (const r of out.latency) process.stdout.write(`${r.target}: p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms (added ${r.addedP50} / ${r.addedP99} ms), ${r.rps} rps\n`);
  process.stdout.write(`MySQL port round trip: p50/p99 ${rttBaseline.p50.toFixed(3)}/${rttBaseline.p99.toFixed(3)} ms without a sidecar, ${rttWithSidecar.p50.toFixed(3)}/${rttWithSidecar.p99.toFixed(3)} ms with sidecars and rules present\n`);
}
