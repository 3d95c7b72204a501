// The operation of a request: route name, then declared templates, then a learned template,
// with a hard budget per service and bounded memory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OperationNamer, OperationTemplateError, OTHER_OPERATION, isIdentifierSegment } from '../../src/telemetry/index.ts';

const ORDERS = 'orders.default.svc.cluster.local';

test('ids, UUIDs, long hex and long tokens become {id}; the query and fragment are dropped', () => {
  const n = new OperationNamer();
  assert.equal(n.name({ service: ORDERS, path: '/orders/42' }), '/orders/{id}');
  assert.equal(n.name({ service: ORDERS, path: '/orders/7?x=1#top' }), '/orders/{id}');
  assert.equal(n.name({ service: ORDERS, path: '/orders/3f2b8c1e-9d4a-4e6b-8f0a-1c2d3e4f5a6b/items/9' }), '/orders/{id}/items/{id}');
  assert.equal(n.name({ service: ORDERS, path: '/blobs/0123456789abcdef0123' }), '/blobs/{id}');
  assert.equal(n.name({ service: ORDERS, path: '/u/01HQZX3V6K4Y8W2N9M7P5R1T0S' }), '/u/{id}');
  assert.equal(n.name({ service: ORDERS, path: '/' }), '/');
  assert.equal(n.name({ service: ORDERS, path: '/api/v1/health/' }), '/api/v1/health');
  assert.deepEqual(n.operationsOf(ORDERS).sort(), ['/', '/api/v1/health', '/blobs/{id}', '/orders/{id}', '/orders/{id}/items/{id}', '/u/{id}']);
  assert.equal(isIdentifierSegment('v1'), false);
  assert.equal(isIdentifierSegment('reviews'), false);
  assert.equal(isIdentifierSegment('deadbeef'), false);
  assert.equal(isIdentifierSegment('12.50'), true);
});

test('the route name wins, then the first matching declared template, then the learned one', () => {
  const n = new OperationNamer({
    templates: [
      { service: 'orders', template: '/orders/{orderId}/lines/:line' },
      { service: 'orders.default', methods: ['POST'], template: '/orders/**', name: 'create-or-update' },
      { template: '/files/{path...}' },
      { service: 'payments', template: '/orders/*' },
    ],
  });
  assert.equal(n.name({ service: ORDERS, path: '/orders/42', routeName: 'get-order' }), 'get-order');
  assert.equal(n.name({ service: ORDERS, path: '/orders/a/lines/b' }), '/orders/{orderId}/lines/:line');
  assert.equal(n.name({ service: ORDERS, path: '/orders/a/b', method: 'post' }), 'create-or-update');
  assert.equal(n.name({ service: ORDERS, path: '/orders/a/b', method: 'GET' }), '/orders/a/b');
  assert.equal(n.name({ service: ORDERS, path: '/files' }), '/files/{path...}');
  assert.equal(n.name({ service: ORDERS, path: '/files/x/y/z' }), '/files/{path...}');
  // 'payments' does not match orders' host, nor does 'order' (labels, not string prefixes).
  assert.equal(n.name({ service: ORDERS, path: '/orders/abc' }), '/orders/abc');
  assert.equal(new OperationNamer({ templates: [{ service: 'order', template: '/x/*' }] }).name({ service: ORDERS, path: '/x/y' }), '/x/y');
});

test('a bad template is refused with a message naming it', () => {
  assert.throws(() => new OperationNamer({ templates: [{ template: 'orders/{id}' }] }), (e: unknown) => e instanceof OperationTemplateError && /template "orders\/\{id\}": must start with '\/'/.test(e.message));
  assert.throws(() => new OperationNamer({ templates: [{ template: '/a/**/b' }] }), /'\*\*' \(any number of segments\) must be the last segment/);
  assert.throws(() => new OperationNamer({ templates: [{ template: '/a/x{id}' }] }), /segment 'x\{id\}' is neither a literal/);
  assert.throws(() => new OperationNamer({ templates: [{ template: '/a?b=1' }] }), /query or fragment/);
  assert.throws(() => new OperationNamer({ budget: 0 }), /budget must be a positive integer/);
});

test('more than 10 literal values at one position fold into {*}', () => {
  const n = new OperationNamer();
  const names = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi', 'ivan', 'judy', 'mallory', 'oscar'];
  const ops = names.map((u) => n.name({ service: ORDERS, path: `/users/${u}/profile` }));
  assert.deepEqual(ops.slice(0, 10), names.slice(0, 10).map((u) => `/users/${u}/profile`));
  assert.deepEqual(ops.slice(10), ['/users/{*}/profile', '/users/{*}/profile']);
  assert.equal(n.name({ service: ORDERS, path: '/users/alice/profile' }), '/users/alice/profile');
});

