// Proxyless gRPC: what a node with GENERATOR grpc receives is accepted by @grpc/grpc-js-xds's
// own resource validators (API listener named host:port, RDS with weighted subsets and
// header matches, EDS clusters with ROUND_ROBIN, endpoints with localities).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, encodeMessage } from '../../../src/envoy/index.ts';
import type { ProtoJson, XdsTypeUrl } from '../../../src/envoy/index.ts';
import { generators } from '../../../src/pilot/gen/index.ts';
import { generate, resources, sidecar } from './helpers.ts';

const require = createRequire(import.meta.url);
interface Decoder { decode(ctx: unknown, any: { type_url: string; value: Buffer }): { name: string; value?: unknown; error?: string } }
type DecoderClass = { get(): Decoder };
// Registering the package installs its HTTP filters (router, fault), which validation consults.
(require('@grpc/grpc-js-xds') as { register(): void }).register();
const decoders: Partial<Record<XdsTypeUrl, Decoder>> = {
  [LISTENER_TYPE]: (require('@grpc/grpc-js-xds/build/src/xds-resource-type/listener-resource-type.js') as { ListenerResourceType: DecoderClass }).ListenerResourceType.get(),
  [ROUTE_TYPE]: (require('@grpc/grpc-js-xds/build/src/xds-resource-type/route-config-resource-type.js') as { RouteConfigurationResourceType: DecoderClass }).RouteConfigurationResourceType.get(),
  [CLUSTER_TYPE]: (require('@grpc/grpc-js-xds/build/src/xds-resource-type/cluster-resource-type.js') as { ClusterResourceType: DecoderClass }).ClusterResourceType.get(),
  [ENDPOINT_TYPE]: (require('@grpc/grpc-js-xds/build/src/xds-resource-type/endpoint-resource-type.js') as { EndpointResourceType: DecoderClass }).EndpointResourceType.get(),
};
const context = { server: { serverUri: '127.0.0.1:15010', channelCredentials: { type: 'insecure' }, serverFeatures: [] }, bootstrap: { certificateProviders: {}, node: {}, xdsServers: [] } };

function grpcAccepts(type: XdsTypeUrl, r: ProtoJson): unknown {
  const res = decoders[type]!.decode(context, { type_url: type, value: Buffer.from(encodeMessage(type, r)) });
  assert.equal(res.error, undefined, `${res.name}: ${res.error}`);
  return res.value;
}

const CONFIG = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: greeter, namespace: default}
spec:
  hosts: [greeter.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 50051, name: grpc, protocol: GRPC}]
  workloadSelector: {labels: {app: greeter}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: greeter-v1, namespace: default}
spec: {address: 127.0.1.21, labels: {app: greeter, version: v1}, ports: {grpc: 50061}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: greeter-v2, namespace: default}
spec: {address: 127.0.1.22, labels: {app: greeter, version: v2}, ports: {grpc: 50062}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: greeter, namespace: default}
spec:
  host: greeter
  trafficPolicy: {outlierDetection: {consecutive5xxErrors: 3, interval: 10s}}
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: greeter, namespace: default}
spec:
  hosts: [greeter]
  http:
  - match: [{headers: {x-version: {exact: v2}}}]
    route: [{destination: {host: greeter, subset: v2}}]
  - route:
    - {destination: {host: greeter, subset: v1}, weight: 90}
    - {destination: {host: greeter, subset: v2}, weight: 10}
    timeout: 5s
    retries: {attempts: 2, retryOn: unavailable}
