// WasmPlugin (extensions.istio.io/v1alpha1) → Envoy config, as istiod generates it: each plugin
// that selects a proxy becomes an HTTP filter in its connection managers that finds its config
// over ECDS (`config_discovery`, resource `extensions.istio.io/wasmplugin/NS.NAME`), placed by
// phase (AUTHN before the JWT filters, AUTHZ before RBAC, STATS and unspecified after RBAC) and
// ordered by priority; the ECDS resource is the Wasm filter config with the module the pilot
// fetched inline. Pure: the modules are a snapshot the caller took (src/pilot/wasm).
import { createHash } from 'node:crypto';
import type { Resource } from '../../api/resource.ts';
import type { WasmPluginSpec } from '../../api/kinds.ts';
import type { ProtoJson } from '../../envoy/index.ts';
import { labelsMatch } from '../../registry/index.ts';
import type { Proxy } from '../model.ts';
import type { SextantPushContext } from '../push/context.ts';

export const WASM_HTTP_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm';
const STRING_VALUE = 'type.googleapis.com/google.protobuf.StringValue';
const HCM_FILTER = 'envoy.filters.network.http_connection_manager';
/** The module's checksum as the proxy verifies it (see src/proxy/filters/wasm/config.ts). */
export const MODULE_SHA256_ENV = 'SEXTANT_WASM_MODULE_SHA256';
/** Why the pilot could not provide the module; the proxy's plugin then fails to load with it. */
export const MODULE_ERROR_ENV = 'SEXTANT_WASM_MODULE_ERROR';
/** Istio's: the resource version of the WasmPlugin, in the VM's environment. */
const RESOURCE_VERSION_ENV = 'ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION';

/** A module as the pilot has it (src/pilot/wasm): fetched, still being fetched, or failed. */
export type ModuleState =
  | { state: 'ready'; bytes: Buffer; sha256: string }
  | { state: 'pending' }
  | { state: 'failed'; error: string };

/** What generation needs of the fetched modules: the state of a plugin's module (file:// ones are the proxy's). */
export interface ModuleSnapshot {
  module(plugin: WasmPluginRef): ModuleState;
}

/** A WasmPlugin as generation uses it. */
export interface WasmPluginRef {
  key: string;
  namespace: string;
  name: string;
  spec: WasmPluginSpec;
  /** What the plugin's config is made of (its spec and resourceVersion), hashed: equal versions, equal config. */
  version: string;
  /** metadata.resourceVersion (else `version`), as istiod hands it to the VM. */
  resourceVersion: string;
  creation: string;
}

const PHASE_ORDER: Record<string, number> = { AUTHN: 0, AUTHZ: 1, STATS: 2, UNSPECIFIED_PHASE: 3 };

/** The ECDS resource name of a plugin (istiod's). */
export function extensionConfigName(p: { namespace: string; name: string }): string {
  return `extensions.istio.io/wasmplugin/${p.namespace}.${p.name}`;
}

/** Every WasmPlugin in the snapshot, once per snapshot. */
export function wasmPlugins(push: SextantPushContext): readonly WasmPluginRef[] {
  return push.memoize('wasm-plugins', () => push.resources.filter((r) => r.kind === 'WasmPlugin').map(pluginRef));
}

function pluginRef(r: Resource): WasmPluginRef {
  const spec = r.spec as WasmPluginSpec;
  const namespace = r.metadata.namespace ?? 'default';
  const meta = r.metadata as { resourceVersion?: string; creationTimestamp?: string };
  const version = createHash('sha256').update(JSON.stringify([meta.resourceVersion ?? '', spec])).digest('hex').slice(0, 16);
  return {
    key: `WasmPlugin/${namespace}/${r.metadata.name}`,
    namespace,
    name: r.metadata.name,
    spec,
    version,
    resourceVersion: meta.resourceVersion ?? version,
    creation: meta.creationTimestamp ?? '',
  };
}

/**
 * The plugins that apply to `proxy`: in its namespace or the root namespace, its labels
 * matching the selector (a targetRef names a gateway: proxies labelled with its name), HTTP
 * plugins only; ordered as istiod orders them (phase, then priority high to low, then age, then name).
 */
export function wasmPluginsFor(push: SextantPushContext, proxy: Proxy): readonly WasmPluginRef[] {
  const root = push.mesh.rootNamespace;
  return wasmPlugins(push).filter((p) => {
    if (p.namespace !== proxy.namespace && p.namespace !== root) return false;
    if (p.spec.type === 'NETWORK') return false;
    const refs = p.spec.targetRefs ?? (p.spec.targetRef !== undefined ? [p.spec.targetRef] : []);
    if (refs.length > 0) {
      return proxy.type === 'router' && refs.some((t) => t.kind === 'Gateway' && (proxy.labels['gateway.networking.k8s.io/gateway-name'] === t.name || proxy.labels['istio'] === t.name));
    }
    const sel = p.spec.selector?.matchLabels;
    return sel === undefined || labelsMatch(sel, proxy.labels);
  }).sort(comparePlugins);
}

