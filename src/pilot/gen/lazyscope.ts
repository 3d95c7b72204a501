// Lazy scope (M5) in the generators. A proxy whose Sidecar the lazy-scope controller wrote
// (label `sextant.io/managed-by: lazy-scope`) is lazy: its scope is the hosts it was seen
// calling plus the stable ones, and its route configurations end in a catch-all that goes to
// the LazyScope's fallback (instead of Istio's `allow_any` / `block_all`), so a first call to
// any other host still works. The fallback is an existing host:port tier, or the hub: proxies
// in the hub role (node metadata SEXTANT_ROLE=hub) with full scope, serving one listener whose
// route configuration is chosen per request by the caller's namespace and port (Envoy's
// scoped routes, header `x-sextant-scope`), so a request gets the caller's own Istio
// semantics; the listener keeps the caller's source address (Envoy's original_src) and adds
// no identity of its own, and its access log streams to the pilot (log `sextant-hub`), where
// the controller learns the edge. Pure functions of (PushContext, Proxy), memoized per snapshot.
import { HCM_TYPE } from '../../envoy/index.ts';
import type { ProtoJson } from '../../envoy/index.ts';
import { HTTP_GRPC_ACCESS_LOG_NAME, HTTP_GRPC_ACCESS_LOG_TYPE, XDS_GRPC_CLUSTER } from '../../envoy/access-log.ts';
import type { Proxy } from '../model.ts';
import type { Resource } from '../../api/resource.ts';
import { LAZY_SCOPE_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_LAZY_SCOPE, lazyScopeSettings } from '../../api/lazy-scope.ts';
import type { LazyScopeSettings, LazyScopeSpec } from '../../api/lazy-scope.ts';
import { isIPAddress } from '../../api/checks.ts';
import { byAge, isHttpProtocol, labelsMatch } from '../../registry/index.ts';
import type { SextantPushContext } from '../push/context.ts';
import { resolveHost } from '../push/context.ts';
import { sidecarScope } from '../push/scope.ts';
import { ADS_CONFIG_SOURCE } from './clusters.ts';
import { httpFilters, pathNormalization } from './listeners.ts';
import { routeConfiguration } from './routes.ts';
import { ensureType } from './protos.ts';
import { PEER_STATE_OBJECTS } from './telemetry.ts';

/** Node metadata naming the hub role (`sextant hub`, or `sextant proxy --metadata SEXTANT_ROLE=hub`). */
export const HUB_ROLE_METADATA = 'SEXTANT_ROLE';
/** The same as a workload label. */
export const HUB_ROLE_LABEL = 'sextant.io/role';
export const HUB_ROLE = 'hub';
/** The header a lazy proxy's fallback route adds for a hub: `NAMESPACE/PORT` (the hub removes it). */
export const HUB_SCOPE_HEADER = 'x-sextant-scope';
/** The hub's access-log name over ALS (the controller learns from it). */
export const HUB_LOG_NAME = 'sextant-hub';
/** The catch-all virtual host and route of a lazy proxy. */
export const FALLBACK_VHOST = 'sextant_lazy_fallback';
/** Route configurations of the hub: `sextant-hub|NAMESPACE|PORT`. */
export const HUB_ROUTE_PREFIX = 'sextant-hub|';
/** Scoped route configurations one hub listener lists at most (namespaces with lazy workloads × HTTP ports). */
export const MAX_HUB_SCOPES = 10_000;
const ORIGINAL_SRC_TYPE = 'type.googleapis.com/envoy.extensions.filters.listener.original_src.v3.OriginalSrc';

/** A LazyScope of the snapshot, with its settings. */
export interface LazyScopeInfo {
  key: string;
  namespace: string;
  name: string;
  selector: Readonly<Record<string, string>> | undefined;
  settings: LazyScopeSettings;
}

/** Where a lazy proxy's first calls go. */
export interface LazyFallback {
  scope: LazyScopeInfo;
  /** The cluster of the catch-all route. */
  cluster: string;
  hub: boolean;
  /** The registry host of the fallback (FQDN); undefined for an address. */
  host: string | undefined;
}

/** Whether the proxy runs in the hub role. */
export function isHub(proxy: Proxy): boolean {
  return proxy.type === 'sidecar' && (proxy.metadata[HUB_ROLE_METADATA] === HUB_ROLE || proxy.labels[HUB_ROLE_LABEL] === HUB_ROLE);
}

