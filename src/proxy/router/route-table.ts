// A compiled RouteConfiguration: virtual hosts indexed by domain (exact, suffix and prefix
// wildcards, with or without port, Envoy's precedence), routes in order with their matchers
// (path, headers, query parameters) and actions prepared once, so a request only matches.
import type { ProtoJson } from '../../envoy/index.ts';
import type { RawHeader } from '../http/index.ts';
import { ConfigError, durationMs, fraction } from '../config/fields.ts';
import { compileHeaderOps } from './header-ops.ts';
import type { HeaderOps } from './header-ops.ts';

const FAULT_FILTER = 'envoy.filters.http.fault';

export type StringMatch = (s: string) => boolean;

interface HeaderMatcher {
  name: string;
  match: (values: string[]) => boolean;
}

export interface WeightedCluster {
  name: string;
  weight: number;
  requestHeaders: HeaderOps | undefined;
  responseHeaders: HeaderOps | undefined;
}

export interface RetryPolicy {
  numRetries: number;
  on5xx: boolean;
  gatewayError: boolean;
  reset: boolean;
  connectFailure: boolean;
  retriableStatus: boolean;
  /** retriable-4xx: 409 Conflict. */
  retriable4xx: boolean;
  refusedStream: boolean;
  /** gRPC statuses (cancelled, deadline-exceeded, internal, resource-exhausted, unavailable) retried when a response's headers carry them. */
  grpcStatuses: ReadonlySet<number>;
  statusCodes: ReadonlySet<number>;
  perTryTimeoutMs: number;
  baseIntervalMs: number;
  maxIntervalMs: number;
  previousHosts: boolean;
  /** retry_priority envoy.retry_priorities.previous_priorities: a retry goes to another priority level. */
  previousPriorities: boolean;
  hostSelectionAttempts: number;
}

export interface HashPolicy {
  header?: string;
  cookie?: { name: string; ttlMs: number | undefined; path: string };
  sourceIp?: boolean;
  queryParameter?: string;
  terminal: boolean;
}

export interface FaultPolicy {
  delayMs: number;
  delayFraction: number;
  abortStatus: number;
  /** An abort answered as this gRPC status (trailers-only, HTTP 200); -1 for an HTTP abort. */
  abortGrpcStatus: number;
  abortFraction: number;
}

export interface RouteAction {
  kind: 'route';
  cluster: string | undefined;
  clusterHeader: string | undefined;
  weighted: { clusters: WeightedCluster[]; total: number } | undefined;
  prefixRewrite: string | undefined;
  regexRewrite: { re: RegExp; substitution: string } | undefined;
  hostRewrite: string | undefined;
  autoHostRewrite: boolean;
  /** 0 = no timeout; Envoy's default is 15 s. */
  timeoutMs: number;
  /**
   * `maxGrpcTimeout` (or `maxStreamDuration.grpcTimeoutHeaderMax`): when set, a gRPC
   * request's `grpc-timeout` is its timeout, capped at this (0: uncapped); undefined: ignored.
   */
  maxGrpcTimeoutMs: number | undefined;
  /** `grpcTimeoutOffset` (or `grpcTimeoutHeaderOffset`): subtracted from `grpc-timeout`. */
  grpcTimeoutOffsetMs: number;
  /** The route's own `upgradeConfigs` (type → enabled), overriding the connection manager's. */
  upgrades: ReadonlyMap<string, boolean> | undefined;
  retry: RetryPolicy | undefined;
  mirrors: { cluster: string; fraction: number }[];
  hashPolicies: HashPolicy[];
  metadataMatch: Record<string, unknown> | undefined;
}

export interface RedirectAction {
  kind: 'redirect';
  scheme: string | undefined;
  host: string | undefined;
  port: number | undefined;
  path: string | undefined;
  prefixRewrite: string | undefined;
  status: number;
  stripQuery: boolean;
}

export interface DirectResponseAction {
  kind: 'direct';
  status: number;
  body: string | undefined;
}

