// RateLimit → Envoy's local rate limit in the inbound chains of the workloads a rule selects
// (golden: golden/ratelimit-reviews.json): the filter before the router (and before the
// admission gate of an AdaptiveLimit), its descriptors, and the rate_limits actions on the
// port's inline routes; every listener encoded with Envoy's protos and within their
// validation rules; the listener compiles in the sidecar; pushes reach only selected workloads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { validateResource } from '../../../src/api/index.ts';
import { LISTENER_TYPE } from '../../../src/envoy/index.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';
import { generators } from '../../../src/pilot/gen/index.ts';
import type { SextantPushContext } from '../../../src/pilot/push/context.ts';
import type { Proxy } from '../../../src/pilot/model.ts';
import { compileListener } from '../../../src/proxy/listener/listener-spec.ts';
import type { HttpConnectionManagerSpec } from '../../../src/proxy/listener/listener-spec.ts';
import { generate, resources, ruleProblems, sidecar } from './helpers.ts';

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
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews]
  http:
  - name: reviews-api
    match:
    - uri: {prefix: /api/v1/}
      method: {exact: POST}
    - uri: {exact: /api/v2}
      headers: {x-tenant: {exact: gold}}
    route: [{destination: {host: reviews}}]
  - name: rest
    route: [{destination: {host: reviews}}]
`;

const RULE = `
apiVersion: sextant.io/v1alpha1
kind: RateLimit
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews
  limit: {tokens: 100, fillInterval: 1s}
  routes:
  - {name: reviews-api, limit: {tokens: 10, fillInterval: 1s}}
  - {pathPrefix: /admin, limit: {tokens: 1, fillInterval: 60s}}
  callers:
  - {principal: spiffe://cluster.local/ns/shop/sa/batch, limit: {tokens: 5, fillInterval: 1s}}
  - {sourceIp: 10.20.0.0/16, limit: {tokens: 20, fillInterval: 1s}}
  - {sourceIp: 192.0.2.7, limit: {tokens: 2, fillInterval: 1s}}
  enforcedPercent: 50
  headers: {response: {x-local-rate-limit: "true"}, rateLimit: true}
`;

const reviews = sidecar('127.0.1.5', 'reviews-v1', 'shop', { app: 'reviews' }, { INTERCEPTION_MODE: 'NONE' });
const ratings = sidecar('127.0.1.6', 'ratings-v1', 'shop', { app: 'ratings' }, { INTERCEPTION_MODE: 'NONE' });

function snapshot(yaml: string): SextantPushContext {
  const rs = resources(`${MESH}---\n${yaml}`);
  assert.deepEqual(rs.flatMap((r) => validateResource(r)).map(String), []);
  return generators.buildPushContext(rs) as SextantPushContext;
}

function hcm(lds: Map<string, ProtoJson>, name: string): ProtoJson {
  const chain = (lds.get(name)?.['filterChains'] as ProtoJson[])[0]!;
  return (chain['filters'] as ProtoJson[])[0]!['typedConfig'] as ProtoJson;
}

const filterNames = (h: ProtoJson): unknown[] => (h['httpFilters'] as ProtoJson[]).map((f) => f['name']);

/** LDS with an AdaptiveLimit too: the admission filter's config (a TypedStruct of Sextant's type) is the one thing Envoy's protos cannot check. */
function generateWithAdmission(push: SextantPushContext, proxy: Proxy): Map<string, ProtoJson> {
  const out = generators.generate(push, proxy, LISTENER_TYPE);
  for (const [name, r] of out) {
    const problems = ruleProblems(LISTENER_TYPE, r).filter((p) => !p.endsWith('not checked: TypedStruct of type.googleapis.com/sextant.filters.http.admission.v1.Admission, not a type in Envoy\'s protos'));
    assert.deepEqual(problems, [], `${name} breaks validation rules of Envoy's protos`);
  }
  return out;
}

