// Istio's merged gateway: every server of every Gateway selecting a gateway proxy, grouped by
// the port the proxy listens on (a Gateway's port translated to the target port of the
// gateway's own service, as istiod's resolvePorts does), with Istio's conflict rules (plain
// HTTP servers share a port; TLS servers share one by SNI; nothing else does), RDS names
// (`http.PORT`, `https.PORT.NAME.GATEWAY.NAMESPACE`) and SNI hosts.
import type { GatewaySpec, Server, ServerTLSSettings } from '../../../api/index.ts';
import { labelsMatch, portProtocol } from '../../../registry/index.ts';
import type { Protocol } from '../../../registry/index.ts';
import type { Proxy } from '../../model.ts';
import type { Indexed, SextantPushContext } from '../../push/context.ts';
import { proxyServiceTargets } from '../../push/scope.ts';

export type TlsMode = NonNullable<ServerTLSSettings['mode']>;

/** How a server's connections are handled. */
export type ServerKind =
  /** Plain HTTP (HTTP, HTTP2, GRPC): one connection manager per port, RDS `http.PORT`. */
  | 'http'
  /** HTTPS terminated here (SIMPLE, MUTUAL, ISTIO_MUTUAL): a chain per server by SNI, RDS `https.…`. */
  | 'https'
  /** TLS terminated here, then the bytes to the `tcp` routes. */
  | 'tls-terminate'
  /** TLS passed through by SNI to the `tls` routes. */
  | 'passthrough'
  /** AUTO_PASSTHROUGH: TLS passed through to the cluster the SNI names (`outbound_.PORT_.SUBSET_.HOST`). */
  | 'auto-passthrough'
  /** Plain TCP (or any other protocol) to the `tcp` routes. */
  | 'tcp';

export interface GatewayServer {
  gateway: Indexed<GatewaySpec>;
  /** `namespace/name` of the Gateway, as VirtualServices bind to it. */
  gatewayName: string;
  server: Server;
  /** The server's position in its Gateway (for names and messages). */
  index: number;
  kind: ServerKind;
  protocol: Protocol;
  /** The port written in the Gateway: what VirtualService `match.port` compares with. */
  serverPort: number;
  /** Hosts with `./` resolved and `*\/` dropped: `ns/host` or `host`. */
  hosts: string[];
  /** SNI names of a TLS chain: the hosts without namespaces; empty when any host is `*` (no SNI match). */
  sniHosts: string[];
  /** RDS name for HTTP servers (`http.PORT[.BIND]`) and terminated HTTPS ones. */
  routeName?: string;
}

export interface MergedPort {
  /** The port the listener binds (the gateway service's target port for the Gateway's port). */
  port: number;
  bind: string | undefined;
  /** `http` ports carry plain HTTP servers; `tls` ports TLS servers told apart by SNI; `tcp` one plain TCP server. */
  family: 'http' | 'tls' | 'tcp';
  servers: GatewayServer[];
}

export interface MergedGateway {
  ports: MergedPort[];
  /** Servers by RDS name (several plain HTTP servers share `http.PORT`). */
  byRouteName: ReadonlyMap<string, GatewayServer[]>;
  /** Servers left out, and why (conflicts Istio also rejects); reported by the pilot. */
  skipped: { gateway: string; server: number; reason: string }[];
}

/** The Gateways whose selector matches the proxy's labels (any namespace, as Istio by default), oldest first. */
export function gatewaysFor(push: SextantPushContext, proxy: Proxy): Indexed<GatewaySpec>[] {
  return push.gateways.filter((g) => g.spec.selector !== undefined && labelsMatch(g.spec.selector, proxy.labels));
}

function isPassthrough(mode: TlsMode | undefined): boolean {
  return mode === 'PASSTHROUGH' || mode === 'AUTO_PASSTHROUGH';
}

/** Istio's classification of a server by protocol and TLS mode. */
export function serverKind(protocol: Protocol, tls: ServerTLSSettings | undefined): ServerKind {
  if (protocol === 'HTTP' || protocol === 'HTTP2' || protocol === 'GRPC' || protocol === 'GRPC-WEB') return 'http';
  const mode = tls?.mode ?? (tls !== undefined ? 'SIMPLE' : undefined);
  if (protocol === 'HTTPS' && tls !== undefined && !isPassthrough(mode)) return 'https';
  if (mode === 'AUTO_PASSTHROUGH') return 'auto-passthrough';
  if (tls !== undefined && isPassthrough(mode)) return 'passthrough';
  // HTTPS without TLS settings is passed through, as Istio treats it (validation requires tls).
  if (protocol === 'HTTPS') return 'passthrough';
  if (tls !== undefined) return 'tls-terminate';
  return 'tcp';
}

/** Istio's sanitizeServerHostNamespace: `./h` → `NS/h`, `*\/h` → `h`, `*\/*` → `*`. */
function sanitizeHosts(hosts: readonly string[], namespace: string): string[] {
  const out: string[] = [];
  for (const h of hosts) {
    const slash = h.indexOf('/');
    if (slash < 0) { out.push(h); continue; }
    const ns = h.slice(0, slash);
    const host = h.slice(slash + 1);
    if (ns === '.') out.push(`${namespace}/${host}`);
    else if (ns === '*') {
      if (host === '*') return ['*'];
      out.push(host);
    } else out.push(h);
  }
  return out;
}

function sniHostsOf(hosts: readonly string[]): string[] {
  const names = new Set<string>();
  for (const h of hosts) names.add(h.includes('/') ? h.slice(h.indexOf('/') + 1) : h);
  return names.has('*') ? [] : [...names].sort();
}

