// CDS additions for gateways: the SNI-DNAT clusters an AUTO_PASSTHROUGH server forwards to,
// named as the SNI Istio's sidecars send (`outbound_.PORT_.SUBSET_.HOST`). Each is the outbound
// cluster of the same port and subset without its TLS: the bytes are the sidecar's own mTLS,
// passed through untouched. EDS stays keyed by the outbound name (`serviceName`).
import type { ProtoJson } from '../../../envoy/index.ts';
import type { Proxy } from '../../model.ts';
import type { SextantPushContext } from '../../push/context.ts';
import { clusterName } from '../names.ts';
import { mergedGateway } from './merge.ts';
import { sniDnatTargets } from './listeners.ts';

const SNI_DNAT_RE = /^outbound_\.(\d+)_\.([^_]*)_\.(.+)$/;

/** The SNI-DNAT clusters of a gateway proxy, cloned from its outbound clusters. */
export function sniDnatClusters(push: SextantPushContext, proxy: Proxy, outbound: readonly ProtoJson[]): ProtoJson[] {
  const servers = mergedGateway(push, proxy).ports.flatMap((p) => p.servers).filter((s) => s.kind === 'auto-passthrough');
  if (servers.length === 0) return [];
  const byName = new Map(outbound.map((c) => [String(c['name']), c]));
  const out: ProtoJson[] = [];
  const seen = new Set<string>();
  for (const gs of servers) {
    for (const sni of sniDnatTargets(push, proxy, gs.sniHosts)) {
      if (seen.has(sni)) continue;
      seen.add(sni);
      const m = SNI_DNAT_RE.exec(sni);
      const base = m ? byName.get(clusterName('outbound', Number(m[1]), m[2] ?? '', m[3] ?? '')) : undefined;
      if (base === undefined) continue;
      const { transportSocket: _ts, transportSocketMatches: _tsm, ...rest } = base;
      out.push({ ...rest, name: sni });
    }
  }
  return out;
}
