// RDS: a RouteConfiguration per outbound HTTP port ("9080", or "BIND:PORT" for a Sidecar
// egress listener with a bind address), with a virtual host per visible service (short
// name, name.namespace, FQDN, each with and without :port) and VirtualService http routes
// translated with Istio's semantics; plus Istio's catch-all `allow_any` / `block_all`.
import { FAULT_TYPE, PASSTHROUGH_CLUSTER } from '../../envoy/index.ts';
import type { ProtoJson } from '../../envoy/index.ts';
import type { Proxy } from '../model.ts';
import { isHttpProtocol, labelsMatch, portProtocol } from '../../registry/index.ts';
import type { HTTPRoute, HTTPMatchRequest, Service, StringMatch, Headers as IstioHeaders, Percent, VirtualServiceSpec, Destination } from '../../registry/index.ts';
import type { Indexed, SextantPushContext } from '../push/context.ts';
import { hostMatches, resolveHost } from '../push/context.ts';
import { sidecarScope } from '../push/scope.ts';
import type { EgressScope, SidecarScope } from '../push/scope.ts';
import { clusterName } from './names.ts';
import { previousPriorities } from './active-active.ts';
import { effectivePolicy, hashPolicy, protoDuration } from './policy.ts';

export const DEFAULT_RETRY_ON = 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes';

/** Istio's default retry policy for routes without VirtualService retries. */
export function defaultRetryPolicy(grpc: boolean): ProtoJson {
  if (grpc) return { retryOn: 'unavailable,cancelled', numRetries: 2 };
  return {
    retryOn: DEFAULT_RETRY_ON,
    numRetries: 2,
    retryHostPredicate: [{ name: 'envoy.retry_host_predicates.previous_hosts' }],
    hostSelectionRetryMaxAttempts: 5,
    retriableStatusCodes: [503],
  };
}

/** The domains Istio gives a service's virtual host as seen from `namespace`. */
export function serviceDomains(service: Service, port: number, namespace: string): string[] {
  const out: string[] = [];
  const add = (d: string): void => { out.push(d, `${d}:${port}`); };
  add(service.hostname);
  const m = /^([^.]+)\.([^.]+)\.svc\.(.+)$/.exec(service.hostname);
  if (m) {
    const [, name, ns] = m;
    if (ns === namespace) add(name as string);
    add(`${name}.${ns}.svc`);
    add(`${name}.${ns}`);
  }
  for (const a of service.addresses) if (!a.includes('/')) add(a);
  return out;
}

function stringMatcher(m: StringMatch, ignoreCase = false): ProtoJson | undefined {
  const out: ProtoJson = {};
  if (m.exact !== undefined) out['exact'] = m.exact;
  else if (m.prefix !== undefined) out['prefix'] = m.prefix;
  else if (m.regex !== undefined) out['safeRegex'] = { regex: m.regex };
  else return undefined;
  if (ignoreCase && m.regex === undefined) out['ignoreCase'] = true;
  return out;
}

function headerMatcher(name: string, m: StringMatch, invert: boolean): ProtoJson {
  const sm = stringMatcher(m);
  const out: ProtoJson = sm ? { name, stringMatch: sm } : { name, presentMatch: true };
  if (invert) out['invertMatch'] = true;
  return out;
}

/** An Istio HTTPMatchRequest → Envoy RouteMatch (path, headers, query parameters). */
export function routeMatch(m: HTTPMatchRequest | undefined): ProtoJson {
  const out: ProtoJson = {};
  const uri = m?.uri;
  if (uri?.exact !== undefined) out['path'] = uri.exact;
  else if (uri?.regex !== undefined) out['safeRegex'] = { regex: uri.regex };
  else out['prefix'] = uri?.prefix ?? '/';
  if (m?.ignoreUriCase) out['caseSensitive'] = false;
  const headers: ProtoJson[] = [];
  for (const [k, v] of Object.entries(m?.headers ?? {})) headers.push(headerMatcher(k.toLowerCase(), v, false));
  for (const [k, v] of Object.entries(m?.withoutHeaders ?? {})) headers.push(headerMatcher(k.toLowerCase(), v, true));
  if (m?.method) headers.push(headerMatcher(':method', m.method, false));
  if (m?.authority) headers.push(headerMatcher(':authority', m.authority, false));
  if (m?.scheme) headers.push(headerMatcher(':scheme', m.scheme, false));
  if (headers.length > 0) out['headers'] = headers;
  const qps: ProtoJson[] = [];
  for (const [k, v] of Object.entries(m?.queryParams ?? {})) {
    const sm = stringMatcher(v);
    qps.push(sm ? { name: k, stringMatch: sm } : { name: k, presentMatch: true });
  }
  if (qps.length > 0) out['queryParameters'] = qps;
  return out;
}

