// Lanes and data centres in the generators: lane clusters per (service, port, lane) whose
// endpoints are priorities lane → parent → baseline (split by data centre for a proxy in one),
// baseline-only default clusters, lane route variants and mocks, the lanes filter in every
// connection manager, the data-centre headers; every resource encoded with Envoy's protos.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, decodeMessage, encodeMessage } from '../../../src/envoy/index.ts';
import type { ProtoJson, XdsTypeUrl } from '../../../src/envoy/index.ts';
import { validateResource } from '../../../src/api/index.ts';
import { generators } from '../../../src/pilot/gen/index.ts';
import type { Proxy } from '../../../src/pilot/model.ts';
import { resources, ruleProblems, sidecar } from './helpers.ts';

/**
 * Generates one type; every resource encodes and decodes with Envoy's protos and breaks none of
 * their rules (the lanes filter's own TypedStruct is the one payload Envoy's protos cannot check).
 */
function generate(p: ReturnType<typeof generators.buildPushContext>, proxy: Proxy, typeUrl: XdsTypeUrl): Map<string, ProtoJson> {
  const out = generators.generate(p, proxy, typeUrl);
  for (const [name, r] of out) {
    assert.ok(decodeMessage(typeUrl, encodeMessage(typeUrl, r)), name);
    assert.deepEqual(ruleProblems(typeUrl, r).filter((s) => !s.endsWith('not checked: TypedStruct of type.googleapis.com/sextant.filters.http.lanes.v1alpha1.Lanes, not a type in Envoy\'s protos')), [], name);
  }
  return out;
}

function service(name: string): string {
  return `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ${name}, namespace: default}
spec:
  hosts: [${name}.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: ${name}}}
---`;
}

function workload(name: string, app: string, address: string, lane?: string, extra = ''): string {
  return `
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ${name}, namespace: default${extra}}
spec:
  address: ${address}
  labels: {app: ${app}${lane ? `, sextant.io/lane: ${lane}` : ''}}
---`;
}

const MESH = [
  service('a'), service('b'), service('c'), service('pay'),
  workload('a-base', 'a', '127.0.1.1'), workload('a-s2', 'a', '127.0.1.2', 's2'),
  workload('b-base', 'b', '127.0.1.3'), workload('b-s3', 'b', '127.0.1.4', 's3'),
  workload('c-base', 'c', '127.0.1.5'), workload('c-s2', 'c', '127.0.1.6', 's2'),
  workload('c-s2-out', 'c', '127.0.1.7', 's2', ', annotations: {sextant.io/traffic: out}'),
  workload('pay-base', 'pay', '127.0.1.8'),
  `
apiVersion: sextant.io/v1alpha1
kind: LaneGroup
metadata: {name: dev, namespace: default}
spec:
  services: [a, b, c, pay]
  lanes:
  - name: s2
    mocks: [{service: pay, directResponse: {status: 200, body: '{"mock":true}'}}]
  - name: s2.alice
  - name: s3
`,
].join('\n');

function push(text: string): ReturnType<typeof generators.buildPushContext> {
  const rs = resources(text);
  for (const r of rs) assert.deepEqual(validateResource(r).map(String), [], `${r.kind}/${r.metadata.name}`);
  return generators.buildPushContext(rs);
}

function priorities(cla: ProtoJson | undefined): Array<[number, string[]]> {
  return ((cla?.['endpoints'] as ProtoJson[] | undefined) ?? []).toSorted((x, y) => ((x['priority'] as number | undefined) ?? 0) - ((y['priority'] as number | undefined) ?? 0)).map((g) => [
    (g['priority'] as number | undefined) ?? 0,
    ((g['lbEndpoints'] as ProtoJson[]).map((e) => `${((e['endpoint'] as ProtoJson)['address'] as { socketAddress: { address: string } }).socketAddress.address}:${String(e['healthStatus'])}`)),
  ]);
}

const client = (labels: Record<string, string> = { app: 'client' }): Proxy => sidecar('127.0.9.1', 'client-1', 'default', labels);