/** Whether a Sidecar was written by the lazy-scope controller. */
export function isManagedSidecar(r: Resource | undefined): boolean {
  return r?.metadata.labels?.[MANAGED_BY_LABEL] === MANAGED_BY_LAZY_SCOPE;
}

/** Every LazyScope of the snapshot, oldest first (memoized). */
export function lazyScopes(push: SextantPushContext): readonly LazyScopeInfo[] {
  return push.memoize('lazy|scopes', () => push.resources
    .filter((r) => r.kind === 'LazyScope')
    .sort(byAge)
    .map((r) => {
      const spec = r.spec as LazyScopeSpec;
      return { key: `LazyScope/${r.metadata.namespace}/${r.metadata.name}`, namespace: r.metadata.namespace, name: r.metadata.name, selector: spec.workloadSelector?.labels, settings: lazyScopeSettings(spec) };
    }));
}

/**
 * The LazyScope that applies to a workload: the oldest of its own namespace whose selector
 * matches its labels, else the oldest of the root namespace (mesh-wide) whose selector does.
 */
export function lazyScopeFor(push: SextantPushContext, namespace: string, labels: Readonly<Record<string, string>>): LazyScopeInfo | undefined {
  const all = lazyScopes(push);
  const matches = (s: LazyScopeInfo): boolean => s.selector === undefined || Object.keys(s.selector).length === 0 || labelsMatch(s.selector, labels);
  return all.find((s) => s.namespace === namespace && matches(s)) ?? all.find((s) => s.namespace === push.mesh.rootNamespace && matches(s));
}

/** The fallback's cluster name for a LazyScope: the registry host's outbound cluster, or a static one for an address. */
export function fallbackCluster(scope: LazyScopeInfo): { cluster: string; host: string | undefined } {
  const f = scope.settings.fallback;
  if (f.kind === 'target' && isIPAddress(f.host)) return { cluster: `sextant-lazy-fallback|${f.host}|${f.port}`, host: undefined };
  const host = resolveHost(f.host, scope.namespace);
  return { cluster: `outbound|${f.port}||${host}`, host };
}

/** The fallback of a lazy proxy (its Sidecar is managed), or undefined for every other proxy. */
export function lazyFallbackFor(push: SextantPushContext, proxy: Proxy): LazyFallback | undefined {
  if (proxy.type !== 'sidecar' || proxy.generator === 'grpc' || isHub(proxy)) return undefined;
  const sidecar = sidecarScope(push, proxy).sidecar;
  if (sidecar === undefined || !isManagedSidecar(sidecar.resource)) return undefined;
  return push.memoize(`lazy|fallback|${sidecar.key}`, () => {
    const named = sidecar.resource.metadata.annotations?.[LAZY_SCOPE_ANNOTATION];
    const scope = named !== undefined ? lazyScopes(push).find((s) => `${s.namespace}/${s.name}` === named) : undefined;
    if (scope === undefined) return undefined; // its LazyScope is gone: the Sidecar's own scope, Istio's catch-all
    const { cluster, host } = fallbackCluster(scope);
    return { scope, cluster, hub: scope.settings.fallback.kind === 'hub', host };
  });
}

/** The port of an outbound route configuration name (`PORT` or `BIND:PORT`). */
function routePort(name: string): number | undefined {
  const n = Number(name.slice(name.lastIndexOf(':') + 1));
  return Number.isInteger(n) && n > 0 && n < 65536 ? n : undefined;
}

