// The pure xDS generators: (PushContext, Proxy) → Listener, RouteConfiguration, Cluster and
// ClusterLoadAssignment resources, for Envoy-style sidecars and proxyless gRPC clients.
import { CLUSTER_TYPE, ENDPOINT_TYPE, EXTENSION_CONFIG_TYPE, LISTENER_TYPE, NAME_TABLE_TYPE, PUSH_ORDER, ROUTE_TYPE, SECRET_TYPE } from '../../envoy/index.ts';
import type { ProtoJson, XdsTypeUrl } from '../../envoy/index.ts';
import type { ConfigChange, Generators, PushContext, PushPlan, Proxy } from '../model.ts';
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
import { adaptiveClassKey } from './adaptive.ts';
import { rateLimitClassKey } from './ratelimit.ts';
import { applyTelemetry, telemetryClassKey } from './telemetry.ts';
import { laneClassKey, laneRoutes } from './lanes.ts';
import { credentialNames, gatewayListeners, gatewayRoute, gatewaySecrets, mergedGateway, secretsConcern, sniDnatClusters } from './gateway/index.ts';
import { dnsCaptureEnabled, nameTable } from './nametable.ts';
import { envoyFiltersFor, sidecarScope } from '../push/scope.ts';
import type { MeshConfig } from '../mesh-config/index.ts';
import { applyAuthorization, authorizationPoliciesFor } from './rbac.ts';
import { requestAuthenticationSelects } from './jwt.ts';
import { hasWorkloadCertificate, peerAuthenticationSelects } from './mtls.ts';
import { hubListeners, hubRoute, hubRouteNames, isHub, lazyClusters, lazyRoutes } from './lazyscope.ts';

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

/** EDS service names of the generated clusters (what a wildcard EDS request means). */
function edsClusterNames(clusters: readonly ProtoJson[]): string[] {
  return [...new Set(clusters.filter((c) => c['type'] === 'EDS').map((c) => String((c['edsClusterConfig'] as { serviceName?: string } | undefined)?.serviceName ?? c['name'])))];
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
  // AdaptiveLimit gates differ per workload (the service it backs), not per scope.
  const adaptive = adaptiveClassKey(push, proxy);
  if (adaptive !== '') key += `|adaptive=${adaptive}`;
  // RateLimit filters differ per workload too (the service or labels they select).
  const rateLimits = rateLimitClassKey(push, proxy);
  if (rateLimits !== '') key += `|ratelimit=${rateLimits}`;
  // Telemetry (access logs, stats overrides) may select workloads by label.
  const telemetry = telemetryClassKey(push, proxy);
  if (telemetry !== '') key += `|telemetry=${telemetry}`;
  // Security policies select workloads by label: two workloads sharing ports and scope get
  // different inbound chains when an AuthorizationPolicy, RequestAuthentication or
  // PeerAuthentication selects one and not the other, or when only one has a certificate.
  key += `|${securityClassKey(push, proxy)}`;
  // lanes: the lanes filter names the proxy's own lane; active-active: its data centre.
  const lanes = laneClassKey(push, proxy);
  if (lanes !== '') key += `|${lanes}`;
  if (filters.length > 0) {
    key += `|${filters.map((f) => f.key).join(',')}`;
    // Patches may also match on the proxy's version and metadata.
    const proxyMatched = filters.some((f) => (f.spec.configPatches ?? []).some((p) => p.match?.proxy));
    if (proxyMatched) key += `|${JSON.stringify(proxy.metadata)}`;
  }
  return key;
}

/** What of the security policies (and the proxy's certificate) shapes this proxy's inbound listeners. */
function securityClassKey(push: SextantPushContext, proxy: Proxy): string {
  const authz = authorizationPoliciesFor(push, proxy).map((p) => `${p.namespace}/${p.name}`).join(',');
  const root = push.mesh.rootNamespace;
  const reqAuthn = push.memoize('reqauthn|all-unsorted', () => push.resources.filter((r) => r.kind === 'RequestAuthentication'))
    .filter((r) => requestAuthenticationSelects(r, proxy, root)).map((r) => `${r.metadata.namespace}/${r.metadata.name}`).sort().join(',');
  const peerAuthn = push.memoize('peerauth|all', () => push.resources.filter((r) => r.kind === 'PeerAuthentication'))
    .filter((r) => r.metadata.namespace === proxy.namespace && peerAuthenticationSelects(r, proxy.labels))
    .map((r) => r.metadata.name).sort().join(',');
  return `cert=${hasWorkloadCertificate(proxy) ? 1 : 0}|authz=${authz}|reqauthn=${reqAuthn}|peerauthn=${peerAuthn}`;
}

function envoyClusters(push: SextantPushContext, proxy: Proxy): ProtoJson[] {
  // A cluster-local DNS service's endpoints are inline in its clusters: then CDS differs per proxy cluster.
  const scope = sidecarScope(push, proxy);
  const perCluster = push.memoize(`cds-local-dns|${scope.namespace}|${scope.sidecar?.key ?? ''}`, () => scope.services.some((s) => isClusterLocalDns(push, s)));
  const key = `cds-class|${proxyClass(push, proxy)}${perCluster ? `|cluster=${proxy.clusterId}` : ''}`;
  if (proxy.type === 'router') {
    // AUTO_PASSTHROUGH servers forward to SNI-DNAT clusters, which depend on the gateway's servers.
    return push.memoize(`${key}|gw|${JSON.stringify(proxy.labels)}|${proxy.ipAddresses.join(',')}`, () => {
      const clusters = generateClusters(push, proxy);
      return applyEnvoyFilters(push, proxy, CLUSTER_TYPE, [...clusters, ...sniDnatClusters(push, proxy, clusters)]);
    });
  }
  // lazy scope: a fallback given as an address is a static cluster of its own
  return push.memoize(key, () => applyEnvoyFilters(push, proxy, CLUSTER_TYPE, lazyClusters(push, proxy, generateClusters(push, proxy))));
}