function comparePlugins(a: WasmPluginRef, b: WasmPluginRef): number {
  const pa = PHASE_ORDER[a.spec.phase ?? 'UNSPECIFIED_PHASE'] ?? 3;
  const pb = PHASE_ORDER[b.spec.phase ?? 'UNSPECIFIED_PHASE'] ?? 3;
  if (pa !== pb) return pa - pb;
  const qa = a.spec.priority ?? 0;
  const qb = b.spec.priority ?? 0;
  if (qa !== qb) return qb - qa;
  if (a.creation !== b.creation) return a.creation < b.creation ? -1 : 1;
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

/** Whether a plugin's traffic selectors take this traffic (no match: all of it). */
function matchesTraffic(p: WasmPluginRef, mode: 'CLIENT' | 'SERVER' | 'GATEWAY', port: number | undefined): boolean {
  const match = p.spec.match ?? [];
  if (match.length === 0 || mode === 'GATEWAY') return true;
  return match.some((m) => {
    const mm = m.mode ?? 'UNDEFINED';
    if (mm !== 'UNDEFINED' && mm !== 'CLIENT_AND_SERVER' && mm !== mode) return false;
    const ports = m.ports ?? [];
    return ports.length === 0 || (port !== undefined && ports.some((x) => x.number === port));
  });
}

/** The HTTP filter that runs a plugin: its config over ECDS, by name. */
function discoveredFilter(p: WasmPluginRef): ProtoJson {
  return {
    name: extensionConfigName(p),
    configDiscovery: { configSource: { ads: {}, resourceApiVersion: 'V3' }, typeUrls: [WASM_HTTP_TYPE] },
  };
}

const AUTHN_FILTERS = new Set(['envoy.filters.http.jwt_authn', 'istio_authn', 'istio.authn']);
const AUTHZ_FILTERS = new Set(['envoy.filters.http.rbac', 'envoy.filters.http.ext_authz']);

/**
 * `filters` with the plugins' filters where istiod puts them: AUTHN before the authentication
 * filters, AUTHZ between them and the authorization filters, STATS then unspecified after those.
 */
export function withPluginFilters(filters: readonly ProtoJson[], plugins: readonly WasmPluginRef[]): ProtoJson[] {
  const names = filters.map((f) => String(f['name'] ?? ''));
  const firstOf = (set: Set<string>): number => names.findIndex((n) => set.has(n));
  const lastOf = (set: Set<string>): number => names.reduce((last, n, i) => (set.has(n) ? i : last), -1);
  const authnFirst = firstOf(AUTHN_FILTERS);
  const authnLast = lastOf(AUTHN_FILTERS);
  const authzFirst = firstOf(AUTHZ_FILTERS);
  const authzLast = lastOf(AUTHZ_FILTERS);
  const at = {
    AUTHN: authnFirst >= 0 ? authnFirst : authzFirst >= 0 ? authzFirst : 0,
    AUTHZ: authnLast >= 0 ? authnLast + 1 : authzFirst >= 0 ? authzFirst : 0,
    AFTER: authzLast >= 0 ? authzLast + 1 : authnLast >= 0 ? authnLast + 1 : 0,
  };
  const byPhase = (phases: string[]): ProtoJson[] => plugins.filter((p) => phases.includes(p.spec.phase ?? 'UNSPECIFIED_PHASE')).map(discoveredFilter);
  const out = [...filters];
  // from the back, so earlier positions hold
  out.splice(at.AFTER, 0, ...byPhase(['STATS', 'UNSPECIFIED_PHASE']));
  out.splice(at.AUTHZ, 0, ...byPhase(['AUTHZ']));
  out.splice(at.AUTHN, 0, ...byPhase(['AUTHN']));
  return out;
}

/**
 * The listeners with the plugins' filters in every HTTP connection manager whose traffic they
 * take (inbound: SERVER, outbound: CLIENT, gateways: all; the chain's destination port, else
 * the listener's). A FAIL_OPEN plugin whose module is still being fetched is left out until it
 * is in; a FAIL_CLOSE one is there at once (requests wait for, then fail without, its config).
 * Listener objects are copied, never edited.
 */
export function applyWasmPlugins(listeners: readonly ProtoJson[], proxy: Proxy, plugins: readonly WasmPluginRef[], modules: ModuleSnapshot): ProtoJson[] {
  // a file:// module is the proxy's to read: never pending here
  const running = plugins.filter((p) => p.spec.failStrategy !== 'FAIL_OPEN' || p.spec.url.startsWith('file://') || modules.module(p).state !== 'pending');
  if (running.length === 0) return [...listeners];
  return listeners.map((l) => {
    const mode = proxy.type === 'router' ? 'GATEWAY' : l['trafficDirection'] === 'INBOUND' ? 'SERVER' : 'CLIENT';
    const listenerPort = Number(((l['address'] as ProtoJson | undefined)?.['socketAddress'] as ProtoJson | undefined)?.['portValue'] ?? 0) || undefined;
    let changed = false;
    const chain = (c: ProtoJson): ProtoJson => {
      const port = ((c['filterChainMatch'] as ProtoJson | undefined)?.['destinationPort'] as number | undefined) ?? listenerPort;
      const here = running.filter((p) => matchesTraffic(p, mode, port));
      if (here.length === 0) return c;
      const filters = (c['filters'] as ProtoJson[] | undefined) ?? [];
      if (!filters.some((f) => f['name'] === HCM_FILTER)) return c;
      changed = true;
      return {
        ...c,
        filters: filters.map((f) => {
          if (f['name'] !== HCM_FILTER) return f;
          const tc = f['typedConfig'] as ProtoJson;
          return { ...f, typedConfig: { ...tc, httpFilters: withPluginFilters((tc['httpFilters'] as ProtoJson[] | undefined) ?? [], here) } };
        }),
      };
    };
    const chains = ((l['filterChains'] as ProtoJson[] | undefined) ?? []).map(chain);
    const def = l['defaultFilterChain'] !== undefined ? chain(l['defaultFilterChain'] as ProtoJson) : undefined;
    if (!changed) return l;
    return { ...l, filterChains: chains, ...(def !== undefined ? { defaultFilterChain: def } : {}) };
  });
}

/**
 * The ECDS resources (TypedExtensionConfig) of the plugins: the Wasm filter config with the
 * module inline and its checksum; a file:// module as a file the proxy reads; a module the pilot
 * could not fetch as istiod sends it (remote code), with the reason. Modules still being
 * fetched have no resource yet. `names` limits the result (a named subscription).
 */
export function extensionConfigs(plugins: readonly WasmPluginRef[], modules: ModuleSnapshot, names?: ReadonlySet<string>): Map<string, ProtoJson> {
  const out = new Map<string, ProtoJson>();
  for (const p of plugins) {
    const name = extensionConfigName(p);
    if (names !== undefined && !names.has(name)) continue;
    const r = extensionConfig(p, modules);
    if (r !== undefined) out.set(name, r);
  }
  return out;
}

/** One plugin's ECDS resource; undefined while its module is being fetched. */
export function extensionConfig(p: WasmPluginRef, modules: ModuleSnapshot): ProtoJson | undefined {
  const code = moduleCode(p, modules);
  if (code === undefined) return undefined;
  const name = extensionConfigName(p);
  return { name, typedConfig: wasmFilterConfig(p, code) };
}

function moduleCode(p: WasmPluginRef, modules: ModuleSnapshot): { code: ProtoJson; env: Record<string, string> } | undefined {
  const url = p.spec.url;
  if (url.startsWith('file://')) {
    return { code: { local: { filename: decodeURIComponent(new URL(url).pathname) } }, env: p.spec.sha256 ? { [MODULE_SHA256_ENV]: p.spec.sha256 } : {} };
  }
  const m = modules.module(p);
  if (m.state === 'pending') return undefined;
  if (m.state === 'failed') {
    return {
      code: { remote: { httpUri: { uri: url, cluster: url, timeout: '30s' }, ...(p.spec.sha256 ? { sha256: p.spec.sha256 } : {}) } },
      env: { [MODULE_ERROR_ENV]: m.error },
    };
  }
  return { code: { local: { inlineBytes: m.bytes.toString('base64') } }, env: { [MODULE_SHA256_ENV]: m.sha256 } };
}

function wasmFilterConfig(p: WasmPluginRef, code: { code: ProtoJson; env: Record<string, string> }): ProtoJson {
  const keyValues: Record<string, string> = { [RESOURCE_VERSION_ENV]: p.resourceVersion, ...code.env };
  const hostEnvKeys: string[] = [];
  for (const e of p.spec.vmConfig?.env ?? []) {
    if (e.valueFrom === 'HOST') hostEnvKeys.push(e.name);
    else keyValues[e.name] = e.value ?? '';
  }
  const pc = p.spec.pluginConfig;
  return {
    '@type': WASM_HTTP_TYPE,
    config: {
      name: `${p.namespace}.${p.name}`,
      rootId: p.spec.pluginName ?? '',
      vmConfig: {
        runtime: 'envoy.wasm.runtime.v8',
        code: code.code,
        environmentVariables: { ...(hostEnvKeys.length > 0 ? { hostEnvKeys } : {}), keyValues },
      },
      ...(pc !== undefined && Object.keys(pc).length > 0 ? { configuration: { '@type': STRING_VALUE, value: JSON.stringify(pc) } } : {}),
      failOpen: p.spec.failStrategy === 'FAIL_OPEN',
    },
  };
}

/** Keys of the plugins (before or after a change) that apply to `proxy`: what a WasmPlugin change concerns. */
export function pluginsConcern(keys: Iterable<string>, before: readonly WasmPluginRef[], after: readonly WasmPluginRef[]): boolean {
  const set = new Set([...before, ...after].map((p) => p.key));
  for (const k of keys) if (set.has(k)) return true;
  return false;
}
