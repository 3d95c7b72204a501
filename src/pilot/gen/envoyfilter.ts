// EnvoyFilter patches on generated resources, with Istio's semantics: every operation
// (MERGE, ADD, REMOVE, INSERT_BEFORE, INSERT_AFTER, INSERT_FIRST, REPLACE) on LISTENER,
// FILTER_CHAIN, NETWORK_FILTER, HTTP_FILTER, ROUTE_CONFIGURATION, VIRTUAL_HOST, HTTP_ROUTE
// and CLUSTER, matched by context, listener/filter chain/filter, route config/vhost/route
// and cluster. Patch values are Envoy JSON (snake_case allowed), normalized via the protos.
import {
  CLUSTER_TYPE, ENVOY_FILTER_VALUE_TYPES, HCM_TYPE, LISTENER_TYPE, ROUTE_TYPE, decodeMessage, encodeMessage,
} from '../../envoy/index.ts';
import type { ProtoJson, XdsTypeUrl } from '../../envoy/index.ts';
import type { Proxy } from '../model.ts';
import type { EnvoyConfigObjectPatch } from '../../registry/index.ts';
import type { SextantPushContext } from '../push/context.ts';
import { envoyFiltersFor } from '../push/scope.ts';
import { parseClusterName } from './names.ts';
import { ensureTypesIn } from './protos.ts';

type Patch = EnvoyConfigObjectPatch & { source: string };
type Op = NonNullable<NonNullable<EnvoyConfigObjectPatch['patch']>['operation']>;

/** The message type a patch value of each applyTo is written in. */
const VALUE_TYPES = ENVOY_FILTER_VALUE_TYPES;

const APPLY_TO_TYPE: Record<string, XdsTypeUrl> = {
  LISTENER: LISTENER_TYPE, FILTER_CHAIN: LISTENER_TYPE, NETWORK_FILTER: LISTENER_TYPE, HTTP_FILTER: LISTENER_TYPE,
  ROUTE_CONFIGURATION: ROUTE_TYPE, VIRTUAL_HOST: ROUTE_TYPE, HTTP_ROUTE: ROUTE_TYPE,
  CLUSTER: CLUSTER_TYPE,
};

/** Envoy JSON in any accepted spelling → canonical proto3 JSON; throws naming the field. */
export function normalizePatchValue(applyTo: string, value: unknown): ProtoJson {
  const type = APPLY_TO_TYPE[applyTo] !== undefined ? VALUE_TYPES[applyTo] : undefined;
  if (!type) throw new Error(`applyTo ${applyTo} is not supported`);
  ensureTypesIn(value);
  return decodeMessage(type, encodeMessage(type, (value ?? {}) as ProtoJson));
}

/** proto.Merge semantics: scalars replace, messages merge, lists append; an Any of the same type merges inside. */
export function mergeProto(dst: ProtoJson, src: ProtoJson): ProtoJson {
  for (const [k, v] of Object.entries(src)) {
    const cur = dst[k];
    if (Array.isArray(v)) dst[k] = Array.isArray(cur) ? [...cur, ...structuredClone(v)] : structuredClone(v);
    else if (v !== null && typeof v === 'object' && cur !== null && typeof cur === 'object' && !Array.isArray(cur)) {
      const a = (cur as ProtoJson)['@type'];
      const b = (v as ProtoJson)['@type'];
      if (a !== undefined && b !== undefined && a !== b) dst[k] = structuredClone(v);
      else dst[k] = mergeProto(cur as ProtoJson, v as ProtoJson);
    } else dst[k] = structuredClone(v);
  }
  return dst;
}

function listenerDirection(l: ProtoJson): 'SIDECAR_INBOUND' | 'SIDECAR_OUTBOUND' {
  return l['trafficDirection'] === 'INBOUND' ? 'SIDECAR_INBOUND' : 'SIDECAR_OUTBOUND';
}

