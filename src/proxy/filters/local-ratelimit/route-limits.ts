// What a route configuration says to the local rate limit filters: per-route configs
// (typed_per_filter_config on the route, its virtual host or the whole configuration, the
// most specific winning, by filter name) and the rate_limits actions that make descriptors.
// Compiled once per RouteTable from its source, when the table is compiled (so a bad config
// is NACKed with its field), and looked up per request by the Route object.
import type { ProtoJson } from '../../../envoy/index.ts';
import { TYPED_STRUCT_TYPE, XDS_TYPED_STRUCT_TYPE } from '../../../envoy/index.ts';
import type { Route, RouteTable, VirtualHost } from '../../router/route-table.ts';
import { compileRateLimits } from './actions.ts';
import type { RateLimitPolicy } from './actions.ts';
import { compileLocalRateLimit, LOCAL_RATELIMIT_TYPE, ROUTE_FILTER_CONFIG_TYPE } from './config.ts';
import type { LocalRateLimitConfig } from './config.ts';

/** A per-route entry: a config, or `disabled` (FilterConfig.disabled: the filter skips this route). */
export type PerRouteLimit = LocalRateLimitConfig | 'disabled';

/** What one route holds for the local rate limit filters. */
export interface RouteLimits {
  /** Most specific per-filter config by filter name (route, else virtual host, else configuration). */
  perFilter: ReadonlyMap<string, PerRouteLimit>;
  /** The route action's rate_limits. */
  policies: readonly RateLimitPolicy[];
  /** The virtual host's rate_limits. */
  vhPolicies: readonly RateLimitPolicy[];
  /** The deprecated include_vh_rate_limits of the route action. */
  includeVh: boolean;
}

const NONE: RouteLimits = Object.freeze({ perFilter: new Map(), policies: [], vhPolicies: [], includeVh: false });
const compiled = new WeakMap<RouteTable, Map<Route, RouteLimits>>();

/**
 * Compiles (once) the local rate limit config of every route of `table`; throws a
 * ConfigError naming the field when one cannot be run. Returns the per-route map.
 */
export function compileRouteLimits(table: RouteTable, at: string): ReadonlyMap<Route, RouteLimits> {
  let byRoute = compiled.get(table);
  if (byRoute !== undefined) return byRoute;
  byRoute = new Map();
  const src = table.source;
  const tableConfigs = perFilterConfigs(src['typedPerFilterConfig'], `${at}.typedPerFilterConfig`, `routeconfig/${table.name}`);
  const vhs = (src['virtualHosts'] as ProtoJson[] | undefined) ?? [];
  table.virtualHosts.forEach((vh: VirtualHost, i) => {
    const vsrc = vhs[i] ?? {};
    const vat = `${at}.virtualHosts[${i}]`;
    const vhConfigs = perFilterConfigs(vsrc['typedPerFilterConfig'], `${vat}.typedPerFilterConfig`, `vhost/${table.name}/${vh.name}`);
    const vhPolicies = compileRateLimits(vsrc['rateLimits'], `${vat}.rateLimits`);
    const routes = (vsrc['routes'] as ProtoJson[] | undefined) ?? [];
    vh.routes.forEach((route, j) => {
      const rsrc = routes[j] ?? {};
      const rat = `${vat}.routes[${j}]`;
      const id = route.name !== '' ? route.name : `#${j}`;
      const routeConfigs = perFilterConfigs(rsrc['typedPerFilterConfig'], `${rat}.typedPerFilterConfig`, `route/${table.name}/${vh.name}/${id}`);
      const action = rsrc['route'] as ProtoJson | undefined;
      const policies = compileRateLimits(action?.['rateLimits'], `${rat}.route.rateLimits`);
      const includeVh = action?.['includeVhRateLimits'] === true || (action?.['includeVhRateLimits'] as { value?: boolean } | undefined)?.value === true;
      if (tableConfigs.size === 0 && vhConfigs.size === 0 && routeConfigs.size === 0 && policies.length === 0 && vhPolicies.length === 0) return;
      const perFilter = new Map<string, PerRouteLimit>([...tableConfigs, ...vhConfigs, ...routeConfigs]);
      byRoute.set(route, { perFilter, policies, vhPolicies, includeVh });
    });
  });
  compiled.set(table, byRoute);
  return byRoute;
}

/** The local rate limit view of `route` in `table` (compiled on first use if the table was not). */
export function routeLimits(table: RouteTable, route: Route): RouteLimits {
  return (compiled.get(table) ?? compileRouteLimits(table, `RouteConfiguration ${table.name}`)).get(route) ?? NONE;
}

// typed_per_filter_config entries that are local rate limit configs (directly, in a TypedStruct
// or an Envoy FilterConfig wrapper), by filter name; other filters' entries are not ours.
function perFilterConfigs(tpfc: unknown, at: string, identity: string): Map<string, PerRouteLimit> {
  const out = new Map<string, PerRouteLimit>();
  for (const [name, v] of Object.entries((tpfc ?? {}) as ProtoJson)) {
    let tc = v as ProtoJson;
    let where = `${at}["${name}"]`;
    if (tc['@type'] === ROUTE_FILTER_CONFIG_TYPE) {
      if (tc['disabled'] === true) {
        out.set(name, 'disabled');
        continue;
      }
      where += '.config';
      tc = (tc['config'] ?? {}) as ProtoJson;
    }
    if (innerType(tc) !== LOCAL_RATELIMIT_TYPE) continue;
    out.set(name, compileLocalRateLimit(tc, where, `${identity}/${name}`, true));
  }
  return out;
}

function innerType(tc: ProtoJson): string {
  const t = String(tc['@type'] ?? '');
  return t === TYPED_STRUCT_TYPE || t === XDS_TYPED_STRUCT_TYPE ? String(tc['typeUrl'] ?? '') : t;
}

