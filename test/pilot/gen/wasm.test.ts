// WasmPlugin → Envoy config as istiod shapes it: which proxies and traffic a plugin applies to,
// its filter's place in the chain (phase, priority, relative to JWT and RBAC), and its ECDS
// resource (the module inline with its checksum, a file for file://, the fetch error for a
// module the pilot could not get). Every resource is encoded with Envoy's protos and checked
// against their validation rules; pushes reach only the proxies a plugin selects.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import pino from 'pino';
import { validateResource } from '../../../src/api/index.ts';
import { EXTENSION_CONFIG_TYPE, LISTENER_TYPE } from '../../../src/envoy/index.ts';
import type { ProtoJson } from '../../../src/envoy/index.ts';
import { generators } from '../../../src/pilot/gen/index.ts';
import { WasmModuleStore, withWasmPlugins } from '../../../src/pilot/wasm/index.ts';
import type { FetchLimits } from '../../../src/pilot/wasm/index.ts';
import { assertEnvoyRules, resources, sidecar } from './helpers.ts';
import { encodeMessage, decodeMessage } from '../../../src/envoy/index.ts';
import { compileListener } from '../../../src/proxy/listener/listener-spec.ts';
import type { HttpConnectionManagerSpec } from '../../../src/proxy/listener/listener-spec.ts';
import { compileExtensionConfig } from '../../../src/proxy/filters/wasm/index.ts';

const MESH = `
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews, namespace: shop}
spec:
  workloadSelector: {labels: {app: reviews}}
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:8080
    captureMode: NONE
  egress:
  - hosts: ["./*"]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: shop}
spec:
  hosts: [ratings.shop.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.1.9}]
`;

const reviews = sidecar('127.0.1.5', 'reviews-v1', 'shop', { app: 'reviews' }, { INTERCEPTION_MODE: 'NONE' });
const ratings = sidecar('127.0.1.6', 'ratings-v1', 'shop', { app: 'ratings' }, { INTERCEPTION_MODE: 'NONE' });
const other = sidecar('127.0.1.7', 'reviews-v1', 'other', { app: 'reviews' }, { INTERCEPTION_MODE: 'NONE' });

const MODULE = Buffer.from('\0asm-not-really-but-bytes');
const MODULE_SHA = '2b6ac3c1be2f8a89cd20ab5d7d5dcb3b0f8b8e1d1bf0a8b4b0b9b2b7bf6b3a99';
const silent = pino({ level: 'silent' });

/** A store whose fetches answer from `modules` (url → bytes or an error) at once. */
function storeOf(modules: Record<string, Buffer | Error>, onChange?: (keys: string[]) => void): WasmModuleStore {
  return new WasmModuleStore({
    logger: silent,
    ...(onChange !== undefined ? { onChange } : {}),
    fetcher: async (url: string, sha: string | undefined, _l: FetchLimits) => {
      const m = modules[url];
      if (m === undefined || m instanceof Error) throw m ?? new Error(`no module at ${url}`);
      return { bytes: m, sha256: sha ?? 'computed-sha' };
    },
  });
}

async function setup(yaml: string, modules: Record<string, Buffer | Error> = {}) {
  const rs = resources(`${MESH}---\n${yaml}`);
  assert.deepEqual(rs.flatMap((r) => validateResource(r)).map(String), []);
  const store = storeOf(modules);
  const gens = withWasmPlugins(generators, store);
  const push = gens.buildPushContext(rs);
  await new Promise((r) => setImmediate(r)); // the fetches answer
  return { gens, push, store };
}

function httpFilterNames(l: ProtoJson): string[] {
  const chain = ((l['filterChains'] as ProtoJson[]) ?? [])[0]!;
  const hcm = (chain['filters'] as ProtoJson[]).find((f) => f['name'] === 'envoy.filters.network.http_connection_manager')!;
  return ((hcm['typedConfig'] as ProtoJson)['httpFilters'] as ProtoJson[]).map((f) => String(f['name']));
}

const plugin = (name: string, extra: string): string => `
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: ${name}, namespace: shop}
spec:
  url: http://modules.local/${name}.wasm
${extra}
`;

