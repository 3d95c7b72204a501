// Where passthrough (ORIGINAL_DST) requests go, and the loop guard: the proxy never connects
// to one of its own listeners, and refuses a request that already went out through it.
//
// Under capture (iptables) a connection's local address is where the app was going. In
// captureMode NONE the app dials the sidecar's egress listener itself, so the local address is
// the sidecar: the destination is what the request names (its Host), as for a forward proxy.
// Under REDIRECT capture outbound, only the original port is known (UNKNOWN_ADDRESS): the Host
// names the address, and the port is the captured one.
import { randomBytes } from 'node:crypto';
import dns from 'node:dns';
import net from 'node:net';
import { headerValue, headerValues } from '../http/index.ts';
import type { DownstreamRequest, RawHeader, RequestHead } from '../http/index.ts';
import { isLocalAddress } from '../upstream/index.ts';
import type { Cluster } from '../cluster/cluster.ts';
import type { OriginalDestination, OriginalDestinations } from '../router/router.ts';

/** The addresses the proxy's listeners are bound to. */
export interface LocalListeners {
  /** True when a connection to `address:port` would reach one of them. */
  listensOn(address: string, port: number): boolean;
}

// The local answers, as Envoy's flags go: nowhere to go is "no route" (404 NR); a destination
// that is this proxy is blackholed, as Istio's virtualOutbound blackholes its own port (502 NR).
const NO_DESTINATION: OriginalDestination = { host: undefined, status: 404, flag: 'NR', details: 'no_original_destination' };
const UNRESOLVED: OriginalDestination = { host: undefined, status: 404, flag: 'NR', details: 'dns_resolution_failure' };
const LOOP: OriginalDestination = { host: undefined, status: 502, flag: 'NR', details: 'passthrough_loop_detected' };

/**
 * The local address of a captured outbound connection, whose original port is known and
 * whose original address is not (`restoreOriginalDestination` in listener-manager.ts):
 * the unspecified address, never the local address of an accepted connection otherwise.
 */
export const UNKNOWN_ADDRESS = '0.0.0.0';

/** Names resolved for passthrough are kept this long, and at most this many. */
const NAME_TTL_MS = 5000;
const MAX_NAMES = 1024;

/**
 * Whether `address:port` (an IP) reaches one of `listeners` (bound `address` and `port`): the
 * same address, or a wildcard bind on that port and any address of this host (`0.0.0.0` for
 * IPv4, `::` for both families).
 */
export function reachesListener(listeners: Iterable<{ address: string; port: number }>, address: string, port: number): boolean {
  let dst = canonicalIp(address);
  const family = net.isIP(dst);
  if (family === 0) return false;
  // Linux connects 0.0.0.0 and :: to this host's loopback.
  if (dst === '0.0.0.0') dst = '127.0.0.1';
  else if (dst === '::') dst = '::1';
  const local = isLocalAddress(dst);
  for (const l of listeners) {
    if (l.port !== port) continue;
    const bound = canonicalIp(l.address);
    if (bound === dst) return true;
    if (local && (bound === '::' || (bound === '0.0.0.0' && family === 4))) return true;
  }
  return false;
}

// One spelling per address: IPv4-mapped IPv6 as IPv4, IPv6 compressed and lower case.
function canonicalIp(ip: string): string {
  if (ip.startsWith('::ffff:') && net.isIPv4(ip.slice(7))) return ip.slice(7);
  if (net.isIPv6(ip)) {
    try {
      const h = new URL(`http://[${ip}]/`).hostname;
      return h.slice(1, -1);
    } catch {
      return ip;
    }
  }
  return ip;
}

/** `host[:port]` or `[v6][:port]`; undefined when it is not an authority. */
function parseAuthority(authority: string, defaultPort: number): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s/]+))(?::(\d{1,5}))?$/.exec(authority);
  if (!m) return undefined;
  const port = m[3] !== undefined ? Number(m[3]) : defaultPort;
  if (!(port > 0 && port < 65536)) return undefined;
  return { host: (m[1] ?? m[2])!.toLowerCase(), port };
}

/** The ORIGINAL_DST destinations of one proxy, guarded against its own listeners. */
export class OriginalDstResolver implements OriginalDestinations {
  private readonly listeners: LocalListeners;
  /** This proxy's Via pseudonym (RFC 9110 §7.6.3), random per proxy: its passthrough hop marker. */
  readonly pseudonym: string;
  private readonly marker10: RawHeader;
  private readonly marker11: RawHeader;
  private readonly names = new Map<string, { address: Promise<string | undefined>; expires: number }>();

