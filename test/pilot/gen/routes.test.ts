// VirtualService http routes as Envoy routes: matches, weighted subsets, redirect, rewrite,
// timeout, retries, fault, mirror, header operations, CORS, direct response; and Istio's
// virtual host domains.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ROUTE_TYPE } from '../../../src/envoy/index.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';
import { generators } from '../../../src/pilot/gen/index.ts';
import type { Proxy } from '../../../src/pilot/model.ts';
import { generate, resources, sidecar } from './helpers.ts';

const REGISTRY = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  addresses: [10.96.0.5]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http-web}]
  workloadSelector: {labels: {app: ratings}}
`;

type Route = ProtoJson & { match: ProtoJson; route?: ProtoJson };

function reviewsRoutes(http: string, proxy: Proxy = sidecar('10.0.0.10', 'pp', 'default', { app: 'productpage' })): Route[] {
  const vs = `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews, namespace: default}\nspec:\n  hosts: [reviews]\n  http:\n${http}`;
  const push = generators.buildPushContext(resources(`${REGISTRY}---\n${vs}`));
  const rc = generate(push, proxy, ROUTE_TYPE).get('9080');
  const vh = (rc?.['virtualHosts'] as { name: string; routes: Route[] }[]).find((v) => v.name === 'reviews.default.svc.cluster.local:9080');
  assert.ok(vh, 'reviews virtual host');
  return vh.routes;
}

test('virtual host domains: FQDN, short name, name.namespace(.svc), address, each with :port', () => {
  const push = generators.buildPushContext(resources(REGISTRY));
  const same = generate(push, sidecar('10.0.0.10', 'pp', 'default', {}), ROUTE_TYPE).get('9080');
  const vh = (same?.['virtualHosts'] as { name: string; domains: string[] }[])[0];
  assert.deepEqual(vh?.domains, [
    'ratings.default.svc.cluster.local', 'ratings.default.svc.cluster.local:9080', 'ratings', 'ratings:9080',
    'ratings.default.svc', 'ratings.default.svc:9080', 'ratings.default', 'ratings.default:9080',
  ]);
  const other = generate(push, sidecar('10.1.0.10', 'x', 'other', {}), ROUTE_TYPE).get('9080');
  const reviews = (other?.['virtualHosts'] as { name: string; domains: string[] }[]).find((v) => v.name.startsWith('reviews'));
  assert.deepEqual(reviews?.domains, [
    'reviews.default.svc.cluster.local', 'reviews.default.svc.cluster.local:9080',
    'reviews.default.svc', 'reviews.default.svc:9080', 'reviews.default', 'reviews.default:9080', '10.96.0.5', '10.96.0.5:9080',
  ]);
});

test('matches: uri exact/prefix/regex, headers, withoutHeaders, method, authority, query params', () => {
  const routes = reviewsRoutes(`
  - name: api
    match:
    - name: exact
      uri: {exact: /login}
      method: {exact: POST}
      queryParams: {debug: {exact: "1"}, trace: {}}
    - uri: {regex: "/v[0-9]+/.*"}
      headers: {x-canary: {prefix: "yes"}}
      withoutHeaders: {x-block: {}}
      authority: {exact: reviews.example.com}
    route: [{destination: {host: reviews}}]
`);
  assert.deepEqual(routes.map((r) => [r['name'], r.match]), [
    ['api.exact', { path: '/login', headers: [{ name: ':method', stringMatch: { exact: 'POST' } }], queryParameters: [{ name: 'debug', stringMatch: { exact: '1' } }, { name: 'trace', presentMatch: true }] }],
    ['api', { safeRegex: { regex: '/v[0-9]+/.*' }, headers: [{ name: 'x-canary', stringMatch: { prefix: 'yes' } }, { name: 'x-block', presentMatch: true, invertMatch: true }, { name: ':authority', stringMatch: { exact: 'reviews.example.com' } }] }],
  ]);
  assert.equal(routes[0]?.route?.['cluster'], 'outbound|9080||reviews.default.svc.cluster.local');
});

test('sourceLabels and port select which proxies and ports get a route', () => {
  const http = `
  - match: [{sourceLabels: {app: productpage}, port: 9080}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
`;
  assert.deepEqual(reviewsRoutes(http).map((r) => r.route?.['cluster']), ['outbound|9080|v2|reviews.default.svc.cluster.local', 'outbound|9080|v1|reviews.default.svc.cluster.local']);
  assert.deepEqual(reviewsRoutes(http, sidecar('10.0.0.11', 'x', 'default', { app: 'other' })).map((r) => r.route?.['cluster']), ['outbound|9080|v1|reviews.default.svc.cluster.local']);
});

test('weighted destinations with subsets and per-destination headers', () => {
  const [r] = reviewsRoutes(`
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: reviews, subset: v2, port: {number: 9080}}
      weight: 10
      headers: {request: {set: {x-canary: "true"}}}
