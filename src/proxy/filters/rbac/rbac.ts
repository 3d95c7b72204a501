// Envoy's RBAC filter (`envoy.filters.http.rbac`, and `envoy.filters.network.rbac` for TCP):
// a policy set compiled once per listener update into matcher closures, then evaluated per
// request or connection. Envoy's semantics: with action ALLOW a request passes when some
// policy matches, with DENY it is refused when some policy matches, LOG only marks; a policy
// matches when one of its permissions and one of its principals match. Matchers this proxy
// does not implement (CEL conditions, extension matchers, filter state, …) refuse the
// config with the field, as Envoy refuses a config it cannot run: never silently ignored.
import { isIP } from 'node:net';
import type { ProtoJson } from '../../../envoy/index.ts';
import type { RawHeader } from '../../http/index.ts';
import { ConfigError } from '../../config/fields.ts';
import { compileStringMatch } from '../../router/route-table.ts';
import type { StringMatch } from '../../router/route-table.ts';

export const HTTP_RBAC_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC';
export const NETWORK_RBAC_TYPE = 'type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC';

/** What a policy can look at, for one request (HTTP) or connection (TCP: no headers, path or method). */
export interface RbacSubject {
  /** Request headers as they reach the filter, plus `:method`, `:path`, `:authority`, `:scheme`. */
  headers: readonly RawHeader[];
  /** The path without query or fragment, after the connection manager's normalization. */
  urlPath: string | undefined;
  /** The peer of the connection. */
  directRemoteIp: string;
  /** The client as the connection manager computes it (x-forwarded-for and its trusted hops). */
  remoteIp: string;
  destinationIp: string;
  destinationPort: number;
  /** TLS SNI; empty for plaintext. */
  requestedServerName: string;
  /** The peer certificate's URI SAN (`spiffe://…`), undefined without mTLS. */
  principal: string | undefined;
  /** Dynamic metadata by filter name (`istio_authn` → `request.auth.principal`, …). */
  metadata: Readonly<Record<string, Readonly<Record<string, unknown>>>> | undefined;
}

type Matcher = (s: RbacSubject) => boolean;

export type RbacAction = 'ALLOW' | 'DENY' | 'LOG';

export interface RbacPolicy {
  name: string;
  matches: Matcher;
}

/** One compiled RBAC filter. `policies` undefined: no `rules`, the filter enforces nothing. */
export interface RbacFilter {
  action: RbacAction;
  policies: readonly RbacPolicy[] | undefined;
  /** Shadow (dry-run) rules: compiled and checked, never enforced. */
  shadow: { action: RbacAction; policies: readonly RbacPolicy[] } | undefined;
}

export type RbacDecision =
  | { allowed: true }
  | { allowed: false; policy: string | undefined; details: string };

/** Envoy's response code details for a denial: the matched policy for DENY, `none` for an unmatched ALLOW. */
export function deniedDetails(policy: string | undefined): string {
  return `rbac_access_denied_matched_policy[${policy ?? 'none'}]`;
}

/**
 * Runs the filters in chain order (Istio puts AUDIT, then DENY, then ALLOW); the first
 * refusal answers.
 */
export function evaluateRbac(filters: readonly RbacFilter[], s: RbacSubject): RbacDecision {
  for (const f of filters) {
    if (f.policies === undefined || f.action === 'LOG') continue;
    let matched: string | undefined;
    for (const p of f.policies) if (p.matches(s)) { matched = p.name; break; }
    if (f.action === 'ALLOW' ? matched === undefined : matched !== undefined) {
      return { allowed: false, policy: matched, details: deniedDetails(matched) };
    }
  }
  return { allowed: true };
}

// ---------------------------------------------------------------- compile

/** Compiles an RBAC filter's typed config (HTTP or network); throws ConfigError naming the field. */
export function compileRbac(cfg: ProtoJson, at: string, http: boolean): RbacFilter {
  for (const unsupported of ['matcher', 'shadowMatcher']) {
    if (cfg[unsupported] !== undefined) throw new ConfigError(`${at}.${unsupported}: the matcher-tree form of RBAC is not supported by this proxy (use rules)`);
  }
  const rules = cfg['rules'] as ProtoJson | undefined;
  const shadow = cfg['shadowRules'] as ProtoJson | undefined;
  const compiled = rules !== undefined ? compileRules(rules, `${at}.rules`, http) : undefined;
  const shadowCompiled = shadow !== undefined ? compileRules(shadow, `${at}.shadowRules`, http) : undefined;
  return {
    action: compiled?.action ?? 'ALLOW',
    policies: compiled?.policies,
    shadow: shadowCompiled,
  };
}

