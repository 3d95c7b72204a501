// The protoc-gen-validate rules in Envoy's protos, checked on hand-built Envoy messages:
// each rule kind names the field (in proto3 JSON names), the rule and what is expected, an
// Any's payload is checked as its own type, and what the checker cannot check is said out loud.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import protobuf from 'protobufjs';
import { CLUSTER_TYPE, HCM_TYPE, LISTENER_TYPE, ROUTE_TYPE, XDS_TYPED_STRUCT_TYPE, checkDecoded, checkResource, formatRuleViolation, ruleType } from '../../src/envoy/index.ts';
import type { ProtoJson, RuleViolation } from '../../src/envoy/index.ts';

function violations(typeUrl: string, json: ProtoJson): RuleViolation[] {
  const report = checkResource(typeUrl, json);
  assert.deepEqual([report.unimplemented, report.unchecked], [[], []]);
  return report.violations;
}

const v = (path: string, rule: string, message: string): RuleViolation => ({ path, rule, message });

function listener(hcm: ProtoJson): ProtoJson {
  return {
    name: '0.0.0.0_9080',
    address: { socketAddress: { address: '0.0.0.0', portValue: 9080 } },
    filterChains: [{ filters: [{ name: 'envoy.filters.network.http_connection_manager', typedConfig: { '@type': HCM_TYPE, ...hcm } }] }],
  };
}

const ROUTER = { name: 'envoy.filters.http.router', typedConfig: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } };
const RDS = { configSource: { ads: {}, resourceApiVersion: 'V3' }, routeConfigName: '9080' };

test('a valid cluster, listener and route configuration break no rule, and rules were evaluated', () => {
  const cluster = { name: 'outbound|9080||reviews.default.svc.cluster.local', type: 'EDS', connectTimeout: '10s', lbPolicy: 'LEAST_REQUEST', edsClusterConfig: { edsConfig: { ads: {}, resourceApiVersion: 'V3' } } };
  const route = { name: '9080', virtualHosts: [{ name: 'reviews:9080', domains: ['reviews', 'reviews:9080'], routes: [{ match: { prefix: '/' }, route: { cluster: 'outbound|9080||reviews.default.svc.cluster.local' } }] }] };
  for (const [type, json] of [[CLUSTER_TYPE, cluster], [LISTENER_TYPE, listener({ statPrefix: 'outbound_0.0.0.0_9080', rds: RDS, httpFilters: [ROUTER] })], [ROUTE_TYPE, route]] as const) {
    const report = checkResource(type, json);
    assert.deepEqual(report.violations, [], type);
    assert.ok(report.evaluated > 0, type);
  }
});

test('string.min_len: a cluster with an empty name', () => {
  assert.deepEqual(violations(CLUSTER_TYPE, { name: '' }), [v('Cluster.name', 'string.min_len', 'value length must be at least 1 characters')]);
  // Unset is the proto3 default, "": the same violation, as Envoy sees it.
  assert.deepEqual(violations(CLUSTER_TYPE, { type: 'STATIC' }), [v('Cluster.name', 'string.min_len', 'value length must be at least 1 characters')]);
  assert.equal(formatRuleViolation(v('Cluster.name', 'string.min_len', 'value length must be at least 1 characters')), 'Cluster.name: value length must be at least 1 characters (string.min_len)');
});

test('repeated.min_items, a required oneof and message.required in a route configuration', () => {
  assert.deepEqual(violations(ROUTE_TYPE, { name: '9080', virtualHosts: [{ name: 'reviews', domains: [], routes: [{ match: { prefix: '/' } }, { route: { cluster: 'c' } }] }] }), [
    v('RouteConfiguration.virtualHosts[0].domains', 'repeated.min_items', 'value must contain at least 1 item(s)'),
    v('RouteConfiguration.virtualHosts[0].routes[0]', '(validate.required)', 'one of route, redirect, directResponse, filterAction, nonForwardingAction must be set (oneof action)'),
    v('RouteConfiguration.virtualHosts[0].routes[1].match', 'message.required', 'value is required'),
  ]);
});