`);
  assert.deepEqual(r?.route?.['weightedClusters'], {
    clusters: [
      { name: 'outbound|9080|v1|reviews.default.svc.cluster.local', weight: 90 },
      { name: 'outbound|9080|v2|reviews.default.svc.cluster.local', weight: 10, requestHeadersToAdd: [{ header: { key: 'x-canary', value: 'true' }, appendAction: 'OVERWRITE_IF_EXISTS_OR_ADD' }] },
    ],
  });
});

test('redirect, direct response and rewrites', () => {
  const routes = reviewsRoutes(`
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, authority: new.example.com, redirectCode: 302}
  - match: [{uri: {prefix: /health}}]
    directResponse: {status: 200, body: {string: ok}}
  - match: [{uri: {prefix: /v1}}]
    rewrite: {uri: /, authority: internal.reviews}
    route: [{destination: {host: reviews}}]
  - match: [{uri: {prefix: /r}}]
    rewrite: {uriRegexRewrite: {match: "^/r/(.*)$", rewrite: "/\\\\1"}}
    route: [{destination: {host: reviews}}]
`);
  assert.deepEqual(routes[0]?.['redirect'], { pathRedirect: '/new', hostRedirect: 'new.example.com', responseCode: 'FOUND' });
  assert.deepEqual(routes[1]?.['directResponse'], { status: 200, body: { inlineString: 'ok' } });
  assert.equal(routes[2]?.route?.['prefixRewrite'], '/');
  assert.equal(routes[2]?.route?.['hostRewriteLiteral'], 'internal.reviews');
  assert.deepEqual(routes[3]?.route?.['regexRewrite'], { pattern: { regex: '^/r/(.*)$' }, substitution: '/\\1' });
});

test('timeout, retries and their defaults', () => {
  const routes = reviewsRoutes(`
  - match: [{uri: {prefix: /a}}]
    timeout: 1.5s
    retries: {attempts: 3, perTryTimeout: 500ms, retryOn: "gateway-error,connect-failure,503", retryRemoteLocalities: true}
    route: [{destination: {host: reviews}}]
  - match: [{uri: {prefix: /b}}]
    retries: {attempts: 0}
    route: [{destination: {host: reviews}}]
  - route: [{destination: {host: reviews}}]
`);
  assert.equal(routes[0]?.route?.['timeout'], '1.5s');
  assert.deepEqual(routes[0]?.route?.['retryPolicy'], {
    retryOn: 'gateway-error,connect-failure,retriable-status-codes',
    numRetries: 3,
    retryHostPredicate: [{ name: 'envoy.retry_host_predicates.previous_hosts' }],
    hostSelectionRetryMaxAttempts: 5,
    retriableStatusCodes: [503],
    perTryTimeout: '0.5s',
    // istiod's shape: the extension found by its typed config, update_frequency = the attempts
    retryPriority: { name: 'envoy.retry_priorities.previous_priorities', typedConfig: { '@type': 'type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig', updateFrequency: 3 } },
  });
  assert.equal(routes[1]?.route?.['retryPolicy'], undefined);
  assert.equal(routes[2]?.route?.['timeout'], '0s');
  assert.deepEqual(routes[2]?.route?.['retryPolicy'], {
    retryOn: 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes',
    numRetries: 2,
    retryHostPredicate: [{ name: 'envoy.retry_host_predicates.previous_hosts' }],
    hostSelectionRetryMaxAttempts: 5,
    retriableStatusCodes: [503],
  });
});

test('fault delay and abort with percentages, as the fault filter per-route config', () => {
  const [r] = reviewsRoutes(`
  - fault:
      delay: {fixedDelay: 2s, percentage: {value: 12.5}}
      abort: {httpStatus: 503, percentage: {value: 0.1}}
    route: [{destination: {host: reviews}}]
`);
  assert.deepEqual(r?.['typedPerFilterConfig'], {
    'envoy.filters.http.fault': {
      '@type': 'type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault',
      delay: { fixedDelay: '2s', percentage: { numerator: 125000, denominator: 'MILLION' } },
      abort: { percentage: { numerator: 1000, denominator: 'MILLION' }, httpStatus: 503 },
    },
  });
});

test('mirror with percentage, header operations and CORS', () => {
  const [r] = reviewsRoutes(`
  - route: [{destination: {host: reviews, subset: v1}}]
    mirror: {host: reviews, subset: v2}
    mirrorPercentage: {value: 25}
    headers:
      request: {set: {x-a: "1"}, add: {x-b: "2"}, remove: [x-c]}
      response: {set: {x-d: "4"}, remove: [server]}
    corsPolicy:
      allowOrigins: [{exact: "https://a.example"}, {regex: "https://.*\\\\.b\\\\.example"}]
      allowMethods: [GET, POST]
      allowHeaders: [x-custom]
      exposeHeaders: [x-exposed]
      maxAge: 24h
      allowCredentials: true
