// The pure xDS generators: (PushContext, Proxy) → Listener, RouteConfiguration, Cluster and
// ClusterLoadAssignment resources, for Envoy-style sidecars and proxyless gRPC clients.
import { CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, NAME_TABLE_TYPE, PUSH_ORDER, ROUTE_TYPE } from '../../envoy/index.ts';
import type { ProtoJson, XdsTypeUrl } from '../../envoy/index.ts';
import type { Generators, PushContext, PushPlan, Proxy } from '../model.ts';
import { SextantPushContext, buildPushContext, updateEndpoints } from '../push/context.ts';
import { proxyFromNode } from '../push/proxy.ts';
import { planPush } from '../push/scope.ts';
import { generateClusters, isClusterLocalDns } from './clusters.ts';
import { loadAssignment } from './endpoints.ts';
import { generateListeners, routeNames } from './listeners.ts';
import { routeConfiguration } from './routes.ts';
import { grpcClusters, grpcListeners, grpcRoutes } from './grpc.ts';
import { applyEnvoyFilters, envoyFilterProblems } from './envoyfilter.ts';
import { inboundPorts } from './inbound.ts';
import { gatewayListeners, gatewayRoute } from './gateway.ts';
import { dnsCaptureEnabled, nameTable } from './nametable.ts';
import { envoyFiltersFor, sidecarScope } from '../push/scope.ts';
import type { MeshConfig } from '../mesh-config/index.ts';

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
  // A cluster-local DNS service's endpoints are inline in its clusters: then CDS differs per proxy cluster.
  const scope = sidecarScope(push, proxy);
  const perCluster = push.memoize(`cds-local-dns|${scope.namespace}|${scope.sidecar?.key ?? ''}`, () => scope.services.some((s) => isClusterLocalDns(push, s)));
  const key = `cds-class|${proxyClass(push, proxy)}${perCluster ? `|cluster=${proxy.clusterId}` : ''}`;
  return push.memoize(key, () => applyEnvoyFilters(push, proxy, CLUSTER_TYPE, generateClusters(push, proxy)));
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
    case NAME_TABLE_TYPE: {
      // One resource, with no name (as istiod sends it); only to proxies capturing DNS.
      if (grpc || !dnsCaptureEnabled(proxy)) return new Map();
      return new Map([['', nameTable(push, proxy)]]);
    }
    default:
      throw new Error(`unknown xDS type ${String(typeUrl)}`);
  }
}

/** A change that reaches a proxy's clusters (its services) reaches its name table too. */
function withNameTable(plan: PushPlan | null, proxy: Proxy): PushPlan | null {
  if (plan === null || !plan.types.has(CLUSTER_TYPE) || plan.types.has(NAME_TABLE_TYPE) || !dnsCaptureEnabled(proxy)) return plan;
  return { ...plan, types: new Set(PUSH_ORDER.filter((t) => t === NAME_TABLE_TYPE || plan.types.has(t))) };
}

/** The generator side of the pilot's seam (see pilot/model.ts), with Istio's default mesh config. */
export const generators: Generators = {
  proxyFromNode,
  buildPushContext(resources, previous, change) {
    return buildPushContext(resources, previous === undefined ? undefined : snapshot(previous), change);
  },
  updateEndpoints(before, resources, change) {
    return updateEndpoints(snapshot(before), resources, change);
  },
  planPush(before, after, change, proxy) {
    return withNameTable(planPush(snapshot(before), snapshot(after), change, proxy), proxy);
  },
  generate(push, proxy, typeUrl, names) {
    return generateFor(snapshot(push), proxy, typeUrl, names);
  },
};

/**
 * The generator side of the pilot's seam (see pilot/model.ts) for a mesh config: each full
 * snapshot is built with `mesh()` as it is then (an endpoint-only one keeps its predecessor's).
 */
export function generatorsFor(mesh: () => MeshConfig): Generators {
  return {
    ...generators,
    buildPushContext(resources, previous, change) {
      return buildPushContext(resources, previous === undefined ? undefined : snapshot(previous), change, mesh());
    },
  };
}

export { proxyFromNode, buildPushContext, updateEndpoints, planPush };
export { SextantPushContext };
/** EnvoyFilter patches skipped in a snapshot because their value is invalid, by EnvoyFilter key (for logs and status). */
export { envoyFilterProblems };