test('a plugin selects proxies by namespace (its own or the root one) and labels; its filter finds its config over ECDS', async () => {
  const { gens, push } = await setup(`${plugin('stats', '  selector: {matchLabels: {app: reviews}}')}---
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: everywhere, namespace: istio-system}
spec: {url: http://modules.local/everywhere.wasm}`, { 'http://modules.local/stats.wasm': MODULE, 'http://modules.local/everywhere.wasm': MODULE });
  const inbound = gens.generate(push, reviews, LISTENER_TYPE).get('127.0.1.5_9080')!;
  // same phase and priority: ordered by age, then namespace/name (both are as old here)
  assert.deepEqual(httpFilterNames(inbound).slice(0, 2), ['extensions.istio.io/wasmplugin/istio-system.everywhere', 'extensions.istio.io/wasmplugin/shop.stats']);
  const filter = (((inbound['filterChains'] as ProtoJson[])[0]!['filters'] as ProtoJson[])[0]!['typedConfig'] as ProtoJson)['httpFilters'] as ProtoJson[];
  assert.deepEqual(filter[1], {
    name: 'extensions.istio.io/wasmplugin/shop.stats',
    configDiscovery: { configSource: { ads: {}, resourceApiVersion: 'V3' }, typeUrls: ['type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm'] },
  });
  // ratings is not selected by stats, only by the root namespace's plugin; the other namespace by that one too
  assert.deepEqual(httpFilterNames(gens.generate(push, ratings, LISTENER_TYPE).get('virtualOutbound') ?? [...gens.generate(push, ratings, LISTENER_TYPE).values()][0]!).filter((n) => n.includes('wasmplugin')), ['extensions.istio.io/wasmplugin/istio-system.everywhere']);
  assert.deepEqual([...gens.generate(push, reviews, EXTENSION_CONFIG_TYPE).keys()].sort(), ['extensions.istio.io/wasmplugin/istio-system.everywhere', 'extensions.istio.io/wasmplugin/shop.stats']);
  assert.deepEqual([...gens.generate(push, other, EXTENSION_CONFIG_TYPE).keys()], ['extensions.istio.io/wasmplugin/istio-system.everywhere']);
  for (const l of gens.generate(push, reviews, LISTENER_TYPE).values()) {
    assert.doesNotThrow(() => encodeMessage(LISTENER_TYPE, l));
    assertEnvoyRules(LISTENER_TYPE, String(l['name']), l);
  }
});

test('phase and priority place the filters as istiod does: AUTHN before JWT, AUTHZ before RBAC, the rest after it', async () => {
  const yaml = [
    plugin('authn', '  phase: AUTHN'),
    plugin('authz-low', '  phase: AUTHZ\n  priority: 1'),
    plugin('authz-high', '  phase: AUTHZ\n  priority: 10'),
    plugin('stats', '  phase: STATS'),
    plugin('last', ''),
    `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: shop}
spec:
  selector: {matchLabels: {app: reviews}}
  jwtRules: [{issuer: https://issuer.example, jwks: '{"keys":[]}'}]`,
    `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow, namespace: shop}
spec: {selector: {matchLabels: {app: reviews}}, rules: [{}]}`,
  ].join('\n---\n');
  const modules = Object.fromEntries(['authn', 'authz-low', 'authz-high', 'stats', 'last'].map((n) => [`http://modules.local/${n}.wasm`, MODULE]));
  const { gens, push } = await setup(yaml, modules);
  const inbound = gens.generate(push, reviews, LISTENER_TYPE).get('127.0.1.5_9080')!;
  const w = (n: string): string => `extensions.istio.io/wasmplugin/shop.${n}`;
  assert.deepEqual(httpFilterNames(inbound), [
    w('authn'), 'envoy.filters.http.jwt_authn', 'istio_authn', w('authz-high'), w('authz-low'), 'envoy.filters.http.rbac',
    w('stats'), w('last'), 'envoy.filters.http.fault', 'envoy.filters.http.cors', 'envoy.filters.http.router',
  ]);
  // the proxy runs them at the matching points: before JWT, between JWT and RBAC, after RBAC
  const hcm = compileListener(inbound, 'l').filterChains[0]!.network as HttpConnectionManagerSpec;
  assert.deepEqual(hcm.wasm?.map((f) => [f.name, f.position]), [
    [w('authn'), 'authn'], [w('authz-high'), 'authz'], [w('authz-low'), 'authz'], [w('stats'), 'route'], [w('last'), 'route'],
  ]);
});

