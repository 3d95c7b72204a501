// Istio mTLS in generated config: PeerAuthentication's precedence (workload > namespace >
// mesh, port level, UNSET inherits), the inbound chains each mode yields, and the client side
// (ISTIO_MUTUAL, auto mTLS); every resource checked against Envoy's protos and their rules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CLUSTER_TYPE, LISTENER_TYPE } from '../../../src/envoy/index.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';
import { generators } from '../../../src/pilot/gen/index.ts';
import { peerAuthenticationMode } from '../../../src/pilot/gen/mtls.ts';
import type { SextantPushContext } from '../../../src/pilot/push/context.ts';
import { generate, resources, sidecar } from './helpers.ts';

const MESH = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}, {number: 9090, name: tcp, protocol: TCP}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: default}
spec: {address: 10.0.0.3, serviceAccount: reviews, labels: {app: reviews, security.istio.io/tlsMode: istio}}
`;

function pa(name: string, ns: string, spec: string): string {
  return `---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: ${name}, namespace: ${ns}}\nspec: ${spec}\n`;
}

function push(extra: string): SextantPushContext {
  return generators.buildPushContext(resources(MESH + extra)) as SextantPushContext;
}

const WITH_SA = { SERVICE_ACCOUNT: 'reviews', INTERCEPTION_MODE: 'REDIRECT' };
const reviews = sidecar('10.0.0.3', 'reviews-v1-abc', 'default', { app: 'reviews' }, WITH_SA);

test('PeerAuthentication precedence: workload over namespace over mesh, port level over all, UNSET inherits, PERMISSIVE by default', () => {
  const cases: [string, number, string][] = [
    ['', 9080, 'PERMISSIVE'],
    [pa('default', 'istio-system', '{mtls: {mode: STRICT}}'), 9080, 'STRICT'],
    // a root-namespace policy with a selector is not mesh-wide
    [pa('sel', 'istio-system', '{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}}'), 9080, 'PERMISSIVE'],
    [pa('default', 'istio-system', '{mtls: {mode: STRICT}}') + pa('ns', 'default', '{mtls: {mode: DISABLE}}'), 9080, 'DISABLE'],
    [pa('default', 'istio-system', '{mtls: {mode: STRICT}}') + pa('ns', 'default', '{mtls: {mode: UNSET}}'), 9080, 'STRICT'],
    [pa('ns', 'default', '{mtls: {mode: STRICT}}') + pa('w', 'default', '{selector: {matchLabels: {app: reviews}}, mtls: {mode: PERMISSIVE}}'), 9080, 'PERMISSIVE'],
    [pa('ns', 'default', '{mtls: {mode: STRICT}}') + pa('w', 'default', '{selector: {matchLabels: {app: reviews}}, portLevelMtls: {"9080": {mode: DISABLE}}}'), 9080, 'DISABLE'],
    [pa('ns', 'default', '{mtls: {mode: STRICT}}') + pa('w', 'default', '{selector: {matchLabels: {app: reviews}}, portLevelMtls: {"9080": {mode: DISABLE}}}'), 9090, 'STRICT'],
    [pa('w', 'default', '{selector: {matchLabels: {app: ratings}}, mtls: {mode: STRICT}}'), 9080, 'PERMISSIVE'],
    // another namespace's policy does not apply
    [pa('ns', 'bookinfo', '{mtls: {mode: STRICT}}'), 9080, 'PERMISSIVE'],
  ];
  for (const [policies, port, want] of cases) assert.equal(peerAuthenticationMode(push(policies), reviews, port), want, `${policies} port ${port}`);
});

function inboundChains(p: SextantPushContext, proxy = reviews): ProtoJson[] {
  const lds = generate(p, proxy, LISTENER_TYPE);
  return (lds.get('virtualInbound')?.['filterChains'] as ProtoJson[]).filter((c) => ((c['filterChainMatch'] ?? {}) as ProtoJson)['destinationPort'] === 9080);
}

test('STRICT: the port has only its mTLS chain (Istio\'s ALPN, client certificate required, SDS default/ROOTCA) and the tls_inspector', () => {
  const p = push(pa('ns', 'default', '{mtls: {mode: STRICT}}'));
  const chains = inboundChains(p);
  assert.equal(chains.length, 1);
  assert.deepEqual(chains[0]!['filterChainMatch'], { destinationPort: 9080, transportProtocol: 'tls', applicationProtocols: ['istio-http/1.0', 'istio-http/1.1', 'istio-h2'] });
  const tls = (chains[0]!['transportSocket'] as ProtoJson)['typedConfig'] as ProtoJson;
  assert.equal(tls['@type'], 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext');
  assert.equal(tls['requireClientCertificate'], true);
  const common = tls['commonTlsContext'] as ProtoJson;
  assert.deepEqual(common['alpnProtocols'], ['h2', 'http/1.1']);
  assert.equal(((common['tlsCertificateSdsSecretConfigs'] as ProtoJson[])[0]!)['name'], 'default');
  assert.equal(((common['combinedValidationContext'] as ProtoJson)['validationContextSdsSecretConfig'] as ProtoJson)['name'], 'ROOTCA');
  const listener = generate(p, reviews, LISTENER_TYPE).get('virtualInbound')!;
  assert.deepEqual((listener['listenerFilters'] as ProtoJson[]).map((f) => f['name']), ['envoy.filters.listener.original_dst', 'envoy.filters.listener.tls_inspector']);
});

test('PERMISSIVE has an mTLS and a plaintext chain; DISABLE and proxies without a certificate only plaintext', () => {
  const permissive = inboundChains(push(''));
  assert.deepEqual(permissive.map((c) => ((c['filterChainMatch'] ?? {}) as ProtoJson)['transportProtocol']), ['tls', 'raw_buffer']);
  const disabled = inboundChains(push(pa('ns', 'default', '{mtls: {mode: DISABLE}}')));
  assert.deepEqual(disabled.map((c) => c['transportSocket']), [undefined]);
  const noCert = sidecar('10.0.0.3', 'reviews-v1-abc', 'default', { app: 'reviews' }, { INTERCEPTION_MODE: 'REDIRECT' });
  assert.deepEqual(inboundChains(push(pa('ns', 'default', '{mtls: {mode: STRICT}}')), noCert).map((c) => c['transportSocket']), [undefined]);
});

function reviewsCluster(p: SextantPushContext, proxy = sidecar('10.0.0.1', 'productpage-v1-abc', 'default', { app: 'productpage' }, { SERVICE_ACCOUNT: 'productpage' })): ProtoJson {
  return generate(p, proxy, CLUSTER_TYPE).get('outbound|9080||reviews.default.svc.cluster.local')!;
}

test('auto mTLS: TLS to endpoints labelled tlsMode istio, plaintext to the others; the endpoints carry the match', () => {
  const c = reviewsCluster(push(''));
  const matches = c['transportSocketMatches'] as ProtoJson[];
  assert.deepEqual(matches.map((m) => [m['name'], m['match']]), [['tlsMode-istio', { tlsMode: 'istio' }], ['tlsMode-disabled', {}]]);
  const up = (matches[0]!['transportSocket'] as ProtoJson)['typedConfig'] as ProtoJson;
  assert.equal(up['sni'], 'outbound_.9080_._.reviews.default.svc.cluster.local');
  assert.deepEqual((up['commonTlsContext'] as ProtoJson)['alpnProtocols'], ['istio-http/1.1', 'istio', 'http/1.1']);
  const eds = generators.generate(push(''), sidecar('10.0.0.1', 'productpage-v1-abc', 'default', { app: 'productpage' }, { SERVICE_ACCOUNT: 'productpage' }), 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment', new Set(['outbound|9080||reviews.default.svc.cluster.local']));
  const lbe = (((eds.get('outbound|9080||reviews.default.svc.cluster.local')!['endpoints'] as ProtoJson[])[0]!['lbEndpoints'] as ProtoJson[])[0]!);
  assert.deepEqual(((lbe['metadata'] as ProtoJson)['filterMetadata'] as ProtoJson)['envoy.transport_socket_match'], { tlsMode: 'istio' });
  // a proxy without a certificate gets no auto mTLS
  assert.equal(reviewsCluster(push(''), sidecar('10.0.0.1', 'productpage-v1-abc', 'default', { app: 'productpage' }))['transportSocketMatches'], undefined);
});

test('DestinationRule ISTIO_MUTUAL: the transport socket with the expected SPIFFE identities, TCP ports with istio-peer-exchange', () => {
  const p = push(`---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL, subjectAltNames: ["spiffe://cluster.local/ns/default/sa/reviews"]}}
