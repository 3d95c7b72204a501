// Which filters a listener may name: the sidecar runs router, fault, CORS and istio.stats
// (HTTP), http_connection_manager, tcp_proxy and istio.stats (network). Anything else is
// refused with the listener, the filter and its type in the NACK reason, unless an HTTP
// filter is marked is_optional; a type the sidecar's protos lack decodes to just its @type.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CLUSTER_TYPE, FAULT_TYPE, HCM_TYPE, LISTENER_TYPE, ROUTER_TYPE, TCP_PROXY_TYPE, TYPED_STRUCT_TYPE,
  encodeMessage, messageType,
} from '../../src/envoy/index.ts';
import type { ProtoJson } from '../../src/envoy/index.ts';
import { compileListener } from '../../src/proxy/listener/listener-spec.ts';
import type { HttpConnectionManagerSpec } from '../../src/proxy/listener/listener-spec.ts';
import { decodeResource } from '../../src/proxy/xds/ads-client.ts';

const ROUTER = { name: 'envoy.filters.http.router', typedConfig: { '@type': ROUTER_TYPE } };
const BUFFER = {
  name: 'envoy.filters.http.buffer',
  typedConfig: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer', maxRequestBytes: 1024 },
};

function listener(httpFilters: ProtoJson[], networkFilters: ProtoJson[] = []): ProtoJson {
  return {
    name: 'outbound_9080',
    address: { socketAddress: { address: '127.0.0.1', portValue: 9080 } },
    filterChains: [{ filters: [...networkFilters, { name: 'envoy.filters.network.http_connection_manager', typedConfig: { '@type': HCM_TYPE, statPrefix: 's', rds: { routeConfigName: '9080' }, httpFilters } }] }],
  };
}

const compile = (l: ProtoJson) => compileListener(l, 'Listener outbound_9080');
const hcm = (l: ProtoJson): HttpConnectionManagerSpec => compile(l).filterChains[0]!.network as HttpConnectionManagerSpec;
const AT = 'Listener outbound_9080.filterChains[0].filters[0].typedConfig.httpFilters';