test('lane clusters: one per covered service port and lane (a mocked service gets none), with passive health checking', () => {
  const p = push(MESH);
  const cds = generate(p, client(), CLUSTER_TYPE);
  const lanes = [...cds.keys()].filter((n) => n.includes('|lane~')).sort();
  assert.deepEqual(lanes, [
    'outbound|9080|lane~s2.alice|a.default.svc.cluster.local', 'outbound|9080|lane~s2.alice|b.default.svc.cluster.local',
    'outbound|9080|lane~s2.alice|c.default.svc.cluster.local', 'outbound|9080|lane~s2.alice|pay.default.svc.cluster.local',
    'outbound|9080|lane~s2|a.default.svc.cluster.local', 'outbound|9080|lane~s2|b.default.svc.cluster.local',
    'outbound|9080|lane~s2|c.default.svc.cluster.local',
    'outbound|9080|lane~s3|a.default.svc.cluster.local', 'outbound|9080|lane~s3|b.default.svc.cluster.local',
    'outbound|9080|lane~s3|c.default.svc.cluster.local', 'outbound|9080|lane~s3|pay.default.svc.cluster.local',
  ]);
  const c2 = cds.get('outbound|9080|lane~s2|c.default.svc.cluster.local')!;
  assert.deepEqual(c2['edsClusterConfig'], { edsConfig: { ads: {}, initialFetchTimeout: '0s', resourceApiVersion: 'V3' }, serviceName: 'outbound|9080|lane~s2|c.default.svc.cluster.local' });
  assert.equal((c2['outlierDetection'] as ProtoJson)['consecutiveGatewayFailure'], 3);
  assert.equal((c2['outlierDetection'] as ProtoJson)['maxEjectionPercent'], 100);
  assert.deepEqual(((c2['metadata'] as ProtoJson)['filterMetadata'] as ProtoJson)['sextant.io'], { ejectWholePriority: true });
  assert.equal((((c2['metadata'] as ProtoJson)['filterMetadata'] as ProtoJson)['istio'] as ProtoJson)['subset'], 'lane~s2');
  // the default cluster keeps Istio's shape: no outlier detection was asked for
  assert.equal(cds.get('outbound|9080||c.default.svc.cluster.local')!['outlierDetection'], undefined);
});

test('lane endpoints: lane, then parent lane, then baseline as priorities; default clusters hold the baseline only', () => {
  const p = push(MESH);
  const proxy = client();
  const eds = generate(p, proxy, ENDPOINT_TYPE);
  // c in s2: its own instance first; the pulled-out one counts as unhealthy; the baseline next
  assert.deepEqual(priorities(eds.get('outbound|9080|lane~s2|c.default.svc.cluster.local')), [[0, ['127.0.1.6:HEALTHY', '127.0.1.7:UNHEALTHY']], [1, ['127.0.1.5:HEALTHY']]]);
  // b has no s2 instance: the baseline is priority 0
  assert.deepEqual(priorities(eds.get('outbound|9080|lane~s2|b.default.svc.cluster.local')), [[0, ['127.0.1.3:HEALTHY']]]);
  // s2.alice has no instance of c: its parent s2 first, then the baseline
  assert.deepEqual(priorities(eds.get('outbound|9080|lane~s2.alice|c.default.svc.cluster.local')), [[0, ['127.0.1.6:HEALTHY', '127.0.1.7:UNHEALTHY']], [1, ['127.0.1.5:HEALTHY']]]);
  assert.deepEqual(priorities(eds.get('outbound|9080|lane~s3|b.default.svc.cluster.local')), [[0, ['127.0.1.4:HEALTHY']], [1, ['127.0.1.3:HEALTHY']]]);
  // the default clusters: baseline instances only (lane instances never take baseline traffic)
  assert.deepEqual(priorities(eds.get('outbound|9080||c.default.svc.cluster.local')), [[0, ['127.0.1.5:HEALTHY']]]);
  assert.deepEqual(priorities(eds.get('outbound|9080||b.default.svc.cluster.local')), [[0, ['127.0.1.3:HEALTHY']]]);
});

