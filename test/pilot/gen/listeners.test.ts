// Sidecar listeners: captured mode (virtualOutbound/virtualInbound, outbound per port) and
// captureMode NONE (ingress bound to the proxy IP with defaultEndpoint, egress bound to its
// bind address for the listed hosts), TCP services through tcp_proxy, REGISTRY_ONLY.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE } from '../../../src/envoy/index.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';
import { generators } from '../../../src/pilot/gen/index.ts';
import { generate, resources, sidecar } from './helpers.ts';

const REGISTRY = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: mysql, namespace: default}
spec:
  hosts: [mysql.default.svc.cluster.local]
  addresses: [10.96.0.9]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 3306, name: tcp-mysql, protocol: TCP}]
  endpoints: [{address: 10.0.0.50}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: other}
spec:
  hosts: [ratings.other.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 10.0.1.40}]
`;

const NONE_SIDECAR = `
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: productpage, namespace: default}
spec:
  workloadSelector: {labels: {app: productpage}}
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:8080
    captureMode: NONE
  egress:
  - port: {number: 9080, protocol: HTTP, name: http}
    bind: 127.0.1.5
    captureMode: NONE
    hosts: [./reviews.default.svc.cluster.local]
  - port: {number: 3306, protocol: TCP, name: tcp}
    bind: 127.0.1.5
    captureMode: NONE
    hosts: [./mysql.default.svc.cluster.local]
