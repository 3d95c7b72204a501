// The pilot's single-pass encoder writes exactly the bytes of the general codec (so content
// hashes agree), for resources as the real generators build them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, HCM_TYPE, encodeMessage } from '../../../src/envoy/index.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';
import { generators } from '../../../src/pilot/gen/index.ts';
import { fastEncode, fastEncodeField, FastEncodeUnsupported } from '../../../src/pilot/xds/encode.ts';
import { anyMessage, lengthDelimited } from '../../../src/pilot/xds/wire.ts';
import type { Resource } from '../../../src/api/resource.ts';

function same(typeUrl: string, json: ProtoJson): void {
  const bytes = Buffer.from(encodeMessage(typeUrl, json));
  assert.deepEqual(Buffer.from(fastEncode(typeUrl, json)), bytes);
  // The response field written in one pass: the resource as an Any in field 2, and its bytes.
  const { field, message } = fastEncodeField(typeUrl, json);
  assert.deepEqual(Buffer.from(message), bytes);
  assert.deepEqual(Buffer.from(field), lengthDelimited(2, anyMessage(typeUrl, bytes)));
}

test('generated clusters, assignments, listeners and routes encode to the codec\'s bytes', () => {
  const resources: Resource[] = [
    { apiVersion: 'networking.istio.io/v1', kind: 'ServiceEntry', metadata: { name: 'reviews', namespace: 'default' },
      spec: { hosts: ['reviews.default.svc.cluster.local'], location: 'MESH_INTERNAL', resolution: 'STATIC', ports: [{ number: 9080, name: 'http', protocol: 'HTTP' }, { number: 9443, name: 'tcp', protocol: 'TCP' }], workloadSelector: { labels: { app: 'reviews' } } } },
    { apiVersion: 'networking.istio.io/v1', kind: 'WorkloadEntry', metadata: { name: 'reviews-v1', namespace: 'default' }, spec: { address: '10.0.0.1', labels: { app: 'reviews', version: 'v1' }, locality: 'us-east/zone-a', weight: 3 } },
    { apiVersion: 'networking.istio.io/v1', kind: 'WorkloadEntry', metadata: { name: 'reviews-v2', namespace: 'default' }, spec: { address: '10.0.0.2', labels: { app: 'reviews', version: 'v2' } } },
    { apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: 'reviews', namespace: 'default' },
      spec: { host: 'reviews.default.svc.cluster.local', trafficPolicy: { loadBalancer: { consistentHash: { httpHeaderName: 'x-user' } }, connectionPool: { tcp: { maxConnections: 10, connectTimeout: '0.5s' }, http: { http1MaxPendingRequests: 5 } }, outlierDetection: { consecutive5xxErrors: 3, interval: '10s', baseEjectionTime: '30s' } },
        subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' }, trafficPolicy: { loadBalancer: { simple: 'ROUND_ROBIN' } } }] } },
    { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'reviews', namespace: 'default' },
      spec: { hosts: ['reviews'], http: [
        { match: [{ headers: { 'end-user': { exact: 'jason' } }, uri: { prefix: '/api' } }], route: [{ destination: { host: 'reviews', subset: 'v2' } }], timeout: '2s', retries: { attempts: 3, perTryTimeout: '1s', retryOn: '5xx' }, fault: { delay: { percentage: { value: 10 }, fixedDelay: '1s' } } },
        { route: [{ destination: { host: 'reviews', subset: 'v1' }, weight: 90 }, { destination: { host: 'reviews', subset: 'v2' }, weight: 10 }], headers: { request: { set: { 'x-a': 'b' } } }, corsPolicy: { allowOrigins: [{ exact: 'https://a.example' }], allowMethods: ['GET'] } },
      ] } },
  ];
  const push = generators.buildPushContext(resources);
  let count = 0;
  for (const meta of [{ GENERATOR: 'envoy' }, { GENERATOR: 'grpc' }]) {
    const proxy = generators.proxyFromNode({ id: 'sidecar~10.0.0.9~productpage-1.default~default.svc.cluster.local', metadata: { NAMESPACE: 'default', LABELS: { app: 'productpage' }, ...meta } });
    const clusters = generators.generate(push, proxy, CLUSTER_TYPE);
    const sets: [string, Map<string, ProtoJson>][] = [
      [CLUSTER_TYPE, clusters],
      [ENDPOINT_TYPE, generators.generate(push, proxy, ENDPOINT_TYPE, new Set(clusters.keys()))],
      [LISTENER_TYPE, generators.generate(push, proxy, LISTENER_TYPE)],
      [ROUTE_TYPE, generators.generate(push, proxy, ROUTE_TYPE)],
    ];
    for (const [typeUrl, generated] of sets) {
      for (const r of generated.values()) {
        same(typeUrl, r);
        count++;
      }
    }
  }
  assert.ok(count > 20, `only ${count} resources generated`);
});

test('well-known types: durations, wrappers, Struct metadata, Any, snake_case keys', () => {
  same(CLUSTER_TYPE, {
    name: 'c', connect_timeout: '1.250s', type: 'STATIC', perConnectionBufferLimitBytes: 32768,
    metadata: { filterMetadata: { istio: { a: [1, 'x', true, null, { b: 2.5 }], n: -3 } } },
    commonLbConfig: { healthyPanicThreshold: { value: 40 } },
  });
  same(LISTENER_TYPE, { name: 'l', filterChains: [{ filters: [{ name: 'hcm', typedConfig: { '@type': HCM_TYPE, statPrefix: 's', rds: { routeConfigName: '80', configSource: { ads: {} } } } }] }] });
  assert.throws(() => fastEncode(CLUSTER_TYPE, { nmae: 'typo' }), FastEncodeUnsupported);
});