function contextMatches(ctx: string | undefined, actual: 'SIDECAR_INBOUND' | 'SIDECAR_OUTBOUND', proxy: Proxy): boolean {
  if (!ctx || ctx === 'ANY') return true;
  if (ctx === 'GATEWAY') return proxy.type === 'router';
  return proxy.type === 'sidecar' && ctx === actual;
}

function proxyMatches(p: Patch, proxy: Proxy): boolean {
  const m = p.match?.proxy;
  if (!m) return true;
  if (m.proxyVersion) {
    const v = String(proxy.metadata['ISTIO_VERSION'] ?? '');
    try {
      if (!new RegExp(`^(?:${m.proxyVersion})$`).test(v)) return false;
    } catch {
      return false;
    }
  }
  for (const [k, v] of Object.entries(m.metadata ?? {})) if (String(proxy.metadata[k] ?? '') !== v) return false;
  return true;
}

function listenerPort(l: ProtoJson): number | undefined {
  return ((l['address'] as ProtoJson | undefined)?.['socketAddress'] as ProtoJson | undefined)?.['portValue'] as number | undefined;
}

function chains(l: ProtoJson): ProtoJson[] {
  return (l['filterChains'] as ProtoJson[] | undefined) ?? [];
}

function filtersOf(fc: ProtoJson): ProtoJson[] {
  return (fc['filters'] as ProtoJson[] | undefined) ?? [];
}

function hcmOf(f: ProtoJson): ProtoJson | undefined {
  const tc = f['typedConfig'] as ProtoJson | undefined;
  return tc?.['@type'] === HCM_TYPE ? tc : undefined;
}

type ListenerMatch = NonNullable<NonNullable<EnvoyConfigObjectPatch['match']>['listener']>;

function listenerMatches(l: ProtoJson, m: ListenerMatch | undefined): boolean {
  if (!m) return true;
  if (m.name && l['name'] !== m.name) return false;
  if (m.portNumber !== undefined) {
    const direct = listenerPort(l) === m.portNumber;
    // Inbound ports live as filter chains of virtualInbound (matched by destination port).
    const viaChain = chains(l).some((fc) => (fc['filterChainMatch'] as ProtoJson | undefined)?.['destinationPort'] === m.portNumber);
    if (!direct && !viaChain) return false;
  }
  if (m.filterChain && !chains(l).some((fc) => chainMatches(l, fc, m))) return false;
  return true;
}

function chainMatches(l: ProtoJson, fc: ProtoJson, m: ListenerMatch | undefined): boolean {
  if (!m) return true;
  const fcm = (fc['filterChainMatch'] as ProtoJson | undefined) ?? {};
  if (m.portNumber !== undefined && listenerPort(l) !== m.portNumber && fcm['destinationPort'] !== m.portNumber) return false;
  const c = m.filterChain;
  if (!c) return true;
  if (c.name && fc['name'] !== c.name) return false;
  if (c.sni && !((fcm['serverNames'] as string[] | undefined) ?? []).includes(c.sni)) return false;
  if (c.transportProtocol && (fcm['transportProtocol'] ?? '') !== c.transportProtocol) return false;
  if (c.applicationProtocols && !c.applicationProtocols.split(',').every((p) => ((fcm['applicationProtocols'] as string[] | undefined) ?? []).includes(p.trim()))) return false;
  if (c.destinationPort !== undefined && fcm['destinationPort'] !== c.destinationPort) return false;
  if (c.filter?.name) {
    const f = filtersOf(fc).find((x) => x['name'] === c.filter?.name);
    if (!f) return false;
    const sub = c.filter.subFilter?.name;
    if (sub && !((hcmOf(f)?.['httpFilters'] as ProtoJson[] | undefined) ?? []).some((h) => h['name'] === sub)) return false;
  }
  return true;
}

