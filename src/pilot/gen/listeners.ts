// LDS for a sidecar: `virtualOutbound` (15001) and `virtualInbound` (15006) when traffic is
// captured, outbound listeners per service port (HTTP → connection manager with RDS named
// by port; TCP → tcp_proxy), Sidecar egress listeners (`bind` + port) and ingress listeners
// (`bind` + `defaultEndpoint`, e.g. for captureMode NONE), with Istio's names.
import {
  BLACKHOLE_CLUSTER, CORS_TYPE, FAULT_TYPE, HCM_TYPE, PASSTHROUGH_CLUSTER, ROUTER_TYPE, TCP_PROXY_TYPE,
  VIRTUAL_INBOUND_LISTENER, VIRTUAL_OUTBOUND_LISTENER,
} from '../../envoy/index.ts';
import type { ProtoJson } from '../../envoy/index.ts';
import type { Proxy } from '../model.ts';
import { isHttpProtocol, labelsMatch, portProtocol } from '../../registry/index.ts';
import type { Service, TCPRoute, VirtualServiceSpec } from '../../registry/index.ts';
import type { Indexed, SextantPushContext } from '../push/context.ts';
import { hostMatches, resolveHost } from '../push/context.ts';
import { virtualServiceFor } from './routes.ts';
import { sidecarScope } from '../push/scope.ts';
import type { EgressScope, SidecarScope } from '../push/scope.ts';
import { ADS_CONFIG_SOURCE } from './clusters.ts';
import { INBOUND_PASSTHROUGH_CLUSTER, clusterName, listenerName } from './names.ts';
import { TLS_INSPECTOR, hasWorkloadCertificate, inboundChainsFor, needsTlsInspector, peerAuthenticationMode } from './mtls.ts';
import type { PeerAuthenticationMode } from './mtls.ts';
import { inboundPorts } from './inbound.ts';
import { applyAuthorization } from './rbac.ts';
import { applyAdaptiveLimits } from './adaptive.ts';
import { applyRateLimits } from './ratelimit.ts';
import { applyLanes } from './lanes.ts';
import { ensureType } from './protos.ts';
import { lazyFallbackFor, meshHttpPorts } from './lazyscope.ts';
import type { PathNormalizationType } from '../mesh-config/index.ts';

const TLS_INSPECTOR_TYPE = 'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector';

const OUTBOUND_PORT = 15001;
const INBOUND_PORT = 15006;

/** The HTTP filters of every sidecar connection manager: fault and CORS (per-route config), router last. */
export function httpFilters(): ProtoJson[] {
  return [
    { name: 'envoy.filters.http.fault', typedConfig: { '@type': FAULT_TYPE } },
    { name: 'envoy.filters.http.cors', typedConfig: { '@type': CORS_TYPE } },
    { name: 'envoy.filters.http.router', typedConfig: { '@type': ROUTER_TYPE } },
  ];
}

/**
 * A connection manager's path normalization for MeshConfig `pathNormalization` (Istio's
 * mapping): BASE (the default) is `normalizePath`; MERGE_SLASHES adds `mergeSlashes`;
 * DECODE_AND_MERGE_SLASHES also decodes escaped slashes; NONE turns normalization off.
 */
export function pathNormalization(type: PathNormalizationType): { normalizePath: boolean; mergeSlashes?: true; pathWithEscapedSlashesAction?: string } {
  switch (type) {
    case 'NONE': return { normalizePath: false };
    case 'MERGE_SLASHES': return { normalizePath: true, mergeSlashes: true };
    case 'DECODE_AND_MERGE_SLASHES': return { normalizePath: true, mergeSlashes: true, pathWithEscapedSlashesAction: 'UNESCAPE_AND_FORWARD' };
    default: return { normalizePath: true };
  }
}

function hcmFilter(push: SextantPushContext, statPrefix: string, route: { rds: string } | { inline: ProtoJson }): ProtoJson {
  const hcm: ProtoJson = {
    '@type': HCM_TYPE,
    statPrefix,
    httpFilters: httpFilters(),
    useRemoteAddress: false,
    normalizePath: true,
    pathWithEscapedSlashesAction: 'KEEP_UNCHANGED',
    upgradeConfigs: [{ upgradeType: 'websocket' }],
    streamIdleTimeout: '0s',
  };
  Object.assign(hcm, pathNormalization(push.mesh.pathNormalization.normalization));
  if ('rds' in route) hcm['rds'] = { configSource: ADS_CONFIG_SOURCE, routeConfigName: route.rds };
  else hcm['routeConfig'] = route.inline;
  return { name: 'envoy.filters.network.http_connection_manager', typedConfig: hcm };
}

