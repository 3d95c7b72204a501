// The endpoint fast path over long random sequences: each batch of endpoint changes (addresses,
// pull-outs, relabels to other services, clusters, health, deletes, re-adds, inline endpoints)
// derives the next snapshot from the previous one, with the workloads looked up in the pilot's
// ResourceMap (no list of every resource is made) and the memo tables layered over the
// previous snapshot's. Every derived snapshot must equal a full rebuild of the same resources:
// registry, endpoint order included, and what each proxy is sent, even though older snapshots
// keep computing (and memoizing) from their own endpoints after being derived from; and the
// push plan must name every cluster whose assignment changed for the proxy.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Resource } from '../../../src/api/resource.ts';
import { CLUSTER_TYPE, ENDPOINT_TYPE } from '../../../src/envoy/index.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';
import { generatorsFor } from '../../../src/pilot/gen/index.ts';
import { parseMeshConfig } from '../../../src/pilot/mesh-config/index.ts';
import type { ConfigChange, Proxy, PushContext } from '../../../src/pilot/model.ts';
import type { SextantPushContext } from '../../../src/pilot/push/context.ts';
import { ResourceMap } from '../../../src/registry/index.ts';
import { sidecar } from '../gen/helpers.ts';

function rng(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };
}

// ns c's services are cluster-local: proxies see only their own cluster's endpoints of them.
const MESH = parseMeshConfig('serviceSettings:\n- settings: {clusterLocal: true}\n  hosts: ["*.c.svc.cluster.local"]\n', 'mesh.yaml').config;
const gens = generatorsFor(() => MESH);
const NAMESPACES = ['a', 'b', 'c'];
const SERVICES = 5;
const CLUSTERS = [undefined, 'cluster-a', 'cluster-b'];
const key = (r: Resource): string => `${r.kind}/${r.metadata.namespace}/${r.metadata.name}`;

function serviceEntry(ns: string, name: string, spec: Record<string, unknown>): Resource {
  return {
    apiVersion: 'networking.istio.io/v1', kind: 'ServiceEntry', metadata: { name, namespace: ns, creationTimestamp: '2026-01-01T00:00:00Z' },
    spec: { hosts: [`${name}.${ns}.svc.cluster.local`], location: 'MESH_INTERNAL', resolution: 'STATIC', ports: [{ number: 80, name: 'http', protocol: 'HTTP' }], ...spec },
  };
}

function initial(): Resource[] {
  const out: Resource[] = [
    { apiVersion: 'networking.istio.io/v1', kind: 'Sidecar', metadata: { name: 'default', namespace: 'c' }, spec: { egress: [{ hosts: ['./*'] }] } },
    {
      apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: 'svc-1', namespace: 'a' },
      spec: { host: 'svc-1.a.svc.cluster.local', subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] },
    },
    // Inline endpoints (an endpoint-only ServiceEntry change), and an empty selector (every workload of b).
    serviceEntry('b', 'ext', { endpoints: [{ address: '192.168.0.1' }, { address: '192.168.0.2' }] }),
    serviceEntry('b', 'everyone', { workloadSelector: { labels: {} } }),
  ];
  for (const ns of NAMESPACES) {
    for (let s = 0; s < SERVICES; s++) {
      const ports = s === 0 ? [{ number: 80, name: 'http', protocol: 'HTTP' }, { number: 9090, name: 'grpc', protocol: 'GRPC' }] : [{ number: 80, name: 'http', protocol: 'HTTP' }];
      out.push(serviceEntry(ns, `svc-${s}`, { ports, workloadSelector: { labels: { app: `svc-${s}` } } }));
    }
  }
  return out;
}

interface Scenario {
  map: ResourceMap;
  proxies: Proxy[];
  self: Proxy;
}