/** Applies a list operation at the element matching `isTarget` (or appends for ADD). */
function patchList(list: ProtoJson[], op: Op, value: ProtoJson | undefined, isTarget: (x: ProtoJson) => boolean, anchored: boolean): ProtoJson[] {
  switch (op) {
    case 'ADD':
      return value ? [...list, structuredClone(value)] : list;
    case 'INSERT_FIRST':
      return value ? [structuredClone(value), ...list] : list;
    case 'REMOVE':
      return anchored ? list.filter((x) => !isTarget(x)) : list;
    case 'MERGE':
      return list.map((x) => (isTarget(x) && value ? mergeProto(x, value) : x));
    case 'REPLACE':
      return list.map((x) => (isTarget(x) && value ? structuredClone(value) : x));
    case 'INSERT_BEFORE':
    case 'INSERT_AFTER': {
      const i = list.findIndex(isTarget);
      if (i < 0 || !value) return list;
      const at = op === 'INSERT_BEFORE' ? i : i + 1;
      return [...list.slice(0, at), structuredClone(value), ...list.slice(at)];
    }
    default:
      return list;
  }
}

function applyListenerPatch(listeners: ProtoJson[], p: Patch, value: ProtoJson | undefined, proxy: Proxy): ProtoJson[] {
  const op = p.patch?.operation as Op;
  const m = p.match?.listener;
  const ctx = p.match?.context;
  if (p.applyTo === 'LISTENER') {
    if (op === 'ADD') return contextMatches(ctx, value ? listenerDirection(value) : 'SIDECAR_OUTBOUND', proxy) && value ? [...listeners, structuredClone(value)] : listeners;
    return patchList(listeners, op, value, (l) => contextMatches(ctx, listenerDirection(l), proxy) && listenerMatches(l, m), true);
  }
  for (const l of listeners) {
    if (!contextMatches(ctx, listenerDirection(l), proxy)) continue;
    if (m?.name && l['name'] !== m.name) continue;
    if (m?.portNumber !== undefined && !listenerMatches(l, { portNumber: m.portNumber })) continue;
    if (p.applyTo === 'FILTER_CHAIN') {
      if (op === 'ADD' || op === 'INSERT_FIRST') {
        if (!m?.filterChain || chains(l).some((fc) => chainMatches(l, fc, m))) l['filterChains'] = patchList(chains(l), op, value, () => false, false);
      } else {
        l['filterChains'] = patchList(chains(l), op, value, (fc) => chainMatches(l, fc, m), true);
      }
      continue;
    }
    for (const fc of chains(l)) {
      // For filter patches the chain is matched without its filter clause; the filter is the anchor.
      const chainOnly: ListenerMatch | undefined = m?.filterChain ? { ...m, filterChain: { ...m.filterChain, filter: undefined } } : m;
      if (!chainMatches(l, fc, chainOnly)) continue;
      const filterName = m?.filterChain?.filter?.name;
      if (p.applyTo === 'NETWORK_FILTER') {
        const anchored = filterName !== undefined;
        fc['filters'] = patchList(filtersOf(fc), op, value, (f) => f['name'] === filterName, anchored);
      } else if (p.applyTo === 'HTTP_FILTER') {
        for (const f of filtersOf(fc)) {
          const hcm = hcmOf(f);
          if (!hcm) continue;
          if (filterName && f['name'] !== filterName) continue;
          const sub = m?.filterChain?.filter?.subFilter?.name;
          const list = (hcm['httpFilters'] as ProtoJson[] | undefined) ?? [];
          if ((op === 'MERGE' || op === 'REPLACE') && !sub) continue;
          // As Istio: INSERT_BEFORE without a subFilter inserts first, INSERT_AFTER without one appends.
          const unanchored: Op = op === 'INSERT_BEFORE' ? 'INSERT_FIRST' : op === 'INSERT_AFTER' ? 'ADD' : op;
          hcm['httpFilters'] = patchList(list, sub === undefined ? unanchored : op, value, (h) => h['name'] === sub, sub !== undefined);
        }
      }
    }
  }
  return listeners;
}

