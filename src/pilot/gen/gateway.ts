// Gateway proxies (`router~…` nodes): listeners per Gateway server port selected by the
// proxy's labels, and `http.PORT` route configurations from the VirtualServices bound to
// those Gateways, with Istio's names. HTTP servers only; TLS termination is not yet generated.
import { HCM_TYPE, TCP_PROXY_TYPE } from '../../envoy/index.ts';
import type { ProtoJson } from '../../envoy/index.ts';
import type { GatewaySpec } from '../../api/index.ts';
import type { Proxy } from '../model.ts';
import { isHttpProtocol, labelsMatch, portProtocol } from '../../registry/index.ts';
import type { Service } from '../../registry/index.ts';
import type { Indexed, SextantPushContext } from '../push/context.ts';
import { hostMatches, resolveHost } from '../push/context.ts';
import { ADS_CONFIG_SOURCE } from './clusters.ts';
import { httpFilters, pathNormalization } from './listeners.ts';
import { listenerName, clusterName } from './names.ts';
import { translateHttpRoute } from './routes.ts';
import type { RouteContext } from './routes.ts';

type Server = NonNullable<GatewaySpec['servers']>[number];

/** The Gateways whose selector matches the proxy's labels (any namespace, as Istio by default). */
export function gatewaysFor(push: SextantPushContext, proxy: Proxy): Indexed<GatewaySpec>[] {
  return push.gateways.filter((g) => g.spec.selector !== undefined && labelsMatch(g.spec.selector, proxy.labels));
}

function servers(push: SextantPushContext, proxy: Proxy): { gw: Indexed<GatewaySpec>; server: Server; port: number }[] {
  const out: { gw: Indexed<GatewaySpec>; server: Server; port: number }[] = [];
  for (const gw of gatewaysFor(push, proxy)) {
    for (const server of gw.spec.servers ?? []) if (server.port?.number) out.push({ gw, server, port: server.port.number });
  }
  return out;
}

/** Whether a VirtualService host is admitted by a server's `hosts` (`ns/host`, `*`, `*.example.com`). */
function serverAdmits(server: Server, vsNamespace: string, gwNamespace: string, host: string): boolean {
  return (server.hosts ?? []).some((h) => {
    const slash = h.indexOf('/');
    const ns = slash >= 0 ? h.slice(0, slash) : '*';
    const pattern = slash >= 0 ? h.slice(slash + 1) : h;
    if (ns !== '*' && (ns === '.' ? gwNamespace : ns) !== vsNamespace) return false;
    return hostMatches(pattern, host) || hostMatches(host, pattern);
  });
}

function isHttpServer(s: Server): boolean {
  return isHttpProtocol(portProtocol(s.port ?? {})) && !s.tls;
}

/** LDS for a gateway: `0.0.0.0_PORT` per HTTP server port (RDS `http.PORT`), TCP servers through tcp_proxy. */
export function gatewayListeners(push: SextantPushContext, proxy: Proxy): ProtoJson[] {
  const byPort = new Map<number, { gw: Indexed<GatewaySpec>; server: Server }[]>();
  for (const s of servers(push, proxy)) {
    const list = byPort.get(s.port);
    if (list) list.push(s);
    else byPort.set(s.port, [s]);
  }
  const out: ProtoJson[] = [];
  for (const [port, list] of [...byPort].sort((a, b) => a[0] - b[0])) {
    const address = list[0]?.server.bind ?? '0.0.0.0';
    const base = { name: listenerName(address, port), address: { socketAddress: { address, portValue: port } }, trafficDirection: 'OUTBOUND' };
    if (list.some((s) => isHttpServer(s.server))) {
      out.push({
        ...base,
        filterChains: [{
          filters: [{
            name: 'envoy.filters.network.http_connection_manager',
            typedConfig: {
              '@type': HCM_TYPE, statPrefix: `outbound_${address}_${port}`, httpFilters: httpFilters(), useRemoteAddress: true,
              ...pathNormalization(push.mesh.pathNormalization.normalization), rds: { configSource: ADS_CONFIG_SOURCE, routeConfigName: `http.${port}` },
            },
          }],
        }],
      });
      continue;
    }
    const tcp = tcpDestination(push, proxy, list, port);
    if (tcp && list.every((s) => !s.server.tls)) {
      out.push({ ...base, filterChains: [{ filters: [{ name: 'envoy.filters.network.tcp_proxy', typedConfig: { '@type': TCP_PROXY_TYPE, statPrefix: tcp, cluster: tcp } }] }] });
    }
  }
  return out;
}

