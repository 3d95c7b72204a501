// The endpoint fast path: an endpoint-only change derives the next snapshot from the previous
// one. Its EDS differs only for the affected clusters, every other generated resource is the
// same object (so its encoding is reused), it matches a full rebuild, and planPush concerns
// only the proxies that hold the affected clusters.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CLUSTER_TYPE, ENDPOINT_TYPE, EXTENSION_CONFIG_TYPE, LISTENER_TYPE, NAME_TABLE_TYPE, ROUTE_TYPE, SECRET_TYPE } from '../../../src/envoy/index.ts';
import type { ProtoJson, XdsTypeUrl } from '../../../src/envoy/index.ts';
import { generators } from '../../../src/pilot/gen/index.ts';
import type { ConfigChange, Proxy, PushContext } from '../../../src/pilot/model.ts';
import type { SextantPushContext } from '../../../src/pilot/push/context.ts';
import type { Resource } from '../../../src/api/resource.ts';
import { resources, sidecar } from '../gen/helpers.ts';

function se(name: string, ns: string, extra = ''): string {
  return `apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ${name}, namespace: ${ns}}\nspec:\n  hosts: [${name}.${ns}.svc.cluster.local]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports: [{number: 9080, name: http, protocol: HTTP}]\n${extra}`;
}
function selected(name: string, ns: string): string {
  return se(name, ns, `  workloadSelector: {labels: {app: ${name}}}\n`);
}
function inline(name: string, ns: string, ips: string[], resolution = 'STATIC'): string {
  return se(name, ns, `  endpoints:\n${ips.map((ip) => `  - {address: ${ip}}\n`).join('')}`).replace('resolution: STATIC', `resolution: ${resolution}`);
}
function we(name: string, ns: string, app: string, ip: string, version = 'v1'): string {
  return `apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: ${name}, namespace: ${ns}}\nspec: {address: ${ip}, labels: {app: ${app}, version: ${version}}}\n`;
}

const DR = `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: default}\nspec:\n  host: reviews\n  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]\n`;
const VS = `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews, namespace: default}\nspec:\n  hosts: [reviews]\n  http: [{route: [{destination: {host: reviews, subset: v2}}]}]\n`;
// `shop` sees only its own namespace; everyone else the whole mesh.
const SHOP_SIDECAR = `apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: shop}\nspec:\n  egress: [{hosts: ["./*"]}]\n`;

const BASE: Record<string, string> = {
  'ServiceEntry/default/reviews': selected('reviews', 'default'),
  'WorkloadEntry/default/reviews-v1': we('reviews-v1', 'default', 'reviews', '10.0.0.30'),
  'WorkloadEntry/default/reviews-v2': we('reviews-v2', 'default', 'reviews', '10.0.0.31', 'v2'),
  'ServiceEntry/default/ratings': selected('ratings', 'default'),
  'WorkloadEntry/default/ratings-v1': we('ratings-v1', 'default', 'ratings', '10.0.0.40'),
  'ServiceEntry/default/details': inline('details', 'default', ['10.0.0.50', '10.0.0.51']),
  'ServiceEntry/default/search': inline('search', 'default', ['search-1.example.com'], 'DNS'),
  'ServiceEntry/shop/cart': selected('cart', 'shop'),
  'WorkloadEntry/shop/cart-1': we('cart-1', 'shop', 'cart', '10.2.0.10'),
  'DestinationRule/default/reviews': DR,
  'VirtualService/default/reviews': VS,
  'Sidecar/shop/default': SHOP_SIDECAR,
};

/** The resources of a config, one object per key, reusing `previous` objects for unchanged keys (as the store does). */
function config(docs: Record<string, string>, previous?: Map<string, Resource>): Map<string, Resource> {
  const out = new Map<string, Resource>();
  for (const [key, text] of Object.entries(docs)) {
    const old = previous?.get(key);
    out.set(key, old !== undefined && docs[key] === BASE[key] ? old : resources(text)[0]!);
  }
  return out;
}

const productpage = sidecar('10.0.0.10', 'productpage-v1', 'default', { app: 'productpage' });
const reviewsV2 = sidecar('10.0.0.31', 'reviews-v2', 'default', { app: 'reviews', version: 'v2' });
const cart = sidecar('10.2.0.10', 'cart-1', 'shop', { app: 'cart' });
const TYPES: XdsTypeUrl[] = [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE];

function all(push: PushContext, proxy: Proxy): Record<XdsTypeUrl, Map<string, ProtoJson>> {
  return Object.fromEntries(TYPES.map((t) => [t, generators.generate(push, proxy, t)])) as Record<XdsTypeUrl, Map<string, ProtoJson>>;
}

function plan(before: PushContext, after: PushContext, c: ConfigChange, proxy: Proxy): { types: string[]; edsClusters?: string[] } | null {
  const p = generators.planPush(before, after, c, proxy);
  if (p === null) return null;
  return p.edsClusters ? { types: [...p.types], edsClusters: [...p.edsClusters].sort() } : { types: [...p.types] };
}

