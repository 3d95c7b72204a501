// Who sees what and who gets pushed: exportTo visibility, Sidecar egress scope (own
// namespace, listed namespaces, the root namespace default), and planPush, where an
// EnvoyFilter or Sidecar with a workloadSelector concerns only the proxies it selects.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE } from '../../../src/envoy/index.ts';
import { generators } from '../../../src/pilot/gen/index.ts';
import type { ConfigChange, Proxy, PushContext } from '../../../src/pilot/model.ts';
import { sidecarScope } from '../../../src/pilot/push/scope.ts';
import type { SextantPushContext } from '../../../src/pilot/push/context.ts';
import { resources, sidecar } from '../gen/helpers.ts';

function se(name: string, ns: string, extra = ''): string {
  return `apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ${name}, namespace: ${ns}}\nspec:\n  hosts: [${name}.${ns}.svc.cluster.local]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports: [{number: 9080, name: http, protocol: HTTP}]\n  workloadSelector: {labels: {app: ${name}}}\n${extra}`;
}
function we(name: string, ns: string, app: string, ip: string, version = 'v1'): string {
  return `apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: ${name}, namespace: ${ns}}\nspec: {address: ${ip}, labels: {app: ${app}, version: ${version}}}\n`;
}

const BASE = [
  se('reviews', 'default'),
  we('reviews-v1', 'default', 'reviews', '10.0.0.30'),
  we('reviews-v2', 'default', 'reviews', '10.0.0.31', 'v2'),
  se('ratings', 'default'),
  we('ratings-v1', 'default', 'ratings', '10.0.0.40'),
  se('secret', 'vault', '  exportTo: ["."]\n'),
  se('shop', 'shop'),
  `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: default}\nspec:\n  host: reviews\n  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]\n`,
];

function push(...extra: string[]): SextantPushContext {
  return generators.buildPushContext(resources([...BASE, ...extra].join('---\n'))) as SextantPushContext;
}

const productpage = sidecar('10.0.0.10', 'productpage-v1', 'default', { app: 'productpage' });
const reviews = sidecar('10.0.0.30', 'reviews-v1', 'default', { app: 'reviews', version: 'v1' });
const shopper = sidecar('10.2.0.10', 'cart-1', 'shop', { app: 'cart' });
const vaultApp = sidecar('10.3.0.10', 'vault-1', 'vault', { app: 'vault' });

function hosts(p: SextantPushContext, proxy: Proxy): string[] {
  return [...sidecarScope(p, proxy).hostnames].sort();
}

function change(keys: string[], endpointsOnly = false): ConfigChange {
  return { keys: new Set(keys), endpointsOnly };
}

function plan(before: PushContext, after: PushContext, c: ConfigChange, proxy: Proxy) {
  const p = generators.planPush(before, after, c, proxy);
  return p && { types: [...p.types], edsClusters: p.edsClusters && [...p.edsClusters].sort() };
}

test('exportTo "." hides a service from other namespaces', () => {
  const p = push();
  assert.deepEqual(hosts(p, productpage), ['ratings.default.svc.cluster.local', 'reviews.default.svc.cluster.local', 'shop.shop.svc.cluster.local']);
  assert.ok(hosts(p, vaultApp).includes('secret.vault.svc.cluster.local'));
});

test('a VirtualService exported only to its namespace does not route other namespaces', () => {
  const vs = `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews, namespace: default}\nspec:\n  hosts: [reviews.default.svc.cluster.local]\n  exportTo: ["."]\n  http: [{route: [{destination: {host: reviews.default.svc.cluster.local, subset: v2}}]}]\n`;
  const p = push(vs);
  const route = (proxy: Proxy) => {
    const rc = generators.generate(p, proxy, ROUTE_TYPE).get('9080');
    const vh = (rc?.['virtualHosts'] as { name: string; routes: { route: { cluster: string } }[] }[]).find((v) => v.name.startsWith('reviews'));
    return vh?.routes[0]?.route.cluster;
  };
  assert.equal(route(productpage), 'outbound|9080|v2|reviews.default.svc.cluster.local');
  assert.equal(route(shopper), 'outbound|9080||reviews.default.svc.cluster.local');
});

test('Sidecar egress hosts: own namespace, a listed namespace, and the root namespace default', () => {
  const root = `apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: istio-system}\nspec:\n  egress: [{hosts: ["./*"]}]\n`;
  const shopSc = `apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: shop}\nspec:\n  egress: [{hosts: ["./*", "default/ratings.default.svc.cluster.local"]}]\n`;
  const p = push(root, shopSc);
  assert.deepEqual(hosts(p, productpage), ['ratings.default.svc.cluster.local', 'reviews.default.svc.cluster.local']);
  assert.deepEqual(hosts(p, shopper), ['ratings.default.svc.cluster.local', 'shop.shop.svc.cluster.local']);
  assert.deepEqual([...generators.generate(p, shopper, CLUSTER_TYPE).keys()].filter((n) => n.startsWith('outbound')), [
    'outbound|9080||ratings.default.svc.cluster.local', 'outbound|9080||shop.shop.svc.cluster.local',
  ]);
});

