// AuthorizationPolicy → Envoy RBAC filters in the inbound chains of the selected workloads,
// in istiod's shape (policy names, permissions and principals, DENY before ALLOW), every
// listener encoded with Envoy's protos and within their validation rules (helpers.generate
// runs the PGV checker), and pushes of a policy reaching only the workloads it selects.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateResource } from '../../../src/api/index.ts';
import { LISTENER_TYPE, checkResource } from '../../../src/envoy/index.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';
import { generators } from '../../../src/pilot/gen/index.ts';
import { generate, resources, sidecar } from './helpers.ts';
import { compileRbac, evaluateRbac, httpSubject } from '../../../src/proxy/filters/rbac/index.ts';

const HTTP_RBAC = 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC';
const NETWORK_RBAC = 'type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC';

const MESH = `
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews, namespace: shop}
spec:
  workloadSelector: {labels: {app: reviews}}
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:8080
    captureMode: NONE
  - port: {number: 3306, protocol: TCP, name: tcp}
    defaultEndpoint: 127.0.0.1:3307
    captureMode: NONE
  egress:
  - hosts: ["./*"]
`;

const reviews = sidecar('127.0.1.5', 'reviews-v1', 'shop', { app: 'reviews' }, { INTERCEPTION_MODE: 'NONE' });
const ratings = sidecar('127.0.1.6', 'ratings-v1', 'shop', { app: 'ratings' }, { INTERCEPTION_MODE: 'NONE' });

/** The proxy's listeners under MESH plus `yaml`, whose documents must pass Istio's validation. */
function listeners(yaml: string, proxy = reviews): Map<string, ProtoJson> {
  const rs = resources(`${MESH}---\n${yaml}`);
  assert.deepEqual(rs.flatMap((r) => validateResource(r)).map(String), []);
  return generate(generators.buildPushContext(rs), proxy, LISTENER_TYPE);
}

function httpFilters(lds: Map<string, ProtoJson>, name = '127.0.1.5_9080'): ProtoJson[] {
  const chain = (lds.get(name)?.['filterChains'] as ProtoJson[])[0]!;
  const hcm = (chain['filters'] as ProtoJson[])[0]!['typedConfig'] as ProtoJson;
  return hcm['httpFilters'] as ProtoJson[];
}

function networkFilters(lds: Map<string, ProtoJson>, name = '127.0.1.5_3306'): ProtoJson[] {
  return (lds.get(name)?.['filterChains'] as ProtoJson[])[0]!['filters'] as ProtoJson[];
}

const NO_POLICY_FILTERS = ['envoy.filters.http.fault', 'envoy.filters.http.cors', 'envoy.filters.http.router'];

test('no AuthorizationPolicy: the inbound chains carry no RBAC filter', () => {
  const lds = listeners('');
  assert.deepEqual(httpFilters(lds).map((f) => f['name']), NO_POLICY_FILTERS);
  assert.deepEqual(networkFilters(lds).map((f) => f['name']), ['envoy.filters.network.tcp_proxy']);
});