test('the sidecar chain (fault, cors, router) and an empty chain compile', () => {
  const spec = hcm(listener([{ name: 'envoy.filters.http.fault', typedConfig: { '@type': FAULT_TYPE } }, { name: 'envoy.filters.http.cors', typedConfig: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors' } }, ROUTER]));
  assert.equal(spec.faultFilter, true);
  assert.deepEqual(spec.skippedFilters, []);
  assert.equal(hcm(listener([])).faultFilter, false);
});

test('an HTTP filter the proxy does not implement is refused, naming listener, filter and type', () => {
  assert.throws(() => compile(listener([BUFFER, ROUTER])), {
    name: 'ConfigError',
    message: `${AT}[0]: HTTP filter "envoy.filters.http.buffer" (type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer) is not supported by this proxy; set is_optional: true to run without it`,
  });
  // A TypedStruct names its implementation by the type inside it.
  assert.throws(() => compile(listener([{ name: 'my.lua', typedConfig: { '@type': TYPED_STRUCT_TYPE, typeUrl: 'type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua', value: {} } }, ROUTER])),
    { message: `${AT}[0]: HTTP filter "my.lua" (type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua) is not supported by this proxy; set is_optional: true to run without it` });
  // …and one the proxy runs is compiled from that value (a Wasm filter without its PluginConfig is refused naming the field).
  assert.throws(() => compile(listener([{ name: 'my.wasm', typedConfig: { '@type': TYPED_STRUCT_TYPE, typeUrl: 'type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm', value: {} } }, ROUTER])),
    { message: `${AT}[0].typedConfig.value.config: required (the plugin's PluginConfig)` });
  assert.throws(() => compile(listener([{ name: 'envoy.filters.http.lua' }, ROUTER])),
    { message: `${AT}[0]: HTTP filter "envoy.filters.http.lua" is not supported by this proxy; set is_optional: true to run without it` });
  assert.throws(() => compile(listener([{ name: 'ecds', configDiscovery: { configSource: { ads: {} } } }, ROUTER])),
    { message: `${AT}[0]: HTTP filter "ecds" (config_discovery (ECDS)) is not supported by this proxy; set is_optional: true to run without it` });
});

test('marked is_optional, such a filter is skipped and reported', () => {
  const spec = hcm(listener([{ ...BUFFER, isOptional: true }, ROUTER]));
  assert.deepEqual(spec.skippedFilters, [{ name: 'envoy.filters.http.buffer', implementation: BUFFER.typedConfig['@type'], at: `${AT}[0]` }]);
});

test('the router ends a non-empty chain, as in Envoy', () => {
  assert.throws(() => compile(listener([ROUTER, { name: 'envoy.filters.http.fault', typedConfig: { '@type': FAULT_TYPE } }])),
    { message: `${AT}[1]: HTTP filter "envoy.filters.http.fault" (${FAULT_TYPE}) comes after the router, which must be the last HTTP filter` });
  assert.throws(() => compile(listener([{ name: 'envoy.filters.http.fault', typedConfig: { '@type': FAULT_TYPE } }])),
    { message: `${AT}: the last HTTP filter must be the router (envoy.filters.http.router)` });
  // An optional filter after the router is skipped, not an error.
  assert.equal(hcm(listener([ROUTER, { ...BUFFER, isOptional: true }])).skippedFilters.length, 1);
});

test('a network filter the proxy does not implement is refused (network filters cannot be optional)', () => {
  assert.throws(() => compile(listener([ROUTER], [{ name: 'envoy.filters.network.local_ratelimit', typedConfig: { '@type': 'type.googleapis.com/envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit', statPrefix: 'r' } }])), {
    message: 'Listener outbound_9080.filterChains[0].filters[0]: network filter "envoy.filters.network.local_ratelimit" (type.googleapis.com/envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit) is not supported by this proxy',
  });
  const tcp = { name: 'l', address: { socketAddress: { address: '127.0.0.1', portValue: 1 } }, filterChains: [{ filters: [
    { name: 'istio.stats', typedConfig: { '@type': TYPED_STRUCT_TYPE, typeUrl: 'type.googleapis.com/stats.PluginConfig', value: {} } },
    { name: 'envoy.filters.network.tcp_proxy', typedConfig: { '@type': TCP_PROXY_TYPE, statPrefix: 't', cluster: 'c' } },
  ] }] };
  assert.equal(compileListener(tcp, 'Listener l').filterChains[0]!.network.kind, 'tcp');
});

/** A Listener's bytes whose first HTTP filter is an Any of `typeUrl`, a type no proto here defines. */
function listenerBytesWithUnknownFilter(typeUrl: string, isOptional: boolean): Uint8Array {
  const L = messageType(LISTENER_TYPE);
  const H = messageType(HCM_TYPE);
  // protobufjs keeps google.protobuf.Any's proto field names: type_url, value.
  const l = L.decode(encodeMessage(LISTENER_TYPE, listener([isOptional ? { ...ROUTER, isOptional } : ROUTER, ROUTER]))) as unknown as { filterChains: { filters: { typedConfig: { type_url: string; value: Uint8Array } }[] }[] };
  const outer = l.filterChains[0]!.filters[0]!.typedConfig;
  const h = H.decode(outer.value) as unknown as { httpFilters: { name: string; typedConfig: { type_url: string; value: Uint8Array } }[] };
  h.httpFilters[0]!.name = 'example.custom';
  h.httpFilters[0]!.typedConfig = { type_url: typeUrl, value: Uint8Array.from([0x0a, 0x02, 0x68, 0x69]) };
  outer.value = H.encode(H.fromObject(h)).finish();
  return L.encode(L.fromObject(l)).finish();
}

test('a filter of a type the protos lack decodes to its @type, then is refused or skipped by that type', () => {
  const unknown = 'type.googleapis.com/example.v1.CustomFilter';
  const required = decodeResource(LISTENER_TYPE, { typeUrl: LISTENER_TYPE, value: listenerBytesWithUnknownFilter(unknown, false) });
  const decoded = (((required['filterChains'] as ProtoJson[])[0]!['filters'] as ProtoJson[])[0]!['typedConfig'] as ProtoJson)['httpFilters'] as ProtoJson[];
  assert.deepEqual(decoded[0], { name: 'example.custom', typedConfig: { '@type': unknown } });
  assert.throws(() => compile(required),
    { message: `${AT}[0]: HTTP filter "example.custom" (${unknown}) is not supported by this proxy; set is_optional: true to run without it` });
  const optional = decodeResource(LISTENER_TYPE, { typeUrl: LISTENER_TYPE, value: listenerBytesWithUnknownFilter(unknown, true) });
  assert.deepEqual(hcm(optional).skippedFilters.map((f) => f.implementation), [unknown]);
});

test('outside a Listener an unknown type still fails the decode, naming it', () => {
  const C = messageType(CLUSTER_TYPE);
  const c = C.decode(encodeMessage(CLUSTER_TYPE, { name: 'c', type: 'EDS', typedExtensionProtocolOptions: { x: { '@type': ROUTER_TYPE } } })) as unknown as { typedExtensionProtocolOptions: Record<string, { type_url: string }> };
  c.typedExtensionProtocolOptions['x']!.type_url = 'type.googleapis.com/example.v1.Options';
  const bytes = C.encode(C.fromObject(c)).finish();
  assert.throws(() => decodeResource(CLUSTER_TYPE, { typeUrl: CLUSTER_TYPE, value: bytes }), /no such type: example\.v1\.Options/);
});
