// Istio's semantic rules beyond the CRD schema (what its validation webhook checks): host
// names and wildcards, route weights, regexes, ports, resolution vs endpoints, TLS settings,
// EnvoyFilter patch combinations. Each rule runs on a spec the structural schema accepted.
// Messages follow Istio's own wording, so users can search for them. A few of Envoy's limits
// that Istio leaves unchecked are checked too (checks.ts, "Envoy's limits").
import {
  checkCORSHeaderName, checkEnvoyHTTPStatus, checkExportTo, checkFQDN, checkHeaderBytes, checkHeaderName,
  checkHeaderOperationName, checkHeadersToAddCount, checkHeaderValue, checkIPOrCIDR, checkLabelKey, checkLabelValue,
  checkPort, checkProtocol, checkRE2, checkRequestHeaderSetName, checkSNIBytes, checkUnixAddress, checkWildcardDomain,
  GRPC_STATUS, HTTP_METHODS, isAuthorityHeader, isDNS1123Label, isIPAddress, parseDurationMs, RETRY_ON,
} from './checks.ts';
import type {
  AuthorizationPolicySpec, PeerAuthenticationSpec, RequestAuthenticationSpec, WasmPluginSpec,
  ClientTLSSettings, ConnectionPoolSettings, CorsPolicy, Destination, DestinationRuleSpec, EnvoyFilterSpec,
  GatewaySpec, Headers, HTTPFaultInjection, HTTPMatchRequest, HTTPRoute, HTTPRouteDestination, HTTPRetry,
  LoadBalancerSettings, LocalityLoadBalancerSetting, OutlierDetection, Percent, PolicyTargetReference, Port,
  ReadinessProbe, RouteDestination, ServerTLSSettings, ServiceEntrySpec, SidecarSpec, SpecByKind, StringMatch,
  SupportedKind, TCPRoute, TelemetrySpec, TLSRoute, TrafficPolicy, VirtualServiceSpec, WorkloadEntrySpec,
  WorkloadGroupSpec,
} from './kinds.ts';
import { checkPatchValue } from './envoy-patch.ts';
import { checkAdaptiveLimit } from './adaptive-limit.ts';
import { checkLaneGroup } from './lane-group.ts';
import { checkRouteTemplates } from './route-templates.ts';
import { checkLazyScope, checkWorkloadScope } from './lazy-scope.ts';
import { checkRateLimit } from './rate-limit.ts';
import { child, type Issues } from './schema.ts';

export interface ResourceName {
  namespace: string;
  name: string;
}

export type SemanticRule<S> = (spec: S, id: ResourceName, issues: Issues) => void;

function report(issues: Issues, path: string, e: string | undefined): void {
  if (e !== undefined) issues.add(path, e);
}

function checkLabels(labels: Record<string, string> | undefined, path: string, issues: Issues): void {
  if (labels === undefined) return;
  for (const k in labels) {
    const p = `${path}[${k}]`;
    report(issues, p, checkLabelKey(k));
    report(issues, p, checkLabelValue(labels[k]!));
  }
}

/** Istio's validateWorkloadSelector / ValidateAlphaWorkloadSelector: no empty keys, no wildcards. */
function checkSelector(labels: Record<string, string> | undefined, path: string, issues: Issues): void {
  if (labels === undefined) return;
  for (const k in labels) {
    const v = labels[k]!;
    if (k === '') issues.add(path, `empty key is not supported in selector: "=${v}"`);
    if (k.includes('*') || v.includes('*')) issues.add(`${path}[${k}]`, `wildcard is not supported in selector: "${k}=${v}"`);
  }
}

/** A fractional percentage: 0, or within [0.0001, 100]. */
function checkPercentage(p: Percent | undefined, path: string, issues: Issues): void {
  const v = p?.value;
  if (v !== undefined && (v < 0 || v > 100 || (v > 0 && v < 0.0001))) {
    issues.add(child(path, 'value'), `percentage ${v} is neither 0.0, nor in range [0.0001, 100.0]`);
  }
}

function checkIntPercent(v: number | undefined, path: string, issues: Issues): void {
  if (v !== undefined && (v < 0 || v > 100)) issues.add(path, `percentage ${v} is not in range 0..100`);
}

/** Istio's ValidateDuration: at least 1ms, millisecond precision. */
function checkDuration(d: string | undefined, path: string, issues: Issues): void {
  if (d === undefined) return;
  const ms = parseDurationMs(d);
  if (ms === undefined) return; // the schema reported it
  if (ms < 1) issues.add(path, `duration ${JSON.stringify(d)}: duration must be greater than 1ms`);
  else if (Math.abs(ms - Math.round(ms)) > 1e-9) issues.add(path, `duration ${JSON.stringify(d)}: only durations to ms precision are supported`);
}

function checkPortNumber(n: number | undefined, path: string, issues: Issues): void {
  report(issues, path, checkPort(n ?? 0));
}

/** Istio's ValidatePortName: a DNS-1123 label. */
function checkPortName(name: string, path: string, issues: Issues): void {
  if (!isDNS1123Label(name)) issues.add(path, `invalid port name: ${name}: must be a DNS-1123 label (lower case alphanumerics and '-')`);
}

function checkProtocolName(p: string | undefined, path: string, issues: Issues): void {
  if (p !== undefined && p !== '') report(issues, path, checkProtocol(p));
}

function checkExport(namespace: string, exportTo: string[] | undefined, isServiceEntry: boolean, drWithSelector: boolean, issues: Issues): void {
  if (exportTo === undefined || exportTo.length === 0) return;
  for (const e of checkExportTo(namespace, exportTo, isServiceEntry, drWithSelector)) issues.add('spec.exportTo', e);
}

function hasAny(o: object | undefined): boolean {
  if (o === undefined) return false;
  for (const k in o) if ((o as Record<string, unknown>)[k] != null) return true;
  return false;
}

function isDNS1123Subdomain(s: string): boolean {
  if (s.length === 0 || s.length > 253) return false;
  return s.split('.').every(isDNS1123Label);
}

// ---------------------------------------------------------------- hosts

/** True when two hosts (possibly wildcards) overlap: Istio's host.Name.Matches. */
export function hostsOverlap(a: string, b: string): boolean {
  const aw = a.startsWith('*');
  const bw = b.startsWith('*');
  if (!aw && !bw) return a === b;
  if (aw && bw) return a.length > b.length ? a.endsWith(b.slice(1)) : b.endsWith(a.slice(1));
  return aw ? b.endsWith(a.slice(1)) : a.endsWith(b.slice(1));
}

/** True when every name host matches is also matched by of: Istio's host.Name.SubsetOf. */
export function hostSubsetOf(host: string, of: string): boolean {
  if (of.startsWith('*')) return host.endsWith(of.slice(1)) && (!host.startsWith('*') || host.length >= of.length);
  return !host.startsWith('*') && host === of;
}

function checkGatewayNames(gateways: string[] | undefined, path: string, issues: Issues): void {
  if (gateways === undefined) return;
  gateways.forEach((g, i) => {
    const p = `${path}[${i}]`;
    const slash = g.indexOf('/');
    if (slash < 0) {
      // "name", "mesh" or the legacy "name.namespace.svc.cluster.local" form.
      report(issues, p, checkFQDN(g));
      return;
    }
    const ns = g.slice(0, slash);
    const name = g.slice(slash + 1);
    if (ns === '' || name === '') issues.add(p, 'config namespace and gateway name cannot be empty');
    if (!isDNS1123Label(ns)) issues.add(p, `invalid value for namespace: ${JSON.stringify(ns)}`);
    if (!isDNS1123Label(name)) issues.add(p, `invalid value for gateway name: ${JSON.stringify(name)}`);
  });
}

function checkDestination(d: Destination, path: string, issues: Issues): void {
  if (d.host === '*') issues.add(child(path, 'host'), 'invalid destination host *');
  else report(issues, child(path, 'host'), checkWildcardDomain(d.host));
  if (d.subset !== undefined && d.subset !== '' && !isDNS1123Label(d.subset)) {
    issues.add(child(path, 'subset'), `subset name is invalid: ${d.subset}: must be a DNS-1123 label`);
  }
  if (d.port !== undefined) checkPortNumber(d.port.number, child(child(path, 'port'), 'number'), issues);
}

// ---------------------------------------------------------------- VirtualService

const JWT_CLAIM_PREFIX = '@request.auth.claims.';

function virtualService(vs: VirtualServiceSpec, id: ResourceName, issues: Issues): void {
  const hosts = vs.hosts ?? [];
  const gateways = vs.gateways ?? [];
  const isDelegate = hosts.length === 0;
  if (isDelegate) {
    if (gateways.length > 0) issues.add('spec.gateways', 'delegate virtual service must have no gateways specified');
    if ((vs.tls ?? []).length > 0) issues.add('spec.tls', 'delegate virtual service must have no tls route specified');
    if ((vs.tcp ?? []).length > 0) issues.add('spec.tcp', 'delegate virtual service must have no tcp route specified');
  }
  // Bound to gateways only when gateways are listed and "mesh" is not among them.
  const appliesToGateway = gateways.length > 0 && !gateways.includes('mesh');
  const appliesToMesh = !appliesToGateway;
  if (gateways.length > 0) checkGatewayNames(vs.gateways, 'spec.gateways', issues);
  let allHostsValid = true;
  hosts.forEach((h, i) => {
    const e = checkWildcardDomain(h);
    if (e !== undefined) {
      if (!isIPAddress(h)) {
        issues.add(`spec.hosts[${i}]`, e);
        allHostsValid = false;
      }
    } else if (appliesToMesh && h === '*') {
      issues.add(`spec.hosts[${i}]`, 'wildcard host * is not allowed for virtual services bound to the mesh gateway');
      allHostsValid = false;
    }
  });
  if (allHostsValid) {
    for (let i = 0; i < hosts.length; i++) {
      for (let j = i + 1; j < hosts.length; j++) {
        if (hostsOverlap(hosts[i]!, hosts[j]!)) issues.add(`spec.hosts[${j}]`, `duplicate hosts in virtual service: ${hosts[i]} & ${hosts[j]}`);
      }
    }
  }
  if ((vs.http ?? []).length + (vs.tls ?? []).length + (vs.tcp ?? []).length === 0) {
    issues.add('spec', 'http, tcp or tls must be provided in virtual service');
  }
  vs.http?.forEach((r, i) => httpRoute(r, `spec.http[${i}]`, isDelegate, appliesToGateway, gateways, issues));
  vs.tls?.forEach((r, i) => tlsRoute(r, hosts, `spec.tls[${i}]`, issues));
  vs.tcp?.forEach((r, i) => tcpRoute(r, `spec.tcp[${i}]`, issues));
  checkExport(id.namespace, vs.exportTo, false, false, issues);
}

