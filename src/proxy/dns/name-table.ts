// The names the sidecar's DNS proxy answers itself: Istio's NameTable (NDS) compiled into a
// lookup, with the short names a Kubernetes-style host is also known by in the proxy's
// namespace (istio-agent's alt hosts), and wildcard hosts matched by suffix.
import net from 'node:net';
import type { ProtoJson } from '../../envoy/index.ts';

/** The addresses of one name, by family. */
export interface NameAddresses {
  v4: readonly string[];
  v6: readonly string[];
}

interface NameInfo {
  ips?: string[];
  registry?: string;
  shortname?: string;
  namespace?: string;
}

/** The compiled NameTable of one NDS update; replaced whole, never edited. */
export class NameTable {
  private readonly exact = new Map<string, NameAddresses>();
  /** `*.suffix` hosts, longest suffix first: `.suffix` → addresses. */
  private readonly wildcards: [string, NameAddresses][] = [];
  /** Hosts in the table (not counting alt names). */
  readonly hosts: number;

  /**
   * Compiles `table` (NameTable JSON: `{table: {host: {ips, registry, shortname, namespace}}}`)
   * for a proxy in `namespace`. Throws an Error naming the host when an address is not an IP.
   */
  constructor(table: ProtoJson | undefined, namespace: string) {
    const entries = Object.entries((table?.['table'] as Record<string, NameInfo> | undefined) ?? {});
    this.hosts = entries.length;
    const alt: [string, NameAddresses][] = [];
    for (const [host, info] of entries) {
      const v4: string[] = [];
      const v6: string[] = [];
      for (const ip of info.ips ?? []) {
        const family = net.isIP(ip);
        if (family === 4) v4.push(ip);
        else if (family === 6) v6.push(ip);
        else throw new Error(`NameTable host ${host}: "${ip}" is not an IP address`);
      }
      const addrs: NameAddresses = { v4, v6 };
      const name = host.toLowerCase();
      if (name.startsWith('*.')) this.wildcards.push([name.slice(1), addrs]);
      else this.exact.set(name, addrs);
      // istio-agent's alt hosts: `name.ns.svc`, `name.ns`, and `name` in the proxy's own namespace.
      if (info.registry === 'Kubernetes' && info.shortname && info.namespace) {
        const short = info.shortname.toLowerCase();
        const ns = info.namespace.toLowerCase();
        alt.push([`${short}.${ns}.svc`, addrs], [`${short}.${ns}`, addrs]);
        if (ns === namespace.toLowerCase()) alt.push([short, addrs]);
      }
    }
    // A full host wins over another host's alt name.
    for (const [n, a] of alt) if (!this.exact.has(n)) this.exact.set(n, a);
    this.wildcards.sort((a, b) => b[0].length - a[0].length);
  }

  /** The addresses of `name` (case-insensitive, trailing dot ignored), or undefined when it is not a mesh host. */
  lookup(name: string): NameAddresses | undefined {
    let n = name.toLowerCase();
    if (n.endsWith('.')) n = n.slice(0, -1);
    const hit = this.exact.get(n);
    if (hit !== undefined) return hit;
    for (const [suffix, addrs] of this.wildcards) if (n.endsWith(suffix) && n.length > suffix.length) return addrs;
    return undefined;
  }
}

export const EMPTY_NAME_TABLE = new NameTable(undefined, '');
