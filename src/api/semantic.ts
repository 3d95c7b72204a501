// Istio's semantic rules beyond the CRD schema (what its validation webhook checks): host
// names and wildcards, route weights, regexes, ports, resolution vs endpoints, TLS settings,
// EnvoyFilter patch combinations. Each rule runs on a spec the structural schema accepted.
import {
  checkExportTo, checkFQDN, checkHeaderName, checkHeaderOperationName, checkIPOrCIDR, checkLabelKey, checkLabelValue,
  checkPort, checkProtocol, checkRE2, checkUnixAddress, checkWildcardDomain, checkWildcardDomainOrIP,
  GRPC_STATUS, HTTP_METHODS, isDNS1123Label, isIPAddress, parseDurationMs, PORT_NAME, RETRY_ON,
} from './checks.ts';
import type {
  ClientTLSSettings, ConnectionPoolSettings, CorsPolicy, Destination, DestinationRuleSpec, EnvoyFilterSpec,
  GatewaySpec, Headers, HTTPFaultInjection, HTTPMatchRequest, HTTPRoute, HTTPRouteDestination, HTTPRetry,
  LoadBalancerSettings, LocalityLoadBalancerSetting, OutlierDetection, Percent, Port, ReadinessProbe,
  RouteDestination, ServerTLSSettings, ServiceEntrySpec, SidecarSpec, SpecByKind, StringMatch, SupportedKind,
  TCPRoute, TelemetrySpec, TLSRoute, TrafficPolicy, VirtualServiceSpec, WorkloadEntrySpec, WorkloadGroupSpec,
} from './kinds.ts';
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

function checkPercentage(p: Percent | undefined, path: string, issues: Issues): void {
  const v = p?.value;
  if (v !== undefined && (v < 0 || v > 100)) issues.add(child(path, 'value'), `percentage ${v} is not in range 0..100`);
}

function checkIntPercent(v: number | undefined, path: string, issues: Issues): void {
  if (v !== undefined && (v < 0 || v > 100)) issues.add(path, `percentage ${v} is not in range 0..100`);
}

/** Istio's ValidateDuration on top of the schema's >= 1ms: millisecond precision only. */
function checkMsPrecision(d: string | undefined, path: string, issues: Issues): void {
  if (d === undefined) return;
  const ms = parseDurationMs(d);
  if (ms !== undefined && Math.abs(ms - Math.round(ms)) > 1e-9) issues.add(path, `duration ${JSON.stringify(d)}: only durations to ms precision are supported`);
}

function checkPortNumber(n: number | undefined, path: string, issues: Issues): void {
  if (n !== undefined) report(issues, path, checkPort(n));
}

/** Istio's ValidatePortName: a DNS-1123 label. */
function checkPortName(name: string, path: string, issues: Issues): void {
  if (!isDNS1123Label(name)) issues.add(path, `invalid port name ${JSON.stringify(name)}: must be a DNS-1123 label (lower case alphanumerics and '-')`);
}

function checkProtocolName(p: string | undefined, path: string, issues: Issues): void {
  if (p !== undefined && p !== '') report(issues, path, checkProtocol(p));
}

function hasAny(o: object | undefined): boolean {
  if (o === undefined) return false;
  for (const k in o) if ((o as Record<string, unknown>)[k] != null) return true;
  return false;
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
  if (of.startsWith('*')) return host.startsWith('*') ? host.endsWith(of.slice(1)) && host.length >= of.length : host.endsWith(of.slice(1));
  return !host.startsWith('*') && host === of;
}

function checkGatewayNames(gateways: string[] | undefined, path: string, issues: Issues): void {
  if (gateways === undefined) return;
  gateways.forEach((g, i) => {
    const p = `${path}[${i}]`;
    const slash = g.indexOf('/');
    if (slash < 0) {
      const e = checkFQDN(g);
      if (e !== undefined) issues.add(p, `invalid gateway name ${JSON.stringify(g)}: ${e}`);
      return;
    }
    const ns = g.slice(0, slash);
    const name = g.slice(slash + 1);
    if (!isDNS1123Label(ns)) issues.add(p, `invalid value for namespace: ${JSON.stringify(ns)}: expected "namespace/name"`);
    if (!isDNS1123Label(name)) issues.add(p, `invalid value for gateway name: ${JSON.stringify(name)}: expected "namespace/name"`);
  });
}

function checkSourceNamespace(ns: string | undefined, path: string, issues: Issues): void {
  if (ns !== undefined && ns !== '' && !isDNS1123Label(ns)) issues.add(path, `invalid value for sourceNamespace: ${JSON.stringify(ns)}`);
}

function checkDestination(d: Destination, path: string, issues: Issues): void {
  if (d.host === '*') issues.add(child(path, 'host'), 'invalid destination host *: a service host name is required');
  else report(issues, child(path, 'host'), checkWildcardDomain(d.host));
  if (d.subset !== undefined) {
    if (d.subset === '') issues.add(child(path, 'subset'), 'subset name cannot be empty');
    else if (!isDNS1123Label(d.subset)) issues.add(child(path, 'subset'), `subset name is invalid: ${JSON.stringify(d.subset)}: must be a DNS-1123 label`);
  }
  if (d.port !== undefined) report(issues, child(child(path, 'port'), 'number'), checkPort(d.port.number ?? 0));
}

// ---------------------------------------------------------------- VirtualService

