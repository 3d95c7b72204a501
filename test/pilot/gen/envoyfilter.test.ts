// EnvoyFilter patches: every operation on listeners, filter chains, network and HTTP filters,
// route configurations, virtual hosts, routes and clusters; match context; workload
// selectors; snake_case values normalized via the protos; shared resources left untouched.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE } from '../../../src/envoy/index.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';
import { generators } from '../../../src/pilot/gen/index.ts';
import { envoyFilterProblems } from '../../../src/pilot/gen/envoyfilter.ts';
import type { SextantPushContext } from '../../../src/pilot/push/context.ts';
import { generate, resources, sidecar } from './helpers.ts';

const REGISTRY = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}, {number: 3306, name: tcp, protocol: TCP}]
  workloadSelector: {labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: default}
spec: {address: 10.0.0.30, labels: {app: reviews, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]
`;

const productpage = sidecar('10.0.0.10', 'productpage-v1', 'default', { app: 'productpage' });
const reviews = sidecar('10.0.0.30', 'reviews-v1', 'default', { app: 'reviews', version: 'v1' });

function withFilter(patches: string, selector = ''): SextantPushContext {
  const ef = `apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: ef, namespace: default}\nspec:\n${selector}  configPatches:\n${patches}`;
  return generators.buildPushContext(resources(`${REGISTRY}---\n${ef}`)) as SextantPushContext;
}

function httpFilterNames(l: ProtoJson | undefined, chainName?: string): string[] {
  const chains = l?.['filterChains'] as ProtoJson[];
  const chain = chainName === undefined ? chains[0] : chains.find((c) => c['name'] === chainName);
  const f = (chain?.['filters'] as ProtoJson[]).find((x) => x['name'] === 'envoy.filters.network.http_connection_manager');
  return ((f?.['typedConfig'] as ProtoJson)['httpFilters'] as ProtoJson[]).map((h) => String(h['name']));
}

test('HTTP_FILTER: INSERT_BEFORE the router on outbound only, value in snake_case with a Lua typed_config', () => {
  const push = withFilter(`
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_OUTBOUND
      listener:
        portNumber: 9080
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter: {name: envoy.filters.http.router}
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.lua
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
          default_source_code: {inline_string: "function envoy_on_request(h) end"}
`);
  const lds = generate(push, reviews, LISTENER_TYPE);
  assert.deepEqual(httpFilterNames(lds.get('0.0.0.0_9080')), ['envoy.filters.http.fault', 'envoy.filters.http.cors', 'envoy.lua', 'envoy.filters.http.router']);
  const lua = ((((lds.get('0.0.0.0_9080')?.['filterChains'] as ProtoJson[])[0]?.['filters'] as ProtoJson[])[0]?.['typedConfig'] as ProtoJson)['httpFilters'] as ProtoJson[])[2];
  assert.deepEqual(lua, { name: 'envoy.lua', typedConfig: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua', defaultSourceCode: { inlineString: 'function envoy_on_request(h) end' } } });
  // The inbound connection manager (virtualInbound) is not outbound: untouched.
  assert.deepEqual(httpFilterNames(lds.get('virtualInbound'), 'inbound|9080||'), ['envoy.filters.http.fault', 'envoy.filters.http.cors', 'envoy.filters.http.router']);
});

test('HTTP_FILTER: INSERT_FIRST, INSERT_AFTER, REMOVE, REPLACE, MERGE and ADD', () => {
  const sub = (name: string) => `      listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager, subFilter: {name: ${name}}}}}`;
  const push = withFilter(`
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_OUTBOUND
${sub('envoy.filters.http.cors')}
    patch: {operation: REMOVE}
  - applyTo: HTTP_FILTER
    match: {context: SIDECAR_OUTBOUND}
    patch:
      operation: INSERT_FIRST
      value: {name: first, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault}}
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_OUTBOUND
${sub('first')}
    patch:
      operation: INSERT_AFTER
      value: {name: second, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault}}
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_OUTBOUND
${sub('envoy.filters.http.fault')}
    patch:
      operation: REPLACE
      value: {name: envoy.filters.http.fault, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault, max_active_faults: 7}}
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_OUTBOUND
${sub('envoy.filters.http.router')}
    patch:
      operation: MERGE
      value: {typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router, suppress_envoy_headers: true}}
