// Lazy scope in the generators: a proxy with a managed Sidecar gets only its scope's clusters
// and a catch-all to the fallback (with the hub's scope header); a user-written Sidecar for the
// workload wins over the managed one; a hub has full scope, one listener with Envoy's scoped
// routes keyed by the caller's namespace and port and original_src, and route configurations
// that are the caller namespace's own (VirtualService subsets included); push planning sends a
// managed Sidecar's change to the proxies it selects only. Every resource encodes with
// Envoy's protos and breaks none of their validation rules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE } from '../../../src/envoy/index.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';
import { validateResource } from '../../../src/api/index.ts';
import type { Resource } from '../../../src/api/index.ts';
import { generators } from '../../../src/pilot/gen/index.ts';
import { FALLBACK_VHOST, HUB_SCOPE_HEADER } from '../../../src/pilot/gen/lazyscope.ts';
import { generate, resources, sidecar } from './helpers.ts';

function services(n: number): string {
  let out = '';
  for (let i = 0; i < n; i++) {
    const name = `svc-${String(i).padStart(3, '0')}`;
    out += `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ${name}, namespace: shop}
spec:
  hosts: [${name}.shop.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints: [{address: 10.1.0.${i + 1}}]
---`;
  }
  return out;
}

const BASE = `${services(20)}
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: hub, namespace: mesh-system}
spec:
  hosts: [sextant-hub.mesh-system.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 15080, name: http-hub, protocol: HTTP}]
  endpoints: [{address: 10.9.0.1}, {address: 10.9.0.2}]
---
apiVersion: sextant.io/v1alpha1
kind: LazyScope
metadata: {name: default, namespace: istio-system}
spec:
  fallback: {hub: {host: sextant-hub.mesh-system.svc.cluster.local, port: 15080}, timeout: 20s}
  idleTimeout: 30m
  stableHosts: ["shop/svc-019.shop.svc.cluster.local"]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: a-lazy
  namespace: shop
  labels: {sextant.io/managed-by: lazy-scope}
  annotations: {sextant.io/lazy-scope: istio-system/default}
spec:
  workloadSelector: {labels: {app: a}}
  egress:
  - port: {number: 8080, protocol: HTTP, name: http}
    bind: 127.0.2.1
    captureMode: NONE
    hosts: ["shop/svc-007.shop.svc.cluster.local", "shop/svc-019.shop.svc.cluster.local", "mesh-system/sextant-hub.mesh-system.svc.cluster.local"]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc-003, namespace: shop}
spec:
  host: svc-003
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc-003, namespace: shop}
spec:
  hosts: [svc-003]
  http: [{route: [{destination: {host: svc-003, subset: v1}}], retries: {attempts: 4, perTryTimeout: 2s}}]
---`;

function build(extra = ''): ReturnType<typeof generators.buildPushContext> {
  const list = resources(BASE + extra);
  for (const r of list) assert.deepEqual(validateResource(r).map((e) => e.message), [], `${r.kind}/${r.metadata.name}`);
  return generators.buildPushContext(list);
}

const lazy = sidecar('127.0.1.1', 'a-v1-abcde', 'shop', { app: 'a', version: 'v1' }, { INTERCEPTION_MODE: 'NONE' });
const hub = sidecar('10.9.0.1', 'hub-abcde', 'mesh-system', { app: 'sextant-hub' }, { SEXTANT_ROLE: 'hub', INTERCEPTION_MODE: 'NONE' });
const other = sidecar('127.0.1.2', 'b-v1-abcde', 'shop', { app: 'b', version: 'v1' }, { INTERCEPTION_MODE: 'NONE' });

test('a lazy proxy holds only its scope\'s outbound clusters and sends everything else to the hub with its scope header', () => {
  const push = build();
  const clusters = [...generate(push, lazy, CLUSTER_TYPE).keys()].filter((n) => n.startsWith('outbound|')).sort();
  assert.deepEqual(clusters, [
    'outbound|15080||sextant-hub.mesh-system.svc.cluster.local',
    'outbound|8080||svc-007.shop.svc.cluster.local',
    'outbound|8080||svc-019.shop.svc.cluster.local',
  ]);
  const rc = generate(push, lazy, ROUTE_TYPE).get('127.0.2.1:8080')!;
  const vhosts = (rc['virtualHosts'] as ProtoJson[]).map((v) => v['name']);
  assert.deepEqual(vhosts, ['svc-007.shop.svc.cluster.local:8080', 'svc-019.shop.svc.cluster.local:8080', FALLBACK_VHOST]);
  const fallback = (rc['virtualHosts'] as ProtoJson[]).at(-1)!;
  const route = (fallback['routes'] as ProtoJson[])[0]!;
  assert.deepEqual(fallback['domains'], ['*']);
  assert.equal((route['route'] as ProtoJson)['cluster'], 'outbound|15080||sextant-hub.mesh-system.svc.cluster.local');
  assert.equal((route['route'] as ProtoJson)['timeout'], '20s');
  assert.deepEqual(route['requestHeadersToAdd'], [{ header: { key: HUB_SCOPE_HEADER, value: 'shop/8080' }, appendAction: 'OVERWRITE_IF_EXISTS_OR_ADD' }]);
  // a proxy the LazyScope does not manage keeps Istio's catch-all and its full scope
  const full = [...generate(push, other, CLUSTER_TYPE).keys()].filter((n) => n.startsWith('outbound|'));
  assert.equal(full.length, 21 + 1); // 20 services, the hub, svc-003's subset v1
});

