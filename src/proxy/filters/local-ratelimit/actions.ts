// Envoy's route rate limit actions (`rate_limits` on a route's action or its virtual host):
// each RateLimit entry turns a request into one descriptor, a list of key/value entries, or
// none when an action finds nothing. The local rate limit filter matches these descriptors
// against its configured ones. Actions this proxy cannot evaluate refuse the route config.
import { isIP } from 'node:net';
import type { ProtoJson } from '../../../envoy/index.ts';
import type { RawHeader } from '../../http/index.ts';
import { ConfigError } from '../../config/fields.ts';
import { compileStringMatch } from '../../router/route-table.ts';
import type { StringMatch } from '../../router/route-table.ts';

/** What the actions can see of a request. */
export interface DescriptorFacts {
  method: string;
  /** Path without query, after normalization. */
  path: string;
  query: string;
  authority: string;
  /** Request headers as they reach the filter. */
  headers: readonly RawHeader[];
  /** The client address as the connection manager trusts it (x-forwarded-for and its hops). */
  remoteAddress: string;
  /** The peer certificate's URI SAN (`spiffe://…`), undefined without mTLS. */
  principal: string | undefined;
  /** The route's cluster, when it names one. */
  routeCluster: string | undefined;
  /** This proxy's service cluster (the xDS node's `cluster`). */
  localCluster: string;
}

/** One descriptor entry, skip this action (and keep the descriptor), or no descriptor at all. */
type ActionResult = { key: string; value: string } | 'skip' | undefined;
type Action = (f: DescriptorFacts) => ActionResult;

/** One RateLimit entry of a route or virtual host. */
export interface RateLimitPolicy {
  stage: number;
  /** `disable_key` set: Envoy's local rate limit skips such entries. */
  disabled: boolean;
  actions: readonly Action[];
}

/** The CEL attributes a descriptor expression may name (Envoy's `envoy.rate_limit_descriptors.expr`). */
const EXPR_ATTRIBUTES: Readonly<Record<string, (f: DescriptorFacts) => string | undefined>> = {
  'connection.uri_san_peer_certificate': (f) => f.principal,
  'source.address': (f) => f.remoteAddress,
  'request.method': (f) => f.method,
  'request.path': (f) => f.path,
  'request.host': (f) => f.authority,
};
const EXPR_DESCRIPTOR_TYPE = 'type.googleapis.com/envoy.extensions.rate_limit_descriptors.expr.v3.Descriptor';

export function compileRateLimits(list: unknown, at: string): RateLimitPolicy[] {
  return ((list as ProtoJson[] | undefined) ?? []).map((rl, i) => {
    const where = `${at}[${i}]`;
    const stageRaw = rl['stage'];
    const stage = stageRaw === undefined ? 0 : Number((stageRaw as { value?: number }).value ?? stageRaw);
    if (!(Number.isInteger(stage) && stage >= 0 && stage <= 10)) throw new ConfigError(`${where}.stage: expected 0..10`);
    const actions = ((rl['actions'] as ProtoJson[] | undefined) ?? []).map((a, j) => compileAction(a, `${where}.actions[${j}]`));
    if (actions.length === 0) throw new ConfigError(`${where}.actions: at least one action is required`);
    const dk = rl['disableKey'];
    return { stage, disabled: typeof dk === 'string' && dk !== '', actions };
  });
}

/**
 * The descriptors `policies` produce for a request at `stage`, as keys (see descriptorKey),
 * in order; an entry with a disable_key is skipped, as Envoy's local rate limit does.
 */
export function populateDescriptors(policies: readonly RateLimitPolicy[], stage: number, f: DescriptorFacts, out: string[]): void {
  for (const p of policies) {
    if (p.stage !== stage || p.disabled) continue;
    // the key as descriptorKey writes it, built as the entries come
    let key = '';
    let ok = true;
    for (const a of p.actions) {
      const r = a(f);
      if (r === undefined) { ok = false; break; }
      if (r !== 'skip') key += `${r.key}\u0000${r.value}\u0001`;
    }
    if (ok && key !== '') out.push(key);
  }
}

