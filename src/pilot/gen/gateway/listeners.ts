// LDS for gateways, as istiod builds it from the merged gateway: a listener per port (and
// `bind`), `ADDRESS_PORT`. Plain HTTP: one connection manager with RDS `http.PORT`. TLS ports:
// a filter chain per server told apart by SNI (Envoy's tls_inspector), terminating HTTPS into a
// connection manager with RDS `https.…`, terminating TLS into tcp_proxy, passing TLS through to
// the `tls` routes of bound VirtualServices by SNI, or (AUTO_PASSTHROUGH) to the cluster the
// SNI names. Plain TCP: tcp_proxy to the `tcp` routes. A port with no usable chain gets no listener.
import { HCM_TYPE, TCP_PROXY_TYPE } from '../../../envoy/index.ts';
import type { ProtoJson } from '../../../envoy/index.ts';
import type { RouteDestination, TCPRoute, TLSRoute, L4MatchAttributes, TLSMatchAttributes, VirtualServiceSpec } from '../../../api/index.ts';
import type { Proxy } from '../../model.ts';
import type { Indexed, SextantPushContext } from '../../push/context.ts';
import { resolveHost } from '../../push/context.ts';
import { sidecarScope } from '../../push/scope.ts';
import { ADS_CONFIG_SOURCE } from '../clusters.ts';
import { httpFilters, pathNormalization } from '../listeners.ts';
import { TLS_INSPECTOR } from '../mtls.ts';
import { clusterName, listenerName } from '../names.ts';
import { mergedGateway } from './merge.ts';
import type { GatewayServer, MergedPort } from './merge.ts';
import { intersectHosts, virtualServicesForGateway } from './routes.ts';
import { serverTlsContext } from './tls.ts';

/** The ALPN values of Istio's mesh mTLS, which AUTO_PASSTHROUGH chains match on. */
const ISTIO_MTLS_ALPNS = ['istio-peer-exchange', 'istio-http/1.0', 'istio-http/1.1', 'istio-h2'];

function connectionManager(push: SextantPushContext, statPrefix: string, routeName: string): ProtoJson {
  return {
    name: 'envoy.filters.network.http_connection_manager',
    typedConfig: {
      '@type': HCM_TYPE,
      statPrefix,
      httpFilters: httpFilters(),
      useRemoteAddress: true,
      ...pathNormalization(push.mesh.pathNormalization.normalization),
      upgradeConfigs: [{ upgradeType: 'websocket' }],
      rds: { configSource: ADS_CONFIG_SOURCE, routeConfigName: routeName },
    },
  };
}

function tlsSocket(gs: GatewayServer, http: boolean): ProtoJson {
  return { name: 'envoy.transport_sockets.tls', typedConfig: serverTlsContext(gs.server.tls ?? {}, http) };
}

/** SNI match of a chain: none when the server answers any name. */
function sniMatch(names: readonly string[], extra: ProtoJson = {}): ProtoJson | undefined {
  const m: ProtoJson = { ...extra };
  if (names.length > 0 && !names.includes('*')) m['serverNames'] = [...names];
  return Object.keys(m).length > 0 ? m : undefined;
}

function gatewayNamesOf(list: readonly string[] | undefined, vs: Indexed<VirtualServiceSpec>): string[] {
  return (list ?? []).map((g) => (g === 'mesh' || g.includes('/') ? g : `${vs.namespace}/${g}`));
}

/** Istio's l4SingleMatch: the Gateway's port and this gateway, when the match names them. */
function l4Matches(m: L4MatchAttributes | TLSMatchAttributes, gs: GatewayServer, vs: Indexed<VirtualServiceSpec>): boolean {
  if (m.port !== undefined && m.port !== 0 && m.port !== gs.serverPort) return false;
  const gws = gatewayNamesOf(m.gateways, vs);
  return gws.length === 0 || gws.includes(gs.gatewayName);
}