test('ALLOW and DENY policies: one RBAC filter per action, DENY first, with istiod\'s policies', () => {
  const lds = listeners(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-frontend, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/shop/sa/frontend"], namespaces: ["shop"]}
    to:
    - operation: {methods: ["GET"], paths: ["/reviews/*", "/health"], ports: ["9080"]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-blocked, namespace: shop}
spec:
  action: DENY
  rules:
  - from:
    - source: {remoteIpBlocks: ["203.0.113.0/24"], notIpBlocks: ["10.0.0.1"]}
    when:
    - {key: "request.headers[x-debug]", values: ["*"]}
`);
  const filters = httpFilters(lds);
  assert.deepEqual(filters.map((f) => f['name']), ['envoy.filters.http.rbac', 'envoy.filters.http.rbac', ...NO_POLICY_FILTERS]);
  assert.deepEqual(filters[0]!['typedConfig'], {
    '@type': HTTP_RBAC,
    rules: {
      action: 'DENY',
      policies: {
        'ns[shop]-policy[deny-blocked]-rule[0]': {
          permissions: [{ andRules: { rules: [{ any: true }] } }],
          principals: [{ andIds: { ids: [
            { orIds: { ids: [{ remoteIp: { addressPrefix: '203.0.113.0', prefixLen: 24 } }] } },
            { notId: { orIds: { ids: [{ directRemoteIp: { addressPrefix: '10.0.0.1', prefixLen: 32 } }] } } },
            { orIds: { ids: [{ header: { name: 'x-debug', presentMatch: true } }] } },
          ] } }],
        },
      },
    },
  });
  assert.deepEqual(filters[1]!['typedConfig'], {
    '@type': HTTP_RBAC,
    rules: {
      policies: {
        'ns[shop]-policy[allow-frontend]-rule[0]': {
          permissions: [{ andRules: { rules: [
            { orRules: { rules: [{ header: { name: ':method', exactMatch: 'GET' } }] } },
            { orRules: { rules: [{ urlPath: { path: { prefix: '/reviews/' } } }, { urlPath: { path: { exact: '/health' } } }] } },
            { orRules: { rules: [{ destinationPort: 9080 }] } },
          ] } }],
          principals: [{ andIds: { ids: [
            { orIds: { ids: [{ authenticated: { principalName: { exact: 'spiffe://cluster.local/ns/shop/sa/frontend' } } }] } },
            { orIds: { ids: [{ authenticated: { principalName: { safeRegex: { regex: '.*/ns/shop/.*' } } } }] } },
          ] } }],
        },
      },
    },
  });
});

test('an ALLOW policy without rules denies everything; rules: [{}] allows everything', () => {
  const denyAll = httpFilters(listeners(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: shop}
spec: {}
`));
  // istiod's never-matching policy: nothing is allowed.
  assert.deepEqual(denyAll[0], { name: 'envoy.filters.http.rbac', typedConfig: { '@type': HTTP_RBAC, rules: { policies: {
    'ns[shop]-policy[deny-all]-rule[0]': { permissions: [{ notRule: { any: true } }], principals: [{ notId: { any: true } }] },
  } } } });
  const allowAll = httpFilters(listeners(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-all, namespace: shop}
spec: {rules: [{}]}
`));
  assert.deepEqual(allowAll[0]!['typedConfig'], {
    '@type': HTTP_RBAC,
    rules: { policies: { 'ns[shop]-policy[allow-all]-rule[0]': { permissions: [{ andRules: { rules: [{ any: true }] } }], principals: [{ andIds: { ids: [{ any: true }] } }] } } },
  });
});

test('CUSTOM fails closed ahead of the rest; AUDIT is a LOG filter; a DENY policy without rules never matches; dry-run is shadow', () => {
  const filters = httpFilters(listeners(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: nothing, namespace: shop}
spec: {action: DENY}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit, namespace: shop}
spec: {action: AUDIT, rules: [{to: [{operation: {paths: ["/admin*"]}}]}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: shop}
spec: {action: CUSTOM, provider: {name: opa}, rules: [{to: [{operation: {paths: ["/ext"]}}]}]}
`));
  assert.deepEqual(filters.map((f) => ((f['typedConfig'] as ProtoJson)['rules'] as ProtoJson | undefined)?.['action'] ?? f['name']), ['DENY', 'LOG', 'DENY', ...NO_POLICY_FILTERS]);
  assert.deepEqual(Object.keys(((filters[0]!['typedConfig'] as ProtoJson)['rules'] as ProtoJson)['policies'] as ProtoJson), ['istio-ext-authz-opa-ns[shop]-policy[ext]-rule[0]-deny-due-to-bad-CUSTOM-action']);
  assert.deepEqual(((filters[2]!['typedConfig'] as ProtoJson)['rules'] as ProtoJson)['policies'], {
    'ns[shop]-policy[nothing]-rule[0]': { permissions: [{ notRule: { any: true } }], principals: [{ notId: { any: true } }] },
  });
  const dry = httpFilters(listeners(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: trial, namespace: shop, annotations: {istio.io/dry-run: "true"}}
spec: {action: DENY, rules: [{}]}
`));
  assert.deepEqual(dry[0]!['typedConfig'], {
    '@type': HTTP_RBAC,
    shadowRules: { action: 'DENY', policies: { 'ns[shop]-policy[trial]-rule[0]': { permissions: [{ andRules: { rules: [{ any: true }] } }], principals: [{ andIds: { ids: [{ any: true }] } }] } } },
    shadowRulesStatPrefix: 'istio_dry_run_deny_',
  });
});

test('selection: the selector, the namespace and the root namespace decide; targetRef policies skip sidecars', () => {
  const yaml = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-ratings, namespace: shop}
spec: {selector: {matchLabels: {app: ratings}}, rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: other-ns, namespace: other}
spec: {rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: gateway-only, namespace: shop}
spec: {targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}], rules: [{}]}
`;
  assert.deepEqual(httpFilters(listeners(yaml)).map((f) => f['name']), NO_POLICY_FILTERS);
  const mesh = httpFilters(listeners(`${yaml}---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-wide, namespace: istio-system}
spec: {action: DENY, rules: [{to: [{operation: {methods: ["TRACE"]}}]}]}
`));
  assert.deepEqual(Object.keys(((mesh[0]!['typedConfig'] as ProtoJson)['rules'] as ProtoJson)['policies'] as ProtoJson), ['ns[istio-system]-policy[mesh-wide]-rule[0]']);
});