test('strict mode: a lane cluster holds the lane alone (no fallback)', () => {
  const p = push(MESH.replace('  services: [a, b, c, pay]\n', '  services: [a, b, c, pay]\n  mode: strict\n').replace('  - name: s2\n', '  - name: s2\n    services: [a, b, c]\n').replace('  - name: s2.alice\n', '  - name: s2.alice\n    services: [a, b, c, pay]\n').replace('  - name: s3\n', '  - name: s3\n    services: [a, b, c, pay]\n'));
  const eds = generate(p, client(), ENDPOINT_TYPE);
  assert.deepEqual(priorities(eds.get('outbound|9080|lane~s2|c.default.svc.cluster.local')), [[0, ['127.0.1.6:HEALTHY', '127.0.1.7:UNHEALTHY']]]);
  assert.deepEqual(priorities(eds.get('outbound|9080|lane~s2|b.default.svc.cluster.local')), []);
  assert.deepEqual(priorities(eds.get('outbound|9080|lane~s2.alice|c.default.svc.cluster.local')), []);
  const lds = generate(p, client(), LISTENER_TYPE);
  const filter = lanesFilterOf(lds);
  assert.deepEqual((filter['value'] as ProtoJson)['strictHosts'], ['a.default.svc.cluster.local', 'b.default.svc.cluster.local', 'c.default.svc.cluster.local', 'pay.default.svc.cluster.local']);
});

function lanesFilterOf(lds: Map<string, ProtoJson>, name = '0.0.0.0_9080'): ProtoJson {
  const l = lds.get(name) ?? [...lds.values()].find((x) => x['trafficDirection'] === 'OUTBOUND' && JSON.stringify(x).includes('http_connection_manager'))!;
  const hcm = ((l['filterChains'] as ProtoJson[])[0]!['filters'] as ProtoJson[]).find((f) => f['name'] === 'envoy.filters.network.http_connection_manager')!;
  const filters = (hcm['typedConfig'] as ProtoJson)['httpFilters'] as ProtoJson[];
  assert.equal(filters[0]!['name'], 'sextant.filters.http.lanes');
  assert.equal(filters[0]!['isOptional'], true);
  return filters[0]!['typedConfig'] as ProtoJson;
}

test('routes: a variant per lane before each route to a covered service, matching x-sextant-lane; a mock answers for its lane', () => {
  const p = push(MESH);
  const rds = generate(p, client(), ROUTE_TYPE);
  const rc = rds.get('9080')!;
  const vh = (rc['virtualHosts'] as ProtoJson[]).find((v) => v['name'] === 'c.default.svc.cluster.local:9080')!;
  const routes = vh['routes'] as ProtoJson[];
  assert.deepEqual(routes.map((r) => [r['name'], (r['route'] as ProtoJson | undefined)?.['cluster'], ((r['match'] as ProtoJson)['headers'] as ProtoJson[] | undefined)?.[0]]), [
    ['default@s2', 'outbound|9080|lane~s2|c.default.svc.cluster.local', { name: 'x-sextant-lane', stringMatch: { exact: 's2' } }],
    ['default@s2.alice', 'outbound|9080|lane~s2.alice|c.default.svc.cluster.local', { name: 'x-sextant-lane', stringMatch: { exact: 's2.alice' } }],
    ['default@s3', 'outbound|9080|lane~s3|c.default.svc.cluster.local', { name: 'x-sextant-lane', stringMatch: { exact: 's3' } }],
    ['default', 'outbound|9080||c.default.svc.cluster.local', undefined],
  ]);
  // a retry goes to the next priority (the fallback lane)
  assert.deepEqual(((routes[0]!['route'] as ProtoJson)['retryPolicy'] as ProtoJson)['retryPriority'], { name: 'envoy.retry_priorities.previous_priorities', typedConfig: { '@type': 'type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig', updateFrequency: 2 } });
  const pay = ((rc['virtualHosts'] as ProtoJson[]).find((v) => v['name'] === 'pay.default.svc.cluster.local:9080')!['routes'] as ProtoJson[])[0]!;
  assert.equal(pay['name'], 'default@s2');
  assert.deepEqual(pay['directResponse'], { status: 200, body: { inlineString: '{"mock":true}' } });
  assert.deepEqual(pay['responseHeadersToAdd'], [{ header: { key: 'x-sextant-served-lane', value: 's2' }, appendAction: 'OVERWRITE_IF_EXISTS_OR_ADD' }]);
});

