// Gateway proxies as istiod configures them: HTTPS servers by SNI with credentialName over SDS,
// MUTUAL with the `-cacert` secret, file certificates, PASSTHROUGH to `tls` routes, TLS
// termination to `tcp` routes, httpsRedirect, TCP servers, AUTO_PASSTHROUGH's SNI-DNAT
// clusters, the gateway service's port translation, conflicts, and which proxy gets which
// secret. Every resource is checked against Envoy's protos and their validation rules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE } from '../../../src/envoy/index.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';
import { parseDocuments } from '../../../src/api/index.ts';
import type { Resource } from '../../../src/api/resource.ts';
import { generators } from '../../../src/pilot/gen/index.ts';
import { mergedGateway } from '../../../src/pilot/gen/gateway/index.ts';
import type { SextantPushContext } from '../../../src/pilot/push/context.ts';
import { FIXTURES, generate, readResources, resources, sidecar } from './helpers.ts';

function router(labels: Record<string, string>, ip = '10.0.0.2', namespace = 'istio-system') {
  return generators.proxyFromNode({ id: `router~${ip}~istio-ingressgateway-1.${namespace}~${namespace}.svc.cluster.local`, metadata: { NAMESPACE: namespace, LABELS: labels } });
}

/** Resources through the codec (Secrets have their fields at the top level). */
function documents(yaml: string): Resource[] {
  const r = parseDocuments(yaml, 'test.yaml');
  assert.deepEqual(r.errors.map(String), []);
  return r.documents.map((d) => d.resource);
}

const registry = readResources(path.join(FIXTURES, 'bookinfo-registry.yaml'));

// Fake PEM: the generators carry bytes, the store's validation checks them (test/api/secret.test.ts).
const pem = (label: string, body: string): string => `-----BEGIN ${label}-----\n${Buffer.from(body).toString('base64')}\n-----END ${label}-----\n`;
const b64 = (s: string): string => Buffer.from(s).toString('base64');

function secret(name: string, namespace: string, data: Record<string, string>): string {
  return `apiVersion: v1
kind: Secret
metadata: {name: ${name}, namespace: ${namespace}}
type: kubernetes.io/tls
data:
${Object.entries(data).map(([k, v]) => `  ${k}: ${b64(v)}`).join('\n')}
`;
}

const GATEWAY = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8443, name: https-a, protocol: HTTPS}
    hosts: ["default/a.example.com"]
    tls: {mode: SIMPLE, credentialName: a-cred}
  - port: {number: 8443, name: https-b, protocol: HTTPS}
    hosts: ["default/b.example.com"]
    tls: {mode: MUTUAL, credentialName: b-cred, subjectAltNames: [client.example.com], minProtocolVersion: TLSV1_3}
  - port: {number: 8443, name: tls-pass, protocol: TLS}
    hosts: ["default/pass.example.com"]
    tls: {mode: PASSTHROUGH}
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["default/a.example.com"]
    tls: {httpsRedirect: true}
  - port: {number: 9000, name: tcp, protocol: TCP}
    hosts: ["*"]
  - port: {number: 9443, name: tls-term, protocol: TLS}
    hosts: ["*"]
    tls: {mode: SIMPLE, serverCertificate: /etc/certs/tls.crt, privateKey: /etc/certs/tls.key}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: default}