test('TCP chains get the network RBAC filter: an ALLOW rule naming HTTP fields is left out, a DENY rule loses them', () => {
  const lds = listeners(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow, namespace: shop}
spec:
  rules:
  - to: [{operation: {methods: ["GET"]}}]
  - from: [{source: {ipBlocks: ["127.0.1.0/24"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny, namespace: shop}
spec:
  action: DENY
  rules:
  - to: [{operation: {ports: ["3306"], paths: ["/x"]}}]
`);
  const filters = networkFilters(lds);
  assert.deepEqual(filters.map((f) => f['name']), ['envoy.filters.network.rbac', 'envoy.filters.network.rbac', 'envoy.filters.network.tcp_proxy']);
  assert.deepEqual(filters[0]!['typedConfig'], {
    '@type': NETWORK_RBAC,
    statPrefix: 'tcp.',
    rules: { action: 'DENY', policies: { 'ns[shop]-policy[deny]-rule[0]': {
      permissions: [{ andRules: { rules: [{ orRules: { rules: [{ destinationPort: 3306 }] } }] } }],
      principals: [{ andIds: { ids: [{ any: true }] } }],
    } } },
  });
  assert.deepEqual(Object.keys(((filters[1]!['typedConfig'] as ProtoJson)['rules'] as ProtoJson)['policies'] as ProtoJson), ['ns[shop]-policy[allow]-rule[1]']);
});

test('conditions, templates and negations map to Envoy matchers that satisfy Envoy\'s rules', () => {
  const lds = listeners(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: full, namespace: shop}
spec:
  rules:
  - from:
    - source: {requestPrincipals: ["https://issuer/*"], notNamespaces: ["test-*"], trustDomains: ["cluster.local"]}
    to:
    - operation: {hosts: ["reviews*", "*.example.com"], notPaths: ["/api/{*}/admin/{**}"], notMethods: ["DELETE"]}
    when:
    - {key: source.ip, values: ["127.0.0.1", "::1/128"]}
    - {key: destination.port, notValues: ["15000"]}
    - {key: connection.sni, values: ["*.local"]}
    - {key: "request.auth.claims[groups]", values: ["admins"]}
`);
  const cfg = httpFilters(lds)[0]!['typedConfig'] as ProtoJson;
  const policy = (((cfg['rules'] as ProtoJson)['policies'] as ProtoJson)['ns[shop]-policy[full]-rule[0]']) as ProtoJson;
  const perm = (policy['permissions'] as ProtoJson[])[0] as ProtoJson;
  assert.deepEqual((perm['andRules'] as ProtoJson)['rules'], [
    { orRules: { rules: [
      { header: { name: ':authority', stringMatch: { prefix: 'reviews', ignoreCase: true } } },
      { header: { name: ':authority', stringMatch: { suffix: '.example.com', ignoreCase: true } } },
    ] } },
    { notRule: { orRules: { rules: [{ header: { name: ':method', exactMatch: 'DELETE' } }] } } },
    { notRule: { orRules: { rules: [{ urlPath: { path: { safeRegex: { regex: '/api/[^/]+/admin/.*' } } } }] } } },
    { notRule: { orRules: { rules: [{ destinationPort: 15000 }] } } },
    { orRules: { rules: [{ requestedServerName: { suffix: '.local' } }] } },
  ]);
  const ids = (((policy['principals'] as ProtoJson[])[0] as ProtoJson)['andIds'] as ProtoJson)['ids'];
  assert.deepEqual(ids, [
    { orIds: { ids: [{ metadata: { filter: 'istio_authn', path: [{ key: 'request.auth.principal' }], value: { stringMatch: { prefix: 'https://issuer/' } } } }] } },
    { notId: { orIds: { ids: [{ authenticated: { principalName: { safeRegex: { regex: '.*/ns/test-.*/.*' } } } }] } } },
    { orIds: { ids: [{ authenticated: { principalName: { prefix: 'spiffe://cluster.local/' } } }] } },
    { orIds: { ids: [{ directRemoteIp: { addressPrefix: '127.0.0.1', prefixLen: 32 } }, { directRemoteIp: { addressPrefix: '::1', prefixLen: 128 } }] } },
    { orIds: { ids: [{ metadata: { filter: 'istio_authn', path: [{ key: 'request.auth.claims' }, { key: 'groups' }], value: { listMatch: { oneOf: { stringMatch: { exact: 'admins' } } } } } }] } },
  ]);
  // generate() above encoded every listener and ran the PGV checker; the RBAC payload itself is checked too.
  const report = checkResource(HTTP_RBAC, cfg);
  assert.deepEqual(report.violations, []);
  assert.ok(report.evaluated > 0);
});

test('a policy change pushes LDS only to the workloads it selects, before or after', () => {
  const policy = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: shop}
spec: {selector: {matchLabels: {app: reviews}}, rules: [{}]}
`;
  const before = generators.buildPushContext(resources(MESH));
  const after = generators.buildPushContext(resources(`${MESH}---\n${policy}`));
  const change = { keys: new Set(['AuthorizationPolicy/shop/p']), endpointsOnly: false };
  assert.deepEqual([...(generators.planPush(before, after, change, reviews)?.types ?? [])], [LISTENER_TYPE]);
  assert.equal(generators.planPush(before, after, change, ratings), null);
});

test('the generated policy, compiled by the proxy, allows exactly the principal it names', () => {
  const lds = listeners(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: frontend-only, namespace: shop}
spec:
  rules: [{from: [{source: {principals: ["cluster.local/ns/shop/sa/frontend"]}}], to: [{operation: {methods: ["GET"]}}]}]
`);
  const filters = httpFilters(lds).filter((f) => f['name'] === 'envoy.filters.http.rbac').map((f, i) => compileRbac(f['typedConfig'] as ProtoJson, `rbac[${i}]`, true));
  const facts = (principal: string | undefined, method = 'GET') => httpSubject({
    method, target: '/', path: '/', authority: 'reviews', scheme: 'http', headers: [], receivedXff: undefined,
    remoteAddress: '127.0.1.7', localAddress: '127.0.1.5', localPort: 9080, useRemoteAddress: false, xffNumTrustedHops: 0, principal,
  });
  assert.equal(evaluateRbac(filters, facts('spiffe://cluster.local/ns/shop/sa/frontend')).allowed, true);
  assert.equal(evaluateRbac(filters, facts('spiffe://cluster.local/ns/shop/sa/frontend', 'POST')).allowed, false);
  assert.equal(evaluateRbac(filters, facts('spiffe://cluster.local/ns/shop/sa/other')).allowed, false);
  assert.deepEqual(evaluateRbac(filters, facts(undefined)), { allowed: false, policy: undefined, details: 'rbac_access_denied_matched_policy[none]' });
});

