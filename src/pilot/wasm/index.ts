// The pilot's WASM room: WasmPlugins' modules fetched by the pilot (HTTP, OCI; bounded, checked,
// cached) and served to the proxies over ECDS with their checksum. `withWasmPlugins` puts the
// plugins into any Generators: their filters in the listeners, their configs as ECDS resources,
// and pushes for the proxies a plugin or its module concerns (see docs/wasm.md).
import { EXTENSION_CONFIG_TYPE, LISTENER_TYPE, PUSH_ORDER } from '../../envoy/index.ts';
import type { ProtoJson, XdsTypeUrl } from '../../envoy/index.ts';
import type { Generators, PushContext, PushPlan, Proxy } from '../model.ts';
import { SextantPushContext } from '../push/context.ts';
import { applyWasmPlugins, extensionConfig, extensionConfigName, pluginsConcern, wasmPlugins, wasmPluginsFor } from '../gen/wasm.ts';
import type { WasmPluginRef } from '../gen/wasm.ts';
import { WasmModuleStore } from './modules.ts';

export { WasmModuleStore, DEFAULT_FETCH_LIMITS, fetchKey } from './modules.ts';
export type { WasmModuleStoreOptions } from './modules.ts';
export { fetchModule, parseOciReference, ModuleFetchError } from './fetch.ts';
export type { FetchLimits } from './fetch.ts';

/** ECDS resources kept for reuse (a few per plugin at most: its versions and module states). */
const MAX_CACHED_CONFIGS = 1024;

/** Generators that also serve WasmPlugins (their modules from `modules`). */
export function withWasmPlugins(inner: Generators, modules: WasmModuleStore): Generators {
  // listeners with the plugins' filters, per listener object and plugin set: proxies of one class share them
  const withPlugins = new WeakMap<ProtoJson, Map<string, ProtoJson>>();
  // ECDS resources by plugin version and module state: one object (one encoding) for every proxy
  const configs = new Map<string, ProtoJson | undefined>();
  const configOf = (p: WasmPluginRef): ProtoJson | undefined => {
    const m = modules.module(p);
    const key = `${p.key}@${p.version}|${m.state === 'ready' ? m.sha256 : m.state === 'failed' ? m.error : 'pending'}`;
    if (configs.has(key)) return configs.get(key);
    const r = extensionConfig(p, modules);
    if (configs.size >= MAX_CACHED_CONFIGS) configs.delete(configs.keys().next().value!);
    configs.set(key, r);
    return r;
  };
  const pluginsOf = (push: PushContext, proxy: Proxy): readonly WasmPluginRef[] =>
    push instanceof SextantPushContext && proxy.generator !== 'grpc' ? wasmPluginsFor(push, proxy) : [];
  return {
    ...inner,
    buildPushContext(resources, previous, change) {
      const push = inner.buildPushContext(resources, previous, change);
      if (push instanceof SextantPushContext) modules.sync(wasmPlugins(push));
      return push;
    },
    planPush(before, after, change, proxy) {
      const plan = inner.planPush(before, after, change, proxy);
      if (!pluginsConcern(change.keys, pluginsOf(before, proxy), pluginsOf(after, proxy))) return plan;
      const types = new Set<XdsTypeUrl>(plan?.types ?? []);
      types.add(LISTENER_TYPE);
      types.add(EXTENSION_CONFIG_TYPE);
      const merged: PushPlan = { types: new Set(PUSH_ORDER.filter((t) => types.has(t))) };
      return merged;
    },
    generate(push, proxy, typeUrl, names) {
      if (typeUrl === EXTENSION_CONFIG_TYPE) {
        const out = new Map<string, ProtoJson>();
        for (const p of pluginsOf(push, proxy)) {
          const name = extensionConfigName(p);
          if (names !== undefined && !names.has(name)) continue;
          const r = configOf(p);
          if (r !== undefined) out.set(name, r);
        }
        return out;
      }
      const out = inner.generate(push, proxy, typeUrl, names);
      if (typeUrl !== LISTENER_TYPE) return out;
      const plugins = pluginsOf(push, proxy);
      if (plugins.length === 0) return out;
      const key = `${proxy.type}|${plugins.map((p) => `${p.key}@${p.version}:${modules.module(p).state}`).join(',')}`;
      const result = new Map<string, ProtoJson>();
      for (const [name, l] of out) {
        let byKey = withPlugins.get(l);
        if (byKey === undefined) withPlugins.set(l, (byKey = new Map()));
        let next = byKey.get(key);
        if (next === undefined) byKey.set(key, (next = applyWasmPlugins([l], proxy, plugins, modules)[0]!));
        result.set(name, next);
      }
      return result;
    },
  };
}