function checkRegexMatch(m: StringMatch | undefined, path: string, issues: Issues): void {
  if (m?.regex === undefined) return;
  if (m.regex === '') issues.add(child(path, 'regex'), 'regex string match should not be empty');
  else {
    const e = checkRE2(m.regex);
    if (e !== undefined) issues.add(child(path, 'regex'), `${e}; Istio uses RE2 style regex-based match (https://github.com/google/re2/wiki/Syntax)`);
  }
}

/** Istio's validateStringMatch: a regex must be valid, a prefix must not be empty. */
function checkStringMatch(m: StringMatch | undefined, path: string, issues: Issues): void {
  if (m === undefined) return;
  if (m.prefix === '') issues.add(child(path, 'prefix'), 'prefix string match should not be empty');
  checkRegexMatch(m, path, issues);
}

/** Header names in matches: Istio's header-name rule, or JWT claim routing on gateways. */
function checkMatchHeaderNames(m: Record<string, StringMatch> | undefined, path: string, appliesToGateway: boolean,
  gateways: readonly string[], issues: Issues): void {
  if (m === undefined) return;
  for (const k in m) {
    const p = `${path}[${k}]`;
    if (k.startsWith(JWT_CLAIM_PREFIX) && k.length > JWT_CLAIM_PREFIX.length) {
      if (!appliesToGateway) {
        issues.add(p, `JWT claim based routing (key: ${k}) is only supported for gateway, found no gateways: [${gateways.join(' ')}]`);
      }
      continue;
    }
    report(issues, p, checkHeaderName(k));
  }
}

function httpMatch(m: HTTPMatchRequest, path: string, appliesToGateway: boolean, gateways: readonly string[], issues: Issues): void {
  checkMatchHeaderNames(m.headers, child(path, 'headers'), appliesToGateway, gateways, issues);
  checkMatchHeaderNames(m.withoutHeaders, child(path, 'withoutHeaders'), appliesToGateway, gateways, issues);
  for (const k in m.headers ?? {}) checkStringMatch(m.headers![k], `${path}.headers[${k}]`, issues);
  for (const k in m.withoutHeaders ?? {}) {
    // In withoutHeaders, regex "*" means "header present", not a regex.
    const w = m.withoutHeaders![k]!;
    if (w.regex !== '*') checkStringMatch(w, `${path}.withoutHeaders[${k}]`, issues);
  }
  // An empty URI prefix is fine (Envoy's path prefix ""); the other string matches need content.
  checkRegexMatch(m.uri, child(path, 'uri'), issues);
  checkStringMatch(m.scheme, child(path, 'scheme'), issues);
  checkStringMatch(m.method, child(path, 'method'), issues);
  checkStringMatch(m.authority, child(path, 'authority'), issues);
  for (const k in m.queryParams ?? {}) checkStringMatch(m.queryParams![k], `${path}.queryParams[${k}]`, issues);
  if (m.port !== undefined && m.port !== 0) checkPortNumber(m.port, child(path, 'port'), issues);
  checkLabels(m.sourceLabels, child(path, 'sourceLabels'), issues);
  checkGatewayNames(m.gateways, child(path, 'gateways'), issues);
  if (m.sourceNamespace !== undefined && m.sourceNamespace !== '' && !isDNS1123Label(m.sourceNamespace)) {
    issues.add(child(path, 'sourceNamespace'), `sourceNamespace match ${m.sourceNamespace} is invalid`);
  }
}

function checkHeaders(h: Headers | undefined, path: string, issues: Issues): void {
  if (h === undefined) return;
  const req = h.request;
  const rp = child(path, 'request');
  for (const op of ['set', 'add'] as const) {
    for (const k in req?.[op] ?? {}) {
      const p = `${rp}.${op}[${k}]`;
      report(issues, p, checkRequestHeaderSetName(k));
      checkHeaderToAdd(k, req![op]![k]!, p, issues);
    }
  }
  if (req !== undefined) checkHeadersToAdd(req, rp, issues);
  req?.remove?.forEach((k, i) => report(issues, `${rp}.remove[${i}]`, checkHeaderOperationName(k)));
  const res = h.response;
  const sp = child(path, 'response');
  for (const op of ['set', 'add'] as const) {
    for (const k in res?.[op] ?? {}) {
      const p = `${sp}.${op}[${k}]`;
      report(issues, p, checkHeaderOperationName(k));
      checkHeaderToAdd(k, res![op]![k]!, p, issues);
    }
  }
  if (res !== undefined) checkHeadersToAdd(res, sp, issues);
  res?.remove?.forEach((k, i) => report(issues, `${sp}.remove[${i}]`, checkHeaderOperationName(k)));
}

/** One header set or added: Istio's value rule, then Envoy's size limits. */
function checkHeaderToAdd(name: string, value: string, path: string, issues: Issues): void {
  report(issues, path, checkHeaderValue(value));
  report(issues, path, checkHeaderBytes('name', name));
  report(issues, path, checkHeaderBytes('value', value));
}

/** Envoy's limit on one route's (or weighted cluster's) headers to add: `set` and `add` together. */
function checkHeadersToAdd(ops: { set?: Record<string, string>; add?: Record<string, string> }, path: string, issues: Issues): void {
  const count = Object.keys(ops.set ?? {}).length + Object.keys(ops.add ?? {}).length;
  report(issues, path, checkHeadersToAddCount(count));
}

function checkWeights(routes: ReadonlyArray<RouteDestination | HTTPRouteDestination>, path: string, issues: Issues): void {
  let total = 0;
  routes.forEach((r, i) => {
    const w = r.weight ?? 0;
    if (w < 0) issues.add(`${path}[${i}].weight`, `weight ${w} < 0`);
    total += w;
  });
  if (routes.length > 1 && total === 0) issues.add(path, 'total destination weight = 0');
}

function httpRoute(r: HTTPRoute, path: string, isDelegateVS: boolean, appliesToGateway: boolean, gateways: readonly string[], issues: Issues): void {
  const routeKind = isDelegateVS ? 'delegate' : r.delegate !== undefined ? 'root' : 'independent';
  const hasRoute = (r.route ?? []).length > 0;
  if (routeKind === 'root') {
    // A root route only delegates.
    if (r.redirect !== undefined) issues.add(child(path, 'redirect'), `root HTTP route ${r.name ?? ''} must not specify redirect`);
    if (r.route !== undefined) issues.add(child(path, 'route'), `root HTTP route ${r.name ?? ''} must not specify route`);
    if (r.directResponse !== undefined) issues.add(child(path, 'directResponse'), `root HTTP route ${r.name ?? ''} must not specify directResponse`);
    const name = r.delegate!.name;
    if (name === undefined || name === '') issues.add(`${path}.delegate.name`, 'delegate name is required');
    else if (!isDNS1123Subdomain(name)) issues.add(`${path}.delegate.name`, `delegate name ${JSON.stringify(name)} is invalid`);
    const ns = r.delegate!.namespace;
    if (ns !== undefined && ns !== '' && !isDNS1123Label(ns)) issues.add(`${path}.delegate.namespace`, `delegate namespace ${JSON.stringify(ns)} is invalid`);
  } else {
    if (routeKind === 'delegate' && r.delegate !== undefined) issues.add(child(path, 'delegate'), 'delegate HTTP route cannot contain delegate');
    if (r.redirect !== undefined) {
      if (hasRoute) issues.add(path, 'HTTP route cannot contain both route and redirect');
      if (r.fault !== undefined) issues.add(path, 'HTTP route cannot contain both fault and redirect');
      if (r.rewrite !== undefined) issues.add(path, 'HTTP route rule cannot contain both rewrite and redirect');
      if (r.directResponse !== undefined) issues.add(path, 'HTTP route rule cannot contain both direct_response and redirect');
    } else if (r.directResponse !== undefined) {
      if (hasRoute) issues.add(path, 'HTTP route cannot contain both route and direct_response');
      if (r.fault !== undefined) issues.add(path, 'HTTP route cannot contain both fault and direct_response');
      if (r.rewrite !== undefined) issues.add(path, 'HTTP route rule cannot contain both rewrite and direct_response');
    } else if (!hasRoute) {
      issues.add(path, 'HTTP route, redirect or direct_response is required');
    }
  }
  if (r.mirror !== undefined && (r.mirrors ?? []).length > 0) issues.add(path, 'HTTP route cannot contain both mirror and mirrors');
  r.match?.forEach((m, i) => httpMatch(m, `${path}.match[${i}]`, appliesToGateway, gateways, issues));
  checkHeaders(r.headers, child(path, 'headers'), issues);
  if (r.corsPolicy !== undefined) cors(r.corsPolicy, child(path, 'corsPolicy'), issues);
  if (r.fault !== undefined) fault(r.fault, child(path, 'fault'), issues);
  if (r.mirrorPercent !== undefined && r.mirrorPercent > 100) issues.add(child(path, 'mirrorPercent'), `mirror_percent must have a max value of 100 (it has ${r.mirrorPercent})`);
  if (r.mirror_percent !== undefined && r.mirror_percent > 100) issues.add(child(path, 'mirror_percent'), `mirror_percent must have a max value of 100 (it has ${r.mirror_percent})`);
  const mp = r.mirrorPercentage?.value;
  if (mp !== undefined && mp > 100) issues.add(`${path}.mirrorPercentage.value`, `mirror_percentage must have a max value of 100 (it has ${mp})`);
  if (mp !== undefined && mp < 0) issues.add(`${path}.mirrorPercentage.value`, `mirror_percentage must have a min value of 0 (it has ${mp})`);
  if (r.mirror !== undefined) checkDestination(r.mirror, child(path, 'mirror'), issues);
  r.mirrors?.forEach((m, i) => {
    const p = `${path}.mirrors[${i}]`;
    checkDestination(m.destination, child(p, 'destination'), issues);
    const v = m.percentage?.value;
    if (v !== undefined && v > 100) issues.add(`${p}.percentage.value`, `mirror percentage must have a max value of 100 (it has ${v})`);
    if (v !== undefined && v < 0) issues.add(`${p}.percentage.value`, `mirror percentage must have a min value of 0 (it has ${v})`);
  });
  if (r.redirect !== undefined) redirect(r.redirect, child(path, 'redirect'), issues);
  if (r.retries !== undefined) retry(r.retries, child(path, 'retries'), issues);
  if (r.rewrite !== undefined) rewrite(r, path, issues);
  if (r.route !== undefined) {
    r.route.forEach((d, i) => {
      const p = `${path}.route[${i}]`;
      checkHeaders(d.headers, child(p, 'headers'), issues);
      checkDestination(d.destination, child(p, 'destination'), issues);
    });
    checkWeights(r.route, child(path, 'route'), issues);
  }
  checkDuration(r.timeout, child(path, 'timeout'), issues);
  if (r.directResponse !== undefined) {
    // Istio accepts 600 (it checks `> 600`); Envoy does not.
    report(issues, `${path}.directResponse.status`, checkEnvoyHTTPStatus(r.directResponse.status));
    const body = r.directResponse.body;
    const size = body?.string !== undefined ? Buffer.byteLength(body.string) : Math.floor(((body?.bytes?.length ?? 0) * 3) / 4);
    if (size > 1024 * 1024) issues.add(`${path}.directResponse.body`, 'large direct_responses may impact control plane performance, must be less than 1MB');
  }
}

