// Validation of the security kinds beyond Istio's fixtures: what istiod's webhook checks on
// AuthorizationPolicy and RequestAuthentication, with Istio's wording, and PeerAuthentication's
// CEL rules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateResource } from '../../src/api/index.ts';
import type { Resource } from '../../src/api/index.ts';

function errors(kind: string, spec: unknown, annotations?: Record<string, string>): string[] {
  const r = { apiVersion: 'security.istio.io/v1', kind, metadata: { name: 'p', namespace: 'shop', ...(annotations ? { annotations } : {}) }, spec } as unknown as Resource;
  return validateResource(r).map((e) => `${e.path}: ${e.detail}`);
}

test('AuthorizationPolicy: the webhook\'s checks, with Istio\'s messages', () => {
  const cases: [unknown, string[]][] = [
    [{ rules: [{ from: [{ source: { ipBlocks: ['10.0.0.0/33', 'nope'] } }] }] }, [
      'spec.rules[0].from[0].source.ipBlocks[0]: bad CIDR range (10.0.0.0/33): 10.0.0.0/33 is not a valid CIDR block',
      'spec.rules[0].from[0].source.ipBlocks[1]: bad IP address (nope)',
    ]],
    [{ rules: [{ to: [{ operation: { ports: ['http', '70000'] } }] }] }, [
      'spec.rules[0].to[0].operation.ports[0]: bad port (http): must be a number in 0-65535',
      'spec.rules[0].to[0].operation.ports[1]: bad port (70000): must be a number in 0-65535',
    ]],
    [{ rules: [{ from: [{ source: {} }], to: [{ operation: {} }] }] }, [
      'spec.rules[0].from[0].source: `from.source` must not be empty, found at rule 0',
      'spec.rules[0].to[0].operation: `to.operation` must not be empty, found at rule 0',
    ]],
    [{ rules: [{ from: [] }] }, ['spec.rules[0].from: `from` must not be empty, found at rule 0']],
    [{ rules: [{ to: [{ operation: { methods: [''] } }] }] }, ['spec.rules[0].to[0].operation.methods[0]: empty value not allowed, found in Methods']],
    [{ rules: [{ to: [{ operation: { paths: ['/a/{**}/{*}', '/a/{x}'] } }] }] }, [
      "spec.rules[0].to[0].operation.paths[0]: invalid or unsupported path /a/{**}/{*}, found in Paths. Contains '{' or '}' beyond a supported path template",
      "spec.rules[0].to[0].operation.paths[1]: invalid or unsupported path /a/{x}, found in Paths. Contains '{' or '}' beyond a supported path template",
    ]],
    [{ rules: [{ when: [{ key: 'request.nothing', values: ['x'] }, { key: 'source.ip', notValues: ['300.1.1.1'] }, { key: 'request.headers[]', values: ['a'] }, { key: 'source.namespace' }] }] }, [
      'spec.rules[0].when[0].values: invalid `value` for `key` request.nothing: unknown attribute (request.nothing)',
      'spec.rules[0].when[1].notValues[0]: invalid `notValue` for `key` source.ip: bad IP address (300.1.1.1)',
      'spec.rules[0].when[2].values: invalid `value` for `key` request.headers[]: bad key (request.headers[]): should have format a[b]',
      'spec.rules[0].when[3]: at least one of `values` or `notValues` must be set for key source.namespace',
    ]],
    [{ action: 'CUSTOM', provider: { name: 'opa' } }, ['spec.rules: CUSTOM action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request']],
    [{ action: 'CUSTOM', rules: [{ from: [{ source: { principals: ['a'] } }] }] }, [
      'spec.provider.name: `provider.name` must not be empty',
      'spec.rules[0].from[0].source.principals: From.Principals is currently not supported with CUSTOM action',
    ]],
    [{ action: 'DENY', provider: { name: 'opa' }, rules: [{}] }, ['spec.provider: `provider` must not be with non CUSTOM action, found DENY']],
    [{ action: 'REJECT' }, ['spec.action: Unsupported value: "REJECT": supported values: "ALLOW", "DENY", "AUDIT", "CUSTOM"']],
    [{ selector: { matchLabels: { app: 'a' } }, targetRefs: [{ kind: 'Gateway', group: 'gateway.networking.k8s.io', name: 'gw' }] }, ['spec: Invalid value: "object": only one of targetRefs or selector can be set']],
  ];
  for (const [spec, want] of cases) assert.deepEqual(errors('AuthorizationPolicy', spec), want, JSON.stringify(spec));
  assert.deepEqual(errors('AuthorizationPolicy', {}), []);
  assert.deepEqual(errors('AuthorizationPolicy', { rules: [{}] }), []);
  assert.deepEqual(errors('AuthorizationPolicy', { action: 'CUSTOM', provider: { name: 'opa' }, rules: [{ to: [{ operation: { paths: ['/x'] } }] }] }), []);
  // The dry-run annotation is Istio's for AuthorizationPolicy only.
  assert.deepEqual(errors('AuthorizationPolicy', { rules: [{}] }, { 'istio.io/dry-run': 'true' }), []);
  assert.equal(errors('PeerAuthentication', {}, { 'istio.io/dry-run': 'true' }).length, 1);
});