/** tcp_proxy to a route's destinations (one cluster, or weighted clusters), Istio's cluster names. */
function tcpProxy(push: SextantPushContext, proxy: Proxy, vs: Indexed<VirtualServiceSpec>, dests: readonly RouteDestination[], listenPort: number): ProtoJson | undefined {
  const name = (d: RouteDestination): string => {
    const host = resolveHost(d.destination.host, vs.namespace);
    const svc = push.serviceFor(host, proxy.namespace);
    const port = d.destination.port?.number ?? (svc && svc.ports.length === 1 ? svc.ports[0]?.port : undefined) ?? listenPort;
    return clusterName('outbound', port, d.destination.subset ?? '', host);
  };
  if (dests.length === 0) return undefined;
  const cfg: ProtoJson = { '@type': TCP_PROXY_TYPE };
  if (dests.length === 1) {
    cfg['statPrefix'] = name(dests[0]!);
    cfg['cluster'] = name(dests[0]!);
  } else {
    const weighted = dests.map((d) => ({ name: name(d), weight: d.weight ?? 0 })).filter((w) => w.weight > 0);
    if (weighted.length === 0) return undefined;
    cfg['statPrefix'] = weighted[0]!.name;
    cfg['weightedClusters'] = { clusters: weighted };
  }
  return { name: 'envoy.filters.network.tcp_proxy', typedConfig: cfg };
}

/** The tcp_proxy of the first `tcp` route of a bound VirtualService that matches the server (Istio's choice). */
function tcpRouteFilter(push: SextantPushContext, proxy: Proxy, gs: GatewayServer, listenPort: number): ProtoJson | undefined {
  for (const vs of virtualServicesForGateway(push, gs.gatewayName, proxy.namespace)) {
    if (intersectHosts(gs.hosts, vs).length === 0) continue;
    for (const r of (vs.spec.tcp ?? []) as TCPRoute[]) {
      if ((r.route ?? []).length === 0) continue;
      const matches = r.match ?? [];
      if (matches.length > 0 && !matches.some((m) => l4Matches(m, gs, vs))) continue;
      const f = tcpProxy(push, proxy, vs, r.route ?? [], listenPort);
      if (f !== undefined) return f;
    }
  }
  return undefined;
}

/** PASSTHROUGH: a chain per `tls` route match of the bound VirtualServices, by its SNI hosts. */
function passthroughChains(push: SextantPushContext, proxy: Proxy, gs: GatewayServer, listenPort: number, taken: Set<string>): ProtoJson[] {
  const out: ProtoJson[] = [];
  for (const vs of virtualServicesForGateway(push, gs.gatewayName, proxy.namespace)) {
    if (intersectHosts(gs.hosts, vs).length === 0) continue;
    for (const r of (vs.spec.tls ?? []) as TLSRoute[]) {
      if ((r.route ?? []).length === 0) continue;
      for (const m of r.match ?? []) {
        if (!l4Matches(m, gs, vs)) continue;
        const sni = (m.sniHosts ?? []).map((h) => h.toLowerCase());
        // Envoy refuses two chains with the same match: an SNI host goes to its first route.
        if (sni.some((h) => taken.has(h))) continue;
        const f = tcpProxy(push, proxy, vs, r.route ?? [], listenPort);
        if (f === undefined) continue;
        for (const h of sni) taken.add(h);
        const match = sniMatch(sni);
        out.push({ ...(match ? { filterChainMatch: match } : {}), filters: [f] });
      }
    }
  }
  return out;
}

/**
 * AUTO_PASSTHROUGH: a chain per mesh service port (and subset) whose host the server admits,
 * matching the SNI Istio's sidecars send (`outbound_.PORT_.SUBSET_.HOST`) with Istio's mTLS
 * ALPNs, to the cluster of that name (the gateway's SNI-DNAT clusters, clusters.ts).
 */
