// Proxy identity from the xDS node istio-agent sends, and clear errors for bad nodes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { proxyFromNode } from '../../../src/pilot/push/proxy.ts';

test('a sidecar node id and metadata become a Proxy', () => {
  const p = proxyFromNode({
    id: 'sidecar~10.0.0.1~productpage-v1-abc.default~default.svc.cluster.local',
    locality: { region: 'us-east1', zone: 'us-east1-b' },
    metadata: {
      NAMESPACE: 'default', LABELS: { app: 'productpage', version: 'v1' }, CLUSTER_ID: 'east', INTERCEPTION_MODE: 'NONE',
      INSTANCE_IPS: '10.0.0.1,fd00::1', ISTIO_VERSION: '1.24.0',
    },
  });
  assert.deepEqual({ ...p, metadata: undefined }, {
    id: 'sidecar~10.0.0.1~productpage-v1-abc.default~default.svc.cluster.local',
    type: 'sidecar',
    ipAddresses: ['10.0.0.1', 'fd00::1'],
    podName: 'productpage-v1-abc',
    namespace: 'default',
    dnsDomain: 'default.svc.cluster.local',
    labels: { app: 'productpage', version: 'v1' },
    metadata: undefined,
    clusterId: 'east',
    interceptionMode: 'NONE',
    generator: 'envoy',
    locality: { region: 'us-east1', zone: 'us-east1-b', subZone: '' },
  });
});

test('defaults: namespace from the id, REDIRECT capture, Kubernetes cluster; GENERATOR grpc', () => {
  const p = proxyFromNode({ id: 'sidecar~127.0.1.9~greeter-client.apps~apps.svc.cluster.local', metadata: { GENERATOR: 'grpc' } });
  assert.equal(p.namespace, 'apps');
  assert.equal(p.interceptionMode, 'REDIRECT');
  assert.equal(p.clusterId, 'Kubernetes');
  assert.equal(p.generator, 'grpc');
  assert.deepEqual(p.labels, {});
  assert.equal(p.locality, undefined);
});

test('bad nodes are errors that say what is wrong', () => {
  assert.throws(() => proxyFromNode({}), { message: 'node.id: missing; expected sidecar~IP~NAME.NAMESPACE~NAMESPACE.svc.cluster.local' });
  assert.throws(() => proxyFromNode({ id: 'sidecar~10.0.0.1~x' }), { message: 'node.id "sidecar~10.0.0.1~x": expected 4 parts separated by "~" (sidecar~IP~NAME.NAMESPACE~NAMESPACE.svc.cluster.local), got 3' });
  assert.throws(() => proxyFromNode({ id: 'waypoint~10.0.0.1~x.default~default.svc.cluster.local' }), { message: 'node.id "waypoint~10.0.0.1~x.default~default.svc.cluster.local": proxy type "waypoint" is not sidecar or router' });
  assert.throws(() => proxyFromNode({ id: 'sidecar~10.0.0.1~x.default~default.svc.cluster.local', metadata: { INTERCEPTION_MODE: 'MAGIC' } }), { message: 'node.metadata.INTERCEPTION_MODE: "MAGIC" is not REDIRECT, TPROXY or NONE' });
  assert.throws(() => proxyFromNode({ id: 'sidecar~10.0.0.1~x.default~default.svc.cluster.local', metadata: { LABELS: 'app=x' } }), { message: 'node.metadata.LABELS: expected an object of strings' });
});
