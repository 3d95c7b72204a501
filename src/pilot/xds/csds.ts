// Client status discovery (envoy.service.status.v3): each connected proxy with, per type,
// the version it acked and SYNCED / STALE / ERROR (NACK) / NOT_SENT, as istioctl reads it.
import type { ServerDuplexStream, ServerUnaryCall, sendUnaryData } from '@grpc/grpc-js';
import type { ProtoJson } from '../../envoy/index.ts';
import type { DiscoveryServer } from './ads.ts';
import type { Connection, WatchedResource } from './connection.ts';
import { syncState } from './status.ts';

const CONFIG_STATUS = { SYNCED: 'SYNCED', STALE: 'STALE', NACKED: 'ERROR', NOT_SENT: 'NOT_SENT' } as const;

function timestamp(ms: number): { seconds: number; nanos: number } {
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
}

function genericConfig(w: WatchedResource): ProtoJson {
  const config: ProtoJson = {
    typeUrl: w.typeUrl,
    versionInfo: w.versionAcked ?? '',
    configStatus: CONFIG_STATUS[syncState(w)],
  };
  if (w.ackedAt !== undefined || w.sentAt !== undefined) config['lastUpdated'] = timestamp(w.ackedAt ?? w.sentAt ?? 0);
  if (w.nack !== undefined && syncState(w) === 'NACKED') {
    config['errorState'] = { details: w.nack.message, versionInfo: w.nack.version, lastUpdateAttempt: timestamp(w.nack.at) };
  }
  return config;
}

/** ClientConfig for one connection; the node is sent back with its id, cluster and metadata. */
function clientConfig(con: Connection): ProtoJson {
  const node: ProtoJson = { id: con.proxy.id };
  const cluster = con.node['cluster'];
  if (typeof cluster === 'string') node['cluster'] = cluster;
  return { node, genericXdsConfigs: [...con.watched.values()].map(genericConfig) };
}

/** The ClientStatusResponse for every proxy, or those whose node id is `nodeId`. */
export function clientStatus(server: DiscoveryServer, nodeId?: string): ProtoJson {
  const config: ProtoJson[] = [];
  for (const con of server.connections.values()) {
    if (nodeId !== undefined && nodeId !== '' && con.proxy.id !== nodeId) continue;
    config.push(clientConfig(con));
  }
  return { config };
}

function requestedNode(req: ProtoJson): string | undefined {
  const node = req['node'] as { id?: string } | null | undefined;
  return node?.id ?? undefined;
}

export function csdsHandlers(server: DiscoveryServer): {
  FetchClientStatus: (call: ServerUnaryCall<ProtoJson, ProtoJson>, callback: sendUnaryData<ProtoJson>) => void;
  StreamClientStatus: (call: ServerDuplexStream<ProtoJson, ProtoJson>) => void;
} {
  return {
    FetchClientStatus(call, callback) {
      callback(null, clientStatus(server, requestedNode(call.request)));
    },
    StreamClientStatus(call) {
      call.on('data', (req: ProtoJson) => call.write(clientStatus(server, requestedNode(req))));
      call.on('end', () => call.end());
    },
  };
}