function scenario(random: (n: number) => number): Scenario {
  const map = new ResourceMap();
  for (const r of initial()) map.set(key(r), r);
  let n = 0;
  for (const ns of NAMESPACES) {
    for (let s = 0; s < SERVICES; s++) {
      for (let i = 0; i < 4; i++) map.set(`WorkloadEntry/${ns}/svc-${s}-e${i}`, workload(ns, `svc-${s}-e${i}`, `svc-${s}`, `10.0.${n >> 8}.${(n++ & 255) + 1}`, random));
    }
  }
  const self = sidecar('10.0.0.3', 'svc-0-e2', 'a', { app: 'svc-0' });
  const proxies = [
    sidecar('10.9.0.1', 'web-a', 'a', { app: 'web' }, { CLUSTER_ID: 'cluster-a' }),
    sidecar('10.9.0.2', 'web-b', 'b', { app: 'web' }, { CLUSTER_ID: 'cluster-b' }),
    sidecar('10.9.0.3', 'web-c', 'c', { app: 'web' }, { CLUSTER_ID: 'cluster-a' }),
    sidecar('10.9.0.4', 'web-c2', 'c', { app: 'web' }, { CLUSTER_ID: 'cluster-b' }),
    gens.proxyFromNode({ id: 'sidecar~10.9.0.5~web-k.b~b.svc.cluster.local', metadata: { NAMESPACE: 'b', LABELS: { app: 'web' } } }),
    self,
  ];
  return { map, proxies, self };
}

function workload(ns: string, name: string, app: string, address: string, random: (n: number) => number): Resource {
  const labels: Record<string, string> = { app, version: `v${1 + random(2)}` };
  const cluster = CLUSTERS[random(CLUSTERS.length)];
  if (cluster !== undefined) labels['topology.istio.io/cluster'] = cluster;
  return { apiVersion: 'networking.istio.io/v1', kind: 'WorkloadEntry', metadata: { name, namespace: ns }, spec: { address, labels } };
}

/** One random endpoint-only batch, applied to the map; returns the keys it touched. */
function batch(sc: Scenario, random: (n: number) => number, step: number): Set<string> {
  const keys = new Set<string>();
  const workloads = [...sc.map.values()].filter((r) => r.kind === 'WorkloadEntry');
  for (let i = 1 + random(5); i > 0; i--) {
    const op = random(12);
    const we = workloads[random(workloads.length)]!;
    const k = key(we);
    const spec = we.spec as { address: string; labels: Record<string, string> };
    const next = (patch: Partial<Resource>, specPatch: Record<string, unknown> = {}): Resource => ({ ...we, ...patch, spec: { ...spec, ...specPatch } });
    if (op === 0) sc.map.set(k, next({}, { address: random(6) === 0 ? sc.self.ipAddresses[0] : `10.1.${step}.${i}` }));
    else if (op === 1) sc.map.set(k, next({ metadata: { ...we.metadata, annotations: { 'sextant.io/traffic': we.metadata.annotations?.['sextant.io/traffic'] === 'out' ? 'in' : 'out' } } }));
    else if (op === 2) sc.map.set(k, next({}, { labels: { ...spec.labels, version: spec.labels['version'] === 'v1' ? 'v2' : 'v1' } }));
    else if (op === 3) sc.map.set(k, next({}, { labels: { ...spec.labels, app: `svc-${random(SERVICES + 1)}` } })); // svc-5 selects nothing
    else if (op === 4) sc.map.set(k, next({}, { labels: { ...spec.labels, 'topology.istio.io/cluster': CLUSTERS[1 + random(2)]! } }));
    else if (op === 5) sc.map.set(k, { ...next({}), status: { conditions: [{ type: 'Healthy', status: random(2) === 0 ? 'False' : 'True' }] } } as Resource);
    else if (op === 6) sc.map.delete(k);
    else if (op === 7) {
      const ns = NAMESPACES[random(3)]!;
      const name = `new-${step}-${i}`;
      sc.map.set(`WorkloadEntry/${ns}/${name}`, workload(ns, name, `svc-${random(SERVICES)}`, `10.2.${step}.${i}`, random));
      keys.add(`WorkloadEntry/${ns}/${name}`);
      continue;
    } else if (op === 8) {
      // Deleted and written again in one batch: a full rebuild meets it last.
      sc.map.delete(k);
      sc.map.set(k, next({}, { weight: 1 + random(5) }));
    } else if (op === 9) {
      const ext = sc.map.get('ServiceEntry/b/ext')!;
      sc.map.set('ServiceEntry/b/ext', { ...ext, spec: { ...(ext.spec as object), endpoints: Array.from({ length: 1 + random(3) }, (_, j) => ({ address: `192.168.${step}.${j}` })) } });
      keys.add('ServiceEntry/b/ext');
      continue;
    } else {
      sc.map.set(k, next({}, { ports: { http: 8000 + random(3) } }));
    }
    keys.add(k);
  }
  return keys;
}