`;

const client = sidecar('127.0.1.30', 'greeter-client', 'default', { app: 'client' }, { GENERATOR: 'grpc' });

test('a gRPC client gets an API listener named host:port and RDS of the same name', () => {
  const push = generators.buildPushContext(resources(CONFIG));
  const name = 'greeter.default.svc.cluster.local:50051';
  const lds = generate(push, client, LISTENER_TYPE, new Set([name, 'unknown.default.svc.cluster.local:1']));
  assert.deepEqual([...lds.keys()], [name]);
  const listener = grpcAccepts(LISTENER_TYPE, lds.get(name) as ProtoJson) as { api_listener: unknown };
  assert.ok(listener.api_listener);
  const rds = generate(push, client, ROUTE_TYPE, new Set([name]));
  grpcAccepts(ROUTE_TYPE, rds.get(name) as ProtoJson);
  const vh = (rds.get(name)?.['virtualHosts'] as ProtoJson[])[0];
  assert.deepEqual(vh?.['domains'], [name, 'greeter.default.svc.cluster.local']);
  const routes = vh?.['routes'] as ProtoJson[];
  assert.deepEqual(routes.map((r) => [r['match'], (r['route'] as ProtoJson)['cluster'] ?? (r['route'] as ProtoJson)['weightedClusters']]), [
    [{ prefix: '/', headers: [{ name: 'x-version', stringMatch: { exact: 'v2' } }] }, 'outbound|50051|v2|greeter.default.svc.cluster.local'],
    [{ prefix: '/' }, { clusters: [{ name: 'outbound|50051|v1|greeter.default.svc.cluster.local', weight: 90 }, { name: 'outbound|50051|v2|greeter.default.svc.cluster.local', weight: 10 }] }],
  ]);
  assert.deepEqual((routes[1]?.['route'] as ProtoJson)['maxStreamDuration'], { maxStreamDuration: '5s' });
  assert.deepEqual((routes[1]?.['route'] as ProtoJson)['retryPolicy'], { retryOn: 'unavailable', numRetries: 2 });
});

test('a gRPC client gets EDS clusters with ROUND_ROBIN and endpoints it accepts', () => {
  const push = generators.buildPushContext(resources(CONFIG));
  const cds = generate(push, client, CLUSTER_TYPE);
  assert.deepEqual([...cds.keys()], ['outbound|50051||greeter.default.svc.cluster.local', 'outbound|50051|v1|greeter.default.svc.cluster.local', 'outbound|50051|v2|greeter.default.svc.cluster.local']);
  for (const c of cds.values()) {
    assert.equal(c['lbPolicy'], 'ROUND_ROBIN');
    grpcAccepts(CLUSTER_TYPE, c);
  }
  const eds = generate(push, client, ENDPOINT_TYPE, new Set(cds.keys()));
  for (const e of eds.values()) grpcAccepts(ENDPOINT_TYPE, e);
  assert.deepEqual(eds.get('outbound|50051|v2|greeter.default.svc.cluster.local'), {
    clusterName: 'outbound|50051|v2|greeter.default.svc.cluster.local',
    endpoints: [{ locality: {}, lbEndpoints: [{ endpoint: { address: { socketAddress: { address: '127.0.1.22', portValue: 50062 } } }, healthStatus: 'HEALTHY', loadBalancingWeight: 1 }], loadBalancingWeight: 1 }],
  });
});

test('without names a gRPC client gets a listener per visible service port', () => {
  const push = generators.buildPushContext(resources(CONFIG));
  assert.deepEqual([...generate(push, client, LISTENER_TYPE).keys()], ['greeter.default.svc.cluster.local:50051']);
});

test('a DNS service reaches gRPC clients as a LOGICAL_DNS cluster with one endpoint; NONE services are left out', () => {
  const extra = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext, namespace: default}
spec:
  hosts: [api.example.com]
  resolution: DNS
  ports: [{number: 443, name: grpc, protocol: GRPC}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: any, namespace: default}
spec:
  hosts: [any.example.com]
  resolution: NONE
  ports: [{number: 80, name: grpc, protocol: GRPC}]
`;
  const push = generators.buildPushContext(resources(`${CONFIG}---\n${extra}`));
  const cds = generate(push, client, CLUSTER_TYPE);
  const dns = cds.get('outbound|443||api.example.com') as ProtoJson;
  assert.equal(dns['type'], 'LOGICAL_DNS');
  assert.deepEqual(dns['loadAssignment'], { clusterName: 'outbound|443||api.example.com', endpoints: [{ locality: {}, lbEndpoints: [{ endpoint: { address: { socketAddress: { address: 'api.example.com', portValue: 443 } } } }] }] });
  grpcAccepts(CLUSTER_TYPE, dns);
  assert.equal(cds.has('outbound|80||any.example.com'), false);
  assert.deepEqual([...generate(push, client, LISTENER_TYPE).keys()], ['api.example.com:443', 'greeter.default.svc.cluster.local:50051']);
});