function redirect(rd: NonNullable<HTTPRoute['redirect']>, path: string, issues: Issues): void {
  if (!rd.uri && !rd.authority && rd.port === undefined && rd.derivePort === undefined && !rd.scheme && !rd.prefixRewrite) {
    issues.add(path, 'redirect must specify URI, authority, scheme, or port');
  }
  if (rd.redirectCode !== undefined && rd.redirectCode !== 0 && (rd.redirectCode < 300 || rd.redirectCode > 399)) {
    issues.add(child(path, 'redirectCode'), `${rd.redirectCode} is not a valid redirect code, must be 3xx`);
  }
  if (rd.scheme !== undefined && rd.scheme !== '' && rd.scheme !== 'http' && rd.scheme !== 'https') {
    issues.add(child(path, 'scheme'), 'invalid redirect scheme, must be "http" or "https"');
  }
  if (rd.port !== undefined && rd.port > 0) checkPortNumber(rd.port, child(path, 'port'), issues);
}

function rewrite(r: HTTPRoute, path: string, issues: Issues): void {
  const rw = r.rewrite!;
  const p = child(path, 'rewrite');
  if (rw.uri && rw.uriRegexRewrite !== undefined) issues.add(p, 'rewrite may only contain one of URI or UriRegexRewrite');
  if (!rw.uri && rw.uriRegexRewrite === undefined && !rw.authority) {
    issues.add(p, 'rewrite must specify at least one of URI, UriRegexRewrite, or authority. Only one of URI or UriRegexRewrite may be specified');
  }
  if (rw.uriRegexRewrite !== undefined) {
    const { match, rewrite: to } = rw.uriRegexRewrite;
    if (!match || !to) issues.add(child(p, 'uriRegexRewrite'), 'UriRegexRewrite requires both Rewrite and Match fields to be specified');
    else report(issues, `${p}.uriRegexRewrite.match`, checkRE2(match));
  }
  // The authority may be rewritten in one place only.
  let current = rw.authority ?? '';
  for (const op of ['set', 'add'] as const) {
    const m = r.headers?.request?.[op];
    for (const k in m ?? {}) {
      if (!isAuthorityHeader(k)) continue;
      if (current !== '') issues.add(`${path}.headers.request.${op}[${k}]`, `authority header cannot be set multiple times: have ${JSON.stringify(current)}, attempting to set ${JSON.stringify(m![k])}`);
      current = m![k]!;
    }
  }
}

/** Status codes Go's http.StatusText knows: Istio accepts these in retryOn. */
const HTTP_STATUS_CODES: ReadonlySet<number> = new Set([
  100, 101, 102, 103, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 306, 307, 308,
  400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 418, 421, 422, 423, 424,
  425, 426, 428, 429, 431, 451, 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511,
]);

function retry(r: HTTPRetry, path: string, issues: Issues): void {
  const attempts = r.attempts ?? 0;
  if (attempts < 0) issues.add(child(path, 'attempts'), 'attempts cannot be negative');
  if (attempts === 0 && (r.perTryTimeout !== undefined || (r.retryOn ?? '') !== '' || r.retryRemoteLocalities !== undefined)) {
    issues.add(path, 'http retry policy configured when attempts are set to 0 (disabled)');
  }
  checkDuration(r.perTryTimeout, child(path, 'perTryTimeout'), issues);
  if (r.retryOn !== undefined && r.retryOn !== '') {
    for (const policy of r.retryOn.split(',')) {
      if (RETRY_ON.has(policy)) continue;
      if (/^[+-]?\d+$/.test(policy) && HTTP_STATUS_CODES.has(Number(policy))) continue;
      issues.add(child(path, 'retryOn'), `${JSON.stringify(policy)} is not a valid retryOn policy: expected HTTP status codes or ${[...RETRY_ON].join(', ')}`);
    }
  }
}

function fault(f: HTTPFaultInjection, path: string, issues: Issues): void {
  if (f.abort === undefined && f.delay === undefined) issues.add(path, 'HTTP fault injection must have an abort and/or a delay');
  if (f.abort !== undefined) {
    const p = child(path, 'abort');
    checkPercentage(f.abort.percentage, child(p, 'percentage'), issues);
    if (f.abort.grpcStatus !== undefined && !GRPC_STATUS.has(f.abort.grpcStatus)) {
      issues.add(child(p, 'grpcStatus'), `gRPC status ${JSON.stringify(f.abort.grpcStatus)} is not supported: expected a code such as NOT_FOUND (${[...GRPC_STATUS].join(', ')})`);
    } else if (f.abort.http2Error !== undefined) {
      issues.add(child(p, 'http2Error'), 'HTTP/2 abort fault injection not supported yet');
    } else if (f.abort.httpStatus !== undefined) {
      report(issues, child(p, 'httpStatus'), checkEnvoyHTTPStatus(f.abort.httpStatus));
    }
  }
  if (f.delay !== undefined) {
    const p = child(path, 'delay');
    checkPercentage(f.delay.percentage, child(p, 'percentage'), issues);
    checkIntPercent(f.delay.percent, child(p, 'percent'), issues);
    checkDuration(f.delay.fixedDelay, child(p, 'fixedDelay'), issues);
    if (f.delay.exponentialDelay !== undefined) {
      checkDuration(f.delay.exponentialDelay, child(p, 'exponentialDelay'), issues);
      issues.add(child(p, 'exponentialDelay'), 'exponentialDelay not supported yet');
    }
  }
}

function cors(c: CorsPolicy, path: string, issues: Issues): void {
  c.allowOrigins?.forEach((o, i) => {
    const p = `${path}.allowOrigins[${i}]`;
    const match = o.exact ?? o.prefix ?? o.regex ?? '';
    if (match === '') issues.add(p, `'${match}' is not a valid match type for CORS allow origins`);
    else checkRegexMatch(o, p, issues);
  });
  c.allowMethods?.forEach((m, i) => {
    if (!HTTP_METHODS.has(m)) issues.add(`${path}.allowMethods[${i}]`, `${JSON.stringify(m)} is not a supported HTTP method`);
  });
  c.allowHeaders?.forEach((h, i) => report(issues, `${path}.allowHeaders[${i}]`, checkCORSHeaderName(h)));
  c.exposeHeaders?.forEach((h, i) => report(issues, `${path}.exposeHeaders[${i}]`, checkCORSHeaderName(h)));
  if (c.maxAge !== undefined) {
    checkDuration(c.maxAge, child(path, 'maxAge'), issues);
    const ms = parseDurationMs(c.maxAge);
    if (ms !== undefined && ms % 1000 !== 0) issues.add(child(path, 'maxAge'), 'max_age duration is accurate only to seconds precision');
  }
}

function tlsRoute(r: TLSRoute, hosts: readonly string[], path: string, issues: Issues): void {
  if (r.match.length === 0) issues.add(child(path, 'match'), 'TLS route must have at least one match condition');
  r.match.forEach((m, i) => {
    const p = `${path}.match[${i}]`;
    if (m.sniHosts.length === 0) issues.add(child(p, 'sniHosts'), 'TLS match must have at least one SNI host');
    m.sniHosts.forEach((sni, j) => {
      const sp = `${p}.sniHosts[${j}]`;
      const e = checkWildcardDomain(sni);
      if (e !== undefined) {
        if (!isIPAddress(sni)) issues.add(sp, e); // an IP is only a warning in Istio
        return;
      }
      if (!hosts.some((h) => hostSubsetOf(sni, h))) {
        issues.add(sp, `SNI host ${JSON.stringify(sni)} is not a compatible subset of any of the virtual service hosts: [${hosts.join(', ')}]`);
      }
    });
    m.destinationSubnets?.forEach((s, j) => report(issues, `${p}.destinationSubnets[${j}]`, checkIPOrCIDR(s)));
    if (m.port !== undefined && m.port !== 0) checkPortNumber(m.port, child(p, 'port'), issues);
    checkLabels(m.sourceLabels, child(p, 'sourceLabels'), issues);
    checkGatewayNames(m.gateways, child(p, 'gateways'), issues);
  });
  if ((r.route ?? []).length === 0) issues.add(child(path, 'route'), 'TLS route is required');
  routeDestinations(r.route ?? [], path, issues);
}

function tcpRoute(r: TCPRoute, path: string, issues: Issues): void {
  r.match?.forEach((m, i) => {
    const p = `${path}.match[${i}]`;
    m.destinationSubnets?.forEach((s, j) => report(issues, `${p}.destinationSubnets[${j}]`, checkIPOrCIDR(s)));
    if (m.port !== undefined && m.port !== 0) checkPortNumber(m.port, child(p, 'port'), issues);
    checkLabels(m.sourceLabels, child(p, 'sourceLabels'), issues);
    checkGatewayNames(m.gateways, child(p, 'gateways'), issues);
  });
  if ((r.route ?? []).length === 0) issues.add(child(path, 'route'), 'TCP route is required');
  routeDestinations(r.route ?? [], path, issues);
}

function routeDestinations(route: RouteDestination[], path: string, issues: Issues): void {
  route.forEach((d, i) => checkDestination(d.destination, `${path}.route[${i}].destination`, issues));
  checkWeights(route, child(path, 'route'), issues);
}

// ---------------------------------------------------------------- DestinationRule