export interface Route {
  name: string;
  match: (path: string, query: string, headers: readonly RawHeader[], method: string, authority: string) => boolean;
  /** What the matcher keyed on, for prefix rewrite (the matched prefix). */
  prefix: string | undefined;
  action: RouteAction | RedirectAction | DirectResponseAction;
  requestHeaders: HeaderOps | undefined;
  responseHeaders: HeaderOps | undefined;
  fault: FaultPolicy | undefined;
}

export interface VirtualHost {
  name: string;
  routes: Route[];
  requestHeaders: HeaderOps | undefined;
  responseHeaders: HeaderOps | undefined;
  retry: RetryPolicy | undefined;
}

export class RouteTable {
  readonly name: string;
  readonly source: ProtoJson;
  readonly sourceKey: string;
  readonly virtualHosts: VirtualHost[];
  readonly requestHeaders: HeaderOps | undefined;
  readonly responseHeaders: HeaderOps | undefined;
  private readonly exact = new Map<string, VirtualHost>();
  /** `*.suffix` domains, longest first. */
  private readonly suffixes: { suffix: string; vh: VirtualHost }[] = [];
  /** `prefix.*` domains, longest first. */
  private readonly prefixes: { prefix: string; vh: VirtualHost }[] = [];
  private any: VirtualHost | undefined;

  constructor(json: ProtoJson, at: string) {
    this.source = json;
    this.sourceKey = JSON.stringify(json);
    const name = json['name'];
    if (typeof name !== 'string' || name === '') throw new ConfigError(`${at}.name: a route configuration needs a name`);
    this.name = name;
    this.requestHeaders = compileHeaderOps(json['requestHeadersToAdd'], json['requestHeadersToRemove'], `${at}`);
    this.responseHeaders = compileHeaderOps(json['responseHeadersToAdd'], json['responseHeadersToRemove'], `${at}`, true);
    this.virtualHosts = ((json['virtualHosts'] as ProtoJson[] | undefined) ?? []).map((vh, i) => compileVirtualHost(vh, `${at}.virtualHosts[${i}]`));
    this.virtualHosts.forEach((vh, i) => {
      const domains = ((json['virtualHosts'] as ProtoJson[])[i]!['domains'] as string[] | undefined) ?? [];
      if (domains.length === 0) throw new ConfigError(`${at}.virtualHosts[${i}].domains: at least one domain is required`);
      for (const raw of domains) {
        const d = raw.toLowerCase();
        const dup = (): never => { throw new ConfigError(`${at}.virtualHosts[${i}].domains: domain ${raw} appears in more than one virtual host`); };
        if (d === '*') {
          if (this.any) dup();
          this.any = vh;
        } else if (d.startsWith('*')) {
          if (this.suffixes.some((s) => s.suffix === d.slice(1))) dup();
          this.suffixes.push({ suffix: d.slice(1), vh });
        } else if (d.endsWith('*')) {
          if (this.prefixes.some((s) => s.prefix === d.slice(0, -1))) dup();
          this.prefixes.push({ prefix: d.slice(0, -1), vh });
        } else {
          if (this.exact.has(d)) dup();
          this.exact.set(d, vh);
        }
      }
    });
    this.suffixes.sort((a, b) => b.suffix.length - a.suffix.length);
    this.prefixes.sort((a, b) => b.prefix.length - a.prefix.length);
  }

  /** The virtual host for an authority: full match first, then without the port. */
  virtualHost(authority: string): VirtualHost | undefined {
    const host = authority.toLowerCase();
    const found = this.lookupDomain(host);
    if (found) return found;
    const colon = host.lastIndexOf(':');
    if (colon > 0 && !host.endsWith(']')) return this.lookupDomain(host.slice(0, colon)) ?? this.any;
    return this.any;
  }

  private lookupDomain(host: string): VirtualHost | undefined {
    const e = this.exact.get(host);
    if (e) return e;
    for (const s of this.suffixes) if (host.length > s.suffix.length && host.endsWith(s.suffix)) return s.vh;
    for (const p of this.prefixes) if (host.length > p.prefix.length && host.startsWith(p.prefix)) return p.vh;
    return undefined;
  }
}

