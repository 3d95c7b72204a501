// The pure xDS generators: (PushContext, Proxy) → Listener, RouteConfiguration, Cluster and
// ClusterLoadAssignment resources, for Envoy-style sidecars and proxyless gRPC clients.
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE } from '../../envoy/index.ts';
import type { ProtoJson, XdsTypeUrl } from '../../envoy/index.ts';
import type { Generators, PushContext, Proxy } from '../model.ts';
import { SextantPushContext, buildPushContext, updateEndpoints } from '../push/context.ts';
import { proxyFromNode } from '../push/proxy.ts';
import { planPush } from '../push/scope.ts';
import { generateClusters } from './clusters.ts';
import { loadAssignment } from './endpoints.ts';
import { generateListeners, routeNames } from './listeners.ts';
import { routeConfiguration } from './routes.ts';
import { grpcClusters, grpcListeners, grpcRoutes } from './grpc.ts';
import { applyEnvoyFilters, envoyFilterProblems } from './envoyfilter.ts';
import { inboundPorts } from './inbound.ts';
import { gatewayListeners, gatewayRoute } from './gateway.ts';
import { envoyFiltersFor, sidecarScope } from '../push/scope.ts';

function snapshot(push: PushContext): SextantPushContext {
  if (!(push instanceof SextantPushContext)) throw new Error('PushContext was not built by buildPushContext');
  return push;
}

function byName(list: readonly ProtoJson[], names: ReadonlySet<string> | undefined): Map<string, ProtoJson> {
  const out = new Map<string, ProtoJson>();
  for (const r of list) {
    const name = (r['name'] ?? r['clusterName']) as string;
    if (!names || names.has(name)) out.set(name, r);
  }
  return out;
}

/** EDS cluster names among generated clusters (what a wildcard EDS request means). */
function edsClusterNames(clusters: readonly ProtoJson[]): string[] {
  return clusters.filter((c) => c['type'] === 'EDS').map((c) => String(c['name']));
}

/**
 * What a proxy's listeners and clusters depend on: its scope, capture mode, inbound ports
 * and the EnvoyFilters selecting it. Proxies of one class get the same resource objects,
 * so the server's encoding cache (by identity) hits for all of them.
 */
function proxyClass(push: SextantPushContext, proxy: Proxy): string {
  const scope = sidecarScope(push, proxy);
  const filters = envoyFiltersFor(push, proxy);
  let key = `${scope.namespace}|${scope.sidecar?.key ?? ''}|${proxy.type}|${proxy.interceptionMode}|${JSON.stringify(inboundPorts(push, proxy))}`;
  if (scope.sourceLabelDependent) key += `|${JSON.stringify(proxy.labels)}`;
  if (filters.length > 0) {
    key += `|${filters.map((f) => f.key).join(',')}`;
    // Patches may also match on the proxy's version and metadata.
    const proxyMatched = filters.some((f) => (f.spec.configPatches ?? []).some((p) => p.match?.proxy));
    if (proxyMatched) key += `|${JSON.stringify(proxy.metadata)}`;
  }
  return key;
}

function envoyClusters(push: SextantPushContext, proxy: Proxy): ProtoJson[] {
  return push.memoize(`cds-class|${proxyClass(push, proxy)}`, () => applyEnvoyFilters(push, proxy, CLUSTER_TYPE, generateClusters(push, proxy)));
}

function envoyListeners(push: SextantPushContext, proxy: Proxy): ProtoJson[] {
  const key = proxy.type === 'router' ? `${proxyClass(push, proxy)}|${JSON.stringify(proxy.labels)}` : proxyClass(push, proxy);
  return push.memoize(`lds-class|${key}`, () => applyEnvoyFilters(push, proxy, LISTENER_TYPE, proxy.type === 'router' ? gatewayListeners(push, proxy) : generateListeners(push, proxy)));
}

function generateFor(push: SextantPushContext, proxy: Proxy, typeUrl: XdsTypeUrl, names?: ReadonlySet<string>): Map<string, ProtoJson> {
  const grpc = proxy.generator === 'grpc';
  switch (typeUrl) {
    case CLUSTER_TYPE: {
      return byName(grpc ? grpcClusters(push, proxy) : envoyClusters(push, proxy), names);
    }
    case ENDPOINT_TYPE: {
      const wanted = names ?? new Set(edsClusterNames(grpc ? grpcClusters(push, proxy) : envoyClusters(push, proxy)));
      const out = new Map<string, ProtoJson>();
      for (const n of wanted) {
        const cla = loadAssignment(push, proxy, n);
        if (cla) out.set(n, cla);
      }
      return out;
    }
    case LISTENER_TYPE: {
      if (grpc) return byName(grpcListeners(push, proxy, names), undefined);
      return byName(envoyListeners(push, proxy), names);
    }
    case ROUTE_TYPE: {
      if (grpc) return byName(grpcRoutes(push, proxy, names), undefined);
      const wanted = names ?? new Set(routeNames(envoyListeners(push, proxy)));
      const list: ProtoJson[] = [];
      for (const n of wanted) {
        const rc = proxy.type === 'router' ? gatewayRoute(push, proxy, n) : routeConfiguration(push, proxy, n);
        if (rc) list.push(rc);
      }
      if (envoyFiltersFor(push, proxy).length === 0 && proxy.type !== 'router') return byName(list, undefined);
      const key = `rds-class|${proxyClass(push, proxy)}|${JSON.stringify(proxy.labels)}|${[...wanted].sort().join(',')}`;
      return byName(push.memoize(key, () => applyEnvoyFilters(push, proxy, ROUTE_TYPE, list)), undefined);
    }
    default:
      throw new Error(`unknown xDS type ${String(typeUrl)}`);
  }
}

/** The generator side of the pilot's seam (see pilot/model.ts). */
export const generators: Generators = {
  proxyFromNode,
  buildPushContext(resources, previous, change) {
    return buildPushContext(resources, previous === undefined ? undefined : snapshot(previous), change);
  },
  updateEndpoints(before, resources, change) {
    return updateEndpoints(snapshot(before), resources, change);
  },
  planPush(before, after, change, proxy) {
    return planPush(snapshot(before), snapshot(after), change, proxy);
  },
  generate(push, proxy, typeUrl, names) {
    return generateFor(snapshot(push), proxy, typeUrl, names);
  },
};

export { proxyFromNode, buildPushContext, updateEndpoints, planPush };
export { SextantPushContext };
/** EnvoyFilter patches skipped in a snapshot because their value is invalid, by EnvoyFilter key (for logs and status). */
export { envoyFilterProblems };
