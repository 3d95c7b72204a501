// Which services are cluster-local, by Istio's rules (pilot/pkg/model/cluster_local.go): the
// hosts of `serviceSettings` with `clusterLocal`, plus Istio's defaults (every service in
// kube-system, the Kubernetes API server and the discovery address) unless a
// `clusterLocal: false` entry overrides them; the most specific matching host decides.
import type { MeshConfig } from './mesh-config.ts';

/** Kubernetes' DNS domain suffix, as istiod's `--domain` default. */
export const DOMAIN_SUFFIX = 'cluster.local';

const DEFAULT_CLUSTER_LOCAL_NAMESPACES = ['kube-system'];
const DEFAULT_CLUSTER_LOCAL_SERVICES = ['kubernetes.default.svc'];

function isWildcard(h: string): boolean {
  return h.startsWith('*');
}

/** The host of `host:port` (Istio's GetDiscoveryAddress); undefined without a port. */
function discoveryHost(address: string): string | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):\d+$/.exec(address);
  return m === null ? undefined : (m[1] ?? m[2]);
}

/** The cluster-local hosts of one mesh config; answers are cached per host name. */
export class ClusterLocalHosts {
  private readonly specific = new Map<string, boolean>();
  private readonly wildcard = new Map<string, boolean>();
  private readonly answers = new Map<string, boolean>();

  constructor(mesh: MeshConfig) {
    const defaults: string[] = [
      ...DEFAULT_CLUSTER_LOCAL_NAMESPACES.map((n) => `*.${n}.svc.${DOMAIN_SUFFIX}`),
      ...DEFAULT_CLUSTER_LOCAL_SERVICES.map((s) => `${s}.${DOMAIN_SUFFIX}`),
    ];
    let discovery = discoveryHost(mesh.defaultConfig.discoveryAddress);
    if (discovery !== undefined) {
      if (!discovery.endsWith(DOMAIN_SUFFIX)) discovery += `.${DOMAIN_SUFFIX}`;
      defaults.push(discovery);
    }
    const kept = defaults.map((d) => d as string | undefined);
    for (const s of mesh.serviceSettings) {
      if (!s.settings.clusterLocal) {
        // A host declared not cluster-local removes the defaults it names or falls under.
        for (const h of s.hosts) {
          for (let i = 0; i < kept.length; i++) {
            const d = kept[i];
            if (d !== undefined && (h === d || (isWildcard(d) && h.endsWith(d.slice(1))))) kept[i] = undefined;
          }
        }
      }
      for (const h of s.hosts) (isWildcard(h) ? this.wildcard : this.specific).set(h, s.settings.clusterLocal);
    }
    for (const d of kept) if (d !== undefined) (isWildcard(d) ? this.wildcard : this.specific).set(d, true);
  }

  /** Whether `host` (a service host name, possibly a wildcard) is cluster-local. */
  isClusterLocal(host: string): boolean {
    let answer = this.answers.get(host);
    if (answer === undefined) {
      answer = this.match(host);
      this.answers.set(host, answer);
    }
    return answer;
  }

  /** The setting of the most specific matching host: an exact one, else the longest wildcard. */
  private match(host: string): boolean {
    const exact = isWildcard(host) ? this.wildcard.get(host) : this.specific.get(host);
    if (exact !== undefined) return exact;
    const needle = isWildcard(host) ? host.slice(1) : host;
    let best: string | undefined;
    let value = false;
    for (const [pattern, local] of this.wildcard) {
      if (!needle.endsWith(pattern.slice(1))) continue;
      if (best === undefined || pattern.length > best.length) {
        best = pattern;
        value = local;
      }
    }
    return value;
  }

  /** The patterns and their settings, for logs and status. */
  toJSON(): Record<string, boolean> {
    return Object.fromEntries([...this.specific, ...this.wildcard].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)));
  }
}
