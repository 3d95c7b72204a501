// AdaptiveLimit → the sidecar's admission gate: for each inbound HTTP port of a workload that
// backs a rule's service, a `sextant.filters.http.admission` filter (a TypedStruct) before the
// router of that port's inbound connection manager. The gate reads its limit from the
// `sextant-adaptive` runtime layer (runtime.ts) and falls back to the rule's fail-safe when no
// lease is held. Also the rules' instances, which the adaptive-limits controller splits its
// budget over.
import { TYPED_STRUCT_TYPE } from '../../envoy/index.ts';
import type { ProtoJson } from '../../envoy/index.ts';
import { adaptiveLimitSettings, type AdaptiveLimitSettings, type AdaptiveLimitSpec } from '../../api/index.ts';
import { isHttpProtocol } from '../../registry/index.ts';
import type { Service } from '../../registry/index.ts';
import type { Proxy } from '../model.ts';
import type { SextantPushContext } from '../push/context.ts';
import { resolveHost } from '../push/context.ts';
import { proxyServiceTargets } from '../push/scope.ts';
import { inboundPorts } from './inbound.ts';
import { clusterName } from './names.ts';
import { limitRuntimeKey } from './runtime.ts';

export const ADMISSION_FILTER = 'sextant.filters.http.admission';
export const ADMISSION_TYPE = 'type.googleapis.com/sextant.filters.http.admission.v1.Admission';
const HCM_FILTER = 'envoy.filters.network.http_connection_manager';
const ROUTER_FILTER = 'envoy.filters.http.router';

/** One AdaptiveLimit of a snapshot, resolved: its settings and the service it names. */
export interface AdaptiveRule {
  /** `AdaptiveLimit/namespace/name` (the store key). */
  key: string;
  /** `namespace/name`, as the filter, the status and the metrics name it. */
  id: string;
  namespace: string;
  name: string;
  /** The host as resolved in the rule's namespace. */
  host: string;
  settings: AdaptiveLimitSettings;
  /** The service the host names; undefined while no ServiceEntry declares it. */
  service: Service | undefined;
}

/** One instance of a rule's service: an endpoint's address and the port its sidecar receives on. */
export interface AdaptiveInstance {
  address: string;
  /** The workload's port (the inbound cluster `inbound|PORT||`). */
  port: number;
  /** Healthy and not draining: only these share the budget. */
  healthy: boolean;
}

/** Every AdaptiveLimit of the snapshot, by namespace then name, memoized per snapshot. */
export function adaptiveRules(push: SextantPushContext): readonly AdaptiveRule[] {
  return push.memoize('adaptive|rules', () => {
    const out: AdaptiveRule[] = [];
    for (const r of push.resources) {
      if (r.kind !== 'AdaptiveLimit') continue;
      const spec = r.spec as AdaptiveLimitSpec;
      const namespace = r.metadata.namespace;
      const host = resolveHost(spec.host, namespace);
      out.push({
        key: `AdaptiveLimit/${namespace}/${r.metadata.name}`,
        id: `${namespace}/${r.metadata.name}`,
        namespace,
        name: r.metadata.name,
        host,
        settings: adaptiveLimitSettings(spec),
        service: push.serviceFor(host, namespace),
      });
    }
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  });
}

/** Whether a rule covers a service port: its port, or every HTTP port when it names none. */
function coversPort(rule: AdaptiveRule, port: number, protocol: string): boolean {
  return rule.settings.port === undefined ? isHttpProtocol(protocol as Parameters<typeof isHttpProtocol>[0]) : rule.settings.port === port;
}

/** The instances of a rule's service (each endpoint address and workload port once), sorted. */
export function adaptiveInstances(push: SextantPushContext, rule: AdaptiveRule): AdaptiveInstance[] {
  const svc = rule.service;
  if (svc === undefined) return [];
  const byPort = push.registry.endpoints.get(svc.key);
  const seen = new Map<string, AdaptiveInstance>();
  for (const p of svc.ports) {
    if (!coversPort(rule, p.port, p.protocol)) continue;
    for (const ep of byPort?.get(p.port) ?? []) {
      const k = `${ep.address}|${ep.port}`;
      const healthy = ep.healthy && ep.draining !== true;
      const prev = seen.get(k);
      if (prev === undefined) seen.set(k, { address: ep.address, port: ep.port, healthy });
      else prev.healthy &&= healthy;
    }
  }
  return [...seen.values()].sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : a.port - b.port));
}

/** A rule selecting one of a proxy's inbound ports. */
export interface AdaptiveSelection {
  rule: AdaptiveRule;
  inboundPort: number;
}

/**
 * The rules that gate this proxy's inbound ports: the proxy backs the rule's service (an
 * endpoint at its address) on a port the rule covers, and has an HTTP inbound listener chain
 * for that workload port. One rule per port: the first by namespace and name wins.
 */