function compileAction(a: ProtoJson, at: string): Action {
  if (a['sourceCluster'] !== undefined) return (f) => ({ key: 'source_cluster', value: f.localCluster });
  if (a['destinationCluster'] !== undefined) return (f) => (f.routeCluster === undefined ? undefined : { key: 'destination_cluster', value: f.routeCluster });
  if (a['requestHeaders'] !== undefined) {
    const r = a['requestHeaders'] as ProtoJson;
    const name = String(r['headerName'] ?? '').toLowerCase();
    const key = String(r['descriptorKey'] ?? '');
    if (name === '') throw new ConfigError(`${at}.requestHeaders.headerName: required`);
    if (key === '') throw new ConfigError(`${at}.requestHeaders.descriptorKey: required`);
    const skip = r['skipIfAbsent'] === true;
    return (f) => {
      const v = valuesOf(f, name)[0];
      if (v === undefined) return skip ? 'skip' : undefined;
      return { key, value: v };
    };
  }
  if (a['remoteAddress'] !== undefined) return (f) => (f.remoteAddress === '' ? undefined : { key: 'remote_address', value: f.remoteAddress });
  if (a['maskedRemoteAddress'] !== undefined) {
    const m = a['maskedRemoteAddress'] as ProtoJson;
    const v4 = wrapped(m['v4PrefixMaskLen'], 32);
    const v6 = wrapped(m['v6PrefixMaskLen'], 128);
    if (v4 > 32) throw new ConfigError(`${at}.maskedRemoteAddress.v4PrefixMaskLen: at most 32`);
    if (v6 > 128) throw new ConfigError(`${at}.maskedRemoteAddress.v6PrefixMaskLen: at most 128`);
    return (f) => {
      const masked = maskAddress(f.remoteAddress, v4, v6);
      return masked === undefined ? undefined : { key: 'masked_remote_address', value: masked };
    };
  }
  if (a['genericKey'] !== undefined) {
    const g = a['genericKey'] as ProtoJson;
    const value = String(g['descriptorValue'] ?? '');
    if (value === '') throw new ConfigError(`${at}.genericKey.descriptorValue: required`);
    const entry = { key: String(g['descriptorKey'] ?? '') || 'generic_key', value };
    return () => entry;
  }
  if (a['headerValueMatch'] !== undefined) {
    const h = a['headerValueMatch'] as ProtoJson;
    const value = String(h['descriptorValue'] ?? '');
    if (value === '') throw new ConfigError(`${at}.headerValueMatch.descriptorValue: required`);
    const matchers = ((h['headers'] as ProtoJson[] | undefined) ?? []).map((m, i) => compileHeaderMatcher(m, `${at}.headerValueMatch.headers[${i}]`));
    if (matchers.length === 0) throw new ConfigError(`${at}.headerValueMatch.headers: at least one matcher is required`);
    const expect = wrappedBool(h['expectMatch'], true);
    const entry = { key: String(h['descriptorKey'] ?? '') || 'header_match', value };
    return (f) => (matchers.every((m) => m(f)) === expect ? entry : undefined);
  }
  if (a['queryParameterValueMatch'] !== undefined) {
    const q = a['queryParameterValueMatch'] as ProtoJson;
    const value = String(q['descriptorValue'] ?? '');
    if (value === '') throw new ConfigError(`${at}.queryParameterValueMatch.descriptorValue: required`);
    const matchers = ((q['queryParameters'] as ProtoJson[] | undefined) ?? []).map((m, i) => compileQueryMatcher(m, `${at}.queryParameterValueMatch.queryParameters[${i}]`));
    if (matchers.length === 0) throw new ConfigError(`${at}.queryParameterValueMatch.queryParameters: at least one matcher is required`);
    const expect = wrappedBool(q['expectMatch'], true);
    const entry = { key: String(q['descriptorKey'] ?? '') || 'query_match', value };
    return (f) => {
      const params = new URLSearchParams(f.query);
      return matchers.every((m) => m(params)) === expect ? entry : undefined;
    };
  }
  if (a['extension'] !== undefined) return compileExtension(a['extension'] as ProtoJson, `${at}.extension`);
  const kind = Object.keys(a).find((k) => k !== '@type') ?? '(none)';
  throw new ConfigError(`${at}: the rate limit action ${kind} is not supported by this proxy's local rate limit`);
}

// Envoy's descriptor expression extension, for the attributes above (the caller's identity, its address, …).
function compileExtension(e: ProtoJson, at: string): Action {
  const tc = (e['typedConfig'] ?? {}) as ProtoJson;
  if (tc['@type'] !== EXPR_DESCRIPTOR_TYPE) throw new ConfigError(`${at}.typedConfig: the rate limit descriptor extension ${JSON.stringify(tc['@type'])} is not supported by this proxy`);
  const key = String(tc['descriptorKey'] ?? '');
  if (key === '') throw new ConfigError(`${at}.typedConfig.descriptorKey: required`);
  if (tc['parsed'] !== undefined) throw new ConfigError(`${at}.typedConfig.parsed: parsed expressions are not supported by this proxy; write the attribute as text`);
  const text = String(tc['text'] ?? '').trim();
  const attr = EXPR_ATTRIBUTES[text];
  if (attr === undefined) throw new ConfigError(`${at}.typedConfig.text: the expression ${JSON.stringify(text)} is not supported by this proxy (one of ${Object.keys(EXPR_ATTRIBUTES).join(', ')})`);
  const skip = tc['skipIfError'] === true;
  return (f) => {
    const v = attr(f);
    if (v === undefined || v === '') return skip ? 'skip' : undefined;
    return { key, value: v };
  };
}