test('the lanes filter: own lane from the workload label, the declared lanes, the trace table bounds', () => {
  const p = push(MESH);
  const inS2 = generate(p, sidecar('127.0.9.2', 'client-2', 'default', { app: 'client', 'sextant.io/lane': 's2' }), LISTENER_TYPE);
  const base = generate(p, client(), LISTENER_TYPE);
  assert.deepEqual(lanesFilterOf(inS2), {
    '@type': 'type.googleapis.com/udpa.type.v1.TypedStruct',
    typeUrl: 'type.googleapis.com/sextant.filters.http.lanes.v1alpha1.Lanes',
    value: { direction: 'outbound', ownLane: 's2', baseline: 'baseline', lanes: ['s2', 's2.alice', 's3'], strictHosts: [], traceTable: { maxEntries: 10000, ttlMs: 60000 }, trustedSources: [] },
  });
  assert.equal((lanesFilterOf(base)['value'] as ProtoJson)['ownLane'], 'baseline');
  // no lane group, no data centre: no filter at all
  const none = generate(push(MESH.slice(0, MESH.indexOf('apiVersion: sextant.io'))), client(), LISTENER_TYPE);
  assert.ok(!JSON.stringify([...none.values()]).includes('sextant.filters.http.lanes'));
});

function dcProxy(dc: string, labels: Record<string, string> = { app: 'client' }): Proxy {
  const [region = '', zone = ''] = dc.split('/');
  return generators.proxyFromNode({
    id: 'sidecar~127.0.9.3~client-3.default~default.svc.cluster.local',
    metadata: { NAMESPACE: 'default', LABELS: labels, SEXTANT_DC: dc },
    locality: { region, zone },
  });
}

const DC_MESH = [
  service('c'), service('d'),
  ...['a', 'b'].flatMap((dc, i) => [
    workload(`c-base-${dc}`, 'c', `127.0.2.${i + 1}`, undefined, '').replace('spec:\n', `spec:\n  locality: sh/dc-${dc}\n`),
    workload(`c-s2-${dc}`, 'c', `127.0.2.${i + 3}`, 's2').replace('spec:\n', `spec:\n  locality: sh/dc-${dc}\n`),
  ]),
  ...[1, 2, 3].map((n) => workload(`d-a${n}`, 'd', `127.0.3.${n}`, undefined, n > 1 ? ', annotations: {sextant.io/traffic: out}' : '').replace('spec:\n', 'spec:\n  locality: sh/dc-a\n')),
  ...[4, 5, 6].map((n) => workload(`d-b${n}`, 'd', `127.0.3.${n}`).replace('spec:\n', 'spec:\n  locality: sh/dc-b\n')),
  `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d, namespace: default, annotations: {sextant.io/failover-threshold: "50"}}
spec:
  host: d.default.svc.cluster.local
---
apiVersion: sextant.io/v1alpha1
kind: LaneGroup
metadata: {name: dev, namespace: default}
spec:
  services: [c]
  lanes: [{name: s2}]
`,
].join('\n');

test('data centres: own first without outlierDetection; lanes and data centres make one priority list; the threshold is the overprovisioning factor', () => {
  const p = push(DC_MESH);
  const eds = generate(p, dcProxy('sh/dc-a'), ENDPOINT_TYPE);
  assert.deepEqual(priorities(eds.get('outbound|9080|lane~s2|c.default.svc.cluster.local')), [
    [0, ['127.0.2.3:HEALTHY']], [1, ['127.0.2.4:HEALTHY']], [2, ['127.0.2.1:HEALTHY']], [3, ['127.0.2.2:HEALTHY']],
  ]);
  assert.deepEqual(priorities(generate(p, dcProxy('sh/dc-b'), ENDPOINT_TYPE).get('outbound|9080||c.default.svc.cluster.local')), [[0, ['127.0.2.2:HEALTHY']], [1, ['127.0.2.1:HEALTHY']]]);
  const d = eds.get('outbound|9080||d.default.svc.cluster.local')!;
  // pulled-out endpoints count against their data centre's health
  assert.deepEqual(priorities(d), [[0, ['127.0.3.1:HEALTHY', '127.0.3.2:UNHEALTHY', '127.0.3.3:UNHEALTHY']], [1, ['127.0.3.4:HEALTHY', '127.0.3.5:HEALTHY', '127.0.3.6:HEALTHY']]]);
  assert.deepEqual(d['policy'], { overprovisioningFactor: 200 });
  // without a data centre, Istio's behaviour: no locality priorities without outlierDetection
  assert.deepEqual(priorities(generate(p, client(), ENDPOINT_TYPE).get('outbound|9080||d.default.svc.cluster.local')).map(([pr]) => pr), [0, 0]);
  const cds = generate(p, dcProxy('sh/dc-a'), CLUSTER_TYPE);
  const dCluster = cds.get('outbound|9080||d.default.svc.cluster.local')!;
  assert.equal((dCluster['outlierDetection'] as ProtoJson)['maxEjectionPercent'], 100);
  assert.deepEqual(((dCluster['metadata'] as ProtoJson)['filterMetadata'] as ProtoJson)['sextant.io'], { ejectWholePriority: true });
});