function compileVirtualHost(vh: ProtoJson, at: string): VirtualHost {
  const name = String(vh['name'] ?? '');
  return {
    name,
    routes: ((vh['routes'] as ProtoJson[] | undefined) ?? []).map((r, i) => compileRoute(r, `${at}.routes[${i}]`)),
    requestHeaders: compileHeaderOps(vh['requestHeadersToAdd'], vh['requestHeadersToRemove'], at),
    responseHeaders: compileHeaderOps(vh['responseHeadersToAdd'], vh['responseHeadersToRemove'], at, true),
    retry: vh['retryPolicy'] ? compileRetry(vh['retryPolicy'] as ProtoJson, `${at}.retryPolicy`) : undefined,
  };
}

function compileRoute(r: ProtoJson, at: string): Route {
  const m = r['match'] as ProtoJson | undefined;
  if (!m) throw new ConfigError(`${at}.match: required`);
  const { match, prefix } = compileRouteMatch(m, `${at}.match`);
  let action: Route['action'];
  if (r['route']) action = compileRouteAction(r['route'] as ProtoJson, `${at}.route`);
  else if (r['redirect']) action = compileRedirect(r['redirect'] as ProtoJson, `${at}.redirect`);
  else if (r['directResponse']) {
    const d = r['directResponse'] as ProtoJson;
    const status = Number(d['status'] ?? 0);
    if (!(status >= 200 && status < 600)) throw new ConfigError(`${at}.directResponse.status: expected 200..599, got ${JSON.stringify(d['status'])}`);
    const body = d['body'] as ProtoJson | undefined;
    const text = body?.['inlineString'] ?? (body?.['inlineBytes'] !== undefined ? Buffer.from(String(body['inlineBytes']), 'base64').toString('latin1') : undefined);
    action = { kind: 'direct', status, body: text === undefined ? undefined : String(text) };
  } else {
    throw new ConfigError(`${at}: a route needs one of route, redirect, directResponse`);
  }
  const tpfc = (r['typedPerFilterConfig'] ?? {}) as ProtoJson;
  return {
    name: String(r['name'] ?? ''),
    match,
    prefix,
    action,
    requestHeaders: compileHeaderOps(r['requestHeadersToAdd'], r['requestHeadersToRemove'], at),
    responseHeaders: compileHeaderOps(r['responseHeadersToAdd'], r['responseHeadersToRemove'], at, true),
    fault: tpfc[FAULT_FILTER] ? compileFault(tpfc[FAULT_FILTER] as ProtoJson, `${at}.typedPerFilterConfig["${FAULT_FILTER}"]`) : undefined,
  };
}

function compileRegex(v: unknown, at: string, anchored = true): RegExp {
  const re = (v as ProtoJson | undefined)?.['regex'];
  if (typeof re !== 'string') throw new ConfigError(`${at}.regex: required`);
  try {
    return new RegExp(anchored ? `^(?:${re})$` : re);
  } catch (err) {
    throw new ConfigError(`${at}.regex: invalid regular expression ${JSON.stringify(re)}: ${(err as Error).message}`);
  }
}

export function compileStringMatch(sm: ProtoJson, at: string): StringMatch {
  const ic = sm['ignoreCase'] === true;
  const norm = (s: string): string => (ic ? s.toLowerCase() : s);
  if (sm['exact'] !== undefined) { const v = norm(String(sm['exact'])); return (s) => norm(s) === v; }
  if (sm['prefix'] !== undefined) { const v = norm(String(sm['prefix'])); return (s) => norm(s).startsWith(v); }
  if (sm['suffix'] !== undefined) { const v = norm(String(sm['suffix'])); return (s) => norm(s).endsWith(v); }
  if (sm['contains'] !== undefined) { const v = norm(String(sm['contains'])); return (s) => norm(s).includes(v); }
  if (sm['safeRegex'] !== undefined) { const re = compileRegex(sm['safeRegex'], `${at}.safeRegex`); return (s) => re.test(s); }
  throw new ConfigError(`${at}: expected one of exact, prefix, suffix, contains, safeRegex`);
}

