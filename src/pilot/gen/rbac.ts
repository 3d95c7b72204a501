// AuthorizationPolicy → Envoy RBAC, as istiod generates it: for the workloads a policy
// selects, one `envoy.filters.http.rbac` per action in each inbound HTTP connection manager
// (CUSTOM's deny, AUDIT as LOG, DENY, ALLOW) and `envoy.filters.network.rbac` in inbound TCP
// chains. Policy names are Istio's (`ns[NS]-policy[NAME]-rule[I]`); each rule becomes one
// RBAC policy whose permissions are its `to` operations and principals its `from` sources,
// with `when` conditions added to every one of them. A CUSTOM policy (an external
// authorizer, which Sextant does not run) fails closed: its rules deny, as istiod does for a
// provider it cannot find.
import type { ProtoJson } from '../../envoy/index.ts';
import type {
  AuthorizationCondition, AuthorizationOperation, AuthorizationPolicySpec, AuthorizationRule, AuthorizationSource,
} from '../../api/index.ts';
import type { Resource } from '../../api/resource.ts';
import { labelsMatch } from '../../registry/index.ts';
import type { Proxy } from '../model.ts';
import type { SextantPushContext } from '../push/context.ts';
import { jwtHttpFilters } from './jwt.ts';

export const HTTP_RBAC_FILTER = 'envoy.filters.http.rbac';
export const NETWORK_RBAC_FILTER = 'envoy.filters.network.rbac';
export const HTTP_RBAC_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC';
export const NETWORK_RBAC_TYPE = 'type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC';
const HCM_FILTER = 'envoy.filters.network.http_connection_manager';
const DRY_RUN_ANNOTATION = 'istio.io/dry-run';
const SPIFFE = 'spiffe://';

/** An AuthorizationPolicy as the generator reads it. */
export interface SelectedPolicy {
  namespace: string;
  name: string;
  spec: AuthorizationPolicySpec;
  dryRun: boolean;
}

/**
 * Whether a policy applies to a sidecar or a gateway: in the proxy's namespace or the root
 * namespace, with no selector or one its labels match. Policies with targetRef(s) bind to
 * Gateway API gateways and waypoints, which are not run here.
 */
export function authorizationPolicySelects(r: Resource | undefined, proxy: Proxy, rootNamespace: string): boolean {
  if (r === undefined || r.kind !== 'AuthorizationPolicy' || (proxy.type !== 'sidecar' && proxy.type !== 'router')) return false;
  const ns = r.metadata.namespace;
  if (ns !== proxy.namespace && ns !== rootNamespace) return false;
  const spec = (r.spec ?? {}) as AuthorizationPolicySpec;
  if (spec.targetRef !== undefined || spec.targetRefs !== undefined) return false;
  const sel = spec.selector?.matchLabels;
  return sel === undefined || labelsMatch(sel, proxy.labels);
}

