// The RouteTemplates kind (sextant.io/v1alpha1): one service's operations as path templates;
// what a resource may say, and the exact error for each thing it may not.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_ROUTE_TEMPLATES, parseDocuments, validateResource, type Resource } from '../../src/api/index.ts';

function resource(spec: unknown): Resource {
  return { apiVersion: 'sextant.io/v1alpha1', kind: 'RouteTemplates', metadata: { name: 'orders', namespace: 'shop' }, spec };
}

function problems(spec: unknown): string[] {
  return validateResource(resource(spec)).map((e) => `${e.path}: ${e.detail}`);
}

describe('RouteTemplates validation', () => {
  test('templates as documented are accepted', () => {
    const docs = parseDocuments(`
apiVersion: sextant.io/v1alpha1
kind: RouteTemplates
metadata: {name: orders, namespace: shop}
spec:
  host: orders.shop.svc.cluster.local
  templates:
  - template: /orders/{id}
  - {template: "/orders/{id}/items", name: list-items, methods: [GET, HEAD]}
  - template: /orders/{id}/items
    methods: [POST]
  - template: /files/{path...}
  - template: /v1/*/status
`, 'orders.yaml');
    assert.deepEqual(docs.errors.map(String), []);
    assert.equal(docs.documents.length, 1);
    assert.deepEqual(validateResource(docs.documents[0]!.resource).map(String), []);
  });

  test('host and templates are required, and at least one template', () => {
    assert.deepEqual(problems({}), ['spec.host: Required value', 'spec.templates: Required value']);
    assert.deepEqual(problems({ host: 'orders', templates: [] }), ['spec.templates: Required value: at least one template']);
    assert.deepEqual(problems({ host: 'orders', templates: [{ name: 'x' }] }), ['spec.templates[0].template: Required value']);
  });

  test('bad values name the field and what is expected', () => {
    const t = (template: string, extra: object = {}) => ({ host: 'orders', templates: [{ template, ...extra }] });
    assert.deepEqual(problems({ ...t('/a'), host: '*.shop.svc.cluster.local' }), ['spec.host: Invalid value: "*.shop.svc.cluster.local": route templates name one service, not a wildcard']);
    assert.deepEqual(problems(t('orders/{id}')), ['spec.templates[0].template: Invalid value: template "orders/{id}": must start with \'/\'']);
    assert.deepEqual(problems(t('/orders/{id}?x=1')), ['spec.templates[0].template: Invalid value: template "/orders/{id}?x=1": must not contain a query or fragment']);
    assert.deepEqual(problems(t('/orders/id-{id}')), ['spec.templates[0].template: Invalid value: template "/orders/id-{id}": segment \'id-{id}\' is neither a literal nor a whole-segment placeholder ({name}, :name, *, {name...}, **)']);
    assert.deepEqual(problems(t('/files/{path...}/raw')), ['spec.templates[0].template: Invalid value: template "/files/{path...}/raw": \'{path...}\' (any number of segments) must be the last segment']);
    assert.deepEqual(problems(t('/orders', { methods: ['get'] })), ['spec.templates[0].methods[0]: Invalid value: "get": an HTTP method in upper case (GET, POST, …)']);
    assert.deepEqual(problems({ host: 'orders', templates: [{ template: '/a/{id}', methods: ['GET'] }, { template: '/a/{id}', methods: ['GET'] }] }),
      ['spec.templates[1].template: Duplicate value: "/a/{id}" is spec.templates[0] already (it would never match)']);
    const many = { host: 'orders', templates: Array.from({ length: MAX_ROUTE_TEMPLATES + 1 }, (_, i) => ({ template: `/t${i}` })) };
    assert.deepEqual(problems(many), [`spec.templates: Too many: ${MAX_ROUTE_TEMPLATES + 1}: must have at most ${MAX_ROUTE_TEMPLATES} items`]);
  });
});
