// The rules `sextant iptables` writes into a workload's network namespace (or a VM), as
// iptables-restore input: a pure function of the options, so `--dry-run`, the golden tests
// and the real run print the same text. Only the listed ports are captured (M8, M9).
import {
  DEFAULT_DNS_CAPTURE_PORT, DEFAULT_INBOUND_CAPTURE_PORT, DEFAULT_OUTBOUND_CAPTURE_PORT, DEFAULT_PROXY_UID,
  INBOUND_CAPTURE_NET, captureAddress, formatCidr, parseCidr, sourceMap,
} from './capture-addresses.ts';
import type { Cidr } from './capture-addresses.ts';

/** Every chain this command creates starts with this; `--clean` removes exactly these. */
export const CHAIN_PREFIX = 'SEXTANT_';
/** An empty chain marking a table that did not exist before (so `--clean` removes the table too). */
export const CREATED_TABLE_MARKER = 'SEXTANT_CREATED';

export interface IptablesOptions {
  /** The proxy's uid: its own connections are never captured. */
  proxyUid: number;
  proxyGid: number;
  /** VM mode: only this uid's connections are captured outbound (a pod's namespace holds only the app). */
  appUid?: number;
  outboundCapturePort: number;
  inboundCapturePort: number;
  dnsCapturePort: number;
  /** TCP ports captured outbound (Istio's -q); nothing else goes to the sidecar. */
  includeOutboundPorts: number[];
  /** Never captured outbound, even when listed (Istio's -o). */
  excludeOutboundPorts: number[];
  /** Capture only toward these ranges (Istio's -i); empty means every destination. */
  includeOutboundIpRanges: Cidr[];
  /** Never captured outbound (Istio's -x). */
  excludeOutboundIpRanges: Cidr[];
  /** The ports the app declares; only these are captured inbound (Istio's -b, without `*`). */
  includeInboundPorts: number[];
  /** Callers in these ranges keep their IP as the app's TCP peer (a NETMAP of the proxy's source). */
  preserveSourceRanges: string[];
  /** Capture DNS (UDP and TCP port 53) to the sidecar's DNS proxy. */
  dns: boolean;
}

/** A bad option value, named as the flag that carries it. */
export class IptablesOptionError extends Error {
  override name = 'IptablesOptionError';
}

export const DEFAULT_OPTIONS: IptablesOptions = {
  proxyUid: DEFAULT_PROXY_UID,
  proxyGid: DEFAULT_PROXY_UID,
  outboundCapturePort: DEFAULT_OUTBOUND_CAPTURE_PORT,
  inboundCapturePort: DEFAULT_INBOUND_CAPTURE_PORT,
  dnsCapturePort: DEFAULT_DNS_CAPTURE_PORT,
  includeOutboundPorts: [],
  excludeOutboundPorts: [],
  includeOutboundIpRanges: [],
  excludeOutboundIpRanges: [],
  includeInboundPorts: [],
  preserveSourceRanges: [],
  dns: false,
};

/** `9080,9090` (spaces allowed) → ports; throws naming `flag`. `*` is refused: each port needs a rule of its own. */
export function parsePortList(value: string, flag: string): number[] {
  const v = value.trim();
  if (v === '') return [];
  if (v === '*') {
    throw new IptablesOptionError(`invalid ${flag} "*": list the ports; each captured port has its own rule, which is how the proxy learns the port without SO_ORIGINAL_DST (and only declared ports are captured)`);
  }
  const out: number[] = [];
  for (const part of v.split(',')) {
    const p = part.trim();
    if (!/^\d{1,5}$/.test(p) || Number(p) < 1 || Number(p) > 65535) throw new IptablesOptionError(`invalid ${flag} "${value}": expected ports 1-65535, comma-separated, e.g. 9080,9090`);
    if (!out.includes(Number(p))) out.push(Number(p));
  }
  return out;
}

/** `10.0.0.0/8,192.168.1.5` → CIDRs; throws naming `flag`. `*` means every address. */
export function parseRangeList(value: string, flag: string): Cidr[] {
  const v = value.trim();
  if (v === '') return [];
  if (v === '*') return [{ address: '0.0.0.0', prefixLen: 0 }];
  return v.split(',').map((p) => {
    try {
      return parseCidr(p);
    } catch (err) {
      throw new IptablesOptionError(`invalid ${flag} "${value}": ${(err as Error).message}`);
    }
  });
}

function checkId(n: number, flag: string): void {
  if (!Number.isInteger(n) || n < 0 || n > 4294967294) throw new IptablesOptionError(`invalid ${flag} "${n}": expected a numeric id`);
}

