// A compiled Listener: address, filter chains with their matches, and the network filter
// each chain ends in (HTTP connection manager with RDS or inline routes, or tcp_proxy),
// with access logs and Istio stats config. Unsupported essentials fail with the field.
import { isIP } from 'node:net';
import type { ProtoJson } from '../../envoy/index.ts';
import { ConfigError, durationMs } from '../config/fields.ts';
import { RouteTable } from '../router/route-table.ts';
import { ESCAPED_SLASHES_ACTIONS } from '../router/path-normalize.ts';
import type { EscapedSlashesAction, PathNormalization } from '../router/path-normalize.ts';
import { compileAccessLogs } from '../telemetry/access-log.ts';
import type { AccessLogSpec } from '../telemetry/access-log.ts';
import { compileStatsConfig } from '../telemetry/stats-config.ts';
import { describeFilter, filterIdentity, httpFilterKind, networkFilterKind } from './filter-support.ts';
import type { FilterIdentity } from './filter-support.ts';
import type { StatsConfig } from '../telemetry/stats-config.ts';
import { compileDownstreamTls } from '../tls/transport-socket.ts';
import type { DownstreamTlsSpec } from '../tls/transport-socket.ts';
import { compileRbac } from '../filters/rbac/index.ts';
import type { RbacFilter } from '../filters/rbac/index.ts';
import { compileJwtAuthn } from '../filters/jwt/index.ts';
import type { JwtFilter } from '../filters/jwt/index.ts';
import { compileLocalRateLimit, compileRouteLimits } from '../filters/local-ratelimit/index.ts';
import type { LocalRateLimitFilter } from '../filters/local-ratelimit/index.ts';
import { compileAdmission } from '../filters/admission/index.ts';
import type { AdmissionConfig } from '../filters/admission/index.ts';
import { compileLanes } from '../filters/lanes/index.ts';
import type { LaneFilter } from '../filters/lanes/index.ts';
import { compileWasmFilter } from '../filters/wasm/index.ts';
import type { WasmFilterConfig } from '../filters/wasm/index.ts';

export type TrafficDirection = 'INBOUND' | 'OUTBOUND' | 'UNSPECIFIED';

export interface HttpConnectionManagerSpec {
  kind: 'http';
  statPrefix: string;
  /** RDS route configuration name, or an inline table. */
  rdsName: string | undefined;
  inlineRoutes: RouteTable | undefined;
  /** Envoy's scoped routes (inline scopes): the route configuration chosen per request by a header's value. */
  scopedRoutes?: ScopedRoutesSpec | undefined;
  accessLogs: AccessLogSpec[];
  useRemoteAddress: boolean;
  skipXffAppend: boolean;
  /** `normalizePath`, `mergeSlashes`, `pathWithEscapedSlashesAction`. */
  pathNormalization: PathNormalization;
  generateRequestId: boolean;
  preserveExternalRequestId: boolean;
  /** Istio's `istio.stats` filter config, when present; undefined disables Istio metrics. */
  stats: StatsConfig | undefined;
  /** `envoy.filters.http.fault` is in the chain (per-route faults apply). */
  faultFilter: boolean;
  /** `envoy.filters.http.rbac` filters in chain order (empty: none). */
  rbac: readonly RbacFilter[];
  /** `xffNumTrustedHops`: how the client address (RBAC `remoteIp`) is read from x-forwarded-for. */
  xffNumTrustedHops: number;
  /** `envoy.filters.http.jwt_authn` filters (with `istio_authn` after them: request.auth metadata). */
  jwt: readonly JwtFilter[];
  /** HTTP filters marked `is_optional` that this proxy does not implement, skipped. */
  skippedFilters: readonly SkippedFilter[];
  /** `envoy.filters.http.local_ratelimit` filters in chain order (absent: none). */
  localRateLimits?: readonly LocalRateLimitFilter[];
  /** The adaptive-limits admission gate (`sextant.filters.http.admission`), when in the chain. */
  admission?: AdmissionConfig | undefined;
  /** The lanes filter (`sextant.filters.http.lanes`), when in the chain. */
  lanes?: LaneFilter | undefined;
  /** `envoy.filters.http.wasm` filters in chain order, each placed relative to JWT and RBAC (filters/wasm); absent: none. */
  wasm?: readonly WasmFilterConfig[];
  streamIdleTimeoutMs: number;
  requestTimeoutMs: number;
  maxRequestsPerConnection: number;
  serverName: string | undefined;
  /** `codecType`: AUTO (the default) serves HTTP/1 and, on the preface, HTTP/2 on one port. */
  codecType: 'AUTO' | 'HTTP1' | 'HTTP2';
  /** `upgradeConfigs` enabled on this connection manager, lower-cased (`websocket`). */
  upgradeTypes: ReadonlySet<string>;
}