function tcpProxyFilter(statPrefix: string, target: { cluster: string } | { weighted: { name: string; weight: number }[] }): ProtoJson {
  const cfg: ProtoJson = { '@type': TCP_PROXY_TYPE, statPrefix };
  if ('cluster' in target) cfg['cluster'] = target.cluster;
  else cfg['weightedClusters'] = { clusters: target.weighted };
  return { name: 'envoy.filters.network.tcp_proxy', typedConfig: cfg };
}

function socketAddress(address: string, port: number): ProtoJson {
  return { socketAddress: { address, portValue: port } };
}

/** The tcp_proxy target for a TCP service port: its VirtualService tcp route, else its cluster. */
function tcpTarget(push: SextantPushContext, proxy: Proxy, vss: readonly Indexed<VirtualServiceSpec>[], svc: Service, port: number): { cluster: string } | { weighted: { name: string; weight: number }[] } {
  const vs = virtualServiceFor(vss, svc);
  const l4 = (m: { port?: number; sourceLabels?: Record<string, string>; sourceNamespace?: string; gateways?: string[] }): boolean =>
    (m.port === undefined || m.port === port) && labelsMatch(m.sourceLabels, proxy.labels) &&
    (m.sourceNamespace === undefined || m.sourceNamespace === proxy.namespace) && (!m.gateways?.length || m.gateways.includes('mesh'));
  // TLS services are routed by SNI (tls routes), others by port (tcp routes), as in Istio.
  const sni = svc.ports.some((p) => p.port === port && (p.protocol === 'TLS' || p.protocol === 'HTTPS'));
  const tlsRoute = sni ? (vs?.spec.tls ?? []).find((r) => (r.match ?? []).some((m) => l4(m) && (m.sniHosts ?? []).some((h) => hostMatches(resolveHost(h, vs?.namespace ?? proxy.namespace), svc.hostname)))) : undefined;
  const route = tlsRoute ?? (vs?.spec.tcp ?? []).find((r: TCPRoute) => !r.match || r.match.length === 0 || r.match.some(l4));
  const dests = route?.route ?? [];
  const name = (d: { destination?: { host?: string; subset?: string; port?: { number?: number } } }): string => {
    const host = d.destination?.host ? resolveHost(d.destination.host, vs?.namespace ?? proxy.namespace) : svc.hostname;
    const target = push.serviceFor(host, proxy.namespace);
    const p = d.destination?.port?.number ?? (target && target.ports.length === 1 ? target.ports[0]?.port : undefined) ?? port;
    return clusterName('outbound', p, d.destination?.subset ?? '', host);
  };
  if (dests.length === 1 && dests[0]) return { cluster: name(dests[0]) };
  if (dests.length > 1) return { weighted: dests.map((d) => ({ name: name(d), weight: d.weight ?? 0 })).filter((w) => w.weight > 0) };
  return { cluster: clusterName('outbound', port, '', svc.hostname) };
}

interface OutboundListenerOpts {
  bind: string;
  bindToPort: boolean;
  routeName: string;
}

