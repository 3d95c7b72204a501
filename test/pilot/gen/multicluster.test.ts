// Many clusters, one control plane (M3), in the pure generators: a proxy says its cluster
// (CLUSTER_ID), a workload carries Istio's `topology.istio.io/cluster` label, and a service
// made cluster-local by the mesh config (serviceSettings, or Istio's kube-system default)
// sends each proxy only its own cluster's endpoints; every other service sends all of them,
// as one shared ClusterLoadAssignment. The mesh-wide settings the pilot honours show in
// what it generates.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE } from '../../../src/envoy/index.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';
import { generators, generatorsFor } from '../../../src/pilot/gen/index.ts';
import { MESH_CONFIG_KEY, parseMeshConfig } from '../../../src/pilot/mesh-config/index.ts';
import type { MeshConfig } from '../../../src/pilot/mesh-config/index.ts';
import type { ConfigChange, PushContext, Proxy } from '../../../src/pilot/model.ts';
import type { Resource } from '../../../src/api/resource.ts';
import { generate, resources, sidecar } from './helpers.ts';

const MESH = parseMeshConfig('serviceSettings:\n- settings: {clusterLocal: true}\n  hosts: ["*.payments.svc.cluster.local"]\n', 'mesh.yaml').config;

function se(name: string, ns: string, body: string): string {
  return `apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ${name}, namespace: ${ns}}\nspec:\n  hosts: [${name}.${ns}.svc.cluster.local]\n  location: MESH_INTERNAL\n  ports: [{number: 8080, name: http, protocol: HTTP}]\n${body}`;
}
function we(name: string, ns: string, app: string, ip: string, cluster?: string): string {
  const labels = cluster === undefined ? `{app: ${app}}` : `{app: ${app}, topology.istio.io/cluster: ${cluster}}`;
  return `apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: ${name}, namespace: ${ns}}\nspec: {address: ${ip}, labels: ${labels}}\n`;
}

const DOCS: Record<string, string> = {
  // Cluster-local by the mesh config (*.payments.svc.cluster.local).
  'ServiceEntry/payments/ledger': se('ledger', 'payments', '  resolution: STATIC\n  workloadSelector: {labels: {app: ledger}}\n'),
  'WorkloadEntry/payments/ledger-a1': we('ledger-a1', 'payments', 'ledger', '10.1.0.1', 'cluster-a'),
  'WorkloadEntry/payments/ledger-a2': we('ledger-a2', 'payments', 'ledger', '10.1.0.2', 'cluster-a'),
  'WorkloadEntry/payments/ledger-b1': we('ledger-b1', 'payments', 'ledger', '10.2.0.1', 'cluster-b'),
  // No cluster label: the default cluster, `Kubernetes` (as istiod's CLUSTER_ID).
  'WorkloadEntry/payments/ledger-k1': we('ledger-k1', 'payments', 'ledger', '10.9.0.1'),
  // Cluster-local, DNS: endpoints inline in the cluster (CDS).
  'ServiceEntry/payments/db': se('db', 'payments', '  resolution: DNS\n  endpoints:\n  - {address: db.a.internal, labels: {topology.istio.io/cluster: cluster-a}}\n  - {address: db.b.internal, labels: {topology.istio.io/cluster: cluster-b}}\n'),
  // Global: every cluster's endpoints.
  'ServiceEntry/default/reviews': se('reviews', 'default', '  resolution: STATIC\n  workloadSelector: {labels: {app: reviews}}\n'),
  'WorkloadEntry/default/reviews-a1': we('reviews-a1', 'default', 'reviews', '10.1.0.10', 'cluster-a'),
  'WorkloadEntry/default/reviews-b1': we('reviews-b1', 'default', 'reviews', '10.2.0.10', 'cluster-b'),
  // Cluster-local by Istio's default (every service in kube-system), with no mesh config at all.
  'ServiceEntry/kube-system/kube-dns': se('kube-dns', 'kube-system', '  resolution: STATIC\n  endpoints:\n  - {address: 10.1.0.53, labels: {topology.istio.io/cluster: cluster-a}}\n  - {address: 10.2.0.53, labels: {topology.istio.io/cluster: cluster-b}}\n'),
};

function config(docs: Record<string, string>): Resource[] {
  return Object.values(docs).map((d) => resources(d)[0]!);
}