test('an Any payload is decoded and checked: a negative duration where gte 0, an HTTP filter without a name', () => {
  assert.deepEqual(violations(LISTENER_TYPE, listener({ statPrefix: 'in', rds: RDS, requestHeadersTimeout: '-1s', httpFilters: [{ name: '' }, ROUTER] })), [
    v('Listener.filterChains[0].filters[0].typedConfig.httpFilters[0].name', 'string.min_len', 'value length must be at least 1 characters'),
    v('Listener.filterChains[0].filters[0].typedConfig.requestHeadersTimeout', 'duration.gte', 'value must be greater than or equal to 0s'),
  ]);
  // The HTTP connection manager must say where its routes come from.
  assert.deepEqual(violations(LISTENER_TYPE, listener({ statPrefix: 'in', httpFilters: [ROUTER] })), [
    v('Listener.filterChains[0].filters[0].typedConfig', '(validate.required)', 'one of rds, routeConfig, scopedRoutes must be set (oneof route_specifier)'),
  ]);
});

test('a TypedStruct is checked as the type it names, as Envoy converts it', () => {
  const typed = { '@type': XDS_TYPED_STRUCT_TYPE, typeUrl: HCM_TYPE, value: { stat_prefix: '', rds: { config_source: { ads: {} }, route_config_name: 'r' } } };
  const l = listener({});
  ((l['filterChains'] as ProtoJson[])[0]!['filters'] as ProtoJson[])[0]!['typedConfig'] = typed;
  assert.deepEqual(violations(LISTENER_TYPE, l), [
    v('Listener.filterChains[0].filters[0].typedConfig.statPrefix', 'string.min_len', 'value length must be at least 1 characters'),
  ]);
});

test('any.required and enum.defined_only', () => {
  assert.deepEqual(violations(CLUSTER_TYPE, { name: 'c', type: 99, loadBalancingPolicy: { policies: [{ typedExtensionConfig: { name: 'envoy.load_balancing_policies.round_robin' } }] } }), [
    v('Cluster.type', 'enum.defined_only', 'value 99 must be one of the defined enum values'),
    v('Cluster.loadBalancingPolicy.policies[0].typedExtensionConfig.typedConfig', 'any.required', 'value is required'),
  ]);
});

test('numbers: uint32.lte on a port; a range with both bounds; a wrapper checked by its value', () => {
  assert.deepEqual(violations('envoy.config.core.v3.SocketAddress', { address: '10.0.0.1', portValue: 65536 }), [
    v('SocketAddress.portValue', 'uint32.lte', 'value must be less than or equal to 65535'),
  ]);
  assert.deepEqual(violations('envoy.config.route.v3.DirectResponseAction', { status: 600 }), [
    v('DirectResponseAction.status', 'uint32.gte,lt', 'value must be inside range [200, 600)'),
  ]);
  assert.deepEqual(violations('envoy.config.route.v3.DirectResponseAction', { status: 599 }), []);
  // UInt64Value minimum_ring_size: lte 8388608 applies to the wrapped value when it is set.
  assert.deepEqual(violations('envoy.config.cluster.v3.Cluster.RingHashLbConfig', { minimumRingSize: 8388609 }), [
    v('RingHashLbConfig.minimumRingSize', 'uint64.lte', 'value must be less than or equal to 8388608'),
  ]);
  assert.deepEqual(violations('envoy.config.cluster.v3.Cluster.RingHashLbConfig', {}), []);
});

test('durations: an exclusive range (0 or at least 1s) and required', () => {
  assert.deepEqual(violations('envoy.config.core.v3.QuicKeepAliveSettings', { maxInterval: '0.5s' }), [
    v('QuicKeepAliveSettings.maxInterval', 'duration.gte,lte', 'value must be outside range (0s, 1s)'),
  ]);
  assert.deepEqual(violations('envoy.config.core.v3.QuicKeepAliveSettings', { maxInterval: '0s', initialInterval: '2s' }), []);
  assert.deepEqual(violations('envoy.config.core.v3.HttpUri', { uri: 'http://jwks', cluster: 'jwks' }), [
    v('HttpUri.timeout', 'duration.required', 'value is required'),
  ]);
  assert.deepEqual(violations('envoy.config.core.v3.HttpUri', { uri: 'http://jwks', cluster: 'jwks', timeout: '-0.001s' }), [
    v('HttpUri.timeout', 'duration.gte,lt', 'value must be inside range [0s, 4294967296s)'),
  ]);
});