/** The policies that apply to a proxy, by namespace then name (Istio's stable order). */
export function authorizationPoliciesFor(push: SextantPushContext, proxy: Proxy): SelectedPolicy[] {
  const all = push.memoize('authz|all', () => push.resources.filter((r) => r.kind === 'AuthorizationPolicy'));
  const out: SelectedPolicy[] = [];
  for (const r of all) {
    if (!authorizationPolicySelects(r, proxy, push.mesh.rootNamespace)) continue;
    const dry = r.metadata.annotations?.[DRY_RUN_ANNOTATION];
    out.push({ namespace: r.metadata.namespace, name: r.metadata.name, spec: (r.spec ?? {}) as AuthorizationPolicySpec, dryRun: dry !== undefined && dry.toLowerCase() === 'true' });
  }
  return out.sort((a, b) => (a.namespace < b.namespace ? -1 : a.namespace > b.namespace ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

type EnvoyAction = 'ALLOW' | 'DENY' | 'LOG';

/** The RBAC HTTP filters for a proxy, in istiod's order (CUSTOM as deny, AUDIT, DENY, ALLOW); empty when no policy applies. */
export function rbacHttpFilters(push: SextantPushContext, proxy: Proxy): ProtoJson[] {
  return buildFilters(push, proxy, false);
}

/** The RBAC network filters for a proxy's inbound TCP chains, in the same order. */
export function rbacNetworkFilters(push: SextantPushContext, proxy: Proxy): ProtoJson[] {
  return buildFilters(push, proxy, true);
}

function buildFilters(push: SextantPushContext, proxy: Proxy, forTcp: boolean): ProtoJson[] {
  const policies = authorizationPoliciesFor(push, proxy);
  if (policies.length === 0) return [];
  const key = `authz|${forTcp}|${policies.map((p) => `${p.namespace}/${p.name}`).join(',')}`;
  return push.memoize(key, () => {
    const byAction = (action: string): SelectedPolicy[] => policies.filter((p) => (p.spec.action ?? 'ALLOW') === action);
    const out: ProtoJson[] = [];
    // As istiod's builder: a filter per action that has policies; `rules` holds the enforced
    // ones (absent when all are dry-run), `shadowRules` the dry-run ones.
    const add = (list: SelectedPolicy[], action: EnvoyAction): void => {
      if (list.length === 0) return;
      const cfg: ProtoJson = { '@type': forTcp ? NETWORK_RBAC_TYPE : HTTP_RBAC_TYPE };
      const enforced = list.filter((p) => !p.dryRun);
      const dryRun = list.filter((p) => p.dryRun);
      if (enforced.length > 0) cfg['rules'] = rbacRules(enforced, action, forTcp, (n) => n);
      if (forTcp) cfg['statPrefix'] = 'tcp.';
      if (dryRun.length > 0) {
        cfg['shadowRules'] = rbacRules(dryRun, action, forTcp, (n) => n);
        if (action !== 'LOG') cfg['shadowRulesStatPrefix'] = `istio_dry_run_${action === 'ALLOW' ? 'allow' : 'deny'}_`;
      }
      out.push({ name: forTcp ? NETWORK_RBAC_FILTER : HTTP_RBAC_FILTER, typedConfig: cfg });
    };
    // CUSTOM: no external authorizer runs here, so istiod's answer for a provider it cannot
    // use applies: the policies' rules deny (dry-run ones included), under names saying why.
    const custom = byAction('CUSTOM');
    if (custom.length > 0) {
      const rules = { action: 'DENY', policies: {} as ProtoJson };
      for (const p of custom) {
        const provider = p.spec.provider?.name ?? '';
        Object.assign(rules.policies, (rbacRules([p], 'DENY', forTcp, (n) => `istio-ext-authz-${provider}-${n}-deny-due-to-bad-CUSTOM-action`))['policies'] as ProtoJson);
      }
      const cfg: ProtoJson = { '@type': forTcp ? NETWORK_RBAC_TYPE : HTTP_RBAC_TYPE, rules };
      if (forTcp) cfg['statPrefix'] = 'tcp.';
      out.push({ name: forTcp ? NETWORK_RBAC_FILTER : HTTP_RBAC_FILTER, typedConfig: cfg });
    }
    add(byAction('AUDIT'), 'LOG');
    add(byAction('DENY'), 'DENY');
    add(byAction('ALLOW'), 'ALLOW');
    return out;
  });
}

/** istiod's policy for a policy without rules: it matches nothing (so an ALLOW policy `spec: {}` denies all). */
const MATCH_NEVER: ProtoJson = { permissions: [{ notRule: { any: true } }], principals: [{ notId: { any: true } }] };

function rbacRules(list: readonly SelectedPolicy[], action: EnvoyAction, forTcp: boolean, rename: (name: string) => string): ProtoJson {
  const policies: ProtoJson = {};
  for (const p of list) {
    const rules = p.spec.rules ?? [];
    rules.forEach((rule, i) => {
      const policy = rulePolicy(rule, action, forTcp, p.namespace);
      if (policy !== undefined) policies[rename(`ns[${p.namespace}]-policy[${p.name}]-rule[${i}]`)] = policy;
    });
    if (rules.length === 0) policies[rename(`ns[${p.namespace}]-policy[${p.name}]-rule[0]`)] = MATCH_NEVER;
  }
  return action === 'ALLOW' ? { policies } : { action, policies };
}

// ---------------------------------------------------------------- one rule

/** Keys of `when` that describe the source (principals); the others describe the request (permissions). */
function conditionIsPrincipal(key: string): boolean {
  return key.startsWith('source.') || key === 'remote.ip' || key.startsWith('request.auth.') || key.startsWith('request.headers[');
}

/** An RBAC policy for one rule; undefined when the rule cannot apply (an ALLOW rule with HTTP-only fields, for TCP). */
export function rulePolicy(rule: AuthorizationRule, action: EnvoyAction, forTcp: boolean, policyNamespace: string): ProtoJson | undefined {
  const dropHttp = forTcp && action !== 'ALLOW';
  if (forTcp && action === 'ALLOW' && ruleUsesHttp(rule)) return undefined;
  const when = rule.when ?? [];
  const whenPermissions: ProtoJson[] = [];
  const whenPrincipals: ProtoJson[] = [];
  for (const c of when) {
    if (dropHttp && conditionIsHttp(c.key)) continue;
    const m = conditionMatchers(c);
    if (conditionIsPrincipal(c.key)) whenPrincipals.push(...m);
    else whenPermissions.push(...m);
  }
  const ops = rule.to?.map((t) => t.operation ?? {}) ?? [undefined];
  const permissions = ops.map((op) => {
    const rules = [...(op ? operationMatchers(op, dropHttp) : []), ...whenPermissions];
    return { andRules: { rules: rules.length > 0 ? rules : [{ any: true }] } };
  });
  const sources = rule.from?.map((f) => f.source ?? {}) ?? [undefined];
  const principals = sources.map((src) => {
    const ids = [...(src ? sourceMatchers(src, dropHttp, policyNamespace) : []), ...whenPrincipals];
    return { andIds: { ids: ids.length > 0 ? ids : [{ any: true }] } };
  });
  return { permissions, principals };
}

function ruleUsesHttp(rule: AuthorizationRule): boolean {
  const has = (v: readonly string[] | undefined): boolean => v !== undefined && v.length > 0;
  for (const t of rule.to ?? []) {
    const op = t.operation ?? {};
    if (has(op.methods) || has(op.notMethods) || has(op.paths) || has(op.notPaths) || has(op.hosts) || has(op.notHosts)) return true;
  }
  for (const f of rule.from ?? []) {
    const s = f.source ?? {};
    if (has(s.requestPrincipals) || has(s.notRequestPrincipals)) return true;
  }
  return (rule.when ?? []).some((c) => conditionIsHttp(c.key));
}

function conditionIsHttp(key: string): boolean {
  return key.startsWith('request.');
}

/** values ORed, notValues ORed and negated, both ANDed into the list. */
function valuesAndNot(values: readonly string[] | undefined, notValues: readonly string[] | undefined, one: (v: string) => ProtoJson, or: (ms: ProtoJson[]) => ProtoJson, not: (m: ProtoJson) => ProtoJson, out: ProtoJson[]): void {
  if (values !== undefined && values.length > 0) out.push(or(values.map(one)));
  if (notValues !== undefined && notValues.length > 0) out.push(not(or(notValues.map(one))));
}

const permOr = (rules: ProtoJson[]): ProtoJson => ({ orRules: { rules } });
const permNot = (rule: ProtoJson): ProtoJson => ({ notRule: rule });
const prinOr = (ids: ProtoJson[]): ProtoJson => ({ orIds: { ids } });
const prinNot = (id: ProtoJson): ProtoJson => ({ notId: id });

function operationMatchers(op: AuthorizationOperation, dropHttp: boolean): ProtoJson[] {
  // istiod's order: hosts, methods, paths, ports (each with its not* form right after).
  const out: ProtoJson[] = [];
  if (!dropHttp) {
    valuesAndNot(op.hosts, op.notHosts, (v) => ({ header: hostMatcher(v) }), permOr, permNot, out);
    valuesAndNot(op.methods, op.notMethods, (v) => ({ header: headerMatcher(':method', v) }), permOr, permNot, out);
    valuesAndNot(op.paths, op.notPaths, (v) => ({ urlPath: { path: pathMatcher(v) } }), permOr, permNot, out);
  }
  valuesAndNot(op.ports, op.notPorts, (v) => ({ destinationPort: Number(v) }), permOr, permNot, out);
  return out;
}

function sourceMatchers(src: AuthorizationSource, dropHttp: boolean, namespace: string): ProtoJson[] {
  // istiod's order: service accounts, principals, request principals, namespaces, remote IPs, peer IPs.
  const out: ProtoJson[] = [];
  valuesAndNot(src.serviceAccounts, src.notServiceAccounts, (v) => serviceAccountPrincipal(v, namespace), prinOr, prinNot, out);
  valuesAndNot(src.principals, src.notPrincipals, principalName, prinOr, prinNot, out);
  if (!dropHttp) valuesAndNot(src.requestPrincipals, src.notRequestPrincipals, (v) => requestAuth(['request.auth.principal'], v), prinOr, prinNot, out);
  valuesAndNot(src.namespaces, src.notNamespaces, namespacePrincipal, prinOr, prinNot, out);
  valuesAndNot(src.remoteIpBlocks, src.notRemoteIpBlocks, (v) => ({ remoteIp: cidr(v) }), prinOr, prinNot, out);
  valuesAndNot(src.ipBlocks, src.notIpBlocks, (v) => ({ directRemoteIp: cidr(v) }), prinOr, prinNot, out);
  valuesAndNot(src.trustDomains, src.notTrustDomains, trustDomainPrincipal, prinOr, prinNot, out);
  return out;
}

function conditionMatchers(c: AuthorizationCondition): ProtoJson[] {
  const key = c.key;
  const out: ProtoJson[] = [];
  const prin = (one: (v: string) => ProtoJson): void => valuesAndNot(c.values, c.notValues, one, prinOr, prinNot, out);
  const perm = (one: (v: string) => ProtoJson): void => valuesAndNot(c.values, c.notValues, one, permOr, permNot, out);
  if (key.startsWith('request.headers[')) {
    const name = key.slice('request.headers['.length, -1);
    prin((v) => ({ header: requestHeaderMatcher(name, v) }));
  } else if (key === 'source.ip') prin((v) => ({ directRemoteIp: cidr(v) }));
  else if (key === 'remote.ip') prin((v) => ({ remoteIp: cidr(v) }));
  else if (key === 'source.namespace') prin(namespacePrincipal);
  else if (key === 'source.principal') prin(principalName);
  else if (key === 'source.trustDomain') prin(trustDomainPrincipal);
  else if (key === 'request.auth.principal' || key === 'request.auth.audiences' || key === 'request.auth.presenter') prin((v) => requestAuth([key], v));
  else if (key.startsWith('request.auth.claims[')) {
    const claims = key.slice('request.auth.claims'.length).replace(/^\[|\]$/g, '').split('][');
    prin((v) => requestAuth(['request.auth.claims', ...claims], v, true));
  } else if (key === 'destination.ip') perm((v) => ({ destinationIp: cidr(v) }));
  else if (key === 'destination.port') perm((v) => ({ destinationPort: Number(v) }));
  else if (key === 'connection.sni') perm((v) => ({ requestedServerName: stringMatcher(v) }));
  else if (key.startsWith('experimental.envoy.filters.')) {
    const open = key.indexOf('[');
    const filter = key.slice('experimental.'.length, open);
    const field = key.slice(open + 1, -1);
    perm((v) => ({ metadata: { filter, path: [{ key: field }], value: { stringMatch: stringMatcher(v) } } }));
  }
  // Validation refuses any other key.
  return out;
}

// ---------------------------------------------------------------- value matchers (Istio's)

/** Istio's StringMatcher: `*` present (non-empty), `p*` prefix, `*s` suffix, else exact; `pre` goes before exact and prefix values. */
export function stringMatcher(v: string, pre = ''): ProtoJson {
  if (v === '*') return { safeRegex: { regex: '.+' } };
  if (v.endsWith('*')) return { prefix: pre + v.slice(0, -1) };
  if (v.startsWith('*')) return { suffix: v.slice(1) };
  return { exact: pre + v };
}

/** Istio's HeaderMatcher (methods): present for `*`, else exact, prefix or suffix. */
function headerMatcher(name: string, v: string): ProtoJson {
  if (v === '*') return { name, presentMatch: true };
  if (v.startsWith('*')) return { name, suffixMatch: v.slice(1) };
  if (v.endsWith('*')) return { name, prefixMatch: v.slice(0, -1) };
  return { name, exactMatch: v };
}

/** A `request.headers[...]` condition: istiod's regex over the comma-joined values, so any one value may match. */
function requestHeaderMatcher(name: string, v: string): ProtoJson {
  if (v === '*') return { name, presentMatch: true };
  const one = v.startsWith('*') ? `.*${escapeRegex(v.slice(1))}` : v.endsWith('*') ? `${escapeRegex(v.slice(0, -1))}.*` : escapeRegex(v);
  return { name, safeRegexMatch: { regex: `^${one}$|^${one},.*|.*,${one},.*|.*,${one}$` } };
}

function escapeRegex(s: string): string {
  return s.replace(REGEX_SPECIAL, '\\$&');
}

function hostMatcher(v: string): ProtoJson {
  if (v === '*') return { name: ':authority', presentMatch: true };
  if (v.startsWith('*')) return { name: ':authority', stringMatch: { suffix: v.slice(1), ignoreCase: true } };
  if (v.endsWith('*')) return { name: ':authority', stringMatch: { prefix: v.slice(0, -1), ignoreCase: true } };
  return { name: ':authority', stringMatch: { exact: v, ignoreCase: true } };
}

const REGEX_SPECIAL = /[.*+?^${}()|[\]\\]/g;

/** A path: Istio's string forms, or a `{*}` / `{**}` template as an anchored regex (one segment / any rest). */
function pathMatcher(v: string): ProtoJson {
  if (!v.includes('{*}') && !v.includes('{**}')) return stringMatcher(v);
  const regex = v.split('/').map((seg) => (seg === '{*}' ? '[^/]+' : seg === '{**}' ? '.*' : seg.replace(REGEX_SPECIAL, '\\$&'))).join('/');
  return { safeRegex: { regex } };
}

function authenticated(principalName: ProtoJson): ProtoJson {
  return { authenticated: { principalName } };
}

function namespacePrincipal(v: string): ProtoJson {
  return authenticated({ safeRegex: { regex: `.*/ns/${v.replaceAll('*', '.*')}/.*` } });
}

/** A peer principal: `spiffe://` before exact and prefix values; a suffix becomes istiod's regex. */
function principalName(v: string): ProtoJson {
  if (v !== '*' && v.startsWith('*')) return authenticated({ safeRegex: { regex: `spiffe://.*${escapeRegex(v.slice(1))}` } });
  return authenticated(stringMatcher(v, SPIFFE));
}

/** istiod's serviceAccountRegex: `sa` alone is the policy's namespace's; any trust domain. */
function serviceAccountPrincipal(v: string, policyNamespace: string): ProtoJson {
  const slash = v.indexOf('/');
  const ns = slash < 0 ? policyNamespace : v.slice(0, slash);
  const sa = slash < 0 ? v : v.slice(slash + 1);
  return authenticated({ safeRegex: { regex: `spiffe://.+/ns/${ns}/(.+/|)sa/${sa}(/.+)?` } });
}

function trustDomainPrincipal(v: string): ProtoJson {
  if (v === '*') return authenticated({ prefix: SPIFFE });
  if (v.endsWith('*')) return authenticated({ prefix: `${SPIFFE}${v.slice(0, -1)}` });
  if (v.startsWith('*')) return authenticated({ safeRegex: { regex: `spiffe://.*${v.slice(1).replace(REGEX_SPECIAL, '\\$&')}/.*` } });
  return authenticated({ prefix: `${SPIFFE}${v}/` });
}

function requestAuth(path: string[], v: string, list = false): ProtoJson {
  const sm = stringMatcher(v);
  return { metadata: { filter: 'istio_authn', path: path.map((key) => ({ key })), value: list ? { listMatch: { oneOf: { stringMatch: sm } } } : { stringMatch: sm } } };
}

function cidr(v: string): ProtoJson {
  const slash = v.indexOf('/');
  const address = slash < 0 ? v : v.slice(0, slash);
  const len = slash < 0 ? (address.includes(':') ? 128 : 32) : Number(v.slice(slash + 1));
  return { addressPrefix: address, prefixLen: len };
}

// ---------------------------------------------------------------- into listeners

/**
 * The listeners with the proxy's JWT and RBAC filters in every inbound chain: first in each HTTP
 * connection manager, before the other network filters of a TCP chain. Shared listener
 * objects are copied, never edited.
 */
export function applyAuthorization(push: SextantPushContext, proxy: Proxy, listeners: ProtoJson[]): ProtoJson[] {
  if (proxy.type !== 'sidecar' && proxy.type !== 'router') return listeners;
  // a gateway's listeners all face its callers (Istio: policies selecting the gateway's pods)
  const guarded = (l: ProtoJson): boolean => proxy.type === 'router' || l['trafficDirection'] === 'INBOUND';
  // RequestAuthentication's JWT filters come first: RBAC reads what they verified.
  const http = [...jwtHttpFilters(push, proxy), ...rbacHttpFilters(push, proxy)];
  if (http.length === 0 && authorizationPoliciesFor(push, proxy).length === 0) return listeners;
  const tcp = rbacNetworkFilters(push, proxy);
  return listeners.map((l) => {
    if (!guarded(l)) return l;
    const chains = (l['filterChains'] as ProtoJson[] | undefined) ?? [];
    return { ...l, filterChains: chains.map((c) => withRbac(c, http, tcp)) };
  });
}

function withRbac(chain: ProtoJson, http: readonly ProtoJson[], tcp: readonly ProtoJson[]): ProtoJson {
  const filters = (chain['filters'] as ProtoJson[] | undefined) ?? [];
  const hcm = filters.findIndex((f) => f['name'] === HCM_FILTER);
  if (hcm < 0) return tcp.length === 0 ? chain : { ...chain, filters: [...tcp, ...filters] };
  if (http.length === 0) return chain;
  const f = filters[hcm]!;
  const tc = f['typedConfig'] as ProtoJson;
  const next = { ...f, typedConfig: { ...tc, httpFilters: [...http, ...((tc['httpFilters'] as ProtoJson[] | undefined) ?? [])] } };
  return { ...chain, filters: filters.map((x, i) => (i === hcm ? next : x)) };
}