/** Derives the endpoint-only snapshot and the full rebuild of the same resources. */
function change(edit: Record<string, string | undefined>): { before: SextantPushContext; after: SextantPushContext; full: SextantPushContext; c: ConfigChange } {
  const beforeResources = config(BASE);
  const before = generators.buildPushContext([...beforeResources.values()]) as SextantPushContext;
  // Warm the memo tables the way serving proxies does.
  for (const p of [productpage, reviewsV2, cart]) all(before, p);
  const docs: Record<string, string> = { ...BASE };
  for (const [k, v] of Object.entries(edit)) {
    if (v === undefined) delete docs[k];
    else docs[k] = v;
  }
  const afterResources = [...config(docs, beforeResources).values()];
  const c: ConfigChange = { keys: new Set(Object.keys(edit)), endpointsOnly: true };
  const after = generators.updateEndpoints!(before, afterResources, c) as SextantPushContext | undefined;
  assert.ok(after, 'the endpoint fast path applies');
  const full = generators.buildPushContext(afterResources) as SextantPushContext;
  return { before, after, full, c };
}

function assertSameAsFullRebuild(after: SextantPushContext, full: SextantPushContext): void {
  // As maps (a derived registry's may be OverlayMaps over the previous snapshot's).
  for (const f of ['endpoints', 'servicesOf', 'byAddress'] as const) assert.deepEqual(new Map(after.registry[f] as ReadonlyMap<unknown, unknown>), new Map(full.registry[f] as ReadonlyMap<unknown, unknown>), `registry.${f}`);
  assert.equal(after.registry.endpointCount, full.registry.endpointCount);
  assert.deepEqual(after.stats, full.stats);
  assert.deepEqual([...after.byKey.keys()].sort(), [...full.byKey.keys()].sort());
  for (const p of [productpage, reviewsV2, cart]) assert.deepEqual(all(after, p), all(full, p), `${p.id}: same resources as a full rebuild`);
}

test('a WorkloadEntry address change: EDS differs only for its service; every other resource is the same object', () => {
  const { before, after, full, c } = change({ 'WorkloadEntry/default/reviews-v2': we('reviews-v2', 'default', 'reviews', '10.0.0.32', 'v2') });
  assert.notEqual(after.version, before.version);
  assert.equal(after.registry.services, before.registry.services, 'services are shared');
  const was = all(before, productpage);
  const is = all(after, productpage);
  for (const t of [CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE] as XdsTypeUrl[]) {
    assert.deepEqual([...is[t].keys()], [...was[t].keys()]);
    for (const [name, r] of is[t]) assert.equal(r, was[t].get(name), `${t} ${name} is the same instance`);
  }
  const changed: string[] = [];
  for (const [name, r] of is[ENDPOINT_TYPE]) {
    if (r === was[ENDPOINT_TYPE].get(name)) continue;
    changed.push(name);
  }
  assert.deepEqual(changed.sort(), [
    'outbound|9080|v1|reviews.default.svc.cluster.local',
    'outbound|9080|v2|reviews.default.svc.cluster.local',
    'outbound|9080||reviews.default.svc.cluster.local',
  ]);
  const v2 = is[ENDPOINT_TYPE].get('outbound|9080|v2|reviews.default.svc.cluster.local')!;
  assert.deepEqual(((v2['endpoints'] as ProtoJson[])[0]!['lbEndpoints'] as ProtoJson[]).map((e) => (e['endpoint'] as { address: { socketAddress: { address: string } } }).address.socketAddress.address), ['10.0.0.32']);
  assert.deepEqual(is[ENDPOINT_TYPE].get('outbound|9080|v1|reviews.default.svc.cluster.local'), was[ENDPOINT_TYPE].get('outbound|9080|v1|reviews.default.svc.cluster.local'));
  assertSameAsFullRebuild(after, full);

  // Planning: EDS for the three reviews clusters to who sees reviews; nothing to shop (its
  // Sidecar hides default); everything to the workload itself (its inbound side moved).
  const eds = { types: [ENDPOINT_TYPE], edsClusters: changed.sort() };
  assert.deepEqual(plan(before, after, c, productpage), eds);
  assert.equal(plan(before, after, c, cart), null);
  assert.deepEqual(plan(before, after, c, reviewsV2)?.types, [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, EXTENSION_CONFIG_TYPE, NAME_TABLE_TYPE, SECRET_TYPE]);
});

test('inline ServiceEntry endpoints: only that service is replaced, and the plan is EDS only', () => {
  const { before, after, full, c } = change({ 'ServiceEntry/default/details': inline('details', 'default', ['10.0.0.50', '10.0.0.52', '10.0.0.53']) });
  const was = all(before, productpage)[ENDPOINT_TYPE];
  const is = all(after, productpage)[ENDPOINT_TYPE];
  for (const [name, r] of is) {
    if (name === 'outbound|9080||details.default.svc.cluster.local') assert.notDeepEqual(r, was.get(name));
    else assert.equal(r, was.get(name), `${name} is the same instance`);
  }
  assert.equal(after.registry.endpointCount, before.registry.endpointCount + 1);
  assertSameAsFullRebuild(after, full);
  assert.deepEqual(plan(before, after, c, productpage), { types: [ENDPOINT_TYPE], edsClusters: ['outbound|9080||details.default.svc.cluster.local'] });
  assert.equal(plan(before, after, c, cart), null);
});

