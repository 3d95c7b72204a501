// Every valid config from Istio's own validation fixtures and samples, loaded together,
// generates resources that encode with Envoy's protos for sidecars in several namespaces,
// for interception NONE, and for gRPC clients: valid input never makes a generator throw.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { PUSH_ORDER } from '../../../src/envoy/index.ts';
import { generators } from '../../../src/pilot/gen/index.ts';
import { FIXTURES, ISTIO_COMPAT, generate, istioCompatFile, readResources, resources, sidecar } from './helpers.ts';

const validation = istioCompatFile('validation');
const bookinfo = istioCompatFile('bookinfo');
const skip = validation && bookinfo ? false : 'istio-compat validation fixtures not found at ../shared/istio-compat';

test('Istio\'s valid fixtures and samples generate encodable resources for every kind of proxy', { skip }, () => {
  const files = [
    ...readdirSync(path.join(ISTIO_COMPAT, 'validation')).filter((f) => f.endsWith('-valid.yaml')).map((f) => path.join(ISTIO_COMPAT, 'validation', f)),
    ...readdirSync(path.join(ISTIO_COMPAT, 'bookinfo')).filter((f) => f.endsWith('.yaml')).map((f) => path.join(ISTIO_COMPAT, 'bookinfo', f)),
    path.join(FIXTURES, 'bookinfo-registry.yaml'),
  ];
  const push = generators.buildPushContext(readResources(...files));
  assert.ok(push.stats.services > 4);
  const namespaces = [...new Set(push.resources.map((r) => r.metadata.namespace))];
  let generated = 0;
  for (const ns of namespaces) {
    const proxies = [
      sidecar('10.0.0.10', 'productpage-v1', ns, { app: 'productpage', version: 'v1' }),
      sidecar('127.0.1.9', 'app', ns, { app: 'reviews' }, { INTERCEPTION_MODE: 'NONE' }),
      sidecar('127.0.1.10', 'client', ns, { app: 'client' }, { GENERATOR: 'grpc' }),
    ];
    for (const proxy of proxies) {
      for (const type of PUSH_ORDER) generated += generate(push, proxy, type).size;
    }
  }
  assert.ok(generated > 100, `generated ${generated}`);
});

const EVERY_OPTION = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}, {number: 9090, name: grpc, protocol: GRPC}]
  endpoints: [{address: 10.0.0.1, labels: {version: v1}, locality: a/b/c, weight: 2}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    outlierDetection: {splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 4, consecutive5xxErrors: 0, consecutiveGatewayErrors: 3, interval: 1m, baseEjectionTime: 30s, maxEjectionPercent: 100, minHealthPercent: 10}
    loadBalancer: {consistentHash: {httpQueryParameterName: user, minimumRingSize: 100}}
    connectionPool: {tcp: {maxConnections: 1, connectTimeout: 1m30s}, http: {maxRetries: 1, idleTimeout: 1h}}
  subsets: [{name: v1, labels: {version: v1}, trafficPolicy: {loadBalancer: {simple: RANDOM, localityLbSetting: {distribute: [{from: "a/*", to: {"a/*": 100}}]}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /r}}]
    redirect: {uri: /x, port: 8080, scheme: https, redirectCode: 308}
  - match: [{uri: {prefix: /d}}]
    directResponse: {status: 503, body: {bytes: aGVsbG8=}}
  - match: [{uri: {exact: /f}}]
    fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 50}}, delay: {fixedDelay: 100ms}}
    route: [{destination: {host: reviews, port: {number: 9090}}}]
  - route: [{destination: {host: reviews, subset: v1}, weight: 100}]
    mirrors: [{destination: {host: reviews}, percentage: {value: 5}}]
    retries: {attempts: 5, retryOn: "5xx,reset", perTryTimeout: 2s}
    corsPolicy: {allowOrigins: [{prefix: "https://"}], maxAge: 1m}
    timeout: 3s
`;

test('a DestinationRule and VirtualService using most options encode for sidecars, located proxies and gRPC clients', () => {
  const push = generators.buildPushContext(resources(EVERY_OPTION));
  const proxies = [
    sidecar('10.0.0.9', 'a', 'default', {}),
    generators.proxyFromNode({ id: 'sidecar~10.0.0.7~b.default~default.svc.cluster.local', locality: { region: 'a', zone: 'b' }, metadata: {} }),
    generators.proxyFromNode({ id: 'sidecar~10.0.0.8~c.default~default.svc.cluster.local', locality: { region: 'a', zone: 'b' }, metadata: { GENERATOR: 'grpc' } }),
  ];
  const counts = proxies.map((p) => PUSH_ORDER.map((t) => generate(push, p, t).size));
  // CDS, EDS, LDS, RDS, then ECDS (no WasmPlugin), NDS (only for proxies that capture DNS: none
  // of these) and SDS (gateways' credentials: none).
  assert.deepEqual(counts, [[7, 4, 4, 2, 0, 0, 0], [7, 4, 4, 2, 0, 0, 0], [4, 4, 2, 2, 0, 0, 0]]);
});
