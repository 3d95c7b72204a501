// The xDS node a sidecar announces: its cluster and network (M3) are node metadata
// CLUSTER_ID and NETWORK, as istio-agent sends them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildNode } from '../../src/proxy/index.ts';

const id = 'sidecar~10.1.0.7~web-1.shop~shop.svc.cluster.local';

test('--cluster-id and --network become node metadata CLUSTER_ID and NETWORK', () => {
  const meta = buildNode({ xds: '127.0.0.1:15010', id, clusterId: 'cluster-a', network: 'net-east' })['metadata'] as Record<string, unknown>;
  assert.equal(meta['CLUSTER_ID'], 'cluster-a');
  assert.equal(meta['NETWORK'], 'net-east');
});

test('without them: istio-agent\'s default cluster, no network', () => {
  const meta = buildNode({ xds: '127.0.0.1:15010', id })['metadata'] as Record<string, unknown>;
  assert.equal(meta['CLUSTER_ID'], 'Kubernetes');
  assert.equal('NETWORK' in meta, false);
});
