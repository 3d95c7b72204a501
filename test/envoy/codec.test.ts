// Envoy resources survive JSON form → protobuf → JSON form unchanged, and a misspelt
// field is an error rather than silently dropped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeMessage, decodeMessage, CLUSTER_TYPE, LISTENER_TYPE, HCM_TYPE } from '../../src/envoy/index.ts';

test('a cluster with durations, Struct metadata and typed options round-trips', () => {
  const cluster = {
    name: 'outbound|9080|v1|reviews.default.svc.cluster.local',
    type: 'EDS',
    connectTimeout: '0.25s',
    edsClusterConfig: { edsConfig: { ads: {}, resourceApiVersion: 'V3' }, serviceName: 'outbound|9080|v1|reviews.default.svc.cluster.local' },
    circuitBreakers: { thresholds: [{ maxConnections: 100, maxRetries: 3 }] },
    metadata: { filterMetadata: { istio: { services: [{ host: 'reviews.default.svc.cluster.local', name: 'reviews', namespace: 'default' }], default_original_port: 9080 } } },
    typedExtensionProtocolOptions: {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
        '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
        commonHttpProtocolOptions: { idleTimeout: '5s' },
        explicitHttpConfig: { httpProtocolOptions: {} },
      },
    },
  };
  const decoded = decodeMessage(CLUSTER_TYPE, encodeMessage(CLUSTER_TYPE, cluster));
  assert.deepEqual(decoded, cluster);
});

test('a listener with an HTTP connection manager inside an Any round-trips', () => {
  const listener = {
    name: '0.0.0.0_9080',
    address: { socketAddress: { address: '0.0.0.0', portValue: 9080 } },
    filterChains: [{
      filters: [{
        name: 'envoy.filters.network.http_connection_manager',
        typedConfig: { '@type': HCM_TYPE, statPrefix: 'outbound_0.0.0.0_9080', rds: { configSource: { ads: {}, resourceApiVersion: 'V3' }, routeConfigName: '9080' } },
      }],
    }],
  };
  assert.deepEqual(decodeMessage(LISTENER_TYPE, encodeMessage(LISTENER_TYPE, listener)), listener);
});

test('an unknown field is an error naming its path', () => {
  assert.throws(() => encodeMessage(CLUSTER_TYPE, { name: 'x', circuitBreakers: { thresholdz: [] } }), {
    message: 'Cluster.circuitBreakers.thresholdz: no such field in envoy.config.cluster.v3.CircuitBreakers',
  });
});

test("fields with a digit after an underscore use proto3 JSON's name, and accept the proto name", () => {
  const od = { name: 'c', outlierDetection: { consecutive5xx: 7, enforcingConsecutive5xx: 100 } };
  assert.deepEqual(decodeMessage(CLUSTER_TYPE, encodeMessage(CLUSTER_TYPE, od)), od);
  const snake = { name: 'c', outlier_detection: { consecutive_5xx: 7 } };
  assert.deepEqual(decodeMessage(CLUSTER_TYPE, encodeMessage(CLUSTER_TYPE, snake)), { name: 'c', outlierDetection: { consecutive5xx: 7 } });
});