/** Istio percentages (0–100, fractional) → Envoy FractionalPercent per million. */
export function fractionalPercent(p: Percent | undefined, fallback = 100): ProtoJson {
  const v = p?.value ?? fallback;
  return { numerator: Math.round(v * 10000), denominator: 'MILLION' };
}

function headerOps(h: IstioHeaders | undefined, target: ProtoJson): void {
  const add = (ops: { set?: Record<string, string>; add?: Record<string, string> } | undefined): ProtoJson[] => {
    const out: ProtoJson[] = [];
    for (const [k, v] of Object.entries(ops?.set ?? {})) out.push({ header: { key: k, value: v }, appendAction: 'OVERWRITE_IF_EXISTS_OR_ADD' });
    for (const [k, v] of Object.entries(ops?.add ?? {})) out.push({ header: { key: k, value: v }, appendAction: 'APPEND_IF_EXISTS_OR_ADD' });
    return out;
  };
  const reqAdd = add(h?.request);
  if (reqAdd.length > 0) target['requestHeadersToAdd'] = reqAdd;
  if (h?.request?.remove?.length) target['requestHeadersToRemove'] = [...h.request.remove];
  const resAdd = add(h?.response);
  if (resAdd.length > 0) target['responseHeadersToAdd'] = resAdd;
  if (h?.response?.remove?.length) target['responseHeadersToRemove'] = [...h.response.remove];
}

const REDIRECT_CODES: Record<number, string> = { 301: 'MOVED_PERMANENTLY', 302: 'FOUND', 303: 'SEE_OTHER', 307: 'TEMPORARY_REDIRECT', 308: 'PERMANENT_REDIRECT' };
const GRPC_CODES = ['OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED'];

/** Context for translating one VirtualService's routes on one port. */
export interface RouteContext {
  push: SextantPushContext;
  proxy: Proxy;
  vs: Indexed<VirtualServiceSpec> | undefined;
  port: number;
  /** The service the virtual host is for (its port is the default destination port). */
  service: Service;
  grpc: boolean;
  /** `ns/name` of the Gateway when routing for a gateway proxy; absent for sidecars (`mesh`). */
  gateway?: string;
}

function destinationCluster(ctx: RouteContext, d: Destination | undefined): { name: string; service: Service | undefined; port: number; subset: string } {
  const ns = ctx.vs?.namespace ?? ctx.proxy.namespace;
  const host = d?.host ? resolveHost(d.host, ns) : ctx.service.hostname;
  const service = ctx.push.serviceFor(host, ctx.proxy.namespace);
  let port = d?.port?.number;
  if (port === undefined) port = service && service.ports.length === 1 ? service.ports[0]?.port : undefined;
  port ??= ctx.port;
  const subset = d?.subset ?? '';
  return { name: clusterName('outbound', port, subset, host), service, port, subset };
}

function faultConfig(f: NonNullable<HTTPRoute['fault']>): ProtoJson | undefined {
  const out: ProtoJson = { '@type': FAULT_TYPE };
  if (f.delay?.fixedDelay) {
    const pct = f.delay.percentage ?? (f.delay.percent !== undefined ? { value: f.delay.percent } : undefined);
    out['delay'] = { fixedDelay: protoDuration(f.delay.fixedDelay), percentage: fractionalPercent(pct) };
  }
  if (f.abort && (f.abort.httpStatus !== undefined || f.abort.grpcStatus !== undefined)) {
    const abort: ProtoJson = { percentage: fractionalPercent(f.abort.percentage) };
    if (f.abort.httpStatus !== undefined) abort['httpStatus'] = f.abort.httpStatus;
    else {
      const code = GRPC_CODES.indexOf(String(f.abort.grpcStatus));
      abort['grpcStatus'] = code >= 0 ? code : Number(f.abort.grpcStatus);
    }
    out['abort'] = abort;
  }
  return out['delay'] || out['abort'] ? out : undefined;
}