function destinationRule(dr: DestinationRuleSpec, id: ResourceName, issues: Issues): void {
  report(issues, 'spec.host', checkWildcardDomain(dr.host));
  if (dr.trafficPolicy !== undefined) trafficPolicy(dr.trafficPolicy, 'spec.trafficPolicy', issues);
  const names = new Set<string>();
  dr.subsets?.forEach((s, i) => {
    const p = `spec.subsets[${i}]`;
    if (names.has(s.name)) issues.add(child(p, 'name'), `duplicate subset names: ${s.name}`);
    names.add(s.name);
    if (s.name === '') issues.add(child(p, 'name'), 'subset name cannot be empty');
    else if (!isDNS1123Label(s.name)) issues.add(child(p, 'name'), `subset name is invalid: ${s.name}: must be a DNS-1123 label`);
    checkLabels(s.labels, child(p, 'labels'), issues);
    if (s.trafficPolicy !== undefined) trafficPolicy(s.trafficPolicy, child(p, 'trafficPolicy'), issues);
  });
  checkExport(id.namespace, dr.exportTo, false, dr.workloadSelector !== undefined, issues);
  checkSelector(dr.workloadSelector?.matchLabels, 'spec.workloadSelector.matchLabels', issues);
}

function trafficPolicy(tp: TrafficPolicy, path: string, issues: Issues): void {
  if (!hasAny(tp)) {
    issues.add(path, 'traffic policy must have at least one field');
    return;
  }
  if (tp.tunnel !== undefined && tp.proxyProtocol !== undefined) {
    issues.add(path, 'tunnel and proxyProtocol must not be set together');
    return;
  }
  if (tp.outlierDetection !== undefined) outlierDetection(tp.outlierDetection, child(path, 'outlierDetection'), issues);
  if (tp.connectionPool !== undefined) connectionPool(tp.connectionPool, child(path, 'connectionPool'), issues);
  if (tp.loadBalancer !== undefined) loadBalancer(tp.loadBalancer, child(path, 'loadBalancer'), issues);
  if (tp.tls !== undefined) clientTLS(tp.tls, child(path, 'tls'), issues);
  tp.portLevelSettings?.forEach((pl, i) => {
    const p = `${path}.portLevelSettings[${i}]`;
    if (pl.port === undefined) issues.add(child(p, 'port'), 'portTrafficPolicy must have valid port');
    if (pl.outlierDetection === undefined && pl.connectionPool === undefined && pl.loadBalancer === undefined && pl.tls === undefined) {
      issues.add(p, 'port traffic policy must have at least one field');
      return;
    }
    if (pl.outlierDetection !== undefined) outlierDetection(pl.outlierDetection, child(p, 'outlierDetection'), issues);
    if (pl.connectionPool !== undefined) connectionPool(pl.connectionPool, child(p, 'connectionPool'), issues);
    if (pl.loadBalancer !== undefined) loadBalancer(pl.loadBalancer, child(p, 'loadBalancer'), issues);
    if (pl.tls !== undefined) clientTLS(pl.tls, child(p, 'tls'), issues);
  });
  if (tp.tunnel !== undefined) {
    const t = tp.tunnel;
    const p = child(path, 'tunnel');
    if (t.protocol !== undefined && t.protocol !== '' && t.protocol !== 'CONNECT' && t.protocol !== 'POST') {
      issues.add(child(p, 'protocol'), 'tunnel protocol must be "CONNECT" or "POST"');
    }
    const fqdnErr = checkFQDN(t.targetHost);
    if (fqdnErr !== undefined && !isIPAddress(t.targetHost)) {
      issues.add(child(p, 'targetHost'), `tunnel target host must be valid FQDN or IP address: ${fqdnErr}; ${t.targetHost} is not a valid IP`);
    }
    const portErr = checkPort(t.targetPort);
    if (portErr !== undefined) issues.add(child(p, 'targetPort'), `tunnel target port is invalid: ${portErr}`);
  }
}

function outlierDetection(o: OutlierDetection, path: string, issues: Issues): void {
  checkDuration(o.baseEjectionTime, child(path, 'baseEjectionTime'), issues);
  if (o.splitExternalLocalOriginErrors !== true && (o.consecutiveLocalOriginFailures ?? 0) > 0) {
    issues.add(child(path, 'consecutiveLocalOriginFailures'),
      'outlier detection consecutive local origin failures is specified, but split external local origin errors is set to false');
  }
  checkDuration(o.interval, child(path, 'interval'), issues);
  checkIntPercent(o.maxEjectionPercent, child(path, 'maxEjectionPercent'), issues);
  checkIntPercent(o.minHealthPercent, child(path, 'minHealthPercent'), issues);
}

function connectionPool(c: ConnectionPoolSettings, path: string, issues: Issues): void {
  if (c.http === undefined && c.tcp === undefined) {
    issues.add(path, 'connection pool must have at least one field');
    return;
  }
  const h = c.http;
  if (h !== undefined) {
    const p = child(path, 'http');
    const nonNegative: Array<[keyof typeof h, string]> = [
      ['http1MaxPendingRequests', 'http1 max pending requests'], ['http2MaxRequests', 'http2 max requests'],
      ['maxRequestsPerConnection', 'max requests per connection'], ['maxRetries', 'max retries'],
      ['maxConcurrentStreams', 'max concurrent streams'],
    ];
    for (const [k, what] of nonNegative) {
      const v = h[k];
      if (typeof v === 'number' && v < 0) issues.add(child(p, k), `${what} must be non-negative`);
    }
    checkDuration(h.idleTimeout, child(p, 'idleTimeout'), issues);
    if (h.h2UpgradePolicy === 'UPGRADE' && h.useClientProtocol === true) {
      issues.add(p, 'use client protocol must not be true when H2UpgradePolicy is UPGRADE');
    }
  }
  const t = c.tcp;
  if (t !== undefined) {
    const p = child(path, 'tcp');
    if (t.maxConnections !== undefined && t.maxConnections < 0) issues.add(child(p, 'maxConnections'), 'max connections must be non-negative');
    checkDuration(t.connectTimeout, child(p, 'connectTimeout'), issues);
    checkDuration(t.maxConnectionDuration, child(p, 'maxConnectionDuration'), issues);
    checkDuration(t.idleTimeout, child(p, 'idleTimeout'), issues);
    checkDuration(t.tcpKeepalive?.time, `${p}.tcpKeepalive.time`, issues);
    checkDuration(t.tcpKeepalive?.interval, `${p}.tcpKeepalive.interval`, issues);
  }
}

/** Envoy's prime test for maglev table sizes (which Istio copies, 1 included). */
function isPrime(x: number): boolean {
  if (x !== 0 && x < 4) return true;
  if (x % 2 === 0) return false;
  const limit = Math.floor(Math.sqrt(x));
  for (let f = 3; f <= limit; f += 2) if (x % f === 0) return false;
  return true;
}

function loadBalancer(lb: LoadBalancerSettings, path: string, issues: Issues): void {
  const ch = lb.consistentHash;
  if (ch !== undefined) {
    const p = child(path, 'consistentHash');
    if (ch.httpCookie !== undefined && ch.httpCookie.name === '') issues.add(`${p}.httpCookie.name`, 'name required for HttpCookie');
    if ((ch.minimumRingSize ?? 0) !== 0 && (ch.ringHash !== undefined || ch.maglev !== undefined)) {
      issues.add(p, 'only one of MinimumRingSize or Maglev/Ringhash can be specified');
    }
    if (ch.maglev !== undefined) {
      const size = ch.maglev.tableSize ?? 0;
      const tp = `${p}.maglev.tableSize`;
      if (size === 0) issues.add(tp, 'tableSize must be set for maglev');
      if (size >= 5000011) issues.add(tp, 'tableSize must be less than 5000011 for maglev');
      if (!isPrime(size)) issues.add(tp, `tableSize must be a prime number for maglev (got ${size})`);
    }
  }
  if (lb.localityLbSetting !== undefined) localityLb(lb.localityLbSetting, child(path, 'localityLbSetting'), issues);
  checkDuration(lb.warmupDurationSecs, child(path, 'warmupDurationSecs'), issues);
}

/** Istio's validateLocalities: wildcards only at the end, no empty parts, no overlaps. */
function checkLocalities(localities: string[]): string | undefined {
  const seen = new Map<string, Map<string, Set<string>>>();
  for (const l of localities) {
    const stars = l.split('*').length - 1;
    if (stars > 1 || (stars === 1 && !l.endsWith('*'))) return `locality ${l} wildcard '*' number can not exceed 1 and must be in the end`;
    if (seen.has('*')) return `locality ${l} overlap with previous specified ones`;
    const items = l.split('/');
    if (items.length > 3) items.splice(2, items.length - 2, items.slice(2).join('/'));
    if (items.some((x) => x === '')) return `locality ${l} must not contain empty region/zone/subzone info`;
    const [region, zone, subZone] = items as [string, string?, string?];
    const overlap = `locality ${l} overlap with previous specified ones`;
    if (zone === undefined) {
      if (seen.has(region)) return overlap;
      seen.set(region, new Map([['*', new Set(['*'])]]));
    } else if (subZone === undefined) {
      const r = seen.get(region);
      if (r !== undefined) {
        if (r.has('*') || r.has(zone)) return overlap;
        r.set(zone, new Set(['*']));
      } else seen.set(region, new Map([[zone, new Set(['*'])]]));
    } else {
      const r = seen.get(region);
      if (r !== undefined) {
        if (r.has('*')) return overlap;
        const z = r.get(zone);
        if (z !== undefined) {
          if (z.has('*') || z.has(subZone)) return overlap;
          z.add(subZone);
        } else r.set(zone, new Set([subZone]));
      } else seen.set(region, new Map([[zone, new Set([subZone])]]));
    }
  }
  return undefined;
}

const TOPOLOGY_LABELS = new Set(['topology.kubernetes.io/region', 'topology.kubernetes.io/zone', 'topology.istio.io/subzone']);