/** `scoped_routes` with `scoped_route_configurations_list`: the key is the header's value (or one element of it). */
export interface ScopedRoutesSpec {
  header: string;
  /** Splits the value into elements; '' takes the whole value. */
  separator: string;
  index: number;
  /** Scope key → RDS route configuration name. */
  byKey: ReadonlyMap<string, string>;
}

/** An optional filter left out of the chain, and where it was (`Listener l.filterChains[0]…`). */
export interface SkippedFilter extends FilterIdentity {
  at: string;
}

export interface TcpProxySpec {
  kind: 'tcp';
  statPrefix: string;
  cluster: string | undefined;
  weighted: { name: string; weight: number }[] | undefined;
  idleTimeoutMs: number;
  accessLogs: AccessLogSpec[];
  stats: StatsConfig | undefined;
  /** `envoy.filters.network.rbac` filters before tcp_proxy, in order (empty: none). */
  rbac: readonly RbacFilter[];
}

export interface PrefixRange {
  address: string;
  prefixLen: number;
}

export interface FilterChainSpec {
  name: string;
  destinationPort: number | undefined;
  prefixRanges: PrefixRange[];
  sourcePrefixRanges: PrefixRange[];
  transportProtocol: string | undefined;
  applicationProtocols: string[];
  /** SNI names: such a chain only matches TLS connections, which this proxy does not inspect. */
  serverNames: string[];
  /** The chain's TLS transport socket (Istio's mesh TLS, src/proxy/tls), or undefined for plaintext. */
  tls: DownstreamTlsSpec | undefined;
  network: HttpConnectionManagerSpec | TcpProxySpec;
}

export interface ListenerSpec {
  name: string;
  address: string;
  port: number;
  bindToPort: boolean;
  useOriginalDst: boolean;
  direction: TrafficDirection;
  filterChains: FilterChainSpec[];
  defaultChain: FilterChainSpec | undefined;
  /** Envoy's original_src listener filter: upstream connections leave from the downstream's address (and, here, the caller's identity passes through). */
  originalSource?: boolean;
  source: ProtoJson;
  sourceKey: string;
}

