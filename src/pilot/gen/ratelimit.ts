// RateLimit → Envoy's local rate limit on the inbound side of the workloads a rule selects:
// for each of their inbound HTTP ports it covers, an `envoy.filters.http.local_ratelimit`
// before the router of that port's connection manager (the rule's default bucket, and one
// descriptor bucket per route and per caller), and on the port's inline routes the
// `rate_limits` actions that turn a request into those descriptors: a header match for a
// route (a path prefix, or the match of a VirtualService route of the host by name), the
// caller's mTLS identity (a descriptor expression), its address or its masked address.
import type { ProtoJson } from '../../envoy/index.ts';
import type { HTTPMatchRequest, LabelSelector, RateLimitBucket, RateLimitSpec, StringMatch } from '../../api/index.ts';
import { parseDurationMs } from '../../api/index.ts';
import { isHttpProtocol, labelsMatch } from '../../registry/index.ts';
import type { Service } from '../../registry/index.ts';
import type { Proxy } from '../model.ts';
import type { SextantPushContext } from '../push/context.ts';
import { hostMatches, resolveHost } from '../push/context.ts';
import { proxyServiceTargets } from '../push/scope.ts';
import { inboundPorts } from './inbound.ts';
import { clusterName } from './names.ts';

export const LOCAL_RATELIMIT_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit';
const EXPR_DESCRIPTOR_TYPE = 'type.googleapis.com/envoy.extensions.rate_limit_descriptors.expr.v3.Descriptor';
const HCM_FILTER = 'envoy.filters.network.http_connection_manager';
const ROUTER_FILTER = 'envoy.filters.http.router';
/** The largest bucket Envoy's uint32 holds: "no limit" for the default bucket of a rule without one. */
const UNLIMITED = 4_294_967_295;

/** One RateLimit of a snapshot, resolved. */
export interface RateLimitRule {
  /** `RateLimit/namespace/name` (the store key). */
  key: string;
  /** `namespace/name`. */
  id: string;
  namespace: string;
  name: string;
  spec: RateLimitSpec;
  /** The host as resolved in the rule's namespace, when the rule names one. */
  host: string | undefined;
  service: Service | undefined;
}

/** A rule on one of a proxy's inbound ports (the workload port, `inbound|PORT||`). */
export interface RateLimitSelection {
  rule: RateLimitRule;
  inboundPort: number;
  /** The service port the host's routes are matched on (undefined for a selector rule). */
  servicePort: number | undefined;
}

/** Every RateLimit of the snapshot, by namespace then name, memoized per snapshot. */
export function rateLimitRules(push: SextantPushContext): readonly RateLimitRule[] {
  return push.memoize('ratelimit|rules', () => {
    const out: RateLimitRule[] = [];
    for (const r of push.resources) {
      if (r.kind !== 'RateLimit') continue;
      const spec = r.spec as RateLimitSpec;
      const namespace = r.metadata.namespace;
      const host = spec.host === undefined ? undefined : resolveHost(spec.host, namespace);
      out.push({
        key: `RateLimit/${namespace}/${r.metadata.name}`, id: `${namespace}/${r.metadata.name}`, namespace, name: r.metadata.name,
        spec, host, service: host === undefined ? undefined : push.serviceFor(host, namespace),
      });
    }
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  });
}

/**
 * The rules on this sidecar's inbound HTTP ports: a host rule where the proxy backs the
 * service (on the rule's port, or each HTTP port), a selector rule (its namespace or the root
 * namespace) where the labels match, a rule with neither on every workload of its namespace.
 */