test('header names and values: strict by default, only NUL, CR and LF refused with strict: false', () => {
  assert.deepEqual(violations(ROUTE_TYPE, { name: 'r', requestHeadersToAdd: [{ header: { key: 'x y', value: 'ok' } }, { header: { key: 'x\nz', value: 'a\rb' } }] }), [
    v('RouteConfiguration.requestHeadersToAdd[1].header.key', 'string.well_known_regex', 'value does not match HTTP_HEADER_NAME (strict: false): /^[^\\u0000\\u000A\\u000D]*$/'),
    v('RouteConfiguration.requestHeadersToAdd[1].header.value', 'string.well_known_regex', 'value does not match HTTP_HEADER_VALUE (strict: false): /^[^\\u0000\\u000A\\u000D]*$/'),
  ]);
  // override_auto_sni_header: strict, and ignore_empty lets "" through.
  assert.deepEqual(violations('envoy.config.core.v3.UpstreamHttpProtocolOptions', { overrideAutoSniHeader: 'x y' }), [
    v('UpstreamHttpProtocolOptions.overrideAutoSniHeader', 'string.well_known_regex', "value does not match HTTP_HEADER_NAME: /^:?[0-9a-zA-Z!#$%&'*+\\-.^_|~`]+$/"),
  ]);
  assert.deepEqual(violations('envoy.config.core.v3.UpstreamHttpProtocolOptions', { overrideAutoSniHeader: '' }), []);
  assert.deepEqual(violations('envoy.config.core.v3.UpstreamHttpProtocolOptions', { overrideAutoSniHeader: ':authority' }), []);
});

test('string.in, repeated.unique and map keys', () => {
  assert.deepEqual(violations('envoy.config.core.v3.SchemeHeaderTransformation', { schemeToOverwrite: 'ftp' }), [
    v('SchemeHeaderTransformation.schemeToOverwrite', 'string.in', 'value must be in list ["http", "https"]'),
  ]);
  assert.deepEqual(violations('envoy.config.route.v3.InternalRedirectPolicy', { responseHeadersToCopy: ['a', 'b', 'a'] }), [
    v('InternalRedirectPolicy.responseHeadersToCopy[2]', 'repeated.unique', 'repeated value must contain unique items'),
  ]);
  assert.deepEqual(violations('envoy.config.core.v3.Metadata', { filterMetadata: { '': { a: 1 }, istio: {} } }), [
    v('Metadata.filterMetadata[""] (key)', 'string.min_len', 'value length must be at least 1 characters'),
  ]);
});

test('a rule the checker does not implement is reported, never passed silently', () => {
  const root = protobuf.parse(`syntax = "proto3"; package sextant.test;
    message Contact {
      string email = 1 [(validate.rules).string = {email: true, min_len: 3}];
      string home = 2 [(validate.rules).string.uri = true];
      int32 age = 3 [(validate.rules).int32 = {gte: 0, multiple_of: 2}];
    }`, { keepCase: true }).root;
  const report = checkDecoded(root.lookupType('sextant.test.Contact'), { email: 'a@b.c', age: 3 });
  assert.deepEqual(report.violations, []);
  assert.deepEqual(report.unimplemented, [
    { path: 'Contact.email', rule: 'string.email' },
    { path: 'Contact.home', rule: 'string.uri' },
    { path: 'Contact.age', rule: 'int32.multiple_of' },
  ]);
});

test('an Any of a type not in Envoy protos is reported as unchecked', () => {
  const filter = ruleType('envoy.config.listener.v3.Filter');
  assert.ok(filter);
  const report = checkDecoded(filter, { name: 'f', typed_config: { type_url: 'type.googleapis.com/sextant.test.Unknown', value: new Uint8Array() } });
  assert.deepEqual(report.violations, []);
  assert.deepEqual(report.unchecked, [{ path: 'Filter.typedConfig', reason: "type.googleapis.com/sextant.test.Unknown is not a type in Envoy's protos" }]);
});

test('an extension the shared protos do not list is loaded for its rules', () => {
  // Lua is not in PROTO_FILES; the pilot loads it on demand for EnvoyFilter values.
  const lua = ruleType('type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua');
  assert.ok(lua);
  const report = checkDecoded(lua, { default_source_code: {} });
  assert.deepEqual(report.violations, [
    v('Lua.defaultSourceCode', '(validate.required)', 'one of filename, inlineBytes, inlineString, environmentVariable must be set (oneof specifier)'),
  ]);
});