`);
  const l = generate(push, productpage, LISTENER_TYPE).get('0.0.0.0_9080');
  assert.deepEqual(httpFilterNames(l), ['first', 'second', 'envoy.filters.http.fault', 'envoy.filters.http.router']);
  const hf = ((((l?.['filterChains'] as ProtoJson[])[0]?.['filters'] as ProtoJson[])[0]?.['typedConfig'] as ProtoJson)['httpFilters'] as ProtoJson[]);
  assert.deepEqual(hf[2]?.['typedConfig'], { '@type': 'type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault', maxActiveFaults: 7 });
  assert.deepEqual(hf[3]?.['typedConfig'], { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router', suppressEnvoyHeaders: true });
});

test('NETWORK_FILTER: MERGE into the connection manager, INSERT_BEFORE tcp_proxy, REMOVE', () => {
  const push = withFilter(`
  - applyTo: NETWORK_FILTER
    match:
      context: SIDECAR_OUTBOUND
      listener: {portNumber: 9080, filterChain: {filter: {name: envoy.filters.network.http_connection_manager}}}
    patch:
      operation: MERGE
      value:
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          common_http_protocol_options: {idle_timeout: 5s}
  - applyTo: NETWORK_FILTER
    match:
      listener: {portNumber: 3306, filterChain: {filter: {name: envoy.filters.network.tcp_proxy}}}
    patch:
      operation: INSERT_BEFORE
      value: {name: my.rbac, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC, stat_prefix: rbac}}
  - applyTo: NETWORK_FILTER
    match:
      listener: {name: virtualOutbound, filterChain: {filter: {name: envoy.filters.network.tcp_proxy}}}
    patch: {operation: REMOVE}
`);
  const lds = generate(push, productpage, LISTENER_TYPE);
  const hcm = (((lds.get('0.0.0.0_9080')?.['filterChains'] as ProtoJson[])[0]?.['filters'] as ProtoJson[])[0]?.['typedConfig']) as ProtoJson;
  assert.deepEqual(hcm['commonHttpProtocolOptions'], { idleTimeout: '5s' });
  assert.equal(hcm['statPrefix'], 'outbound_0.0.0.0_9080'); // merged, not replaced
  const tcp = [...lds.values()].find((l) => String(l['name']).endsWith('_3306'));
  assert.deepEqual(((tcp?.['filterChains'] as ProtoJson[])[0]?.['filters'] as ProtoJson[]).map((f) => f['name']), ['my.rbac', 'envoy.filters.network.tcp_proxy']);
  assert.deepEqual((lds.get('virtualOutbound')?.['filterChains'] as ProtoJson[])[0]?.['filters'], []);
});

test('LISTENER and FILTER_CHAIN: ADD, MERGE, REMOVE', () => {
  const push = withFilter(`
  - applyTo: LISTENER
    match: {context: SIDECAR_OUTBOUND}
    patch:
      operation: ADD
      value:
        name: extra_15999
        address: {socket_address: {address: 127.0.0.1, port_value: 15999}}
        traffic_direction: OUTBOUND
        filter_chains: [{filters: [{name: envoy.filters.network.tcp_proxy, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: x, cluster: BlackHoleCluster}}]}]
  - applyTo: LISTENER
    match: {listener: {portNumber: 9080}}
    patch: {operation: MERGE, value: {per_connection_buffer_limit_bytes: 32768}}
  - applyTo: LISTENER
    match: {listener: {name: virtualOutbound}}
    patch: {operation: REMOVE}
  - applyTo: FILTER_CHAIN
    match: {context: SIDECAR_INBOUND, listener: {portNumber: 9080}}
    patch: {operation: MERGE, value: {transport_socket_connect_timeout: 3s}}
  - applyTo: FILTER_CHAIN
    match: {context: SIDECAR_INBOUND, listener: {name: virtualInbound, filterChain: {name: InboundPassthroughFilterChain}}}
    patch: {operation: REMOVE}