function compileRules(rules: ProtoJson, at: string, http: boolean): { action: RbacAction; policies: RbacPolicy[] } {
  const action = String(rules['action'] ?? 'ALLOW');
  if (action !== 'ALLOW' && action !== 'DENY' && action !== 'LOG') throw new ConfigError(`${at}.action: unknown action ${JSON.stringify(action)}`);
  const policies = (rules['policies'] ?? {}) as Record<string, ProtoJson>;
  // Envoy evaluates policies in the map's key order (a std::map): sorted names.
  const names = Object.keys(policies).sort();
  return {
    action,
    policies: names.map((name) => ({ name, matches: compilePolicy(policies[name]!, `${at}.policies[${JSON.stringify(name)}]`, http) })),
  };
}

function compilePolicy(p: ProtoJson, at: string, http: boolean): Matcher {
  if (p['condition'] !== undefined || p['checkedCondition'] !== undefined) {
    throw new ConfigError(`${at}.condition: CEL conditions are not supported by this proxy`);
  }
  const permissions = (p['permissions'] as ProtoJson[] | undefined) ?? [];
  const principals = (p['principals'] as ProtoJson[] | undefined) ?? [];
  if (permissions.length === 0) throw new ConfigError(`${at}.permissions: at least one permission is required`);
  if (principals.length === 0) throw new ConfigError(`${at}.principals: at least one principal is required`);
  const perm = any(permissions.map((x, i) => compilePermission(x, `${at}.permissions[${i}]`, http)));
  const prin = any(principals.map((x, i) => compilePrincipal(x, `${at}.principals[${i}]`, http)));
  return (s) => perm(s) && prin(s);
}

function any(ms: Matcher[]): Matcher {
  if (ms.length === 1) return ms[0]!;
  return (s) => { for (const m of ms) if (m(s)) return true; return false; };
}

function all(ms: Matcher[]): Matcher {
  if (ms.length === 1) return ms[0]!;
  return (s) => { for (const m of ms) if (!m(s)) return false; return true; };
}

/** Envoy's Permission: what the request or connection is for. */
function compilePermission(p: ProtoJson, at: string, http: boolean): Matcher {
  const rule = ruleOf(p, at, 'permission');
  const v = p[rule];
  switch (rule) {
    case 'any': return () => v === true;
    case 'andRules': return all(setOf(v, 'rules', `${at}.andRules`).map((x, i) => compilePermission(x, `${at}.andRules.rules[${i}]`, http)));
    case 'orRules': return any(setOf(v, 'rules', `${at}.orRules`).map((x, i) => compilePermission(x, `${at}.orRules.rules[${i}]`, http)));
    case 'notRule': { const m = compilePermission(v as ProtoJson, `${at}.notRule`, http); return (s) => !m(s); }
    case 'header': return compileHeader(v as ProtoJson, `${at}.header`, http);
    case 'urlPath': return compileUrlPath(v as ProtoJson, `${at}.urlPath`, http);
    case 'destinationIp': { const c = compileCidr(v as ProtoJson, `${at}.destinationIp`); return (s) => c(s.destinationIp); }
    case 'destinationPort': { const port = Number(v); return (s) => s.destinationPort === port; }
    case 'destinationPortRange': {
      const r = v as ProtoJson;
      const start = Number(r['start'] ?? 0);
      const end = Number(r['end'] ?? 0);
      return (s) => s.destinationPort >= start && s.destinationPort < end;
    }
    case 'requestedServerName': { const m = compileStringMatch(v as ProtoJson, `${at}.requestedServerName`); return (s) => m(s.requestedServerName); }
    case 'metadata': return compileMetadata(v as ProtoJson, `${at}.metadata`);
    default: throw new ConfigError(`${at}.${rule}: the RBAC permission ${rule} is not supported by this proxy`);
  }
}