function checkPort(n: number, flag: string): void {
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new IptablesOptionError(`invalid ${flag} "${n}": expected a port 1-65535`);
}

/** Checks the options as a whole (ports that would capture the proxy's own, ranges that do not fit). */
export function checkOptions(o: IptablesOptions): void {
  checkId(o.proxyUid, '--proxy-uid');
  checkId(o.proxyGid, '--proxy-gid');
  if (o.appUid !== undefined) {
    checkId(o.appUid, '--app-uid');
    if (o.appUid === o.proxyUid) throw new IptablesOptionError(`--app-uid ${o.appUid} is the proxy's uid: the app and the sidecar must run as different users`);
  }
  checkPort(o.outboundCapturePort, '--outbound-capture-port');
  checkPort(o.inboundCapturePort, '--inbound-capture-port');
  checkPort(o.dnsCapturePort, '--dns-capture-port');
  const own = new Set([o.outboundCapturePort, o.inboundCapturePort]);
  for (const p of o.includeInboundPorts) {
    if (own.has(p)) throw new IptablesOptionError(`--include-inbound-ports ${p} is a capture port of the proxy`);
  }
  if (o.includeInboundPorts.length === 0 && o.includeOutboundPorts.length === 0 && !o.dns) {
    throw new IptablesOptionError('nothing to capture: give --include-outbound-ports, --include-inbound-ports or --dns');
  }
  try {
    sourceMap(o.preserveSourceRanges);
  } catch (err) {
    throw new IptablesOptionError(`invalid --preserve-source-ranges: ${(err as Error).message}`);
  }
}

/** What `sextant iptables` writes: iptables-restore input per table, and routes. */
export interface RuleSet {
  /** Table name → the lines between `*table` and `COMMIT` (chain declarations, then rules). */
  tables: Map<string, string[]>;
  /** `ip` arguments adding each route (the inbound capture net, made local on lo). */
  routes: string[][];
}

/** The inbound capture net as a `local` route on lo: the DNAT target of inbound captures. */
export const INBOUND_ROUTE = ['route', 'add', 'local', `${INBOUND_CAPTURE_NET}/16`, 'dev', 'lo', 'table', 'local'];

/**
 * The rules for `o`, each with the reason it exists as a comment line above it (comments
 * are for `--dry-run`; iptables-restore skips them).
 */
