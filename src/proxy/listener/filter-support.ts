// Which network and HTTP filters this proxy runs. Envoy finds a filter's implementation by
// its typed_config type (a TypedStruct's inner type), by name only when it has no config,
// and refuses a listener naming a filter it does not have unless the HTTP filter is marked
// `is_optional`; the listener compiler does the same with these tables, so a filter an
// EnvoyFilter adds is either run or NACKed (or, optional, skipped), never silently ignored.
import { CORS_TYPE, FAULT_TYPE, HCM_TYPE, ROUTER_TYPE, TCP_PROXY_TYPE, TYPED_STRUCT_TYPE, XDS_TYPED_STRUCT_TYPE } from '../../envoy/index.ts';
import type { ProtoJson } from '../../envoy/index.ts';
import { HTTP_RBAC_TYPE, NETWORK_RBAC_TYPE } from '../filters/rbac/index.ts';
import { ISTIO_AUTHN_TYPE, JWT_AUTHN_TYPE } from '../filters/jwt/index.ts';
import { LOCAL_RATELIMIT_TYPE } from '../filters/local-ratelimit/index.ts';
import { ADMISSION_TYPE } from '../filters/admission/index.ts';
import { LANES_TYPE } from '../filters/lanes/index.ts';
import { WASM_HTTP_TYPE } from '../filters/wasm/index.ts';

export type HttpFilterKind = 'router' | 'fault' | 'cors' | 'stats' | 'rbac' | 'jwt_authn' | 'istio_authn' | 'local_ratelimit' | 'admission' | 'lanes' | 'wasm';
export type NetworkFilterKind = 'http_connection_manager' | 'tcp_proxy' | 'stats' | 'rbac';

/** Istio's stats filter config, as istiod sends it inside a TypedStruct. */
const ISTIO_STATS_TYPE = 'type.googleapis.com/stats.PluginConfig';
const STRUCT_TYPE = 'type.googleapis.com/google.protobuf.Struct';

/**
 * HTTP filters by implementation (type URL, or name when there is no typed_config). CORS is
 * recognised so the sidecars' standard chain (fault, cors, router) runs; per-route CORS
 * policies are not enforced yet.
 */
const HTTP_FILTERS: ReadonlyMap<string, HttpFilterKind> = new Map([
  [ROUTER_TYPE, 'router'], ['envoy.filters.http.router', 'router'],
  [FAULT_TYPE, 'fault'], ['envoy.filters.http.fault', 'fault'],
  [CORS_TYPE, 'cors'], ['envoy.filters.http.cors', 'cors'],
  [ISTIO_STATS_TYPE, 'stats'],
  [HTTP_RBAC_TYPE, 'rbac'],
  [JWT_AUTHN_TYPE, 'jwt_authn'],
  [ISTIO_AUTHN_TYPE, 'istio_authn'],
  // local rate limits (filters/local-ratelimit) and the adaptive-limits admission gate (filters/admission)
  [LOCAL_RATELIMIT_TYPE, 'local_ratelimit'],
  [ADMISSION_TYPE, 'admission'],
  // lanes and data-centre context (filters/lanes)
  [LANES_TYPE, 'lanes'],
  // WebAssembly filters (filters/wasm), inline or over ECDS (config_discovery, see httpFilterKind)
  [WASM_HTTP_TYPE, 'wasm'],
]);

const NETWORK_FILTERS: ReadonlyMap<string, NetworkFilterKind> = new Map([
  [HCM_TYPE, 'http_connection_manager'],
  [TCP_PROXY_TYPE, 'tcp_proxy'],
  [ISTIO_STATS_TYPE, 'stats'],
  [NETWORK_RBAC_TYPE, 'rbac'],
]);

/** A filter as Envoy resolves it: its name and the type (or name) its implementation is found by. */
export interface FilterIdentity {
  name: string;
  implementation: string;
}

/** What a filter asks for: `{name, typedConfig}` → the name and the type its implementation is found by. */
export function filterIdentity(f: ProtoJson): FilterIdentity {
  const name = String(f['name'] ?? '');
  const tc = f['typedConfig'] as ProtoJson | undefined;
  if (tc === undefined) return { name, implementation: f['configDiscovery'] !== undefined ? 'config_discovery (ECDS)' : name };
  const type = String(tc['@type'] ?? '');
  if (type === TYPED_STRUCT_TYPE || type === XDS_TYPED_STRUCT_TYPE) return { name, implementation: String(tc['typeUrl'] ?? type) };
  return { name, implementation: type };
}

/**
 * The HTTP filter this proxy runs for `f`, or undefined when it has none. `istio.stats` is
 * also known by name with a TypedStruct or Struct config, as tests and older Istio send it.
 */
export function httpFilterKind(f: ProtoJson, id: FilterIdentity = filterIdentity(f)): HttpFilterKind | undefined {
  if (id.name === 'istio.stats' && isStructConfig(f)) return 'stats';
  // wasm: a discovered filter runs when ECDS may send it a Wasm config
  if (f['typedConfig'] === undefined && ((f['configDiscovery'] as ProtoJson | undefined)?.['typeUrls'] as string[] | undefined)?.includes(WASM_HTTP_TYPE) === true) return 'wasm';
  return HTTP_FILTERS.get(id.implementation);
}

/** The network filter this proxy runs for `f`, or undefined when it has none. */
export function networkFilterKind(f: ProtoJson, id: FilterIdentity = filterIdentity(f)): NetworkFilterKind | undefined {
  if (id.name === 'istio.stats' && isStructConfig(f)) return 'stats';
  return NETWORK_FILTERS.get(id.implementation);
}

function isStructConfig(f: ProtoJson): boolean {
  const type = (f['typedConfig'] as ProtoJson | undefined)?.['@type'];
  return type === undefined || type === TYPED_STRUCT_TYPE || type === XDS_TYPED_STRUCT_TYPE || type === STRUCT_TYPE;
}

/** "HTTP filter "NAME" (TYPE)", as NACK reasons and logs name a filter. */
export function describeFilter(what: 'HTTP' | 'network', id: FilterIdentity): string {
  return id.implementation === id.name ? `${what} filter ${JSON.stringify(id.name)}` : `${what} filter ${JSON.stringify(id.name)} (${id.implementation})`;
}