function localityLb(l: LocalityLoadBalancerSetting, path: string, issues: Issues): void {
  if ((l.distribute ?? []).length > 0 && (l.failover ?? []).length > 0) {
    issues.add(path, "can not simultaneously specify 'distribute' and 'failover'");
    return;
  }
  if ((l.failover ?? []).length > 0) {
    const topo = (l.failoverPriority ?? []).find((p) => TOPOLOGY_LABELS.has(p));
    if (topo !== undefined) {
      issues.add(child(path, 'failoverPriority'), `can not simultaneously set 'failover' and topology label '${topo}' in 'failover_priority'`);
      return;
    }
  }
  const from: string[] = [];
  for (let i = 0; i < (l.distribute ?? []).length; i++) {
    const d = l.distribute![i]!;
    const p = `${path}.distribute[${i}]`;
    from.push(d.from ?? '');
    let total = 0;
    const to: string[] = [];
    for (const k in d.to ?? {}) {
      const w = d.to![k]!;
      to.push(k);
      if (w <= 0 || w > 100) {
        issues.add(`${p}.to[${k}]`, 'locality weight must be in range [1, 100]');
        return;
      }
      total += w;
    }
    if (total !== 100) {
      issues.add(child(p, 'to'), `total locality weight ${total} != 100`);
      return;
    }
    report(issues, child(p, 'to'), checkLocalities(to));
  }
  report(issues, child(path, 'distribute'), checkLocalities(from));
  l.failover?.forEach((f, i) => {
    const p = `${path}.failover[${i}]`;
    if ((f.from ?? '') === (f.to ?? '')) issues.add(p, 'locality lb failover settings must specify different regions');
    if ((f.from ?? '').includes('/') || (f.to ?? '').includes('/')) issues.add(p, 'locality lb failover only specify region');
    if ((f.from ?? '').includes('*') || (f.to ?? '').includes('*')) issues.add(p, "locality lb failover region should not contain '*' wildcard");
  });
}

function clientTLS(t: ClientTLSSettings, path: string, issues: Issues): void {
  if (t.sni !== undefined) report(issues, child(path, 'sni'), checkSNIBytes(t.sni));
  if (t.insecureSkipVerify === true) {
    if (t.mode === 'SIMPLE' && (t.caCertificates || t.credentialName || t.subjectAltNames !== undefined)) {
      issues.add(path, 'cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set true');
    }
    if (t.mode === 'MUTUAL' && (t.caCertificates || t.subjectAltNames !== undefined)) {
      issues.add(path, 'cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set true');
    }
  }
  if ((t.mode === 'SIMPLE' || t.mode === 'MUTUAL') && t.credentialName) {
    if (t.clientCertificate || t.privateKey || t.caCertificates || t.caCrl) {
      issues.add(path, 'cannot specify client certificates or CA certificate or CA CRL If credentialName is set');
    }
    return;
  }
  if (t.mode === 'MUTUAL') {
    if (!t.clientCertificate) issues.add(child(path, 'clientCertificate'), 'client certificate required for mutual tls');
    if (!t.privateKey) issues.add(child(path, 'privateKey'), 'private key required for mutual tls');
  }
}

// ---------------------------------------------------------------- ServiceEntry, WorkloadEntry, WorkloadGroup

/** Istio's validateWorkloadEntry, for WorkloadEntries and ServiceEntry endpoints. */
function workloadEntryFields(we: WorkloadEntrySpec, path: string, servicePorts: ReadonlySet<string> | undefined, allowFQDN: boolean, issues: Issues): void {
  const addr = we.address ?? '';
  if (addr === '' && (we.network ?? '') === '') {
    issues.add(child(path, 'address'), 'address is required');
    return;
  }
  let unix = false;
  if (addr.startsWith('unix://')) {
    unix = true;
    report(issues, child(path, 'address'), checkUnixAddress(addr.slice(7)));
    if (Object.keys(we.ports ?? {}).length > 0) issues.add(child(path, 'ports'), `unix endpoint ${addr} must not include ports`);
  } else if (addr !== '' && !isIPAddress(addr)) {
    if (!allowFQDN) issues.add(child(path, 'address'), `endpoint address ${JSON.stringify(addr)} is not a valid IP address`);
    else if (checkFQDN(addr) !== undefined) issues.add(child(path, 'address'), `endpoint address ${JSON.stringify(addr)} is not a valid FQDN or an IP address`);
  }
  for (const name in we.ports ?? {}) {
    const p = `${path}.ports[${name}]`;
    if (servicePorts !== undefined && !servicePorts.has(name)) issues.add(p, `endpoint port ${name} is not defined by the service entry`);
    checkPortName(name, p, issues);
    report(issues, p, checkPort(we.ports![name]!));
  }
  checkLabels(we.labels, child(path, 'labels'), issues);
  if (unix && servicePorts !== undefined && servicePorts.size !== 1) issues.add(path, 'exactly 1 service port required for unix endpoints');
}

const HTTP_PROTOCOLS = new Set(['HTTP', 'HTTP2', 'HTTP_PROXY', 'GRPC', 'GRPC-WEB']);
const TLS_PROTOCOLS = new Set(['HTTPS', 'TLS']);

function serviceEntry(se: ServiceEntrySpec, id: ResourceName, issues: Issues): void {
  checkSelector(se.workloadSelector?.labels, 'spec.workloadSelector.labels', issues);
  se.hosts.forEach((h, i) => {
    if (h !== '*') report(issues, `spec.hosts[${i}]`, checkWildcardDomain(h));
  });
  se.addresses?.forEach((a, i) => report(issues, `spec.addresses[${i}]`, checkIPOrCIDR(a)));
  const portNames = new Set<string>();
  se.ports?.forEach((p, i) => {
    const pp = `spec.ports[${i}]`;
    portNames.add(p.name);
    checkPortName(p.name, child(pp, 'name'), issues);
    checkProtocolName(p.protocol, child(pp, 'protocol'), issues);
  });
  const resolution = se.resolution ?? 'NONE';
  const endpoints = se.endpoints ?? [];
  switch (resolution) {
    case 'STATIC':
      endpoints.forEach((e, i) => workloadEntryFields(e, `spec.endpoints[${i}]`, portNames, false, issues));
      break;
    case 'DNS':
    case 'DNS_ROUND_ROBIN':
      if (endpoints.length === 0) {
        se.hosts.forEach((h, i) => {
          if (checkFQDN(h) !== undefined) issues.add(`spec.hosts[${i}]`, `hosts must be FQDN if no endpoints are provided for resolution mode ${resolution}`);
        });
      }
      endpoints.forEach((e, i) => {
        const p = `spec.endpoints[${i}]`;
        const addr = e.address ?? '';
        if (!isIPAddress(addr) && checkFQDN(addr) !== undefined) issues.add(child(p, 'address'), `endpoint address ${JSON.stringify(addr)} is not a valid FQDN or an IP address`);
        checkLabels(e.labels, child(p, 'labels'), issues);
        for (const name in e.ports ?? {}) {
          const pp = `${p}.ports[${name}]`;
          if (!portNames.has(name)) issues.add(pp, `endpoint port ${name} is not defined by the service entry`);
          checkPortName(name, pp, issues);
          report(issues, pp, checkPort(e.ports![name]!));
        }
      });
      break;
    default:
      break;
  }
  // Plain TCP cannot tell hosts apart, so several hosts need HTTP or TLS ports (unless NONE).
  if (resolution !== 'NONE' && se.hosts.length > 1) {
    const i = (se.ports ?? []).findIndex((p) => {
      const proto = (p.protocol ?? '').toUpperCase();
      return !HTTP_PROTOCOLS.has(proto) && !TLS_PROTOCOLS.has(proto);
    });
    if (i >= 0) issues.add(`spec.ports[${i}]`, 'multiple hosts provided with non-HTTP, non-TLS ports');
  }
  checkExport(id.namespace, se.exportTo, true, false, issues);
}

function workloadEntry(we: WorkloadEntrySpec, _id: ResourceName, issues: Issues): void {
  workloadEntryFields(we, 'spec', undefined, true, issues);
}

function workloadGroup(wg: WorkloadGroupSpec, _id: ResourceName, issues: Issues): void {
  // The template is not a full WorkloadEntry: address and the like are filled in per workload.
  checkLabels(wg.metadata?.labels, 'spec.metadata.labels', issues);
  if (wg.probe !== undefined) probe(wg.probe, 'spec.probe', issues);
}

function probe(p: ReadinessProbe, path: string, issues: Issues): void {
  if (p.httpGet === undefined && p.tcpSocket === undefined && p.exec === undefined && p.grpc === undefined) {
    issues.add(path, 'unknown health check method: set one of httpGet, tcpSocket, exec or grpc');
  }
  if (p.httpGet !== undefined) {
    p.httpGet.httpHeaders?.forEach((h, i) => report(issues, `${path}.httpGet.httpHeaders[${i}].name`, checkHeaderName(h.name ?? '')));
  }
  if (p.exec !== undefined && p.exec.command.length === 0) issues.add(`${path}.exec.command`, 'exec.command is required');
  if (p.grpc !== undefined) checkPortNumber(p.grpc.port, `${path}.grpc.port`, issues);
}

// ---------------------------------------------------------------- Sidecar, Gateway hosts

function checkBind(bind: string | undefined, path: string, issues: Issues): void {
  if (bind === undefined || bind === '') return;
  if (!isIPAddress(bind)) issues.add(path, `${bind} is not a valid IP`);
}

/** Istio's validateSidecarOrGatewayHostnamePart. */
function checkHostnamePart(host: string, path: string, isGateway: boolean, issues: Issues): void {
  if (host !== '*' && !host.includes('.')) issues.add(path, `short names (non FQDN) are not allowed: ${JSON.stringify(host)}`);
  const e = checkWildcardDomain(host);
  if (e !== undefined && !(isGateway && isIPAddress(host))) issues.add(path, e);
  if (host.includes('*') && host.length !== 1 && !host.startsWith('*.')) issues.add(path, `partial wildcard ${JSON.stringify(host)} not allowed`);
}

/** Istio's ValidateNamespaceSlashWildcardHostname: namespace/host in Sidecars and Gateways. */
function checkNamespaceSlashHost(h: string, path: string, isGateway: boolean, issues: Issues): void {
  const slash = h.indexOf('/');
  if (slash < 0) {
    if (isGateway) checkHostnamePart(h, path, true, issues);
    else issues.add(path, `host ${JSON.stringify(h)} must be of form namespace/dnsName`);
    return;
  }
  const ns = h.slice(0, slash);
  const host = h.slice(slash + 1);
  if (ns === '' || host === '') issues.add(path, 'config namespace and dnsName in host entry cannot be empty');
  if (ns !== '*' && ns !== '.' && !(ns === '~' && !isGateway) && !isDNS1123Label(ns)) {
    issues.add(path, `invalid namespace value ${JSON.stringify(ns)} in ${isGateway ? 'gateway' : 'sidecar'}`);
  }
  checkHostnamePart(host, path, isGateway, issues);
}

// ---------------------------------------------------------------- Sidecar