/** Outbound listeners of one egress listener of the scope. */
function egressListeners(push: SextantPushContext, proxy: Proxy, scope: SidecarScope, egress: EgressScope, captured: boolean, taken: Set<string>): ProtoJson[] {
  const out: ProtoJson[] = [];
  const el = egress.listener;
  const noneCapture = !captured || el.captureMode === 'NONE';
  const defaultBind = noneCapture ? '127.0.0.1' : '0.0.0.0';
  const add = (name: string, l: ProtoJson): void => {
    if (taken.has(name)) return; // first declaration wins, as in Istio's listener conflicts
    taken.add(name);
    out.push(l);
  };
  const listener = (address: string, port: number, opts: OutboundListenerOpts, chain: ProtoJson): ProtoJson => {
    const l: ProtoJson = {
      name: listenerName(address, port),
      address: socketAddress(address, port),
      filterChains: [chain],
      trafficDirection: 'OUTBOUND',
    };
    if (!opts.bindToPort) l['bindToPort'] = false;
    return l;
  };
  if (el.port?.number) {
    const port = el.port.number;
    const bind = el.bind ?? defaultBind;
    const bindToPort = noneCapture || el.bind !== undefined;
    const http = isHttpProtocol(portProtocol(el.port));
    const routeName = el.bind ? `${el.bind}:${port}` : String(port);
    if (http) {
      add(listenerName(bind, port), listener(bind, port, { bind, bindToPort, routeName }, { filters: [hcmFilter(push, `outbound_${bind}_${port}`, { rds: routeName })] }));
    } else {
      const svc = egress.services.find((s) => s.ports.some((p) => p.port === port)) ?? egress.services[0];
      const target = svc ? tcpTarget(push, proxy, egress.virtualServices, svc, port) : { cluster: scope.outboundTrafficPolicy === 'REGISTRY_ONLY' ? BLACKHOLE_CLUSTER : PASSTHROUGH_CLUSTER };
      add(listenerName(bind, port), listener(bind, port, { bind, bindToPort, routeName }, { filters: [tcpProxyFilter(svc ? `outbound|${port}||${svc.hostname}` : PASSTHROUGH_CLUSTER, target)] }));
    }
    return out;
  }
  // The catch-all egress: a listener per service port, HTTP ports shared through RDS.
  const httpPorts = new Set<number>();
  for (const svc of egress.services) for (const p of svc.ports) if (isHttpProtocol(p.protocol)) httpPorts.add(p.port);
  // lazy scope: a first call may name any HTTP port of the mesh; its catch-all goes to the fallback
  if (lazyFallbackFor(push, proxy) !== undefined) {
    const tcpInScope = new Set<number>();
    for (const svc of egress.services) for (const p of svc.ports) if (!isHttpProtocol(p.protocol)) tcpInScope.add(p.port);
    for (const port of meshHttpPorts(push)) if (!tcpInScope.has(port)) httpPorts.add(port);
  }
  for (const port of [...httpPorts].sort((a, b) => a - b)) {
    add(listenerName(defaultBind, port), listener(defaultBind, port, { bind: defaultBind, bindToPort: noneCapture, routeName: String(port) }, {
      filters: [hcmFilter(push, `outbound_${defaultBind}_${port}`, { rds: String(port) })],
    }));
  }
  // TCP ports: one listener per address and port; TLS services share it by SNI, as in Istio.
  const tcp = new Map<string, { address: string; port: number; chains: ProtoJson[]; plain: boolean; sni: boolean }>();
  for (const svc of egress.services) {
    for (const p of svc.ports) {
      if (isHttpProtocol(p.protocol) || httpPorts.has(p.port)) continue;
      const addrs = !noneCapture && svc.addresses.length > 0 ? svc.addresses.filter((a) => !a.includes('/')) : [defaultBind];
      const sni = (p.protocol === 'TLS' || p.protocol === 'HTTPS') && !svc.hostname.startsWith('*');
      for (const a of addrs) {
        const key = listenerName(a, p.port);
        let entry = tcp.get(key);
        if (!entry) tcp.set(key, (entry = { address: a, port: p.port, chains: [], plain: false, sni: false }));
        const filters = [tcpProxyFilter(clusterName('outbound', p.port, '', svc.hostname), tcpTarget(push, proxy, egress.virtualServices, svc, p.port))];
        if (sni) {
          entry.sni = true;
          entry.chains.push({ filterChainMatch: { serverNames: [svc.hostname] }, filters });
        } else if (!entry.plain) {
          entry.plain = true; // the first plain TCP service on an address and port wins
          entry.chains.push({ filters });
        }
      }
    }
  }
  for (const [name, e] of tcp) {
    const l = listener(e.address, e.port, { bind: e.address, bindToPort: noneCapture, routeName: '' }, e.chains[0] as ProtoJson);
    l['filterChains'] = e.chains;
    if (e.sni) {
      ensureType(TLS_INSPECTOR_TYPE);
      l['listenerFilters'] = [{ name: 'envoy.filters.listener.tls_inspector', typedConfig: { '@type': TLS_INSPECTOR_TYPE } }];
    }
    add(name, l);
  }
  return out;
}

