// Telemetry → connection managers, as istiod generates them: accessLogging providers (the
// built-in `sextant` and MeshConfig `envoyHttpAls`) become `envoy.access_loggers.http_grpc`
// access logs (CEL filter from `filter.expression`, mode per direction, the most specific
// Telemetry winning), metrics tagOverrides become the `istio.stats` filter (with RouteTemplates
// when request_operation is asked for); every listener encodes with Envoy's protos and
// compiles in the proxy; a Telemetry change pushes LDS only to the workloads it selects.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateResource } from '../../../src/api/index.ts';
import { LISTENER_TYPE, decodeMessage, encodeMessage } from '../../../src/envoy/index.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';
import { buildPushContext, generators } from '../../../src/pilot/gen/index.ts';
import { telemetryProblems } from '../../../src/pilot/gen/telemetry.ts';
import { parseMeshConfig } from '../../../src/pilot/mesh-config/index.ts';
import type { MeshConfig } from '../../../src/pilot/mesh-config/index.ts';
import type { SextantPushContext } from '../../../src/pilot/push/context.ts';
import { compileListener } from '../../../src/proxy/listener/listener-spec.ts';
import { resources, ruleProblems, sidecar } from './helpers.ts';

const MESH = `
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: ingress, namespace: shop}
spec:
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:8080
    captureMode: NONE
  egress:
  - hosts: ["./*"]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews.shop.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints:
  - {address: 127.0.1.5, ports: {http: 9080}, labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: als, namespace: observability}
spec:
  hosts: [als.observability.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9000, name: grpc, protocol: GRPC}]
  endpoints:
  - {address: 127.0.1.50}
`;

const REVIEWS = sidecar('127.0.1.5', 'reviews-v1-abcde', 'shop', { app: 'reviews' });
const PRODUCTPAGE = sidecar('127.0.1.4', 'productpage-v1-abcde', 'shop', { app: 'productpage' });

function push(extra: string, mesh?: string): SextantPushContext {
  const all = resources(MESH + '---\n' + extra);
  for (const r of all) {
    const issues = validateResource(r);
    assert.deepEqual(issues, [], `${r.kind}/${r.metadata.name} is valid`);
  }
  const config: MeshConfig | undefined = mesh === undefined ? undefined : parseMeshConfig(mesh, 'mesh.yaml').config;
  return buildPushContext(all, undefined, undefined, config);
}

/** Every HCM of a proxy's listeners with its direction; each listener also compiles in the proxy. */
function hcms(p: SextantPushContext, proxy = REVIEWS): { direction: string; listener: string; hcm: ProtoJson }[] {
  const out: { direction: string; listener: string; hcm: ProtoJson }[] = [];
  for (const [name, l] of generators.generate(p, proxy, LISTENER_TYPE)) {
    assert.ok(decodeMessage(LISTENER_TYPE, encodeMessage(LISTENER_TYPE, l)), name);
    // Istio's stats.PluginConfig is no Envoy proto: everything else is checked
    assert.deepEqual(ruleProblems(LISTENER_TYPE, l).filter((x) => !x.endsWith('not checked: TypedStruct of type.googleapis.com/stats.PluginConfig, not a type in Envoy\'s protos')), [], name);
    compileListener(l, `Listener ${name}`);
    for (const c of (l['filterChains'] as ProtoJson[] | undefined) ?? []) {
      for (const f of (c['filters'] as ProtoJson[] | undefined) ?? []) {
        const tc = f['typedConfig'] as ProtoJson;
        if (String(tc['@type']).endsWith('HttpConnectionManager')) out.push({ direction: String(l['trafficDirection']), listener: name, hcm: tc });
      }
    }
  }
  return out;
}

const als = (hcm: ProtoJson): ProtoJson[] => ((hcm['accessLog'] as ProtoJson[] | undefined) ?? []).filter((a) => a['name'] === 'envoy.access_loggers.http_grpc');

