// Istio's resource names: `outbound|PORT|SUBSET|HOST`, `inbound|PORT||`, listener and
// route names, so pilot, proxy and operators speak of the same things by the same names.

export type Direction = 'outbound' | 'inbound';

/** `outbound|9080|v1|reviews.default.svc.cluster.local` (subset may be empty). */
export function clusterName(direction: Direction, port: number, subset: string, host: string): string {
  return `${direction}|${port}|${subset}|${host}`;
}

/** Splits a cluster name back into its parts; undefined when it is not Istio-shaped. */
export function parseClusterName(name: string): { direction: Direction; port: number; subset: string; host: string } | undefined {
  const parts = name.split('|');
  if (parts.length !== 4) return undefined;
  const [direction, port, subset = '', host = ''] = parts;
  if (direction !== 'outbound' && direction !== 'inbound') return undefined;
  const n = Number(port);
  if (!Number.isInteger(n)) return undefined;
  return { direction, port: n, subset, host };
}

/** `0.0.0.0_9080`, `127.0.1.5_9080`. */
export function listenerName(address: string, port: number): string {
  return `${address}_${port}`;
}

/** Istio's cluster for inbound traffic to ports no Sidecar or service declares. */
export const INBOUND_PASSTHROUGH_CLUSTER = 'InboundPassthroughCluster';