const inA = sidecar('10.1.0.100', 'web-a', 'default', { app: 'web' }, { CLUSTER_ID: 'cluster-a', NETWORK: 'net-1' });
const inA2 = sidecar('10.1.0.101', 'web-a2', 'default', { app: 'web' }, { CLUSTER_ID: 'cluster-a', NETWORK: 'net-1' });
const inB = sidecar('10.2.0.100', 'web-b', 'default', { app: 'web' }, { CLUSTER_ID: 'cluster-b', NETWORK: 'net-2' });
const inDefault = generators.proxyFromNode({ id: 'sidecar~10.9.0.100~web-k.default~default.svc.cluster.local', metadata: { NAMESPACE: 'default', LABELS: { app: 'web' } } });

const LEDGER = 'outbound|8080||ledger.payments.svc.cluster.local';
const REVIEWS = 'outbound|8080||reviews.default.svc.cluster.local';
const KUBE_DNS = 'outbound|8080||kube-dns.kube-system.svc.cluster.local';
const DB = 'outbound|8080||db.payments.svc.cluster.local';

function build(mesh: MeshConfig | undefined, docs = DOCS): PushContext {
  return (mesh === undefined ? generators : generatorsFor(() => mesh)).buildPushContext(config(docs));
}

function addresses(cla: ProtoJson | undefined): string[] {
  const groups = (cla?.['endpoints'] ?? []) as { lbEndpoints: { endpoint: { address: { socketAddress: { address: string } } } }[] }[];
  return groups.flatMap((g) => g.lbEndpoints.map((e) => e.endpoint.address.socketAddress.address)).sort();
}

function eds(push: PushContext, proxy: Proxy): Map<string, ProtoJson> {
  return generate(push, proxy, ENDPOINT_TYPE);
}

test('proxies say their cluster and network in node metadata; the default cluster is Kubernetes', () => {
  assert.equal(inA.clusterId, 'cluster-a');
  assert.equal(inA.network, 'net-1');
  assert.equal(inB.clusterId, 'cluster-b');
  assert.equal(inDefault.clusterId, 'Kubernetes');
  assert.equal(inDefault.network, undefined);
});

test('cluster-local: each proxy gets only its own cluster\'s endpoints; a global service gets every cluster\'s', () => {
  const push = build(MESH);
  const a = eds(push, inA);
  const b = eds(push, inB);
  const k = eds(push, inDefault);
  assert.deepEqual(addresses(a.get(LEDGER)), ['10.1.0.1', '10.1.0.2']);
  assert.deepEqual(addresses(b.get(LEDGER)), ['10.2.0.1']);
  assert.deepEqual(addresses(k.get(LEDGER)), ['10.9.0.1']);
  for (const view of [a, b, k]) assert.deepEqual(addresses(view.get(REVIEWS)), ['10.1.0.10', '10.2.0.10']);
  assert.deepEqual(addresses(a.get(KUBE_DNS)), ['10.1.0.53']);
  assert.deepEqual(addresses(b.get(KUBE_DNS)), ['10.2.0.53']);
  assert.deepEqual(addresses(k.get(KUBE_DNS)), []);
  // The whole assignment, as cluster-a's proxies get it.
  assert.deepEqual(a.get(LEDGER), {
    clusterName: LEDGER,
    endpoints: [{
      locality: {},
      lbEndpoints: [
        { endpoint: { address: { socketAddress: { address: '10.1.0.1', portValue: 8080 } } }, healthStatus: 'HEALTHY', loadBalancingWeight: 1, metadata: { filterMetadata: { istio: { workload: 'ledger-a1;payments', labels: { app: 'ledger', 'topology.istio.io/cluster': 'cluster-a' } } } } },
        { endpoint: { address: { socketAddress: { address: '10.1.0.2', portValue: 8080 } } }, healthStatus: 'HEALTHY', loadBalancingWeight: 1, metadata: { filterMetadata: { istio: { workload: 'ledger-a2;payments', labels: { app: 'ledger', 'topology.istio.io/cluster': 'cluster-a' } } } } },
      ],
      loadBalancingWeight: 2,
    }],
  });
});

test('assignments are shared: per cluster for a cluster-local service, by everyone for the others', () => {
  const push = build(MESH);
  const a = eds(push, inA);
  const a2 = eds(push, inA2);
  const b = eds(push, inB);
  assert.equal(a.get(LEDGER), a2.get(LEDGER), 'one instance per cluster');
  assert.notEqual(a.get(LEDGER), b.get(LEDGER));
  assert.equal(a.get(REVIEWS), b.get(REVIEWS), 'a global service\'s assignment is one instance for all clusters');
});