function routePort(name: string): number | undefined {
  const n = Number(name.slice(name.lastIndexOf(':') + 1));
  return Number.isInteger(n) ? n : undefined;
}

/**
 * Route patches on route configurations: RDS ones (outbound) or the inline ones of inbound
 * connection managers (named `inbound|PORT||`, matched by that port).
 */
function applyRoutePatch(routes: ProtoJson[], p: Patch, value: ProtoJson | undefined, proxy: Proxy, direction: 'SIDECAR_INBOUND' | 'SIDECAR_OUTBOUND' = 'SIDECAR_OUTBOUND'): ProtoJson[] {
  const op = p.patch?.operation as Op;
  if (!contextMatches(p.match?.context, direction, proxy)) return routes;
  const m = p.match?.routeConfiguration;
  const portOf = (name: string): number | undefined => (direction === 'SIDECAR_INBOUND' ? parseClusterName(name)?.port : routePort(name));
  const rcMatches = (rc: ProtoJson): boolean => {
    if (!m) return true;
    if (m.name && rc['name'] !== m.name) return false;
    if (m.portNumber !== undefined && portOf(String(rc['name'])) !== m.portNumber) return false;
    if (m.gateway) return false;
    return true;
  };
  if (p.applyTo === 'ROUTE_CONFIGURATION') {
    if (op === 'ADD') return value && direction === 'SIDECAR_OUTBOUND' ? [...routes, structuredClone(value)] : routes;
    return patchList(routes, op, value, rcMatches, true);
  }
  const vm = m?.vhost;
  const vhostMatches = (vh: ProtoJson): boolean => {
    if (vm?.name && vh['name'] !== vm.name) return false;
    if (vm?.domainName && !((vh['domains'] as string[] | undefined) ?? []).includes(vm.domainName)) return false;
    return true;
  };
  for (const rc of routes) {
    if (!rcMatches(rc)) continue;
    const vhosts = (rc['virtualHosts'] as ProtoJson[] | undefined) ?? [];
    if (p.applyTo === 'VIRTUAL_HOST') {
      rc['virtualHosts'] = op === 'ADD' || op === 'INSERT_FIRST'
        ? patchList(vhosts, op, value, () => false, false)
        : patchList(vhosts, op, value, vhostMatches, true);
      continue;
    }
    const rm = vm?.route;
    const routeMatches = (r: ProtoJson): boolean => {
      if (rm?.name && r['name'] !== rm.name) return false;
      switch (rm?.action) {
        case 'ROUTE': return 'route' in r;
        case 'REDIRECT': return 'redirect' in r;
        case 'DIRECT_RESPONSE': return 'directResponse' in r;
        default: return true;
      }
    };
    for (const vh of vhosts) {
      if (!vhostMatches(vh)) continue;
      const list = (vh['routes'] as ProtoJson[] | undefined) ?? [];
      vh['routes'] = op === 'ADD' || op === 'INSERT_FIRST' ? patchList(list, op, value, () => false, false) : patchList(list, op, value, routeMatches, true);
    }
  }
  return routes;
}

function applyClusterPatch(clusters: ProtoJson[], p: Patch, value: ProtoJson | undefined, proxy: Proxy): ProtoJson[] {
  const op = p.patch?.operation as Op;
  const m = p.match?.cluster;
  const ctx = p.match?.context;
  if (op === 'ADD') return value && contextMatches(ctx, 'SIDECAR_OUTBOUND', proxy) ? [...clusters, structuredClone(value)] : clusters;
  const matches = (c: ProtoJson): boolean => {
    const name = String(c['name']);
    const parsed = parseClusterName(name);
    const dir = parsed?.direction === 'inbound' ? 'SIDECAR_INBOUND' : 'SIDECAR_OUTBOUND';
    if (!contextMatches(ctx, dir, proxy)) return false;
    if (!m) return true;
    if (m.name && name !== m.name) return false;
    if (m.portNumber !== undefined && parsed?.port !== m.portNumber) return false;
    if (m.service && parsed?.host !== m.service) return false;
    if (m.subset && parsed?.subset !== m.subset) return false;
    return true;
  };
  return patchList(clusters, op, value, matches, true);
}

