// NDS (Istio's NameTable) for sidecars that capture DNS, and the REDIRECT-mode listeners a
// proxy on plain sockets serves: istiod's own NDS test input (istio-compat nds-se.yaml) gives
// istiod's answers: addresses as declared, auto-allocated from 240.240.0.0/16 when a concrete
// host has none, nothing for NONE resolution or CIDR-only entries.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CLUSTER_TYPE, LISTENER_TYPE, NAME_TABLE_TYPE, decodeMessage, encodeMessage } from '../../../src/envoy/index.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';
import { generators } from '../../../src/pilot/gen/index.ts';
import { generate, istioCompatFile, readResources, resources, sidecar } from './helpers.ts';

const NDS_SE = istioCompatFile('xds-golden-none/nds-se.yaml');
const skip = NDS_SE === undefined ? 'istio-compat xds-golden-none/nds-se.yaml not found at ../shared/istio-compat' : false;

function table(nt: ProtoJson | undefined): Record<string, { ips: string[]; registry?: string; shortname?: string; namespace?: string }> {
  return (nt?.['table'] ?? {}) as Record<string, { ips: string[] }>;
}

test('NDS: declared addresses, auto-allocated ones for concrete hosts without, none for NONE or ranges (istiod\'s nds-se.yaml)', { skip }, () => {
  const push = generators.buildPushContext(readResources(NDS_SE!));
  const proxy = sidecar('10.0.0.1', 'app-1', 'ns2', { app: 'app' }, { DNS_CAPTURE: 'true' });
  const out = generate(push, proxy, NAME_TABLE_TYPE);
  assert.deepEqual([...out.keys()], ['']);
  const t = table(out.get(''));
  assert.deepEqual(Object.keys(t).sort(), ['random-1.host.example', 'random-2.host.example', 'random-3.host.example']);
  assert.deepEqual(t['random-2.host.example'], { ips: ['9.9.9.9'], registry: 'External' });
  for (const h of ['random-1.host.example', 'random-3.host.example']) assert.match(t[h]!.ips[0]!, /^240\.240\.\d{1,3}\.\d{1,3}$/);
  assert.notEqual(t['random-1.host.example']!.ips[0], t['random-3.host.example']!.ips[0]);
  // Encodes as Istio's NameTable (a map of NameInfo).
  assert.deepEqual(decodeMessage(NAME_TABLE_TYPE, encodeMessage(NAME_TABLE_TYPE, out.get('')!)), out.get(''));
});

test('NDS: only for proxies with DNS_CAPTURE; auto allocation off with DNS_AUTO_ALLOCATE=false', { skip }, () => {
  const push = generators.buildPushContext(readResources(NDS_SE!));
  assert.equal(generate(push, sidecar('10.0.0.1', 'app-1', 'ns2', {}), NAME_TABLE_TYPE).size, 0);
  const off = generate(push, sidecar('10.0.0.1', 'app-1', 'ns2', {}, { DNS_CAPTURE: true, DNS_AUTO_ALLOCATE: 'false' }), NAME_TABLE_TYPE);
  assert.deepEqual(Object.keys(table(off.get(''))), ['random-2.host.example']);
});

const SE = (name: string, host: string): string => `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ${name}, namespace: default}
spec:
  hosts: [${host}]
  location: MESH_INTERNAL
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.1.0.1}]
`;

test('NDS: an auto-allocated address stays when other services come and go; Kubernetes-style hosts carry their short name', () => {
  const proxy = sidecar('10.0.0.1', 'pp-1', 'default', {}, { DNS_CAPTURE: 'true' });
  const one = table(generate(generators.buildPushContext(resources(SE('reviews', 'reviews.default.svc.cluster.local'))), proxy, NAME_TABLE_TYPE).get(''));
  const many = [SE('reviews', 'reviews.default.svc.cluster.local'), ...Array.from({ length: 50 }, (_, i) => SE(`s${i}`, `s${i}.example.com`))].join('---\n');
  const two = table(generate(generators.buildPushContext(resources(many)), proxy, NAME_TABLE_TYPE).get(''));
  assert.deepEqual(two['reviews.default.svc.cluster.local'], one['reviews.default.svc.cluster.local']);
  assert.deepEqual({ ...one['reviews.default.svc.cluster.local'], ips: [] }, { ips: [], registry: 'Kubernetes', shortname: 'reviews', namespace: 'default' });
  assert.equal(new Set(Object.values(two).map((i) => i.ips[0])).size, 51, 'every host its own address');
});