/** Istio's resolvePorts: the target port of the gateway's own service for a Gateway port, else the port itself. */
function listenerPort(targets: readonly { port: number; targetPort: number }[], port: number): number {
  const t = targets.find((x) => x.port === port && x.targetPort !== 0);
  return t?.targetPort ?? port;
}

function routeNameFor(s: { kind: ServerKind; listenPort: number; server: Server; gateway: Indexed<GatewaySpec> }): string | undefined {
  const bind = s.server.bind ? `.${s.server.bind}` : '';
  if (s.kind === 'http') return `http.${s.listenPort}${bind}`;
  // Istio: plain HTTP by the listener's port, HTTPS by the port the Gateway names.
  if (s.kind === 'https') return `https.${s.server.port?.number ?? 0}.${s.server.port?.name ?? ''}.${s.gateway.resource.metadata.name}.${s.gateway.namespace}${bind}`;
  return undefined;
}

/**
 * The merged gateway of a gateway proxy (memoized per snapshot, labels, namespace and
 * addresses). Gateways are taken oldest first, so on a conflict the older server stays.
 */
export function mergedGateway(push: SextantPushContext, proxy: Proxy): MergedGateway {
  const key = `gw-merged|${proxy.namespace}|${JSON.stringify(proxy.labels)}|${proxy.ipAddresses.join(',')}`;
  return push.memoize(key, () => merge(push, proxy));
}

function merge(push: SextantPushContext, proxy: Proxy): MergedGateway {
  const targets = proxyServiceTargets(push, proxy);
  const ports = new Map<string, MergedPort>();
  const byRouteName = new Map<string, GatewayServer[]>();
  const skipped: MergedGateway['skipped'] = [];
  const tlsHosts = new Map<string, Set<string>>();
  for (const gw of gatewaysFor(push, proxy)) {
    const gatewayName = `${gw.namespace}/${gw.resource.metadata.name}`;
    (gw.spec.servers ?? []).forEach((server, index) => {
      const number = server.port?.number;
      if (number === undefined || number <= 0) return;
      const protocol = portProtocol(server.port ?? {});
      const kind = serverKind(protocol, server.tls);
      const listenPort = listenerPort(targets, number);
      const hosts = sanitizeHosts(server.hosts ?? [], gw.namespace);
      const gs: GatewayServer = {
        gateway: gw, gatewayName, server, index, kind, protocol, serverPort: number, hosts,
        sniHosts: kind === 'http' || kind === 'tcp' ? [] : sniHostsOf(hosts),
      };
      const rn = routeNameFor({ kind, listenPort, server, gateway: gw });
      if (rn !== undefined) gs.routeName = rn;
      const portKey = `${server.bind ?? ''}|${listenPort}`;
      const family: MergedPort['family'] = kind === 'http' ? 'http' : kind === 'tcp' ? 'tcp' : 'tls';
      const skip = (reason: string): void => { skipped.push({ gateway: gatewayName, server: index, reason }); };
      // Envoy refuses two chains with the same match: one SNI host once per port.
      if (family === 'tls' && kind !== 'auto-passthrough') {
        let known = tlsHosts.get(portKey);
        if (known === undefined) tlsHosts.set(portKey, (known = new Set()));
        const dup = hosts.filter((h) => known.has(h));
        if (dup.length > 0) return skip(`port ${number}: host ${dup.join(', ')} is already served by another TLS server on this port`);
        for (const h of hosts) known.add(h);
      }
      const existing = ports.get(portKey);
      if (existing === undefined) {
        ports.set(portKey, { port: listenPort, bind: server.bind, family, servers: [gs] });
      } else if (existing.family !== family) {
        return skip(`port ${number}: ${describe(family)} cannot share the port with ${describe(existing.family)}`);
      } else if (family === 'tcp') {
        return skip(`port ${number}: a plain TCP server is already on this port`);
      } else if (family === 'http' && existing.servers[0]!.protocol !== protocol) {
        return skip(`port ${number}: protocol ${protocol} differs from ${existing.servers[0]!.protocol} already on this port`);
      } else {
        if (gs.routeName !== undefined && kind === 'https' && byRouteName.has(gs.routeName)) return skip(`port ${number}: another HTTPS server of this Gateway has port name ${JSON.stringify(server.port?.name ?? '')}`);
        existing.servers.push(gs);
      }
      if (gs.routeName !== undefined) {
        const list = byRouteName.get(gs.routeName);
        if (list) list.push(gs);
        else byRouteName.set(gs.routeName, [gs]);
      }
    });
  }
  return { ports: [...ports.values()].sort((a, b) => a.port - b.port || (a.bind ?? '').localeCompare(b.bind ?? '')), byRouteName, skipped };
}

function describe(family: MergedPort['family']): string {
  return family === 'http' ? 'plain HTTP' : family === 'tls' ? 'TLS' : 'plain TCP';
}

/** The credential secret names (`credentialName`, and the CA's) the proxy's servers refer to. */
export function credentialNames(merged: MergedGateway): Set<string> {
  const out = new Set<string>();
  for (const p of merged.ports) {
    for (const s of p.servers) {
      const tls = s.server.tls;
      if (tls === undefined || isPassthrough(tls.mode) || tls.mode === 'ISTIO_MUTUAL') continue;
      for (const n of [tls.credentialName, ...(tls.credentialNames ?? [])]) {
        if (n === undefined || n === '') continue;
        out.add(n);
        if (tls.mode === 'MUTUAL' || tls.mode === 'OPTIONAL_MUTUAL') out.add(`${n}-cacert`);
      }
      if (tls.caCertCredentialName) out.add(tls.caCertCredentialName);
    }
  }
  return out;
}