function envoyListeners(push: SextantPushContext, proxy: Proxy): ProtoJson[] {
  // lazy scope: a hub serves its hub listeners only
  if (isHub(proxy)) return hubListeners(push, proxy);
  const key = proxy.type === 'router' ? `${proxyClass(push, proxy)}|${JSON.stringify(proxy.labels)}|${proxy.ipAddresses.join(',')}` : proxyClass(push, proxy);
  return push.memoize(`lds-class|${key}`, () => applyEnvoyFilters(push, proxy, LISTENER_TYPE, applyTelemetry(push, proxy, proxy.type === 'router' ? applyAuthorization(push, proxy, gatewayListeners(push, proxy)) : generateListeners(push, proxy))));
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
      const hub = isHub(proxy);
      const wanted = names ?? new Set(hub ? hubRouteNames(push) : routeNames(envoyListeners(push, proxy)));
      const list: ProtoJson[] = [];
      for (const n of wanted) {
        // lazy scope: the hub's scoped routes; a lazy proxy's catch-all goes to its fallback
        const rc = proxy.type === 'router' ? gatewayRoute(push, proxy, n) : hub ? hubRoute(push, n) : lazyRoutesOf(push, proxy, routeConfiguration(push, proxy, n));
        // lanes: lane variants of routes to covered services; active-active: data-centre headers
        if (rc) list.push(proxy.type === 'router' ? rc : laneRoutes(push, proxy, rc));
      }
      if (envoyFiltersFor(push, proxy).length === 0 && proxy.type !== 'router') return byName(list, undefined);
      const key = `rds-class|${proxyClass(push, proxy)}|${JSON.stringify(proxy.labels)}|${[...wanted].sort().join(',')}`;
      return byName(push.memoize(key, () => applyEnvoyFilters(push, proxy, ROUTE_TYPE, list)), undefined);
    }
    case SECRET_TYPE: {
      // Gateways' credentials (`kubernetes://NAME`): only what the Gateways selecting a router name.
      if (grpc || proxy.type !== 'router') return new Map();
      return gatewaySecrets(push, proxy, names);
    }
    case NAME_TABLE_TYPE: {
      // One resource, with no name (as istiod sends it); only to proxies capturing DNS.
      if (grpc || !dnsCaptureEnabled(proxy)) return new Map();
      return new Map([['', nameTable(push, proxy)]]);
    }
    case EXTENSION_CONFIG_TYPE:
      // WasmPlugin modules are the pilot's module store's (withWasmPlugins wraps these generators)
      return new Map();
    default:
      throw new Error(`unknown xDS type ${String(typeUrl)}`);
  }
}

function lazyRoutesOf(push: SextantPushContext, proxy: Proxy, rc: ProtoJson | undefined): ProtoJson | undefined {
  return rc === undefined ? undefined : lazyRoutes(push, proxy, rc);
}

/** A change that reaches a proxy's clusters (its services) reaches its name table too. */
function withNameTable(plan: PushPlan | null, proxy: Proxy): PushPlan | null {
  if (plan === null || !plan.types.has(CLUSTER_TYPE) || plan.types.has(NAME_TABLE_TYPE) || !dnsCaptureEnabled(proxy)) return plan;
  return { ...plan, types: new Set(PUSH_ORDER.filter((t) => t === NAME_TABLE_TYPE || plan.types.has(t))) };
}

/**
 * Gateways hold SDS secrets: a change of a Secret their Gateways name pushes SDS to them
 * (only), and whatever changes their listeners may change which secrets they may have. A
 * gateway with AUTO_PASSTHROUGH servers has clusters that follow its listeners (SNI-DNAT).
 */
function withSecrets(plan: PushPlan | null, before: SextantPushContext, after: SextantPushContext, change: ConfigChange, proxy: Proxy): PushPlan | null {
  if (proxy.type !== 'router' || change.endpointsOnly) return plan;
  const secretKeys = [...change.keys].filter((k) => k.startsWith('Secret/'));
  const concerned = secretKeys.length > 0 && (secretsConcern(before, proxy, secretKeys) || secretsConcern(after, proxy, secretKeys));
  const listed = plan !== null && plan.types.has(LISTENER_TYPE);
  const relisted = listed && (credentialNames(mergedGateway(before, proxy)).size > 0 || credentialNames(mergedGateway(after, proxy)).size > 0);
  const autoPassthrough = (ctx: SextantPushContext): boolean => mergedGateway(ctx, proxy).ports.some((p) => p.servers.some((s) => s.kind === 'auto-passthrough'));
  const reclustered = listed && !plan.types.has(CLUSTER_TYPE) && (autoPassthrough(before) || autoPassthrough(after));
  if (!concerned && !relisted && !reclustered) return plan;
  const add = new Set([...(plan?.types ?? []), ...(concerned || relisted ? [SECRET_TYPE] : []), ...(reclustered ? [CLUSTER_TYPE] : [])]);
  return { ...plan, types: new Set(PUSH_ORDER.filter((t) => add.has(t))) };
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
    const b = snapshot(before);
    const a = snapshot(after);
    return withSecrets(withNameTable(planPush(b, a, change, proxy), proxy), b, a, change, proxy);
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