function compileRouteMatch(m: ProtoJson, at: string): { match: Route['match']; prefix: string | undefined } {
  const caseSensitive = (m['caseSensitive'] as boolean | undefined) ?? true;
  const cs = (s: string): string => (caseSensitive ? s : s.toLowerCase());
  let pathMatch: (p: string) => boolean;
  let prefix: string | undefined;
  if (m['prefix'] !== undefined) {
    prefix = String(m['prefix']);
    const p = cs(prefix);
    pathMatch = (path) => cs(path).startsWith(p);
  } else if (m['path'] !== undefined) {
    const p = cs(String(m['path']));
    pathMatch = (path) => cs(path) === p;
  } else if (m['safeRegex'] !== undefined) {
    const re = compileRegex(m['safeRegex'], `${at}.safeRegex`);
    pathMatch = (path) => re.test(path);
  } else if (m['pathSeparatedPrefix'] !== undefined) {
    prefix = String(m['pathSeparatedPrefix']);
    const p = cs(prefix);
    pathMatch = (path) => { const x = cs(path); return x === p || (x.startsWith(p) && x[p.length] === '/'); };
  } else if (m['connectMatcher'] !== undefined) {
    pathMatch = () => false;
  } else {
    throw new ConfigError(`${at}: expected one of prefix, path, safeRegex, pathSeparatedPrefix`);
  }
  const headers = ((m['headers'] as ProtoJson[] | undefined) ?? []).map((h, i) => compileHeaderMatcher(h, `${at}.headers[${i}]`));
  const query = ((m['queryParameters'] as ProtoJson[] | undefined) ?? []).map((q, i) => {
    const where = `${at}.queryParameters[${i}]`;
    const name = String(q['name'] ?? '');
    if (!name) throw new ConfigError(`${where}.name: required`);
    const sm = q['stringMatch'] ? compileStringMatch(q['stringMatch'] as ProtoJson, `${where}.stringMatch`) : undefined;
    return { name, sm, present: q['presentMatch'] === true || !sm };
  });
  const runtimeFraction = m['runtimeFraction'] !== undefined ? fraction(m['runtimeFraction']) : 1;
  const match: Route['match'] = (path, qs, hdrs, method, authority) => {
    if (!pathMatch(path)) return false;
    for (const h of headers) {
      let values: string[];
      if (h.name === ':method') values = [method];
      else if (h.name === ':authority' || h.name === 'host') values = [authority];
      else if (h.name === ':path') values = [qs ? `${path}?${qs}` : path];
      else if (h.name === ':scheme') values = ['http'];
      else values = allValues(hdrs, h.name);
      if (!h.match(values)) return false;
    }
    if (query.length > 0) {
      const params = new URLSearchParams(qs);
      for (const q of query) {
        const v = params.get(q.name);
        if (v === null) return false;
        if (q.sm && !q.sm(v)) return false;
      }
    }
    if (runtimeFraction < 1 && Math.random() >= runtimeFraction) return false;
    return true;
  };
  return { match, prefix };
}

function allValues(h: readonly RawHeader[], lowerName: string): string[] {
  const out: string[] = [];
  for (const e of h) if (e.name.length === lowerName.length && e.name.toLowerCase() === lowerName) out.push(e.value);
  return out;
}