function wrapped(v: unknown, absent: number): number {
  if (v === undefined || v === null) return absent;
  return Number((v as { value?: number }).value ?? v);
}

function wrappedBool(v: unknown, absent: boolean): boolean {
  if (v === undefined || v === null) return absent;
  return typeof v === 'boolean' ? v : (v as { value?: boolean }).value === true;
}

/** Header values as a filter sees them, pseudo-headers included. */
function valuesOf(f: DescriptorFacts, lower: string): string[] {
  switch (lower) {
    case ':method': return [f.method];
    case ':path': return [f.query === '' ? f.path : `${f.path}?${f.query}`];
    case ':authority': case 'host': return [f.authority];
    case ':scheme': return ['http'];
  }
  const out: string[] = [];
  for (const h of f.headers) if (h.name.length === lower.length && h.name.toLowerCase() === lower) out.push(h.value);
  return out;
}

type FactMatcher = (f: DescriptorFacts) => boolean;

// Envoy's HeaderMatcher (values of a repeated header joined by ','), as route matching reads it.
function compileHeaderMatcher(h: ProtoJson, at: string): FactMatcher {
  const name = String(h['name'] ?? '').toLowerCase();
  if (name === '') throw new ConfigError(`${at}.name: required`);
  const invert = h['invertMatch'] === true;
  let sm: StringMatch | undefined;
  let test: (vs: string[]) => boolean;
  if (h['presentMatch'] !== undefined) {
    const want = h['presentMatch'] === true;
    test = (vs) => (vs.length > 0) === want;
  } else {
    if (h['stringMatch'] !== undefined) sm = compileStringMatch(h['stringMatch'] as ProtoJson, `${at}.stringMatch`);
    else if (h['exactMatch'] !== undefined) sm = compileStringMatch({ exact: h['exactMatch'] }, at);
    else if (h['prefixMatch'] !== undefined) sm = compileStringMatch({ prefix: h['prefixMatch'] }, at);
    else if (h['suffixMatch'] !== undefined) sm = compileStringMatch({ suffix: h['suffixMatch'] }, at);
    else if (h['containsMatch'] !== undefined) sm = compileStringMatch({ contains: h['containsMatch'] }, at);
    else if (h['safeRegexMatch'] !== undefined) sm = compileStringMatch({ safeRegex: h['safeRegexMatch'] }, at);
    else if (h['rangeMatch'] !== undefined) throw new ConfigError(`${at}.rangeMatch: not supported in rate limit actions by this proxy`);
    const m = sm;
    test = m === undefined ? (vs) => vs.length > 0 : (vs) => vs.length > 0 && m(vs.join(','));
  }
  return (f) => test(valuesOf(f, name)) !== invert;
}

function compileQueryMatcher(q: ProtoJson, at: string): (p: URLSearchParams) => boolean {
  const name = String(q['name'] ?? '');
  if (name === '') throw new ConfigError(`${at}.name: required`);
  if (q['stringMatch'] !== undefined) {
    const sm = compileStringMatch(q['stringMatch'] as ProtoJson, `${at}.stringMatch`);
    return (p) => { const v = p.get(name); return v !== null && sm(v); };
  }
  return (p) => p.has(name);
}

/** `ip` masked to its prefix, as Envoy's masked_remote_address writes it (`10.1.0.0/16`). */
export function maskAddress(ip: string, v4Len: number, v6Len: number): string | undefined {
  const v4 = ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
  if (isIP(v4) === 4) {
    const n = v4.split('.').reduce((acc, o) => (acc << 8) | Number(o), 0) >>> 0;
    const mask = v4Len === 0 ? 0 : (0xffffffff << (32 - v4Len)) >>> 0;
    const m = (n & mask) >>> 0;
    return `${m >>> 24}.${(m >>> 16) & 255}.${(m >>> 8) & 255}.${m & 255}/${v4Len}`;
  }
  if (isIP(ip) !== 6) return undefined;
  const [head = '', tail = ''] = ip.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = ip.includes('::') ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : h;
  let bits = v6Len;
  const out = groups.map((g) => {
    const n = parseInt(g, 16);
    const keep = Math.max(0, Math.min(16, bits));
    bits -= 16;
    return (keep === 0 ? 0 : n & ((0xffff << (16 - keep)) & 0xffff)).toString(16);
  });
  return `${compressV6(out)}/${v6Len}`;
}

function compressV6(groups: string[]): string {
  // The longest run of zero groups becomes '::' (RFC 5952).
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < groups.length;) {
    if (groups[i] !== '0') { i++; continue; }
    let j = i;
    while (j < groups.length && groups[j] === '0') j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}
