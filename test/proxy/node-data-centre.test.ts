// The node a sidecar sends for its data centre (SEXTANT_DC / --data-centre) and lane
// (SEXTANT_LANE / --lane): the locality and metadata the pilot prefers endpoints by, and the
// lane label the pilot names its own lane by.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildNode } from '../../src/proxy/index.ts';
import { generators } from '../../src/pilot/gen/index.ts';

const ID = 'sidecar~127.0.0.1~a-1.default~default.svc.cluster.local';

test('a data centre is the node\'s locality and metadata SEXTANT_DC; the pilot reads both', () => {
  const node = buildNode({ xds: '127.0.0.1:1', id: ID, labels: { app: 'a' }, dataCentre: 'sh/dc-a', lane: 's2' });
  assert.deepEqual(node['locality'], { region: 'sh', zone: 'dc-a', subZone: '' });
  const meta = node['metadata'] as Record<string, unknown>;
  assert.equal(meta['SEXTANT_DC'], 'sh/dc-a');
  assert.deepEqual(meta['LABELS'], { app: 'a', 'sextant.io/lane': 's2' });
  const proxy = generators.proxyFromNode(node);
  assert.deepEqual(proxy.locality, { region: 'sh', zone: 'dc-a', subZone: '' });
  assert.equal(proxy.labels['sextant.io/lane'], 's2');
});

test('a lane label given explicitly wins over --lane; no data centre, no locality', () => {
  const node = buildNode({ xds: '127.0.0.1:1', id: ID, labels: { 'sextant.io/lane': 's3' }, lane: 's2' });
  assert.equal(node['locality'], undefined);
  assert.equal((node['metadata'] as Record<string, unknown>)['SEXTANT_DC'], undefined);
  assert.deepEqual((node['metadata'] as Record<string, unknown>)['LABELS'], { 'sextant.io/lane': 's3' });
});