test('no Telemetry: connection managers log nothing and carry no stats filter', () => {
  const list = hcms(push(''));
  assert.ok(list.length >= 2);
  for (const { hcm } of list) {
    assert.equal(hcm['accessLog'], undefined);
    assert.ok(!((hcm['httpFilters'] as ProtoJson[]).some((f) => f['name'] === 'istio.stats')));
  }
});

test('the built-in sextant provider mesh-wide: ALS to xds-grpc on every connection manager, reporter by direction', () => {
  const list = hcms(push(`
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging:
  - providers: [{name: sextant}]
`));
  const inbound = list.filter((h) => h.direction === 'INBOUND');
  const outbound = list.filter((h) => h.direction === 'OUTBOUND');
  assert.equal(inbound.length, 1);
  assert.ok(outbound.length >= 1);
  for (const { direction, hcm } of list) {
    assert.deepEqual(als(hcm), [{
      name: 'envoy.access_loggers.http_grpc',
      typedConfig: {
        '@type': 'type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig',
        commonConfig: {
          logName: 'sextant',
          grpcService: { envoyGrpc: { clusterName: 'xds-grpc' } },
          transportApiVersion: 'V3',
          filterStateObjectsToLog: ['upstream_peer', 'downstream_peer'],
          customTags: [{ tag: 'reporter', literal: { value: direction === 'INBOUND' ? 'destination' : 'source' } }],
        },
      },
    }]);
  }
});

test('an envoyHttpAls provider with a filter, SERVER mode only: inbound logs to the service cluster, outbound nothing', () => {
  const p = push(`
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: errors, namespace: shop}
spec:
  accessLogging:
  - providers: [{name: central}]
    match: {mode: SERVER}
    filter: {expression: 'response.code >= 400 || request.path.startsWith("/admin")'}
`, `
extensionProviders:
- name: central
  envoyHttpAls: {service: als.observability.svc.cluster.local, port: 9000, logName: mesh-logs}
`);
  const list = hcms(p);
  for (const { direction, hcm } of list) {
    if (direction === 'OUTBOUND') {
      assert.deepEqual(als(hcm), []);
      continue;
    }
    const [log] = als(hcm);
    assert.ok(log);
    assert.deepEqual(log['filter'], { extensionFilter: { name: 'envoy.access_loggers.extension_filters.cel', typedConfig: { '@type': 'type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter', expression: 'response.code >= 400 || request.path.startsWith("/admin")' } } });
    const common = (log['typedConfig'] as ProtoJson)['commonConfig'] as ProtoJson;
    assert.deepEqual(common['grpcService'], { envoyGrpc: { clusterName: 'outbound|9000||als.observability.svc.cluster.local', authority: 'als.observability.svc.cluster.local' } });
    assert.equal(common['logName'], 'mesh-logs');
  }
  assert.deepEqual([...telemetryProblems(p)], []);
});

test('the most specific Telemetry wins: a workload disables what its namespace turns on', () => {
  const p = push(`
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: ns, namespace: shop}
spec:
  accessLogging:
  - providers: [{name: sextant}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: quiet-reviews, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  accessLogging:
  - disabled: true
`);
  for (const { hcm } of hcms(p, REVIEWS)) assert.deepEqual(als(hcm), []);
  for (const { hcm } of hcms(p, PRODUCTPAGE)) assert.equal(als(hcm).length, 1);
});

test('an unknown provider and a provider of another kind log nothing and are reported', () => {
  const p = push(`
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: ns, namespace: shop}
spec:
  accessLogging:
  - providers: [{name: nowhere}, {name: stdout}]
`, `
extensionProviders:
- name: stdout
  envoyFileAccessLog: {path: /dev/stdout}
`);
  for (const { hcm } of hcms(p)) assert.equal(hcm['accessLog'], undefined);
  assert.deepEqual([...telemetryProblems(p)].sort(), [
    ['provider/nowhere', 'no extension provider is named "nowhere" (MeshConfig extensionProviders; built in: sextant)'],
    ['provider/stdout', 'provider stdout is envoyFileAccessLog: access logs are generated for envoyHttpAls providers and the built-in sextant'],
  ]);
});