test('a WorkloadEntry relabelled to another service, added and deleted: the derived registry equals a full rebuild', () => {
  const moved = change({ 'WorkloadEntry/default/ratings-v1': we('ratings-v1', 'default', 'reviews', '10.0.0.40', 'v3') });
  assertSameAsFullRebuild(moved.after, moved.full);
  assert.deepEqual(moved.after.registry.servicesOf.get('WorkloadEntry/default/ratings-v1'), ['default/reviews.default.svc.cluster.local']);
  assert.deepEqual(plan(moved.before, moved.after, moved.c, productpage)?.edsClusters, [
    'outbound|9080|v1|reviews.default.svc.cluster.local',
    'outbound|9080|v2|reviews.default.svc.cluster.local',
    'outbound|9080||ratings.default.svc.cluster.local',
    'outbound|9080||reviews.default.svc.cluster.local',
  ]);
  const added = change({ 'WorkloadEntry/shop/cart-2': we('cart-2', 'shop', 'cart', '10.2.0.11') });
  assertSameAsFullRebuild(added.after, added.full);
  assert.deepEqual(plan(added.before, added.after, added.c, cart), { types: [ENDPOINT_TYPE], edsClusters: ['outbound|9080||cart.shop.svc.cluster.local'] });
  const deleted = change({ 'WorkloadEntry/default/reviews-v1': undefined });
  assertSameAsFullRebuild(deleted.after, deleted.full);
  assert.equal(deleted.after.registry.servicesOf.has('WorkloadEntry/default/reviews-v1'), false);
  assert.equal(deleted.after.byKey.has('WorkloadEntry/default/reviews-v1'), false);
});

test('a DNS service (endpoints inline in its cluster) takes the full path, and its change pushes CDS', () => {
  const beforeResources = config(BASE);
  const before = generators.buildPushContext([...beforeResources.values()]);
  const afterResources = [...config({ ...BASE, 'ServiceEntry/default/search': inline('search', 'default', ['search-2.example.com'], 'DNS') }, beforeResources).values()];
  const c: ConfigChange = { keys: new Set(['ServiceEntry/default/search']), endpointsOnly: true };
  assert.equal(generators.updateEndpoints!(before, afterResources, c), undefined);
  const after = generators.buildPushContext(afterResources, before, c);
  assert.deepEqual(plan(before, after, c, productpage), { types: [CLUSTER_TYPE, ENDPOINT_TYPE] });
  assert.equal(plan(before, after, c, cart), null);
});

test('a config change that touches no service shares the registry and its scopes; one that does, does not', () => {
  const beforeResources = config(BASE);
  const before = generators.buildPushContext([...beforeResources.values()]) as SextantPushContext;
  const vs = VS.replace('subset: v2', 'subset: v1');
  const afterResources = [...config({ ...BASE, 'VirtualService/default/reviews': vs }, beforeResources).values()];
  const after = generators.buildPushContext(afterResources, before, { keys: new Set(['VirtualService/default/reviews']), endpointsOnly: false }) as SextantPushContext;
  assert.equal(after.registry, before.registry);
  const seChange = generators.buildPushContext(afterResources, before, { keys: new Set(['ServiceEntry/default/details']), endpointsOnly: false }) as SextantPushContext;
  assert.notEqual(seChange.registry, before.registry);
  // Same routes as a snapshot built from nothing.
  const fresh = generators.buildPushContext(afterResources);
  assert.deepEqual(generators.generate(after, productpage, ROUTE_TYPE), generators.generate(fresh, productpage, ROUTE_TYPE));
});

test('proxies of one namespace and Sidecar get the same resource instances, so each is encoded once', () => {
  const push = generators.buildPushContext([...config(BASE).values()]);
  const details = sidecar('10.0.0.60', 'details-v1', 'default', { app: 'details' });
  const a = all(push, productpage);
  const b = all(push, details);
  for (const t of TYPES) {
    assert.deepEqual([...b[t].keys()], [...a[t].keys()], t);
    for (const [name, r] of a[t]) assert.equal(b[t].get(name), r, `${t} ${name} is one instance`);
  }
  // Another namespace with another scope shares the per-service resources, not the tables.
  const c = all(push, cart);
  const cartCluster = 'outbound|9080||cart.shop.svc.cluster.local';
  assert.equal(c[CLUSTER_TYPE].get(cartCluster), a[CLUSTER_TYPE].get(cartCluster));
  assert.equal(c[ENDPOINT_TYPE].get(cartCluster), a[ENDPOINT_TYPE].get(cartCluster));
  assert.notEqual(c[ROUTE_TYPE].get('9080'), a[ROUTE_TYPE].get('9080'));
});