test('a user-written Sidecar for the workload wins over the managed one', () => {
  const push = build(`
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: a-own, namespace: shop}
spec:
  workloadSelector: {labels: {app: a}}
  egress: [{hosts: ["shop/svc-001.shop.svc.cluster.local"]}]
---`);
  const clusters = [...generate(push, lazy, CLUSTER_TYPE).keys()].filter((n) => n.startsWith('outbound|'));
  assert.deepEqual(clusters, ['outbound|8080||svc-001.shop.svc.cluster.local']);
  const rc = generate(push, lazy, ROUTE_TYPE).get('8080')!;
  assert.deepEqual((rc['virtualHosts'] as ProtoJson[]).map((v) => v['name']), ['svc-001.shop.svc.cluster.local:8080', 'allow_any']);
});

test('a target given as an address is a static cluster of the lazy proxy', () => {
  const push = generators.buildPushContext(resources(BASE.replace('fallback: {hub: {host: sextant-hub.mesh-system.svc.cluster.local, port: 15080}, timeout: 20s}', 'fallback: {target: {host: 10.7.0.9, port: 80}}')));
  const c = generate(push, lazy, CLUSTER_TYPE).get('sextant-lazy-fallback|10.7.0.9|80');
  assert.ok(c);
  assert.equal(c['type'], 'STATIC');
  const rc = generate(push, lazy, ROUTE_TYPE).get('127.0.2.1:8080')!;
  const route = ((rc['virtualHosts'] as ProtoJson[]).at(-1)!['routes'] as ProtoJson[])[0]!;
  assert.equal((route['route'] as ProtoJson)['cluster'], 'sextant-lazy-fallback|10.7.0.9|80');
  assert.equal(route['requestHeadersToAdd'], undefined); // an existing tier gets the request unchanged
  assert.equal((route['route'] as ProtoJson)['timeout'], '30s');
});

test('a hub has full scope and one scoped-routes listener keyed by the caller\'s namespace and port', () => {
  const push = build();
  const clusters = [...generate(push, hub, CLUSTER_TYPE).keys()].filter((n) => n.startsWith('outbound|'));
  assert.equal(clusters.length, 22);
  const listeners = generate(push, hub, LISTENER_TYPE);
  assert.deepEqual([...listeners.keys()], ['sextant-hub_10.9.0.1_15080']);
  const l = listeners.get('sextant-hub_10.9.0.1_15080')!;
  assert.deepEqual(l['address'], { socketAddress: { address: '10.9.0.1', portValue: 15080 } });
  assert.equal((l['listenerFilters'] as ProtoJson[])[0]!['name'], 'envoy.filters.listener.original_src');
  const hcm = (((l['filterChains'] as ProtoJson[])[0]!['filters'] as ProtoJson[])[0]!['typedConfig']) as ProtoJson;
  assert.equal(hcm['skipXffAppend'], true);
  assert.equal(hcm['generateRequestId'], false);
  const scoped = hcm['scopedRoutes'] as ProtoJson;
  assert.deepEqual(scoped['scopeKeyBuilder'], { fragments: [{ headerValueExtractor: { name: HUB_SCOPE_HEADER } }] });
  // one namespace with lazy workloads (shop) × the mesh's HTTP ports (8080, 15080)
  const list = (scoped['scopedRouteConfigurationsList'] as ProtoJson)['scopedRouteConfigurations'] as ProtoJson[];
  assert.deepEqual(list.map((s) => [((s['key'] as ProtoJson)['fragments'] as ProtoJson[])[0]!['stringKey'], s['routeConfigurationName']]), [
    ['shop/8080', 'sextant-hub|shop|8080'],
    ['shop/15080', 'sextant-hub|shop|15080'],
  ]);
  const routes = generate(push, hub, ROUTE_TYPE);
  assert.deepEqual([...routes.keys()].sort(), ['sextant-hub|shop|15080', 'sextant-hub|shop|8080']);
  const rc = routes.get('sextant-hub|shop|8080')!;
  assert.deepEqual(rc['requestHeadersToRemove'], [HUB_SCOPE_HEADER]);
  const vh = (rc['virtualHosts'] as ProtoJson[]).find((v) => v['name'] === 'svc-003.shop.svc.cluster.local:8080')!;
  // the caller's namespace: short names resolve there; its VirtualService's subset and retries apply
  assert.ok((vh['domains'] as string[]).includes('svc-003'));
  const action = (vh['routes'] as ProtoJson[])[0]!['route'] as ProtoJson;
  assert.equal(action['cluster'], 'outbound|8080|v1|svc-003.shop.svc.cluster.local');
  assert.equal((action['retryPolicy'] as ProtoJson)['numRetries'], 4);
  assert.equal((rc['virtualHosts'] as ProtoJson[]).at(-1)!['name'], 'allow_any');
});