export function rateLimitSelections(push: SextantPushContext, proxy: Proxy): RateLimitSelection[] {
  if (proxy.type !== 'sidecar' || proxy.generator !== 'envoy') return [];
  const rules = rateLimitRules(push);
  if (rules.length === 0) return [];
  const inbound = inboundPorts(push, proxy).filter((p) => isHttpProtocol(p.protocol)).map((p) => p.port);
  if (inbound.length === 0) return [];
  const out: RateLimitSelection[] = [];
  for (const rule of rules) {
    const spec = rule.spec;
    if (rule.host !== undefined) {
      if (rule.service === undefined) continue;
      const seen = new Set<number>();
      for (const t of proxyServiceTargets(push, proxy)) {
        if (t.service.key !== rule.service.key || !inbound.includes(t.targetPort) || seen.has(t.targetPort)) continue;
        if (spec.port !== undefined ? t.port !== spec.port : !isHttpProtocol(t.protocol as Parameters<typeof isHttpProtocol>[0])) continue;
        seen.add(t.targetPort);
        out.push({ rule, inboundPort: t.targetPort, servicePort: t.port });
      }
      continue;
    }
    if (!selects(spec.workloadSelector, rule.namespace, proxy, push.mesh.rootNamespace)) continue;
    for (const port of inbound) if (spec.port === undefined || spec.port === port) out.push({ rule, inboundPort: port, servicePort: undefined });
  }
  return out;
}

function selects(selector: LabelSelector | undefined, namespace: string, proxy: Proxy, rootNamespace: string): boolean {
  if (selector === undefined) return namespace === proxy.namespace;
  if (namespace !== proxy.namespace && namespace !== rootNamespace) return false;
  return labelsMatch(selector.matchLabels, proxy.labels);
}

/** What distinguishes proxies whose listeners differ by their rate limits (for the listener memo). */
export function rateLimitClassKey(push: SextantPushContext, proxy: Proxy): string {
  const sel = rateLimitSelections(push, proxy);
  return sel.length === 0 ? '' : sel.map((s) => `${s.rule.id}@${s.inboundPort}`).join(',');
}

/** Whether the RateLimit `key` applies to one of this proxy's inbound ports in `push`. */
export function rateLimitSelects(push: SextantPushContext, key: string, proxy: Proxy): boolean {
  return rateLimitSelections(push, proxy).some((s) => s.rule.key === key);
}

/** The names a rule's descriptors use (its own, so two rules' descriptors never meet). */
function keys(rule: RateLimitRule): { route: string; principal: string } {
  const base = `ratelimit.${rule.namespace}.${rule.name}`;
  return { route: `${base}.route`, principal: `${base}.principal` };
}

function routeLabel(r: { name?: string; pathPrefix?: string }): string {
  return r.name !== undefined ? `name:${r.name}` : `prefix:${r.pathPrefix ?? ''}`;
}