function compileHeaderMatcher(h: ProtoJson, at: string): HeaderMatcher {
  const name = String(h['name'] ?? '').toLowerCase();
  if (!name) throw new ConfigError(`${at}.name: required`);
  const invert = h['invertMatch'] === true;
  let test: (values: string[]) => boolean;
  // Envoy matches a header that appears several times against its values joined by ','.
  const joined = (f: StringMatch) => (vs: string[]) => vs.length > 0 && f(vs.join(','));
  if (h['presentMatch'] !== undefined) {
    const want = h['presentMatch'] === true;
    test = (vs) => (vs.length > 0) === want;
  } else if (h['stringMatch'] !== undefined) test = joined(compileStringMatch(h['stringMatch'] as ProtoJson, `${at}.stringMatch`));
  else if (h['exactMatch'] !== undefined) test = joined(compileStringMatch({ exact: h['exactMatch'] }, at));
  else if (h['prefixMatch'] !== undefined) test = joined(compileStringMatch({ prefix: h['prefixMatch'] }, at));
  else if (h['suffixMatch'] !== undefined) test = joined(compileStringMatch({ suffix: h['suffixMatch'] }, at));
  else if (h['containsMatch'] !== undefined) test = joined(compileStringMatch({ contains: h['containsMatch'] }, at));
  else if (h['safeRegexMatch'] !== undefined) test = joined(compileStringMatch({ safeRegex: h['safeRegexMatch'] }, at));
  else if (h['rangeMatch'] !== undefined) {
    const r = h['rangeMatch'] as ProtoJson;
    const start = Number(r['start'] ?? 0);
    const end = Number(r['end'] ?? 0);
    test = (vs) => { if (vs.length !== 1 || !/^-?\d+$/.test(vs[0]!)) return false; const n = Number(vs[0]); return n >= start && n < end; };
  } else test = (vs) => vs.length > 0;
  return { name, match: invert ? (vs) => !test(vs) : test };
}

function compileRouteAction(a: ProtoJson, at: string): RouteAction {
  let weighted: RouteAction['weighted'];
  const cluster = a['cluster'] as string | undefined;
  const clusterHeader = a['clusterHeader'] as string | undefined;
  if (a['weightedClusters']) {
    const wc = a['weightedClusters'] as ProtoJson;
    const clusters = ((wc['clusters'] as ProtoJson[] | undefined) ?? []).map((c, i) => {
      const name = String(c['name'] ?? '');
      if (!name) throw new ConfigError(`${at}.weightedClusters.clusters[${i}].name: required`);
      return {
        name,
        weight: Number(c['weight'] ?? 0),
        requestHeaders: compileHeaderOps(c['requestHeadersToAdd'], c['requestHeadersToRemove'], `${at}.weightedClusters.clusters[${i}]`),
        responseHeaders: compileHeaderOps(c['responseHeadersToAdd'], c['responseHeadersToRemove'], `${at}.weightedClusters.clusters[${i}]`, true),
      };
    });
    const sum = clusters.reduce((s, c) => s + c.weight, 0);
    if (clusters.length === 0 || sum <= 0) throw new ConfigError(`${at}.weightedClusters: needs clusters with a positive total weight`);
    const total = wc['totalWeight'] !== undefined ? Number(wc['totalWeight']) : sum;
    if (total !== sum) throw new ConfigError(`${at}.weightedClusters.totalWeight: ${total} differs from the sum of weights ${sum}`);
    weighted = { clusters, total };
  } else if (!cluster && !clusterHeader) {
    throw new ConfigError(`${at}: one of cluster, weightedClusters, clusterHeader is required`);
  }
  const rr = a['regexRewrite'] as ProtoJson | undefined;
  const timeoutMs = durationMs(a['timeout'], `${at}.timeout`) ?? 15_000;
  const hashPolicies: HashPolicy[] = ((a['hashPolicy'] as ProtoJson[] | undefined) ?? []).map((h, i) => {
    const where = `${at}.hashPolicy[${i}]`;
    const terminal = h['terminal'] === true;
    if (h['header']) return { header: String((h['header'] as ProtoJson)['headerName'] ?? '').toLowerCase(), terminal };
    if (h['cookie']) {
      const c = h['cookie'] as ProtoJson;
      return { cookie: { name: String(c['name'] ?? ''), ttlMs: durationMs(c['ttl'], `${where}.cookie.ttl`), path: String(c['path'] ?? '') }, terminal };
    }
    if (h['connectionProperties']) return { sourceIp: (h['connectionProperties'] as ProtoJson)['sourceIp'] === true, terminal };
    if (h['queryParameter']) return { queryParameter: String((h['queryParameter'] as ProtoJson)['name'] ?? ''), terminal };
    throw new ConfigError(`${where}: expected header, cookie, connectionProperties or queryParameter`);
  });
  const mm = ((a['metadataMatch'] as ProtoJson | undefined)?.['filterMetadata'] as ProtoJson | undefined)?.['envoy.lb'] as Record<string, unknown> | undefined;
  const msd = a['maxStreamDuration'] as ProtoJson | undefined;
  const maxGrpcTimeoutMs = durationMs(msd?.['grpcTimeoutHeaderMax'], `${at}.maxStreamDuration.grpcTimeoutHeaderMax`) ?? durationMs(a['maxGrpcTimeout'], `${at}.maxGrpcTimeout`);
  const grpcTimeoutOffsetMs = durationMs(msd?.['grpcTimeoutHeaderOffset'], `${at}.maxStreamDuration.grpcTimeoutHeaderOffset`) ?? durationMs(a['grpcTimeoutOffset'], `${at}.grpcTimeoutOffset`) ?? 0;
  const ucs = a['upgradeConfigs'] as ProtoJson[] | undefined;
  const upgrades = ucs && ucs.length > 0
    ? new Map(ucs.map((u) => [String(u['upgradeType'] ?? '').toLowerCase(), u['enabled'] !== false && (u['enabled'] as { value?: boolean } | undefined)?.value !== false] as const))
    : undefined;
  return {
    kind: 'route',
    cluster,
    clusterHeader,
    weighted,
    prefixRewrite: a['prefixRewrite'] as string | undefined,
    regexRewrite: rr ? { re: compileRegex(rr['pattern'], `${at}.regexRewrite.pattern`, false), substitution: re2Substitution(String(rr['substitution'] ?? '')) } : undefined,
    hostRewrite: a['hostRewriteLiteral'] as string | undefined,
    autoHostRewrite: a['autoHostRewrite'] === true,
    timeoutMs,
    maxGrpcTimeoutMs,
    grpcTimeoutOffsetMs,
    upgrades,
    retry: a['retryPolicy'] ? compileRetry(a['retryPolicy'] as ProtoJson, `${at}.retryPolicy`) : undefined,
    mirrors: ((a['requestMirrorPolicies'] as ProtoJson[] | undefined) ?? []).map((mp) => ({ cluster: String(mp['cluster'] ?? ''), fraction: fraction(mp['runtimeFraction']) })),
    hashPolicies,
    metadataMatch: mm,
  };
}