`);
  const up = ((reviewsCluster(p)['transportSocket'] as ProtoJson)['typedConfig'] as ProtoJson);
  const common = up['commonTlsContext'] as ProtoJson;
  assert.deepEqual(((common['combinedValidationContext'] as ProtoJson)['defaultValidationContext'] as ProtoJson)['matchTypedSubjectAltNames'],
    [{ sanType: 'URI', matcher: { exact: 'spiffe://cluster.local/ns/default/sa/reviews' } }]);
  const tcp = generate(p, sidecar('10.0.0.1', 'productpage-v1-abc', 'default', { app: 'productpage' }), CLUSTER_TYPE).get('outbound|9090||reviews.default.svc.cluster.local')!;
  assert.deepEqual((((tcp['transportSocket'] as ProtoJson)['typedConfig'] as ProtoJson)['commonTlsContext'] as ProtoJson)['alpnProtocols'], ['istio-peer-exchange', 'istio']);
});

test('a PeerAuthentication change pushes LDS to the proxies of its namespace, and to every proxy from the root namespace', () => {
  const before = push('');
  const inNs = push(pa('ns', 'default', '{mtls: {mode: STRICT}}'));
  const other = sidecar('10.0.0.9', 'details-v1-abc', 'bookinfo', { app: 'details' }, WITH_SA);
  const change = { keys: new Set(['PeerAuthentication/default/ns']), endpointsOnly: false };
  assert.deepEqual([...(generators.planPush(before, inNs, change, reviews)?.types ?? [])], [LISTENER_TYPE]);
  assert.equal(generators.planPush(before, inNs, change, other), null);
  const mesh = push(pa('default', 'istio-system', '{mtls: {mode: STRICT}}'));
  const meshChange = { keys: new Set(['PeerAuthentication/istio-system/default']), endpointsOnly: false };
  assert.deepEqual([...(generators.planPush(before, mesh, meshChange, other)?.types ?? [])], [LISTENER_TYPE]);
});
