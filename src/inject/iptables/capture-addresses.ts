// The contract between `sextant iptables` and `sextant proxy` under REDIRECT capture: where
// the NAT rules send a captured connection says what it was sent to, so a proxy on plain
// Node.js sockets (no SO_ORIGINAL_DST) reads the original port from the accepted socket's
// local address, and the app sees an inbound caller's IP through a NETMAP of the proxy's source.
//
//   outbound  app → X:P      DNAT → 127.1.(P>>8).(P&255):15001   (127/8 is local on lo)
//   inbound   client → W:P   DNAT → 240.241.(P>>8).(P&255):15006 (a `local` route on lo; 127/8
//                                   arriving on an interface would be martian)
//   to app    proxy binds 127.128.0.0/9 + the caller's host bits; POSTROUTING NETMAPs it back
//             to the caller's range, so the app sees the caller's IP (M17)
import net from 'node:net';

/** Outbound captures land on this /16 of loopback; the low 16 bits are the original port. */
export const OUTBOUND_CAPTURE_NET = '127.1.0.0';
/** Inbound captures land on this /16, made local by a `local` route on lo; the low 16 bits are the original port. */
export const INBOUND_CAPTURE_NET = '240.241.0.0';
/** The loopback block the proxy binds to toward the app for callers in a preserved source range. */
export const SOURCE_MAP_NET = '127.128.0.0';
export const SOURCE_MAP_PREFIX = 9;

export const DEFAULT_OUTBOUND_CAPTURE_PORT = 15001;
export const DEFAULT_INBOUND_CAPTURE_PORT = 15006;
export const DEFAULT_DNS_CAPTURE_PORT = 15053;
export const DEFAULT_PROXY_UID = 1337;

/** A captured connection's original destination port and which way it was going. */
export interface CapturedDestination {
  direction: 'outbound' | 'inbound';
  /** The port the connection was made to before the NAT rule. */
  port: number;
}

function ipv4ToInt(ip: string): number {
  const p = ip.split('.');
  return ((Number(p[0]) << 24) | (Number(p[1]) << 16) | (Number(p[2]) << 8) | Number(p[3])) >>> 0;
}

function intToIpv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

const OUTBOUND_BASE = ipv4ToInt(OUTBOUND_CAPTURE_NET);
const INBOUND_BASE = ipv4ToInt(INBOUND_CAPTURE_NET);

/** The DNAT target address that encodes `port` for a direction. */
export function captureAddress(direction: 'outbound' | 'inbound', port: number): string {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RangeError(`invalid port ${port}`);
  return intToIpv4((direction === 'outbound' ? OUTBOUND_BASE : INBOUND_BASE) + port);
}

/**
 * The original destination of a connection accepted at `localAddress`, when a capture rule
 * sent it there; undefined for any other local address (a connection made to the proxy itself).
 */
export function capturedDestination(localAddress: string): CapturedDestination | undefined {
  const ip = localAddress.startsWith('::ffff:') ? localAddress.slice(7) : localAddress;
  if (net.isIPv4(ip) === false) return undefined;
  const n = ipv4ToInt(ip);
  const high = (n & 0xffff0000) >>> 0;
  const port = n & 0xffff;
  if (port === 0) return undefined;
  if (high === OUTBOUND_BASE) return { direction: 'outbound', port };
  if (high === INBOUND_BASE) return { direction: 'inbound', port };
  return undefined;
}

/** An IPv4 CIDR, `a.b.c.d/len`. */
export interface Cidr {
  address: string;
  prefixLen: number;
}

/** Parses `a.b.c.d/len` (or a bare address, /32); throws a RangeError naming the value. */
export function parseCidr(value: string): Cidr {
  const [address = '', len] = value.trim().split('/');
  const prefixLen = len === undefined ? 32 : Number(len);
  if (!net.isIPv4(address) || !/^\d{1,2}$/.test(len ?? '32') || prefixLen > 32) {
    throw new RangeError(`invalid IPv4 range "${value}": expected ADDRESS/PREFIX, e.g. 10.0.0.0/8`);
  }
  const mask = prefixLen === 0 ? 0 : (0xffffffff << (32 - prefixLen)) >>> 0;
  return { address: intToIpv4((ipv4ToInt(address) & mask) >>> 0), prefixLen };
}

export function formatCidr(c: Cidr): string {
  return `${c.address}/${c.prefixLen}`;
}

/** One NETMAP of the source map: `from` (in 127.128.0.0/9) stands for `to`. */
export interface SourceMapEntry {
  from: Cidr;
  to: Cidr;
}

/**
 * The source map for the ranges whose callers keep their IP toward the app. Each range gets
 * an aligned block of 127.128.0.0/9 of its own size, largest first (ties by address), so
 * `sextant iptables` and `sextant proxy` given the same ranges in any order agree. Ranges
 * must be /9 or narrower and fit together in the /9; throws a RangeError otherwise.
 */
export function sourceMap(ranges: readonly string[]): SourceMapEntry[] {
  const cidrs = ranges.map(parseCidr);
  for (const c of cidrs) {
    if (c.prefixLen < SOURCE_MAP_PREFIX) throw new RangeError(`preserved source range ${formatCidr(c)} is wider than /${SOURCE_MAP_PREFIX}: the proxy maps callers through ${SOURCE_MAP_NET}/${SOURCE_MAP_PREFIX} of loopback; list the workloads' narrower ranges`);
  }
  const unique = [...new Map(cidrs.map((c) => [formatCidr(c), c])).values()];
  unique.sort((a, b) => a.prefixLen - b.prefixLen || ipv4ToInt(a.address) - ipv4ToInt(b.address));
  const base = ipv4ToInt(SOURCE_MAP_NET);
  const end = base + 2 ** (32 - SOURCE_MAP_PREFIX);
  let next = base;
  const out: SourceMapEntry[] = [];
  for (const c of unique) {
    const size = 2 ** (32 - c.prefixLen);
    next = Math.ceil(next / size) * size; // aligned (already, since sizes only shrink)
    if (next + size > end) throw new RangeError(`preserved source ranges ${unique.map(formatCidr).join(', ')} do not fit in ${SOURCE_MAP_NET}/${SOURCE_MAP_PREFIX} (2^23 addresses in all)`);
    out.push({ from: { address: intToIpv4(next), prefixLen: c.prefixLen }, to: c });
    next += size;
  }
  return out;
}

/**
 * The loopback address the proxy binds to so that the app sees `caller` (after the NETMAP),
 * or undefined when the caller is in none of the preserved ranges.
 */
export function mappedSource(map: readonly SourceMapEntry[], caller: string): string | undefined {
  const ip = caller.startsWith('::ffff:') ? caller.slice(7) : caller;
  if (map.length === 0 || !net.isIPv4(ip)) return undefined;
  const n = ipv4ToInt(ip);
  for (const e of map) {
    const hostBits = 32 - e.to.prefixLen;
    const mask = hostBits === 32 ? 0 : (0xffffffff << hostBits) >>> 0;
    if (((n & mask) >>> 0) !== ipv4ToInt(e.to.address)) continue;
    return intToIpv4((ipv4ToInt(e.from.address) | (n & ~mask)) >>> 0);
  }
  return undefined;
}

/** The environment variable both commands read the preserved source ranges from (comma-separated CIDRs). */
export const PRESERVE_SOURCE_RANGES_ENV = 'SEXTANT_PRESERVE_SOURCE_RANGES';