`;

function names(m: Map<string, ProtoJson>): string[] {
  return [...m.keys()];
}

test('a captured sidecar gets virtualOutbound, virtualInbound and one outbound listener per port', () => {
  const push = generators.buildPushContext(resources(REGISTRY));
  const lds = generate(push, sidecar('10.0.0.10', 'pp', 'default', { app: 'productpage' }), LISTENER_TYPE);
  assert.deepEqual(names(lds), ['0.0.0.0_9080', '10.96.0.9_3306', 'virtualOutbound', 'virtualInbound']);
  const vo = lds.get('virtualOutbound');
  assert.equal(vo?.['useOriginalDst'], true);
  assert.deepEqual((vo?.['address'] as ProtoJson)['socketAddress'], { address: '0.0.0.0', portValue: 15001 });
  const tcp = lds.get('10.96.0.9_3306');
  assert.equal(tcp?.['bindToPort'], false);
  const filter = ((tcp?.['filterChains'] as ProtoJson[])[0]?.['filters'] as ProtoJson[])[0];
  assert.deepEqual(filter?.['typedConfig'], {
    '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
    statPrefix: 'outbound|3306||mysql.default.svc.cluster.local',
    cluster: 'outbound|3306||mysql.default.svc.cluster.local',
  });
});

test('captureMode NONE: ingress bound to the proxy IP forwards to defaultEndpoint; egress bound to the bind address', () => {
  const push = generators.buildPushContext(resources(`${REGISTRY}---\n${NONE_SIDECAR}`));
  const proxy = sidecar('127.0.1.5', 'productpage-v1', 'default', { app: 'productpage' }, { INTERCEPTION_MODE: 'NONE' });
  // Ingress and egress on the same address and port: the inbound listener wins, as in Istio.
  const lds = generate(push, proxy, LISTENER_TYPE);
  assert.deepEqual(names(lds), ['127.0.1.5_3306', '127.0.1.5_9080']);
  assert.equal(lds.get('127.0.1.5_9080')?.['trafficDirection'], 'INBOUND');
  const other = generators.proxyFromNode({ id: 'sidecar~127.0.1.7~productpage-v2.default~default.svc.cluster.local', metadata: { NAMESPACE: 'default', LABELS: { app: 'productpage' }, INTERCEPTION_MODE: 'NONE' } });
  const lds2 = generate(push, other, LISTENER_TYPE);
  assert.deepEqual(names(lds2), ['127.0.1.5_9080', '127.0.1.5_3306', '127.0.1.7_9080']);
  const inbound = lds2.get('127.0.1.7_9080');
  assert.equal(inbound?.['trafficDirection'], 'INBOUND');
  assert.equal(inbound?.['bindToPort'], undefined);
  const egress = lds2.get('127.0.1.5_9080');
  const hcm = (((egress?.['filterChains'] as ProtoJson[])[0]?.['filters'] as ProtoJson[])[0]?.['typedConfig']) as ProtoJson;
  assert.deepEqual((hcm['rds'] as ProtoJson)['routeConfigName'], '127.0.1.5:9080');
  const cds = generate(push, other, CLUSTER_TYPE);
  assert.deepEqual(cds.get('inbound|9080||')?.['loadAssignment'], {
    clusterName: 'inbound|9080||',
    endpoints: [{ lbEndpoints: [{ endpoint: { address: { socketAddress: { address: '127.0.0.1', portValue: 8080 } } } }] }],
  });
  // Only the hosts the egress lists are reachable; no virtualOutbound without capture.
  assert.deepEqual(names(cds).filter((n) => n.startsWith('outbound')), ['outbound|9080||reviews.default.svc.cluster.local', 'outbound|3306||mysql.default.svc.cluster.local']);
  const rds = generate(push, other, ROUTE_TYPE);
  assert.deepEqual(names(rds), ['127.0.1.5:9080']);
  assert.deepEqual((rds.get('127.0.1.5:9080')?.['virtualHosts'] as ProtoJson[]).map((v) => v['name']), ['reviews.default.svc.cluster.local:9080', 'allow_any']);
});

test('interception mode NONE without a Sidecar binds outbound listeners to 127.0.0.1 and has no inbound', () => {
  const push = generators.buildPushContext(resources(REGISTRY));
  const lds = generate(push, sidecar('127.0.1.9', 'x', 'default', {}, { INTERCEPTION_MODE: 'NONE' }), LISTENER_TYPE);
  assert.deepEqual(names(lds), ['127.0.0.1_9080', '127.0.0.1_3306']);
  assert.equal(lds.get('127.0.0.1_9080')?.['bindToPort'], undefined);
});

test('REGISTRY_ONLY sends unknown destinations to BlackHoleCluster', () => {
  const sc = `apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: istio-system}\nspec:\n  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n  egress: [{hosts: ["./*"]}]\n`;
  const push = generators.buildPushContext(resources(`${REGISTRY}---\n${sc}`));
  const lds = generate(push, sidecar('10.0.0.10', 'pp', 'default', {}), LISTENER_TYPE);
  const chain = (lds.get('virtualOutbound')?.['filterChains'] as ProtoJson[])[0];
  assert.equal(((chain?.['filters'] as ProtoJson[])[0]?.['typedConfig'] as ProtoJson)['cluster'], 'BlackHoleCluster');
  // The root namespace default Sidecar's `./*` limits the default namespace to its own services.
  const cds = generate(push, sidecar('10.0.0.10', 'pp', 'default', {}), CLUSTER_TYPE);
  assert.equal(cds.has('outbound|9080||ratings.other.svc.cluster.local'), false);
  assert.equal(cds.has('outbound|9080||reviews.default.svc.cluster.local'), true);
});

test('tcp routes (port, sourceLabels) and tls routes (SNI) pick the tcp_proxy destinations', () => {
  const extra = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: mysql, namespace: default}
spec:
  host: mysql
  subsets: [{name: primary, labels: {role: primary}}, {name: replica, labels: {role: replica}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: mysql, namespace: default}
spec:
  hosts: [mysql]
  tcp:
  - match: [{port: 3306, sourceLabels: {app: writer}}]
    route: [{destination: {host: mysql, subset: primary}}]
  - route:
    - {destination: {host: mysql, subset: replica}, weight: 80}
    - {destination: {host: mysql, subset: primary}, weight: 20}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: default}
spec:
  hosts: [api.example.com]
  resolution: DNS
  ports: [{number: 443, name: tls, protocol: TLS}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ext, namespace: default}
spec:
  hosts: [api.example.com]
  tls:
  - match: [{sniHosts: [api.example.com], port: 443}]
    route: [{destination: {host: backup.example.com, port: {number: 443}}, weight: 100}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: backup, namespace: default}
spec:
  hosts: [backup.example.com]
  resolution: DNS
  ports: [{number: 443, name: tls, protocol: TLS}]
`;
  const push = generators.buildPushContext(resources(`${REGISTRY}---\n${extra}`));
  const tcpConfig = (proxyLabels: Record<string, string>) => {
    const lds = generate(push, sidecar('10.0.0.10', 'x', 'default', proxyLabels), LISTENER_TYPE);
    return (((lds.get('10.96.0.9_3306')?.['filterChains'] as ProtoJson[])[0]?.['filters'] as ProtoJson[])[0]?.['typedConfig']) as ProtoJson;
  };
  assert.equal(tcpConfig({ app: 'writer' })['cluster'], 'outbound|3306|primary|mysql.default.svc.cluster.local');
  assert.deepEqual(tcpConfig({ app: 'reader' })['weightedClusters'], { clusters: [
    { name: 'outbound|3306|replica|mysql.default.svc.cluster.local', weight: 80 },
    { name: 'outbound|3306|primary|mysql.default.svc.cluster.local', weight: 20 },
  ] });
  const lds = generate(push, sidecar('10.0.0.10', 'x', 'default', {}), LISTENER_TYPE);
  const tls = lds.get('0.0.0.0_443');
  assert.deepEqual(tls?.['listenerFilters'], [{ name: 'envoy.filters.listener.tls_inspector', typedConfig: { '@type': 'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector' } }]);
  const chains = (tls?.['filterChains'] as ProtoJson[]).map((c) => [c['filterChainMatch'], (((c['filters'] as ProtoJson[])[0]?.['typedConfig']) as ProtoJson)['cluster']]);
  assert.deepEqual(chains, [
    [{ serverNames: ['backup.example.com'] }, 'outbound|443||backup.example.com'],
    [{ serverNames: ['api.example.com'] }, 'outbound|443||backup.example.com'],
  ]);
});