test('RequestAuthentication: jwt_authn (one provider per rule, any of them or no token) and istio_authn ahead of RBAC', () => {
  const jwks = '{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}';
  const lds = listeners(`
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  jwtRules:
  - issuer: https://issuer.example
    audiences: [reviews]
    jwks: '${jwks}'
    fromHeaders: [{name: x-jwt, prefix: "Token "}]
    outputClaimToHeaders: [{header: x-sub, claim: sub}]
  - issuer: https://other.example
    jwksUri: https://keys.other.example:8443/jwks.json
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: alice, namespace: shop}
spec:
  rules: [{from: [{source: {requestPrincipals: ["https://issuer.example/alice"]}}]}]
`);
  const filters = httpFilters(lds);
  assert.deepEqual(filters.map((f) => f['name']), ['envoy.filters.http.jwt_authn', 'istio_authn', 'envoy.filters.http.rbac', ...NO_POLICY_FILTERS]);
  assert.deepEqual(filters[0]!['typedConfig'], {
    '@type': 'type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication',
    providers: {
      'origins-0': {
        issuer: 'https://issuer.example', audiences: ['reviews'], localJwks: { inlineString: jwks },
        fromHeaders: [{ name: 'x-jwt', valuePrefix: 'Token ' }], claimToHeaders: [{ headerName: 'x-sub', claimName: 'sub' }],
        payloadInMetadata: 'https://issuer.example',
      },
      'origins-1': {
        issuer: 'https://other.example',
        remoteJwks: { httpUri: { uri: 'https://keys.other.example:8443/jwks.json', cluster: 'outbound|8443||keys.other.example', timeout: '5s' }, cacheDuration: '1200s' },
        payloadInMetadata: 'https://other.example',
      },
    },
    rules: [{ match: { prefix: '/' }, requires: { requiresAny: { requirements: [{ providerName: 'origins-0' }, { providerName: 'origins-1' }, { allowMissing: {} }] } } }],
    bypassCorsPreflight: true,
  });
  assert.deepEqual(filters[1], { name: 'istio_authn', typedConfig: { '@type': 'type.googleapis.com/io.istio.network.authn.Config' } });
  // Another workload of the namespace is not selected: no JWT filters, no push.
  const other = generate(generators.buildPushContext(resources(`${MESH}---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: jwt, namespace: shop}\nspec: {selector: {matchLabels: {app: ratings}}, jwtRules: [{issuer: x, jwks: '${jwks}'}]}\n`)), reviews, LISTENER_TYPE);
  assert.deepEqual(httpFilters(other).map((f) => f['name']), NO_POLICY_FILTERS);
});