export function buildRules(o: IptablesOptions): RuleSet {
  checkOptions(o);
  const nat: string[] = [];
  const filter: string[] = [];
  const inbound = o.includeInboundPorts.length > 0;
  const outbound = o.includeOutboundPorts.length > 0;
  const map = sourceMap(o.preserveSourceRanges);

  const chains = ['SEXTANT_OUTPUT'];
  if (inbound) chains.unshift('SEXTANT_INBOUND');
  if (outbound) chains.push('SEXTANT_REDIRECT');
  if (inbound && map.length > 0) chains.push('SEXTANT_POSTROUTING');
  for (const c of chains) nat.push(`:${c} - [0:0]`);

  if (inbound) {
    nat.push('# inbound: connections from other hosts enter SEXTANT_INBOUND (locally made ones never pass PREROUTING)');
    nat.push('-A PREROUTING -p tcp -j SEXTANT_INBOUND');
  }
  nat.push(o.dns
    ? '# outbound: every locally made connection and DNS query (TCP and UDP) enters SEXTANT_OUTPUT'
    : '# outbound: every locally made TCP connection enters SEXTANT_OUTPUT');
  nat.push(o.dns ? '-A OUTPUT -j SEXTANT_OUTPUT' : '-A OUTPUT -p tcp -j SEXTANT_OUTPUT');
  if (inbound && map.length > 0) {
    nat.push('# source IP: the proxy\'s connections to the app on lo pass SEXTANT_POSTROUTING');
    nat.push('-A POSTROUTING -o lo -j SEXTANT_POSTROUTING');
  }

  for (const p of o.includeInboundPorts) {
    nat.push(`# inbound port ${p} (declared): to the proxy's ${o.inboundCapturePort}, at an address whose low 16 bits are ${p}; the caller's source stays`);
    nat.push(`-A SEXTANT_INBOUND -p tcp --dport ${p} -j DNAT --to-destination ${captureAddress('inbound', p)}:${o.inboundCapturePort}`);
  }

  nat.push(`# the proxy's own connections (uid ${o.proxyUid}, gid ${o.proxyGid}) are never captured: no loops`);
  nat.push(`-A SEXTANT_OUTPUT -m owner --uid-owner ${o.proxyUid} -j RETURN`);
  nat.push(`-A SEXTANT_OUTPUT -m owner --gid-owner ${o.proxyGid} -j RETURN`);
  if (o.appUid !== undefined) {
    nat.push(`# VM mode: only the app's connections (uid ${o.appUid}) are captured; other users of the host are left alone`);
    nat.push(`-A SEXTANT_OUTPUT -m owner ! --uid-owner ${o.appUid} -j RETURN`);
  }
  if (o.dns) {
    nat.push(`# DNS queries (UDP and TCP 53, to any resolver) to the sidecar's DNS proxy on 127.0.0.1:${o.dnsCapturePort}`);
    nat.push(`-A SEXTANT_OUTPUT -p udp --dport 53 -j REDIRECT --to-ports ${o.dnsCapturePort}`);
    nat.push(`-A SEXTANT_OUTPUT -p tcp --dport 53 -j REDIRECT --to-ports ${o.dnsCapturePort}`);
  }
  if (outbound) {
    nat.push('# loopback (127.0.0.0/8 and the workload\'s own addresses) is never captured: app <-> sidecar, admin, local calls');
    nat.push('-A SEXTANT_OUTPUT -o lo -j RETURN');
    for (const r of o.excludeOutboundIpRanges) {
      nat.push(`# excluded destination range ${formatCidr(r)}`);
      nat.push(`-A SEXTANT_OUTPUT -d ${formatCidr(r)} -j RETURN`);
    }
    for (const p of o.excludeOutboundPorts) {
      nat.push(`# excluded outbound port ${p}`);
      nat.push(`-A SEXTANT_OUTPUT -p tcp --dport ${p} -j RETURN`);
    }
    const ranges = o.includeOutboundIpRanges.filter((r) => r.prefixLen > 0);
    if (ranges.length === 0 || o.includeOutboundIpRanges.some((r) => r.prefixLen === 0)) {
      nat.push('# any destination may be captured, on the listed ports only');
      nat.push('-A SEXTANT_OUTPUT -p tcp -j SEXTANT_REDIRECT');
    } else {
      for (const r of ranges) {
        nat.push(`# captured destination range ${formatCidr(r)}, on the listed ports only`);
        nat.push(`-A SEXTANT_OUTPUT -d ${formatCidr(r)} -p tcp -j SEXTANT_REDIRECT`);
      }
    }
    for (const p of o.includeOutboundPorts) {
      if (o.excludeOutboundPorts.includes(p)) continue;
      nat.push(`# outbound port ${p}: to the proxy's ${o.outboundCapturePort}, at an address whose low 16 bits are ${p}; other ports never reach the sidecar`);
      nat.push(`-A SEXTANT_REDIRECT -p tcp --dport ${p} -j DNAT --to-destination ${captureAddress('outbound', p)}:${o.outboundCapturePort}`);
    }
  }
  if (inbound) {
    for (const e of map) {
      nat.push(`# callers from ${formatCidr(e.to)}: the proxy connects to the app from ${formatCidr(e.from)} + the caller's host bits; the app sees the caller's IP`);
      nat.push(`-A SEXTANT_POSTROUTING -s ${formatCidr(e.from)} ! -d 127.0.0.0/8 -m owner --uid-owner ${o.proxyUid} -m addrtype --dst-type LOCAL -j NETMAP --to ${formatCidr(e.to)}`);
    }
  }

  // A sidecar in REDIRECT mode binds both capture ports on every address, whichever way it captures.
  const ports = [...new Set([o.outboundCapturePort, o.inboundCapturePort])];
  if (inbound || outbound) {
    filter.push(':SEXTANT_INPUT - [0:0]');
    filter.push('# the capture ports take only connections the NAT rules sent there: a scanner dialling them directly is reset');
    filter.push('-A INPUT -p tcp -j SEXTANT_INPUT');
    filter.push(`-A SEXTANT_INPUT ! -i lo -p tcp -m multiport --dports ${ports.join(',')} -m conntrack ! --ctstate DNAT -j REJECT --reject-with tcp-reset`);
  }

  const tables = new Map<string, string[]>([['nat', nat]]);
  if (filter.length > 0) tables.set('filter', filter);
  return { tables, routes: inbound ? [INBOUND_ROUTE] : [] };
}

/** iptables-restore input for the rule set (comments kept unless `stripComments`). */
export function restoreText(rules: RuleSet, stripComments = false): string {
  let out = '';
  for (const [table, lines] of rules.tables) {
    out += `*${table}\n`;
    for (const l of lines) if (!stripComments || !l.startsWith('#')) out += l + '\n';
    out += 'COMMIT\n';
  }
  return out;
}
