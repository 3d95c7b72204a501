// AdaptiveLimit → the admission gate in the inbound chains of the workloads backing the rule's
// service (golden: golden/adaptive-reviews-admission.json), before the router and after RBAC,
// every listener encoded with Envoy's protos; pushes reaching only those workloads; and the
// `sextant-adaptive` runtime layer with Envoy's circuit-breaker keys, decoded by Envoy's protos.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { validateResource } from '../../../src/api/index.ts';
import { LISTENER_TYPE, RUNTIME_TYPE, decodeMessage, encodeMessage } from '../../../src/envoy/index.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';
import { generators } from '../../../src/pilot/gen/index.ts';
import { adaptiveInstances, adaptiveRules } from '../../../src/pilot/gen/adaptive.ts';
import { ADAPTIVE_RUNTIME_NAME, NO_LIMITS, adaptiveRuntime, limitRuntimeKey } from '../../../src/pilot/gen/runtime.ts';
import type { SextantPushContext } from '../../../src/pilot/push/context.ts';
import { assertEnvoyRules, resources, ruleProblems, sidecar } from './helpers.ts';
import type { Proxy } from '../../../src/pilot/model.ts';

const GOLDEN = path.join(import.meta.dirname, 'golden');

const MESH = `
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: ingress, namespace: shop}
spec:
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:8080
    captureMode: NONE
  - port: {number: 9090, protocol: HTTP, name: http-admin}
    defaultEndpoint: 127.0.0.1:8090
    captureMode: NONE
  egress:
  - hosts: ["./*"]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints:
  - {address: 127.0.1.5, ports: {http: 9080}}
  - {address: 127.0.1.7, ports: {http: 9080}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: shop}
spec:
  hosts: [ratings.shop.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints:
  - {address: 127.0.1.6, ports: {http: 9080}}
`;

const RULE = `
apiVersion: sextant.io/v1alpha1
kind: AdaptiveLimit
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews
  enforce: true
  target: {latency: 120ms, percentile: 99}
  limits: {floor: 4, initial: 32, ceiling: 256}
  priority: {tiers: 3, tier0ReservePercent: 20}
  failSafe: {limit: 64}
`;

const reviews = sidecar('127.0.1.5', 'reviews-v1', 'shop', { app: 'reviews' }, { INTERCEPTION_MODE: 'NONE' });
const ratings = sidecar('127.0.1.6', 'ratings-v1', 'shop', { app: 'ratings' }, { INTERCEPTION_MODE: 'NONE' });

function snapshot(yaml: string): SextantPushContext {
  const rs = resources(`${MESH}---\n${yaml}`);
  assert.deepEqual(rs.flatMap((r) => validateResource(r)).map(String), []);
  return generators.buildPushContext(rs) as SextantPushContext;
}

/**
 * LDS for a proxy, each listener encoded and decoded with Envoy's protos and within their
 * validation rules; the admission filter's own config (a TypedStruct of Sextant's type) is
 * the one thing Envoy's protos cannot check.
 */
function generate(push: SextantPushContext, proxy: Proxy, typeUrl: typeof LISTENER_TYPE): Map<string, ProtoJson> {
  const out = generators.generate(push, proxy, typeUrl);
  for (const [name, r] of out) {
    assert.ok(decodeMessage(typeUrl, encodeMessage(typeUrl, r)), name);
    const problems = ruleProblems(typeUrl, r).filter((p) => !p.endsWith('not checked: TypedStruct of type.googleapis.com/sextant.filters.http.admission.v1.Admission, not a type in Envoy\'s protos'));
    assert.deepEqual(problems, [], `${name} breaks validation rules of Envoy's protos`);
  }
  return out;
}

function httpFilters(lds: Map<string, ProtoJson>, name: string): ProtoJson[] {
  const chain = (lds.get(name)?.['filterChains'] as ProtoJson[])[0]!;
  const hcm = (chain['filters'] as ProtoJson[])[0]!['typedConfig'] as ProtoJson;
  return hcm['httpFilters'] as ProtoJson[];
}

test('the rule\'s workload gets the admission filter before the router of the service\'s inbound port only', () => {
  const lds = generate(snapshot(RULE), reviews, LISTENER_TYPE);
  const filters = httpFilters(lds, '127.0.1.5_9080');
  assert.deepEqual(filters.map((f) => f['name']), ['envoy.filters.http.fault', 'envoy.filters.http.cors', 'sextant.filters.http.admission', 'envoy.filters.http.router']);
  // the port no service of the rule declares stays ungated
  assert.deepEqual(httpFilters(lds, '127.0.1.5_9090').map((f) => f['name']), ['envoy.filters.http.fault', 'envoy.filters.http.cors', 'envoy.filters.http.router']);
  const file = path.join(GOLDEN, 'adaptive-reviews-admission.json');
  const text = `${JSON.stringify(filters[2], null, 2)}\n`;
  if (process.env['UPDATE_GOLDEN'] === '1') {
    mkdirSync(GOLDEN, { recursive: true });
    writeFileSync(file, text);
  }
  assert.ok(existsSync(file), `${file} is missing; run with UPDATE_GOLDEN=1 to create it`);
  assert.equal(text, readFileSync(file, 'utf8'));
});