function sidecar(sc: SidecarSpec, _id: ResourceName, issues: Issues): void {
  checkSelector(sc.workloadSelector?.labels, 'spec.workloadSelector.labels', issues);
  if ((sc.egress ?? []).length === 0 && (sc.ingress ?? []).length === 0 && sc.outboundTrafficPolicy === undefined && sc.inboundConnectionPool === undefined) {
    issues.add('spec', 'sidecar: empty configuration provided');
    return;
  }
  const ingressPorts = new Set<number>();
  sc.ingress?.forEach((ing, i) => {
    const p = `spec.ingress[${i}]`;
    if ((ing.port.targetPort ?? 0) > 0) issues.add(`${p}.port.targetPort`, 'targetPort has no impact on Sidecars');
    sidecarPort(ing.port, child(p, 'port'), issues);
    checkPortNumber(ing.port.number, `${p}.port.number`, issues);
    checkBind(ing.bind, child(p, 'bind'), issues);
    const n = ing.port.number ?? 0;
    if (ingressPorts.has(n)) issues.add(`${p}.port.number`, 'sidecar: ports on IP bound listeners must be unique');
    ingressPorts.add(n);
    if (ing.defaultEndpoint !== undefined && ing.defaultEndpoint !== '') defaultEndpoint(ing.defaultEndpoint, child(p, 'defaultEndpoint'), issues);
    if (ing.tls !== undefined) {
      const tp = child(p, 'tls');
      if ((ing.tls.subjectAltNames ?? []).length > 0) issues.add(child(tp, 'subjectAltNames'), 'sidecar: subjectAltNames is not supported in ingress tls');
      if (ing.tls.httpsRedirect === true) issues.add(child(tp, 'httpsRedirect'), 'sidecar: httpsRedirect is not supported');
      if (ing.tls.credentialName) issues.add(child(tp, 'credentialName'), 'sidecar: credentialName is not currently supported');
      if (ing.tls.mode === 'ISTIO_MUTUAL' || ing.tls.mode === 'AUTO_PASSTHROUGH') {
        issues.add(child(tp, 'mode'), `configuration is invalid: cannot set mode to ${ing.tls.mode} in sidecar ingress tls`);
      }
      serverTLS(ing.tls, tp, issues);
    }
    if (ing.connectionPool !== undefined) connectionPool(ing.connectionPool, child(p, 'connectionPool'), issues);
  });
  if (sc.inboundConnectionPool !== undefined) connectionPool(sc.inboundConnectionPool, 'spec.inboundConnectionPool', issues);
  const egressPorts = new Set<number>();
  const udsBinds = new Set<string>();
  let catchAll = false;
  const egress = sc.egress ?? [];
  egress.forEach((eg, i) => {
    const p = `spec.egress[${i}]`;
    if (eg.port === undefined) {
      if (catchAll) {
        issues.add(p, 'sidecar: egress can have only one listener with empty port');
        return;
      }
      if (i === egress.length - 1) catchAll = true;
      else issues.add(p, 'sidecar: the egress listener with empty port should be the last listener in the list');
    } else {
      if ((eg.port.targetPort ?? 0) > 0) issues.add(`${p}.port.targetPort`, 'targetPort has no impact on Sidecars');
      const bind = eg.bind ?? '';
      sidecarPort(eg.port, child(p, 'port'), issues);
      const n = eg.port.number ?? 0;
      if (n === 0) {
        if (!bind.startsWith('unix://')) issues.add(child(p, 'bind'), 'sidecar: ports with 0 value must have a unix domain socket bind address');
        else report(issues, child(p, 'bind'), checkUnixAddress(bind.slice(7)));
        if (eg.captureMode !== undefined && eg.captureMode !== 'DEFAULT' && eg.captureMode !== 'NONE') {
          issues.add(child(p, 'captureMode'), 'sidecar: captureMode must be DEFAULT/NONE for unix domain socket listeners');
        }
        if (udsBinds.has(bind)) issues.add(child(p, 'bind'), 'sidecar: unix domain socket values for listeners must be unique');
        udsBinds.add(bind);
      } else {
        checkPortNumber(n, `${p}.port.number`, issues);
        checkBind(bind, child(p, 'bind'), issues);
        if (egressPorts.has(n)) issues.add(`${p}.port.number`, 'sidecar: ports on IP bound listeners must be unique');
        egressPorts.add(n);
      }
    }
    if (eg.hosts.length === 0) issues.add(child(p, 'hosts'), 'sidecar: egress listener must contain at least one host');
    eg.hosts.forEach((h, j) => checkNamespaceSlashHost(h, `${p}.hosts[${j}]`, false, issues));
  });
  const otp = sc.outboundTrafficPolicy;
  if (otp?.egressProxy !== undefined) {
    const p = 'spec.outboundTrafficPolicy.egressProxy';
    if (otp.mode !== 'ALLOW_ANY') issues.add(p, 'sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode');
    else {
      report(issues, child(p, 'host'), checkFQDN(otp.egressProxy.host));
      if (otp.egressProxy.port === undefined) issues.add(child(p, 'port'), 'sidecar: egress_proxy port must be non-nil');
      else checkDestination(otp.egressProxy, p, issues);
    }
  }
}

function sidecarPort(port: Port, path: string, issues: Issues): void {
  if (port.name !== undefined && port.name !== '') checkPortName(port.name, child(path, 'name'), issues);
  checkProtocolName(port.protocol, child(path, 'protocol'), issues);
}

function defaultEndpoint(ep: string, path: string, issues: Issues): void {
  if (ep.startsWith('unix://')) {
    report(issues, path, checkUnixAddress(ep.slice(7)));
    return;
  }
  // net.SplitHostPort: "host:port" or "[v6]:port".
  let host: string;
  let port: string;
  if (ep.startsWith('[')) {
    const close = ep.indexOf(']');
    if (close < 0 || ep[close + 1] !== ':') {
      issues.add(path, `address ${ep}: missing port in address`);
      return;
    }
    host = ep.slice(1, close);
    port = ep.slice(close + 2);
  } else {
    const colon = ep.lastIndexOf(':');
    if (colon < 0 || ep.indexOf(':') !== colon) {
      issues.add(path, `address ${ep}: ${colon < 0 ? 'missing port in address' : 'too many colons in address'}`);
      return;
    }
    host = ep.slice(0, colon);
    port = ep.slice(colon + 1);
  }
  if (host !== '' && host !== '127.0.0.1' && host !== '0.0.0.0' && host !== '::1' && host !== '::') {
    issues.add(path, 'sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:port,[::]:port,unix://filepath or unset');
  }
  if (!/^[+-]?\d+$/.test(port)) issues.add(path, `sidecar: defaultEndpoint port (${port}) is not a number`);
  else report(issues, path, checkPort(Number(port)));
}

// ---------------------------------------------------------------- Gateway

const TLS_VERSION_ORDER = ['TLSV1_0', 'TLSV1_1', 'TLSV1_2', 'TLSV1_3'];

function serverTLS(t: ServerTLSSettings, path: string, issues: Issues): void {
  const min = TLS_VERSION_ORDER.indexOf(t.minProtocolVersion ?? '');
  const max = TLS_VERSION_ORDER.indexOf(t.maxProtocolVersion ?? '');
  if (min >= 0 && max >= 0 && min > max) issues.add(path, 'minProtocolVersion should not be higher than maxProtocolVersion');
  if (t.mode === 'ISTIO_MUTUAL') {
    if (t.serverCertificate) issues.add(child(path, 'serverCertificate'), 'ISTIO_MUTUAL TLS cannot have associated server certificate');
    if (t.privateKey) issues.add(child(path, 'privateKey'), 'ISTIO_MUTUAL TLS cannot have associated private key');
    if (t.caCertificates) issues.add(child(path, 'caCertificates'), 'ISTIO_MUTUAL TLS cannot have associated CA bundle');
    if (t.credentialName) issues.add(child(path, 'credentialName'), 'ISTIO_MUTUAL TLS cannot have associated credentialName');
    return;
  }
  const simple = t.mode === 'SIMPLE';
  const mutual = t.mode === 'MUTUAL' || t.mode === 'OPTIONAL_MUTUAL';
  if ((simple || mutual) && (t.credentialName || (t.credentialNames ?? []).length > 0)) return; // fetched through SDS
  if (simple || mutual) {
    const what = simple ? 'SIMPLE' : 'MUTUAL';
    const certs = t.tlsCertificates ?? [];
    if (certs.length > 0) {
      certs.forEach((c, i) => {
        if (!c.serverCertificate) issues.add(`${path}.tlsCertificates[${i}].serverCertificate`, `${what} TLS requires a server certificate`);
        if (!c.privateKey) issues.add(`${path}.tlsCertificates[${i}].privateKey`, `${what} TLS requires a private key`);
      });
    } else {
      if (!t.serverCertificate) issues.add(child(path, 'serverCertificate'), `${what} TLS requires a server certificate`);
      if (!t.privateKey) issues.add(child(path, 'privateKey'), `${what} TLS requires a private key`);
    }
    if (mutual && !t.caCertificates) issues.add(child(path, 'caCertificates'), 'MUTUAL TLS requires a client CA bundle');
  }
  if (t.caCrl) {
    if (t.credentialName) issues.add(child(path, 'caCrl'), 'CRL is not supported with credentialName. CRL has to be specified in the credential');
    if (simple) issues.add(child(path, 'caCrl'), 'CRL is not supported with SIMPLE TLS');
  }
}