test('request_operation opt-in: the istio.stats filter before the router, with the RouteTemplates of the services served', () => {
  const p = push(`
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: operations, namespace: istio-system}
spec:
  metrics:
  - providers: [{name: prometheus}]
    overrides:
    - match: {metric: REQUEST_COUNT, mode: CLIENT_AND_SERVER}
      tagOverrides:
        request_operation: {value: "filter_state['wasm.istio_operationId']"}
---
apiVersion: sextant.io/v1alpha1
kind: RouteTemplates
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews
  templates:
  - template: /reviews/{id}
  - {template: "/reviews/{id}/votes", name: vote, methods: [POST]}
`);
  for (const { direction, hcm } of hcms(p)) {
    const filters = hcm['httpFilters'] as ProtoJson[];
    const names = filters.map((f) => f['name']);
    assert.equal(names.at(-1), 'envoy.filters.http.router');
    assert.equal(names.at(-2), 'istio.stats');
    const value = ((filters.at(-2)!['typedConfig'] as ProtoJson)['value']) as ProtoJson;
    assert.deepEqual(value['metrics'], [{ name: 'requests_total', dimensions: { request_operation: "filter_state['wasm.istio_operationId']" } }]);
    // inbound: the port serves reviews only, so its templates need no service; outbound: by service
    const service = direction === 'INBOUND' ? {} : { service: 'reviews.shop.svc.cluster.local' };
    assert.deepEqual(value['operations'], { templates: [{ ...service, template: '/reviews/{id}' }, { ...service, template: '/reviews/{id}/votes', name: 'vote', methods: ['POST'] }] });
  }
});

test('a Telemetry change is pushed (LDS) to the workloads it selects only', () => {
  const before = push('');
  const after = push(`
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: reviews-logs, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  accessLogging:
  - providers: [{name: sextant}]
`);
  const change = { keys: new Set(['Telemetry/shop/reviews-logs']), endpointsOnly: false };
  assert.deepEqual([...generators.planPush(before, after, change, REVIEWS)?.types ?? []], [LISTENER_TYPE]);
  assert.equal(generators.planPush(before, after, change, PRODUCTPAGE), null);
});

test('a gateway logs in CLIENT mode with reporter gateway; its namespace Telemetry reaches it', () => {
  const p = push(`
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: shop}
spec:
  hosts: ["*"]
  gateways: [istio-system/public]
  http: [{route: [{destination: {host: reviews.shop.svc.cluster.local}}]}]
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: edge, namespace: istio-system}
spec:
  accessLogging:
  - providers: [{name: sextant}]
    match: {mode: CLIENT}
`);
  const gw = generators.proxyFromNode({ id: 'router~127.0.1.100~ingress-1.istio-system~istio-system.svc.cluster.local', metadata: { NAMESPACE: 'istio-system', LABELS: { istio: 'ingressgateway' } } });
  const list = hcms(p, gw);
  assert.equal(list.length, 1);
  const common = ((als(list[0]!.hcm)[0]!['typedConfig'] as ProtoJson)['commonConfig']) as ProtoJson;
  assert.deepEqual(common['customTags'], [{ tag: 'reporter', literal: { value: 'gateway' } }]);
});