function timeout(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${(ms / 1000).toFixed(3)}s`;
}

/** The catch-all virtual host of a lazy proxy's route configuration on `port`. */
function fallbackVirtualHost(fb: LazyFallback, namespace: string, port: number): ProtoJson {
  const route: ProtoJson = {
    name: FALLBACK_VHOST,
    match: { prefix: '/' },
    route: {
      cluster: fb.cluster,
      timeout: timeout(fb.scope.settings.fallback.timeoutMs),
      // another replica when one cannot be reached; the flags of the last attempt when none can
      retryPolicy: { retryOn: 'connect-failure,refused-stream,reset', numRetries: 2, retryHostPredicate: [{ name: 'envoy.retry_host_predicates.previous_hosts' }], hostSelectionRetryMaxAttempts: 5 },
    },
  };
  if (fb.hub) route['requestHeadersToAdd'] = [{ header: { key: HUB_SCOPE_HEADER, value: `${namespace}/${port}` }, appendAction: 'OVERWRITE_IF_EXISTS_OR_ADD' }];
  return { name: FALLBACK_VHOST, domains: ['*'], routes: [route], includeRequestAttemptCount: true };
}

const lazyRouteCache = new WeakMap<ProtoJson, ProtoJson>();

/**
 * A lazy proxy's route configuration: Istio's catch-all (`allow_any` / `block_all`) replaced
 * by the fallback. Other proxies' configurations are returned as they are.
 */
export function lazyRoutes(push: SextantPushContext, proxy: Proxy, rc: ProtoJson): ProtoJson {
  const fb = lazyFallbackFor(push, proxy);
  if (fb === undefined) return rc;
  const port = routePort(String(rc['name'] ?? ''));
  if (port === undefined) return rc;
  // one rewrite per route configuration object (memoized per scope in the snapshot)
  const hit = lazyRouteCache.get(rc);
  if (hit !== undefined) return hit;
  const vhosts = ((rc['virtualHosts'] as ProtoJson[] | undefined) ?? []).filter((v) => v['name'] !== 'allow_any' && v['name'] !== 'block_all');
  vhosts.push(fallbackVirtualHost(fb, proxy.namespace, port));
  const out = { ...rc, virtualHosts: vhosts };
  lazyRouteCache.set(rc, out);
  return out;
}

/** A lazy proxy's clusters: a static cluster for a fallback given as an address. */
export function lazyClusters(push: SextantPushContext, proxy: Proxy, clusters: ProtoJson[]): ProtoJson[] {
  const fb = lazyFallbackFor(push, proxy);
  if (fb === undefined || fb.host !== undefined) return clusters;
  const f = fb.scope.settings.fallback;
  return [...clusters, push.memoize(`lazy|static|${fb.cluster}`, () => ({
    name: fb.cluster,
    type: 'STATIC',
    connectTimeout: '10s',
    loadAssignment: { clusterName: fb.cluster, endpoints: [{ lbEndpoints: [{ endpoint: { address: { socketAddress: { address: f.host, portValue: f.port } } } }] }] },
  }))];
}

// ---------------------------------------------------------------- the hub

/** Namespaces with lazy workloads (a managed Sidecar): the hub serves their callers' semantics. */
export function hubNamespaces(push: SextantPushContext): readonly string[] {
  return push.memoize('lazy|hub-namespaces', () => {
    const out: string[] = [];
    for (const [ns, list] of push.sidecarsByNamespace) if (list.some((s) => isManagedSidecar(s.resource))) out.push(ns);
    return out.sort();
  });
}

/** Every HTTP port of the registry's services: a first call may name any of them. */
export function meshHttpPorts(push: SextantPushContext): readonly number[] {
  return push.memoize('lazy|http-ports', () => {
    const ports = new Set<number>();
    for (const s of push.registry.services) for (const p of s.ports) if (isHttpProtocol(p.protocol)) ports.add(p.port);
    return [...ports].sort((a, b) => a - b);
  });
}

/** The hub's listener ports: the hub port of every LazyScope whose fallback is a hub. */
function hubPorts(push: SextantPushContext): number[] {
  return [...new Set(lazyScopes(push).filter((s) => s.settings.fallback.kind === 'hub').map((s) => s.settings.fallback.port))].sort((a, b) => a - b);
}

/** The scope keys (`NAMESPACE/PORT`) a hub serves and the route configuration of each, bounded. */
export function hubScopes(push: SextantPushContext): readonly { key: string; routeName: string }[] {
  return push.memoize('lazy|hub-scopes', () => {
    const out: { key: string; routeName: string }[] = [];
    for (const ns of hubNamespaces(push)) {
      for (const port of meshHttpPorts(push)) {
        if (out.length >= MAX_HUB_SCOPES) return out;
        out.push({ key: `${ns}/${port}`, routeName: `${HUB_ROUTE_PREFIX}${ns}|${port}` });
      }
    }
    return out;
  });
}

/** The hub's access log: ALS to the pilot (`xds-grpc`), log name `sextant-hub`, as a gateway reports. */
function hubAccessLog(): ProtoJson {
  return {
    name: HTTP_GRPC_ACCESS_LOG_NAME,
    typedConfig: {
      '@type': HTTP_GRPC_ACCESS_LOG_TYPE,
      commonConfig: {
        logName: HUB_LOG_NAME,
        grpcService: { envoyGrpc: { clusterName: XDS_GRPC_CLUSTER } },
        transportApiVersion: 'V3',
        filterStateObjectsToLog: PEER_STATE_OBJECTS,
        customTags: [{ tag: 'reporter', literal: { value: 'gateway' } }],
      },
    },
  };
}

/**
 * A hub's listeners: one per hub port on the hub's address, an HTTP connection manager whose
 * route configuration is the caller's (scoped by `x-sextant-scope`), adding nothing to the
 * request (no request id, no x-forwarded-for) and keeping the caller's source address.
 */
export function hubListeners(push: SextantPushContext, proxy: Proxy): ProtoJson[] {
  const ip = proxy.ipAddresses[0] ?? '0.0.0.0';
  return push.memoize(`lazy|hub-lds|${ip}`, () => {
    ensureType(ORIGINAL_SRC_TYPE);
    const scopes = hubScopes(push);
    return hubPorts(push).map((port) => {
      const hcm: ProtoJson = {
        '@type': HCM_TYPE,
        statPrefix: `sextant_hub_${port}`,
        httpFilters: httpFilters(),
        useRemoteAddress: false,
        skipXffAppend: true,
        generateRequestId: false,
        normalizePath: true,
        pathWithEscapedSlashesAction: 'KEEP_UNCHANGED',
        upgradeConfigs: [{ upgradeType: 'websocket' }],
        streamIdleTimeout: '0s',
        scopedRoutes: {
          name: 'sextant-hub',
          scopeKeyBuilder: { fragments: [{ headerValueExtractor: { name: HUB_SCOPE_HEADER } }] },
          rdsConfigSource: ADS_CONFIG_SOURCE,
          scopedRouteConfigurationsList: {
            scopedRouteConfigurations: scopes.map((s) => ({ name: s.routeName, routeConfigurationName: s.routeName, key: { fragments: [{ stringKey: s.key }] } })),
          },
        },
        accessLog: [hubAccessLog()],
      };
      Object.assign(hcm, pathNormalization(push.mesh.pathNormalization.normalization));
      return {
        name: `sextant-hub_${ip}_${port}`,
        address: { socketAddress: { address: ip, portValue: port } },
        trafficDirection: 'OUTBOUND',
        listenerFilters: [{ name: 'envoy.filters.listener.original_src', typedConfig: { '@type': ORIGINAL_SRC_TYPE } }],
        filterChains: [{ filters: [{ name: 'envoy.filters.network.http_connection_manager', typedConfig: hcm }] }],
      };
    });
  });
}

/** The route configuration names a hub's listeners refer to. */
export function hubRouteNames(push: SextantPushContext): string[] {
  return hubScopes(push).map((s) => s.routeName);
}

/**
 * A hub route configuration `sextant-hub|NAMESPACE|PORT`: the one a sidecar of that namespace
 * with full scope gets for the port (its VirtualServices, DestinationRules, outbound traffic
 * policy), renamed, with the scope header removed before the request goes on.
 */
export function hubRoute(push: SextantPushContext, name: string): ProtoJson | undefined {
  if (!name.startsWith(HUB_ROUTE_PREFIX)) return undefined;
  const [ns = '', portText = ''] = name.slice(HUB_ROUTE_PREFIX.length).split('|');
  const port = Number(portText);
  if (ns === '' || !Number.isInteger(port)) return undefined;
  return push.memoize(`lazy|hub-rds|${name}`, () => {
    // a caller of the namespace, seen with full scope (a router proxy has no Sidecar)
    const caller: Proxy = {
      id: `router~0.0.0.0~sextant-hub.${ns}~${ns}.svc.cluster.local`, type: 'router', ipAddresses: [], podName: 'sextant-hub', namespace: ns,
      dnsDomain: `${ns}.svc.cluster.local`, labels: {}, metadata: {}, clusterId: 'Kubernetes', interceptionMode: 'REDIRECT', generator: 'envoy',
    };
    const rc = routeConfiguration(push, caller, String(port));
    if (rc === undefined) return undefined;
    return { ...rc, name, requestHeadersToRemove: [HUB_SCOPE_HEADER] };
  });
}
