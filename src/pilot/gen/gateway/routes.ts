// RDS for gateways: `http.PORT` (every plain HTTP server of the port) and
// `https.PORT.NAME.GATEWAY.NAMESPACE` (one terminating HTTPS server): a virtual host per host
// the server admits and a bound VirtualService names, with the VirtualService's http routes for
// this gateway (`gateways:`, `match.gateways`, `match.port` against the Gateway's port).
// httpsRedirect turns a plain HTTP server's hosts into redirects to https.
import type { ProtoJson } from '../../../envoy/index.ts';
import type { HTTPMatchRequest, HTTPRoute, VirtualServiceSpec } from '../../../api/index.ts';
import type { Service } from '../../../registry/index.ts';
import type { Proxy } from '../../model.ts';
import type { Indexed, SextantPushContext } from '../../push/context.ts';
import { hostMatches, resolveHost } from '../../push/context.ts';
import { mergeMatch, translateHttpRoute } from '../routes.ts';
import type { RouteContext } from '../routes.ts';
import { mergedGateway } from './merge.ts';
import type { GatewayServer } from './merge.ts';

type GatewayVirtualService = Indexed<VirtualServiceSpec> & { gateways: ReadonlySet<string> };

/** The VirtualServices bound to a Gateway (`ns/name`) that a gateway proxy in `namespace` may use, oldest first. */
export function virtualServicesForGateway(push: SextantPushContext, gatewayName: string, proxyNamespace: string): GatewayVirtualService[] {
  return push.memoize(`gw-vs|${gatewayName}|${proxyNamespace}`, () => push.gatewayVirtualServices.filter((vs) =>
    vs.gateways.has(gatewayName) && (vs.exportTo === null || vs.namespace === proxyNamespace || vs.exportTo.has(proxyNamespace))));
}

/**
 * Istio's intersection of a server's hosts (as `ns/host` or `host`) with a VirtualService's:
 * the more specific of each matching pair, lower-cased.
 */
export function intersectHosts(serverHosts: readonly string[], vs: Indexed<VirtualServiceSpec>): string[] {
  const out = new Set<string>();
  for (const raw of vs.spec.hosts ?? []) {
    const vh = (raw === '*' ? '*' : resolveHost(raw, vs.namespace)).toLowerCase();
    for (const sh of serverHosts) {
      const slash = sh.indexOf('/');
      if (slash >= 0 && sh.slice(0, slash) !== vs.namespace) continue;
      const s = (slash >= 0 ? sh.slice(slash + 1) : sh).toLowerCase();
      if (hostMatches(s, vh)) out.add(vh);
      else if (hostMatches(vh, s)) out.add(s);
    }
  }
  return [...out];
}

/** The Envoy routes of a VirtualService for one gateway server (delegates expanded). */
function virtualServiceRoutes(push: SextantPushContext, proxy: Proxy, vs: Indexed<VirtualServiceSpec>, gs: GatewayServer, host: string): ProtoJson[] {
  const pseudo: Service = { key: `gateway/${host}`, hostname: host, namespace: vs.namespace, ports: [], resolution: 'NONE', location: 'MESH_EXTERNAL', addresses: [], exportTo: null, source: vs.key };
  const ctx: RouteContext = { push, proxy, vs, port: gs.serverPort, service: pseudo, grpc: false, gateway: gs.gatewayName };
  const out: ProtoJson[] = [];
  for (const r of vs.spec.http ?? []) {
    if (!r.delegate?.name) {
      out.push(...translateHttpRoute(ctx, r));
      continue;
    }
    // A delegating route: the delegate's routes under the root's match conditions (Istio's delegation).
    const delegate = push.virtualServicesByKey.get(`VirtualService/${r.delegate.namespace ?? vs.namespace}/${r.delegate.name}`);
    if (!delegate || (delegate.exportTo !== null && delegate.namespace !== vs.namespace && !delegate.exportTo.has(vs.namespace))) continue;
    for (const child of delegate.spec.http ?? []) {
      const roots = r.match && r.match.length > 0 ? r.match : [undefined];
      const children = child.match && child.match.length > 0 ? child.match : [undefined];
      const merged = roots.flatMap((rm) => children.map((cm) => mergeMatch(rm, cm))).filter((m): m is HTTPMatchRequest => m !== undefined);
      const { match: _ignored, ...rest } = child;
      const route: HTTPRoute = merged.length > 0 ? { ...rest, match: merged } : rest;
      out.push(...translateHttpRoute({ ...ctx, vs: delegate }, route));
    }
  }
  return out;
}