test('a managed Sidecar\'s change is pushed to the proxies it selects only', () => {
  const before = build();
  const grown = BASE.replace('"shop/svc-007.shop.svc.cluster.local", ', '"shop/svc-007.shop.svc.cluster.local", "shop/svc-011.shop.svc.cluster.local", ');
  const after = generators.buildPushContext(resources(grown));
  const change = { keys: new Set(['Sidecar/shop/a-lazy']), endpointsOnly: false };
  assert.ok(generators.planPush(before, after, change, lazy));
  assert.equal(generators.planPush(before, after, change, other), null);
  const clusters = [...generate(after, lazy, CLUSTER_TYPE).keys()];
  assert.ok(clusters.includes('outbound|8080||svc-011.shop.svc.cluster.local'));
});

test('the lazy-scope kinds validate, and mistakes name their field', () => {
  const bad: Resource = {
    apiVersion: 'sextant.io/v1alpha1', kind: 'LazyScope', metadata: { name: 'x', namespace: 'istio-system' },
    spec: { fallback: { hub: { host: 'hub.ns.svc.cluster.local', port: 1 }, target: { host: '10.0.0.1', port: 80 } } },
  };
  assert.match(validateResource(bad).map((e) => e.message).join('\n'), /spec\.fallback: .*only one of hub, target/);
  bad.spec = { fallback: { hub: { host: 'hub.ns.svc.cluster.local', port: 1 } }, stableHosts: ['*/*'], idleTimeout: '1s', evaluationInterval: '1s' };
  const errors = validateResource(bad).map((e) => e.message).join('\n');
  assert.match(errors, /spec\.stableHosts\[0\]: .*would keep every host/);
  assert.match(errors, /spec\.idleTimeout: .*two evaluation intervals/);
  const ws: Resource = {
    apiVersion: 'sextant.io/v1alpha1', kind: 'WorkloadScope', metadata: { name: 'a', namespace: 'shop' },
    spec: { workloadSelector: { labels: {} }, egress: [{ bind: 'nope', port: { number: 80 } }] },
  };
  const wsErrors = validateResource(ws).map((e) => e.message).join('\n');
  assert.match(wsErrors, /spec\.workloadSelector\.labels: Required value/);
  assert.match(wsErrors, /spec\.egress\[0\]\.bind: Invalid value: "nope"/);
});

test('under capture, a lazy proxy listens on every HTTP port of the mesh: a first call on any of them reaches the fallback', () => {
  const push = build(`
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: orders, namespace: shop}
spec:
  hosts: [orders.shop.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9090, name: http-orders, protocol: HTTP}]
  endpoints: [{address: 10.1.1.1}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata:
  name: c-lazy
  namespace: shop
  labels: {sextant.io/managed-by: lazy-scope}
  annotations: {sextant.io/lazy-scope: istio-system/default}
spec:
  workloadSelector: {labels: {app: c}}
  egress: [{hosts: ["shop/svc-007.shop.svc.cluster.local", "mesh-system/sextant-hub.mesh-system.svc.cluster.local"]}]
---`);
  const captured = sidecar('10.2.0.1', 'c-v1-abcde', 'shop', { app: 'c' }, { INTERCEPTION_MODE: 'REDIRECT' });
  const listeners = [...generate(push, captured, LISTENER_TYPE).keys()].filter((n) => n.startsWith('0.0.0.0_')).sort();
  assert.deepEqual(listeners, ['0.0.0.0_15080', '0.0.0.0_8080', '0.0.0.0_9090']);
  const rc = generate(push, captured, ROUTE_TYPE).get('9090')!;
  assert.deepEqual((rc['virtualHosts'] as ProtoJson[]).map((v) => v['name']), [FALLBACK_VHOST]);
  const route = ((rc['virtualHosts'] as ProtoJson[])[0]!['routes'] as ProtoJson[])[0]!;
  assert.deepEqual(route['requestHeadersToAdd'], [{ header: { key: HUB_SCOPE_HEADER, value: 'shop/9090' }, appendAction: 'OVERWRITE_IF_EXISTS_OR_ADD' }]);
});