function virtualService(vs: VirtualServiceSpec, id: ResourceName, issues: Issues): void {
  const hosts = vs.hosts ?? [];
  const gateways = vs.gateways ?? [];
  const isDelegate = hosts.length === 0;
  if (isDelegate) {
    if (gateways.length > 0) issues.add('spec.gateways', 'delegate virtual service (one without hosts) must have no gateways specified');
    if ((vs.tls ?? []).length > 0) issues.add('spec.tls', 'delegate virtual service (one without hosts) must have no tls route specified');
    if ((vs.tcp ?? []).length > 0) issues.add('spec.tcp', 'delegate virtual service (one without hosts) must have no tcp route specified');
  }
  const appliesToMesh = gateways.length === 0 || gateways.includes('mesh');
  let allHostsValid = true;
  hosts.forEach((h, i) => {
    const e = checkWildcardDomainOrIP(h);
    if (e !== undefined) {
      issues.add(`spec.hosts[${i}]`, e);
      allHostsValid = false;
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
  checkGatewayNames(vs.gateways, 'spec.gateways', issues);
  if ((vs.http ?? []).length + (vs.tls ?? []).length + (vs.tcp ?? []).length === 0) {
    issues.add('spec', 'http, tcp or tls must be provided in virtual service');
  }
  if (vs.exportTo !== undefined) report(issues, 'spec.exportTo', checkExportTo(vs.exportTo, false));
  vs.http?.forEach((r, i) => httpRoute(r, `spec.http[${i}]`, isDelegate, issues));
  vs.tls?.forEach((r, i) => tlsRoute(r, hosts, `spec.tls[${i}]`, issues));
  vs.tcp?.forEach((r, i) => tcpRoute(r, `spec.tcp[${i}]`, issues));
  void id;
}

function checkStringMatch(m: StringMatch | undefined, path: string, issues: Issues, prefixNonEmpty = false): void {
  if (m === undefined) return;
  if (m.regex !== undefined) {
    if (m.regex === '') issues.add(child(path, 'regex'), 'regex string match should not be empty');
    else report(issues, child(path, 'regex'), checkRE2(m.regex));
  }
  if (prefixNonEmpty && m.prefix === '') issues.add(child(path, 'prefix'), 'prefix string match should not be empty');
}

function checkStringMatchMap(m: Record<string, StringMatch> | undefined, path: string, issues: Issues, headerNames: boolean): void {
  if (m === undefined) return;
  for (const k in m) {
    const p = `${path}[${k}]`;
    if (k === '') issues.add(p, 'name cannot be empty');
    else if (headerNames) report(issues, p, checkHeaderName(k.startsWith(':') ? k.slice(1) : k));
    checkStringMatch(m[k], p, issues);
  }
}

function httpMatch(m: HTTPMatchRequest, path: string, issues: Issues): void {
  checkStringMatch(m.uri, child(path, 'uri'), issues, true);
  checkStringMatch(m.scheme, child(path, 'scheme'), issues);
  checkStringMatch(m.method, child(path, 'method'), issues);
  checkStringMatch(m.authority, child(path, 'authority'), issues);
  checkStringMatchMap(m.headers, child(path, 'headers'), issues, true);
  checkStringMatchMap(m.withoutHeaders, child(path, 'withoutHeaders'), issues, true);
  checkStringMatchMap(m.queryParams, child(path, 'queryParams'), issues, false);
  if (m.port !== undefined && m.port !== 0) checkPortNumber(m.port, child(path, 'port'), issues);
  checkLabels(m.sourceLabels, child(path, 'sourceLabels'), issues);
  checkGatewayNames(m.gateways, child(path, 'gateways'), issues);
  checkSourceNamespace(m.sourceNamespace, child(path, 'sourceNamespace'), issues);
}

function checkHeaders(h: Headers | undefined, path: string, issues: Issues): void {
  if (h === undefined) return;
  for (const dir of ['request', 'response'] as const) {
    const ops = h[dir];
    if (ops === undefined) continue;
    const p = child(path, dir);
    for (const op of ['set', 'add'] as const) {
      const m = ops[op];
      if (m === undefined) continue;
      for (const k in m) report(issues, `${child(p, op)}[${k}]`, checkHeaderOperationName(k));
    }
    ops.remove?.forEach((k, i) => {
      const e = checkHeaderName(k);
      if (e !== undefined) issues.add(`${child(p, 'remove')}[${i}]`, e);
      else if (k.toLowerCase() === 'host' || k.toLowerCase() === ':authority') issues.add(`${child(p, 'remove')}[${i}]`, `header ${JSON.stringify(k)} cannot be removed`);
    });
  }
}

function checkWeights(routes: ReadonlyArray<RouteDestination | HTTPRouteDestination>, path: string, issues: Issues): void {
  let total = 0;
  routes.forEach((r, i) => {
    const w = r.weight ?? 0;
    if (w < 0) issues.add(`${path}[${i}].weight`, `weight ${w} < 0: weights must not be negative`);
    total += w;
  });
  if (routes.length > 1 && total === 0) issues.add(path, 'total destination weight = 0: give at least one destination a positive weight');
}

function httpRoute(r: HTTPRoute, path: string, isDelegateVS: boolean, issues: Issues): void {
  const hasRoute = (r.route ?? []).length > 0;
  if (r.delegate !== undefined) {
    if (isDelegateVS) issues.add(child(path, 'delegate'), 'a delegate virtual service cannot itself delegate');
    if (hasRoute || r.redirect !== undefined || r.directResponse !== undefined) {
      issues.add(path, 'only one of route, redirect, directResponse or delegate may be specified');
    }
    if (r.delegate.name === undefined || r.delegate.name === '') issues.add(child(child(path, 'delegate'), 'name'), 'delegate name is required');
    else if (!isDNS1123Subdomain(r.delegate.name)) issues.add(child(child(path, 'delegate'), 'name'), `delegate name ${JSON.stringify(r.delegate.name)} is invalid`);
    const dns = r.delegate.namespace;
    if (dns !== undefined && dns !== '' && !isDNS1123Label(dns)) issues.add(child(child(path, 'delegate'), 'namespace'), `delegate namespace ${JSON.stringify(dns)} is invalid`);
  }
  if (r.redirect !== undefined) {
    if (hasRoute) issues.add(path, 'HTTP route cannot contain both route and redirect');
    if (r.fault !== undefined) issues.add(path, 'HTTP route cannot contain both fault and redirect');
    if (r.rewrite !== undefined) issues.add(path, 'HTTP route rule cannot contain both rewrite and redirect');
    if (r.directResponse !== undefined) issues.add(path, 'HTTP route cannot contain both redirect and directResponse');
    const rd = r.redirect;
    const rp = child(path, 'redirect');
    if (!rd.uri && !rd.authority && rd.port === undefined && rd.derivePort === undefined && !rd.scheme && !rd.prefixRewrite) {
      issues.add(rp, 'redirect must specify uri, prefixRewrite, authority, scheme, or port');
    }
    if (rd.redirectCode !== undefined && rd.redirectCode !== 0 && (rd.redirectCode < 300 || rd.redirectCode > 399)) {
      issues.add(child(rp, 'redirectCode'), `${rd.redirectCode} is not a valid redirect code, must be 3xx`);
    }
    if (rd.scheme !== undefined && rd.scheme !== '' && rd.scheme !== 'http' && rd.scheme !== 'https') {
      issues.add(child(rp, 'scheme'), 'invalid redirect scheme, must be "http" or "https"');
    }
    if (rd.port !== undefined) checkPortNumber(rd.port, child(rp, 'port'), issues);
    if (rd.uri && rd.prefixRewrite) issues.add(rp, 'redirect may only contain one of uri or prefixRewrite');
  } else if (r.directResponse !== undefined) {
    if (hasRoute) issues.add(path, 'HTTP route cannot contain both route and directResponse');
    if (r.fault !== undefined) issues.add(path, 'HTTP route cannot contain both fault and directResponse');
    if (r.rewrite !== undefined) issues.add(path, 'HTTP route cannot contain both rewrite and directResponse');
  } else if (!hasRoute && r.delegate === undefined) {
    issues.add(path, 'HTTP route, redirect, directResponse or delegate is required');
  }
  if (r.directResponse !== undefined) {
    const s = r.directResponse.status;
    if (s < 200 || s > 599) issues.add(child(child(path, 'directResponse'), 'status'), `HTTP status ${s} is not in range 200-599`);
    const body = r.directResponse.body;
    const size = body?.string?.length ?? ((body?.bytes?.length ?? 0) * 3) / 4;
    if (size > 1024 * 1024) issues.add(child(child(path, 'directResponse'), 'body'), 'direct response body must be less than 1MB');
  }
  r.match?.forEach((m, i) => httpMatch(m, `${path}.match[${i}]`, issues));
  if (r.route !== undefined) {
    r.route.forEach((d, i) => {
      const p = `${path}.route[${i}]`;
      checkDestination(d.destination, child(p, 'destination'), issues);
      checkHeaders(d.headers, child(p, 'headers'), issues);
    });
    checkWeights(r.route, child(path, 'route'), issues);
  }
  checkHeaders(r.headers, child(path, 'headers'), issues);
  if (r.rewrite !== undefined) {
    const rw = r.rewrite;
    const p = child(path, 'rewrite');
    if (rw.uri && rw.uriRegexRewrite !== undefined) issues.add(p, 'rewrite may only contain one of uri or uriRegexRewrite');
    if (!rw.uri && rw.uriRegexRewrite === undefined && !rw.authority) issues.add(p, 'rewrite must specify uri, uriRegexRewrite, or authority');
    if (rw.uriRegexRewrite !== undefined) {
      const { match, rewrite } = rw.uriRegexRewrite;
      if (!match || rewrite === undefined) issues.add(child(p, 'uriRegexRewrite'), 'uriRegexRewrite requires both rewrite and match fields to be specified');
      else report(issues, child(child(p, 'uriRegexRewrite'), 'match'), checkRE2(match));
    }
  }
  checkMsPrecision(r.timeout, child(path, 'timeout'), issues);
  if (r.retries !== undefined) retry(r.retries, child(path, 'retries'), issues);
  if (r.fault !== undefined) fault(r.fault, child(path, 'fault'), issues);
  if (r.mirror !== undefined) {
    checkDestination(r.mirror, child(path, 'mirror'), issues);
    if ((r.mirrors ?? []).length > 0) issues.add(path, 'HTTP route cannot contain both mirror and mirrors');
  }
  r.mirrors?.forEach((m, i) => {
    checkDestination(m.destination, `${path}.mirrors[${i}].destination`, issues);
    checkPercentage(m.percentage, `${path}.mirrors[${i}].percentage`, issues);
  });
  if (r.mirrorPercent !== undefined && r.mirrorPercent > 100) issues.add(child(path, 'mirrorPercent'), 'mirrorPercent must have a max value of 100');
  if (r.mirror_percent !== undefined && r.mirror_percent > 100) issues.add(child(path, 'mirror_percent'), 'mirror_percent must have a max value of 100');
  checkPercentage(r.mirrorPercentage, child(path, 'mirrorPercentage'), issues);
  if (r.corsPolicy !== undefined) cors(r.corsPolicy, child(path, 'corsPolicy'), issues);
}

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
  checkMsPrecision(r.perTryTimeout, child(path, 'perTryTimeout'), issues);
  if (r.retryOn !== undefined && r.retryOn !== '') {
    for (const policy of r.retryOn.split(',')) {
      if (RETRY_ON.has(policy)) continue;
      if (/^\d+$/.test(policy) && HTTP_STATUS_CODES.has(Number(policy))) continue;
      issues.add(child(path, 'retryOn'), `${JSON.stringify(policy)} is not a valid retryOn policy: expected one of ${[...RETRY_ON].join(', ')} or an HTTP status code`);
    }
  }
}

function fault(f: HTTPFaultInjection, path: string, issues: Issues): void {
  if (f.abort === undefined && f.delay === undefined) issues.add(path, 'HTTP fault injection must have an abort and/or a delay');
  if (f.abort !== undefined) {
    const p = child(path, 'abort');
    checkPercentage(f.abort.percentage, child(p, 'percentage'), issues);
    if (f.abort.httpStatus !== undefined && (f.abort.httpStatus < 200 || f.abort.httpStatus > 599)) {
      issues.add(child(p, 'httpStatus'), `HTTP status ${f.abort.httpStatus} is not in range 200-599`);
    }
    if (f.abort.grpcStatus !== undefined && !GRPC_STATUS.has(f.abort.grpcStatus)) {
      issues.add(child(p, 'grpcStatus'), `${JSON.stringify(f.abort.grpcStatus)} is not a valid gRPC status: expected one of ${[...GRPC_STATUS].join(', ')}`);
    }
    if (f.abort.http2Error !== undefined) issues.add(child(p, 'http2Error'), 'HTTP/2 abort fault injection not supported yet');
    if (f.abort.httpStatus === undefined && f.abort.grpcStatus === undefined && f.abort.http2Error === undefined) {
      issues.add(p, 'abort must specify httpStatus or grpcStatus');
    }
  }
  if (f.delay !== undefined) {
    const p = child(path, 'delay');
    checkPercentage(f.delay.percentage, child(p, 'percentage'), issues);
    checkIntPercent(f.delay.percent, child(p, 'percent'), issues);
    checkMsPrecision(f.delay.fixedDelay, child(p, 'fixedDelay'), issues);
    if (f.delay.exponentialDelay !== undefined) issues.add(child(p, 'exponentialDelay'), 'exponentialDelay not supported yet');
  }
}

function cors(c: CorsPolicy, path: string, issues: Issues): void {
  c.allowOrigins?.forEach((o, i) => {
    const p = `${path}.allowOrigins[${i}]`;
    if (o.exact === undefined && o.prefix === undefined && o.regex === undefined) issues.add(p, 'allowOrigins entry must set one of exact, prefix or regex');
    checkStringMatch(o, p, issues);
  });
  c.allowMethods?.forEach((m, i) => {
    if (!HTTP_METHODS.has(m)) issues.add(`${path}.allowMethods[${i}]`, `${JSON.stringify(m)} is not a supported HTTP method`);
  });
  c.allowHeaders?.forEach((h, i) => report(issues, `${path}.allowHeaders[${i}]`, checkHeaderName(h)));
  c.exposeHeaders?.forEach((h, i) => report(issues, `${path}.exposeHeaders[${i}]`, checkHeaderName(h)));
  if (c.maxAge !== undefined) {
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
      const e = checkWildcardDomainOrIP(sni);
      if (e !== undefined) {
        issues.add(sp, e);
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
    checkSourceNamespace(m.sourceNamespace, child(p, 'sourceNamespace'), issues);
  });
  routeDestinations(r.route, path, 'TLS', issues);
}

function tcpRoute(r: TCPRoute, path: string, issues: Issues): void {
  r.match?.forEach((m, i) => {
    const p = `${path}.match[${i}]`;
    m.destinationSubnets?.forEach((s, j) => report(issues, `${p}.destinationSubnets[${j}]`, checkIPOrCIDR(s)));
    if (m.sourceSubnet !== undefined && m.sourceSubnet !== '') report(issues, child(p, 'sourceSubnet'), checkIPOrCIDR(m.sourceSubnet));
    if (m.port !== undefined && m.port !== 0) checkPortNumber(m.port, child(p, 'port'), issues);
    checkLabels(m.sourceLabels, child(p, 'sourceLabels'), issues);
    checkGatewayNames(m.gateways, child(p, 'gateways'), issues);
    checkSourceNamespace(m.sourceNamespace, child(p, 'sourceNamespace'), issues);
  });
  routeDestinations(r.route, path, 'TCP', issues);
}

function routeDestinations(route: RouteDestination[] | undefined, path: string, what: string, issues: Issues): void {
  if (route === undefined || route.length === 0) {
    issues.add(child(path, 'route'), `${what} route is required`);
    return;
  }
  route.forEach((d, i) => checkDestination(d.destination, `${path}.route[${i}].destination`, issues));
  checkWeights(route, child(path, 'route'), issues);
}

// ---------------------------------------------------------------- DestinationRule

function destinationRule(dr: DestinationRuleSpec, _id: ResourceName, issues: Issues): void {
  report(issues, 'spec.host', checkWildcardDomain(dr.host));
  if (dr.trafficPolicy !== undefined) trafficPolicy(dr.trafficPolicy, 'spec.trafficPolicy', issues);
  const names = new Set<string>();
  dr.subsets?.forEach((s, i) => {
    const p = `spec.subsets[${i}]`;
    if (s.name === '') issues.add(child(p, 'name'), 'subset name cannot be empty');
    else if (!isDNS1123Label(s.name)) issues.add(child(p, 'name'), `subset name is invalid: ${JSON.stringify(s.name)}: must be a DNS-1123 label`);
    if (names.has(s.name)) issues.add(child(p, 'name'), `duplicate subset names: ${s.name}`);
    names.add(s.name);
    checkLabels(s.labels, child(p, 'labels'), issues);
    if (s.trafficPolicy !== undefined) trafficPolicy(s.trafficPolicy, child(p, 'trafficPolicy'), issues);
  });
  if (dr.exportTo !== undefined) report(issues, 'spec.exportTo', checkExportTo(dr.exportTo, false));
  checkLabels(dr.workloadSelector?.matchLabels, 'spec.workloadSelector.matchLabels', issues);
}

function trafficPolicy(tp: TrafficPolicy, path: string, issues: Issues): void {
  if (!hasAny(tp)) issues.add(path, 'traffic policy must have at least one field');
  if (tp.tunnel !== undefined && tp.proxyProtocol !== undefined) issues.add(path, 'tunnel and proxyProtocol must not be specified at the same time');
  if (tp.outlierDetection !== undefined) outlierDetection(tp.outlierDetection, child(path, 'outlierDetection'), issues);
  if (tp.connectionPool !== undefined) connectionPool(tp.connectionPool, child(path, 'connectionPool'), issues);
  if (tp.loadBalancer !== undefined) loadBalancer(tp.loadBalancer, child(path, 'loadBalancer'), issues);
  if (tp.tls !== undefined) clientTLS(tp.tls, child(path, 'tls'), issues);
  const ports = new Set<number>();
  tp.portLevelSettings?.forEach((pl, i) => {
    const p = `${path}.portLevelSettings[${i}]`;
    if (pl.port === undefined) issues.add(child(p, 'port'), 'portLevelSettings entry must have a port');
    else {
      checkPortNumber(pl.port.number ?? 0, child(child(p, 'port'), 'number'), issues);
      if (pl.port.number !== undefined && ports.has(pl.port.number)) issues.add(child(child(p, 'port'), 'number'), `duplicate port ${pl.port.number} in portLevelSettings`);
      if (pl.port.number !== undefined) ports.add(pl.port.number);
    }
    if (pl.outlierDetection === undefined && pl.connectionPool === undefined && pl.loadBalancer === undefined && pl.tls === undefined) {
      issues.add(p, 'port traffic policy must have at least one field');
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
    if (checkFQDN(t.targetHost) !== undefined && !isIPAddress(t.targetHost)) issues.add(child(p, 'targetHost'), 'tunnel target host must be a valid FQDN or IP address');
    checkPortNumber(t.targetPort, child(p, 'targetPort'), issues);
  }
}

function outlierDetection(o: OutlierDetection, path: string, issues: Issues): void {
  if (o.consecutiveErrors !== undefined && o.consecutiveErrors < 0) issues.add(child(path, 'consecutiveErrors'), 'outlier detection consecutive errors cannot be negative');
  checkIntPercent(o.maxEjectionPercent, child(path, 'maxEjectionPercent'), issues);
  checkIntPercent(o.minHealthPercent, child(path, 'minHealthPercent'), issues);
  checkMsPrecision(o.interval, child(path, 'interval'), issues);
  checkMsPrecision(o.baseEjectionTime, child(path, 'baseEjectionTime'), issues);
}

function connectionPool(c: ConnectionPoolSettings, path: string, issues: Issues): void {
  if (c.http === undefined && c.tcp === undefined) issues.add(path, 'connection pool settings must have at least one field');
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
    if (h.h2UpgradePolicy === 'UPGRADE' && h.useClientProtocol === true) {
      issues.add(p, 'useClientProtocol must not be true when h2UpgradePolicy is UPGRADE');
    }
    checkMsPrecision(h.idleTimeout, child(p, 'idleTimeout'), issues);
  }
  const t = c.tcp;
  if (t !== undefined) {
    const p = child(path, 'tcp');
    if (t.maxConnections !== undefined && t.maxConnections < 0) issues.add(child(p, 'maxConnections'), 'max connections must be non-negative');
    checkMsPrecision(t.connectTimeout, child(p, 'connectTimeout'), issues);
    checkMsPrecision(t.maxConnectionDuration, child(p, 'maxConnectionDuration'), issues);
  }
}

function isPrime(n: number): boolean {
  if (n < 2) return false;
  for (let i = 2; i * i <= n; i++) if (n % i === 0) return false;
  return true;
}

function loadBalancer(lb: LoadBalancerSettings, path: string, issues: Issues): void {
  const ch = lb.consistentHash;
  if (ch !== undefined) {
    const p = child(path, 'consistentHash');
    if (ch.minimumRingSize !== undefined && (ch.ringHash !== undefined || ch.maglev !== undefined)) {
      issues.add(p, 'only one of minimumRingSize or maglev/ringHash can be specified');
    }
    if (ch.maglev !== undefined) {
      const size = ch.maglev.tableSize ?? 0;
      if (size === 0) issues.add(`${p}.maglev.tableSize`, 'tableSize must be set for maglev');
      else if (!isPrime(size)) issues.add(`${p}.maglev.tableSize`, `tableSize ${size} must be a prime number for maglev`);
    }
    if (ch.httpCookie !== undefined && ch.httpCookie.name === '') issues.add(`${p}.httpCookie.name`, 'name required for httpCookie');
  }
  if (lb.localityLbSetting !== undefined) localityLb(lb.localityLbSetting, child(path, 'localityLbSetting'), issues);
}

function checkLocalities(localities: string[], path: string, issues: Issues): void {
  for (const l of localities) {
    const stars = l.split('*').length - 1;
    if (stars > 1 || (stars === 1 && !l.endsWith('*'))) {
      issues.add(path, `locality ${l}: wildcard '*' may appear at most once and only at the end`);
    }
    const parts = l.split('/');
    if (parts.length > 3 || parts.some((x) => x === '')) issues.add(path, `locality ${l} must be region[/zone[/subzone]] without empty parts`);
  }
}

function localityLb(l: LocalityLoadBalancerSetting, path: string, issues: Issues): void {
  if ((l.distribute ?? []).length > 0 && (l.failover ?? []).length > 0) {
    issues.add(path, "can not simultaneously specify 'distribute' and 'failover'");
  }
  const from: string[] = [];
  l.distribute?.forEach((d, i) => {
    const p = `${path}.distribute[${i}]`;
    if (d.from !== undefined) from.push(d.from);
    let total = 0;
    const to: string[] = [];
    for (const k in d.to ?? {}) {
      const w = d.to![k]!;
      to.push(k);
      if (w <= 0 || w > 100) issues.add(`${p}.to[${k}]`, 'locality weight must be in range [1, 100]');
      total += w;
    }
    if (total !== 100) issues.add(child(p, 'to'), `total locality weight ${total} != 100`);
    checkLocalities(to, child(p, 'to'), issues);
  });
  checkLocalities(from, child(path, 'distribute'), issues);
  l.failover?.forEach((f, i) => {
    const p = `${path}.failover[${i}]`;
    if (f.from === f.to) issues.add(p, 'locality lb failover settings must specify different regions');
    if ((f.from ?? '').includes('/') || (f.to ?? '').includes('/')) issues.add(p, 'locality lb failover only specify region');
    if ((f.from ?? '').includes('*') || (f.to ?? '').includes('*')) issues.add(p, "locality lb failover region should not contain '*' wildcard");
  });
}

function clientTLS(t: ClientTLSSettings, path: string, issues: Issues): void {
  if ((t.mode === 'SIMPLE' || t.mode === 'MUTUAL') && t.credentialName) {
    if (t.clientCertificate || t.privateKey || t.caCertificates || t.caCrl) {
      issues.add(path, 'cannot specify client certificates or CA certificate or CA CRL if credentialName is set');
    }
    return;
  }
  if (t.mode === 'MUTUAL') {
    if (!t.clientCertificate) issues.add(child(path, 'clientCertificate'), 'client certificate required for mutual tls');
    if (!t.privateKey) issues.add(child(path, 'privateKey'), 'private key required for mutual tls');
  }
}

// ---------------------------------------------------------------- ServiceEntry, WorkloadEntry, WorkloadGroup

function workloadEntryFields(we: WorkloadEntrySpec, path: string, servicePorts: ReadonlySet<string> | undefined, allowFQDN: boolean, issues: Issues): void {
  const addr = we.address ?? '';
  if (addr.startsWith('unix://')) {
    report(issues, child(path, 'address'), checkUnixAddress(addr.slice(7)));
  } else if (addr !== '') {
    if (!isIPAddress(addr)) {
      if (!allowFQDN) issues.add(child(path, 'address'), `endpoint address ${JSON.stringify(addr)} is not a valid IP address`);
      else if (checkFQDN(addr) !== undefined) issues.add(child(path, 'address'), `endpoint address ${JSON.stringify(addr)} is not a valid FQDN or an IP address`);
    }
    for (const name in we.ports ?? {}) {
      const p = `${path}.ports[${name}]`;
      if (servicePorts !== undefined && !servicePorts.has(name)) issues.add(p, `endpoint port ${name} is not defined by the service entry`);
      if (!PORT_NAME.test(name)) issues.add(p, `invalid port name ${JSON.stringify(name)}`);
    }
  }
  checkLabels(we.labels, child(path, 'labels'), issues);
}

function serviceEntry(se: ServiceEntrySpec, _id: ResourceName, issues: Issues): void {
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
      if (endpoints.length === 0 && se.workloadSelector === undefined) {
        issues.add('spec.endpoints', 'endpoints or a workloadSelector must be provided if resolution is STATIC');
      }
      endpoints.forEach((e, i) => workloadEntryFields(e, `spec.endpoints[${i}]`, portNames, false, issues));
      break;
    case 'DNS':
    case 'DNS_ROUND_ROBIN':
      if (endpoints.length === 0) {
        se.hosts.forEach((h, i) => {
          if (checkFQDN(h) !== undefined) issues.add(`spec.hosts[${i}]`, `hosts must be FQDN if no endpoints are provided for resolution mode ${resolution}`);
        });
      }
      endpoints.forEach((e, i) => workloadEntryFields(e, `spec.endpoints[${i}]`, portNames, true, issues));
      break;
    case 'DYNAMIC_DNS':
      if (endpoints.length > 0) issues.add('spec.endpoints', 'DYNAMIC_DNS mode cannot set endpoints');
      se.hosts.forEach((h, i) => {
        if (!h.startsWith('*.')) issues.add(`spec.hosts[${i}]`, 'DYNAMIC_DNS mode requires wildcard hosts such as "*.example.com"');
      });
      break;
    default:
      break;
  }
  if (se.exportTo !== undefined) report(issues, 'spec.exportTo', checkExportTo(se.exportTo, true));
  checkLabels(se.workloadSelector?.labels, 'spec.workloadSelector.labels', issues);
  se.subjectAltNames?.forEach((s, i) => {
    if (s === '') issues.add(`spec.subjectAltNames[${i}]`, 'subjectAltNames entries must not be empty');
  });
}

function workloadEntry(we: WorkloadEntrySpec, _id: ResourceName, issues: Issues): void {
  workloadEntryFields(we, 'spec', undefined, true, issues);
}

function workloadGroup(wg: WorkloadGroupSpec, _id: ResourceName, issues: Issues): void {
  if (wg.template.address !== undefined && wg.template.address !== '') {
    issues.add('spec.template.address', 'address must not be set in a WorkloadGroup template: each WorkloadEntry gets its own');
  }
  workloadEntryFields(wg.template, 'spec.template', undefined, true, issues);
  checkLabels(wg.metadata?.labels, 'spec.metadata.labels', issues);
  for (const k in wg.metadata?.annotations ?? {}) report(issues, `spec.metadata.annotations[${k}]`, checkLabelKey(k));
  if (wg.probe !== undefined) probe(wg.probe, 'spec.probe', issues);
}

function probe(p: ReadinessProbe, path: string, issues: Issues): void {
  if (p.httpGet === undefined && p.tcpSocket === undefined && p.exec === undefined && p.grpc === undefined) {
    issues.add(path, 'readiness probe must define one of httpGet, tcpSocket, exec or grpc');
  }
  if (p.exec !== undefined && p.exec.command.length === 0) issues.add(`${path}.exec.command`, 'exec probe must have a command');
  if (p.grpc !== undefined && p.grpc.port === undefined) issues.add(`${path}.grpc.port`, 'Required value');
  p.httpGet?.httpHeaders?.forEach((h, i) => {
    if (h.name === undefined || h.name === '') issues.add(`${path}.httpGet.httpHeaders[${i}].name`, 'header name must not be empty');
  });
}

// ---------------------------------------------------------------- Sidecar

function checkBind(bind: string | undefined, path: string, issues: Issues): void {
  if (bind === undefined || bind === '') return;
  if (!isIPAddress(bind)) issues.add(path, `bind ${JSON.stringify(bind)} must be an IP address`);
}

/** ns/host as Sidecars and Gateways write hosts. */
function checkNamespaceSlashHost(h: string, path: string, isGateway: boolean, issues: Issues): void {
  let ns: string;
  let host: string;
  const slash = h.indexOf('/');
  if (slash < 0) {
    if (!isGateway) {
      issues.add(path, `host ${JSON.stringify(h)} must be of form namespace/dnsName`);
      return;
    }
    ns = '*';
    host = h;
  } else {
    ns = h.slice(0, slash);
    host = h.slice(slash + 1);
  }
  if (ns === '' || host === '') {
    issues.add(path, `config namespace and dnsName in host entry ${JSON.stringify(h)} cannot be empty`);
    return;
  }
  if (ns !== '*' && ns !== '.' && !(ns === '~' && !isGateway) && !isDNS1123Label(ns)) {
    issues.add(path, `invalid namespace value ${JSON.stringify(ns)} in ${isGateway ? 'gateway' : 'sidecar'}`);
  }
  report(issues, path, checkWildcardDomainOrIP(host));
}

function sidecar(sc: SidecarSpec, _id: ResourceName, issues: Issues): void {
  if (sc.workloadSelector !== undefined) {
    if (sc.workloadSelector.labels === undefined) issues.add('spec.workloadSelector', 'sidecar: workloadSelector cannot have empty labels');
    checkLabels(sc.workloadSelector.labels, 'spec.workloadSelector.labels', issues);
  }
  if ((sc.egress ?? []).length === 0 && (sc.ingress ?? []).length === 0 && sc.outboundTrafficPolicy === undefined && sc.inboundConnectionPool === undefined) {
    issues.add('spec', 'sidecar: empty configuration provided');
    return;
  }
  const ingressPorts = new Set<number>();
  sc.ingress?.forEach((ing, i) => {
    const p = `spec.ingress[${i}]`;
    sidecarPort(ing.port, child(p, 'port'), issues);
    checkPortNumber(ing.port.number ?? 0, `${p}.port.number`, issues);
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
  const egressPorts = new Set<number>();
  const udsBinds = new Set<string>();
  let catchAll = false;
  const egress = sc.egress ?? [];
  egress.forEach((eg, i) => {
    const p = `spec.egress[${i}]`;
    if (eg.port === undefined) {
      if (catchAll) issues.add(p, 'sidecar: egress can have only one listener with empty port');
      else if (i !== egress.length - 1) issues.add(p, 'sidecar: the egress listener with empty port should be the last listener in the list');
      catchAll = true;
    } else {
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
    if (otp.mode !== 'ALLOW_ANY') issues.add(p, 'sidecar: egressProxy must be set only with ALLOW_ANY outboundTrafficPolicy mode');
    report(issues, child(p, 'host'), checkFQDN(otp.egressProxy.host));
    if (otp.egressProxy.port === undefined) issues.add(child(p, 'port'), 'sidecar: egressProxy port must be set');
    checkDestination(otp.egressProxy, p, issues);
  }
  if (sc.inboundConnectionPool !== undefined) connectionPool(sc.inboundConnectionPool, 'spec.inboundConnectionPool', issues);
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
  const colon = ep.lastIndexOf(':');
  let host = colon < 0 ? '' : ep.slice(0, colon);
  const port = colon < 0 ? '' : ep.slice(colon + 1);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  if (colon < 0 || (host !== '' && host !== '127.0.0.1' && host !== '0.0.0.0' && host !== '::1' && host !== '::')) {
    issues.add(path, 'sidecar: defaultEndpoint must be of form 127.0.0.1:<port>, 0.0.0.0:<port>, [::1]:<port>, [::]:<port>, unix://filepath, or unset');
    return;
  }
  if (!/^\d+$/.test(port)) issues.add(path, `sidecar: defaultEndpoint port (${port}) is not a number`);
  else report(issues, path, checkPort(Number(port)));
}

// ---------------------------------------------------------------- Gateway

const TLS_PROTOCOLS = new Set(['HTTPS', 'TLS']);
const TLS_VERSION_ORDER = ['TLSV1_0', 'TLSV1_1', 'TLSV1_2', 'TLSV1_3'];

function serverTLS(t: ServerTLSSettings, path: string, issues: Issues): void {
  const min = TLS_VERSION_ORDER.indexOf(t.minProtocolVersion ?? '');
  const max = TLS_VERSION_ORDER.indexOf(t.maxProtocolVersion ?? '');
  if (min >= 0 && max >= 0 && min > max) issues.add(path, 'tls.minProtocolVersion should not be higher than tls.maxProtocolVersion');
  if (t.mode === 'ISTIO_MUTUAL') {
    if (t.credentialName || t.serverCertificate || t.privateKey || t.caCertificates) {
      issues.add(path, 'cannot have associated credentialName, certificates or keys when using ISTIO_MUTUAL');
    }
    return;
  }
  if (t.mode === 'SIMPLE' || t.mode === 'MUTUAL' || t.mode === 'OPTIONAL_MUTUAL') {
    if (t.credentialName || (t.credentialNames ?? []).length > 0) return; // fetched through SDS
    if ((t.tlsCertificates ?? []).length > 0) {
      t.tlsCertificates!.forEach((c, i) => {
        if (!c.serverCertificate) issues.add(`${path}.tlsCertificates[${i}].serverCertificate`, `${t.mode} TLS requires a server certificate`);
        if (!c.privateKey) issues.add(`${path}.tlsCertificates[${i}].privateKey`, `${t.mode} TLS requires a private key`);
      });
    } else {
      if (!t.serverCertificate) issues.add(child(path, 'serverCertificate'), `${t.mode} TLS requires a server certificate (or a credentialName)`);
      if (!t.privateKey) issues.add(child(path, 'privateKey'), `${t.mode} TLS requires a private key (or a credentialName)`);
    }
    if (t.mode !== 'SIMPLE' && !t.caCertificates && !t.caCertCredentialName) {
      issues.add(child(path, 'caCertificates'), `${t.mode} TLS requires a client CA bundle`);
    }
  }
}

function gateway(gw: GatewaySpec, _id: ResourceName, issues: Issues): void {
  const servers = gw.servers ?? [];
  if (servers.length === 0) issues.add('spec.servers', 'gateway must have at least one server');
  const portNames = new Set<string>();
  servers.forEach((s, i) => {
    const p = `spec.servers[${i}]`;
    if (s.hosts.length === 0) issues.add(child(p, 'hosts'), 'server config must contain at least one host');
    s.hosts.forEach((h, j) => checkNamespaceSlashHost(h, `${p}.hosts[${j}]`, true, issues));
    const pp = child(p, 'port');
    const proto = (s.port.protocol ?? '').toUpperCase();
    const protoErr = checkProtocol(s.port.protocol ?? '');
    if (protoErr !== undefined) issues.add(child(pp, 'protocol'), protoErr);
    const bind = s.bind ?? '';
    if (bind.startsWith('unix://')) {
      report(issues, child(p, 'bind'), checkUnixAddress(bind.slice(7)));
      if ((s.port.number ?? 0) !== 0) issues.add(child(pp, 'number'), 'port number must be 0 for unix domain socket binds');
    } else {
      checkPortNumber(s.port.number ?? 0, child(pp, 'number'), issues);
      checkBind(bind, child(p, 'bind'), issues);
    }
    if (s.port.targetPort !== undefined && s.port.targetPort !== 0) checkPortNumber(s.port.targetPort, child(pp, 'targetPort'), issues);
    const name = s.port.name ?? '';
    if (name === '') issues.add(child(pp, 'name'), 'port name must be set');
    else if (portNames.has(name)) issues.add(child(pp, 'name'), `port names in servers must be unique: duplicate name ${name}`);
    portNames.add(name);
    if (s.tls !== undefined) serverTLS(s.tls, child(p, 'tls'), issues);
    if (protoErr === undefined) {
      if (TLS_PROTOCOLS.has(proto) && s.tls === undefined) issues.add(child(p, 'tls'), 'server must have TLS settings for HTTPS/TLS protocols');
      else if (!TLS_PROTOCOLS.has(proto) && s.tls !== undefined && s.tls.httpsRedirect !== true) {
        issues.add(child(p, 'tls'), `server cannot have TLS settings for plain text ${proto} ports`);
      }
    }
  });
  checkLabels(gw.selector, 'spec.selector', issues);
}

// ---------------------------------------------------------------- EnvoyFilter

const MERGE_OPS = ['MERGE', 'MERGE_AND_REPLACE_LIST'];
const INSERT_OPS = ['INSERT_BEFORE', 'INSERT_AFTER', 'INSERT_FIRST'];
/** The patch operations Istio applies for each applyTo; others would be silently ignored. */
const OPERATIONS_BY_APPLY_TO: Readonly<Record<string, readonly string[]>> = {
  LISTENER: ['ADD', 'REMOVE', ...MERGE_OPS],
  FILTER_CHAIN: ['ADD', 'REMOVE', ...MERGE_OPS],
  NETWORK_FILTER: ['ADD', 'REMOVE', 'REPLACE', ...MERGE_OPS, ...INSERT_OPS],
  HTTP_FILTER: ['ADD', 'REMOVE', 'REPLACE', ...MERGE_OPS, ...INSERT_OPS],
  LISTENER_FILTER: ['ADD', 'REMOVE', 'REPLACE', ...MERGE_OPS, ...INSERT_OPS],
  ROUTE_CONFIGURATION: [...MERGE_OPS],
  VIRTUAL_HOST: ['ADD', 'REMOVE', ...MERGE_OPS],
  HTTP_ROUTE: ['ADD', 'REMOVE', ...MERGE_OPS, ...INSERT_OPS],
  CLUSTER: ['ADD', 'REMOVE', ...MERGE_OPS],
  EXTENSION_CONFIG: ['ADD', 'REMOVE', ...MERGE_OPS],
  BOOTSTRAP: [...MERGE_OPS],
};
const LISTENER_CLASS = new Set(['LISTENER', 'FILTER_CHAIN', 'NETWORK_FILTER', 'HTTP_FILTER', 'LISTENER_FILTER']);
const ROUTE_CLASS = new Set(['ROUTE_CONFIGURATION', 'VIRTUAL_HOST', 'HTTP_ROUTE']);
const HCM_NAMES = new Set(['envoy.filters.network.http_connection_manager', 'envoy.http_connection_manager']);

function envoyFilter(ef: EnvoyFilterSpec, _id: ResourceName, issues: Issues): void {
  checkLabels(ef.workloadSelector?.labels, 'spec.workloadSelector.labels', issues);
  ef.configPatches?.forEach((cp, i) => {
    const p = `spec.configPatches[${i}]`;
    const applyTo = cp.applyTo ?? 'INVALID';
    if (applyTo === 'INVALID') issues.add(child(p, 'applyTo'), 'Envoy filter: missing applyTo');
    if (cp.patch === undefined) {
      issues.add(child(p, 'patch'), 'Envoy filter: missing patch');
      return;
    }
    const op = cp.patch.operation ?? 'INVALID';
    if (op === 'INVALID') issues.add(`${p}.patch.operation`, 'Envoy filter: missing patch operation');
    else if (op !== 'REMOVE' && cp.patch.value === undefined) issues.add(`${p}.patch.value`, `Envoy filter: missing patch value for non-remove operation ${op}`);
    const allowed = OPERATIONS_BY_APPLY_TO[applyTo];
    if (allowed !== undefined && op !== 'INVALID' && !allowed.includes(op)) {
      issues.add(`${p}.patch.operation`, `Envoy filter: ${applyTo} does not support operation ${op}: expected one of ${allowed.join(', ')}`);
    }
    const m = cp.match;
    if (m === undefined) return;
    const hasObjectMatch = m.listener !== undefined || m.routeConfiguration !== undefined || m.cluster !== undefined;
    if (hasObjectMatch) {
      if (LISTENER_CLASS.has(applyTo) && m.listener === undefined) issues.add(child(p, 'match'), 'Envoy filter: applyTo for listener class objects cannot have non listener match');
      if (ROUTE_CLASS.has(applyTo) && m.routeConfiguration === undefined) issues.add(child(p, 'match'), 'Envoy filter: applyTo for http route class objects cannot have non route configuration match');
      if (applyTo === 'CLUSTER' && m.cluster === undefined) issues.add(child(p, 'match'), 'Envoy filter: applyTo for cluster class objects cannot have non cluster match');
    }
    const filter = m.listener?.filterChain?.filter;
    if (filter !== undefined && LISTENER_CLASS.has(applyTo)) {
      const fp = `${p}.match.listener.filterChain.filter`;
      if (!filter.name) issues.add(child(fp, 'name'), 'Envoy filter: filter match has no name to match on');
      else if (filter.subFilter !== undefined) {
        if (applyTo !== 'HTTP_FILTER') issues.add(child(fp, 'subFilter'), 'Envoy filter: subfilter match can be used with applyTo HTTP_FILTER only');
        if (!HCM_NAMES.has(filter.name)) issues.add(child(fp, 'subFilter'), 'Envoy filter: subfilter match requires filter match with envoy.filters.network.http_connection_manager');
        if (!filter.subFilter.name) issues.add(`${fp}.subFilter.name`, 'Envoy filter: subfilter match has no name to match on');
      }
    }
    const pv = m.proxy?.proxyVersion;
    if (pv !== undefined && pv !== '') {
      const e = checkRE2(pv);
      if (e !== undefined) issues.add(`${p}.match.proxy.proxyVersion`, `Envoy filter: invalid regex for proxy version: ${e}`);
    }
  });
}

// ---------------------------------------------------------------- Telemetry

function telemetry(t: TelemetrySpec, _id: ResourceName, issues: Issues): void {
  checkLabels(t.selector?.matchLabels, 'spec.selector.matchLabels', issues);
  if ((t.tracing ?? []).length > 1) issues.add('spec.tracing', 'multiple tracing is not currently supported');
  t.tracing?.forEach((tr, i) => {
    const p = `spec.tracing[${i}]`;
    for (const name in tr.customTags ?? {}) {
      const tag = tr.customTags![name]!;
      if (tag.literal === undefined && tag.environment === undefined && tag.header === undefined && tag.formatter === undefined) {
        issues.add(`${p}.customTags[${name}]`, `tag ${JSON.stringify(name)} has no configuration: set one of literal, environment, header or formatter`);
      }
    }
  });
  t.metrics?.forEach((m, i) => {
    m.overrides?.forEach((o, j) => {
      for (const name in o.tagOverrides ?? {}) {
        if (name === '') issues.add(`spec.metrics[${i}].overrides[${j}].tagOverrides`, 'tagOverrides must have a name');
      }
    });
  });
  t.accessLogging?.forEach((a, i) => {
    const expr = a.filter?.expression;
    if (expr !== undefined && expr.trim() === '') issues.add(`spec.accessLogging[${i}].filter.expression`, 'filter expression must not be empty');
  });
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
};

function isDNS1123Subdomain(s: string): boolean {
  if (s.length === 0 || s.length > 253) return false;
  return s.split('.').every(isDNS1123Label);
}