function gateway(gw: GatewaySpec, id: ResourceName, issues: Issues): void {
  if (!isDNS1123Label(id.name)) issues.add('metadata.name', `invalid gateway name: ${JSON.stringify(id.name)}: Gateway names must be DNS-1123 labels (no dots)`);
  const servers = gw.servers ?? [];
  if (servers.length === 0) issues.add('spec.servers', 'gateway must have at least one server');
  const portNames = new Set<string>();
  servers.forEach((s, i) => {
    const p = `spec.servers[${i}]`;
    if (s.hosts.length === 0) issues.add(child(p, 'hosts'), 'server config must contain at least one host');
    s.hosts.forEach((h, j) => checkNamespaceSlashHost(h, `${p}.hosts[${j}]`, true, issues));
    const pp = child(p, 'port');
    const proto = (s.port.protocol ?? '').toUpperCase();
    const bind = s.bind ?? '';
    let portOk = true;
    if (checkProtocol(s.port.protocol ?? '') !== undefined) {
      issues.add(child(pp, 'protocol'), `invalid protocol ${JSON.stringify(s.port.protocol ?? '')}, supported protocols are HTTP, HTTP2, GRPC, GRPC-WEB, MONGO, REDIS, MYSQL, TCP`);
      portOk = false;
    }
    if ((s.port.number ?? 0) > 0 || !bind.startsWith('unix://')) {
      const e = checkPort(s.port.number ?? 0);
      if (e !== undefined) {
        issues.add(child(pp, 'number'), e);
        portOk = false;
      }
    }
    if ((s.port.targetPort ?? 0) > 0) {
      issues.add(child(pp, 'targetPort'), 'targetPort has no impact on Gateways');
      portOk = false;
    }
    if (bind.startsWith('unix://')) {
      report(issues, child(p, 'bind'), checkUnixAddress(bind.slice(7)));
      if ((s.port.number ?? 0) !== 0) issues.add(child(pp, 'number'), 'port number must be 0 for unix domain socket');
    } else checkBind(bind, child(p, 'bind'), issues);
    if (s.tls !== undefined) serverTLS(s.tls, child(p, 'tls'), issues);
    if (portOk) {
      const tls = s.tls;
      if (TLS_PROTOCOLS.has(proto) && tls === undefined) issues.add(child(p, 'tls'), 'server must have TLS settings for HTTPS/TLS protocols');
      else if (!TLS_PROTOCOLS.has(proto) && tls !== undefined) {
        if (HTTP_PROTOCOLS.has(proto)) {
          // Only an HTTPS redirect (a pass-through TLS block without certificates) fits a plain HTTP server.
          const passThrough = tls.mode === undefined || tls.mode === 'PASSTHROUGH' || tls.mode === 'AUTO_PASSTHROUGH';
          if (!passThrough || tls.caCertificates || tls.privateKey || tls.serverCertificate) {
            issues.add(child(p, 'tls'), 'server cannot have TLS settings for plain text HTTP ports');
          }
        } else issues.add(child(p, 'tls'), 'server cannot have TLS settings for non HTTPS/TLS ports');
      }
    }
    const name = s.port.name ?? '';
    if (portNames.has(name)) issues.add(child(pp, 'name'), `port names in servers must be unique: duplicate name ${name}`);
    portNames.add(name);
  });
  checkLabels(gw.selector, 'spec.selector', issues);
}

// ---------------------------------------------------------------- EnvoyFilter

const MERGE_OPS = ['MERGE', 'MERGE_AND_REPLACE_LIST'];
const INSERT_OPS = ['INSERT_BEFORE', 'INSERT_AFTER', 'INSERT_FIRST'];
/**
 * The patch operations Istio's patcher applies for each applyTo. Istio accepts the others
 * and silently ignores them; Sextant rejects them so a patch that can never apply is seen.
 */
const OPERATIONS_BY_APPLY_TO: Readonly<Record<string, readonly string[]>> = {
  LISTENER: ['ADD', 'REMOVE', 'REPLACE', ...MERGE_OPS],
  FILTER_CHAIN: ['ADD', 'REMOVE', 'REPLACE', ...MERGE_OPS],
  NETWORK_FILTER: ['ADD', 'REMOVE', 'REPLACE', ...MERGE_OPS, ...INSERT_OPS],
  HTTP_FILTER: ['ADD', 'REMOVE', 'REPLACE', ...MERGE_OPS, ...INSERT_OPS],
  LISTENER_FILTER: ['ADD', 'REMOVE', 'REPLACE', ...MERGE_OPS, ...INSERT_OPS],
  ROUTE_CONFIGURATION: [...MERGE_OPS],
  VIRTUAL_HOST: ['ADD', 'REMOVE', 'REPLACE', ...MERGE_OPS],
  HTTP_ROUTE: ['ADD', 'REMOVE', ...MERGE_OPS, ...INSERT_OPS],
  CLUSTER: ['ADD', 'REMOVE', 'REPLACE', ...MERGE_OPS],
  EXTENSION_CONFIG: ['ADD', 'REMOVE', 'REPLACE', ...MERGE_OPS],
  BOOTSTRAP: [...MERGE_OPS],
};
const LISTENER_CLASS = new Set(['LISTENER', 'FILTER_CHAIN', 'NETWORK_FILTER', 'HTTP_FILTER']);
const ROUTE_CLASS = new Set(['ROUTE_CONFIGURATION', 'VIRTUAL_HOST', 'HTTP_ROUTE']);
const HCM_NAMES = new Set(['envoy.filters.network.http_connection_manager', 'envoy.http_connection_manager']);

function envoyFilter(ef: EnvoyFilterSpec, _id: ResourceName, issues: Issues): void {
  checkSelector(ef.workloadSelector?.labels, 'spec.workloadSelector.labels', issues);
  ef.configPatches?.forEach((cp, i) => {
    const p = `spec.configPatches[${i}]`;
    const applyTo = cp.applyTo ?? 'INVALID';
    if (applyTo === 'INVALID') {
      issues.add(child(p, 'applyTo'), 'Envoy filter: missing applyTo');
      return;
    }
    if (cp.patch === undefined) {
      issues.add(child(p, 'patch'), 'Envoy filter: missing patch');
      return;
    }
    const op = cp.patch.operation ?? 'INVALID';
    if (op === 'INVALID') {
      issues.add(`${p}.patch.operation`, 'Envoy filter: missing patch operation');
      return;
    }
    if (op !== 'REMOVE' && cp.patch.value === undefined) {
      issues.add(`${p}.patch.value`, 'Envoy filter: missing patch value for non-remove operation');
      return;
    }
    const pv = cp.match?.proxy?.proxyVersion;
    if (pv !== undefined && pv !== '') {
      const e = checkRE2(pv);
      if (e !== undefined) {
        issues.add(`${p}.match.proxy.proxyVersion`, `Envoy filter: invalid regex for proxy version, [${e}]`);
        return;
      }
    }
    // Istio builds the Envoy object from the value: it must be one.
    if (cp.patch.value !== undefined) checkPatchValue(applyTo, cp.patch.value, `${p}.patch.value`, issues);
    const allowed = OPERATIONS_BY_APPLY_TO[applyTo];
    if (allowed !== undefined && !allowed.includes(op)) {
      issues.add(`${p}.patch.operation`, `Envoy filter: ${applyTo} does not support operation ${op} (it would never apply): expected one of ${allowed.join(', ')}`);
    }
    const m = cp.match;
    if (m === undefined) return;
    const hasObjectMatch = m.listener !== undefined || m.routeConfiguration !== undefined || m.cluster !== undefined;
    if (LISTENER_CLASS.has(applyTo) && hasObjectMatch) {
      if (m.listener === undefined) {
        issues.add(child(p, 'match'), 'Envoy filter: applyTo for listener class objects cannot have non listener match');
        return;
      }
      const filter = m.listener.filterChain?.filter;
      if (filter !== undefined) {
        const fp = `${p}.match.listener.filterChain.filter`;
        if (!filter.name) issues.add(child(fp, 'name'), 'Envoy filter: filter match has no name to match on');
        else if (filter.subFilter !== undefined) {
          if (applyTo !== 'HTTP_FILTER') issues.add(child(fp, 'subFilter'), 'Envoy filter: subfilter match can be used with applyTo HTTP_FILTER only');
          else if (!HCM_NAMES.has(filter.name)) issues.add(child(fp, 'subFilter'), 'Envoy filter: subfilter match requires filter match with envoy.filters.network.http_connection_manager');
          else if (!filter.subFilter.name) issues.add(`${fp}.subFilter.name`, 'Envoy filter: subfilter match has no name to match on');
        }
      }
    }
    if (ROUTE_CLASS.has(applyTo) && hasObjectMatch && m.routeConfiguration === undefined) {
      issues.add(child(p, 'match'), 'Envoy filter: applyTo for http route class objects cannot have non route configuration match');
    }
    if (applyTo === 'CLUSTER' && hasObjectMatch && m.cluster === undefined) {
      issues.add(child(p, 'match'), 'Envoy filter: applyTo for cluster class objects cannot have non cluster match');
    }
  });
}

// ---------------------------------------------------------------- Telemetry

/** Kinds a policy's targetRef may name (group/kind), as Istio allows. */
const TARGET_REF_KINDS = new Set(['core/Service', '/Service', 'networking.istio.io/ServiceEntry', 'gateway.networking.k8s.io/Gateway']);

function checkTargetRef(r: PolicyTargetReference, path: string, issues: Issues): void {
  if (!TARGET_REF_KINDS.has(`${r.group ?? ''}/${r.kind}`)) {
    issues.add(path, `targetRef must be to one of Service, networking.istio.io/ServiceEntry, gateway.networking.k8s.io/Gateway but was ${r.group ?? ''}/${r.kind}`);
  }
}

function telemetry(t: TelemetrySpec, _id: ResourceName, issues: Issues): void {
  checkSelector(t.selector?.matchLabels, 'spec.selector.matchLabels', issues);
  if (t.targetRef !== undefined) checkTargetRef(t.targetRef, 'spec.targetRef', issues);
  t.targetRefs?.forEach((r, i) => checkTargetRef(r, `spec.targetRefs[${i}]`, issues));
}

// ---------------------------------------------------------------- Security: AuthorizationPolicy

/** Istio's ValidateIPs: each an address or a CIDR prefix. */
function checkIPs(values: readonly string[] | undefined, path: string, issues: Issues): void {
  values?.forEach((v, i) => {
    const e = checkIPOrCIDR(v);
    if (e !== undefined) issues.add(`${path}[${i}]`, v.includes('/') ? `bad CIDR range (${v}): ${e}` : `bad IP address (${v})`);
  });
}

/** Istio's ValidatePorts: each a decimal port number. */
function checkPortStrings(values: readonly string[] | undefined, path: string, issues: Issues): void {
  values?.forEach((v, i) => {
    if (!/^\d{1,5}$/.test(v) || Number(v) > 65535) issues.add(`${path}[${i}]`, `bad port (${v}): must be a number in 0-65535`);
  });
}

/** Istio's CheckEmptyValues. */
function checkNoEmptyValues(field: string, values: readonly string[] | undefined, path: string, issues: Issues): void {
  values?.forEach((v, i) => {
    if (v === '') issues.add(`${path}[${i}]`, `empty value not allowed, found in ${field}`);
  });
}

/** Istio's CheckValidPathTemplate: `{*}` and `{**}` as whole segments, `{**}` at most once and last among templates. */
function checkPathTemplates(field: string, paths: readonly string[] | undefined, path: string, issues: Issues): void {
  paths?.forEach((p, i) => {
    const hasTemplate = p.includes('{*}') || p.includes('{**}');
    let sawMatchAny = false;
    for (const glob of p.replace(/^\/+|\/+$/g, '').split('/')) {
      if (glob === '{*}' && !sawMatchAny) continue;
      if (glob === '{**}' && !sawMatchAny) { sawMatchAny = true; continue; }
      if (/[{}]/.test(glob)) {
        issues.add(`${path}[${i}]`, `invalid or unsupported path ${p}, found in ${field}. Contains '{' or '}' beyond a supported path template`);
        return;
      }
      if (hasTemplate && !/^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})*$/.test(glob)) {
        issues.add(`${path}[${i}]`, `invalid or unsupported path ${p}, found in ${field}. Contains segment ${glob} with invalid string literal`);
        return;
      }
    }
  });
}

