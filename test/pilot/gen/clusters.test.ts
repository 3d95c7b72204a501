// DestinationRule traffic policy as Envoy clusters: load balancer, consistent hash, connection
// pool, outlier detection, locality, port-level settings and subset override; cluster types by
// resolution; inbound, passthrough and blackhole clusters.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CLUSTER_TYPE, ENDPOINT_TYPE, ROUTE_TYPE } from '../../../src/envoy/index.ts';
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
  ports: [{number: 9080, name: http, protocol: HTTP}, {number: 9443, name: grpc, protocol: GRPC}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: default}
spec: {address: 10.0.0.30, labels: {app: reviews, version: v1}, locality: us-east1/us-east1-b/rack1, weight: 3}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v2, namespace: default}
spec: {address: 10.0.0.31, labels: {app: reviews, version: v2}, locality: us-west1/us-west1-a, ports: {http: 19080}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: default}
spec:
  hosts: [api.example.com]
  resolution: DNS
  ports: [{number: 443, name: tls, protocol: TLS}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: any-ip, namespace: default}
spec:
  hosts: [db.example.com]
  resolution: NONE
  ports: [{number: 5432, name: tcp, protocol: TCP}]
`;

const RULE = `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 250ms}
      http: {http1MaxPendingRequests: 10, http2MaxRequests: 1000, maxRequestsPerConnection: 5, maxRetries: 3, idleTimeout: 30s}
    outlierDetection: {consecutive5xxErrors: 7, interval: 5m, baseEjectionTime: 15m, maxEjectionPercent: 50}
    portLevelSettings:
    - port: {number: 9443}
      loadBalancer:
        consistentHash: {httpHeaderName: x-user, ringHash: {minimumRingSize: 2048}}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {simple: RANDOM}
      outlierDetection: {consecutiveGatewayErrors: 2}
