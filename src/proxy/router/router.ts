// The HTTP router: for one downstream request, picks the virtual host and route, applies
// faults, header operations and rewrites, answers redirects and direct responses itself,
// and otherwise forwards to a cluster host with Envoy's timeout, retry, circuit-breaker and
// outlier semantics. Every outcome carries Envoy's response flags for logs and metrics.
import type { AbortSignalLike, DownstreamRequest, RawHeader, RequestHead, RespondOptions, ResponseHead } from '../http/index.ts';
import { hasHeader, headerValue, reasonPhrase, setHeader, withoutHeader } from '../http/index.ts';
import { ReplayableBody, UpstreamError } from '../upstream/index.ts';
import type { Cluster } from '../cluster/cluster.ts';
import type { Host } from '../cluster/host.ts';
import { hashString } from '../cluster/balancer.ts';
import { BLACKHOLE_CLUSTER } from '../../envoy/index.ts';
import { grpcLocalReplyHeaders, grpcStatusOf, grpcTimeoutMs, httpToGrpcStatus, isGrpcRequest } from '../http2/grpc.ts';
import { applyHeaderOps } from './header-ops.ts';
import { newRequestId } from './request-id.ts';
import { normalizeTarget } from './path-normalize.ts';
import type { PathNormalization, PathRedirect, PathRejected } from './path-normalize.ts';
import type { HeaderFormatContext, HeaderOps } from './header-ops.ts';
import type { FaultPolicy, RetryPolicy, Route, RouteAction, RouteTable, VirtualHost, WeightedCluster } from './route-table.ts';
import { evaluateRbac, httpSubject, RBAC_DENIED_BODY, RBAC_FLAG } from '../filters/rbac/index.ts';
import type { RbacFilter } from '../filters/rbac/index.ts';
import { authenticate } from '../filters/jwt/index.ts';
import type { JwtFilter } from '../filters/jwt/index.ts';
import { remoteAddressOf } from '../filters/rbac/index.ts';
import { routeLimits } from '../filters/local-ratelimit/index.ts';
import type { LocalRateLimitFilter, LocalRateLimits, RateLimitVerdict } from '../filters/local-ratelimit/index.ts';
import { ADMISSION_DETAILS, ADMISSION_FLAG } from '../filters/admission/index.ts';
import type { AdmissionGate, AdmissionTicket } from '../filters/admission/index.ts';
import { encodeLane, laneRequest } from '../filters/lanes/index.ts';
import type { LaneDecision, LaneRuntime } from '../filters/lanes/index.ts';
import type { WasmChain, WasmChains } from '../filters/wasm/index.ts';

/** How the router reaches upstream hosts (the cluster's connection pool). */
export interface UpstreamDispatch {
  /** `sourceAddress`: the original source to bind to (inbound: the caller, M17). */
  request(cluster: Cluster, host: Host, head: RequestHead, body: ReplayableBody, opts: { timeoutMs: number; signal: AbortSignalLike; sourceAddress?: string; downstreamH2?: boolean; upgrade?: boolean }): Promise<{ head: ResponseHead; body: AsyncIterable<Buffer> }>;
  /** The source address a raw TCP connection to `cluster` binds to (undefined: the system's choice). */
  sourceFor?(cluster: Cluster, original: string | undefined, destination?: string): string | undefined;
}

/**
 * Where an ORIGINAL_DST (passthrough) request goes: a host and the hop marker it carries
 * upstream, or the local answer when there is nowhere it may go.
 */
export type OriginalDestination =
  | { host: Host; marker: RawHeader | undefined }
  | { host: undefined; status: number; flag: string; details: string };

/** Picks passthrough destinations with the loop guard (listener/original-dst.ts). */
export interface OriginalDestinations {
  /** `head` is the request as it goes upstream. A promise only while a name resolves. */
  destination(req: DownstreamRequest, cluster: Cluster, head: RequestHead, inbound: boolean): OriginalDestination | Promise<OriginalDestination>;
}

/** What the connection manager tells the router about where a request came from. */
export interface RouterContext {
  routes: RouteTable | undefined;
  clusters: ReadonlyMap<string, Cluster>;
  upstream: UpstreamDispatch;
  originalDst: OriginalDestinations;
  /** INBOUND listeners append the peer to x-forwarded-for so the app sees the client (M17). */
  inbound: boolean;
  /** Envoy's original_src: upstream connections bind to the downstream's address (the lazy-scope hub, M17). */
  originalSource?: boolean;
  useRemoteAddress: boolean;
  skipXffAppend: boolean;
  /** Applied to the path before routing (Envoy's normalize_path, merge_slashes, escaped slashes). */
  pathNormalization: PathNormalization;
  generateRequestId: boolean;
  faultFilter: boolean;
  /** Extra request headers for upstream calls of mesh clusters (Istio peer metadata). */
  peerHeaders: readonly RawHeader[];
  /** Bytes of request body kept for retries and mirrors. */
  retryBufferBytes: number;
  /** The connection manager's upgradeConfigs (`websocket`); an Upgrade request of another type is refused 403. */
  upgradeTypes?: ReadonlySet<string>;
  /** `envoy.filters.http.rbac` filters in chain order; they run after normalization and XFF, before routing. */
  rbac?: readonly RbacFilter[];
  xffNumTrustedHops?: number;
  /** `envoy.filters.http.jwt_authn` filters (RequestAuthentication); they run before RBAC. */
  jwt?: readonly JwtFilter[];
  /** Local rate limits (src/proxy/filters/local-ratelimit): the chain's filters and the proxy's buckets. */
  localRateLimit?: { filters: readonly LocalRateLimitFilter[]; limits: LocalRateLimits } | undefined;
  /** The adaptive-limits admission gate of this inbound port (src/proxy/filters/admission). */
  admission?: AdmissionGate | undefined;
  /** The lanes filter and the proxy's trace table (src/proxy/filters/lanes). */
  lanes?: LaneRuntime | undefined;
  /** `envoy.filters.http.wasm` filters (src/proxy/filters/wasm) by where they run: before JWT, before RBAC, before routing. */
  wasm?: WasmChains | undefined;
}

/** The outcome of one request, for access logs and metrics. */
export interface RouteOutcome {
  status: number;
  flags: string[];
  details: string;
  authority: string;
  path: string;
  originalPath: string | undefined;
  requestId: string | undefined;
  xForwardedFor: string | undefined;
  routeName: string | undefined;
  cluster: Cluster | undefined;
  clusterName: string | undefined;
  host: Host | undefined;
  upstreamServiceTimeMs: number | undefined;
  requestHeaders: readonly RawHeader[];
  /** The gRPC status of the answer when its headers carried one (trailers-only, or a local reply to a gRPC request). */
  grpcStatus: number | undefined;
  /** Headers a filter adds to whatever answer goes out, the upstream's or a local one (x-ratelimit-*). */
  responseHeadersToAdd?: RawHeader[] | undefined;
  /** The request's lane (src/proxy/filters/lanes), when the lanes filter ran. */
  lane?: LaneDecision | undefined;
}