  constructor(listeners: LocalListeners) {
    this.listeners = listeners;
    this.pseudonym = `sextant-${randomBytes(4).toString('hex')}`;
    this.marker10 = { name: 'via', value: `1.0 ${this.pseudonym}` };
    this.marker11 = { name: 'via', value: `1.1 ${this.pseudonym}` };
  }

  destination(req: DownstreamRequest, cluster: Cluster, head: RequestHead, inbound: boolean): OriginalDestination | Promise<OriginalDestination> {
    // It went out through this proxy's passthrough before and came back: a loop.
    if (!inbound && this.marked(head.headers)) return LOOP;
    const target = this.target(req, cluster, head, inbound);
    if (target === undefined) return NO_DESTINATION;
    if (target === 'self') return LOOP;
    if (net.isIP(target.host) !== 0) return this.toward(cluster, target.host, target.port, req, inbound);
    return this.resolve(target.host, cluster.pool.connectTimeoutMs).then((ip) => (ip === undefined ? UNRESOLVED : this.toward(cluster, ip, target.port, req, inbound)));
  }

  /**
   * In order: the cluster's header (`x-envoy-original-dst-host`); an http_proxy client's
   * absolute-form target (port 80 by default); the connection's local address when it is not
   * one of this proxy's listeners (captured traffic); outbound, the Host (by default the port
   * the app dialled: under REDIRECT capture the original port, whose address is not known).
   */
  private target(req: DownstreamRequest, cluster: Cluster, head: RequestHead, inbound: boolean): { host: string; port: number } | 'self' | undefined {
    if (cluster.originalDstHeader) {
      const v = headerValue(head.headers, cluster.originalDstHeader);
      if (v) return parseAuthority(v, 80);
    }
    const t = req.head.target;
    if (t.charCodeAt(0) !== 47 /* '/' */) {
      const authority = /^https?:\/\/([^/?#]*)/i.exec(t)?.[1];
      if (authority) return parseAuthority(authority, 80);
    }
    if (req.localAddress !== UNKNOWN_ADDRESS && !this.listeners.listensOn(req.localAddress, req.localPort)) return { host: req.localAddress, port: req.localPort };
    // The connection was made to this proxy itself: it says nothing of the destination.
    if (inbound) return 'self';
    const host = headerValue(head.headers, 'host');
    const named = host ? parseAuthority(host, req.localPort) : undefined;
    // Captured: the Host names the address; the port is the one the app dialled.
    if (named !== undefined && req.localAddress === UNKNOWN_ADDRESS) named.port = req.localPort;
    return named;
  }

  private toward(cluster: Cluster, ip: string, port: number, req: DownstreamRequest, inbound: boolean): OriginalDestination {
    if (this.listeners.listensOn(ip, port)) return LOOP;
    return { host: cluster.originalDstHost(canonicalIp(ip), port), marker: inbound ? undefined : req.head.version === '1.0' ? this.marker10 : this.marker11 };
  }

  // A Via entry naming this proxy (`1.1 sextant-…`, possibly among others).
  private marked(headers: readonly RawHeader[]): boolean {
    for (const v of headerValues(headers, 'via')) {
      if (!v.includes(this.pseudonym)) continue;
      for (const entry of v.split(',')) if (entry.trim().split(/\s+/)[1] === this.pseudonym) return true;
    }
    return false;
  }

  /** The name's first address, from a small cache (lookups in flight are shared); undefined when it does not resolve in time. */
  private resolve(name: string, timeoutMs: number): Promise<string | undefined> {
    const now = Date.now();
    const cached = this.names.get(name);
    if (cached !== undefined && cached.expires > now) return cached.address;
    if (cached !== undefined) this.names.delete(name);
    if (this.names.size >= MAX_NAMES) this.names.delete(this.names.keys().next().value!);
    const address = new Promise<string | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(undefined), Math.max(1, timeoutMs));
      timer.unref();
      dns.lookup(name, (err, ip) => {
        clearTimeout(timer);
        resolve(err ? undefined : ip);
      });
    });
    const entry = { address, expires: now + NAME_TTL_MS };
    this.names.set(name, entry);
    // Failures are not kept: the next request asks again.
    void address.then((ip) => { if (ip === undefined && this.names.get(name) === entry) this.names.delete(name); });
    return address;
  }
}