`);
  assert.deepEqual(r?.route?.['requestMirrorPolicies'], [{ cluster: 'outbound|9080|v2|reviews.default.svc.cluster.local', runtimeFraction: { defaultValue: { numerator: 250000, denominator: 'MILLION' } } }]);
  assert.deepEqual(r?.['requestHeadersToAdd'], [
    { header: { key: 'x-a', value: '1' }, appendAction: 'OVERWRITE_IF_EXISTS_OR_ADD' },
    { header: { key: 'x-b', value: '2' }, appendAction: 'APPEND_IF_EXISTS_OR_ADD' },
  ]);
  assert.deepEqual(r?.['requestHeadersToRemove'], ['x-c']);
  assert.deepEqual(r?.['responseHeadersToAdd'], [{ header: { key: 'x-d', value: '4' }, appendAction: 'OVERWRITE_IF_EXISTS_OR_ADD' }]);
  assert.deepEqual(r?.['responseHeadersToRemove'], ['server']);
  assert.deepEqual((r?.['typedPerFilterConfig'] as ProtoJson)['envoy.filters.http.cors'], {
    '@type': 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy',
    allowOriginStringMatch: [{ exact: 'https://a.example' }, { safeRegex: { regex: 'https://.*\\.b\\.example' } }],
    allowMethods: 'GET,POST',
    allowHeaders: 'x-custom',
    exposeHeaders: 'x-exposed',
    maxAge: '86400',
    allowCredentials: true,
  });
});

test('REGISTRY_ONLY replaces the allow_any catch-all with block_all', () => {
  const sc = `apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: default}\nspec:\n  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n`;
  const push = generators.buildPushContext(resources(`${REGISTRY}---\n${sc}`));
  const vhosts = generate(push, sidecar('10.0.0.10', 'pp', 'default', {}), ROUTE_TYPE).get('9080')?.['virtualHosts'] as ProtoJson[];
  assert.deepEqual(vhosts.at(-1), { name: 'block_all', domains: ['*'], routes: [{ name: 'block_all', match: { prefix: '/' }, directResponse: { status: 502 } }], includeRequestAttemptCount: true });
  const open = generate(generators.buildPushContext(resources(REGISTRY)), sidecar('10.0.0.10', 'pp', 'default', {}), ROUTE_TYPE).get('9080')?.['virtualHosts'] as ProtoJson[];
  assert.deepEqual((open.at(-1)?.['routes'] as Route[])[0]?.route, { cluster: 'PassthroughCluster', timeout: '0s', maxGrpcTimeout: '0s' });
});

test('a delegating route expands to the delegate VirtualService routes under the root match', () => {
  const vs = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /api}, headers: {x-team: {exact: a}}}]
    delegate: {name: reviews-api, namespace: team-a}
  - route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-api, namespace: team-a}
spec:
  http:
  - match: [{uri: {prefix: /api/v2}}]
    route: [{destination: {host: reviews.default.svc.cluster.local, subset: v2}}]
  - route: [{destination: {host: reviews.default.svc.cluster.local, subset: v3}}]
`;
  const before = generators.buildPushContext(resources(REGISTRY));
  const push = generators.buildPushContext(resources(`${REGISTRY}---\n${vs}`));
  const proxy = sidecar('10.0.0.10', 'pp', 'default', {});
  const vh = (generate(push, proxy, ROUTE_TYPE).get('9080')?.['virtualHosts'] as { name: string; routes: Route[] }[]).find((v) => v.name.startsWith('reviews'));
  assert.deepEqual(vh?.routes.map((r) => [r.match, r.route?.['cluster']]), [
    [{ prefix: '/api/v2', headers: [{ name: 'x-team', stringMatch: { exact: 'a' } }] }, 'outbound|9080|v2|reviews.default.svc.cluster.local'],
    [{ prefix: '/api', headers: [{ name: 'x-team', stringMatch: { exact: 'a' } }] }, 'outbound|9080|v3|reviews.default.svc.cluster.local'],
    [{ prefix: '/' }, 'outbound|9080|v1|reviews.default.svc.cluster.local'],
  ]);
  // Editing the delegate pushes routes to the proxies that see its root.
  const plan = generators.planPush(push, push, { keys: new Set(['VirtualService/team-a/reviews-api']), endpointsOnly: false }, proxy);
  assert.deepEqual(plan && [...plan.types], ['type.googleapis.com/envoy.config.listener.v3.Listener', 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration']);
  assert.equal(generators.planPush(before, before, { keys: new Set(['VirtualService/team-a/reviews-api']), endpointsOnly: false }, proxy), null);
});

test('ignoreUriCase and scheme matches', () => {
  const [r] = reviewsRoutes(`
  - match: [{uri: {prefix: /Api}, ignoreUriCase: true, scheme: {exact: https}}]
    route: [{destination: {host: reviews}}]
`);
  assert.deepEqual(r?.match, { prefix: '/Api', caseSensitive: false, headers: [{ name: ':scheme', stringMatch: { exact: 'https' } }] });
});