test('match: CLIENT plugins go to outbound listeners, SERVER ones to inbound, ports narrow them', async () => {
  const yaml = [
    plugin('client', '  match: [{mode: CLIENT}]'),
    plugin('server', '  match: [{mode: SERVER, ports: [{number: 9080}]}]'),
    plugin('server-other-port', '  match: [{mode: SERVER, ports: [{number: 7000}]}]'),
  ].join('\n---\n');
  const modules = Object.fromEntries(['client', 'server', 'server-other-port'].map((n) => [`http://modules.local/${n}.wasm`, MODULE]));
  const { gens, push } = await setup(yaml, modules);
  const ls = gens.generate(push, reviews, LISTENER_TYPE);
  const wasmIn = (l: ProtoJson | undefined): string[] => (l === undefined ? [] : httpFilterNames(l).filter((n) => n.includes('wasmplugin')));
  assert.deepEqual(wasmIn(ls.get('127.0.1.5_9080')), ['extensions.istio.io/wasmplugin/shop.server']);
  const outbound = [...ls.values()].find((l) => l['trafficDirection'] === 'OUTBOUND' && String(JSON.stringify(l)).includes('http_connection_manager'))!;
  assert.deepEqual(wasmIn(outbound), ['extensions.istio.io/wasmplugin/shop.client']);
});

test('the ECDS resource: the Wasm filter config with the module inline, its checksum, pluginConfig as JSON, failOpen, env', async () => {
  const { gens, push } = await setup(plugin('cfg', `  pluginName: my_root
  sha256: ${MODULE_SHA}
  failStrategy: FAIL_OPEN
  pluginConfig: {denyPrefix: /admin, n: 2}
  vmConfig:
    env:
    - {name: MODE, value: strict}
    - {name: HOME, valueFrom: HOST}`), { 'http://modules.local/cfg.wasm': MODULE });
  const r = gens.generate(push, reviews, EXTENSION_CONFIG_TYPE).get('extensions.istio.io/wasmplugin/shop.cfg')!;
  // no resourceVersion here: the version is the spec's hash
  const spec = push.resources.find((x) => x.metadata.name === 'cfg')!.spec;
  const version = createHash('sha256').update(JSON.stringify(['', spec])).digest('hex').slice(0, 16);
  assert.deepEqual(r, {
    name: 'extensions.istio.io/wasmplugin/shop.cfg',
    typedConfig: {
      '@type': 'type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm',
      config: {
        name: 'shop.cfg',
        rootId: 'my_root',
        vmConfig: {
          runtime: 'envoy.wasm.runtime.v8',
          code: { local: { inlineBytes: MODULE.toString('base64') } },
          environmentVariables: {
            hostEnvKeys: ['HOME'],
            keyValues: { ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION: version, SEXTANT_WASM_MODULE_SHA256: MODULE_SHA, MODE: 'strict' },
          },
        },
        configuration: { '@type': 'type.googleapis.com/google.protobuf.StringValue', value: '{"denyPrefix":"/admin","n":2}' },
        failOpen: true,
      },
    },
  });
  // Envoy's protos take it, and the proxy compiles it (its module checked against the checksum)
  const decoded = decodeMessage(EXTENSION_CONFIG_TYPE, encodeMessage(EXTENSION_CONFIG_TYPE, r));
  assertEnvoyRules(EXTENSION_CONFIG_TYPE, 'cfg', r);
  const compiled = compileExtensionConfig(decoded, 'ecds');
  assert.equal(compiled.rootId, 'my_root');
  assert.equal(compiled.failOpen, true);
  assert.equal(Buffer.from(compiled.pluginConfiguration).toString(), '{"denyPrefix":"/admin","n":2}');
  // (MODULE_SHA is not these bytes' checksum: the proxy refuses them)
  assert.deepEqual(compiled.code, { error: `module checksum mismatch: sha256 ${createHash('sha256').update(MODULE).digest('hex')}, expected ${MODULE_SHA}` });
});

