// The productpage sidecar's LDS/RDS/CDS/EDS for bookinfo (its ServiceEntry/WorkloadEntry
// registry plus Istio's bookinfo DestinationRules and VirtualServices) match the golden
// files, are stable across builds, and encode with Envoy's protos. UPDATE_GOLDEN=1 rewrites.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, SHORT_TYPE_NAMES } from '../../../src/envoy/index.ts';
import type { XdsTypeUrl } from '../../../src/envoy/index.ts';
import { generators } from '../../../src/pilot/gen/index.ts';
import { FIXTURES, generate, istioCompatFile, readResources, sidecar } from './helpers.ts';

const GOLDEN = path.join(import.meta.dirname, 'golden');
const BOOKINFO = ['bookinfo/destination-rule-all.yaml', 'bookinfo/virtual-service-reviews-jason-v2-v3.yaml', 'bookinfo/virtual-service-ratings-test-delay.yaml'];
const files = BOOKINFO.map(istioCompatFile);
const skip = files.some((f) => f === undefined) ? 'istio-compat bookinfo samples not found at ../shared/istio-compat' : false;

function build() {
  const push = generators.buildPushContext(readResources(path.join(FIXTURES, 'bookinfo-registry.yaml'), ...(files as string[])));
  const proxy = sidecar('10.0.0.10', 'productpage-v1-7d6cfb7dfd-5mc96', 'default', { app: 'productpage', version: 'v1' });
  return { push, proxy };
}

for (const type of [LISTENER_TYPE, ROUTE_TYPE, CLUSTER_TYPE, ENDPOINT_TYPE] as XdsTypeUrl[]) {
  const short = SHORT_TYPE_NAMES[type].toLowerCase();
  test(`bookinfo productpage ${SHORT_TYPE_NAMES[type]} matches golden/bookinfo-productpage-${short}.json`, { skip }, () => {
    const { push, proxy } = build();
    const out = Object.fromEntries(generate(push, proxy, type));
    const file = path.join(GOLDEN, `bookinfo-productpage-${short}.json`);
    const text = `${JSON.stringify(out, null, 2)}\n`;
    if (process.env['UPDATE_GOLDEN'] === '1') {
      mkdirSync(GOLDEN, { recursive: true });
      writeFileSync(file, text);
    }
    assert.ok(existsSync(file), `${file} is missing; run with UPDATE_GOLDEN=1 to create it`);
    assert.equal(text, readFileSync(file, 'utf8'));
    // A second snapshot from the same input generates identical output.
    const again = build();
    assert.deepEqual(Object.fromEntries(generate(again.push, again.proxy, type)), out);
  });
}

test('bookinfo productpage sees reviews routed by the end-user header and ratings delayed for jason', { skip }, () => {
  const { push, proxy } = build();
  const rds = generate(push, proxy, ROUTE_TYPE).get('9080');
  assert.ok(rds);
  const vhosts = rds['virtualHosts'] as { name: string; routes: { match: Record<string, unknown>; route?: { cluster?: string }; typedPerFilterConfig?: Record<string, unknown> }[] }[];
  const reviews = vhosts.find((v) => v.name === 'reviews.default.svc.cluster.local:9080');
  assert.deepEqual(reviews?.routes.map((r) => [r.match, r.route?.cluster]), [
    [{ prefix: '/', headers: [{ name: 'end-user', stringMatch: { exact: 'jason' } }] }, 'outbound|9080|v2|reviews.default.svc.cluster.local'],
    [{ prefix: '/' }, 'outbound|9080|v3|reviews.default.svc.cluster.local'],
  ]);
  const ratings = vhosts.find((v) => v.name === 'ratings.default.svc.cluster.local:9080');
  assert.deepEqual(ratings?.routes[0]?.typedPerFilterConfig, {
    'envoy.filters.http.fault': {
      '@type': 'type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault',
      delay: { fixedDelay: '7s', percentage: { numerator: 1000000, denominator: 'MILLION' } },
    },
  });
  assert.equal(vhosts.at(-1)?.name, 'allow_any');
  const eds = generate(push, proxy, ENDPOINT_TYPE, new Set(['outbound|9080|v2|reviews.default.svc.cluster.local']));
  assert.deepEqual(
    ((eds.get('outbound|9080|v2|reviews.default.svc.cluster.local')?.['endpoints'] as { lbEndpoints: { endpoint: unknown }[] }[])[0]?.lbEndpoints ?? []).map((e) => e.endpoint),
    [{ address: { socketAddress: { address: '10.0.0.31', portValue: 9080 } } }],
  );
});

test('a memoized resource is the same object for two proxies of the same scope', { skip }, () => {
  const { push, proxy } = build();
  const other = sidecar('10.0.0.20', 'details-v1-1', 'default', { app: 'details', version: 'v1' });
  const a = generators.generate(push, proxy, CLUSTER_TYPE).get('outbound|9080|v1|reviews.default.svc.cluster.local');
  const b = generators.generate(push, other, CLUSTER_TYPE).get('outbound|9080|v1|reviews.default.svc.cluster.local');
  assert.ok(a);
  assert.equal(a, b);
  const names = new Set(['outbound|9080||ratings.default.svc.cluster.local']);
  assert.equal(generators.generate(push, proxy, ENDPOINT_TYPE, names).get('outbound|9080||ratings.default.svc.cluster.local'),
    generators.generate(push, other, ENDPOINT_TYPE, names).get('outbound|9080||ratings.default.svc.cluster.local'));
  assert.equal(generators.generate(push, proxy, ROUTE_TYPE).get('9080'), generators.generate(push, other, ROUTE_TYPE).get('9080'));
});
