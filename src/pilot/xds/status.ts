// Per-proxy sync status, as `istioctl proxy-status` reports it: for each type, whether the
// last response was acked (SYNCED), is still unanswered (STALE) or was rejected (NACKED).
import { SHORT_TYPE_NAMES } from '../../envoy/index.ts';
import type { XdsTypeUrl } from '../../envoy/index.ts';
import type { Connection, WatchedResource } from './connection.ts';

export type SyncState = 'SYNCED' | 'STALE' | 'NACKED' | 'NOT_SENT';

export function syncState(w: WatchedResource | undefined): SyncState {
  if (w === undefined || w.nonceSent === undefined) return 'NOT_SENT';
  if (w.nack !== undefined && w.nack.nonce === w.nonceSent) return 'NACKED';
  if (w.nonceAcked === w.nonceSent) return 'SYNCED';
  return 'STALE';
}

export interface TypeStatus {
  type: string;
  typeUrl: string;
  state: SyncState;
  subscription: 'wildcard' | 'named';
  subscribedNames: number;
  versionSent?: string;
  versionAcked?: string;
  nonceSent?: string;
  nonceAcked?: string;
  sentAt?: string;
  ackedAt?: string;
  lastNack?: { message: string; version: string; at: string };
  responses: number;
  bytesSent: number;
}

export interface ProxySyncStatus {
  proxy: string;
  connectionId: string;
  protocol: 'sotw' | 'delta';
  peer: string;
  namespace: string;
  generator: string;
  connectedAt: string;
  lastConvergenceMs?: number;
  types: TypeStatus[];
}

const iso = (ms: number | undefined): string | undefined => (ms === undefined ? undefined : new Date(ms).toISOString());

function shortName(typeUrl: string): string {
  return SHORT_TYPE_NAMES[typeUrl as XdsTypeUrl] ?? typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
}

export function typeStatus(w: WatchedResource): TypeStatus {
  const s: TypeStatus = {
    type: shortName(w.typeUrl),
    typeUrl: w.typeUrl,
    state: syncState(w),
    subscription: w.wildcard ? 'wildcard' : 'named',
    subscribedNames: w.names.size,
    responses: w.responses,
    bytesSent: w.bytesSent,
  };
  if (w.versionSent !== undefined) s.versionSent = w.versionSent;
  if (w.versionAcked !== undefined) s.versionAcked = w.versionAcked;
  if (w.nonceSent !== undefined) s.nonceSent = w.nonceSent;
  if (w.nonceAcked !== undefined) s.nonceAcked = w.nonceAcked;
  const sentAt = iso(w.sentAt);
  if (sentAt !== undefined) s.sentAt = sentAt;
  const ackedAt = iso(w.ackedAt);
  if (ackedAt !== undefined) s.ackedAt = ackedAt;
  if (w.nack !== undefined) s.lastNack = { message: w.nack.message, version: w.nack.version, at: new Date(w.nack.at).toISOString() };
  return s;
}

export function proxyStatus(con: Connection): ProxySyncStatus {
  const s: ProxySyncStatus = {
    proxy: con.proxy.id,
    connectionId: con.id,
    protocol: con.protocol,
    peer: con.peer,
    namespace: con.proxy.namespace,
    generator: con.proxy.generator,
    connectedAt: new Date(con.connectedAt).toISOString(),
    types: [...con.watched.values()].map(typeStatus),
  };
  if (con.lastConvergenceMs !== undefined) s.lastConvergenceMs = con.lastConvergenceMs;
  return s;
}