test('file:// is a file the proxy reads; a module the pilot could not fetch goes out as remote code with the reason; one in flight not at all', async () => {
  const yaml = [
    `apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: local, namespace: shop}
spec: {url: "file:///opt/filters/local.wasm", sha256: ${MODULE_SHA}}`,
    `apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: local-open, namespace: shop}
spec: {url: "file:///opt/filters/local.wasm", failStrategy: FAIL_OPEN}`,
    plugin('broken', ''),
    plugin('slow', '  failStrategy: FAIL_OPEN'),
    plugin('slow-closed', ''),
  ].join('\n---\n');
  const rs = resources(`${MESH}---\n${yaml}`);
  const never = new Promise<never>(() => {});
  const store = new WasmModuleStore({
    logger: silent,
    fetcher: (url) => (url.includes('broken') ? Promise.reject(new Error('HTTP 404 from http://modules.local/broken.wasm')) : never),
  });
  const gens = withWasmPlugins(generators, store);
  const push = gens.buildPushContext(rs);
  await new Promise((r) => setImmediate(r));
  const ecds = gens.generate(push, reviews, EXTENSION_CONFIG_TYPE);
  assert.deepEqual([...ecds.keys()].sort(), ['extensions.istio.io/wasmplugin/shop.broken', 'extensions.istio.io/wasmplugin/shop.local', 'extensions.istio.io/wasmplugin/shop.local-open']);
  const vm = (n: string): ProtoJson => ((ecds.get(`extensions.istio.io/wasmplugin/shop.${n}`)!['typedConfig'] as ProtoJson)['config'] as ProtoJson)['vmConfig'] as ProtoJson;
  assert.deepEqual(vm('local')['code'], { local: { filename: '/opt/filters/local.wasm' } });
  assert.equal(((vm('local')['environmentVariables'] as ProtoJson)['keyValues'] as Record<string, string>)['SEXTANT_WASM_MODULE_SHA256'], MODULE_SHA);
  assert.deepEqual(vm('broken')['code'], { remote: { httpUri: { uri: 'http://modules.local/broken.wasm', cluster: 'http://modules.local/broken.wasm', timeout: '30s' } } });
  const spec = compileExtensionConfig(decodeMessage(EXTENSION_CONFIG_TYPE, encodeMessage(EXTENSION_CONFIG_TYPE, ecds.get('extensions.istio.io/wasmplugin/shop.broken')!)), 'ecds');
  assert.deepEqual(spec.code, { error: 'the control plane could not fetch the module http://modules.local/broken.wasm: HTTP 404 from http://modules.local/broken.wasm' });
  // while in flight: a FAIL_OPEN plugin's filter is left out, a FAIL_CLOSE one is in (its requests wait for it)
  const names = httpFilterNames(gens.generate(push, reviews, LISTENER_TYPE).get('127.0.1.5_9080')!);
  assert.equal(names.includes('extensions.istio.io/wasmplugin/shop.slow'), false);
  assert.equal(names.includes('extensions.istio.io/wasmplugin/shop.slow-closed'), true);
  // (a file:// module is never in flight: the proxy reads it)
  assert.equal(names.includes('extensions.istio.io/wasmplugin/shop.local-open'), true);
  store.close();
});

test('pushes: a plugin change reaches the proxies it selects (LDS and ECDS), a fetched module its plugins\' proxies', async () => {
  const changed: string[][] = [];
  let release!: (b: Buffer) => void;
  const store = new WasmModuleStore({
    logger: silent, onChange: (keys) => changed.push(keys),
    fetcher: () => new Promise((resolve) => { release = (b) => resolve({ bytes: b, sha256: 'x' }); }),
  });
  const gens = withWasmPlugins(generators, store);
  const before = gens.buildPushContext(resources(MESH));
  const after = gens.buildPushContext(resources(`${MESH}---\n${plugin('stats', '  selector: {matchLabels: {app: reviews}}')}`));
  const change = { keys: new Set(['WasmPlugin/shop/stats']), endpointsOnly: false };
  assert.deepEqual([...gens.planPush(before, after, change, reviews)!.types], [LISTENER_TYPE, EXTENSION_CONFIG_TYPE]);
  assert.equal(gens.planPush(before, after, change, ratings), null);
  release(MODULE);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(changed, [['WasmPlugin/shop/stats']]);
  assert.deepEqual(store.status().map((s) => [s.state, s.plugins]), [['ready', ['WasmPlugin/shop/stats']]]);
  store.close();
});
