// The RateLimit kind (sextant.io/v1alpha1): a rule as documented is accepted, and each thing it
// may not say is refused with its field and the reason.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDocuments, validateResource, type Resource } from '../../src/api/index.ts';

function rule(spec: unknown): Resource {
  return { apiVersion: 'sextant.io/v1alpha1', kind: 'RateLimit', metadata: { name: 'reviews', namespace: 'shop' }, spec };
}

function problems(spec: unknown): string[] {
  return validateResource(rule(spec)).map((e) => `${e.path}: ${e.detail}`);
}

const ONE = { tokens: 1, fillInterval: '1s' };

test('a full rule as documented is accepted', () => {
  const docs = parseDocuments(`
apiVersion: sextant.io/v1alpha1
kind: RateLimit
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews.shop.svc.cluster.local
  port: 9080
  limit: {tokens: 100, fillInterval: 1s}
  routes:
  - {name: reviews-v2, limit: {tokens: 10, fillInterval: 1s}}
  - {pathPrefix: /admin, limit: {tokens: 1, tokensPerFill: 1, fillInterval: 1m}}
  callers:
  - {principal: spiffe://cluster.local/ns/shop/sa/batch, limit: {tokens: 5, fillInterval: 1s}}
  - {sourceIp: 10.20.0.0/16, limit: {tokens: 20, fillInterval: 1s}}
  enabledPercent: 100
  enforcedPercent: 0
  status: 429
  headers: {response: {x-local-rate-limit: "true"}, shadow: {x-shadow-limited: "true"}, rateLimit: true}
`, 'limits.yaml');
  assert.deepEqual(docs.errors.map(String), []);
  assert.deepEqual(validateResource(docs.documents[0]!.resource).map(String), []);
  assert.deepEqual(problems({ workloadSelector: { matchLabels: { app: 'reviews' } }, limit: ONE }), []);
});

test('what a rule may not say is refused with its field', () => {
  assert.deepEqual(problems({}), ['spec: Invalid value: a rate limit needs a limit, routes or callers']);
  assert.deepEqual(problems({ host: 'reviews', workloadSelector: { matchLabels: { app: 'r' } }, limit: ONE }), ['spec: Invalid value: set host or workloadSelector, not both']);
  assert.deepEqual(problems({ host: '*.shop.svc.cluster.local', limit: ONE }), ['spec.host: Invalid value: "*.shop.svc.cluster.local": a rate limit names one service, not a wildcard']);
  assert.deepEqual(problems({ limit: { tokens: 1, fillInterval: '10ms' } }), ['spec.limit.fillInterval: Invalid value: "10ms": must be between 50ms and 24h']);
  assert.deepEqual(problems({ limit: { tokens: 0, fillInterval: '1s' } }).length, 1);
  assert.deepEqual(problems({ limit: { tokens: 1, fillInterval: '1s' }, routes: [{ pathPrefix: '/a', limit: { tokens: 1, fillInterval: '1500ms' } }] }),
    ['spec.routes[0].limit.fillInterval: Invalid value: "1500ms": must be a multiple of spec.limit.fillInterval (1s), as Envoy refills descriptor buckets on the default bucket\'s fills']);
  assert.deepEqual(problems({ routes: [{ name: 'v2', pathPrefix: '/a', limit: ONE }] }), [
    'spec.routes[0]: Invalid value: set exactly one of name, pathPrefix',
    'spec.routes[0].name: Invalid value: a route by name needs spec.host (the VirtualService routes of that host)',
  ]);
  assert.deepEqual(problems({ routes: [{ pathPrefix: 'admin', limit: ONE }] }), ['spec.routes[0].pathPrefix: Invalid value: "admin": must start with "/"']);
  assert.deepEqual(problems({ callers: [{ principal: 'cluster.local/ns/shop/sa/batch', limit: ONE }] }),
    ['spec.callers[0].principal: Invalid value: "cluster.local/ns/shop/sa/batch": a caller identity is a SPIFFE URI (spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT)']);
  assert.deepEqual(problems({ callers: [{ sourceIp: '10.0.0.0/33', limit: ONE }] }), ['spec.callers[0].sourceIp: 10.0.0.0/33 is not a valid CIDR block']);
  assert.deepEqual(problems({ callers: [{ sourceIp: '10.0.0.1', limit: ONE }, { sourceIp: '10.0.0.1', limit: ONE }] }), ['spec.callers[1]: Invalid value: duplicate caller']);
  assert.deepEqual(problems({ limit: ONE, enforcedPercent: 101 }).length, 1);
  assert.deepEqual(problems({ limit: ONE, status: 200 }).length, 1);
  assert.deepEqual(problems({ limit: ONE, headers: { response: { 'bad header': 'x' } } }).length, 1);
  assert.deepEqual(problems({ limit: ONE, burst: 3 }).length, 1, 'unknown fields are refused');
});