test('a cluster-local DNS service\'s inline endpoints are filtered too; CDS is shared within a cluster', () => {
  const push = build(MESH);
  const dnsEndpoints = (proxy: Proxy): string[] => {
    const c = generate(push, proxy, CLUSTER_TYPE).get(DB);
    return addresses(c?.['loadAssignment'] as ProtoJson | undefined);
  };
  assert.deepEqual(dnsEndpoints(inA), ['db.a.internal']);
  assert.deepEqual(dnsEndpoints(inB), ['db.b.internal']);
  assert.equal(generate(push, inA, CLUSTER_TYPE).get(REVIEWS), generate(push, inB, CLUSTER_TYPE).get(REVIEWS));
  assert.equal(generate(push, inA, CLUSTER_TYPE).get(DB), generate(push, inA2, CLUSTER_TYPE).get(DB));
  // Without cluster-local DNS services in scope, CDS is one set for every cluster.
  const noDns = Object.fromEntries(Object.entries(DOCS).filter(([k]) => k !== 'ServiceEntry/payments/db'));
  const plain = build(MESH, noDns);
  const ca = generators.generate(plain, inA, CLUSTER_TYPE);
  const cb = generators.generate(plain, inB, CLUSTER_TYPE);
  for (const [name, c] of ca) assert.equal(cb.get(name), c, `${name} is shared`);
});

test('without serviceSettings only Istio\'s defaults are cluster-local', () => {
  const push = build(undefined);
  assert.deepEqual(addresses(eds(push, inA).get(LEDGER)), ['10.1.0.1', '10.1.0.2', '10.2.0.1', '10.9.0.1']);
  assert.deepEqual(addresses(eds(push, inA).get(KUBE_DNS)), ['10.1.0.53']);
  const off = parseMeshConfig('serviceSettings: [{settings: {clusterLocal: false}, hosts: ["*.kube-system.svc.cluster.local"]}]', 'mesh.yaml').config;
  assert.deepEqual(addresses(eds(build(off), inA).get(KUBE_DNS)), ['10.1.0.53', '10.2.0.53']);
});

function endpointChange(key: string, doc: string | undefined): { before: PushContext; after: PushContext; c: ConfigChange } {
  const g = generatorsFor(() => MESH);
  const before = g.buildPushContext(config(DOCS));
  for (const p of [inA, inB]) eds(before, p);
  const docs = { ...DOCS };
  if (doc === undefined) delete docs[key];
  else docs[key] = doc;
  const c: ConfigChange = { keys: new Set([key]), endpointsOnly: true };
  const after = g.updateEndpoints!(before, config(docs), c);
  assert.ok(after);
  return { before, after, c };
}

test('an endpoint change of a cluster-local service is pushed to the proxies of that cluster only', () => {
  const moved = endpointChange('WorkloadEntry/payments/ledger-b1', we('ledger-b1', 'payments', 'ledger', '10.2.0.2', 'cluster-b'));
  assert.equal(generators.planPush(moved.before, moved.after, moved.c, inA), null);
  assert.deepEqual(generators.planPush(moved.before, moved.after, moved.c, inB), { types: new Set([ENDPOINT_TYPE]), edsClusters: new Set([LEDGER]) });
  assert.deepEqual(addresses(eds(moved.after, inB).get(LEDGER)), ['10.2.0.2']);
  assert.deepEqual(eds(moved.after, inA).get(LEDGER), eds(moved.before, inA).get(LEDGER), 'cluster-a\'s assignment is unchanged');

  // A workload moved from cluster-a to cluster-b concerns both.
  const relabelled = endpointChange('WorkloadEntry/payments/ledger-a2', we('ledger-a2', 'payments', 'ledger', '10.1.0.2', 'cluster-b'));
  for (const p of [inA, inB]) assert.deepEqual(generators.planPush(relabelled.before, relabelled.after, relabelled.c, p), { types: new Set([ENDPOINT_TYPE]), edsClusters: new Set([LEDGER]) });
  assert.deepEqual(addresses(eds(relabelled.after, inA).get(LEDGER)), ['10.1.0.1']);
  assert.deepEqual(addresses(eds(relabelled.after, inB).get(LEDGER)), ['10.1.0.2', '10.2.0.1']);

  // A global service's change concerns every cluster.
  const global = endpointChange('WorkloadEntry/default/reviews-b1', undefined);
  for (const p of [inA, inB]) assert.deepEqual(generators.planPush(global.before, global.after, global.c, p), { types: new Set([ENDPOINT_TYPE]), edsClusters: new Set([REVIEWS]) });
});

