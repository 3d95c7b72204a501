// Envoy's scoped routes (inline scopes keyed by a header) and the original_src listener filter,
// as the lazy-scope hub's listener uses them: compiled into the listener spec, the scope key
// read from the header (whole or one element), and what the proxy does not implement refused
// with the field (the NACK reason).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileListener, scopeKeyOf } from '../../src/proxy/listener/listener-spec.ts';
import type { ProtoJson } from '../../src/envoy/index.ts';

const HCM = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const ORIGINAL_SRC = 'type.googleapis.com/envoy.extensions.filters.listener.original_src.v3.OriginalSrc';

function listener(scoped: ProtoJson, extra: ProtoJson = {}): ProtoJson {
  return {
    name: 'hub', address: { socketAddress: { address: '127.0.0.1', portValue: 15080 } }, trafficDirection: 'OUTBOUND',
    filterChains: [{ filters: [{ name: 'envoy.filters.network.http_connection_manager', typedConfig: { '@type': HCM, statPrefix: 'hub', scopedRoutes: scoped } }] }],
    ...extra,
  };
}

const SCOPES = {
  name: 's',
  scopeKeyBuilder: { fragments: [{ headerValueExtractor: { name: 'X-Sextant-Scope' } }] },
  rdsConfigSource: { ads: {} },
  scopedRouteConfigurationsList: { scopedRouteConfigurations: [
    { name: 'a', routeConfigurationName: 'sextant-hub|shop|8080', key: { fragments: [{ stringKey: 'shop/8080' }] } },
    { name: 'b', routeConfigurationName: 'sextant-hub|web|80', key: { fragments: [{ stringKey: 'web/80' }] } },
  ] },
};

test('inline scopes compile to a header and a key → route configuration table; original_src marks the listener', () => {
  const l = compileListener(listener(SCOPES, { listenerFilters: [{ name: 'envoy.filters.listener.original_src', typedConfig: { '@type': ORIGINAL_SRC } }] }), 'Listener hub');
  assert.equal(l.originalSource, true);
  const hcm = l.filterChains[0]!.network;
  assert.ok(hcm.kind === 'http');
  assert.equal(hcm.rdsName, undefined);
  const s = hcm.scopedRoutes!;
  assert.equal(s.header, 'x-sextant-scope');
  assert.deepEqual([...s.byKey], [['shop/8080', 'sextant-hub|shop|8080'], ['web/80', 'sextant-hub|web|80']]);
  assert.equal(scopeKeyOf(s, 'shop/8080'), 'shop/8080');
  assert.equal(scopeKeyOf(s, undefined), undefined);
  assert.equal(compileListener(listener(SCOPES), 'Listener hub').originalSource, false);
  // one element of the value
  const byElement = compileListener(listener({ ...SCOPES, scopeKeyBuilder: { fragments: [{ headerValueExtractor: { name: 'x-k', elementSeparator: ';', index: 1 } }] } }), 'Listener hub');
  const h2 = byElement.filterChains[0]!.network;
  assert.ok(h2.kind === 'http');
  assert.equal(scopeKeyOf(h2.scopedRoutes!, 'a;web/80;c'), 'web/80');
  assert.equal(scopeKeyOf(h2.scopedRoutes!, 'a'), undefined);
});

test('what the proxy does not implement is refused with the field', () => {
  const refused = (scoped: ProtoJson, pattern: RegExp, extra: ProtoJson = {}): void => {
    assert.throws(() => compileListener(listener(scoped, extra), 'Listener hub'), pattern);
  };
  refused({ ...SCOPES, scopedRouteConfigurationsList: undefined, scopedRds: { scopedRdsConfigSource: { ads: {} } } }, /scopedRoutes\.scopedRds: scoped RDS is not supported/);
  refused({ ...SCOPES, scopeKeyBuilder: { fragments: [] } }, /scopeKeyBuilder\.fragments: exactly one fragment/);
  refused({ ...SCOPES, scopeKeyBuilder: { fragments: [{ headerValueExtractor: { name: 'x', element: { separator: '=', key: 'k' } } }] } }, /headerValueExtractor\.element: key-value elements are not supported/);
  refused({ ...SCOPES, scopedRouteConfigurationsList: { scopedRouteConfigurations: [{ name: 'a', routeConfiguration: { name: 'x' }, key: { fragments: [{ stringKey: 'k' }] } }] } }, /routeConfiguration: inline route configurations in a scope are not supported/);
  refused({ ...SCOPES, scopedRouteConfigurationsList: { scopedRouteConfigurations: [SCOPES.scopedRouteConfigurationsList.scopedRouteConfigurations[0], SCOPES.scopedRouteConfigurationsList.scopedRouteConfigurations[0]] } }, /scope key "shop\/8080" is listed twice/);
  refused(SCOPES, /listenerFilters\[0\]\.typedConfig\.bindPort: binding the downstream's port is not supported/, { listenerFilters: [{ name: 'envoy.filters.listener.original_src', typedConfig: { '@type': ORIGINAL_SRC, bindPort: true } }] });
});