test('a workload of another service gets no admission filter', () => {
  const lds = generate(snapshot(RULE), ratings, LISTENER_TYPE);
  assert.ok(!httpFilters(lds, '127.0.1.6_9080').some((f) => f['name'] === 'sextant.filters.http.admission'));
});

test('the gate comes after the RBAC filters an AuthorizationPolicy adds', () => {
  const lds = generate(snapshot(`${RULE}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: shop}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin"]}}]}]
`), reviews, LISTENER_TYPE);
  assert.deepEqual(httpFilters(lds, '127.0.1.5_9080').map((f) => f['name']), ['envoy.filters.http.rbac', 'envoy.filters.http.fault', 'envoy.filters.http.cors', 'sextant.filters.http.admission', 'envoy.filters.http.router']);
});

test('shadow mode by default: enforce is false unless the rule says true', () => {
  const lds = generate(snapshot(RULE.replace('  enforce: true\n', '')), reviews, LISTENER_TYPE);
  const gate = httpFilters(lds, '127.0.1.5_9080')[2]!;
  const value = ((gate['typedConfig'] as ProtoJson)['value'] as ProtoJson);
  assert.equal(value['enforce'], false);
});

test('adding, changing or removing a rule pushes LDS to its workloads and nothing to others', () => {
  const before = snapshot('');
  const after = snapshot(RULE);
  const change = { keys: new Set(['AdaptiveLimit/shop/reviews']), endpointsOnly: false };
  assert.deepEqual([...(generators.planPush(before, after, change, reviews)?.types ?? [])], [LISTENER_TYPE]);
  assert.equal(generators.planPush(before, after, change, ratings), null);
  assert.deepEqual([...(generators.planPush(after, before, change, reviews)?.types ?? [])], [LISTENER_TYPE]);
});

test('the rule\'s instances are the service\'s endpoints, each healthy one sharing the budget', () => {
  const push = snapshot(RULE);
  const [rule] = adaptiveRules(push);
  assert.equal(rule?.id, 'shop/reviews');
  assert.equal(rule?.host, 'reviews.shop.svc.cluster.local');
  assert.deepEqual(adaptiveInstances(push, rule!), [
    { address: '127.0.1.5', port: 9080, healthy: true },
    { address: '127.0.1.7', port: 9080, healthy: true },
  ]);
});

test('the runtime layer: Envoy\'s circuit-breaker key per inbound port, leased; empty and unleased without limits', () => {
  const table = { byAddress: new Map([['127.0.1.5', [{ port: 9080, limit: 12, rule: 'shop/reviews', leaseMs: 3000 }]]]) };
  const layer = adaptiveRuntime(table, reviews, 0);
  assert.equal(layer.ttlMs, 3000);
  assert.equal(limitRuntimeKey(9080), 'circuit_breakers.inbound|9080||.default.max_requests');
  assertEnvoyRules(RUNTIME_TYPE, ADAPTIVE_RUNTIME_NAME, layer.resource);
  const decoded = decodeMessage(RUNTIME_TYPE, encodeMessage(RUNTIME_TYPE, layer.resource));
  assert.deepEqual(decoded, { name: 'sextant-adaptive', layer: { 'circuit_breakers.inbound|9080||.default.max_requests': 12 } });
  const none = adaptiveRuntime(NO_LIMITS, ratings, 0);
  // an entry the controller no longer vouches for is gone
  const expired = { byAddress: new Map([['127.0.1.5', [{ port: 9080, limit: 12, rule: 'shop/reviews', leaseMs: 3000, expiresAt: 1000 }]]]) };
  assert.deepEqual(adaptiveRuntime(expired, reviews, 999).resource['layer'], { 'circuit_breakers.inbound|9080||.default.max_requests': 12 });
  assert.deepEqual(adaptiveRuntime(expired, reviews, 1000), { resource: { name: 'sextant-adaptive', layer: {} }, ttlMs: undefined });
  assert.equal(none.ttlMs, undefined);
  assert.deepEqual(decodeMessage(RUNTIME_TYPE, encodeMessage(RUNTIME_TYPE, none.resource)), { name: 'sextant-adaptive', layer: {} });
});