test('the rule\'s workload gets the local rate limit before the router of the service\'s port, and its actions on the inline routes', () => {
  const lds = generate(snapshot(RULE), reviews, LISTENER_TYPE);
  const h = hcm(lds, '127.0.1.5_9080');
  assert.deepEqual(filterNames(h), ['envoy.filters.http.fault', 'envoy.filters.http.cors', 'sextant.ratelimit.shop.reviews', 'envoy.filters.http.router']);
  assert.deepEqual(filterNames(hcm(lds, '127.0.1.5_9090')), ['envoy.filters.http.fault', 'envoy.filters.http.cors', 'envoy.filters.http.router'], 'a port the service does not declare');
  const route = ((((h['routeConfig'] as ProtoJson)['virtualHosts'] as ProtoJson[])[0]!['routes'] as ProtoJson[])[0]!['route'] as ProtoJson);
  const golden = { filter: (h['httpFilters'] as ProtoJson[])[2], rateLimits: route['rateLimits'] };
  const file = path.join(GOLDEN, 'ratelimit-reviews.json');
  const text = `${JSON.stringify(golden, null, 2)}\n`;
  if (process.env['UPDATE_GOLDEN'] === '1') {
    mkdirSync(GOLDEN, { recursive: true });
    writeFileSync(file, text);
  }
  assert.ok(existsSync(file), `${file} is missing; run with UPDATE_GOLDEN=1 to create it`);
  assert.equal(text, readFileSync(file, 'utf8'));
  // The sidecar compiles it: the filter, with its descriptors sorted strictest first.
  const spec = compileListener(lds.get('127.0.1.5_9080')!, 'Listener 127.0.1.5_9080').filterChains[0]!.network as HttpConnectionManagerSpec;
  const cfg = spec.localRateLimits![0]!.config;
  assert.deepEqual([cfg.statPrefix, cfg.bucket, cfg.filterEnforced, cfg.xRateLimitHeaders], ['ratelimit.shop.reviews', { maxTokens: 100, tokensPerFill: 100, fillIntervalMs: 1000 }, { runtimeKey: 'ratelimit.shop.reviews.enforced', numerator: 5000, denominator: 10_000 }, true]);
  assert.deepEqual(cfg.descriptors.map((d) => d.entries.map((e) => `${e.key}=${e.value}`).join(',')), [
    'ratelimit.shop.reviews.route=prefix:/admin',
    'remote_address=192.0.2.7',
    'ratelimit.shop.reviews.principal=spiffe://cluster.local/ns/shop/sa/batch',
    'ratelimit.shop.reviews.route=name:reviews-api',
    'masked_remote_address=10.20.0.0/16',
  ]);
});

test('another service\'s workload gets nothing; a selector rule selects by labels; no default limit: a default bucket that never runs dry', () => {
  const none = generate(snapshot(RULE), ratings, LISTENER_TYPE);
  assert.ok(!filterNames(hcm(none, '127.0.1.6_9080')).some((n) => String(n).startsWith('sextant.ratelimit')));
  const bySelector = `
apiVersion: sextant.io/v1alpha1
kind: RateLimit
metadata: {name: ratings, namespace: shop}
spec:
  workloadSelector: {matchLabels: {app: ratings}}
  port: 9080
  callers: [{principal: spiffe://cluster.local/ns/shop/sa/batch, limit: {tokens: 5, fillInterval: 2s}}, {sourceIp: 10.0.0.1, limit: {tokens: 1, fillInterval: 3s}}]
`;
  const lds = generate(snapshot(bySelector), ratings, LISTENER_TYPE);
  const filter = (hcm(lds, '127.0.1.6_9080')['httpFilters'] as ProtoJson[]).find((f) => f['name'] === 'sextant.ratelimit.shop.ratings')!;
  const tc = filter['typedConfig'] as ProtoJson;
  assert.deepEqual([tc['tokenBucket'], tc['alwaysConsumeDefaultTokenBucket']], [{ maxTokens: 4_294_967_295, tokensPerFill: 4_294_967_295, fillInterval: '1s' }, false]);
  assert.ok(!filterNames(hcm(lds, '127.0.1.6_9090')).includes('sextant.ratelimit.shop.ratings'), 'port 9090 is not the rule\'s port');
  assert.ok(!filterNames(hcm(generate(snapshot(bySelector), reviews, LISTENER_TYPE), '127.0.1.5_9080')).includes('sextant.ratelimit.shop.ratings'));
});

test('the local rate limit comes after RBAC and before the admission gate of an AdaptiveLimit', () => {
  const lds = generateWithAdmission(snapshot(`${RULE}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: shop}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/private"]}}]}]
---
apiVersion: sextant.io/v1alpha1
kind: AdaptiveLimit
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews
  target: {latency: 100ms}
`), reviews);
  assert.deepEqual(filterNames(hcm(lds, '127.0.1.5_9080')), ['envoy.filters.http.rbac', 'envoy.filters.http.fault', 'envoy.filters.http.cors', 'sextant.ratelimit.shop.reviews', 'sextant.filters.http.admission', 'envoy.filters.http.router']);
});

test('a RateLimit change pushes listeners to the workloads it selects, before or after, and to no other', () => {
  const before = snapshot('');
  const after = snapshot(RULE);
  const change = { keys: new Set(['RateLimit/shop/reviews']), endpointsOnly: false };
  assert.deepEqual([...(generators.planPush(before, after, change, reviews)?.types ?? [])], [LISTENER_TYPE]);
  assert.equal(generators.planPush(before, after, change, ratings), null);
  assert.deepEqual([...(generators.planPush(after, before, change, reviews)?.types ?? [])], [LISTENER_TYPE], 'removing it concerns the same workloads');
});

