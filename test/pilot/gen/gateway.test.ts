// Gateway proxies: Istio's bookinfo Gateway and its VirtualService become a listener on the
// server port with RDS `http.8080`, routes to productpage, and pushes only to the gateways
// the Gateway selects.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE } from '../../../src/envoy/index.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';
import { generators } from '../../../src/pilot/gen/index.ts';
import { FIXTURES, generate, istioCompatFile, readResources, resources, sidecar } from './helpers.ts';

const gatewayFile = istioCompatFile('bookinfo/bookinfo-gateway.yaml');
const skip = gatewayFile ? false : 'istio-compat bookinfo samples not found at ../shared/istio-compat';

function router(labels: Record<string, string>) {
  return generators.proxyFromNode({ id: 'router~10.0.0.2~istio-ingressgateway-1.istio-system~istio-system.svc.cluster.local', metadata: { NAMESPACE: 'istio-system', LABELS: labels } });
}

test('the bookinfo Gateway: a listener on 8080, RDS http.8080 routing the product page paths', { skip }, () => {
  const push = generators.buildPushContext(readResources(path.join(FIXTURES, 'bookinfo-registry.yaml'), gatewayFile as string));
  const gw = router({ istio: 'ingressgateway' });
  const lds = generate(push, gw, LISTENER_TYPE);
  assert.deepEqual([...lds.keys()], ['0.0.0.0_8080']);
  const hcm = (((lds.get('0.0.0.0_8080')?.['filterChains'] as ProtoJson[])[0]?.['filters'] as ProtoJson[])[0]?.['typedConfig']) as ProtoJson;
  assert.equal((hcm['rds'] as ProtoJson)['routeConfigName'], 'http.8080');
  const rds = generate(push, gw, ROUTE_TYPE);
  const vh = (rds.get('http.8080')?.['virtualHosts'] as { name: string; domains: string[]; routes: { match: ProtoJson; route: ProtoJson }[] }[])[0];
  assert.equal(vh?.name, '*:8080');
  assert.deepEqual(vh?.domains, ['*']);
  assert.deepEqual(vh?.routes.map((r) => r.match), [{ path: '/productpage' }, { prefix: '/static' }, { path: '/login' }, { path: '/logout' }, { prefix: '/api/v1/products' }]);
  assert.ok(vh?.routes.every((r) => r.route['cluster'] === 'outbound|9080||productpage.default.svc.cluster.local'));
  assert.ok(generate(push, gw, CLUSTER_TYPE).has('outbound|9080||productpage.default.svc.cluster.local'));
  // Another gateway, and the sidecars, get none of it.
  assert.equal(generate(push, router({ istio: 'egressgateway' }), LISTENER_TYPE).size, 0);
  assert.equal(generate(push, sidecar('10.0.0.10', 'pp', 'default', { app: 'productpage' }), ROUTE_TYPE).has('http.8080'), false);
});

test('Gateway and gateway-bound VirtualService changes push only to the gateways they select', () => {
  const gw = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: edge}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["default/*.example.com"]}]
`;
  const vs = (host: string) => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: default}
spec:
  hosts: [${host}]
  gateways: [edge/public]
  http: [{route: [{destination: {host: productpage.default.svc.cluster.local, port: {number: 9080}}}]}]
`;
  const registry = readResources(path.join(FIXTURES, 'bookinfo-registry.yaml'));
  const before = generators.buildPushContext([...registry, ...resources(gw)]);
  const after = generators.buildPushContext([...registry, ...resources(`${gw}---\n${vs('shop.example.com')}`)]);
  const ingress = router({ istio: 'ingressgateway' });
  const change = { keys: new Set(['VirtualService/default/shop']), endpointsOnly: false };
  assert.deepEqual([...(generators.planPush(before, after, change, ingress)?.types ?? [])], [LISTENER_TYPE, ROUTE_TYPE]);
  assert.equal(generators.planPush(before, after, change, router({ istio: 'egressgateway' })), null);
  assert.equal(generators.planPush(before, after, change, sidecar('10.0.0.10', 'pp', 'default', {})), null);
  const vh = (generate(after, ingress, ROUTE_TYPE).get('http.80')?.['virtualHosts'] as ProtoJson[])[0];
  assert.deepEqual(vh?.['domains'], ['shop.example.com']); // any port: ignorePortInHostMatching, as Istio
  // A host the server does not admit gets Istio's 404 virtual host.
  const other = generators.buildPushContext([...registry, ...resources(`${gw}---\n${vs('shop.other.org')}`)]);
  assert.deepEqual((generate(other, ingress, ROUTE_TYPE).get('http.80')?.['virtualHosts'] as ProtoJson[])[0]?.['name'], 'blackhole:80');
  assert.deepEqual([...(generators.planPush(other, other, { keys: new Set(['Gateway/edge/public']), endpointsOnly: false }, ingress)?.types ?? [])], [LISTENER_TYPE, ROUTE_TYPE]);
});