`;

function clusters(extra = ''): Map<string, ProtoJson> {
  const push = generators.buildPushContext(resources(REGISTRY + (extra ? `---\n${extra}` : '')));
  return generate(push, sidecar('10.0.0.10', 'productpage-v1', 'default', { app: 'productpage' }), CLUSTER_TYPE);
}

test('a STATIC service gets an EDS cluster per port with Istio defaults', () => {
  const c = clusters().get('outbound|9080||reviews.default.svc.cluster.local');
  assert.deepEqual(c, {
    name: 'outbound|9080||reviews.default.svc.cluster.local',
    connectTimeout: '10s',
    type: 'EDS',
    edsClusterConfig: { edsConfig: { ads: {}, initialFetchTimeout: '0s', resourceApiVersion: 'V3' }, serviceName: 'outbound|9080||reviews.default.svc.cluster.local' },
    lbPolicy: 'LEAST_REQUEST',
    circuitBreakers: { thresholds: [{ maxConnections: 4294967295, maxPendingRequests: 4294967295, maxRequests: 4294967295, maxRetries: 4294967295, trackRemaining: true }] },
    metadata: { filterMetadata: { istio: { services: [{ host: 'reviews.default.svc.cluster.local', name: 'reviews', namespace: 'default' }], default_original_port: 9080 } } },
  });
  const grpcPort = clusters().get('outbound|9443||reviews.default.svc.cluster.local');
  assert.deepEqual((grpcPort?.['typedExtensionProtocolOptions'] as ProtoJson)['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'], {
    '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
    explicitHttpConfig: { http2ProtocolOptions: {} },
  });
});

test('DNS resolution gives STRICT_DNS with the host as endpoint; NONE gives ORIGINAL_DST', () => {
  const all = clusters();
  assert.deepEqual(all.get('outbound|443||api.example.com'), {
    name: 'outbound|443||api.example.com',
    connectTimeout: '10s',
    type: 'STRICT_DNS',
    dnsLookupFamily: 'V4_ONLY',
    loadAssignment: {
      clusterName: 'outbound|443||api.example.com',
      endpoints: [{ locality: {}, lbEndpoints: [{ endpoint: { address: { socketAddress: { address: 'api.example.com', portValue: 443 } } }, loadBalancingWeight: 1 }], loadBalancingWeight: 1 }],
    },
    lbPolicy: 'LEAST_REQUEST',
    circuitBreakers: { thresholds: [{ maxConnections: 4294967295, maxPendingRequests: 4294967295, maxRequests: 4294967295, maxRetries: 4294967295, trackRemaining: true }] },
    metadata: { filterMetadata: { istio: { services: [{ host: 'api.example.com', name: 'api.example.com', namespace: 'default' }], default_original_port: 443 } } },
  });
  const none = all.get('outbound|5432||db.example.com');
  assert.equal(none?.['type'], 'ORIGINAL_DST');
  assert.equal(none?.['lbPolicy'], 'CLUSTER_PROVIDED');
  assert.deepEqual(all.get('PassthroughCluster')?.['type'], 'ORIGINAL_DST');
  assert.deepEqual(all.get('BlackHoleCluster'), { name: 'BlackHoleCluster', type: 'STATIC', connectTimeout: '10s' });
});

test('traffic policy becomes lbPolicy, circuit breakers, timeouts, HTTP options and outlier detection', () => {
  const c = clusters(RULE).get('outbound|9080|v1|reviews.default.svc.cluster.local');
  assert.equal(c?.['lbPolicy'], 'ROUND_ROBIN');
  assert.equal(c?.['connectTimeout'], '0.25s');
  assert.deepEqual(c?.['circuitBreakers'], { thresholds: [{ maxConnections: 100, maxPendingRequests: 10, maxRequests: 1000, maxRetries: 3, trackRemaining: true }] });
  assert.deepEqual((c?.['typedExtensionProtocolOptions'] as ProtoJson)['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'], {
    '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
    commonHttpProtocolOptions: { idleTimeout: '30s', maxRequestsPerConnection: 5 },
    explicitHttpConfig: { httpProtocolOptions: {} },
  });
  assert.deepEqual(c?.['outlierDetection'], { consecutive5xx: 7, enforcingConsecutive5xx: 100, interval: '300s', baseEjectionTime: '900s', maxEjectionPercent: 50, enforcingSuccessRate: 0 });
  assert.deepEqual((c?.['metadata'] as { filterMetadata: { istio: ProtoJson } }).filterMetadata.istio['subset'], 'v1');
});

test('a subset policy replaces the parent fields it sets and inherits the rest', () => {
  const c = clusters(RULE).get('outbound|9080|v2|reviews.default.svc.cluster.local');
  assert.equal(c?.['lbPolicy'], 'RANDOM');
  assert.deepEqual(c?.['outlierDetection'], { enforcingConsecutive5xx: 0, consecutiveGatewayFailure: 2, enforcingConsecutiveGatewayFailure: 100, enforcingSuccessRate: 0 });
  // connection pool inherited from the top-level policy
  assert.deepEqual(c?.['circuitBreakers'], { thresholds: [{ maxConnections: 100, maxPendingRequests: 10, maxRequests: 1000, maxRetries: 3, trackRemaining: true }] });
});

test('port-level consistent hash gives RING_HASH on that port and the hash key on its routes', () => {
  const c = clusters(RULE).get('outbound|9443||reviews.default.svc.cluster.local');
  assert.equal(c?.['lbPolicy'], 'RING_HASH');
  assert.deepEqual(c?.['ringHashLbConfig'], { minimumRingSize: 2048 });
  assert.equal(clusters(RULE).get('outbound|9080||reviews.default.svc.cluster.local')?.['lbPolicy'], 'ROUND_ROBIN');
  const push = generators.buildPushContext(resources(`${REGISTRY}---\n${RULE}`));
  const rds = generate(push, sidecar('10.0.0.10', 'productpage-v1', 'default', {}), ROUTE_TYPE).get('9443');
  const vh = (rds?.['virtualHosts'] as { name: string; routes: { route: ProtoJson }[] }[]).find((v) => v.name === 'reviews.default.svc.cluster.local:9443');
  assert.deepEqual(vh?.routes[0]?.route['hashPolicy'], [{ header: { headerName: 'x-user' } }]);
});

test('cookie and source-IP hashing', () => {
  for (const [ch, expected] of [
    ['{httpCookie: {name: session, ttl: 0s, path: /}}', [{ cookie: { name: 'session', path: '/', ttl: '0s' } }]],
    ['{useSourceIp: true}', [{ connectionProperties: { sourceIp: true } }]],
  ] as const) {
    const rule = `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r, namespace: default}\nspec:\n  host: reviews.default.svc.cluster.local\n  trafficPolicy: {loadBalancer: {consistentHash: ${ch}}}\n`;
    const push = generators.buildPushContext(resources(`${REGISTRY}---\n${rule}`));
    const proxy = sidecar('10.0.0.10', 'pp', 'default', {});
    assert.equal(generate(push, proxy, CLUSTER_TYPE).get('outbound|9080||reviews.default.svc.cluster.local')?.['lbPolicy'], 'RING_HASH');
    const vh = (generate(push, proxy, ROUTE_TYPE).get('9080')?.['virtualHosts'] as { name: string; routes: { route: ProtoJson }[] }[]).find((v) => v.name.startsWith('reviews'));
    assert.deepEqual(vh?.routes[0]?.route['hashPolicy'], expected);
  }
});

test('subset clusters get only the endpoints with the subset labels, with locality and weight', () => {
  const push = generators.buildPushContext(resources(`${REGISTRY}---\n${RULE}`));
  const proxy = sidecar('10.0.0.10', 'pp', 'default', {});
  const eds = generate(push, proxy, ENDPOINT_TYPE, new Set(['outbound|9080|v2|reviews.default.svc.cluster.local', 'outbound|9080||reviews.default.svc.cluster.local']));
  assert.deepEqual(eds.get('outbound|9080|v2|reviews.default.svc.cluster.local'), {
    clusterName: 'outbound|9080|v2|reviews.default.svc.cluster.local',
    endpoints: [{
      locality: { region: 'us-west1', zone: 'us-west1-a' },
      lbEndpoints: [{
        endpoint: { address: { socketAddress: { address: '10.0.0.31', portValue: 19080 } } },
        healthStatus: 'HEALTHY',
        loadBalancingWeight: 1,
        metadata: { filterMetadata: { istio: { workload: 'reviews-v2;default', labels: { app: 'reviews', version: 'v2' } } } },
      }],
      loadBalancingWeight: 1,
    }],
  });
  const all = eds.get('outbound|9080||reviews.default.svc.cluster.local')?.['endpoints'] as ProtoJson[];
  assert.deepEqual(all.map((g) => [g['locality'], g['loadBalancingWeight']]), [
    [{ region: 'us-east1', zone: 'us-east1-b', subZone: 'rack1' }, 3],
    [{ region: 'us-west1', zone: 'us-west1-a' }, 1],
  ]);
});

test('locality failover orders endpoints by priority relative to the proxy locality', () => {
  const rule = `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r, namespace: default}\nspec:\n  host: reviews.default.svc.cluster.local\n  trafficPolicy:\n    outlierDetection: {consecutive5xxErrors: 1}\n    loadBalancer: {localityLbSetting: {enabled: true}}\n`;
  const push = generators.buildPushContext(resources(`${REGISTRY}---\n${rule}`));
  const west = generators.proxyFromNode({ id: 'sidecar~10.0.0.10~pp.default~default.svc.cluster.local', locality: { region: 'us-west1', zone: 'us-west1-a' }, metadata: { NAMESPACE: 'default' } });
  const eds = generate(push, west, ENDPOINT_TYPE, new Set(['outbound|9080||reviews.default.svc.cluster.local']));
  const groups = eds.get('outbound|9080||reviews.default.svc.cluster.local')?.['endpoints'] as ProtoJson[];
  assert.deepEqual(groups.map((g) => [(g['locality'] as ProtoJson)['region'], g['priority'] ?? 0]), [['us-east1', 1], ['us-west1', 0]]);
});

test('locality distribute weights localities as the rule says', () => {
  const rule = `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r, namespace: default}\nspec:\n  host: reviews.default.svc.cluster.local\n  trafficPolicy:\n    loadBalancer:\n      localityLbSetting:\n        distribute:\n        - from: us-west1/*\n          to: {"us-west1/*": 80, "us-east1/*": 20}\n`;
  const push = generators.buildPushContext(resources(`${REGISTRY}---\n${rule}`));
  const west = generators.proxyFromNode({ id: 'sidecar~10.0.0.10~pp.default~default.svc.cluster.local', locality: { region: 'us-west1', zone: 'us-west1-a' }, metadata: { NAMESPACE: 'default' } });
  assert.deepEqual(generate(push, west, CLUSTER_TYPE).get('outbound|9080||reviews.default.svc.cluster.local')?.['commonLbConfig'], { localityWeightedLbConfig: {} });
  const groups = generate(push, west, ENDPOINT_TYPE, new Set(['outbound|9080||reviews.default.svc.cluster.local'])).get('outbound|9080||reviews.default.svc.cluster.local')?.['endpoints'] as ProtoJson[];
  assert.deepEqual(groups.map((g) => [(g['locality'] as ProtoJson)['region'], g['loadBalancingWeight']]), [['us-east1', 20], ['us-west1', 80]]);
});

test('inbound clusters follow the workload ports (original destination when captured)', () => {
  const push = generators.buildPushContext(resources(REGISTRY));
  const me = sidecar('10.0.0.31', 'reviews-v2', 'default', { app: 'reviews', version: 'v2' });
  const inbound = generate(push, me, CLUSTER_TYPE).get('inbound|19080||');
  assert.equal(inbound?.['type'], 'ORIGINAL_DST');
  assert.deepEqual(inbound?.['upstreamBindConfig'], { sourceAddress: { address: '127.0.0.6', portValue: 0 } });
  assert.ok(generate(push, me, CLUSTER_TYPE).has('inbound|9443||'));
});

test('locality failover sends traffic to the failover region before any other', () => {
  const registry = `${REGISTRY}---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v3, namespace: default}
spec: {address: 10.0.0.32, labels: {app: reviews, version: v3}, locality: eu-west1/eu-west1-a}
`;
  const rule = `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r, namespace: default}\nspec:\n  host: reviews.default.svc.cluster.local\n  trafficPolicy:\n    outlierDetection: {consecutive5xxErrors: 1}\n    loadBalancer: {localityLbSetting: {enabled: true, failover: [{from: us-west1, to: eu-west1}]}}\n`;
  const push = generators.buildPushContext(resources(`${registry}---\n${rule}`));
  const west = generators.proxyFromNode({ id: 'sidecar~10.0.0.10~pp.default~default.svc.cluster.local', locality: { region: 'us-west1', zone: 'us-west1-a' }, metadata: { NAMESPACE: 'default' } });
  const groups = generate(push, west, ENDPOINT_TYPE, new Set(['outbound|9080||reviews.default.svc.cluster.local'])).get('outbound|9080||reviews.default.svc.cluster.local')?.['endpoints'] as ProtoJson[];
  assert.deepEqual(groups.map((g) => [(g['locality'] as ProtoJson)['region'], g['priority'] ?? 0]), [['eu-west1', 1], ['us-east1', 2], ['us-west1', 0]]);
});

test('failoverPriority orders endpoints by how many of the listed labels match the proxy', () => {
  const rule = `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r, namespace: default}\nspec:\n  host: reviews.default.svc.cluster.local\n  trafficPolicy:\n    outlierDetection: {consecutive5xxErrors: 1}\n    loadBalancer: {localityLbSetting: {enabled: true, failoverPriority: [version, topology.kubernetes.io/region]}}\n`;
  const push = generators.buildPushContext(resources(`${REGISTRY}---\n${rule}`));
  const v2Proxy = generators.proxyFromNode({ id: 'sidecar~10.0.0.10~pp.default~default.svc.cluster.local', locality: { region: 'us-west1' }, metadata: { NAMESPACE: 'default', LABELS: { version: 'v2' } } });
  const groups = generate(push, v2Proxy, ENDPOINT_TYPE, new Set(['outbound|9080||reviews.default.svc.cluster.local'])).get('outbound|9080||reviews.default.svc.cluster.local')?.['endpoints'] as ProtoJson[];
  // reviews-v2 (us-west1, version v2) matches both labels; reviews-v1 matches none.
  assert.deepEqual(groups.map((g) => [((g['lbEndpoints'] as ProtoJson[])[0]?.['endpoint'] as { address: { socketAddress: { address: string } } }).address.socketAddress.address, g['priority'] ?? 0]), [['10.0.0.30', 1], ['10.0.0.31', 0]]);
});

test('tls SIMPLE and MUTUAL originate TLS with SNI, CA, SANs and client certificates', () => {
  const rule = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ext, namespace: default}
spec:
  host: api.example.com
  trafficPolicy:
    tls: {mode: SIMPLE, caCertificates: /etc/certs/ca.pem, subjectAltNames: [api.example.com]}
    portLevelSettings:
    - port: {number: 443}
      tls: {mode: MUTUAL, clientCertificate: /etc/certs/cert.pem, privateKey: /etc/certs/key.pem, sni: internal.example.com}
`;
  const c = clusters(rule).get('outbound|443||api.example.com');
  assert.deepEqual(c?.['transportSocket'], {
    name: 'envoy.transport_sockets.tls',
    typedConfig: {
      '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
      sni: 'internal.example.com',
      commonTlsContext: { tlsCertificates: [{ certificateChain: { filename: '/etc/certs/cert.pem' }, privateKey: { filename: '/etc/certs/key.pem' } }] },
    },
  });
  const simple = `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ext, namespace: default}\nspec:\n  host: api.example.com\n  trafficPolicy:\n    tls: {mode: SIMPLE, caCertificates: /etc/certs/ca.pem, subjectAltNames: [api.example.com]}\n`;
  assert.deepEqual((clusters(simple).get('outbound|443||api.example.com')?.['transportSocket'] as ProtoJson)['typedConfig'], {
    '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
    sni: 'api.example.com',
    commonTlsContext: { validationContext: { trustedCa: { filename: '/etc/certs/ca.pem' }, matchTypedSubjectAltNames: [{ sanType: 'DNS', matcher: { exact: 'api.example.com' } }] } },
  });
});

test('keepalive, HTTP/2 upgrade, client protocol, warm-up, panic threshold and maglev', () => {
  const rule = (policy: string) => `apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r, namespace: default}\nspec:\n  host: reviews.default.svc.cluster.local\n  trafficPolicy: ${policy}\n`;
  const c1 = clusters(rule('{connectionPool: {tcp: {tcpKeepalive: {probes: 3, time: 2h, interval: 75s}}, http: {h2UpgradePolicy: UPGRADE, maxConcurrentStreams: 50}}, loadBalancer: {simple: LEAST_REQUEST, warmupDurationSecs: 30s}, outlierDetection: {minHealthPercent: 40}}'))
    .get('outbound|9080||reviews.default.svc.cluster.local');
  assert.deepEqual(c1?.['upstreamConnectionOptions'], { tcpKeepalive: { keepaliveProbes: 3, keepaliveTime: 7200, keepaliveInterval: 75 } });
  assert.deepEqual((c1?.['typedExtensionProtocolOptions'] as ProtoJson)['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'], {
    '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
    explicitHttpConfig: { http2ProtocolOptions: { maxConcurrentStreams: 50 } },
  });
  assert.deepEqual(c1?.['leastRequestLbConfig'], { slowStartConfig: { slowStartWindow: '30s' } });
  assert.deepEqual(c1?.['commonLbConfig'], { healthyPanicThreshold: { value: 40 } });
  assert.equal(c1?.['lbPolicy'], 'LEAST_REQUEST');
  const c2 = clusters(rule('{connectionPool: {http: {useClientProtocol: true}}, loadBalancer: {consistentHash: {httpHeaderName: x, maglev: {tableSize: 65537}}}}'))
    .get('outbound|9080||reviews.default.svc.cluster.local');
  assert.equal(c2?.['lbPolicy'], 'MAGLEV');
  assert.deepEqual(c2?.['maglevLbConfig'], { tableSize: 65537 });
  assert.deepEqual(((c2?.['typedExtensionProtocolOptions'] as ProtoJson)['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'] as ProtoJson)['useDownstreamProtocolConfig'], { httpProtocolOptions: {}, http2ProtocolOptions: {} });
  const c3 = clusters(rule('{loadBalancer: {simple: PASSTHROUGH}}')).get('outbound|9080||reviews.default.svc.cluster.local');
  assert.equal(c3?.['type'], 'ORIGINAL_DST');
  assert.equal(c3?.['lbPolicy'], 'CLUSTER_PROVIDED');
  assert.equal(c3?.['edsClusterConfig'], undefined);
});