function tcpDestination(push: SextantPushContext, proxy: Proxy, list: { gw: Indexed<GatewaySpec> }[], port: number): string | undefined {
  for (const { gw } of list) {
    for (const vs of push.gatewayVirtualServices) {
      if (!vs.gateways.has(gw.key.slice(gw.key.indexOf('/') + 1))) continue;
      const route = (vs.spec.tcp ?? []).find((r) => !r.match?.length || r.match.some((m) => m.port === undefined || m.port === port));
      const d = route?.route?.[0]?.destination;
      if (!d?.host) continue;
      const host = resolveHost(d.host, vs.namespace);
      const svc = push.serviceFor(host, proxy.namespace);
      const p = d.port?.number ?? (svc && svc.ports.length === 1 ? svc.ports[0]?.port : undefined) ?? port;
      return clusterName('outbound', p, d.subset ?? '', host);
    }
  }
  return undefined;
}

/** RDS `http.PORT` for a gateway: a virtual host per admitted VirtualService host. */
export function gatewayRoute(push: SextantPushContext, proxy: Proxy, routeName: string): ProtoJson | undefined {
  const m = /^http\.(\d+)$/.exec(routeName);
  if (!m) return undefined;
  const port = Number(m[1]);
  const onPort = servers(push, proxy).filter((s) => s.port === port && isHttpServer(s.server));
  if (onPort.length === 0) return undefined;
  const vhosts = new Map<string, ProtoJson>();
  for (const { gw, server } of onPort) {
    const gwName = gw.key.slice(gw.key.indexOf('/') + 1); // `ns/name`
    for (const vs of push.gatewayVirtualServices) {
      if (!vs.gateways.has(gwName)) continue;
      if (vs.exportTo !== null && vs.namespace !== gw.namespace && !vs.exportTo.has(gw.namespace)) continue;
      for (const h of vs.spec.hosts ?? []) {
        const host = h === '*' ? '*' : resolveHost(h, vs.namespace);
        if (!serverAdmits(server, vs.namespace, gw.namespace, host)) continue;
        const name = `${host}:${port}`;
        if (vhosts.has(name)) continue; // the oldest VirtualService for a host wins
        const pseudo: Service = { key: `gateway/${host}`, hostname: host, namespace: vs.namespace, ports: [], resolution: 'NONE', location: 'MESH_EXTERNAL', addresses: [], exportTo: null, source: vs.key };
        const ctx: RouteContext = { push, proxy, vs, port, service: push.serviceFor(host, proxy.namespace) ?? pseudo, grpc: false, gateway: gwName };
        const routes = (vs.spec.http ?? []).flatMap((r) => translateHttpRoute(ctx, r));
        if (routes.length === 0) continue;
        vhosts.set(name, { name, domains: host === '*' ? ['*'] : [host, `${host}:${port}`], routes, includeRequestAttemptCount: true });
      }
    }
  }
  const list = [...vhosts.values()];
  // Istio answers 404 when nothing is bound to the server.
  if (list.length === 0) list.push({ name: `blackhole:${port}`, domains: ['*'], routes: [{ name: 'default', match: { prefix: '/' }, directResponse: { status: 404 } }] });
  return { name: routeName, virtualHosts: list, validateClusters: false, ignorePortInHostMatching: true };
}