function autoPassthroughChains(push: SextantPushContext, proxy: Proxy, gs: GatewayServer): ProtoJson[] {
  const out: ProtoJson[] = [];
  for (const c of sniDnatTargets(push, proxy, gs.sniHosts)) {
    out.push({
      filterChainMatch: { serverNames: [c], applicationProtocols: [...ISTIO_MTLS_ALPNS] },
      filters: [{ name: 'envoy.filters.network.tcp_proxy', typedConfig: { '@type': TCP_PROXY_TYPE, statPrefix: c, cluster: c } }],
    });
  }
  return out;
}

/** The SNI-DNAT cluster names (`outbound_.PORT_.SUBSET_.HOST`) for mesh services a host list admits. */
export function sniDnatTargets(push: SextantPushContext, proxy: Proxy, hosts: readonly string[]): string[] {
  const out: string[] = [];
  const all = hosts.length === 0 || hosts.includes('*');
  for (const svc of sidecarScope(push, proxy).services) {
    if (svc.location === 'MESH_EXTERNAL') continue;
    if (!all && !hosts.some((h) => h === svc.hostname || (h.startsWith('*') && svc.hostname.endsWith(h.slice(1))))) continue;
    const subsets = ['', ...(push.destinationRuleFor(svc, proxy.namespace)?.spec.subsets ?? []).map((s) => s.name)];
    for (const p of svc.ports) {
      if (p.protocol === 'UDP') continue;
      for (const subset of subsets) out.push(sniDnatClusterName(p.port, subset, svc.hostname));
    }
  }
  return out;
}

/** Istio's DNS-SRV form of a cluster name, the SNI a sidecar sends: `outbound_.9080_.v1_.reviews.default.svc.cluster.local`. */
export function sniDnatClusterName(port: number, subset: string, host: string): string {
  return `outbound_.${port}_.${subset}_.${host}`;
}

function portListener(push: SextantPushContext, proxy: Proxy, p: MergedPort): ProtoJson | undefined {
  const address = p.bind ?? '0.0.0.0';
  const name = listenerName(address, p.port);
  const chains: ProtoJson[] = [];
  if (p.family === 'http') {
    chains.push({ filters: [connectionManager(push, `outbound_${address}_${p.port}`, p.servers[0]!.routeName!)] });
  } else if (p.family === 'tcp') {
    const f = tcpRouteFilter(push, proxy, p.servers[0]!, p.port);
    if (f !== undefined) chains.push({ filters: [f] });
  } else {
    const taken = new Set<string>();
    for (const gs of p.servers) {
      const match = sniMatch(gs.sniHosts);
      if (gs.kind === 'https') {
        chains.push({
          ...(match ? { filterChainMatch: match } : {}),
          transportSocket: tlsSocket(gs, true),
          filters: [connectionManager(push, gs.server.name ?? `outbound_${address}_${p.port}`, gs.routeName!)],
        });
      } else if (gs.kind === 'tls-terminate') {
        const f = tcpRouteFilter(push, proxy, gs, p.port);
        if (f !== undefined) chains.push({ ...(match ? { filterChainMatch: match } : {}), transportSocket: tlsSocket(gs, false), filters: [f] });
      } else if (gs.kind === 'passthrough') {
        chains.push(...passthroughChains(push, proxy, gs, p.port, taken));
      } else if (gs.kind === 'auto-passthrough') {
        chains.push(...autoPassthroughChains(push, proxy, gs));
      }
    }
  }
  if (chains.length === 0) return undefined;
  const l: ProtoJson = { name, address: { socketAddress: { address, portValue: p.port } }, filterChains: chains, trafficDirection: 'OUTBOUND' };
  if (p.family === 'tls') l['listenerFilters'] = [TLS_INSPECTOR];
  return l;
}

/** Every listener of a gateway proxy. */
export function gatewayListeners(push: SextantPushContext, proxy: Proxy): ProtoJson[] {
  const out: ProtoJson[] = [];
  for (const p of mergedGateway(push, proxy).ports) {
    const l = portListener(push, proxy, p);
    if (l !== undefined) out.push(l);
  }
  return out;
}