/** The route configuration `routeName` of a gateway proxy; undefined when no server has it. */
export function gatewayRoute(push: SextantPushContext, proxy: Proxy, routeName: string): ProtoJson | undefined {
  const servers = mergedGateway(push, proxy).byRouteName.get(routeName);
  if (servers === undefined || servers.length === 0) return undefined;
  const key = `gw-rds|${routeName}|${proxy.namespace}|${JSON.stringify(proxy.labels)}|${proxy.ipAddresses.join(',')}`;
  return push.memoize(key, () => buildRoute(push, proxy, routeName, servers));
}

function buildRoute(push: SextantPushContext, proxy: Proxy, routeName: string, servers: readonly GatewayServer[]): ProtoJson {
  const vhosts = new Map<string, ProtoJson>();
  const redirect = new Set<string>();
  for (const gs of servers) {
    const port = gs.serverPort;
    const httpsRedirect = gs.kind === 'http' && gs.server.tls?.httpsRedirect === true;
    for (const vs of virtualServicesForGateway(push, gs.gatewayName, proxy.namespace)) {
      const hosts = intersectHosts(gs.hosts, vs);
      if (hosts.length === 0) continue;
      for (const host of hosts) {
        const routes = virtualServiceRoutes(push, proxy, vs, gs, host);
        const existing = vhosts.get(host);
        if (existing !== undefined) (existing['routes'] as ProtoJson[]).push(...routes);
        else vhosts.set(host, { name: `${host}:${port}`, domains: [host], routes, includeRequestAttemptCount: true });
        if (httpsRedirect) redirect.add(host);
      }
    }
    if (httpsRedirect) {
      // Istio redirects every host of the server, bound or not.
      for (const h of gs.hosts) {
        const host = (h.includes('/') ? h.slice(h.indexOf('/') + 1) : h).toLowerCase();
        redirect.add(host);
        if (!vhosts.has(host)) vhosts.set(host, { name: `${host}:${port}`, domains: [host], routes: [], includeRequestAttemptCount: true });
      }
    }
  }
  const list: ProtoJson[] = [];
  for (const [host, vh] of [...vhosts].sort(byHostSpecificity)) {
    // Istio sets requireTls: ALL on these virtual hosts; every request on a plain HTTP server
    // lacks TLS, so that is a redirect of every route to https (Envoy's https_redirect).
    if (redirect.has(host)) vh['routes'] = [{ name: 'https-redirect', match: { prefix: '/' }, redirect: { httpsRedirect: true } }];
    list.push(vh);
  }
  // Nothing bound: Istio's virtual host without routes, every request a 404 (NR).
  if (list.length === 0) list.push({ name: `blackhole:${servers[0]!.serverPort}`, domains: ['*'], routes: [], includeRequestAttemptCount: true });
  return { name: routeName, virtualHosts: list, validateClusters: false, ignorePortInHostMatching: true };
}

// Exact hosts before wildcards, longer (more specific) first, then by name: a stable order.
function byHostSpecificity(a: [string, ProtoJson], b: [string, ProtoJson]): number {
  const wa = a[0].startsWith('*') ? 1 : 0;
  const wb = b[0].startsWith('*') ? 1 : 0;
  return wa - wb || b[0].length - a[0].length || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0);
}