/** A proxy without a workload certificate serves plaintext only, whatever PeerAuthentication says. */
function inboundMtlsMode(push: SextantPushContext, proxy: Proxy, port: number): PeerAuthenticationMode {
  return hasWorkloadCertificate(proxy) ? peerAuthenticationMode(push, proxy, port) : 'DISABLE';
}

function inboundChain(push: SextantPushContext, port: number, http: boolean, statAddress: string): ProtoJson {
  const cluster = clusterName('inbound', port, '', '');
  if (http) {
    return {
      name: cluster,
      filters: [hcmFilter(push, `inbound_${statAddress}_${port}`, {
        inline: {
          name: cluster,
          virtualHosts: [{ name: `inbound|http|${port}`, domains: ['*'], routes: [{ name: 'default', match: { prefix: '/' }, route: { cluster, timeout: '0s', maxGrpcTimeout: '0s' }, decorator: { operation: `:${port}/*` } }] }],
          validateClusters: false,
        },
      })],
    };
  }
  return { name: cluster, filters: [tcpProxyFilter(cluster, { cluster })] };
}

const HTTP_INSPECTOR_TYPE = 'type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector';

/**
 * REDIRECT capture: HTTP to a captured port that no service declares is routed by its Host
 * (ALLOW_ANY: PassthroughCluster; REGISTRY_ONLY: 502), as on the ports services declare. A
 * proxy on plain Node.js sockets cannot read SO_ORIGINAL_DST and knows only the original
 * port of such a connection (`sextant iptables`), so TCP passthrough cannot reach it; the
 * Host can. For Envoy, which can, this chain does what the TCP one would.
 */
function addHttpCatchAll(push: SextantPushContext, vo: ProtoJson, policy: 'ALLOW_ANY' | 'REGISTRY_ONLY'): void {
  const vhost = policy === 'REGISTRY_ONLY'
    ? { name: 'block_all', domains: ['*'], routes: [{ name: 'block_all', match: { prefix: '/' }, directResponse: { status: 502 } }] }
    : { name: 'allow_any', domains: ['*'], routes: [{ name: 'allow_any', match: { prefix: '/' }, route: { cluster: PASSTHROUGH_CLUSTER, timeout: '0s', maxGrpcTimeout: '0s' } }] };
  ensureType(HTTP_INSPECTOR_TYPE);
  vo['listenerFilters'] = [{ name: 'envoy.filters.listener.http_inspector', typedConfig: { '@type': HTTP_INSPECTOR_TYPE } }];
  (vo['filterChains'] as ProtoJson[]).push({
    name: 'virtualOutbound-catchall-http',
    filterChainMatch: { applicationProtocols: ['http/1.0', 'http/1.1', 'h2c'] },
    filters: [hcmFilter(push, policy === 'REGISTRY_ONLY' ? BLACKHOLE_CLUSTER : PASSTHROUGH_CLUSTER, { inline: { name: 'virtualOutbound-catchall-http', virtualHosts: [vhost], validateClusters: false } })],
  });
}