/** Istio's validateMapKey for `request.headers[...]`-style keys. */
function checkMapKey(key: string): string | undefined {
  const open = key.indexOf('[');
  return open > 0 && key.endsWith(']') && key.length - open > 2 ? undefined : `bad key (${key}): should have format a[b]`;
}

const PLAIN_CONDITION_KEYS: ReadonlySet<string> = new Set([
  'source.namespace', 'source.principal', 'request.auth.principal', 'request.auth.audiences', 'request.auth.presenter',
  'connection.sni', 'source.trustDomain',
]);

/** Istio's ValidateAttribute: the condition keys it knows, with the value syntax each needs. */
function checkConditionValues(key: string, values: readonly string[] | undefined, what: string, path: string, issues: Issues): void {
  if (values === undefined || values.length === 0) return;
  const sub = new CollectingIssues();
  if (key.startsWith('request.headers[') || key.startsWith('request.auth.claims[') || key.startsWith('experimental.envoy.filters.')) {
    const e = checkMapKey(key);
    if (e !== undefined) sub.add(path, e);
  } else if (key === 'source.ip' || key === 'remote.ip' || key === 'destination.ip') checkIPs(values, path, sub);
  else if (key === 'destination.port') checkPortStrings(values, path, sub);
  else if (!PLAIN_CONDITION_KEYS.has(key)) sub.add(path, `unknown attribute (${key})`);
  for (const m of sub.messages) issues.add(m.path, `invalid \`${what}\` for \`key\` ${key}: ${m.detail}`);
}

class CollectingIssues implements Issues {
  readonly messages: Array<{ path: string; detail: string }> = [];
  get count(): number { return this.messages.length; }
  add(path: string, detail: string): void { this.messages.push({ path, detail }); }
}

const SOURCE_FIELDS = [
  'principals', 'notPrincipals', 'requestPrincipals', 'notRequestPrincipals', 'namespaces', 'notNamespaces',
  'ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks', 'serviceAccounts', 'notServiceAccounts',
] as const;
const OPERATION_FIELDS = ['hosts', 'notHosts', 'ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths'] as const;
const capitalized = (f: string): string => f.charAt(0).toUpperCase() + f.slice(1);

function authorizationPolicy(ap: AuthorizationPolicySpec, _id: ResourceName, issues: Issues): void {
  checkSelector(ap.selector?.matchLabels, 'spec.selector.matchLabels', issues);
  if (ap.targetRef !== undefined) checkTargetRef(ap.targetRef, 'spec.targetRef', issues);
  ap.targetRefs?.forEach((r, i) => checkTargetRef(r, `spec.targetRefs[${i}]`, issues));
  const action = ap.action ?? 'ALLOW';
  if (action === 'CUSTOM') {
    if (ap.rules === undefined) {
      issues.add('spec.rules', 'CUSTOM action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request');
    } else if (ap.provider?.name === undefined || ap.provider.name === '') {
      issues.add('spec.provider.name', '`provider.name` must not be empty');
    }
    ap.rules?.forEach((rule, i) => {
      rule.from?.forEach((f, j) => {
        for (const field of ['namespaces', 'notNamespaces', 'principals', 'notPrincipals', 'requestPrincipals', 'notRequestPrincipals'] as const) {
          if ((f.source?.[field]?.length ?? 0) !== 0) issues.add(`spec.rules[${i}].from[${j}].source.${field}`, `From.${capitalized(field)} is currently not supported with CUSTOM action`);
        }
      });
      rule.when?.forEach((w, j) => {
        if (w.key === 'source.namespace' || w.key === 'source.principal' || w.key.startsWith('request.auth.')) {
          issues.add(`spec.rules[${i}].when[${j}].key`, `${w.key} is currently not supported with CUSTOM action`);
        }
      });
    });
  } else if (ap.provider !== undefined) {
    issues.add('spec.provider', `\`provider\` must not be with non CUSTOM action, found ${action}`);
  }
  ap.rules?.forEach((rule, i) => {
    const rp = `spec.rules[${i}]`;
    if (rule.from !== undefined && rule.from.length === 0) issues.add(`${rp}.from`, `\`from\` must not be empty, found at rule ${i}`);
    rule.from?.forEach((f, j) => {
      const sp = `${rp}.from[${j}].source`;
      const src = f.source;
      if (src === undefined) {
        issues.add(sp, `\`from.source\` must not be nil, found at rule ${i}`);
        return;
      }
      if (SOURCE_FIELDS.every((k) => (src[k]?.length ?? 0) === 0)) issues.add(sp, `\`from.source\` must not be empty, found at rule ${i}`);
      for (const k of ['ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks'] as const) checkIPs(src[k], `${sp}.${k}`, issues);
      for (const k of SOURCE_FIELDS) checkNoEmptyValues(capitalized(k), src[k], `${sp}.${k}`, issues);
      for (const k of ['serviceAccounts', 'notServiceAccounts'] as const) {
        src[k]?.forEach((sa, n) => {
          if (sa.split('/').length > 2 || sa.startsWith('/') || sa.endsWith('/')) {
            issues.add(`${sp}.${k}[${n}]`, `invalid service account ${sa}: must be "name" or "namespace/name"`);
          }
        });
      }
    });
    if (rule.to !== undefined && rule.to.length === 0) issues.add(`${rp}.to`, `\`to\` must not be empty, found at rule ${i}`);
    rule.to?.forEach((t, j) => {
      const op = t.operation;
      const opPath = `${rp}.to[${j}].operation`;
      if (op === undefined) {
        issues.add(opPath, `\`to.operation\` must not be nil, found at rule ${i}`);
        return;
      }
      if (OPERATION_FIELDS.every((k) => (op[k]?.length ?? 0) === 0)) issues.add(opPath, `\`to.operation\` must not be empty, found at rule ${i}`);
      checkPortStrings(op.ports, `${opPath}.ports`, issues);
      checkPortStrings(op.notPorts, `${opPath}.notPorts`, issues);
      for (const k of OPERATION_FIELDS) checkNoEmptyValues(capitalized(k), op[k], `${opPath}.${k}`, issues);
      checkPathTemplates('Paths', op.paths, `${opPath}.paths`, issues);
      checkPathTemplates('NotPaths', op.notPaths, `${opPath}.notPaths`, issues);
    });
    rule.when?.forEach((w, j) => {
      const wp = `${rp}.when[${j}]`;
      if (w.key === '') {
        issues.add(`${wp}.key`, '`key` must not be empty');
        return;
      }
      if ((w.values?.length ?? 0) === 0 && (w.notValues?.length ?? 0) === 0) {
        issues.add(wp, `at least one of \`values\` or \`notValues\` must be set for key ${w.key}`);
        return;
      }
      checkConditionValues(w.key, w.values, 'value', `${wp}.values`, issues);
      checkConditionValues(w.key, w.notValues, 'notValue', `${wp}.notValues`, issues);
    });
  });
}

// ---------------------------------------------------------------- Security: PeerAuthentication

function peerAuthentication(pa: PeerAuthenticationSpec, _id: ResourceName, issues: Issues): void {
  checkSelector(pa.selector?.matchLabels, 'spec.selector.matchLabels', issues);
}

// ---------------------------------------------------------------- Security: RequestAuthentication

function requestAuthentication(ra: RequestAuthenticationSpec, _id: ResourceName, issues: Issues): void {
  checkSelector(ra.selector?.matchLabels, 'spec.selector.matchLabels', issues);
  if (ra.targetRef !== undefined) checkTargetRef(ra.targetRef, 'spec.targetRef', issues);
  ra.targetRefs?.forEach((r, i) => checkTargetRef(r, `spec.targetRefs[${i}]`, issues));
  ra.jwtRules?.forEach((rule, i) => {
    const rp = `spec.jwtRules[${i}]`;
    if (rule.issuer === undefined || rule.issuer === '') issues.add(`${rp}.issuer`, 'issuer must be set');
    const uri = rule.jwksUri ?? rule.jwks_uri;
    if (uri !== undefined && !URL.canParse(uri)) issues.add(`${rp}.jwksUri`, `invalid jwks_uri ${JSON.stringify(uri)}: not a URL`);
    if (rule.jwks !== undefined && rule.jwks !== '') {
      let keys: unknown;
      try {
        keys = (JSON.parse(rule.jwks) as { keys?: unknown }).keys;
      } catch (e) {
        keys = e instanceof Error ? e : undefined;
      }
      if (!Array.isArray(keys)) issues.add(`${rp}.jwks`, `jwks parse error: ${keys instanceof Error ? keys.message : 'expected a JSON Web Key Set ({"keys": [...]})'}`);
    }
  });
}

// ---------------------------------------------------------------- Extensions: WasmPlugin

/** What Sextant's sidecars cannot run is refused with the reason: network (TCP) plugins. */
function wasmPlugin(w: WasmPluginSpec, _id: ResourceName, issues: Issues): void {
  if (w.type === 'NETWORK') issues.add('spec.type', 'Unsupported value: "NETWORK": Sextant\'s proxy runs HTTP WASM plugins only (type HTTP or unset)');
}

/** The semantic rules of each supported kind. */
export const SEMANTIC_RULES: { readonly [K in SupportedKind]: SemanticRule<SpecByKind[K]> } = {
  VirtualService: virtualService,
  DestinationRule: destinationRule,
  ServiceEntry: serviceEntry,
  WorkloadEntry: workloadEntry,
  WorkloadGroup: workloadGroup,
  Sidecar: sidecar,
  Gateway: gateway,
  EnvoyFilter: envoyFilter,
  Telemetry: telemetry,
  AuthorizationPolicy: authorizationPolicy,
  PeerAuthentication: peerAuthentication,
  RequestAuthentication: requestAuthentication,
  AdaptiveLimit: checkAdaptiveLimit,
  LaneGroup: checkLaneGroup,
  WasmPlugin: wasmPlugin,
  RouteTemplates: checkRouteTemplates,
  RateLimit: checkRateLimit,
  LazyScope: checkLazyScope,
  WorkloadScope: checkWorkloadScope,
};