test('a Sidecar with a workloadSelector scopes only the selected workloads', () => {
  const sc = `apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: reviews-only, namespace: default}\nspec:\n  workloadSelector: {labels: {app: reviews}}\n  egress: [{hosts: ["./ratings.default.svc.cluster.local"]}]\n`;
  const p = push(sc);
  assert.deepEqual(hosts(p, reviews), ['ratings.default.svc.cluster.local']);
  assert.equal(hosts(p, productpage).length, 3);
  const before = push();
  assert.deepEqual(plan(before, p, change(['Sidecar/default/reviews-only']), reviews)?.types, [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE]);
  assert.equal(plan(before, p, change(['Sidecar/default/reviews-only']), productpage), null);
});

test('an EnvoyFilter with a workloadSelector is pushed only to the proxies it selects, and only the types it patches', () => {
  const ef = (app: string) => `apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: lua, namespace: default}\nspec:\n  workloadSelector: {labels: {app: ${app}}}\n  configPatches:\n  - applyTo: HTTP_FILTER\n    match: {context: SIDECAR_INBOUND}\n    patch: {operation: INSERT_FIRST, value: {name: x, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}}\n`;
  const before = push();
  const after = push(ef('reviews'));
  const c = change(['EnvoyFilter/default/lua']);
  assert.deepEqual(plan(before, after, c, reviews), { types: [LISTENER_TYPE], edsClusters: undefined });
  assert.equal(plan(before, after, c, productpage), null);
  assert.equal(plan(before, after, c, shopper), null);
  // Moving the selector concerns both the old and the new workloads.
  const moved = push(ef('productpage'));
  assert.deepEqual(plan(after, moved, c, reviews)?.types, [LISTENER_TYPE]);
  assert.deepEqual(plan(after, moved, c, productpage)?.types, [LISTENER_TYPE]);
  assert.equal(plan(after, moved, c, shopper), null);
  // A namespace-wide filter concerns every proxy of the namespace; a root one, everyone.
  const rootEf = ef('x').replace('namespace: default', 'namespace: istio-system').replace('  workloadSelector: {labels: {app: x}}\n', '');
  const root = push(rootEf);
  assert.deepEqual(plan(before, root, change(['EnvoyFilter/istio-system/lua']), shopper)?.types, [LISTENER_TYPE]);
});

test('an endpoint-only change pushes EDS for the affected clusters, only to proxies holding them', () => {
  const before = push();
  const after = generators.buildPushContext(resources([...BASE.filter((d) => !d.includes('reviews-v2')), we('reviews-v2', 'default', 'reviews', '10.0.0.99', 'v2')].join('---\n')));
  const c = change(['WorkloadEntry/default/reviews-v2'], true);
  assert.deepEqual(plan(before, after, c, productpage), {
    types: [ENDPOINT_TYPE],
    edsClusters: ['outbound|9080|v1|reviews.default.svc.cluster.local', 'outbound|9080|v2|reviews.default.svc.cluster.local', 'outbound|9080||reviews.default.svc.cluster.local'],
  });
  const scoped = `apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: shop}\nspec:\n  egress: [{hosts: ["./*"]}]\n`;
  const b2 = push(scoped);
  const a2 = generators.buildPushContext([...b2.resources.filter((r) => r.metadata.name !== 'reviews-v2'), ...resources(we('reviews-v2', 'default', 'reviews', '10.0.0.99', 'v2'))]);
  assert.equal(plan(b2, a2, c, shopper), null);
  const eds = generators.generate(after, productpage, ENDPOINT_TYPE, new Set(['outbound|9080|v2|reviews.default.svc.cluster.local']));
  assert.match(JSON.stringify(eds.get('outbound|9080|v2|reviews.default.svc.cluster.local')), /10\.0\.0\.99/);
});

test('config changes: invisible ServiceEntry → nothing; visible → full; DestinationRule → CDS+EDS; VirtualService → LDS+RDS', () => {
  const before = push();
  const addVault = push(se('hidden', 'vault', '  exportTo: ["."]\n'));
  assert.equal(plan(before, addVault, change(['ServiceEntry/vault/hidden']), productpage), null);
  assert.deepEqual(plan(before, addVault, change(['ServiceEntry/vault/hidden']), vaultApp)?.types, [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE]);
  const dr = `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ratings, namespace: default}\nspec:\n  host: ratings\n  trafficPolicy: {loadBalancer: {simple: RANDOM}}\n`;
  assert.deepEqual(plan(before, push(dr), change(['DestinationRule/default/ratings']), productpage)?.types, [CLUSTER_TYPE, ENDPOINT_TYPE]);
  const vs = `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: shop, namespace: shop}\nspec:\n  hosts: [shop.shop.svc.cluster.local]\n  exportTo: ["."]\n  http: [{route: [{destination: {host: shop.shop.svc.cluster.local}}]}]\n`;
  assert.equal(plan(before, push(vs), change(['VirtualService/shop/shop']), productpage), null);
  assert.deepEqual(plan(before, push(vs), change(['VirtualService/shop/shop']), shopper)?.types, [LISTENER_TYPE, ROUTE_TYPE]);
  assert.equal(plan(before, before, change(['Gateway/default/gw']), productpage), null);
});