test('MeshConfig extension providers: envoyHttpAls read and checked, defaultProviders applied where no Telemetry names any', () => {
  const { config, warnings } = parseMeshConfig(`
defaultProviders: {accessLogging: [central]}
extensionProviders:
- name: central
  envoyHttpAls: {service: "observability/als.observability.svc.cluster.local", port: 9000}
- name: otel
  opentelemetry: {service: otel.observability.svc.cluster.local, port: 4317}
`, 'mesh.yaml');
  assert.deepEqual(warnings, []);
  assert.deepEqual(config.extensionProviders, [
    { name: 'central', kind: 'envoyHttpAls', envoyHttpAls: { service: 'observability/als.observability.svc.cluster.local', port: 9000, logName: 'http_envoy_accesslog', filterStateObjectsToLog: [], additionalRequestHeadersToLog: [], additionalResponseHeadersToLog: [], additionalResponseTrailersToLog: [] } },
    { name: 'otel', kind: 'opentelemetry' },
  ]);
  assert.deepEqual(config.defaultProviders, { accessLogging: ['central'] });
  assert.throws(() => parseMeshConfig('extensionProviders: [{name: a, envoyHttpAls: {service: x, port: 0}}]', 'mesh.yaml'), /mesh.yaml: extensionProviders\[0\].envoyHttpAls.port: expected a port number 1-65535, got 0/);
  assert.throws(() => parseMeshConfig('extensionProviders: [{name: a, envoyHttpAls: {port: 9}}]', 'mesh.yaml'), /extensionProviders\[0\].envoyHttpAls.service: required/);
  assert.throws(() => parseMeshConfig('extensionProviders: [{name: a}]', 'mesh.yaml'), /extensionProviders\[0\]: a provider sets exactly one kind/);
  assert.throws(() => parseMeshConfig('extensionProviders: [{name: a, prometheus: {}}, {name: a, prometheus: {}}]', 'mesh.yaml'), /extensionProviders\[1\].name: "a" is the name of an earlier provider/);
  // no Telemetry at all: the default provider logs on every connection manager
  for (const { hcm } of hcms(push('', `
defaultProviders: {accessLogging: [central]}
extensionProviders:
- name: central
  envoyHttpAls: {service: "observability/als.observability.svc.cluster.local", port: 9000}
`))) {
    const common = ((als(hcm)[0]!['typedConfig'] as ProtoJson)['commonConfig']) as ProtoJson;
    assert.deepEqual(common['grpcService'], { envoyGrpc: { clusterName: 'outbound|9000||als.observability.svc.cluster.local', authority: 'als.observability.svc.cluster.local' } });
    assert.equal(common['logName'], 'http_envoy_accesslog');
  }
});

test('the pilot itself as an envoyHttpAls service (defaultConfig.discoveryAddress): the xds-grpc cluster, no ServiceEntry needed', () => {
  const p = push(`
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh, namespace: istio-system}
spec:
  accessLogging: [{providers: [{name: pilot}]}]
`, `
extensionProviders:
- name: pilot
  envoyHttpAls: {service: istiod.istio-system.svc.cluster.local, port: 15012, logName: mesh}
`);
  for (const { hcm } of hcms(p)) {
    const common = ((als(hcm)[0]!['typedConfig'] as ProtoJson)['commonConfig']) as ProtoJson;
    assert.deepEqual(common['grpcService'], { envoyGrpc: { clusterName: 'xds-grpc', authority: 'istiod.istio-system.svc.cluster.local' } });
  }
});

test('tag overrides of labels the sidecars do not produce are left out and reported, the others kept', () => {
  const p = push(`
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: custom, namespace: shop}
spec:
  metrics:
  - overrides:
    - tagOverrides:
        request_host: {value: "request.host"}
        destination_version: {value: "x"}
    - tagOverrides:
        only_custom: {value: "request.method"}
`);
  for (const { hcm } of hcms(p)) {
    const stats = (hcm['httpFilters'] as ProtoJson[]).find((f) => f['name'] === 'istio.stats');
    assert.deepEqual(((stats?.['typedConfig'] as ProtoJson)['value'] as ProtoJson)['metrics'], [{ dimensions: { destination_version: 'x' } }]);
  }
  assert.deepEqual([...telemetryProblems(p).keys()].sort(), ['Telemetry/shop/custom#metrics.overrides[0].tagOverrides.request_host', 'Telemetry/shop/custom#metrics.overrides[1].tagOverrides.only_custom']);
});
