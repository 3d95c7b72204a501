// The pilot's endpoint fast path in one process, without etcd, sockets or simulated proxies:
// the mesh of bench/registration.ts (10,000 services, 50,000 instances, 100 namespaces, a root
// Sidecar scoping each namespace to itself, ns-0 seeing everything) and 1,000 proxies, and for
// each batch of K pull-outs/pull-ins what the pilot does between the store's events and the
// first byte pushed: derive the snapshot (as server.ts does: from its ResourceMap, no list of
// every resource), plan all 1,000 proxies, generate the EDS of the planned clusters. CPU time
// per step, not end-to-end latency, so it is far less sensitive to other work on the machine.
//
// Writes bench/results/registration-snapshot.json.
//
//   node bench/registration-snapshot.ts [--services 10000] [--proxies 1000] [--batches 150,80] [--sizes 1,70]
import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import path from 'node:path';
import type { Resource } from '../src/api/index.ts';
import { CLUSTER_TYPE, ENDPOINT_TYPE } from '../src/envoy/index.ts';
import { generators } from '../src/pilot/gen/index.ts';
import type { ConfigChange, Proxy, PushContext } from '../src/pilot/model.ts';
import { ResourceMap } from '../src/registry/index.ts';
import { serviceEntryOf, workloadEntryOf, withTrafficState } from '../src/registry/api/resources.ts';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ''), process.argv[i + 1] ?? '');
const SERVICES = Number(args.get('services') ?? 10_000);
const PROXIES = Number(args.get('proxies') ?? 1000);
const INSTANCES = 5;
const NAMESPACES = 100;
const SIZES = (args.get('sizes') ?? '1,70').split(',').map(Number);
const BATCHES = (args.get('batches') ?? '150,80').split(',').map(Number);

const nsOf = (s: number): string => `ns-${s % NAMESPACES}`;
const address = (svc: number, i: number): string => {
  const n = svc * INSTANCES + i;
  return `10.${Math.floor(n / 62_500) % 250}.${Math.floor(n / 250) % 250}.${(n % 250) + 1}`;
};
let revision = 1;
const stored = (r: Resource): Resource => ({ ...r, metadata: { ...r.metadata, creationTimestamp: '2026-01-01T00:00:00Z', generation: 1, resourceVersion: String(revision++) } });
const keyOf = (r: Resource): string => `${r.kind}/${r.metadata.namespace}/${r.metadata.name}`;

const resources = new ResourceMap();
const sidecar = (namespace: string, hosts: string): Resource => ({ apiVersion: 'networking.istio.io/v1', kind: 'Sidecar', metadata: { name: 'default', namespace }, spec: { egress: [{ hosts: [hosts] }] } });
for (const r of [sidecar('istio-system', './*'), sidecar('ns-0', '*/*')]) resources.set(keyOf(r), stored(r));
for (let s = 0; s < SERVICES; s++) {
  const se = stored(serviceEntryOf(nsOf(s), `svc-${s}`, { ports: [{ name: 'http', number: 80, protocol: 'HTTP' }] }));
  resources.set(keyOf(se), se);
  for (let i = 0; i < INSTANCES; i++) {
    const we = stored(workloadEntryOf(nsOf(s), `svc-${s}`, `e${i}`, { address: address(s, i), labels: { version: 'v1' } }));
    resources.set(keyOf(we), we);
  }
}
// As bench/pilot-clients.ts announces them (addresses 10.x.y.1 are also instances': their
// proxies get full pushes when those instances change, as in the end-to-end benchmark).
const proxies: Proxy[] = [];
for (let i = 0; i < PROXIES; i++) {
  const ns = `ns-${i % NAMESPACES}`;
  proxies.push(generators.proxyFromNode({ id: `sidecar~10.${Math.floor(i / 250)}.${i % 250}.1~app-${i}.${ns}~${ns}.svc.cluster.local`, metadata: { NAMESPACE: ns, LABELS: { app: `app-${i % 10}` }, CLUSTER_ID: 'Kubernetes' } }));
}

let started = performance.now();
let current: PushContext = generators.buildPushContext([...resources.values()]);
const fullBuildMs = performance.now() - started;
started = performance.now();
// Serve every proxy once (CDS, then EDS of its EDS clusters): the memo tables as after start-up.
for (const p of proxies) {
  const names = new Set<string>();
  for (const [n, c] of generators.generate(current, p, CLUSTER_TYPE)) if (c['type'] === 'EDS') names.add(n);
  generators.generate(current, p, ENDPOINT_TYPE, names);
}
const warmMs = performance.now() - started;

let seed = 12345;
const random = (n: number): number => {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
};
const percentile = (values: number[], p: number): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
};
const summary = (values: number[]): { p50Ms: number; p90Ms: number; maxMs: number } => ({
  p50Ms: Math.round(percentile(values, 50) * 100) / 100, p90Ms: Math.round(percentile(values, 90) * 100) / 100, maxMs: Math.round(Math.max(...values) * 100) / 100,
});

const runs: Record<string, unknown>[] = [];
SIZES.forEach((size, n) => {
  const derive: number[] = [];
  const plan: number[] = [];
  const generate: number[] = [];
  let planned = 0;
  let fullPushes = 0;
  for (let b = 0; b < (BATCHES[n] ?? BATCHES[0]!); b++) {
    const keys = new Set<string>();
    for (let k = 0; k < size; k++) {
      const s = random(SERVICES);
      const key = `WorkloadEntry/${nsOf(s)}/svc-${s}-e${random(INSTANCES)}`;
      const we = resources.get(key)!;
      const next = withTrafficState(we, we.metadata.annotations?.['sextant.io/traffic'] === 'out' ? 'in' : 'out');
      resources.set(key, { ...next, metadata: { ...next.metadata, resourceVersion: String(revision++) } });
      keys.add(key);
    }
    const change: ConfigChange = { keys, endpointsOnly: true };
    const t0 = performance.now();
    const after = generators.updateEndpoints!(current, [], { ...change, current: resources });
    if (after === undefined) throw new Error('the endpoint fast path did not apply');
    const t1 = performance.now();
    const eds = new Map<Proxy, ReadonlySet<string>>();
    for (const p of proxies) {
      const pushPlan = generators.planPush(current, after, change, p);
      if (pushPlan === null) continue;
      planned++;
      if (pushPlan.edsClusters !== undefined) eds.set(p, pushPlan.edsClusters);
      else fullPushes++;
    }
    const t2 = performance.now();
    for (const [p, names] of eds) generators.generate(after, p, ENDPOINT_TYPE, names);
    const t3 = performance.now();
    derive.push(t1 - t0);
    plan.push(t2 - t1);
    generate.push(t3 - t2);
    current = after;
  }
  runs.push({ batchSize: size, batches: derive.length, deriveSnapshot: summary(derive), planAllProxies: summary(plan), generateEds: summary(generate), proxiesPerBatch: Math.round(planned / derive.length), fullPushesPerBatch: Math.round((fullPushes / derive.length) * 10) / 10 });
});

const result = {
  benchmark: 'registration-snapshot',
  at: new Date().toISOString(),
  machine: { cpus: cpus().length, node: process.version, loadAverage1m: loadavg()[0] },
  mesh: { services: SERVICES, instances: SERVICES * INSTANCES, proxies: PROXIES, namespaces: NAMESPACES },
  fullBuildMs: Math.round(fullBuildMs),
  warmMs: Math.round(warmMs),
  runs,
};
writeFileSync(path.join(import.meta.dirname, 'results', args.get('out') ?? 'registration-snapshot.json'), `${JSON.stringify(result, null, 2)}\n`);
process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