/** RE2's `\\1` group references as JavaScript's `$1` (a literal `$` doubled). */
function re2Substitution(s: string): string {
  return s.replace(/\$/g, '$$$$').replace(/\\(\d)/g, '$$$1');
}

const RETRY_ON = new Set(['5xx', 'gateway-error', 'reset', 'connect-failure', 'retriable-status-codes', 'refused-stream', 'retriable-4xx', 'envoy-ratelimited', 'retriable-headers', 'reset-before-request', 'http3-post-connect-failure', 'cancelled', 'deadline-exceeded', 'internal', 'resource-exhausted', 'unavailable']);

// Envoy's x-envoy-retry-grpc-on conditions and the gRPC status each retries.
const GRPC_RETRY_ON: Readonly<Record<string, number>> = { cancelled: 1, 'deadline-exceeded': 4, 'resource-exhausted': 8, internal: 13, unavailable: 14 };

function compileRetry(p: ProtoJson, at: string): RetryPolicy {
  const on = String(p['retryOn'] ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  for (const o of on) if (!RETRY_ON.has(o)) throw new ConfigError(`${at}.retryOn: unknown retry condition ${o}`);
  const backoff = (p['retryBackOff'] ?? {}) as ProtoJson;
  const base = durationMs(backoff['baseInterval'], `${at}.retryBackOff.baseInterval`) ?? 25;
  const preds = ((p['retryHostPredicate'] as ProtoJson[] | undefined) ?? []).map((x) => String(x['name'] ?? ''));
  return {
    numRetries: p['numRetries'] !== undefined ? Number(p['numRetries']) : 1,
    on5xx: on.includes('5xx'),
    gatewayError: on.includes('gateway-error'),
    reset: on.includes('reset') || on.includes('reset-before-request'),
    connectFailure: on.includes('connect-failure'),
    retriableStatus: on.includes('retriable-status-codes'),
    retriable4xx: on.includes('retriable-4xx'),
    refusedStream: on.includes('refused-stream'),
    grpcStatuses: new Set(on.map((o) => GRPC_RETRY_ON[o]).filter((c): c is number => c !== undefined)),
    statusCodes: new Set(((p['retriableStatusCodes'] as number[] | undefined) ?? []).map(Number)),
    perTryTimeoutMs: durationMs(p['perTryTimeout'], `${at}.perTryTimeout`) ?? 0,
    baseIntervalMs: base,
    maxIntervalMs: durationMs(backoff['maxInterval'], `${at}.retryBackOff.maxInterval`) ?? base * 10,
    previousHosts: preds.includes('envoy.retry_host_predicates.previous_hosts'),
    previousPriorities: retryPriority(p['retryPriority'], `${at}.retryPriority`),
    hostSelectionAttempts: Number(p['hostSelectionRetryMaxAttempts'] ?? 1),
  };
}

/** The one retry priority Envoy has (previous_priorities); any other is refused (NACK). */
function retryPriority(v: unknown, at: string): boolean {
  if (v === undefined) return false;
  const name = String((v as ProtoJson)['name'] ?? '');
  const type = String(((v as ProtoJson)['typedConfig'] as ProtoJson | undefined)?.['@type'] ?? '');
  if (name === 'envoy.retry_priorities.previous_priorities' || type.endsWith('.PreviousPrioritiesConfig')) return true;
  throw new ConfigError(`${at}: unsupported retry priority ${JSON.stringify(name || type)} (this proxy has envoy.retry_priorities.previous_priorities)`);
}

const REDIRECT_CODES: Record<string, number> = { MOVED_PERMANENTLY: 301, FOUND: 302, SEE_OTHER: 303, TEMPORARY_REDIRECT: 307, PERMANENT_REDIRECT: 308 };

function compileRedirect(r: ProtoJson, at: string): RedirectAction {
  const code = (r['responseCode'] as string | undefined) ?? 'MOVED_PERMANENTLY';
  const status = REDIRECT_CODES[code];
  if (!status) throw new ConfigError(`${at}.responseCode: unknown redirect code ${code}`);
  return {
    kind: 'redirect',
    scheme: r['httpsRedirect'] === true ? 'https' : (r['schemeRedirect'] as string | undefined),
    host: r['hostRedirect'] as string | undefined,
    port: r['portRedirect'] !== undefined ? Number(r['portRedirect']) : undefined,
    path: r['pathRedirect'] as string | undefined,
    prefixRewrite: r['prefixRewrite'] as string | undefined,
    status,
    stripQuery: r['stripQuery'] === true,
  };
}

function compileFault(f: ProtoJson, at: string): FaultPolicy {
  const delay = f['delay'] as ProtoJson | undefined;
  const abort = f['abort'] as ProtoJson | undefined;
  const grpc = abort?.['grpcStatus'];
  const abortGrpcStatus = grpc === undefined ? -1 : Number(grpc);
  if (grpc !== undefined && !(Number.isInteger(abortGrpcStatus) && abortGrpcStatus >= 0 && abortGrpcStatus <= 16)) throw new ConfigError(`${at}.abort.grpcStatus: expected a gRPC status 0..16, got ${JSON.stringify(grpc)}`);
  // a gRPC abort is an HTTP 200 carrying the status (Envoy's fault filter)
  const abortStatus = abort ? (grpc !== undefined ? 200 : Number(abort['httpStatus'] ?? 0)) : 0;
  if (abort && !(abortStatus >= 200 && abortStatus < 600)) throw new ConfigError(`${at}.abort.httpStatus: expected 200..599, got ${JSON.stringify(abort['httpStatus'])}`);
  return {
    delayMs: delay ? (durationMs(delay['fixedDelay'], `${at}.delay.fixedDelay`) ?? 0) : 0,
    delayFraction: delay ? fraction(delay['percentage'], 0) : 0,
    abortStatus,
    abortGrpcStatus,
    abortFraction: abort ? fraction(abort['percentage'], 0) : 0,
  };
}