/** Envoy's Principal: who sends the request or opens the connection. */
function compilePrincipal(p: ProtoJson, at: string, http: boolean): Matcher {
  const rule = ruleOf(p, at, 'principal');
  const v = p[rule];
  switch (rule) {
    case 'any': return () => v === true;
    case 'andIds': return all(setOf(v, 'ids', `${at}.andIds`).map((x, i) => compilePrincipal(x, `${at}.andIds.ids[${i}]`, http)));
    case 'orIds': return any(setOf(v, 'ids', `${at}.orIds`).map((x, i) => compilePrincipal(x, `${at}.orIds.ids[${i}]`, http)));
    case 'notId': { const m = compilePrincipal(v as ProtoJson, `${at}.notId`, http); return (s) => !m(s); }
    case 'authenticated': {
      const pn = (v as ProtoJson)['principalName'] as ProtoJson | undefined;
      // Without principal_name: any authenticated (mTLS) peer.
      if (pn === undefined) return (s) => s.principal !== undefined;
      const m = compileStringMatch(pn, `${at}.authenticated.principalName`);
      return (s) => s.principal !== undefined && m(s.principal);
    }
    // source_ip is the deprecated name of direct_remote_ip.
    case 'sourceIp': case 'directRemoteIp': { const c = compileCidr(v as ProtoJson, `${at}.${rule}`); return (s) => c(s.directRemoteIp); }
    case 'remoteIp': { const c = compileCidr(v as ProtoJson, `${at}.remoteIp`); return (s) => c(s.remoteIp); }
    case 'header': return compileHeader(v as ProtoJson, `${at}.header`, http);
    case 'urlPath': return compileUrlPath(v as ProtoJson, `${at}.urlPath`, http);
    case 'metadata': return compileMetadata(v as ProtoJson, `${at}.metadata`);
    default: throw new ConfigError(`${at}.${rule}: the RBAC principal ${rule} is not supported by this proxy`);
  }
}

/** The one rule a Permission or Principal sets (a proto oneof). */
function ruleOf(p: ProtoJson, at: string, what: string): string {
  const keys = Object.keys(p ?? {}).filter((k) => p[k] !== undefined && p[k] !== null);
  if (keys.length !== 1) throw new ConfigError(`${at}: a ${what} sets exactly one rule (got ${keys.length === 0 ? 'none' : keys.join(', ')})`);
  return keys[0]!;
}

function setOf(v: unknown, field: string, at: string): ProtoJson[] {
  const list = ((v as ProtoJson | undefined)?.[field] as ProtoJson[] | undefined) ?? [];
  if (list.length === 0) throw new ConfigError(`${at}.${field}: at least one is required`);
  return list;
}

/** A header matcher over the request's headers and pseudo-headers; never matches a TCP connection. */
function compileHeader(h: ProtoJson, at: string, http: boolean): Matcher {
  if (!http) return () => false;
  const name = String(h['name'] ?? '').toLowerCase();
  if (name === '') throw new ConfigError(`${at}.name: required`);
  const invert = h['invertMatch'] === true;
  const missingAsEmpty = h['treatMissingHeaderAsEmpty'] === true;
  let test: (v: string | undefined) => boolean;
  const str = (f: StringMatch) => (v: string | undefined): boolean => v !== undefined && f(v);
  if (h['presentMatch'] !== undefined) { const want = h['presentMatch'] === true; test = (v) => (v !== undefined) === want; }
  else if (h['stringMatch'] !== undefined) test = str(compileStringMatch(h['stringMatch'] as ProtoJson, `${at}.stringMatch`));
  else if (h['exactMatch'] !== undefined) test = str(compileStringMatch({ exact: h['exactMatch'] }, at));
  else if (h['prefixMatch'] !== undefined) test = str(compileStringMatch({ prefix: h['prefixMatch'] }, at));
  else if (h['suffixMatch'] !== undefined) test = str(compileStringMatch({ suffix: h['suffixMatch'] }, at));
  else if (h['containsMatch'] !== undefined) test = str(compileStringMatch({ contains: h['containsMatch'] }, at));
  else if (h['safeRegexMatch'] !== undefined) test = str(compileStringMatch({ safeRegex: h['safeRegexMatch'] }, at));
  else if (h['rangeMatch'] !== undefined) {
    const r = h['rangeMatch'] as ProtoJson;
    const start = Number(r['start'] ?? 0);
    const end = Number(r['end'] ?? 0);
    test = (v) => v !== undefined && /^-?\d+$/.test(v) && Number(v) >= start && Number(v) < end;
  } else test = (v) => v !== undefined;
  return (s) => {
    // Envoy matches a repeated header against its values joined by ','.
    let v: string | undefined;
    for (const e of s.headers) {
      if (e.name.length === name.length && e.name.toLowerCase() === name) v = v === undefined ? e.value : `${v},${e.value}`;
    }
    if (v === undefined && missingAsEmpty) v = '';
    return test(v) !== invert;
  };
}

function compileUrlPath(p: ProtoJson, at: string, http: boolean): Matcher {
  if (!http) return () => false;
  const path = p['path'] as ProtoJson | undefined;
  if (path === undefined) throw new ConfigError(`${at}.path: required`);
  const m = compileStringMatch(path, `${at}.path`);
  return (s) => s.urlPath !== undefined && m(s.urlPath);
}