test('a RequestAuthentication change pushes LDS only to the workloads it selects', () => {
  const before = generators.buildPushContext(resources(MESH));
  const after = generators.buildPushContext(resources(`${MESH}---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: shop}
spec: {selector: {matchLabels: {app: ratings}}, jwtRules: [{issuer: x, jwks: '{"keys":[]}'}]}
`));
  const change = { keys: new Set(['RequestAuthentication/shop/jwt']), endpointsOnly: false };
  assert.deepEqual([...(generators.planPush(before, after, change, ratings)?.types ?? [])], [LISTENER_TYPE]);
  assert.equal(generators.planPush(before, after, change, reviews), null);
});

test('istiod\'s forms: principal suffixes, service accounts, methods and request headers', () => {
  const lds = listeners(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: forms, namespace: shop}
spec:
  rules:
  - from: [{source: {serviceAccounts: ["other/frontend", "backend"]}}]
  - from: [{source: {principals: ["*-suffix", "prefix-*", "*"]}}]
    to: [{operation: {methods: ["GE*", "*ET", "*"]}}]
    when: [{key: "request.headers[X-Env]", values: ["prod", "test-*"]}]
`);
  const policies = (((httpFilters(lds)[0]!['typedConfig'] as ProtoJson)['rules'] as ProtoJson)['policies']) as Record<string, ProtoJson>;
  assert.deepEqual(policies['ns[shop]-policy[forms]-rule[0]']!['principals'], [{ andIds: { ids: [{ orIds: { ids: [
    { authenticated: { principalName: { safeRegex: { regex: 'spiffe://.+/ns/other/(.+/|)sa/frontend(/.+)?' } } } },
    { authenticated: { principalName: { safeRegex: { regex: 'spiffe://.+/ns/shop/(.+/|)sa/backend(/.+)?' } } } },
  ] } }] } }]);
  const rule1 = policies['ns[shop]-policy[forms]-rule[1]']!;
  assert.deepEqual(rule1['permissions'], [{ andRules: { rules: [{ orRules: { rules: [
    { header: { name: ':method', prefixMatch: 'GE' } }, { header: { name: ':method', suffixMatch: 'ET' } }, { header: { name: ':method', presentMatch: true } },
  ] } }] } }]);
  assert.deepEqual(rule1['principals'], [{ andIds: { ids: [
    { orIds: { ids: [
      { authenticated: { principalName: { safeRegex: { regex: 'spiffe://.*-suffix' } } } },
      { authenticated: { principalName: { prefix: 'spiffe://prefix-' } } },
      { authenticated: { principalName: { safeRegex: { regex: '.+' } } } },
    ] } },
    { orIds: { ids: [
      { header: { name: 'X-Env', safeRegexMatch: { regex: '^prod$|^prod,.*|.*,prod,.*|.*,prod$' } } },
      { header: { name: 'X-Env', safeRegexMatch: { regex: '^test-.*$|^test-.*,.*|.*,test-.*,.*|.*,test-.*$' } } },
    ] } },
  ] } }]);
  // The proxy runs them: a repeated header matches when one of its values does.
  const filters = httpFilters(lds).filter((f) => f['name'] === 'envoy.filters.http.rbac').map((f, i) => compileRbac(f['typedConfig'] as ProtoJson, `rbac[${i}]`, true));
  const subject = (env: string[], principal = 'spiffe://cluster.local/ns/shop/sa/my-suffix') => httpSubject({
    method: 'GET', target: '/', path: '/', authority: 'reviews', scheme: 'http', headers: env.map((value) => ({ name: 'x-env', value })), receivedXff: undefined,
    remoteAddress: '127.0.1.7', localAddress: '127.0.1.5', localPort: 9080, useRemoteAddress: false, xffNumTrustedHops: 0, principal,
  });
  assert.equal(evaluateRbac(filters, subject(['dev', 'test-2'])).allowed, true);
  assert.equal(evaluateRbac(filters, subject(['dev'])).allowed, false);
  assert.equal(evaluateRbac(filters, subject([], 'spiffe://cluster.local/ns/other/sa/frontend')).allowed, true);
  assert.equal(evaluateRbac(filters, subject([], 'spiffe://cluster.local/ns/other/sa/frontend-x')).allowed, false);
});

test('two workloads alike but for their labels: each gets its own policies, whichever is generated first (listeners are shared only between equals)', () => {
  const yaml = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: shop-svc, namespace: redirect}
spec:
  hosts: [shop.redirect.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {tier: shop}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-reviews, namespace: redirect}
spec: {selector: {matchLabels: {app: reviews}}, action: DENY, rules: [{to: [{operation: {methods: ["DELETE"]}}]}]}
`;
  const rs = resources(yaml);
  const a = sidecar('127.0.1.21', 'reviews-v1', 'redirect', { app: 'reviews', tier: 'shop' }, { INTERCEPTION_MODE: 'REDIRECT' });
  const b = sidecar('127.0.1.22', 'ratings-v1', 'redirect', { app: 'ratings', tier: 'shop' }, { INTERCEPTION_MODE: 'REDIRECT' });
  const hasRbac = (lds: Map<string, ProtoJson>): boolean => JSON.stringify(lds.get('virtualInbound') ?? {}).includes('policy[deny-reviews]');
  for (const order of [[a, b], [b, a]] as const) {
    const push = generators.buildPushContext(rs);
    const first = generate(push, order[0], LISTENER_TYPE);
    const second = generate(push, order[1], LISTENER_TYPE);
    const byName = new Map([[order[0].id, first], [order[1].id, second]]);
    assert.equal(hasRbac(byName.get(a.id)!), true, 'the DENY policy reaches reviews');
    assert.equal(hasRbac(byName.get(b.id)!), false, 'and never ratings');
  }
});