function patchInboundRoutes(listeners: ProtoJson[], p: Patch, value: ProtoJson | undefined, proxy: Proxy): ProtoJson[] {
  for (const l of listeners) {
    if (listenerDirection(l) !== 'SIDECAR_INBOUND') continue;
    for (const fc of chains(l)) {
      for (const f of filtersOf(fc)) {
        const hcm = hcmOf(f);
        const rc = hcm?.['routeConfig'] as ProtoJson | undefined;
        if (!hcm || !rc) continue;
        const [patched] = applyRoutePatch([rc], p, value, proxy, 'SIDECAR_INBOUND');
        if (patched) hcm['routeConfig'] = patched;
        else delete hcm['routeConfig'];
      }
    }
  }
  return listeners;
}

/** Problems found in EnvoyFilters of this snapshot (bad patch values), by EnvoyFilter key. */
export function envoyFilterProblems(push: SextantPushContext): ReadonlyMap<string, string> {
  return push.memoize('envoyfilter-problems', () => new Map<string, string>());
}

/** The normalized value of a patch, once per snapshot; undefined (and a problem recorded) when invalid. */
function patchValue(push: SextantPushContext, p: Patch, index: number): ProtoJson | undefined | null {
  const key = `envoyfilter-value|${p.source}|${index}`;
  return push.memoize(key, () => {
    if (!p.patch?.value) return undefined;
    try {
      return normalizePatchValue(p.applyTo ?? '', p.patch.value);
    } catch (e) {
      (envoyFilterProblems(push) as Map<string, string>).set(p.source, `configPatches[${index}].patch.value: ${(e as Error).message}`);
      return null;
    }
  });
}

/**
 * Applies every EnvoyFilter selecting `proxy` to the resources of one type. Resources are
 * shared between proxies, so they are copied before the first patch touches them.
 */
export function applyEnvoyFilters(push: SextantPushContext, proxy: Proxy, typeUrl: XdsTypeUrl, resources: ProtoJson[]): ProtoJson[] {
  const patches: { p: Patch; i: number }[] = [];
  for (const ef of envoyFiltersFor(push, proxy)) {
    (ef.spec.configPatches ?? []).forEach((cp, i) => {
      if (!cp.applyTo) return;
      const target = APPLY_TO_TYPE[cp.applyTo];
      // Route patches for inbound traffic land in the listeners' inline route configurations.
      const inboundRoute = target === ROUTE_TYPE && typeUrl === LISTENER_TYPE && (cp.match?.context ?? 'ANY') !== 'SIDECAR_OUTBOUND' && cp.match?.context !== 'GATEWAY';
      if (target === typeUrl || inboundRoute) patches.push({ p: { ...cp, source: ef.key }, i });
    });
  }
  if (patches.length === 0) return resources;
  let out = structuredClone(resources);
  for (const { p, i } of patches) {
    if (!proxyMatches(p, proxy)) continue;
    const op = p.patch?.operation;
    if (!op || op === 'INVALID') continue;
    const value = patchValue(push, p, i);
    if (value === null) continue; // invalid value: skipped, reported by envoyFilterProblems
    if (op !== 'REMOVE' && value === undefined) continue;
    if (typeUrl === LISTENER_TYPE && APPLY_TO_TYPE[p.applyTo ?? ''] === ROUTE_TYPE) out = patchInboundRoutes(out, p, value, proxy);
    else if (typeUrl === LISTENER_TYPE) out = applyListenerPatch(out, p, value, proxy);
    else if (typeUrl === ROUTE_TYPE) out = applyRoutePatch(out, p, value, proxy);
    else if (typeUrl === CLUSTER_TYPE) out = applyClusterPatch(out, p, value, proxy);
  }
  return out;
}
