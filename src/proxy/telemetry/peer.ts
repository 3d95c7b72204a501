// Who is on each end of a request, for Istio's metric labels: this proxy's own workload
// (from its node metadata), the destination from EDS endpoint metadata and cluster service
// metadata, and the source from Istio's peer metadata exchange headers on inbound requests.
import { decodeMessage, encodeMessage } from '../../envoy/index.ts';
import type { RawHeader } from '../http/index.ts';
import type { Cluster } from '../cluster/cluster.ts';
import type { Host } from '../cluster/host.ts';
import type { LabelValues } from './metrics.ts';
import type { MetricLabel } from './stats-config.ts';

export const PEER_METADATA_HEADER = 'x-envoy-peer-metadata';
export const PEER_METADATA_ID_HEADER = 'x-envoy-peer-metadata-id';

export interface WorkloadInfo {
  workload: string;
  namespace: string;
  canonicalService: string;
  canonicalRevision: string;
  app: string;
  version: string;
  cluster: string;
}

/** This proxy's workload from its node metadata (istio-agent's keys). */
export function selfWorkload(meta: Readonly<Record<string, unknown>>, labels: Readonly<Record<string, string>>): WorkloadInfo {
  const str = (v: unknown): string => (typeof v === 'string' && v !== '' ? v : 'unknown');
  return {
    workload: str(meta['WORKLOAD_NAME']),
    namespace: str(meta['NAMESPACE']),
    canonicalService: str(labels['service.istio.io/canonical-name'] ?? labels['app.kubernetes.io/name'] ?? labels['app'] ?? meta['WORKLOAD_NAME']),
    canonicalRevision: str(labels['service.istio.io/canonical-revision'] ?? labels['app.kubernetes.io/version'] ?? labels['version'] ?? 'latest'),
    app: str(labels['app']),
    version: str(labels['version']),
    cluster: str(meta['CLUSTER_ID']),
  };
}

/** The headers an outbound request carries so the destination's proxy knows its source. */
export function peerMetadataHeaders(nodeId: string, meta: Readonly<Record<string, unknown>>): RawHeader[] {
  const fields: Record<string, unknown> = {};
  for (const k of ['NAME', 'NAMESPACE', 'WORKLOAD_NAME', 'CLUSTER_ID', 'LABELS', 'APP_CONTAINERS', 'INSTANCE_IPS', 'MESH_ID']) {
    if (meta[k] !== undefined) fields[k] = meta[k];
  }
  const bytes = encodeMessage('google.protobuf.Struct', fields);
  return [
    { name: PEER_METADATA_ID_HEADER, value: nodeId },
    { name: PEER_METADATA_HEADER, value: Buffer.from(bytes).toString('base64') },
  ];
}

/** Parses peer metadata headers, caching by value with a hard bound. */
export class PeerCache {
  private readonly cache = new Map<string, WorkloadInfo>();
  private readonly ids = new WeakMap<WorkloadInfo, number>();
  private nextId = 1;
  private readonly max: number;

  constructor(max = 1024) {
    this.max = max;
  }

  fromHeaders(headers: readonly RawHeader[]): WorkloadInfo | undefined {
    let value: string | undefined;
    for (const h of headers) {
      if (h.name.length === PEER_METADATA_HEADER.length && h.name.toLowerCase() === PEER_METADATA_HEADER) { value = h.value; break; }
    }
    if (!value) return undefined;
    const hit = this.cache.get(value);
    if (hit) return hit;
    let info: WorkloadInfo | undefined;
    try {
      const meta = decodeMessage('google.protobuf.Struct', Buffer.from(value, 'base64')) as Record<string, unknown>;
      info = selfWorkload(meta, (meta['LABELS'] as Record<string, string> | undefined) ?? {});
    } catch {
      return undefined;
    }
    if (this.cache.size >= this.max) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(value, info);
    this.ids.set(info, this.nextId++);
    return info;
  }

  /** A number naming a peer this cache returned, for caches keyed by peer (0: none). */
  idOf(peer: WorkloadInfo | undefined): number {
    return peer === undefined ? 0 : (this.ids.get(peer) ?? 0);
  }
}

/** Removes the peer metadata headers (they are for proxies, not apps). */
export function stripPeerHeaders(headers: RawHeader[]): RawHeader[] {
  let found = false;
  for (const h of headers) {
    const n = h.name.toLowerCase();
    if (n === PEER_METADATA_HEADER || n === PEER_METADATA_ID_HEADER) { found = true; break; }
  }
  if (!found) return headers;
  return headers.filter((h) => { const n = h.name.toLowerCase(); return n !== PEER_METADATA_HEADER && n !== PEER_METADATA_ID_HEADER; });
}

const UNKNOWN: WorkloadInfo = { workload: 'unknown', namespace: 'unknown', canonicalService: 'unknown', canonicalRevision: 'unknown', app: 'unknown', version: 'unknown', cluster: 'unknown' };