`);
  const lds = generate(push, reviews, LISTENER_TYPE);
  assert.deepEqual([...lds.keys()], ['0.0.0.0_9080', '0.0.0.0_3306', 'virtualInbound', 'extra_15999']);
  assert.equal(lds.get('0.0.0.0_9080')?.['perConnectionBufferLimitBytes'], 32768);
  const chains = lds.get('virtualInbound')?.['filterChains'] as ProtoJson[];
  assert.deepEqual(chains.map((c) => [c['name'], c['transportSocketConnectTimeout']]), [['inbound|3306||', undefined], ['inbound|9080||', '3s']]);
});

test('ROUTE_CONFIGURATION, VIRTUAL_HOST and HTTP_ROUTE operations', () => {
  const push = withFilter(`
  - applyTo: ROUTE_CONFIGURATION
    match: {routeConfiguration: {portNumber: 9080}}
    patch: {operation: MERGE, value: {request_headers_to_add: [{header: {key: x-mesh, value: sextant}}]}}
  - applyTo: VIRTUAL_HOST
    match: {routeConfiguration: {name: "9080"}}
    patch:
      operation: ADD
      value: {name: extra, domains: [extra.example.com], routes: [{match: {prefix: /}, direct_response: {status: 204}}]}
  - applyTo: VIRTUAL_HOST
    match: {routeConfiguration: {vhost: {name: allow_any}}}
    patch: {operation: REMOVE}
  - applyTo: HTTP_ROUTE
    match: {routeConfiguration: {vhost: {name: "reviews.default.svc.cluster.local:9080", route: {name: default}}}}
    patch: {operation: MERGE, value: {route: {timeout: 2s}}}
  - applyTo: HTTP_ROUTE
    match: {routeConfiguration: {vhost: {name: "reviews.default.svc.cluster.local:9080"}}}
    patch:
      operation: INSERT_FIRST
      value: {name: health, match: {path: /healthz}, direct_response: {status: 200}}
  - applyTo: HTTP_ROUTE
    match: {routeConfiguration: {vhost: {name: "reviews.default.svc.cluster.local:9080", route: {name: default}}}}
    patch:
      operation: INSERT_BEFORE
      value: {name: before-default, match: {prefix: /b}, direct_response: {status: 418}}
`);
  const rc = generate(push, productpage, ROUTE_TYPE).get('9080');
  assert.deepEqual(rc?.['requestHeadersToAdd'], [{ header: { key: 'x-mesh', value: 'sextant' } }]);
  const vhosts = rc?.['virtualHosts'] as ProtoJson[];
  assert.deepEqual(vhosts.map((v) => v['name']), ['reviews.default.svc.cluster.local:9080', 'extra']);
  const routes = vhosts[0]?.['routes'] as ProtoJson[];
  assert.deepEqual(routes.map((r) => r['name']), ['health', 'before-default', 'default']);
  assert.equal((routes[2]?.['route'] as ProtoJson)['timeout'], '2s');
  assert.equal((routes[2]?.['route'] as ProtoJson)['cluster'], 'outbound|9080||reviews.default.svc.cluster.local');
});

test('CLUSTER: MERGE by service/port/subset, REPLACE and REMOVE by name, ADD', () => {
  const push = withFilter(`
  - applyTo: CLUSTER
    match: {context: SIDECAR_OUTBOUND, cluster: {service: reviews.default.svc.cluster.local, portNumber: 9080, subset: v1}}
    patch: {operation: MERGE, value: {connect_timeout: 1s, per_connection_buffer_limit_bytes: 1024}}
  - applyTo: CLUSTER
    match: {cluster: {name: BlackHoleCluster}}
    patch: {operation: REMOVE}
  - applyTo: CLUSTER
    match: {cluster: {name: "outbound|3306||reviews.default.svc.cluster.local"}}
    patch: {operation: REPLACE, value: {name: "outbound|3306||reviews.default.svc.cluster.local", type: STATIC, connect_timeout: 2s}}
  - applyTo: CLUSTER
    patch: {operation: ADD, value: {name: extra, type: STATIC, connect_timeout: 1s}}
`);
  const cds = generate(push, productpage, CLUSTER_TYPE);
  assert.equal(cds.get('outbound|9080|v1|reviews.default.svc.cluster.local')?.['connectTimeout'], '1s');
  assert.equal(cds.get('outbound|9080|v1|reviews.default.svc.cluster.local')?.['perConnectionBufferLimitBytes'], 1024);
  assert.equal(cds.get('outbound|9080||reviews.default.svc.cluster.local')?.['connectTimeout'], '10s');
  assert.equal(cds.has('BlackHoleCluster'), false);
  assert.deepEqual(cds.get('outbound|3306||reviews.default.svc.cluster.local'), { name: 'outbound|3306||reviews.default.svc.cluster.local', type: 'STATIC', connectTimeout: '2s' });
  assert.deepEqual(cds.get('extra'), { name: 'extra', type: 'STATIC', connectTimeout: '1s' });
});

test('a workloadSelector limits the filter to the selected proxies; shared resources are not modified', () => {
  const push = withFilter(`
  - applyTo: CLUSTER
    match: {cluster: {name: PassthroughCluster}}
    patch: {operation: MERGE, value: {connect_timeout: 3s}}