function eds(push: PushContext, proxy: Proxy): Map<string, ProtoJson> {
  const names = new Set<string>();
  for (const [name, c] of gens.generate(push, proxy, CLUSTER_TYPE)) if (c['type'] === 'EDS') names.add(name);
  return gens.generate(push, proxy, ENDPOINT_TYPE, names);
}

function assertRegistryEqual(after: SextantPushContext, full: SextantPushContext, label: string): void {
  const a = after.registry;
  const f = full.registry;
  assert.equal(a.endpointCount, f.endpointCount, `${label}: endpointCount`);
  assert.equal(a.endpoints.size, f.endpoints.size, `${label}: services with endpoints`);
  // Per service and port, the endpoints in the same order as a full rebuild finds them.
  for (const [svc, perPort] of f.endpoints) assert.deepEqual(a.endpoints.get(svc), perPort, `${label}: endpoints of ${svc}`);
  assert.deepEqual(new Map(a.servicesOf), new Map(f.servicesOf), `${label}: servicesOf`);
  assert.deepEqual(new Map(a.byAddress), new Map(f.byAddress), `${label}: byAddress`);
  assert.deepEqual([...after.byKey.keys()].sort(), [...full.byKey.keys()].sort(), `${label}: byKey`);
}

for (const seed of [101, 102, 103]) {
  test(`60 random endpoint batches: each derived snapshot equals a full rebuild, and plans cover every changed assignment (seed ${seed})`, () => {
    const random = rng(seed);
    const sc = scenario(random);
    let before = gens.buildPushContext([...sc.map.values()]) as SextantPushContext;
    const older: SextantPushContext[] = [];
    for (let step = 0; step < 60; step++) {
      // Only some proxies were served before the batch: the rest of the memo is filled later.
      for (const p of sc.proxies) if (random(2) === 0) eds(before, p);
      const keys = batch(sc, random, step);
      const all = [...sc.map.values()];
      // As the pilot calls it: no list of every resource, the map instead.
      const change: ConfigChange = { keys, endpointsOnly: true, current: sc.map };
      const after = gens.updateEndpoints!(before, [], change) as SextantPushContext | undefined;
      assert.ok(after !== undefined, `step ${step}: the fast path applies`);
      // The older snapshots keep serving (and memoizing from their own endpoints) meanwhile.
      const previous = new Map(sc.proxies.map((p) => [p, eds(before, p)]));
      for (const o of older) for (const p of sc.proxies) eds(o, p);
      const full = gens.buildPushContext(all) as SextantPushContext;
      assertRegistryEqual(after, full, `step ${step}`);
      const listed = new Set(after.resources);
      assert.ok(listed.size === all.length && all.every((r) => listed.has(r)), `step ${step}: the snapshot lists every resource`);
      // Without the index (one pass over the resources), the same registry.
      const scanned = gens.updateEndpoints!(before, all, { keys, endpointsOnly: true }) as SextantPushContext;
      assertRegistryEqual(scanned, full, `step ${step}, scanned`);
      for (const p of sc.proxies) {
        const got = eds(after, p);
        assert.deepEqual(got, eds(full, p), `step ${step}: ${p.id} is sent what a full rebuild sends`);
        const plan = gens.planPush(before, after, change, p);
        const changed = [...got].filter(([name, cla]) => !isDeepEqual(cla, previous.get(p)!.get(name))).map(([name]) => name);
        for (const name of previous.get(p)!.keys()) if (!got.has(name)) changed.push(name);
        if (plan === null) {
          assert.deepEqual(changed, [], `step ${step}: ${p.id} has no plan but assignments changed`);
        } else if (plan.edsClusters !== undefined) {
          for (const name of changed) assert.ok(plan.edsClusters.has(name), `step ${step}: ${p.id}'s plan misses ${name}`);
          if (p.namespace === 'c') for (const name of plan.edsClusters) assert.match(name, /\.c\.svc\.cluster\.local$/, `step ${step}: ${p.id} sees only its namespace`);
        } else {
          // Everything: only for a proxy whose own workload changed.
          assert.equal(p, sc.self, `step ${step}: ${p.id} gets a full push`);
        }
      }
      older.push(before);
      if (older.length > 2) older.shift();
      before = after;
    }
  });
}

function isDeepEqual(a: unknown, b: unknown): boolean {
  try {
    assert.deepEqual(a, b);
    return true;
  } catch {
    return false;
  }
}