/**
 * Label values of requests, reused across requests with the same ends and outcome: one
 * object per cluster, host, reporter, peer, status and flags instead of a new 27-label
 * object per request. Keyed by the cluster and host objects themselves, so a config update
 * (which builds new ones) never serves stale labels; each host's entries are bounded.
 * One cache serves one proxy: `self` must be the same on every call.
 */
export class RequestLabelCache {
  private readonly byCluster = new WeakMap<object, WeakMap<object, LabelSlot>>();
  private readonly noCluster = new LabelSlot();
  private readonly maxPerHost: number;

  constructor(maxPerHost = 256) {
    this.maxPerHost = maxPerHost;
  }

  get(
    reporter: 'source' | 'destination', self: WorkloadInfo, peer: WorkloadInfo | undefined, peerId: number,
    cluster: Cluster | undefined, clusterName: string | undefined, host: Host | undefined,
    status: number, flags: string, grpcStatus = -1,
  ): LabelValues {
    let slot: LabelSlot | undefined;
    if (cluster === undefined) slot = this.noCluster;
    else {
      let hosts = this.byCluster.get(cluster);
      if (hosts === undefined) this.byCluster.set(cluster, (hosts = new WeakMap()));
      const key: object = host ?? cluster;
      slot = hosts.get(key);
      if (slot === undefined) hosts.set(key, (slot = new LabelSlot()));
    }
    // an unidentified peer (not from the PeerCache) is not cached
    if (peer !== undefined && peerId === 0) return requestLabels(reporter, self, peer, cluster, clusterName, host, status, flags, grpcStatus);
    // steady traffic repeats the last outcome: compared field by field, no key is built
    const last = slot.last;
    if (last !== null && slot.status === status && slot.flags === flags && slot.peerId === peerId && slot.reporter === reporter && slot.clusterName === clusterName && slot.grpcStatus === grpcStatus) return last;
    const key = `${reporter}|${status}|${flags}|${peerId}|${clusterName ?? ''}|${grpcStatus}`;
    let labels = slot.entries.get(key);
    if (labels === undefined) {
      if (slot.entries.size >= this.maxPerHost) slot.entries.clear();
      labels = requestLabels(reporter, self, peer, cluster, clusterName, host, status, flags, grpcStatus);
      slot.entries.set(key, labels);
    }
    slot.last = labels;
    slot.reporter = reporter;
    slot.status = status;
    slot.flags = flags;
    slot.peerId = peerId;
    slot.clusterName = clusterName;
    slot.grpcStatus = grpcStatus;
    return labels;
  }
}

/** The label values of one cluster host, by outcome, and the last one served. */
class LabelSlot {
  readonly entries = new Map<string, LabelValues>();
  last: LabelValues | null = null;
  reporter = '';
  status = 0;
  flags = '';
  peerId = 0;
  clusterName: string | undefined = undefined;
  grpcStatus = -1;
}

/** Label values of one request. */
export function requestLabels(
  reporter: 'source' | 'destination', self: WorkloadInfo, peer: WorkloadInfo | undefined,
  cluster: Cluster | undefined, clusterName: string | undefined, host: Host | undefined,
  status: number, flags: string, grpcStatus = -1,
): LabelValues {
  let src: WorkloadInfo;
  let dst: WorkloadInfo;
  if (reporter === 'source') {
    src = self;
    const w = host?.workload;
    dst = w ? { ...UNKNOWN, workload: w.name || 'unknown', namespace: w.namespace || 'unknown', canonicalService: w.canonicalService || 'unknown', canonicalRevision: w.canonicalRevision || 'unknown', cluster: w.cluster || 'unknown' } : UNKNOWN;
  } else {
    src = peer ?? UNKNOWN;
    dst = self;
  }
  const svc = cluster?.service;
  const out: Record<MetricLabel, string> = {
    reporter,
    source_workload: src.workload, source_workload_namespace: src.namespace, source_principal: 'unknown',
    source_app: src.app, source_version: src.version, source_canonical_service: src.canonicalService,
    source_canonical_revision: src.canonicalRevision, source_cluster: src.cluster,
    destination_workload: dst.workload, destination_workload_namespace: dst.namespace, destination_principal: 'unknown',
    destination_app: dst.app, destination_version: dst.version,
    destination_service: svc?.host || clusterName || 'unknown',
    destination_service_name: svc?.name || clusterName || 'unknown',
    destination_service_namespace: svc?.namespace || 'unknown',
    destination_canonical_service: dst.canonicalService, destination_canonical_revision: dst.canonicalRevision,
    destination_cluster: dst.cluster,
    request_protocol: grpcStatus >= 0 ? 'grpc' : 'http', response_code: String(status), grpc_response_status: grpcStatus >= 0 ? String(grpcStatus) : '',
    response_flags: flags || '-', connection_security_policy: 'none',
    request_operation: 'unknown',
  };
  return out;
}