export function adaptiveSelections(push: SextantPushContext, proxy: Proxy): AdaptiveSelection[] {
  if (proxy.type !== 'sidecar' || proxy.generator !== 'envoy') return [];
  const rules = adaptiveRules(push);
  if (rules.length === 0) return [];
  const inbound = new Map(inboundPorts(push, proxy).filter((p) => isHttpProtocol(p.protocol)).map((p) => [p.port, p]));
  if (inbound.size === 0) return [];
  const targets = proxyServiceTargets(push, proxy);
  const out: AdaptiveSelection[] = [];
  const taken = new Set<number>();
  for (const rule of rules) {
    if (rule.service === undefined) continue;
    for (const t of targets) {
      if (t.service.key !== rule.service.key || !coversPort(rule, t.port, t.protocol)) continue;
      if (!inbound.has(t.targetPort) || taken.has(t.targetPort)) continue;
      taken.add(t.targetPort);
      out.push({ rule, inboundPort: t.targetPort });
    }
  }
  return out.sort((a, b) => a.inboundPort - b.inboundPort);
}

/** What distinguishes proxies whose listeners differ by their adaptive limits (for the listener memo). */
export function adaptiveClassKey(push: SextantPushContext, proxy: Proxy): string {
  const sel = adaptiveSelections(push, proxy);
  return sel.length === 0 ? '' : sel.map((s) => `${s.rule.id}@${s.inboundPort}`).join(',');
}

/** Whether the AdaptiveLimit `key` gates one of this proxy's inbound ports in `push`. */
export function adaptiveLimitSelects(push: SextantPushContext, key: string, proxy: Proxy): boolean {
  return adaptiveSelections(push, proxy).some((s) => s.rule.key === key);
}

/** The admission filter for one rule on one inbound port (the contract between pilot and proxy). */
export function admissionFilter(rule: AdaptiveRule, inboundPort: number): ProtoJson {
  const s = rule.settings;
  return {
    name: ADMISSION_FILTER,
    typedConfig: {
      '@type': TYPED_STRUCT_TYPE,
      typeUrl: ADMISSION_TYPE,
      value: {
        rule: rule.id,
        limitRuntimeKey: limitRuntimeKey(inboundPort),
        failSafeLimit: s.failSafeLimit,
        floor: s.floor,
        ceiling: s.ceiling,
        queueSize: s.queueSize,
        queueTimeoutMs: s.queueTimeoutMs,
        tierHeader: s.tierHeader,
        tiers: s.tiers,
        tier0ReservePercent: s.tier0ReservePercent,
        enforce: s.enforce,
        reject: { status: s.rejectStatus, body: s.rejectBody },
        reflex: { latencyTargetMs: s.reflexLatencyTargetMs, maxCutPercent: s.reflexMaxCutPercent },
      },
    },
  };
}

/** Puts the admission filter before the router of each gated inbound HTTP chain. */
export function applyAdaptiveLimits(push: SextantPushContext, proxy: Proxy, listeners: ProtoJson[]): ProtoJson[] {
  const selections = adaptiveSelections(push, proxy);
  if (selections.length === 0) return listeners;
  const byChain = new Map(selections.map((s) => [clusterName('inbound', s.inboundPort, '', ''), s]));
  return listeners.map((l) => {
    if (l['trafficDirection'] !== 'INBOUND') return l;
    const chains = (l['filterChains'] as ProtoJson[] | undefined) ?? [];
    let changed = false;
    const next = chains.map((c) => {
      const sel = byChain.get(String(c['name'] ?? ''));
      if (sel === undefined) return c;
      const gated = withAdmission(c, admissionFilter(sel.rule, sel.inboundPort));
      if (gated !== c) changed = true;
      return gated;
    });
    return changed ? { ...l, filterChains: next } : l;
  });
}

function withAdmission(chain: ProtoJson, filter: ProtoJson): ProtoJson {
  const filters = (chain['filters'] as ProtoJson[] | undefined) ?? [];
  const i = filters.findIndex((f) => f['name'] === HCM_FILTER);
  if (i < 0) return chain;
  const hcm = filters[i]!;
  const tc = hcm['typedConfig'] as ProtoJson;
  const http = [...((tc['httpFilters'] as ProtoJson[] | undefined) ?? [])];
  const router = http.findIndex((f) => f['name'] === ROUTER_FILTER);
  http.splice(router < 0 ? http.length : router, 0, filter);
  const next = { ...hcm, typedConfig: { ...tc, httpFilters: http } };
  return { ...chain, filters: filters.map((f, j) => (j === i ? next : f)) };
}

/** One rule with its instances: what the adaptive-limits controller reads of a snapshot. */
export interface AdaptiveTarget {
  key: string;
  id: string;
  namespace: string;
  name: string;
  settings: AdaptiveLimitSettings;
  instances: readonly AdaptiveInstance[];
}

/**
 * Every rule with its service's instances, memoized per snapshot (the instances per service,
 * so the endpoint fast path recomputes only the services whose endpoints moved).
 */
export function adaptiveTargets(push: SextantPushContext): AdaptiveTarget[] {
  return adaptiveRules(push).map((rule) => ({
    key: rule.key,
    id: rule.id,
    namespace: rule.namespace,
    name: rule.name,
    settings: rule.settings,
    instances: rule.service === undefined ? [] : push.memoizeEndpoints(rule.service.key, `adaptive|instances|${rule.id}`, () => adaptiveInstances(push, rule)),
  }));
}