/**
 * Routes and answers one request; resolves with what happened once the response is written.
 * Not an async function: the common path hands back forward()'s promise and keeps no
 * suspended frame of its own while the upstream answers.
 */
export function routeRequest(req: DownstreamRequest, ctx: RouterContext): Promise<RouteOutcome> {
  const head = req.head;
  // One copy of the downstream's header lines for this request's edits (appended in place).
  let headers: RawHeader[] = head.headers.slice();
  // Absolute-form targets (apps using http_proxy) carry the authority in the target.
  let target = head.target;
  let authority = headerValue(headers, 'host') ?? '';
  if (target.charCodeAt(0) !== 47 /* '/' */) {
    const m = /^https?:\/\/([^/?#]*)([^#]*)/i.exec(target);
    if (m) {
      authority = m[1]!;
      target = m[2] || '/';
      headers = setHeader(headers, 'Host', authority);
    }
  }
  const out: RouteOutcome = {
    status: 0, flags: [], details: '', authority, path: target, originalPath: undefined,
    requestId: undefined, xForwardedFor: undefined, routeName: undefined, cluster: undefined,
    clusterName: undefined, host: undefined, upstreamServiceTimeMs: undefined, requestHeaders: headers, grpcStatus: undefined,
  };

  // The path is checked and normalized before anything reads it; the upstream gets the
  // normalized path, and the original bytes when normalization changed nothing.
  if (target.charCodeAt(0) !== 47 /* '/' */) return notOriginForm(req, out);
  const normal = normalizeTarget(target, ctx.pathNormalization);
  if (normal !== target) {
    if (typeof normal !== 'string') return pathNormalizationFailed(req, out, normal);
    target = normal;
    out.path = normal;
  }
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  const query = q < 0 ? '' : target.slice(q + 1);

  // Connection manager edits: request id, x-forwarded-for, x-forwarded-proto.
  let requestId = headerValue(headers, 'x-request-id');
  if (!requestId && ctx.generateRequestId) {
    requestId = newRequestId();
    headers.push({ name: 'x-request-id', value: requestId });
  }
  out.requestId = requestId;
  const appendXff = (ctx.inbound || ctx.useRemoteAddress) && !ctx.skipXffAppend;
  let xff = headerValue(headers, 'x-forwarded-for');
  if (appendXff) {
    xff = xff ? `${xff}, ${req.remoteAddress}` : req.remoteAddress;
    headers = setHeader(headers, 'x-forwarded-for', xff);
    headers = setHeader(headers, 'x-envoy-external-address', req.remoteAddress);
  }
  out.xForwardedFor = xff;
  if (!headerValue(headers, 'x-forwarded-proto')) headers.push({ name: 'x-forwarded-proto', value: 'http' });
  out.requestHeaders = headers;
  // wasm: WASM filters before the JWT filters or RBAC take the request from here (the wasm section below)
  if (ctx.wasm !== undefined && (ctx.wasm.authn !== undefined || ctx.wasm.authz !== undefined)) return wasmAuthn(req, ctx, out, headers, target, authority);
  // RequestAuthentication's JWT filters, then RBAC, run before routing, as Envoy's filter chain does.
  if (ctx.jwt !== undefined && ctx.jwt.length > 0) {
    return authenticate(ctx.jwt, headers, query, req.head.method).then((r) => {
      if (!r.ok) return localReply(req, out, r.status, [], r.details, r.body, [{ name: 'www-authenticate', value: `Bearer realm="http://${authority}${path}", error="invalid_token"` }]);
      out.requestHeaders = r.headers;
      return authorizeThenRoute(req, ctx, out, r.headers, target, path, query, authority, r.metadata);
    });
  }
  return authorizeThenRoute(req, ctx, out, headers, target, path, query, authority, undefined);
}

function authorizeThenRoute(
  req: DownstreamRequest, ctx: RouterContext, out: RouteOutcome, headers: RawHeader[], target: string, path: string, query: string,
  authority: string, metadata: Readonly<Record<string, Readonly<Record<string, unknown>>>> | undefined,
): Promise<RouteOutcome> {
  if (ctx.rbac !== undefined && ctx.rbac.length > 0) {
    const denied = rbacDenial(req, ctx, target, path, authority, headers, metadata);
    if (denied !== undefined) return localReply(req, out, 403, [RBAC_FLAG], denied, RBAC_DENIED_BODY, []);
  }
  // wasm: WASM filters after RBAC run before the route is chosen, on what they leave of the request
  if (ctx.wasm?.route !== undefined) return wasmStage(ctx.wasm.route, req, out, headers, target, authority, (r, h, t, a) => routeAfterAuthz(r, ctx, out, h, t, a));
  return routeAfterAuthz(req, ctx, out, headers, target, authority);
}

function routeAfterAuthz(req: DownstreamRequest, ctx: RouterContext, out: RouteOutcome, headers: RawHeader[], target: string, authority: string): Promise<RouteOutcome> {
  const head = req.head;
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  const query = q < 0 ? '' : target.slice(q + 1);
  // lanes: the request's lane rides in its lane header before the routes match it
  if (ctx.lanes !== undefined) {
    const l = laneRequest(ctx.lanes, req, headers);
    headers = l.headers;
    out.requestHeaders = headers;
    out.lane = l.decision;
  }

  const table = ctx.routes;
  const vh = table?.virtualHost(authority);
  let route: Route | undefined;
  if (vh) {
    for (const r of vh.routes) if (r.match(path, query, headers, head.method, authority)) { route = r; break; }
  }
  if (!table || !vh || !route) return localReply(req, out, 404, ['NR'], 'route_not_found', undefined, []);
  out.routeName = route.name || undefined;
  // Envoy's HCM: an Upgrade its config (the route's upgradeConfigs, else its own) does not enable is refused.
  if (req.upgrade !== undefined && !upgradeAllowed(ctx, route, req.upgrade)) return localReply(req, out, 403, [], 'upgrade_failed', undefined, []);
  // Local rate limits and the admission gate, once the route is known (the limits section below).
  if (ctx.localRateLimit !== undefined || ctx.admission !== undefined) return throughLimits(req, ctx, out, headers, table, vh, route, path, query);
  if (ctx.faultFilter && route.fault) return withFault(req, ctx, out, headers, table, vh, route, route.fault, path, query);
  return afterFaults(req, ctx, out, headers, table, vh, route, path, query);
}

/** Envoy's RBAC filters on this request: the response code details of a denial, or undefined. */
function rbacDenial(req: DownstreamRequest, ctx: RouterContext, target: string, path: string, authority: string, headers: readonly RawHeader[], metadata: Readonly<Record<string, Readonly<Record<string, unknown>>>> | undefined): string | undefined {
  const decision = evaluateRbac(ctx.rbac!, httpSubject({
    method: req.head.method, target, path, authority, scheme: 'http', headers,
    receivedXff: headerValue(req.head.headers, 'x-forwarded-for'),
    remoteAddress: req.remoteAddress, localAddress: req.localAddress, localPort: req.localPort,
    useRemoteAddress: ctx.useRemoteAddress, xffNumTrustedHops: ctx.xffNumTrustedHops ?? 0,
    // The peer certificate's identity, set by the mTLS listener when there is one.
    principal: req.peerPrincipal,
    metadata,
  }));
  return decision.allowed ? undefined : decision.details;
}

function upgradeAllowed(ctx: RouterContext, route: Route, type: string): boolean {
  const own = route.action.kind === 'route' ? route.action.upgrades?.get(type) : undefined;
  return own ?? ctx.upgradeTypes?.has(type) ?? false;
}

/**
 * A target neither origin-form nor absolute-form: Envoy's HTTP/1 codec rejects it (400,
 * `http1.invalid_url`) except `OPTIONS *`, which its connection manager answers 404 as a
 * non-relative path.
 */
function notOriginForm(req: DownstreamRequest, out: RouteOutcome): Promise<RouteOutcome> {
  if (out.path === '*' && req.head.method === 'OPTIONS') return localReply(req, out, 404, [], 'absolute_path_rejected', undefined, []);
  return localReply(req, out, 400, ['DPE'], 'http1.invalid_url', 'Bad Request', []);
}

/** Envoy's answers when normalization refuses a path (400) or redirects to its unescaped form (307). */
function pathNormalizationFailed(req: DownstreamRequest, out: RouteOutcome, r: PathRejected | PathRedirect): Promise<RouteOutcome> {
  // gRPC clients do not follow redirects: Envoy rejects instead.
  if (r.kind === 'reject' || isGrpcRequest(out.requestHeaders)) return localReply(req, out, 400, [], 'path_normalization_failed', undefined, []);
  out.path = r.location;
  return localReply(req, out, 307, [], 'path_normalization_failed', undefined, [{ name: 'location', value: r.location }]);
}

/** The fault filter (delay, then abort), ahead of the rest of the route. */
async function withFault(
  req: DownstreamRequest, ctx: RouterContext, out: RouteOutcome, headers: RawHeader[], table: RouteTable, vh: VirtualHost,
  route: Route, f: FaultPolicy, path: string, query: string,
): Promise<RouteOutcome> {
  if (f.delayMs > 0 && Math.random() < f.delayFraction) {
    out.flags.push('DI');
    await new Promise((r) => setTimeout(r, f.delayMs));
  }
  if (f.abortStatus > 0 && Math.random() < f.abortFraction) {
    if (f.abortGrpcStatus >= 0) return grpcReply(req, out, f.abortGrpcStatus, ['FI'], 'fault_filter_abort', 'fault filter abort');
    return localReply(req, out, f.abortStatus, ['FI'], 'fault_filter_abort', 'fault filter abort', responseOps(table, vh, route, undefined));
  }
  return afterFaults(req, ctx, out, headers, table, vh, route, path, query);
}

/** The route's action: a local answer (direct response, redirect), or a cluster upstream. */
function afterFaults(
  req: DownstreamRequest, ctx: RouterContext, out: RouteOutcome, headers: RawHeader[], table: RouteTable, vh: VirtualHost,
  route: Route, path: string, query: string,
): Promise<RouteOutcome> {
  const authority = out.authority;
  const target = out.path;
  const action = route.action;
  if (action.kind === 'direct') {
    // Istio's REGISTRY_ONLY catch-all answers 502 from a virtual host named block_all.
    const flags = vh.name === 'block_all' ? ['NR'] : [];
    return localReply(req, out, action.status, flags, 'direct_response', action.body, responseOps(table, vh, route, undefined), true);
  }
  if (action.kind === 'redirect') {
    const location = redirectLocation(action, authority, path, query, route.prefix);
    return localReply(req, out, action.status, [], 'via_upstream', undefined, [...responseOps(table, vh, route, undefined), { name: 'location', value: location }]);
  }

  // Cluster selection.
  let weighted: WeightedCluster | undefined;
  let clusterName = action.cluster;
  if (action.weighted) {
    let r = Math.floor(Math.random() * action.weighted.total);
    for (const c of action.weighted.clusters) {
      if (r < c.weight) { weighted = c; break; }
      r -= c.weight;
    }
    weighted ??= action.weighted.clusters[action.weighted.clusters.length - 1];
    clusterName = weighted!.name;
  } else if (action.clusterHeader) {
    clusterName = headerValue(headers, action.clusterHeader);
  }
  out.clusterName = clusterName;
  if (clusterName === BLACKHOLE_CLUSTER) return localReply(req, out, 502, ['NR'], 'route_to_blackhole', undefined, []);
  const cluster = clusterName ? ctx.clusters.get(clusterName) : undefined;
  if (!cluster) return localReply(req, out, 503, ['NC'], 'cluster_not_found', undefined, []);
  out.cluster = cluster;

  // Request header operations, most specific last (Envoy's default order), and rewrites.
  if (weighted?.requestHeaders || route.requestHeaders || vh.requestHeaders || table.requestHeaders) {
    const fmt = formatContext(req, headers);
    headers = applyHeaderOps(headers, weighted?.requestHeaders, fmt);
    headers = applyHeaderOps(headers, route.requestHeaders, fmt);
    headers = applyHeaderOps(headers, vh.requestHeaders, fmt);
    headers = applyHeaderOps(headers, table.requestHeaders, fmt);
  }
  let upstreamTarget = target;
  if (action.prefixRewrite !== undefined && route.prefix !== undefined) {
    upstreamTarget = action.prefixRewrite + target.slice(route.prefix.length);
  } else if (action.regexRewrite) {
    upstreamTarget = path.replace(new RegExp(action.regexRewrite.re.source, 'g'), action.regexRewrite.substitution) + target.slice(path.length);
  }
  if (upstreamTarget !== target) {
    out.originalPath = target;
    headers = setHeader(headers, 'x-envoy-original-path', target);
  }
  if (action.hostRewrite) headers = setHeader(headers, 'Host', action.hostRewrite);
  if (ctx.peerHeaders.length > 0 && cluster.service) headers = headers.concat(ctx.peerHeaders);

  const head = req.head;
  const upstreamHead: RequestHead = { method: head.method, target: upstreamTarget, version: head.version, headers };
  const retry = action.retry ?? vh.retry;
  const respOps = responseOps(table, vh, route, weighted);
  if (cluster.type === 'ORIGINAL_DST') {
    // Passthrough: the destination is settled once, before any attempt (a name resolves first).
    const dst = ctx.originalDst.destination(req, cluster, upstreamHead, ctx.inbound);
    if (dst instanceof Promise) return dst.then((d) => toOriginalDst(req, ctx, out, cluster, upstreamHead, action, retry, respOps, d));
    return toOriginalDst(req, ctx, out, cluster, upstreamHead, action, retry, respOps, dst);
  }
  return dispatch(req, ctx, out, cluster, upstreamHead, action, retry, respOps, undefined);
}

function toOriginalDst(
  req: DownstreamRequest, ctx: RouterContext, out: RouteOutcome, cluster: Cluster, head: RequestHead, action: RouteAction,
  retry: RetryPolicy | undefined, respOps: readonly HeaderOps[], dst: OriginalDestination,
): Promise<RouteOutcome> {
  if (dst.host === undefined) return localReply(req, out, dst.status, [dst.flag], dst.details, undefined, []);
  if (dst.marker) head.headers.push(dst.marker);
  return dispatch(req, ctx, out, cluster, head, action, retry, respOps, dst.host);
}

/** Takes the circuit breaker's request slot and starts the attempts (to `pinned` when given). */
function dispatch(
  req: DownstreamRequest, ctx: RouterContext, out: RouteOutcome, cluster: Cluster, head: RequestHead, action: RouteAction,
  retry: RetryPolicy | undefined, respOps: readonly HeaderOps[], pinned: Host | undefined,
): Promise<RouteOutcome> {
  if (!cluster.circuitBreaker.tryAcquireRequest()) {
    return localReply(req, out, 503, ['UO'], 'upstream_overflow', undefined, [OVERLOADED]);
  }
  return forward(new Forwarding(req, ctx, out, cluster, head, action, retry, respOps, pinned));
}

const NO_OPS: readonly HeaderOps[] = [];

function responseOps(table: RouteTable, vh: VirtualHost, route: Route, weighted: WeightedCluster | undefined): readonly HeaderOps[] {
  const w = weighted?.responseHeaders;
  if (!w && !route.responseHeaders && !vh.responseHeaders && !table.responseHeaders) return NO_OPS;
  const ops: HeaderOps[] = [];
  for (const o of [w, route.responseHeaders, vh.responseHeaders, table.responseHeaders]) if (o) ops.push(o);
  return ops;
}

/** What header values may refer to (%DOWNSTREAM_REMOTE_ADDRESS%, %REQ(x)%, …). */
function formatContext(req: DownstreamRequest, requestHeaders: readonly RawHeader[]): HeaderFormatContext {
  return {
    downstreamRemoteAddress: req.remoteAddress, downstreamRemotePort: req.remotePort,
    downstreamLocalAddress: req.localAddress, downstreamLocalPort: req.localPort,
    requestHeaders,
  };
}

function applyAll(headers: RawHeader[], ops: readonly (HeaderOps | RawHeader)[], fmt: HeaderFormatContext): RawHeader[] {
  let out = headers;
  for (const o of ops) out = 'name' in o ? [...out, o] : applyHeaderOps(out, o, fmt);
  return out;
}

/**
 * Answers locally (no upstream): Envoy's plain-text bodies for its own errors. A 400 closes
 * the connection after it, as Envoy's HTTP/1 connection manager does for any local 400.
 */
async function localReply(req: DownstreamRequest, out: RouteOutcome, status: number, flags: string[], details: string, body: string | undefined, extra: readonly (HeaderOps | RawHeader)[], direct = false): Promise<RouteOutcome> {
  // A gRPC client is answered in gRPC: the status mapped from HTTP (Envoy's httpToGrpcStatus),
  // trailers-only; a direct response or redirect is the route's own answer and stays HTTP.
  if (!direct && status >= 400 && isGrpcRequest(req.head.headers)) {
    return grpcReply(req, out, httpToGrpcStatus(status), flags, details, body ?? LOCAL_BODIES[details]);
  }
  out.status = status;
  out.flags.push(...flags);
  out.details = details;
  const text = body ?? (direct ? undefined : LOCAL_BODIES[details]);
  let headers: RawHeader[] = [];
  if (text !== undefined && text !== '') headers.push({ name: 'content-type', value: 'text/plain' });
  if (extra.length > 0) headers = applyAll(headers, extra, formatContext(req, req.head.headers));
  if (out.responseHeadersToAdd !== undefined) headers.push(...out.responseHeadersToAdd);
  if (out.lane !== undefined) headers = encodeLane(out.lane, headers, status, out.clusterName); // lanes
  headers.push({ name: 'date', value: new Date().toUTCString() }, { name: 'server', value: 'envoy' });
  await safeRespond(req, { status, reason: reasonPhrase(status), version: '1.1', headers }, text === undefined ? null : Buffer.from(text, 'latin1'), status === 400 ? CLOSE : undefined);
  return out;
}

/** A trailers-only gRPC answer made by the proxy: `:status 200`, `grpc-status`, `grpc-message`. */
async function grpcReply(req: DownstreamRequest, out: RouteOutcome, grpcStatus: number, flags: string[], details: string, message: string | undefined): Promise<RouteOutcome> {
  out.status = 200;
  out.grpcStatus = grpcStatus;
  out.flags.push(...flags);
  out.details = details;
  await safeRespond(req, { status: 200, reason: 'OK', version: '1.1', headers: grpcLocalReplyHeaders(grpcStatus, message) }, null);
  return out;
}

// The route timeout, or for a gRPC request on a route with maxGrpcTimeout its grpc-timeout
// (capped, less the offset), as Envoy's FilterUtility::finalTimeout.
function deadlineOf(action: RouteAction, headers: readonly RawHeader[]): number {
  let ms = action.timeoutMs;
  const max = action.maxGrpcTimeoutMs;
  if (max !== undefined) {
    const grpc = grpcTimeoutMs(headers);
    if (grpc !== undefined && isGrpcRequest(headers)) {
      ms = max > 0 && grpc > max ? max : grpc;
      if (action.grpcTimeoutOffsetMs > 0 && ms > action.grpcTimeoutOffsetMs) ms -= action.grpcTimeoutOffsetMs;
    }
  }
  return ms > 0 ? Date.now() + ms : Infinity;
}

const LOCAL_BODIES: Record<string, string> = {
  cluster_not_found: '',
  route_not_found: '',
  no_healthy_upstream: 'no healthy upstream',
  upstream_overflow: 'upstream connect error or disconnect/reset before headers. reset reason: overflow',
  upstream_connect_failure: 'upstream connect error or disconnect/reset before headers. reset reason: connection failure',
  upstream_connection_termination: 'upstream connect error or disconnect/reset before headers. reset reason: connection termination',
  upstream_reset: 'upstream connect error or disconnect/reset before headers. reset reason: remote reset',
  upstream_protocol_error: 'upstream connect error or disconnect/reset before headers. reset reason: protocol error',
  upstream_response_timeout: 'upstream request timeout',
  route_to_blackhole: '',
  no_original_destination: '',
  dns_resolution_failure: '',
  passthrough_loop_detected: '',
};

const CLOSE: RespondOptions = { close: true };

async function safeRespond(req: DownstreamRequest, head: ResponseHead, body: Buffer | AsyncIterable<Buffer> | null, opts?: RespondOptions): Promise<void> {
  if (req.responded) return;
  try {
    await req.respond(head, body, opts);
  } catch {
    // The downstream went away (DC); the outcome is logged by the caller.
  }
}

function redirectLocation(r: Extract<Route['action'], { kind: 'redirect' }>, authority: string, path: string, query: string, prefix: string | undefined): string {
  const scheme = r.scheme ?? 'http';
  let host = r.host ?? authority.replace(/:\d+$/, '');
  const origPort = /:(\d+)$/.exec(authority)?.[1];
  const port = r.port ?? (r.host || r.scheme ? undefined : origPort ? Number(origPort) : undefined);
  if (port !== undefined && !((scheme === 'http' && port === 80) || (scheme === 'https' && port === 443))) host += `:${port}`;
  let p = r.path ?? (r.prefixRewrite !== undefined && prefix !== undefined ? r.prefixRewrite + path.slice(prefix.length) : path);
  if (!r.stripQuery && query && !p.includes('?')) p += `?${query}`;
  return `${scheme}://${host}${p}`;
}

/**
 * The request's hash from the route's hash policies. A cookie policy with a TTL whose cookie
 * is absent generates one (from the downstream address, as Envoy does) and returns the
 * Set-Cookie value the response must carry.
 */
function requestHash(action: RouteAction, req: DownstreamRequest, headers: readonly RawHeader[], query: string): { hash: number | undefined; setCookie: string | undefined } {
  let hash: number | undefined;
  let setCookie: string | undefined;
  for (const hp of action.hashPolicies) {
    let key: string | undefined;
    if (hp.header) key = headerValue(headers, hp.header);
    else if (hp.cookie) {
      key = cookieValue(headers, hp.cookie.name);
      if (key === undefined && hp.cookie.ttlMs !== undefined) {
        key = hashString(`${req.remoteAddress}:${req.remotePort}:${Date.now()}`).toString(16).padStart(8, '0');
        setCookie = `${hp.cookie.name}="${key}"; Max-Age=${Math.floor(hp.cookie.ttlMs / 1000)}${hp.cookie.path ? `; Path=${hp.cookie.path}` : ''}; HttpOnly`;
      }
    } else if (hp.sourceIp) key = req.remoteAddress;
    else if (hp.queryParameter) key = new URLSearchParams(query).get(hp.queryParameter) ?? undefined;
    if (key === undefined) continue;
    const h = hashString(key.replace(/^"|"$/g, ''));
    hash = hash === undefined ? h : (((hash << 1) | (hash >>> 31)) ^ h) >>> 0;
    if (hp.terminal) break;
  }
  return { hash, setCookie };
}

function cookieValue(headers: readonly RawHeader[], name: string): string | undefined {
  for (const h of headers) {
    if (h.name.length !== 6 || h.name.toLowerCase() !== 'cookie') continue;
    for (const part of h.value.split(';')) {
      const eq = part.indexOf('=');
      if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
    }
  }
  return undefined;
}

const NO_HASH = { hash: undefined, setCookie: undefined };

type Failure = { kind: 'error'; err: UpstreamError } | { kind: 'status'; status: number };

// A response whose gRPC status the retry policy names (not an HTTP status).
const GRPC_RETRIABLE = -14;

function retriable(retry: RetryPolicy, f: Failure): boolean {
  if (f.kind === 'status') {
    const s = f.status;
    if (s === GRPC_RETRIABLE) return true;
    if (retry.on5xx && s >= 500) return true;
    if (retry.gatewayError && (s === 502 || s === 503 || s === 504)) return true;
    if (retry.retriableStatus && retry.statusCodes.has(s)) return true;
    if (retry.retriable4xx && s === 409) return true;
    return false;
  }
  const flag = f.err.flag;
  if (flag === 'UO' || flag === 'LR') return false;
  if (f.err.code === 'REFUSED_STREAM' && retry.refusedStream) return true;
  if (flag === 'UF') return retry.connectFailure || retry.on5xx || retry.gatewayError || retry.reset;
  if (flag === 'UT') return retry.on5xx || retry.gatewayError;
  return retry.reset || retry.on5xx || retry.gatewayError; // UC, UR, UPE
}

const ERROR_DETAILS: Record<string, [number, string]> = {
  UF: [503, 'upstream_connect_failure'],
  UC: [503, 'upstream_connection_termination'],
  UR: [503, 'upstream_reset'],
  UPE: [503, 'upstream_protocol_error'],
  UT: [504, 'upstream_response_timeout'],
  UO: [503, 'upstream_overflow'],
  LR: [503, 'upstream_reset'],
};

// Envoy's router marks a local reply caused by a circuit breaker overflow.
const OVERLOADED: RawHeader = { name: 'x-envoy-overloaded', value: 'true' };

/**
 * One request on its way upstream: its attempts, retry slots, hosts tried and last failure
 * (Envoy's timeout, retry, circuit-breaker and outlier semantics). The state of the attempt
 * loop lives here rather than in forward()'s frame, so that a request waiting on its upstream
 * holds one small object and a short suspended frame.
 */
class Forwarding {
  readonly req: DownstreamRequest;
  readonly ctx: RouterContext;
  readonly out: RouteOutcome;
  readonly cluster: Cluster;
  readonly head: RequestHead;
  readonly action: RouteAction;
  readonly retry: RetryPolicy | undefined;
  readonly respOps: readonly HeaderOps[];
  readonly body: ReplayableBody;
  readonly hash: number | undefined;
  readonly setCookie: string | undefined;
  readonly deadline: number;
  /** Hosts already tried, kept only when the retry policy excludes previous hosts. */
  readonly tried: Set<Host> | undefined;
  /** Priority levels already tried, kept only when retries go to other levels (previous_priorities). */
  readonly triedPriorities: Set<number> | undefined;
  readonly maxAttempts: number;
  /** ORIGINAL_DST: the one destination every attempt goes to. */
  readonly pinned: Host | undefined;
  lastFailure: Failure | undefined = undefined;
  retried = false;
  /** A retry slot taken for a retriable status, before its attempt starts. */
  haveRetrySlot = false;
  /** A retry slot taken for the attempt in flight, released when it ends. */
  slotHeld = false;
  host: Host | undefined = undefined;
  attemptStart = 0;

  constructor(
    req: DownstreamRequest, ctx: RouterContext, out: RouteOutcome, cluster: Cluster, head: RequestHead,
    action: RouteAction, retry: RetryPolicy | undefined, respOps: readonly HeaderOps[], pinned: Host | undefined,
  ) {
    this.req = req;
    this.ctx = ctx;
    this.out = out;
    this.cluster = cluster;
    this.head = head;
    this.action = action;
    this.retry = retry;
    this.respOps = respOps;
    this.body = new ReplayableBody(req.bodyLength === 0 ? null : req.body, ctx.retryBufferBytes);
    const { hash, setCookie } = action.hashPolicies.length > 0 ? requestHash(action, req, head.headers, head.target.split('?')[1] ?? '') : NO_HASH;
    this.hash = hash;
    this.setCookie = setCookie;
    this.deadline = deadlineOf(action, head.headers);
    this.tried = retry?.previousHosts ? new Set<Host>() : undefined;
    this.triedPriorities = retry?.previousPriorities ? new Set<number>() : undefined;
    this.maxAttempts = 1 + (retry ? retry.numRetries : 0);
    this.pinned = pinned;
  }

  /** Before attempt N > 0: a retry slot, then the backoff; false when no retry may be made. */
  async backOff(attempt: number): Promise<boolean> {
    const cb = this.cluster.circuitBreaker;
    if (!this.haveRetrySlot && (!this.body.replayable || !cb.tryAcquireRetry())) return false;
    this.haveRetrySlot = false;
    // The slot stays taken through the backoff and the retried attempt (Envoy's
    // max_retries bounds retries in flight).
    this.slotHeld = true;
    this.retried = true;
    const retry = this.retry!;
    const backoff = Math.min(retry.maxIntervalMs, retry.baseIntervalMs * 2 ** (attempt - 1));
    await new Promise((r) => setTimeout(r, Math.random() * backoff));
    return Date.now() < this.deadline && !this.req.signal.aborted;
  }

  /** Sends an attempt to the next host; undefined when no healthy host is left. */
  send(): Promise<{ head: ResponseHead; body: AsyncIterable<Buffer> }> | undefined {
    const { req, retry } = this;
    const host = this.pinned ?? this.cluster.pick({ hash: this.hash, exclude: this.tried, excludeAttempts: retry?.hostSelectionAttempts, excludePriorities: this.triedPriorities });
    if (!host) return undefined;
    this.tried?.add(host);
    this.triedPriorities?.add(host.priority);
    this.host = host;
    this.out.host = host;
    const now = Date.now();
    const remaining = this.deadline === Infinity ? 0 : Math.max(1, this.deadline - now);
    const perTry = retry && retry.perTryTimeoutMs > 0 ? retry.perTryTimeoutMs : 0;
    const timeoutMs = perTry > 0 && (remaining === 0 || perTry < remaining) ? perTry : remaining;
    this.attemptStart = now;
    host.active++;
    host.totalRequests++;
    // The downstream's own signal aborts the upstream exchange when the caller goes away.
    const signal = req.signal;
    const downstreamH2 = req.protocol === 'HTTP/2';
    const upgrade = req.upgrade !== undefined;
    return this.ctx.upstream.request(this.cluster, host, this.head, this.body, this.ctx.inbound || this.ctx.originalSource === true ? { timeoutMs, signal, sourceAddress: req.remoteAddress, downstreamH2, upgrade } : { timeoutMs, signal, downstreamH2, upgrade });
  }

  /** The attempt got no response; true to try again. */
  noResponse(e: unknown): boolean {
    this.attemptEnded();
    const failure = attemptFailed(this.cluster, this.host!, e);
    this.lastFailure = failure;
    const globalTimeout = failure.err.flag === 'UT' && Date.now() >= this.deadline;
    return !globalTimeout && this.retry !== undefined && retriable(this.retry, failure) && !this.req.signal.aborted;
  }

  /** The attempt was answered; true to discard this answer and try again. */
  answered(status: number, attempt: number, headers: readonly RawHeader[]): boolean {
    this.attemptEnded();
    const { cluster, retry } = this;
    const host = this.host!;
    host.active--;
    if (cluster.outlier) {
      cluster.outlier.report(host, status >= 500 ? (status === 502 || status === 503 || status === 504 ? 'gateway' : 'error5xx') : 'success');
    }
    if (status >= 500) host.totalErrors++;
    if (retry === undefined) return false;
    // gRPC: a status in the response headers (a trailers-only answer) is what retryOn's gRPC words look at
    const failure: Failure = retry.grpcStatuses.size > 0 && retry.grpcStatuses.has(grpcStatusOf(headers)) ? { kind: 'status', status: GRPC_RETRIABLE } : { kind: 'status', status };
    // Retry a retriable status only when a retry slot is free; otherwise this response
    // is the answer (Envoy passes the upstream's 5xx through on retry overflow).
    if (attempt + 1 < this.maxAttempts && retriable(retry, failure) && this.body.replayable && cluster.circuitBreaker.tryAcquireRetry()) {
      this.haveRetrySlot = true;
      this.lastFailure = failure;
      return true;
    }
    if (this.retried && retriable(retry, failure)) this.out.flags.push('URX');
    return false;
  }

  /** Writes the answer; a promise only while its body still streams. */
  deliver(res: { head: ResponseHead; body: AsyncIterable<Buffer> }): Promise<void> | undefined {
    try {
      const written = deliver(this.req, this.out, this.host!, res, this.respOps, this.setCookie, this.attemptStart);
      // a response that arrived whole is written whole at once: nothing to wait for
      if (this.req.complete) return undefined;
      return written.catch((e: unknown) => this.deliveryFailed(e));
    } catch (e) {
      this.deliveryFailed(e);
      return undefined;
    }
  }

  private deliveryFailed(e: unknown): void {
    if (e instanceof UpstreamError) this.out.flags.push(e.flag === 'UT' ? 'UT' : 'UC');
    else this.out.flags.push('DC');
  }

  // the attempt in flight has ended, answered or not
  private attemptEnded(): void {
    if (this.slotHeld) {
      this.cluster.circuitBreaker.releaseRetry();
      this.slotHeld = false;
    }
  }

  /** The local answer once every attempt failed (or none could be made). */
  failed(): Promise<RouteOutcome> {
    if (this.retried) this.out.flags.push('URX');
    return failed(this.req, this.out, this.lastFailure);
  }

  /** Gives back the circuit breaker's request slot and any retry slot still held. */
  release(): void {
    const cb = this.cluster.circuitBreaker;
    if (this.slotHeld) cb.releaseRetry();
    if (this.haveRetrySlot) cb.releaseRetry();
    cb.releaseRequest();
  }
}

/** The attempt loop; the circuit breaker's request slot is taken, and given back here. */
async function forward(f: Forwarding): Promise<RouteOutcome> {
  try {
    for (let attempt = 0; attempt < f.maxAttempts; attempt++) {
      if (attempt > 0 && !(await f.backOff(attempt))) break;
      const sent = f.send();
      if (sent === undefined) return await localReply(f.req, f.out, 503, ['UH'], 'no_healthy_upstream', undefined, []);
      let res: { head: ResponseHead; body: AsyncIterable<Buffer> };
      try {
        res = await sent;
      } catch (e) {
        if (f.noResponse(e)) continue;
        break;
      }
      if (f.answered(res.head.status, attempt, res.head.headers)) {
        // Discard this attempt's body (bounded by the pool's own limits) and try again.
        await discard(res.body);
        continue;
      }
      const writing = f.deliver(res);
      if (writing !== undefined) await writing;
      mirror(f.ctx, f.action, f.head, f.body);
      return f.out;
    }
    // Attempts exhausted or not retriable.
    return await f.failed();
  } finally {
    f.release();
  }
}

// The bookkeeping of an attempt that got no response; its failure for the retry policy.
function attemptFailed(cluster: Cluster, host: Host, e: unknown): { kind: 'error'; err: UpstreamError } {
  host.active--;
  host.totalErrors++;
  const err = e instanceof UpstreamError ? e : new UpstreamError('UC', (e as Error).message);
  if (err.flag !== 'UO' && err.flag !== 'LR') cluster.outlier?.report(host, 'localOriginFailure');
  return { kind: 'error', err };
}

async function discard(body: AsyncIterable<Buffer>): Promise<void> {
  for await (const _ of body) { /* drain */ }
}

/** Answers with the upstream's response, the route's response header operations applied. */
function deliver(
  req: DownstreamRequest, out: RouteOutcome, host: Host, res: { head: ResponseHead; body: AsyncIterable<Buffer> },
  respOps: readonly HeaderOps[], setCookie: string | undefined, attemptStart: number,
): Promise<void> {
  const status = res.head.status;
  out.upstreamServiceTimeMs = Date.now() - attemptStart;
  // the response's own header list (parsed for this exchange alone) takes the edits
  let headers = res.head.headers;
  if (respOps.length > 0) headers = applyAll(headers, respOps, { ...formatContext(req, out.requestHeaders), upstreamHost: host.key });
  if (hasHeader(headers, 'x-envoy-upstream-service-time')) headers = withoutHeader(headers, 'x-envoy-upstream-service-time');
  headers.push({ name: 'x-envoy-upstream-service-time', value: String(out.upstreamServiceTimeMs) });
  if (out.responseHeadersToAdd !== undefined) headers.push(...out.responseHeadersToAdd);
  if (out.lane !== undefined) headers = encodeLane(out.lane, headers, status, out.clusterName); // lanes
  if (setCookie) headers.push({ name: 'set-cookie', value: setCookie });
  if (req.protocol === 'HTTP/2') {
    const g = grpcStatusOf(headers);
    if (g >= 0) out.grpcStatus = g;
  }
  out.status = status;
  out.details = 'via_upstream';
  return req.respond({ status, reason: res.head.reason, version: res.head.version, headers }, res.body);
}

/** The local answer once every attempt failed (or none could be made). */
function failed(req: DownstreamRequest, out: RouteOutcome, lastFailure: Failure | undefined): Promise<RouteOutcome> {
  if (!lastFailure || lastFailure.kind === 'status') return localReply(req, out, 503, ['UH'], 'no_healthy_upstream', undefined, []);
  const flag = lastFailure.err.flag;
  if (req.signal.aborted) {
    out.status = 0;
    out.flags.push('DC');
    out.details = 'downstream_remote_disconnect';
    return Promise.resolve(out);
  }
  const [status, details] = ERROR_DETAILS[flag] ?? [503, 'upstream_reset'];
  return localReply(req, out, status, [flag], details, undefined, flag === 'UO' ? [OVERLOADED] : []);
}

/** Fire-and-forget shadow copies (Host suffixed with -shadow, as Envoy does). */
function mirror(ctx: RouterContext, action: RouteAction, head: RequestHead, body: ReplayableBody): void {
  if (action.mirrors.length === 0 || !body.replayable || !body.complete) return;
  for (const m of action.mirrors) {
    if (m.fraction < 1 && Math.random() >= m.fraction) continue;
    const cluster = ctx.clusters.get(m.cluster);
    const host = cluster?.pick({});
    if (!cluster || !host) continue;
    const authority = headerValue(head.headers, 'host') ?? '';
    const shadowHost = authority.replace(/^([^:]*)/, '$1-shadow');
    const shadow: RequestHead = { ...head, headers: setHeader(head.headers, 'Host', shadowHost) };
    const ac = new AbortController();
    ctx.upstream.request(cluster, host, shadow, body, { timeoutMs: 0, signal: ac.signal }).then(
      async (r) => { for await (const _ of r.body) { /* discard */ } },
      () => { /* shadow failures are never the caller's problem */ },
    );
  }
}

// ---------------------------------------------------------------- limits
// Envoy's local rate limit (429, RL) and the adaptive-limits admission gate (503, UO), in that
// order once the route is known: a request the token bucket refuses takes no concurrency slot.
// An admitted request gives its slot back when its answer is written.

function throughLimits(
  req: DownstreamRequest, ctx: RouterContext, out: RouteOutcome, headers: RawHeader[], table: RouteTable, vh: VirtualHost,
  route: Route, path: string, query: string,
): Promise<RouteOutcome> {
  let h = headers;
  const rl = ctx.localRateLimit;
  if (rl !== undefined) {
    const v = rl.limits.check(rl.filters, routeLimits(table, route), {
      method: req.head.method, path, query, authority: out.authority, headers: h,
      remoteAddress: remoteAddressOf(req.remoteAddress, headerValue(req.head.headers, 'x-forwarded-for'), ctx.useRemoteAddress, ctx.xffNumTrustedHops ?? 0),
      principal: req.peerPrincipal, routeCluster: route.action.kind === 'route' ? route.action.cluster : undefined,
      localCluster: rl.limits.localCluster, connection: `${req.remoteAddress}:${req.remotePort}`,
    });
    if (v !== undefined) {
      if (v.limited) return rateLimited(req, out, v);
      if (v.responseHeaders.length > 0) out.responseHeadersToAdd = [...v.responseHeaders];
      if (v.requestHeaders.length > 0) {
        const fmt = formatContext(req, h);
        for (const ops of v.requestHeaders) h = applyHeaderOps(h, ops, fmt);
        out.requestHeaders = h;
      }
    }
  }
  const gate = ctx.admission;
  if (gate === undefined) return pastLimits(req, ctx, out, h, table, vh, route, path, query);
  const a = gate.admit(gate.tierOf(headerValue(h, gate.config.tierHeader)));
  if (a.kind === 'admitted') return admitted(gate, a.ticket, req, ctx, out, h, table, vh, route, path, query);
  if (a.kind === 'rejected') return overloaded(req, out, gate);
  return a.settled.then((r) => {
    if (r.kind === 'rejected') return overloaded(req, out, gate);
    if (req.signal.aborted) {
      // the caller left while it waited
      gate.leave(r.ticket, 0);
      out.flags.push('DC');
      out.details = 'downstream_remote_disconnect';
      return out;
    }
    return admitted(gate, r.ticket, req, ctx, out, h, table, vh, route, path, query);
  });
}

function pastLimits(
  req: DownstreamRequest, ctx: RouterContext, out: RouteOutcome, headers: RawHeader[], table: RouteTable, vh: VirtualHost,
  route: Route, path: string, query: string,
): Promise<RouteOutcome> {
  if (ctx.faultFilter && route.fault) return withFault(req, ctx, out, headers, table, vh, route, route.fault, path, query);
  return afterFaults(req, ctx, out, headers, table, vh, route, path, query);
}

function admitted(
  gate: AdmissionGate, ticket: AdmissionTicket, req: DownstreamRequest, ctx: RouterContext, out: RouteOutcome, headers: RawHeader[],
  table: RouteTable, vh: VirtualHost, route: Route, path: string, query: string,
): Promise<RouteOutcome> {
  let p: Promise<RouteOutcome>;
  try {
    p = pastLimits(req, ctx, out, headers, table, vh, route, path, query);
  } catch (err) {
    gate.leave(ticket, 0);
    throw err;
  }
  return p.then((o) => { gate.leave(ticket, o.status); return o; }, (err: unknown) => { gate.leave(ticket, 0); throw err; });
}

/** Envoy's local rate limit answer: `local_rate_limited`, flag RL, x-envoy-ratelimited. */
function rateLimited(req: DownstreamRequest, out: RouteOutcome, v: Extract<RateLimitVerdict, { limited: true }>): Promise<RouteOutcome> {
  if (v.grpcStatus !== undefined && isGrpcRequest(req.head.headers)) return grpcReply(req, out, v.grpcStatus, ['RL'], 'local_rate_limited', 'local_rate_limited');
  return localReply(req, out, v.status, ['RL'], 'local_rate_limited', 'local_rate_limited', v.headerOps === undefined ? v.responseHeaders : [...v.responseHeaders, v.headerOps]);
}

/** The admission gate's refusal: its status and body, flag UO, x-envoy-overloaded (callers do not retry it). */
function overloaded(req: DownstreamRequest, out: RouteOutcome, gate: AdmissionGate): Promise<RouteOutcome> {
  const c = gate.config;
  return localReply(req, out, c.rejectStatus, [ADMISSION_FLAG], ADMISSION_DETAILS, c.rejectBody, [OVERLOADED]);
}

// ---------------------------------------------------------------- wasm
// WASM filters (src/proxy/filters/wasm) where the connection manager lists them: before the JWT
// filters (Istio's AUTHN phase), between JWT and RBAC (AUTHZ), after RBAC (the 'route' point
// above). Each point hands the request on as its filters left it: a wrapped request whose body
// and answer go through them.

function wasmAuthn(req: DownstreamRequest, ctx: RouterContext, out: RouteOutcome, headers: RawHeader[], target: string, authority: string): Promise<RouteOutcome> {
  const chains = ctx.wasm!;
  const afterAuthn = (r: DownstreamRequest, h: RawHeader[], t: string, a: string): Promise<RouteOutcome> => {
    const q = t.indexOf('?');
    const path = q < 0 ? t : t.slice(0, q);
    const authz = (r2: DownstreamRequest, h2: RawHeader[], metadata: Readonly<Record<string, Readonly<Record<string, unknown>>>> | undefined): Promise<RouteOutcome> => (chains.authz === undefined
      ? authorizeThenRoute(r2, ctx, out, h2, t, path, q < 0 ? '' : t.slice(q + 1), a, metadata)
      : wasmStage(chains.authz, r2, out, h2, t, a, (r3, h3, t3, a3) => {
        const q3 = t3.indexOf('?');
        return authorizeThenRoute(r3, ctx, out, h3, t3, q3 < 0 ? t3 : t3.slice(0, q3), q3 < 0 ? '' : t3.slice(q3 + 1), a3, metadata);
      }));
    if (ctx.jwt === undefined || ctx.jwt.length === 0) return authz(r, h, undefined);
    return authenticate(ctx.jwt, h, q < 0 ? '' : t.slice(q + 1), r.head.method).then((x) => {
      if (!x.ok) return localReply(r, out, x.status, [], x.details, x.body, [{ name: 'www-authenticate', value: `Bearer realm="http://${a}${path}", error="invalid_token"` }]);
      out.requestHeaders = x.headers;
      return authz(r, x.headers, x.metadata);
    });
  };
  if (chains.authn === undefined) return afterAuthn(req, headers, target, authority);
  return wasmStage(chains.authn, req, out, headers, target, authority, afterAuthn);
}

/** Runs one point's WASM filters, then `next` on the request they leave (or answers for them). */
function wasmStage(
  chain: WasmChain, req: DownstreamRequest, out: RouteOutcome, headers: RawHeader[], target: string, authority: string,
  next: (req: DownstreamRequest, headers: RawHeader[], target: string, authority: string) => Promise<RouteOutcome>,
): Promise<RouteOutcome> {
  return chain.run(req, { method: req.head.method, target, authority, scheme: 'http', headers }).then((r) => {
    if (r.kind === 'reply') {
      const x = r.reply;
      return localReply(r.req, out, x.status, x.flags, x.details, x.body ?? '', x.headers);
    }
    const v = r.view;
    out.requestHeaders = v.headers;
    out.authority = v.authority;
    out.path = v.target;
    return next(r.req, v.headers, v.target, v.authority);
  });
}