/** A CIDR range as a predicate on an address string (IPv4, IPv6, IPv4-mapped IPv6). */
export function compileCidr(r: ProtoJson, at: string): (ip: string) => boolean {
  const prefix = String(r['addressPrefix'] ?? '');
  const want = addressWords(prefix);
  if (want === undefined) throw new ConfigError(`${at}.addressPrefix: ${JSON.stringify(prefix)} is not an IP address`);
  const max = want.length * 16;
  const len = r['prefixLen'] === undefined ? 0 : Number(typeof r['prefixLen'] === 'object' ? (r['prefixLen'] as ProtoJson)['value'] : r['prefixLen']);
  if (!(len >= 0 && len <= max)) throw new ConfigError(`${at}.prefixLen: ${len} is out of range for ${prefix}`);
  const full = len >> 4;
  const mask = len & 15 ? (0xffff << (16 - (len & 15))) & 0xffff : 0;
  return (ip) => {
    const words = addressWords(ip);
    if (words === undefined || words.length !== want.length) return false;
    for (let i = 0; i < full; i++) if (words[i] !== want[i]) return false;
    return mask === 0 || (words[full]! & mask) === (want[full]! & mask);
  };
}

// The last address parsed: a request's address is read by every CIDR matcher of the policies.
let lastAddress = '';
let lastWords: readonly number[] | undefined;

/** An address as 16-bit words (2 for IPv4, IPv4-mapped IPv6 read as IPv4, 8 for IPv6); undefined when not an IP. */
function addressWords(ip: string): readonly number[] | undefined {
  if (ip === lastAddress) return lastWords;
  let a = ip;
  if (a.startsWith('::ffff:') && isIP(a.slice(7)) === 4) a = a.slice(7);
  const family = isIP(a);
  let words: number[] | undefined;
  if (family === 4) {
    const o = a.split('.').map(Number);
    words = [(o[0]! << 8) | o[1]!, (o[2]! << 8) | o[3]!];
  } else if (family === 6) {
    const zone = a.indexOf('%');
    if (zone >= 0) a = a.slice(0, zone);
    let tail: number[] = [];
    const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(a);
    if (v4) {
      const o = v4[1]!.split('.').map(Number);
      tail = [(o[0]! << 8) | o[1]!, (o[2]! << 8) | o[3]!];
      a = a.slice(0, -v4[1]!.length) + '0:0';
    }
    const [head, rest] = a.split('::') as [string, string | undefined];
    const h = head === '' ? [] : head.split(':');
    const t = rest === undefined || rest === '' ? [] : rest.split(':');
    const groups = rest === undefined ? h : [...h, ...new Array<string>(8 - h.length - t.length).fill('0'), ...t];
    words = groups.map((g) => parseInt(g || '0', 16));
    if (tail.length > 0) words.splice(6, 2, ...tail);
  }
  lastAddress = ip;
  lastWords = words;
  return words;
}

/**
 * A dynamic-metadata matcher (Istio's `istio_authn` request principal, audiences, claims).
 * Only string values and list-contains are read; a value absent from the metadata never
 * matches (a request without a JWT has no request principal).
 */
function compileMetadata(m: ProtoJson, at: string): Matcher {
  const filter = String(m['filter'] ?? '');
  if (filter === '') throw new ConfigError(`${at}.filter: required`);
  const path = ((m['path'] as ProtoJson[] | undefined) ?? []).map((seg, i) => {
    const key = seg['key'];
    if (typeof key !== 'string') throw new ConfigError(`${at}.path[${i}].key: required`);
    return key;
  });
  if (path.length === 0) throw new ConfigError(`${at}.path: at least one key is required`);
  const invert = m['invert'] === true;
  const value = (m['value'] ?? {}) as ProtoJson;
  let test: (v: unknown) => boolean;
  if (value['stringMatch'] !== undefined) {
    const sm = compileStringMatch(value['stringMatch'] as ProtoJson, `${at}.value.stringMatch`);
    test = (v) => typeof v === 'string' && sm(v);
  } else if (value['presentMatch'] !== undefined) {
    test = (v) => v !== undefined;
  } else if (value['listMatch'] !== undefined) {
    const oneOf = ((value['listMatch'] as ProtoJson)['oneOf'] ?? {}) as ProtoJson;
    const inner = oneOf['stringMatch'];
    if (inner === undefined) throw new ConfigError(`${at}.value.listMatch.oneOf: only stringMatch is supported by this proxy`);
    const sm = compileStringMatch(inner as ProtoJson, `${at}.value.listMatch.oneOf.stringMatch`);
    test = (v) => Array.isArray(v) && v.some((x) => typeof x === 'string' && sm(x));
  } else {
    throw new ConfigError(`${at}.value: only stringMatch, presentMatch and listMatch are supported by this proxy`);
  }
  return (s) => {
    let v: unknown = s.metadata?.[filter];
    for (const k of path) v = v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>)[k] : undefined;
    return test(v) !== invert;
  };
}