/** Every listener of an Envoy-style sidecar. */
export function generateListeners(push: SextantPushContext, proxy: Proxy): ProtoJson[] {
  const scope = sidecarScope(push, proxy);
  const captured = proxy.interceptionMode !== 'NONE';
  const inbound = inboundPorts(push, proxy);
  // Outbound listeners depend only on the scope and the capture mode: shared across proxies.
  // TCP and TLS routes may match the source's labels: then listeners differ by labels.
  const labelsKey = scope.sourceLabelDependent ? JSON.stringify(Object.entries(proxy.labels).sort()) : '';
  const outbound = push.memoize(`lds-out|${scope.namespace}|${scope.sidecar?.key ?? ''}|${proxy.interceptionMode}|${labelsKey}`, () => {
    const taken = new Set<string>();
    const out: ProtoJson[] = [];
    // Egress listeners with a port come first so they win over the catch-all's ports.
    const ordered = [...scope.egress].sort((a, b) => Number(!a.listener.port) - Number(!b.listener.port));
    for (const e of ordered) out.push(...egressListeners(push, proxy, scope, e, captured, taken));
    if (captured) {
      const fallback = scope.outboundTrafficPolicy === 'REGISTRY_ONLY' ? BLACKHOLE_CLUSTER : PASSTHROUGH_CLUSTER;
      const vo: ProtoJson = {
        name: VIRTUAL_OUTBOUND_LISTENER,
        address: socketAddress('0.0.0.0', OUTBOUND_PORT),
        useOriginalDst: true,
        filterChains: [{ name: 'PassthroughFilterChain', filters: [tcpProxyFilter(fallback, { cluster: fallback })] }],
        trafficDirection: 'OUTBOUND',
      };
      if (proxy.interceptionMode === 'REDIRECT') addHttpCatchAll(push, vo, scope.outboundTrafficPolicy);
      out.push(vo);
    }
    return out;
  });
  const bound: ProtoJson[] = [];
  for (const ib of inbound) {
    if (ib.bind === undefined) continue;
    // PeerAuthentication: the port's mTLS chain and/or its plaintext one (src/pilot/gen/mtls.ts)
    const chains = inboundChainsFor(inboundMtlsMode(push, proxy, ib.port), inboundChain(push, ib.port, isHttpProtocol(ib.protocol), ib.bind), isHttpProtocol(ib.protocol));
    bound.push({
      name: listenerName(ib.bind, ib.port),
      address: socketAddress(ib.bind, ib.port),
      ...(needsTlsInspector(chains) ? { listenerFilters: [TLS_INSPECTOR] } : {}),
      filterChains: chains,
      trafficDirection: 'INBOUND',
    });
  }
  // As in Istio, an inbound listener wins over an outbound one on the same address and port.
  const inboundNames = new Set(bound.map((l) => l['name']));
  const listeners = [...outbound.filter((l) => !inboundNames.has(l['name'])), ...bound];
  if (captured) {
    const chains = inbound.filter((i) => i.bind === undefined).flatMap((ib) => inboundChainsFor(inboundMtlsMode(push, proxy, ib.port), {
      ...inboundChain(push, ib.port, isHttpProtocol(ib.protocol), '0.0.0.0'),
      filterChainMatch: { destinationPort: ib.port },
    }, isHttpProtocol(ib.protocol)));
    chains.push({
      name: 'InboundPassthroughFilterChain',
      filters: [tcpProxyFilter(INBOUND_PASSTHROUGH_CLUSTER, { cluster: INBOUND_PASSTHROUGH_CLUSTER })],
    } as ProtoJson as typeof chains[number]);
    listeners.push({
      name: VIRTUAL_INBOUND_LISTENER,
      address: socketAddress('0.0.0.0', INBOUND_PORT),
      listenerFilters: [{ name: 'envoy.filters.listener.original_dst', typedConfig: { '@type': 'type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst' } }, ...(needsTlsInspector(chains) ? [TLS_INSPECTOR] : [])],
      filterChains: chains,
      trafficDirection: 'INBOUND',
    });
  }
  // AuthorizationPolicy: RBAC filters in the inbound chains of the workloads it selects;
  // RateLimit: local rate limits before the router of the inbound ports it covers (ratelimit.ts);
  // AdaptiveLimit: the admission gate before the router of the inbound ports it covers.
  // LaneGroup / SEXTANT_DC: the lanes filter first in every connection manager (lanes.ts).
  return applyLanes(push, proxy, applyAdaptiveLimits(push, proxy, applyRateLimits(push, proxy, applyAuthorization(push, proxy, listeners))));
}

/** The RDS names a sidecar's listeners refer to. */
export function routeNames(listeners: readonly ProtoJson[]): string[] {
  const names = new Set<string>();
  for (const l of listeners) {
    for (const fc of (l['filterChains'] as ProtoJson[] | undefined) ?? []) {
      for (const f of (fc['filters'] as ProtoJson[] | undefined) ?? []) {
        const rds = ((f['typedConfig'] as ProtoJson | undefined)?.['rds'] as ProtoJson | undefined)?.['routeConfigName'];
        if (typeof rds === 'string') names.add(rds);
      }
    }
  }
  return [...names];
}