function bucket(b: RateLimitBucket): ProtoJson {
  const ms = parseDurationMs(b.fillInterval) ?? 1000;
  return { maxTokens: b.tokens, tokensPerFill: b.tokensPerFill ?? b.tokens, fillInterval: `${ms / 1000}s` };
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

function percent(p: number | undefined): ProtoJson {
  return { numerator: Math.round((p ?? 100) * 100), denominator: 'TEN_THOUSAND' };
}

function headerValues(h: Record<string, string> | undefined): ProtoJson[] {
  return Object.entries(h ?? {}).map(([key, value]) => ({ header: { key, value }, appendAction: 'OVERWRITE_IF_EXISTS_OR_ADD' }));
}

/** The caller's address entry for a sourceIp (exact: remote_address; a CIDR: masked_remote_address). */
function callerAddress(ip: string): { action: ProtoJson; entry: { key: string; value: string } } {
  const slash = ip.indexOf('/');
  if (slash < 0) return { action: { remoteAddress: {} }, entry: { key: 'remote_address', value: ip } };
  const addr = ip.slice(0, slash);
  const len = Number(ip.slice(slash + 1));
  const v6 = addr.includes(':');
  const action = { maskedRemoteAddress: v6 ? { v6PrefixMaskLen: len } : { v4PrefixMaskLen: len } };
  return { action, entry: { key: 'masked_remote_address', value: `${maskedNetwork(addr, len)}/${len}` } };
}

/** The network address of `addr`/`len`, written as Envoy's masked_remote_address writes it. */
function maskedNetwork(addr: string, len: number): string {
  if (!addr.includes(':')) {
    const n = addr.split('.').reduce((acc, o) => (acc << 8) | Number(o), 0) >>> 0;
    const m = (n & (len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0)) >>> 0;
    return `${m >>> 24}.${(m >>> 16) & 255}.${(m >>> 8) & 255}.${m & 255}`;
  }
  const [head = '', tail = ''] = addr.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = addr.includes('::') ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : h;
  let bits = len;
  const out = groups.map((g) => {
    const keep = Math.max(0, Math.min(16, bits));
    bits -= 16;
    return (keep === 0 ? 0 : parseInt(g, 16) & ((0xffff << (16 - keep)) & 0xffff)).toString(16);
  });
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < out.length;) {
    if (out[i] !== '0') { i++; continue; }
    let j = i;
    while (j < out.length && out[j] === '0') j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  return best < 0 ? out.join(':') : `${out.slice(0, best).join(':')}::${out.slice(best + bestLen).join(':')}`;
}

/** The local rate limit filter of one rule (the same on every port it covers). */
export function rateLimitFilter(rule: RateLimitRule): ProtoJson {
  const spec = rule.spec;
  const k = keys(rule);
  const descriptors: ProtoJson[] = [];
  const intervals: number[] = [];
  for (const r of spec.routes ?? []) {
    descriptors.push({ entries: [{ key: k.route, value: routeLabel(r) }], tokenBucket: bucket(r.limit) });
    intervals.push(parseDurationMs(r.limit.fillInterval) ?? 1000);
  }
  for (const c of spec.callers ?? []) {
    const entry = c.principal !== undefined ? { key: k.principal, value: c.principal } : callerAddress(c.sourceIp!).entry;
    descriptors.push({ entries: [entry], tokenBucket: bucket(c.limit) });
    intervals.push(parseDurationMs(c.limit.fillInterval) ?? 1000);
  }
  const value: ProtoJson = {
    '@type': LOCAL_RATELIMIT_TYPE,
    statPrefix: `ratelimit.${rule.namespace}.${rule.name}`,
    filterEnabled: { runtimeKey: `ratelimit.${rule.namespace}.${rule.name}.enabled`, defaultValue: percent(spec.enabledPercent) },
    filterEnforced: { runtimeKey: `ratelimit.${rule.namespace}.${rule.name}.enforced`, defaultValue: percent(spec.enforcedPercent) },
  };
  if (spec.limit !== undefined) value['tokenBucket'] = bucket(spec.limit);
  else {
    // No default limit: a default bucket that never runs dry, refilled at the descriptors' common interval.
    const every = Math.max(50, intervals.reduce((a, b) => gcd(a, b)));
    value['tokenBucket'] = { maxTokens: UNLIMITED, tokensPerFill: UNLIMITED, fillInterval: `${every / 1000}s` };
    value['alwaysConsumeDefaultTokenBucket'] = false;
  }
  if (descriptors.length > 0) value['descriptors'] = descriptors;
  if (spec.status !== undefined && spec.status !== 429) value['status'] = { code: spec.status };
  const response = headerValues(spec.headers?.response);
  if (response.length > 0) value['responseHeadersToAdd'] = response;
  const shadow = headerValues(spec.headers?.shadow);
  if (shadow.length > 0) value['requestHeadersToAddWhenNotEnforced'] = shadow;
  if (spec.headers?.rateLimit === true) value['enableXRatelimitHeaders'] = 'DRAFT_VERSION_03';
  return { name: `sextant.ratelimit.${rule.namespace}.${rule.name}`, typedConfig: value };
}

/**
 * The rate_limits actions of one rule on one port: a header match per route (per match block
 * of a VirtualService route), the caller's identity, and its address (exact, or per mask length).
 */
export function rateLimitActions(push: SextantPushContext, sel: RateLimitSelection): ProtoJson[] {
  const { rule } = sel;
  const spec = rule.spec;
  const k = keys(rule);
  const out: ProtoJson[] = [];
  for (const r of spec.routes ?? []) {
    const label = routeLabel(r);
    const blocks = r.pathPrefix !== undefined ? [[{ name: ':path', stringMatch: { prefix: r.pathPrefix } }]] : virtualServiceRouteMatchers(push, rule, r.name!, sel.servicePort);
    for (const headers of blocks) {
      out.push({ actions: [{ headerValueMatch: { descriptorKey: k.route, descriptorValue: label, expectMatch: true, headers } }] });
    }
  }
  const callers = spec.callers ?? [];
  if (callers.some((c) => c.principal !== undefined)) {
    out.push({ actions: [{ extension: { name: 'envoy.rate_limit_descriptors.expr', typedConfig: { '@type': EXPR_DESCRIPTOR_TYPE, descriptorKey: k.principal, text: 'connection.uri_san_peer_certificate' } } }] });
  }
  const seen = new Set<string>();
  for (const c of callers) {
    if (c.sourceIp === undefined) continue;
    const { action } = callerAddress(c.sourceIp);
    const id = JSON.stringify(action);
    if (seen.has(id)) continue;
    seen.add(id);
    out.push({ actions: [action] });
  }
  return out;
}

/**
 * A VirtualService route of the rule's host by name, as header matchers (one list per match
 * block; a route without match blocks matches everything). Blocks that look at what the
 * inbound side cannot see (source labels, namespaces, gateways other than the mesh) or at
 * query parameters, and blocks for another port, are left out.
 */
function virtualServiceRouteMatchers(push: SextantPushContext, rule: RateLimitRule, name: string, servicePort: number | undefined): ProtoJson[][] {
  const host = rule.host;
  if (host === undefined) return [];
  const out: ProtoJson[][] = [];
  for (const vs of push.virtualServices) {
    if (vs.exportTo !== null && vs.namespace !== rule.namespace && !vs.exportTo.has(rule.namespace)) continue;
    if (!(vs.spec.hosts ?? []).some((h) => hostMatches(resolveHost(h, vs.namespace), host))) continue;
    for (const route of vs.spec.http ?? []) {
      if (route.name !== name) continue;
      const blocks = route.match ?? [];
      if (blocks.length === 0) return [[{ name: ':path', stringMatch: { prefix: '/' } }]];
      for (const m of blocks) {
        const headers = blockMatchers(m, servicePort);
        if (headers !== undefined) out.push(headers);
      }
      return out;
    }
  }
  return out;
}

function blockMatchers(m: HTTPMatchRequest, servicePort: number | undefined): ProtoJson[] | undefined {
  if (m.sourceLabels !== undefined || m.sourceNamespace !== undefined || m.queryParams !== undefined || m.scheme !== undefined) return undefined;
  if (m.gateways !== undefined && !m.gateways.includes('mesh')) return undefined;
  if (m.port !== undefined && servicePort !== undefined && m.port !== servicePort) return undefined;
  const out: ProtoJson[] = [];
  if (m.uri !== undefined) {
    const u = uriMatcher(m.uri, m.ignoreUriCase === true);
    if (u === undefined) return undefined;
    out.push(u);
  }
  if (m.method !== undefined) out.push({ name: ':method', stringMatch: stringMatch(m.method) });
  if (m.authority !== undefined) out.push({ name: ':authority', stringMatch: stringMatch(m.authority) });
  for (const [h, sm] of Object.entries(m.headers ?? {})) out.push({ name: h.toLowerCase(), stringMatch: stringMatch(sm) });
  for (const [h, sm] of Object.entries(m.withoutHeaders ?? {})) out.push({ name: h.toLowerCase(), stringMatch: stringMatch(sm), invertMatch: true });
  if (out.length === 0) out.push({ name: ':path', stringMatch: { prefix: '/' } });
  return out;
}

/** Istio's uri match on `:path`, which carries the query too (the match is on the path before it). */
function uriMatcher(u: StringMatch, ignoreCase: boolean): ProtoJson | undefined {
  if (u.prefix !== undefined) return { name: ':path', stringMatch: { prefix: u.prefix, ...(ignoreCase ? { ignoreCase: true } : {}) } };
  if (ignoreCase) return undefined; // a case-insensitive regular expression has no portable form here
  if (u.exact !== undefined) return { name: ':path', stringMatch: { safeRegex: { regex: `${escapeRegex(u.exact)}(\\?.*)?` } } };
  if (u.regex !== undefined) return { name: ':path', stringMatch: { safeRegex: { regex: `(?:${u.regex})(\\?.*)?` } } };
  return undefined;
}

function stringMatch(s: StringMatch): ProtoJson {
  if (s.exact !== undefined) return { exact: s.exact };
  if (s.prefix !== undefined) return { prefix: s.prefix };
  return { safeRegex: { regex: s.regex ?? '.*' } };
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Puts each selected rule's filter before the router of its inbound chains, and its actions on their inline routes. */
export function applyRateLimits(push: SextantPushContext, proxy: Proxy, listeners: ProtoJson[]): ProtoJson[] {
  const selections = rateLimitSelections(push, proxy);
  if (selections.length === 0) return listeners;
  const byChain = new Map<string, RateLimitSelection[]>();
  for (const s of selections) {
    const chain = clusterName('inbound', s.inboundPort, '', '');
    byChain.set(chain, [...(byChain.get(chain) ?? []), s]);
  }
  return listeners.map((l) => {
    if (l['trafficDirection'] !== 'INBOUND') return l;
    const chains = (l['filterChains'] as ProtoJson[] | undefined) ?? [];
    let changed = false;
    const next = chains.map((c) => {
      const sel = byChain.get(String(c['name'] ?? ''));
      if (sel === undefined) return c;
      const limited = withRateLimits(c, sel.map((s) => rateLimitFilter(s.rule)), sel.flatMap((s) => rateLimitActions(push, s)));
      if (limited !== c) changed = true;
      return limited;
    });
    return changed ? { ...l, filterChains: next } : l;
  });
}

function withRateLimits(chain: ProtoJson, filters: readonly ProtoJson[], actions: readonly ProtoJson[]): ProtoJson {
  const list = (chain['filters'] as ProtoJson[] | undefined) ?? [];
  const i = list.findIndex((f) => f['name'] === HCM_FILTER);
  if (i < 0) return chain;
  const hcm = list[i]!;
  const tc = hcm['typedConfig'] as ProtoJson;
  const http = [...((tc['httpFilters'] as ProtoJson[] | undefined) ?? [])];
  const router = http.findIndex((f) => f['name'] === ROUTER_FILTER);
  http.splice(router < 0 ? http.length : router, 0, ...filters);
  const nextTc: ProtoJson = { ...tc, httpFilters: http };
  const rc = tc['routeConfig'] as ProtoJson | undefined;
  if (rc !== undefined && actions.length > 0) {
    nextTc['routeConfig'] = {
      ...rc,
      virtualHosts: ((rc['virtualHosts'] as ProtoJson[] | undefined) ?? []).map((vh) => ({
        ...vh,
        routes: ((vh['routes'] as ProtoJson[] | undefined) ?? []).map((r) => {
          const action = r['route'] as ProtoJson | undefined;
          if (action === undefined) return r;
          return { ...r, route: { ...action, rateLimits: [...((action['rateLimits'] as ProtoJson[] | undefined) ?? []), ...actions] } };
        }),
      })),
    };
  }
  return { ...chain, filters: list.map((f, j) => (j === i ? { ...hcm, typedConfig: nextTc } : f)) };
}
