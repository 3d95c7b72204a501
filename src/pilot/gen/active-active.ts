// Same-city active-active: a sidecar started with SEXTANT_DC knows its data centre (node metadata
// SEXTANT_DC, node locality). For such a proxy the pilot prefers endpoints in its own data centre
// and fails over to the other one on capacity alone (no outlierDetection needed), and its routes
// carry the data-centre headers: the caller's (overwritten at every hop), the first hop's (set
// once), and on inbound responses the data centre that served.
import type { ProtoJson } from '../../envoy/index.ts';
import type { Proxy } from '../model.ts';

/** Node metadata naming the proxy's data centre (a locality, `region/zone/subzone`, trailing parts optional). */
export const DC_METADATA = 'SEXTANT_DC';
export const CALLER_DC_HEADER = 'x-sextant-caller-dc';
export const ORIGIN_DC_HEADER = 'x-sextant-origin-dc';
export const SERVED_DC_HEADER = 'x-sextant-served-dc';

/** The proxy's data centre, or undefined for a proxy started without one. */
export function proxyDataCentre(proxy: Proxy): string | undefined {
  const dc = proxy.metadata[DC_METADATA];
  return typeof dc === 'string' && dc !== '' ? dc : undefined;
}

/**
 * Sextant's passive health checking for clusters whose endpoints fall back by priority (data
 * centres, lanes) when the DestinationRule sets none: three gateway errors or connect failures
 * in a row eject a host, and a whole priority level may be ejected (maxEjectionPercent 100), so
 * a dead data centre or lane instance stops taking first tries while the next level serves.
 */
export const PASSIVE_FAILOVER_OUTLIER: Readonly<ProtoJson> = Object.freeze({
  consecutive5xx: 5,
  enforcingConsecutive5xx: 100,
  consecutiveGatewayFailure: 3,
  enforcingConsecutiveGatewayFailure: 100,
  interval: '1s',
  baseEjectionTime: '10s',
  maxEjectionPercent: 100,
  enforcingSuccessRate: 0,
});

/**
 * A cluster whose endpoints fall back by priority, as a sidecar in a data centre (or a lane
 * cluster) gets it: Sextant's passive health checking when the DestinationRule has none, and
 * the cluster metadata (`sextant.io` `ejectWholePriority`) that lets outlier detection eject a
 * whole priority level while another one still has healthy hosts. Envoy ignores the metadata.
 */
export function priorityFailoverCluster(cluster: ProtoJson): ProtoJson {
  const md = (cluster['metadata'] ?? {}) as { filterMetadata?: ProtoJson };
  return {
    ...cluster,
    outlierDetection: cluster['outlierDetection'] ?? PASSIVE_FAILOVER_OUTLIER,
    metadata: { ...md, filterMetadata: { ...md.filterMetadata, 'sextant.io': { ejectWholePriority: true } } },
  };
}

/**
 * Envoy's retry priority that sends a retry to another priority level than the one that failed,
 * with its typed config as istiod writes it (`update_frequency` = the retry attempts): Envoy finds
 * the extension by that type.
 */
export function previousPriorities(attempts: number): ProtoJson {
  return {
    name: 'envoy.retry_priorities.previous_priorities',
    typedConfig: { '@type': 'type.googleapis.com/envoy.extensions.retry.priority.previous_priorities.v3.PreviousPrioritiesConfig', updateFrequency: Math.max(1, Math.floor(attempts)) },
  };
}

/** A route's retry policy with retries going to the next priority level (data centre, fallback lane). */
export function withRetryToOtherPriorities(route: ProtoJson): ProtoJson {
  const action = route['route'] as ProtoJson | undefined;
  const retry = action?.['retryPolicy'] as ProtoJson | undefined;
  if (action === undefined || retry === undefined || retry['retryPriority'] !== undefined) return route;
  return { ...route, route: { ...action, retryPolicy: { ...retry, retryPriority: previousPriorities(Number(retry['numRetries'] ?? 1)) } } };
}

function headerAdd(key: string, value: string, appendAction: 'OVERWRITE_IF_EXISTS_OR_ADD' | 'ADD_IF_ABSENT'): ProtoJson {
  return { header: { key, value }, appendAction };
}

/**
 * An outbound route configuration as a proxy in data centre `dc` gets it: the caller's data
 * centre on every request (overwritten), the first hop's added only when absent, and retries
 * that go to the other data centre.
 */
export function dataCentreRoutes(rc: ProtoJson, dc: string): ProtoJson {
  const adds = [...((rc['requestHeadersToAdd'] as ProtoJson[] | undefined) ?? []), headerAdd(CALLER_DC_HEADER, dc, 'OVERWRITE_IF_EXISTS_OR_ADD'), headerAdd(ORIGIN_DC_HEADER, dc, 'ADD_IF_ABSENT')];
  const vhosts = ((rc['virtualHosts'] as ProtoJson[] | undefined) ?? []).map((vh) => ({ ...vh, routes: ((vh['routes'] as ProtoJson[] | undefined) ?? []).map(withRetryToOtherPriorities) }));
  return { ...rc, requestHeadersToAdd: adds, virtualHosts: vhosts };
}

/** An inbound (inline) route configuration whose responses name the data centre that served. */
export function servedDataCentreRoutes(rc: ProtoJson, dc: string): ProtoJson {
  return { ...rc, responseHeadersToAdd: [...((rc['responseHeadersToAdd'] as ProtoJson[] | undefined) ?? []), headerAdd(SERVED_DC_HEADER, dc, 'OVERWRITE_IF_EXISTS_OR_ADD')] };
}