test('data centres: the caller\'s and the first hop\'s headers on outbound routes, the serving one on inbound responses', () => {
  const sidecarYaml = `
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: client, namespace: default}
spec:
  workloadSelector: {labels: {app: client}}
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    bind: 127.0.9.3
    defaultEndpoint: 0.0.0.0:8080
    captureMode: NONE
  egress:
  - port: {number: 9080, protocol: HTTP, name: http}
    bind: 127.0.10.3
    captureMode: NONE
    hosts: ["./*"]
`;
  const p = push(`${DC_MESH}---\n${sidecarYaml}`);
  const proxy = dcProxy('sh/dc-a');
  const rds = generate(p, proxy, ROUTE_TYPE);
  const rc = rds.get('127.0.10.3:9080')!;
  assert.deepEqual(rc['requestHeadersToAdd'], [
    { header: { key: 'x-sextant-caller-dc', value: 'sh/dc-a' }, appendAction: 'OVERWRITE_IF_EXISTS_OR_ADD' },
    { header: { key: 'x-sextant-origin-dc', value: 'sh/dc-a' }, appendAction: 'ADD_IF_ABSENT' },
  ]);
  const d = ((rc['virtualHosts'] as ProtoJson[]).find((v) => v['name'] === 'd.default.svc.cluster.local:9080')!['routes'] as ProtoJson[])[0]!;
  assert.deepEqual(((d['route'] as ProtoJson)['retryPolicy'] as ProtoJson)['retryPriority'], { name: 'envoy.retry_priorities.previous_priorities', typedConfig: { '@type': 'type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig', updateFrequency: 2 } });
  const lds = generate(p, proxy, LISTENER_TYPE);
  const inbound = lds.get('127.0.9.3_9080')!;
  const hcm = (((inbound['filterChains'] as ProtoJson[])[0]!['filters'] as ProtoJson[])[0]!['typedConfig']) as ProtoJson;
  assert.deepEqual((hcm['routeConfig'] as ProtoJson)['responseHeadersToAdd'], [{ header: { key: 'x-sextant-served-dc', value: 'sh/dc-a' }, appendAction: 'OVERWRITE_IF_EXISTS_OR_ADD' }]);
  assert.equal((((hcm['httpFilters'] as ProtoJson[])[0]!['typedConfig'] as ProtoJson)['value'] as ProtoJson)['dataCentre'], 'sh/dc-a');
});

test('pushes: a LaneGroup change reaches every sidecar; an instance change pushes its lane clusters\' EDS', () => {
  const before = push(MESH);
  const after = push(MESH.replace('  - name: s3\n', '  - name: s3\n  - name: s4\n'));
  const plan = generators.planPush(before, after, { keys: new Set(['LaneGroup/default/dev']), endpointsOnly: false }, client());
  assert.equal(plan?.types.size, 4);
  const moved = push(MESH.replace('address: 127.0.1.6', 'address: 127.0.1.9'));
  const eds = generators.planPush(before, moved, { keys: new Set(['WorkloadEntry/default/c-s2']), endpointsOnly: true }, client());
  assert.deepEqual([...(eds?.edsClusters ?? [])].sort(), [
    'outbound|9080|lane~s2.alice|c.default.svc.cluster.local', 'outbound|9080|lane~s2|c.default.svc.cluster.local',
    'outbound|9080|lane~s3|c.default.svc.cluster.local', 'outbound|9080||c.default.svc.cluster.local',
  ]);
});