test('RequestAuthentication: issuer required, JWKS must parse, URIs need http(s)', () => {
  assert.deepEqual(errors('RequestAuthentication', { jwtRules: [{ audiences: ['a'] }] }), ['spec.jwtRules[0].issuer: issuer must be set']);
  assert.deepEqual(errors('RequestAuthentication', { jwtRules: [{ issuer: 'i', jwks: '{"no": 1}' }] }), ['spec.jwtRules[0].jwks: jwks parse error: expected a JSON Web Key Set ({"keys": [...]})']);
  assert.match(errors('RequestAuthentication', { jwtRules: [{ issuer: 'i', jwks: '{' }] })[0]!, /^spec\.jwtRules\[0\]\.jwks: jwks parse error: /);
  assert.deepEqual(errors('RequestAuthentication', { jwtRules: [{ issuer: 'i', jwksUri: 'ftp://x/keys' }] }), ['spec.jwtRules[0].jwksUri: Invalid value: "string": url must have scheme http:// or https:// (got "ftp://x/keys")']);
  assert.deepEqual(errors('RequestAuthentication', { jwtRules: [{ issuer: 'i', jwksUri: 'https://x/keys', jwks: '{"keys":[]}' }] }), ['spec.jwtRules[0]: Invalid value: "object": only one of jwks or jwksUri can be set']);
  assert.deepEqual(errors('RequestAuthentication', { jwtRules: [{ issuer: 'i', jwksUri: 'https://x/keys', timeout: '2s' }] }), []);
});

test('PeerAuthentication: modes, port-level settings need a selector and valid ports', () => {
  assert.deepEqual(errors('PeerAuthentication', { mtls: { mode: 'STRICT' } }), []);
  assert.deepEqual(errors('PeerAuthentication', { selector: { matchLabels: { app: 'a' } }, portLevelMtls: { 8080: { mode: 'DISABLE' } } }), []);
  assert.deepEqual(errors('PeerAuthentication', { selector: { matchLabels: {} }, portLevelMtls: { 8080: { mode: 'DISABLE' } } }), ['spec: Invalid value: "object": portLevelMtls requires selector']);
  assert.deepEqual(errors('PeerAuthentication', { selector: { matchLabels: { app: 'a' } }, portLevelMtls: { 70000: { mode: 'STRICT' } } }), ['spec.portLevelMtls: Invalid value: "object": port must be between 1-65535 (got "70000")']);
  assert.deepEqual(errors('PeerAuthentication', { selector: { matchLabels: { 'app*': 'a' } } }), ['spec.selector.matchLabels: Invalid value: "object": wildcard not allowed in label key match (got "app*")']);
});