export function compileListener(json: ProtoJson, at: string): ListenerSpec {
  const name = json['name'];
  if (typeof name !== 'string' || name === '') throw new ConfigError(`${at}.name: a listener needs a name`);
  const sa = (json['address'] as ProtoJson | undefined)?.['socketAddress'] as ProtoJson | undefined;
  if (!sa) throw new ConfigError(`${at}.address.socketAddress: required (pipes and internal listeners are not supported)`);
  const address = String(sa['address'] ?? '');
  const port = Number(sa['portValue'] ?? 0);
  if (isIP(address) === 0) throw new ConfigError(`${at}.address.socketAddress.address: ${JSON.stringify(address)} is not an IP address`);
  if (!(port >= 0 && port < 65536)) throw new ConfigError(`${at}.address.socketAddress.portValue: ${port} is not a port`);
  const bind = json['bindToPort'];
  const deprecatedV1 = (json['deprecatedV1'] as ProtoJson | undefined)?.['bindToPort'];
  const chains = ((json['filterChains'] as ProtoJson[] | undefined) ?? []).map((c, i) => compileChain(c, `${at}.filterChains[${i}]`, `${name}/${String(c['name'] ?? '') || `#${i}`}`));
  const def = json['defaultFilterChain'] ? compileChain(json['defaultFilterChain'] as ProtoJson, `${at}.defaultFilterChain`, `${name}/${String((json['defaultFilterChain'] as ProtoJson)['name'] ?? '') || 'default'}`) : undefined;
  if (chains.length === 0 && !def) throw new ConfigError(`${at}.filterChains: a listener needs at least one filter chain`);
  return {
    name,
    address,
    port,
    bindToPort: (bind ?? deprecatedV1) !== false,
    useOriginalDst: json['useOriginalDst'] === true,
    direction: ((json['trafficDirection'] as string | undefined) ?? 'UNSPECIFIED') as TrafficDirection,
    filterChains: chains,
    defaultChain: def,
    originalSource: compileListenerFilters(json['listenerFilters'], `${at}.listenerFilters`),
    source: json,
    sourceKey: JSON.stringify(json),
  };
}

const ORIGINAL_SRC_TYPE = 'type.googleapis.com/envoy.extensions.filters.listener.original_src.v3.OriginalSrc';

/** Whether the listener filters include original_src (its `mark` is for TPROXY routing, which this proxy does not need). */
function compileListenerFilters(v: unknown, at: string): boolean {
  let originalSource = false;
  ((v as ProtoJson[] | undefined) ?? []).forEach((f, i) => {
    const type = String((f['typedConfig'] as ProtoJson | undefined)?.['@type'] ?? '');
    if (type !== ORIGINAL_SRC_TYPE && f['name'] !== 'envoy.filters.listener.original_src') return;
    const cfg = (f['typedConfig'] ?? {}) as ProtoJson;
    if (cfg['bindPort'] === true) throw new ConfigError(`${at}[${i}].typedConfig.bindPort: binding the downstream's port is not supported by this proxy`);
    originalSource = true;
  });
  return originalSource;
}

function prefixRanges(v: unknown, at: string): PrefixRange[] {
  return ((v as ProtoJson[] | undefined) ?? []).map((r, i) => {
    const address = String(r['addressPrefix'] ?? '');
    if (isIP(address) === 0) throw new ConfigError(`${at}[${i}].addressPrefix: ${JSON.stringify(address)} is not an IP address`);
    const prefixLen = r['prefixLen'] !== undefined ? Number(r['prefixLen']) : isIP(address) === 4 ? 32 : 128;
    return { address, prefixLen };
  });
}

/** `chainId` (listener/chain name) names what state outlives an update: local rate limit buckets. */
function compileChain(c: ProtoJson, at: string, chainId: string): FilterChainSpec {
  const m = (c['filterChainMatch'] ?? {}) as ProtoJson;
  const filters = (c['filters'] as ProtoJson[] | undefined) ?? [];
  let network: FilterChainSpec['network'] | undefined;
  let tcpStats: StatsConfig | undefined;
  const tcpRbac: RbacFilter[] = [];
  filters.forEach((f, i) => {
    const tc = f['typedConfig'] as ProtoJson | undefined;
    const where = `${at}.filters[${i}]`;
    const kind = networkFilterKind(f);
    if (kind === 'http_connection_manager') network = compileHcm(tc!, `${where}.typedConfig`, chainId);
    else if (kind === 'tcp_proxy') network = compileTcpProxy(tc!, `${where}.typedConfig`);
    // Istio's TCP metrics config is a network filter of the same name before tcp_proxy.
    else if (kind === 'stats') tcpStats = compileStatsConfig(tc, `${where}.typedConfig`);
    else if (kind === 'rbac') tcpRbac.push(compileRbac(tc!, `${where}.typedConfig`, false));
    // Envoy refuses a network filter it has no implementation of (they cannot be optional).
    else throw new ConfigError(`${where}: ${describeFilter('network', filterIdentity(f))} is not supported by this proxy`);
  });
  if (network && network.kind === 'tcp' && tcpStats) network = { ...network, stats: tcpStats };
  if (network && network.kind === 'tcp' && tcpRbac.length > 0) network = { ...network, rbac: tcpRbac };
  if (!network) throw new ConfigError(`${at}.filters: needs a terminal http_connection_manager or tcp_proxy filter`);
  return {
    name: String(c['name'] ?? ''),
    destinationPort: m['destinationPort'] !== undefined ? Number(m['destinationPort']) : undefined,
    prefixRanges: prefixRanges(m['prefixRanges'], `${at}.filterChainMatch.prefixRanges`),
    sourcePrefixRanges: prefixRanges(m['sourcePrefixRanges'], `${at}.filterChainMatch.sourcePrefixRanges`),
    transportProtocol: m['transportProtocol'] as string | undefined,
    applicationProtocols: (m['applicationProtocols'] as string[] | undefined) ?? [],
    serverNames: (m['serverNames'] as string[] | undefined) ?? [],
    tls: compileDownstreamTls(c['transportSocket'] as ProtoJson | undefined, `${at}.transportSocket`),
    network,
  };
}

function compileHcm(h: ProtoJson, at: string, chainId: string): HttpConnectionManagerSpec {
  const rds = h['rds'] as ProtoJson | undefined;
  const rc = h['routeConfig'] as ProtoJson | undefined;
  const scoped = h['scopedRoutes'] as ProtoJson | undefined;
  if (!rds && !rc && !scoped) throw new ConfigError(`${at}: needs rds, routeConfig or scopedRoutes`);
  const scopedRoutes = scoped ? compileScopedRoutes(scoped, `${at}.scopedRoutes`) : undefined;
  const rdsName = rds ? String(rds['routeConfigName'] ?? '') : undefined;
  if (rds && !rdsName) throw new ConfigError(`${at}.rds.routeConfigName: required`);
  const httpFilters = (h['httpFilters'] as ProtoJson[] | undefined) ?? [];
  let stats: StatsConfig | undefined;
  let faultFilter = false;
  const rbac: RbacFilter[] = [];
  const jwt: JwtFilter[] = [];
  const skippedFilters: SkippedFilter[] = [];
  const localRateLimits: LocalRateLimitFilter[] = [];
  let admission: AdmissionConfig | undefined;
  let lanes: LaneFilter | undefined;
  const wasm: WasmFilterConfig[] = [];
  let running = 0;
  let router = false;
  httpFilters.forEach((f, i) => {
    const where = `${at}.httpFilters[${i}]`;
    const id = filterIdentity(f);
    const kind = httpFilterKind(f, id);
    if (kind === undefined) {
      // As Envoy: a filter this proxy lacks is refused, unless the config says it may be left out.
      if (f['isOptional'] === true) {
        skippedFilters.push({ ...id, at: where });
        return;
      }
      throw new ConfigError(`${where}: ${describeFilter('HTTP', id)} is not supported by this proxy; set is_optional: true to run without it`);
    }
    if (router) throw new ConfigError(`${where}: ${describeFilter('HTTP', id)} comes after the router, which must be the last HTTP filter`);
    running++;
    if (kind === 'router') router = true;
    else if (kind === 'stats') stats = compileStatsConfig(f['typedConfig'] as ProtoJson | undefined, `${where}.typedConfig`);
    else if (kind === 'fault') faultFilter = true;
    else if (kind === 'rbac') rbac.push(compileRbac(f['typedConfig'] as ProtoJson, `${where}.typedConfig`, true));
    else if (kind === 'jwt_authn') jwt.push(compileJwtAuthn(f['typedConfig'] as ProtoJson, `${where}.typedConfig`));
    // istio_authn turns the payloads the JWT filters before it verified into request.auth metadata.
    else if (kind === 'istio_authn') for (let j = 0; j < jwt.length; j++) jwt[j] = { ...jwt[j]!, istioAuthn: true };
    // local rate limits: buckets are named by listener, chain and filter, so an update keeps their balances
    else if (kind === 'local_ratelimit') localRateLimits.push({ name: id.name, config: compileLocalRateLimit((f['typedConfig'] ?? {}) as ProtoJson, `${where}.typedConfig`, `${chainId}/${id.name}`, false) });
    else if (kind === 'admission') {
      if (admission !== undefined) throw new ConfigError(`${where}: only one admission filter per connection manager`);
      admission = compileAdmission((f['typedConfig'] ?? {}) as ProtoJson, `${where}.typedConfig`);
    } else if (kind === 'lanes') {
      if (lanes !== undefined) throw new ConfigError(`${where}: only one lanes filter per connection manager`);
      lanes = compileLanes(f['typedConfig'] as ProtoJson | undefined, `${where}.typedConfig`);
    }
    // wasm: runs before the JWT filters, before RBAC, or before routing, by where it stands
    else if (kind === 'wasm') wasm.push(compileWasmFilter(f, where, rbac.length > 0 ? 'route' : jwt.length > 0 ? 'authz' : 'authn'));
  });
  // An empty chain is the router alone (Envoy's default); any other chain ends in it.
  if (running > 0 && !router) throw new ConfigError(`${at}.httpFilters: the last HTTP filter must be the router (envoy.filters.http.router)`);
  const common = (h['commonHttpProtocolOptions'] ?? {}) as ProtoJson;
  const codecType = (h['codecType'] as string | undefined) ?? 'AUTO';
  if (codecType !== 'AUTO' && codecType !== 'HTTP1' && codecType !== 'HTTP2') throw new ConfigError(`${at}.codecType: ${codecType} is not supported by this proxy (AUTO, HTTP1, HTTP2)`);
  const upgradeTypes = new Set<string>();
  ((h['upgradeConfigs'] as ProtoJson[] | undefined) ?? []).forEach((u, i) => {
    const type = String(u['upgradeType'] ?? '').toLowerCase();
    if (type === '') throw new ConfigError(`${at}.upgradeConfigs[${i}].upgradeType: required`);
    if (type === 'connect') return; // CONNECT tunnels are not served by this proxy
    if ((u['enabled'] as { value?: boolean } | boolean | undefined) !== false && (u['enabled'] as { value?: boolean } | undefined)?.value !== false) upgradeTypes.add(type);
  });
  const inlineRoutes = rc ? new RouteTable({ name: 'inline', ...rc }, `${at}.routeConfig`) : undefined;
  // per-route local rate limits and rate_limits actions of inline routes, checked now (NACK)
  if (inlineRoutes !== undefined) compileRouteLimits(inlineRoutes, `${at}.routeConfig`);
  return {
    kind: 'http',
    statPrefix: String(h['statPrefix'] ?? ''),
    rdsName,
    inlineRoutes,
    ...(scopedRoutes !== undefined ? { scopedRoutes } : {}),
    accessLogs: compileAccessLogs(h['accessLog'], `${at}.accessLog`),
    useRemoteAddress: h['useRemoteAddress'] === true,
    skipXffAppend: h['skipXffAppend'] === true,
    pathNormalization: compilePathNormalization(h, at),
    generateRequestId: h['generateRequestId'] !== false,
    preserveExternalRequestId: h['preserveExternalRequestId'] === true,
    stats,
    faultFilter,
    rbac,
    jwt,
    xffNumTrustedHops: Number(h['xffNumTrustedHops'] ?? 0),
    skippedFilters,
    ...(localRateLimits.length > 0 ? { localRateLimits } : {}),
    ...(admission !== undefined ? { admission } : {}),
    ...(lanes !== undefined ? { lanes } : {}),
    ...(wasm.length > 0 ? { wasm } : {}),
    streamIdleTimeoutMs: durationMs(h['streamIdleTimeout'], `${at}.streamIdleTimeout`) ?? 300_000,
    requestTimeoutMs: durationMs(h['requestTimeout'], `${at}.requestTimeout`) ?? 0,
    maxRequestsPerConnection: Number(common['maxRequestsPerConnection'] ?? 0),
    serverName: h['serverName'] as string | undefined,
    codecType,
    upgradeTypes,
  };
}

/**
 * Envoy's ScopedRoutes with the scopes listed inline: one fragment from a header (its whole
 * value, or one element of it); every scope names an RDS route configuration. What this proxy
 * does not implement (scoped RDS, several fragments, key-value elements, inline route
 * configurations in a scope) is refused with the field.
 */
function compileScopedRoutes(s: ProtoJson, at: string): ScopedRoutesSpec {
  if (s['scopedRds'] !== undefined) throw new ConfigError(`${at}.scopedRds: scoped RDS is not supported by this proxy; list the scopes in scopedRouteConfigurationsList`);
  const fragments = ((s['scopeKeyBuilder'] as ProtoJson | undefined)?.['fragments'] as ProtoJson[] | undefined) ?? [];
  if (fragments.length !== 1) throw new ConfigError(`${at}.scopeKeyBuilder.fragments: exactly one fragment is supported (got ${fragments.length})`);
  const x = fragments[0]!['headerValueExtractor'] as ProtoJson | undefined;
  if (x === undefined) throw new ConfigError(`${at}.scopeKeyBuilder.fragments[0]: only headerValueExtractor is supported`);
  const header = String(x['name'] ?? '').toLowerCase();
  if (header === '') throw new ConfigError(`${at}.scopeKeyBuilder.fragments[0].headerValueExtractor.name: required`);
  if (x['element'] !== undefined) throw new ConfigError(`${at}.scopeKeyBuilder.fragments[0].headerValueExtractor.element: key-value elements are not supported`);
  const separator = String(x['elementSeparator'] ?? '');
  const index = Number(x['index'] ?? 0);
  if (separator === '' && index !== 0) throw new ConfigError(`${at}.scopeKeyBuilder.fragments[0].headerValueExtractor.index: must be 0 without an elementSeparator`);
  const list = ((s['scopedRouteConfigurationsList'] as ProtoJson | undefined)?.['scopedRouteConfigurations'] as ProtoJson[] | undefined);
  if (list === undefined) throw new ConfigError(`${at}.scopedRouteConfigurationsList: required (the scopes, inline)`);
  const byKey = new Map<string, string>();
  list.forEach((c, i) => {
    const where = `${at}.scopedRouteConfigurationsList.scopedRouteConfigurations[${i}]`;
    if (c['routeConfiguration'] !== undefined) throw new ConfigError(`${where}.routeConfiguration: inline route configurations in a scope are not supported; name one (routeConfigurationName)`);
    const name = String(c['routeConfigurationName'] ?? '');
    if (name === '') throw new ConfigError(`${where}.routeConfigurationName: required`);
    const keyFragments = ((c['key'] as ProtoJson | undefined)?.['fragments'] as ProtoJson[] | undefined) ?? [];
    if (keyFragments.length !== 1 || typeof keyFragments[0]!['stringKey'] !== 'string') throw new ConfigError(`${where}.key.fragments: one stringKey fragment, as the key builder has one fragment`);
    const key = keyFragments[0]!['stringKey'] as string;
    if (byKey.has(key)) throw new ConfigError(`${where}.key: scope key ${JSON.stringify(key)} is listed twice`);
    byKey.set(key, name);
  });
  return { header, separator, index, byKey };
}

/** The scope key of a request (undefined: the header is absent or has no such element). */
export function scopeKeyOf(s: ScopedRoutesSpec, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (s.separator === '') return value;
  return value.split(s.separator)[s.index];
}

// Absent fields take Envoy's defaults (its runtime keys unset): no normalization, slashes
// kept, escaped slashes kept.
function compilePathNormalization(h: ProtoJson, at: string): PathNormalization {
  const action = h['pathWithEscapedSlashesAction'] ?? 'IMPLEMENTATION_SPECIFIC_DEFAULT';
  let escapedSlashes: EscapedSlashesAction = 'KEEP_UNCHANGED';
  if (action !== 'IMPLEMENTATION_SPECIFIC_DEFAULT') {
    if (!ESCAPED_SLASHES_ACTIONS.includes(action as EscapedSlashesAction)) {
      throw new ConfigError(`${at}.pathWithEscapedSlashesAction: unsupported action ${JSON.stringify(action)}`);
    }
    escapedSlashes = action as EscapedSlashesAction;
  }
  return { normalizePath: h['normalizePath'] === true, mergeSlashes: h['mergeSlashes'] === true, escapedSlashes };
}

function compileTcpProxy(t: ProtoJson, at: string): TcpProxySpec {
  const cluster = t['cluster'] as string | undefined;
  const wc = t['weightedClusters'] as ProtoJson | undefined;
  const weighted = wc ? ((wc['clusters'] as ProtoJson[] | undefined) ?? []).map((c) => ({ name: String(c['name'] ?? ''), weight: Number(c['weight'] ?? 0) })) : undefined;
  if (!cluster && (!weighted || weighted.length === 0)) throw new ConfigError(`${at}: tcp_proxy needs cluster or weightedClusters`);
  return {
    kind: 'tcp',
    statPrefix: String(t['statPrefix'] ?? ''),
    cluster,
    weighted,
    idleTimeoutMs: durationMs(t['idleTimeout'], `${at}.idleTimeout`) ?? 3_600_000,
    accessLogs: compileAccessLogs(t['accessLog'], `${at}.accessLog`, false),
    stats: undefined,
    rbac: [],
  };
}