spec:
  hosts: [a.example.com, b.example.com]
  gateways: [istio-system/edge]
  http:
  - match: [{uri: {prefix: /api}, port: 8443}]
    route: [{destination: {host: reviews, port: {number: 9080}}}]
  - route: [{destination: {host: productpage, port: {number: 9080}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: pass, namespace: default}
spec:
  hosts: [pass.example.com]
  gateways: [istio-system/edge]
  tls:
  - match: [{sniHosts: [pass.example.com], port: 8443}]
    route: [{destination: {host: details, port: {number: 9080}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp, namespace: default}
spec:
  hosts: ["*"]
  gateways: [istio-system/edge]
  tcp:
  - match: [{port: 9000}]
    route: [{destination: {host: ratings, port: {number: 9080}}}]
  - match: [{port: 9443}]
    route: [{destination: {host: details, port: {number: 9080}}}]
`;

function build(extra = ''): SextantPushContext {
  return generators.buildPushContext([...registry, ...resources(GATEWAY), ...documents(secret('a-cred', 'istio-system', { 'tls.crt': pem('CERTIFICATE', 'a'), 'tls.key': pem('PRIVATE KEY', 'ka') })
    + '---\n' + secret('b-cred', 'istio-system', { 'tls.crt': pem('CERTIFICATE', 'b'), 'tls.key': pem('PRIVATE KEY', 'kb'), 'ca.crt': pem('CERTIFICATE', 'ca') })
    + '---\n' + secret('other', 'istio-system', { 'tls.crt': pem('CERTIFICATE', 'o'), 'tls.key': pem('PRIVATE KEY', 'ko') })
    + extra)]) as SextantPushContext;
}

const chains = (l: ProtoJson | undefined): ProtoJson[] => (l?.['filterChains'] as ProtoJson[] | undefined) ?? [];
const typed = (f: ProtoJson | undefined): ProtoJson => (f?.['typedConfig'] ?? {}) as ProtoJson;

test('HTTPS servers on one port: a chain per server by SNI, credentialName as SDS kubernetes:// secrets, passthrough by SNI', () => {
  const push = build();
  const gw = router({ istio: 'ingressgateway' });
  const lds = generate(push, gw, LISTENER_TYPE);
  assert.deepEqual([...lds.keys()], ['0.0.0.0_8080', '0.0.0.0_8443', '0.0.0.0_9000', '0.0.0.0_9443']);
  const https = lds.get('0.0.0.0_8443');
  assert.deepEqual((https?.['listenerFilters'] as ProtoJson[]).map((f) => f['name']), ['envoy.filters.listener.tls_inspector']);
  const cs = chains(https);
  assert.deepEqual(cs.map((c) => (c['filterChainMatch'] as ProtoJson)['serverNames']), [['a.example.com'], ['b.example.com'], ['pass.example.com']]);
  // a: SIMPLE with its credential
  const a = typed(cs[0]?.['transportSocket'] as ProtoJson);
  const aCommon = a['commonTlsContext'] as ProtoJson;
  assert.deepEqual((aCommon['tlsCertificateSdsSecretConfigs'] as ProtoJson[]).map((s) => s['name']), ['kubernetes://a-cred']);
  assert.deepEqual((aCommon['tlsCertificateSdsSecretConfigs'] as ProtoJson[])[0]?.['sdsConfig'], { ads: {}, initialFetchTimeout: '0s', resourceApiVersion: 'V3' });
  assert.deepEqual(aCommon['alpnProtocols'], ['h2', 'http/1.1']);
  assert.equal(a['requireClientCertificate'], undefined);
  assert.equal(((cs[0]?.['filters'] as ProtoJson[])[0]?.['typedConfig'] as ProtoJson)['rds'] !== undefined, true);
  assert.equal((typed((cs[0]?.['filters'] as ProtoJson[])[0])['rds'] as ProtoJson)['routeConfigName'], 'https.8443.https-a.edge.istio-system');
  // b: MUTUAL: the client certificate against kubernetes://b-cred-cacert, its SAN, TLS 1.3 at least
  const b = typed(cs[1]?.['transportSocket'] as ProtoJson);
  const bCommon = b['commonTlsContext'] as ProtoJson;
  assert.equal(b['requireClientCertificate'], true);
  assert.deepEqual(bCommon['tlsParams'], { tlsMinimumProtocolVersion: 'TLSv1_3' });
  const cvc = bCommon['combinedValidationContext'] as ProtoJson;
  assert.equal((cvc['validationContextSdsSecretConfig'] as ProtoJson)['name'], 'kubernetes://b-cred-cacert');
  assert.deepEqual((cvc['defaultValidationContext'] as ProtoJson)['matchTypedSubjectAltNames'], [{ sanType: 'DNS', matcher: { exact: 'client.example.com' } }]);
  // pass: no TLS context, tcp_proxy to the tls route's destination
  assert.equal(cs[2]?.['transportSocket'], undefined);
  assert.equal(typed((cs[2]?.['filters'] as ProtoJson[])[0])['cluster'], 'outbound|9080||details.default.svc.cluster.local');
  // TCP and TLS termination with certificate files
  assert.equal(typed((chains(lds.get('0.0.0.0_9000'))[0]?.['filters'] as ProtoJson[])[0])['cluster'], 'outbound|9080||ratings.default.svc.cluster.local');
  const term = chains(lds.get('0.0.0.0_9443'))[0];
  assert.equal(term?.['filterChainMatch'], undefined, 'hosts * match any SNI');
  const termCommon = typed(term?.['transportSocket'] as ProtoJson)['commonTlsContext'] as ProtoJson;
  assert.deepEqual(termCommon['tlsCertificates'], [{ certificateChain: { filename: '/etc/certs/tls.crt' }, privateKey: { filename: '/etc/certs/tls.key' } }]);
  assert.equal(termCommon['alpnProtocols'], undefined);
  assert.equal(typed((term?.['filters'] as ProtoJson[])[0])['cluster'], 'outbound|9080||details.default.svc.cluster.local');
});

test('routes: an https.* route per terminating server, match.port against the Gateway port, httpsRedirect on the plain server', () => {
  const push = build();
  const gw = router({ istio: 'ingressgateway' });
  const rds = generate(push, gw, ROUTE_TYPE);
  assert.deepEqual([...rds.keys()].sort(), ['http.8080', 'https.8443.https-a.edge.istio-system', 'https.8443.https-b.edge.istio-system']);
  const a = (rds.get('https.8443.https-a.edge.istio-system')?.['virtualHosts'] as ProtoJson[]);
  assert.deepEqual(a.map((v) => v['domains']), [['a.example.com']], 'only the hosts its server admits');
  const routes = a[0]?.['routes'] as ProtoJson[];
  assert.deepEqual(routes.map((r) => [r['match'], (r['route'] as ProtoJson)['cluster']]), [
    [{ prefix: '/api' }, 'outbound|9080||reviews.default.svc.cluster.local'],
    [{ prefix: '/' }, 'outbound|9080||productpage.default.svc.cluster.local'],
  ]);
  const redirect = rds.get('http.8080')?.['virtualHosts'] as ProtoJson[];
  assert.deepEqual(redirect.map((v) => [v['domains'], v['routes']]), [[['a.example.com'], [{ name: 'https-redirect', match: { prefix: '/' }, redirect: { httpsRedirect: true } }]]]);
});

test('SDS: a gateway gets the credentials its Gateways name in its namespace; the CA from ca.crt; nobody else gets them', () => {
  const push = build();
  const gw = router({ istio: 'ingressgateway' });
  const sds = generate(push, gw, SECRET_TYPE, new Set(['kubernetes://a-cred', 'kubernetes://b-cred-cacert', 'kubernetes://other', 'kubernetes://default/a-cred', 'kubernetes://missing']));
  assert.deepEqual([...sds.keys()], ['kubernetes://a-cred', 'kubernetes://b-cred-cacert']);
  const cert = sds.get('kubernetes://a-cred')?.['tlsCertificate'] as ProtoJson;
  assert.equal(Buffer.from(String((cert['certificateChain'] as ProtoJson)['inlineBytes']), 'base64').toString(), pem('CERTIFICATE', 'a'));
  assert.equal(Buffer.from(String((cert['privateKey'] as ProtoJson)['inlineBytes']), 'base64').toString(), pem('PRIVATE KEY', 'ka'));
  const ca = sds.get('kubernetes://b-cred-cacert')?.['validationContext'] as ProtoJson;
  assert.equal(Buffer.from(String((ca['trustedCa'] as ProtoJson)['inlineBytes']), 'base64').toString(), pem('CERTIFICATE', 'ca'));
  // A sidecar, a gateway in another namespace, a gateway no Gateway selects: nothing.
  assert.equal(generate(push, sidecar('10.0.0.10', 'pp', 'istio-system', { istio: 'ingressgateway' }), SECRET_TYPE, new Set(['kubernetes://a-cred'])).size, 0);
  assert.equal(generate(push, router({ istio: 'ingressgateway' }, '10.0.0.3', 'default'), SECRET_TYPE, new Set(['kubernetes://a-cred'])).size, 0);
  assert.equal(generate(push, router({ istio: 'other' }), SECRET_TYPE, new Set(['kubernetes://a-cred'])).size, 0);
  // A separate NAME-cacert secret wins over ca.crt.
  const own = build('---\n' + secret('b-cred-cacert', 'istio-system', { 'ca.crt': pem('CERTIFICATE', 'own-ca') }).replace('type: kubernetes.io/tls\n', ''));
  const ownCa = generate(own, gw, SECRET_TYPE, new Set(['kubernetes://b-cred-cacert'])).get('kubernetes://b-cred-cacert')?.['validationContext'] as ProtoJson;
  assert.equal(Buffer.from(String((ownCa['trustedCa'] as ProtoJson)['inlineBytes']), 'base64').toString(), pem('CERTIFICATE', 'own-ca'));
});

test('a Secret change pushes SDS (only) to the gateways that use it', () => {
  const before = build();
  const after = build('---\n' + secret('unused', 'istio-system', { 'tls.crt': pem('CERTIFICATE', 'u'), 'tls.key': pem('PRIVATE KEY', 'u') }));
  const gw = router({ istio: 'ingressgateway' });
  const plan = (keys: string[], p = gw) => generators.planPush(before, after, { keys: new Set(keys), endpointsOnly: false }, p);
  assert.deepEqual([...(plan(['Secret/istio-system/a-cred'])?.types ?? [])], [SECRET_TYPE]);
  assert.deepEqual([...(plan(['Secret/istio-system/b-cred-cacert'])?.types ?? [])], [SECRET_TYPE], 'a CA secret concerns its credential');
  assert.equal(plan(['Secret/istio-system/unused']), null);
  assert.equal(plan(['Secret/default/a-cred']), null, 'another namespace');
  assert.equal(plan(['Secret/istio-system/a-cred'], sidecar('10.0.0.10', 'pp', 'default', { app: 'productpage' })), null);
  assert.equal(plan(['Secret/istio-system/a-cred'], router({ istio: 'other' })), null);
  // A Gateway change relists the listeners and the secrets they may name.
  assert.deepEqual([...(plan(['Gateway/istio-system/edge'])?.types ?? [])], [LISTENER_TYPE, ROUTE_TYPE, SECRET_TYPE]);
});

test('the gateway service\'s port translation: Gateway port 80 listens on its target port, routes still match port 80', () => {
  const yaml = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: istio-egressgateway, namespace: istio-system}
spec:
  hosts: [istio-egressgateway.istio-system.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}, {number: 443, name: https, protocol: HTTPS}]
  workloadSelector: {labels: {istio: egressgateway}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: egress-1, namespace: istio-system}
spec: {address: 10.0.0.5, labels: {istio: egressgateway}, ports: {http: 8080, https: 8443}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: istio-egressgateway, namespace: default}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [edition.cnn.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: direct-cnn-through-egress-gateway, namespace: default}
spec:
  hosts: [edition.cnn.com]
  gateways: [istio-egressgateway, mesh]
  http:
  - match: [{gateways: [mesh], port: 80}]
    route: [{destination: {host: istio-egressgateway.istio-system.svc.cluster.local, subset: cnn, port: {number: 80}}, weight: 100}]
  - match: [{gateways: [istio-egressgateway], port: 80}]
    route: [{destination: {host: edition.cnn.com, port: {number: 80}}, weight: 100}]
`;
  const push = generators.buildPushContext([...registry, ...resources(yaml)]);
  const gw = router({ istio: 'egressgateway' }, '10.0.0.5');
  const lds = generate(push, gw, LISTENER_TYPE);
  assert.deepEqual([...lds.keys()], ['0.0.0.0_8080']);
  const rds = generate(push, gw, ROUTE_TYPE);
  const vh = (rds.get('http.8080')?.['virtualHosts'] as ProtoJson[])[0];
  assert.deepEqual(vh?.['domains'], ['edition.cnn.com']);
  assert.deepEqual((vh?.['routes'] as ProtoJson[]).map((r) => (r['route'] as ProtoJson)['cluster']), ['outbound|80||edition.cnn.com'], 'only the route bound to this gateway');
  // Elsewhere (another address) the same Gateway listens on its own port.
  assert.deepEqual([...generate(push, router({ istio: 'egressgateway' }, '10.0.0.9'), LISTENER_TYPE).keys()], ['0.0.0.0_80']);
});

test('conflicts Istio rejects are left out and reported: plain HTTP and TLS on one port, a host twice by SNI', () => {
  const yaml = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: first, namespace: istio-system, creationTimestamp: "2024-01-01T00:00:00Z"}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8443, name: https, protocol: HTTPS}
    hosts: ["*/a.example.com"]
    tls: {mode: SIMPLE, credentialName: a-cred}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: second, namespace: istio-system, creationTimestamp: "2024-01-02T00:00:00Z"}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8443, name: http, protocol: HTTP}
    hosts: ["*"]
  - port: {number: 8443, name: https, protocol: HTTPS}
    hosts: ["*/a.example.com"]
    tls: {mode: SIMPLE, credentialName: other}