test('a mesh config change is pushed to every proxy, and the next snapshot follows it', () => {
  let mesh: MeshConfig = MESH;
  const g = generatorsFor(() => mesh);
  const before = g.buildPushContext(config(DOCS));
  mesh = parseMeshConfig('serviceSettings: [{settings: {clusterLocal: true}, hosts: [reviews.default.svc.cluster.local]}]', 'mesh.yaml').config;
  const c: ConfigChange = { keys: new Set([MESH_CONFIG_KEY]), endpointsOnly: false };
  const after = g.buildPushContext(config(DOCS), before, c);
  for (const p of [inA, inB, inDefault]) assert.deepEqual([...(g.planPush(before, after, c, p)?.types ?? [])], [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE]);
  assert.deepEqual(addresses(eds(after, inA).get(REVIEWS)), ['10.1.0.10']);
  assert.deepEqual(addresses(eds(after, inA).get(LEDGER)), ['10.1.0.1', '10.1.0.2', '10.2.0.1', '10.9.0.1']);
});

test('mesh-wide settings: rootNamespace, outboundTrafficPolicy, connectTimeout, pathNormalization', () => {
  const mesh = parseMeshConfig([
    'rootNamespace: mesh-root',
    'outboundTrafficPolicy: {mode: REGISTRY_ONLY}',
    'connectTimeout: 3s',
    'pathNormalization: {normalization: DECODE_AND_MERGE_SLASHES}',
  ].join('\n'), 'mesh.yaml').config;
  const sidecarIn = (ns: string): string => `apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: ${ns}}\nspec:\n  egress: [{hosts: ["./*"]}]\n`;
  const docs = { ...DOCS, 'Sidecar/mesh-root/default': sidecarIn('mesh-root') };
  const push = build(mesh, docs);
  // The Sidecar in the root namespace scopes every namespace to itself.
  const clusters = generate(push, inA, CLUSTER_TYPE);
  assert.deepEqual([...clusters.keys()].filter((n) => n.startsWith('outbound|')), [REVIEWS]);
  for (const c of clusters.values()) assert.equal(c['connectTimeout'], '3s', String(c['name']));
  // REGISTRY_ONLY: unknown destinations go to the BlackHoleCluster.
  const routes = generate(push, inA, ROUTE_TYPE).get('8080');
  const vhosts = (routes?.['virtualHosts'] ?? []) as { name: string; routes: { route?: { cluster?: string } }[] }[];
  assert.equal(vhosts.at(-1)?.name, 'block_all');
  const listeners = [...generate(push, inA, LISTENER_TYPE).values()];
  const hcms = listeners.flatMap((l) => ((l['filterChains'] ?? []) as { filters: { name: string; typedConfig: ProtoJson }[] }[]).flatMap((fc) => fc.filters))
    .filter((f) => f.name === 'envoy.filters.network.http_connection_manager').map((f) => f.typedConfig);
  assert.ok(hcms.length > 0);
  for (const h of hcms) {
    assert.equal(h['normalizePath'], true);
    assert.equal(h['mergeSlashes'], true);
    assert.equal(h['pathWithEscapedSlashesAction'], 'UNESCAPE_AND_FORWARD');
  }
  // The defaults, for comparison: istio-system is the root; ALLOW_ANY; 10s; BASE normalization.
  const plain = build(undefined, docs);
  assert.deepEqual([...generate(plain, inA, CLUSTER_TYPE).keys()].filter((n) => n.startsWith('outbound|')).sort(), [DB, KUBE_DNS, LEDGER, REVIEWS].sort());
  assert.equal(generate(plain, inA, CLUSTER_TYPE).get(REVIEWS)?.['connectTimeout'], '10s');
  assert.equal((generate(plain, inA, ROUTE_TYPE).get('8080')?.['virtualHosts'] as { name: string }[]).at(-1)?.name, 'allow_any');
});

test('failoverPriority on topology.istio.io/cluster prefers the proxy\'s own cluster, then fails over', () => {
  const dr = 'apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: default}\nspec:\n  host: reviews.default.svc.cluster.local\n  trafficPolicy:\n    outlierDetection: {consecutive5xxErrors: 3}\n    loadBalancer:\n      localityLbSetting: {enabled: true, failoverPriority: [topology.istio.io/cluster]}\n';
  const push = build(MESH, { ...DOCS, 'DestinationRule/default/reviews': dr });
  const priorities = (proxy: Proxy): Record<string, number> => {
    const groups = (eds(push, proxy).get(REVIEWS)?.['endpoints'] ?? []) as { priority?: number; lbEndpoints: { endpoint: { address: { socketAddress: { address: string } } } }[] }[];
    return Object.fromEntries(groups.flatMap((g) => g.lbEndpoints.map((e) => [e.endpoint.address.socketAddress.address, g.priority ?? 0])));
  };
  assert.deepEqual(priorities(inA), { '10.1.0.10': 0, '10.2.0.10': 1 });
  assert.deepEqual(priorities(inB), { '10.1.0.10': 1, '10.2.0.10': 0 });
});
