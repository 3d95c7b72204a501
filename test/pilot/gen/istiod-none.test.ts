// Our output for the input behind istiod's golden xDS of a proxy in interception mode NONE
// (../shared/istio-compat/xds-golden-none) has the same key structure where our support
// covers it: outbound cluster names, endpoints, outbound listener names and ports, TLS SNI
// chains, RDS names and virtual host domains. Known differences are asserted, not ignored:
// inbound names follow current Istio (`inbound|PORT||`), and the HTTP proxy port (15002)
// and the unbound `virtual` listener of that older istiod are not generated.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE } from '../../../src/envoy/index.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';
import { generators } from '../../../src/pilot/gen/index.ts';
import { FIXTURES, generate, istioCompatFile, readResources, sidecar } from './helpers.ts';

const dir = istioCompatFile('xds-golden-none');
const skip = dir ? false : 'istiod golden output not found at ../shared/istio-compat/xds-golden-none';

type Json = Record<string, unknown>;
const golden = (f: string): string => readFileSync(path.join(dir as string, f), 'utf8');
const goldenJson = (f: string): Record<string, Json> => JSON.parse(golden(f)) as Record<string, Json>;
/** Top-level keys of a golden dump (one of them is not strict JSON, so keys are read by indentation). */
const topKeys = (f: string): string[] => [...golden(f).matchAll(/^ {4}"([^"]+)": \{/gm)].map((m) => m[1] as string);

function ours() {
  const push = generators.buildPushContext(readResources(path.join(FIXTURES, 'istiod-none.yaml')));
  const proxy = sidecar('10.11.0.1', 'app', 'none', { app: 'app' }, { INTERCEPTION_MODE: 'NONE' });
  return { push, proxy };
}

test('outbound clusters: the same names, the same resolution, the same endpoints', { skip }, () => {
  const { push, proxy } = ours();
  const cds = generate(push, proxy, CLUSTER_TYPE);
  const istiodCds = goldenJson('none_cds.json');
  const istiodEds = goldenJson('none_eds.json');
  const istiodOutbound = [...Object.keys(istiodCds), ...Object.keys(istiodEds)].filter((n) => n.startsWith('outbound|')).sort();
  assert.deepEqual([...cds.keys()].filter((n) => n.startsWith('outbound|')).sort(), istiodOutbound);
  assert.ok(cds.has('PassthroughCluster') && cds.has('BlackHoleCluster'));
  for (const [name, c] of Object.entries(istiodCds)) {
    if (!name.startsWith('outbound|')) continue;
    assert.equal(cds.get(name)?.['type'], c['type'] === 1 ? 'STRICT_DNS' : 'EDS', name); // Go enum 1 = STRICT_DNS
  }
  const eds = generate(push, proxy, ENDPOINT_TYPE, new Set(Object.keys(istiodEds)));
  const addrs = (endpoints: Json[], addr: (e: Json) => string) => endpoints.flatMap((g) => ((g['lb_endpoints'] ?? g['lbEndpoints']) as Json[]).map(addr)).sort();
  for (const [name, cla] of Object.entries(istiodEds)) {
    const theirs = addrs(cla['endpoints'] as Json[], (e) => {
      const sa = ((((e['endpoint'] as Json)['address'] as Json)['Address'] as Json)['SocketAddress']) as Json;
      return `${sa['address']}:${(sa['PortSpecifier'] as Json)['PortValue']}`;
    });
    const mine = addrs(eds.get(name)?.['endpoints'] as Json[], (e) => {
      const sa = (((e['endpoint'] as Json)['address'] as Json)['socketAddress']) as Json;
      return `${sa['address']}:${sa['portValue']}`;
    });
    assert.deepEqual(mine, theirs, name);
  }
});

test('inbound clusters forward to the Sidecar ingress defaultEndpoint', { skip }, () => {
  const { push, proxy } = ours();
  const cds = generate(push, proxy, CLUSTER_TYPE);
  for (const [name, c] of Object.entries(goldenJson('none_cds.json'))) {
    if (!name.startsWith('inbound|')) continue;
    const port = name.split('|')[1];
    const theirs = ((((((c['load_assignment'] as Json)['endpoints'] as Json[])[0]?.['lb_endpoints'] as Json[])[0]?.['endpoint'] as Json)['address'] as Json)['Address'] as Json)['SocketAddress'] as Json;
    const mine = ((((cds.get(`inbound|${port}||`)?.['loadAssignment'] as ProtoJson)['endpoints'] as ProtoJson[])[0]?.['lbEndpoints'] as ProtoJson[])[0]?.['endpoint'] as ProtoJson)['address'] as ProtoJson;
    assert.deepEqual(mine['socketAddress'], { address: theirs['address'], portValue: (theirs['PortSpecifier'] as Json)['PortValue'] });
  }
});

test('listeners: outbound bound to 127.0.0.1 per port, inbound per ingress port, TLS split by SNI', { skip }, () => {
  const { push, proxy } = ours();
  const lds = generate(push, proxy, LISTENER_TYPE);
  const theirs = [...topKeys('none_lds_tcp.json'), ...topKeys('none_lds_http.json')];
  const theirOutbound = theirs.filter((n) => n.startsWith('127.0.0.1_') && n !== '127.0.0.1_15002').sort();
  assert.deepEqual([...lds.keys()].filter((n) => n.startsWith('127.0.0.1_')).sort(), theirOutbound);
  // Inbound: same ports; bound to the proxy's own address (istiod of that era used 0.0.0.0).
  const theirInboundPorts = theirs.filter((n) => n.startsWith('0.0.0.0_')).map((n) => n.split('_')[1]).sort();
  assert.deepEqual([...lds.keys()].filter((n) => n.startsWith('10.11.0.1_')).map((n) => n.split('_')[1]).sort(), theirInboundPorts);
  const tls = lds.get('127.0.0.1_2443');
  assert.deepEqual((tls?.['filterChains'] as ProtoJson[]).map((c) => (c['filterChainMatch'] as ProtoJson)['serverNames']).sort(), [['api1.facebook.com'], ['www1.googleapis.com']]);
  assert.equal(golden('none_lds_tcp.json').match(/"server_names"/g)?.length, 2);
});

test('routes: RDS named by port with the same virtual host name and domains', { skip }, () => {
  const { push, proxy } = ours();
  const rds = generate(push, proxy, ROUTE_TYPE);
  const theirs = goldenJson('none_rds.json')['2001'] as { virtual_hosts: { name: string; domains: string[]; routes: Json[] }[] };
  const mine = rds.get('2001');
  assert.ok(mine);
  const vhosts = (mine['virtualHosts'] as { name: string; domains: string[]; routes: ProtoJson[] }[]).filter((v) => v.name !== 'allow_any');
  assert.deepEqual(vhosts.map((v) => [v.name, v.domains]), theirs.virtual_hosts.map((v) => [v.name, v.domains]));
  assert.equal(((vhosts[0]?.routes[0]?.['route'] as ProtoJson)['cluster']), ((((theirs.virtual_hosts[0]?.routes[0]?.['Action'] as Json)['Route'] as Json)['ClusterSpecifier'] as Json)['Cluster']));
  assert.deepEqual(vhosts[0]?.routes[0]?.['decorator'], theirs.virtual_hosts[0]?.routes[0]?.['decorator']);
});
