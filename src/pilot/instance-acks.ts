// Which connected proxies hold a registered instance, and whether each has ACKed the EDS that
// carries its current state: for the registration API's GET of an instance (and pull-out
// waits). A proxy counts as acked when what was last sent to it for each cluster holding the
// instance is, byte for byte, the assignment the current snapshot generates for it, and the
// response that carried it has been ACKed.
import type { Resource } from '../api/resource.ts';
import { ENDPOINT_TYPE, type ProtoJson } from '../envoy/index.ts';
import type { AckSource, InstanceAckQuery, InstanceAcks, ProxyAck } from '../registry/api/index.ts';
import type { PushContext } from './model.ts';
import type { DiscoveryServer } from './xds/index.ts';
import type { WatchedResource } from './xds/connection.ts';

/** What the acks need of a snapshot: resources by key, and DestinationRules by full host. */
interface SnapshotIndex {
  byKey: ReadonlyMap<string, Resource>;
  destinationRulesByHost: ReadonlyMap<string, readonly { spec: { subsets?: Array<{ name?: string }> } }[]>;
}

// Built by one scan for a snapshot that does not carry these indexes (the built-in generators'
// snapshots do, and are used as they are), kept with the snapshot (snapshots are immutable).
const scanned = new WeakMap<PushContext, SnapshotIndex>();

function indexOf(push: PushContext): SnapshotIndex {
  const own = push as Partial<SnapshotIndex>;
  if (typeof own.byKey?.get === 'function' && typeof own.destinationRulesByHost?.get === 'function') return own as SnapshotIndex;
  let idx = scanned.get(push);
  if (idx !== undefined) return idx;
  const byKey = new Map<string, Resource>();
  const drs = new Map<string, Array<{ spec: { subsets?: Array<{ name?: string }> } }>>();
  for (const r of push.resources) {
    byKey.set(`${r.kind}/${r.metadata.namespace}/${r.metadata.name}`, r);
    const spec = r.spec as { host?: string; subsets?: Array<{ name?: string }> };
    if (r.kind !== 'DestinationRule' || spec.host === undefined) continue;
    // A short host is relative to the rule's namespace, as Istio resolves it.
    const host = spec.host.includes('.') ? spec.host : `${spec.host}.${r.metadata.namespace}.svc.cluster.local`;
    drs.set(host, [...(drs.get(host) ?? []), { spec }]);
  }
  idx = { byKey, destinationRulesByHost: drs };
  scanned.set(push, idx);
  return idx;
}

function holds(cla: ProtoJson, address: string): boolean {
  for (const loc of (cla['endpoints'] as ProtoJson[] | undefined) ?? []) {
    for (const lbe of (loc['lbEndpoints'] as ProtoJson[] | undefined) ?? []) {
      const sa = ((lbe['endpoint'] as ProtoJson | undefined)?.['address'] as ProtoJson | undefined)?.['socketAddress'] as ProtoJson | undefined;
      if (sa?.['address'] === address) return true;
    }
  }
  return false;
}

/**
 * Whether the proxy has applied `version` of the assignment `name`: it was the last sent for
 * the name, and the response that carried it has been ACKed (responses of a type apply in
 * order, so an ACK of a later one covers it; a NACKed one is not covered). A version the proxy
 * announced when it reconnected (delta) was never sent, and is held.
 */
function ackedAssignment(w: WatchedResource, name: string, version: string): boolean {
  if (w.sent.get(name)?.version !== version) return false;
  const seq = w.sentSeq?.get(name);
  if (seq === undefined) return true;
  return w.ackedSeq !== undefined && seq <= w.ackedSeq;
}

export function instanceAcks(server: DiscoveryServer): AckSource {
  return (q: InstanceAckQuery): InstanceAcks => {
    const push = server.pushContext;
    if (push === undefined) return { pushed: false, proxies: [] };
    const idx = indexOf(push);
    const pushed = Number(idx.byKey.get(q.key)?.metadata.resourceVersion ?? -1) >= Number(q.resourceVersion);
    const candidates: string[] = [];
    for (const host of q.hosts) {
      const subsets = new Set<string>();
      for (const dr of idx.destinationRulesByHost.get(host) ?? []) for (const sub of dr.spec.subsets ?? []) if (sub.name !== undefined) subsets.add(sub.name);
      for (const port of q.ports) {
        candidates.push(`outbound|${port}||${host}`);
        for (const sub of subsets) candidates.push(`outbound|${port}|${sub}|${host}`);
      }
    }
    const proxies: ProxyAck[] = [];
    for (const con of server.connections.values()) {
      if (con.closed) continue;
      const w = con.watched.get(ENDPOINT_TYPE);
      if (w === undefined) continue;
      const clusters: string[] = [];
      let acked = pushed;
      for (const name of candidates) {
        if (!w.sent.has(name) && !w.names.has(name)) continue;
        const cla = server.generators.generate(push, con.proxy, ENDPOINT_TYPE, new Set([name])).get(name);
        if (cla === undefined || !holds(cla, q.address)) continue;
        clusters.push(name);
        if (!ackedAssignment(w, name, server.cache.encode(ENDPOINT_TYPE, name, cla).version)) acked = false;
      }
      if (clusters.length > 0) proxies.push({ proxy: con.proxy.id, connection: con.id, clusters, acked });
    }
    return { pushed, proxies };
  };
}