test('100,000 random paths: at most the budget per service, a templated path counted as one operation', () => {
  const n = new OperationNamer();
  let seed = 7;
  const rnd = (): number => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed; };
  const word = (): string => { let s = ''; const len = 1 + (rnd() % 12); for (let i = 0; i < len; i++) s += String.fromCharCode(97 + (rnd() % 26)); return s; };
  const services = [ORDERS, 'reviews.default.svc.cluster.local'];
  const seen = new Map<string, Set<string>>(services.map((s) => [s, new Set()]));
  const itemsOps = new Set<string>();
  let itemsCount = 0;
  for (let i = 0; i < 100_000; i++) {
    const service = services[i % 2]!;
    const depth = 1 + (rnd() % 6);
    let path = '';
    for (let d = 0; d < depth; d++) path += '/' + (rnd() % 3 === 0 ? String(rnd()) : word());
    seen.get(service)!.add(n.name({ service, path: path + (rnd() % 2 === 0 ? `?q=${rnd()}` : '') }));
    if (i % 100 === 0) {
      const op = n.name({ service: ORDERS, path: `/items/${rnd()}` });
      itemsOps.add(op);
      seen.get(ORDERS)!.add(op);
      itemsCount++;
    }
  }
  for (const s of services) {
    assert.ok(seen.get(s)!.size <= 201, `${s}: ${seen.get(s)!.size} distinct names`);
    assert.ok(n.operationsOf(s).length <= 200, `${s}: ${n.operationsOf(s).length} operations`);
    assert.deepEqual([...seen.get(s)!].filter((o) => o !== OTHER_OPERATION).sort(), n.operationsOf(s).sort());
  }
  // /items/<id> was first seen early, before the budget ran out: one operation for all 1,000.
  assert.equal(itemsCount, 1000);
  assert.deepEqual([...itemsOps], ['/items/{id}']);
  const size = n.size();
  assert.equal(size.services, 2);
  assert.ok(size.operations <= 400);
  assert.ok(size.nodes <= 2 * 200 * 16 * 2, `nodes ${size.nodes}`);
});

test('a service at its budget names every new operation __other__ and keeps the ones it counted', () => {
  const n = new OperationNamer({ budget: 3 });
  assert.deepEqual(['/a', '/b', '/c', '/d', '/e'].map((path) => n.name({ service: 's', path })), ['/a', '/b', '/c', OTHER_OPERATION, OTHER_OPERATION]);
  assert.equal(n.name({ service: 's', path: '/b' }), '/b');
  // a route name is the config's own: not refused for the learned ones (declared ones have a budget of their own)
  assert.equal(n.name({ service: 's', path: '/x', routeName: 'named' }), 'named');
  assert.deepEqual(['r1', 'r2', 'r3'].map((routeName) => n.name({ service: 's', path: '/x', routeName })), ['r1', 'r2', OTHER_OPERATION]);
  assert.deepEqual(n.operationsOf('s'), ['named', 'r1', 'r2', '/a', '/b', '/c']);
});

test('the number of services is bounded; past it every request is __other__', () => {
  const n = new OperationNamer({ maxServices: 2 });
  assert.equal(n.name({ service: 'a', path: '/x' }), '/x');
  assert.equal(n.name({ service: 'b', path: '/x' }), '/x');
  assert.equal(n.name({ service: 'c', path: '/x' }), OTHER_OPERATION);
  assert.equal(n.size().services, 2);
});

test('paths deeper than the depth cap fold their tail into {**}; long segments are {*}', () => {
  const n = new OperationNamer({ maxDepth: 3 });
  assert.equal(n.name({ service: 'a', path: '/a/b/c/d/e' }), '/a/b/c/{**}');
  assert.equal(n.name({ service: 'a', path: '/a/b/c' }), '/a/b/c');
  assert.equal(n.name({ service: 'a', path: '/' + 'x'.repeat(80) }), '/{*}');
});

test('a declared template first seen after learned paths spent the budget is still its own operation', () => {
  const namer = new OperationNamer({ budget: 3, templates: [{ template: '/orders/{id}' }] });
  for (const p of ['/a', '/b', '/c', '/d']) namer.name({ service: 'shop', path: p });
  assert.equal(namer.name({ service: 'shop', path: '/e' }), '__other__');
  assert.equal(namer.name({ service: 'shop', path: '/orders/42' }), '/orders/{id}');
  assert.equal(namer.name({ service: 'shop', path: '/x', routeName: 'checkout' }), 'checkout');
  assert.deepEqual(namer.operationsOf('shop'), ['/orders/{id}', 'checkout', '/a', '/b', '/c']);
});