test('a change to services pushes NDS to proxies capturing DNS, with CDS', () => {
  const before = generators.buildPushContext(resources(SE('reviews', 'reviews.default.svc.cluster.local')));
  const after = generators.buildPushContext(resources(`${SE('reviews', 'reviews.default.svc.cluster.local')}---\n${SE('ratings', 'ratings.default.svc.cluster.local')}`));
  const change = { keys: new Set(['ServiceEntry/default/ratings']), endpointsOnly: false };
  const dns = generators.planPush(before, after, change, sidecar('10.0.0.1', 'pp-1', 'default', {}, { DNS_CAPTURE: 'true' }));
  assert.ok(dns !== null && dns.types.has(CLUSTER_TYPE) && dns.types.has(NAME_TABLE_TYPE));
  assert.equal([...dns.types].at(-1), NAME_TABLE_TYPE, 'after CDS, EDS, LDS, RDS');
  const plain = generators.planPush(before, after, change, sidecar('10.0.0.1', 'pp-1', 'default', {}));
  assert.equal(plain?.types.has(NAME_TABLE_TYPE), false);
});

test('REDIRECT: virtualOutbound routes HTTP on ports no service declares by Host (ALLOW_ANY passthrough, REGISTRY_ONLY 502)', () => {
  const push = generators.buildPushContext(resources(SE('reviews', 'reviews.default.svc.cluster.local')));
  const chains = (lds: Map<string, ProtoJson>): ProtoJson[] => lds.get('virtualOutbound')?.['filterChains'] as ProtoJson[];
  const vhost = (chain: ProtoJson): ProtoJson => ((((chain['filters'] as ProtoJson[])[0]!['typedConfig'] as ProtoJson)['routeConfig'] as ProtoJson)['virtualHosts'] as ProtoJson[])[0]!;
  const redirect = chains(generate(push, sidecar('10.0.0.1', 'pp-1', 'default', {}, { INTERCEPTION_MODE: 'REDIRECT' }), LISTENER_TYPE));
  assert.deepEqual(redirect.map((c) => c['name']), ['PassthroughFilterChain', 'virtualOutbound-catchall-http']);
  assert.deepEqual(redirect[1]!['filterChainMatch'], { applicationProtocols: ['http/1.0', 'http/1.1', 'h2c'] });
  assert.equal(((vhost(redirect[1]!)['routes'] as ProtoJson[])[0]!['route'] as ProtoJson)['cluster'], 'PassthroughCluster');
  const tproxy = chains(generate(push, sidecar('10.0.0.1', 'pp-1', 'default', {}, { INTERCEPTION_MODE: 'TPROXY' }), LISTENER_TYPE));
  assert.deepEqual(tproxy.map((c) => c['name']), ['PassthroughFilterChain'], 'TPROXY keeps the original address: TCP passthrough suffices');
  const sc = 'apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: istio-system}\nspec:\n  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n';
  const locked = generators.buildPushContext(resources(`${SE('reviews', 'reviews.default.svc.cluster.local')}---\n${sc}`));
  const blocked = chains(generate(locked, sidecar('10.0.0.1', 'pp-1', 'default', {}, { INTERCEPTION_MODE: 'REDIRECT' }), LISTENER_TYPE));
  assert.deepEqual((vhost(blocked[1]!)['routes'] as ProtoJson[])[0]!['directResponse'], { status: 502 });
});