`;
  const push = generators.buildPushContext([...registry, ...resources(yaml)]) as SextantPushContext;
  const merged = mergedGateway(push, router({ istio: 'ingressgateway' }));
  assert.deepEqual(merged.ports.map((p) => [p.port, p.family, p.servers.map((s) => s.gatewayName)]), [[8443, 'tls', ['istio-system/first']]]);
  assert.deepEqual(merged.skipped.map((s) => `${s.gateway}[${s.server}]: ${s.reason}`), [
    'istio-system/second[0]: port 8443: plain HTTP cannot share the port with TLS',
    'istio-system/second[1]: port 8443: host a.example.com is already served by another TLS server on this port',
  ]);
});

test('AUTO_PASSTHROUGH: chains by Istio\'s SNI to SNI-DNAT clusters without TLS of their own', () => {
  const yaml = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: cross-network, namespace: istio-system}
spec:
  selector: {istio: eastwestgateway}
  servers:
  - port: {number: 15443, name: tls, protocol: TLS}
    hosts: ["*.default.svc.cluster.local"]
    tls: {mode: AUTO_PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
  subsets: [{name: v1, labels: {version: v1}}]
`;
  const push = generators.buildPushContext([...registry, ...resources(yaml)]);
  const gw = router({ istio: 'eastwestgateway' });
  const l = generate(push, gw, LISTENER_TYPE).get('0.0.0.0_15443');
  const names = chains(l).map((c) => (c['filterChainMatch'] as ProtoJson)['serverNames']);
  assert.ok(names.some((n) => JSON.stringify(n) === JSON.stringify(['outbound_.9080_.v1_.reviews.default.svc.cluster.local'])));
  assert.deepEqual((chains(l)[0]?.['filterChainMatch'] as ProtoJson)['applicationProtocols'], ['istio-peer-exchange', 'istio-http/1.0', 'istio-http/1.1', 'istio-h2']);
  const cds = generate(push, gw, CLUSTER_TYPE);
  const dnat = cds.get('outbound_.9080_.v1_.reviews.default.svc.cluster.local');
  assert.ok(dnat, 'the SNI-DNAT cluster exists');
  assert.equal(dnat['transportSocket'], undefined, 'the sidecar\'s own mTLS passes through');
  assert.equal((dnat['edsClusterConfig'] as ProtoJson)['serviceName'], 'outbound|9080|v1|reviews.default.svc.cluster.local');
  assert.ok(cds.get('outbound|9080|v1|reviews.default.svc.cluster.local')?.['transportSocket'], 'the ordinary cluster keeps its TLS');
  // Its clusters follow its Gateway: a Gateway change pushes CDS too.
  assert.deepEqual([...(generators.planPush(push, push, { keys: new Set(['Gateway/istio-system/cross-network']), endpointsOnly: false }, gw)?.types ?? [])], [CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE]);
});