function corsConfig(c: NonNullable<HTTPRoute['corsPolicy']>): ProtoJson {
  const out: ProtoJson = { '@type': 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy' };
  const origins = (c.allowOrigins ?? []).map((o) => stringMatcher(o)).filter((o): o is ProtoJson => o !== undefined);
  if (origins.length > 0) out['allowOriginStringMatch'] = origins;
  if (c.allowMethods?.length) out['allowMethods'] = c.allowMethods.join(',');
  if (c.allowHeaders?.length) out['allowHeaders'] = c.allowHeaders.join(',');
  if (c.exposeHeaders?.length) out['exposeHeaders'] = c.exposeHeaders.join(',');
  const maxAge = protoDuration(c.maxAge);
  if (maxAge) out['maxAge'] = String(Math.round(Number(maxAge.slice(0, -1))));
  if (c.allowCredentials !== undefined) out['allowCredentials'] = c.allowCredentials;
  return out;
}

function retryPolicy(r: NonNullable<HTTPRoute['retries']>, grpc: boolean): ProtoJson | undefined {
  if (r.attempts === 0) return undefined;
  const out: ProtoJson = grpc ? { retryOn: 'unavailable,cancelled' } : { ...defaultRetryPolicy(false) };
  out['numRetries'] = r.attempts ?? 2;
  if (r.retryOn) {
    const parts = r.retryOn.split(',').map((s) => s.trim()).filter(Boolean);
    const codes = parts.filter((p) => /^\d+$/.test(p)).map(Number);
    const words = parts.filter((p) => !/^\d+$/.test(p));
    if (codes.length > 0 && !words.includes('retriable-status-codes')) words.push('retriable-status-codes');
    out['retryOn'] = words.join(',');
    if (grpc) delete out['retriableStatusCodes'];
    else if (codes.length > 0) out['retriableStatusCodes'] = codes;
    else delete out['retriableStatusCodes'];
  }
  const perTry = protoDuration(r.perTryTimeout);
  if (perTry) out['perTryTimeout'] = perTry;
  if (r.retryRemoteLocalities && !grpc) out['retryPriority'] = previousPriorities(Number(out['numRetries'] ?? 1));
  return out;
}

/** The Envoy routes for one Istio HTTPRoute (one per match), or none when no match applies here. */
export function translateHttpRoute(ctx: RouteContext, r: HTTPRoute): ProtoJson[] {
  const matches = r.match && r.match.length > 0 ? r.match : [undefined];
  const out: ProtoJson[] = [];
  for (const m of matches) {
    if (m?.port !== undefined && m.port !== ctx.port) continue;
    if (m?.sourceLabels && !labelsMatch(m.sourceLabels, ctx.proxy.labels)) continue;
    if (m?.sourceNamespace && m.sourceNamespace !== ctx.proxy.namespace) continue;
    if (m?.gateways && m.gateways.length > 0) {
      const ns = ctx.vs?.namespace ?? ctx.proxy.namespace;
      const bound = m.gateways.map((g) => (g === 'mesh' || g.includes('/') ? g : `${ns}/${g}`));
      if (!bound.includes(ctx.gateway ?? 'mesh')) continue;
    }
    const route: ProtoJson = { match: routeMatch(m) };
    const name = m?.name ?? r.name;
    if (name) route['name'] = m?.name && r.name ? `${r.name}.${m.name}` : name;
    if (r.redirect) {
      if (ctx.grpc) continue; // gRPC clients reject non-forwarding actions
      const red: ProtoJson = {};
      if (r.redirect.uri) red['pathRedirect'] = r.redirect.uri;
      if (r.redirect.authority) red['hostRedirect'] = r.redirect.authority;
      if (r.redirect.port) red['portRedirect'] = r.redirect.port;
      if (r.redirect.scheme) red['schemeRedirect'] = r.redirect.scheme;
      const code = REDIRECT_CODES[r.redirect.redirectCode ?? 301];
      if (code && code !== 'MOVED_PERMANENTLY') red['responseCode'] = code;
      route['redirect'] = red;
    } else if (r.directResponse) {
      if (ctx.grpc) continue;
      const dr: ProtoJson = { status: r.directResponse.status ?? 200 };
      if (r.directResponse.body?.string !== undefined) dr['body'] = { inlineString: r.directResponse.body.string };
      else if (r.directResponse.body?.bytes !== undefined) dr['body'] = { inlineBytes: r.directResponse.body.bytes };
      route['directResponse'] = dr;
    } else {
      const action: ProtoJson = {};
      const dests = r.route ?? [];
      const resolved = dests.map((d) => ({ d, c: destinationCluster(ctx, d.destination) }));
      if (resolved.length === 1 && !resolved[0]?.d.headers) {
        action['cluster'] = resolved[0]?.c.name;
      } else if (resolved.length > 0) {
        const total = resolved.reduce((s, x) => s + (x.d.weight ?? 0), 0);
        action['weightedClusters'] = {
          clusters: resolved.map(({ d, c }) => {
            const wc: ProtoJson = { name: c.name, weight: total === 0 ? Math.floor(100 / resolved.length) : (d.weight ?? 0) };
            if (!ctx.grpc) headerOps(d.headers, wc);
            return wc;
          }).filter((wc) => (wc['weight'] as number) > 0),
        };
      } else {
        action['cluster'] = ctx.grpc ? clusterName('outbound', ctx.port, '', ctx.service.hostname) : PASSTHROUGH_CLUSTER;
      }
      if (r.rewrite && !ctx.grpc) {
        if (r.rewrite.uri !== undefined) action['prefixRewrite'] = r.rewrite.uri;
        if (r.rewrite.uriRegexRewrite?.match !== undefined) {
          action['regexRewrite'] = { pattern: { regex: r.rewrite.uriRegexRewrite.match }, substitution: r.rewrite.uriRegexRewrite.rewrite ?? '' };
        }
        if (r.rewrite.authority) action['hostRewriteLiteral'] = r.rewrite.authority;
      }
      const timeout = protoDuration(r.timeout);
      if (ctx.grpc) {
        if (timeout) action['maxStreamDuration'] = { maxStreamDuration: timeout };
      } else {
        action['timeout'] = timeout ?? '0s';
      }
      const retry = r.retries ? retryPolicy(r.retries, ctx.grpc) : defaultRetryPolicy(ctx.grpc);
      if (retry) action['retryPolicy'] = retry;
      const mirrors = [...(r.mirrors ?? []).map((mi) => ({ d: mi.destination, p: mi.percentage })), ...(r.mirror ? [{ d: r.mirror, p: r.mirrorPercentage }] : [])];
      if (mirrors.length > 0 && !ctx.grpc) {
        action['requestMirrorPolicies'] = mirrors.map((mi) => ({
          cluster: destinationCluster(ctx, mi.d).name,
          runtimeFraction: { defaultValue: fractionalPercent(mi.p) },
        }));
      }
      // Consistent hashing of a single destination needs the hash key on the route.
      const first = resolved[0];
      if (resolved.length === 1 && first?.c.service) {
        const dr = ctx.push.destinationRuleFor(first.c.service, ctx.proxy.namespace);
        const hp = hashPolicy(effectivePolicy(dr?.spec, first.c.subset, first.c.port));
        if (hp) action['hashPolicy'] = hp;
      }
      if (!ctx.grpc) action['maxGrpcTimeout'] = '0s';
      route['route'] = action;
    }
    if (!ctx.grpc) headerOps(r.headers, route);
    const perFilter: ProtoJson = {};
    const fault = r.fault ? faultConfig(r.fault) : undefined;
    if (fault) perFilter['envoy.filters.http.fault'] = fault;
    if (r.corsPolicy && !ctx.grpc) perFilter['envoy.filters.http.cors'] = corsConfig(r.corsPolicy);
    if (Object.keys(perFilter).length > 0) route['typedPerFilterConfig'] = perFilter;
    if (!ctx.grpc) route['decorator'] = { operation: `${ctx.service.hostname}:${ctx.port}/${name ?? '*'}` };
    out.push(route);
  }
  return out;
}

/** The default route of a service port: everything to `outbound|PORT||HOST`, Istio's retries. */
export function defaultRoute(service: Service, port: number, grpc: boolean, hp?: ProtoJson[]): ProtoJson {
  const action: ProtoJson = { cluster: clusterName('outbound', port, '', service.hostname), retryPolicy: defaultRetryPolicy(grpc) };
  if (!grpc) { action['timeout'] = '0s'; action['maxGrpcTimeout'] = '0s'; }
  if (hp) action['hashPolicy'] = hp;
  const route: ProtoJson = { name: 'default', match: { prefix: '/' }, route: action };
  if (!grpc) route['decorator'] = { operation: `${service.hostname}:${port}/*` };
  return route;
}

const vsIndexes = new WeakMap<readonly Indexed<VirtualServiceSpec>[], { exact: Map<string, Indexed<VirtualServiceSpec>>; wildcard: { host: string; vs: Indexed<VirtualServiceSpec> }[] }>();

/**
 * The oldest VirtualService in scope whose hosts cover the service. The scope's list is
 * indexed by host once (exact hosts in a map, wildcards kept in order), so a route table
 * for 10,000 services does not scan every VirtualService per service.
 */
export function virtualServiceFor(vss: readonly Indexed<VirtualServiceSpec>[], service: Service): Indexed<VirtualServiceSpec> | undefined {
  let index = vsIndexes.get(vss);
  if (!index) {
    index = { exact: new Map(), wildcard: [] };
    for (const v of vss) {
      for (const h of v.spec.hosts ?? []) {
        const host = resolveHost(h, v.namespace);
        if (host.startsWith('*')) index.wildcard.push({ host, vs: v });
        else if (!index.exact.has(host)) index.exact.set(host, v);
      }
    }
    vsIndexes.set(vss, index);
  }
  const exact = index.exact.get(service.hostname);
  const wild = index.wildcard.find((w) => hostMatches(w.host, service.hostname))?.vs;
  if (exact && wild) return vss.indexOf(exact) <= vss.indexOf(wild) ? exact : wild;
  return exact ?? wild;
}

/**
 * A root route's match combined with a delegate's (Istio's delegate semantics): the
 * delegate's conditions refine the root's; header, query and label conditions add up.
 */
export function mergeMatch(root: HTTPMatchRequest | undefined, child: HTTPMatchRequest | undefined): HTTPMatchRequest | undefined {
  if (!root) return child;
  if (!child) return root;
  const out: HTTPMatchRequest = { ...root, ...child };
  if (root.headers || child.headers) out.headers = { ...root.headers, ...child.headers };
  if (root.withoutHeaders || child.withoutHeaders) out.withoutHeaders = { ...root.withoutHeaders, ...child.withoutHeaders };
  if (root.queryParams || child.queryParams) out.queryParams = { ...root.queryParams, ...child.queryParams };
  if (root.sourceLabels || child.sourceLabels) out.sourceLabels = { ...root.sourceLabels, ...child.sourceLabels };
  const name = [root.name, child.name].filter(Boolean).join('-');
  if (name) out.name = name;
  return out;
}

/** The routes of one service's virtual host on one port. */
export function serviceRoutes(push: SextantPushContext, proxy: Proxy, vss: readonly Indexed<VirtualServiceSpec>[], service: Service, port: number, grpc: boolean): ProtoJson[] {
  const vs = virtualServiceFor(vss, service);
  const ctx: RouteContext = { push, proxy, vs, port, service, grpc };
  const routes: ProtoJson[] = [];
  for (const r of vs?.spec.http ?? []) {
    if (!r.delegate?.name || !vs) {
      routes.push(...translateHttpRoute(ctx, r));
      continue;
    }
    // A delegating route: the delegate's routes, each under the root's match conditions.
    const delegate = push.virtualServicesByKey.get(`VirtualService/${r.delegate.namespace ?? vs.namespace}/${r.delegate.name}`);
    if (!delegate || (delegate.exportTo !== null && delegate.namespace !== vs.namespace && !delegate.exportTo.has(vs.namespace))) continue;
    const dctx: RouteContext = { ...ctx, vs: delegate };
    for (const child of delegate.spec.http ?? []) {
      const roots = r.match && r.match.length > 0 ? r.match : [undefined];
      const children = child.match && child.match.length > 0 ? child.match : [undefined];
      const merged = roots.flatMap((rm) => children.map((cm) => mergeMatch(rm, cm))).filter((m): m is HTTPMatchRequest => m !== undefined);
      const { match: _ignored, ...rest } = child;
      routes.push(...translateHttpRoute(dctx, merged.length > 0 ? { ...rest, match: merged } : rest));
    }
  }
  if (routes.length === 0) {
    const dr = push.destinationRuleFor(service, proxy.namespace);
    routes.push(defaultRoute(service, port, grpc, hashPolicy(effectivePolicy(dr?.spec, '', port))));
  }
  return routes;
}

/** The egress listener an RDS name refers to: `PORT` or `BIND:PORT`. */
export function egressForRoute(scope: SidecarScope, routeName: string): { egress: EgressScope; port: number; bind?: string } | undefined {
  const i = routeName.lastIndexOf(':');
  const port = Number(i >= 0 ? routeName.slice(i + 1) : routeName);
  if (!Number.isInteger(port)) return undefined;
  const bind = i >= 0 ? routeName.slice(0, i) : undefined;
  const exact = scope.egress.find((e) => e.listener.port?.number === port && (e.listener.bind ?? undefined) === bind);
  if (exact) return bind !== undefined ? { egress: exact, port, bind } : { egress: exact, port };
  if (bind !== undefined) return undefined;
  const catchAll = scope.egress.find((e) => !e.listener.port?.number);
  return catchAll ? { egress: catchAll, port } : undefined;
}

/** One outbound RouteConfiguration for a sidecar; memoized per scope (and labels when routes depend on them). */
export function routeConfiguration(push: SextantPushContext, proxy: Proxy, routeName: string): ProtoJson | undefined {
  const scope = sidecarScope(push, proxy);
  const target = egressForRoute(scope, routeName);
  if (!target) return undefined;
  const labelsKey = scope.sourceLabelDependent ? JSON.stringify(Object.entries(proxy.labels).sort()) : '';
  return push.memoize(`rds|${scope.namespace}|${scope.sidecar?.key ?? ''}|${routeName}|${labelsKey}`, () => {
    const { egress, port } = target;
    const vhosts: ProtoJson[] = [];
    // A Sidecar egress listener with an HTTP port makes the port HTTP for every host it lists.
    const egressHttp = egress.listener.port ? isHttpProtocol(portProtocol(egress.listener.port)) : false;
    for (const svc of egress.services) {
      const sp = svc.ports.find((p) => p.port === port);
      if (!sp || !(egressHttp || isHttpProtocol(sp.protocol))) continue;
      vhosts.push({
        name: `${svc.hostname}:${port}`,
        domains: serviceDomains(svc, port, proxy.namespace),
        routes: serviceRoutes(push, proxy, egress.virtualServices, svc, port, false),
        includeRequestAttemptCount: true,
      });
    }
    vhosts.push(scope.outboundTrafficPolicy === 'REGISTRY_ONLY'
      ? { name: 'block_all', domains: ['*'], routes: [{ name: 'block_all', match: { prefix: '/' }, directResponse: { status: 502 } }], includeRequestAttemptCount: true }
      : { name: 'allow_any', domains: ['*'], routes: [{ name: 'allow_any', match: { prefix: '/' }, route: { cluster: PASSTHROUGH_CLUSTER, timeout: '0s', maxGrpcTimeout: '0s' } }], includeRequestAttemptCount: true });
    return { name: routeName, virtualHosts: vhosts, validateClusters: false, ignorePortInHostMatching: true };
  });
}