`, '  workloadSelector: {labels: {app: reviews}}\n');
  assert.equal(generate(push, reviews, CLUSTER_TYPE).get('PassthroughCluster')?.['connectTimeout'], '3s');
  assert.equal(generate(push, productpage, CLUSTER_TYPE).get('PassthroughCluster')?.['connectTimeout'], '10s');
  assert.equal(generate(push, reviews, CLUSTER_TYPE).get('PassthroughCluster')?.['connectTimeout'], '3s');
});

test('an invalid patch value is skipped and reported with its field; the other patches apply', () => {
  const push = withFilter(`
  - applyTo: CLUSTER
    match: {cluster: {name: PassthroughCluster}}
    patch: {operation: MERGE, value: {connect_timeoutt: 3s}}
  - applyTo: CLUSTER
    match: {cluster: {name: BlackHoleCluster}}
    patch: {operation: MERGE, value: {connect_timeout: 4s}}
`);
  const cds = generate(push, productpage, CLUSTER_TYPE);
  assert.equal(cds.get('PassthroughCluster')?.['connectTimeout'], '10s');
  assert.equal(cds.get('BlackHoleCluster')?.['connectTimeout'], '4s');
  assert.deepEqual([...envoyFilterProblems(push)], [['EnvoyFilter/default/ef', 'configPatches[0].patch.value: Cluster.connect_timeoutt: no such field in envoy.config.cluster.v3.Cluster']]);
});

test('patched resources are built once per snapshot for proxies of the same class', () => {
  const push = withFilter(`
  - applyTo: CLUSTER
    match: {cluster: {name: PassthroughCluster}}
    patch: {operation: MERGE, value: {connect_timeout: 3s}}
  - applyTo: VIRTUAL_HOST
    match: {routeConfiguration: {vhost: {name: allow_any}}}
    patch: {operation: REMOVE}
`, '  workloadSelector: {labels: {app: reviews}}\n');
  const twin = sidecar('10.0.0.30', 'reviews-v1-b', 'default', { app: 'reviews', version: 'v1' });
  assert.equal(generators.generate(push, reviews, CLUSTER_TYPE).get('PassthroughCluster'), generators.generate(push, twin, CLUSTER_TYPE).get('PassthroughCluster'));
  assert.equal(generators.generate(push, reviews, ROUTE_TYPE).get('9080'), generators.generate(push, twin, ROUTE_TYPE).get('9080'));
  assert.equal(generators.generate(push, reviews, LISTENER_TYPE).get('virtualInbound'), generators.generate(push, twin, LISTENER_TYPE).get('virtualInbound'));
  assert.notEqual(generators.generate(push, reviews, CLUSTER_TYPE).get('PassthroughCluster'), generators.generate(push, productpage, CLUSTER_TYPE).get('PassthroughCluster'));
});

test('route patches with context SIDECAR_INBOUND change the inline inbound route configuration', () => {
  const push = withFilter(`
  - applyTo: HTTP_ROUTE
    match: {context: SIDECAR_INBOUND, routeConfiguration: {portNumber: 9080, vhost: {route: {name: default}}}}
    patch: {operation: MERGE, value: {route: {timeout: 9s}}}
`);
  const lds = generate(push, reviews, LISTENER_TYPE);
  const chain = (lds.get('virtualInbound')?.['filterChains'] as ProtoJson[]).find((c) => c['name'] === 'inbound|9080||');
  const rc = ((chain?.['filters'] as ProtoJson[])[0]?.['typedConfig'] as ProtoJson)['routeConfig'] as ProtoJson;
  const route = ((rc['virtualHosts'] as ProtoJson[])[0]?.['routes'] as ProtoJson[])[0];
  assert.equal((route?.['route'] as ProtoJson)['timeout'], '9s');
  // Outbound RDS is untouched.
  const out = generate(push, reviews, ROUTE_TYPE).get('9080');
  const vh = (out?.['virtualHosts'] as ProtoJson[]).find((v) => v['name'] === 'reviews.default.svc.cluster.local:9080');
  assert.equal(((vh?.['routes'] as ProtoJson[])[0]?.['route'] as ProtoJson)['timeout'], '0s');
  const before = generators.buildPushContext(resources(REGISTRY));
  assert.deepEqual([...(generators.planPush(before, push, { keys: new Set(['EnvoyFilter/default/ef']), endpointsOnly: false }, reviews)?.types ?? [])], [LISTENER_TYPE]);
});
